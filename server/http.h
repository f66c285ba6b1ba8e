/*
 * http.h - libmicrohttpd glue: listening, routing, auth, body caps. The
 * only module that includes microhttpd.h, and the top of the HTTP side:
 * only main.c calls it (resources reach back through nothing here; the
 * response helpers they share with http.c are in api.c).
 */
#ifndef SERVER_HTTP_H
#define SERVER_HTTP_H

#include "config.h"

struct http_server;

/* http_start - the API: listen on cfg->listen_host:listen_port. NULL with err. */
struct http_server *http_start(const struct config *cfg, char *err, size_t errlen);

/*
 * http_start_admin - the admin listener on cfg->admin_listen_host:port:
 * GET /healthz, /readyz and /metrics only (the same handlers as the API's,
 * no key, no request body), one thread, at most 64 connections, the API's
 * timeouts. Every other path is 404. Stopped like the API (http_drain,
 * http_stop). NULL with err.
 */
struct http_server *http_start_admin(const struct config *cfg, char *err, size_t errlen);

/*
 * http_drain - begin shutting down (any thread, returns at once): from now
 * every request but GET /healthz is answered 503 unavailable with
 * Retry-After and Connection: close (so /readyz fails and load balancers
 * move traffic away), and event streams end. Requests already being
 * handled finish normally.
 */
void http_drain(struct http_server *h);

/* http_active - requests begun and not yet completed (to wait for them after http_drain). */
int http_active(struct http_server *h);

void http_stop(struct http_server *h);

#endif
