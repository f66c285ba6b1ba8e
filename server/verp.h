/*
 * verp.h - VERP return paths for asynchronous bounces.
 *
 * Two token forms. A delivery to one recipient gets the recipient-level
 *   bounces+<msg_id>.<rcpt_idx>.<mac>@<domain>
 * with mac the first VERP_MAC_LEN lower-case hex characters of
 * HMAC-SHA256(secret, "<msg_id>.<rcpt_idx>"): a DSN sent back to it names
 * the message and the recipient. A transaction carrying several
 * recipients of one message gets the message-level
 *   bounces+<msg_id>.<mac>@<domain>
 * with the MAC over "<msg_id>" alone: it names only the message, and the
 * DSN's own Final-Recipient fields say which recipients it is about
 * (server/bounce.c). Ids never hold a dot, so the two MAC inputs can
 * never coincide and neither form can be turned into the other. The MAC
 * makes tokens unforgeable, so nobody can fail someone else's recipient
 * by guessing ids.
 *
 * Pure: no I/O, no logging, no allocation. Parsing compares the MAC in
 * constant time and is case-insensitive in the local part's fixed prefix,
 * in the token (ids and MAC are lower case) and in the domain.
 */
#ifndef SERVER_VERP_H
#define SERVER_VERP_H

#include <stddef.h>

#define VERP_MAC_LEN 10
#define VERP_ID_MAX 63          /* message id length cap */
#define VERP_ADDR_MAX 320       /* whole address cap (local 64 is not enforced for ids) */
#define VERP_IDX_MESSAGE (-1)   /* idx of a message-level token (no recipient index) */

enum {
	VERP_OK = 0,
	VERP_ERR_ARG = -1,      /* bad input (empty secret/domain, id with '.', '@', too long) */
	VERP_ERR_SPACE = -2,    /* output buffer too small */
	VERP_ERR_NOT_OURS = -3, /* not bounces+...@domain */
	VERP_ERR_SYNTAX = -4,   /* our prefix and domain, but a malformed token */
	VERP_ERR_MAC = -5,      /* well-formed token with a wrong MAC (forged or altered) */
	VERP_ERR_CRYPTO = -6,   /* HMAC failed (out of memory) */
};

/*
 * verp_make - write "bounces+<msg_id>.<idx>.<mac>@<domain>" into out
 * (outlen bytes, NUL-terminated), or the message-level
 * "bounces+<msg_id>.<mac>@<domain>" when idx is VERP_IDX_MESSAGE.
 * VERP_OK or VERP_ERR_*.
 */
int verp_make(const char *secret, size_t secret_len, const char *domain,
    const char *msg_id, int idx, char *out, size_t outlen);

/*
 * verp_parse - check addr (bare, no angle brackets) against domain and
 * secret; on VERP_OK msg_id (idlen bytes) and *idx name the delivery,
 * *idx being VERP_IDX_MESSAGE for a message-level token.
 * VERP_ERR_NOT_OURS, VERP_ERR_SYNTAX or VERP_ERR_MAC otherwise.
 */
int verp_parse(const char *secret, size_t secret_len, const char *domain,
    const char *addr, char *msg_id, size_t idlen, int *idx);

#endif
