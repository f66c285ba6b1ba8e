/*
 * fuzz_reply.c - libFuzzer target for smtp_reply_parse (smtp/reply.c).
 *
 * Feeds the input whole, then again as a growing buffer (one byte more each
 * call, as a session reading a slow socket does) and in a loop that consumes
 * replies one after another. Checks the parser's contract: *consumed is in
 * 1..len and untouched on "need more", the code is 200..599, text and
 * enhanced code are NUL-terminated within their arrays, and feeding the
 * bytes incrementally gives the same answer as feeding them at once. It
 * must never abort on input that is merely hostile; only a broken contract.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtp/reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_REPLY_MAX 16384   /* the incremental walk is quadratic */

static void
check_reply(const struct smtp_reply *r, int rc, size_t consumed, size_t len)
{
	if (rc == 1) {
		if (consumed == 0 || consumed > len)
			abort();
		if (r->code < 200 || r->code > 599)
			abort();
		if (smtp_reply_class(r) != r->code / 100)
			abort();
		if (memchr(r->text, '\0', sizeof(r->text)) == NULL)
			abort();
		if (memchr(r->enhanced, '\0', sizeof(r->enhanced)) == NULL)
			abort();
		if (r->nlines < 1 || r->nlines > SMTP_REPLY_LINES_MAX)
			abort();
	} else if (rc == 0) {
		if (consumed != (size_t)-1)
			abort();
	} else if (rc != SMTP_REPLY_ERR_SYNTAX && rc != SMTP_REPLY_ERR_TOOLONG) {
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct smtp_reply whole, part;
	size_t consumed = (size_t)-1, c2;
	int rc, rc2;

	if (size > FUZZ_REPLY_MAX)
		return 0;
	memset(&whole, 0, sizeof(whole));
	rc = smtp_reply_parse(buf, size, &whole, &consumed);
	check_reply(&whole, rc, consumed, size);

	/* incrementally: the first prefix that gives an answer must give this one */
	for (size_t n = 0; n <= size; n++) {
		c2 = (size_t)-1;
		memset(&part, 0, sizeof(part));
		rc2 = smtp_reply_parse(buf, n, &part, &c2);
		check_reply(&part, rc2, c2, n);
		if (rc2 == 0)
			continue;
		if (rc2 != rc)
			abort();
		if (rc2 == 1 && (c2 != consumed || part.code != whole.code ||
		    part.nlines != whole.nlines || part.ext != whole.ext ||
		    part.size_limit != whole.size_limit ||
		    strcmp(part.text, whole.text) != 0 ||
		    strcmp(part.enhanced, whole.enhanced) != 0))
			abort();
		break;
	}

	/* a stream of replies, as a pipelining session reads them */
	for (size_t off = 0; off < size;) {
		c2 = (size_t)-1;
		memset(&part, 0, sizeof(part));
		rc2 = smtp_reply_parse(buf + off, size - off, &part, &c2);
		check_reply(&part, rc2, c2, size - off);
		if (rc2 != 1)
			break;
		off += c2;
	}
	return 0;
}
