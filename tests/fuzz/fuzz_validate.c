/*
 * fuzz_validate.c - libFuzzer target for the JSON request path: the value
 * count, cJSON parse, the nesting-depth cap, validate_json_nul,
 * validate_message_at (single and batch prefix) and validate_template_body
 * (server/validate.c).
 *
 * Mirrors what server/http.c does before a handler sees a body: refuse
 * empty bodies and NUL bytes, refuse more than VALIDATE_MAX_JSON_VALUES
 * values (counted on the raw text), parse with nothing allowed after the value,
 * refuse nesting deeper than 32 (http_json_depth is static in http.c, so an
 * identical copy lives here), then validate. Properties checked on success:
 * the raw-text value count equals the parsed tree's node count,
 * recipients within VALIDATE_MAX_RCPTS, no CR/LF in any header value, name
 * or address, no control, separator, bidi or BOM code point in a name or
 * address, and a validated message without a template always builds
 * with mime_build (a failure there would be a 500 for a 202-worthy body).
 * Never writes files; never aborts except on a broken property.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../server/validate.h"
#include "../../smtp/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_JSON_DEPTH 32            /* HTTP_MAX_JSON_DEPTH in server/http.c */
#define FUZZ_MAX_ATTACH (64 * 1024)   /* small, so the 413 path is reachable */
#define FUZZ_NOW_MS INT64_C(1767225600000)

/* nodes of the parsed tree: what validate_json_count must have counted */
static size_t
tree_count(const cJSON *node)
{
	size_t n = 1;

	for (const cJSON *c = node->child; c != NULL; c = c->next)
		n += tree_count(c);
	return n;
}

static int
has_crlf(const char *s)
{
	return s != NULL && (strchr(s, '\r') != NULL || strchr(s, '\n') != NULL);
}

/*
 * has_refused_cp - 1 when s holds a code point no address or name may
 * (C0, DEL, C1, U+200E/F, U+2028-U+202E, U+2066-9, U+FEFF), judged on the
 * UTF-8 bytes rather than by a decoder like validate.c's.
 */
static int
has_refused_cp(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	for (; s != NULL && *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7F)
			return 1;
		if (p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F)
			return 1;
		if (p[0] == 0xE2 && p[1] == 0x80 &&
		    (p[2] == 0x8E || p[2] == 0x8F || (p[2] >= 0xA8 && p[2] <= 0xAE)))
			return 1;
		if (p[0] == 0xE2 && p[1] == 0x81 && p[2] >= 0xA6 && p[2] <= 0xA9)
			return 1;
		if (p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
			return 1;
	}
	return 0;
}

static void
check_addrs(const struct mime_addr *a, size_t n)
{
	if (n > 0 && a == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		if (a[i].email == NULL || a[i].email[0] == '\0' ||
		    has_crlf(a[i].email) || has_crlf(a[i].name) ||
		    has_refused_cp(a[i].email) || has_refused_cp(a[i].name))
			abort();
}

static void
check_request(const struct msg_request *r)
{
	struct mime_message mm;
	char *mime = NULL;
	size_t mime_len = 0;

	if (r->nto + r->ncc + r->nbcc > VALIDATE_MAX_RCPTS)
		abort();
	check_addrs(&r->from, 1);
	check_addrs(r->to, r->nto);
	check_addrs(r->cc, r->ncc);
	check_addrs(r->bcc, r->nbcc);
	check_addrs(r->reply_to, r->nreply_to);
	if (has_crlf(r->subject))
		abort();
	for (size_t i = 0; i < r->nheaders; i++)
		if (has_crlf(r->headers[i].name) || has_crlf(r->headers[i].value))
			abort();
	if (r->metadata_json == NULL || r->tags_json == NULL)
		abort();
	if (r->template_name != NULL)
		return;   /* subject/text/html come later from the template */

	memset(&mm, 0, sizeof(mm));
	mm.from = r->from;
	mm.to = r->to;
	mm.nto = r->nto;
	mm.cc = r->cc;
	mm.ncc = r->ncc;
	mm.reply_to = r->reply_to;
	mm.nreply_to = r->nreply_to;
	mm.subject = r->subject;
	mm.text = r->text;
	mm.html = r->html;
	mm.headers = r->headers;
	mm.nheaders = r->nheaders;
	mm.attachments = r->attachments;
	mm.nattachments = r->nattachments;
	mm.date_s = (r->send_at_ms > 0 ? r->send_at_ms : FUZZ_NOW_MS) / 1000;
	mm.message_id = "<fuzz.1@txmail.test>";
	mm.boundary_seed = 42;
	if (mime_build(&mm, &mime, &mime_len) != 0)
		abort();   /* validated, yet unbuildable: the API would answer 500 */
	if (mime == NULL || strlen(mime) != mime_len)
		abort();
	free(mime);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg_request req;
	struct validate_error err;
	char field[128];
	const char *end = NULL;
	char *body = NULL;
	cJSON *json = NULL;
	int rc;

	if (size == 0 || size > 256 * 1024 || memchr(data, '\0', size) != NULL)
		return 0;
	body = malloc(size + 1);
	if (body == NULL)
		return 0;
	memcpy(body, data, size);
	body[size] = '\0';
	if (validate_json_count(body, size, VALIDATE_MAX_JSON_VALUES) > VALIDATE_MAX_JSON_VALUES)
		goto out;
	json = cJSON_ParseWithLengthOpts(body, size + 1, &end, 1);
	if (json == NULL)
		goto out;
	if (validate_json_count(body, size, SIZE_MAX - 1) != tree_count(json))
		abort();   /* the pre-parse cap would count something else than cJSON builds */
	if (validate_json_depth(json, FUZZ_JSON_DEPTH + 1) > FUZZ_JSON_DEPTH)
		goto out;
	if (!cJSON_IsObject(json))
		goto out;
	if (validate_json_nul(body, size, field, sizeof(field))) {
		if (memchr(field, '\0', sizeof(field)) == NULL)
			abort();
		goto out;
	}

	for (int batch = 0; batch < 2; batch++) {
		memset(&req, 0, sizeof(req));
		memset(&err, 0, sizeof(err));
		rc = validate_message_at(json, FUZZ_NOW_MS, FUZZ_MAX_ATTACH,
		    batch ? "messages[7]." : "", &req, &err);
		if (rc == 0)
			check_request(&req);
		else if (rc == -1 && err.message[0] == '\0')
			abort();   /* every refusal says why */
		else if (rc != -1 && rc != -2 && rc != -3)
			abort();
		msg_request_free(&req);
	}

	memset(&err, 0, sizeof(err));
	rc = validate_template_body(json, &err);
	if (rc != 0 && (rc != -1 || err.message[0] == '\0'))
		abort();
out:
	cJSON_Delete(json);
	free(body);
	return 0;
}
