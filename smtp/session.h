/*
 * session.h - one SMTP client connection (internal to the smtp engine).
 *
 * A session is a non-blocking state machine over one socket: connect,
 * greeting, EHLO/HELO, STARTTLS, AUTH, then transactions (RSET, MAIL, RCPT,
 * DATA, message, ".") for jobs handed to it one at a time, then QUIT. It
 * never blocks, never calls on_done and never touches the epoll set itself:
 * it records what it wants (events, deadline, finished job) and the engine
 * (engine.c) acts on it after every call. Secrets are never logged.
 */
#ifndef SMTP_SESSION_H
#define SMTP_SESSION_H

#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "reply.h"
#include "tls.h"

enum smtp_state {
	SMTP_STATE_CONNECT = 0,   /* TCP connect in progress */
	SMTP_STATE_TLS_IMPLICIT,  /* TLS handshake right after connect */
	SMTP_STATE_BANNER,        /* waiting for the 220 greeting */
	SMTP_STATE_EHLO,
	SMTP_STATE_HELO,          /* fallback after 5xx to EHLO */
	SMTP_STATE_STARTTLS,      /* waiting for 220 to STARTTLS */
	SMTP_STATE_TLS_HANDSHAKE, /* after STARTTLS */
	SMTP_STATE_AUTH_PLAIN,
	SMTP_STATE_AUTH_LOGIN,    /* waiting for 334 to AUTH LOGIN */
	SMTP_STATE_AUTH_USER,     /* user sent, waiting for 334 */
	SMTP_STATE_AUTH_PASS,     /* password sent, waiting for 235 */
	SMTP_STATE_IDLE,          /* ready, no job: pooled */
	SMTP_STATE_RSET,
	SMTP_STATE_MAIL,
	SMTP_STATE_RCPT,
	SMTP_STATE_DATA,          /* waiting for 354 */
	SMTP_STATE_BODY,          /* streaming the message */
	SMTP_STATE_DOT,           /* waiting for the reply to "." */
	SMTP_STATE_QUIT,
	SMTP_STATE_DRAIN,         /* job decided; reading replies to pipelined commands */
	SMTP_STATE_CLOSED,        /* finished; the engine frees it */
	SMTP_STATE_COUNT
};

#define SMTP_SESSION_RBUF 16384
#define SMTP_SESSION_WBUF 16384
#define SMTP_SESSION_MAX_ADDRS 16   /* addresses of one name tried per session */

/* What a session needs from its engine; shared by all sessions of an engine. */
struct smtp_session_env {
	const struct smtp_engine_config *cfg;   /* timeouts, helo name, log */
	struct smtp_tls_ctx *tls;
	uint64_t next_id;                       /* for log lines */
};

struct smtp_session {
	/* engine-owned links */
	struct smtp_session *next;      /* in its pool */
	void *pool;
	uint32_t ep_events;             /* currently registered with epoll, 0 = none */
	int ep_added;
	int ep_fd;                      /* the fd registered (changes on address fallback) */
	unsigned ep_seq;                /* fd_seq of the socket registered */

	struct smtp_session_env *env;
	uint64_t id;
	struct smtp_target target;      /* copy; pass is wiped on free */
	int fd;
	struct smtp_tls *tls;
	int tls_active;
	int tls_want_write;             /* last TLS op wanted EPOLLOUT */
	enum smtp_state state;
	int64_t deadline_ms;            /* 0 = none */
	unsigned fd_seq;                /* bumped for every new socket (same fd number or not) */
	struct addrinfo *ai_list;
	/*
	 * The addresses to try, in order: getaddrinfo's (RFC 6724) order with
	 * the families interleaved (RFC 8305 4), at most SMTP_SESSION_MAX_ADDRS.
	 * A refused or failed connect, or one that takes longer than the
	 * connect timeout (per address), moves to the next; tried[] says how
	 * each failed, for the outcome and the log.
	 */
	struct addrinfo *ai_order[SMTP_SESSION_MAX_ADDRS];
	size_t ai_n, ai_i;              /* ai_order[ai_i] is being tried */
	char addr[INET6_ADDRSTRLEN + 16];   /* "[::1]:25" or "127.0.0.1:25": the current one */
	char tried[400];                /* "[::1]:25 refused; 127.0.0.1:25 timed out after 30s" */
	char peer[320];                 /* "host[addr]:port" for messages */

	unsigned ext;                   /* EHLO extensions */
	int helo_fallback;
	int authed;
	int msgs;                       /* jobs started on this session */
	int reused;                     /* next job needs RSET first */

	struct smtp_job *job;           /* current job or NULL */
	struct smtp_job *done_job;      /* finished, outcome in done; engine reports */
	struct smtp_outcome done;
	struct smtp_job *requeue_job;   /* job to give back to the pool untouched */

	/*
	 * The transaction of the current job as numbered commands: 0 is MAIL,
	 * 1..tx_n the RCPTs of job recipients tx_map[0..tx_n), tx_n + 1 DATA.
	 * With PIPELINING they are written as one group and the replies read
	 * in order; without, each is written after the previous reply.
	 */
	struct smtp_rcpt one;           /* the recipient of a single-rcpt job */
	unsigned long size_limit;       /* from EHLO "SIZE n", 0 = none */
	uint16_t tx_map[SMTP_MAX_RCPTS];
	size_t tx_n;                    /* RCPT commands in this transaction */
	size_t tx_sent;                 /* commands queued in wbuf so far */
	size_t tx_replied;              /* replies handled so far */
	size_t tx_accepted;             /* RCPTs accepted */
	int tx_pipelined;
	int tx_drain;                   /* DRAIN: replies still to read */
	int tx_nulldot;                 /* DOT: "." sent after 354 with no recipient */
	int tx_rset_ahead;              /* RSET: the group went with it (PIPELINING) */
	char mail_params[64];           /* " SIZE=n BODY=8BITMIME SMTPUTF8" */

	/* message streaming */
	size_t data_off;                /* bytes of job->data consumed */
	int bol;                        /* at beginning of a line */
	int body_tail;                  /* 0 body, 1 final CRLF + "." queued */

	char rbuf[SMTP_SESSION_RBUF];
	size_t rlen;
	char wbuf[SMTP_SESSION_WBUF];
	size_t wlen, woff;
	int wsecret;                    /* wbuf holds credentials: wipe when sent */
	char last_cmd[16];              /* for timeout / error messages */
};

/*
 * smtp_session_new - allocate a session for target carrying job and start
 * connecting (blocking getaddrinfo, non-blocking connect). Returns NULL only
 * on out of memory; a failure to start is reported as a finished job with
 * the session in SMTP_STATE_CLOSED.
 */
struct smtp_session *smtp_session_new(struct smtp_session_env *env,
    const struct smtp_target *target, struct smtp_job *job);

/* smtp_session_start_job - give an IDLE session a job (RSET first when reused). */
void smtp_session_start_job(struct smtp_session *s, struct smtp_job *job);

/* smtp_session_quit - send QUIT from IDLE and close after the reply. */
void smtp_session_quit(struct smtp_session *s);

/* smtp_session_on_events - epoll reported events (EPOLLIN/OUT/ERR/HUP). */
void smtp_session_on_events(struct smtp_session *s, uint32_t events);

/* smtp_session_on_timeout - the deadline passed. */
void smtp_session_on_timeout(struct smtp_session *s);

/*
 * smtp_session_abort - close now; a current job ends with a tempfail at
 * stage with text (e.g. "shutdown").
 */
void smtp_session_abort(struct smtp_session *s, const char *stage, const char *text);

/*
 * smtp_session_in_transaction - 1 when the current job's transaction has
 * begun (MAIL sent, up to the reply to "."): stopping now may leave the
 * message with the server. 0 with no job, or before MAIL (connecting,
 * greeting, EHLO, STARTTLS, AUTH, RSET).
 */
int smtp_session_in_transaction(const struct smtp_session *s);

/* smtp_session_events - EPOLL* interest for the current state (0 when closed). */
uint32_t smtp_session_events(const struct smtp_session *s);

/* smtp_session_free - close the socket, free everything (job must be gone). */
void smtp_session_free(struct smtp_session *s);

/* smtp_state_name - "EHLO", "MAIL", ... for logs. */
const char *smtp_state_name(enum smtp_state st);

/* smtp_now_ms - monotonic clock in milliseconds. */
int64_t smtp_now_ms(void);

#endif
