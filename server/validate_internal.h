/*
 * validate_internal.h - what validate.c, validate_addr.c and validate_scan.c
 * share.
 * Included by server/validate*.c only; everyone else uses validate.h.
 */
#ifndef SERVER_VALIDATE_INTERNAL_H
#define SERVER_VALIDATE_INTERNAL_H

#include <stddef.h>

/*
 * validate_field_clean - make a field path safe to echo in place: control
 * bytes (and every byte >= 0x80 when f is not valid UTF-8) become '?'.
 */
void validate_field_clean(char *f);

/*
 * validate_utf8_check - 1 when s[0..len) is well-formed UTF-8 (no
 * overlongs, no surrogates, <= U+10FFFF); *nchars (if not NULL) gets the
 * code point count.
 */
int validate_utf8_check(const char *s, size_t len, size_t *nchars);

/*
 * validate_check_line - s is a header-ish string of at most maxlen bytes:
 * UTF-8, no CR, LF, NUL or other control characters except TAB. 0, or -1
 * with why filled.
 */
int validate_check_line(const char *s, size_t maxlen, char *why, size_t whylen);

#endif
