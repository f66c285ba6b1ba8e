/*
 * submit_msg.h - the pure "submitted message" half of SMTP submission
 * (issue 16): what a message read by DATA becomes before it is stored.
 *
 * subm_msg_prepare reads the header section of the dot-unstuffed message,
 * keeps every field byte for byte and in order except Bcc, Resent-Bcc and
 * the X-Txmail-* fields (removed with their continuation lines), adds
 * Message-ID, Date and From at the top when missing, and leaves the body
 * as it is. The X-Txmail-* fields become the send options with the HTTP
 * API's rules (validate_options, validate_idem_key); From and Subject are
 * decoded for the message's record (mailparse_header_text); the To and Cc
 * addresses are kept so subm_msg_rcpt_kind can tell each envelope
 * recipient's kind. See docs/submission.md, "The message".
 *
 * Must never: do I/O, log, read the clock, use threads, or read outside
 * raw[0..len). Allocation: only the strings of struct subm_msg.
 */
#ifndef SERVER_SUBMIT_MSG_H
#define SERVER_SUBMIT_MSG_H

#include <stddef.h>
#include <stdint.h>

#define SUBM_MSG_OPT_MAX 8192      /* an X-Txmail-* value, unfolded, octets */
#define SUBM_MSG_JSON_DEPTH 31     /* nesting in X-Txmail-Metadata/-Tags (HTTP: 32 for the body) */
#define SUBM_MSG_HDR_ADDRS 1000    /* To/Cc addresses kept for subm_msg_rcpt_kind (more: bcc) */

struct subm_msg_opts {
	const char *mail_from;     /* envelope sender (added as From: when the message has no From) */
	const char *message_id;    /* "<msg_...@host>": added as Message-ID when the message has none */
	int64_t date_s;            /* Date: added when missing (RFC 5322 date, UTC "+0000") */
	size_t max_len;            /* the result may not exceed this (0 = no cap) */
};

struct subm_msg {
	char *mime; size_t mime_len;   /* malloc'd: the message to store (CRLF line ends) */
	size_t body_off;               /* where the (untouched) body starts in mime */
	char *from;          /* From unfolded, RFC 2047-decoded UTF-8; mail_from when it was added; "" when neither */
	char *subject;       /* Subject unfolded + RFC 2047-decoded ("" when none) */
	char *metadata_json; /* compact JSON object, "{}" when no header */
	char *tags_json;     /* compact JSON array, "[]" when none */
	int priority_high;   /* X-Txmail-Priority: high */
	int64_t ttl_ms;      /* X-Txmail-TTL seconds * 1000, 0 when none */
	char idem_key[256];  /* X-Txmail-Idempotency-Key, "" when none */
	int added_message_id;
	int added_date;
	int added_from;
	/* To/Cc addresses, lower-cased (ASCII), for subm_msg_rcpt_kind */
	char **hdr_addr;
	unsigned char *hdr_cc;   /* 1: from a Cc field, 0: To */
	size_t n_hdr_addr;
};

/*
 * subm_msg_prepare - turn raw[0..len) (a message as the DATA reader gave
 * it) into *out. Returns 0; -1 with a full SMTP reply line (no CRLF) in
 * reply: "554 5.6.0 <field>: <why>" for a malformed, repeated or unknown
 * X-Txmail-* field, "550 5.6.11 ..." for a bare CR or LF, "552 5.3.4 ..."
 * when the result exceeds o->max_len, "451 4.3.0 ..." for an envelope
 * value holding CR, LF or NUL; -2 out of memory. Always subm_msg_free
 * after, whatever it returned. reply may be NULL when replylen is 0.
 */
int subm_msg_prepare(const char *raw, size_t len, const struct subm_msg_opts *o, struct subm_msg *out,
    char *reply, size_t replylen);

/*
 * subm_msg_rcpt_kind - "to" when addr (ASCII case-insensitive) is one of
 * the To fields' addresses, "cc" for the Cc fields' (To first), else "bcc".
 * Never NULL.
 */
const char *subm_msg_rcpt_kind(const struct subm_msg *m, const char *addr);

/* subm_msg_free - free what m holds and zero it; m may be NULL. */
void subm_msg_free(struct subm_msg *m);

#endif
