/*
 * fuzz_mailparse.c - libFuzzer target for the captured-mail MIME reader
 * (server/mailparse.c), which reads whatever an SMTP client handed the dev
 * sink.
 *
 * The input is the message. Checked, besides ASan/UBSan finding no bad
 * access (the input is copied into a buffer of exactly its size):
 * - every header and part span lies inside the input, at most
 *   MAILPARSE_MAX_HEADERS / MAILPARSE_MAX_PARTS of them, and text/html
 *   indexes are -1 or a part;
 * - every header value's text is valid UTF-8 without NUL, NUL-terminated
 *   within the buffer given (tested with a small buffer too);
 * - every part decodes (text and bytes); the text is valid UTF-8 of the
 *   length said, without NUL; the bytes are no longer than the encoded body;
 * - mailparse_utf8 of the whole input is valid UTF-8 without NUL.
 * The UTF-8 check here is independent of mailparse.c.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/mailparse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* utf8_ok - 1 when s[0..n) is valid UTF-8 (RFC 3629) without NUL */
static int
utf8_ok(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t k;
		uint32_t cp, min;

		if (c == 0)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			k = 2; cp = c & 0x1f; min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			k = 3; cp = c & 0x0f; min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			k = 4; cp = c & 0x07; min = 0x10000;
		} else {
			return 0;
		}
		if (i + k > n)
			return 0;
		for (size_t j = 1; j < k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k;
	}
	return 1;
}

static void
span_in(struct mailparse_span s, size_t size)
{
	if (s.off > size || s.len > size - s.off)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mailparse_msg m;
	char *msg = malloc(size ? size : 1), *u;
	char small[7], big[MAILPARSE_VALUE_MAX];
	size_t n;

	if (msg == NULL)
		return 0;
	memcpy(msg, data, size);
	mailparse_parse(msg, size, &m);
	if (m.nheaders > MAILPARSE_MAX_HEADERS || m.nparts > MAILPARSE_MAX_PARTS)
		abort();
	if (m.text < -1 || m.text >= (int)m.nparts || m.html < -1 || m.html >= (int)m.nparts)
		abort();
	for (size_t i = 0; i < m.nheaders; i++) {
		span_in(m.headers[i].name, size);
		span_in(m.headers[i].value, size);
		n = mailparse_header_text(msg, m.headers[i].value, big, sizeof(big));
		if (n >= sizeof(big) || strlen(big) != n || !utf8_ok((const unsigned char *)big, n))
			abort();
		n = mailparse_header_text(msg, m.headers[i].value, small, sizeof(small));
		if (n >= sizeof(small) || strlen(small) != n || !utf8_ok((const unsigned char *)small, n))
			abort();
	}
	(void)mailparse_find(&m, msg, "subject");
	for (size_t i = 0; i < m.nparts; i++) {
		const struct mailparse_part *p = &m.parts[i];
		char *out = NULL;

		span_in(p->body, size);
		if (strlen(p->type) == 0 || !utf8_ok((const unsigned char *)p->filename, strlen(p->filename)) ||
		    !utf8_ok((const unsigned char *)p->content_id, strlen(p->content_id)))
			abort();
		for (const char *t = p->type; *t != '\0'; t++)
			if ((unsigned char)*t < 0x21 || (unsigned char)*t > 0x7e)
				abort();
		if (mailparse_body(msg, p, 1, &out, &n) == 0) {
			if (strlen(out) != n || !utf8_ok((const unsigned char *)out, n))
				abort();
			free(out);
		}
		if (mailparse_body(msg, p, 0, &out, &n) == 0) {
			if (n > p->body.len)
				abort();
			free(out);
		}
	}
	u = mailparse_utf8(msg, size, &n);
	if (u != NULL) {
		if (strlen(u) != n || !utf8_ok((const unsigned char *)u, n))
			abort();
		free(u);
	}
	free(msg);
	return 0;
}
