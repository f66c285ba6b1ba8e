/*
 * fuzz_store_cluster.c - libFuzzer target for the pure half of the Redis
 * Cluster client (server/store_cluster_map.c).
 *
 * The input goes three ways: as a key (its slot is below 16384 and is the
 * slot of its hash tag when it has one), as an error text for the -MOVED /
 * -ASK parse (on success a slot below 16384, a port, a host that is
 * NUL-terminated, not empty and free of blanks), and as RESP bytes read by
 * hiredis's reader, each reply given to the CLUSTER SLOTS parse (on
 * success every slot unserved or naming a node, at most
 * ST_CLUSTER_MAX_NODES nodes each with a host and a port; on failure an
 * empty map and a why) and the map described into a short and a long
 * buffer (the same hash, both NUL-terminated). It must never abort on
 * input that is merely hostile; only on a broken contract.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "../../server/store_cluster.h"
#include "fuzz_resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct st_cluster_map map;

static void
check_host(const char *h, size_t cap)
{
	const char *end = memchr(h, '\0', cap);

	if (end == NULL || end == h)
		abort();
	for (; h < end; h++)
		if ((unsigned char)*h <= ' ' || (unsigned char)*h == 0x7f)
			abort();
}

static void
check_key(const char *k, size_t len)
{
	const char *open = memchr(k, '{', len), *close = NULL;
	unsigned slot = st_cluster_keyslot(k, len);

	if (slot >= ST_CLUSTER_SLOTS)
		abort();
	if (open != NULL)
		close = memchr(open + 1, '}', len - (size_t)(open - k) - 1);
	if (close != NULL && close > open + 1 &&
	    slot != st_cluster_keyslot(open + 1, (size_t)(close - open - 1)))
		abort();
}

static void
check_redirect(const char *s, size_t len)
{
	struct st_cluster_redirect rd;
	int kind = st_cluster_redirect_parse(s, len, "asked", &rd);

	if (kind == ST_CLUSTER_MOVED || kind == ST_CLUSTER_ASK) {
		if ((int)rd.kind != kind || rd.slot >= ST_CLUSTER_SLOTS || rd.port == 0)
			abort();
		check_host(rd.host, sizeof(rd.host));
	} else if (kind != ST_CLUSTER_NOT_REDIRECT && kind != ST_CLUSTER_BAD) {
		abort();
	}
}

static void
check_slots(const redisReply *r)
{
	char why[200], small[24], big[4096];
	int rc;

	why[0] = '\0';
	rc = st_cluster_map_parse(r, "asked", &map, why, sizeof(why));
	if (map.nnodes > ST_CLUSTER_MAX_NODES)
		abort();
	for (size_t s = 0; s < ST_CLUSTER_SLOTS; s++)
		if (map.slot[s] != ST_CLUSTER_NO_NODE && (rc != 0 || map.slot[s] >= map.nnodes))
			abort();
	if (rc == 0) {
		for (size_t n = 0; n < map.nnodes; n++) {
			check_host(map.node[n].host, sizeof(map.node[n].host));
			if (map.node[n].port == 0)
				abort();
		}
	} else if (rc != ST_CLUSTER_BAD || map.nnodes != 0 || why[0] == '\0' ||
	    memchr(why, '\0', sizeof(why)) == NULL) {
		abort();
	}
	if (st_cluster_map_describe(&map, small, sizeof(small)) !=
	    st_cluster_map_describe(&map, big, sizeof(big)))
		abort();
	if (memchr(small, '\0', sizeof(small)) == NULL || memchr(big, '\0', sizeof(big)) == NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	redisReader *rd;
	void *r;

	if (size > 65536)
		return 0;
	check_key(s, size);
	check_redirect(s, size);
	if (!fuzz_resp_arrays_small(s, size))
		return 0;
	rd = redisReaderCreate();
	if (rd == NULL)
		return 0;
	if (redisReaderFeed(rd, s, size) == REDIS_OK)
		for (int i = 0; i < 8; i++) {
			r = NULL;
			if (redisReaderGetReply(rd, &r) != REDIS_OK || r == NULL)
				break;
			check_slots(r);
			freeReplyObject(r);
		}
	redisReaderFree(rd);
	return 0;
}
