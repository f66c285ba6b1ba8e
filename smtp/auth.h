/*
 * auth.h - SMTP AUTH encodings (RFC 4954, RFC 4616 PLAIN, draft LOGIN).
 *
 * Pure: builds the base64 strings the session sends, does no I/O and never
 * allocates. Callers must wipe the output buffers (smtp_auth_wipe) once sent;
 * the results encode a password and must never be logged.
 */
#ifndef SMTP_AUTH_H
#define SMTP_AUTH_H

#include <stddef.h>

enum {
	SMTP_AUTH_ERR_SPACE = -1,   /* output buffer too small */
	SMTP_AUTH_ERR_INPUT = -2,   /* user or password too long or contains NUL */
};

#define SMTP_AUTH_FIELD_MAX 255  /* longest user / password accepted */

/*
 * smtp_auth_base64 - standard base64 (with padding) of in[0..len) into out,
 * NUL-terminated. Returns 0 or SMTP_AUTH_ERR_SPACE.
 */
int smtp_auth_base64(const char *in, size_t len, char *out, size_t outlen);

/*
 * smtp_auth_plain - the PLAIN initial response base64("\0" user "\0" pass)
 * (empty authorization identity) into out. Returns 0 or SMTP_AUTH_ERR_*.
 */
int smtp_auth_plain(const char *user, const char *pass, char *out, size_t outlen);

/* smtp_auth_login - base64(s) for one LOGIN step (user or password). 0 or SMTP_AUTH_ERR_*. */
int smtp_auth_login(const char *s, char *out, size_t outlen);

/* smtp_auth_wipe - zero a buffer that held secrets (not optimized away). */
void smtp_auth_wipe(void *p, size_t len);

#endif
