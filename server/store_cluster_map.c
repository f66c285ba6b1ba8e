/*
 * store_cluster_map.c - the pure half of the Redis Cluster client
 * (store_cluster.h): key slots (CRC16-XMODEM of the hash tag, as the
 * Cluster specification defines them), the slot map built from a CLUSTER
 * SLOTS reply, its one-line description for the log, and the parse of the
 * -MOVED and -ASK redirections.
 *
 * It must never do I/O, log or sleep, and never trust a reply's shape:
 * store_cluster.c asks the nodes and decides what an answer costs;
 * tests/unit/test_store_cluster.c and tests/fuzz/fuzz_store_cluster.c feed
 * it replies parsed from RESP bytes.
 */
#include "store_cluster.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

uint16_t
st_cluster_crc16(const char *p, size_t len)
{
	uint16_t crc = 0;

	/* bitwise rather than the spec's 512-byte table: keys are short, and this is obviously right */
	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

unsigned
st_cluster_keyslot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len), *close;

	if (open != NULL) {
		size_t rest = len - (size_t)(open - key) - 1;

		close = memchr(open + 1, '}', rest);
		if (close != NULL && close > open + 1)
			return st_cluster_crc16(open + 1, (size_t)(close - open - 1)) & (ST_CLUSTER_SLOTS - 1);
	}
	return st_cluster_crc16(key, len) & (ST_CLUSTER_SLOTS - 1);
}

void
st_cluster_map_clear(struct st_cluster_map *m)
{
	for (size_t i = 0; i < ST_CLUSTER_SLOTS; i++)
		m->slot[i] = ST_CLUSTER_NO_NODE;
	m->nnodes = 0;
}

/* 1 when h[0..len) can be dialled: 1..255 bytes, no blank or control character */
static int
st_cluster_host_ok(const char *h, size_t len)
{
	if (len == 0 || len >= ST_CLUSTER_HOST_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)h[i] <= ' ' || (unsigned char)h[i] == 0x7f)
			return 0;
	return 1;
}

/* st_cluster_node_at - like st_cluster_map_node for host[0..hlen) */
static int
st_cluster_node_at(struct st_cluster_map *m, const char *host, size_t hlen, uint16_t port)
{
	struct st_cluster_node *n;

	if (!st_cluster_host_ok(host, hlen) || port == 0)
		return -1;
	for (size_t i = 0; i < m->nnodes; i++)
		if (m->node[i].port == port && strlen(m->node[i].host) == hlen &&
		    memcmp(m->node[i].host, host, hlen) == 0)
			return (int)i;
	if (m->nnodes == ST_CLUSTER_MAX_NODES)
		return -1;
	n = &m->node[m->nnodes];
	memcpy(n->host, host, hlen);
	n->host[hlen] = '\0';
	n->port = port;
	return (int)m->nnodes++;
}

int
st_cluster_map_node(struct st_cluster_map *m, const char *host, uint16_t port)
{
	return st_cluster_node_at(m, host, strlen(host), port);
}

/* st_cluster_num - a decimal number p[0..len) of at most 5 digits into *v; 0 or -1 */
static int
st_cluster_num(const char *p, size_t len, unsigned long *v)
{
	if (len == 0 || len > 5)
		return -1;
	*v = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		*v = *v * 10 + (unsigned long)(p[i] - '0');
	}
	return 0;
}

/* st_cluster_int - an integer reply (CLUSTER SLOTS's range bounds and ports) in 0..max; 0 or -1 */
static int
st_cluster_int(const redisReply *r, long long max, long long *v)
{
	if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer < 0 || r->integer > max)
		return -1;
	*v = r->integer;
	return 0;
}

/*
 * st_cluster_range - one element of CLUSTER SLOTS: [start, end, primary,
 * replicas...] into m. 0, 1 (a primary with no endpoint, "?": left
 * unserved) or ST_CLUSTER_BAD with why.
 */
static int
st_cluster_range(const redisReply *e, const char *asked_host, struct st_cluster_map *m,
    char *why, size_t whylen)
{
	const redisReply *p, *h;
	long long start, end, port;
	const char *host;
	size_t hlen;
	int idx;

	if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element == NULL ||
	    st_cluster_int(e->element[0], ST_CLUSTER_SLOTS - 1, &start) != 0 ||
	    st_cluster_int(e->element[1], ST_CLUSTER_SLOTS - 1, &end) != 0 || start > end) {
		snprintf(why, whylen, "%s", "CLUSTER SLOTS: a range is not [start, end, node...] in 0..16383");
		return ST_CLUSTER_BAD;
	}
	p = e->element[2];
	if (p == NULL || p->type != REDIS_REPLY_ARRAY || p->elements < 2 || p->element == NULL ||
	    st_cluster_int(p->element[1], 65535, &port) != 0 || port == 0) {
		snprintf(why, whylen, "CLUSTER SLOTS: range %lld-%lld: a node is not [host, port...]",
		    start, end);
		return ST_CLUSTER_BAD;
	}
	h = p->element[0];
	if (h != NULL && h->type == REDIS_REPLY_NIL) {
		host = asked_host;
		hlen = strlen(asked_host);
	} else if (h != NULL && h->type == REDIS_REPLY_STRING && h->str != NULL) {
		host = h->len == 0 ? asked_host : h->str;
		hlen = h->len == 0 ? strlen(asked_host) : h->len;
	} else {
		snprintf(why, whylen, "CLUSTER SLOTS: range %lld-%lld: a node's host is not a string",
		    start, end);
		return ST_CLUSTER_BAD;
	}
	if (hlen == 1 && host[0] == '?')
		return 1;
	idx = st_cluster_node_at(m, host, hlen, (uint16_t)port);
	if (idx < 0) {
		snprintf(why, whylen, "CLUSTER SLOTS: range %lld-%lld: %s", start, end,
		    m->nnodes == ST_CLUSTER_MAX_NODES ? "more than 128 nodes" : "a bad host");
		return ST_CLUSTER_BAD;
	}
	for (long long s = start; s <= end; s++) {
		if (m->slot[s] != ST_CLUSTER_NO_NODE) {
			snprintf(why, whylen, "CLUSTER SLOTS: slot %lld is in two ranges", s);
			return ST_CLUSTER_BAD;
		}
		m->slot[s] = (uint16_t)idx;
	}
	return 0;
}

int
st_cluster_map_parse(const redisReply *r, const char *asked_host, struct st_cluster_map *m,
    char *why, size_t whylen)
{
	int served = 0, rc;

	st_cluster_map_clear(m);
	if (r != NULL && r->type == REDIS_REPLY_ERROR && r->str != NULL) {
		snprintf(why, whylen, "CLUSTER SLOTS: %.120s", r->str);
		return ST_CLUSTER_BAD;
	}
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || (r->elements > 0 && r->element == NULL)) {
		snprintf(why, whylen, "%s", "CLUSTER SLOTS: not an array");
		return ST_CLUSTER_BAD;
	}
	for (size_t i = 0; i < r->elements; i++) {
		rc = st_cluster_range(r->element[i], asked_host, m, why, whylen);
		if (rc < 0) {
			st_cluster_map_clear(m);
			return rc;
		}
		served |= rc == 0;
	}
	if (!served) {
		/* a node not yet in a cluster (or one that lost it) answers an empty list */
		snprintf(why, whylen, "%s", "CLUSTER SLOTS: no slot is served");
		st_cluster_map_clear(m);
		return ST_CLUSTER_BAD;
	}
	return 0;
}

/* The description under construction: copied while it fits, hashed whole. */
struct st_cluster_text {
	char *buf;
	size_t len, off;
	int cut;
	uint64_t hash;
};

static void
st_cluster_put(struct st_cluster_text *t, const char *s)
{
	for (; *s != '\0'; s++) {
		t->hash = (t->hash ^ (unsigned char)*s) * 0x100000001b3ULL;
		if (!t->cut && t->off + 1 < t->len)
			t->buf[t->off++] = *s;
		else
			t->cut = 1;
	}
}

uint64_t
st_cluster_map_describe(const struct st_cluster_map *m, char *buf, size_t len)
{
	struct st_cluster_text t = { buf, len, 0, 0, 0xcbf29ce484222325ULL };
	char part[ST_CLUSTER_HOST_MAX + 32];
	size_t unserved = 0;

	for (size_t s = 0; s < ST_CLUSTER_SLOTS; s++)
		unserved += m->slot[s] == ST_CLUSTER_NO_NODE;
	for (size_t n = 0; n < m->nnodes; n++) {
		int first = 1;

		for (size_t s = 0; s < ST_CLUSTER_SLOTS; s++) {
			size_t e = s;

			if (m->slot[s] != n)
				continue;
			while (e + 1 < ST_CLUSTER_SLOTS && m->slot[e + 1] == n)
				e++;
			if (first) {
				snprintf(part, sizeof(part), "%s%s:%u=", t.off || t.cut ? " " : "",
				    m->node[n].host, (unsigned)m->node[n].port);
				st_cluster_put(&t, part);
			}
			if (e == s)
				snprintf(part, sizeof(part), "%s%zu", first ? "" : ",", s);
			else
				snprintf(part, sizeof(part), "%s%zu-%zu", first ? "" : ",", s, e);
			st_cluster_put(&t, part);
			first = 0;
			s = e;
		}
	}
	if (unserved) {
		snprintf(part, sizeof(part), "%sunserved=%zu", t.off || t.cut ? " " : "", unserved);
		st_cluster_put(&t, part);
	}
	if (len == 0)
		return t.hash;
	if (t.cut && len >= 4) {
		t.off = t.off > len - 4 ? len - 4 : t.off;
		memcpy(buf + t.off, "...", 3);
		t.off += 3;
	}
	buf[t.off] = '\0';
	return t.hash;
}

int
st_cluster_redirect_parse(const char *err, size_t len, const char *asked_host,
    struct st_cluster_redirect *out)
{
	const char *p = err, *end = err + len, *sp, *colon, *h;
	unsigned long slot, port;
	size_t hlen;

	if (len > 0 && *p == '-')
		p++;
	if ((size_t)(end - p) >= 6 && memcmp(p, "MOVED ", 6) == 0) {
		out->kind = ST_CLUSTER_MOVED;
		p += 6;
	} else if ((size_t)(end - p) >= 4 && memcmp(p, "ASK ", 4) == 0) {
		out->kind = ST_CLUSTER_ASK;
		p += 4;
	} else {
		return ST_CLUSTER_NOT_REDIRECT;
	}
	sp = memchr(p, ' ', (size_t)(end - p));
	if (sp == NULL || st_cluster_num(p, (size_t)(sp - p), &slot) != 0 || slot >= ST_CLUSTER_SLOTS)
		return ST_CLUSTER_BAD;
	h = sp + 1;
	/* the port follows the last ':' (a bare IPv6 host has several) */
	colon = NULL;
	for (const char *q = h; q < end; q++)
		if (*q == ':')
			colon = q;
	if (colon == NULL || st_cluster_num(colon + 1, (size_t)(end - colon - 1), &port) != 0 ||
	    port == 0 || port > 65535)
		return ST_CLUSTER_BAD;
	hlen = (size_t)(colon - h);
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		if (hlen == 2)
			return ST_CLUSTER_BAD;   /* "[]" names no host, it is not the empty one */
		h++;
		hlen -= 2;
	}
	if (hlen == 0) {
		h = asked_host;
		hlen = strlen(asked_host);
	}
	if (!st_cluster_host_ok(h, hlen))
		return ST_CLUSTER_BAD;
	memcpy(out->host, h, hlen);
	out->host[hlen] = '\0';
	out->port = (uint16_t)port;
	out->slot = (unsigned)slot;
	return out->kind;
}
