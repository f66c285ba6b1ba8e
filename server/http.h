/*
 * http.h - libmicrohttpd glue: listening, routing, auth, body caps, the
 * error envelope. The only module that includes microhttpd.h.
 */
#ifndef SERVER_HTTP_H
#define SERVER_HTTP_H

#include "config.h"

struct http_server;

/* http_start - listen on cfg->listen_host:listen_port. NULL with err. */
struct http_server *http_start(const struct config *cfg, char *err, size_t errlen);
void http_stop(struct http_server *h);

#endif
