/*
 * submit_proto.h - the pure protocol half of SMTP submission (issue 16):
 * splitting the input into command lines, parsing one command line,
 * decoding AUTH PLAIN / LOGIN data, and reading DATA (dot-unstuffing,
 * the SMTP smuggling refusals). No sockets, TLS, store, threads,
 * logging or allocation: the submission listener feeds it bytes and
 * turns its results into replies (subm_reply). See docs/submission.md.
 *
 * Errors are negative SUBM_ERR_* codes; subm_reply gives each one's reply
 * line ("501 5.5.4 ...", no CRLF). Base64 is OpenSSL's (EVP_EncodeBlock,
 * EVP_DecodeBlock); this file only checks the alphabet and the padding.
 */
#ifndef SERVER_SUBMIT_PROTO_H
#define SERVER_SUBMIT_PROTO_H

#include <stddef.h>
#include <stdint.h>

enum subm_err {
	SUBM_OK = 0,
	SUBM_ERR_UNKNOWN_CMD = -1,    /* 500 5.5.2 unknown verb */
	SUBM_ERR_SYNTAX = -2,         /* 501 5.5.4 syntax error in parameters or arguments */
	SUBM_ERR_ADDR = -3,           /* 553 5.1.3 bad address syntax (or <> in RCPT) */
	SUBM_ERR_PARAM = -4,          /* 555 5.5.4 unknown MAIL/RCPT parameter */
	SUBM_ERR_SIZE = -5,           /* 552 5.3.4 SIZE= over the limit, or DATA over the cap */
	SUBM_ERR_MECH = -6,           /* 504 5.5.4 unrecognized authentication mechanism */
	SUBM_ERR_AUTH_CANCEL = -7,    /* 501 5.0.0 the client sent "*" (RFC 4954 4) */
	SUBM_ERR_AUTH_DATA = -8,      /* 501 5.5.2 bad base64, or a malformed PLAIN message */
	SUBM_ERR_LINE_TOO_LONG = -9,  /* 500 5.5.2 command line over the cap */
	SUBM_ERR_BARE_EOL = -10,      /* 500 5.5.2 bare CR or LF in a command line */
	SUBM_ERR_DATA_BARE_EOL = -11, /* 550 5.6.11 bare CR or LF in DATA (smuggling) */
	SUBM_ERR_UTF8 = -12,          /* 553 5.6.7 non-ASCII address without SMTPUTF8 */
};

/*
 * subm_reply - the reply line for err (a SUBM_ERR_*), without CRLF, e.g.
 * "501 5.5.4 Syntax error in parameters or arguments". Never NULL: an
 * unknown code gives "451 4.3.0 Internal error". Pure.
 */
const char *subm_reply(int err);

/* --- command lines -------------------------------------------------------- */

#define SUBM_LINE_DEFAULT 1000   /* line cap, octets incl. CRLF, when the caller gives 0 */
#define SUBM_LINE_MAX 4096       /* the largest cap subm_next_line accepts (larger: clamped) */

/*
 * subm_next_line - find the first line of buf[0..len). 1: a line of
 * *line_len octets (without its CRLF) starts at buf, *consumed = *line_len
 * + 2. 0: no complete line yet (read more; len < cap). Errors:
 * SUBM_ERR_BARE_EOL (an LF not after CR, or a CR not before LF, before the
 * first CRLF), SUBM_ERR_LINE_TOO_LONG (no CRLF within cap octets, CRLF
 * included; cap 0 = SUBM_LINE_DEFAULT, capped at SUBM_LINE_MAX). On an
 * error nothing is consumed: the listener answers subm_reply(err) and
 * closes the connection (it cannot know where the next command begins).
 * Pure.
 */
int subm_next_line(const char *buf, size_t len, size_t cap, size_t *line_len, size_t *consumed);

enum subm_verb {
	SUBM_V_UNKNOWN = 0,
	SUBM_V_EHLO, SUBM_V_HELO, SUBM_V_MAIL, SUBM_V_RCPT, SUBM_V_DATA, SUBM_V_RSET,
	SUBM_V_NOOP, SUBM_V_QUIT, SUBM_V_AUTH, SUBM_V_STARTTLS, SUBM_V_VRFY, SUBM_V_HELP,
};

enum subm_body { SUBM_BODY_NONE = 0, SUBM_BODY_7BIT, SUBM_BODY_8BITMIME };
enum subm_mech { SUBM_MECH_NONE = 0, SUBM_MECH_PLAIN, SUBM_MECH_LOGIN };

#define SUBM_PATH_MAX 254    /* mailbox in MAIL/RCPT, octets (validate_email's cap) */
#define SUBM_SIZE_DIGITS 20  /* SIZE= digits accepted before it counts as too big */

/* What the caller knows that a line alone does not say. */
struct subm_opts {
	int smtputf8;        /* RCPT: the transaction's MAIL had SMTPUTF8 (MAIL reads its own) */
	uint64_t max_size;   /* MAIL SIZE= above this: SUBM_ERR_SIZE; 0 = no limit */
};

/*
 * One parsed command. arg/initial point into the caller's line (not
 * NUL-terminated); path is a copy.
 */
struct subm_cmd {
	enum subm_verb verb;
	const char *arg;             /* EHLO/HELO domain, VRFY/HELP/NOOP text; NULL when none */
	size_t arg_len;
	char path[SUBM_PATH_MAX + 1];   /* MAIL/RCPT mailbox, no brackets, source route stripped */
	size_t path_len;             /* 0 with null_path for MAIL FROM:<> */
	int null_path;
	int has_size;                /* MAIL SIZE= given; size holds it */
	uint64_t size;
	enum subm_body body;         /* MAIL BODY= */
	int smtputf8;                /* MAIL SMTPUTF8 given */
	enum subm_mech mech;         /* AUTH */
	int has_initial;             /* AUTH initial response given ("=" -> initial_len 0) */
	const char *initial;
	size_t initial_len;
};

/*
 * subm_parse - parse one command line[0..len) WITHOUT its CRLF; opts may
 * be NULL (no SMTPUTF8, no size limit). 0 with *out filled, or a
 * SUBM_ERR_*: UNKNOWN_CMD (verb not one of EHLO HELO MAIL RCPT DATA RSET
 * NOOP QUIT AUTH STARTTLS VRFY HELP, compared without case; out->verb is
 * SUBM_V_UNKNOWN), SYNTAX (missing or extra arguments, no FROM:/TO:, no
 * angle brackets, a malformed or repeated parameter, a NUL or other
 * control character in the line), ADDR (the mailbox fails validate_email
 * or is over SUBM_PATH_MAX, <> in RCPT, a malformed source route), UTF8
 * (a non-ASCII mailbox without SMTPUTF8), PARAM (an unknown MAIL
 * parameter, any RCPT parameter), SIZE (SIZE= over opts->max_size or
 * over SUBM_SIZE_DIGITS digits), MECH (AUTH with a mechanism other than
 * PLAIN or LOGIN). On an error out->verb is still set when the verb was
 * known. Pure.
 *
 * Accepted leniently (as Postfix does without strict_rfc821_envelopes):
 * blanks between "FROM:" / "TO:" and "<". Source routes
 * (<@a,@b:user@d>) are accepted and stripped (RFC 5321 4.1.2 and C).
 * Quoted local parts, <postmaster> without a domain and paths without
 * angle brackets are refused.
 */
int subm_parse(const char *line, size_t len, const struct subm_opts *opts, struct subm_cmd *out);

/* --- AUTH ------------------------------------------------------------------ */

#define SUBM_SASL_FIELD_MAX 255   /* RFC 4616: authzid, authcid, passwd, octets each */

/*
 * subm_b64_decode - decode the base64 line in[0..inlen) (no CRLF) into
 * out (outcap octets), NUL-terminated; *outlen gets the decoded length.
 * Strict: only A-Z a-z 0-9 + /, length a multiple of 4, "=" padding (at
 * most two) at the end only. "" decodes to "". 0, or SUBM_ERR_AUTH_CANCEL
 * for "*", SUBM_ERR_AUTH_DATA for anything else that is not base64 or does
 * not fit (outcap must hold 3 * inlen / 4 + 1). The decoded bytes may
 * hold NULs; callers check. Pure.
 */
int subm_b64_decode(const char *in, size_t inlen, char *out, size_t outcap, size_t *outlen);

/*
 * subm_b64_encode - base64 of in[0..inlen) into out, NUL-terminated
 * (outcap >= 4 * ((inlen + 2) / 3) + 1). 0, or SUBM_ERR_AUTH_DATA when it
 * does not fit. For the "334 VXNlcm5hbWU6" prompts. Pure.
 */
int subm_b64_encode(const char *in, size_t inlen, char *out, size_t outcap);

/*
 * subm_auth_plain - the RFC 4616 message in the base64 line b64[0..len):
 * [authzid] NUL authcid NUL passwd. Each field is copied NUL-terminated
 * into its buffer of SUBM_SASL_FIELD_MAX + 1 octets (authzid "" when
 * absent). 0, SUBM_ERR_AUTH_CANCEL for "*", or SUBM_ERR_AUTH_DATA: not
 * base64, not exactly two NULs, an empty authcid or passwd, or a field
 * over SUBM_SASL_FIELD_MAX octets. Fields are octets, not checked as
 * UTF-8 (RFC 4616 asks for UTF-8; the password is an API key compared
 * exactly, so anything else simply fails): clean authcid before logging
 * it. On an error the three buffers are "" (no half-decoded password
 * lingers). Pure.
 */
int subm_auth_plain(const char *b64, size_t len, char *authzid, char *authcid, char *passwd);

/* --- DATA ------------------------------------------------------------------ */

/*
 * The DATA reader: fed the bytes after the 354 in chunks of any size, it
 * writes the dot-unstuffed message (CRLF line ends kept, the final
 * CRLF "." CRLF not) into the caller's buffer and stops at CRLF "." CRLF
 * and only there (the CRLF of the DATA command counts, so ".\r\n" first
 * is an empty message). A bare LF or bare CR anywhere (which covers the
 * smuggling ends "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n")
 * marks the whole message refused (SUBM_ERR_DATA_BARE_EOL) and is never
 * a boundary; a message over the cap marks it SUBM_ERR_SIZE. Either way
 * the reader goes on to the real CRLF "." CRLF, so the session stays in
 * step (smuggled commands are read as data, never run), and from the
 * first error on nothing more is written to the buffer. The first error
 * is the one reported. Fields are private.
 */
struct subm_data {
	char *out;
	size_t cap;
	size_t len;          /* octets written to out */
	uint64_t seen;       /* octets fed up to the end (saturating) */
	int state;
	int err;             /* first SUBM_ERR_* or 0 */
	int done;
};

/* subm_data_init - start a reader writing into out[0..cap). Never fails. */
void subm_data_init(struct subm_data *d, char *out, size_t cap);

/*
 * subm_data_buffer - go on writing into out[0..cap), which holds the
 * subm_data_length octets written so far (e.g. the old buffer grown by
 * realloc): a listener can start small and grow the buffer up to its limit
 * before each feed (the reader marks SUBM_ERR_SIZE only past cap). Pure.
 */
void subm_data_buffer(struct subm_data *d, char *out, size_t cap);

#define SUBM_DATA_MORE 0   /* all of buf consumed; feed more */
#define SUBM_DATA_END 1    /* the final CRLF "." CRLF ended at buf[*consumed - 1] */

/*
 * subm_data_feed - feed buf[0..len). SUBM_DATA_MORE (*consumed = len) or
 * SUBM_DATA_END (*consumed = octets up to and including the final LF; the
 * rest of buf is the next, pipelined, command). After the end it consumes
 * nothing and returns SUBM_DATA_END. Pure.
 */
int subm_data_feed(struct subm_data *d, const char *buf, size_t len, size_t *consumed);

/*
 * subm_data_status - 0, or the first error so far (SUBM_ERR_SIZE or
 * SUBM_ERR_DATA_BARE_EOL). Valid before the end too: a listener that
 * prefers Postfix's way (answer at once, then close) may ask after each
 * feed. subm_data_length - octets of message in out (0 after an error
 * is not promised: the prefix written before it stays).
 */
int subm_data_status(const struct subm_data *d);
size_t subm_data_length(const struct subm_data *d);

#endif
