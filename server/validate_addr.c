/*
 * validate_addr.c - pure checks of text and addresses: well-formed UTF-8,
 * header-ish lines (no CR, LF or other controls), the code points an
 * address or display name must not hold, the addr-spec (RFC 5321 sizes,
 * dot-atom local part, a domain of LDH labels or an address literal) and
 * "Name <addr>" as an API client writes it.
 *
 * validate.c builds a send request from these; validate_scan.c cleans the
 * field paths it echoes with validate_field_clean. It must never do I/O,
 * log or allocate beyond the two copies validate_address hands back: an
 * address that reaches MAIL FROM, RCPT TO or a header has passed here.
 */
#include "validate.h"
#include "validate_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define VALIDATE_MAX_EMAIL 254       /* RFC 5321 path limit minus brackets */
#define VALIDATE_MAX_LOCAL 64
#define VALIDATE_MAX_DOMAIN 253
#define VALIDATE_MAX_LABEL 63
#define VALIDATE_MAX_ADDR_INPUT 998  /* "Name <addr>" as given */

/*
 * validate_utf8_check - 1 when s[0..len) is well-formed UTF-8 (no overlongs, no
 * surrogates, <= U+10FFFF); *nchars gets the code point count.
 */
int
validate_utf8_check(const char *s, size_t len, size_t *nchars)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n = 0;

	while (i < len) {
		unsigned char c = p[i];
		size_t need;
		unsigned long cp;

		if (c < 0x80) {
			i++;
			n++;
			continue;
		} else if (c >= 0xC2 && c <= 0xDF) {
			need = 1;
			cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (len - i - 1 < need)
			return 0;
		for (size_t k = 1; k <= need; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i + k] & 0x3F);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += need + 1;
		n++;
	}
	if (nchars != NULL)
		*nchars = n;
	return 1;
}

void
validate_field_clean(char *f)
{
	int bad_utf8 = !validate_utf8_check(f, strlen(f), NULL);

	for (unsigned char *p = (unsigned char *)f; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7F || (bad_utf8 && *p >= 0x80))
			*p = '?';
}

/*
 * validate_check_line - a header-ish string: UTF-8, no CR, LF, NUL or other control
 * characters except TAB. 0, or -1 with why filled.
 */
int
validate_check_line(const char *s, size_t maxlen, char *why, size_t whylen)
{
	size_t len = strlen(s);

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r' || c == '\n') {
			snprintf(why, whylen, "must not contain CR or LF");
			return -1;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7F) {
			snprintf(why, whylen, "must not contain control characters");
			return -1;
		}
	}
	if (len > maxlen) {
		snprintf(why, whylen, "must be at most %zu octets", maxlen);
		return -1;
	}
	if (!validate_utf8_check(s, len, NULL)) {
		snprintf(why, whylen, "must be valid UTF-8");
		return -1;
	}
	return 0;
}

/*
 * addr_forbidden - the first code point of the valid UTF-8 s[0..len) that an
 * address or display name must not hold: C0 controls (TAB too), DEL, C1
 * controls, U+2028/U+2029 (line and paragraph separators), the bidi controls
 * U+200E/U+200F, U+202A-U+202E, U+2066-U+2069, and U+FEFF. Each of these
 * would reach MAIL FROM, RCPT TO or a From/To header as it is, where it can
 * end a line for some reader or make an address display as another. -1 when
 * there is none.
 */
static long
addr_forbidden(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		unsigned long cp = p[i];
		size_t n = 1;

		if (cp >= 0xF0) {
			n = 4;
		} else if (cp >= 0xE0) {
			n = 3;
			if (i + 2 < len)
				cp = ((cp & 0x0F) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu);
		} else if (cp >= 0xC0) {
			n = 2;
			if (i + 1 < len)
				cp = ((cp & 0x1F) << 6) | (p[i + 1] & 0x3Fu);
		}
		if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x200E || cp == 0x200F ||
		    cp == 0x2028 || cp == 0x2029 || (cp >= 0x202A && cp <= 0x202E) ||
		    (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF)
			return (long)cp;
		i += n;
	}
	return -1;
}

static int
is_atext(unsigned char c)
{
	if (c >= 0x80)
		return 1;  /* UTF-8 (RFC 6531) */
	if (isalnum(c))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int
domain_ok(const char *d, size_t len)
{
	char buf[VALIDATE_MAX_DOMAIN + 1];

	if (len == 0 || len > VALIDATE_MAX_DOMAIN)
		return 0;
	if (d[0] == '[') {
		/* address literal: [1.2.3.4] or [IPv6:...] */
		unsigned char addr[16];
		size_t inner = len - 2;

		if (len < 3 || d[len - 1] != ']' || inner >= sizeof(buf))
			return 0;
		memcpy(buf, d + 1, inner);
		buf[inner] = '\0';
		if (strncasecmp(buf, "IPv6:", 5) == 0)
			return inet_pton(AF_INET6, buf + 5, addr) == 1;
		return inet_pton(AF_INET, buf, addr) == 1;
	}
	size_t label = 0;
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)d[i] : '.';

		if (c == '.') {
			if (label == 0 || label > VALIDATE_MAX_LABEL)
				return 0;
			if (d[i - 1] == '-' || d[i - label] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!(isalnum(c) || c == '-' || c >= 0x80))
			return 0;
		label++;
	}
	return validate_utf8_check(d, len, NULL);
}

int
validate_email(const char *s)
{
	size_t len, at, local_len;
	const char *p;

	if (s == NULL)
		return 0;
	len = strlen(s);
	if (len == 0 || len > VALIDATE_MAX_EMAIL)
		return 0;
	p = strrchr(s, '@');
	if (p == NULL)
		return 0;
	at = (size_t)(p - s);
	local_len = at;
	if (local_len == 0 || local_len > VALIDATE_MAX_LOCAL)
		return 0;
	/* dot-atom local part (quoted local parts are not accepted) */
	if (s[0] == '.' || s[local_len - 1] == '.')
		return 0;
	for (size_t i = 0; i < local_len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (s[i + 1] == '.')
				return 0;
			continue;
		}
		if (!is_atext(c))
			return 0;
	}
	if (!validate_utf8_check(s, local_len, NULL))
		return 0;
	if (!domain_ok(p + 1, len - at - 1))
		return 0;
	return addr_forbidden(s, len) < 0;
}

static const char *
skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* strndup of [b, e) with surrounding blanks trimmed; NULL on OOM. */
static char *
dup_trim(const char *b, const char *e)
{
	while (b < e && (*b == ' ' || *b == '\t'))
		b++;
	while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	return strndup(b, (size_t)(e - b));
}

int
validate_address(const char *in, char **name, char **email, char *why, size_t whylen)
{
	char *n = NULL, *em = NULL;
	const char *lt, *gt, *end;
	long forbidden;
	int rc = -1;

	*name = NULL;
	*email = NULL;
	if (in == NULL) {
		snprintf(why, whylen, "must be a string");
		return -1;
	}
	if (validate_check_line(in, VALIDATE_MAX_ADDR_INPUT, why, whylen) != 0)
		return -1;
	forbidden = addr_forbidden(in, strlen(in));
	if (forbidden >= 0) {
		snprintf(why, whylen, "must not contain control, line separator, bidi control "
		    "or BOM characters (U+%04lX)", (unsigned long)forbidden);
		return -1;
	}
	in = skip_ws(in);
	end = in + strlen(in);
	while (end > in && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (in == end) {
		snprintf(why, whylen, "must not be empty");
		return -1;
	}

	if (end[-1] != '>') {
		/* bare addr-spec */
		em = strndup(in, (size_t)(end - in));
		if (em == NULL)
			goto oom;
		if (strpbrk(em, "<>\" \t") != NULL || !validate_email(em)) {
			snprintf(why, whylen, "is not a valid email address");
			goto out;
		}
		rc = 0;
		goto out;
	}

	gt = end - 1;
	if (*in == '"') {
		/* quoted display name with \" and \\ escapes */
		const char *p = in + 1;
		size_t cap = (size_t)(end - in), k = 0;

		n = malloc(cap + 1);
		if (n == NULL)
			goto oom;
		for (;;) {
			if (p >= gt) {
				snprintf(why, whylen, "has an unterminated quoted name");
				goto out;
			}
			if (*p == '\\') {
				if (p + 1 >= gt) {
					snprintf(why, whylen, "has an unterminated quoted name");
					goto out;
				}
				n[k++] = p[1];
				p += 2;
				continue;
			}
			if (*p == '"')
				break;
			n[k++] = *p++;
		}
		n[k] = '\0';
		p = skip_ws(p + 1);
		if (*p != '<') {
			snprintf(why, whylen, "must be \"Name <address>\" or an address");
			goto out;
		}
		lt = p;
	} else {
		lt = memrchr(in, '<', (size_t)(gt - in));
		if (lt == NULL) {
			snprintf(why, whylen, "has '>' without '<'");
			goto out;
		}
		for (const char *q = in; q < lt; q++) {
			if (*q == '<' || *q == '>' || *q == '"') {
				snprintf(why, whylen, "has a display name with '%c' (quote the name)", *q);
				goto out;
			}
		}
		n = dup_trim(in, lt);
		if (n == NULL)
			goto oom;
	}
	em = strndup(lt + 1, (size_t)(gt - lt - 1));
	if (em == NULL)
		goto oom;
	if (strpbrk(em, "<>\" \t") != NULL || !validate_email(em)) {
		snprintf(why, whylen, "is not a valid email address");
		goto out;
	}
	if (n[0] == '\0') {
		free(n);
		n = NULL;
	}
	rc = 0;
	goto out;
oom:
	snprintf(why, whylen, "out of memory");
	rc = -2;
out:
	if (rc != 0) {
		free(n);
		free(em);
		return rc;
	}
	*name = n;
	*email = em;
	return 0;
}
