/*
 * api_templates.c - the /v1/templates resource: store, show, list and
 * delete named {"subject","text","html"} templates used by sends with
 * "template" + "variables".
 *
 * Owns the JSON shapes of these routes. The body is checked (names,
 * fields, placeholder syntax) by validate.c before anything is stored;
 * rendering is template.c's, at send time in api_messages.c. It must never
 * store a template that would not render, touch Redis for a name that can
 * not be one, or include microhttpd.h.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_page.h"
#include "log.h"
#include "store.h"
#include "validate.h"

/* answer the stored template `name` with `status` */
static void
templates_show(const struct api_request *req, const char *name, int status,
    struct api_response *resp)
{
	char *json = NULL;
	cJSON *obj;
	int rc;

	rc = store_template_get(req->store, api_project(req), name, &json);
	if (rc == STORE_ERR_NOT_FOUND) {
		api_error(resp, 404, "not_found", "no such template", NULL);
		return;
	}
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return;
	}
	obj = cJSON_Parse(json);
	free(json);
	if (obj == NULL) {
		api_error(resp, 500, "internal_error", "stored template is damaged", NULL);
		return;
	}
	api_json(resp, status, obj);
}

void
api_templates_put(const struct api_request *req, struct api_response *resp)
{
	struct validate_error verr;
	char *json = NULL;
	int created = 0, rc;

	if (req->param == NULL || !validate_template_name(req->param)) {
		api_error(resp, 422, "validation_error",
		    "template names are 1 to 64 of A-Z a-z 0-9 _ -", "name");
		return;
	}
	memset(&verr, 0, sizeof(verr));
	if (validate_template_body(req->json, &verr) != 0) {
		api_error(resp, 422, "validation_error", verr.message, verr.field);
		return;
	}
	json = cJSON_PrintUnformatted(req->json);
	if (json == NULL) {
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		return;
	}
	rc = store_template_put(req->store, api_project(req), req->param, json, req->now_ms,
	    &created);
	cJSON_free(json);
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return;
	}
	log_info(created ? "template created" : "template replaced", "template=%s request_id=%s",
	    req->param, req->request_id);
	templates_show(req, req->param, created ? 201 : 200, resp);
}

void
api_templates_get(const struct api_request *req, struct api_response *resp)
{
	if (req->param == NULL || !validate_template_name(req->param)) {
		api_error(resp, 404, "not_found", "no such template", NULL);
		return;
	}
	templates_show(req, req->param, 200, resp);
}

void
api_templates_delete(const struct api_request *req, struct api_response *resp)
{
	int rc;

	if (req->param == NULL || !validate_template_name(req->param)) {
		api_error(resp, 404, "not_found", "no such template", NULL);
		return;
	}
	rc = store_template_delete(req->store, api_project(req), req->param);
	if (rc == STORE_ERR_NOT_FOUND) {
		api_error(resp, 404, "not_found", "no such template", NULL);
		return;
	}
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return;
	}
	log_info("template deleted", "template=%s request_id=%s", req->param, req->request_id);
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
	resp->status = 204;
}

/*
 * GET /v1/templates: a page of the project's templates by name (bytewise),
 * {"data":[...],"next_cursor":...} (api_page.h).
 */
void
api_templates_list(const struct api_request *req, struct api_response *resp)
{
	struct api_page pg;
	char **jsons = NULL, *next = NULL;
	size_t n = 0;
	cJSON *out = NULL, *arr;
	int rc;

	if (api_page_parse(req, "templates", &pg, resp) != 0)
		return;
	rc = store_template_list(req->store, api_project(req), pg.has_after ? pg.after : NULL,
	    pg.limit, &jsons, &n, &next);
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return;
	}
	out = cJSON_CreateObject();
	if (out == NULL || (arr = cJSON_AddArrayToObject(out, "data")) == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		cJSON *t = jsons[i] != NULL ? cJSON_Parse(jsons[i]) : NULL;

		if (t == NULL)
			continue;   /* a damaged entry is left out */
		if (!cJSON_AddItemToArray(arr, t)) {
			cJSON_Delete(t);
			goto oom;
		}
	}
	api_page_answer(resp, out, "templates", next);
	out = NULL;
	goto out;
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
out:
	cJSON_Delete(out);
	for (size_t i = 0; i < n; i++)
		free(jsons[i]);
	free(jsons);
	free(next);
}
