/*
 * mime.h - pure RFC 5322 / MIME message builder and encoders.
 *
 * Builds the message bytes once (at accept time); workers only stream them.
 * Output uses CRLF throughout and never has a line over 998 octets.
 * Non-ASCII header text becomes RFC 2047 encoded words (UTF-8, B or Q,
 * folded); UTF-8 bodies become quoted-printable or base64, whichever is
 * shorter. No I/O, no clock, no randomness: Date, Message-ID and the
 * boundary seed are inputs, so output is reproducible (golden tests).
 */
#ifndef SMTP_MIME_H
#define SMTP_MIME_H

#include <stddef.h>
#include <stdint.h>

/* An address as the caller gave it: display name (may be NULL or UTF-8) and addr-spec. */
struct mime_addr {
	const char *name;   /* NULL or "" for none */
	const char *email;  /* local@domain, already validated */
};

struct mime_header {
	const char *name;   /* validated: printable ASCII, no ':' */
	const char *value;  /* validated: no CR/LF; may be UTF-8 (then encoded) */
};

/* An attachment: bytes already decoded from the API's base64. */
struct mime_attachment {
	const char *filename;       /* UTF-8; non-ASCII -> RFC 2231 filename*=utf-8''... */
	const char *content_type;   /* "application/pdf"; NULL -> application/octet-stream */
	const unsigned char *data;
	size_t len;
	const char *content_id;     /* non-NULL: inline part (Content-ID: <id>,
	                             * Content-Disposition: inline) placed with the
	                             * html in multipart/related */
};

struct mime_message {
	struct mime_addr from;
	const struct mime_addr *to; size_t nto;
	const struct mime_addr *cc; size_t ncc;       /* bcc never appears in headers */
	const struct mime_addr *reply_to; size_t nreply_to;
	const char *subject;                          /* UTF-8, may be NULL */
	const char *text;                             /* UTF-8 body, may be NULL */
	const char *html;                             /* UTF-8 body, may be NULL */
	const struct mime_header *headers; size_t nheaders;  /* extra headers */
	int64_t date_s;                               /* Unix seconds for Date: (UTC "+0000") */
	const char *message_id;                       /* "<id@host>" including brackets */
	uint64_t boundary_seed;                       /* makes the boundary string */
	/*
	 * Structure with attachments: multipart/mixed { body, attachments... }
	 * where body is text, html, or multipart/alternative; inline parts
	 * (content_id set) wrap the html as multipart/related { html, inline... }.
	 */
	const struct mime_attachment *attachments; size_t nattachments;
};

enum {
	MIME_ERR_NOMEM = -1,
	MIME_ERR_INVALID = -2,   /* missing from/message_id, or no text and no html */
};

/*
 * mime_build - build the message. On success returns 0 and *out is a
 * malloc'd NUL-terminated buffer of *out_len bytes (caller frees).
 * Both text and html: multipart/alternative (text first). Neither: error.
 */
int mime_build(const struct mime_message *m, char **out, size_t *out_len);

/*
 * Encoders. Each returns a malloc'd NUL-terminated string (caller frees) and
 * writes its length to *out_len (may be NULL), or NULL on out-of-memory.
 */
/* Base64 (RFC 2045), lines of 76 chars joined by CRLF when wrap != 0. */
char *mime_base64(const void *in, size_t len, int wrap, size_t *out_len);
/* Quoted-printable (RFC 2045 6.7), CRLF line breaks preserved, soft breaks at 76. */
char *mime_qp(const char *in, size_t len, size_t *out_len);
/*
 * RFC 2047 encoded-word form of a header phrase/unstructured text, as it
 * should appear after "Name: " (first line budget `first_len` chars already
 * used by "Name: "). ASCII-only text comes back as is (folded if long).
 * UTF-8 characters are never split across encoded words.
 */
char *mime_encode_header(const char *in, size_t first_len, size_t *out_len);
/* Formats "Name <addr>" (name encoded/quoted as needed) or "addr". */
char *mime_format_addr(const struct mime_addr *a, size_t *out_len);

/* mime_base64_decode - decode (ignores CR/LF); -1 on invalid input, else 0 with malloc'd *out. */
int mime_base64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len);

/* mime_date - RFC 5322 date for Unix seconds, UTC: "Mon, 23 Nov 2026 15:58:00 +0000". */
void mime_date(int64_t unix_s, char *buf, size_t len);

#endif
