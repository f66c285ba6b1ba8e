/*
 * verp.c - make and check VERP return-path tokens (see verp.h).
 *
 * Owns the token format and its MAC. Uses OpenSSL's one-shot HMAC only;
 * must never log, allocate for the caller or accept a token whose MAC was
 * not compared in constant time.
 */
#include "verp.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "hash.h"

#define VERP_PREFIX "bounces+"
#define VERP_PREFIX_LEN 8
#define VERP_IDX_MAX 100000

/*
 * verp_mac - the first VERP_MAC_LEN hex chars of HMAC-SHA256(secret, "id.idx"),
 * or of HMAC-SHA256(secret, "id") for idx VERP_IDX_MESSAGE.
 */
static int
verp_mac(const char *secret, size_t secret_len, const char *msg_id, int idx,
    char mac[VERP_MAC_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char data[VERP_ID_MAX + 16], hex[2 * EVP_MAX_MD_SIZE + 1];
	int n;

	if (idx == VERP_IDX_MESSAGE)
		n = snprintf(data, sizeof(data), "%s", msg_id);
	else
		n = snprintf(data, sizeof(data), "%s.%d", msg_id, idx);
	if (n < 0 || (size_t)n >= sizeof(data))
		return VERP_ERR_ARG;
	if (HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)data,
	    (size_t)n, md, &mdlen) == NULL || mdlen < VERP_MAC_LEN / 2 + 1)
		return VERP_ERR_CRYPTO;
	hash_hex(md, mdlen, hex);
	memcpy(mac, hex, VERP_MAC_LEN);
	mac[VERP_MAC_LEN] = '\0';
	return VERP_OK;
}

static int
verp_id_ok(const char *id, size_t len)
{
	size_t i;

	if (len == 0 || len > VERP_ID_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)id[i];

		if (!(isalnum(c) || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

int
verp_make(const char *secret, size_t secret_len, const char *domain,
    const char *msg_id, int idx, char *out, size_t outlen)
{
	char mac[VERP_MAC_LEN + 1];
	int rc, n;

	if (out && outlen)
		out[0] = '\0';
	if (!secret || secret_len == 0 || secret_len > 4096 || !domain || !*domain ||
	    strlen(domain) > 253 || strchr(domain, '@') || !msg_id ||
	    !verp_id_ok(msg_id, strlen(msg_id)) ||
	    (idx != VERP_IDX_MESSAGE && (idx < 0 || idx >= VERP_IDX_MAX)) || !out)
		return VERP_ERR_ARG;
	rc = verp_mac(secret, secret_len, msg_id, idx, mac);
	if (rc)
		return rc;
	if (idx == VERP_IDX_MESSAGE)
		n = snprintf(out, outlen, VERP_PREFIX "%s.%s@%s", msg_id, mac, domain);
	else
		n = snprintf(out, outlen, VERP_PREFIX "%s.%d.%s@%s", msg_id, idx, mac, domain);
	if (n < 0 || (size_t)n >= outlen || (size_t)n > VERP_ADDR_MAX) {
		if (outlen)
			out[0] = '\0';
		return VERP_ERR_SPACE;
	}
	return VERP_OK;
}

int
verp_parse(const char *secret, size_t secret_len, const char *domain,
    const char *addr, char *msg_id, size_t idlen, int *idx)
{
	char tok[VERP_ADDR_MAX + 1], mac[VERP_MAC_LEN + 1];
	const char *at, *dot1, *dot2, *p;
	size_t len, toklen, idl, i;
	long v = 0;
	int rc;

	if (msg_id && idlen)
		msg_id[0] = '\0';
	if (!secret || secret_len == 0 || !domain || !*domain || !addr || !msg_id || !idx)
		return VERP_ERR_ARG;
	len = strnlen(addr, VERP_ADDR_MAX + 1);
	if (len > VERP_ADDR_MAX)
		return VERP_ERR_NOT_OURS;
	at = strrchr(addr, '@');
	if (!at || strcasecmp(at + 1, domain) != 0 ||
	    (size_t)(at - addr) < VERP_PREFIX_LEN ||
	    strncasecmp(addr, VERP_PREFIX, VERP_PREFIX_LEN) != 0)
		return VERP_ERR_NOT_OURS;
	toklen = (size_t)(at - addr) - VERP_PREFIX_LEN;
	for (i = 0; i < toklen; i++)
		tok[i] = (char)tolower((unsigned char)addr[VERP_PREFIX_LEN + i]);
	tok[toklen] = '\0';
	/*
	 * <id>.<idx>.<mac>, or <id>.<mac> for a message-level token: the id
	 * has no dots, so split at the first and the last
	 */
	dot1 = strchr(tok, '.');
	dot2 = strrchr(tok, '.');
	if (!dot1)
		return VERP_ERR_SYNTAX;
	idl = (size_t)(dot1 - tok);
	if (!verp_id_ok(tok, idl) || idl + 1 > idlen)
		return VERP_ERR_SYNTAX;
	if (dot1 == dot2) {
		v = VERP_IDX_MESSAGE;
	} else {
		if (dot2 - dot1 < 2 || dot2 - dot1 > 6 || (dot1[1] == '0' && dot2 - dot1 > 2))
			return VERP_ERR_SYNTAX;
		for (p = dot1 + 1; p < dot2; p++) {
			if (*p < '0' || *p > '9')
				return VERP_ERR_SYNTAX;
			v = v * 10 + (*p - '0');
		}
	}
	if (v >= VERP_IDX_MAX || strlen(dot2 + 1) != VERP_MAC_LEN)
		return VERP_ERR_SYNTAX;
	for (p = dot2 + 1; *p; p++)
		if (!isxdigit((unsigned char)*p))
			return VERP_ERR_SYNTAX;
	tok[idl] = '\0';
	rc = verp_mac(secret, secret_len, tok, (int)v, mac);
	if (rc)
		return rc;
	if (!hash_ct_equal(mac, dot2 + 1, VERP_MAC_LEN))
		return VERP_ERR_MAC;
	memcpy(msg_id, tok, idl + 1);
	*idx = (int)v;
	return VERP_OK;
}
