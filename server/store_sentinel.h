/*
 * store_sentinel.h - the pure half of Redis Sentinel support
 * (store_sentinel.c): the order the sentinels are asked in, and the
 * checks of the two replies that name and confirm a primary (SENTINEL
 * get-master-addr-by-name, ROLE). No I/O: store_conn.c's st_connect asks
 * the sentinels and connects; tests/unit/test_store_sentinel.c feeds these
 * functions replies parsed from RESP bytes.
 */
#ifndef SERVER_STORE_SENTINEL_H
#define SERVER_STORE_SENTINEL_H

#include <stddef.h>
#include <stdint.h>

struct redisReply;   /* hiredis's, included by the store's own files only (test_layering.py) */

#define ST_SENTINEL_TIMEOUT_MS 500   /* connect to a sentinel, and each command to it */

#define ST_SENTINEL_UNKNOWN (-1)     /* the sentinel knows no master of that name (nil) */
#define ST_SENTINEL_BAD (-2)         /* an error reply or any other shape */

/*
 * st_sentinel_order - the order to ask n sentinels in: first (the one that
 * answered last; taken modulo n) then the others in URL order after it,
 * wrapping round. order has room for n indexes; n 0 writes nothing.
 */
void st_sentinel_order(size_t first, size_t n, size_t *order);

/*
 * st_sentinel_master_addr - check r, the reply of SENTINEL
 * get-master-addr-by-name: [host, port] (two strings, a port 1..65535, a
 * host of 1..hostlen-1 bytes without spaces or control characters). 0 and
 * host, *port; ST_SENTINEL_UNKNOWN (nil: no such master) or
 * ST_SENTINEL_BAD, with why (never holding more than 120 bytes of the
 * reply).
 */
int st_sentinel_master_addr(const struct redisReply *r, char *host, size_t hostlen, uint16_t *port,
    char *why, size_t whylen);

/*
 * st_sentinel_role - the role in r, the reply of ROLE: 1 for "master",
 * 0 for another role ("slave", "sentinel"), ST_SENTINEL_BAD for a reply
 * that is not ROLE's shape (an error reply included).
 */
int st_sentinel_role(const struct redisReply *r);

/*
 * st_sentinel_switch - what r, a message read on a sentinel connection
 * subscribed to +switch-master, says about master: 1 when it is
 * ["message", "+switch-master", "<master> <old-ip> <old-port> <new-ip>
 * <new-port>"] for that master name, with to = "<new-ip>:<new-port>" and
 * from = "<old-ip>:<old-port>" (each truncated to its buffer); 0 for any
 * other message (another master, the subscribe confirmation, a pong);
 * ST_SENTINEL_BAD for a +switch-master message that is not of that shape.
 */
int st_sentinel_switch(const struct redisReply *r, const char *master, char *from, size_t fromlen,
    char *to, size_t tolen);

#endif
