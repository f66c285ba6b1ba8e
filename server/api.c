/*
 * api.c - the response helpers of api.h, shared by http.c and every
 * resource (api_*.c, metrics.c, dashboard.c).
 *
 * Owns how a struct api_response is filled: headers (bounded, silently
 * capped at API_MAX_RESP_HEADERS), JSON and text bodies, the error envelope
 * {"error":{"type","message","field"?}} and the mapping of an unexpected
 * store failure to 503/500. It sits below both the HTTP layer and the
 * resources, so neither calls into the other for them: a resource reads
 * request headers through the lookup function http.c put in the request.
 * It also holds the one rule of which project's data a request may see
 * (api_project_sees). It must never include microhttpd.h, touch the network
 * or Redis, or call into http.c; on OOM the response becomes a 500 with a
 * constant body.
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *
api_project(const struct api_request *req)
{
	return req != NULL && req->project != NULL && req->project[0] != '\0' ? req->project :
	    STORE_PROJECT_DEFAULT;
}

int
api_project_sees(const struct api_request *req, const char *owner)
{
	if (req == NULL)
		return 0;
	if (req->all_projects)
		return 1;   /* a key of scope admin sees every project */
	return strcmp(api_project(req), owner != NULL && owner[0] != '\0' ? owner :
	    STORE_PROJECT_DEFAULT) == 0;
}

/* a constant body used when even the error envelope cannot be allocated */
static const char api_oom_body[] =
    "{\"error\":{\"type\":\"internal_error\",\"message\":\"out of memory\"}}";

const char *
api_request_header(const struct api_request *req, const char *name)
{
	if (req == NULL || req->lookup_header == NULL || req->conn == NULL)
		return NULL;
	return req->lookup_header(req->conn, name);
}

void
api_header(struct api_response *resp, const char *name, const char *value)
{
	struct api_header *h;

	if (resp->nheaders >= API_MAX_RESP_HEADERS)
		return;
	h = &resp->headers[resp->nheaders++];
	util_strlcpy(h->name, name, sizeof(h->name));
	util_strlcpy(h->value, value, sizeof(h->value));
}

const char *
api_request_query(const struct api_request *req, const char *name)
{
	if (req == NULL || req->lookup_query == NULL || req->conn == NULL)
		return NULL;
	return req->lookup_query(req->conn, name);
}

void
api_body(struct api_response *resp, int status, char *body)
{
	free(resp->body);
	resp->status = status;
	resp->body = body;
	resp->body_len = body != NULL ? strlen(body) : 0;
}

void
api_json_text(struct api_response *resp, int status, const char *json)
{
	api_body(resp, status, strdup(json));
	if (resp->body == NULL)
		api_body(resp, 500, strdup(api_oom_body));
}

int
api_json_time(cJSON *o, const char *name, int64_t ms)
{
	char at[40];

	if (ms <= 0)
		return cJSON_AddNullToObject(o, name) != NULL ? 0 : -1;
	util_rfc3339(ms, at, sizeof(at));
	return cJSON_AddStringToObject(o, name, at) != NULL ? 0 : -1;
}

int
api_json_stored(cJSON *o, const char *name, const char *json, cJSON *dflt)
{
	cJSON *j = json != NULL && json[0] != '\0' ? cJSON_Parse(json) : NULL;

	if (j != NULL && dflt != NULL && (j->type & 0xFF) == (dflt->type & 0xFF)) {
		cJSON_Delete(dflt);
		dflt = j;
	} else {
		cJSON_Delete(j);
	}
	if (dflt == NULL || !cJSON_AddItemToObject(o, name, dflt)) {
		cJSON_Delete(dflt);
		return -1;
	}
	return 0;
}

void
api_json(struct api_response *resp, int status, cJSON *obj)
{
	char *s = obj != NULL ? cJSON_PrintUnformatted(obj) : NULL;

	cJSON_Delete(obj);
	if (s == NULL) {
		api_body(resp, 500, strdup(api_oom_body));
		return;
	}
	api_body(resp, status, s);
}

void
api_error(struct api_response *resp, int status, const char *type,
    const char *message, const char *field)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *e = cJSON_AddObjectToObject(root, "error");

	if (e == NULL ||
	    cJSON_AddStringToObject(e, "type", type) == NULL ||
	    cJSON_AddStringToObject(e, "message", message != NULL ? message : "") == NULL ||
	    (field != NULL && field[0] != '\0' &&
	     cJSON_AddStringToObject(e, "field", field) == NULL)) {
		cJSON_Delete(root);
		api_body(resp, 500, strdup(api_oom_body));
		return;
	}
	api_json(resp, status, root);
}

void
api_store_error(struct api_response *resp, int rc)
{
	switch (rc) {
	case STORE_ERR_UNAVAILABLE:
		api_error(resp, 503, "unavailable", "storage is unavailable, retry later", NULL);
		api_header(resp, "Retry-After", "1");
		break;
	default:
		/* NOT_FOUND and CONFLICT mean something only to the handler that
		 * expects them (it answers 404/409 itself); here they are unexpected. */
		api_error(resp, 500, "internal_error", "internal error", NULL);
		break;
	}
}
