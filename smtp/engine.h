/*
 * engine.h - the SMTP client engine: many non-blocking sessions on one epoll.
 *
 * One engine is driven by one thread (smtp_engine_run). Other threads hand
 * it jobs with smtp_engine_submit (thread-safe; an eventfd wakes the loop).
 * Sessions are pooled per target and reused across jobs with RSET; each
 * command has its own timeout (RFC 5321 4.5.3.2). TLS (STARTTLS or implicit)
 * verifies the peer certificate and host name by default (SNI +
 * SSL_set1_host). AUTH PLAIN / LOGIN when the target has credentials.
 * ESMTP: PIPELINING (RFC 2920: MAIL, RCPTs and DATA in one write) when
 * offered, SIZE (RFC 1870: too big fails before sending, SIZE= on MAIL),
 * BODY=8BITMIME (RFC 6152) for 8-bit data, SMTPUTF8 (RFC 6531) for a
 * non-ASCII address (which fails permanently, unsent, when not offered),
 * and several recipients per transaction, each with its own outcome.
 *
 * The outcome of a job is data (struct smtp_outcome), reported once through
 * on_done on the engine thread. This library knows nothing of HTTP or Redis.
 */
#ifndef SMTP_ENGINE_H
#define SMTP_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "retry.h"

enum smtp_tls_mode {
	SMTP_TLS_NONE = 0,      /* plain text only */
	SMTP_TLS_STARTTLS = 1,  /* STARTTLS when offered, else plain (opportunistic) */
	SMTP_TLS_REQUIRED = 2,  /* STARTTLS must be offered and succeed, else tempfail */
	SMTP_TLS_IMPLICIT = 3,  /* TLS from the first byte (smtps://) */
};

struct smtp_target {
	char host[256];         /* host name or IP literal */
	uint16_t port;
	enum smtp_tls_mode tls;
	int no_verify;          /* 1: skip certificate verification (tests only) */
	char user[256];         /* "" = no AUTH */
	char pass[256];
	/*
	 * connect_addr: a numeric IP (v4 or v6, no brackets) to connect to, or ""
	 * to resolve host and try each of its addresses in turn (a refused or
	 * timed-out connect moves to the next; the outcome of a job none of them
	 * took names each one). When set, the engine never resolves host (no
	 * getaddrinfo lookup on the engine thread); host is then only the name for
	 * SNI and the certificate check (direct delivery: the MX name).
	 */
	char connect_addr[64];
};

/* Per-command timeouts in seconds (defaults from RFC 5321 4.5.3.2). */
struct smtp_timeouts {
	double connect;      /* 30, for each address of the target on its own */
	double banner;       /* 300 (greeting) */
	double ehlo;         /* 300 */
	double tls;          /* 60: STARTTLS reply + handshake */
	double auth;         /* 60 */
	double mail;         /* 300 */
	double rcpt;         /* 300 */
	double data;         /* 120: DATA command reply */
	double block;        /* 180: each write of message data */
	double dot;          /* 600: reply after final "." */
	double rset;         /* 60 */
	double quit;         /* 10 */
	double idle;         /* 5: how long a pooled idle connection is kept */
};

/* smtp_timeouts_default - fill *t with the defaults above. */
void smtp_timeouts_default(struct smtp_timeouts *t);

struct smtp_outcome {
	enum smtp_result result;
	int code;              /* reply code that decided it; 0 when no reply (connect error, timeout, drop) */
	char enhanced[16];     /* "5.1.1" or "" */
	char text[512];        /* server text, or our own description of the failure */
	const char *stage;     /* static string: "connect", "tls", "banner", "ehlo", "starttls",
	                        * "auth", "mail", "rcpt", "data", "dot", "shutdown"
	                        * (stopped before the transaction began: nothing was
	                        * sent), "cut" (stopped during it: the server may
	                        * have the message) */
};

/*
 * One recipient of a multi-recipient job. The engine fills out before
 * on_done: a refused RCPT gets its own reply (stage "rcpt"), accepted
 * recipients share the reply to the final "." (or whatever ended the
 * transaction), recipients never tried share the job's failure.
 */
struct smtp_rcpt {
	const char *addr;          /* forward-path address */
	struct smtp_outcome out;   /* written by the engine */
};

#define SMTP_MAX_RCPTS 100       /* recipients in one transaction (RFC 5321 4.5.3.1.8) */

struct smtp_job {
	struct smtp_target target;
	const char *mail_from;   /* reverse-path address ("" for <>) */
	const char *rcpt;        /* forward-path address (used when nrcpts == 0) */
	const char *data;        /* message, CRLF lines, NOT dot-stuffed; valid until on_done */
	size_t data_len;
	void *udata;             /* caller's */
	/*
	 * Several recipients in one transaction (nrcpts 1..SMTP_MAX_RCPTS; rcpt
	 * is then ignored). nrcpts 0: the single rcpt above. With rcpts, the
	 * outcome given to on_done is the transaction's (the final-dot reply,
	 * or the first refused recipient's when none was accepted); each
	 * rcpts[i].out is that recipient's own result. Valid until on_done.
	 */
	struct smtp_rcpt *rcpts;
	size_t nrcpts;
	/* engine-private from here on */
	struct smtp_job *next;
};

/*
 * One log line, as data rather than text: the engine never formats a line,
 * the caller renders (and quotes) it and adds what it knows about the job
 * (its own ids through job->udata). msg is a constant phrase ("connected",
 * "rcpt refused"); everything variable is in the fields. Field values may
 * be text from the network (reply text) and are passed as they came.
 */
struct smtp_log_field {
	const char *key;       /* constant, [a-z0-9_]+: "stage", "reply", "error", ... */
	const char *value;     /* never NULL */
};

#define SMTP_LOG_FIELDS_MAX 6

struct smtp_log_event {
	int level;                  /* 0 debug, 1 info, 2 warn, 3 error */
	const char *msg;            /* constant phrase */
	const struct smtp_job *job; /* the job it is about; NULL: none (idle connection, engine) */
	const char *rcpt;           /* the one recipient it is about; NULL: every recipient of job */
	unsigned long long conn;    /* the session's number (1, 2, ...); 0: not about a session */
	const char *peer;           /* "host[addr]:port" of the session; "" when conn is 0 */
	int code;                   /* the SMTP reply code the line is about; 0: none */
	struct smtp_log_field fields[SMTP_LOG_FIELDS_MAX];
	size_t nfields;
};

struct smtp_engine_config {
	char helo_name[256];
	char ca_file[4096];              /* extra CA bundle, "" = system store only */
	struct smtp_timeouts timeouts;
	int max_conns_per_target;        /* default 16 when 0 */
	int max_msgs_per_conn;           /* default 100 when 0 */
	/* Called on the engine thread exactly once per submitted job. */
	void (*on_done)(struct smtp_job *job, const struct smtp_outcome *o, void *arg);
	/* Optional log sink, engine thread: one event per line (below); no secret is ever in one. */
	void (*log)(const struct smtp_log_event *ev, void *arg);
	void *arg;
};

struct smtp_engine;

/* smtp_engine_new - NULL on failure with a message in err (epoll/eventfd/TLS context). */
struct smtp_engine *smtp_engine_new(const struct smtp_engine_config *cfg,
    char *err, size_t errlen);

/*
 * smtp_engine_submit - queue a job (any thread). The engine does not own the
 * job; the caller keeps it alive until on_done. Returns 0, or -1 when the
 * engine is shutting down (on_done is then not called).
 */
int smtp_engine_submit(struct smtp_engine *e, struct smtp_job *job);

/*
 * smtp_engine_run - one turn of the loop on the engine thread: wait up to
 * timeout_ms for I/O, timers or submitted jobs, make progress, call on_done
 * for finished jobs. Returns 0, or -1 on an epoll failure.
 */
int smtp_engine_run(struct smtp_engine *e, int timeout_ms);

/* smtp_engine_wake - make a blocked smtp_engine_run return early (any thread). */
void smtp_engine_wake(struct smtp_engine *e);

/*
 * smtp_engine_drain - start stopping (any thread): from the next turn of
 * the loop, jobs whose transaction has not begun (queued, or on a session
 * still connecting, greeting or in RSET) get on_done with a tempfail at
 * stage "shutdown", idle sessions QUIT, and smtp_engine_submit returns -1;
 * transactions already begun (MAIL sent) go on to their end.
 */
void smtp_engine_drain(struct smtp_engine *e);

/* smtp_engine_inflight - jobs submitted and not yet reported (any thread). */
int smtp_engine_inflight(const struct smtp_engine *e);

/*
 * smtp_engine_free - close every session (QUIT is not waited for); jobs not
 * yet done get on_done with a tempfail at stage "cut" when their
 * transaction had begun, else "shutdown". Engine thread.
 */
void smtp_engine_free(struct smtp_engine *e);

#endif
