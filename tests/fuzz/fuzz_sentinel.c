/*
 * fuzz_sentinel.c - libFuzzer target for the Sentinel reply checks
 * (server/store_sentinel.c): st_sentinel_master_addr, st_sentinel_role and
 * st_sentinel_switch on whatever RESP a hostile or broken sentinel or
 * primary could send, parsed by hiredis' own reader as store_conn.c and
 * store_watch.c read it.
 *
 * Checks the contract on any bytes: an address accepted has a host of
 * 1..hostlen-1 bytes without spaces or control characters and a port
 * 1..65535; a role is 1, 0 or ST_SENTINEL_BAD; a switch accepted names
 * "host:port" strings that fit their buffers and end in a port. It must
 * never abort on input that is merely hostile; only a broken contract.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "../../server/store_sentinel.h"
#include "fuzz_resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_RESP_MAX 65536

static void
check_hostport(const char *s, size_t cap)
{
	const char *colon = strrchr(s, ':');
	size_t n = strlen(s);

	if (n == 0 || n >= cap || colon == NULL || colon == s || colon[1] == '\0')
		abort();
	for (const char *p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9')
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	redisReader *rd;
	void *v = NULL;

	if (size > FUZZ_RESP_MAX || !fuzz_resp_arrays_small((const char *)data, size))
		return 0;
	rd = redisReaderCreate();
	if (rd == NULL)
		return 0;
	if (redisReaderFeed(rd, (const char *)data, size) != REDIS_OK)
		goto out;
	/* every complete reply in the bytes, as a subscriber reads its messages */
	while (redisReaderGetReply(rd, &v) == REDIS_OK && v != NULL) {
		const redisReply *r = v;
		char host[64], why[200], from[40], to[40];
		uint16_t port = 0;
		int k;

		k = st_sentinel_master_addr(r, host, sizeof(host), &port, why, sizeof(why));
		if (k == 0) {
			size_t n = strlen(host);

			if (n == 0 || n >= sizeof(host) || port == 0)
				abort();
			for (size_t i = 0; i < n; i++)
				if ((unsigned char)host[i] <= ' ' || host[i] == 0x7f)
					abort();
		} else if (k != ST_SENTINEL_UNKNOWN && k != ST_SENTINEL_BAD) {
			abort();
		}
		if (strlen(why) >= sizeof(why))
			abort();
		k = st_sentinel_role(r);
		if (k != 1 && k != 0 && k != ST_SENTINEL_BAD)
			abort();
		k = st_sentinel_switch(r, "mymaster", from, sizeof(from), to, sizeof(to));
		if (k == 1) {
			check_hostport(from, sizeof(from));
			check_hostport(to, sizeof(to));
		} else if (k != 0 && k != ST_SENTINEL_BAD) {
			abort();
		}
		freeReplyObject(v);
		v = NULL;
	}
out:
	redisReaderFree(rd);
	return 0;
}
