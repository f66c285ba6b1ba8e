/*
 * reply.h - pure parser for SMTP server replies (RFC 5321 4.2, RFC 3463).
 *
 * Fed bytes, does no I/O, never allocates: the session hands it whatever it
 * has read and learns whether a complete (possibly multi-line) reply is
 * there. Fuzzed and unit-tested without sockets.
 */
#ifndef SMTP_REPLY_H
#define SMTP_REPLY_H

#include <stddef.h>

#define SMTP_REPLY_TEXT_MAX 512   /* joined text kept; longer text is cut */
#define SMTP_REPLY_LINE_MAX 2048  /* a longer line is a protocol error */
#define SMTP_REPLY_LINES_MAX 64   /* more continuation lines: protocol error */

struct smtp_reply {
	int code;                          /* 200..599 */
	char enhanced[16];                 /* "2.1.0", or "" when absent */
	char text[SMTP_REPLY_TEXT_MAX];    /* lines joined by "\n", codes and
	                                    * enhanced code stripped */
	int nlines;
	/* EHLO keywords seen in the reply lines (only meaningful for EHLO) */
	unsigned ext;                      /* SMTP_EXT_* bits */
	unsigned long size_limit;          /* from "SIZE n", 0 = none given */
};

enum smtp_ext {
	SMTP_EXT_STARTTLS = 1u << 0,
	SMTP_EXT_AUTH_PLAIN = 1u << 1,
	SMTP_EXT_AUTH_LOGIN = 1u << 2,
	SMTP_EXT_PIPELINING = 1u << 3,
	SMTP_EXT_8BITMIME = 1u << 4,
	SMTP_EXT_SMTPUTF8 = 1u << 5,
	SMTP_EXT_SIZE = 1u << 6,
	SMTP_EXT_ENHANCEDSTATUSCODES = 1u << 7,
};

enum {
	SMTP_REPLY_ERR_SYNTAX = -1,   /* not "ddd[ -]text" or codes differ */
	SMTP_REPLY_ERR_TOOLONG = -2,  /* line or line count over the caps */
};

/*
 * smtp_reply_parse - parse one complete reply from buf[0..len).
 * Returns 1 and fills *out, *consumed = bytes used (through the final CRLF);
 * 0 when more bytes are needed (nothing written to *consumed);
 * SMTP_REPLY_ERR_* on malformed input. Accepts bare LF as line end.
 */
int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *out,
    size_t *consumed);

/* smtp_reply_class - 2, 3, 4 or 5 (code / 100), 0 for a code out of range. */
int smtp_reply_class(const struct smtp_reply *r);

#endif
