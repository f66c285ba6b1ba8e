/*
 * auth.c - SMTP AUTH PLAIN / LOGIN encodings.
 *
 * Owns the base64 of credentials. Pure: no I/O, no allocation, no logging;
 * it must never keep a copy of a secret past the call (scratch is wiped).
 */
#include <string.h>

#include "auth.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int smtp_auth_base64(const char *in, size_t len, char *out, size_t outlen)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t need, i, o = 0;

	if (len > (((size_t)-1) / 4) * 3 - 3)
		return SMTP_AUTH_ERR_SPACE;
	need = (len + 2) / 3 * 4 + 1;
	if (out == NULL || outlen < need)
		return SMTP_AUTH_ERR_SPACE;
	for (i = 0; i + 2 < len; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (i < len) {
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)p[i + 1] << 8;
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return 0;
}

int smtp_auth_plain(const char *user, const char *pass, char *out, size_t outlen)
{
	char scratch[2 * SMTP_AUTH_FIELD_MAX + 2];
	size_t ul, pl;
	int rc;

	ul = strnlen(user, SMTP_AUTH_FIELD_MAX + 1);
	pl = strnlen(pass, SMTP_AUTH_FIELD_MAX + 1);
	if (ul > SMTP_AUTH_FIELD_MAX || pl > SMTP_AUTH_FIELD_MAX)
		return SMTP_AUTH_ERR_INPUT;
	scratch[0] = '\0';
	memcpy(scratch + 1, user, ul);
	scratch[1 + ul] = '\0';
	memcpy(scratch + 2 + ul, pass, pl);
	rc = smtp_auth_base64(scratch, 2 + ul + pl, out, outlen);
	smtp_auth_wipe(scratch, sizeof(scratch));
	return rc;
}

int smtp_auth_login(const char *s, char *out, size_t outlen)
{
	size_t l = strnlen(s, SMTP_AUTH_FIELD_MAX + 1);

	if (l > SMTP_AUTH_FIELD_MAX)
		return SMTP_AUTH_ERR_INPUT;
	return smtp_auth_base64(s, l, out, outlen);
}

void smtp_auth_wipe(void *p, size_t len)
{
	volatile unsigned char *v = p;

	while (len--)
		*v++ = 0;
}
