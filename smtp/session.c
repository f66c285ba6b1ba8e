/*
 * session.c - the SMTP client state machine for one connection.
 *
 * Owns one socket (and its TLS), the per-state timeout table, the protocol
 * dialogue (RFC 5321, 3207, 4954; ESMTP: PIPELINING 2920, SIZE 1870,
 * 8BITMIME 6152, SMTPUTF8 6531), the per-recipient outcomes of a
 * transaction, and the streaming of one message at a time with
 * dot-stuffing, straight from the caller's buffer in chunks (the message is
 * never copied whole). Every address of the target is tried in turn (see
 * order_addrs) until one connects: a refused connect, or one that is not
 * done within the connect timeout - which applies to each address on its
 * own - moves to the next, and when none works the outcome names each
 * address and how it failed ("connect to localhost: [::1]:25 refused;
 * 127.0.0.1:25 timed out after 30s"). It never blocks on the network (only
 * getaddrinfo, at start, may), never calls on_done and never touches epoll:
 * the engine reads state, events(), deadline_ms and done_job after each call.
 * It must never log a password or the base64 of one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "session.h"

#define SMTP_ADDR_MAX 998   /* longest address put on a MAIL/RCPT line */

/* state -> name, timeout field, outcome stage, what we wait for */
struct state_info {
	const char *name;
	size_t tmo;            /* offset in struct smtp_timeouts */
	const char *stage;
};

#define TMO(f) offsetof(struct smtp_timeouts, f)
static const struct state_info state_table[SMTP_STATE_COUNT] = {
	[SMTP_STATE_CONNECT]       = { "CONNECT",   TMO(connect), "connect" },
	[SMTP_STATE_TLS_IMPLICIT]  = { "TLS",       TMO(tls),     "tls" },
	[SMTP_STATE_BANNER]        = { "BANNER",    TMO(banner),  "banner" },
	[SMTP_STATE_EHLO]          = { "EHLO",      TMO(ehlo),    "ehlo" },
	[SMTP_STATE_HELO]          = { "HELO",      TMO(ehlo),    "ehlo" },
	[SMTP_STATE_STARTTLS]      = { "STARTTLS",  TMO(tls),     "starttls" },
	[SMTP_STATE_TLS_HANDSHAKE] = { "TLS",       TMO(tls),     "tls" },
	[SMTP_STATE_AUTH_PLAIN]    = { "AUTH",      TMO(auth),    "auth" },
	[SMTP_STATE_AUTH_LOGIN]    = { "AUTH",      TMO(auth),    "auth" },
	[SMTP_STATE_AUTH_USER]     = { "AUTH",      TMO(auth),    "auth" },
	[SMTP_STATE_AUTH_PASS]     = { "AUTH",      TMO(auth),    "auth" },
	[SMTP_STATE_IDLE]          = { "IDLE",      TMO(idle),    "connect" },
	[SMTP_STATE_RSET]          = { "RSET",      TMO(rset),    "mail" },
	[SMTP_STATE_MAIL]          = { "MAIL",      TMO(mail),    "mail" },
	[SMTP_STATE_RCPT]          = { "RCPT",      TMO(rcpt),    "rcpt" },
	[SMTP_STATE_DATA]          = { "DATA",      TMO(data),    "data" },
	[SMTP_STATE_BODY]          = { "BODY",      TMO(block),   "data" },
	[SMTP_STATE_DOT]           = { "DOT",       TMO(dot),     "dot" },
	[SMTP_STATE_QUIT]          = { "QUIT",      TMO(quit),    "connect" },
	[SMTP_STATE_DRAIN]         = { "DRAIN",     TMO(mail),    "mail" },
	[SMTP_STATE_CLOSED]        = { "CLOSED",    0,            "connect" },
};
#undef TMO

const char *smtp_state_name(enum smtp_state st)
{
	return (unsigned)st < SMTP_STATE_COUNT ? state_table[st].name : "?";
}

int64_t smtp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * slog - one log event about this session and its current job (if any):
 * msg a constant phrase, rcpt the one recipient it is about (NULL: all of
 * the job's), code the reply it is about (0: none), then (key, value)
 * string pairs ending with NULL; a pair with an empty value is left out.
 * Never give it a secret.
 */
static void slog(struct smtp_session *s, int level, const char *msg, const char *rcpt,
    int code, ...) __attribute__((sentinel));

static void slog(struct smtp_session *s, int level, const char *msg, const char *rcpt,
    int code, ...)
{
	const struct smtp_engine_config *cfg = s->env->cfg;
	struct smtp_log_event ev;
	const char *k;
	va_list ap;

	if (cfg->log == NULL)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.level = level;
	ev.msg = msg;
	ev.job = s->job;
	ev.rcpt = rcpt;
	ev.conn = (unsigned long long)s->id;
	ev.peer = s->peer;
	ev.code = code;
	va_start(ap, code);
	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);

		if (v != NULL && v[0] != '\0' && ev.nfields < SMTP_LOG_FIELDS_MAX) {
			ev.fields[ev.nfields].key = k;
			ev.fields[ev.nfields++].value = v;
		}
	}
	va_end(ap);
	cfg->log(&ev, cfg->arg);
}

static void set_state(struct smtp_session *s, enum smtp_state st)
{
	double t = 0;

	s->state = st;
	if (st != SMTP_STATE_CLOSED)
		memcpy(&t, (const char *)&s->env->cfg->timeouts + state_table[st].tmo, sizeof(t));
	s->deadline_ms = t > 0 ? smtp_now_ms() + (int64_t)(t * 1000.0) : 0;
}

static void wipe_wbuf(struct smtp_session *s)
{
	if (s->wsecret) {
		smtp_auth_wipe(s->wbuf, sizeof(s->wbuf));
		s->wsecret = 0;
	}
}

static void close_now(struct smtp_session *s)
{
	if (s->tls != NULL) {
		smtp_tls_free(s->tls);
		s->tls = NULL;
	}
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
	wipe_wbuf(s);
	s->wlen = s->woff = 0;
	s->tls_active = 0;
	s->state = SMTP_STATE_CLOSED;
	s->deadline_ms = 0;
}

static void fill_outcome(struct smtp_outcome *o, enum smtp_result res, int code,
    const char *enhanced, const char *text, const char *stage)
{
	memset(o, 0, sizeof(*o));
	o->result = res;
	o->code = code;
	snprintf(o->enhanced, sizeof(o->enhanced), "%s", enhanced ? enhanced : "");
	snprintf(o->text, sizeof(o->text), "%s", text ? text : "");
	o->stage = stage;
}

/* recipients of the current job: rcpts[] or the single rcpt (as s->one) */
static size_t job_nrcpt(const struct smtp_session *s)
{
	return s->job->nrcpts > 0 && s->job->rcpts != NULL ? s->job->nrcpts : 1;
}

static struct smtp_rcpt *job_rcpt(struct smtp_session *s, size_t i)
{
	return s->job->nrcpts > 0 && s->job->rcpts != NULL ? &s->job->rcpts[i] : &s->one;
}

/* txn_reset - nothing sent, no recipient decided (a job arrives or restarts) */
static void txn_reset(struct smtp_session *s)
{
	size_t i, n;

	s->tx_n = s->tx_sent = s->tx_replied = s->tx_accepted = 0;
	s->tx_pipelined = s->tx_drain = s->tx_nulldot = s->tx_rset_ahead = 0;
	s->mail_params[0] = '\0';
	if (s->job == NULL)
		return;
	memset(&s->one, 0, sizeof(s->one));
	s->one.addr = s->job->rcpt;
	n = job_nrcpt(s);
	for (i = 0; i < n; i++)
		memset(&job_rcpt(s, i)->out, 0, sizeof(struct smtp_outcome));
}

/*
 * job_finish - the current job is over (the session may live on). Every
 * recipient without an outcome of its own (stage still NULL) gets this one.
 * The job's outcome is this one too, unless no recipient was accepted: then
 * it is the first recipient's own (its RCPT refusal), as for one recipient.
 */
static void job_finish(struct smtp_session *s, enum smtp_result res, int code,
    const char *enhanced, const char *text, const char *stage)
{
	struct smtp_outcome o;
	const struct smtp_rcpt *own = NULL;
	size_t i, n;

	if (s->job == NULL)
		return;
	fill_outcome(&o, res, code, enhanced, text, stage);
	n = job_nrcpt(s);
	for (i = 0; i < n; i++) {
		struct smtp_rcpt *r = job_rcpt(s, i);

		if (r->out.stage == NULL)
			r->out = o;
		else if (own == NULL && s->tx_accepted == 0)
			own = r;
	}
	s->done = own != NULL ? own->out : o;
	s->done_job = s->job;
	s->job = NULL;
}

static enum smtp_result class_result(int cls)
{
	if (cls == 2 || cls == 3)
		return SMTP_RESULT_OK;
	if (cls == 5)
		return SMTP_RESULT_PERMFAIL;
	return SMTP_RESULT_TEMPFAIL;
}

/*
 * conn_fail - the connection is unusable: the current job gets a tempfail
 * (code 0) unless it had only reached RSET on a reused session, in which
 * case it goes back to the pool untried. The session closes.
 */
static void conn_fail(struct smtp_session *s, const char *text)
{
	if (s->job != NULL && s->state == SMTP_STATE_RSET) {
		slog(s, 1, "reused connection failed before MAIL, job requeued", NULL, 0,
		    "error", text, NULL);
		s->requeue_job = s->job;
		s->job = NULL;
	} else if (s->job != NULL) {
		slog(s, 2, "connection failed", NULL, 0, "stage", state_table[s->state].stage,
		    "error", text, NULL);
		job_finish(s, SMTP_RESULT_TEMPFAIL, 0, "", text, state_table[s->state].stage);
	} else if (s->state != SMTP_STATE_IDLE && s->state != SMTP_STATE_QUIT) {
		slog(s, 2, "connection failed", NULL, 0, "stage", state_table[s->state].stage,
		    "error", text, NULL);
	} else {
		slog(s, 0, "idle connection closed", NULL, 0, "error", text, NULL);
	}
	close_now(s);
}

/* reply_fail - a reply that ends the job and the connection. */
static void reply_fail(struct smtp_session *s, const struct smtp_reply *r,
    enum smtp_result res, const char *stage)
{
	if (s->job != NULL && s->state == SMTP_STATE_RSET) {
		slog(s, 1, "RSET refused, job requeued", NULL, r->code, "reply", r->text, NULL);
		s->requeue_job = s->job;
		s->job = NULL;
	} else {
		slog(s, 2, "command refused", NULL, r->code, "stage", stage,
		    "enhanced", r->enhanced, "reply", r->text, NULL);
		job_finish(s, res, r->code, r->enhanced, r->text, stage);
	}
	close_now(s);
}

static void send_cmd(struct smtp_session *s, enum smtp_state st, const char *label,
    int secret, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void send_cmd(struct smtp_session *s, enum smtp_state st, const char *label,
    int secret, const char *fmt, ...)
{
	va_list ap;
	int n;

	wipe_wbuf(s);
	va_start(ap, fmt);
	n = vsnprintf(s->wbuf, sizeof(s->wbuf) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(s->wbuf) - 2)
		abort();   /* broken invariant: commands are bounded by caps */
	s->wbuf[n++] = '\r';
	s->wbuf[n++] = '\n';
	s->wlen = (size_t)n;
	s->woff = 0;
	s->wsecret = secret;
	snprintf(s->last_cmd, sizeof(s->last_cmd), "%s", label);
	set_state(s, st);
}

static void send_ehlo(struct smtp_session *s)
{
	send_cmd(s, SMTP_STATE_EHLO, "EHLO", 0, "EHLO %s", s->env->cfg->helo_name);
}

static int bad_addr(const char *a)
{
	size_t n;

	if (a == NULL)
		return 1;
	n = strnlen(a, SMTP_ADDR_MAX + 1);
	return n > SMTP_ADDR_MAX || strpbrk(a, "\r\n<>") != NULL;
}

static int is_ascii(const char *a)
{
	for (; *a != '\0'; a++)
		if ((unsigned char)*a >= 0x80)
			return 0;
	return 1;
}

static int has_8bit(const char *d, size_t len)
{
	size_t i = 0;

	/* eight bytes a step (the whole message is scanned for every transaction) */
	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, d + i, 8);
		if (w & 0x8080808080808080ULL)
			return 1;
	}
	for (; i < len; i++)
		if ((unsigned char)d[i] >= 0x80)
			return 1;
	return 0;
}

/* copy_label - s into out (size > 0), cut to fit, NUL-terminated: snprintf("%s") without the cost */
static void copy_label(char *out, size_t size, const char *s)
{
	size_t l = strlen(s);

	if (l >= size)
		l = size - 1;
	memcpy(out, s, l);
	out[l] = '\0';
}

/*
 * cmd_line - a+b+c+d+CRLF into line (size bytes, NUL-terminated); the
 * length, or -1 when it does not fit (as snprintf's >= size).
 */
static int cmd_line(char *line, size_t size, const char *a, const char *b, const char *c,
    const char *d)
{
	const char *part[4] = { a, b, c, d };
	size_t n = 0;

	for (int i = 0; i < 4; i++) {
		size_t l = strlen(part[i]);

		if (l >= size - n)
			return -1;
		memcpy(line + n, part[i], l);
		n += l;
	}
	if (size - n < 3)
		return -1;
	line[n++] = '\r';
	line[n++] = '\n';
	line[n] = '\0';
	return (int)n;
}

/*
 * txn_refill - put the next commands of the transaction (MAIL, RCPTs, DATA)
 * into an empty wbuf: all that fit with PIPELINING (RFC 2920: DATA ends the
 * group), else one, and only once the previous reply is in. 1 when queued.
 */
static int txn_queue(struct smtp_session *s);

static int txn_refill(struct smtp_session *s)
{
	if (s->job == NULL || s->woff < s->wlen ||
	    (s->state != SMTP_STATE_MAIL && s->state != SMTP_STATE_RCPT && s->state != SMTP_STATE_DATA))
		return 0;
	wipe_wbuf(s);
	s->wlen = s->woff = 0;
	return txn_queue(s);
}

/* txn_queue - append what txn_refill puts into wbuf after what it holds; 1 when queued */
static int txn_queue(struct smtp_session *s)
{
	int queued = 0;

	while (s->tx_sent < s->tx_n + 2 && (s->tx_pipelined || s->tx_sent == s->tx_replied)) {
		char line[SMTP_ADDR_MAX + 128];
		size_t k = s->tx_sent;
		const char *label;
		int n;

		/* pieces copied, not snprintf: these lines are built for every delivery */
		if (k == 0) {
			label = "MAIL FROM";
			n = cmd_line(line, sizeof(line), "MAIL FROM:<", s->job->mail_from, ">",
			    s->mail_params);
		} else if (k <= s->tx_n) {
			label = "RCPT TO";
			n = cmd_line(line, sizeof(line), "RCPT TO:<", job_rcpt(s, s->tx_map[k - 1])->addr,
			    ">", "");
		} else {
			label = "DATA";
			n = cmd_line(line, sizeof(line), "DATA", "", "", "");
		}
		if (n < 0 || (size_t)n >= sizeof(line))
			abort();   /* broken invariant: addresses are capped by bad_addr */
		if ((size_t)n > sizeof(s->wbuf) - s->wlen)
			break;     /* the rest of the group follows when this is written */
		memcpy(s->wbuf + s->wlen, line, (size_t)n);
		s->wlen += (size_t)n;
		copy_label(s->last_cmd, sizeof(s->last_cmd), label);
		s->tx_sent++;
		queued = 1;
	}
	if (queued && s->tx_pipelined) {
		char sent[24], total[24];

		snprintf(sent, sizeof(sent), "%zu", s->tx_sent);
		snprintf(total, sizeof(total), "%zu", s->tx_n + 2);
		slog(s, 0, "pipelining", NULL, 0, "sent", sent, "commands", total, NULL);
	}
	return queued;
}

/* txn_start - send MAIL (and with PIPELINING the RCPTs and DATA too) */
static void txn_start(struct smtp_session *s)
{
	wipe_wbuf(s);
	s->wlen = s->woff = 0;
	set_state(s, SMTP_STATE_MAIL);
	txn_refill(s);
}

/* txn_unsent - end a job before any command: the session stays usable */
static void txn_unsent(struct smtp_session *s, const char *enhanced, const char *text,
    const char *stage)
{
	slog(s, 2, "not sent", NULL, 0, "stage", stage, "enhanced", enhanced, "error", text, NULL);
	job_finish(s, SMTP_RESULT_PERMFAIL, 0, enhanced, text, stage);
	set_state(s, SMTP_STATE_IDLE);
}

/*
 * begin_txn - check the job against what the server offered, then RSET (on
 * a reused session) and the transaction. Recipients that cannot be sent
 * (bad syntax, non-ASCII without SMTPUTF8) fail on their own; the others go.
 */
static void begin_txn(struct smtp_session *s)
{
	struct smtp_job *j = s->job;
	size_t i, n, plen = 0;
	int utf8 = 0;
	char text[256];

	txn_reset(s);
	n = job_nrcpt(s);
	if (bad_addr(j->mail_from)) {
		txn_unsent(s, "", "invalid address (empty, too long or with CR, LF, < or >)", "mail");
		return;
	}
	if (n > SMTP_MAX_RCPTS) {
		snprintf(text, sizeof(text), "too many recipients for one transaction (%zu, at most %d)",
		    n, SMTP_MAX_RCPTS);
		txn_unsent(s, "5.5.3", text, "mail");
		return;
	}
	if (!is_ascii(j->mail_from)) {
		if (!(s->ext & SMTP_EXT_SMTPUTF8)) {
			txn_unsent(s, "5.6.7", "sender address needs SMTPUTF8, not offered by the server",
			    "mail");
			return;
		}
		utf8 = 1;
	}
	for (i = 0; i < n; i++) {
		struct smtp_rcpt *r = job_rcpt(s, i);

		if (bad_addr(r->addr) || r->addr[0] == '\0') {
			fill_outcome(&r->out, SMTP_RESULT_PERMFAIL, 0, "",
			    "invalid address (empty, too long or with CR, LF, < or >)", "mail");
			continue;
		}
		if (!is_ascii(r->addr)) {
			if (!(s->ext & SMTP_EXT_SMTPUTF8)) {
				/* RFC 6531 3.4: no downgrade of an address; fail, do not send */
				fill_outcome(&r->out, SMTP_RESULT_PERMFAIL, 0, "5.6.7",
				    "recipient address needs SMTPUTF8, not offered by the server", "rcpt");
				continue;
			}
			utf8 = 1;
		}
		s->tx_map[s->tx_n++] = (uint16_t)i;
	}
	if (s->tx_n == 0) {
		txn_unsent(s, "", "no recipient can be sent", "mail");
		return;
	}
	if ((s->ext & SMTP_EXT_SIZE) && s->size_limit > 0 && j->data_len > s->size_limit) {
		/* RFC 1870: known too big before sending: a permanent failure, nothing sent */
		snprintf(text, sizeof(text), "message of %zu bytes exceeds the server's SIZE limit "
		    "of %lu bytes", j->data_len, s->size_limit);
		txn_unsent(s, "5.3.4", text, "mail");
		return;
	}
	if (s->ext & SMTP_EXT_SIZE)
		plen += (size_t)snprintf(s->mail_params + plen, sizeof(s->mail_params) - plen,
		    " SIZE=%zu", j->data_len);
	if (has_8bit(j->data, j->data_len)) {
		/*
		 * Our MIME builder writes 7-bit, so this is forwarded content. Without
		 * 8BITMIME RFC 6152 would want a conversion; like most MTAs we send it
		 * as is rather than fail it.
		 */
		if (s->ext & SMTP_EXT_8BITMIME)
			plen += (size_t)snprintf(s->mail_params + plen, sizeof(s->mail_params) - plen,
			    " BODY=8BITMIME");
		else
			slog(s, 1, "8-bit data but no 8BITMIME offered, sent as is", NULL, 0, NULL);
	}
	if (utf8)
		plen += (size_t)snprintf(s->mail_params + plen, sizeof(s->mail_params) - plen,
		    " SMTPUTF8");
	(void)plen;
	s->tx_pipelined = (s->ext & SMTP_EXT_PIPELINING) != 0;
	s->msgs++;
	if (s->reused && s->tx_pipelined) {
		/*
		 * RFC 2920 3.1: RSET may be anywhere in a group, so it goes with
		 * MAIL, RCPT and DATA: no round trip of its own per message. Its
		 * reply still comes first: a reused connection that died fails in
		 * state RSET and the job goes back untried, as when sent alone
		 * (nothing is accepted for delivery before the body follows 354).
		 */
		send_cmd(s, SMTP_STATE_MAIL, "RSET", 0, "RSET");
		txn_queue(s);
		copy_label(s->last_cmd, sizeof(s->last_cmd), "RSET");
		set_state(s, SMTP_STATE_RSET);
		s->tx_rset_ahead = 1;
		return;
	}
	if (s->reused) {
		send_cmd(s, SMTP_STATE_RSET, "RSET", 0, "RSET");
		return;
	}
	s->reused = 1;
	txn_start(s);
}

/* txn_drain - the job is decided; read the replies still owed to pipelined commands */
static void ready(struct smtp_session *s);

static void txn_drain(struct smtp_session *s)
{
	s->tx_drain = (int)(s->tx_sent - s->tx_replied);
	if (s->tx_drain > 0)
		set_state(s, SMTP_STATE_DRAIN);
	else
		ready(s);
}

/*
 * log_accepted - one line per recipient the server accepted in this
 * transaction (those still without an outcome of their own), about reply r.
 */
static void log_accepted(struct smtp_session *s, int level, const char *msg,
    const struct smtp_reply *r)
{
	size_t n = s->tx_n > 0 ? s->tx_n : 1;

	for (size_t k = 0; k < n; k++) {
		const struct smtp_rcpt *rc = job_rcpt(s, s->tx_n > 0 ? s->tx_map[k] : 0);

		if (rc->out.stage == NULL)
			slog(s, level, msg, rc->addr, r->code, "enhanced", r->enhanced,
			    "reply", r->text, NULL);
	}
}

/* ready - the session is set up or a transaction ended. */
static void ready(struct smtp_session *s)
{
	if (s->job != NULL)
		begin_txn(s);
	else
		set_state(s, SMTP_STATE_IDLE);
}

static void auth_or_ready(struct smtp_session *s)
{
	const struct smtp_target *t = &s->target;
	char b64[1024];

	if (t->user[0] == '\0' || s->authed) {
		ready(s);
		return;
	}
	if (s->ext & SMTP_EXT_AUTH_PLAIN) {
		if (smtp_auth_plain(t->user, t->pass, b64, sizeof(b64)) != 0)
			goto bad;
		send_cmd(s, SMTP_STATE_AUTH_PLAIN, "AUTH", 1, "AUTH PLAIN %s", b64);
		smtp_auth_wipe(b64, sizeof(b64));
		return;
	}
	if (s->ext & SMTP_EXT_AUTH_LOGIN) {
		send_cmd(s, SMTP_STATE_AUTH_LOGIN, "AUTH", 0, "AUTH LOGIN");
		return;
	}
	set_state(s, SMTP_STATE_AUTH_PLAIN);
	conn_fail(s, "server offers no AUTH PLAIN or LOGIN (credentials configured)");
	return;
bad:
	smtp_auth_wipe(b64, sizeof(b64));
	job_finish(s, SMTP_RESULT_PERMFAIL, 0, "", "credentials too long", "auth");
	close_now(s);
}

static void after_ehlo(struct smtp_session *s)
{
	enum smtp_tls_mode m = s->target.tls;

	if (!s->tls_active && (m == SMTP_TLS_STARTTLS || m == SMTP_TLS_REQUIRED)) {
		if (s->ext & SMTP_EXT_STARTTLS) {
			send_cmd(s, SMTP_STATE_STARTTLS, "STARTTLS", 0, "STARTTLS");
			return;
		}
		if (m == SMTP_TLS_REQUIRED) {
			set_state(s, SMTP_STATE_STARTTLS);
			conn_fail(s, "STARTTLS required but not offered by server");
			return;
		}
		slog(s, 1, "STARTTLS not offered, continuing without TLS", NULL, 0, NULL);
	}
	auth_or_ready(s);
}

static void start_tls(struct smtp_session *s, enum smtp_state st)
{
	char err[400];

	s->rlen = 0;   /* RFC 3207: nothing read before TLS is trusted */
	s->tls = smtp_tls_new(s->env->tls, s->fd, s->target.host, s->target.no_verify,
	    err, sizeof(err));
	set_state(s, st);
	if (s->tls == NULL) {
		char text[1024];
		snprintf(text, sizeof(text), "TLS setup failed: %s", err);
		conn_fail(s, text);
	}
}

static void connected(struct smtp_session *s)
{
	int one = 1;

	(void)setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* tried: the addresses moved past first ("[::1]:25 refused"); no field when none */
	slog(s, 1, "connected", NULL, 0, "tried", s->tried, NULL);
	if (s->target.tls == SMTP_TLS_IMPLICIT)
		start_tls(s, SMTP_STATE_TLS_IMPLICIT);
	else
		set_state(s, SMTP_STATE_BANNER);
}

/* cur_ai - the address being tried, NULL when none is left. */
static const struct addrinfo *cur_ai(const struct smtp_session *s)
{
	return s->ai_i < s->ai_n ? s->ai_order[s->ai_i] : NULL;
}

/*
 * addr_text - ai as "[::1]:25" or "127.0.0.1:25" into buf (len at least
 * sizeof(s->addr)); its numeric host alone into host. "" in both when ai
 * is NULL or has no numeric form.
 */
static void addr_text(const struct addrinfo *ai, unsigned port, char *buf, size_t len,
    char *host, size_t hostlen)
{
	buf[0] = '\0';
	host[0] = '\0';
	if (ai == NULL || getnameinfo(ai->ai_addr, ai->ai_addrlen, host, (socklen_t)hostlen,
	    NULL, 0, NI_NUMERICHOST) != 0) {
		host[0] = '\0';
		return;
	}
	if (ai->ai_family == AF_INET6)
		snprintf(buf, len, "[%.*s]:%u", (int)len - 9, host, port);
	else
		snprintf(buf, len, "%.*s:%u", (int)len - 7, host, port);
}

/*
 * format_peer - s->addr ("[::1]:25", "127.0.0.1:25") and s->peer
 * ("host[addr]:port", or "addr:port" when host is that address) for the
 * address being tried.
 */
static void format_peer(struct smtp_session *s)
{
	char hostbuf[NI_MAXHOST];
	const char *h = s->target.host;

	addr_text(cur_ai(s), s->target.port, s->addr, sizeof(s->addr), hostbuf, sizeof(hostbuf));
	if (s->addr[0] == '\0' || strcmp(hostbuf, h) == 0) {
		if (strchr(h, ':') != NULL)
			snprintf(s->peer, sizeof(s->peer), "[%.255s]:%u", h, s->target.port);
		else
			snprintf(s->peer, sizeof(s->peer), "%.255s:%u", h, s->target.port);
	} else {
		snprintf(s->peer, sizeof(s->peer), "%.240s[%.*s]:%u", h, (int)sizeof(s->addr),
		    hostbuf, s->target.port);
	}
}

/*
 * order_addrs - s->ai_order from s->ai_list: getaddrinfo's order (RFC 6724
 * destination selection), the two families interleaved starting with the
 * first one's (RFC 8305 4), so that a family that does not work (no route,
 * a name in /etc/hosts nothing listens on) costs one try, not all of them.
 */
static void order_addrs(struct smtp_session *s)
{
	struct addrinfo *first[SMTP_SESSION_MAX_ADDRS], *other[SMTP_SESSION_MAX_ADDRS];
	size_t nf = 0, no = 0, i = 0, j = 0;
	int fam = 0;

	for (struct addrinfo *ai = s->ai_list; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		if (fam == 0)
			fam = ai->ai_family;
		if (ai->ai_family == fam) {
			if (nf < SMTP_SESSION_MAX_ADDRS)
				first[nf++] = ai;
		} else if (no < SMTP_SESSION_MAX_ADDRS) {
			other[no++] = ai;
		}
	}
	s->ai_n = 0;
	while ((i < nf || j < no) && s->ai_n < SMTP_SESSION_MAX_ADDRS) {
		if (i < nf)
			s->ai_order[s->ai_n++] = first[i++];
		if (j < no && s->ai_n < SMTP_SESSION_MAX_ADDRS)
			s->ai_order[s->ai_n++] = other[j++];
	}
	s->ai_i = 0;
}

/* secs_text - a duration as people write it: "30s", "250ms". */
static const char *secs_text(double t, char *buf, size_t len)
{
	long long ms = (long long)(t * 1000.0 + 0.5);

	if (ms % 1000 == 0)
		snprintf(buf, len, "%llds", ms / 1000);
	else
		snprintf(buf, len, "%lldms", ms);
	return buf;
}

static const char *connect_err_text(int err)
{
	return err == ECONNREFUSED ? "refused" : err == ETIMEDOUT ? "timed out" : strerror(err);
}

/*
 * addr_failed - the address being tried did not work (why: "refused",
 * "timed out after 30s", ...): note it in tried, log it, close the socket
 * and move to the next address.
 */
static void addr_failed(struct smtp_session *s, const char *why)
{
	size_t used = strlen(s->tried);

	if (used + 1 < sizeof(s->tried))
		snprintf(s->tried + used, sizeof(s->tried) - used, "%s%s %s", used > 0 ? "; " : "",
		    s->addr[0] != '\0' ? s->addr : s->peer, why);
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
	s->ai_i++;
	if (s->ai_i < s->ai_n) {
		char next[sizeof(s->addr)], host[NI_MAXHOST];

		addr_text(cur_ai(s), s->target.port, next, sizeof(next), host, sizeof(host));
		slog(s, 1, "connect failed, trying the next address", NULL, 0, "addr", s->addr,
		    "error", why, "next", next, NULL);
	}
}

/* all_failed - no address of the target worked: the job tempfails naming each one. */
static void all_failed(struct smtp_session *s)
{
	char text[sizeof(s->tried) + 300];
	struct in6_addr a6;
	struct in_addr a4;
	const char *h = s->target.host;

	format_peer(s);
	set_state(s, SMTP_STATE_CONNECT);
	if (s->tried[0] == '\0')
		snprintf(text, sizeof(text), "connect to %.255s: no address", h);
	else if (s->ai_n == 1 && (inet_pton(AF_INET, h, &a4) == 1 || inet_pton(AF_INET6, h, &a6) == 1))
		snprintf(text, sizeof(text), "connect to %s", s->tried);   /* an IP literal: its own address */
	else
		snprintf(text, sizeof(text), "connect to %.255s: %s", h, s->tried);
	conn_fail(s, text);
}

/* try_connect - connect to the current address or, failing that, the ones after it. */
static void try_connect(struct smtp_session *s)
{
	for (; s->ai_i < s->ai_n;) {
		const struct addrinfo *ai = s->ai_order[s->ai_i];

		format_peer(s);
		s->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (s->fd < 0) {
			char why[160];

			snprintf(why, sizeof(why), "socket: %s", strerror(errno));
			addr_failed(s, why);
			continue;
		}
		s->fd_seq++;
		if (connect(s->fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			connected(s);
			return;
		}
		if (errno == EINPROGRESS) {
			set_state(s, SMTP_STATE_CONNECT);   /* the connect timeout, for this address */
			return;
		}
		addr_failed(s, connect_err_text(errno));
	}
	all_failed(s);
}

static void connect_done(struct smtp_session *s)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err == 0) {
		connected(s);
		return;
	}
	addr_failed(s, connect_err_text(err));
	try_connect(s);
}

/* connect_timed_out - the connect timeout passed for the current address. */
static void connect_timed_out(struct smtp_session *s)
{
	char why[64], d[32];

	snprintf(why, sizeof(why), "timed out after %s",
	    secs_text(s->env->cfg->timeouts.connect, d, sizeof(d)));
	addr_failed(s, why);
	try_connect(s);
}

struct smtp_session *smtp_session_new(struct smtp_session_env *env,
    const struct smtp_target *target, struct smtp_job *job)
{
	struct smtp_session *s;
	struct addrinfo hints;
	char port[8];
	int rc;

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->env = env;
	s->id = ++env->next_id;
	s->target = *target;
	s->fd = -1;
	s->job = job;
	txn_reset(s);
	s->bol = 1;
	s->state = SMTP_STATE_CONNECT;
	format_peer(s);

	snprintf(port, sizeof(port), "%u", target->port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	if (target->connect_addr[0] != '\0') {
		/* a resolved address: numeric only, host is just the TLS name */
		rc = getaddrinfo(target->connect_addr, port, &hints, &s->ai_list);
	} else {
		/*
		 * No AI_ADDRCONFIG: every address is tried, and one of a family
		 * this host cannot reach fails at once (and is named in the
		 * outcome) instead of silently vanishing from the list.
		 */
		rc = getaddrinfo(target->host, port, &hints, &s->ai_list);
		if (rc != 0) {
			hints.ai_flags = AI_NUMERICSERV;
			rc = getaddrinfo(target->host, port, &hints, &s->ai_list);
		}
	}
	if (rc != 0 || target->host[0] == '\0' || target->port == 0) {
		char text[1024];
		if (rc == 0) {
			snprintf(text, sizeof(text), "invalid target %s", s->peer);
		} else if (target->connect_addr[0] != '\0') {
			snprintf(text, sizeof(text), "invalid connect address %.63s for %.255s: %s",
			    target->connect_addr, target->host, gai_strerror(rc));
			s->ai_list = NULL;
		} else {
			snprintf(text, sizeof(text), "DNS lookup of %.255s failed: %s",
			    target->host, gai_strerror(rc));
			s->ai_list = NULL;
		}
		conn_fail(s, text);
		return s;
	}
	order_addrs(s);
	try_connect(s);
	return s;
}

void smtp_session_start_job(struct smtp_session *s, struct smtp_job *job)
{
	s->job = job;
	begin_txn(s);
}

void smtp_session_quit(struct smtp_session *s)
{
	if (s->state == SMTP_STATE_CLOSED)
		return;
	send_cmd(s, SMTP_STATE_QUIT, "QUIT", 0, "QUIT");
}

int smtp_session_in_transaction(const struct smtp_session *s)
{
	if (s->job == NULL)
		return 0;
	switch (s->state) {
	case SMTP_STATE_MAIL:
	case SMTP_STATE_RCPT:
	case SMTP_STATE_DATA:
	case SMTP_STATE_BODY:
	case SMTP_STATE_DOT:
		return 1;
	default:
		return 0;
	}
}

void smtp_session_abort(struct smtp_session *s, const char *stage, const char *text)
{
	if (s->job != NULL)
		job_finish(s, SMTP_RESULT_TEMPFAIL, 0, "", text, stage);
	close_now(s);
}

/* --- dialogue ------------------------------------------------------------ */

static void handle_reply(struct smtp_session *s, const struct smtp_reply *r)
{
	int cls = smtp_reply_class(r);
	const char *stage = state_table[s->state].stage;
	char b64[600];

	if (r->code == 421 && s->state != SMTP_STATE_QUIT) {
		reply_fail(s, r, SMTP_RESULT_TEMPFAIL, stage);
		return;
	}
	switch (s->state) {
	case SMTP_STATE_BANNER:
		if (cls == 2)
			send_ehlo(s);
		else
			reply_fail(s, r, SMTP_RESULT_TEMPFAIL, stage);
		break;
	case SMTP_STATE_EHLO:
		if (cls == 2) {
			s->ext = r->ext;
			s->size_limit = r->size_limit;
			after_ehlo(s);
		} else if (cls == 5 && !s->helo_fallback) {
			s->helo_fallback = 1;
			send_cmd(s, SMTP_STATE_HELO, "HELO", 0, "HELO %s", s->env->cfg->helo_name);
		} else {
			reply_fail(s, r, SMTP_RESULT_TEMPFAIL, stage);
		}
		break;
	case SMTP_STATE_HELO:
		if (cls == 2) {
			s->ext = 0;
			s->size_limit = 0;
			after_ehlo(s);
		} else {
			reply_fail(s, r, SMTP_RESULT_TEMPFAIL, stage);
		}
		break;
	case SMTP_STATE_STARTTLS:
		if (cls == 2)
			start_tls(s, SMTP_STATE_TLS_HANDSHAKE);
		else if (s->target.tls == SMTP_TLS_REQUIRED)
			reply_fail(s, r, SMTP_RESULT_TEMPFAIL, stage);
		else {
			slog(s, 1, "STARTTLS refused, continuing without TLS", NULL, r->code,
			    "enhanced", r->enhanced, "reply", r->text, NULL);
			auth_or_ready(s);
		}
		break;
	case SMTP_STATE_AUTH_LOGIN:
	case SMTP_STATE_AUTH_USER:
		if (r->code != 334) {
			reply_fail(s, r, cls == 5 ? SMTP_RESULT_PERMFAIL : SMTP_RESULT_TEMPFAIL, stage);
			break;
		}
		if (smtp_auth_login(s->state == SMTP_STATE_AUTH_LOGIN ? s->target.user : s->target.pass,
		    b64, sizeof(b64)) != 0) {
			job_finish(s, SMTP_RESULT_PERMFAIL, 0, "", "credentials too long", "auth");
			close_now(s);
			break;
		}
		send_cmd(s, s->state == SMTP_STATE_AUTH_LOGIN ? SMTP_STATE_AUTH_USER : SMTP_STATE_AUTH_PASS,
		    "AUTH", 1, "%s", b64);
		smtp_auth_wipe(b64, sizeof(b64));
		break;
	case SMTP_STATE_AUTH_PLAIN:
	case SMTP_STATE_AUTH_PASS:
		if (cls == 2) {
			s->authed = 1;
			slog(s, 1, "authenticated", NULL, 0, "user", s->target.user, NULL);
			ready(s);
		} else {
			reply_fail(s, r, cls == 5 ? SMTP_RESULT_PERMFAIL : SMTP_RESULT_TEMPFAIL, stage);
		}
		break;
	case SMTP_STATE_RSET:
		if (cls == 2 && s->tx_rset_ahead) {
			set_state(s, SMTP_STATE_MAIL);   /* its group is out, or follows from flush */
			txn_refill(s);
		} else if (cls == 2) {
			txn_start(s);
		} else {
			reply_fail(s, r, SMTP_RESULT_TEMPFAIL, stage);
		}
		break;
	case SMTP_STATE_MAIL:
		s->tx_replied++;
		if (cls == 2) {
			set_state(s, SMTP_STATE_RCPT);
			txn_refill(s);
		} else {
			slog(s, 2, "MAIL FROM refused", NULL, r->code, "from", s->job->mail_from,
			    "enhanced", r->enhanced, "reply", r->text, NULL);
			job_finish(s, class_result(cls == 3 ? 4 : cls), r->code, r->enhanced, r->text, stage);
			txn_drain(s);
		}
		break;
	case SMTP_STATE_RCPT: {
		struct smtp_rcpt *rc = job_rcpt(s, s->tx_map[s->tx_replied - 1]);

		s->tx_replied++;
		if (cls == 2) {
			s->tx_accepted++;
		} else {
			slog(s, 2, "RCPT TO refused", rc->addr, r->code, "enhanced", r->enhanced,
			    "reply", r->text, NULL);
			fill_outcome(&rc->out, class_result(cls == 3 ? 4 : cls), r->code, r->enhanced,
			    r->text, stage);
		}
		if (s->tx_replied <= s->tx_n) {
			set_state(s, SMTP_STATE_RCPT);   /* the next RCPT's reply */
			txn_refill(s);
		} else if (s->tx_accepted == 0 && !s->tx_pipelined) {
			job_finish(s, SMTP_RESULT_TEMPFAIL, 0, "", "no recipient accepted", stage);
			ready(s);
		} else {
			set_state(s, SMTP_STATE_DATA);
			txn_refill(s);
		}
		break;
	}
	case SMTP_STATE_DATA:
		s->tx_replied++;
		if (s->tx_accepted == 0) {
			/*
			 * Pipelined and every RCPT refused. RFC 2920 3.1: the client may not
			 * assume DATA is refused; after a 354 it "should send a single dot"
			 * (an empty message, delivered to nobody); after a refusal nothing
			 * (the next transaction starts with RSET). The job's outcome is the
			 * recipients' own refusals.
			 */
			if (r->code == 354) {
				send_cmd(s, SMTP_STATE_DOT, "end of data", 0, ".");
				s->tx_nulldot = 1;
			} else {
				job_finish(s, SMTP_RESULT_TEMPFAIL, 0, "", "no recipient accepted", "rcpt");
				ready(s);
			}
			break;
		}
		if (r->code == 354) {
			wipe_wbuf(s);
			s->wlen = s->woff = 0;
			s->data_off = 0;
			s->bol = 1;
			s->body_tail = 0;
			set_state(s, SMTP_STATE_BODY);
		} else {
			log_accepted(s, 2, "DATA refused", r);
			job_finish(s, class_result(cls == 2 || cls == 3 ? 4 : cls), r->code, r->enhanced,
			    r->text, stage);
			if (cls == 2 || cls == 3)
				close_now(s);   /* the server thinks otherwise: start afresh */
			else
				ready(s);
		}
		break;
	case SMTP_STATE_DOT:
		if (s->tx_nulldot) {
			/* the reply to the lone "." of a transaction without recipients */
			s->tx_nulldot = 0;
			job_finish(s, SMTP_RESULT_TEMPFAIL, 0, "", "no recipient accepted", "rcpt");
			ready(s);
			break;
		}
		if (cls == 2)
			log_accepted(s, 1, "message accepted by server", r);
		else
			log_accepted(s, 2, "message refused by server", r);
		job_finish(s, class_result(cls == 3 ? 4 : cls), r->code, r->enhanced, r->text, stage);
		ready(s);
		break;
	case SMTP_STATE_QUIT:
		close_now(s);
		break;
	case SMTP_STATE_DRAIN:
		if (r->code == 354) {
			/* DATA accepted after all: end the empty message (RFC 2920 3.1) */
			s->tx_drain = 0;
			send_cmd(s, SMTP_STATE_DOT, "end of data", 0, ".");
			s->tx_nulldot = 1;
		} else if (--s->tx_drain <= 0) {
			ready(s);
		}
		break;
	default:
		/* a reply nobody asked for (while idle, or while sending the body) */
		reply_fail(s, r, cls == 5 ? SMTP_RESULT_PERMFAIL : SMTP_RESULT_TEMPFAIL, stage);
		break;
	}
}

/* --- I/O ----------------------------------------------------------------- */

static int waiting_state(enum smtp_state st)
{
	return st != SMTP_STATE_CONNECT && st != SMTP_STATE_TLS_IMPLICIT &&
	    st != SMTP_STATE_TLS_HANDSHAKE && st != SMTP_STATE_CLOSED;
}

static const char *what_waiting(struct smtp_session *s, char *buf, size_t len)
{
	switch (s->state) {
	case SMTP_STATE_BANNER:
		return "waiting for greeting";
	case SMTP_STATE_BODY:
		return "sending message data";
	case SMTP_STATE_DOT:
		return "waiting for reply to end of data";
	case SMTP_STATE_TLS_IMPLICIT:
	case SMTP_STATE_TLS_HANDSHAKE:
		return "during TLS handshake";
	case SMTP_STATE_IDLE:
		return "while idle";
	case SMTP_STATE_MAIL:
		return "waiting for reply to MAIL FROM";
	case SMTP_STATE_RCPT:
		return "waiting for reply to RCPT TO";
	case SMTP_STATE_DATA:
		return "waiting for reply to DATA";
	case SMTP_STATE_DRAIN:
		return "waiting for replies to pipelined commands";
	default:
		snprintf(buf, len, "waiting for reply to %s", s->last_cmd);
		return buf;
	}
}

/* fill wbuf with the next dot-stuffed chunk of the message, then the tail */
static void body_refill(struct smtp_session *s)
{
	const char *d = s->job->data;
	size_t len = s->job->data_len;
	size_t cap = sizeof(s->wbuf);

	s->wlen = s->woff = 0;
	while (s->data_off < len && cap - s->wlen >= 2) {
		const char *p = d + s->data_off;
		size_t rem = len - s->data_off, room, n;
		const char *nl;

		if (s->bol && *p == '.')
			s->wbuf[s->wlen++] = '.';
		room = cap - s->wlen;
		n = rem < room ? rem : room;
		nl = memchr(p, '\n', n);
		if (nl != NULL)
			n = (size_t)(nl - p) + 1;
		memcpy(s->wbuf + s->wlen, p, n);
		s->wlen += n;
		s->data_off += n;
		s->bol = nl != NULL;
	}
	if (s->data_off >= len && s->wlen + 5 <= cap) {
		if (len == 0 || d[len - 1] != '\n') {
			if (len > 0 && d[len - 1] == '\r') {
				s->wbuf[s->wlen++] = '\n';
			} else {
				s->wbuf[s->wlen++] = '\r';
				s->wbuf[s->wlen++] = '\n';
			}
		} else if (len < 2 || d[len - 2] != '\r') {
			/* bare LF at the end: close the line properly */
			s->wbuf[s->wlen++] = '\r';
			s->wbuf[s->wlen++] = '\n';
		}
		memcpy(s->wbuf + s->wlen, ".\r\n", 3);
		s->wlen += 3;
		s->body_tail = 1;
	}
}

/* flush - write what is pending. 1 progress, 0 blocked/nothing, -1 closed. */
static int flush(struct smtp_session *s)
{
	int progress = 0;
	char err[400], text[1024], wb[64];

	for (;;) {
		ssize_t n;

		if (s->woff >= s->wlen) {
			wipe_wbuf(s);
			s->wlen = s->woff = 0;
			if (txn_refill(s))
				continue;   /* the rest of a pipelined group */
			if (s->state != SMTP_STATE_BODY)
				return progress;
			if (s->body_tail) {
				set_state(s, SMTP_STATE_DOT);
				snprintf(s->last_cmd, sizeof(s->last_cmd), "end of data");
				return 1;
			}
			body_refill(s);
			continue;
		}
		if (s->tls_active || s->tls != NULL) {
			s->tls_want_write = 0;
			n = smtp_tls_write(s->tls, s->wbuf + s->woff, s->wlen - s->woff, err, sizeof(err));
			if (n == SMTP_TLS_WANT_READ)
				return progress;
			if (n == SMTP_TLS_WANT_WRITE) {
				s->tls_want_write = 1;
				return progress;
			}
			if (n < 0) {
				snprintf(text, sizeof(text), "%s %s", err, what_waiting(s, wb, sizeof(wb)));
				conn_fail(s, text);
				return -1;
			}
		} else {
			n = send(s->fd, s->wbuf + s->woff, s->wlen - s->woff, MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				return progress;
			if (n < 0) {
				snprintf(text, sizeof(text), "write to %s failed %s: %s", s->peer,
				    what_waiting(s, wb, sizeof(wb)), strerror(errno));
				conn_fail(s, text);
				return -1;
			}
		}
		s->woff += (size_t)n;
		progress = 1;
		if (s->state == SMTP_STATE_BODY)
			set_state(s, SMTP_STATE_BODY);   /* each write restarts the block timer */
	}
}

/* read_some - 1 got bytes, 0 nothing now, -1 closed. */
static int read_some(struct smtp_session *s)
{
	char err[400], text[1024], wb[64];
	ssize_t n;

	if (s->rlen >= sizeof(s->rbuf))
		return 0;
	if (s->tls_active) {
		s->tls_want_write = 0;
		n = smtp_tls_read(s->tls, s->rbuf + s->rlen, sizeof(s->rbuf) - s->rlen, err, sizeof(err));
		if (n == SMTP_TLS_WANT_READ)
			return 0;
		if (n == SMTP_TLS_WANT_WRITE) {
			s->tls_want_write = 1;
			return 0;
		}
		if (n == SMTP_TLS_CLOSED)
			n = 0;
		else if (n < 0) {
			snprintf(text, sizeof(text), "%s %s", err, what_waiting(s, wb, sizeof(wb)));
			conn_fail(s, text);
			return -1;
		}
	} else {
		n = recv(s->fd, s->rbuf + s->rlen, sizeof(s->rbuf) - s->rlen, 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		if (n < 0) {
			snprintf(text, sizeof(text), "read from %s failed %s: %s", s->peer,
			    what_waiting(s, wb, sizeof(wb)), strerror(errno));
			conn_fail(s, text);
			return -1;
		}
	}
	if (n == 0) {
		snprintf(text, sizeof(text), "connection closed by %s %s", s->peer,
		    what_waiting(s, wb, sizeof(wb)));
		conn_fail(s, text);
		return -1;
	}
	s->rlen += (size_t)n;
	return 1;
}

/* parse_replies - handle complete replies in rbuf. 1 handled some, 0 none, -1 closed. */
static int parse_replies(struct smtp_session *s)
{
	int handled = 0;

	while (s->rlen > 0 && s->state != SMTP_STATE_CLOSED) {
		struct smtp_reply r;
		size_t used = 0;
		int rc = smtp_reply_parse(s->rbuf, s->rlen, &r, &used);

		if (rc == 0) {
			if (s->rlen >= sizeof(s->rbuf)) {
				conn_fail(s, "protocol error: reply too long");
				return -1;
			}
			break;
		}
		if (rc < 0 || used == 0 || used > s->rlen) {
			char text[1024];
			snprintf(text, sizeof(text), "protocol error: malformed reply from %s", s->peer);
			conn_fail(s, text);
			return -1;
		}
		memmove(s->rbuf, s->rbuf + used, s->rlen - used);
		s->rlen -= used;
		handle_reply(s, &r);
		handled = 1;
	}
	return s->state == SMTP_STATE_CLOSED ? -1 : handled;
}

/* handshake_step - 1 done, 0 waiting, -1 failed (closed). */
static int handshake_step(struct smtp_session *s)
{
	char err[400], text[1024], desc[128];
	int rc = smtp_tls_handshake(s->tls, err, sizeof(err));

	if (rc == SMTP_TLS_WANT_READ) {
		s->tls_want_write = 0;
		return 0;
	}
	if (rc == SMTP_TLS_WANT_WRITE) {
		s->tls_want_write = 1;
		return 0;
	}
	if (rc != 0) {
		snprintf(text, sizeof(text), "TLS handshake with %s failed: %s", s->peer, err);
		conn_fail(s, text);
		return -1;
	}
	s->tls_active = 1;
	s->tls_want_write = 0;
	smtp_tls_describe(s->tls, desc, sizeof(desc));
	slog(s, 1, "TLS established", NULL, 0, "tls", desc,
	    "cert", s->target.no_verify ? "not verified" : "verified", NULL);
	if (s->state == SMTP_STATE_TLS_IMPLICIT) {
		set_state(s, SMTP_STATE_BANNER);
	} else {
		s->ext = 0;
		s->size_limit = 0;
		send_ehlo(s);
	}
	return 1;
}

static void pump(struct smtp_session *s)
{
	for (;;) {
		int progress = 0, rc;

		if (s->state == SMTP_STATE_CLOSED)
			return;
		if (s->state == SMTP_STATE_TLS_IMPLICIT || s->state == SMTP_STATE_TLS_HANDSHAKE) {
			if (handshake_step(s) <= 0)
				return;
			continue;
		}
		if (s->woff < s->wlen || s->state == SMTP_STATE_BODY) {
			rc = flush(s);
			if (rc < 0)
				return;
			progress |= rc;
		}
		if (waiting_state(s->state)) {
			rc = read_some(s);
			if (rc < 0)
				return;
			progress |= rc;
			rc = parse_replies(s);
			if (rc < 0)
				return;
			progress |= rc;
		}
		if (!progress)
			return;
	}
}

void smtp_session_on_events(struct smtp_session *s, uint32_t events)
{
	if (s->state == SMTP_STATE_CLOSED)
		return;
	if (s->state == SMTP_STATE_CONNECT) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		connect_done(s);
		if (s->state == SMTP_STATE_CLOSED)
			return;
	}
	pump(s);
}

void smtp_session_on_timeout(struct smtp_session *s)
{
	char text[1024], wb[64];

	switch (s->state) {
	case SMTP_STATE_CLOSED:
		return;
	case SMTP_STATE_IDLE:
		slog(s, 0, "idle timeout, closing", NULL, 0, NULL);
		smtp_session_quit(s);
		pump(s);
		return;
	case SMTP_STATE_QUIT:
		close_now(s);
		return;
	case SMTP_STATE_CONNECT:
		connect_timed_out(s);
		return;
	default:
		snprintf(text, sizeof(text), "timeout %s (%s)", what_waiting(s, wb, sizeof(wb)), s->peer);
		break;
	}
	conn_fail(s, text);
}

uint32_t smtp_session_events(const struct smtp_session *s)
{
	uint32_t ev = 0;

	switch (s->state) {
	case SMTP_STATE_CLOSED:
		return 0;
	case SMTP_STATE_CONNECT:
		return EPOLLOUT;
	case SMTP_STATE_TLS_IMPLICIT:
	case SMTP_STATE_TLS_HANDSHAKE:
		return s->tls_want_write ? EPOLLOUT : EPOLLIN;
	default:
		break;
	}
	if (s->rlen < sizeof(s->rbuf))
		ev |= EPOLLIN;
	if (s->woff < s->wlen || s->state == SMTP_STATE_BODY || s->tls_want_write)
		ev |= EPOLLOUT;
	return ev;
}

void smtp_session_free(struct smtp_session *s)
{
	if (s == NULL)
		return;
	close_now(s);
	if (s->ai_list != NULL)
		freeaddrinfo(s->ai_list);
	smtp_auth_wipe(s->target.pass, sizeof(s->target.pass));
	smtp_auth_wipe(s, sizeof(*s));
	free(s);
}
