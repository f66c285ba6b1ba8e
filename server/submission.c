/*
 * submission.c - the SMTP submission listeners (submission.h): accepting,
 * TLS (STARTTLS and implicit, the certificate read again when it changes),
 * one thread per session with every read and write under a deadline, the
 * session state machine (EHLO, STARTTLS before AUTH, AUTH before MAIL, the
 * caps), and the hand-over of each message to the HTTP API's accept
 * (api_messages_submit) so that it is stored, signed, suppressed, reported
 * and shown exactly like a POST /v1/messages.
 *
 * What is refused and why is in docs/submission.md. Never logs a password
 * (an API key); the AUTH username is logged cleaned and cut.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "api.h"
#include "cidr.h"
#include "health.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "sink.h"
#include "store.h"
#include "submission.h"
#include "submit_msg.h"
#include "submit_proto.h"
#include "util.h"

#define SUBM_IN_CAP 8192            /* input buffer: a command line (<= SUBM_LINE_CAP) or a DATA chunk */
#define SUBM_LINE_CAP 2048          /* command line cap with CRLF: AUTH PLAIN's largest fits */
#define SUBM_OUT_CAP 4096           /* replies waiting for the flush */
#define SUBM_FAIL_SLOTS 1024        /* addresses whose AUTH failures are remembered */
#define SUBM_STACK (512 * 1024)
#define SUBM_ID_MAX 64

struct sub_fail {
	unsigned char key[17];
	unsigned count;
	int64_t last_ms;
};

struct sub_sess;

struct submission {
	const struct config *cfg;
	int fd[2];                  /* [0] STARTTLS, [1] implicit TLS; -1 when not open */
	uint16_t port[2];
	int wake[2];                /* the acceptor's self-pipe */
	pthread_t acceptor;
	int acceptor_started;
	atomic_int stopping;
	atomic_int reload;          /* SIGHUP asked for a reload */
	pthread_mutex_t mu;         /* everything below */
	pthread_cond_t cv;          /* a session ended */
	SSL_CTX *ctx;
	struct stat cert_st, key_st;
	struct sub_sess *sessions;
	int nsessions;
	struct store **idle;        /* store handles of ended sessions, for the next ones */
	int nidle;
	struct sub_fail fails[SUBM_FAIL_SLOTS];
	struct health_loop *loop;
};

struct sub_sess {
	struct submission *srv;
	struct sub_sess *next;
	int fd;
	int implicit;
	SSL *ssl;
	unsigned char peer[CIDR_ADDR_LEN];
	int peer_known;
	unsigned char peer_key[17];
	char peer_str[64];
	char sid[40];               /* "smtp_<ulid>": request_id of its messages and its log lines */
	int64_t session_deadline;
	char in[SUBM_IN_CAP];
	size_t inlen;
	char line[SUBM_LINE_CAP];   /* the command being handled */
	char out[SUBM_OUT_CAP];
	size_t outlen;
	int dead;                   /* I/O failed: nothing more is written */
	int ehlo;
	int authed;
	int token_fresh;            /* AUTH charged a token the first MAIL uses */
	char key[SUBM_SASL_FIELD_MAX + 1];
	size_t keylen;
	char user[80];              /* cleaned, for logs */
	struct keys_identity who;
	int auth_fails, errors;
	unsigned commands;
	struct store *store;
	/* the transaction */
	int in_mail;
	int smtputf8;
	char mail_from[SUBM_PATH_MAX + 1];
	char *rcpts[SUBMISSION_RCPTS_MAX];
	size_t nrcpts;
	unsigned messages;
};

/* --- TLS context ------------------------------------------------------------ */

static SSL_CTX *
sub_ctx_load(const char *cert, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	unsigned long e;

	if (ctx == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		e = ERR_get_error();
		snprintf(err, errlen, "certificate %s does not load: %s", cert,
		    ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e) : "unknown error");
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		e = ERR_get_error();
		snprintf(err, errlen, "key %s does not load: %s", key,
		    ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e) : "unknown error");
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "key %s does not match certificate %s", key, cert);
		goto fail;
	}
	ERR_clear_error();
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

static int
sub_stat_changed(const struct stat *a, const struct stat *b)
{
	return a->st_ino != b->st_ino || a->st_dev != b->st_dev || a->st_size != b->st_size ||
	    a->st_mtim.tv_sec != b->st_mtim.tv_sec || a->st_mtim.tv_nsec != b->st_mtim.tv_nsec ||
	    a->st_ctim.tv_sec != b->st_ctim.tv_sec || a->st_ctim.tv_nsec != b->st_ctim.tv_nsec;
}

/* sub_tls_check - read the pair again when forced or when either file changed (acceptor thread). */
static void
sub_tls_check(struct submission *s, int force)
{
	struct stat cs, ks;
	SSL_CTX *ctx, *old;
	char err[512];
	int changed;

	if (stat(s->cfg->submission_tls_cert, &cs) != 0 || stat(s->cfg->submission_tls_key, &ks) != 0) {
		if (force)
			log_error("submission certificate not reloaded: a file is missing", "cert=%s key=%s",
			    s->cfg->submission_tls_cert, s->cfg->submission_tls_key);
		return;
	}
	pthread_mutex_lock(&s->mu);
	changed = sub_stat_changed(&cs, &s->cert_st) || sub_stat_changed(&ks, &s->key_st);
	pthread_mutex_unlock(&s->mu);
	if (!changed && !force)
		return;
	ctx = sub_ctx_load(s->cfg->submission_tls_cert, s->cfg->submission_tls_key, err, sizeof(err));
	pthread_mutex_lock(&s->mu);
	s->cert_st = cs;   /* a pair that failed is tried again at its next change */
	s->key_st = ks;
	old = ctx != NULL ? s->ctx : NULL;
	if (ctx != NULL)
		s->ctx = ctx;
	pthread_mutex_unlock(&s->mu);
	if (ctx == NULL) {
		log_error("submission certificate not reloaded, the one in use is kept", "error=%s", err);
		return;
	}
	SSL_CTX_free(old);   /* sessions hold their own reference through their SSL */
	log_info("submission certificate loaded", "cert=%s reason=%s", s->cfg->submission_tls_cert,
	    force ? "reload" : "file changed");
}

/* --- failures per address ---------------------------------------------------------- */

/* sub_fail_delay - count one more failed AUTH from key: how long to wait before answering. */
static int64_t
sub_fail_delay(struct submission *s, const unsigned char key[17], int64_t now)
{
	struct sub_fail *slot = NULL, *oldest = &s->fails[0];
	unsigned n;

	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < SUBM_FAIL_SLOTS; i++) {
		struct sub_fail *f = &s->fails[i];

		if (f->count > 0 && now - f->last_ms > SUBMISSION_FAIL_FORGET_MS)
			f->count = 0;
		if (f->count > 0 && memcmp(f->key, key, sizeof(f->key)) == 0) {
			slot = f;
			break;
		}
		if (f->count == 0 ? oldest->count != 0 || f < oldest : oldest->count != 0 &&
		    f->last_ms < oldest->last_ms)
			oldest = f;
	}
	if (slot == NULL) {
		slot = oldest;
		memcpy(slot->key, key, sizeof(slot->key));
		slot->count = 0;
	}
	if (slot->count < 1000)
		slot->count++;
	slot->last_ms = now;
	n = slot->count;
	pthread_mutex_unlock(&s->mu);
	if (n > 5)
		return SUBMISSION_FAIL_MAX_MS;
	return SUBMISSION_FAIL_BASE_MS << (n - 1) < SUBMISSION_FAIL_MAX_MS ?
	    SUBMISSION_FAIL_BASE_MS << (n - 1) : SUBMISSION_FAIL_MAX_MS;
}

/* --- I/O under deadlines ------------------------------------------------------------ */

enum { SUB_IO_EOF = 0, SUB_IO_ERR = -1, SUB_IO_TIMEOUT = -2, SUB_IO_STOP = -3 };

/*
 * sub_wait - poll for ev until deadline (util_mono_ms), waking each second
 * to see a stop when stop_ok. 1 ready, SUB_IO_TIMEOUT, SUB_IO_STOP or SUB_IO_ERR.
 */
static int
sub_wait(struct sub_sess *c, short ev, int64_t deadline, int stop_ok)
{
	for (;;) {
		int64_t now = util_mono_ms(), left = deadline - now;
		struct pollfd p = { .fd = c->fd, .events = ev };
		int r;

		if (stop_ok && atomic_load(&c->srv->stopping))
			return SUB_IO_STOP;
		if (left <= 0)
			return SUB_IO_TIMEOUT;
		r = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
		if (r > 0)
			return (p.revents & (POLLERR | POLLNVAL)) && !(p.revents & (POLLIN | POLLHUP)) ?
			    SUB_IO_ERR : 1;
		if (r < 0 && errno != EINTR)
			return SUB_IO_ERR;
	}
}

/* sub_read - up to cap octets: > 0, SUB_IO_EOF or an SUB_IO_* error. */
static ssize_t
sub_read(struct sub_sess *c, char *buf, size_t cap, int64_t deadline, int stop_ok)
{
	for (;;) {
		short ev = POLLIN;
		int r;

		if (c->ssl != NULL) {
			int n = SSL_read(c->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);

			if (n > 0)
				return n;
			switch (SSL_get_error(c->ssl, n)) {
			case SSL_ERROR_WANT_READ:
				break;
			case SSL_ERROR_WANT_WRITE:
				ev = POLLOUT;
				break;
			case SSL_ERROR_ZERO_RETURN:
				return SUB_IO_EOF;
			default:
				ERR_clear_error();
				return SUB_IO_ERR;
			}
		} else {
			ssize_t n = recv(c->fd, buf, cap, 0);

			if (n >= 0)
				return n;
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return SUB_IO_ERR;
		}
		if ((r = sub_wait(c, ev, deadline, stop_ok)) != 1)
			return r;
	}
}

/* sub_flush - write the replies waiting: 0, or -1 (then the session is dead). */
static int
sub_flush(struct sub_sess *c)
{
	int64_t deadline = util_mono_ms() + (int64_t)(c->srv->cfg->submission_command_timeout * 1000);
	size_t off = 0;

	while (!c->dead && off < c->outlen) {
		short ev = POLLOUT;

		if (c->ssl != NULL) {
			int n = SSL_write(c->ssl, c->out + off, (int)(c->outlen - off));

			if (n > 0) {
				off += (size_t)n;
				continue;
			}
			switch (SSL_get_error(c->ssl, n)) {
			case SSL_ERROR_WANT_READ:
				ev = POLLIN;
				break;
			case SSL_ERROR_WANT_WRITE:
				break;
			default:
				ERR_clear_error();
				c->dead = 1;
				continue;
			}
		} else {
			ssize_t n = send(c->fd, c->out + off, c->outlen - off, MSG_NOSIGNAL);

			if (n >= 0) {
				off += (size_t)n;
				continue;
			}
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				c->dead = 1;
				continue;
			}
		}
		if (sub_wait(c, ev, deadline, 0) != 1)
			c->dead = 1;
	}
	c->outlen = 0;
	return c->dead ? -1 : 0;
}

/* say - queue one reply line (CRLF added; cut to fit); flushed before the next read. */
static void
say(struct sub_sess *c, const char *line)
{
	size_t n = strlen(line);

	if (n > 510)
		n = 510;
	if (c->outlen + n + 2 > sizeof(c->out))
		sub_flush(c);
	memcpy(c->out + c->outlen, line, n);
	memcpy(c->out + c->outlen + n, "\r\n", 2);
	c->outlen += n + 2;
}

static void
sayf(struct sub_sess *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sayf(struct sub_sess *c, const char *fmt, ...)
{
	char line[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	say(c, line);
}

/* sub_tls_accept - the TLS handshake (implicit, or after STARTTLS): 0, or -1. */
static int
sub_tls_accept(struct sub_sess *c, int64_t deadline)
{
	SSL_CTX *ctx;

	pthread_mutex_lock(&c->srv->mu);
	ctx = c->srv->ctx;
	SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&c->srv->mu);
	c->ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		return -1;
	for (;;) {
		int r = SSL_accept(c->ssl), e;
		short ev;

		if (r == 1)
			return 0;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			ev = POLLIN;
		else if (e == SSL_ERROR_WANT_WRITE)
			ev = POLLOUT;
		else {
			unsigned long ee = ERR_get_error();

			log_info("submission TLS handshake failed", "peer=%s session=%s error=%s", c->peer_str,
			    c->sid, ee != 0 && ERR_reason_error_string(ee) != NULL ?
			    ERR_reason_error_string(ee) : "connection closed");
			ERR_clear_error();
			return -1;
		}
		if (sub_wait(c, ev, deadline, 0) != 1)
			return -1;
	}
}

/* --- the transaction ---------------------------------------------------------------- */

static void
sub_tx_reset(struct sub_sess *c)
{
	for (size_t i = 0; i < c->nrcpts; i++)
		free(c->rcpts[i]);
	c->nrcpts = 0;
	c->in_mail = 0;
	c->smtputf8 = 0;
	c->mail_from[0] = '\0';
}

static struct store *
sub_store(struct sub_sess *c)
{
	struct submission *s = c->srv;

	if (c->store != NULL)
		return c->store;
	pthread_mutex_lock(&s->mu);
	if (s->nidle > 0)
		c->store = s->idle[--s->nidle];
	pthread_mutex_unlock(&s->mu);
	if (c->store == NULL)
		c->store = store_open(&s->cfg->redis);
	return c->store;
}

/* sub_clean - printable ASCII of in[0..n) into out (others '?'), cut to fit: for logs. */
static void
sub_clean(const char *in, size_t n, char *out, size_t outlen)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k + 1 < outlen; i++)
		out[k++] = in[i] >= 0x21 && in[i] < 0x7f ? in[i] : '?';
	out[k] = '\0';
}

/*
 * sub_check_key - keys_authenticate for the session's key: 0 (who filled,
 * one token charged), -1 refused (a wrong or revoked key, another address,
 * a scope without send) or -2 not now (storage down, the rate limit), with
 * the reply written. at_auth: the AUTH answer (535 / 454), else MAIL's
 * (the key may have been revoked or its project's limit reached since).
 */
static int
sub_check_key(struct sub_sess *c, int at_auth)
{
	int64_t retry_ms = 0;
	struct keys_identity who;
	int rc;

	rc = keys_authenticate(c->srv->cfg, sub_store(c), c->key, c->keylen,
	    c->peer_known ? c->peer : NULL, util_now_ms(), &who, &retry_ms);
	switch (rc) {
	case 0:
		break;
	case KEYS_ERR_UNAVAILABLE:
		say(c, at_auth ? "454 4.7.0 Temporary authentication failure: storage is unavailable, "
		    "cannot check the API key; retry later" :
		    "451 4.3.0 Storage is unavailable, cannot check the API key; retry later");
		return -2;
	case KEYS_ERR_FORBIDDEN:
		say(c, at_auth ? "535 5.7.8 This API key may not be used from this address" :
		    "530 5.7.0 This API key may not be used from this address");
		return -1;
	case KEYS_ERR_UNAUTHORIZED:
		say(c, at_auth ? "535 5.7.8 Authentication credentials invalid" :
		    "530 5.7.0 The API key is no longer valid; authenticate again");
		return -1;
	default:
		say(c, "454 4.7.0 Temporary authentication failure");
		return -2;
	}
	if (!keys_scope_allows(who.scope, KEYS_SCOPE_SEND)) {
		sayf(c, "%s This API key has scope %s; sending needs scope send (or full)",
		    at_auth ? "535 5.7.8" : "530 5.7.0", keys_scope_name(who.scope));
		return -1;
	}
	if (retry_ms > 0) {
		long long secs = (long long)((retry_ms + 999) / 1000);

		sayf(c, "%s Rate limit exceeded for this API key's project; retry in %lld s",
		    at_auth ? "454 4.7.0" : "451 4.7.1", secs < 1 ? 1 : secs);
		return -2;
	}
	c->who = who;
	return 0;
}

/* sub_lookup_header - the session's api_request: its one "header" is the Idempotency-Key. */

static const char *
sub_lookup_header(void *conn, const char *name)
{
	const char *k = conn;

	return strcasecmp(name, "Idempotency-Key") == 0 && k != NULL && k[0] != '\0' ? k : NULL;
}

static const char *
sub_lookup_query(void *conn, const char *name)
{
	(void)conn;
	(void)name;
	return NULL;
}

/* sub_from_email - the address of a From field ("Name <a@b>" or "a@b") into out; "" when none. */
static void
sub_from_email(const char *from, char *out, size_t outlen)
{
	const char *lt = strrchr(from, '<'), *gt;
	const char *b = from, *e;

	if (lt != NULL && (gt = strchr(lt, '>')) != NULL) {
		b = lt + 1;
		e = gt;
	} else {
		while (*b == ' ' || *b == '\t')
			b++;
		e = b + strlen(b);
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
	}
	if (memchr(b, '@', (size_t)(e - b)) == NULL || (size_t)(e - b) >= outlen) {
		out[0] = '\0';
		return;
	}
	memcpy(out, b, (size_t)(e - b));
	out[e - b] = '\0';
}

/* sub_answer - the SMTP reply for the accept's HTTP answer. */
static void
sub_answer(struct sub_sess *c, const struct api_response *resp, const char *id)
{
	cJSON *j = resp->body != NULL ? cJSON_ParseWithLength(resp->body, resp->body_len) : NULL;
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
	const cJSON *rid = cJSON_GetObjectItemCaseSensitive(j, "id");
	const char *text = cJSON_IsString(msg) ? msg->valuestring : "internal error";
	char clean[400];

	sub_clean(text, strlen(text), clean, sizeof(clean));
	for (char *p = clean; *p != '\0'; p++)   /* words again: the cleaner turned blanks into '?' */
		if (*p == '?' && (p == clean || p[-1] != '?'))
			*p = ' ';
	metrics_submission(resp->status == 202 ? METRICS_SUBM_QUEUED :
	    resp->status == 503 || resp->status == 504 || resp->status >= 500 ?
	    METRICS_SUBM_DEFERRED : METRICS_SUBM_REJECTED);
	switch (resp->status) {
	case 202:
		c->messages++;
		sayf(c, "250 2.0.0 Ok: queued as %s", cJSON_IsString(rid) ? rid->valuestring : id);
		break;
	case 409:
		say(c, "554 5.6.0 X-Txmail-Idempotency-Key was used with a different message");
		break;
	case 413:
		sayf(c, "552 5.3.4 %s", clean);
		break;
	case 422:
		sayf(c, "554 5.6.0 %s", clean);
		break;
	case 503:
		say(c, "451 4.3.0 Storage is unavailable, nothing was stored; retry later");
		break;
	case 504:
		say(c, "451 4.3.0 Storage did not confirm whether the message was stored: it may "
		    "or may not be sent; retry with the same X-Txmail-Idempotency-Key");
		break;
	default:
		say(c, "451 4.3.0 Internal error, nothing was stored; retry later");
		break;
	}
	cJSON_Delete(j);
}

/* sub_store_message - the message of the transaction, read into raw[0..len): store it and answer. */
static void
sub_store_message(struct sub_sess *c, const char *raw, size_t len)
{
	const struct config *cfg = c->srv->cfg;
	struct subm_msg sm;
	struct subm_msg_opts o;
	struct api_request req;
	struct api_response resp;
	struct api_submitted sub;
	const char *kinds[SUBMISSION_RCPTS_MAX];
	char id[SUBM_ID_MAX], msgid[400], reply[512], from_email[320];
	const char *helo = cfg->helo_name[0] != '\0' ? cfg->helo_name : "localhost";
	unsigned part;
	int rc;
	char *env = NULL;
	size_t envlen = 0;

	memset(&sm, 0, sizeof(sm));
	part = api_messages_partition(cfg, c->who.project, NULL);
	for (int round = 0; round < 2; round++) {
		if (api_messages_new_id(part, id, sizeof(id)) != 0) {
			say(c, "451 4.3.0 Cannot generate an id; retry later");
			return;
		}
		snprintf(msgid, sizeof(msgid), "<%s@%s>", id, helo);
		memset(&o, 0, sizeof(o));
		o.mail_from = c->mail_from;
		o.message_id = msgid;
		o.date_s = util_now_ms() / 1000;
		o.max_len = cfg->max_body + 4096;   /* room for the fields added */
		subm_msg_free(&sm);
		memset(&sm, 0, sizeof(sm));
		rc = subm_msg_prepare(raw, len, &o, &sm, reply, sizeof(reply));
		if (rc == -2) {
			say(c, "451 4.3.0 Out of memory; retry later");
			goto out;
		}
		if (rc != 0) {
			say(c, reply);
			goto out;
		}
		/* a retry must meet the first answer: the key's partition (TXMAIL_PARTITIONS) */
		if (sm.idem_key[0] == '\0' || cfg->redis.partitions <= 1)
			break;
		{
			unsigned want = api_messages_partition(cfg, c->who.project, sm.idem_key);

			if (want == part)
				break;
			part = want;
			if (!sm.added_message_id) {   /* the client's Message-ID: only the id changes */
				if (api_messages_new_id(part, id, sizeof(id)) != 0) {
					say(c, "451 4.3.0 Cannot generate an id; retry later");
					goto out;
				}
				break;
			}
		}
	}
	for (size_t i = 0; i < c->nrcpts; i++)
		kinds[i] = subm_msg_rcpt_kind(&sm, c->rcpts[i]);
	/*
	 * What the Idempotency-Key's request hash covers (as the request's
	 * body): the envelope and the Subject, not the bytes - a mailer that
	 * retries builds the message again, with a new Date, Message-ID and
	 * MIME boundaries, and must meet its first answer, not a conflict.
	 */
	envlen = strlen(c->mail_from) + 1 + strlen(sm.subject != NULL ? sm.subject : "") + 1;
	for (size_t i = 0; i < c->nrcpts; i++)
		envlen += strlen(c->rcpts[i]) + 1;
	env = malloc(envlen + 1);
	if (env == NULL) {
		say(c, "451 4.3.0 Out of memory; retry later");
		goto out;
	}
	{
		size_t k = 0, n;

		for (size_t i = 0; i < c->nrcpts + 2; i++) {
			const char *v = i == 0 ? c->mail_from : i == c->nrcpts + 1 ?
			    (sm.subject != NULL ? sm.subject : "") : c->rcpts[i - 1];

			n = strlen(v);
			memcpy(env + k, v, n + 1);
			k += n + 1;
		}
		envlen = k;
	}
	sub_from_email(sm.from != NULL ? sm.from : "", from_email, sizeof(from_email));

	memset(&req, 0, sizeof(req));
	req.cfg = cfg;
	req.store = sub_store(c);
	req.method = "SMTP";
	req.path = "SMTP submission";
	req.body = env;
	req.body_len = envlen;
	req.now_ms = util_now_ms();
	req.lookup_header = sub_lookup_header;
	req.lookup_query = sub_lookup_query;
	req.conn = sm.idem_key;
	req.tenant = c->who.tenant;
	req.project = c->who.project;
	req.request_id = c->sid;
	memset(&resp, 0, sizeof(resp));
	memset(&sub, 0, sizeof(sub));
	sub.id = id;
	sub.mail_from = c->mail_from;
	sub.rcpts = (const char *const *)c->rcpts;
	sub.kinds = kinds;
	sub.nrcpts = c->nrcpts;
	sub.mime = sm.mime;
	sub.mime_len = sm.mime_len;
	sm.mime = NULL;   /* taken */
	sub.from = sm.from;
	sub.from_email = from_email[0] != '\0' ? from_email : c->mail_from;
	sub.subject = sm.subject;
	sub.metadata_json = sm.metadata_json;
	sub.tags_json = sm.tags_json;
	sub.priority_high = sm.priority_high;
	sub.ttl_ms = sm.ttl_ms;
	if (req.store == NULL) {
		free(sub.mime);
		say(c, "451 4.3.0 Out of memory; retry later");
		goto out;
	}
	{
		int64_t t0 = util_mono_ms();

		api_messages_submit(&req, &sub, &resp);
		metrics_accept_duration("SMTP submission", (double)(util_mono_ms() - t0) / 1000.0);
	}
	sub_answer(c, &resp, id);
	free(resp.body);
out:
	free(env);
	subm_msg_free(&sm);
}

/* --- commands ------------------------------------------------------------------------ */

static void
sub_ehlo(struct sub_sess *c, const struct subm_cmd *cmd)
{
	const struct config *cfg = c->srv->cfg;
	const char *helo = cfg->helo_name[0] != '\0' ? cfg->helo_name : "localhost";

	sub_tx_reset(c);
	c->ehlo = 1;
	if (cmd->verb == SUBM_V_HELO) {
		sayf(c, "250 %s", helo);
		return;
	}
	sayf(c, "250-%s", helo);
	say(c, "250-PIPELINING");
	sayf(c, "250-SIZE %zu", cfg->max_body);
	say(c, "250-8BITMIME");
	say(c, "250-SMTPUTF8");
	if (c->ssl == NULL)
		say(c, "250-STARTTLS");
	else
		say(c, "250-AUTH PLAIN LOGIN");
	say(c, "250 ENHANCEDSTATUSCODES");
}

static int sub_next(struct sub_sess *c, const char **line, size_t *len, int64_t deadline,
    int *why);

static void
sub_consume(struct sub_sess *c, size_t n)
{
	memmove(c->in, c->in + n, c->inlen - n);
	c->inlen -= n;
}

/* sub_auth - AUTH PLAIN / LOGIN. Returns 0, or -1 when the session must end. */
static int
sub_auth(struct sub_sess *c, const struct subm_cmd *cmd)
{
	const struct config *cfg = c->srv->cfg;
	char authzid[SUBM_SASL_FIELD_MAX + 1], authcid[SUBM_SASL_FIELD_MAX + 1];
	char pw[SUBM_SASL_FIELD_MAX + 1], b64[64];
	const char *line = NULL;
	size_t len = 0, pwlen = 0, ulen = 0;
	int rc, why = 0;
	int64_t deadline;

	authzid[0] = authcid[0] = pw[0] = '\0';
	if (c->ssl == NULL) {
		say(c, "530 5.7.0 Must issue a STARTTLS command first");
		c->errors++;
		return 0;
	}
	if (c->authed) {
		say(c, "503 5.5.1 Already authenticated");
		c->errors++;
		return 0;
	}
	if (c->in_mail) {
		say(c, "503 5.5.1 AUTH not allowed during a mail transaction");
		c->errors++;
		return 0;
	}
	deadline = util_mono_ms() + (int64_t)(cfg->submission_command_timeout * 1000);
	if (cmd->mech == SUBM_MECH_PLAIN) {
		char buf[SUBM_LINE_CAP];

		if (cmd->has_initial) {
			if (cmd->initial_len >= sizeof(buf))
				goto bad_data;
			memcpy(buf, cmd->initial, cmd->initial_len);
			len = cmd->initial_len;
		} else {
			say(c, "334 ");
			if (sub_next(c, &line, &len, deadline, &why) != 0)
				return -1;
			if (len >= sizeof(buf)) {
				sub_consume(c, len + 2);
				goto bad_data;
			}
			memcpy(buf, line, len);
			sub_consume(c, len + 2);
		}
		rc = subm_auth_plain(buf, len, authzid, authcid, pw);
		OPENSSL_cleanse(buf, sizeof(buf));
		if (rc != 0) {
			say(c, subm_reply(rc));
			c->errors++;
			return 0;
		}
		pwlen = strlen(pw);
		ulen = strlen(authcid);
	} else {
		char dec[SUBM_LINE_CAP];
		size_t dlen = 0;

		/* the username (the initial response, or asked for), then the password */
		for (int step = 0; step < 2; step++) {
			if (step == 0 && cmd->has_initial) {
				rc = subm_b64_decode(cmd->initial, cmd->initial_len, dec, sizeof(dec), &dlen);
			} else {
				subm_b64_encode(step == 0 ? "Username:" : "Password:", 9, b64, sizeof(b64));
				sayf(c, "334 %s", b64);
				if (sub_next(c, &line, &len, deadline, &why) != 0)
					return -1;
				rc = len < sizeof(dec) ? subm_b64_decode(line, len, dec, sizeof(dec), &dlen) :
				    SUBM_ERR_AUTH_DATA;
				sub_consume(c, len + 2);
			}
			if (rc == 0 && (memchr(dec, '\0', dlen) != NULL || dlen == 0 ||
			    dlen > SUBM_SASL_FIELD_MAX))
				rc = SUBM_ERR_AUTH_DATA;
			if (rc != 0) {
				OPENSSL_cleanse(dec, sizeof(dec));
				say(c, subm_reply(rc));
				c->errors++;
				return 0;
			}
			if (step == 0) {
				memcpy(authcid, dec, dlen + 1);
				ulen = dlen;
			} else {
				memcpy(pw, dec, dlen + 1);
				pwlen = dlen;
			}
			OPENSSL_cleanse(dec, sizeof(dec));
		}
	}
	sub_clean(authcid, ulen, c->user, sizeof(c->user) > 65 ? 65 : sizeof(c->user));
	memcpy(c->key, pw, pwlen + 1);
	c->keylen = pwlen;
	OPENSSL_cleanse(pw, sizeof(pw));
	rc = sub_check_key(c, 1);
	if (rc == 0) {
		c->authed = 1;
		c->token_fresh = 1;
		metrics_submission(METRICS_SUBM_AUTH_OK);
		say(c, "235 2.7.0 Authentication successful");
		log_info("submission authenticated", "peer=%s session=%s user=%s tenant=%s project=%s",
		    c->peer_str, c->sid, c->user, c->who.tenant, c->who.project);
		return 0;
	}
	OPENSSL_cleanse(c->key, sizeof(c->key));
	c->keylen = 0;
	if (rc == -2)   /* storage down or the rate limit: not the client's fault */
		return 0;
	/* refused: a wrong key waits, longer for an address that keeps failing */
	c->auth_fails++;
	metrics_submission(METRICS_SUBM_AUTH_FAILED);
	{
		int64_t delay = sub_fail_delay(c->srv, c->peer_key, util_now_ms());
		int64_t until = util_mono_ms() + delay;

		log_warn("submission authentication failed", "peer=%s session=%s user=%s failures=%d "
		    "delay_ms=%lld", c->peer_str, c->sid, c->user, c->auth_fails, (long long)delay);
		while (util_mono_ms() < until && !atomic_load(&c->srv->stopping)) {
			struct timespec ts = { 0, 20 * 1000000L };

			nanosleep(&ts, NULL);
		}
	}
	if (c->auth_fails >= SUBMISSION_AUTH_FAILS_MAX) {
		say(c, "421 4.7.0 Too many failed authentications, closing the connection");
		return -1;
	}
	return 0;
bad_data:
	say(c, subm_reply(SUBM_ERR_AUTH_DATA));
	c->errors++;
	return 0;
}

static void
sub_mail(struct sub_sess *c, const struct subm_cmd *cmd)
{
	int rc;

	if (!c->ehlo) {
		say(c, "503 5.5.1 Send EHLO first");
		c->errors++;
		return;
	}
	if (!c->authed) {
		say(c, c->ssl == NULL ? "530 5.7.0 Must issue a STARTTLS command first" :
		    "530 5.7.0 Authentication required");
		c->errors++;
		return;
	}
	if (c->in_mail) {
		say(c, "503 5.5.1 Nested MAIL command");
		c->errors++;
		return;
	}
	if (cmd->null_path || cmd->path_len == 0) {
		say(c, "553 5.1.7 A sender address is required (MAIL FROM:<you@example.com>)");
		c->errors++;
		return;
	}
	/* one token of the project's rate limit per message, as one HTTP send */
	if (!c->token_fresh && (rc = sub_check_key(c, 0)) != 0) {
		if (rc == -1)   /* revoked, or no longer allowed: AUTH again */
			c->authed = 0;
		c->errors++;
		return;
	}
	c->token_fresh = 0;
	c->in_mail = 1;
	c->smtputf8 = cmd->smtputf8;
	memcpy(c->mail_from, cmd->path, cmd->path_len + 1);
	say(c, "250 2.1.0 Ok");
}

static void
sub_rcpt(struct sub_sess *c, const struct subm_cmd *cmd)
{
	char lower[SUBM_PATH_MAX + 1];
	const char *lp = lower;
	int flag = 0, rc;

	if (!c->in_mail) {
		say(c, c->authed ? "503 5.5.1 Need MAIL before RCPT" :
		    "530 5.7.0 Authentication required");
		c->errors++;
		return;
	}
	if (c->nrcpts >= SUBMISSION_RCPTS_MAX) {
		say(c, "452 4.5.3 Too many recipients");
		return;
	}
	for (size_t i = 0; i <= cmd->path_len; i++)
		lower[i] = (char)(cmd->path[i] >= 'A' && cmd->path[i] <= 'Z' ? cmd->path[i] + 32 :
		    cmd->path[i]);
	for (size_t i = 0; i < c->nrcpts; i++)
		if (strcasecmp(c->rcpts[i], cmd->path) == 0) {
			say(c, "250 2.1.5 Ok");   /* the same recipient twice: once */
			return;
		}
	rc = store_suppression_check(sub_store(c), c->who.project, &lp, 1, &flag);
	if (rc != STORE_OK) {
		say(c, "451 4.3.0 Storage is unavailable, cannot check the suppression list; retry later");
		return;
	}
	if (flag) {
		sayf(c, "550 5.7.1 <%s>: recipient is on this project's suppression list", cmd->path);
		metrics_recipient("suppressed");
		return;
	}
	if ((c->rcpts[c->nrcpts] = strdup(cmd->path)) == NULL) {
		say(c, "452 4.3.1 Out of memory");
		return;
	}
	c->nrcpts++;
	say(c, "250 2.1.5 Ok");
}

/* sub_data - read DATA (after the 354) and store it. 0, or -1 when the session must end. */
static int
sub_data(struct sub_sess *c)
{
	const struct config *cfg = c->srv->cfg;
	struct subm_data d;
	size_t limit = cfg->max_body, cap = 0;
	char *buf = NULL;
	int64_t deadline = util_mono_ms() +
	    (int64_t)(cfg->submission_command_timeout * 1000) * SUBMISSION_DATA_TIMEOUTS;
	int ret = -1;

	if (deadline > c->session_deadline)
		deadline = c->session_deadline;
	say(c, "354 End data with <CR><LF>.<CR><LF>");
	if (sub_flush(c) != 0)
		return -1;
	subm_data_init(&d, NULL, 0);
	for (;;) {
		size_t used = 0, want;
		int r;

		if (c->inlen == 0) {
			/* a pause of a command timeout cuts it, and so does the whole phase's deadline */
			int64_t pause = util_mono_ms() + (int64_t)(cfg->submission_command_timeout * 1000);
			ssize_t n = sub_read(c, c->in, sizeof(c->in), pause < deadline ? pause : deadline, 0);

			if (n == SUB_IO_TIMEOUT) {
				metrics_submission(METRICS_SUBM_TIMEOUT);
				say(c, "421 4.4.2 Timeout exceeded during DATA, closing the connection");
				goto out;
			}
			if (n <= 0)
				goto out;
			c->inlen = (size_t)n;
		}
		/* room for this chunk (dot-unstuffing only shrinks it), up to the limit */
		want = subm_data_length(&d) + c->inlen;
		if (want > cap && cap < limit && subm_data_status(&d) == 0) {
			size_t ncap = cap == 0 ? 65536 : cap * 2;
			char *nb;

			if (ncap < want)
				ncap = want;
			if (ncap > limit)
				ncap = limit;
			if ((nb = realloc(buf, ncap)) == NULL) {
				say(c, "452 4.3.1 Out of memory");
				goto out;
			}
			buf = nb;
			cap = ncap;
			subm_data_buffer(&d, buf, cap);
		}
		r = subm_data_feed(&d, c->in, c->inlen, &used);
		sub_consume(c, used);
		if (r == SUBM_DATA_END)
			break;
	}
	if (subm_data_status(&d) != 0) {
		metrics_submission(METRICS_SUBM_REJECTED);
		say(c, subm_reply(subm_data_status(&d)));
		log_info("submission message refused", "peer=%s session=%s reason=%s", c->peer_str, c->sid,
		    subm_data_status(&d) == SUBM_ERR_SIZE ? "too_large" : "bare_cr_or_lf");
		c->errors++;
	} else {
		sub_store_message(c, buf, subm_data_length(&d));
	}
	ret = 0;
out:
	free(buf);
	sub_tx_reset(c);
	return ret;
}

/*
 * sub_next - the next command line of the session into line/len (not yet
 * consumed): 0, or -1 when the session ends (*why: the I/O result or a
 * SUBM_ERR_*; the reply is written).
 */
static int
sub_next(struct sub_sess *c, const char **line, size_t *len, int64_t deadline, int *why)
{
	for (;;) {
		size_t ll = 0, used = 0;
		int r = subm_next_line(c->in, c->inlen, SUBM_LINE_CAP, &ll, &used);
		ssize_t n;

		if (r == 1) {
			*line = c->in;
			*len = ll;
			return 0;
		}
		if (r < 0) {
			*why = r;
			say(c, subm_reply(r));
			return -1;
		}
		if (sub_flush(c) != 0) {
			*why = SUB_IO_ERR;
			return -1;
		}
		n = sub_read(c, c->in + c->inlen, sizeof(c->in) - c->inlen,
		    deadline < c->session_deadline ? deadline : c->session_deadline, 1);
		if (n > 0) {
			c->inlen += (size_t)n;
			continue;
		}
		*why = (int)n;
		if (n == SUB_IO_TIMEOUT)
			metrics_submission(METRICS_SUBM_TIMEOUT);
		if (n == SUB_IO_TIMEOUT)
			say(c, util_mono_ms() >= c->session_deadline ?
			    "421 4.4.2 Session time limit reached, closing the connection" :
			    "421 4.4.2 Timeout exceeded, closing the connection");
		else if (n == SUB_IO_STOP)
			say(c, "421 4.3.2 Service shutting down, closing the connection");
		return -1;
	}
}

/* sub_session - the command loop. */
static void
sub_session(struct sub_sess *c)
{
	const struct config *cfg = c->srv->cfg;
	const char *helo = cfg->helo_name[0] != '\0' ? cfg->helo_name : "localhost";

	if (c->implicit && sub_tls_accept(c, util_mono_ms() +
	    (int64_t)(cfg->submission_command_timeout * 1000)) != 0)
		return;
	sayf(c, "220 %s txmail ESMTP", helo);
	for (;;) {
		struct subm_opts opts = { .smtputf8 = c->smtputf8, .max_size = cfg->max_body };
		struct subm_cmd cmd;
		const char *line = NULL;
		size_t len = 0;
		int why = 0, rc;

		if (sub_next(c, &line, &len,
		    util_mono_ms() + (int64_t)(cfg->submission_command_timeout * 1000), &why) != 0)
			return;
		if (++c->commands > SUBMISSION_COMMANDS_MAX) {
			say(c, "421 4.7.0 Too many commands, closing the connection");
			return;
		}
		/* parsed from a copy: cmd points into it, and the handlers read on into c->in */
		memcpy(c->line, line, len);
		sub_consume(c, len + 2);
		rc = subm_parse(c->line, len, &opts, &cmd);
		if (rc != 0) {
			say(c, subm_reply(rc));
			if (++c->errors >= SUBMISSION_ERRORS_MAX) {
				say(c, "421 4.7.0 Too many errors, closing the connection");
				return;
			}
			continue;
		}
		switch (cmd.verb) {
		case SUBM_V_EHLO:
		case SUBM_V_HELO:
			sub_ehlo(c, &cmd);
			break;
		case SUBM_V_STARTTLS:
			if (c->ssl != NULL) {
				say(c, "503 5.5.1 TLS is already active");
				c->errors++;
				break;
			}
			say(c, "220 2.0.0 Ready to start TLS");
			if (sub_flush(c) != 0)
				return;
			c->inlen = 0;   /* what was pipelined in plain text is never read as if under TLS */
			if (sub_tls_accept(c, util_mono_ms() +
			    (int64_t)(cfg->submission_command_timeout * 1000)) != 0)
				return;
			c->ehlo = 0;    /* RFC 3207 4.2: the client starts again with EHLO */
			sub_tx_reset(c);
			break;
		case SUBM_V_AUTH:
			if (!c->ehlo) {
				say(c, "503 5.5.1 Send EHLO first");
				c->errors++;
				break;
			}
			if (sub_auth(c, &cmd) != 0)
				return;
			break;
		case SUBM_V_MAIL:
			sub_mail(c, &cmd);
			break;
		case SUBM_V_RCPT:
			sub_rcpt(c, &cmd);
			break;
		case SUBM_V_DATA:
			if (!c->in_mail) {
				say(c, c->authed ? "503 5.5.1 Need MAIL before DATA" :
				    "530 5.7.0 Authentication required");
				c->errors++;
				break;
			}
			if (c->nrcpts == 0) {
				say(c, "554 5.5.1 No valid recipients");
				c->errors++;
				break;
			}
			if (sub_data(c) != 0)
				return;
			break;
		case SUBM_V_RSET:
			sub_tx_reset(c);
			say(c, "250 2.0.0 Ok");
			break;
		case SUBM_V_NOOP:
			say(c, "250 2.0.0 Ok");
			break;
		case SUBM_V_VRFY:
			say(c, "252 2.5.2 Cannot VRFY user");
			break;
		case SUBM_V_HELP:
			say(c, "214 2.0.0 txmail submission: EHLO STARTTLS AUTH MAIL RCPT DATA RSET NOOP QUIT");
			break;
		case SUBM_V_QUIT:
			say(c, "221 2.0.0 Bye");
			return;
		default:
			say(c, subm_reply(SUBM_ERR_UNKNOWN_CMD));
			c->errors++;
			break;
		}
		if (c->errors >= SUBMISSION_ERRORS_MAX) {
			say(c, "421 4.7.0 Too many errors, closing the connection");
			return;
		}
	}
}

static void *
sub_sess_main(void *arg)
{
	struct sub_sess *c = arg;
	struct submission *s = c->srv;
	int64_t t0 = util_mono_ms();

	metrics_submission(METRICS_SUBM_CONNECTION);
	metrics_submission_sessions(1);
	log_debug("submission connection", "peer=%s session=%s tls=%s", c->peer_str, c->sid,
	    c->implicit ? "implicit" : "starttls");
	sub_session(c);
	sub_flush(c);
	if (c->ssl != NULL && !c->dead)
		SSL_shutdown(c->ssl);   /* non-blocking: best effort close_notify */
	log_info("submission session ended", "peer=%s session=%s user=%s project=%s messages=%u "
	    "commands=%u auth_failures=%d duration_ms=%lld", c->peer_str, c->sid, c->user,
	    c->authed ? c->who.project : "", c->messages, c->commands, c->auth_fails,
	    (long long)(util_mono_ms() - t0));
	sub_tx_reset(c);
	metrics_submission_sessions(-1);
	OPENSSL_cleanse(c->key, sizeof(c->key));
	SSL_free(c->ssl);
	close(c->fd);
	pthread_mutex_lock(&s->mu);
	for (struct sub_sess **pp = &s->sessions; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	if (c->store != NULL && s->nidle < s->cfg->submission_max_clients) {
		s->idle[s->nidle++] = c->store;
		c->store = NULL;
	}
	s->nsessions--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (c->store != NULL)
		store_close(c->store);
	free(c);
	return NULL;
}

/* --- accepting ------------------------------------------------------------------------ */

/* the per-address key: family byte + IPv4 address, or the /64 of an IPv6 one */
static void
sub_peer_key(const unsigned char a[CIDR_ADDR_LEN], unsigned char key[17])
{
	static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(key, 0, 17);
	if (memcmp(a, v4mapped, 12) == 0) {
		key[0] = 4;
		memcpy(key + 1, a + 12, 4);
	} else {
		key[0] = 6;
		memcpy(key + 1, a, 8);
	}
}

static void
sub_accept_one(struct submission *s, int lfd, int implicit)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct sub_sess *c;
	pthread_attr_t attr;
	pthread_t t;
	int fd, per_ip = 0, over;

	fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	c->srv = s;
	c->fd = fd;
	c->implicit = implicit;
	c->peer_known = cidr_from_sockaddr((struct sockaddr *)&ss, c->peer) == CIDR_OK;
	if (c->peer_known)
		cidr_addr_format(c->peer, c->peer_str, sizeof(c->peer_str));
	else
		util_strlcpy(c->peer_str, "unknown", sizeof(c->peer_str));
	sub_peer_key(c->peer, c->peer_key);
	if (util_random_id("smtp_", c->sid, sizeof(c->sid)) != 0)
		util_strlcpy(c->sid, "smtp_unknown", sizeof(c->sid));
	c->session_deadline = util_mono_ms() + (int64_t)(s->cfg->submission_session_timeout * 1000);
	pthread_mutex_lock(&s->mu);
	for (struct sub_sess *o = s->sessions; o != NULL; o = o->next)
		if (memcmp(o->peer_key, c->peer_key, sizeof(c->peer_key)) == 0)
			per_ip++;
	over = s->nsessions >= s->cfg->submission_max_clients ? 1 :
	    per_ip >= s->cfg->submission_max_clients_per_ip ? 2 : 0;
	if (!over) {
		c->next = s->sessions;
		s->sessions = c;
		s->nsessions++;
	}
	pthread_mutex_unlock(&s->mu);
	if (over) {
		static const char total[] = "421 4.7.0 Too many connections, try again later\r\n";
		static const char one[] = "421 4.7.0 Too many connections from your address, try again later\r\n";

		metrics_submission(METRICS_SUBM_REFUSED);
		log_warn("submission connection refused", "peer=%s reason=%s", c->peer_str,
		    over == 1 ? "max_clients" : "max_clients_per_ip");
		if (!implicit)   /* on the TLS port a plain-text answer would be noise: just close */
			(void)!send(fd, over == 1 ? total : one, over == 1 ? sizeof(total) - 1 : sizeof(one) - 1,
			    MSG_NOSIGNAL);
		close(fd);
		free(c);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, SUBM_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, sub_sess_main, c) != 0) {
		pthread_mutex_lock(&s->mu);
		for (struct sub_sess **pp = &s->sessions; *pp != NULL; pp = &(*pp)->next)
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		s->nsessions--;
		pthread_mutex_unlock(&s->mu);
		log_error("submission session not started: no thread", "peer=%s", c->peer_str);
		close(fd);
		free(c);
	}
	pthread_attr_destroy(&attr);
}

static void *
sub_acceptor(void *arg)
{
	struct submission *s = arg;
	int64_t next_check = util_mono_ms() + 1000;

	while (!atomic_load(&s->stopping)) {
		struct pollfd p[3];
		int n = 0, r;

		health_beat(s->loop);
		for (int i = 0; i < 2; i++)
			if (s->fd[i] >= 0)
				p[n++] = (struct pollfd){ .fd = s->fd[i], .events = POLLIN };
		p[n++] = (struct pollfd){ .fd = s->wake[0], .events = POLLIN };
		r = poll(p, (nfds_t)n, 1000);
		if (atomic_exchange(&s->reload, 0))
			sub_tls_check(s, 1);
		else if (util_mono_ms() >= next_check) {
			sub_tls_check(s, 0);
			next_check = util_mono_ms() + 1000;
		}
		if (r <= 0)
			continue;
		if (p[n - 1].revents & POLLIN) {
			char b[64];

			while (read(s->wake[0], b, sizeof(b)) > 0)
				;
		}
		for (int i = 0, k = 0; i < 2; i++) {
			if (s->fd[i] < 0)
				continue;
			if (p[k].revents & POLLIN)
				sub_accept_one(s, s->fd[i], i);
			k++;
		}
	}
	return NULL;
}

/* --- public ---------------------------------------------------------------------------- */

struct submission *
submission_start(const struct config *cfg, char *err, size_t errlen)
{
	struct submission *s = calloc(1, sizeof(*s));
	const char *host[2] = { cfg->submission_listen_host, cfg->submissions_listen_host };
	uint16_t port[2] = { cfg->submission_listen_port, cfg->submissions_listen_port };
	int set[2] = { cfg->submission_listen_set, cfg->submissions_listen_set };
	char why[400];

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = cfg;
	s->fd[0] = s->fd[1] = s->wake[0] = s->wake[1] = -1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->idle = calloc((size_t)cfg->submission_max_clients, sizeof(*s->idle));
	if (s->idle == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->ctx = sub_ctx_load(cfg->submission_tls_cert, cfg->submission_tls_key, why, sizeof(why));
	if (s->ctx == NULL) {
		snprintf(err, errlen, "TXMAIL_SUBMISSION_TLS_CERT/KEY: %s", why);
		goto fail;
	}
	stat(cfg->submission_tls_cert, &s->cert_st);
	stat(cfg->submission_tls_key, &s->key_st);
	for (int i = 0; i < 2; i++) {
		if (!set[i])
			continue;
		s->fd[i] = sink_listen_fd(host[i], port[i], &s->port[i], why, sizeof(why));
		if (s->fd[i] < 0) {
			snprintf(err, errlen, "%s: %s", i == 0 ? "TXMAIL_SUBMISSION_LISTEN" :
			    "TXMAIL_SUBMISSIONS_LISTEN", why);
			goto fail;
		}
	}
	if (pipe2(s->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	s->loop = health_register("submission", 1000);
	if (pthread_create(&s->acceptor, NULL, sub_acceptor, s) != 0) {
		snprintf(err, errlen, "cannot start the acceptor thread");
		goto fail;
	}
	s->acceptor_started = 1;
	for (int i = 0; i < 2; i++)
		if (s->fd[i] >= 0)
			log_info("submission listener started", "addr=%s port=%u tls=%s", host[i],
			    (unsigned)s->port[i], i == 0 ? "starttls" : "implicit");
	return s;
fail:
	submission_stop(s, util_mono_ms());
	return NULL;
}

uint16_t
submission_port(const struct submission *s, int implicit)
{
	return s != NULL ? s->port[implicit ? 1 : 0] : 0;
}

void
submission_reload(struct submission *s)
{
	if (s == NULL)
		return;
	atomic_store(&s->reload, 1);
	if (s->wake[1] >= 0)
		(void)!write(s->wake[1], "r", 1);
}

void
submission_stop(struct submission *s, int64_t deadline_ms)
{
	if (s == NULL)
		return;
	atomic_store(&s->stopping, 1);
	if (s->wake[1] >= 0)
		(void)!write(s->wake[1], "s", 1);
	if (s->acceptor_started)
		pthread_join(s->acceptor, NULL);
	for (int i = 0; i < 2; i++)
		if (s->fd[i] >= 0)
			close(s->fd[i]);
	/* sessions between commands see the stop within a second; one in DATA has until the deadline */
	pthread_mutex_lock(&s->mu);
	while (s->nsessions > 0) {
		struct timespec ts;
		int64_t now = util_mono_ms();

		if (now >= deadline_ms) {
			for (struct sub_sess *c = s->sessions; c != NULL; c = c->next)
				shutdown(c->fd, SHUT_RDWR);
			deadline_ms = now + 1000;   /* then again, until every thread is gone */
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	}
	pthread_mutex_unlock(&s->mu);
	health_unregister(s->loop);
	for (int i = 0; i < s->nidle; i++)
		store_close(s->idle[i]);
	free(s->idle);
	SSL_CTX_free(s->ctx);
	if (s->wake[0] >= 0)
		close(s->wake[0]);
	if (s->wake[1] >= 0)
		close(s->wake[1]);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}
