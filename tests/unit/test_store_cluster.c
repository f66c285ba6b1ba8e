/*
 * test_store_cluster.c - the pure half of the Redis Cluster client
 * (server/store_cluster_map.c): CRC16 and key slots with hash tags (the
 * Cluster specification's examples), the slot map from CLUSTER SLOTS
 * replies parsed by hiredis's own reader from RESP bytes (what
 * redis-server 7 answers, and the malformed answers it does not give),
 * the map's log line, and the -MOVED / -ASK parse; the router only with
 * no cluster at all (seeds that refuse). The router runs against a real
 * cluster: tests/unit/test_store_cluster_live.c, started by
 * tests/integration/test_redis_cluster.py.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "../../server/config.h"
#include "../../server/store.h"
#include "../../server/store_cluster.h"
#include "../../server/store_internal.h"

/* parse - one reply from RESP bytes (the caller frees it) */
static redisReply *
parse(const char *resp, size_t len)
{
	redisReader *rd = redisReaderCreate();
	void *r = NULL;

	cr_assert(rd);
	cr_assert_eq(redisReaderFeed(rd, resp, len), REDIS_OK);
	cr_assert_eq(redisReaderGetReply(rd, &r), REDIS_OK, "%.80s: not RESP", resp);
	cr_assert(r, "%.80s: an incomplete reply", resp);
	redisReaderFree(rd);
	return r;
}

/* One range of a CLUSTER SLOTS reply as redis-server 7 writes it: a primary and one replica. */
struct range {
	long start, end;
	const char *host;   /* NULL: nil */
	long port;
};

/* slots_resp - the RESP bytes of a CLUSTER SLOTS reply with these ranges */
static size_t
slots_resp(char *buf, size_t cap, const struct range *rg, size_t n)
{
	size_t off = (size_t)snprintf(buf, cap, "*%zu\r\n", n);

	for (size_t i = 0; i < n; i++) {
		off += (size_t)snprintf(buf + off, cap - off, "*4\r\n:%ld\r\n:%ld\r\n*4\r\n", rg[i].start,
		    rg[i].end);
		if (rg[i].host == NULL)
			off += (size_t)snprintf(buf + off, cap - off, "$-1\r\n");
		else
			off += (size_t)snprintf(buf + off, cap - off, "$%zu\r\n%s\r\n", strlen(rg[i].host),
			    rg[i].host);
		off += (size_t)snprintf(buf + off, cap - off,
		    ":%ld\r\n$40\r\n%040d\r\n*0\r\n*4\r\n$9\r\n127.0.0.9\r\n:9\r\n$40\r\n%040d\r\n*0\r\n",
		    rg[i].port, (int)i, (int)i + 100);
		cr_assert(off < cap);
	}
	return off;
}

static char *
node_name(const struct st_cluster_map *m, unsigned slot, char *buf, size_t len)
{
	if (m->slot[slot] == ST_CLUSTER_NO_NODE)
		snprintf(buf, len, "none");
	else
		snprintf(buf, len, "%s:%u", m->node[m->slot[slot]].host, (unsigned)m->node[m->slot[slot]].port);
	return buf;
}

Test(store_cluster, crc16_and_key_slots)
{
	static const struct { const char *key; unsigned slot; } cases[] = {
		{ "123456789", 0x31c3 & 16383 },   /* the spec's check value: crc16 0x31C3 */
		{ "foo", 12182 },
		{ "bar", 5061 },
		{ "", 0 },
		{ "{user1000}.following", 3443 },  /* = "user1000" */
		{ "{user1000}.followers", 3443 },
		{ "user1000", 3443 },
		{ "foo{}{bar}", 8363 },            /* an empty first tag: the whole key */
		{ "foo{{bar}}zap", 4015 },         /* the tag is "{bar" */
		{ "{bar", 4015 },                  /* no '}': the whole key, which is "{bar" */
		{ "foo{bar}{zap}", 5061 },         /* the first tag only: "bar" */
		{ "txm{0}:ready", 13907 },         /* every key of this release: "0" */
		{ "0", 13907 },
	};

	cr_assert_eq(st_cluster_crc16("123456789", 9), 0x31c3, "crc16 got %#x, want 0x31c3",
	    st_cluster_crc16("123456789", 9));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned got = st_cluster_keyslot(cases[i].key, strlen(cases[i].key));

		cr_assert_eq(got, cases[i].slot, "%s: slot got %u, want %u", cases[i].key, got, cases[i].slot);
	}
	/* a NUL is a byte like any other, and a tag may hold one */
	cr_assert_eq(st_cluster_keyslot("a{b\0c}d", 7), st_cluster_keyslot("b\0c", 3));
}

/* Where a slot must go: "host:port", or "none". */
struct at {
	unsigned slot;
	const char *want;
};

/* check_map - the map of a CLUSTER SLOTS reply of these ranges, asked at asked: nnodes nodes, each at[] */
static void
check_map(const struct range *rg, size_t n, const char *asked, size_t nnodes, const struct at *at,
    size_t nat)
{
	static struct st_cluster_map m;
	char buf[4096], why[200] = "", name[300];
	redisReply *r = parse(buf, slots_resp(buf, sizeof(buf), rg, n));

	cr_assert_eq(st_cluster_map_parse(r, asked, &m, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(m.nnodes, nnodes, "nodes got %zu, want %zu", m.nnodes, nnodes);
	for (size_t i = 0; i < nat; i++)
		cr_assert_str_eq(node_name(&m, at[i].slot, name, sizeof(name)), at[i].want,
		    "slot %u: got %s, want %s", at[i].slot, name, at[i].want);
	freeReplyObject(r);
}

Test(store_cluster, slots_reply_three_primaries)
{
	static const struct range rg[] = {
		{ 0, 5460, "127.0.0.1", 30001 },
		{ 10923, 16383, "127.0.0.1", 30003 },
		{ 5461, 10922, "127.0.0.1", 30002 },
	};
	static const struct at at[] = {
		{ 0, "127.0.0.1:30001" }, { 5460, "127.0.0.1:30001" }, { 5461, "127.0.0.1:30002" },
		{ 10922, "127.0.0.1:30002" }, { 10923, "127.0.0.1:30003" }, { 16383, "127.0.0.1:30003" },
	};

	/* the replicas (127.0.0.9:9 in every range) are not in the map */
	check_map(rg, 3, "seed", 3, at, sizeof(at) / sizeof(at[0]));
}

Test(store_cluster, slots_reply_hosts)
{
	/* after a reshard one primary serves two ranges; "" and nil: the node asked; "?": no endpoint */
	static const struct range rg[] = {
		{ 0, 99, "10.0.0.1", 7000 },
		{ 100, 199, "", 7001 },
		{ 200, 299, NULL, 7002 },
		{ 300, 399, "?", 7003 },
		{ 400, 16383, "10.0.0.1", 7000 },
	};
	static const struct at at[] = {
		{ 0, "10.0.0.1:7000" }, { 16383, "10.0.0.1:7000" }, { 150, "seed.example:7001" },
		{ 250, "seed.example:7002" }, { 350, "none" },
	};

	check_map(rg, 5, "seed.example", 3, at, sizeof(at) / sizeof(at[0]));
}

Test(store_cluster, slots_reply_malformed)
{
	static const struct { const char *resp; const char *why; } cases[] = {
		{ "-ERR This instance has cluster support disabled\r\n", "cluster support disabled" },
		{ "+OK\r\n", "not an array" },
		{ "$-1\r\n", "not an array" },
		{ "*0\r\n", "no slot is served" },
		{ "*1\r\n*2\r\n:0\r\n:1\r\n", "not [start, end" },
		{ "*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n$1\r\nh\r\n:1\r\n", "not [start, end" },
		{ "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n", "not [start, end" },
		{ "*1\r\n*3\r\n:-1\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n", "not [start, end" },
		{ "*1\r\n*3\r\n$1\r\n0\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n", "not [start, end" },
		{ "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:0\r\n", "not [host, port" },
		{ "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:65536\r\n", "not [host, port" },
		{ "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n$4\r\n6379\r\n", "not [host, port" },
		{ "*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n$1\r\nh\r\n", "not [host, port" },
		{ "*1\r\n*3\r\n:0\r\n:1\r\n$1\r\nh\r\n", "not [host, port" },
		{ "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n:1\r\n:1\r\n", "host is not a string" },
		{ "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na b\r\n:1\r\n", "a bad host" },
		{ "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$2\r\na\n\r\n:1\r\n", "a bad host" },
		{ "*2\r\n*3\r\n:0\r\n:10\r\n*2\r\n$1\r\nh\r\n:1\r\n*3\r\n:10\r\n:20\r\n*2\r\n$1\r\ni\r\n:1\r\n",
		  "slot 10 is in two ranges" },
		{ "*1\r\n:1\r\n", "not [start, end" },
	};
	static struct st_cluster_map m;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redisReply *r = parse(cases[i].resp, strlen(cases[i].resp));
		char why[200] = "";
		int rc = st_cluster_map_parse(r, "seed", &m, why, sizeof(why));

		cr_assert_eq(rc, ST_CLUSTER_BAD, "%s: got %d, want ST_CLUSTER_BAD", cases[i].resp, rc);
		cr_assert(strstr(why, cases[i].why) != NULL, "%s: why got \"%s\", want \"%s\"", cases[i].resp,
		    why, cases[i].why);
		cr_assert_eq(m.nnodes, 0, "%s: a failed parse left %zu nodes", cases[i].resp, m.nnodes);
		cr_assert_eq(m.slot[0], ST_CLUSTER_NO_NODE, "%s: a failed parse left slot 0 served",
		    cases[i].resp);
		freeReplyObject(r);
	}
	cr_assert_eq(st_cluster_map_parse(NULL, "seed", &m, (char[64]){ 0 }, 64), ST_CLUSTER_BAD);
}

Test(store_cluster, slots_reply_too_many_nodes)
{
	static struct range rg[ST_CLUSTER_MAX_NODES + 1];
	static char hosts[ST_CLUSTER_MAX_NODES + 1][16], buf[65536];
	static struct st_cluster_map m;
	char why[200] = "";
	size_t len;
	redisReply *r;

	for (size_t i = 0; i <= ST_CLUSTER_MAX_NODES; i++) {
		snprintf(hosts[i], sizeof(hosts[i]), "10.0.%zu.%zu", i / 256, i % 256);
		rg[i] = (struct range){ (long)i, (long)i, hosts[i], 7000 };
	}
	len = slots_resp(buf, sizeof(buf), rg, ST_CLUSTER_MAX_NODES);
	r = parse(buf, len);
	cr_assert_eq(st_cluster_map_parse(r, "seed", &m, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(m.nnodes, ST_CLUSTER_MAX_NODES);
	freeReplyObject(r);
	len = slots_resp(buf, sizeof(buf), rg, ST_CLUSTER_MAX_NODES + 1);
	r = parse(buf, len);
	cr_assert_eq(st_cluster_map_parse(r, "seed", &m, why, sizeof(why)), ST_CLUSTER_BAD);
	cr_assert(strstr(why, "more than 128 nodes") != NULL, "why got \"%s\"", why);
	freeReplyObject(r);
}

Test(store_cluster, map_nodes)
{
	static struct st_cluster_map m;
	char host[300];

	st_cluster_map_clear(&m);
	cr_assert_eq(st_cluster_map_node(&m, "a", 1), 0);
	cr_assert_eq(st_cluster_map_node(&m, "a", 2), 1, "another port is another node");
	cr_assert_eq(st_cluster_map_node(&m, "a", 1), 0, "the same node is found, not added");
	cr_assert_eq(st_cluster_map_node(&m, "", 1), -1);
	cr_assert_eq(st_cluster_map_node(&m, "a", 0), -1);
	memset(host, 'h', 256);
	host[256] = '\0';
	cr_assert_eq(st_cluster_map_node(&m, host, 1), -1, "a 256-byte host");
	host[255] = '\0';
	cr_assert_eq(st_cluster_map_node(&m, host, 1), 2, "a 255-byte host");
	for (int i = 3; i < ST_CLUSTER_MAX_NODES; i++)
		cr_assert_eq(st_cluster_map_node(&m, "b", (uint16_t)i), i);
	cr_assert_eq(st_cluster_map_node(&m, "c", 1), -1, "a full map");
	cr_assert_eq(st_cluster_map_node(&m, "b", 3), 3, "a full map still finds its nodes");
}

Test(store_cluster, map_description)
{
	static struct st_cluster_map m, m2;
	char full[512], cut[40], again[512];
	uint64_t h, hcut, h2;

	st_cluster_map_clear(&m);
	for (unsigned s = 0; s < ST_CLUSTER_SLOTS; s++)
		m.slot[s] = (uint16_t)(s <= 5460 ? 0 : s <= 10922 ? 1 : 2);
	cr_assert_eq(st_cluster_map_node(&m, "127.0.0.1", 30001), 0);
	cr_assert_eq(st_cluster_map_node(&m, "127.0.0.1", 30002), 1);
	cr_assert_eq(st_cluster_map_node(&m, "127.0.0.1", 30003), 2);
	h = st_cluster_map_describe(&m, full, sizeof(full));
	cr_assert_str_eq(full, "127.0.0.1:30001=0-5460 127.0.0.1:30002=5461-10922 127.0.0.1:30003=10923-16383",
	    "got %s", full);
	hcut = st_cluster_map_describe(&m, cut, sizeof(cut));
	cr_assert_eq(strlen(cut), sizeof(cut) - 1, "cut got %zu bytes, want %zu", strlen(cut), sizeof(cut) - 1);
	cr_assert(strcmp(cut + sizeof(cut) - 4, "...") == 0, "cut got \"%s\", want a ... at the end", cut);
	cr_assert_eq(h, hcut, "the hash is of the whole text, cut or not");
	cr_assert_eq(st_cluster_map_describe(&m, NULL, 0), h);
	/* one slot moved, one unserved: another hash, and both shown */
	memcpy(&m2, &m, sizeof(m));
	m2.slot[100] = 1;
	m2.slot[16383] = ST_CLUSTER_NO_NODE;
	h2 = st_cluster_map_describe(&m2, again, sizeof(again));
	cr_assert_neq(h2, h);
	cr_assert_str_eq(again, "127.0.0.1:30001=0-99,101-5460 127.0.0.1:30002=100,5461-10922 "
	    "127.0.0.1:30003=10923-16382 unserved=1", "got %s", again);
}

Test(store_cluster, redirections)
{
	static const struct {
		const char *err;
		int kind;
		unsigned slot;
		const char *host;
		unsigned port;
	} cases[] = {
		{ "MOVED 3999 127.0.0.1:6381", ST_CLUSTER_MOVED, 3999, "127.0.0.1", 6381 },
		{ "-MOVED 3999 127.0.0.1:6381", ST_CLUSTER_MOVED, 3999, "127.0.0.1", 6381 },
		{ "ASK 16383 redis-2.svc:7000", ST_CLUSTER_ASK, 16383, "redis-2.svc", 7000 },
		{ "-ASK 0 10.1.2.3:1", ST_CLUSTER_ASK, 0, "10.1.2.3", 1 },
		{ "MOVED 3999 :6381", ST_CLUSTER_MOVED, 3999, "answered.host", 6381 },   /* the same host */
		{ "ASK 7 :65535", ST_CLUSTER_ASK, 7, "answered.host", 65535 },
		{ "MOVED 1 ::1:7000", ST_CLUSTER_MOVED, 1, "::1", 7000 },   /* IPv6, as Redis writes it */
		{ "MOVED 1 2001:db8::5:7000", ST_CLUSTER_MOVED, 1, "2001:db8::5", 7000 },
		{ "MOVED 1 [2001:db8::5]:7000", ST_CLUSTER_MOVED, 1, "2001:db8::5", 7000 },
		{ "MOVED 16384 h:1", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED 99999 h:1", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED 123456 h:1", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED x h:1", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED  1 h:1", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED 1 h", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED 1", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED ", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED 1 h:0", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED 1 h:65536", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED 1 h:", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED 1 h:1 x", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED 1 a b:1", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED 1 []:1", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "ASK 1 h:-1", ST_CLUSTER_BAD, 0, NULL, 0 },
		{ "MOVED", ST_CLUSTER_NOT_REDIRECT, 0, NULL, 0 },
		{ "MOVEDX 1 h:1", ST_CLUSTER_NOT_REDIRECT, 0, NULL, 0 },
		{ "ASKING", ST_CLUSTER_NOT_REDIRECT, 0, NULL, 0 },
		{ "moved 1 h:1", ST_CLUSTER_NOT_REDIRECT, 0, NULL, 0 },
		{ "TRYAGAIN Multiple keys request during rehashing of slot", ST_CLUSTER_NOT_REDIRECT, 0, NULL, 0 },
		{ "CLUSTERDOWN The cluster is down", ST_CLUSTER_NOT_REDIRECT, 0, NULL, 0 },
		{ "", ST_CLUSTER_NOT_REDIRECT, 0, NULL, 0 },
		{ "-", ST_CLUSTER_NOT_REDIRECT, 0, NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct st_cluster_redirect rd;
		int kind;

		memset(&rd, 0, sizeof(rd));
		kind = st_cluster_redirect_parse(cases[i].err, strlen(cases[i].err), "answered.host", &rd);
		cr_assert_eq(kind, cases[i].kind, "\"%s\": kind got %d, want %d", cases[i].err, kind,
		    cases[i].kind);
		if (cases[i].host == NULL)
			continue;
		cr_assert_eq(rd.kind, cases[i].kind, "\"%s\": out.kind got %d", cases[i].err, (int)rd.kind);
		cr_assert_eq(rd.slot, cases[i].slot, "\"%s\": slot got %u, want %u", cases[i].err, rd.slot,
		    cases[i].slot);
		cr_assert_str_eq(rd.host, cases[i].host, "\"%s\": host got %s, want %s", cases[i].err, rd.host,
		    cases[i].host);
		cr_assert_eq(rd.port, cases[i].port, "\"%s\": port got %u, want %u", cases[i].err,
		    (unsigned)rd.port, cases[i].port);
	}
	/* the length is what counts, not a NUL: the text of a reply is (str, len) */
	{
		struct st_cluster_redirect rd;

		cr_assert_eq(st_cluster_redirect_parse("MOVED 5 h:12345", 13, "x", &rd), ST_CLUSTER_MOVED);
		cr_assert_eq(rd.port, 123, "got %u, want 123 (the first 13 bytes)", (unsigned)rd.port);
	}
}

Test(store_cluster, router_without_a_cluster)
{
	struct redis_addr a;
	struct st_cluster *cl;
	struct st_cmd c = { (char *)"*1\r\n$4\r\nPING\r\n", 14, 0 };
	struct redisReply *rep = (struct redisReply *)&a;   /* must come back NULL */
	char err[256];

	cr_assert_eq(config_parse_redis("redis://127.0.0.1:1", &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_null(st_cluster_open(&a, NULL, NULL), "a router over a redis:// address");
	/* ports 1 and 2 of loopback: nothing listens there, every connect is refused at once */
	cr_assert_eq(config_parse_redis("redis+cluster://:pw@127.0.0.1:1,127.0.0.1:2", &a, err, sizeof(err)), 0,
	    "%s", err);
	cl = st_cluster_open(&a, NULL, NULL);
	cr_assert(cl);
	cr_assert_eq(st_cluster_run(cl, 0, &c, 1, &rep, ST_CLUSTER_IDEMPOTENT), STORE_ERR_UNAVAILABLE);
	cr_assert_null(rep, "a reply left after a failed run");
	cr_assert(strstr(st_cluster_why(cl), "127.0.0.1:2") != NULL, "why got \"%s\", want the last seed",
	    st_cluster_why(cl));
	cr_assert_eq(st_cluster_run(cl, ST_CLUSTER_SLOTS, &c, 1, &rep, 0), STORE_ERR_PROTO, "slot 16384");
	st_cluster_close(cl);
}

/* slot_of - st_args_slot of the command argv[0..argc), routed to route - 1 when route > 0 */
static unsigned
slot_of(int argc, const char *const *argv, int route)
{
	struct st_args a;
	unsigned slot;

	cr_assert_eq(st_args_init(&a, (size_t)argc), 0);
	for (int i = 0; i < argc; i++)
		st_adds(&a, argv[i]);
	if (route > 0)
		st_route(&a, (unsigned)route - 1);
	slot = st_args_slot(&a);
	st_args_release(&a);
	return slot;
}

Test(store_cluster, a_command_goes_to_its_first_keys_slot)
{
	const char *eval[6] = { "EVALSHA", "0123", "2", "txm{3}:msg:m", "txm{3}:due", "txm{0}:x" };
	const char *xread[7] = { "XREADGROUP", "GROUP", "workers", "c", "STREAMS", "txm{12}:ready", ">" };
	const char *scan[6] = { "SCAN", "0", "MATCH", "txm{0}:prj:*:supp", "COUNT", "1000" };
	const char *wait[3] = { "WAIT", "1", "500" };
	/* a client's text that looks like a key comes after the keys, and is never the one taken */
	const char *hset[4] = { "HSET", "txm{5}:supp", "txm{7}:evil", "x" };
	const char *shortarg[3] = { "GET", "txm{", "txm{9}:k" };

	cr_assert_eq(st_part_slot(0), st_cluster_keyslot("txm{0}:ready", 12));
	cr_assert_eq(st_part_slot(3), 1584, "crc16(\"3\") & 16383 is 1584, got %u", st_part_slot(3));
	cr_assert_eq(slot_of(6, eval, 0), st_part_slot(3));
	cr_assert_eq(slot_of(7, xread, 0), st_part_slot(12));
	cr_assert_eq(slot_of(6, scan, 0), st_part_slot(0));
	cr_assert_eq(slot_of(4, hset, 0), st_part_slot(5));
	cr_assert_eq(slot_of(3, shortarg, 0), st_part_slot(9), "\"txm{\" alone is no key");
	cr_assert_eq(slot_of(3, wait, 0), st_part_slot(0), "a command without a key: partition 0");
	cr_assert_eq(slot_of(3, wait, 1 + 7), st_part_slot(7), "st_route'd to partition 7");
	cr_assert_eq(slot_of(6, eval, 1 + 2), st_part_slot(2), "st_route wins over the key");
	/* st_format carries it, and the route does not outlive its command */
	{
		struct st_args a;
		struct st_cmd c1, c2;

		cr_assert_eq(st_args_init(&a, 4), 0);
		st_adds(&a, "PING");
		st_route(&a, 4);
		cr_assert_eq(st_format(&a, &c1), 0);
		st_adds(&a, "PING");
		cr_assert_eq(st_format(&a, &c2), 0);
		cr_assert_eq(c1.slot, st_part_slot(4));
		cr_assert_eq(c2.slot, st_part_slot(0));
		free(c1.buf);
		free(c2.buf);
		st_args_release(&a);
	}
}

Test(store_cluster, replies_of_one_read_per_slot_read_as_one)
{
	static const char a2[] = "*2\r\n*2\r\n$1\r\na\r\n*0\r\n*2\r\n$1\r\nb\r\n*0\r\n";
	static const char a1[] = "*1\r\n*2\r\n$1\r\nc\r\n*0\r\n";
	static const char nil[] = "*-1\r\n";
	static const char err[] = "-NOGROUP no such key\r\n";
	redisReply *rep[4], *r;

	rep[0] = parse(a2, sizeof(a2) - 1);
	rep[1] = parse(nil, sizeof(nil) - 1);
	rep[2] = parse(a1, sizeof(a1) - 1);
	rep[3] = NULL;
	r = st_reply_concat(rep, 4);
	cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 3, "got type %d, %zu elements",
	    r ? r->type : -1, r ? r->elements : 0);
	cr_assert_str_eq(r->element[0]->element[0]->str, "a");
	cr_assert_str_eq(r->element[1]->element[0]->str, "b");
	cr_assert_str_eq(r->element[2]->element[0]->str, "c");
	for (int i = 0; i < 4; i++)
		cr_assert_null(rep[i], "rep[%d] not consumed", i);
	freeReplyObject(r);
	/* nothing at all: nil */
	rep[0] = parse(nil, sizeof(nil) - 1);
	rep[1] = parse(nil, sizeof(nil) - 1);
	r = st_reply_concat(rep, 2);
	cr_assert(r && r->type == REDIS_REPLY_NIL);
	freeReplyObject(r);
	/* an error is the answer, whatever else came */
	rep[0] = parse(a1, sizeof(a1) - 1);
	rep[1] = parse(err, sizeof(err) - 1);
	r = st_reply_concat(rep, 2);
	cr_assert(r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0);
	cr_assert_null(rep[0]);
	cr_assert_null(rep[1]);
	freeReplyObject(r);
}
