/*
 * dsn.h - a parser for RFC 3464 delivery status notifications.
 *
 * Takes a whole message as received (CRLF or LF line ends, folded header
 * fields) that is multipart/report; report-type=delivery-status, finds the
 * message/delivery-status part (message/global-delivery-status too) and
 * returns its per-message and per-recipient fields. Only the fields txmail
 * acts on are kept: Reporting-MTA, and per recipient Final-Recipient,
 * Original-Recipient, Action, Status and Diagnostic-Code.
 *
 * Pure: no I/O, no logging, no allocation (the caller owns struct dsn).
 * Caps: DSN_MSG_MAX bytes of input, DSN_RCPT_MAX recipients (more are
 * counted in nrcpts_total but not stored), DSN_LINE_MAX octets per
 * unfolded field; longer values are truncated, never overflowed. A
 * delivery-status part with a Content-Transfer-Encoding other than
 * 7bit/8bit/binary is not decoded (DSN_ERR_MALFORMED).
 */
#ifndef SERVER_DSN_H
#define SERVER_DSN_H

#include <stddef.h>

#define DSN_MSG_MAX ((size_t)10 * 1024 * 1024)
#define DSN_RCPT_MAX 32
#define DSN_LINE_MAX 2048
#define DSN_ADDR_MAX 320

enum {
	DSN_OK = 0,
	DSN_ERR_NOT_REPORT = -1,  /* not multipart/report; report-type=delivery-status */
	DSN_ERR_MALFORMED = -2,   /* a report without a usable delivery-status part */
	DSN_ERR_TOO_BIG = -3,     /* more than DSN_MSG_MAX bytes */
};

struct dsn_rcpt {
	char final_recipient[DSN_ADDR_MAX + 1];    /* address only ("rfc822;" removed), may be "" */
	char original_recipient[DSN_ADDR_MAX + 1]; /* likewise */
	char action[16];          /* lower case: failed, delayed, delivered, relayed, expanded */
	char status[16];          /* "5.1.1"; "" when absent or not n.n.n */
	char diagnostic[512];     /* Diagnostic-Code text after "<type>;", whitespace collapsed */
	int diag_code;            /* the 3-digit reply code leading the diagnostic, else 0 */
};

struct dsn {
	char reporting_mta[256];  /* "dns; mx.example.net" value after the type, may be "" */
	struct dsn_rcpt rcpts[DSN_RCPT_MAX];
	size_t nrcpts;            /* stored */
	size_t nrcpts_total;      /* seen (may exceed DSN_RCPT_MAX) */
};

/*
 * dsn_parse - parse msg (len bytes) into *out (overwritten). DSN_OK when
 * at least one per-recipient group with an Action was found; otherwise
 * DSN_ERR_*. err (may be NULL) gets a short reason.
 */
int dsn_parse(const char *msg, size_t len, struct dsn *out, char *err, size_t errlen);

#endif
