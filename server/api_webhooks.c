/*
 * api_webhooks.c - the /v1/webhooks resource: create, list and delete the
 * webhook endpoints kept in the store (the default endpoint from
 * TXMAIL_WEBHOOK_URL is configuration, not a resource, and is not listed).
 *
 * Owns the JSON shapes of POST /v1/webhooks, GET /v1/webhooks and DELETE
 * /v1/webhooks/{id}. A new endpoint gets a generated "whsec_" secret, shown
 * once in the 201 answer and never again (the list leaves it out). The
 * dispatcher (webhook.c) picks a new endpoint up before it fans out the
 * next event. An endpoint belongs to the project that created it: it gets
 * only that project's events, and another project neither lists nor deletes
 * it (404, as a missing one). It must never log a secret and never include
 * microhttpd.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "netguard.h"
#include "store.h"
#include "util.h"
#include "webhook.h"

#define WHAPI_ID_PREFIX "wh_"
#define WHAPI_ID_CHARS 26
#define WHAPI_MAX_EVENTS 16     /* entries accepted in "events" (duplicates included) */

/* 1 when id matches ^wh_[0-9a-z]{26}$ */
static int
whapi_id_ok(const char *id)
{
	size_t plen = sizeof(WHAPI_ID_PREFIX) - 1;

	if (id == NULL || strncmp(id, WHAPI_ID_PREFIX, plen) != 0 ||
	    strlen(id) != plen + WHAPI_ID_CHARS)
		return 0;
	for (const char *p = id + plen; *p != '\0'; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
			return 0;
	return 1;
}

/*
 * whapi_to_json - the public shape of an endpoint; the secret only when
 * with_secret. "events" always lists the types it receives (every type
 * when its filter is empty). NULL on OOM.
 */
static cJSON *
whapi_to_json(const struct store_endpoint *ep, int with_secret)
{
	cJSON *o = cJSON_CreateObject(), *evs;
	char at[40];

	if (o == NULL)
		return NULL;
	util_rfc3339(ep->created_ms, at, sizeof(at));
	if (cJSON_AddStringToObject(o, "id", ep->id) == NULL ||
	    cJSON_AddStringToObject(o, "url", ep->url) == NULL ||
	    (evs = cJSON_AddArrayToObject(o, "events")) == NULL)
		goto fail;
	for (size_t i = 0; i < WEBHOOK_NTYPES; i++) {
		cJSON *s;

		if (!webhook_filter_match((const char *const *)ep->events, ep->nevents,
		    webhook_event_types[i]))
			continue;
		s = cJSON_CreateString(webhook_event_types[i]);
		if (s == NULL || !cJSON_AddItemToArray(evs, s)) {
			cJSON_Delete(s);
			goto fail;
		}
	}
	if (with_secret && cJSON_AddStringToObject(o, "secret", ep->secret) == NULL)
		goto fail;
	if (cJSON_AddStringToObject(o, "created_at", at) == NULL)
		goto fail;
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

/*
 * whapi_parse_events - the "events" member into wanted[] (one flag per
 * webhook_event_types entry). Absent, null or [] means every type (all
 * flags 0). 0, or -1 with a 422 queued.
 */
static int
whapi_parse_events(const cJSON *evs, int wanted[WEBHOOK_NTYPES], struct api_response *resp)
{
	char field[32];
	int i = 0;
	const cJSON *e;

	memset(wanted, 0, sizeof(int) * WEBHOOK_NTYPES);
	if (evs == NULL || cJSON_IsNull(evs))
		return 0;
	if (!cJSON_IsArray(evs)) {
		api_error(resp, 422, "validation_error", "events must be an array of event types",
		    "events");
		return -1;
	}
	if (cJSON_GetArraySize(evs) > WHAPI_MAX_EVENTS) {
		api_error(resp, 422, "validation_error", "events has too many entries", "events");
		return -1;
	}
	cJSON_ArrayForEach(e, evs) {
		size_t k;

		snprintf(field, sizeof(field), "events[%d]", i);
		if (!cJSON_IsString(e) || e->valuestring == NULL) {
			api_error(resp, 422, "validation_error", "event type must be a string", field);
			return -1;
		}
		for (k = 0; k < WEBHOOK_NTYPES; k++)
			if (strcmp(e->valuestring, webhook_event_types[k]) == 0)
				break;
		if (k == WEBHOOK_NTYPES) {
			api_error(resp, 422, "validation_error",
			    "unknown event type (want message.delivered, message.deferred, "
			    "message.failed, message.bounced or message.complained)", field);
			return -1;
		}
		wanted[k] = 1;
		i++;
	}
	return 0;
}

void
api_webhooks_create(const struct api_request *req, struct api_response *resp)
{
	const cJSON *url = cJSON_GetObjectItemCaseSensitive(req->json, "url");
	int wanted[WEBHOOK_NTYPES];
	const char *types[WEBHOOK_NTYPES];
	char id[64], secret[64], why[512], project[STORE_PROJECT_MAX + 1];
	struct store_endpoint ep;
	cJSON *out;
	int rc;

	memset(&ep, 0, sizeof(ep));
	if (url == NULL || cJSON_IsNull(url)) {
		api_error(resp, 422, "validation_error", "url is required", "url");
		goto out;
	}
	if (!cJSON_IsString(url) || url->valuestring == NULL) {
		api_error(resp, 422, "validation_error", "url must be a string", "url");
		goto out;
	}
	if (webhook_url_check(url->valuestring, why, sizeof(why)) != 0) {
		api_error(resp, 422, "validation_error", why, "url");
		goto out;
	}
	if (netguard_url_check(url->valuestring, req->cfg != NULL && req->cfg->webhook_allow_private,
	    NETGUARD_RESOLVE_MS, why, sizeof(why)) != 0) {
		api_error(resp, 422, "validation_error", why, "url");
		goto out;
	}
	if (whapi_parse_events(cJSON_GetObjectItemCaseSensitive(req->json, "events"), wanted,
	    resp) != 0)
		goto out;
	for (size_t k = 0; k < WEBHOOK_NTYPES; k++)
		if (wanted[k])
			types[ep.nevents++] = webhook_event_types[k];
	if (ep.nevents == WEBHOOK_NTYPES)
		ep.nevents = 0;     /* every type: also the ones added later */
	if (util_random_id(WHAPI_ID_PREFIX, id, sizeof(id)) != 0 ||
	    webhook_new_secret(secret, sizeof(secret)) != 0) {
		api_error(resp, 500, "internal_error", "cannot generate an id or a secret", NULL);
		goto out;
	}
	ep.id = id;
	ep.url = url->valuestring;
	ep.secret = secret;
	ep.events = (char **)types;
	ep.created_ms = req->now_ms;
	util_strlcpy(project, api_project(req), sizeof(project));
	ep.project = project;   /* it gets this project's events only */
	rc = store_endpoint_create(req->store, &ep);
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		goto out;
	}
	log_info("webhook endpoint created", "endpoint=%s events=%zu request_id=%s", id, ep.nevents,
	    req->request_id);
	out = whapi_to_json(&ep, 1);
	if (out == NULL) {
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	api_json(resp, 201, out);
	{
		char location[96];

		snprintf(location, sizeof(location), "/v1/webhooks/%s", id);
		api_header(resp, "Location", location);
	}
out:
	memset(secret, 0, sizeof(secret));
}

/*
 * whapi_add_health - "backlog" (deliveries queued for the endpoint) and
 * "last_failure" ({at, error} of its latest failed attempt, or null) into o.
 * 0, or -1 with the error answer in resp.
 */
static int
whapi_add_health(const struct api_request *req, const struct store_endpoint *ep, cJSON *o,
    struct api_response *resp)
{
	char fail[256], at[40];
	int64_t backlog = 0, fail_ms = 0;
	cJSON *lf;
	int rc = store_endpoint_health(req->store, ep->id, &backlog, &fail_ms, fail, sizeof(fail));

	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return -1;
	}
	if (cJSON_AddNumberToObject(o, "backlog", (double)backlog) == NULL)
		goto oom;
	if (fail_ms == 0) {
		if (cJSON_AddNullToObject(o, "last_failure") == NULL)
			goto oom;
		return 0;
	}
	util_rfc3339(fail_ms, at, sizeof(at));
	if ((lf = cJSON_AddObjectToObject(o, "last_failure")) == NULL ||
	    cJSON_AddStringToObject(lf, "at", at) == NULL ||
	    cJSON_AddStringToObject(lf, "error", fail) == NULL)
		goto oom;
	return 0;
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
	return -1;
}

void
api_webhooks_list(const struct api_request *req, struct api_response *resp)
{
	struct store_endpoint *eps = NULL;
	size_t n = 0;
	cJSON *root = NULL, *data;
	int rc;

	rc = store_endpoint_list(req->store, &eps, &n);
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		goto out;
	}
	root = cJSON_CreateObject();
	data = root != NULL ? cJSON_AddArrayToObject(root, "data") : NULL;
	if (data == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		cJSON *o;

		if (!api_project_sees(req, eps[i].project))
			continue;   /* another project's endpoint */
		o = whapi_to_json(&eps[i], 0);
		if (o == NULL || !cJSON_AddItemToArray(data, o)) {
			cJSON_Delete(o);
			goto oom;
		}
		if (whapi_add_health(req, &eps[i], o, resp) != 0)
			goto out;
	}
	api_json(resp, 200, root);
	root = NULL;
	goto out;
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
out:
	cJSON_Delete(root);
	store_endpoints_free(eps, n);
}

void
api_webhooks_delete(const struct api_request *req, struct api_response *resp)
{
	int rc;

	if (!whapi_id_ok(req->param)) {
		api_error(resp, 404, "not_found", "no such webhook endpoint", NULL);
		return;
	}
	/* another project's endpoint is answered as a missing one */
	rc = store_endpoint_delete(req->store, req->param,
	    req->all_projects ? NULL : api_project(req));
	if (rc == STORE_ERR_NOT_FOUND) {
		api_error(resp, 404, "not_found", "no such webhook endpoint", NULL);
		return;
	}
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return;
	}
	log_info("webhook endpoint deleted", "endpoint=%s request_id=%s", req->param,
	    req->request_id);
	resp->status = 204;
}
