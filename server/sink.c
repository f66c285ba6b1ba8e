/*
 * sink.c - the capture SMTP server behind `txmail sink` and `run --dev`.
 *
 * Owns one listening socket, its client sockets and one thread that drives
 * them all with poll(2). Each client is a small SMTP state machine
 * (greeting, HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT); pipelined
 * input is handled by processing every complete line in the buffer. Each
 * accepted message is written byte for byte (after dot-unstuffing) to
 * <dir>/tmp/<name> and renamed to <dir>/<name>, name "<unix ms>-<seq>.eml";
 * the 250 reply is sent only after the rename. The envelope (MAIL FROM
 * and the accepted RCPT addresses) is kept per transaction, capped at
 * SINK_ADDR_MAX octets per address. Without hooks, each recipient's local
 * part picks the answer (sink.h: the pure sink_behaviour_for,
 * sink_rcpt_reply and sink_data_reply decide; the attempt table behind
 * defer+ is capped at SINK_TRIES_CAP entries). A slow+ answer is held in
 * the client (held, held_until) and sent by the loop when due, reading
 * nothing more from that client meanwhile, so no other session waits. With
 * hooks (sink.h) the caller decides on each recipient and takes each
 * message instead.
 *
 * It must never relay, deliver or alter mail, never block on a single
 * client (all sockets are non-blocking), and never grow a buffer without a
 * cap: command lines are capped at SINK_LINE_MAX, and each listener's
 * struct sink_limits (sink.h) caps messages, recipients, clients (in all
 * and per peer) and time (idle, and the whole DATA phase); no reply is
 * produced while SINK_OUT_HIGH octets of output wait for a client that
 * does not read, so the memory held stays under the bound sink.h states.
 */
#include "sink.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "health.h"
#include "log.h"
#include "util.h"

#define SINK_LINE_MAX 4096                    /* command / data line, octets incl. CRLF */
#define SINK_INBUF (64 * 1024)                /* per-client read buffer */
#define SINK_OUT_HIGH (256 * 1024)            /* stop reading while this much output is pending */
#define SINK_IDLE_MS ((int64_t)5 * 60 * 1000)
#define SINK_DATA_MS ((int64_t)10 * 60 * 1000)
#define SINK_REPLY_MAX 1024                   /* longest reply line we produce (EHLO's) */
#define SINK_REFUSED_LOG_MS 10000             /* refused connections: one line per this */
#define SINK_BEAT_MS 1000                     /* hooks.loop: the thread wakes at least this often */
_Static_assert(SINK_INBUF + SINK_OUT_HIGH + 64 * 1024 <= SINK_CLIENT_OVERHEAD, "raise SINK_CLIENT_OVERHEAD");
#define SINK_MID_MAX 998                      /* Message-ID kept for the defer+ count */

enum sink_state {
	SINK_ST_INIT = 0,   /* greeted, waiting for HELO/EHLO */
	SINK_ST_READY,      /* HELO done, no transaction */
	SINK_ST_MAIL,       /* MAIL accepted, no recipient yet */
	SINK_ST_RCPT,       /* at least one recipient */
	SINK_ST_DATA,       /* reading message data */
};

struct sink_client {
	int fd;
	enum sink_state state;
	char in[SINK_INBUF];
	size_t in_len;
	char *out;
	size_t out_len, out_off, out_cap;
	char *msg;
	size_t msg_len, msg_cap;
	int msg_too_big;
	size_t msg_seen;     /* DATA octets received this transaction (saturating), kept or not */
	int64_t data_until;  /* monotonic deadline of the DATA phase; 0 outside DATA */
	unsigned char peer_key[17];   /* family byte + address (IPv6: its /64), for max_per_peer */
	char peer[INET6_ADDRSTRLEN];  /* for log lines */
	int data_bol;        /* DATA: next byte starts a line */
	int nrcpt;
	char mail_from[SINK_ADDR_MAX + 1];
	char **rcpts;                        /* nrcpt accepted addresses */
	char held[256];      /* slow+: the reply waiting to be sent ... */
	int64_t held_until;  /* ... at this monotonic time; 0: none (input is not read meanwhile) */
	int closing;         /* close once output is flushed */
	int64_t last_ms;     /* monotonic time of last activity */
};

struct sink {
	int lfd;
	int efd;             /* eventfd: sink_stop wakes the loop */
	char *dir;
	char host[256];
	struct sink_hooks hooks;
	int has_hooks;
	struct sink_limits lim;
	unsigned long refused;      /* connections refused since the last line about it */
	int64_t refused_log_ms;     /* monotonic time of that line */
	struct sink_tries *tries;   /* without hooks: defer+ attempts */
	enum sink_behaviour beh[SINK_RCPT_MAX];   /* end of DATA: per recipient */
	unsigned attempt[SINK_RCPT_MAX];
	unsigned long seq;
	pthread_t thr;
	int thr_started;
	struct sink_client *clients[SINK_CLIENTS_MAX];
	size_t nclients;
};

struct sink_limits sink_limits_default(void)
{
	struct sink_limits l = {
		.max_msg = SINK_MSG_MAX,
		.max_clients = SINK_CLIENTS_MAX,
		.max_per_peer = SINK_CLIENTS_MAX,
		.max_rcpts = SINK_RCPT_MAX,
		.idle_ms = SINK_IDLE_MS,
		.data_ms = SINK_DATA_MS,
	};

	return l;
}

/* sink_limits_fill - l with each zero (or out of range) field taken from the defaults. */
static struct sink_limits sink_limits_fill(const struct sink_limits *l)
{
	struct sink_limits d = sink_limits_default(), r = *l;

	if (r.max_msg == 0 || r.max_msg > d.max_msg)
		r.max_msg = d.max_msg;
	if (r.max_clients <= 0 || r.max_clients > d.max_clients)
		r.max_clients = d.max_clients;
	if (r.max_per_peer <= 0 || r.max_per_peer > r.max_clients)
		r.max_per_peer = r.max_clients;
	if (r.max_rcpts <= 0 || r.max_rcpts > d.max_rcpts)
		r.max_rcpts = d.max_rcpts;
	if (r.idle_ms <= 0)
		r.idle_ms = d.idle_ms;
	if (r.data_ms <= 0)
		r.data_ms = d.data_ms;
	return r;
}

/* ---- answers by local part (pure) ------------------------------------------ */

static const struct {
	const char *word;
	enum sink_behaviour b;
} sink_words[] = {
	{ "bounce", SINK_BEHAVE_BOUNCE },
	{ "defer", SINK_BEHAVE_DEFER },
	{ "full", SINK_BEHAVE_FULL },
	{ "reject", SINK_BEHAVE_REJECT },
	{ "slow", SINK_BEHAVE_SLOW },
};

enum sink_behaviour sink_behaviour_for(const char *addr)
{
	const char *at = strrchr(addr, '@');
	size_t local = at ? (size_t)(at - addr) : strlen(addr);
	const char *plus = memchr(addr, '+', local);
	size_t n = plus ? (size_t)(plus - addr) : local;
	size_t i;

	for (i = 0; i < sizeof(sink_words) / sizeof(sink_words[0]); i++)
		if (strlen(sink_words[i].word) == n && strncasecmp(addr, sink_words[i].word, n) == 0)
			return sink_words[i].b;
	return SINK_BEHAVE_ACCEPT;
}

const char *sink_behaviour_name(enum sink_behaviour b)
{
	size_t i;

	for (i = 0; i < sizeof(sink_words) / sizeof(sink_words[0]); i++)
		if (sink_words[i].b == b)
			return sink_words[i].word;
	return "accept";
}

const char *sink_rcpt_reply(enum sink_behaviour b)
{
	if (b == SINK_BEHAVE_BOUNCE)
		return "550 5.1.1 Recipient address rejected: user unknown (txmail dev sink: bounce+)";
	return NULL;
}

const char *sink_data_reply(const enum sink_behaviour *b, const unsigned *attempt, size_t n,
    int *delay_ms)
{
	int full = 0, reject = 0, defer = 0;
	size_t i;

	*delay_ms = 0;
	for (i = 0; i < n; i++) {
		if (b[i] == SINK_BEHAVE_FULL)
			full = 1;
		else if (b[i] == SINK_BEHAVE_REJECT)
			reject = 1;
		else if (b[i] == SINK_BEHAVE_DEFER && attempt[i] <= SINK_DEFER_TIMES)
			defer = 1;
		else if (b[i] == SINK_BEHAVE_SLOW)
			*delay_ms = SINK_SLOW_MS;
	}
	if (full)
		return "552 5.2.2 Mailbox full (txmail dev sink: full+)";
	if (reject)
		return "554 5.7.1 Message refused by policy (txmail dev sink: reject+)";
	if (defer)
		return "451 4.3.0 Temporary failure, try again later (txmail dev sink: defer+)";
	return NULL;
}

/* sink_header_is - line [p, p+n) starts with field name `name` and a colon; its value, or NULL. */
static const char *sink_header_is(const char *p, size_t n, const char *name)
{
	size_t k = strlen(name);

	if (n <= k || strncasecmp(p, name, k) != 0 || p[k] != ':')
		return NULL;
	return p + k + 1;
}

int sink_message_id(const char *msg, size_t len, char *out, size_t outlen)
{
	const char *p = msg, *end = msg + len, *v = NULL;
	size_t o = 0;

	if (outlen == 0)
		return -1;
	while (p < end) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		const char *eol = lf ? lf : end, *next = lf ? lf + 1 : end;
		size_t n = (size_t)(eol - p);

		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (v != NULL) {
			if (n == 0 || (p[0] != ' ' && p[0] != '\t'))
				break;          /* the field ends where a line does not continue it */
			v = p;
		} else if (n == 0) {
			return -1;          /* end of the header section */
		} else if ((v = sink_header_is(p, n, "Message-ID")) == NULL) {
			p = next;
			continue;
		}
		for (; v < p + n; v++) {
			if (o == 0 && (*v == ' ' || *v == '\t'))
				continue;
			if (o + 1 >= outlen)
				return -1;
			out[o++] = *v;
		}
		p = next;
	}
	while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\t'))
		o--;
	out[o] = '\0';
	return o > 0 ? 0 : -1;
}

/* ---- the defer+ attempt table ---------------------------------------------- */

struct sink_try {
	uint64_t key;
	int64_t seen_ms;
	unsigned count;
};

struct sink_tries {
	size_t cap, n;
	int64_t ttl_ms;
	struct sink_try e[];
};

struct sink_tries *sink_tries_new(size_t cap, int64_t ttl_ms)
{
	struct sink_tries *t;

	if (cap == 0 || ttl_ms <= 0 || cap > (SIZE_MAX - sizeof(*t)) / sizeof(t->e[0]))
		return NULL;
	t = calloc(1, sizeof(*t) + cap * sizeof(t->e[0]));
	if (!t)
		return NULL;
	t->cap = cap;
	t->ttl_ms = ttl_ms;
	return t;
}

void sink_tries_free(struct sink_tries *t)
{
	free(t);
}

size_t sink_tries_count(const struct sink_tries *t)
{
	return t->n;
}

/* sink_fnv - FNV-1a over s (lower-cased when fold), continuing from h. */
static uint64_t sink_fnv(uint64_t h, const char *s, int fold)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (fold && ch >= 'A' && ch <= 'Z')
			ch = (unsigned char)(ch - 'A' + 'a');
		h = (h ^ ch) * 0x100000001b3ULL;
	}
	return h;
}

unsigned sink_tries_hit(struct sink_tries *t, const char *msg, const char *rcpt, int64_t now_ms)
{
	uint64_t key = sink_fnv(sink_fnv(0xcbf29ce484222325ULL, msg, 0) * 0x100000001b3ULL, rcpt, 1);
	size_t i, j, old;

	for (i = 0; i < t->n; i++) {
		struct sink_try *e = &t->e[i];

		if (e->key != key)
			continue;
		if (now_ms - e->seen_ms >= t->ttl_ms)
			e->count = 0;
		if (e->count < UINT_MAX)
			e->count++;
		e->seen_ms = now_ms;
		return e->count;
	}
	for (i = 0, j = 0; i < t->n; i++)     /* forget what has expired */
		if (now_ms - t->e[i].seen_ms < t->ttl_ms)
			t->e[j++] = t->e[i];
	t->n = j;
	if (t->n == t->cap) {                 /* full: the least recently seen makes room */
		for (i = 1, old = 0; i < t->n; i++)
			if (t->e[i].seen_ms < t->e[old].seen_ms)
				old = i;
		t->e[old] = t->e[--t->n];
	}
	t->e[t->n++] = (struct sink_try){ .key = key, .seen_ms = now_ms, .count = 1 };
	return 1;
}

/* ---- output -------------------------------------------------------------- */

static int sink_out_append(struct sink_client *c, const char *p, size_t n)
{
	size_t pending = c->out_len - c->out_off;

	if (c->out_off > 0 && c->out_off == c->out_len) {
		c->out_off = 0;
		c->out_len = 0;
		pending = 0;
	}
	if (c->out_len + n > c->out_cap) {
		size_t need, cap;
		char *nb;

		if (c->out_off > 0) {
			memmove(c->out, c->out + c->out_off, pending);
			c->out_len = pending;
			c->out_off = 0;
		}
		if (n > SIZE_MAX / 2 - c->out_len)
			return -1;
		need = c->out_len + n;
		cap = c->out_cap ? c->out_cap : 1024;
		while (cap < need)
			cap *= 2;
		if (cap != c->out_cap) {
			nb = realloc(c->out, cap);
			if (!nb)
				return -1;
			c->out = nb;
			c->out_cap = cap;
		}
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return 0;
}

static void sink_reply(struct sink_client *c, const char *text)
{
	size_t n = strlen(text);

	if (sink_out_append(c, text, n) < 0 || sink_out_append(c, "\r\n", 2) < 0)
		c->closing = 2;     /* out of memory: drop the client */
}

/* sink_flush - write pending output; 0, or -1 when the connection is dead. */
static int sink_flush(struct sink_client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
		    MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		c->out_off += (size_t)w;
	}
	c->out_off = 0;
	c->out_len = 0;
	return 0;
}

/* ---- message files ---------------------------------------------------------- */

static int sink_mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t len = util_strlcpy(buf, path, sizeof(buf));
	size_t i;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	for (i = 1; i <= len; i++) {
		if (buf[i] == '/' || buf[i] == '\0') {
			char save = buf[i];

			buf[i] = '\0';
			if (mkdir(buf, 0755) < 0 && errno != EEXIST)
				return -1;
			buf[i] = save;
		}
	}
	return 0;
}

static int sink_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* sink_store - write msg to <dir>/<name> via <dir>/tmp; 0 or -1 (errno-ish text in err). */
static int sink_store(struct sink *s, const char *msg, size_t len, char *name, size_t namelen)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	int fd = -1, rc = -1, n;

	n = snprintf(name, namelen, "%lld-%lu.eml", (long long)util_now_ms(), ++s->seq);
	if (n < 0 || (size_t)n >= namelen)
		goto out;
	n = snprintf(tmp, sizeof(tmp), "%s/tmp/%s", s->dir, name);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		goto out;
	n = snprintf(dst, sizeof(dst), "%s/%s", s->dir, name);
	if (n < 0 || (size_t)n >= sizeof(dst))
		goto out;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		goto out;
	if (sink_write_all(fd, msg, len) < 0)
		goto out;
	if (close(fd) < 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, dst) < 0)
		goto out;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0) {
		log_warn("sink cannot store message", "file=%s error=%s", tmp, strerror(errno));
		unlink(tmp);
	}
	return rc;
}

/* ---- the SMTP state machine ---------------------------------------------- */

static void sink_free_rcpts(struct sink_client *c)
{
	int i;

	if (c->rcpts) {
		for (i = 0; i < c->nrcpt; i++)
			free(c->rcpts[i]);
		free(c->rcpts);
	}
	c->rcpts = NULL;
	c->mail_from[0] = '\0';
}

static void sink_reset_txn(struct sink_client *c)
{
	sink_free_rcpts(c);
	free(c->msg);
	c->msg = NULL;
	c->msg_len = 0;
	c->msg_cap = 0;
	c->msg_too_big = 0;
	c->msg_seen = 0;
	c->data_until = 0;
	c->nrcpt = 0;
	if (c->state != SINK_ST_INIT)
		c->state = SINK_ST_READY;
}

static int sink_msg_append(struct sink *s, struct sink_client *c, const char *p, size_t n)
{
	size_t max = s->lim.max_msg;

	c->msg_seen = n > SIZE_MAX - c->msg_seen ? SIZE_MAX : c->msg_seen + n;
	if (c->msg_too_big)
		return 0;
	if (n > max - c->msg_len) {
		/* past the cap: drop what was kept at once, count and discard the rest */
		c->msg_too_big = 1;
		free(c->msg);
		c->msg = NULL;
		c->msg_len = 0;
		c->msg_cap = 0;
		return 0;
	}
	if (c->msg_len + n > c->msg_cap) {
		size_t cap = c->msg_cap ? c->msg_cap : 16 * 1024;
		char *nb;

		while (cap < c->msg_len + n)
			cap *= 2;
		if (cap > max)
			cap = max;
		nb = realloc(c->msg, cap);
		if (!nb)
			return -1;
		c->msg = nb;
		c->msg_cap = cap;
	}
	memcpy(c->msg + c->msg_len, p, n);
	c->msg_len += n;
	return 0;
}

#define SINK_ID_MAX 96

/*
 * sink_msg_id - the local part of a Message-ID field body (txmail writes
 * "<msg_id@helo name>"), for the lines about a message; 0, or -1 when it
 * is not of that form ([A-Za-z0-9_-] before the '@', shorter than outlen).
 */
static int sink_msg_id(const char *mid, char *out, size_t outlen)
{
	size_t k = 0;

	if (outlen == 0 || *mid++ != '<')
		return -1;
	for (; k + 1 < outlen && (isalnum((unsigned char)*mid) || *mid == '_' || *mid == '-'); mid++)
		out[k++] = *mid;
	out[k] = '\0';
	return k > 0 && *mid == '@' ? 0 : -1;
}

/* sink_answer - send text now, or hold it for delay_ms (slow+). */
static void sink_answer(struct sink_client *c, const char *text, int delay_ms)
{
	if (delay_ms <= 0) {
		sink_reply(c, text);
		return;
	}
	util_strlcpy(c->held, text, sizeof(c->held));
	c->held_until = util_mono_ms() + delay_ms;
}

/*
 * sink_refused_by - the recipient whose behaviour gave the end-of-DATA
 * refusal (same precedence as sink_data_reply: full, reject, defer).
 */
static size_t sink_refused_by(const enum sink_behaviour *b, const unsigned *attempt, size_t n)
{
	static const enum sink_behaviour order[] = { SINK_BEHAVE_FULL, SINK_BEHAVE_REJECT, SINK_BEHAVE_DEFER };
	size_t i, k;

	for (k = 0; k < sizeof(order) / sizeof(order[0]); k++)
		for (i = 0; i < n; i++)
			if (b[i] == order[k] && (b[i] != SINK_BEHAVE_DEFER || attempt[i] <= SINK_DEFER_TIMES))
				return i;
	return 0;
}

/* sink_end_plain - end of DATA without hooks: answer by local part, store what is accepted. */
static void sink_end_plain(struct sink *s, struct sink_client *c)
{
	enum sink_behaviour *b = s->beh;
	unsigned *attempt = s->attempt;
	char mid[SINK_MID_MAX + 1], id[SINK_ID_MAX], name[96], reply[160], held[32];
	const char *key, *refusal;
	const char *msg = c->msg ? c->msg : "";
	int64_t now = util_now_ms();
	size_t i, n = (size_t)c->nrcpt;
	int delay = 0;

	if (sink_message_id(msg, c->msg_len, mid, sizeof(mid)) != 0)
		mid[0] = '\0';
	if (sink_msg_id(mid, id, sizeof(id)) != 0)
		id[0] = '\0';     /* not txmail's "<msg_id@helo>": the lines have no msg_id */
	key = mid[0] ? mid : c->mail_from;   /* no Message-ID: count per sender and recipient */
	if (n > SINK_RCPT_MAX)
		n = SINK_RCPT_MAX;    /* cannot happen: RCPT stops at the cap */
	for (i = 0; i < n; i++) {
		b[i] = sink_behaviour_for(c->rcpts[i]);
		attempt[i] = b[i] == SINK_BEHAVE_DEFER ? sink_tries_hit(s->tries, key, c->rcpts[i], now) : 1;
	}
	refusal = sink_data_reply(b, attempt, n, &delay);
	util_fmt_duration(delay / 1000.0, held, sizeof(held));
	if (refusal) {
		const char *who = n ? c->rcpts[sink_refused_by(b, attempt, n)] : "";

		if (id[0])
			log_info("sink refused message", "msg_id=%s rcpt=%s rcpts=%zu code=%.3s held=%s",
			    id, who, n, refusal, held);
		else
			log_info("sink refused message", "rcpt=%s rcpts=%zu code=%.3s held=%s",
			    who, n, refusal, held);
		sink_answer(c, refusal, delay);
	} else if (sink_store(s, msg, c->msg_len, name, sizeof(name)) < 0) {
		sink_reply(c, "451 4.3.0 Error: cannot store message");
	} else {
		const char *who = n ? c->rcpts[0] : "";

		if (id[0])
			log_info("sink stored message", "msg_id=%s rcpt=%s file=%s size=%zu rcpts=%zu held=%s",
			    id, who, name, c->msg_len, n, held);
		else
			log_info("sink stored message", "rcpt=%s file=%s size=%zu rcpts=%zu held=%s",
			    who, name, c->msg_len, n, held);
		snprintf(reply, sizeof(reply), "250 2.0.0 Ok: queued as %s", name);
		sink_answer(c, reply, delay);
	}
}

static void sink_end_data(struct sink *s, struct sink_client *c)
{
	char reply[160];

	if (c->msg_too_big) {
		log_info("inbound message refused, too big", "listener=%s peer=%s size=%zu max=%zu",
		    s->has_hooks && s->hooks.name ? s->hooks.name : "txmail sink", c->peer, c->msg_seen,
		    s->lim.max_msg);
		sink_reply(c, "552 5.3.4 Error: message too big");
	} else if (s->has_hooks) {
		reply[0] = '\0';
		if (s->hooks.message(c->mail_from, (const char *const *)c->rcpts, (size_t)c->nrcpt,
		    c->msg ? c->msg : "", c->msg_len, reply, sizeof(reply), s->hooks.arg) == 0)
			sink_reply(c, "250 2.0.0 Ok");
		else
			sink_reply(c, reply[0] ? reply : "451 4.3.0 Error: cannot take the message");
	} else {
		sink_end_plain(s, c);
	}
	c->state = SINK_ST_READY;
	sink_reset_txn(c);
}

/* sink_data_line - one DATA line (or a chunk of an over-long one), with its line end. */
static void sink_data_line(struct sink *s, struct sink_client *c, const char *p, size_t n, int complete)
{
	if (c->data_bol && complete &&
	    ((n == 3 && memcmp(p, ".\r\n", 3) == 0) || (n == 2 && memcmp(p, ".\n", 2) == 0))) {
		sink_end_data(s, c);
		return;
	}
	if (c->data_bol && n > 0 && p[0] == '.') {
		p++;
		n--;
	}
	if (sink_msg_append(s, c, p, n) < 0)
		c->closing = 2;
	c->data_bol = complete;
}

/* sink_match - if line starts with verb (case-insensitive) followed by end or space, return the argument. */
static const char *sink_match(const char *line, const char *verb)
{
	size_t n = strlen(verb);

	if (strncasecmp(line, verb, n) != 0)
		return NULL;
	if (line[n] == '\0')
		return line + n;
	if (line[n] == ' ')
		return line + n + 1;
	return NULL;
}

/* sink_addr - the address of "FROM:<a> params" / "TO:<a>" (after the colon) into out; 0 or -1. */
static int sink_addr(const char *arg, char *out, size_t outlen)
{
	const char *p = arg, *e;
	size_t n;

	while (*p == ' ')
		p++;
	if (*p == '<') {
		e = strchr(++p, '>');
		if (!e)
			return -1;
	} else {
		for (e = p; *e && *e != ' '; e++)
			;
	}
	n = (size_t)(e - p);
	if (n >= outlen)
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/* sink_take_rcpt - decide on a recipient (hook or local part) and keep it; 0 accepted, else replied. */
static int sink_take_rcpt(struct sink *s, struct sink_client *c, const char *arg)
{
	char addr[SINK_ADDR_MAX + 1], reply[256] = "";
	const char *refusal;
	char **nr;

	if (sink_addr(arg, addr, sizeof(addr)) < 0) {
		sink_reply(c, "501 5.1.3 Error: bad recipient address syntax");
		return -1;
	}
	if (s->has_hooks) {
		if (s->hooks.rcpt && s->hooks.rcpt(addr, reply, sizeof(reply), s->hooks.arg) != 0) {
			sink_reply(c, reply[0] ? reply : "550 5.1.1 Error: recipient refused");
			return -1;
		}
	} else if ((refusal = sink_rcpt_reply(sink_behaviour_for(addr))) != NULL) {
		/* no msg_id: at RCPT the message (its Message-ID) has not been sent yet */
		log_info("sink refused recipient", "rcpt=%s from=%s code=%.3s", addr, c->mail_from, refusal);
		sink_reply(c, refusal);
		return -1;
	}
	nr = realloc(c->rcpts, ((size_t)c->nrcpt + 1) * sizeof(*nr));
	if (!nr || !(nr[c->nrcpt] = strdup(addr))) {
		if (nr)
			c->rcpts = nr;
		sink_reply(c, "452 4.3.0 Error: out of memory");
		return -1;
	}
	c->rcpts = nr;
	return 0;
}

static void sink_command(struct sink *s, struct sink_client *c, char *line)
{
	const char *arg;
	char buf[512];

	if ((arg = sink_match(line, "EHLO")) != NULL) {
		if (*arg == '\0') {
			sink_reply(c, "501 5.5.4 Syntax: EHLO hostname");
			return;
		}
		c->state = SINK_ST_READY;
		sink_reset_txn(c);
		snprintf(buf, sizeof(buf), "250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
		    "250-SIZE %zu\r\n250 ENHANCEDSTATUSCODES", s->host, s->lim.max_msg);
		sink_reply(c, buf);
	} else if ((arg = sink_match(line, "HELO")) != NULL) {
		if (*arg == '\0') {
			sink_reply(c, "501 5.5.4 Syntax: HELO hostname");
			return;
		}
		c->state = SINK_ST_READY;
		sink_reset_txn(c);
		snprintf(buf, sizeof(buf), "250 %s", s->host);
		sink_reply(c, buf);
	} else if ((arg = sink_match(line, "MAIL")) != NULL) {
		if (c->state == SINK_ST_INIT)
			sink_reply(c, "503 5.5.1 Error: send HELO/EHLO first");
		else if (c->state != SINK_ST_READY)
			sink_reply(c, "503 5.5.1 Error: nested MAIL command");
		else if (strncasecmp(arg, "FROM:", 5) != 0)
			sink_reply(c, "501 5.5.4 Syntax: MAIL FROM:<address>");
		else {
			const char *size = strcasestr(arg, " SIZE=");

			if (size && strtoull(size + 6, NULL, 10) > s->lim.max_msg) {
				sink_reply(c, "552 5.3.4 Message size exceeds fixed limit");
				return;
			}
			if (sink_addr(arg + 5, c->mail_from, sizeof(c->mail_from)) < 0) {
				sink_reply(c, "501 5.1.7 Error: bad sender address syntax");
				return;
			}
			c->state = SINK_ST_MAIL;
			c->nrcpt = 0;
			sink_reply(c, "250 2.1.0 Ok");
		}
	} else if ((arg = sink_match(line, "RCPT")) != NULL) {
		if (c->state != SINK_ST_MAIL && c->state != SINK_ST_RCPT)
			sink_reply(c, "503 5.5.1 Error: need MAIL command");
		else if (strncasecmp(arg, "TO:", 3) != 0)
			sink_reply(c, "501 5.5.4 Syntax: RCPT TO:<address>");
		else if (c->nrcpt >= s->lim.max_rcpts)
			sink_reply(c, "452 4.5.3 Error: too many recipients");
		else if (sink_take_rcpt(s, c, arg + 3) != 0)
			return;
		else {
			c->nrcpt++;
			c->state = SINK_ST_RCPT;
			sink_reply(c, "250 2.1.5 Ok");
		}
	} else if ((arg = sink_match(line, "DATA")) != NULL) {
		if (c->state != SINK_ST_RCPT)
			sink_reply(c, c->state == SINK_ST_MAIL ? "503 5.5.1 Error: need RCPT command"
			    : "503 5.5.1 Error: need MAIL command");
		else if (*arg != '\0')
			sink_reply(c, "501 5.5.4 Syntax: DATA");
		else {
			c->state = SINK_ST_DATA;
			c->data_bol = 1;
			c->msg_len = 0;
			c->msg_too_big = 0;
			c->msg_seen = 0;
			c->data_until = util_mono_ms() + s->lim.data_ms;
			sink_reply(c, "354 End data with <CR><LF>.<CR><LF>");
		}
	} else if (sink_match(line, "RSET") != NULL) {
		sink_reset_txn(c);
		sink_reply(c, "250 2.0.0 Ok");
	} else if (sink_match(line, "NOOP") != NULL) {
		sink_reply(c, "250 2.0.0 Ok");
	} else if (sink_match(line, "QUIT") != NULL) {
		sink_reply(c, "221 2.0.0 Bye");
		c->closing = 1;
	} else {
		sink_reply(c, "500 5.5.2 Error: command not recognized");
	}
}

/* sink_process - consume every complete line in c->in. */
static void sink_process(struct sink *s, struct sink_client *c)
{
	size_t off = 0;

	/* no reply past the high water: a client that does not read gets no more output */
	while (!c->closing && !c->held_until && off < c->in_len &&
	    c->out_len - c->out_off <= SINK_OUT_HIGH - SINK_REPLY_MAX) {
		char *start = c->in + off;
		size_t avail = c->in_len - off;
		char *lf = memchr(start, '\n', avail);
		size_t n, len;

		if (c->state == SINK_ST_DATA) {
			if (lf) {
				n = (size_t)(lf - start) + 1;
				sink_data_line(s, c, start, n, 1);
				off += n;
				continue;
			}
			if (avail < SINK_LINE_MAX)
				break;
			/* a long data line: keep a trailing CR for the next chunk */
			n = avail;
			if (start[n - 1] == '\r')
				n--;
			sink_data_line(s, c, start, n, 0);
			off += n;
			continue;
		}
		if (!lf) {
			if (avail >= SINK_LINE_MAX) {
				sink_reply(c, "500 5.5.2 Error: line too long");
				c->closing = 1;
			}
			break;
		}
		n = (size_t)(lf - start) + 1;
		if (n > SINK_LINE_MAX) {
			sink_reply(c, "500 5.5.2 Error: line too long");
			c->closing = 1;
			break;
		}
		len = (size_t)(lf - start);
		if (len > 0 && start[len - 1] == '\r')
			len--;
		start[len] = '\0';
		if (memchr(start, '\0', len) != NULL)
			sink_reply(c, "500 5.5.2 Error: NUL in command");
		else
			sink_command(s, c, start);
		off += n;
	}
	if (off > 0) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
}

/* ---- the loop ---------------------------------------------------------------- */

static void sink_client_free(struct sink_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	sink_free_rcpts(c);
	free(c->out);
	free(c->msg);
	free(c);
}

/*
 * sink_peer - the key max_per_peer counts by (a family byte, then an IPv4
 * address, or the /64 of an IPv6 one; IPv4-mapped IPv6 counts as IPv4) and
 * the address as text. Unknown families get key 0 (one shared bucket).
 */
static void sink_peer(const struct sockaddr_storage *ss, unsigned char key[17], char *text, size_t textlen)
{
	memset(key, 0, 17);
	util_strlcpy(text, "unknown", textlen);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		key[0] = 4;
		memcpy(key + 1, &in->sin_addr, 4);
		inet_ntop(AF_INET, &in->sin_addr, text, (socklen_t)textlen);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		const unsigned char *b = in6->sin6_addr.s6_addr;

		inet_ntop(AF_INET6, &in6->sin6_addr, text, (socklen_t)textlen);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			key[0] = 4;
			memcpy(key + 1, b + 12, 4);
		} else {
			key[0] = 6;
			memcpy(key + 1, b, 8);
		}
	}
}

/* sink_refuse - greet an excess connection with 421 and close it; the log line is rate-limited. */
static void sink_refuse(struct sink *s, int fd, const char *peer, const char *line, const char *reason)
{
	int64_t now = util_mono_ms();
	ssize_t w = send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);

	(void)w;
	close(fd);
	s->refused++;
	if (s->refused_log_ms != 0 && now - s->refused_log_ms < SINK_REFUSED_LOG_MS)
		return;
	log_warn("inbound connection refused, too many clients",
	    "listener=%s peer=%s reason=%s clients=%zu max_clients=%d max_per_peer=%d refused=%lu",
	    s->has_hooks && s->hooks.name ? s->hooks.name : "txmail sink", peer, reason, s->nclients,
	    s->lim.max_clients, s->lim.max_per_peer, s->refused);
	s->refused = 0;
	s->refused_log_ms = now;
}

static void sink_accept(struct sink *s)
{
	static const char busy[] = "421 4.7.0 Error: too many connections, try again later\r\n";
	static const char busy_peer[] = "421 4.7.0 Error: too many connections from your address, "
	    "try again later\r\n";

	for (;;) {
		struct sink_client *c;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		unsigned char key[17];
		char buf[320], peer[INET6_ADDRSTRLEN];
		size_t i, same = 0;
		int fd;

		memset(&ss, 0, sizeof(ss));
		fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("sink accept failed", "error=%s", strerror(errno));
			return;
		}
		sink_peer(&ss, key, peer, sizeof(peer));
		if (s->nclients >= (size_t)s->lim.max_clients) {
			sink_refuse(s, fd, peer, busy, "max_clients");
			continue;
		}
		for (i = 0; i < s->nclients; i++)
			if (memcmp(s->clients[i]->peer_key, key, sizeof(key)) == 0)
				same++;
		if (same >= (size_t)s->lim.max_per_peer) {
			sink_refuse(s, fd, peer, busy_peer, "max_per_peer");
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->state = SINK_ST_INIT;
		c->last_ms = util_mono_ms();
		memcpy(c->peer_key, key, sizeof(key));
		util_strlcpy(c->peer, peer, sizeof(c->peer));
		snprintf(buf, sizeof(buf), "220 %s %s ESMTP", s->host,
		    s->has_hooks && s->hooks.name ? s->hooks.name : "txmail sink");
		sink_reply(c, buf);
		if (sink_flush(c) < 0) {
			sink_client_free(c);
			continue;
		}
		s->clients[s->nclients++] = c;
	}
}

/* sink_read - read what is available; 0, or -1 when the client is gone. */
static int sink_read(struct sink *s, struct sink_client *c)
{
	int rounds;

	/* a bounded number of reads per wakeup, so one fast sender cannot starve the others */
	for (rounds = 0; rounds < 16; rounds++) {
		ssize_t r;

		if (c->in_len == sizeof(c->in)) {
			sink_process(s, c);
			if (c->in_len == sizeof(c->in)) {
				if (c->held_until || c->out_len - c->out_off > SINK_OUT_HIGH - SINK_REPLY_MAX)
					break;   /* waiting to answer: read more later */
				return -1;  /* cannot happen: lines are capped below the buffer */
			}
		}
		r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		if (r == 0) {
			/* peer finished sending: answer what it sent, then close */
			c->closing = c->closing ? c->closing : 1;
			break;
		}
		c->in_len += (size_t)r;
		c->last_ms = util_mono_ms();
		sink_process(s, c);
		if (c->closing || c->out_len - c->out_off > SINK_OUT_HIGH - SINK_REPLY_MAX)
			break;
	}
	return 0;
}

static void *sink_thread(void *arg)
{
	struct sink *s = arg;
	struct pollfd *pfd;
	size_t npfd = SINK_CLIENTS_MAX + 2;
	struct health_loop *hl = NULL;

	pfd = calloc(npfd, sizeof(*pfd));
	if (!pfd) {
		log_error("sink out of memory");
		return NULL;
	}
	if (s->has_hooks && s->hooks.loop != NULL)
		hl = health_register(s->hooks.loop, SINK_BEAT_MS + s->hooks.loop_wait_ms);
	for (;;) {
		int64_t now = util_mono_ms(), next = now + s->lim.idle_ms;
		size_t i, n = 0;
		int timeout, rc;

		health_beat(hl);
		if (hl != NULL && next > now + SINK_BEAT_MS)
			next = now + SINK_BEAT_MS;

		pfd[n++] = (struct pollfd){ .fd = s->efd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = s->lfd, .events = POLLIN };
		for (i = 0; i < s->nclients; i++) {
			struct sink_client *c = s->clients[i];
			short ev = 0;

			if (!c->closing && !c->held_until &&
			    c->out_len - c->out_off <= SINK_OUT_HIGH - SINK_REPLY_MAX)
				ev |= POLLIN;
			if (c->out_off < c->out_len)
				ev |= POLLOUT;
			pfd[n++] = (struct pollfd){ .fd = c->fd, .events = ev };
			if (c->last_ms + s->lim.idle_ms < next)
				next = c->last_ms + s->lim.idle_ms;
			if (c->data_until && c->data_until < next)
				next = c->data_until;
			if (c->held_until && c->held_until < next)
				next = c->held_until;
		}
		timeout = next <= now ? 0 : (int)(next - now);
		rc = poll(pfd, n, timeout);
		if (rc < 0 && errno != EINTR) {
			log_error("sink poll failed", "error=%s", strerror(errno));
			break;
		}
		if (rc > 0 && (pfd[0].revents & POLLIN))
			break;
		now = util_mono_ms();
		/* clients first: their pollfd slots match s->clients[i] */
		for (i = 0; i < s->nclients; i++) {
			struct sink_client *c = s->clients[i];
			short re = rc > 0 ? pfd[i + 2].revents : 0;
			int dead = 0;

			if (re & (POLLIN | POLLHUP | POLLERR))
				dead = sink_read(s, c) < 0;
			if (!dead && c->held_until && now >= c->held_until) {
				/* slow+: the held answer is due; then whatever was pipelined behind it */
				c->held_until = 0;
				c->last_ms = now;
				sink_reply(c, c->held);
				sink_process(s, c);
			}
			if (!dead && (c->out_off < c->out_len))
				dead = sink_flush(c) < 0;
			if (!dead && !c->closing && !c->held_until && c->in_len > 0 &&
			    c->out_len - c->out_off <= SINK_OUT_HIGH - SINK_REPLY_MAX) {
				/* lines left unanswered while output was high (the client reads again) */
				sink_process(s, c);
				if (c->out_off < c->out_len)
					dead = sink_flush(c) < 0;
			}
			if (!dead && c->closing == 2)
				dead = 1;
			if (!dead && c->closing && c->out_off >= c->out_len)
				dead = 1;
			if (!dead && (now - c->last_ms >= s->lim.idle_ms ||
			    (c->data_until && now >= c->data_until))) {
				log_info("inbound client cut, timeout",
				    "listener=%s peer=%s phase=%s received=%zu",
				    s->has_hooks && s->hooks.name ? s->hooks.name : "txmail sink", c->peer,
				    c->data_until && now >= c->data_until ? "data" : "idle", c->msg_seen);
				sink_reply(c, "421 4.4.2 Error: timeout exceeded");
				sink_flush(c);
				dead = 1;
			}
			pfd[i + 2].revents = 0;
			if (dead) {
				sink_client_free(c);
				s->clients[i] = s->clients[s->nclients - 1];
				pfd[i + 2] = pfd[s->nclients + 1];
				s->nclients--;
				i--;
			}
		}
		if (rc > 0 && (pfd[1].revents & POLLIN))
			sink_accept(s);
	}
	health_unregister(hl);
	free(pfd);
	return NULL;
}

/* ---- public -------------------------------------------------------------------- */

int
sink_listen_fd(const char *host, uint16_t port, uint16_t *bound, char *err, size_t errlen)
{
	struct addrinfo hints = { 0 }, *res = NULL, *ai;
	char portstr[8];
	int fd = -1, gai, one = 1;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
	gai = getaddrinfo(host && *host ? host : NULL, portstr, &hints, &res);
	if (gai != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gai));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0)
			break;
		snprintf(err, errlen, "cannot listen on %s:%u: %s", host, (unsigned)port,
		    strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return -1;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && bound) {
		if (ss.ss_family == AF_INET)
			*bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			*bound = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return fd;
}

static struct sink *sink_start_common(const char *host, uint16_t port, const char *dir,
    const struct sink_hooks *hooks, uint16_t *bound_port, char *err, size_t errlen)
{
	struct sink *s = NULL;
	char tmpdir[PATH_MAX];
	int n;

	if (hooks ? !hooks->message : (!dir || !*dir || strlen(dir) >= PATH_MAX - 64)) {
		snprintf(err, errlen, hooks ? "sink: no message hook" : "sink: bad directory");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "sink: out of memory");
		return NULL;
	}
	s->lfd = -1;
	s->efd = -1;
	if (hooks) {
		s->hooks = *hooks;
		s->has_hooks = 1;
		s->lim = sink_limits_fill(&hooks->limits);
	} else {
		s->lim = sink_limits_default();
		s->dir = strdup(dir);
		s->tries = sink_tries_new(SINK_TRIES_CAP, SINK_TRIES_TTL_MS);
		if (!s->dir || !s->tries) {
			snprintf(err, errlen, "sink: out of memory");
			goto fail;
		}
		n = snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", dir);
		if (n < 0 || (size_t)n >= sizeof(tmpdir) || sink_mkdir_p(tmpdir) < 0) {
			snprintf(err, errlen, "sink: cannot create %s: %s", tmpdir, strerror(errno));
			goto fail;
		}
	}
	if (gethostname(s->host, sizeof(s->host)) < 0 || !s->host[0])
		util_strlcpy(s->host, "localhost", sizeof(s->host));
	s->host[sizeof(s->host) - 1] = '\0';
	s->lfd = sink_listen_fd(host, port, bound_port, err, errlen);
	if (s->lfd < 0)
		goto fail;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0) {
		snprintf(err, errlen, "sink: eventfd: %s", strerror(errno));
		goto fail;
	}
	n = pthread_create(&s->thr, NULL, sink_thread, s);
	if (n != 0) {
		snprintf(err, errlen, "sink: cannot start thread: %s", strerror(n));
		goto fail;
	}
	s->thr_started = 1;
	return s;
fail:
	sink_stop(s);
	return NULL;
}

struct sink *sink_start(const char *host, uint16_t port, const char *dir,
    uint16_t *bound_port, char *err, size_t errlen)
{
	return sink_start_common(host, port, dir, NULL, bound_port, err, errlen);
}

struct sink *sink_start_hooks(const char *host, uint16_t port, const struct sink_hooks *hooks,
    uint16_t *bound_port, char *err, size_t errlen)
{
	if (!hooks) {
		snprintf(err, errlen, "sink: no hooks");
		return NULL;
	}
	return sink_start_common(host, port, NULL, hooks, bound_port, err, errlen);
}

void sink_stop(struct sink *s)
{
	size_t i;

	if (!s)
		return;
	if (s->thr_started) {
		uint64_t one = 1;
		ssize_t w = write(s->efd, &one, sizeof(one));

		(void)w;
		pthread_join(s->thr, NULL);
	}
	for (i = 0; i < s->nclients; i++)
		sink_client_free(s->clients[i]);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->efd >= 0)
		close(s->efd);
	free(s->dir);
	sink_tries_free(s->tries);
	free(s);
}

/* sink_parse_listen - "host:port" or "[v6]:port" into host and port; 0 or -1. */
static int sink_parse_listen(const char *arg, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *hs = arg, *he;
	char *end;
	unsigned long p;

	if (arg[0] == '[') {
		hs = arg + 1;
		he = strchr(hs, ']');
		if (!he || he[1] != ':')
			return -1;
		colon = he + 1;
	} else {
		colon = strrchr(arg, ':');
		if (!colon)
			return -1;
		he = colon;
	}
	if ((size_t)(he - hs) >= hostlen)
		return -1;
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end != '\0' || p > 65535)
		return -1;
	*port = (uint16_t)p;
	return 0;
}

static void sink_usage(FILE *f)
{
	fprintf(f, "usage: txmail sink [--listen host:port] [--dir DIR]\n"
	    "\n"
	    "Capture SMTP server: accepts mail and writes each message to\n"
	    "DIR/<unix ms>-<seq>.eml. Runs until SIGINT or SIGTERM. The recipient's\n"
	    "local part picks the answer (any domain; see README.md):\n"
	    "  bounce+x@  550 5.1.1 at RCPT\n"
	    "  defer+x@   451 4.3.0 at end of DATA, twice per message, then 250\n"
	    "  full+x@    552 5.2.2 at end of DATA\n"
	    "  reject+x@  554 5.7.1 at end of DATA\n"
	    "  slow+x@    250 after 5 s\n"
	    "Refused messages are not written.\n"
	    "\n"
	    "  --listen host:port  address to listen on (default 127.0.0.1:2525)\n"
	    "  --dir DIR           where messages are written (default ./var/mail)\n");
}

int sink_main(int argc, char **argv)
{
	char host[256] = "127.0.0.1", err[512];
	const char *dir = "./var/mail";
	uint16_t port = 2525, bound = 0;
	struct sink *s;
	sigset_t set;
	int i, sig = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			sink_usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
			if (sink_parse_listen(argv[++i], host, sizeof(host), &port) < 0) {
				fprintf(stderr, "txmail sink: bad --listen %s (want host:port)\n", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else {
			fprintf(stderr, "txmail sink: unknown argument %s\n", argv[i]);
			sink_usage(stderr);
			return 2;
		}
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	s = sink_start(host, port, dir, &bound, err, sizeof(err));
	if (!s) {
		log_error("sink cannot start", "error=%s", err);
		return 1;
	}
	log_info("sink listening", "addr=%s%s%s:%u dir=%s", strchr(host, ':') ? "[" : "", host,
	    strchr(host, ':') ? "]" : "", (unsigned)bound, dir);
	while (sigwait(&set, &sig) != 0)
		;
	log_info("sink stopping", "signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
	sink_stop(s);
	return 0;
}
