/*
 * test_store_sentinel.c - the pure half of Sentinel support
 * (server/store_sentinel.c): the order the sentinels are asked in, and the
 * checks of SENTINEL get-master-addr-by-name and ROLE replies, each parsed
 * by hiredis's own reader from the RESP bytes a server sends (what
 * redis-server 7 answers, and the malformed answers it does not give).
 * The I/O half runs against real sentinels in
 * tests/integration/test_redis_sentinel.py.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "../../server/store_sentinel.h"

/* parse - one reply from RESP bytes (the caller frees it) */
static redisReply *
parse(const char *resp)
{
	redisReader *rd = redisReaderCreate();
	void *r = NULL;

	cr_assert(rd);
	cr_assert_eq(redisReaderFeed(rd, resp, strlen(resp)), REDIS_OK);
	cr_assert_eq(redisReaderGetReply(rd, &r), REDIS_OK, "%s: not RESP", resp);
	cr_assert(r, "%s: an incomplete reply", resp);
	redisReaderFree(rd);
	return r;
}

Test(store_sentinel, order_starts_at_the_last_that_answered)
{
	static const struct { size_t first, n; size_t want[4]; } cases[] = {
		{ 0, 3, { 0, 1, 2 } },
		{ 1, 3, { 1, 2, 0 } },
		{ 2, 3, { 2, 0, 1 } },
		{ 5, 3, { 2, 0, 1 } },   /* out of range (a shorter list): modulo n */
		{ 0, 1, { 0 } },
		{ 3, 4, { 3, 0, 1, 2 } },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t got[8] = { 0 };

		st_sentinel_order(cases[i].first, cases[i].n, got);
		for (size_t k = 0; k < cases[i].n; k++)
			cr_assert_eq(got[k], cases[i].want[k], "first %zu of %zu: [%zu] got %zu, want %zu",
			    cases[i].first, cases[i].n, k, got[k], cases[i].want[k]);
	}
	st_sentinel_order(1, 0, NULL);   /* nothing to write */
}

Test(store_sentinel, master_addr_replies)
{
	static const struct {
		const char *resp;
		int rc;
		const char *host;
		unsigned port;
		const char *why;   /* a part of why, for rc != 0 */
	} cases[] = {
		{ "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n", 0, "127.0.0.1", 6379, NULL },
		{ "*2\r\n$20\r\nredis-1.redis.svc.lo\r\n$5\r\n65535\r\n", 0, "redis-1.redis.svc.lo", 65535, NULL },
		{ "*2\r\n$3\r\n::1\r\n$1\r\n1\r\n", 0, "::1", 1, NULL },
		{ "*-1\r\n", ST_SENTINEL_UNKNOWN, NULL, 0, "no master" },
		{ "$-1\r\n", ST_SENTINEL_UNKNOWN, NULL, 0, "no master" },
		{ "-NOAUTH Authentication required.\r\n", ST_SENTINEL_BAD, NULL, 0, "NOAUTH" },
		{ "*1\r\n$9\r\n127.0.0.1\r\n", ST_SENTINEL_BAD, NULL, 0, "unexpected" },
		{ "*3\r\n$1\r\nh\r\n$1\r\n1\r\n$1\r\n2\r\n", ST_SENTINEL_BAD, NULL, 0, "unexpected" },
		{ "*2\r\n$0\r\n\r\n$4\r\n6379\r\n", ST_SENTINEL_BAD, NULL, 0, "unexpected" },
		{ "*2\r\n:1\r\n$4\r\n6379\r\n", ST_SENTINEL_BAD, NULL, 0, "unexpected" },
		{ "*2\r\n$1\r\nh\r\n:6379\r\n", ST_SENTINEL_BAD, NULL, 0, "unexpected" },
		{ "*2\r\n$3\r\na b\r\n$4\r\n6379\r\n", ST_SENTINEL_BAD, NULL, 0, "bad host" },
		{ "*2\r\n$1\r\nh\r\n$1\r\n0\r\n", ST_SENTINEL_BAD, NULL, 0, "bad port" },
		{ "*2\r\n$1\r\nh\r\n$5\r\n65536\r\n", ST_SENTINEL_BAD, NULL, 0, "bad port" },
		{ "*2\r\n$1\r\nh\r\n$6\r\n100000\r\n", ST_SENTINEL_BAD, NULL, 0, "bad port" },
		{ "*2\r\n$1\r\nh\r\n$3\r\n6x9\r\n", ST_SENTINEL_BAD, NULL, 0, "bad port" },
		{ "*2\r\n$1\r\nh\r\n$0\r\n\r\n", ST_SENTINEL_BAD, NULL, 0, "bad port" },
		{ "+OK\r\n", ST_SENTINEL_BAD, NULL, 0, "unexpected" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redisReply *r = parse(cases[i].resp);
		char host[64] = "", why[160] = "";
		uint16_t port = 0;
		int rc = st_sentinel_master_addr(r, host, sizeof(host), &port, why, sizeof(why));

		cr_assert_eq(rc, cases[i].rc, "case %zu: got rc %d (%s), want %d", i, rc, why, cases[i].rc);
		if (rc == 0) {
			cr_assert_str_eq(host, cases[i].host, "case %zu: host got %s, want %s", i, host,
			    cases[i].host);
			cr_assert_eq(port, cases[i].port, "case %zu: port got %u, want %u", i, (unsigned)port,
			    cases[i].port);
		} else {
			cr_assert(strstr(why, cases[i].why) != NULL, "case %zu: why got \"%s\", want \"%s\" in it",
			    i, why, cases[i].why);
		}
		freeReplyObject(r);
	}
	cr_assert_eq(st_sentinel_master_addr(NULL, (char[8]){ 0 }, 8, &(uint16_t){ 0 }, (char[64]){ 0 }, 64),
	    ST_SENTINEL_BAD, "a NULL reply");
}

Test(store_sentinel, host_longer_than_the_buffer)
{
	redisReply *r = parse("*2\r\n$10\r\n0123456789\r\n$4\r\n6379\r\n");
	char host[10] = "", why[160] = "";
	uint16_t port = 0;

	cr_assert_eq(st_sentinel_master_addr(r, host, sizeof(host), &port, why, sizeof(why)),
	    ST_SENTINEL_BAD, "a 10-byte host in a 10-byte buffer: want ST_SENTINEL_BAD");
	cr_assert_eq(host[0], '\0', "host written: %.10s", host);
	freeReplyObject(r);
}

Test(store_sentinel, role_replies)
{
	static const struct { const char *resp; int want; } cases[] = {
		/* redis-server 7: a primary with one replica */
		{ "*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n", 1 },
		{ "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n", 1 },
		{ "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$9\r\nconnected\r\n:3167038\r\n", 0 },
		{ "*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n", 0 },
		{ "*1\r\n$7\r\nmasterx\r\n", 0 },
		{ "*1\r\n$5\r\nmaste\r\n", 0 },
		{ "-LOADING Redis is loading the dataset in memory\r\n", ST_SENTINEL_BAD },
		{ "*0\r\n", ST_SENTINEL_BAD },
		{ "*1\r\n:1\r\n", ST_SENTINEL_BAD },
		{ "$6\r\nmaster\r\n", ST_SENTINEL_BAD },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redisReply *r = parse(cases[i].resp);
		int got = st_sentinel_role(r);

		cr_assert_eq(got, cases[i].want, "case %zu: got %d, want %d", i, got, cases[i].want);
		freeReplyObject(r);
	}
	cr_assert_eq(st_sentinel_role(NULL), ST_SENTINEL_BAD, "a NULL reply");
}

/* a pubsub message [kind, channel, payload] as RESP bytes */
static redisReply *
message(const char *kind, const char *channel, const char *payload)
{
	char buf[1024];

	snprintf(buf, sizeof(buf), "*3\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(kind), kind,
	    strlen(channel), channel, strlen(payload), payload);
	return parse(buf);
}

Test(store_sentinel, switch_master_messages)
{
	static const struct { const char *kind, *channel, *payload; int want; const char *from, *to; } cases[] = {
		/* redis-sentinel 7's message after a failover */
		{ "message", "+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380", 1,
		  "127.0.0.1:6379", "127.0.0.1:6380" },
		{ "message", "+switch-master", "mymaster ::1 6379 fd00::7 26380", 1, "::1:6379", "fd00::7:26380" },
		/* another group watched by the same sentinels */
		{ "message", "+switch-master", "other 127.0.0.1 6379 127.0.0.1 6380", 0, "", "" },
		{ "message", "+switch-master", "mymasterx 127.0.0.1 6379 127.0.0.1 6380", 0, "", "" },
		/* other channels and kinds are not ours to read */
		{ "message", "+sdown", "master mymaster 127.0.0.1 6379", 0, "", "" },
		{ "subscribe", "+switch-master", "1", 0, "", "" },
		/* our channel, a shape it never has */
		{ "message", "+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1", ST_SENTINEL_BAD, "", "" },
		{ "message", "+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380 extra", ST_SENTINEL_BAD, "", "" },
		{ "message", "+switch-master", "mymaster 127.0.0.1 0 127.0.0.1 6380", ST_SENTINEL_BAD, "", "" },
		{ "message", "+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 65536", ST_SENTINEL_BAD, "", "" },
		{ "message", "+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 x", ST_SENTINEL_BAD, "", "" },
		{ "message", "+switch-master", "", ST_SENTINEL_BAD, "", "" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redisReply *r = message(cases[i].kind, cases[i].channel, cases[i].payload);
		char from[64] = "", to[64] = "";
		int got = st_sentinel_switch(r, "mymaster", from, sizeof(from), to, sizeof(to));

		cr_assert_eq(got, cases[i].want, "case %zu (%s): got %d, want %d", i, cases[i].payload, got,
		    cases[i].want);
		cr_assert_str_eq(from, cases[i].from, "case %zu: from %s", i, from);
		cr_assert_str_eq(to, cases[i].to, "case %zu: to %s", i, to);
		freeReplyObject(r);
	}
	/* a pong in subscribed mode, an integer, nothing */
	{
		redisReply *r = parse("*2\r\n$4\r\npong\r\n$0\r\n\r\n");
		char from[8], to[8];

		cr_assert_eq(st_sentinel_switch(r, "mymaster", from, sizeof(from), to, sizeof(to)), 0);
		freeReplyObject(r);
		r = parse(":1\r\n");
		cr_assert_eq(st_sentinel_switch(r, "mymaster", from, sizeof(from), to, sizeof(to)), 0);
		freeReplyObject(r);
		cr_assert_eq(st_sentinel_switch(NULL, "mymaster", from, sizeof(from), to, sizeof(to)), 0);
	}
}
