/*
 * mailparse.h - a small, pure MIME reader for captured mail (GET /dev/mail).
 *
 * Reads a message as the dev sink stored it (untrusted bytes: whatever a
 * client sent over SMTP) and finds its top-level header fields and its
 * leaf parts: the first text/plain and the first text/html body that are
 * not attachments, and every other leaf as an attachment. Nothing is
 * copied by mailparse_parse: parts and headers are spans of the caller's
 * buffer, and the decoders write into caller buffers or malloc'd ones.
 *
 * Bounds: at most MAILPARSE_MAX_HEADERS top-level fields,
 * MAILPARSE_MAX_PARTS leaves and MAILPARSE_MAX_DEPTH levels of multipart
 * nesting are looked at (the rest is ignored and `truncated` set); a
 * header value is unfolded into at most MAILPARSE_VALUE_MAX octets. Work is
 * linear in the input times the depth. Every text produced is valid UTF-8
 * without NUL (invalid bytes become U+FFFD), so it can go into JSON as is.
 * Charsets understood: utf-8 and us-ascii (as UTF-8), iso-8859-1, latin1
 * and windows-1252 (as Latin-1); any other is read as UTF-8.
 *
 * Must never: read outside [msg, msg+len), allocate in mailparse_parse,
 * do I/O, or fail on any input (a message that is not MIME at all is one
 * text/plain part).
 */
#ifndef SERVER_MAILPARSE_H
#define SERVER_MAILPARSE_H

#include <stddef.h>

#define MAILPARSE_MAX_HEADERS 256
#define MAILPARSE_MAX_PARTS 64
#define MAILPARSE_MAX_DEPTH 8
#define MAILPARSE_VALUE_MAX 4096      /* an unfolded header value is cut here */
#define MAILPARSE_NAME_MAX 256        /* file name, Content-ID (UTF-8, cut at a character) */

enum mailparse_cte {
	MAILPARSE_CTE_IDENTITY = 0,   /* 7bit, 8bit, binary, unknown */
	MAILPARSE_CTE_QP,
	MAILPARSE_CTE_BASE64,
};

struct mailparse_span {
	size_t off, len;
};

struct mailparse_header {
	struct mailparse_span name;    /* the field name, as written */
	struct mailparse_span value;   /* after the colon, folded as written, no final line break */
};

struct mailparse_part {
	char type[128];                /* media type, lower case ("text/plain" when none) */
	char charset[64];              /* lower case, "" when none */
	char filename[MAILPARSE_NAME_MAX];     /* UTF-8, "" when none */
	char content_id[MAILPARSE_NAME_MAX];   /* without the angle brackets, "" when none */
	int attachment;                /* Content-Disposition: attachment */
	enum mailparse_cte cte;
	struct mailparse_span body;    /* the encoded body */
};

struct mailparse_msg {
	struct mailparse_header headers[MAILPARSE_MAX_HEADERS];
	size_t nheaders;
	struct mailparse_part parts[MAILPARSE_MAX_PARTS];
	size_t nparts;
	int text;                      /* index of the text/plain body in parts, or -1 */
	int html;                      /* index of the text/html body in parts, or -1 */
	int truncated;                 /* a bound above was reached */
};

/* mailparse_parse - fill m (about 50 KiB: allocate it) from msg[0..len). Never fails. */
void mailparse_parse(const char *msg, size_t len, struct mailparse_msg *m);

/* mailparse_find - index of the first top-level field named name (any case), or -1. */
int mailparse_find(const struct mailparse_msg *m, const char *msg, const char *name);

/*
 * mailparse_header_text - the value span v of msg unfolded, RFC 2047
 * encoded words decoded, blanks trimmed, as UTF-8 into out (always
 * NUL-terminated, cut at a character boundary when it does not fit;
 * outlen >= 1). Returns the length written.
 */
size_t mailparse_header_text(const char *msg, struct mailparse_span v, char *out, size_t outlen);

/*
 * mailparse_body - part p's body (a span of msg) with its transfer
 * encoding undone; when text != 0 also converted from its charset to
 * UTF-8 (valid, no NUL). *out is malloc'd, NUL-terminated, *outlen
 * octets (caller frees). 0, or -1 when out of memory.
 */
int mailparse_body(const char *msg, const struct mailparse_part *p, int text, char **out,
    size_t *outlen);

/*
 * mailparse_utf8 - a malloc'd, NUL-terminated copy of in[0..n) that is
 * valid UTF-8 without NUL (each invalid octet and each NUL becomes U+FFFD);
 * *outlen gets its length. NULL when out of memory.
 */
char *mailparse_utf8(const char *in, size_t n, size_t *outlen);

#endif
