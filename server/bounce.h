/*
 * bounce.h - the inbound listener for asynchronous bounces (RFC 3464 DSNs).
 *
 * An SMTP service (server/sink.c's state machine with hooks) that accepts
 * mail only for bounces+<valid token>@TXMAIL_BOUNCE_DOMAIN (server/verp.h)
 * and refuses every other recipient with 550 5.1.1 at RCPT. Each message
 * is parsed as a DSN (server/dsn.h) and applied to the recipient the
 * token names, with store_bounce: Action failed -> the recipient becomes
 * failed (reason "bounced", a message.failed event, suppressed when the
 * Status is 5.x.x); Action delayed -> a "delayed_dsn" timeline entry.
 * Mail to a valid token that is not a DSN is accepted and dropped with a
 * log line (refusing it after DATA would only make the sender's MTA
 * generate a bounce of the bounce).
 */
#ifndef SERVER_BOUNCE_H
#define SERVER_BOUNCE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct bounce;

/*
 * bounce_start - listen on host:port (0 = any; *bound_port gets it) for
 * cfg (bounce_domain and bounce_secret must be set; cfg must outlive the
 * listener). NULL with err.
 */
struct bounce *bounce_start(const struct config *cfg, const char *host, uint16_t port,
    uint16_t *bound_port, char *err, size_t errlen);
void bounce_stop(struct bounce *b);

/*
 * bounce_cli - the arguments of `txmail bounce [--listen host:port]`
 * (main.c runs the command): 0 to run (*listen: the --listen value, or
 * NULL), 1 after printing --help (exit 0), 2 after a usage error on stderr.
 */
int bounce_cli(int argc, char **argv, const char **listen);

/*
 * bounce_addr - where `txmail bounce` listens: listen (--listen) when not
 * NULL, else TXMAIL_BOUNCE_LISTEN, else 127.0.0.1:2526. 0, or -1 with err.
 */
int bounce_addr(const struct config *cfg, const char *listen, char *host, size_t hostlen,
    uint16_t *port, char *err, size_t errlen);

#endif
