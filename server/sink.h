/*
 * sink.h - the capture SMTP server (txmail sink; part of `run --dev`).
 *
 * Accepts mail on a loopback port and writes each message, as received,
 * to <dir>/<time>-<seq>.eml (written to a temporary name, then renamed, so
 * a reader never sees half a file). A Received-like X-Txmail-Envelope
 * header line is NOT added: files are byte-identical to the DATA. One
 * thread, poll(2), many connections.
 *
 * So that a developer sees every delivery outcome without writing a
 * server, the recipient's local part picks the answer (README, "Failure
 * paths in dev mode"); any other address is accepted:
 *   bounce[+tag]@   550 5.1.1 at RCPT (that recipient only)
 *   defer[+tag]@    451 4.3.0 at end of DATA on the first SINK_DEFER_TIMES
 *                   attempts of a message (counted per Message-ID and
 *                   recipient), then 250
 *   full[+tag]@     552 5.2.2 at end of DATA
 *   reject[+tag]@   554 5.7.1 at end of DATA
 *   slow[+tag]@     the end-of-DATA reply after SINK_SLOW_MS (other
 *                   sessions go on meanwhile)
 * An end-of-DATA answer covers the whole transaction, as with any SMTP
 * server. Refused messages are not stored.
 */
#ifndef SERVER_SINK_H
#define SERVER_SINK_H

#include <stddef.h>
#include <stdint.h>

struct sink;

#define SINK_DEFER_TIMES 2        /* defer+: 451 this many times per message and recipient */
#define SINK_SLOW_MS 5000         /* slow+: the end-of-DATA reply waits this long */
#define SINK_TRIES_CAP 4096       /* attempts remembered (least recently seen dropped first) */
#define SINK_TRIES_TTL_MS ((int64_t)6 * 3600 * 1000)   /* ... and forgotten after this */

/* What the sink does for one recipient, picked by its local part. */
enum sink_behaviour {
	SINK_BEHAVE_ACCEPT = 0,   /* 250, stored */
	SINK_BEHAVE_BOUNCE,       /* 550 5.1.1 at RCPT */
	SINK_BEHAVE_DEFER,        /* 451 4.3.0 at end of DATA, SINK_DEFER_TIMES times, then 250 */
	SINK_BEHAVE_FULL,         /* 552 5.2.2 at end of DATA */
	SINK_BEHAVE_REJECT,       /* 554 5.7.1 at end of DATA */
	SINK_BEHAVE_SLOW,         /* 250 after SINK_SLOW_MS */
};

/*
 * sink_behaviour_for - the behaviour of address addr (no angle brackets):
 * its local part (before the last '@'), up to the first '+', compared
 * without case with the keywords above. Pure; never fails.
 */
enum sink_behaviour sink_behaviour_for(const char *addr);

/* sink_behaviour_name - "accept", "bounce", "defer", "full", "reject", "slow". */
const char *sink_behaviour_name(enum sink_behaviour b);

/* sink_rcpt_reply - the RCPT refusal line for behaviour b, or NULL to accept the recipient. */
const char *sink_rcpt_reply(enum sink_behaviour b);

/*
 * sink_data_reply - the end-of-DATA answer for a transaction whose
 * accepted recipients have behaviours b[0..n-1]; attempt[i] is the
 * attempt number (1 = first) of recipient i for this message, read only
 * for SINK_BEHAVE_DEFER. Returns the refusal line, or NULL when the message
 * is to be stored and answered 250. *delay_ms gets how long to hold the
 * answer (SINK_SLOW_MS when a recipient is slow+, else 0). Precedence:
 * full, reject, defer. Pure.
 */
const char *sink_data_reply(const enum sink_behaviour *b, const unsigned *attempt, size_t n,
    int *delay_ms);

/*
 * sink_message_id - the Message-ID field body of the header section of
 * msg (unfolded, blanks trimmed) into out; 0, or -1 when there is none or
 * it does not fit. Pure.
 */
int sink_message_id(const char *msg, size_t len, char *out, size_t outlen);

/*
 * The attempt counter behind defer+: how often a (message, recipient)
 * has been seen, in a table of at most cap entries; an entry not seen
 * for ttl_ms is forgotten, and when the table is full the least recently
 * seen entry makes room. Keys are 64-bit hashes of the pair. Not
 * thread-safe (the sink thread is its only user).
 */
struct sink_tries;

/* sink_tries_new - an empty table (cap >= 1, ttl_ms > 0); NULL when out of memory. */
struct sink_tries *sink_tries_new(size_t cap, int64_t ttl_ms);
void sink_tries_free(struct sink_tries *t);

/* sink_tries_hit - count one more attempt of (msg, rcpt) at now_ms; returns its number, 1 first. */
unsigned sink_tries_hit(struct sink_tries *t, const char *msg, const char *rcpt, int64_t now_ms);

/* sink_tries_count - entries held (for tests). */
size_t sink_tries_count(const struct sink_tries *t);

/*
 * sink_start - listen on host:port (port 0 = any; *bound_port gets it),
 * answering by local part as above. NULL with err.
 */
struct sink *sink_start(const char *host, uint16_t port, const char *dir,
    uint16_t *bound_port, char *err, size_t errlen);
void sink_stop(struct sink *s);

/*
 * What one listener lets its clients hold. The memory a listener holds is
 * bounded by max_clients x (max_msg + SINK_CLIENT_OVERHEAD + max_rcpts x
 * (SINK_ADDR_MAX + 1 + malloc's few words)): a message
 * past max_msg is dropped at once (what follows is read and discarded up
 * to the final dot, answered 552 5.3.4), and output is not produced past
 * SINK_OUT_HIGH. A connection over max_clients, or over max_per_peer from
 * one peer (an IPv4 address; an IPv6 /64), is greeted with 421 4.7.0 and
 * closed. A client is cut (421 4.4.2) after idle_ms without a byte, and
 * when its DATA phase has not ended data_ms after the 354.
 */
struct sink_limits {
	size_t max_msg;        /* DATA octets kept (dot-unstuffed), at most SINK_MSG_MAX */
	int max_clients;       /* connections at once, at most SINK_CLIENTS_MAX */
	int max_per_peer;      /* connections at once from one peer */
	int max_rcpts;         /* recipients per transaction, at most SINK_RCPT_MAX */
	int64_t idle_ms;       /* no byte from the client this long: cut */
	int64_t data_ms;       /* DATA (354 to the final dot) longer than this: cut */
};

#define SINK_MSG_MAX ((size_t)50 * 1024 * 1024)  /* the largest max_msg (and the sink's own) */
#define SINK_CLIENTS_MAX 256                     /* the largest max_clients (and the sink's own) */
#define SINK_RCPT_MAX 1000                       /* the largest max_rcpts (and the sink's own) */
#define SINK_ADDR_MAX 320                        /* envelope address kept per transaction */
#define SINK_CLIENT_OVERHEAD ((size_t)384 * 1024)   /* per client besides message and recipients */

/*
 * sink_limits_default - the capture sink's limits: SINK_MSG_MAX,
 * SINK_CLIENTS_MAX clients (all from one peer allowed), SINK_RCPT_MAX,
 * idle 5 minutes, DATA 10 minutes. Pure.
 */
struct sink_limits sink_limits_default(void);

/*
 * Hooks turn the capture server into another inbound SMTP service (the
 * bounce listener): the same state machine, caps and poll loop, with the
 * decisions made by the caller (no local-part behaviours) and the caller's
 * limits. Both run on the sink thread and must not block for long (they
 * hold up every other client of this sink).
 */
struct sink_hooks {
	const char *name;   /* in the banner: "220 <host> <name> ESMTP"; NULL: "txmail sink" */
	/*
	 * rcpt - called for each RCPT TO with the bare address (no angle
	 * brackets, may be ""). 0 accepts; otherwise write a full reply line
	 * ("550 5.1.1 ...") into reply and return -1. NULL: accept all.
	 */
	int (*rcpt)(const char *addr, char *reply, size_t replylen, void *arg);
	/*
	 * message - called at the end of DATA instead of writing a file, with
	 * the envelope (mail_from "" for the null sender) and the message as
	 * received (dot-unstuffed). 0: "250 2.0.0 Ok"; otherwise write a full
	 * reply line into reply and return -1. Required.
	 */
	int (*message)(const char *mail_from, const char *const *rcpts, size_t nrcpts,
	    const char *msg, size_t len, char *reply, size_t replylen, void *arg);
	void *arg;
	struct sink_limits limits;   /* zeros: the capture sink's own (sink_limits_default) */
	/*
	 * loop - when not NULL, the listener thread is a loop of health.h by
	 * this name (it wakes at least once a second to beat); loop_wait_ms:
	 * the longest one round of the hooks may legitimately take.
	 */
	const char *loop;
	int64_t loop_wait_ms;
};

/* sink_start_hooks - like sink_start, but each message goes to hooks (copied). NULL with err. */
struct sink *sink_start_hooks(const char *host, uint16_t port, const struct sink_hooks *hooks,
    uint16_t *bound_port, char *err, size_t errlen);

/*
 * sink_listen_fd - a non-blocking, close-on-exec TCP socket listening on
 * host:port (port 0: any; *bound gets the port when bound is not NULL),
 * for every inbound SMTP listener. The fd, or -1 with err.
 */
int sink_listen_fd(const char *host, uint16_t port, uint16_t *bound, char *err, size_t errlen);

/* sink_main - `txmail sink [--listen host:port] [--dir DIR]`, runs until SIGINT/SIGTERM. */
int sink_main(int argc, char **argv);

#endif
