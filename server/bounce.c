/*
 * bounce.c - `txmail bounce` and the DSN listener of `run` (see bounce.h).
 *
 * Owns the policy that turns a received DSN into recipient state: which
 * per-recipient group of the report applies (recipient-level token: the
 * one naming the recipient's address, else the first failed, else the
 * first delayed; message-level token, sent for a transaction that carried
 * several recipients: every failed or delayed group whose Final-Recipient
 * or Original-Recipient names one of the message's recipients, compared
 * case-insensitively, each applied to that recipient; a group naming
 * none of them is logged and ignored),
 * the SMTP reply recorded (Diagnostic-Code's reply code, else 550 for a
 * failure / 450 for a delay; enhanced code from Status), and when an
 * address is suppressed (a hard Status, 5.x.x except 5.2.2 mailbox full,
 * never 5.7.x: a policy rejection says nothing about the address; dsn.h
 * dsn_bounce_suppresses), which event a failure gives (message.bounced
 * after delivery, message.failed before) and which recipient a feedback
 * report (a complaint) is about. The listener is server/sink.c
 * with hooks: its hooks run on the sink thread, which owns the one store
 * connection used here, so a slow Redis holds up other DSN senders (low
 * volume by nature) but never the delivery path.
 *
 * It must never accept mail for an address without a valid VERP token,
 * never trust the DSN's Final-Recipient to choose the message (only the
 * token does; the fields only choose among that message's recipients
 * when the token is message-level), and never lose a DSN on a Redis outage: the reply is then
 * 451 so the sending MTA retries. Nor may it let senders grow the process:
 * the sink's limits (sink.h struct sink_limits) come from
 * TXMAIL_BOUNCE_MAX_BYTES (a larger message is discarded as it arrives and
 * answered 552 5.3.4, nothing recorded), TXMAIL_BOUNCE_MAX_CLIENTS and
 * TXMAIL_BOUNCE_MAX_CLIENTS_PER_IP (421 4.7.0 to the excess),
 * TXMAIL_BOUNCE_IDLE_TIMEOUT and TXMAIL_BOUNCE_DATA_TIMEOUT, and
 * BOUNCE_RCPT_MAX recipients per transaction: the listener holds at most
 * max clients x (max bytes + SINK_CLIENT_OVERHEAD + recipients).
 */
#include "bounce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "dsn.h"
#include "log.h"
#include "metrics.h"
#include "sink.h"
#include "store.h"
#include "util.h"
#include "verp.h"

#define BOUNCE_RCPT_MAX 100   /* recipients per transaction (a DSN has one); each costs store reads */

struct bounce {
	const struct config *cfg;
	struct store *st;
	struct sink *sink;
};

static int
bounce_rcpt(const char *addr, char *reply, size_t replylen, void *arg)
{
	struct bounce *b = arg;
	char id[VERP_ID_MAX + 1];
	int idx, rc;

	rc = verp_parse(b->cfg->bounce_secret, strlen(b->cfg->bounce_secret), b->cfg->bounce_domain,
	    addr, id, sizeof(id), &idx);
	if (rc == VERP_OK)
		return 0;
	log_info("bounce recipient refused", "rcpt=%.100s reason=%s", addr,
	    rc == VERP_ERR_NOT_OURS ? "not_bounce_address" : rc == VERP_ERR_MAC ? "bad_mac" : "bad_token");
	snprintf(reply, replylen, "550 5.1.1 Recipient address rejected: not a bounce address here");
	return -1;
}

/* bounce_pick - the DSN group that concerns email (see the file comment); NULL when none. */
static const struct dsn_rcpt *
bounce_pick(const struct dsn *d, const char *email)
{
	const struct dsn_rcpt *failed = NULL, *delayed = NULL;
	size_t i;

	for (i = 0; i < d->nrcpts; i++) {
		const struct dsn_rcpt *r = &d->rcpts[i];
		int act = strcmp(r->action, "failed") == 0 || strcmp(r->action, "delayed") == 0;

		if (act && email && (strcasecmp(r->final_recipient, email) == 0 ||
		    strcasecmp(r->original_recipient, email) == 0))
			return r;
		if (!failed && strcmp(r->action, "failed") == 0)
			failed = r;
		if (!delayed && strcmp(r->action, "delayed") == 0)
			delayed = r;
	}
	return failed ? failed : delayed;
}

static cJSON *
bounce_smtp_json(const struct dsn *d, const struct dsn_rcpt *r, int failed)
{
	cJSON *s = cJSON_CreateObject();
	char text[600];
	int code = r->diag_code;

	if (!s)
		return NULL;
	/* the reply code must agree with the outcome's class; else a generic one */
	if (code == 0 || (failed && code / 100 != 5) || (!failed && code / 100 != 4))
		code = failed ? 550 : 450;
	if (r->diagnostic[0])
		util_strlcpy(text, r->diagnostic, sizeof(text));
	else
		snprintf(text, sizeof(text), "DSN from %s: Action %s%s%s",
		    d->reporting_mta[0] ? d->reporting_mta : "unknown MTA", r->action,
		    r->status[0] ? ", Status " : "", r->status);
	cJSON_AddNumberToObject(s, "code", code);
	cJSON_AddStringToObject(s, "enhanced",
	    r->status[0] && ((failed && r->status[0] == '5') || (!failed && r->status[0] == '4')) ?
	    r->status : "");
	cJSON_AddStringToObject(s, "response", text);
	return s;
}

/*
 * bounce_event - the text of an event about recipient rv of message v
 * (the shape of server/outcome_json.c's, with latency_ms from acceptance
 * and queued_ms 0: no attempt of ours produced it), the extra string field
 * xkey: xval when xkey is set. cJSON_free it; NULL when out of memory.
 */
static char *
bounce_event(const char *type, const char *evt_id, const char *at, const char *msg_id,
    const struct store_message_view *v, const struct store_rcpt_view *rv, const char *status,
    const char *reason, const cJSON *sj, const char *xkey, const char *xval, int64_t latency_ms)
{
	cJSON *ev = cJSON_CreateObject(), *data, *m, *t;
	char *out = NULL;

	if (ev == NULL)
		goto out;
	cJSON_AddStringToObject(ev, "id", evt_id);
	cJSON_AddStringToObject(ev, "type", type);
	cJSON_AddStringToObject(ev, "created_at", at);
	if ((data = cJSON_AddObjectToObject(ev, "data")) == NULL)
		goto out;
	cJSON_AddStringToObject(data, "message_id", msg_id);
	cJSON_AddStringToObject(data, "recipient", rv->email);
	cJSON_AddStringToObject(data, "status", status);
	cJSON_AddNumberToObject(data, "attempt", rv->attempts);
	if (reason)
		cJSON_AddStringToObject(data, "reason", reason);
	if (xkey)
		cJSON_AddStringToObject(data, xkey, xval);
	cJSON_AddItemToObject(data, "smtp", sj ? cJSON_Duplicate(sj, 1) : cJSON_CreateNull());
	m = cJSON_Parse(v->metadata_json ? v->metadata_json : "{}");
	t = cJSON_Parse(v->tags_json ? v->tags_json : "[]");
	cJSON_AddItemToObject(data, "metadata", m != NULL ? m : cJSON_CreateObject());
	cJSON_AddItemToObject(data, "tags", t != NULL ? t : cJSON_CreateArray());
	cJSON_AddNumberToObject(data, "latency_ms", (double)latency_ms);
	cJSON_AddNumberToObject(data, "queued_ms", 0);
	out = cJSON_PrintUnformatted(ev);
out:
	cJSON_Delete(ev);
	return out;
}

/*
 * bounce_store_apply - store_bounce of in, its recipient (idx of v, msg_id),
 * project and time (now) filled here: STORE_OK with *applied,
 * STORE_ERR_NOT_FOUND (the message is gone: nothing to do), or another
 * error, logged at warn as what ("DSN not recorded").
 */
static int
bounce_store_apply(struct bounce *b, struct store_bounce_in *in, const struct store_message_view *v,
    const char *msg_id, int idx, int64_t now, const char *what, int *applied)
{
	int rc;

	in->msg_id = msg_id;
	in->rcpt_idx = idx;
	in->email = v->rcpts[idx].email;
	in->project = v->project;
	in->now_ms = now;
	rc = store_bounce(b->st, in, applied);
	if (rc != STORE_OK && rc != STORE_ERR_NOT_FOUND)
		log_warn(what, "msg_id=%s rcpt_idx=%d rcpt=%s error=%s", msg_id, idx, in->email,
		    store_strerror(rc));
	return rc;
}

/* bounce_latency - acceptance -> now, >= 0 */
static int64_t
bounce_latency(const struct store_message_view *v, int64_t now)
{
	return v->created_ms > 0 && now > v->created_ms ? now - v->created_ms : 0;
}

/*
 * bounce_record - apply group r of DSN d to recipient idx of message v
 * (msg_id). 0 done (or nothing to do), -1 a temporary failure (the sender
 * should retry).
 */
static int
bounce_record(struct bounce *b, const struct dsn *d, const struct store_message_view *v,
    const char *msg_id, int idx, const struct dsn_rcpt *r)
{
	const struct store_rcpt_view *rv = &v->rcpts[idx];
	struct store_bounce_in in;
	char evt_id[48], at[40];
	cJSON *tl = NULL, *sj = NULL;
	char *smtp = NULL, *evs = NULL, *bevs = NULL, *tls = NULL;
	int64_t now = util_now_ms(), lat = bounce_latency(v, now);
	const char *btype = dsn_bounce_type(r->status);
	int rc, failed, applied = 0, ret = -1;

	failed = strcmp(r->action, "failed") == 0;
	util_rfc3339(now, at, sizeof(at));
	if (util_random_id("evt_", evt_id, sizeof(evt_id)) != 0)
		goto out;
	if ((sj = bounce_smtp_json(d, r, failed)) == NULL || (smtp = cJSON_PrintUnformatted(sj)) == NULL)
		goto out;

	/* the same event and timeline shapes as server/worker.c build_rec */
	if ((tl = cJSON_CreateObject()) == NULL)
		goto out;
	cJSON_AddStringToObject(tl, "type", failed ? "failed" : "delayed_dsn");
	cJSON_AddStringToObject(tl, "at", at);
	cJSON_AddStringToObject(tl, "recipient", rv->email);
	cJSON_AddNumberToObject(tl, "attempt", rv->attempts);
	if (failed) {
		cJSON_AddStringToObject(tl, "reason", "bounced");
		cJSON_AddStringToObject(tl, "bounce_type", btype);
	}
	cJSON_AddItemToObject(tl, "smtp", cJSON_Duplicate(sj, 1));
	if ((tls = cJSON_PrintUnformatted(tl)) == NULL)
		goto out;
	if (failed) {
		/* message.failed for a recipient not delivered yet; message.bounced after delivery
		 * (bounce.lua picks by the recipient's state at the time) */
		evs = bounce_event("message.failed", evt_id, at, msg_id, v, rv, "failed", "bounced", sj,
		    NULL, NULL, lat);
		bevs = bounce_event("message.bounced", evt_id, at, msg_id, v, rv, "failed", "bounced", sj,
		    "bounce_type", btype, lat);
		if (evs == NULL || bevs == NULL)
			goto out;
	}
	memset(&in, 0, sizeof(in));
	in.action = failed ? "failed" : "delayed";
	in.smtp_json = failed ? smtp : NULL;
	in.event_json = evs;
	in.bounced_event_json = bevs;
	in.latency_ms = lat;
	in.timeline_json = tls;
	/* hard 5.x.x only; never 5.7.x (policy) nor 5.2.2 (mailbox full, soft) */
	in.suppress_reason = failed && dsn_bounce_suppresses(r->status) ? "bounced" : NULL;
	rc = bounce_store_apply(b, &in, v, msg_id, idx, now, "DSN not recorded", &applied);
	if (rc != STORE_OK) {
		ret = rc == STORE_ERR_NOT_FOUND ? 0 : -1;
		goto out;
	}
	if (failed && applied)
		metrics_recipient_as("failed", METRICS_REASON_BOUNCED);   /* once: bounce.lua applies it once */
	log_info(applied ? "DSN applied" : "DSN ignored, recipient already final",
	    "msg_id=%s rcpt_idx=%d rcpt=%s action=%s status=%s bounce_type=%s suppressed=%s", msg_id,
	    idx, rv->email, r->action, r->status, failed ? btype : "", in.suppress_reason && applied ?
	    "true" : "false");
	ret = 0;
out:
	cJSON_Delete(sj);
	cJSON_Delete(tl);
	cJSON_free(smtp);
	cJSON_free(tls);
	cJSON_free(evs);
	cJSON_free(bevs);
	return ret;
}

/*
 * bounce_complaint - apply feedback report a to recipient idx of message v
 * (msg_id): a message.complained event, a "complained" timeline entry and
 * the address suppressed with reason "complaint", once per recipient (the
 * status stays). 0 done (or nothing to do), -1 a temporary failure.
 */
static int
bounce_complaint(struct bounce *b, const struct dsn_arf *a, const struct store_message_view *v,
    const char *msg_id, int idx)
{
	const struct store_rcpt_view *rv = &v->rcpts[idx];
	struct store_bounce_in in;
	char evt_id[48], at[40];
	cJSON *tl = NULL;
	char *evs = NULL, *tls = NULL;
	int64_t now = util_now_ms();
	int rc, applied = 0, ret = -1;

	util_rfc3339(now, at, sizeof(at));
	if (util_random_id("evt_", evt_id, sizeof(evt_id)) != 0)
		goto out;
	if ((tl = cJSON_CreateObject()) == NULL)
		goto out;
	cJSON_AddStringToObject(tl, "type", "complained");
	cJSON_AddStringToObject(tl, "at", at);
	cJSON_AddStringToObject(tl, "recipient", rv->email);
	cJSON_AddNumberToObject(tl, "attempt", rv->attempts);
	cJSON_AddStringToObject(tl, "feedback_type", a->feedback_type);
	cJSON_AddNullToObject(tl, "smtp");
	if ((tls = cJSON_PrintUnformatted(tl)) == NULL)
		goto out;
	evs = bounce_event("message.complained", evt_id, at, msg_id, v, rv,
	    rv->status ? rv->status : "delivered", NULL, NULL, "feedback_type", a->feedback_type,
	    bounce_latency(v, now));
	if (evs == NULL)
		goto out;
	memset(&in, 0, sizeof(in));
	in.action = "complained";
	in.event_json = evs;
	in.timeline_json = tls;
	in.suppress_reason = "complaint";
	rc = bounce_store_apply(b, &in, v, msg_id, idx, now, "complaint not recorded", &applied);
	if (rc != STORE_OK) {
		ret = rc == STORE_ERR_NOT_FOUND ? 0 : -1;
		goto out;
	}
	if (applied)
		metrics_complaint(a->feedback_type);
	log_info(applied ? "complaint applied" : "complaint ignored, already reported",
	    "msg_id=%s rcpt_idx=%d rcpt=%s feedback_type=%s user_agent=%.100s", msg_id, idx,
	    rv->email, a->feedback_type, a->user_agent);
	ret = 0;
out:
	cJSON_Delete(tl);
	cJSON_free(tls);
	cJSON_free(evs);
	return ret;
}

/*
 * bounce_apply_arf - one feedback report for (msg_id, idx). The recipient:
 * the token's; for a message-level token the one Original-Rcpt-To names,
 * else the reported message's To, else the only one. 0 done (or nothing to
 * do), -1 a temporary failure.
 */
static int
bounce_apply_arf(struct bounce *b, const struct dsn_arf *a, const char *msg_id, int idx)
{
	struct store_message_view v;
	int rc, ret = 0;

	memset(&v, 0, sizeof(v));
	rc = store_get_message(b->st, msg_id, &v);
	if (rc == STORE_ERR_NOT_FOUND) {
		log_info("complaint ignored, unknown or expired message", "msg_id=%s rcpt_idx=%d",
		    msg_id, idx);
		return 0;
	}
	if (rc != STORE_OK) {
		log_warn("complaint not applied, cannot read message", "msg_id=%s rcpt_idx=%d error=%s",
		    msg_id, idx, store_strerror(rc));
		return -1;
	}
	if (idx == VERP_IDX_MESSAGE) {
		const char *want[2] = { a->original_rcpt_to, a->original_to };

		for (size_t w = 0; w < 2 && idx == VERP_IDX_MESSAGE; w++)
			for (size_t k = 0; want[w][0] && k < v.nrcpts; k++)
				if (v.rcpts[k].email && strcasecmp(v.rcpts[k].email, want[w]) == 0) {
					idx = (int)k;
					break;
				}
		if (idx == VERP_IDX_MESSAGE && v.nrcpts == 1)
			idx = 0;
	}
	if (idx < 0 || (size_t)idx >= v.nrcpts) {
		log_info("complaint ignored, unknown recipient",
		    "msg_id=%s rcpt_idx=%d original_rcpt_to=%.100s", msg_id, idx, a->original_rcpt_to);
		goto out;
	}
	ret = bounce_complaint(b, a, &v, msg_id, idx);
out:
	store_message_view_free(&v);
	return ret;
}

/*
 * bounce_apply - one DSN for (msg_id, idx), idx VERP_IDX_MESSAGE for a
 * message-level token (see the file comment). 0 done (or nothing to do),
 * -1 a temporary failure (the sender should retry).
 */
static int
bounce_apply(struct bounce *b, const struct dsn *d, const char *msg_id, int idx)
{
	struct store_message_view v;
	const struct dsn_rcpt *r;
	size_t i, k;
	int rc, ret = 0;

	memset(&v, 0, sizeof(v));
	rc = store_get_message(b->st, msg_id, &v);
	if (rc == STORE_ERR_NOT_FOUND) {
		log_info("DSN ignored, unknown or expired message", "msg_id=%s rcpt_idx=%d", msg_id, idx);
		return 0;
	}
	if (rc != STORE_OK) {
		log_warn("DSN not applied, cannot read message", "msg_id=%s rcpt_idx=%d error=%s", msg_id,
		    idx, store_strerror(rc));
		return -1;
	}
	if (idx != VERP_IDX_MESSAGE) {
		if (idx < 0 || (size_t)idx >= v.nrcpts) {
			log_info("DSN ignored, unknown recipient", "msg_id=%s rcpt_idx=%d", msg_id, idx);
			goto out;
		}
		r = bounce_pick(d, v.rcpts[idx].email);
		if (!r) {
			log_info("DSN ignored, no failed or delayed recipient", "msg_id=%s rcpt_idx=%d rcpt=%s",
			    msg_id, idx, v.rcpts[idx].email);
			goto out;
		}
		ret = bounce_record(b, d, &v, msg_id, idx, r);
		goto out;
	}
	/* message level: each failed or delayed group names its recipient */
	for (i = 0; i < d->nrcpts; i++) {
		r = &d->rcpts[i];
		if (strcmp(r->action, "failed") != 0 && strcmp(r->action, "delayed") != 0)
			continue;
		for (k = 0; k < v.nrcpts; k++) {
			const char *e = v.rcpts[k].email;

			if (e && e[0] && (strcasecmp(r->final_recipient, e) == 0 ||
			    strcasecmp(r->original_recipient, e) == 0))
				break;
		}
		if (k == v.nrcpts) {
			log_info("DSN group ignored, address not in the message",
			    "msg_id=%s final_recipient=%.100s original_recipient=%.100s action=%s", msg_id,
			    r->final_recipient, r->original_recipient, r->action);
			continue;
		}
		if (bounce_record(b, d, &v, msg_id, (int)k, r) != 0)
			ret = -1;
	}
out:
	store_message_view_free(&v);
	return ret;
}

/*
 * bounce_report - msg as a feedback report (ARF) for the recipients: 1
 * when it is one (applied, or logged and dropped), 0 when not a feedback
 * report; *tempfail set when the store could not take it.
 */
static int
bounce_report(struct bounce *b, const char *mail_from, const char *const *rcpts, size_t nrcpts,
    const char *msg, size_t len, int *tempfail)
{
	struct dsn_arf *a = calloc(1, sizeof(*a));
	char why[128] = "";
	size_t i;
	int rc;

	if (!a) {
		*tempfail = 1;
		return 1;
	}
	rc = dsn_arf_parse(msg, len, a, why, sizeof(why));
	if (rc == DSN_ERR_NOT_REPORT) {
		free(a);
		return 0;
	}
	if (rc != DSN_OK || !dsn_arf_is_complaint(a->feedback_type)) {
		log_info("feedback report to a bounce address dropped",
		    "from=%.100s size=%zu feedback_type=%s reason=%s", mail_from, len, a->feedback_type,
		    rc != DSN_OK ? why : "not a complaint");
		free(a);
		return 1;
	}
	for (i = 0; i < nrcpts; i++) {
		char id[VERP_ID_MAX + 1];
		int idx;

		if (verp_parse(b->cfg->bounce_secret, strlen(b->cfg->bounce_secret),
		    b->cfg->bounce_domain, rcpts[i], id, sizeof(id), &idx) != VERP_OK)
			continue;   /* cannot happen: RCPT checked it */
		if (bounce_apply_arf(b, a, id, idx) != 0)
			*tempfail = 1;
	}
	free(a);
	return 1;
}

static int
bounce_message(const char *mail_from, const char *const *rcpts, size_t nrcpts,
    const char *msg, size_t len, char *reply, size_t replylen, void *arg)
{
	struct bounce *b = arg;
	struct dsn *d = calloc(1, sizeof(*d));
	char why[128] = "";
	size_t i;
	int rc, tempfail = 0;

	if (!d) {
		snprintf(reply, replylen, "451 4.3.0 Error: out of memory");
		return -1;
	}
	rc = dsn_parse(msg, len, d, why, sizeof(why));
	if (rc != DSN_OK) {
		free(d);
		if (rc == DSN_ERR_NOT_REPORT && bounce_report(b, mail_from, rcpts, nrcpts, msg, len,
		    &tempfail))
			goto done;
		log_info("non-DSN mail to a bounce address dropped", "from=%.100s size=%zu reason=%s",
		    mail_from, len, why);
		return 0;
	}
	for (i = 0; i < nrcpts; i++) {
		char id[VERP_ID_MAX + 1];
		int idx;

		if (verp_parse(b->cfg->bounce_secret, strlen(b->cfg->bounce_secret),
		    b->cfg->bounce_domain, rcpts[i], id, sizeof(id), &idx) != VERP_OK)
			continue;   /* cannot happen: RCPT checked it */
		if (bounce_apply(b, d, id, idx) != 0)
			tempfail = 1;
	}
	free(d);
done:
	if (tempfail) {
		/* a retry re-applies every recipient; applying one twice changes nothing */
		snprintf(reply, replylen, "451 4.3.0 Error: cannot record the report now, try again later");
		return -1;
	}
	return 0;
}

struct bounce *
bounce_start(const struct config *cfg, const char *host, uint16_t port, uint16_t *bound_port,
    char *err, size_t errlen)
{
	struct bounce *b;
	struct sink_hooks h;

	if (!cfg || !cfg->bounce_domain[0] || !cfg->bounce_secret[0]) {
		snprintf(err, errlen, "bounce: TXMAIL_BOUNCE_DOMAIN and TXMAIL_BOUNCE_SECRET are required");
		return NULL;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL || (b->st = store_open(&cfg->redis)) == NULL) {
		snprintf(err, errlen, "bounce: out of memory");
		free(b);
		return NULL;
	}
	b->cfg = cfg;
	memset(&h, 0, sizeof(h));
	h.name = "txmail bounce";
	h.rcpt = bounce_rcpt;
	h.message = bounce_message;
	h.arg = b;
	h.limits.max_msg = cfg->bounce_max_bytes;
	h.limits.max_clients = cfg->bounce_max_clients;
	h.limits.max_per_peer = cfg->bounce_max_clients_per_ip;
	h.limits.max_rcpts = BOUNCE_RCPT_MAX;
	h.limits.idle_ms = (int64_t)(cfg->bounce_idle_timeout * 1000.0);
	h.limits.data_ms = (int64_t)(cfg->bounce_data_timeout * 1000.0);
	/* a round runs the hooks of one client: a few store reads and one store_bounce */
	h.loop = "bounce";
	h.loop_wait_ms = 2 * (int64_t)(cfg->redis.timeout_ms > 0 ? cfg->redis.timeout_ms : 5000);
	b->sink = sink_start_hooks(host, port, &h, bound_port, err, errlen);
	if (!b->sink) {
		store_close(b->st);
		free(b);
		return NULL;
	}
	return b;
}

void
bounce_stop(struct bounce *b)
{
	if (!b)
		return;
	sink_stop(b->sink);   /* joins the thread that uses b->st */
	store_close(b->st);
	free(b);
}

static void
bounce_usage(FILE *f)
{
	fprintf(f, "usage: txmail bounce [--listen host:port]\n"
	    "\n"
	    "Inbound SMTP listener for asynchronous bounces (RFC 3464 DSNs) sent to\n"
	    "the VERP return paths bounces+<token>@$TXMAIL_BOUNCE_DOMAIN. Every other\n"
	    "recipient is refused (550 5.1.1). Needs TXMAIL_REDIS_URL,\n"
	    "TXMAIL_BOUNCE_DOMAIN and TXMAIL_BOUNCE_SECRET. Runs until SIGINT/SIGTERM.\n"
	    "\n"
	    "  --listen host:port  default $TXMAIL_BOUNCE_LISTEN, else 127.0.0.1:2526\n"
	    "\n"
	    "GET /metrics, /healthz and /readyz are served on TXMAIL_ADMIN_LISTEN\n"
	    "(127.0.0.1:9090; off: none).\n");
}

int
bounce_cli(int argc, char **argv, const char **listen)
{
	*listen = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			bounce_usage(stdout);
			return 1;
		} else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
			*listen = argv[++i];
		} else {
			fprintf(stderr, "txmail bounce: unknown argument %s\n", argv[i]);
			bounce_usage(stderr);
			return 2;
		}
	}
	return 0;
}

int
bounce_addr(const struct config *cfg, const char *listen, char *host, size_t hostlen,
    uint16_t *port, char *err, size_t errlen)
{
	char why[256];

	if (listen != NULL) {
		if (config_parse_listen(listen, host, hostlen, port, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "bad --listen %s: %s", listen, why);
			return -1;
		}
		return 0;
	}
	if (cfg->bounce_listen_set) {
		util_strlcpy(host, cfg->bounce_listen_host, hostlen);
		*port = cfg->bounce_listen_port;
		return 0;
	}
	util_strlcpy(host, "127.0.0.1", hostlen);
	*port = 2526;
	return 0;
}
