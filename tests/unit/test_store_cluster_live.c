/*
 * test_store_cluster_live.c - the Redis Cluster router (server/store_cluster.c)
 * against a real cluster, driven by tests/integration/test_redis_cluster.py,
 * which starts six redis-server --cluster-enabled nodes (three primaries
 * with a replica each), passes their URL in TXMAIL_TEST_CLUSTER and runs
 * one test of this binary at a time (--filter) while it reshards, migrates
 * a slot by hand or kills a primary. Without TXMAIL_TEST_CLUSTER every
 * test is skipped, so the plain unit run passes over this binary.
 *
 *   spread  keys of 200 hash tags written and read back through the
 *           router; each slot is the one CLUSTER KEYSLOT gives; then all
 *           200 read back in one st_cluster_run_many (every node's
 *           pipeline in one call, the replies in the commands' order) and
 *           a WAIT on each node written (ST_CLUSTER_NO_DIAL); no
 *           redirection in a stable cluster (the primaries' DBSIZE is the
 *           harness's to check)
 *   writer  writes SET {tag}:<i> <i> (TXM_CLUSTER_TAGS: the tags, comma
 *           separated), each retried as a client would (ST_CLUSTER_IDEMPOTENT:
 *           a SET of the same value may run twice) until it succeeds,
 *           until the file TXM_CLUSTER_STOP exists; with TXM_CLUSTER_WAIT=1
 *           each SET is followed by WAIT 1 500 in the same pipeline and
 *           only a write a replica confirmed counts as acknowledged (a
 *           failover may drop one it did not). The count of writes
 *           answered OK (acknowledged or not) goes to TXM_CLUSTER_PROGRESS
 *           as it grows. Then every
 *           acknowledged key is read back; the figures go to
 *           TXM_CLUSTER_STATS as key=value words and none may be lost.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../server/config.h"
#include "../../server/store_internal.h"
#include "../../server/store_cluster.h"
#include "../../server/util.h"

#define LIVE_SECONDS 100        /* the writer stops by itself after this long */
#define LIVE_MAX_KEYS 200000

static struct redis_addr live_addr;

/* live_open - the router over TXMAIL_TEST_CLUSTER, or the test is skipped */
static struct st_cluster *
live_open(void)
{
	const char *url = getenv("TXMAIL_TEST_CLUSTER");
	char err[256];
	struct st_cluster *cl;

	if (url == NULL || *url == '\0')
		cr_skip_test("TXMAIL_TEST_CLUSTER unset: run by tests/integration/test_redis_cluster.py");
	cr_assert_eq(config_parse_redis(url, &live_addr, err, sizeof(err)), 0, "%s", err);
	cl = st_cluster_open(&live_addr, NULL, NULL);
	cr_assert(cl);
	return cl;
}

/* cmd - the wire command of argv[0..argc) */
static struct st_cmd
cmd(int argc, const char *const *argv)
{
	struct st_args a;
	struct st_cmd c;

	cr_assert_eq(st_args_init(&a, (size_t)argc), 0);
	for (int i = 0; i < argc; i++)
		st_adds(&a, argv[i]);
	cr_assert_eq(st_format(&a, &c), 0);
	st_args_release(&a);
	return c;
}

static void
cmds_free(struct st_cmd *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(c[i].buf);
}

static void
reps_free(redisReply **rep, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (rep[i] != NULL)
			freeReplyObject(rep[i]);
}

static void
nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

Test(store_cluster_live, spread, .timeout = 60)
{
	struct st_cluster *cl = live_open();
	struct st_cluster_stats st;

	for (int i = 0; i < 200; i++) {
		char key[64], val[16], want[16];
		const char *set[3] = { "SET", key, val }, *ks[3] = { "CLUSTER", "KEYSLOT", key };
		const char *get[2] = { "GET", key };
		struct st_cmd c[3];
		redisReply *rep[3];
		unsigned slot;

		snprintf(key, sizeof(key), "{tag%d}:spread", i);
		snprintf(val, sizeof(val), "%d", i);
		slot = st_cluster_keyslot(key, strlen(key));
		c[0] = cmd(3, set);
		c[1] = cmd(3, ks);
		c[2] = cmd(2, get);
		cr_assert_eq(st_cluster_run(cl, slot, c, 3, rep, 0), 0, "%s: %s", key, st_cluster_why(cl));
		cr_assert(rep[0]->type == REDIS_REPLY_STATUS && strcmp(rep[0]->str, "OK") == 0,
		    "%s: SET got %s", key, rep[0]->str ? rep[0]->str : "(not a string)");
		cr_assert(rep[1]->type == REDIS_REPLY_INTEGER && rep[1]->integer == (long long)slot,
		    "%s: CLUSTER KEYSLOT got %lld, st_cluster_keyslot %u", key, rep[1]->integer, slot);
		snprintf(want, sizeof(want), "%d", i);
		cr_assert(rep[2]->type == REDIS_REPLY_STRING && strcmp(rep[2]->str, want) == 0,
		    "%s: GET got %s, want %s", key, rep[2]->str ? rep[2]->str : "(nil)", want);
		reps_free(rep, 3);
		cmds_free(c, 3);
	}
	/* all of them in one call over the three primaries, the replies in order */
	{
		static struct st_cmd c[200];
		static redisReply *rep[200];
		static char key[200][64];
		unsigned slots[200], out[200];
		long nd;

		for (int i = 0; i < 200; i++) {
			const char *get[2] = { "GET", key[i] };

			snprintf(key[i], sizeof(key[i]), "{tag%d}:spread", i);
			c[i] = cmd(2, get);
			c[i].slot = slots[i] = st_cluster_keyslot(key[i], strlen(key[i]));
		}
		st_cluster_clean(cl);
		cr_assert_eq(st_cluster_run_many(cl, c, 200, rep, 0), 0, "%s", st_cluster_why(cl));
		for (int i = 0; i < 200; i++) {
			char want[16];

			snprintf(want, sizeof(want), "%d", i);
			cr_assert(rep[i]->type == REDIS_REPLY_STRING && strcmp(rep[i]->str, want) == 0,
			    "run_many GET %s got %s, want %s", key[i], rep[i]->str ? rep[i]->str : "(nil)", want);
		}
		reps_free(rep, 200);
		cmds_free(c, 200);
		/* a WAIT per node the call went to, on the connection it used */
		nd = st_cluster_dirty_slots(cl, slots, 200, out, 1);
		cr_assert_eq(nd, 3, "%ld dirty nodes after a call to all three", nd);
		cr_assert_eq(st_cluster_dirty_slots(cl, slots, 200, out, 0), 3, "open connections to all three");
		for (long k = 0; k < nd; k++) {
			/* 0 wanted: the answer is what the node's replicas confirmed so far (a new cluster's may still sync) */
			const char *wt[3] = { "WAIT", "0", "0" };

			c[k] = cmd(3, wt);
			c[k].slot = out[k];
		}
		cr_assert_eq(st_cluster_run_many(cl, c, (size_t)nd, rep, ST_CLUSTER_NO_DIAL), 0, "%s", st_cluster_why(cl));
		for (long k = 0; k < nd; k++)
			cr_assert(rep[k]->type == REDIS_REPLY_INTEGER && rep[k]->integer >= 0 && rep[k]->integer <= 1,
			    "WAIT on node %ld: got type %d %lld", k, rep[k]->type, rep[k]->integer);
		reps_free(rep, (size_t)nd);
		cmds_free(c, (size_t)nd);
		st_cluster_clean(cl);
		cr_assert_eq(st_cluster_dirty_slots(cl, slots, 200, out, 1), 0);
		cr_assert_eq(st_cluster_lost_dirty(cl), 0);
	}
	st_cluster_stats(cl, &st);
	cr_assert_eq(st.moved + st.ask, 0, "a stable cluster redirected %" PRIu64 " times", st.moved + st.ask);
	cr_assert_eq(st.refreshes, 1, "the map was read %" PRIu64 " times, want once", st.refreshes);
	cr_assert_eq(st.connects, 3, "%" PRIu64 " node connections, want 3 (the primaries)", st.connects);
	st_cluster_close(cl);
}

/* The writer's tags: TXM_CLUSTER_TAGS split at ',' (at most 64). */
static size_t
live_tags(char tags[64][32])
{
	const char *s = getenv("TXM_CLUSTER_TAGS");
	size_t n = 0;

	cr_assert(s != NULL && *s != '\0', "TXM_CLUSTER_TAGS unset");
	while (*s != '\0' && n < 64) {
		size_t len = strcspn(s, ",");

		cr_assert(len > 0 && len < 32, "a bad tag in TXM_CLUSTER_TAGS");
		memcpy(tags[n], s, len);
		tags[n++][len] = '\0';
		s += len;
		if (*s == ',')
			s++;
	}
	return n;
}

static const char *
live_env(const char *name)
{
	const char *v = getenv(name);

	cr_assert(v != NULL && *v != '\0', "%s unset", name);
	return v;
}

static void
live_progress(const char *path, size_t n)
{
	char tmp[4200];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	cr_assert(f, "%s: %s", tmp, strerror(errno));
	fprintf(f, "%zu\n", n);
	fclose(f);
	cr_assert_eq(rename(tmp, path), 0);
}

/* live_get - GET key through the router until it answers (a deadline); 1 when it holds want */
static int
live_get(struct st_cluster *cl, const char *key, const char *want, int64_t deadline)
{
	const char *get[2] = { "GET", key };
	struct st_cmd c = cmd(2, get);
	redisReply *r = NULL;
	int ok = 0;

	while (st_cluster_run(cl, st_cluster_keyslot(key, strlen(key)), &c, 1, &r, ST_CLUSTER_IDEMPOTENT) != 0 ||
	    r->type == REDIS_REPLY_ERROR) {
		cr_assert(util_mono_ms() < deadline, "GET %s: no answer by the deadline: %s", key,
		    r != NULL && r->str != NULL ? r->str : st_cluster_why(cl));
		if (r != NULL)
			freeReplyObject(r);
		r = NULL;
		nap_ms(20);
	}
	ok = r->type == REDIS_REPLY_STRING && strcmp(r->str, want) == 0;
	freeReplyObject(r);
	free(c.buf);
	return ok;
}

Test(store_cluster_live, writer, .timeout = 140)
{
	struct st_cluster *cl = live_open();
	const char *stop = live_env("TXM_CLUSTER_STOP"), *progress = live_env("TXM_CLUSTER_PROGRESS");
	const char *stats = live_env("TXM_CLUSTER_STATS"), *w = getenv("TXM_CLUSTER_WAIT");
	int wait = w != NULL && strcmp(w, "1") == 0;
	static char tags[64][32];
	size_t ntags = live_tags(tags), acked = 0, unconfirmed = 0, lost = 0, errors = 0;
	uint32_t *keys = calloc(LIVE_MAX_KEYS, sizeof(*keys));
	int64_t end = util_mono_ms() + LIVE_SECONDS * 1000, max_gap = 0;
	char first_error[200] = "none";
	struct st_cluster_stats st;
	FILE *f;

	cr_assert(keys);
	for (uint32_t i = 0; acked < LIVE_MAX_KEYS && util_mono_ms() < end && access(stop, F_OK) != 0; i++) {
		char key[64], val[16];
		const char *set[3] = { "SET", key, val }, *wt[3] = { "WAIT", "1", "500" };
		struct st_cmd c[2];
		redisReply *rep[2] = { NULL, NULL };
		int64_t t0 = util_mono_ms();
		int done = 0;

		snprintf(key, sizeof(key), "{%s}:%" PRIu32, tags[i % ntags], i);
		snprintf(val, sizeof(val), "%" PRIu32, i);
		c[0] = cmd(3, set);
		c[1] = cmd(3, wt);
		while (!done && access(stop, F_OK) != 0 && util_mono_ms() < end) {
			int rc = st_cluster_run(cl, st_cluster_keyslot(key, strlen(key)), c, wait ? 2 : 1, rep,
			    ST_CLUSTER_IDEMPOTENT);

			if (rc == 0 && rep[0]->type == REDIS_REPLY_STATUS) {
				done = 1;
				if (!wait || (rep[1]->type == REDIS_REPLY_INTEGER && rep[1]->integer >= 1))
					keys[acked++] = i;
				else
					unconfirmed++;
			} else {
				if (errors++ == 0)
					snprintf(first_error, sizeof(first_error), "%s: %.150s", key,
					    rc != 0 ? st_cluster_why(cl) : rep[0]->str ? rep[0]->str : "a reply not OK");
				nap_ms(10);
			}
			reps_free(rep, wait ? 2 : 1);
		}
		cmds_free(c, 2);
		if (done && util_mono_ms() - t0 > max_gap)
			max_gap = util_mono_ms() - t0;
		if (done && (acked + unconfirmed) % 20 == 0)
			live_progress(progress, acked + unconfirmed);
		nap_ms(1);
	}
	live_progress(progress, acked + unconfirmed);
	/* every acknowledged write is still there */
	for (size_t k = 0; k < acked; k++) {
		char key[64], val[16];

		snprintf(key, sizeof(key), "{%s}:%" PRIu32, tags[keys[k] % ntags], keys[k]);
		snprintf(val, sizeof(val), "%" PRIu32, keys[k]);
		lost += !live_get(cl, key, val, util_mono_ms() + 20000);
	}
	st_cluster_stats(cl, &st);
	f = fopen(stats, "w");
	cr_assert(f, "%s: %s", stats, strerror(errno));
	fprintf(f, "acked=%zu unconfirmed=%zu lost=%zu errors=%zu max_gap_ms=%" PRId64 " moved=%" PRIu64
	    " ask=%" PRIu64 " refreshes=%" PRIu64 " retries=%" PRIu64 " connects=%" PRIu64 "\nfirst_error=%s\n",
	    acked, unconfirmed, lost, errors, max_gap, st.moved, st.ask, st.refreshes, st.retries, st.connects,
	    first_error);
	fclose(f);
	cr_assert(acked > 0, "nothing acknowledged: %s", first_error);
	cr_assert_eq(lost, 0, "%zu of %zu acknowledged writes lost", lost, acked);
	free(keys);
	st_cluster_close(cl);
}
