/*
 * store_sentinel.c - the pure half of Redis Sentinel support: which
 * sentinel to ask first, and what the sentinels' and the primary's
 * answers mean (store_sentinel.h). It owns the shape checks of the
 * SENTINEL get-master-addr-by-name and ROLE replies.
 *
 * It must never do I/O, log or sleep: store_conn.c (st_connect) talks to
 * the sentinels and the primary, logs and decides what an answer costs.
 */
#include "store_sentinel.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

void
st_sentinel_order(size_t first, size_t n, size_t *order)
{
	if (n == 0)
		return;
	first %= n;
	for (size_t i = 0; i < n; i++)
		order[i] = (first + i) % n;
}

static int
st_sentinel_str(const redisReply *r)
{
	return r != NULL && r->type == REDIS_REPLY_STRING && r->str != NULL;
}

int
st_sentinel_master_addr(const redisReply *r, char *host, size_t hostlen, uint16_t *port,
    char *why, size_t whylen)
{
	const redisReply *h, *p;
	unsigned long v = 0;

	if (r != NULL && r->type == REDIS_REPLY_NIL) {
		snprintf(why, whylen, "%s", "the sentinel knows no master of that name");
		return ST_SENTINEL_UNKNOWN;
	}
	if (r != NULL && r->type == REDIS_REPLY_ERROR && r->str != NULL) {
		snprintf(why, whylen, "sentinel error: %.120s", r->str);
		return ST_SENTINEL_BAD;
	}
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element == NULL) {
		snprintf(why, whylen, "%s", "unexpected reply to SENTINEL get-master-addr-by-name");
		return ST_SENTINEL_BAD;
	}
	h = r->element[0];
	p = r->element[1];
	if (!st_sentinel_str(h) || !st_sentinel_str(p) || h->len == 0 || h->len >= hostlen) {
		snprintf(why, whylen, "%s", "unexpected reply to SENTINEL get-master-addr-by-name");
		return ST_SENTINEL_BAD;
	}
	for (size_t i = 0; i < h->len; i++)
		if ((unsigned char)h->str[i] <= ' ' || (unsigned char)h->str[i] == 0x7f) {
			snprintf(why, whylen, "%s", "the sentinel named a primary with a bad host");
			return ST_SENTINEL_BAD;
		}
	if (p->len == 0 || p->len > 5)
		v = 0;
	else
		for (size_t i = 0; i < p->len; i++) {
			if (p->str[i] < '0' || p->str[i] > '9') {
				v = 0;
				break;
			}
			v = v * 10 + (unsigned long)(p->str[i] - '0');
		}
	if (v == 0 || v > 65535) {
		snprintf(why, whylen, "%s", "the sentinel named a primary with a bad port");
		return ST_SENTINEL_BAD;
	}
	memcpy(host, h->str, h->len);
	host[h->len] = '\0';
	*port = (uint16_t)v;
	return 0;
}

int
st_sentinel_role(const redisReply *r)
{
	const redisReply *e;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element == NULL)
		return ST_SENTINEL_BAD;
	e = r->element[0];
	if (!st_sentinel_str(e))
		return ST_SENTINEL_BAD;
	return e->len == 6 && memcmp(e->str, "master", 6) == 0;
}

int
st_sentinel_switch(const redisReply *r, const char *master, char *from, size_t fromlen,
    char *to, size_t tolen)
{
	char name[256], oh[256], nh[256];
	unsigned op, np;
	int end = 0;
	const char *m;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    !st_sentinel_str(r->element[0]) || strcmp(r->element[0]->str, "message") != 0 ||
	    !st_sentinel_str(r->element[1]) || strcmp(r->element[1]->str, "+switch-master") != 0)
		return 0;
	if (!st_sentinel_str(r->element[2]) || r->element[2]->len > 600)
		return ST_SENTINEL_BAD;
	m = r->element[2]->str;
	/* "<master> <old-ip> <old-port> <new-ip> <new-port>": names and addresses without spaces */
	if (sscanf(m, "%255s %255s %5u %255s %5u%n", name, oh, &op, nh, &np, &end) != 5 ||
	    m[end] != '\0' || op == 0 || op > 65535 || np == 0 || np > 65535)
		return ST_SENTINEL_BAD;
	if (strcmp(name, master) != 0)
		return 0;
	snprintf(from, fromlen, "%s:%u", oh, op);
	snprintf(to, tolen, "%s:%u", nh, np);
	return 1;
}
