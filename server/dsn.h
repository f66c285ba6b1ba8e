/*
 * dsn.h - a parser for RFC 3464 delivery status notifications, and for
 * RFC 5965 feedback reports (ARF: spam complaints), both multipart/report.
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

/*
 * dsn_bounce_type - "soft" for a 4.x.x Status or 5.2.2 (mailbox full),
 * else "hard" (any other 5.x.x, or none). Static string.
 */
const char *dsn_bounce_type(const char *status);

/*
 * dsn_bounce_suppresses - 1 when a failure with this Status suppresses the
 * address: a hard 5.x.x that is not 5.7.x (policy: says nothing about the
 * address); 0 for soft, 5.7.x, "" or NULL.
 */
int dsn_bounce_suppresses(const char *status);

/*
 * An RFC 5965 feedback report: multipart/report; report-type=feedback-report
 * with a message/feedback-report part (its fields) and, optionally, the
 * reported message as message/rfc822 or its header as text/rfc822-headers
 * (its To and Message-ID). The first of each field is kept; addresses
 * without their angle brackets; "" when absent or unusable.
 */
struct dsn_arf {
	char feedback_type[32];            /* lower case: abuse, fraud, virus, other, not-spam, ... */
	char user_agent[128];
	char original_mail_from[DSN_ADDR_MAX + 1];
	char original_rcpt_to[DSN_ADDR_MAX + 1];
	char source_ip[64];
	char reported_domain[256];
	char arrival_date[64];
	int has_original;                  /* 1: a part with the reported message or its header */
	char original_to[DSN_ADDR_MAX + 1];/* the first address of its To: */
	char original_message_id[256];
};

/*
 * dsn_arf_parse - parse msg (len bytes) into *out (overwritten). DSN_OK
 * when a message/feedback-report part with a Feedback-Type was found;
 * DSN_ERR_NOT_REPORT (not a feedback report), DSN_ERR_MALFORMED,
 * DSN_ERR_TOO_BIG. err (may be NULL) gets a short reason. Pure, like dsn_parse.
 */
int dsn_arf_parse(const char *msg, size_t len, struct dsn_arf *out, char *err, size_t errlen);

/*
 * dsn_arf_is_complaint - 1 when a report of this Feedback-Type is a
 * complaint about the mail (abuse, fraud, virus, other); 0 for not-spam,
 * auth-failure and anything unknown.
 */
int dsn_arf_is_complaint(const char *feedback_type);

#endif
