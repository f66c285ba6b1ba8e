/*
 * api_events.h - live events (GET /v1/events/stream, Server-Sent Events).
 *
 * One hub thread per API process tails the events stream in the store and
 * appends every event, framed for SSE, to each connected client's bounded
 * buffer; with no client connected it sleeps and reads nothing. The HTTP side (http.c) never waits on Redis or on the hub: it
 * reads what a client's buffer holds (api_events_client_read) and, when it
 * is empty, parks the connection (suspends it) until the hub has more.
 * A client whose buffer overflows (it reads too slowly) is disconnected;
 * it can resume with Last-Event-ID.
 *
 * Fairness: one API key (req->tenant) holds at most TXMAIL_SSE_PER_KEY
 * streams of a process; the next gets 429 rate_limited with Retry-After.
 * HEAD answers the headers alone and opens no stream.
 *
 * Lifecycle: api_events_hub_start (in http_start) -> the api_events_stream
 * handler opens clients -> api_events_hub_shutdown (closes every client,
 * wakes parked ones, refuses new ones) -> the HTTP daemon stops (each
 * stream's end calls api_events_client_close) -> api_events_hub_free.
 */
#ifndef SERVER_API_EVENTS_H
#define SERVER_API_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

#define API_EVENTS_MAX_CLIENTS 256
#define API_EVENTS_CLIENT_BUF ((size_t)1024 * 1024)   /* bytes queued per client */
#define API_EVENTS_KEEPALIVE_MS 15000
#define API_EVENTS_PER_KEY_DEFAULT 8                 /* TXMAIL_SSE_PER_KEY */
#define API_EVENTS_TENANT_MAX 72                     /* KEYS_TENANT_MAX */
#define API_EVENTS_NOW_SLACK_MS 1000                 /* api_events_start_at */

struct api_events_hub;
struct api_events_client;

/* api_events_hub_start - start the hub thread (own store handle). NULL with err. */
struct api_events_hub *api_events_hub_start(const struct config *cfg, char *err, size_t errlen);
/* api_events_hub_shutdown - stop the thread, end every stream, refuse new ones. */
void api_events_hub_shutdown(struct api_events_hub *hub);
/* api_events_hub_free - after the HTTP daemon stopped; NULL is fine. */
void api_events_hub_free(struct api_events_hub *hub);

/*
 * Called with the hub's lock held, so they must not call back into this
 * module: park suspends the connection (from inside a read), wake resumes it.
 */
typedef void api_events_conn_fn(void *arg);

/*
 * api_events_client_attach - how to park and wake this client's connection,
 * and its socket (-1: unknown), which the hub polls while the connection is
 * parked to end the stream at once when the peer hangs up.
 */
void api_events_client_attach(struct api_events_client *c, api_events_conn_fn *park,
    api_events_conn_fn *wake, void *arg, int fd);

/*
 * api_events_client_read - copy up to max queued bytes into buf. Returns the
 * count (> 0); 0 when nothing is queued (then park(arg) was called and
 * wake(arg) follows when data arrives); -1 when the stream is over
 * (overflow, shutdown).
 */
ssize_t api_events_client_read(struct api_events_client *c, char *buf, size_t max);

/* api_events_client_close - the connection ended: forget and free the client. */
void api_events_client_close(struct api_events_client *c);

/* --- pure helpers (unit-tested) -------------------------------------------- */

/* api_events_parse_id - a stream id "<ms>-<seq>" (decimal, no sign, ms 1..20 digits). 0 or -1. */
int api_events_parse_id(const char *s, uint64_t *ms, uint64_t *seq);

/*
 * api_events_start_at - where a client that asked for new events at wall
 * time open_ms (ms since the epoch) starts when the hub reads the stream's
 * last id (last_ms-last_seq) only after the open (it was idle): at the last
 * id when that is older than open_ms; else just before open_ms, at most
 * API_EVENTS_NOW_SLACK_MS before the last id (Redis's clock ahead of this
 * one's, or ids ahead of its clock), so an event appended between the open
 * and the read is not lost. The start is the position after which events
 * are sent (*ms, *seq; *seq may be UINT64_MAX). 1 when it is before the last
 * id (the client catches up from it), 0 when it is the last id.
 */
int api_events_start_at(int64_t open_ms, uint64_t last_ms, uint64_t last_seq, uint64_t *ms,
    uint64_t *seq);

/*
 * api_events_frame - one SSE event: "id: <id>\nevent: <type>\n" then one
 * "data: " line per line of data (CR, LF and CRLF all end a line) and a
 * blank line; the event line is left out when type is "" or NULL. Writes at
 * most outlen bytes (NUL-terminated when outlen > 0) and returns the full
 * length, like snprintf; -1 when id or type contain CR or LF.
 */
int api_events_frame(const char *id, const char *type, const char *data, size_t data_len,
    char *out, size_t outlen);

#endif
