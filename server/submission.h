/*
 * submission.h - SMTP submission beside HTTP (issue 16): the listeners of
 * TXMAIL_SUBMISSION_LISTEN (port 587 style: STARTTLS, required before
 * AUTH) and TXMAIL_SUBMISSIONS_LISTEN (port 465 style: implicit TLS).
 *
 * The password of AUTH PLAIN / LOGIN is an API key: its project, scope
 * (send, full or admin), IP allowlist and rate limit apply as on HTTP (one
 * token per message). A message is stored through the same accept as
 * POST /v1/messages (api_messages_submit) and answered "250 2.0.0 Ok:
 * queued as msg_..." only once Redis has it. The protocol is parsed by
 * submit_proto.c, the message made ready by submit_msg.c; this file holds
 * the sockets, TLS, the session state machine and its caps. One thread
 * accepts; each session is a thread of its own (at most
 * TXMAIL_SUBMISSION_MAX_CLIENTS), with non-blocking I/O under deadlines.
 * See docs/submission.md.
 */
#ifndef SERVER_SUBMISSION_H
#define SERVER_SUBMISSION_H

#include <stdint.h>

#include "config.h"

#define SUBMISSION_RCPTS_MAX 100      /* recipients per message: past it 452 4.5.3 */
#define SUBMISSION_AUTH_FAILS_MAX 3   /* failed AUTH per session: then 421 and close */
#define SUBMISSION_ERRORS_MAX 20      /* refused commands per session: then 421 and close */
#define SUBMISSION_COMMANDS_MAX 10000 /* commands per session: then 421 and close */
#define SUBMISSION_DATA_TIMEOUTS 10   /* the DATA phase may take this many command timeouts */
#define SUBMISSION_FAIL_BASE_MS 500   /* a wrong key is answered after this, doubled per failure */
#define SUBMISSION_FAIL_MAX_MS 8000   /* ... from one address (IPv4, IPv6 /64), at most this */
#define SUBMISSION_FAIL_FORGET_MS ((int64_t)10 * 60 * 1000)   /* failures forgotten after this */

struct submission;

/*
 * submission_start - open the listeners cfg names (TXMAIL_SUBMISSION_LISTEN,
 * TXMAIL_SUBMISSIONS_LISTEN; at least one is set) with the certificate and
 * key of TXMAIL_SUBMISSION_TLS_CERT / _KEY, and start accepting. cfg must
 * outlive the listener. NULL with err (a port taken, a certificate that
 * does not load).
 */
struct submission *submission_start(const struct config *cfg, char *err, size_t errlen);

/* submission_port - the port bound by listener i (0: STARTTLS, 1: implicit TLS), 0 if not open. */
uint16_t submission_port(const struct submission *s, int implicit);

/*
 * submission_reload - read the certificate and key again (SIGHUP); they
 * are also read again by themselves when the files change. A pair that
 * does not load is logged and the one in use kept. Any thread.
 */
void submission_reload(struct submission *s);

/*
 * submission_stop - stop accepting; sessions between commands are told
 * 421 4.3.2 and closed, one in DATA may finish until deadline_ms
 * (util_mono_ms), then is cut; returns when every session thread has
 * ended. s may be NULL.
 */
void submission_stop(struct submission *s, int64_t deadline_ms);

#endif
