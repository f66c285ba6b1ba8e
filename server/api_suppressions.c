/*
 * api_suppressions.c - the /v1/suppressions resource: list, add and remove
 * addresses that sends must not be delivered to (a 5.1.x bounce adds them
 * on its own; see worker.c).
 *
 * Owns the JSON shapes of these routes and the rule that addresses are
 * compared lower-cased. It must never store something that is not a
 * plausible address, touch Redis for one, or include microhttpd.h.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_page.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "validate.h"

#define SUPPR_EMAIL_MAX 320
#define SUPPR_REASON_MAX 64

/* lower-cased copy of email into buf; 0, or -1 when it is no plausible address */
static int
suppr_normalize(const char *email, char *buf, size_t len)
{
	size_t n;

	if (email == NULL)
		return -1;
	n = strlen(email);
	if (n == 0 || n > SUPPR_EMAIL_MAX || n >= len || !validate_email(email))
		return -1;
	for (size_t i = 0; i <= n; i++)
		buf[i] = (char)tolower((unsigned char)email[i]);
	return 0;
}

static cJSON *
suppr_entry_json(const char *email, const char *reason, int64_t created_ms)
{
	cJSON *o = cJSON_CreateObject();
	char at[40];

	util_rfc3339(created_ms, at, sizeof(at));
	if (o == NULL ||
	    cJSON_AddStringToObject(o, "email", email) == NULL ||
	    cJSON_AddStringToObject(o, "reason", reason != NULL ? reason : "") == NULL ||
	    cJSON_AddStringToObject(o, "created_at", at) == NULL) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/*
 * GET /v1/suppressions: a page of the project's list by address (bytewise;
 * addresses are lower-case), {"data":[...],"next_cursor":...} (api_page.h).
 */
void
api_suppressions_list(const struct api_request *req, struct api_response *resp)
{
	struct api_page pg;
	struct store_suppression *v = NULL;
	char *next = NULL;
	size_t n = 0;
	cJSON *out = NULL, *arr;
	int rc;

	if (api_page_parse(req, "suppressions", &pg, resp) != 0)
		return;
	rc = store_suppression_list(req->store, api_project(req), pg.has_after ? pg.after : NULL,
	    pg.limit, &v, &n, &next);
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return;
	}
	out = cJSON_CreateObject();
	if (out == NULL || (arr = cJSON_AddArrayToObject(out, "data")) == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		cJSON *e = suppr_entry_json(v[i].email != NULL ? v[i].email : "", v[i].reason,
		    v[i].created_ms);

		if (e == NULL)
			goto oom;
		if (!cJSON_AddItemToArray(arr, e)) {
			cJSON_Delete(e);
			goto oom;
		}
	}
	api_page_answer(resp, out, "suppressions", next);
	out = NULL;
	goto out;
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
out:
	cJSON_Delete(out);
	store_suppressions_free(v, n);
	free(next);
}

void
api_suppressions_create(const struct api_request *req, struct api_response *resp)
{
	const cJSON *email = cJSON_GetObjectItemCaseSensitive(req->json, "email");
	const cJSON *reason = cJSON_GetObjectItemCaseSensitive(req->json, "reason");
	const char *why = "manual";
	const char *one[1];
	char addr[SUPPR_EMAIL_MAX + 1];
	int existed = 0, rc;

	for (const cJSON *c = req->json->child; c != NULL; c = c->next)
		if (c->string == NULL ||
		    (strcmp(c->string, "email") != 0 && strcmp(c->string, "reason") != 0)) {
			api_error(resp, 422, "validation_error", "unknown field",
			    c->string != NULL ? c->string : "");
			return;
		}
	if (!cJSON_IsString(email) || email->valuestring == NULL) {
		api_error(resp, 422, "validation_error", "is required (a string)", "email");
		return;
	}
	if (suppr_normalize(email->valuestring, addr, sizeof(addr)) != 0) {
		api_error(resp, 422, "validation_error", "is not a valid email address", "email");
		return;
	}
	if (reason != NULL && !cJSON_IsNull(reason)) {
		size_t n;

		if (!cJSON_IsString(reason) || reason->valuestring == NULL) {
			api_error(resp, 422, "validation_error", "must be a string", "reason");
			return;
		}
		n = strlen(reason->valuestring);
		if (n == 0 || n > SUPPR_REASON_MAX) {
			api_error(resp, 422, "validation_error", "must be 1 to 64 characters", "reason");
			return;
		}
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)reason->valuestring[i] < 0x20 ||
			    reason->valuestring[i] == 0x7f) {
				api_error(resp, 422, "validation_error",
				    "must not contain control characters", "reason");
				return;
			}
		why = reason->valuestring;
	}
	one[0] = addr;
	rc = store_suppression_check(req->store, api_project(req), one, 1, &existed);
	if (rc == STORE_OK)
		rc = store_suppression_add(req->store, api_project(req), addr, why, req->now_ms);
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return;
	}
	log_info(existed ? "suppression refreshed" : "suppression added", "reason=%s request_id=%s",
	    why, req->request_id);
	api_json(resp, existed ? 200 : 201, suppr_entry_json(addr, why, req->now_ms));
}

void
api_suppressions_delete(const struct api_request *req, struct api_response *resp)
{
	char addr[SUPPR_EMAIL_MAX + 1];
	int rc;

	if (suppr_normalize(req->param, addr, sizeof(addr)) != 0) {
		api_error(resp, 404, "not_found", "no such suppression", NULL);
		return;
	}
	rc = store_suppression_delete(req->store, api_project(req), addr);
	if (rc == STORE_ERR_NOT_FOUND) {
		api_error(resp, 404, "not_found", "no such suppression", NULL);
		return;
	}
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return;
	}
	log_info("suppression removed", "request_id=%s", req->request_id);
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
	resp->status = 204;
}
