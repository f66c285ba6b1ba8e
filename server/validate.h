/*
 * validate.h - pure validation of API request bodies (cJSON in, structs out).
 *
 * No I/O, no clock except what the caller passes. Every refusal names the
 * offending field ("to[1]", "headers.X-Foo") and says why, for a 422.
 * Caps: 50 recipients in to+cc+bcc, 998-octet header values, 320-octet
 * addresses, no CR/LF/NUL anywhere in a header value, name or address,
 * no control (C0, DEL, C1), line separator, bidi control or BOM code point
 * in an address or display name, 50 headers, 20 tags, 4 KiB of metadata, 100 template variables.
 */
#ifndef SERVER_VALIDATE_H
#define SERVER_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "../smtp/mime.h"

#define VALIDATE_MAX_RCPTS 50
#define VALIDATE_MAX_VARIABLES 100   /* values in "variables", members at every depth */
/*
 * Values (objects, arrays, scalars) in one request body, counted by
 * validate_json_count before the parse. The largest legitimate body is a
 * 500-message batch whose every message is at every cap here: the message
 * object, 14 fields, 50 recipients, 10 reply-to, 50 headers, 20 tags, 20
 * attachments of 4 fields (245 values), 100 variables and 50 metadata
 * values: 2 + 500 * 395 = 197,502. cJSON spends some 80 bytes a value, so
 * this bounds a parse to about 16 MB however the body is written
 * ("[0,0,0,...]" would otherwise cost 40 times its size).
 */
#define VALIDATE_MAX_JSON_VALUES 200000

struct validate_error {
	char field[128];
	char message[256];
};

/* A validated send request. Strings are malloc'd copies owned by it. */
struct msg_request {
	struct mime_addr from;
	struct mime_addr *to; size_t nto;
	struct mime_addr *cc; size_t ncc;
	struct mime_addr *bcc; size_t nbcc;
	struct mime_addr *reply_to; size_t nreply_to;
	char *subject;          /* NULL when absent */
	char *text;             /* NULL when absent */
	char *html;             /* NULL when absent */
	struct mime_header *headers; size_t nheaders;
	char *metadata_json;    /* compact JSON object, "{}" when absent */
	char *tags_json;        /* compact JSON array, "[]" when absent */
	/* issue 3 */
	char *template_name;    /* NULL when absent; then subject/text/html come from the template */
	cJSON *variables;       /* owned copy of "variables" (an object), NULL when absent */
	struct mime_attachment *attachments; size_t nattachments;  /* data decoded, owned */
	int64_t send_at_ms;     /* 0 when absent */
	int64_t ttl_ms;         /* 0 when absent */
	int priority_high;      /* "priority": "high" -> 1; "normal" or absent -> 0 */
};

/*
 * validate_message - check body (the parsed JSON of POST /v1/messages) and
 * fill *out. Returns 0; -1 when invalid (err filled, *out left empty);
 * -2 on out-of-memory. Always call msg_request_free afterwards.
 */
int validate_message(const cJSON *body, struct msg_request *out, struct validate_error *err);

/*
 * validate_message_at - as validate_message, with the clock (for send_at:
 * not more than 30 days ahead; a past send_at means now) and a field
 * prefix for batches: prefix "messages[3]." makes fields read
 * "messages[3].to[0]". Template rules: with "template" (a name),
 * subject/text/html must be absent (422 naming the field) — the template
 * gives them; "variables" (an object of at most VALIDATE_MAX_VARIABLES
 * values, nested members included) requires "template"; without
 * "template", text or html is required. Attachments: at most 20, total decoded
 * size at most max_attach bytes (-> -3, a 413 "payload_too_large"),
 * invalid base64 -> field "attachments[i].content". "priority" is "high" or
 * "normal" (the default); anything else -> field "priority".
 * Returns 0, -1 invalid (422), -2 out of memory, -3 too large (413).
 */
int validate_message_at(const cJSON *body, int64_t now_ms, size_t max_attach,
    const char *prefix, struct msg_request *out, struct validate_error *err);

/*
 * validate_json_depth - nesting depth of arrays/objects under node (0 for a
 * scalar), counting no further than limit (so a hostile document costs at
 * most limit levels of recursion here).
 */
int validate_json_depth(const cJSON *node, int limit);

/*
 * validate_json_count - how many JSON values the text json[0..len) holds:
 * every object, array and scalar, the top level included (so one plus all
 * object members and array elements), counting no further than limit + 1.
 * A lexical scan of the raw text that allocates nothing, so a caller can
 * refuse a body over its limit before a parser builds a node per value.
 * Exact for valid JSON; for invalid JSON some number the parser refuses
 * anyway.
 */
size_t validate_json_count(const char *json, size_t len, size_t limit);

/*
 * validate_options - the send request's "metadata", "tags", "ttl" and
 * "priority" rules for callers that are not a JSON body (SMTP submission's
 * X-Txmail-* headers): each node may be NULL (absent). Fills
 * out->metadata_json ("{}" when absent), tags_json ("[]"), ttl_ms and
 * priority_high exactly as validate_message does. 0, -1 invalid (err names
 * "metadata", "tags[2]", "ttl" or "priority"), -2 out of memory. The caller
 * frees with msg_request_free (out zeroed before the call).
 */
int validate_options(const cJSON *metadata, const cJSON *tags, const cJSON *ttl, const cJSON *priority,
    struct msg_request *out, struct validate_error *err);

#define VALIDATE_MAX_IDEM_KEY 255
/* validate_idem_key - 1 when key is 1..VALIDATE_MAX_IDEM_KEY printable ASCII characters (space allowed). */
int validate_idem_key(const char *key);

/* validate_template_name - 1 when name matches [A-Za-z0-9_-]{1,64}. */
int validate_template_name(const char *name);

/*
 * validate_template_body - the body of PUT /v1/templates/{name}: an object
 * with "subject", "text", "html" strings (at least one of text/html), each
 * passing template_check; no other fields. 0 or -1 with err.
 */
int validate_template_body(const cJSON *body, struct validate_error *err);
void msg_request_free(struct msg_request *r);

/*
 * validate_rendered - after the template filled r->subject/text/html: the
 * subject has no CR/LF/control characters and fits 998 octets, the bodies are
 * UTF-8, and text or html is not empty. 0, or -1 with err (field prefixed
 * as in validate_message_at) for a 422.
 */
int validate_rendered(const struct msg_request *r, const char *prefix,
    struct validate_error *err);

/*
 * validate_address - parse "addr" or "Display Name <addr>" (quoted names
 * allowed, UTF-8 names allowed; no C0/C1 control, DEL, U+2028/U+2029,
 * bidi control U+200E/F, U+202A-E, U+2066-9 or U+FEFF anywhere, TAB
 * included). On success 0 with malloc'd *name (NULL when none) and *email;
 * -1 with why filled.
 */
int validate_address(const char *in, char **name, char **email, char *why, size_t whylen);

/*
 * validate_email - 1 when `s` is a plausible addr-spec (local@domain, ASCII
 * or UTF-8, no spaces/CR/LF/<>, none of the code points validate_address
 * refuses), else 0.
 */
int validate_email(const char *s);

/*
 * validate_json_nul - 1 when the (already parsed, valid) JSON text
 * json[0..len) holds a \u0000 escape in a string, which cJSON would silently
 * cut there; field gets its path ("to[1]", "headers.X-Foo", "" for the
 * top level). 0 when there is none. Callers refuse such bodies with a 422.
 */
int validate_json_nul(const char *json, size_t len, char *field, size_t fieldlen);

#endif
