/*
 * validate.c - pure validation of API request bodies (the raw-text scans
 * around the parse are validate_scan.c; text and address syntax is
 * validate_addr.c).
 *
 * Owns the rules for what a send request may contain: field types, address
 * syntax, recipient caps, header names and values, metadata, tag and
 * variable caps, and the scans http.c runs on a body (value count before
 * the parse, nesting depth, \u0000 escapes).
 * It turns a parsed cJSON body into a struct msg_request of malloc'd copies,
 * or refuses with the offending field named ("to[1]", "headers.X-Foo").
 * It must never do I/O, log, read the clock or allocate without bounds: every
 * string it accepts has a cap and every cJSON node is type-checked before use.
 */
#include "validate.h"
#include "validate_internal.h"
#include "template.h"
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define VALIDATE_MAX_REPLY_TO 10
#define VALIDATE_MAX_SUBJECT 998
#define VALIDATE_MAX_HEADERS 50
#define VALIDATE_MAX_HEADER_NAME 76
#define VALIDATE_MAX_HEADER_VALUE 998
#define VALIDATE_MAX_METADATA 4096
#define VALIDATE_MAX_TAGS 20
#define VALIDATE_MAX_TAG_CHARS 64
#define VALIDATE_MAX_TEMPLATE_NAME 64
#define VALIDATE_MAX_TEMPLATE_PART (1024 * 1024)
#define VALIDATE_MAX_ATTACHMENTS 20
#define VALIDATE_MAX_FILENAME 255
#define VALIDATE_MAX_CONTENT_ID 128
#define VALIDATE_DEFAULT_MAX_ATTACH ((size_t)7 * 1024 * 1024)
#define VALIDATE_MAX_AHEAD_MS ((int64_t)30 * 24 * 3600 * 1000)

enum { V_OK = 0, V_INVALID = -1, V_NOMEM = -2, V_TOOBIG = -3 };

static void verr(struct validate_error *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
verr(struct validate_error *err, const char *field, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return;
	snprintf(err->field, sizeof(err->field), "%s", field != NULL ? field : "");
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}

/* --- request ------------------------------------------------------------- */

static void
addrs_free(struct mime_addr *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((void *)a[i].name);
		free((void *)a[i].email);
	}
	free(a);
}

static void attachments_free(struct mime_attachment *a, size_t n);

void
msg_request_free(struct msg_request *r)
{
	if (r == NULL)
		return;
	free((void *)r->from.name);
	free((void *)r->from.email);
	addrs_free(r->to, r->nto);
	addrs_free(r->cc, r->ncc);
	addrs_free(r->bcc, r->nbcc);
	addrs_free(r->reply_to, r->nreply_to);
	free(r->subject);
	free(r->text);
	free(r->html);
	for (size_t i = 0; i < r->nheaders; i++) {
		free((void *)r->headers[i].name);
		free((void *)r->headers[i].value);
	}
	free(r->headers);
	free(r->metadata_json);
	free(r->tags_json);
	free(r->template_name);
	cJSON_Delete(r->variables);
	attachments_free(r->attachments, r->nattachments);
	memset(r, 0, sizeof(*r));
}

/* parse one address node into *a; field names it for errors. */
static int
parse_addr(const cJSON *node, const char *field, struct mime_addr *a,
    struct validate_error *err)
{
	char why[160];
	char *name = NULL, *email = NULL;
	int rc;

	if (!cJSON_IsString(node) || node->valuestring == NULL) {
		verr(err, field, "must be a string");
		return V_INVALID;
	}
	rc = validate_address(node->valuestring, &name, &email, why, sizeof(why));
	if (rc == -2) {
		verr(err, field, "out of memory");
		return V_NOMEM;
	}
	if (rc != 0) {
		verr(err, field, "%s", why);
		return V_INVALID;
	}
	a->name = name;
	a->email = email;
	return V_OK;
}

static int
addr_seen(const struct mime_addr *a, size_t n, const char *email)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(a[i].email, email) == 0)
			return 1;
	return 0;
}

/*
 * parse_list - "to"/"cc"/"bcc"/"reply_to": a string or an array of strings.
 * When dedup is set, an address already present in earlier lists (prev,
 * nprev...) or earlier in this list is dropped (exact address, compared
 * case-insensitively): one delivery per mailbox.
 */
struct seen_list {
	const struct mime_addr *a;
	size_t n;
};

static int
parse_list(const cJSON *node, const char *key, int required, size_t max,
    int dedup, const struct seen_list *seen, size_t nseen,
    struct mime_addr **out, size_t *nout, struct validate_error *err)
{
	struct mime_addr *list = NULL;
	size_t n = 0, count;
	char field[64];
	int rc = V_INVALID;

	*out = NULL;
	*nout = 0;
	if (node == NULL || cJSON_IsNull(node)) {
		if (required) {
			verr(err, key, "is required");
			return V_INVALID;
		}
		return V_OK;
	}
	if (cJSON_IsString(node)) {
		count = 1;
	} else if (cJSON_IsArray(node)) {
		int sz = cJSON_GetArraySize(node);

		count = sz > 0 ? (size_t)sz : 0;
		if (count == 0) {
			if (required) {
				verr(err, key, "must not be empty");
				return V_INVALID;
			}
			return V_OK;
		}
	} else {
		verr(err, key, "must be a string or an array of strings");
		return V_INVALID;
	}
	if (count > max) {
		verr(err, key, "has too many addresses (max %zu)", max);
		return V_INVALID;
	}
	list = calloc(count, sizeof(*list));
	if (list == NULL) {
		verr(err, key, "out of memory");
		return V_NOMEM;
	}
	if (cJSON_IsString(node)) {
		rc = parse_addr(node, key, &list[0], err);
		if (rc != V_OK)
			goto out;
		n = 1;
	} else {
		const cJSON *it;
		size_t i = 0;

		cJSON_ArrayForEach(it, node) {
			struct mime_addr a = { 0 };
			int dup = 0;

			snprintf(field, sizeof(field), "%s[%zu]", key, i++);
			rc = parse_addr(it, field, &a, err);
			if (rc != V_OK)
				goto out;
			if (dedup) {
				dup = addr_seen(list, n, a.email);
				for (size_t s = 0; !dup && s < nseen; s++)
					dup = addr_seen(seen[s].a, seen[s].n, a.email);
			}
			if (dup) {
				free((void *)a.name);
				free((void *)a.email);
				continue;
			}
			list[n++] = a;
		}
	}
	if (dedup && n == 1 && cJSON_IsString(node)) {
		for (size_t s = 0; s < nseen; s++) {
			if (addr_seen(seen[s].a, seen[s].n, list[0].email)) {
				free((void *)list[0].name);
				free((void *)list[0].email);
				n = 0;
				break;
			}
		}
	}
	rc = V_OK;
out:
	if (rc != V_OK || n == 0) {
		addrs_free(list, n);
		return rc;
	}
	*out = list;
	*nout = n;
	return V_OK;
}

/* optional string field; *out NULL when absent or null. */
static int
opt_string(const cJSON *node, const char *key, char **out, struct validate_error *err)
{
	*out = NULL;
	if (node == NULL || cJSON_IsNull(node))
		return V_OK;
	if (!cJSON_IsString(node) || node->valuestring == NULL) {
		verr(err, key, "must be a string");
		return V_INVALID;
	}
	*out = strdup(node->valuestring);
	if (*out == NULL) {
		verr(err, key, "out of memory");
		return V_NOMEM;
	}
	return V_OK;
}

static const char *const reserved_headers[] = {
	"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Reply-To",
};

static int
header_name_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > VALIDATE_MAX_HEADER_NAME)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 33 || c > 126 || c == ':')
			return 0;
	}
	return 1;
}

static int
parse_headers(const cJSON *node, struct msg_request *r, struct validate_error *err)
{
	const cJSON *it;
	char field[128], why[96];
	int sz;

	if (node == NULL || cJSON_IsNull(node))
		return V_OK;
	if (!cJSON_IsObject(node)) {
		verr(err, "headers", "must be an object of string values");
		return V_INVALID;
	}
	sz = cJSON_GetArraySize(node);
	if (sz <= 0)
		return V_OK;
	if ((size_t)sz > VALIDATE_MAX_HEADERS) {
		verr(err, "headers", "has too many headers (max %d)", VALIDATE_MAX_HEADERS);
		return V_INVALID;
	}
	r->headers = calloc((size_t)sz, sizeof(*r->headers));
	if (r->headers == NULL) {
		verr(err, "headers", "out of memory");
		return V_NOMEM;
	}
	cJSON_ArrayForEach(it, node) {
		const char *name = it->string != NULL ? it->string : "";
		char *n, *v;

		/* field names in errors are bounded and printable */
		snprintf(field, sizeof(field), "headers.%.100s", name);
		if (!header_name_ok(name)) {
			validate_field_clean(field);
			verr(err, field, "is not a valid header field name (printable ASCII without ':', at most %d)",
			    VALIDATE_MAX_HEADER_NAME);
			return V_INVALID;
		}
		for (size_t k = 0; k < sizeof(reserved_headers) / sizeof(reserved_headers[0]); k++) {
			if (strcasecmp(name, reserved_headers[k]) == 0) {
				verr(err, field, "cannot be set in headers; use the dedicated field or leave it to txmail");
				return V_INVALID;
			}
		}
		for (size_t k = 0; k < r->nheaders; k++) {
			if (strcasecmp(name, r->headers[k].name) == 0) {
				verr(err, field, "is given more than once");
				return V_INVALID;
			}
		}
		if (!cJSON_IsString(it) || it->valuestring == NULL) {
			verr(err, field, "must be a string");
			return V_INVALID;
		}
		if (validate_check_line(it->valuestring, VALIDATE_MAX_HEADER_VALUE, why, sizeof(why)) != 0) {
			verr(err, field, "%s", why);
			return V_INVALID;
		}
		n = strdup(name);
		v = strdup(it->valuestring);
		if (n == NULL || v == NULL) {
			free(n);
			free(v);
			verr(err, field, "out of memory");
			return V_NOMEM;
		}
		r->headers[r->nheaders].name = n;
		r->headers[r->nheaders].value = v;
		r->nheaders++;
	}
	return V_OK;
}

static int
parse_metadata(const cJSON *node, struct msg_request *r, struct validate_error *err)
{
	if (node == NULL || cJSON_IsNull(node)) {
		r->metadata_json = strdup("{}");
	} else if (!cJSON_IsObject(node)) {
		verr(err, "metadata", "must be an object");
		return V_INVALID;
	} else {
		r->metadata_json = cJSON_PrintUnformatted(node);
	}
	if (r->metadata_json == NULL) {
		verr(err, "metadata", "out of memory");
		return V_NOMEM;
	}
	if (strlen(r->metadata_json) > VALIDATE_MAX_METADATA) {
		verr(err, "metadata", "must be at most %d octets as compact JSON", VALIDATE_MAX_METADATA);
		return V_INVALID;
	}
	if (!validate_utf8_check(r->metadata_json, strlen(r->metadata_json), NULL)) {
		verr(err, "metadata", "must be valid UTF-8");
		return V_INVALID;
	}
	return V_OK;
}

static int
parse_tags(const cJSON *node, struct msg_request *r, struct validate_error *err)
{
	const cJSON *it;
	char field[32], why[96];
	size_t i = 0;

	if (node == NULL || cJSON_IsNull(node)) {
		r->tags_json = strdup("[]");
		goto done;
	}
	if (!cJSON_IsArray(node)) {
		verr(err, "tags", "must be an array of strings");
		return V_INVALID;
	}
	if (cJSON_GetArraySize(node) > VALIDATE_MAX_TAGS) {
		verr(err, "tags", "has too many tags (max %d)", VALIDATE_MAX_TAGS);
		return V_INVALID;
	}
	cJSON_ArrayForEach(it, node) {
		size_t nchars = 0;

		snprintf(field, sizeof(field), "tags[%zu]", i++);
		if (!cJSON_IsString(it) || it->valuestring == NULL) {
			verr(err, field, "must be a string");
			return V_INVALID;
		}
		if (it->valuestring[0] == '\0') {
			verr(err, field, "must not be empty");
			return V_INVALID;
		}
		if (validate_check_line(it->valuestring, VALIDATE_MAX_TAG_CHARS * 4, why, sizeof(why)) != 0) {
			verr(err, field, "%s", why);
			return V_INVALID;
		}
		validate_utf8_check(it->valuestring, strlen(it->valuestring), &nchars);
		if (nchars > VALIDATE_MAX_TAG_CHARS) {
			verr(err, field, "must be at most %d characters", VALIDATE_MAX_TAG_CHARS);
			return V_INVALID;
		}
	}
	r->tags_json = cJSON_PrintUnformatted(node);
done:
	if (r->tags_json == NULL) {
		verr(err, "tags", "out of memory");
		return V_NOMEM;
	}
	return V_OK;
}

static int
check_body_text(const char *s, const char *key, struct validate_error *err)
{
	if (s == NULL)
		return V_OK;
	if (!validate_utf8_check(s, strlen(s), NULL)) {
		verr(err, key, "must be valid UTF-8");
		return V_INVALID;
	}
	return V_OK;
}

/*
 * tree_values - the values in the sibling list starting at node and under
 * it, counting no further than limit + 1 (so the recursion is at most
 * limit + 1 deep, whatever the document).
 */
static size_t
tree_values(const cJSON *node, size_t limit)
{
	size_t n = 0;

	for (; node != NULL && n <= limit; node = node->next) {
		n++;
		if (node->child != NULL && n <= limit)
			n += tree_values(node->child, limit - n);
	}
	return n;
}

/* top-level fields of a send request */
static const char *const known_fields[] = {
	"from", "to", "cc", "bcc", "reply_to", "subject", "text", "html",
	"headers", "metadata", "tags", "template", "variables", "attachments",
	"send_at", "ttl", "priority",
};

static int
in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return 1;
	return 0;
}

static int
check_fields(const cJSON *body, struct validate_error *err)
{
	const cJSON *it, *jt;
	char field[72];

	cJSON_ArrayForEach(it, body) {
		const char *k = it->string != NULL ? it->string : "";
		const char *why = NULL;

		if (!in_list(k, known_fields, sizeof(known_fields) / sizeof(known_fields[0])))
			why = "is not a known field";
		for (jt = body->child; why == NULL && jt != it; jt = jt->next)
			if (jt->string != NULL && strcmp(jt->string, k) == 0)
				why = "is given more than once";
		if (why != NULL) {
			/* the field's name only for the error: every accept passes here */
			snprintf(field, sizeof(field), "%.64s", k);
			validate_field_clean(field);
			verr(err, field, "%s", why);
			return V_INVALID;
		}
	}
	return V_OK;
}

/* --- templates ------------------------------------------------------------ */

int
validate_template_name(const char *name)
{
	size_t len;

	if (name == NULL)
		return 0;
	len = strlen(name);
	if (len == 0 || len > VALIDATE_MAX_TEMPLATE_NAME)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!(isalnum(c) || c == '_' || c == '-') || c >= 0x80)
			return 0;
	}
	return 1;
}

/* check_template_part - a template part's text: UTF-8, bounded, valid placeholders. */
static int
check_template_part(const cJSON *node, const char *key, struct validate_error *err)
{
	char where[48], why[96];
	const char *s;
	size_t len;
	int rc;

	if (!cJSON_IsString(node) || node->valuestring == NULL) {
		verr(err, key, "must be a string");
		return V_INVALID;
	}
	s = node->valuestring;
	len = strlen(s);
	if (strcmp(key, "subject") == 0) {
		if (validate_check_line(s, VALIDATE_MAX_SUBJECT, why, sizeof(why)) != 0) {
			verr(err, key, "%s", why);
			return V_INVALID;
		}
	} else if (len > VALIDATE_MAX_TEMPLATE_PART) {
		verr(err, key, "must be at most %d octets", VALIDATE_MAX_TEMPLATE_PART);
		return V_INVALID;
	} else if (!validate_utf8_check(s, len, NULL)) {
		verr(err, key, "must be valid UTF-8");
		return V_INVALID;
	}
	rc = template_check(s, len, where, sizeof(where));
	if (rc == TEMPLATE_ERR_NOMEM) {
		verr(err, key, "out of memory");
		return V_NOMEM;
	}
	if (rc != 0) {
		verr(err, key, "has a malformed placeholder at %s (use {{name}} or {{{name}}}, names [A-Za-z0-9_.-])",
		    where);
		return V_INVALID;
	}
	return V_OK;
}

int
validate_template_body(const cJSON *body, struct validate_error *err)
{
	static const char *const parts[] = { "subject", "text", "html" };
	const cJSON *it;
	char field[72];
	int have_body = 0, rc;

	if (err != NULL)
		memset(err, 0, sizeof(*err));
	if (!cJSON_IsObject(body)) {
		verr(err, "", "request body must be a JSON object");
		return V_INVALID;
	}
	cJSON_ArrayForEach(it, body) {
		const char *k = it->string != NULL ? it->string : "";

		snprintf(field, sizeof(field), "%.64s", k);
		validate_field_clean(field);
		if (!in_list(k, parts, 3)) {
			verr(err, field, "is not a known field (subject, text, html)");
			return V_INVALID;
		}
		for (const cJSON *jt = body->child; jt != it; jt = jt->next) {
			if (jt->string != NULL && strcmp(jt->string, k) == 0) {
				verr(err, field, "is given more than once");
				return V_INVALID;
			}
		}
		if (cJSON_IsNull(it))
			continue;
		rc = check_template_part(it, k, err);
		if (rc != V_OK)
			return rc;
		if (strcmp(k, "subject") != 0 && it->valuestring[0] != '\0')
			have_body = 1;
	}
	if (!have_body) {
		verr(err, "text", "text or html is required");
		return V_INVALID;
	}
	return V_OK;
}

/* --- attachments ------------------------------------------------------------ */

/* content_type_ok - "type/subtype", each an RFC 2045 token of at most 127 octets. */
static int
content_type_ok(const char *s)
{
	size_t part = 0, slashes = 0;

	for (const char *p = s;; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '\0' || c == '/') {
			if (part == 0 || part > 127)
				return 0;
			if (c == '\0')
				return slashes == 1;
			slashes++;
			part = 0;
			continue;
		}
		if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"[]?=", c) != NULL)
			return 0;
		part++;
	}
}

static int
content_id_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > VALIDATE_MAX_CONTENT_ID)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!(isalnum(c) || c == '.' || c == '_' || c == '@' || c == '-') || c >= 0x80)
			return 0;
	}
	return 1;
}

static void
attachments_free(struct mime_attachment *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((void *)a[i].filename);
		free((void *)a[i].content_type);
		free((void *)a[i].data);
		free((void *)a[i].content_id);
	}
	free(a);
}

/* parse_attachment - one element of "attachments"; *total counts decoded bytes. */
static int
parse_attachment(const cJSON *node, size_t idx, size_t max_attach, size_t *total,
    struct mime_attachment *prev, size_t nprev, struct mime_attachment *a,
    struct validate_error *err)
{
	static const char *const keys[] = { "filename", "content", "content_type", "content_id" };
	const cJSON *it, *fn, *ct, *ty, *id;
	char field[96], why[96];
	const char *s;
	size_t len, dlen = 0;
	unsigned char *data = NULL;

	snprintf(field, sizeof(field), "attachments[%zu]", idx);
	if (!cJSON_IsObject(node)) {
		verr(err, field, "must be an object with filename and content");
		return V_INVALID;
	}
	cJSON_ArrayForEach(it, node) {
		const char *k = it->string != NULL ? it->string : "";

		snprintf(field, sizeof(field), "attachments[%zu].%.64s", idx, k);
		validate_field_clean(field);
		if (!in_list(k, keys, 4)) {
			verr(err, field, "is not a known field (filename, content, content_type, content_id)");
			return V_INVALID;
		}
		for (const cJSON *jt = node->child; jt != it; jt = jt->next) {
			if (jt->string != NULL && strcmp(jt->string, k) == 0) {
				verr(err, field, "is given more than once");
				return V_INVALID;
			}
		}
	}
	fn = cJSON_GetObjectItemCaseSensitive(node, "filename");
	ct = cJSON_GetObjectItemCaseSensitive(node, "content");
	ty = cJSON_GetObjectItemCaseSensitive(node, "content_type");
	id = cJSON_GetObjectItemCaseSensitive(node, "content_id");

	snprintf(field, sizeof(field), "attachments[%zu].filename", idx);
	if (fn == NULL || cJSON_IsNull(fn)) {
		verr(err, field, "is required");
		return V_INVALID;
	}
	if (!cJSON_IsString(fn) || fn->valuestring == NULL) {
		verr(err, field, "must be a string");
		return V_INVALID;
	}
	s = fn->valuestring;
	if (s[0] == '\0') {
		verr(err, field, "must not be empty");
		return V_INVALID;
	}
	if (validate_check_line(s, VALIDATE_MAX_FILENAME, why, sizeof(why)) != 0) {
		verr(err, field, "%s", why);
		return V_INVALID;
	}
	if (strchr(s, '\t') != NULL) {   /* check_line lets TAB through; mime_build does not */
		verr(err, field, "must not contain control characters");
		return V_INVALID;
	}
	if (strpbrk(s, "/\\") != NULL) {
		verr(err, field, "must be a file name without '/' or '\\'");
		return V_INVALID;
	}

	snprintf(field, sizeof(field), "attachments[%zu].content", idx);
	if (ct == NULL || cJSON_IsNull(ct)) {
		verr(err, field, "is required");
		return V_INVALID;
	}
	if (!cJSON_IsString(ct) || ct->valuestring == NULL) {
		verr(err, field, "must be a base64 string");
		return V_INVALID;
	}
	len = strlen(ct->valuestring);
	/* refuse by the encoded size before allocating: 4 chars carry 3 bytes */
	if (len / 4 * 3 > max_attach - *total + 3 + len / 38) {
		verr(err, "attachments", "total attachment size exceeds %zu bytes", max_attach);
		return V_TOOBIG;
	}
	if (mime_base64_decode(ct->valuestring, len, &data, &dlen) != 0) {
		verr(err, field, "must be valid base64 (RFC 4648, with padding)");
		return V_INVALID;
	}
	a->data = data;
	a->len = dlen;
	if (dlen > max_attach - *total) {
		verr(err, "attachments", "total attachment size exceeds %zu bytes", max_attach);
		return V_TOOBIG;
	}
	*total += dlen;

	snprintf(field, sizeof(field), "attachments[%zu].content_type", idx);
	if (ty != NULL && !cJSON_IsNull(ty)) {
		if (!cJSON_IsString(ty) || ty->valuestring == NULL) {
			verr(err, field, "must be a string");
			return V_INVALID;
		}
		if (!content_type_ok(ty->valuestring)) {
			verr(err, field, "must be a MIME type \"type/subtype\" without parameters");
			return V_INVALID;
		}
		s = ty->valuestring;
	} else {
		s = "application/octet-stream";
	}
	a->content_type = strdup(s);
	a->filename = strdup(fn->valuestring);
	if (a->content_type == NULL || a->filename == NULL) {
		verr(err, field, "out of memory");
		return V_NOMEM;
	}

	snprintf(field, sizeof(field), "attachments[%zu].content_id", idx);
	if (id != NULL && !cJSON_IsNull(id)) {
		if (!cJSON_IsString(id) || id->valuestring == NULL) {
			verr(err, field, "must be a string");
			return V_INVALID;
		}
		if (!content_id_ok(id->valuestring)) {
			verr(err, field, "must be 1 to %d characters of A-Z a-z 0-9 . _ @ -",
			    VALIDATE_MAX_CONTENT_ID);
			return V_INVALID;
		}
		for (size_t k = 0; k < nprev; k++) {
			if (prev[k].content_id != NULL && strcmp(prev[k].content_id, id->valuestring) == 0) {
				verr(err, field, "is given more than once");
				return V_INVALID;
			}
		}
		a->content_id = strdup(id->valuestring);
		if (a->content_id == NULL) {
			verr(err, field, "out of memory");
			return V_NOMEM;
		}
	}
	return V_OK;
}

static int
parse_attachments(const cJSON *node, size_t max_attach, struct msg_request *r,
    struct validate_error *err)
{
	const cJSON *it;
	size_t total = 0, i = 0;
	int sz, rc;

	if (node == NULL || cJSON_IsNull(node))
		return V_OK;
	if (!cJSON_IsArray(node)) {
		verr(err, "attachments", "must be an array of objects");
		return V_INVALID;
	}
	sz = cJSON_GetArraySize(node);
	if (sz <= 0)
		return V_OK;
	if (sz > VALIDATE_MAX_ATTACHMENTS) {
		verr(err, "attachments", "has too many attachments (max %d)", VALIDATE_MAX_ATTACHMENTS);
		return V_INVALID;
	}
	r->attachments = calloc((size_t)sz, sizeof(*r->attachments));
	if (r->attachments == NULL) {
		verr(err, "attachments", "out of memory");
		return V_NOMEM;
	}
	cJSON_ArrayForEach(it, node) {
		/* counted first so that msg_request_free releases partial work */
		r->nattachments = i + 1;
		rc = parse_attachment(it, i, max_attach, &total, r->attachments, i,
		    &r->attachments[i], err);
		if (rc != V_OK)
			return rc;
		i++;
	}
	return V_OK;
}

/* --- time ------------------------------------------------------------------ */

static int
parse_send_at(const cJSON *node, int64_t now_ms, struct msg_request *r,
    struct validate_error *err)
{
	int64_t t;

	if (node == NULL || cJSON_IsNull(node))
		return V_OK;
	if (!cJSON_IsString(node) || node->valuestring == NULL ||
	    strlen(node->valuestring) > 64 || util_parse_rfc3339(node->valuestring, &t) != 0) {
		verr(err, "send_at", "must be an RFC 3339 date-time such as \"2026-11-23T15:58:00Z\"");
		return V_INVALID;
	}
	if (now_ms > 0 && t <= now_ms) {
		r->send_at_ms = 0;   /* in the past: send now */
		return V_OK;
	}
	if (now_ms > 0 && t - now_ms > VALIDATE_MAX_AHEAD_MS) {
		verr(err, "send_at", "must be at most 30 days ahead");
		return V_INVALID;
	}
	r->send_at_ms = t;
	return V_OK;
}

/* parse_priority - "high" or "normal" (the default, also for null). */
static int
parse_priority(const cJSON *node, struct msg_request *r, struct validate_error *err)
{
	if (node == NULL || cJSON_IsNull(node))
		return V_OK;
	if (cJSON_IsString(node) && node->valuestring != NULL) {
		if (strcmp(node->valuestring, "high") == 0) {
			r->priority_high = 1;
			return V_OK;
		}
		if (strcmp(node->valuestring, "normal") == 0)
			return V_OK;
	}
	verr(err, "priority", "must be \"high\" or \"normal\"");
	return V_INVALID;
}

static int
parse_ttl(const cJSON *node, struct msg_request *r, struct validate_error *err)
{
	double v;

	if (node == NULL || cJSON_IsNull(node))
		return V_OK;
	if (!cJSON_IsNumber(node)) {
		verr(err, "ttl", "must be an integer number of seconds");
		return V_INVALID;
	}
	v = node->valuedouble;
	if (!(v >= 1.0 && v <= (double)(VALIDATE_MAX_AHEAD_MS / 1000)) || v != (double)(int64_t)v) {
		verr(err, "ttl", "must be an integer number of seconds from 1 to %lld",
		    (long long)(VALIDATE_MAX_AHEAD_MS / 1000));
		return V_INVALID;
	}
	r->ttl_ms = (int64_t)v * 1000;
	return V_OK;
}

int
validate_options(const cJSON *metadata, const cJSON *tags, const cJSON *ttl, const cJSON *priority,
    struct msg_request *out, struct validate_error *err)
{
	int rc;

	rc = parse_metadata(metadata, out, err);
	if (rc == V_OK)
		rc = parse_tags(tags, out, err);
	if (rc == V_OK)
		rc = parse_ttl(ttl, out, err);
	if (rc == V_OK)
		rc = parse_priority(priority, out, err);
	return rc;
}

int
validate_idem_key(const char *key)
{
	size_t n;

	if (key == NULL)
		return 0;
	n = strlen(key);
	if (n == 0 || n > VALIDATE_MAX_IDEM_KEY)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
			return 0;
	return 1;
}

/* --- the send request --------------------------------------------------------- */

/* add_prefix - "messages[3]." + field; the top level itself reads "messages[3]". */
static void
add_prefix(struct validate_error *err, const char *prefix)
{
	char f[sizeof(err->field)];
	size_t plen;

	if (err == NULL || prefix == NULL || prefix[0] == '\0')
		return;
	plen = strlen(prefix);
	if (err->field[0] == '\0' && prefix[plen - 1] == '.')
		snprintf(f, sizeof(f), "%.*s", (int)(plen - 1), prefix);
	else
		snprintf(f, sizeof(f), "%s%s", prefix, err->field);
	memcpy(err->field, f, sizeof(f));
}

int
validate_message(const cJSON *body, struct msg_request *out, struct validate_error *err)
{
	return validate_message_at(body, 0, VALIDATE_DEFAULT_MAX_ATTACH, NULL, out, err);
}

int
validate_message_at(const cJSON *body, int64_t now_ms, size_t max_attach,
    const char *prefix, struct msg_request *out, struct validate_error *err)
{
	struct seen_list seen[2];
	char why[96];
	size_t total;
	int rc;

	memset(out, 0, sizeof(*out));
	if (err != NULL)
		memset(err, 0, sizeof(*err));
	if (!cJSON_IsObject(body)) {
		verr(err, "", "request body must be a JSON object");
		rc = V_INVALID;
		goto out;
	}
	rc = check_fields(body, err);
	if (rc != V_OK)
		goto out;

#define FIELD(k) cJSON_GetObjectItemCaseSensitive(body, k)
	{
		const cJSON *from = FIELD("from");

		if (from == NULL || cJSON_IsNull(from)) {
			verr(err, "from", "is required");
			rc = V_INVALID;
			goto out;
		}
		rc = parse_addr(from, "from", &out->from, err);
		if (rc != V_OK)
			goto out;
	}

	/* count before de-duplication so the cap bounds the work */
	total = 0;
	{
		static const char *const keys[] = { "to", "cc", "bcc" };

		for (size_t k = 0; k < 3; k++) {
			const cJSON *n = FIELD(keys[k]);

			if (cJSON_IsString(n))
				total += 1;
			else if (cJSON_IsArray(n))
				total += (size_t)cJSON_GetArraySize(n);
			if (total > VALIDATE_MAX_RCPTS) {
				verr(err, keys[k], "too many recipients (max %d across to, cc and bcc)",
				    VALIDATE_MAX_RCPTS);
				rc = V_INVALID;
				goto out;
			}
		}
	}
	/*
	 * Duplicates: an address repeated (case-insensitively) within or across
	 * to/cc/bcc is dropped after its first occurrence, to before cc before
	 * bcc, so each mailbox gets one delivery and appears in one header.
	 */
	rc = parse_list(FIELD("to"), "to", 1, VALIDATE_MAX_RCPTS, 1, NULL, 0,
	    &out->to, &out->nto, err);
	if (rc != V_OK)
		goto out;
	seen[0].a = out->to;
	seen[0].n = out->nto;
	rc = parse_list(FIELD("cc"), "cc", 0, VALIDATE_MAX_RCPTS, 1, seen, 1,
	    &out->cc, &out->ncc, err);
	if (rc != V_OK)
		goto out;
	seen[1].a = out->cc;
	seen[1].n = out->ncc;
	rc = parse_list(FIELD("bcc"), "bcc", 0, VALIDATE_MAX_RCPTS, 1, seen, 2,
	    &out->bcc, &out->nbcc, err);
	if (rc != V_OK)
		goto out;
	rc = parse_list(FIELD("reply_to"), "reply_to", 0, VALIDATE_MAX_REPLY_TO, 0, NULL, 0,
	    &out->reply_to, &out->nreply_to, err);
	if (rc != V_OK)
		goto out;

	{
		const cJSON *tpl = FIELD("template"), *vars = FIELD("variables");

		if (tpl != NULL && !cJSON_IsNull(tpl)) {
			static const char *const given[] = { "subject", "text", "html" };

			if (!cJSON_IsString(tpl) || tpl->valuestring == NULL ||
			    !validate_template_name(tpl->valuestring)) {
				verr(err, "template", "must be a template name ([A-Za-z0-9_-], 1 to %d characters)",
				    VALIDATE_MAX_TEMPLATE_NAME);
				rc = V_INVALID;
				goto out;
			}
			for (size_t k = 0; k < 3; k++) {
				const cJSON *n = FIELD(given[k]);

				if (n != NULL && !cJSON_IsNull(n)) {
					verr(err, given[k], "must not be given with template (the template provides it)");
					rc = V_INVALID;
					goto out;
				}
			}
			out->template_name = strdup(tpl->valuestring);
			if (out->template_name == NULL) {
				verr(err, "template", "out of memory");
				rc = V_NOMEM;
				goto out;
			}
		}
		if (vars != NULL && !cJSON_IsNull(vars)) {
			if (out->template_name == NULL) {
				verr(err, "variables", "requires template");
				rc = V_INVALID;
				goto out;
			}
			if (!cJSON_IsObject(vars)) {
				verr(err, "variables", "must be an object");
				rc = V_INVALID;
				goto out;
			}
			/* each placeholder is looked up by a walk of its object */
			if (tree_values(vars->child, VALIDATE_MAX_VARIABLES) > VALIDATE_MAX_VARIABLES) {
				verr(err, "variables", "has too many values (max %d, nested members included)",
				    VALIDATE_MAX_VARIABLES);
				rc = V_INVALID;
				goto out;
			}
			out->variables = cJSON_Duplicate(vars, 1);
			if (out->variables == NULL) {
				verr(err, "variables", "out of memory");
				rc = V_NOMEM;
				goto out;
			}
		}
	}

	rc = opt_string(FIELD("subject"), "subject", &out->subject, err);
	if (rc != V_OK)
		goto out;
	if (out->subject != NULL &&
	    validate_check_line(out->subject, VALIDATE_MAX_SUBJECT, why, sizeof(why)) != 0) {
		verr(err, "subject", "%s", why);
		rc = V_INVALID;
		goto out;
	}
	rc = opt_string(FIELD("text"), "text", &out->text, err);
	if (rc == V_OK)
		rc = check_body_text(out->text, "text", err);
	if (rc != V_OK)
		goto out;
	rc = opt_string(FIELD("html"), "html", &out->html, err);
	if (rc == V_OK)
		rc = check_body_text(out->html, "html", err);
	if (rc != V_OK)
		goto out;
	/* "" counts as absent: mime_build needs a non-empty text or html */
	if (out->template_name == NULL && (out->text == NULL || out->text[0] == '\0') &&
	    (out->html == NULL || out->html[0] == '\0')) {
		verr(err, "text", "text or html is required (and not empty)");
		rc = V_INVALID;
		goto out;
	}
	rc = parse_headers(FIELD("headers"), out, err);
	if (rc != V_OK)
		goto out;
	rc = parse_metadata(FIELD("metadata"), out, err);
	if (rc != V_OK)
		goto out;
	rc = parse_tags(FIELD("tags"), out, err);
	if (rc != V_OK)
		goto out;
	rc = parse_attachments(FIELD("attachments"), max_attach, out, err);
	if (rc != V_OK)
		goto out;
	rc = parse_send_at(FIELD("send_at"), now_ms, out, err);
	if (rc != V_OK)
		goto out;
	rc = parse_ttl(FIELD("ttl"), out, err);
	if (rc != V_OK)
		goto out;
	rc = parse_priority(FIELD("priority"), out, err);
#undef FIELD
out:
	if (rc != V_OK) {
		msg_request_free(out);
		add_prefix(err, prefix);
	}
	return rc;
}

int
validate_rendered(const struct msg_request *r, const char *prefix, struct validate_error *err)
{
	char why[96];
	int rc = V_INVALID;

	if (err != NULL)
		memset(err, 0, sizeof(*err));
	if (r->subject != NULL &&
	    validate_check_line(r->subject, VALIDATE_MAX_SUBJECT, why, sizeof(why)) != 0) {
		verr(err, "subject", "after rendering the template %s", why);
		goto out;
	}
	if (r->text != NULL && !validate_utf8_check(r->text, strlen(r->text), NULL)) {
		verr(err, "text", "must be valid UTF-8");
		goto out;
	}
	if (r->html != NULL && !validate_utf8_check(r->html, strlen(r->html), NULL)) {
		verr(err, "html", "must be valid UTF-8");
		goto out;
	}
	if ((r->text == NULL || r->text[0] == '\0') && (r->html == NULL || r->html[0] == '\0')) {
		verr(err, "template", "renders an empty text and html");
		goto out;
	}
	rc = V_OK;
out:
	if (rc != V_OK)
		add_prefix(err, prefix);
	return rc;
}
