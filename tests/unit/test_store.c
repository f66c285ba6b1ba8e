/*
 * test_store.c - the Redis store and the scheduler against a real
 * redis-server: each test starts its own on a random loopback port (killed
 * in the fixture teardown, and by PR_SET_PDEATHSIG if the test crashes).
 * Redis state is inspected with a separate hiredis connection (hiredis is
 * the store module's library; only the store and its test use it).
 * No per-test .timeout: Criterion 2.4 leaks its timeout record under
 * --jobs, which fails the ASan run; every wait here has its own deadline.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "../../server/scheduler.h"
#include "../../server/store.h"
#include "../../server/store_internal.h"   /* the fetch carry (struct store), for batch_carried_reclaimed */
#include "../../server/util.h"

#define REDIS_CHILD_DIR "/tmp/txm-test-store-XXXXXX"
#include "redis_child.h"

TestSuite(store, .init = setup, .fini = teardown);

/* --- helpers --------------------------------------------------------------- */

/* rstr_cmd - a string reply copied into buf ("" for nil). */
static void
rstr_cmd(char *buf, size_t len, const char *fmt, const char *a1, const char *a2)
{
	redisReply *r = redisCommand(rc_ctx, fmt, a1, a2);

	cr_assert(r, "inspector command failed: %s", fmt);
	buf[0] = '\0';
	if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
		util_strlcpy(buf, r->str, len);
	else
		cr_assert_eq(r->type, REDIS_REPLY_NIL, "%s: got reply type %d, want string", fmt, r->type);
	freeReplyObject(r);
}

static void
hset_cmd(const char *key, const char *field, const char *val)
{
	redisReply *r = redisCommand(rc_ctx, "HSET %s %s %s", key, field, val);

	cr_assert(r && r->type == REDIS_REPLY_INTEGER);
	freeReplyObject(r);
}

static long long
pending_count(const char *stream, const char *group)
{
	redisReply *r = redisCommand(rc_ctx, "XPENDING %s %s", stream, group);
	long long v;

	cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1);
	cr_assert_eq(r->element[0]->type, REDIS_REPLY_INTEGER);
	v = r->element[0]->integer;
	freeReplyObject(r);
	return v;
}

static const char mime_bytes[] = "Subject: hi\r\n\r\nbody\0with NUL\r\n";
#define MIME_LEN (sizeof(mime_bytes) - 1)

static void
enqueue_in(char *id, size_t idlen, size_t nrcpts, int64_t send_at, enum store_lane lane,
    const char *project)
{
	struct store_rcpt_in rc[64];
	char emails[64][32];
	struct store_message_in m;
	size_t i;
	int rc_;

	cr_assert(nrcpts <= 64);
	memset(rc, 0, sizeof(rc));
	cr_assert_eq(util_random_id("msg_", id, idlen), 0);
	for (i = 0; i < nrcpts; i++) {
		snprintf(emails[i], sizeof(emails[i]), "user%zu@example.com", i);
		rc[i].email = emails[i];
		rc[i].kind = i == 1 ? "cc" : "to";
	}
	memset(&m, 0, sizeof(m));
	m.id = id;
	m.created_ms = 1700000000000LL;
	m.expires_ms = 1700086400000LL;
	m.send_at_ms = send_at;
	m.from = "Sender <s@example.com>";
	m.mail_from = "s@example.com";
	m.subject = "hi \xe4\xbd\xa0\xe5\xa5\xbd";
	m.mime = mime_bytes;
	m.mime_len = MIME_LEN;
	m.metadata_json = "{\"k\":\"v\"}";
	m.tags_json = "[\"t\"]";
	m.timeline_json = "{\"type\":\"queued\"}";
	m.lane = lane;
	m.project = project;
	m.rcpts = rc;
	m.nrcpts = nrcpts;
	rc_ = store_enqueue(st, &m);
	cr_assert_eq(rc_, 0, "store_enqueue: got %d, want 0", rc_);
}

static void
enqueue_lane(char *id, size_t idlen, size_t nrcpts, int64_t send_at, enum store_lane lane)
{
	enqueue_in(id, idlen, nrcpts, send_at, lane, NULL);
}

static void
enqueue_msg(char *id, size_t idlen, size_t nrcpts, int64_t send_at)
{
	enqueue_lane(id, idlen, nrcpts, send_at, STORE_LANE_NORMAL);
}

static void
msg_key(char *buf, size_t len, const char *id, const char *suffix)
{
	snprintf(buf, len, "txm{0}:msg:%s%s", id, suffix);
}

static void
rcpt_status(const char *id, int idx, char *buf, size_t len)
{
	char key[128], field[32];

	msg_key(key, sizeof(key), id, "");
	snprintf(field, sizeof(field), "r%d:status", idx);
	rstr_cmd(buf, len, "HGET %s %s", key, field);
}

static void
free_deliveries(struct store_delivery **d, int n)
{
	for (int i = 0; i < n; i++)
		store_delivery_free(d[i]);
}

static int
fetch_one(const char *consumer, struct store_delivery **d)
{
	return store_fetch(st, consumer, 1, 0, d);
}

static int
record_one(struct store_delivery *d, const char *status, int64_t next_ms, const char *event)
{
	struct store_result r = {
		.d = d, .status = status, .next_ms = next_ms, .now_ms = util_now_ms(),
		.smtp_json = "{\"code\":250}", .event_json = event,
		.timeline_json = "{\"type\":\"x\"}",
	};
	return store_record(st, &r, 1);
}

/* --- tests ------------------------------------------------------------------- */

Test(store, enqueue_and_get_message)
{
	char id[64], st_buf[32];
	struct store_message_view v;
	int rc;

	enqueue_msg(id, sizeof(id), 2, 0);
	rc = store_get_message(st, id, &v);
	cr_assert_eq(rc, 0, "get_message: got %d, want 0", rc);
	cr_assert_str_eq(v.id, id);
	cr_assert_str_eq(v.from, "Sender <s@example.com>");
	cr_assert_str_eq(v.subject, "hi \xe4\xbd\xa0\xe5\xa5\xbd");
	cr_assert_str_eq(v.metadata_json, "{\"k\":\"v\"}");
	cr_assert_str_eq(v.tags_json, "[\"t\"]");
	cr_assert_eq(v.created_ms, 1700000000000LL);
	cr_assert_eq(v.send_at_ms, 0);
	cr_assert_eq(v.nrcpts, 2, "nrcpts: got %zu, want 2", v.nrcpts);
	cr_assert_str_eq(v.rcpts[0].email, "user0@example.com");
	cr_assert_str_eq(v.rcpts[1].kind, "cc");
	cr_assert_str_eq(v.rcpts[1].status, "queued");
	cr_assert_eq(v.rcpts[0].attempts, 0);
	cr_assert_null(v.rcpts[0].smtp_json);
	cr_assert_eq(v.ntimeline, 1);
	cr_assert_str_eq(v.timeline_json[0], "{\"type\":\"queued\"}");
	store_message_view_free(&v);

	rcpt_status(id, 0, st_buf, sizeof(st_buf));
	cr_assert_str_eq(st_buf, "queued");
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 2);

	/* the same id again: conflict, nothing added */
	struct store_rcpt_in r1 = { .email = "x@example.com", .kind = "to" };
	struct store_message_in m = { .id = id, .mime = "", .rcpts = &r1, .nrcpts = 1 };
	rc = store_enqueue(st, &m);
	cr_assert_eq(rc, STORE_ERR_CONFLICT, "dup enqueue: got %d, want %d", rc, STORE_ERR_CONFLICT);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 2);

	rc = store_get_message(st, "msg_nope", &v);
	cr_assert_eq(rc, STORE_ERR_NOT_FOUND, "missing: got %d, want %d", rc, STORE_ERR_NOT_FOUND);
	cr_assert_eq(v.nrcpts, 0);
	store_message_view_free(&v);
}

Test(store, invalid_enqueue_rejected)
{
	struct store_rcpt_in r1 = { .email = "x@example.com", .kind = "to" };
	struct store_message_in cases[] = {
		{ .id = NULL, .rcpts = &r1, .nrcpts = 1 },
		{ .id = "", .rcpts = &r1, .nrcpts = 1 },
		{ .id = "a/b", .rcpts = &r1, .nrcpts = 1 },
		{ .id = "ok", .rcpts = &r1, .nrcpts = 0 },
		{ .id = "ok", .rcpts = NULL, .nrcpts = 1 },
		{ .id = "ok", .rcpts = &r1, .nrcpts = 100000 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = store_enqueue(st, &cases[i]);
		cr_assert_eq(rc, STORE_ERR_PROTO, "case %zu: got %d, want %d", i, rc, STORE_ERR_PROTO);
	}
	cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:msg:ok"), 0);
}

Test(store, fetch_claims)
{
	char id[64], sbuf[32], key[128];
	struct store_delivery *d[8];
	int n;

	enqueue_msg(id, sizeof(id), 2, 0);
	n = store_fetch(st, "c1", 8, 100, d);
	cr_assert_eq(n, 2, "fetch: got %d, want 2", n);
	for (int i = 0; i < n; i++) {
		cr_assert_str_eq(d[i]->msg_id, id);
		cr_assert_eq(d[i]->rcpt_idx, i);
		cr_assert_eq(d[i]->attempts, 1, "attempts: got %d, want 1", d[i]->attempts);
		cr_assert_str_eq(d[i]->mail_from, "s@example.com");
		cr_assert_eq(d[i]->mime_len, MIME_LEN, "mime_len: got %zu, want %zu", d[i]->mime_len, MIME_LEN);
		cr_assert_eq(memcmp(d[i]->mime, mime_bytes, MIME_LEN), 0);
		cr_assert_str_eq(d[i]->metadata_json, "{\"k\":\"v\"}");
		cr_assert_str_eq(d[i]->tags_json, "[\"t\"]");
		cr_assert_eq(d[i]->created_ms, 1700000000000LL);
		cr_assert_eq(d[i]->expires_ms, 1700086400000LL);
		cr_assert(d[i]->entry_id[0]);
		rcpt_status(id, i, sbuf, sizeof(sbuf));
		cr_assert_str_eq(sbuf, "sending");
	}
	cr_assert_str_eq(d[1]->rcpt, "user1@example.com");
	msg_key(key, sizeof(key), id, "");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "r0:attempts");
	cr_assert_str_eq(sbuf, "1");
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 2);
	free_deliveries(d, n);

	/* nothing left: a short block returns 0 after about block_ms */
	int64_t t0 = util_mono_ms();
	n = store_fetch(st, "c1", 8, 200, d);
	int64_t dt = util_mono_ms() - t0;
	cr_assert_eq(n, 0, "empty fetch: got %d, want 0", n);
	cr_assert(dt >= 150 && dt < 2000, "block 200 ms took %lld ms", (long long)dt);
}

Test(store, hand_back_on_shutdown)
{
	char id[64], sbuf[32], key[128];
	struct store_delivery *d[8], *again[8];
	struct store_handback hb[2];
	size_t back = 99;
	int n;

	enqueue_msg(id, sizeof(id), 2, 0);
	n = store_fetch(st, "c1", 8, 100, d);
	cr_assert_eq(n, 2, "fetch: got %d, want 2", n);
	msg_key(key, sizeof(key), id, "");
	/* recipient 0 never started (attempt uncounted), recipient 1 was cut (counted) */
	hb[0].d = d[0];
	hb[0].counted = 0;
	hb[1].d = d[1];
	hb[1].counted = 1;
	cr_assert_eq(store_hand_back(st, "c1", hb, 2, &back), STORE_OK);
	cr_assert_eq(back, 2, "handed back: got %zu, want 2", back);
	for (int i = 0; i < 2; i++) {
		rcpt_status(id, i, sbuf, sizeof(sbuf));
		cr_assert_str_eq(sbuf, "queued", "recipient %d: got %s, want queued", i, sbuf);
	}
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "r0:attempts");
	cr_assert_str_eq(sbuf, "0", "never started: attempts %s, want 0", sbuf);
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "r1:attempts");
	cr_assert_str_eq(sbuf, "1", "cut: attempts %s, want 1", sbuf);
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 0);
	/* again: not ours any more, nothing touched */
	cr_assert_eq(store_hand_back(st, "c1", hb, 2, &back), STORE_OK);
	cr_assert_eq(back, 0, "second hand back: got %zu, want 0", back);
	free_deliveries(d, n);

	/* any consumer fetches them at once, no visibility timeout */
	n = store_fetch(st, "c2", 8, 100, again);
	cr_assert_eq(n, 2, "fetch after hand back: got %d, want 2", n);
	for (int i = 0; i < n; i++)
		cr_assert_eq(again[i]->attempts, again[i]->rcpt_idx == 0 ? 1 : 2,
		    "recipient %d: attempts %d", again[i]->rcpt_idx, again[i]->attempts);
	/* another consumer's delivery is not ours to hand back */
	hb[0].d = again[0];
	hb[0].counted = 0;
	cr_assert_eq(store_hand_back(st, "c1", hb, 1, &back), STORE_OK);
	cr_assert_eq(back, 0, "foreign hand back: got %zu, want 0", back);
	rcpt_status(id, again[0]->rcpt_idx, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "sending");
	free_deliveries(again, n);
	/* nothing read ahead: carried hand back is a no-op */
	cr_assert_eq(store_hand_back_carried(st, "c2", &back), STORE_OK);
	cr_assert_eq(back, 0);
}

Test(store, fetch_block_longer_than_command_timeout)
{
	struct store_delivery *d[2];
	int64_t t0 = util_mono_ms();
	int n = store_fetch(st, "c1", 2, 5600, d);

	cr_assert_eq(n, 0, "got %d, want 0 (a long block must not hit the socket timeout)", n);
	cr_assert(util_mono_ms() - t0 >= 5500);
	cr_assert_eq(store_ping(st), 0);
}

/*
 * The timeline is the hash's "tl" from the enqueue on (no list key); a
 * message stored by an earlier release keeps its list msg:<id>:tl, gets its
 * entries appended there and folded into "tl" when it finishes.
 */
Test(store, timeline_in_hash_and_list_of_earlier_release_folded)
{
	char id[64], id2[64], key[128], tkey[128], sbuf[64], tlbuf[512];
	struct store_delivery *d = NULL;
	struct store_message_view v;
	redisReply *r;

	enqueue_msg(id, sizeof(id), 1, 0);
	msg_key(key, sizeof(key), id, "");
	msg_key(tkey, sizeof(tkey), id, ":tl");
	cr_assert_eq(rint_cmd("EXISTS %s", tkey), 0, "a new message has no timeline list");
	rstr_cmd(tlbuf, sizeof(tlbuf), "HGET %s %s", key, "tl");
	cr_assert(tlbuf[0] == '{' && strchr(tlbuf, '\n') == NULL, "tl: got \"%s\", want 1 entry", tlbuf);
	cr_assert_eq(store_get_message(st, id, &v), 0);
	cr_assert_eq(v.ntimeline, 1, "queued: got %zu entries, want 1", v.ntimeline);
	store_message_view_free(&v);
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_eq(record_one(d, "delivered", 0, "{\"type\":\"message.delivered\"}"), 0);
	store_delivery_free(d);
	cr_assert_eq(store_get_message(st, id, &v), 0);
	cr_assert_eq(v.ntimeline, 2, "delivered: got %zu entries, want 2", v.ntimeline);
	cr_assert_str_eq(v.timeline_json[1], "{\"type\":\"x\"}");
	store_message_view_free(&v);

	/* the layout of an earlier release: the first entry in the list, no "tl" */
	enqueue_msg(id2, sizeof(id2), 1, 0);
	msg_key(key, sizeof(key), id2, "");
	msg_key(tkey, sizeof(tkey), id2, ":tl");
	rstr_cmd(tlbuf, sizeof(tlbuf), "HGET %s %s", key, "tl");
	r = redisCommand(rc_ctx, "RPUSH %s %s", tkey, tlbuf);
	cr_assert(r && r->type == REDIS_REPLY_INTEGER);
	freeReplyObject(r);
	cr_assert_eq(rint_cmd("HDEL %s tl", key), 1);
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_eq(record_one(d, "deferred", util_now_ms() + 60000, ""), 0);
	store_delivery_free(d);
	cr_assert_eq(rint_cmd("LLEN %s", tkey), 2, "the deferral appended to the old list");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "tl");
	cr_assert_str_eq(sbuf, "", "no \"tl\" while the list holds the timeline");
	cr_assert_eq(store_get_message(st, id2, &v), 0);
	cr_assert_eq(v.ntimeline, 2, "from the list: got %zu entries, want 2", v.ntimeline);
	store_message_view_free(&v);
	int nc = 0;

	cr_assert_eq(store_cancel(st, id2, NULL, "{\"type\":\"canceled\"}", &nc), 0);
	cr_assert_eq(nc, 1, "canceled: got %d, want 1", nc);
	cr_assert_eq(rint_cmd("EXISTS %s", tkey), 0, "the list is folded and deleted when finished");
	cr_assert_eq(store_get_message(st, id2, &v), 0);
	cr_assert_eq(v.ntimeline, 3, "folded: got %zu entries, want 3", v.ntimeline);
	cr_assert_str_eq(v.timeline_json[2], "{\"type\":\"canceled\"}");
	store_message_view_free(&v);
}

Test(store, record_delivered)
{
	char id[64], key[128], sbuf[64], tlbuf[512];
	struct store_delivery *d = NULL;
	struct store_message_view v;
	int rc;

	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(fetch_one("c1", &d), 1);
	rc = record_one(d, "delivered", 0, "{\"type\":\"message.delivered\"}");
	cr_assert_eq(rc, 0, "record: got %d, want 0", rc);

	msg_key(key, sizeof(key), id, "");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "pending");
	cr_assert_str_eq(sbuf, "0");
	long long ttl = rint_cmd("PTTL %s", key);
	cr_assert(ttl > 0 && ttl <= 7LL * 24 * 3600 * 1000, "msg PTTL: got %lld, want (0, 7d]", ttl);
	/* finished: the timeline is folded into the hash (and expires with it), its list is gone */
	rstr_cmd(tlbuf, sizeof(tlbuf), "HGET %s %s", key, "tl");
	cr_assert(strchr(tlbuf, '\n') != NULL, "folded timeline: got \"%s\", want 2 entries", tlbuf);
	msg_key(key, sizeof(key), id, ":tl");
	ttl = rint_cmd("PTTL %s", key);
	cr_assert_eq(ttl, -2, "timeline list PTTL: got %lld, want -2 (no key)", ttl);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 1);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 0);
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 0);

	cr_assert_eq(store_get_message(st, id, &v), 0);
	cr_assert_str_eq(v.rcpts[0].status, "delivered");
	cr_assert_eq(v.rcpts[0].attempts, 1);
	cr_assert_str_eq(v.rcpts[0].smtp_json, "{\"code\":250}");
	cr_assert_eq(v.ntimeline, 2);
	cr_assert_str_eq(v.timeline_json[1], "{\"type\":\"x\"}");
	store_message_view_free(&v);

	/* recording again (the recipient is not "sending"): a no-op ack */
	rc = record_one(d, "failed", 0, "{\"type\":\"message.failed\"}");
	cr_assert_eq(rc, 0, "re-record: got %d, want 0", rc);
	rcpt_status(id, 0, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "delivered");
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 1);
	store_delivery_free(d);
}

Test(store, retention_setting)
{
	char id[64], key[128];
	struct store_delivery *d = NULL;

	store_set_retention(st, 60);
	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_eq(record_one(d, "failed", 0, NULL), 0);
	msg_key(key, sizeof(key), id, "");
	long long ttl = rint_cmd("PTTL %s", key);
	cr_assert(ttl > 0 && ttl <= 60000, "PTTL: got %lld, want (0, 60000]", ttl);
	/* no event given: no outbox entry */
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 0);
	store_delivery_free(d);
}

Test(store, deferred_then_promoted)
{
	char id[64], key[128], member[96], sbuf[64];
	struct store_delivery *d = NULL;
	int64_t now = util_now_ms(), next = 0, due = now + 100000;
	int n;

	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_eq(record_one(d, "deferred", due, "{\"type\":\"message.deferred\"}"), 0);
	store_delivery_free(d);
	d = NULL;

	rcpt_status(id, 0, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "deferred");
	snprintf(member, sizeof(member), "%s/0", id);
	rstr_cmd(sbuf, sizeof(sbuf), "ZSCORE %s %s", "txm{0}:due", member);
	cr_assert_eq(strtoll(sbuf, NULL, 10), due, "due score: got %s, want %lld", sbuf, (long long)due);
	msg_key(key, sizeof(key), id, "");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "pending");
	cr_assert_str_eq(sbuf, "1");
	cr_assert_eq(rint_cmd("PTTL %s", key), -1);
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 0);

	n = store_promote_due(st, now, 100, &next);
	cr_assert_eq(n, 0, "early promote: got %d, want 0", n);
	cr_assert_eq(next, due, "next: got %lld, want %lld", (long long)next, (long long)due);

	n = store_promote_due(st, due, 100, &next);
	cr_assert_eq(n, 1, "promote: got %d, want 1", n);
	cr_assert_eq(next, 0, "next after: got %lld, want 0", (long long)next);
	rcpt_status(id, 0, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "queued");

	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_eq(d->attempts, 2, "attempts: got %d, want 2", d->attempts);
	{
		/* a second deferral is recorded but not counted again (metrics count recipients) */
		struct store_result r = {
			.d = d, .status = "deferred", .next_ms = due, .now_ms = util_now_ms(),
			.smtp_json = "", .event_json = "", .timeline_json = "", .counted = 7,
		};

		cr_assert_eq(store_record(st, &r, 1), 0);
		cr_assert_eq(r.counted, 0, "second deferral: got counted %d, want 0", r.counted);
		rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "r0:dfr");
		cr_assert_str_eq(sbuf, "1");
	}
	store_delivery_free(d);
}

Test(store, record_sets_counted)
{
	char id[64];
	struct store_delivery *d = NULL;
	int64_t now = util_now_ms();
	struct store_result r;

	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(fetch_one("c1", &d), 1);
	memset(&r, 0, sizeof(r));
	r.d = d;
	r.status = "deferred";
	r.next_ms = now;
	r.now_ms = now;
	cr_assert_eq(store_record(st, &r, 1), 0);
	cr_assert_eq(r.counted, 1, "first deferral: got counted %d, want 1", r.counted);
	/* the same result again: the recipient is not "sending" any more, nothing counted */
	cr_assert_eq(store_record(st, &r, 1), 0);
	cr_assert_eq(r.counted, 0, "replayed record: got counted %d, want 0", r.counted);
	store_delivery_free(d);
	cr_assert_eq(store_promote_due(st, now + 1, 100, &now), 1);
	cr_assert_eq(fetch_one("c1", &d), 1);
	r.d = d;
	r.status = "delivered";
	cr_assert_eq(store_record(st, &r, 1), 0);
	cr_assert_eq(r.counted, 1, "delivered after a deferral: got counted %d, want 1", r.counted);
	store_delivery_free(d);
}

#define K_HIGH "txm{0}:ready:high"
#define K_NORMAL "txm{0}:ready"

Test(store, lanes_fetch_high_first)
{
	char nid[64], hid[64], key[128], sbuf[32];
	struct store_delivery *d[8];
	struct store_message_view v;
	struct store_queue_stats q;
	int n, total = 0;

	enqueue_msg(nid, sizeof(nid), 3, 0);
	enqueue_lane(hid, sizeof(hid), 1, 0, STORE_LANE_HIGH);
	cr_assert_eq(rint_cmd("XLEN %s", K_NORMAL), 3);
	cr_assert_eq(rint_cmd("XLEN %s", K_HIGH), 1);
	msg_key(key, sizeof(key), hid, "");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "prio");
	cr_assert_str_eq(sbuf, "high");
	msg_key(key, sizeof(key), nid, "");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "prio");
	cr_assert_str_eq(sbuf, "normal");
	cr_assert_eq(store_get_message(st, hid, &v), 0);
	cr_assert_eq(v.lane, STORE_LANE_HIGH, "view lane: got %d, want high", (int)v.lane);
	store_message_view_free(&v);
	cr_assert_eq(store_get_message(st, nid, &v), 0);
	cr_assert_eq(v.lane, STORE_LANE_NORMAL, "view lane: got %d, want normal", (int)v.lane);
	store_message_view_free(&v);
	cr_assert_eq(store_queue_stats(st, &q), 0);
	cr_assert_eq(q.ready[STORE_LANE_NORMAL], 3, "ready normal: got %lld, want 3", (long long)q.ready[0]);
	cr_assert_eq(q.ready[STORE_LANE_HIGH], 1, "ready high: got %lld, want 1", (long long)q.ready[1]);
	cr_assert_eq(q.claimed[0] + q.claimed[1], 0, "claimed before any fetch");
	cr_assert(q.oldest_ms[0] >= 0 && q.oldest_ms[0] < 60000, "oldest normal: got %lld ms",
	    (long long)q.oldest_ms[0]);
	cr_assert_eq(q.nwh, 1, "backlogs: got %zu rows, want 1 (default)", q.nwh);
	cr_assert_str_eq(q.wh[0].endpoint, "default");

	/* the high message was enqueued last but comes first */
	n = store_fetch(st, "c1", 2, 100, d);
	cr_assert_eq(n, 2, "fetch: got %d, want 2", n);
	cr_assert_str_eq(d[0]->msg_id, hid, "first: got %s, want the high one %s", d[0]->msg_id, hid);
	cr_assert_eq(d[0]->lane, STORE_LANE_HIGH);
	cr_assert_str_eq(d[1]->msg_id, nid);
	cr_assert_eq(d[1]->lane, STORE_LANE_NORMAL);
	cr_assert_eq(pending_count(K_HIGH, "workers"), 1);
	/* one read of both lanes (COUNT 2 each): the second normal entry is read ahead, carried */
	cr_assert_eq(pending_count(K_NORMAL, "workers"), 2);
	cr_assert_eq(store_queue_stats(st, &q), 0);
	/* read entries are not ready any more (they were, before: ready counted XLEN) */
	cr_assert_eq(q.claimed[STORE_LANE_NORMAL], 2, "claimed normal: got %lld, want 2", (long long)q.claimed[0]);
	cr_assert_eq(q.claimed[STORE_LANE_HIGH], 1, "claimed high: got %lld, want 1", (long long)q.claimed[1]);
	cr_assert_eq(q.ready[STORE_LANE_NORMAL], 1, "ready normal: got %lld, want 1", (long long)q.ready[0]);
	cr_assert_eq(q.ready[STORE_LANE_HIGH], 0, "ready high: got %lld, want 0", (long long)q.ready[1]);
	for (int i = 0; i < n; i++)
		cr_assert_eq(record_one(d[i], "delivered", 0, NULL), 0);
	total += n;
	free_deliveries(d, n);
	cr_assert_eq(pending_count(K_HIGH, "workers"), 0, "the high entry is acked on ready:high");
	cr_assert_eq(rint_cmd("XLEN %s", K_HIGH), 0);

	/* the rest of the normal lane; both streams empty and acked after record */
	n = store_fetch(st, "c1", 8, 100, d);
	cr_assert_eq(n, 2, "second fetch: got %d, want 2", n);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(d[i]->lane, STORE_LANE_NORMAL);
		cr_assert_eq(record_one(d[i], "delivered", 0, NULL), 0);
	}
	total += n;
	free_deliveries(d, n);
	cr_assert_eq(total, 4);
	cr_assert_eq(pending_count(K_HIGH, "workers"), 0);
	cr_assert_eq(pending_count(K_NORMAL, "workers"), 0);
	cr_assert_eq(rint_cmd("XLEN %s", K_HIGH), 0);
	cr_assert_eq(rint_cmd("XLEN %s", K_NORMAL), 0);

	/* a blocking fetch wakes up for the high lane too */
	n = store_fetch(st, "c1", 8, 100, d);
	cr_assert_eq(n, 0);
	enqueue_lane(hid, sizeof(hid), 1, 0, STORE_LANE_HIGH);
	n = store_fetch(st, "c1", 8, 2000, d);
	cr_assert_eq(n, 1, "fetch high only: got %d, want 1", n);
	cr_assert_eq(d[0]->lane, STORE_LANE_HIGH);
	cr_assert_eq(record_one(d[0], "delivered", 0, NULL), 0);
	free_deliveries(d, n);
	cr_assert_eq(pending_count(K_HIGH, "workers"), 0);
}

/* Count high and normal among the next k single fetches (each recorded delivered). */
static void
fetch_lanes(int k, int *high, int *normal)
{
	struct store_delivery *d[1];

	*high = *normal = 0;
	for (int i = 0; i < k; i++) {
		int n = store_fetch(st, "c1", 1, 0, d);

		cr_assert_eq(n, 1, "fetch %d: got %d, want 1", i, n);
		if (d[0]->lane == STORE_LANE_HIGH)
			(*high)++;
		else
			(*normal)++;
		cr_assert_eq(record_one(d[0], "delivered", 0, NULL), 0);
		free_deliveries(d, 1);
	}
}

/*
 * TXMAIL_LANE_WEIGHTS: with both lanes full, high gets 9 slots in 10, not
 * all of them (strict priority gave normal 0 of 20), one slot at a time as
 * well as in batches; 1:1 alternates; a lane with nothing leaves its share
 * to the other and banks no credit.
 */
Test(store, lanes_weighted_share)
{
	char id[64];
	struct store_delivery *d[16];
	int h, nn, n;

	enqueue_lane(id, sizeof(id), 40, 0, STORE_LANE_HIGH);
	enqueue_lane(id, sizeof(id), 40, 0, STORE_LANE_HIGH);
	enqueue_lane(id, sizeof(id), 20, 0, STORE_LANE_NORMAL);
	fetch_lanes(20, &h, &nn);
	cr_assert_eq(nn, 2, "9:1 over 20 single fetches: got %d normal, want 2", nn);
	n = store_fetch(st, "c1", 10, 0, d);
	cr_assert_eq(n, 10);
	nn = 0;
	for (int i = 0; i < n; i++) {
		nn += d[i]->lane == STORE_LANE_NORMAL;
		cr_assert_eq(record_one(d[i], "delivered", 0, NULL), 0);
	}
	free_deliveries(d, n);
	cr_assert_eq(nn, 1, "9:1 in one batch of 10: got %d normal, want 1", nn);
	store_set_lane_weights(st, 1, 1);
	fetch_lanes(10, &h, &nn);
	cr_assert_eq(nn, 5, "1:1: got %d normal of 10, want 5", nn);
	/* high has 80 - 18 - 9 - 5 = 48 left; normal 20 - 2 - 1 - 5 = 12: normal runs dry first */
	store_set_lane_weights(st, 1, 9);
	fetch_lanes(12 + 2, &h, &nn);
	cr_assert_geq(nn, 10, "1:9: got %d normal of 14", nn);
	fetch_lanes(10, &h, &nn);
	cr_assert_eq(h, 10, "normal empty: high takes every slot (got %d)", h);
	cr_assert_eq(nn, 0);
}

/*
 * An entry read ahead and carried is not claimed a second time by the
 * same handle's reclaim (it is idle only because it waited for a slot):
 * fetched once, by the carry.
 */
Test(store, reclaim_skips_own_carry)
{
	char hid[64], nid[64];
	struct store_delivery *d[4], *r[4];
	int n, total = 0;

	enqueue_lane(hid, sizeof(hid), 1, 0, STORE_LANE_HIGH);
	enqueue_msg(nid, sizeof(nid), 3, 0);
	n = store_fetch(st, "c1", 2, 0, d);   /* 1 high + 1 normal, 2 normal carried */
	cr_assert_eq(n, 2);
	free_deliveries(d, n);
	total += n;
	n = store_reclaim(st, "c1", 0, 4, r);
	cr_assert_eq(n, 2, "reclaim gives the two claimed ones (idle 0), not the carried: got %d", n);
	free_deliveries(r, n);
	n = store_fetch(st, "c1", 4, 0, d);
	cr_assert_eq(n, 2, "the carried ones, once: got %d", n);
	for (int i = 0; i < n; i++)
		cr_assert_eq(d[i]->attempts, 1, "claimed once: attempt %d", d[i]->attempts);
	free_deliveries(d, n);
	total += n;
	cr_assert_eq(total, 4);
}

/*
 * A carried entry's idle time counts from its read: claiming it resets it,
 * so another worker's reclaim does not take it while it is being sent
 * (on the old claim it did: sent twice).
 */
Test(store, carried_claim_resets_idle)
{
	char hid[64], nid[64];
	struct store_delivery *d[4], *b[4];
	struct timespec ts = { 0, 700 * 1000000L };
	int n;

	enqueue_lane(hid, sizeof(hid), 1, 0, STORE_LANE_HIGH);
	enqueue_msg(nid, sizeof(nid), 2, 0);
	n = store_fetch(st, "c1", 2, 0, d);   /* 1 high + 1 normal, 1 normal carried */
	cr_assert_eq(n, 2);
	free_deliveries(d, n);
	while (nanosleep(&ts, &ts) != 0)
		;
	n = store_fetch(st, "c1", 4, 0, d);
	cr_assert_eq(n, 1, "the carried one: got %d", n);
	n = store_reclaim(st, "B", 500, 4, b);
	for (int i = 0; i < n; i++)
		cr_assert_neq(b[i]->rcpt_idx == d[0]->rcpt_idx && strcmp(b[i]->msg_id, d[0]->msg_id) == 0, 1,
		    "the carried entry, just claimed, was reclaimed by another worker");
	cr_assert_eq(n, 2, "B takes the two claimed 700 ms ago (idle > 500 ms), not the fresh claim: got %d", n);
	free_deliveries(b, n);
	free_deliveries(d, 1);
}

/*
 * store_park: a claimed delivery goes back without an attempt and waits in
 * due, not on its lane; promote puts it back; one not ours is left alone.
 */
Test(store, park_then_promote)
{
	char id[64], sbuf[32], key[128], member[96];
	struct store_delivery *d[4], *other[4];
	struct store_park p[2];
	size_t parked = 99;
	int64_t next = 0, until = util_now_ms() + 60000;
	int n;

	enqueue_msg(id, sizeof(id), 2, 0);
	n = store_fetch(st, "c1", 4, 0, d);
	cr_assert_eq(n, 2);
	p[0].d = d[0];
	p[0].until_ms = until;
	cr_assert_eq(store_park(st, "c1", p, 1, &parked), STORE_OK);
	cr_assert_eq(parked, 1);
	rcpt_status(id, 0, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "queued", "parked: got %s, want queued", sbuf);
	msg_key(key, sizeof(key), id, "");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "r0:attempts");
	cr_assert_str_eq(sbuf, "0", "the attempt is not counted: got %s", sbuf);
	snprintf(member, sizeof(member), "%s/0", id);
	rstr_cmd(sbuf, sizeof(sbuf), "ZSCORE %s %s", "txm{0}:due", member);
	cr_assert_eq(strtoll(sbuf, NULL, 10), until, "due score: got %s", sbuf);
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 1, "its entry is acked");
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 1, "and deleted; no new one on the lane");
	/* not ours: left alone */
	p[0].d = d[1];
	cr_assert_eq(store_park(st, "c2", p, 1, &parked), STORE_OK);
	cr_assert_eq(parked, 0);
	rcpt_status(id, 1, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "sending");
	/* not due yet: nothing moves; at until it is back on its lane */
	cr_assert_eq(store_promote_due(st, until - 1, 100, &next), 0);
	cr_assert_eq(next, until);
	cr_assert_eq(store_promote_due(st, until, 100, &next), 1);
	n = store_fetch(st, "c2", 4, 0, other);
	cr_assert_eq(n, 1, "promoted: fetched %d, want 1", n);
	cr_assert_eq(other[0]->rcpt_idx, 0);
	cr_assert_eq(other[0]->attempts, 1, "first real attempt: got %d", other[0]->attempts);
	free_deliveries(other, n);
	free_deliveries(d, 2);
	/* bad input */
	p[0].d = NULL;
	cr_assert_eq(store_park(st, "c1", p, 1, &parked), STORE_ERR_PROTO);
}

/*
 * A destination published as saturated (store_saturate): its "queued"
 * recipients are not claimed but parked by the claim script where they are
 * read - still queued, attempt not counted, entry acked and deleted, in due
 * at the domain's slots - and counted by store_take_parked; the others are
 * claimed as usual; an expired message is claimed (the worker records it).
 */
Test(store, claim_parks_saturated)
{
	struct store_rcpt_in rc[3];
	struct store_message_in m;
	struct store_delivery *d[4];
	struct store_sat v;
	char id[64], id2[64], sbuf[64], key[128], member[96];
	int64_t now = util_now_ms();
	int n;

	memset(rc, 0, sizeof(rc));
	rc[0].email = "a@Tarpit.test";
	rc[1].email = "b@ok.test";
	rc[2].email = "c@tarpit.test";
	memset(&m, 0, sizeof(m));
	cr_assert_eq(util_random_id("msg_", id, sizeof(id)), 0);
	m.id = id;
	m.created_ms = now;
	m.expires_ms = now + 86400000;
	m.from = m.mail_from = "s@example.com";
	m.subject = "s";
	m.mime = mime_bytes;
	m.mime_len = MIME_LEN;
	m.rcpts = rc;
	m.nrcpts = 3;
	cr_assert_eq(store_enqueue(st, &m), 0);
	/* an expired message for the same destination */
	cr_assert_eq(util_random_id("msg_", id2, sizeof(id2)), 0);
	m.id = id2;
	m.created_ms = now - 7200000;
	m.expires_ms = now - 3600000;
	m.nrcpts = 1;
	cr_assert_eq(store_enqueue(st, &m), 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 4, "published after the enqueue: all in the stream");
	v = (struct store_sat){ "tarpit.test", now + 30000, now + 60000, 2000, 600000, 100 };
	cr_assert_eq(store_saturate(st, &v, 1), 0);
	n = store_fetch(st, "c1", 4, 0, d);
	cr_assert_eq(n, 2, "fetched %d, want ok.test's and the expired one", n);
	cr_assert_str_eq(d[0]->rcpt, "b@ok.test");
	cr_assert_str_eq(d[1]->msg_id, id2, "the expired one is claimed, to be recorded expired");
	cr_assert_eq(store_take_parked(st), 2, "two parked by the claim");
	cr_assert_eq(store_take_parked(st), 0, "taken");
	msg_key(key, sizeof(key), id, "");
	for (int i = 0; i < 3; i += 2) {
		rcpt_status(id, i, sbuf, sizeof(sbuf));
		cr_assert_str_eq(sbuf, "queued", "r%d parked: got %s, want queued", i, sbuf);
		snprintf(member, sizeof(member), "r%d:attempts", i);
		rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, member);
		cr_assert_str_eq(sbuf, "0", "the attempt is not counted: got %s", sbuf);
		snprintf(member, sizeof(member), "%s/%d", id, i);
		rstr_cmd(sbuf, sizeof(sbuf), "ZSCORE %s %s", "txm{0}:due", member);
		cr_assert_eq(strtoll(sbuf, NULL, 10), now + 60000 + (i / 2) * 2000,
		    "r%d due at the domain's slot: got %s", i, sbuf);
	}
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 2, "only the two claimed are pending");
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 2, "the parked entries are deleted");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", "txm{0}:sat", "tarpit.test");
	cr_assert_eq(strtoll(strchr(sbuf, ' ') + 1, NULL, 10), now + 64000, "the next slot moved on: %s", sbuf);
	free_deliveries(d, n);
}

Test(store, lanes_retry_stays_in_lane)
{
	char hid[64], oid[64], key[128];
	struct store_delivery *d = NULL;
	int64_t now = util_now_ms(), next = 0;

	enqueue_lane(hid, sizeof(hid), 1, 0, STORE_LANE_HIGH);
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_eq(d->lane, STORE_LANE_HIGH);
	cr_assert_eq(record_one(d, "deferred", now + 1000, NULL), 0);
	store_delivery_free(d);
	cr_assert_eq(pending_count(K_HIGH, "workers"), 0);
	cr_assert_eq(rint_cmd("XLEN %s", K_HIGH), 0);

	/* a message stored before lanes (no prio) is normal */
	enqueue_msg(oid, sizeof(oid), 1, 0);
	msg_key(key, sizeof(key), oid, "");
	redisReply *r = redisCommand(rc_ctx, "HDEL %s prio", key);
	cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
	freeReplyObject(r);
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_str_eq(d->msg_id, oid);
	cr_assert_eq(record_one(d, "deferred", now + 1000, NULL), 0);
	store_delivery_free(d);

	cr_assert_eq(store_promote_due(st, now + 1000, 10, &next), 2);
	cr_assert_eq(rint_cmd("XLEN %s", K_HIGH), 1, "the retried high message is back on ready:high");
	cr_assert_eq(rint_cmd("XLEN %s", K_NORMAL), 1, "the old message goes to ready");
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_str_eq(d->msg_id, hid);
	cr_assert_eq(d->lane, STORE_LANE_HIGH);
	cr_assert_eq(d->attempts, 2, "attempts: got %d, want 2", d->attempts);
	cr_assert_eq(record_one(d, "delivered", 0, NULL), 0);
	store_delivery_free(d);
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_str_eq(d->msg_id, oid);
	cr_assert_eq(d->lane, STORE_LANE_NORMAL);
	cr_assert_eq(record_one(d, "delivered", 0, NULL), 0);
	store_delivery_free(d);
	cr_assert_eq(pending_count(K_HIGH, "workers"), 0);
	cr_assert_eq(pending_count(K_NORMAL, "workers"), 0);

	/* send_at: scheduled high goes to ready:high when due */
	enqueue_lane(hid, sizeof(hid), 1, 5000, STORE_LANE_HIGH);
	cr_assert_eq(rint_cmd("XLEN %s", K_HIGH), 0);
	cr_assert_eq(store_promote_due(st, 5000, 10, &next), 1);
	cr_assert_eq(rint_cmd("XLEN %s", K_HIGH), 1);
	cr_assert_eq(rint_cmd("XLEN %s", K_NORMAL), 0);
}

Test(store, lanes_reclaim_and_heartbeat)
{
	char hid[64], nid[64];
	struct store_delivery *a[4], *b[4];
	const char *ids[2];
	enum store_lane lanes[2];
	int n;

	enqueue_msg(nid, sizeof(nid), 1, 0);
	enqueue_lane(hid, sizeof(hid), 1, 0, STORE_LANE_HIGH);
	n = store_fetch(st, "A", 4, 100, a);
	cr_assert_eq(n, 2, "fetch: got %d, want 2", n);
	cr_assert_eq(a[0]->lane, STORE_LANE_HIGH);
	cr_assert_eq(a[1]->lane, STORE_LANE_NORMAL);

	/* heartbeats on each entry's own stream keep both from being taken */
	usleep(400000);
	for (int i = 0; i < 2; i++) {
		ids[i] = a[i]->entry_id;
		lanes[i] = a[i]->lane;
	}
	cr_assert_eq(store_heartbeat(st, "A", ids, lanes, NULL, NULL, 2), 0);
	n = store_reclaim(st, "B", 300, 4, b);
	cr_assert_eq(n, 0, "reclaim after heartbeat: got %d, want 0", n);

	n = store_reclaim(st, "B", 0, 4, b);
	cr_assert_eq(n, 2, "reclaim: got %d, want 2 (one per lane)", n);
	cr_assert_str_eq(b[0]->msg_id, hid, "high first");
	cr_assert_eq(b[0]->lane, STORE_LANE_HIGH);
	cr_assert_str_eq(b[1]->msg_id, nid);
	cr_assert_eq(b[1]->lane, STORE_LANE_NORMAL);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(record_one(b[i], "delivered", 0, NULL), 0);
	cr_assert_eq(pending_count(K_HIGH, "workers"), 0);
	cr_assert_eq(pending_count(K_NORMAL, "workers"), 0);
	free_deliveries(a, 2);
	free_deliveries(b, 2);
}

Test(store, promote_batches)
{
	char id[64];
	int64_t next = 0;
	int n;

	enqueue_msg(id, sizeof(id), 5, 1000);
	n = store_promote_due(st, 999, 10, &next);
	cr_assert_eq(n, 0);
	cr_assert_eq(next, 1000);
	n = store_promote_due(st, 2000, 3, &next);
	cr_assert_eq(n, 3, "first batch: got %d, want 3", n);
	cr_assert_eq(next, 1000, "next: got %lld, want 1000", (long long)next);
	n = store_promote_due(st, 2000, 3, &next);
	cr_assert_eq(n, 2, "second batch: got %d, want 2", n);
	cr_assert_eq(next, 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 5);
}

Test(store, send_at_is_scheduled)
{
	char id[64], sbuf[32];
	struct store_delivery *d = NULL;
	struct store_message_view v;
	int64_t at = util_now_ms() + 60000, next = 0;

	enqueue_msg(id, sizeof(id), 1, at);
	rcpt_status(id, 0, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "scheduled");
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 0);
	cr_assert_eq(rint_cmd("ZCARD %s", "txm{0}:due"), 1);
	cr_assert_eq(fetch_one("c1", &d), 0);
	cr_assert_eq(store_get_message(st, id, &v), 0);
	cr_assert_eq(v.send_at_ms, at);
	store_message_view_free(&v);

	cr_assert_eq(store_promote_due(st, at, 10, &next), 1);
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_eq(d->attempts, 1);
	store_delivery_free(d);
}

/* b, reclaimed from a, is recorded delivered: the entry is done; both freed */
static void
record_reclaimed(const char *id, struct store_delivery *a, struct store_delivery *b)
{
	char sbuf[32];

	cr_assert_eq(record_one(b, "delivered", 0, "{}"), 0);
	rcpt_status(id, 0, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "delivered");
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 0);
	store_delivery_free(a);
	store_delivery_free(b);
}

Test(store, reclaim_from_dead_consumer)
{
	char id[64], sbuf[32];
	struct store_delivery *a = NULL, *b[4];
	int n, rc;

	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(fetch_one("A", &a), 1);
	n = store_reclaim(st, "B", 0, 4, b);
	cr_assert_eq(n, 1, "reclaim: got %d, want 1", n);
	cr_assert_str_eq(b[0]->entry_id, a->entry_id);
	cr_assert_eq(b[0]->attempts, 2, "attempts: got %d, want 2", b[0]->attempts);

	/* A's late outcome is stale: nothing changes, B still holds the entry */
	rc = record_one(a, "delivered", 0, "{}");
	cr_assert_eq(rc, 0);
	rcpt_status(id, 0, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "sending");
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 1);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 0);

	record_reclaimed(id, a, b[0]);
}

/*
 * A claim lost in a failover: the worker claimed the entry on a primary
 * that died before its replicas had the claim, so on the promoted replica
 * the recipient is "queued" again (attempts 0) while the entry is still
 * pending with the worker (its read had been replicated). The worker's
 * outcome finds no "sending" recipient: it must leave the entry pending for
 * a reclaim (a second delivery), not ack it (the recipient would stay
 * "queued" with nothing left to take it: stuck for good).
 */
Test(store, record_after_a_lost_claim_leaves_the_entry)
{
	char id[64], key[128], sbuf[32];
	struct store_delivery *a = NULL, *b[4];
	int n;

	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(fetch_one("A", &a), 1);
	msg_key(key, sizeof(key), id, "");
	hset_cmd(key, "r0:status", "queued");
	hset_cmd(key, "r0:attempts", "0");

	cr_assert_eq(record_one(a, "delivered", 0, "{}"), 0);
	rcpt_status(id, 0, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "queued", "status: got %s, want queued", sbuf);
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 1, "the entry was acked: nothing can take it");
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 0);

	n = store_reclaim(st, "B", 0, 4, b);
	cr_assert_eq(n, 1, "reclaim: got %d, want 1", n);
	cr_assert_eq(b[0]->attempts, 1, "attempts: got %d, want 1", b[0]->attempts);
	record_reclaimed(id, a, b[0]);
}

Test(store, heartbeat_prevents_reclaim)
{
	char id[64];
	struct store_delivery *a = NULL, *b[4];
	int n;

	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(fetch_one("A", &a), 1);
	usleep(400000);   /* let the entry become idle for > 300 ms */
	const char *ids[1] = { a->entry_id };
	cr_assert_eq(store_heartbeat(st, "A", ids, NULL, NULL, NULL, 1), 0);
	n = store_reclaim(st, "B", 300, 4, b);
	cr_assert_eq(n, 0, "reclaim after heartbeat: got %d, want 0", n);

	/* without heartbeats it is taken over once idle long enough */
	int64_t deadline = util_mono_ms() + 5000;
	while (n == 0 && util_mono_ms() < deadline) {
		n = store_reclaim(st, "B", 300, 4, b);
		if (n == 0)
			usleep(50000);
	}
	cr_assert_eq(n, 1, "reclaim when idle: got %d, want 1", n);
	cr_assert_eq(b[0]->attempts, 2);
	store_delivery_free(b[0]);
	store_delivery_free(a);
	cr_assert_eq(store_heartbeat(st, "A", NULL, NULL, NULL, NULL, 0), 0);
}

Test(store, undeliverable_entries_are_skipped)
{
	char id[64], key[128], sbuf[32];
	struct store_delivery *d[4];
	int n;

	enqueue_msg(id, sizeof(id), 2, 0);
	msg_key(key, sizeof(key), id, "");
	hset_cmd(key, "r0:status", "canceled");
	n = store_fetch(st, "c1", 4, 0, d);
	cr_assert_eq(n, 1, "fetch: got %d, want 1", n);
	cr_assert_eq(d[0]->rcpt_idx, 1);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 1);
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 1);

	/* canceled while sending: the outcome is acked without changes */
	hset_cmd(key, "r1:status", "canceled");
	cr_assert_eq(record_one(d[0], "delivered", 0, "{}"), 0);
	rcpt_status(id, 1, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "canceled");
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 0);
	store_delivery_free(d[0]);

	/* a ready entry for a message that is gone */
	redisReply *r = redisCommand(rc_ctx, "XADD txm{0}:ready * m msg_gone r 0");
	cr_assert(r && r->type == REDIS_REPLY_STRING);
	freeReplyObject(r);
	r = redisCommand(rc_ctx, "XADD txm{0}:ready * junk 1");
	cr_assert(r && r->type == REDIS_REPLY_STRING);
	freeReplyObject(r);
	n = store_fetch(st, "c1", 4, 0, d);
	cr_assert_eq(n, 0, "fetch of dead entries: got %d, want 0", n);
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 0);
}

Test(store, cancel)
{
	char id[64], key[128], member[96], sbuf[32];
	struct store_delivery *d[4];
	struct store_message_view v;
	int n = -1, rc;

	/* r0 in flight, r1 deferred, r2 queued */
	enqueue_msg(id, sizeof(id), 3, 0);
	cr_assert_eq(store_fetch(st, "c1", 2, 0, d), 2);
	cr_assert_eq(record_one(d[1], "deferred", util_now_ms() + 60000, NULL), 0);
	rc = store_cancel(st, id, NULL, "{\"type\":\"canceled\"}", &n);
	cr_assert_eq(rc, 0, "cancel: got %d, want 0", rc);
	cr_assert_eq(n, 2, "canceled: got %d, want 2", n);
	snprintf(member, sizeof(member), "%s/1", id);
	cr_assert_eq(rint_cmd("ZCARD %s", "txm{0}:due"), 0, "%s still due", member);
	cr_assert_eq(store_get_message(st, id, &v), 0);
	cr_assert_str_eq(v.rcpts[0].status, "sending");
	cr_assert_str_eq(v.rcpts[1].status, "canceled");
	cr_assert_str_eq(v.rcpts[2].status, "canceled");
	cr_assert_eq(v.ntimeline, 3, "timeline: got %zu, want 3", v.ntimeline);
	cr_assert_str_eq(v.timeline_json[2], "{\"type\":\"canceled\"}");
	store_message_view_free(&v);
	msg_key(key, sizeof(key), id, "");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "pending");
	cr_assert_str_eq(sbuf, "1");
	/* the queued one's ready entry is dropped when fetched */
	cr_assert_eq(store_fetch(st, "c1", 2, 0, d + 2), 0);
	/* the in-flight one finishes normally; the message then expires */
	cr_assert_eq(record_one(d[0], "delivered", 0, NULL), 0);
	cr_assert(rint_cmd("PTTL %s", key) > 0);
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 0);
	cr_assert_eq(store_cancel(st, id, NULL, "{}", &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(store_cancel(st, "msg_nope", NULL, "{}", &n), STORE_ERR_NOT_FOUND);
	store_delivery_free(d[0]);
	store_delivery_free(d[1]);
}

Test(store, fifty_recipients_pipelined)
{
	char id[64], key[128], sbuf[32];
	struct store_delivery *d[64];
	struct store_result res[64];
	struct store_message_view v;
	int n = 0, got;

	enqueue_msg(id, sizeof(id), 50, 0);
	cr_assert_eq(store_get_message(st, id, &v), 0);
	cr_assert_eq(v.nrcpts, 50);
	cr_assert_str_eq(v.rcpts[49].email, "user49@example.com");
	store_message_view_free(&v);
	while (n < 50 && (got = store_fetch(st, "c1", 64 - n, 0, d + n)) > 0)
		n += got;
	cr_assert_eq(n, 50, "fetched: got %d, want 50", n);
	for (int i = 0; i < n; i++)
		res[i] = (struct store_result){ .d = d[i], .status = "delivered",
		    .now_ms = util_now_ms(), .event_json = "{\"e\":1}", .timeline_json = "{}" };
	cr_assert_eq(store_record(st, res, (size_t)n), 0);
	msg_key(key, sizeof(key), id, "");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "pending");
	cr_assert_str_eq(sbuf, "0");
	cr_assert(rint_cmd("PTTL %s", key) > 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 50);
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 0);
	free_deliveries(d, n);
}

Test(store, invalid_record_rejected)
{
	struct store_delivery d = { .msg_id = "m1", .entry_id = "1-1" };
	struct store_result r = { .d = &d, .status = "bogus" };
	int rc = store_record(st, &r, 1);

	cr_assert_eq(rc, STORE_ERR_PROTO, "got %d, want %d", rc, STORE_ERR_PROTO);
	r.d = NULL;
	r.status = "delivered";
	cr_assert_eq(store_record(st, &r, 1), STORE_ERR_PROTO);
	cr_assert_eq(store_record(st, NULL, 0), 0);
}

Test(store, noscript_reload)
{
	char id[64];
	redisReply *r = redisCommand(rc_ctx, "SCRIPT FLUSH");

	cr_assert(r && r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 1);
}

Test(store, webhook_settle)
{
	char id[64];
	struct store_delivery *d = NULL;
	struct store_event *ev[4], *ev2[4];
	struct store_whd *w[4];
	int64_t now = util_now_ms();
	int n;

	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_eq(record_one(d, "delivered", 0, "{\"id\":\"evt_7\"}"), 0);
	store_delivery_free(d);

	n = store_read_events_flags(st, "w1", 4, 100, 0, STORE_EVENTS_OWN, ev);
	cr_assert_eq(n, 1, "read: got %d, want 1", n);
	/* held, not acked: without STORE_EVENTS_OWN it is not read again */
	n = store_read_events_flags(st, "w1", 4, 0, 0, 0, ev2);
	cr_assert_eq(n, 0, "re-read without own: got %d, want 0", n);
	/* pending ones only: the own entry, never a new one */
	n = store_read_events_flags(st, "w1", 4, 0, 0, STORE_EVENTS_OWN | STORE_EVENTS_NO_NEW, ev2);
	cr_assert_eq(n, 1, "own, no new: got %d, want 1", n);
	cr_assert_str_eq(ev2[0]->entry_id, ev[0]->entry_id);
	store_event_free(ev2[0]);
	n = store_read_events_flags(st, "w2", 4, 0, 0, STORE_EVENTS_OWN | STORE_EVENTS_NO_NEW, ev2);
	cr_assert_eq(n, 0, "another consumer, no new: got %d, want 0", n);
	cr_assert_eq(store_events_touch(st, "w1", (const char *const []){ ev[0]->entry_id }, 1), 0);
	cr_assert_eq(pending_count("txm{0}:events", "webhooks"), 1);

	/* a failed direct attempt parked with its attempts, a second one for a
	 * missing endpoint skipped, and the ack in the same script */
	struct store_whpark p[2] = {
		{ .member = "evt_7/default", .body = ev[0]->json, .project = "default",
		  .attempts = 1, .first_ms = now - 10, .due_ms = now },
		{ .member = "evt_7/ep9", .body = ev[0]->json, .project = "default",
		  .attempts = 0, .first_ms = now, .due_ms = now },
	};
	const char *ids[1] = { ev[0]->entry_id };

	n = store_webhook_settle(st, p, 2, ids, 1);
	cr_assert_eq(n, 1, "settle: got %d, want 1 created", n);
	cr_assert_eq(pending_count("txm{0}:events", "webhooks"), 0);
	cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:whq:ep9"), 0);
	/* again: an existing delivery is never reset */
	p[0].attempts = 5;
	n = store_webhook_settle(st, p, 1, NULL, 0);
	cr_assert_eq(n, 0, "settle again: got %d, want 0 created", n);
	n = store_webhook_claim(st, "default", now, 30000, 4, w);
	cr_assert_eq(n, 1, "claim: got %d, want 1", n);
	cr_assert_str_eq(w[0]->body, "{\"id\":\"evt_7\"}");
	cr_assert_eq(w[0]->attempts, 1);
	cr_assert_eq(w[0]->first_ms, now - 10);
	store_whd_free(w[0]);
	store_event_free(ev[0]);
	cr_assert_eq(store_webhook_settle(st, NULL, 0, NULL, 0), 0);
	p[0].member = "no-slash";
	cr_assert_eq(store_webhook_settle(st, p, 1, NULL, 0), STORE_ERR_PROTO);
}

Test(store, webhooks)
{
	char id[64], sbuf[64], key[160];
	struct store_delivery *d = NULL;
	struct store_event *ev[4], *ev2[4];
	struct store_whd *w[4];
	int64_t now = util_now_ms(), nd;
	int n;

	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_eq(record_one(d, "delivered", 0, "{\"id\":\"evt_1\"}"), 0);
	store_delivery_free(d);

	n = store_read_events(st, "w1", 4, 100, 0, ev);
	cr_assert_eq(n, 1, "read_events: got %d, want 1", n);
	cr_assert_str_eq(ev[0]->json, "{\"id\":\"evt_1\"}");
	/* not fanned out yet: our own pending entry comes back first */
	n = store_read_events(st, "w1", 4, 100, 0, ev2);
	cr_assert_eq(n, 1, "re-read: got %d, want 1", n);
	cr_assert_str_eq(ev2[0]->entry_id, ev[0]->entry_id);
	store_event_free(ev2[0]);

	/* "default" needs no endpoint record; ep2 is a stored endpoint, ep3 is not (skipped) */
	char ep_id[] = "ep2", ep_url[] = "http://x", ep_sec[] = "whsec_x";
	struct store_endpoint ep = { .id = ep_id, .url = ep_url, .secret = ep_sec, .created_ms = 1 };
	cr_assert_eq(store_endpoint_create(st, &ep), 0);
	const char *eps[3] = { "default", "ep2", "ep3" };
	cr_assert_eq(store_webhook_fanout(st, ev[0], "evt_1", eps, 3, now), 0);
	cr_assert_eq(pending_count("txm{0}:events", "webhooks"), 0);
	/* events are kept for live readers (acked, not deleted) */
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 1);
	cr_assert_eq(rint_cmd("ZCARD %s", "txm{0}:whq:default"), 1);
	cr_assert_eq(rint_cmd("ZCARD %s", "txm{0}:whq:ep2"), 1);
	cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:whq:ep3"), 0);
	nd = store_webhook_next_due(st, "default");
	cr_assert_eq(nd, now, "next due: got %lld, want %lld", (long long)nd, (long long)now);
	store_event_free(ev[0]);

	n = store_read_events(st, "w1", 4, 50, 0, ev);
	cr_assert_eq(n, 0, "after fanout: got %d, want 0", n);

	n = store_webhook_claim(st, "default", now, 30000, 4, w);
	cr_assert_eq(n, 1, "claim default: got %d, want 1", n);
	n = store_webhook_claim(st, "ep2", now, 30000, 4, w + 1);
	cr_assert_eq(n, 1, "claim ep2: got %d, want 1", n);
	cr_assert_str_eq(w[0]->event_id, "evt_1");
	cr_assert_str_eq(w[0]->endpoint, "default");
	cr_assert_str_eq(w[0]->member, "evt_1/default");
	cr_assert_str_eq(w[1]->endpoint, "ep2");
	cr_assert_str_eq(w[0]->body, "{\"id\":\"evt_1\"}");
	cr_assert_eq(w[0]->attempts, 0);
	cr_assert_eq(w[0]->first_ms, now);
	/* leased: not due again until the lease ends */
	struct store_whd *w2[4];
	cr_assert_eq(store_webhook_claim(st, "default", now + 1000, 30000, 4, w2), 0);
	cr_assert_eq(store_webhook_next_due(st, "default"), now + 30000);

	cr_assert_eq(store_webhook_retry(st, w[0]->member, 1, now + 5000), 0);
	cr_assert_eq(store_webhook_done(st, w[1]->member), 0);
	cr_assert_eq(rint_cmd("ZCARD %s", "txm{0}:whq:ep2"), 0);
	snprintf(key, sizeof(key), "txm{0}:wh:%s", w[1]->member);
	cr_assert_eq(rint_cmd("EXISTS %s", key), 0);
	n = store_webhook_claim(st, "default", now + 5000, 30000, 4, w2);
	cr_assert_eq(n, 1, "claim after retry: got %d, want 1", n);
	cr_assert_eq(w2[0]->attempts, 1);
	cr_assert_eq(store_webhook_done(st, w2[0]->member), 0);
	store_whd_free(w2[0]);
	cr_assert_eq(store_webhook_next_due(st, "default"), 0);
	n = store_webhook_retry(st, w[0]->member, 2, now);
	cr_assert_eq(n, STORE_ERR_NOT_FOUND, "retry gone: got %d, want %d", n, STORE_ERR_NOT_FOUND);
	snprintf(key, sizeof(key), "txm{0}:wh:%s", w[0]->member);
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "body");
	cr_assert_str_eq(sbuf, "");
	store_whd_free(w[0]);
	store_whd_free(w[1]);

	/* fanout to no endpoint just acks */
	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_eq(record_one(d, "failed", 0, "{\"id\":\"evt_2\"}"), 0);
	store_delivery_free(d);
	cr_assert_eq(store_read_events(st, "w1", 4, 0, 0, ev), 1);
	cr_assert_eq(store_webhook_fanout(st, ev[0], "evt_2", NULL, 0, now), 0);
	store_event_free(ev[0]);
	cr_assert_eq(pending_count("txm{0}:events", "webhooks"), 0);
	cr_assert_eq(rint_cmd("ZCARD %s", "txm{0}:whq:default"), 0);
}

Test(store, redis_outage_fails_fast_and_recovers)
{
	struct store_delivery *d[2];
	char id[64];
	int64_t t0, dt;
	int rc, n;

	cr_assert_eq(store_ping(st), 0);
	redis_kill();
	t0 = util_mono_ms();
	rc = store_ping(st);
	cr_assert_eq(rc, STORE_ERR_UNAVAILABLE, "ping: got %d, want %d", rc, STORE_ERR_UNAVAILABLE);
	for (int i = 0; i < 20; i++) {
		n = store_fetch(st, "c1", 2, 1000, d);
		cr_assert_eq(n, STORE_ERR_UNAVAILABLE, "fetch: got %d, want %d", n, STORE_ERR_UNAVAILABLE);
	}
	dt = util_mono_ms() - t0;
	cr_assert(dt < 1000, "21 calls while down took %lld ms, want < 1000", (long long)dt);

	rs_pid = redis_spawn(rs_port);
	cr_assert(rs_pid > 0);
	cr_assert_eq(redis_wait(rs_pid, rs_port, 5000), 0, "redis did not restart on port %u", rs_port);
	int64_t deadline = util_mono_ms() + 5000;
	while ((rc = store_ping(st)) != 0 && util_mono_ms() < deadline)
		usleep(50000);
	cr_assert_eq(rc, 0, "ping after restart: got %d, want 0", rc);
	inspector_connect();

	/* groups and scripts are back (fresh redis without persistence) */
	enqueue_msg(id, sizeof(id), 1, 0);
	n = store_fetch(st, "c1", 2, 100, d);
	cr_assert_eq(n, 1, "fetch after restart: got %d, want 1", n);
	store_delivery_free(d[0]);
}

Test(store, frozen_redis_times_out)
{
	int64_t t0, dt;
	int rc;

	cr_assert_eq(store_ping(st), 0);
	cr_assert_eq(kill(rs_pid, SIGSTOP), 0);
	t0 = util_mono_ms();
	rc = store_ping(st);
	dt = util_mono_ms() - t0;
	cr_assert_eq(rc, STORE_ERR_UNAVAILABLE, "ping: got %d, want %d", rc, STORE_ERR_UNAVAILABLE);
	cr_assert(dt >= 4000 && dt < 7000, "first call took %lld ms, want about 5 s", (long long)dt);
	/* reconnecting to a frozen server gives up after the 1 s set-up timeout */
	t0 = util_mono_ms();
	rc = store_ping(st);
	dt = util_mono_ms() - t0;
	cr_assert_eq(rc, STORE_ERR_UNAVAILABLE);
	cr_assert(dt < 2000, "reconnect took %lld ms, want < 2000", (long long)dt);
	cr_assert_eq(kill(rs_pid, SIGCONT), 0);
	int64_t deadline = util_mono_ms() + 5000;
	while ((rc = store_ping(st)) != 0 && util_mono_ms() < deadline)
		usleep(50000);
	cr_assert_eq(rc, 0, "ping after SIGCONT: got %d, want 0", rc);
}

Test(store, unix_socket_and_db)
{
	struct redis_addr addr;
	struct store *s2;
	struct store_message_view v;
	char err[128], id[64];
	int rc;

	memset(&addr, 0, sizeof(addr));
	addr.is_unix = 1;
	snprintf(addr.path, sizeof(addr.path), "%s/redis.sock", rs_dir);
	addr.db = 3;
	s2 = store_open(&addr);
	cr_assert(s2);
	rc = store_init(s2, err, sizeof(err));
	cr_assert_eq(rc, 0, "init over unix socket: got %d (%s), want 0", rc, err);
	/* a message in db 0 is not visible in db 3 */
	enqueue_msg(id, sizeof(id), 1, 0);
	rc = store_get_message(s2, id, &v);
	cr_assert_eq(rc, STORE_ERR_NOT_FOUND, "db 3: got %d, want %d", rc, STORE_ERR_NOT_FOUND);
	cr_assert_eq(store_get_message(st, id, &v), 0);
	store_message_view_free(&v);
	redisReply *r = redisCommand(rc_ctx, "SELECT 3");
	cr_assert(r && r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
	cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:ready"), 1, "groups created in db 3");
	store_close(s2);
}

Test(store, unreachable_at_open)
{
	struct redis_addr addr;
	struct store *s2;
	char err[128];
	int64_t t0;
	int rc;

	memset(&addr, 0, sizeof(addr));
	util_strlcpy(addr.host, "127.0.0.1", sizeof(addr.host));
	addr.port = free_port();
	t0 = util_mono_ms();
	s2 = store_open(&addr);
	cr_assert(s2, "store_open must return a handle while redis is down");
	rc = store_init(s2, err, sizeof(err));
	cr_assert_eq(rc, STORE_ERR_UNAVAILABLE, "init: got %d, want %d", rc, STORE_ERR_UNAVAILABLE);
	cr_assert(err[0]);
	cr_assert_eq(store_ping(s2), STORE_ERR_UNAVAILABLE);
	cr_assert(util_mono_ms() - t0 < 1000);
	store_close(s2);
}

Test(store, scheduler_promotes_send_at)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	struct scheduler *sc;
	struct store_delivery *d = NULL;
	char err[128], id[64];
	int64_t deadline, t0;
	int n = 0;

	cr_assert(cfg);
	cfg->redis = rs_addr;
	sc = scheduler_start(cfg, err, sizeof(err));
	cr_assert(sc, "scheduler_start: %s", err);
	enqueue_msg(id, sizeof(id), 1, util_now_ms() + 300);
	cr_assert_eq(fetch_one("c1", &d), 0);
	deadline = util_mono_ms() + 5000;
	while (n == 0 && util_mono_ms() < deadline) {
		n = store_fetch(st, "c1", 1, 200, &d);
		cr_assert(n >= 0, "fetch: got %d", n);
	}
	cr_assert_eq(n, 1, "scheduled message not promoted within 5 s");
	cr_assert_str_eq(d->msg_id, id);
	store_delivery_free(d);

	t0 = util_mono_ms();
	scheduler_stop(sc);
	cr_assert(util_mono_ms() - t0 < 500, "scheduler_stop took %lld ms",
	    (long long)(util_mono_ms() - t0));
	free(cfg);
}

/* --- issue 3: batch, idempotency, suppressions, templates, keys, endpoints, SSE --- */

/* fill_msg - a one-recipient (or nr) message with a fresh id. */
static void
fill_msg(struct store_message_in *m, char *id, size_t idlen, struct store_rcpt_in *rc, size_t nr)
{
	cr_assert_eq(util_random_id("msg_", id, idlen), 0);
	memset(m, 0, sizeof(*m));
	m->id = id;
	m->created_ms = 1700000000000LL;
	m->expires_ms = 1700086400000LL;
	m->from = "s@example.com";
	m->mail_from = "s@example.com";
	m->subject = "hi";
	m->mime = mime_bytes;
	m->mime_len = MIME_LEN;
	m->timeline_json = "{\"type\":\"queued\"}";
	m->tenant = "acme";
	m->rcpts = rc;
	m->nrcpts = nr;
}

static struct store_rcpt_in one_rcpt[1] = { { .email = "a@example.com", .kind = "to" } };

Test(store, batch_all_or_nothing)
{
	struct store_message_in m[3];
	char ids[3][64], key[128], sbuf[64];
	char *replay = NULL;
	int rc;

	for (int i = 0; i < 3; i++)
		fill_msg(&m[i], ids[i], sizeof(ids[i]), one_rcpt, 1);
	m[2].nrcpts = 0;     /* invalid */
	rc = store_enqueue_batch(st, m, 3, NULL, &replay);
	cr_assert_eq(rc, STORE_ERR_PROTO, "invalid batch: got %d, want %d", rc, STORE_ERR_PROTO);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 0);
	m[2].nrcpts = 1;
	m[2].id = ids[0];    /* duplicate id inside the batch */
	rc = store_enqueue_batch(st, m, 3, NULL, &replay);
	cr_assert_eq(rc, STORE_ERR_CONFLICT, "duplicate id: got %d, want %d", rc, STORE_ERR_CONFLICT);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 0);
	msg_key(key, sizeof(key), ids[0], "");
	cr_assert_eq(rint_cmd("EXISTS %s", key), 0);
	m[2].id = ids[2];
	rc = store_enqueue_batch(st, m, 3, NULL, &replay);
	cr_assert_eq(rc, 0, "batch: got %d, want 0", rc);
	cr_assert_null(replay);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 3);
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "tenant");
	cr_assert_str_eq(sbuf, "acme");
	/* an existing id in a later batch: nothing of that batch is stored */
	char nid[64];
	struct store_message_in m2[2];
	fill_msg(&m2[0], nid, sizeof(nid), one_rcpt, 1);
	m2[1] = m[1];
	rc = store_enqueue_batch(st, m2, 2, NULL, &replay);
	cr_assert_eq(rc, STORE_ERR_CONFLICT, "existing id: got %d, want %d", rc, STORE_ERR_CONFLICT);
	msg_key(key, sizeof(key), nid, "");
	cr_assert_eq(rint_cmd("EXISTS %s", key), 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 3);
}

Test(store, idempotency_replay_and_conflict)
{
	struct store_message_in m;
	char id[64], id2[64];
	char *replay = NULL;
	struct store_idem idem = { .key = "acme:k1", .request_hash = "h1", .response = "{\"id\":\"first\"}",
		.ttl_ms = 86400000 };
	int rc;

	fill_msg(&m, id, sizeof(id), one_rcpt, 1);
	rc = store_enqueue_batch(st, &m, 1, &idem, &replay);
	cr_assert_eq(rc, 0, "first: got %d, want 0", rc);
	cr_assert_null(replay);
	long long ttl = rint_cmd("PTTL %s", "txm{0}:idem:acme:k1");
	cr_assert(ttl > 86000000 && ttl <= 86400000, "idem ttl: got %lld", ttl);
	/* same key and body, new id: replayed, nothing stored */
	fill_msg(&m, id2, sizeof(id2), one_rcpt, 1);
	idem.response = "{\"id\":\"second\"}";
	rc = store_enqueue_batch(st, &m, 1, &idem, &replay);
	cr_assert_eq(rc, 0, "replay: got %d, want 0", rc);
	cr_assert_not_null(replay);
	cr_assert_str_eq(replay, "{\"id\":\"first\"}");
	free(replay);
	replay = NULL;
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 1);
	/* same key, another body */
	idem.request_hash = "h2";
	rc = store_enqueue_batch(st, &m, 1, &idem, &replay);
	cr_assert_eq(rc, STORE_ERR_CONFLICT, "conflict: got %d, want %d", rc, STORE_ERR_CONFLICT);
	cr_assert_null(replay);
	/* another tenant's key is independent */
	idem.key = "other:k1";
	rc = store_enqueue_batch(st, &m, 1, &idem, &replay);
	cr_assert_eq(rc, 0);
	cr_assert_null(replay);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 2);
}

struct race_arg {
	int rc;
	char *replay;
	char id[64];
};

static void *
race_thread(void *p)
{
	struct race_arg *ra = p;
	struct store *s2 = store_open(&rs_addr);
	struct store_message_in m;
	struct store_idem idem = { .key = "acme:race", .request_hash = "same", .response = "{}", .ttl_ms = 60000 };

	fill_msg(&m, ra->id, sizeof(ra->id), one_rcpt, 1);
	ra->rc = s2 ? store_enqueue_batch(s2, &m, 1, &idem, &ra->replay) : -100;
	store_close(s2);
	return NULL;
}

Test(store, idempotency_concurrent)
{
	for (int round = 0; round < 10; round++) {
		struct race_arg ra[2];
		pthread_t th[2];
		char key[128];
		int stored = 0, replayed = 0;

		memset(ra, 0, sizeof(ra));
		for (int i = 0; i < 2; i++)
			cr_assert_eq(pthread_create(&th[i], NULL, race_thread, &ra[i]), 0);
		for (int i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		for (int i = 0; i < 2; i++) {
			cr_assert_eq(ra[i].rc, 0, "racer %d: got %d, want 0", i, ra[i].rc);
			msg_key(key, sizeof(key), ra[i].id, "");
			stored += (int)rint_cmd("EXISTS %s", key);
			replayed += ra[i].replay != NULL;
			free(ra[i].replay);
		}
		cr_assert_eq(stored, 1, "round %d stored: got %d, want 1", round, stored);
		cr_assert_eq(replayed, 1, "round %d replayed: got %d, want 1", round, replayed);
		redisReply *r = redisCommand(rc_ctx, "DEL txm{0}:idem:acme:race");
		freeReplyObject(r);
	}
}

Test(store, suppressed_at_accept)
{
	struct store_rcpt_in rc[2] = {
		{ .email = "ok@example.com", .kind = "to" },
		{ .email = "bad@example.com", .kind = "cc", .status = "suppressed",
		  .event_json = "{\"type\":\"message.failed\",\"reason\":\"suppressed\"}",
		  .timeline_json = "{\"type\":\"suppressed\"}" },
	};
	struct store_message_in m;
	struct store_message_view v;
	struct store_delivery *d[4];
	struct store_event *ev[4];
	char id[64], key[128], sbuf[32];
	int n;

	fill_msg(&m, id, sizeof(id), rc, 2);
	cr_assert_eq(store_enqueue(st, &m), 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 1);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 1);
	msg_key(key, sizeof(key), id, "");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "pending");
	cr_assert_str_eq(sbuf, "1");
	cr_assert_eq(store_get_message(st, id, &v), 0);
	cr_assert_str_eq(v.rcpts[0].status, "queued");
	cr_assert_str_eq(v.rcpts[1].status, "suppressed");
	cr_assert_eq(v.ntimeline, 2, "timeline: got %zu, want 2", v.ntimeline);
	cr_assert_str_eq(v.timeline_json[1], "{\"type\":\"suppressed\"}");
	store_message_view_free(&v);
	n = store_fetch(st, "c1", 4, 0, d);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(d[0]->rcpt, "ok@example.com");
	store_delivery_free(d[0]);
	n = store_read_events(st, "w1", 4, 0, 0, ev);
	cr_assert_eq(n, 1);
	cr_assert(strstr(ev[0]->json, "suppressed"));
	store_event_free(ev[0]);

	/* every recipient suppressed: nothing queued, the message expires */
	rc[0] = rc[1];
	fill_msg(&m, id, sizeof(id), rc, 2);
	cr_assert_eq(store_enqueue(st, &m), 0);
	msg_key(key, sizeof(key), id, "");
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 1);
	cr_assert(rint_cmd("PTTL %s", key) > 0);
}

Test(store, record_suppress_reason)
{
	char *next = NULL;
	char id[64];
	struct store_delivery *d = NULL;
	int flags[2] = { -1, -1 };
	const char *emails[2] = { "user0@example.com", "x@example.com" };
	struct store_suppression *sv = NULL;
	size_t n = 0;

	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(fetch_one("c1", &d), 1);
	struct store_result r = { .d = d, .status = "failed", .now_ms = 1234, .timeline_json = "{}",
		.suppress_reason = "bounced" };
	cr_assert_eq(store_record(st, &r, 1), 0);
	store_delivery_free(d);
	cr_assert_eq(rint_cmd("ZCARD %s", "txm{0}:suppidx"), 1, "record.lua left the list's index behind");
	cr_assert_eq(store_suppression_check(st, NULL, emails, 2, flags), 0);
	cr_assert_eq(flags[0], 1, "suppressed: got %d, want 1", flags[0]);
	cr_assert_eq(flags[1], 0);
	cr_assert_eq(store_suppression_list(st, NULL, NULL, 100, &sv, &n, &next), 0);
	cr_assert_null(next);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(sv[0].email, "user0@example.com");
	cr_assert_str_eq(sv[0].reason, "bounced");
	cr_assert_eq(sv[0].created_ms, 1234);
	store_suppressions_free(sv, n);
}

Test(store, lists_paged)
{
	struct store_suppression *sv = NULL;
	char **list = NULL, *next = NULL, name[32], after[64] = "";
	size_t n = 0, seen = 0;
	int created;

	for (int i = 0; i < 25; i++) {
		snprintf(name, sizeof(name), "t%02d", 24 - i);
		cr_assert_eq(store_template_put(st, NULL, name, "{\"subject\":\"s\"}", 1, &created), 0);
		snprintf(name, sizeof(name), "u%02d@x.com", 24 - i);
		cr_assert_eq(store_suppression_add(st, NULL, name, "manual", 1), 0);
	}
	/* templates: pages of 7, in name order, every one once */
	for (int page = 0; page < 10; page++) {
		cr_assert_eq(store_template_list(st, NULL, after[0] ? after : NULL, 7, &list, &n, &next), 0);
		for (size_t i = 0; i < n; i++) {
			snprintf(name, sizeof(name), "{\"name\":\"t%02zu\"", seen + i);
			cr_assert(strncmp(list[i], name, strlen(name)) == 0, "page %d item %zu: got %.20s, want %s",
			    page, i, list[i], name);
			free(list[i]);
		}
		free(list);
		seen += n;
		if (next == NULL)
			break;
		cr_assert_eq(n, 7, "a page before the last: got %zu, want 7", n);
		snprintf(after, sizeof(after), "%s", next);
		free(next);
	}
	cr_assert_eq(seen, 25, "templates: got %zu, want 25", seen);
	/* suppressions: the same, and an index rebuilt when it is missing or stale */
	for (int round = 0; round < 2; round++) {
		seen = 0;
		after[0] = '\0';
		for (int page = 0; page < 10; page++) {
			cr_assert_eq(store_suppression_list(st, NULL, after[0] ? after : NULL, 7, &sv, &n,
			    &next), 0);
			for (size_t i = 0; i < n; i++) {
				snprintf(name, sizeof(name), "u%02zu@x.com", seen + i);
				cr_assert_str_eq(sv[i].email, name, "round %d page %d: got %s, want %s", round,
				    page, sv[i].email, name);
			}
			store_suppressions_free(sv, n);
			seen += n;
			if (next == NULL)
				break;
			snprintf(after, sizeof(after), "%s", next);
			free(next);
		}
		cr_assert_eq(seen, 25, "round %d: got %zu, want 25", round, seen);
		cr_assert_eq(rint_cmd("ZCARD %s", "txm{0}:suppidx"), 25);
		/* what an older release leaves: a list without its index */
		cr_assert_eq(rint_cmd("DEL %s", "txm{0}:suppidx"), 1);
	}
	cr_assert_eq(store_suppression_delete(st, NULL, "u00@x.com"), 0);
	cr_assert_eq(store_suppression_list(st, NULL, NULL, 100, &sv, &n, &next), 0);
	cr_assert_eq(n, 24);
	cr_assert_null(next);
	cr_assert_str_eq(sv[0].email, "u01@x.com");
	store_suppressions_free(sv, n);
	cr_assert_eq(rint_cmd("ZCARD %s", "txm{0}:suppidx"), 24, "delete left the index entry");
	cr_assert_eq(store_template_list(st, NULL, NULL, 0, &list, &n, &next), STORE_ERR_PROTO);
}

Test(store, suppressions_crud)
{
	char *next = NULL;
	struct store_suppression *sv = NULL;
	size_t n = 0;
	int flags[3];
	const char *emails[3] = { "b@x.com", "a@x.com", "c@x.com" };

	cr_assert_eq(store_suppression_add(st, NULL, "b@x.com", "manual", 5), 0);
	cr_assert_eq(store_suppression_add(st, NULL, "a@x.com", "bounced", 6), 0);
	cr_assert_eq(store_suppression_add(st, NULL, "a@x.com", "manual", 7), 0);   /* refresh */
	cr_assert_eq(store_suppression_check(st, NULL, emails, 3, flags), 0);
	cr_assert(flags[0] == 1 && flags[1] == 1 && flags[2] == 0);
	cr_assert_eq(store_suppression_list(st, NULL, NULL, 100, &sv, &n, &next), 0);
	cr_assert_null(next);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(sv[0].email, "a@x.com");
	cr_assert_str_eq(sv[0].reason, "manual");
	cr_assert_eq(sv[0].created_ms, 7);
	cr_assert_str_eq(sv[1].email, "b@x.com");
	store_suppressions_free(sv, n);
	cr_assert_eq(store_suppression_delete(st, NULL, "a@x.com"), 0);
	cr_assert_eq(store_suppression_delete(st, NULL, "a@x.com"), STORE_ERR_NOT_FOUND);
	cr_assert_eq(store_suppression_check(st, NULL, emails, 3, flags), 0);
	cr_assert(flags[0] == 1 && flags[1] == 0 && flags[2] == 0);
	cr_assert_eq(store_suppression_check(st, NULL, NULL, 0, NULL), 0);
}

/* --- optimistic enqueue: the suppression check inside the enqueue script --- */

/* dbsize - DBSIZE of the test server. */
static long long
dbsize(void)
{
	redisReply *r = redisCommand(rc_ctx, "DBSIZE");
	long long v;

	cr_assert(r && r->type == REDIS_REPLY_INTEGER, "DBSIZE failed");
	v = r->integer;
	freeReplyObject(r);
	return v;
}

/* evalsha_calls - cmdstat_evalsha calls so far (INFO commandstats), 0 when none yet. */
static long long
evalsha_calls(void)
{
	redisReply *r = redisCommand(rc_ctx, "INFO commandstats");
	const char *p;
	long long v = 0;

	cr_assert(r && r->type == REDIS_REPLY_STRING, "INFO commandstats failed");
	p = strstr(r->str, "cmdstat_evalsha:calls=");
	if (p)
		v = strtoll(p + strlen("cmdstat_evalsha:calls="), NULL, 10);
	freeReplyObject(r);
	return v;
}

/* key_count - how many keys match pattern (KEYS: the test server is tiny). */
static size_t
key_count(const char *pattern)
{
	redisReply *r = redisCommand(rc_ctx, "KEYS %s", pattern);
	size_t n;

	cr_assert(r && r->type == REDIS_REPLY_ARRAY, "KEYS failed");
	n = r->elements;
	freeReplyObject(r);
	return n;
}

Test(store, enqueue_checked_suppressed_writes_nothing)
{
	struct store_rcpt_in r0[2] = {
		{ .email = "ok@example.com", .kind = "to", .lower = "ok@example.com" },
		{ .email = "Bad@Example.COM", .kind = "cc", .lower = "bad@example.com" },
	};
	struct store_rcpt_in r1[3] = {
		{ .email = "x@example.com", .kind = "to", .lower = "x@example.com" },
		/* given as suppressed already: not looked up, flag 0 though listed */
		{ .email = "gone@example.com", .kind = "to", .status = "suppressed",
		  .event_json = "{\"type\":\"message.failed\"}", .timeline_json = "{\"type\":\"suppressed\"}" },
		{ .email = "bad@example.com", .kind = "bcc", .lower = "bad@example.com" },
	};
	static const int want[5] = { 0, 1, 0, 0, 1 };
	struct store_message_in m[2];
	struct store_idem idem = { .key = "acme:opt", .request_hash = "h1", .response = "{\"v\":1}",
		.ttl_ms = 60000 };
	char ids[2][64], key[128], sbuf[32];
	char *replay = NULL;
	int flags[5] = { 7, 7, 7, 7, 7 };
	long long before, calls;
	int rc;

	cr_assert_eq(store_suppression_add(st, NULL, "bad@example.com", "bounced", 1), 0);
	cr_assert_eq(store_suppression_add(st, NULL, "gone@example.com", "manual", 1), 0);
	fill_msg(&m[0], ids[0], sizeof(ids[0]), r0, 2);
	fill_msg(&m[1], ids[1], sizeof(ids[1]), r1, 3);
	before = dbsize();
	calls = evalsha_calls();
	rc = store_enqueue_checked(st, m, 2, &idem, &replay, flags);
	cr_assert_eq(rc, STORE_ERR_SUPPRESSED, "checked: got %d, want %d", rc, STORE_ERR_SUPPRESSED);
	cr_assert_null(replay);
	for (int k = 0; k < 5; k++)
		cr_assert_eq(flags[k], want[k], "flags[%d]: got %d, want %d", k, flags[k], want[k]);
	calls = evalsha_calls() - calls;
	cr_assert_eq(calls, 1, "script calls: got %lld, want 1", calls);
	/* nothing written: no message, no idempotency record, no stream entry */
	cr_assert_eq(dbsize(), before, "DBSIZE: got %lld, want %lld", dbsize(), before);
	cr_assert_eq(key_count("txm{0}:msg:*"), 0);
	cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:idem:acme:opt"), 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 0);

	/* the caller marks the flagged ones and stores without the check */
	r0[1].status = "suppressed";
	r0[1].event_json = "{\"type\":\"message.failed\"}";
	r0[1].timeline_json = "{\"type\":\"suppressed\"}";
	r1[2] = r0[1];
	r1[2].email = "bad@example.com";
	r1[2].kind = "bcc";
	rc = store_enqueue_batch(st, m, 2, &idem, &replay);
	cr_assert_eq(rc, 0, "second call: got %d, want 0", rc);
	cr_assert_null(replay);
	rcpt_status(ids[0], 1, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "suppressed");
	rcpt_status(ids[1], 0, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "queued");
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 2);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 3);

	/* a replay is answered before the check: never STORE_ERR_SUPPRESSED */
	r0[1].status = NULL;
	r1[2].status = NULL;
	fill_msg(&m[0], ids[0], sizeof(ids[0]), r0, 2);
	fill_msg(&m[1], ids[1], sizeof(ids[1]), r1, 3);
	idem.response = "{\"v\":2}";
	rc = store_enqueue_checked(st, m, 2, &idem, &replay, flags);
	cr_assert_eq(rc, 0, "replay: got %d, want 0", rc);
	cr_assert_not_null(replay);
	cr_assert_str_eq(replay, "{\"v\":1}");
	free(replay);
	replay = NULL;
	idem.request_hash = "h2";
	rc = store_enqueue_checked(st, m, 2, &idem, &replay, flags);
	cr_assert_eq(rc, STORE_ERR_CONFLICT, "conflict: got %d, want %d", rc, STORE_ERR_CONFLICT);
	cr_assert_null(replay);
	msg_key(key, sizeof(key), ids[0], "");
	cr_assert_eq(rint_cmd("EXISTS %s", key), 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 2);
}

/*
 * store_enqueue_ops (the accept pipe's call): several enqueues in one
 * write, each answered as its own call would be - stored, invalid
 * (nothing sent for it), replayed, a duplicate id of an op before it in
 * the same write, suppressed with its flags - one EVALSHA each, and none
 * touches another.
 */
Test(store, enqueue_ops_pipelined_each_its_own)
{
	static struct store_rcpt_in sup[1] = { { .email = "Gone@example.com", .kind = "to",
		.lower = "gone@example.com" } };
	struct store_message_in m[5];
	struct store_enqueue_op op[5], *ops[5];
	struct store_idem idem = { .key = "acme:ops", .request_hash = "h1", .response = "{\"v\":1}",
		.ttl_ms = 60000 };
	char ids[5][64], key[128];
	char *replay = NULL;
	int flags[1] = { 7 };
	long long calls;

	cr_assert_eq(store_suppression_add(st, NULL, "gone@example.com", "manual", 1), 0);
	for (int i = 0; i < 5; i++)
		fill_msg(&m[i], ids[i], sizeof(ids[i]), one_rcpt, 1);
	/* an earlier send under the key the third op replays */
	cr_assert_eq(store_enqueue_batch(st, &m[2], 1, &idem, &replay), 0);
	fill_msg(&m[2], ids[2], sizeof(ids[2]), one_rcpt, 1);
	m[1].nrcpts = 0;          /* invalid */
	m[3].id = ids[0];         /* the first op's id */
	m[4].rcpts = sup;
	memset(op, 0, sizeof(op));
	for (int i = 0; i < 5; i++) {
		op[i].m = &m[i];
		op[i].n = 1;
		ops[i] = &op[i];
	}
	op[2].idem = &idem;
	op[4].flags = flags;
	calls = evalsha_calls();
	store_enqueue_ops(st, ops, 5);
	calls = evalsha_calls() - calls;
	cr_assert_eq(op[0].rc, 0, "plain: got %d", op[0].rc);
	cr_assert_eq(op[1].rc, STORE_ERR_PROTO, "invalid: got %d", op[1].rc);
	cr_assert_eq(op[2].rc, 0, "replay: got %d", op[2].rc);
	cr_assert_not_null(op[2].replay);
	cr_assert_str_eq(op[2].replay, "{\"v\":1}");
	cr_assert_eq(op[3].rc, STORE_ERR_CONFLICT, "duplicate id: got %d", op[3].rc);
	cr_assert_eq(op[4].rc, STORE_ERR_SUPPRESSED, "suppressed: got %d", op[4].rc);
	cr_assert_eq(flags[0], 1);
	for (int i = 0; i < 5; i++)
		if (i != 2)
			cr_assert_null(op[i].replay, "op %d: a replay", i);
	free(op[2].replay);
	cr_assert_eq(calls, 4, "script calls: got %lld, want 4 (none for the invalid op)", calls);
	msg_key(key, sizeof(key), ids[0], "");
	cr_assert_eq(rint_cmd("EXISTS %s", key), 1);
	for (int i = 1; i < 5; i++) {
		if (i == 3)
			continue;
		msg_key(key, sizeof(key), ids[i], "");
		cr_assert_eq(rint_cmd("EXISTS %s", key), 0, "op %d stored", i);
	}
	/* the earlier send and the first op */
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 2);
}

Test(store, enqueue_checked_clean_is_one_call)
{
	struct store_rcpt_in r[2] = {
		{ .email = "A@Example.com", .kind = "to", .lower = "a@example.com" },
		{ .email = "b@example.com", .kind = "cc", .lower = "b@example.com" },
	};
	struct store_message_in m;
	struct store_idem idem = { .key = "acme:clean", .request_hash = "h", .response = "{}",
		.ttl_ms = 60000 };
	char id[64], key[128], sbuf[32];
	char *replay = NULL;
	int flags[2] = { 7, 7 };
	long long calls;
	int rc;

	/* listed as given, not lower-cased: the lookup is by .lower, so no hit */
	cr_assert_eq(store_suppression_add(st, NULL, "A@Example.com", "manual", 1), 0);
	fill_msg(&m, id, sizeof(id), r, 2);
	calls = evalsha_calls();
	rc = store_enqueue_checked(st, &m, 1, &idem, &replay, flags);
	cr_assert_eq(rc, 0, "clean: got %d, want 0", rc);
	calls = evalsha_calls() - calls;
	cr_assert_eq(calls, 1, "script calls: got %lld, want 1", calls);
	cr_assert_null(replay);
	msg_key(key, sizeof(key), id, "");
	cr_assert_eq(rint_cmd("EXISTS %s", key), 1);
	rcpt_status(id, 0, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "queued");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "r0:email");
	cr_assert_str_eq(sbuf, "A@Example.com");
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 2);
	cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:idem:acme:clean"), 1);

	/* a missing lower-cased address is a caller bug: refused before Redis */
	r[1].lower = NULL;
	fill_msg(&m, id, sizeof(id), r, 2);
	rc = store_enqueue_checked(st, &m, 1, NULL, &replay, flags);
	cr_assert_eq(rc, STORE_ERR_PROTO, "no lower: got %d, want %d", rc, STORE_ERR_PROTO);
	rc = store_enqueue_checked(st, &m, 1, NULL, &replay, NULL);
	cr_assert_eq(rc, STORE_ERR_PROTO, "no flags: got %d, want %d", rc, STORE_ERR_PROTO);
}

/*
 * more lookups than one HMGET and more hash arguments than one HSET of the
 * script (chunks of 4000): the flag lands on the right recipient of the
 * right message, and a clean batch stores every recipient's fields
 */
Test(store, enqueue_checked_many_recipients)
{
	enum { NM = 5, NR = 950, HIT_M = 4, HIT = 871 };
	struct store_rcpt_in *r = calloc(NR, sizeof(*r));
	char (*emails)[32] = calloc(NR * NM, sizeof(*emails));
	int *flags = calloc(NR * NM, sizeof(*flags));
	struct store_rcpt_in *rs[NM];
	struct store_message_in m[NM];
	char id[NM][64], key[128], sbuf[64];
	long long before;
	int rc;

	cr_assert(r && emails && flags);
	for (size_t j = 0; j < NM; j++) {
		rs[j] = j == 0 ? r : calloc(NR, sizeof(*r));
		cr_assert(rs[j]);
		for (size_t i = 0; i < NR; i++) {
			char *e = emails[j * NR + i];

			snprintf(e, sizeof(emails[0]), "u%zu.%zu@example.com", j, i);
			rs[j][i].email = e;
			rs[j][i].kind = "bcc";
			rs[j][i].lower = e;
		}
		fill_msg(&m[j], id[j], sizeof(id[j]), rs[j], NR);
	}
	cr_assert_eq(store_suppression_add(st, NULL, emails[HIT_M * NR + HIT], "manual", 1), 0);
	before = dbsize();
	rc = store_enqueue_checked(st, m, NM, NULL, NULL, flags);
	cr_assert_eq(rc, STORE_ERR_SUPPRESSED, "got %d, want %d", rc, STORE_ERR_SUPPRESSED);
	for (size_t k = 0; k < NM * NR; k++)
		cr_assert_eq(flags[k], k == HIT_M * NR + HIT, "flags[%zu]: got %d, want %d", k, flags[k],
		    k == HIT_M * NR + HIT);
	cr_assert_eq(dbsize(), before);
	cr_assert_eq(store_suppression_delete(st, NULL, emails[HIT_M * NR + HIT]), 0);
	rc = store_enqueue_checked(st, m, NM, NULL, NULL, flags);
	cr_assert_eq(rc, 0, "after delete: got %d, want 0", rc);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), NM * NR);
	msg_key(key, sizeof(key), id[HIT_M], "");
	/* 14 of the message's own, "tl" (its timeline), 5 per recipient */
	cr_assert_eq(rint_cmd("HLEN %s", key), 15 + 5 * NR, "fields of the last message");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "r949:email");
	cr_assert_str_eq(sbuf, "u4.949@example.com");
	rcpt_status(id[HIT_M], NR - 1, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "queued");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "pending");
	cr_assert_str_eq(sbuf, "950");
	for (size_t j = 1; j < NM; j++)
		free(rs[j]);
	free(r);
	free(emails);
	free(flags);
}

Test(store, templates_crud)
{
	char *next = NULL;
	int created = -1;
	char *json = NULL, **list = NULL;
	size_t n = 0;

	cr_assert_eq(store_template_put(st, NULL, "welcome", "{\"subject\":\"Hi {{name}}\"}", 1000, &created), 0);
	cr_assert_eq(created, 1);
	cr_assert_eq(store_template_put(st, NULL, "welcome", "{\"subject\":\"Hello\",\"text\":\"t\"}", 2000, &created), 0);
	cr_assert_eq(created, 0);
	cr_assert_eq(store_template_put(st, NULL, "alpha", "{}", 3000, &created), 0);
	cr_assert_eq(store_template_get(st, NULL, "welcome", &json), 0);
	cr_assert_str_eq(json, "{\"name\":\"welcome\",\"created_at\":\"1970-01-01T00:00:01.000Z\","
	    "\"updated_at\":\"1970-01-01T00:00:02.000Z\",\"subject\":\"Hello\",\"text\":\"t\"}",
	    "got %s", json);
	free(json);
	cr_assert_eq(store_template_get(st, NULL, "nope", &json), STORE_ERR_NOT_FOUND);
	cr_assert_null(json);
	cr_assert_eq(store_template_list(st, NULL, NULL, 100, &list, &n, &next), 0);
	cr_assert_null(next);
	cr_assert_eq(n, 2);
	cr_assert(strncmp(list[0], "{\"name\":\"alpha\",", 16) == 0, "got %s", list[0]);
	cr_assert(strstr(list[0], "\"updated_at\":\"1970-01-01T00:00:03.000Z\"}") != NULL, "got %s", list[0]);
	cr_assert(strncmp(list[1], "{\"name\":\"welcome\",", 18) == 0, "got %s", list[1]);
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
	cr_assert_eq(store_template_delete(st, NULL, "welcome"), 0);
	cr_assert_eq(store_template_delete(st, NULL, "welcome"), STORE_ERR_NOT_FOUND);
	cr_assert_eq(store_template_list(st, NULL, NULL, 100, &list, &n, &next), 0);
	cr_assert_null(next);
	cr_assert_eq(n, 1);
	free(list[0]);
	free(list);
}

#define HASH_A "aaaaaaaaaaaa0000000000000000000000000000000000000000000000000000"
#define HASH_B "bbbbbbbbbbbb0000000000000000000000000000000000000000000000000000"

static int
key_create(const char *name, const char *project, const char *scope, const char *allow,
    const char *hash, int64_t now)
{
	struct store_key_attrs a = { .name = name, .project = project, .scope = scope, .allow = allow };

	return store_key_create(st, &a, hash, now);
}

Test(store, api_keys)
{
	struct store_apikey *k = NULL;
	struct store_auth_result ar;
	size_t n = 0;

	cr_assert_eq(key_create("zeta", "zeta", "full", "", HASH_A, 1000), 0);
	cr_assert_eq(key_create("zeta", "zeta", "full", "", HASH_B, 1000), STORE_ERR_CONFLICT);
	cr_assert_eq(key_create("alpha", "shop", "send", "10.0.0.0/8,::1/128", HASH_B, 2000), 0);
	cr_assert_eq(store_key_list(st, &k, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(k[0].name, "alpha");
	cr_assert_str_eq(k[0].hash_prefix, "bbbbbbbbbbbb");
	cr_assert_str_eq(k[0].project, "shop");
	cr_assert_str_eq(k[0].scope, "send");
	cr_assert_str_eq(k[0].allow, "10.0.0.0/8,::1/128");
	cr_assert_eq(k[0].created_ms, 2000);
	cr_assert_eq(k[0].last_used_ms, 0);
	cr_assert_str_eq(k[1].name, "zeta");
	cr_assert_str_eq(k[1].allow, "");
	store_apikeys_free(k, n);

	cr_assert_eq(store_auth(st, HASH_A, 5000000, 0, 0, 0, &ar), 0);
	cr_assert_str_eq(ar.name, "zeta");
	cr_assert_str_eq(ar.project, "zeta");
	cr_assert_str_eq(ar.scope, "full");
	cr_assert_eq(ar.charged, 1, "no allowlist: got charged %d, want 1", ar.charged);
	cr_assert_eq(ar.retry_after_ms, 0);
	store_auth_release(&ar);
	/* a key with an allowlist is only read until the caller charges it */
	cr_assert_eq(store_auth(st, HASH_B, 5000000, 0, 0, 0, &ar), 0);
	cr_assert_str_eq(ar.project, "shop");
	cr_assert_str_eq(ar.allow, "10.0.0.0/8,::1/128");
	cr_assert_eq(ar.charged, 0, "allowlist, charge 0: got charged %d, want 0", ar.charged);
	store_auth_release(&ar);
	cr_assert_eq(store_key_list(st, &k, &n), 0);
	cr_assert_eq(k[0].last_used_ms, 0, "not charged: last_used got %lld", (long long)k[0].last_used_ms);
	store_apikeys_free(k, n);
	cr_assert_eq(store_auth(st, HASH_B, 5000000, 0, 0, 1, &ar), 0);
	cr_assert_eq(ar.charged, 1);
	store_auth_release(&ar);
	cr_assert_eq(store_auth(st, "cccccccccccc0000000000000000000000000000000000000000000000000000",
	    5000000, 0, 0, 1, &ar), STORE_ERR_NOT_FOUND);
	cr_assert_null(ar.name);
	cr_assert_eq(store_key_list(st, &k, &n), 0);
	cr_assert_eq(k[1].last_used_ms, 5000000, "last_used: got %lld", (long long)k[1].last_used_ms);
	cr_assert_eq(k[0].last_used_ms, 5000000, "charged: last_used got %lld", (long long)k[0].last_used_ms);
	store_apikeys_free(k, n);

	cr_assert_eq(store_key_revoke(st, "zeta"), 0);
	cr_assert_eq(store_key_revoke(st, "zeta"), STORE_ERR_NOT_FOUND);
	cr_assert_eq(store_auth(st, HASH_A, 5000000, 0, 0, 1, &ar), STORE_ERR_NOT_FOUND);
	cr_assert_eq(store_key_list(st, &k, &n), 0);
	cr_assert_eq(n, 1);
	store_apikeys_free(k, n);
}

/* a record written by the previous release (no project, scope, allow) */
Test(store, api_key_of_previous_release)
{
	struct store_apikey *k = NULL;
	struct store_auth_result ar;
	size_t n = 0;

	char ok[16];

	/* exactly what the previous key_create.lua wrote */
	cr_assert_eq(rint_cmd("HSET txm{0}:key:%s name old created 1000 last_used 0", HASH_A), 3);
	rstr_cmd(ok, sizeof(ok), "SET txm{0}:keyname:old %s", HASH_A, NULL);
	cr_assert_eq(rint_cmd("SADD txm{0}:keys %s", "old"), 1);
	cr_assert_eq(store_auth(st, HASH_A, 5000000, 1.0, 2.0, 0, &ar), 0);
	cr_assert_str_eq(ar.name, "old");
	cr_assert_str_eq(ar.project, "old", "project: got %s, want the name", ar.project);
	cr_assert_str_eq(ar.scope, "full");
	cr_assert_str_eq(ar.allow, "");
	cr_assert_eq(ar.charged, 1);
	store_auth_release(&ar);
	cr_assert(rint_cmd("EXISTS %s", "txm{0}:rl:old") == 1, "the bucket is rl:<project>");
	cr_assert_eq(store_key_list(st, &k, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(k[0].project, "old");
	cr_assert_str_eq(k[0].scope, "full");
	cr_assert_str_eq(k[0].allow, "");
	store_apikeys_free(k, n);
}

Test(store, rate_limit)
{
	int64_t now = 1700000000000LL;
	struct store_rate rl;
	struct store_auth_result ar;

	for (int i = 0; i < 3; i++) {
		cr_assert_eq(store_rate_limit(st, "env:abc", now, 1.0, 3.0, &rl), 0);
		cr_assert_eq(rl.retry_after_ms, 0, "request %d: got retry %lld, want 0", i,
		    (long long)rl.retry_after_ms);
		cr_assert_eq(rl.tokens_left, 2 - i, "request %d: got left %lld, want %d", i,
		    (long long)rl.tokens_left, 2 - i);
		cr_assert_eq(rl.full_ms, (i + 1) * 1000, "request %d: got full %lld ms, want %d", i,
		    (long long)rl.full_ms, (i + 1) * 1000);
	}
	cr_assert_eq(store_rate_limit(st, "env:abc", now, 1.0, 3.0, &rl), 0);
	cr_assert(rl.retry_after_ms >= 990 && rl.retry_after_ms <= 1000,
	    "4th: got retry %lld, want ~1000", (long long)rl.retry_after_ms);
	cr_assert_eq(rl.tokens_left, 0, "4th: got left %lld, want 0", (long long)rl.tokens_left);
	cr_assert_eq(rl.full_ms, 3000, "4th: got full %lld ms, want 3000", (long long)rl.full_ms);
	cr_assert_eq(store_rate_limit(st, "env:abc", now + 1000, 1.0, 3.0, &rl), 0);
	cr_assert_eq(rl.retry_after_ms, 0, "after 1 s: got %lld, want 0", (long long)rl.retry_after_ms);
	cr_assert_eq(store_rate_limit(st, "env:abc", now + 1000, 1.0, 3.0, &rl), 0);
	cr_assert(rl.retry_after_ms > 0);
	/* another tenant has its own bucket; rate 0 = no limit */
	cr_assert_eq(store_rate_limit(st, "env:def", now, 1.0, 3.0, &rl), 0);
	cr_assert_eq(rl.retry_after_ms, 0);
	cr_assert_eq(rl.tokens_left, 2);
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(store_rate_limit(st, "env:abc", now, 0, 0, &rl), 0);
		cr_assert_eq(rl.retry_after_ms, 0);
		cr_assert_eq(rl.tokens_left, 0);
		cr_assert_eq(rl.full_ms, 0);
	}
	cr_assert(rint_cmd("PTTL %s", "txm{0}:rl:env:abc") > 0);
	/* auth charges the project's bucket, shared by the project's keys */
	cr_assert_eq(key_create("k", "proj", "full", "", HASH_A, 1), 0);
	cr_assert_eq(key_create("k2", "proj", "full", "", HASH_B, 1), 0);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(store_auth(st, i == 0 ? HASH_A : HASH_B, now, 1.0, 2.0, 0, &ar), 0);
		cr_assert_eq(ar.retry_after_ms, 0);
		cr_assert_eq(ar.tokens_left, 1 - i, "auth %d: got left %lld, want %d", i,
		    (long long)ar.tokens_left, 1 - i);
		cr_assert_eq(ar.full_ms, (i + 1) * 1000, "auth %d: got full %lld, want %d", i,
		    (long long)ar.full_ms, (i + 1) * 1000);
		store_auth_release(&ar);
	}
	cr_assert_eq(store_auth(st, HASH_A, now + 500, 1.0, 2.0, 0, &ar), 0);
	cr_assert(ar.retry_after_ms >= 490 && ar.retry_after_ms <= 500,
	    "auth 3rd (2 keys, 1 project): got retry %lld, want ~500", (long long)ar.retry_after_ms);
	cr_assert_eq(ar.tokens_left, 0);
	cr_assert_eq(ar.full_ms, 1500, "auth 3rd: got full %lld, want 1500", (long long)ar.full_ms);
	store_auth_release(&ar);
	cr_assert(rint_cmd("EXISTS %s", "txm{0}:rl:proj") == 1, "the bucket is rl:<project>");
	/* revoking a key keeps the project's bucket */
	cr_assert_eq(store_key_revoke(st, "k"), 0);
	cr_assert(rint_cmd("EXISTS %s", "txm{0}:rl:proj") == 1, "revoke deleted the project's bucket");
}

Test(store, endpoints_and_per_endpoint_claims)
{
	char id_a[] = "wh_a", id_b[] = "wh_b", url[] = "http://h/x", sec[] = "whsec_s";
	char ev1[] = "message.delivered", ev2[] = "message.failed";
	char *evs[2] = { ev1, ev2 };
	struct store_endpoint a = { .id = id_a, .url = url, .secret = sec, .events = evs, .nevents = 2,
		.created_ms = 20 };
	struct store_endpoint b = { .id = id_b, .url = url, .secret = sec, .created_ms = 10 };
	struct store_endpoint *eps = NULL;
	struct store_whd *w[8];
	size_t n = 0;
	int64_t now = util_now_ms();
	int k;

	cr_assert_eq(store_endpoint_create(st, &a), 0);
	cr_assert_eq(store_endpoint_create(st, &b), 0);
	cr_assert_eq(store_endpoint_create(st, &b), STORE_ERR_CONFLICT);
	cr_assert_eq(store_endpoint_list(st, &eps, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(eps[0].id, "wh_b");     /* oldest first */
	cr_assert_eq(eps[0].nevents, 0);
	cr_assert_str_eq(eps[1].id, "wh_a");
	cr_assert_eq(eps[1].nevents, 2);
	cr_assert_str_eq(eps[1].events[1], "message.failed");
	cr_assert_str_eq(eps[1].secret, "whsec_s");
	cr_assert_eq(eps[1].created_ms, 20);
	store_endpoints_free(eps, n);

	/* B has many leased and failing deliveries; A's due one is still claimable */
	for (int i = 0; i < 20; i++) {
		struct store_event ev = { .json = (char[]){ "{}" } };
		char eid[32];
		const char *both[2] = { "wh_b", i == 19 ? "wh_a" : "wh_b" };

		snprintf(ev.entry_id, sizeof(ev.entry_id), "%d-0", i + 1);
		snprintf(eid, sizeof(eid), "evt_%02d", i);
		cr_assert_eq(store_webhook_fanout(st, &ev, eid, both, i == 19 ? 2 : 1, now), 0);
	}
	k = store_webhook_claim(st, "wh_b", now, 60000, 8, w);
	cr_assert_eq(k, 8);
	for (int i = 0; i < k; i++) {
		cr_assert_str_eq(w[i]->endpoint, "wh_b");
		cr_assert_eq(store_webhook_retry(st, w[i]->member, 1, now + 3600000), 0);
		store_whd_free(w[i]);
	}
	k = store_webhook_claim(st, "wh_a", now, 60000, 8, w);
	cr_assert_eq(k, 1, "claim A: got %d, want 1", k);
	cr_assert_str_eq(w[0]->member, "evt_19/wh_a");
	store_whd_free(w[0]);
	cr_assert_eq(store_webhook_next_due(st, "wh_b"), now);

	/* deleting B removes its due set and delivery hashes */
	cr_assert_eq(store_endpoint_delete(st, "wh_b", NULL), 0);
	cr_assert_eq(store_endpoint_delete(st, "wh_b", NULL), STORE_ERR_NOT_FOUND);
	cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:whq:wh_b"), 0);
	cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:wh:evt_00/wh_b"), 0);
	cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:wh:evt_19/wh_a"), 1);
	cr_assert_eq(store_endpoint_list(st, &eps, &n), 0);
	cr_assert_eq(n, 1);
	store_endpoints_free(eps, n);
	/* a fan-out to the deleted endpoint creates nothing */
	struct store_event ev = { .entry_id = "99-0", .json = (char[]){ "{}" } };
	const char *gone[1] = { "wh_b" };
	cr_assert_eq(store_webhook_fanout(st, &ev, "evt_x", gone, 1, now), 0);
	cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:whq:wh_b"), 0);
}

/* add_event - one outbox event via a recorded outcome. */
static void
add_event(const char *json)
{
	struct store_delivery *d = NULL;
	char id[64];

	enqueue_msg(id, sizeof(id), 1, 0);
	cr_assert_eq(fetch_one("c1", &d), 1);
	cr_assert_eq(record_one(d, "delivered", 0, json), 0);
	store_delivery_free(d);
}

struct since_arg {
	int n;
	char json[64];
};

static void *
since_thread(void *p)
{
	struct since_arg *sa = p;
	struct store *s2 = store_open(&rs_addr);
	struct store_event *ev[4];

	sa->n = s2 ? store_events_since(s2, "$", 4, 5000, ev) : -100;
	if (sa->n > 0) {
		util_strlcpy(sa->json, ev[0]->json, sizeof(sa->json));
		for (int i = 0; i < sa->n; i++)
			store_event_free(ev[i]);
	}
	store_close(s2);
	return NULL;
}

Test(store, events_last_id)
{
	struct store_event *ev[4];
	char last[48];
	int n;

	cr_assert_eq(store_events_last_id(st, last, sizeof(last)), STORE_OK);
	cr_assert_str_eq(last, "0-0", "empty stream: got %s, want 0-0", last);
	add_event("{\"n\":1}");
	add_event("{\"n\":2}");
	cr_assert_eq(store_events_last_id(st, last, sizeof(last)), STORE_OK);
	n = store_events_since(st, "0", 4, 0, ev);
	cr_assert_eq(n, 2, "got %d events, want 2", n);
	cr_assert_str_eq(last, ev[1]->entry_id, "got %s, want the newest id %s", last, ev[1]->entry_id);
	for (int i = 0; i < n; i++)
		store_event_free(ev[i]);
	/* reading after it finds only what comes later */
	cr_assert_eq(store_events_since(st, last, 4, 0, ev), 0);
	add_event("{\"n\":3}");
	n = store_events_since(st, last, 4, 0, ev);
	cr_assert_eq(n, 1, "got %d, want 1 new event", n);
	cr_assert_str_eq(ev[0]->json, "{\"n\":3}");
	store_event_free(ev[0]);
}

Test(store, events_since)
{
	struct store_event *ev[8];
	char first[48];
	int n;

	add_event("{\"n\":1}");
	add_event("{\"n\":2}");
	add_event("{\"n\":3}");
	n = store_events_since(st, "0", 8, 0, ev);
	cr_assert_eq(n, 3, "since 0: got %d, want 3", n);
	cr_assert_str_eq(ev[0]->json, "{\"n\":1}");
	util_strlcpy(first, ev[0]->entry_id, sizeof(first));
	for (int i = 0; i < n; i++)
		store_event_free(ev[i]);
	n = store_events_since(st, first, 8, 0, ev);
	cr_assert_eq(n, 2, "since first: got %d, want 2", n);
	cr_assert_str_eq(ev[0]->json, "{\"n\":2}");
	char last[48];
	util_strlcpy(last, ev[1]->entry_id, sizeof(last));
	for (int i = 0; i < n; i++)
		store_event_free(ev[i]);
	cr_assert_eq(store_events_since(st, last, 8, 0, ev), 0);
	cr_assert_eq(store_events_since(st, "$", 8, 0, ev), 0);
	cr_assert_eq(store_events_since(st, "bad id", 8, 0, ev), STORE_ERR_PROTO);
	/* fan-out does not remove them */
	n = store_read_events(st, "w1", 8, 0, 0, ev);
	cr_assert_eq(n, 3);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(store_webhook_fanout(st, ev[i], "evt_a", NULL, 0, util_now_ms()), 0);
		store_event_free(ev[i]);
	}
	cr_assert_eq(store_events_since(st, "0", 8, 0, ev), 3);
	for (int i = 0; i < 3; i++)
		store_event_free(ev[i]);

	/* blocking: a reader waiting on "$" gets the next event */
	struct since_arg sa = { 0 };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, since_thread, &sa), 0);
	int64_t deadline = util_mono_ms() + 5000;
	for (;;) {
		redisReply *r = redisCommand(rc_ctx, "INFO clients");
		int blocked = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "blocked_clients:1");
		freeReplyObject(r);
		if (blocked || util_mono_ms() > deadline)
			break;
		usleep(10000);
	}
	add_event("{\"n\":4}");
	pthread_join(th, NULL);
	cr_assert_eq(sa.n, 1, "blocked reader: got %d, want 1", sa.n);
	cr_assert_str_eq(sa.json, "{\"n\":4}");
}

Test(store, trim_keeps_unread_events)
{
	struct store_event *ev[8];
	int64_t future = util_now_ms() + 3600000;
	int n;

	add_event("{\"n\":1}");
	add_event("{\"n\":2}");
	add_event("{\"n\":3}");
	/* nothing read by the webhook group: nothing trimmed */
	cr_assert_eq(store_trim_events(st, future), 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 3);
	/* two read, one of them still pending: only the acked one goes */
	n = store_read_events(st, "w1", 2, 0, 0, ev);
	cr_assert_eq(n, 2);
	cr_assert_eq(store_webhook_fanout(st, ev[0], "evt_a", NULL, 0, util_now_ms()), 0);
	n = store_trim_events(st, future);
	cr_assert_eq(n, 1, "trim: got %d, want 1", n);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 2);
	cr_assert_eq(store_webhook_fanout(st, ev[1], "evt_b", NULL, 0, util_now_ms()), 0);
	store_event_free(ev[0]);
	store_event_free(ev[1]);
	/* read+acked up to the 2nd; the 3rd is unread */
	n = store_trim_events(st, future);
	cr_assert_eq(n, 1, "trim 2: got %d, want 1", n);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 1);
	n = store_events_since(st, "0", 8, 0, ev);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(ev[0]->json, "{\"n\":3}");
	store_event_free(ev[0]);
	/* before_ms in the past keeps recent ones */
	n = store_read_events(st, "w1", 2, 0, 0, ev);
	cr_assert_eq(n, 1);
	cr_assert_eq(store_webhook_fanout(st, ev[0], "evt_c", NULL, 0, util_now_ms()), 0);
	store_event_free(ev[0]);
	cr_assert_eq(store_trim_events(st, 1000), 0);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 1);
}

/* Projects (issue 11): each project's messages, events, endpoints, templates
 * and suppressions are its own; "default" keeps the keys of before. */
Test(store, projects_scope_data)
{
	char *next = NULL;
	char ida[64], idd[64], ids[64], tl[64];
	struct store_message_view v;
	struct store_delivery *d = NULL;
	struct store_event *ev[8];
	struct store_suppression *sv = NULL;
	char **list = NULL, *json = NULL;
	size_t n = 0;
	int created = 0, k, flags[1] = { -1 };
	const char *user0[1] = { "user0@example.com" };

	/* a message knows its project; one stored without says "default" */
	enqueue_in(ida, sizeof(ida), 1, util_now_ms() + 3600000, STORE_LANE_NORMAL, "A");
	enqueue_msg(idd, sizeof(idd), 1, 0);
	cr_assert_eq(store_get_message(st, ida, &v), 0);
	cr_assert_str_eq(v.project, "A");
	store_message_view_free(&v);
	cr_assert_eq(store_get_message(st, idd, &v), 0);
	cr_assert_str_eq(v.project, "default");
	store_message_view_free(&v);

	/* cancel by another project: answered as missing, nothing changes */
	cr_assert_eq(store_cancel(st, ida, "B", "{}", &k), STORE_ERR_NOT_FOUND);
	rcpt_status(ida, 0, tl, sizeof(tl));
	cr_assert_str_eq(tl, "scheduled");
	cr_assert_eq(store_cancel(st, idd, "A", "{}", &k), STORE_ERR_NOT_FOUND);
	cr_assert_eq(store_cancel(st, ida, "A", "{}", &k), 0);
	cr_assert_eq(k, 1);

	/* templates: one name, two projects, two templates; default keeps tpl:<name> */
	cr_assert_eq(store_template_put(st, "A", "welcome", "{\"subject\":\"A\"}", 1, &created), 0);
	cr_assert_eq(created, 1);
	cr_assert_eq(store_template_put(st, "B", "welcome", "{\"subject\":\"B\"}", 1, &created), 0);
	cr_assert_eq(created, 1, "B's put replaced A's template");
	cr_assert_eq(store_template_get(st, "A", "welcome", &json), 0);
	cr_assert(strstr(json, "\"subject\":\"A\"") != NULL, "A's template: got %s", json);
	free(json);
	cr_assert_eq(store_template_get(st, NULL, "welcome", &json), STORE_ERR_NOT_FOUND);
	cr_assert_eq(store_template_list(st, "B", NULL, 100, &list, &n, &next), 0);
	cr_assert_null(next);
	cr_assert_eq(n, 1);
	cr_assert(strstr(list[0], "\"subject\":\"B\"") != NULL);
	free(list[0]);
	free(list);
	cr_assert_eq(store_template_delete(st, "C", "welcome"), STORE_ERR_NOT_FOUND);
	cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:prj:A:tpl:welcome"), 1);
	cr_assert_eq(rint_cmd("ZCARD %s", "txm{0}:prj:B:tpls"), 1);
	cr_assert_eq(store_template_put(st, "a:b", "x", "{}", 1, &created), STORE_ERR_PROTO);
	cr_assert_eq(store_template_put(st, "default", "old", "{}", 1, &created), 0);
	cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:tpl:old"), 1);

	/* suppressions: A's list is not B's; the send path reads the batch's project's */
	cr_assert_eq(store_suppression_add(st, "A", "user0@example.com", "manual", 5), 0);
	cr_assert_eq(store_suppression_check(st, "B", user0, 1, flags), 0);
	cr_assert_eq(flags[0], 0);
	cr_assert_eq(store_suppression_check(st, "A", user0, 1, flags), 0);
	cr_assert_eq(flags[0], 1);
	cr_assert_eq(store_suppression_list(st, NULL, NULL, 100, &sv, &n, &next), 0);
	cr_assert_null(next);
	cr_assert_eq(n, 0, "default's list: got %zu entries, want 0", n);
	store_suppressions_free(sv, n);
	cr_assert_eq(store_suppression_delete(st, "B", "user0@example.com"), STORE_ERR_NOT_FOUND);
	{
		struct store_rcpt_in r = { .email = "user0@example.com", .kind = "to",
			.lower = "user0@example.com" };
		struct store_message_in m = { .id = ids, .mime = "", .from = "f", .mail_from = "f",
			.subject = "", .timeline_json = "{}", .tenant = "", .rcpts = &r, .nrcpts = 1 };
		int fl[1] = { 0 };

		cr_assert_eq(util_random_id("msg_", ids, sizeof(ids)), 0);
		m.project = "A";
		cr_assert_eq(store_enqueue_checked(st, &m, 1, NULL, NULL, fl), STORE_ERR_SUPPRESSED);
		cr_assert_eq(fl[0], 1);
		m.project = "B";
		cr_assert_eq(store_enqueue_checked(st, &m, 1, NULL, NULL, fl), 0,
		    "B's send was refused by A's suppression");
		/* one batch is one project */
		struct store_message_in two[2] = { m, m };
		char id2[64];
		cr_assert_eq(util_random_id("msg_", id2, sizeof(id2)), 0);
		two[1].id = id2;
		two[1].project = "A";
		cr_assert_eq(store_enqueue_batch(st, two, 2, NULL, NULL), STORE_ERR_PROTO);
	}

	/* record: the hard bounce suppresses in B (the message's project), the event says p=B */
	while ((k = fetch_one("c1", &d)) == 1 && strcmp(d->msg_id, ids) != 0) {
		cr_assert_eq(record_one(d, "delivered", 0, NULL), 0);
		store_delivery_free(d);
	}
	cr_assert_eq(k, 1, "B's message was not fetched");
	{
		struct store_result r = { .d = d, .status = "failed", .now_ms = 7, .timeline_json = "{}",
			.event_json = "{\"type\":\"message.failed\"}", .suppress_reason = "bounced",
			.smtp_json = "" };
		cr_assert_eq(store_record(st, &r, 1), 0);
	}
	store_delivery_free(d);
	cr_assert_eq(store_suppression_check(st, "B", user0, 1, flags), 0);
	cr_assert_eq(flags[0], 1, "the bounce did not suppress in B");
	cr_assert_eq(store_suppression_check(st, NULL, user0, 1, flags), 0);
	cr_assert_eq(flags[0], 0, "the bounce suppressed in default");
	k = store_events_since(st, "0", 8, 0, ev);
	cr_assert_eq(k, 1, "events: got %d, want 1", k);
	cr_assert_str_eq(ev[0]->project, "B");
	store_event_free(ev[0]);

	/* an asynchronous bounce (DSN) of a message of project C suppresses in C */
	{
		char idc[64];
		int applied = 0;
		const char *c0[1] = { "user0@example.com" };

		enqueue_in(idc, sizeof(idc), 1, 0, STORE_LANE_NORMAL, "C");
		struct store_bounce_in bi = { .msg_id = idc, .rcpt_idx = 0, .action = "failed",
			.event_json = "{\"type\":\"message.failed\"}", .timeline_json = "{}",
			.suppress_reason = "bounced", .now_ms = 9 };
		cr_assert_eq(store_bounce(st, &bi, &applied), 0);
		cr_assert_eq(applied, 1);
		cr_assert_eq(store_suppression_check(st, "C", c0, 1, flags), 0);
		cr_assert_eq(flags[0], 1, "the DSN did not suppress in C");
		cr_assert_eq(rint_cmd("HLEN %s", "txm{0}:supp"), 0);
		cr_assert_eq(rint_cmd("ZCARD %s", "txm{0}:prj:C:suppidx"), 1, "bounce.lua left C's index behind");
		k = store_events_since(st, "0", 8, 0, ev);
		cr_assert_eq(k, 2);
		cr_assert_str_eq(ev[1]->project, "C");
		store_event_free(ev[0]);
		store_event_free(ev[1]);
	}

	/* endpoints: owned by a project; another's delete is a miss; fan-out checks the owner */
	{
		char id_e[] = "wh_pa", url[] = "http://h/x", sec[] = "whsec_s", pa[] = "A";
		struct store_endpoint e = { .id = id_e, .url = url, .secret = sec, .created_ms = 1,
			.project = pa };
		struct store_endpoint *eps = NULL;
		struct store_event fev = { .entry_id = "1-0", .project = "B", .json = (char[]){ "{}" } };
		const char *to[1] = { "wh_pa" };

		cr_assert_eq(store_endpoint_create(st, &e), 0);
		cr_assert_eq(store_endpoint_list(st, &eps, &n), 0);
		cr_assert_eq(n, 1);
		cr_assert_str_eq(eps[0].project, "A");
		store_endpoints_free(eps, n);
		cr_assert_eq(store_webhook_fanout(st, &fev, "evt_b", to, 1, 1), 0);
		cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:wh:evt_b/wh_pa"), 0,
		    "A's endpoint got a delivery of B's event");
		util_strlcpy(fev.project, "A", sizeof(fev.project));
		cr_assert_eq(store_webhook_fanout(st, &fev, "evt_a", to, 1, 1), 0);
		cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:wh:evt_a/wh_pa"), 1);
		cr_assert_eq(store_endpoint_delete(st, "wh_pa", "B"), STORE_ERR_NOT_FOUND);
		cr_assert_eq(rint_cmd("EXISTS %s", "txm{0}:whep:wh_pa"), 1);
		cr_assert_eq(store_endpoint_delete(st, "wh_pa", "A"), 0);
	}
}

/* --- claim and record in batches: one script call for many entries ----------- */

/* reset_stats - CONFIG RESETSTAT: evalsha_calls() counts from 0 again. */
static void
reset_stats(void)
{
	redisReply *r = redisCommand(rc_ctx, "CONFIG RESETSTAT");

	cr_assert(r && r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
}

/* one fetch of 5 entries (one canceled meanwhile): one claim call, 4 deliveries, the canceled one acked */
Test(store, batch_claim_one_call)
{
	char id[5][64], key[128];
	struct store_delivery *d[8];
	int n;

	for (int i = 0; i < 5; i++)
		enqueue_msg(id[i], sizeof(id[i]), 1, 0);
	msg_key(key, sizeof(key), id[2], "");
	hset_cmd(key, "r0:status", "canceled");
	reset_stats();
	n = store_fetch(st, "c1", 8, 0, d);
	cr_assert_eq(n, 4, "fetch: got %d deliveries, want 4", n);
	cr_assert_eq(evalsha_calls(), 1, "claim calls: got %lld, want 1", evalsha_calls());
	for (int i = 0; i < n; i++) {
		cr_assert_neq(strcmp(d[i]->msg_id, id[2]), 0, "the canceled message was claimed");
		cr_assert_eq(d[i]->attempts, 1);
		cr_assert_eq(d[i]->mime_len, MIME_LEN);
		cr_assert_str_eq(d[i]->rcpt, "user0@example.com");
	}
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 4);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready"), 4, "the canceled entry is deleted");
	free_deliveries(d, n);
}

/* a message whose hash is broken fails its own claim only: the others are claimed, it stays pending */
Test(store, batch_claim_error_isolated)
{
	char id[3][64], key[128];
	struct store_delivery *d[8];
	redisReply *r;
	int n;

	for (int i = 0; i < 3; i++)
		enqueue_msg(id[i], sizeof(id[i]), 1, 0);
	msg_key(key, sizeof(key), id[1], "");
	r = redisCommand(rc_ctx, "DEL %s", key);
	freeReplyObject(r);
	r = redisCommand(rc_ctx, "SET %s x", key);
	freeReplyObject(r);
	n = store_fetch(st, "c1", 8, 0, d);
	cr_assert_eq(n, 2, "fetch: got %d deliveries, want 2", n);
	cr_assert_neq(strcmp(d[0]->msg_id, id[1]), 0);
	cr_assert_neq(strcmp(d[1]->msg_id, id[1]), 0);
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 3, "the broken one's entry stays pending");
	free_deliveries(d, n);
}

/*
 * several outcomes in one call: delivered, deferred, failed with
 * suppression, and one stale (another worker reclaimed it: attempts moved
 * on); one record call; the stale one untouched and still pending.
 */
Test(store, batch_record_mixed_and_stale)
{
	char id[4][64], key[128], sbuf[64];
	struct store_delivery *d[8];
	struct store_result r[4];
	int64_t now = util_now_ms();
	int n, rc, stale = -1;

	for (int i = 0; i < 4; i++)
		enqueue_msg(id[i], sizeof(id[i]), 1, 0);
	n = store_fetch(st, "c1", 8, 0, d);
	cr_assert_eq(n, 4);
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 4; i++) {
		r[i].d = d[i];
		r[i].now_ms = now;
		r[i].smtp_json = "{\"code\":250}";
		r[i].event_json = "{\"type\":\"e\"}";
		r[i].timeline_json = "{\"type\":\"x\"}";
	}
	r[0].status = "delivered";
	r[1].status = "deferred";
	r[1].next_ms = now + 60000;
	r[2].status = "failed";
	r[2].suppress_reason = "bounced";
	r[3].status = "delivered";
	for (int i = 0; i < 4; i++)
		if (strcmp(d[i]->msg_id, id[0]) == 0)
			stale = i;
	cr_assert(stale >= 0);
	/* the stale one: reclaimed by another worker since (attempt 2 now) */
	msg_key(key, sizeof(key), d[stale]->msg_id, "");
	hset_cmd(key, "r0:attempts", "2");
	reset_stats();
	rc = store_record(st, r, 4);
	cr_assert_eq(rc, 0, "record: got %d, want 0", rc);
	cr_assert_eq(evalsha_calls(), 1, "record calls: got %lld, want 1", evalsha_calls());
	for (int i = 0; i < 4; i++) {
		rcpt_status(d[i]->msg_id, 0, sbuf, sizeof(sbuf));
		if (i == stale) {
			cr_assert_str_eq(sbuf, "sending", "stale: got %s, want sending (untouched)", sbuf);
			cr_assert_eq(r[i].counted, 0);
		} else {
			cr_assert_str_eq(sbuf, r[i].status, "outcome %d: got %s, want %s", i, sbuf, r[i].status);
			cr_assert_eq(r[i].counted, 1, "outcome %d: counted %d, want 1", i, r[i].counted);
		}
	}
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 1, "only the stale entry stays pending");
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 3);
	cr_assert_eq(rint_cmd("ZCARD %s", "txm{0}:due"), 1);
	snprintf(key, sizeof(key), "%s/0", d[1]->msg_id);
	rstr_cmd(sbuf, sizeof(sbuf), "ZSCORE %s %s", "txm{0}:due", key);
	cr_assert_neq(sbuf[0], '\0', "the deferred one's due member %s is missing", key);
	msg_key(key, sizeof(key), d[1]->msg_id, "");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", key, "r0:dfr");
	cr_assert_str_eq(sbuf, "1");
	rstr_cmd(sbuf, sizeof(sbuf), "HGET %s %s", "txm{0}:supp", "user0@example.com");
	cr_assert(strstr(sbuf, ":bounced") != NULL, "suppression: got \"%s\"", sbuf);
	msg_key(key, sizeof(key), d[2]->msg_id, ":mime");
	cr_assert_eq(rint_cmd("EXISTS %s", key), 0, "a finished message's content is kept");
	/* the same batch again (as after an error): nothing written twice */
	rc = store_record(st, r, 4);
	cr_assert_eq(rc, 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(r[i].counted, 0, "replay %d: counted %d, want 0", i, r[i].counted);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 3);
	free_deliveries(d, n);
}

/* one outcome whose message hash is broken: the others are recorded, its entry stays pending, the call fails */
Test(store, batch_record_error_isolated)
{
	char id[3][64], key[128], sbuf[64];
	struct store_delivery *d[8];
	struct store_result r[3];
	redisReply *x;
	int n, rc, bad = -1;

	for (int i = 0; i < 3; i++)
		enqueue_msg(id[i], sizeof(id[i]), 1, 0);
	n = store_fetch(st, "c1", 8, 0, d);
	cr_assert_eq(n, 3);
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 3; i++) {
		r[i].d = d[i];
		r[i].status = "delivered";
		r[i].now_ms = util_now_ms();
		r[i].event_json = "{\"type\":\"e\"}";
		r[i].timeline_json = "{\"type\":\"x\"}";
		if (strcmp(d[i]->msg_id, id[1]) == 0)
			bad = i;
	}
	msg_key(key, sizeof(key), id[1], "");
	x = redisCommand(rc_ctx, "DEL %s", key);
	freeReplyObject(x);
	x = redisCommand(rc_ctx, "SET %s x", key);
	freeReplyObject(x);
	rc = store_record(st, r, 3);
	cr_assert_neq(rc, 0, "record with a broken message: got 0, want an error");
	for (int i = 0; i < 3; i++) {
		if (i == bad)
			continue;
		rcpt_status(d[i]->msg_id, 0, sbuf, sizeof(sbuf));
		cr_assert_str_eq(sbuf, "delivered", "outcome %d: got %s", i, sbuf);
	}
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 1, "the broken one's entry stays pending");
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:events"), 2);
	free_deliveries(d, n);
}

/*
 * entries a fetch carried (read beyond its max): one was reclaimed by
 * another worker meanwhile, so the claim of the carried batch skips it and
 * claims the rest, in one call.
 */
Test(store, batch_carried_reclaimed)
{
	char id[3][64], sbuf[64];
	const char *entry[3];
	struct store_delivery *d[8];
	redisReply *r, *x;
	int n;

	for (int i = 0; i < 3; i++)
		enqueue_msg(id[i], sizeof(id[i]), 1, 0);
	/* read by c1 (as a fetch reading ahead would), kept in the handle's carry */
	r = redisCommand(rc_ctx, "XREADGROUP GROUP workers c1 COUNT 10 STREAMS %s >", "txm{0}:ready");
	cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
	cr_assert_eq(r->element[0]->element[1]->elements, 3);
	st->carry = calloc(3, sizeof(*st->carry));
	cr_assert(st->carry);
	for (int i = 0; i < 3; i++) {
		const redisReply *e = r->element[0]->element[1]->element[i];
		const redisReply *f = e->element[1];
		struct st_pend *p = &st->carry[i];

		entry[i] = e->element[0]->str;
		util_strlcpy(p->entry_id, entry[i], sizeof(p->entry_id));
		for (size_t k = 0; k + 1 < f->elements; k += 2)
			if (strcmp(f->element[k]->str, "m") == 0)
				util_strlcpy(p->msg_id, f->element[k + 1]->str, sizeof(p->msg_id));
		p->idx = 0;
		p->lane = STORE_LANE_NORMAL;
		p->claim = 1;
	}
	st->ncarry = 3;
	/* the second one taken over by c2 (a reclaim) */
	x = redisCommand(rc_ctx, "XCLAIM %s workers c2 0 %s JUSTID", "txm{0}:ready", entry[1]);
	cr_assert(x && x->type == REDIS_REPLY_ARRAY && x->elements == 1);
	freeReplyObject(x);
	reset_stats();
	n = store_fetch(st, "c1", 8, 0, d);
	cr_assert_eq(n, 2, "fetch of the carried: got %d deliveries, want 2", n);
	cr_assert_eq(evalsha_calls(), 1, "claim calls: got %lld, want 1", evalsha_calls());
	for (int i = 0; i < n; i++)
		cr_assert_neq(strcmp(d[i]->entry_id, entry[1]), 0, "c2's entry was claimed by c1");
	rcpt_status(id[1], 0, sbuf, sizeof(sbuf));
	cr_assert_str_eq(sbuf, "queued", "c2's recipient: got %s, want queued (untouched)", sbuf);
	cr_assert_eq(pending_count("txm{0}:ready", "workers"), 3);
	freeReplyObject(r);
	free_deliveries(d, n);
}

/* --- fairness between projects inside a lane (issue 14 item 4) --------- */

#define K_PA "txm{0}:ready:p:A"
#define K_PB "txm{0}:ready:p:B"

/* a project's messages go to its own stream of the lane, named in the lane's set */
Test(store, projects_have_their_streams)
{
	char a[64], b[64], h[64], d[64];

	enqueue_in(a, sizeof(a), 2, 0, STORE_LANE_NORMAL, "A");
	enqueue_in(b, sizeof(b), 1, 0, STORE_LANE_NORMAL, "B");
	enqueue_in(h, sizeof(h), 1, 0, STORE_LANE_HIGH, "A");
	enqueue_in(d, sizeof(d), 1, 0, STORE_LANE_NORMAL, NULL);
	cr_assert_eq(rint_cmd("XLEN %s", K_PA), 2);
	cr_assert_eq(rint_cmd("XLEN %s", K_PB), 1);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready:high:p:A"), 1);
	cr_assert_eq(rint_cmd("XLEN %s", K_NORMAL), 1, "default keeps the lane's own stream");
	cr_assert_eq(rint_cmd("XLEN %s", K_HIGH), 0);
	cr_assert_eq(rint_cmd("SCARD %s", "txm{0}:ready:projects"), 2);
	cr_assert_eq(rint_cmd("SISMEMBER txm{0}:ready:high:projects %s", "A"), 1);
	cr_assert_eq(rint_cmd("SISMEMBER txm{0}:ready:projects %s", "default"), 0);
	cr_assert_eq(pending_count(K_PA, "workers"), 0, "the group exists");
}

/*
 * Project A has 1,000 messages queued (a batch) and is being delivered;
 * then project B queues one: B's is among the first few fetched after it
 * is seen (the stream list is read again at most once a second), not
 * behind A's 1,000. On a single stream it came after all of A's.
 */
Test(store, projects_fair_in_lane, .timeout = 60)
{
	char id[64], bid[64];
	struct store_delivery *d[8];
	int n, pos = -1, seen = 0;

	for (int i = 0; i < 1000; i++)
		enqueue_in(id, sizeof(id), 1, 0, STORE_LANE_NORMAL, "A");
	n = store_fetch(st, "c1", 8, 0, d);
	cr_assert_eq(n, 8, "fetch of A's: got %d, want 8", n);
	for (int i = 0; i < n; i++) {
		cr_assert_str_eq(d[i]->stream_project, "A");
		cr_assert_eq(record_one(d[i], "delivered", 0, NULL), 0);
	}
	free_deliveries(d, n);
	enqueue_in(bid, sizeof(bid), 1, 0, STORE_LANE_NORMAL, "B");
	usleep(1100 * 1000);    /* the handle's stream list is at most a second old */
	while (pos < 0 && seen < 1000) {
		n = store_fetch(st, "c1", 8, 0, d);
		cr_assert_gt(n, 0, "fetch: got %d", n);
		for (int i = 0; i < n; i++) {
			if (strcmp(d[i]->msg_id, bid) == 0) {
				pos = seen;
				cr_assert_str_eq(d[i]->stream_project, "B");
			}
			seen++;
			cr_assert_eq(record_one(d[i], "delivered", 0, NULL), 0);
		}
		free_deliveries(d, n);
	}
	/* 3 streams in the lane (default, A, B): within the first 2 x 3 */
	cr_assert(pos >= 0 && pos < 6, "B's message: fetched at %d after it was queued, want < 6", pos);
	cr_assert_eq(pending_count(K_PB, "workers"), 0);
	cr_assert_eq(rint_cmd("XLEN %s", K_PB), 0, "recorded on its own stream");
}

/* many messages of a lone busy project still fill whole batches (one stream's COUNT) */
Test(store, projects_lone_busy_fills_batch)
{
	char id[64];
	struct store_delivery *d[64];
	int n;

	for (int i = 0; i < 3; i++) {
		enqueue_in(id, sizeof(id), 1, 0, STORE_LANE_NORMAL, i == 0 ? "B" : NULL);
		cr_assert_eq(store_fetch(st, "c1", 8, 0, d), 1);
		cr_assert_eq(record_one(d[0], "delivered", 0, NULL), 0);
		free_deliveries(d, 1);
	}
	for (int i = 0; i < 200; i++)
		enqueue_in(id, sizeof(id), 1, 0, STORE_LANE_NORMAL, "A");
	usleep(1100 * 1000);
	for (int round = 0; round < 3; round++) {
		n = store_fetch(st, "c1", 64, 0, d);
		cr_assert_eq(n, 64, "round %d: got %d, want 64", round, n);
		for (int i = 0; i < n; i++)
			cr_assert_eq(record_one(d[i], "delivered", 0, NULL), 0);
		free_deliveries(d, n);
	}
}

/* entries the previous release wrote to the lane's own stream, for any project, are still delivered */
Test(store, projects_legacy_stream_entries)
{
	char id[64], cmd[160], key[128];
	struct store_delivery *d[4];
	redisReply *r;
	int n;


	/* a message of A whose entry the previous release put on the lane's own stream */
	enqueue_in(id, sizeof(id), 1, util_now_ms() + 3600000, STORE_LANE_NORMAL, "A");
	msg_key(key, sizeof(key), id, "");
	hset_cmd(key, "r0:status", "queued");
	snprintf(cmd, sizeof(cmd), "XADD %s * m %s r 0", K_NORMAL, id);
	r = redisCommand(rc_ctx, cmd);
	cr_assert(r && r->type == REDIS_REPLY_STRING);
	freeReplyObject(r);
	n = store_fetch(st, "c1", 4, 0, d);
	cr_assert_eq(n, 1, "fetch: got %d, want 1", n);
	cr_assert_str_eq(d[0]->msg_id, id);
	cr_assert_str_eq(d[0]->stream_project, "default", "the entry's stream, not the message's project");
	cr_assert_eq(record_one(d[0], "delivered", 0, NULL), 0);
	cr_assert_eq(pending_count(K_NORMAL, "workers"), 0);
	cr_assert_eq(rint_cmd("XLEN %s", K_NORMAL), 0);
	free_deliveries(d, n);
}

/* reclaim, heartbeat, hand back, park and promote keep a project's entry on its own stream */
Test(store, projects_entry_stays_on_its_stream)
{
	char id[64];
	struct store_delivery *a[4], *b[4];
	struct store_handback h;
	struct store_park p;
	const char *ids[1], *projects[1];
	enum store_lane lanes[1] = { STORE_LANE_NORMAL };
	size_t back = 0;
	int64_t next = 0, until = util_now_ms() + 60000;
	int n;

	enqueue_in(id, sizeof(id), 1, 0, STORE_LANE_NORMAL, "A");
	cr_assert_eq(store_fetch(st, "c1", 4, 0, a), 1);
	usleep(400000);
	ids[0] = a[0]->entry_id;
	projects[0] = a[0]->stream_project;
	cr_assert_eq(store_heartbeat(st, "c1", ids, lanes, projects, NULL, 1), 0);
	cr_assert_eq(store_reclaim(st, "c2", 300, 4, b), 0, "the heartbeat reached its stream");
	n = store_reclaim(st, "c2", 0, 4, b);
	cr_assert_eq(n, 1, "reclaim: got %d, want 1", n);
	cr_assert_str_eq(b[0]->stream_project, "A");
	/* hand back: a new entry on A's stream */
	memset(&h, 0, sizeof(h));
	h.d = b[0];
	cr_assert_eq(store_hand_back(st, "c2", &h, 1, &back), 0);
	cr_assert_eq(back, 1);
	cr_assert_eq(rint_cmd("XLEN %s", K_PA), 1);
	cr_assert_eq(rint_cmd("XLEN %s", K_NORMAL), 0);
	free_deliveries(a, 1);
	free_deliveries(b, 1);
	/* park, then promote: back on A's stream */
	cr_assert_eq(store_fetch(st, "c1", 4, 0, a), 1);
	p.d = a[0];
	p.until_ms = until;
	cr_assert_eq(store_park(st, "c1", &p, 1, &back), 0);
	cr_assert_eq(back, 1);
	cr_assert_eq(rint_cmd("XLEN %s", K_PA), 0);
	cr_assert_eq(store_promote_due(st, until, 10, &next), 1);
	cr_assert_eq(rint_cmd("XLEN %s", K_PA), 1);
	cr_assert_eq(rint_cmd("XLEN %s", K_NORMAL), 0);
	free_deliveries(a, 1);
	cr_assert_eq(store_fetch(st, "c1", 4, 0, a), 1);
	cr_assert_eq(record_one(a[0], "delivered", 0, NULL), 0);
	cr_assert_eq(rint_cmd("XLEN %s", K_PA), 0);
	cr_assert_eq(pending_count(K_PA, "workers"), 0);
	free_deliveries(a, 1);
}

/* a deferred retry of a project goes back to its project's stream */
Test(store, projects_retry_on_its_stream)
{
	char id[64];
	struct store_delivery *d[4];
	int64_t next = 0, now = util_now_ms();

	enqueue_in(id, sizeof(id), 1, 0, STORE_LANE_HIGH, "B");
	cr_assert_eq(store_fetch(st, "c1", 4, 0, d), 1);
	cr_assert_eq(record_one(d[0], "deferred", now + 10, NULL), 0);
	free_deliveries(d, 1);
	cr_assert_eq(store_promote_due(st, now + 10, 10, &next), 1);
	cr_assert_eq(rint_cmd("XLEN %s", "txm{0}:ready:high:p:B"), 1);
	cr_assert_eq(rint_cmd("XLEN %s", K_HIGH), 0);
}

/* the queue gauges are sums over a lane's streams */
Test(store, projects_queue_stats_sum)
{
	char id[64];
	struct store_delivery *d[4];
	struct store_queue_stats q;
	int n;

	for (int i = 0; i < 3; i++)
		enqueue_in(id, sizeof(id), 1, 0, STORE_LANE_NORMAL, "A");
	for (int i = 0; i < 2; i++)
		enqueue_in(id, sizeof(id), 1, 0, STORE_LANE_NORMAL, "B");
	enqueue_in(id, sizeof(id), 1, 0, STORE_LANE_NORMAL, NULL);
	enqueue_in(id, sizeof(id), 1, 0, STORE_LANE_HIGH, "B");
	cr_assert_eq(store_queue_stats(st, &q), 0);
	cr_assert_eq(q.ready[STORE_LANE_NORMAL], 6, "ready: got %lld, want 6",
	    (long long)q.ready[STORE_LANE_NORMAL]);
	cr_assert_eq(q.ready[STORE_LANE_HIGH], 1);
	cr_assert_gt(q.oldest_ms[STORE_LANE_NORMAL], -1);
	n = store_fetch(st, "c1", 3, 0, d);
	cr_assert_eq(n, 3);
	cr_assert_eq(store_queue_stats(st, &q), 0);
	/* claimed: pending with a worker, the entries read ahead (carried) too */
	cr_assert_geq(q.claimed[STORE_LANE_NORMAL] + q.claimed[STORE_LANE_HIGH], 3);
	cr_assert_eq(q.claimed[STORE_LANE_NORMAL] + q.claimed[STORE_LANE_HIGH] +
	    q.ready[STORE_LANE_NORMAL] + q.ready[STORE_LANE_HIGH], 7);
	free_deliveries(d, n);
}

/*
 * The same with both lanes busy: a flood of high keeps the normal lane at
 * its tenth, so the normal lane carries what it read ahead for A; B's
 * message is still among the first few of the normal lane's slots, not
 * behind that carry.
 */
Test(store, projects_fair_in_lane_with_carry, .timeout = 60)
{
	char id[64], bid[64];
	struct store_delivery *d[10];
	int n, pos = -1, normal = 0;

	for (int i = 0; i < 400; i++) {
		enqueue_in(id, sizeof(id), 1, 0, STORE_LANE_HIGH, NULL);
		enqueue_in(id, sizeof(id), 1, 0, STORE_LANE_NORMAL, "A");
	}
	for (int round = 0; round < 5; round++) {
		n = store_fetch(st, "c1", 10, 0, d);
		cr_assert_eq(n, 10, "round %d: got %d, want 10", round, n);
		for (int i = 0; i < n; i++)
			cr_assert_eq(record_one(d[i], "delivered", 0, NULL), 0);
		free_deliveries(d, n);
	}
	enqueue_in(bid, sizeof(bid), 1, 0, STORE_LANE_NORMAL, "B");
	usleep(1100 * 1000);
	for (int round = 0; pos < 0 && round < 200; round++) {
		n = store_fetch(st, "c1", 10, 0, d);
		cr_assert_gt(n, 0);
		for (int i = 0; i < n; i++) {
			if (d[i]->lane != STORE_LANE_NORMAL)
				continue;
			if (strcmp(d[i]->msg_id, bid) == 0)
				pos = normal;
			normal++;
		}
		for (int i = 0; i < n; i++)
			cr_assert_eq(record_one(d[i], "delivered", 0, NULL), 0);
		free_deliveries(d, n);
	}
	cr_assert(pos >= 0 && pos < 6, "B's message: normal-lane slot %d after it was queued, want < 6", pos);
}

/* --- partitions (TXMAIL_PARTITIONS) ------------------------------------------ */

/* rint2_cmd - an integer reply of a two-argument command */
static long long
rint2_cmd(const char *fmt, const char *a1, const char *a2)
{
	redisReply *r = redisCommand(rc_ctx, fmt, a1, a2);
	long long v;

	cr_assert(r && r->type == REDIS_REPLY_INTEGER, "inspector command failed: %s", fmt);
	v = r->integer;
	freeReplyObject(r);
	return v;
}

/* a store handle on the test's Redis with P partitions */
static struct store *
open_parts(int parts)
{
	struct redis_addr a = rs_addr;
	struct store *s;
	char err[256];

	a.partitions = parts;
	s = store_open(&a);
	cr_assert(s);
	cr_assert_eq(store_init(s, err, sizeof(err)), 0, "store_init: %s", err);
	return s;
}

/* one message to rcpt in partition part (its id msg_<ulid>p<part>) */
static void
enqueue_part(struct store *s, char *id, size_t idlen, unsigned part, int64_t send_at, const char *rcpt)
{
	struct store_rcpt_in rc = { .email = rcpt, .kind = "to" };
	struct store_message_in m;

	cr_assert_eq(util_random_id("msg_", id, idlen), 0);
	if (part > 0)
		snprintf(id + strlen(id), idlen - strlen(id), "p%u", part);
	cr_assert_eq(store_id_partition(id), part, "%s: partition %u", id, store_id_partition(id));
	memset(&m, 0, sizeof(m));
	m.id = id;
	m.created_ms = util_now_ms();
	m.expires_ms = m.created_ms + 86400000LL;
	m.send_at_ms = send_at;
	m.from = "s@example.com";
	m.mail_from = "s@example.com";
	m.subject = "p";
	m.mime = mime_bytes;
	m.mime_len = MIME_LEN;
	m.metadata_json = "{}";
	m.tags_json = "[]";
	m.timeline_json = "{\"type\":\"queued\"}";
	m.rcpts = &rc;
	m.nrcpts = 1;
	cr_assert_eq(store_enqueue(s, &m), 0, "enqueue %s", id);
}

Test(store, id_partition)
{
	static const struct { const char *id; unsigned want; } cases[] = {
		{ "msg_01m8yn3w5att8czm43fbyabf7q", 0 },      /* before partitions */
		{ "msg_01m8yn3w5att8czm43fbyabf7qp1", 1 },
		{ "msg_01m8yn3w5att8czm43fbyabf7qp63", 63 },
		{ "msg_01m8yn3w5att8czm43fbyabf7qp64", 0 },    /* out of range */
		{ "msg_01m8yn3w5att8czm43fbyabf7qp0", 0 },     /* no leading zero */
		{ "msg_01m8yn3w5att8czm43fbyabf7qp01", 0 },
		{ "msg_01m8yn3w5att8czm43fbyabf7qp123", 0 },
		{ "msg_01m8yn3w5att8czm43fbyabf7qpx", 0 },
		{ "msg_01m8yn3w5att8czm43fbyabp3", 0 },        /* 'p' is a ULID character: position counts */
		{ "m1p3", 0 },
		{ "", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(store_id_partition(cases[i].id), cases[i].want, "%s: got %u, want %u",
		    cases[i].id, store_id_partition(cases[i].id), cases[i].want);
	cr_assert_eq(store_id_partition(NULL), 0);
}

Test(store, partitions_every_reader_sees_every_partition)
{
	struct store *s = open_parts(4);
	struct store_delivery *d[16];
	struct store_event *ev[16];
	struct store_queue_stats q;
	char ids[8][64], key[160], rcpt[8][32];
	const char *acks[16];
	int64_t next = 0;
	int n, seen[4] = { 0, 0, 0, 0 };

	for (int i = 0; i < 8; i++) {
		snprintf(rcpt[i], sizeof(rcpt[i]), "r%d@example.com", i);
		enqueue_part(s, ids[i], sizeof(ids[i]), (unsigned)(i % 4), i == 6 ? util_now_ms() - 1 : 0, rcpt[i]);
		snprintf(key, sizeof(key), "txm{%d}:msg:%s", i % 4, ids[i]);
		cr_assert_eq(rint_cmd("EXISTS %s", key), 1, "%s not under its tag", key);
		snprintf(key, sizeof(key), "txm{0}:msg:%s", ids[i]);
		cr_assert_eq(rint_cmd("EXISTS %s", key), i % 4 == 0, "%s in partition 0 too", ids[i]);
	}
	/* the scheduled one waits in its partition's due; the others are on their lanes */
	cr_assert_eq(rint_cmd("ZCARD %s", "txm{2}:due"), 1);
	cr_assert_eq(store_queue_stats(s, &q), 0);
	cr_assert_eq(q.due, 1, "due over every partition: got %lld", (long long)q.due);
	cr_assert_eq(q.ready[STORE_LANE_NORMAL], 7, "ready: got %lld", (long long)q.ready[STORE_LANE_NORMAL]);
	n = store_promote_due(s, util_now_ms(), 100, &next);
	cr_assert_eq(n, 1, "promote over every partition: got %d, want 1", n);
	n = store_fetch(s, "c1", 16, 0, d);
	cr_assert_eq(n, 8, "fetch over every partition: got %d, want 8", n);
	for (int i = 0; i < n; i++)
		seen[store_id_partition(d[i]->msg_id)]++;
	cr_assert(seen[0] == 2 && seen[1] == 2 && seen[2] == 2 && seen[3] == 2, "per partition: %d %d %d %d",
	    seen[0], seen[1], seen[2], seen[3]);
	/* heartbeat of entries of every partition's stream */
	{
		const char *eids[16], *projs[16];
		enum store_lane lanes[16];
		unsigned parts[16];

		for (int i = 0; i < n; i++) {
			eids[i] = d[i]->entry_id;
			projs[i] = d[i]->stream_project;
			lanes[i] = d[i]->lane;
			parts[i] = store_id_partition(d[i]->msg_id);
		}
		cr_assert_eq(store_heartbeat(s, "c1", eids, lanes, projs, parts, (size_t)n), 0);
	}
	/* one record call for outcomes of four partitions */
	{
		struct store_result r[16];

		memset(r, 0, sizeof(r));
		for (int i = 0; i < n; i++) {
			r[i].d = d[i];
			r[i].status = "delivered";
			r[i].now_ms = util_now_ms();
			r[i].event_json = "{\"type\":\"message.delivered\"}";
			r[i].timeline_json = "{\"type\":\"delivered\"}";
		}
		cr_assert_eq(store_record(s, r, (size_t)n), 0);
		for (int i = 0; i < n; i++)
			cr_assert_eq(r[i].counted, 1, "%s not counted", d[i]->msg_id);
	}
	for (int k = 0; k < 4; k++) {
		snprintf(key, sizeof(key), "txm{%d}:events", k);
		cr_assert_eq(rint_cmd("XLEN %s", key), 2, "partition %d's outbox", k);
		snprintf(key, sizeof(key), "txm{%d}:ready", k);
		cr_assert_eq(pending_count(key, "workers"), 0, "partition %d's stream still pending", k);
	}
	free_deliveries(d, n);
	/* webhooks: a read of max 2 over four outboxes hands out at most 2 (what it reads is its
	 * consumer's until acked) */
	{
		long long held = 0;
		int k = store_read_events_flags(s, "w0", 2, 0, 60000, 0, ev);
		const char *a0[2];

		cr_assert(k >= 1 && k <= 2, "a read of max 2: got %d", k);
		for (int p = 0; p < 4; p++) {
			snprintf(key, sizeof(key), "txm{%d}:events", p);
			held += pending_count(key, "webhooks");
		}
		cr_assert_eq(held, k, "a read of max 2 left %lld pending, handed out %d", held, k);
		for (int i = 0; i < k; i++)
			a0[i] = ev[i]->entry_id;
		cr_assert_eq(store_webhook_settle(s, NULL, 0, a0, (size_t)k), 0);
		for (int i = 0; i < k; i++)
			store_event_free(ev[i]);
		/* every partition's outbox in one read, ids naming the partition */
		n = store_read_events(s, "w1", 16, 0, 60000, ev);
		cr_assert_eq(n + k, 8, "events: got %d after %d, want 8 in all", n, k);
	}
	for (int i = 0; i < n; i++) {
		const char *dot = strchr(ev[i]->entry_id, '.');

		cr_assert(dot == NULL || (dot[1] >= '1' && dot[1] <= '3' && dot[2] == '\0'), "entry id %s",
		    ev[i]->entry_id);
		acks[i] = ev[i]->entry_id;
	}
	cr_assert_eq(store_events_touch(s, "w1", acks, (size_t)n), 0);
	cr_assert_eq(store_webhook_settle(s, NULL, 0, acks, (size_t)n), 0);
	for (int k = 0; k < 4; k++) {
		snprintf(key, sizeof(key), "txm{%d}:events", k);
		cr_assert_eq(pending_count(key, "webhooks"), 0, "partition %d's events still pending", k);
	}
	for (int i = 0; i < n; i++)
		store_event_free(ev[i]);
	/* live events: all eight, ordered, ids unique */
	n = store_events_since(s, "0", 16, 0, ev);
	cr_assert(n >= 0 && n <= 8, "since: got %d", n);
	if (n < 8) {        /* the newest are held back for up to a millisecond (the watermark) */
		for (int i = 0; i < n; i++)
			store_event_free(ev[i]);
		usleep(5000);
		n = store_events_since(s, "0", 16, 0, ev);
	}
	cr_assert_eq(n, 8, "since: got %d, want 8", n);
	for (int i = 1; i < n; i++) {
		unsigned long long a1, a2, b1, b2;

		cr_assert_eq(sscanf(ev[i - 1]->entry_id, "%llu-%llu", &a1, &a2), 2);
		cr_assert_eq(sscanf(ev[i]->entry_id, "%llu-%llu", &b1, &b2), 2);
		cr_assert(a1 < b1 || (a1 == b1 && a2 < b2), "not increasing: %s then %s", ev[i - 1]->entry_id,
		    ev[i]->entry_id);
	}
	{
		char last[48], from[48];
		struct store_event *more[4];

		cr_assert_eq(store_events_last_id(s, last, sizeof(last)), 0);
		cr_assert_str_eq(last, ev[n - 1]->entry_id, "last id %s, want the newest %s", last,
		    ev[n - 1]->entry_id);
		/* from the fourth: the four after it, none twice */
		util_strlcpy(from, ev[3]->entry_id, sizeof(from));
		cr_assert_eq(store_events_since(s, from, 16, 0, more), 4);
		for (int i = 0; i < 4; i++) {
			cr_assert_str_eq(more[i]->entry_id, ev[4 + i]->entry_id);
			store_event_free(more[i]);
		}
	}
	for (int i = 0; i < n; i++)
		store_event_free(ev[i]);
	cr_assert_eq(store_trim_events(s, util_now_ms() + 1000), 8, "trim over every partition");
	store_close(s);
}

Test(store, partitions_suppressions_copied)
{
	struct store *s;
	struct store_delivery *d = NULL;
	char id[64], buf[64], key[64];
	int flags[1];

	/* written before partitions (P = 1): a list of "default" and one of a project */
	hset_cmd("txm{0}:supp", "old@example.com", "1:manual");
	hset_cmd("txm{0}:prj:acme:supp", "acme@example.com", "1:bounced");
	s = open_parts(3);   /* the one-time copy into partitions 1 and 2 */
	for (int k = 1; k < 3; k++) {
		snprintf(key, sizeof(key), "txm{%d}:supp", k);
		rstr_cmd(buf, sizeof(buf), "HGET %s %s", key, "old@example.com");
		cr_assert_str_eq(buf, "1:manual", "partition %d: got \"%s\"", k, buf);
		snprintf(key, sizeof(key), "txm{%d}:prj:acme:supp", k);
		rstr_cmd(buf, sizeof(buf), "HGET %s %s", key, "acme@example.com");
		cr_assert_str_eq(buf, "1:bounced", "partition %d: got \"%s\"", k, buf);
		snprintf(key, sizeof(key), "txm{%d}:supp:synced", k);
		cr_assert_eq(rint_cmd("EXISTS %s", key), 1);
	}
	/* once: a copy removed by hand stays removed at the next start */
	cr_assert_eq(rint2_cmd("HDEL %s %s", "txm{1}:supp", "old@example.com"), 1);
	store_close(s);
	s = open_parts(3);
	cr_assert_eq(rint2_cmd("HEXISTS %s %s", "txm{1}:supp", "old@example.com"), 0);
	/* the API writes every partition, deletes from every partition */
	cr_assert_eq(store_suppression_add(s, "acme", "new@example.com", "manual", 5), 0);
	for (int k = 0; k < 3; k++) {
		snprintf(key, sizeof(key), "txm{%d}:prj:acme:supp", k);
		cr_assert_eq(rint2_cmd("HEXISTS %s %s", key, "new@example.com"), 1, "partition %d", k);
	}
	cr_assert_eq(store_suppression_check(s, "acme", (const char *const []){ "new@example.com" }, 1, flags), 0);
	cr_assert_eq(flags[0], 1);
	cr_assert_eq(store_suppression_delete(s, "acme", "new@example.com"), 0);
	cr_assert_eq(store_suppression_delete(s, "acme", "new@example.com"), STORE_ERR_NOT_FOUND);
	for (int k = 0; k < 3; k++) {
		snprintf(key, sizeof(key), "txm{%d}:prj:acme:supp", k);
		cr_assert_eq(rint2_cmd("HEXISTS %s %s", key, "new@example.com"), 0, "partition %d", k);
	}
	/* a hard bounce recorded in partition 2 suppresses in 0 and 1 as well */
	enqueue_part(s, id, sizeof(id), 2, 0, "Gone@Example.com");
	cr_assert_eq(store_fetch(s, "c1", 1, 0, &d), 1);
	{
		struct store_result r = {
			.d = d, .status = "failed", .now_ms = 42, .smtp_json = "{\"code\":550}",
			.event_json = "{}", .timeline_json = "{}", .suppress_reason = "bounced",
		};
		cr_assert_eq(store_record(s, &r, 1), 0);
	}
	store_delivery_free(d);
	for (int k = 0; k < 3; k++) {
		snprintf(key, sizeof(key), "txm{%d}:supp", k);
		rstr_cmd(buf, sizeof(buf), "HGET %s %s", key, "gone@example.com");
		cr_assert_str_eq(buf, "42:bounced", "partition %d: got \"%s\"", k, buf);
	}
	store_close(s);
}
