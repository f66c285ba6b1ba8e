/*
 * api_webhooks.c - the /v1/webhooks resource: create, list (paginated, by
 * id), read, change (PATCH: url, events, description, enabled) and delete
 * the webhook endpoints kept in the store; send one a signed webhook.test
 * event now (.../test), rotate its secret with an overlap (.../rotate),
 * list its recent attempts (.../deliveries) and send one of them again
 * (.../deliveries/{event_id}/retry). The default endpoint from
 * TXMAIL_WEBHOOK_URL is listed as id "default" for the projects of
 * TXMAIL_WEBHOOK_PROJECTS and can be read, tested, and its deliveries
 * listed and retried; PATCH, DELETE and rotate on it answer 409 conflict
 * (the environment configures it).
 *
 * Owns the JSON shapes of every /v1/webhooks route. A new endpoint gets a generated "whsec_" secret, shown
 * once in the 201 answer and never again (the list leaves it out). The
 * dispatcher (webhook.c) picks a new endpoint up before it fans out the
 * next event. An endpoint belongs to the project that created it: it gets
 * only that project's events, and another project neither lists nor deletes
 * it (404, as a missing one). It must never log a secret and never include
 * microhttpd.h.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_page.h"
#include "log.h"
#include "netguard.h"
#include "store.h"
#include "util.h"
#include "webhook.h"

#define WHAPI_ID_PREFIX "wh_"
#define WHAPI_ID_CHARS 26
#define WHAPI_MAX_EVENTS 16     /* entries accepted in "events" (duplicates included) */
#define WHAPI_DESC_MAX 256      /* bytes of "description" */
#define WHAPI_DEFAULT "default"
#define WHAPI_OVERLAP_DEFAULT 86400   /* rotate: seconds both secrets sign */
#define WHAPI_OVERLAP_MAX (7 * 86400)
/*
 * .../test and .../retry wait for the receiver (up to
 * WEBHOOK_SEND_NOW_TIMEOUT_MAX) on a thread each, the connection parked:
 * at most this many at once in a process; more answer 503 with Retry-After.
 */
#define WHAPI_SEND_MAX 16
static atomic_int whapi_sending;

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
	if ((ep->description && ep->description[0] ?
	    cJSON_AddStringToObject(o, "description", ep->description) :
	    cJSON_AddNullToObject(o, "description")) == NULL ||
	    cJSON_AddBoolToObject(o, "enabled", !ep->disabled) == NULL)
		goto fail;
	if (ep->disabled) {
		util_rfc3339(ep->disabled_ms, at, sizeof(at));
		if (cJSON_AddStringToObject(o, "disabled_reason", ep->disabled_reason ?
		    ep->disabled_reason : "") == NULL ||
		    cJSON_AddStringToObject(o, "disabled_at", at) == NULL)
			goto fail;
	} else if (cJSON_AddNullToObject(o, "disabled_reason") == NULL ||
	    cJSON_AddNullToObject(o, "disabled_at") == NULL) {
		goto fail;
	}
	if (api_json_time(o, "previous_secret_expires_at", ep->secret_old && ep->secret_old[0] &&
	    ep->old_until_ms > util_now_ms() ? ep->old_until_ms : 0) != 0)
		goto fail;
	if (cJSON_AddStringToObject(o, "configured_by", strcmp(ep->id, WHAPI_DEFAULT) == 0 ?
	    "environment" : "api") == NULL)
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
			    "unknown event type (want message.delivered, message.deferred, message.failed, "
			    "message.bounced, message.complained or webhook.test)", field);
			return -1;
		}
		wanted[k] = 1;
		i++;
	}
	return 0;
}

/*
 * whapi_parse_description - "description" (absent: *out unchanged; null or
 * "": ""; else a string of at most WHAPI_DESC_MAX bytes without control
 * characters). 0, or -1 with a 422 queued.
 */
static int
whapi_parse_description(const cJSON *d, const char **out, struct api_response *resp)
{
	if (d == NULL)
		return 0;
	if (cJSON_IsNull(d)) {
		*out = "";
		return 0;
	}
	if (!cJSON_IsString(d) || d->valuestring == NULL) {
		api_error(resp, 422, "validation_error", "description must be a string", "description");
		return -1;
	}
	if (strlen(d->valuestring) > WHAPI_DESC_MAX) {
		api_error(resp, 422, "validation_error", "description is longer than 256 bytes",
		    "description");
		return -1;
	}
	for (const unsigned char *p = (const unsigned char *)d->valuestring; *p; p++)
		if (*p < 0x20 || *p == 0x7f) {
			api_error(resp, 422, "validation_error", "description must not contain control "
			    "characters", "description");
			return -1;
		}
	*out = d->valuestring;
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
	{
		const char *desc = NULL;

		if (whapi_parse_description(cJSON_GetObjectItemCaseSensitive(req->json, "description"),
		    &desc, resp) != 0)
			goto out;
		ep.description = (char *)desc;
	}
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

/* whapi_default_visible - 1 when TXMAIL_WEBHOOK_URL is set and the request's project gets its events. */
static int
whapi_default_visible(const struct api_request *req)
{
	const struct config *c = req->cfg;

	if (c == NULL || c->webhook_url[0] == '\0')
		return 0;
	return req->all_projects ||
	    webhook_projects_match(c->webhook_projects[0] ? c->webhook_projects : STORE_PROJECT_DEFAULT,
	    api_project(req));
}

/*
 * whapi_default_own - 1 when the default endpoint gets the events of the
 * caller's project alone (TXMAIL_WEBHOOK_PROJECTS names just it), or the
 * key sees every project: only then may it read the endpoint's deliveries
 * (other projects' event ids, types and the receiver's answers to them)
 * or resend one.
 */
static int
whapi_default_own(const struct api_request *req)
{
	const char *list = req->cfg->webhook_projects[0] ? req->cfg->webhook_projects :
	    STORE_PROJECT_DEFAULT;
	const char *me = api_project(req);

	if (req->all_projects)
		return 1;
	if (me == NULL || me[0] == '\0')
		me = STORE_PROJECT_DEFAULT;
	return strcmp(list, me) == 0;
}

/* whapi_default_shared - the 403 of a default endpoint's deliveries another project shares; 1 when answered */
static int
whapi_default_shared(const struct api_request *req, const struct store_endpoint *ep,
    const struct store_endpoint *def, struct api_response *resp)
{
	if (ep != def || whapi_default_own(req))
		return 0;
	api_error(resp, 403, "forbidden", "the default endpoint (TXMAIL_WEBHOOK_URL) also gets other "
	    "projects' events (TXMAIL_WEBHOOK_PROJECTS): its deliveries need a scope admin key", NULL);
	return 1;
}

/* whapi_default_ep - the default endpoint as a store_endpoint (pointers into cfg; nothing to free). */
static void
whapi_default_ep(const struct api_request *req, struct store_endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	ep->id = (char *)WHAPI_DEFAULT;
	ep->url = (char *)req->cfg->webhook_url;
	ep->secret = (char *)req->cfg->webhook_secret;
	ep->description = (char *)"TXMAIL_WEBHOOK_URL";
	ep->project = (char *)STORE_PROJECT_DEFAULT;
}

/*
 * whapi_json_full - the shape of GET /v1/webhooks/{id}: whapi_to_json plus
 * backlog and last_failure (the default endpoint has no created_at). NULL
 * with the error in resp.
 */
static cJSON *
whapi_json_full(const struct api_request *req, const struct store_endpoint *ep,
    struct api_response *resp)
{
	cJSON *o = whapi_to_json(ep, 0);

	if (o == NULL) {
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		return NULL;
	}
	if (strcmp(ep->id, WHAPI_DEFAULT) == 0)
		cJSON_DeleteItemFromObjectCaseSensitive(o, "created_at");
	if (whapi_add_health(req, ep, o, resp) != 0) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static int
whapi_cmp_id(const void *a, const void *b)
{
	const struct store_endpoint *const *x = a, *const *y = b;

	return strcmp((*x)->id, (*y)->id);
}

void
api_webhooks_list(const struct api_request *req, struct api_response *resp)
{
	struct store_endpoint *eps = NULL, **vis = NULL, def;
	struct api_page pg;
	size_t n = 0, nv = 0, taken = 0;
	const char *last = NULL;
	cJSON *root = NULL, *data;
	int rc;

	if (api_page_parse(req, "webhooks", &pg, resp) != 0)
		return;
	rc = store_endpoint_list(req->store, &eps, &n);
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		goto out;
	}
	vis = calloc(n + 1, sizeof(*vis));
	root = cJSON_CreateObject();
	data = root != NULL ? cJSON_AddArrayToObject(root, "data") : NULL;
	if (vis == NULL || data == NULL)
		goto oom;
	if (whapi_default_visible(req)) {
		whapi_default_ep(req, &def);
		vis[nv++] = &def;
	}
	for (size_t i = 0; i < n; i++)
		if (api_project_sees(req, eps[i].project) && eps[i].id != NULL)
			vis[nv++] = &eps[i];   /* else another project's endpoint */
	/* the order is by id ("default" before "wh_..."); the cursor is the last id */
	qsort(vis, nv, sizeof(*vis), whapi_cmp_id);
	for (size_t i = 0; i < nv; i++) {
		cJSON *o;

		if (pg.has_after && strcmp(vis[i]->id, pg.after) <= 0)
			continue;
		if (taken == pg.limit)
			break;
		o = whapi_json_full(req, vis[i], resp);
		if (o == NULL)
			goto out;
		if (!cJSON_AddItemToArray(data, o)) {
			cJSON_Delete(o);
			goto oom;
		}
		taken++;
		last = i + 1 < nv ? vis[i]->id : NULL;
	}
	if (taken < pg.limit)
		last = NULL;
	api_page_answer(resp, root, "webhooks", last);
	root = NULL;
	goto out;
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
out:
	cJSON_Delete(root);
	free(vis);
	store_endpoints_free(eps, n);
}

/*
 * whapi_lookup - the endpoint id as the request may see it: the default
 * one (*eps NULL, def filled) or one of the store's (*eps the list to free
 * with store_endpoints_free(*eps, *n), *found in it). 0, or -1 with the
 * answer in resp (404 for a missing one or another project's).
 */
static int
whapi_lookup(const struct api_request *req, const char *id, struct store_endpoint **eps, size_t *n,
    struct store_endpoint *def, struct store_endpoint **found, struct api_response *resp)
{
	int rc;

	*eps = NULL;
	*n = 0;
	*found = NULL;
	if (id != NULL && strcmp(id, WHAPI_DEFAULT) == 0 && whapi_default_visible(req)) {
		whapi_default_ep(req, def);
		*found = def;
		return 0;
	}
	if (!whapi_id_ok(id)) {
		api_error(resp, 404, "not_found", "no such webhook endpoint", NULL);
		return -1;
	}
	rc = store_endpoint_list(req->store, eps, n);
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return -1;
	}
	for (size_t i = 0; i < *n; i++)
		if ((*eps)[i].id != NULL && strcmp((*eps)[i].id, id) == 0 &&
		    api_project_sees(req, (*eps)[i].project)) {
			*found = &(*eps)[i];
			return 0;
		}
	store_endpoints_free(*eps, *n);
	*eps = NULL;
	*n = 0;
	api_error(resp, 404, "not_found", "no such webhook endpoint", NULL);
	return -1;
}

/*
 * whapi_changeable - the endpoint id of a change (PATCH, rotate, DELETE):
 * 409 for the default endpoint (the environment configures it), 404 for
 * one that cannot be an id. 0, or -1 with the answer in resp.
 */
static int
whapi_changeable(const struct api_request *req, const char *id, struct api_response *resp)
{
	if (id != NULL && strcmp(id, WHAPI_DEFAULT) == 0 && whapi_default_visible(req)) {
		api_error(resp, 409, "conflict", "the default endpoint is configured by the environment "
		    "(TXMAIL_WEBHOOK_URL, TXMAIL_WEBHOOK_SECRET); change it there", NULL);
		return -1;
	}
	if (!whapi_id_ok(id)) {
		api_error(resp, 404, "not_found", "no such webhook endpoint", NULL);
		return -1;
	}
	return 0;
}

void
api_webhooks_get(const struct api_request *req, struct api_response *resp)
{
	struct store_endpoint *eps, *ep, def;
	size_t n;
	cJSON *o;

	if (whapi_lookup(req, req->param, &eps, &n, &def, &ep, resp) != 0)
		return;
	o = whapi_json_full(req, ep, resp);
	if (o != NULL)
		api_json(resp, 200, o);
	store_endpoints_free(eps, n);
}

/* whapi_answer_current - answer 200 with the endpoint id as it is now (after a change). */
static void
whapi_answer_current(const struct api_request *req, const char *id, struct api_response *resp)
{
	struct store_endpoint *eps, *ep, def;
	size_t n;
	cJSON *o;

	if (whapi_lookup(req, id, &eps, &n, &def, &ep, resp) != 0)
		return;
	o = whapi_json_full(req, ep, resp);
	if (o != NULL)
		api_json(resp, 200, o);
	store_endpoints_free(eps, n);
}

void
api_webhooks_patch(const struct api_request *req, struct api_response *resp)
{
	static const char *const known[] = { "url", "events", "description", "enabled" };
	struct store_endpoint_patch p;
	const cJSON *url, *evs, *en, *m;
	int wanted[WEBHOOK_NTYPES];
	const char *types[WEBHOOK_NTYPES];
	char why[512];
	int rc;

	if (whapi_changeable(req, req->param, resp) != 0)
		return;
	memset(&p, 0, sizeof(p));
	p.enabled = -1;
	p.now_ms = req->now_ms;
	cJSON_ArrayForEach(m, req->json) {
		size_t k;

		for (k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			if (m->string != NULL && strcmp(m->string, known[k]) == 0)
				break;
		if (k == sizeof(known) / sizeof(known[0])) {
			api_error(resp, 422, "validation_error", "unknown member (want url, events, "
			    "description or enabled)", m->string);
			return;
		}
	}
	url = cJSON_GetObjectItemCaseSensitive(req->json, "url");
	if (url != NULL) {
		if (!cJSON_IsString(url) || url->valuestring == NULL) {
			api_error(resp, 422, "validation_error", "url must be a string", "url");
			return;
		}
		if (webhook_url_check(url->valuestring, why, sizeof(why)) != 0 ||
		    netguard_url_check(url->valuestring, req->cfg != NULL && req->cfg->webhook_allow_private,
		    NETGUARD_RESOLVE_MS, why, sizeof(why)) != 0) {
			api_error(resp, 422, "validation_error", why, "url");
			return;
		}
		p.url = url->valuestring;
	}
	evs = cJSON_GetObjectItemCaseSensitive(req->json, "events");
	if (evs != NULL) {
		if (whapi_parse_events(evs, wanted, resp) != 0)
			return;
		p.set_events = 1;
		for (size_t k = 0; k < WEBHOOK_NTYPES; k++)
			if (wanted[k])
				types[p.nevents++] = webhook_event_types[k];
		if (p.nevents == WEBHOOK_NTYPES)
			p.nevents = 0;
		p.events = types;
	}
	if (whapi_parse_description(cJSON_GetObjectItemCaseSensitive(req->json, "description"),
	    &p.description, resp) != 0)
		return;
	en = cJSON_GetObjectItemCaseSensitive(req->json, "enabled");
	if (en != NULL) {
		if (!cJSON_IsBool(en)) {
			api_error(resp, 422, "validation_error", "enabled must be true or false", "enabled");
			return;
		}
		p.enabled = cJSON_IsTrue(en) ? 1 : 0;
		p.reason = "disabled through the API (PATCH enabled:false)";
		/* a replay resends what is kept: not what is older than the retention */
		p.keep_after_ms = req->now_ms - (int64_t)((req->cfg != NULL ? req->cfg->webhook_max_age : 259200) *
		    1000.0);
	}
	rc = store_endpoint_update(req->store, req->param, req->all_projects ? NULL : api_project(req), &p);
	if (rc != STORE_OK) {
		if (rc == STORE_ERR_NOT_FOUND)
			api_error(resp, 404, "not_found", "no such webhook endpoint", NULL);
		else
			api_store_error(resp, rc);
		return;
	}
	log_info("webhook endpoint changed", "endpoint=%s url=%s events=%s description=%s enabled=%s "
	    "request_id=%s", req->param, p.url ? "changed" : "kept", p.set_events ? "changed" : "kept",
	    p.description ? "changed" : "kept", p.enabled < 0 ? "kept" : p.enabled ? "true" : "false",
	    req->request_id);
	whapi_answer_current(req, req->param, resp);
}

void
api_webhooks_rotate(const struct api_request *req, struct api_response *resp)
{
	const cJSON *ov = cJSON_GetObjectItemCaseSensitive(req->json, "overlap_seconds");
	double overlap = WHAPI_OVERLAP_DEFAULT;
	char secret[64], at[40];
	int64_t until = 0;
	cJSON *o;
	int rc;

	if (whapi_changeable(req, req->param, resp) != 0)
		return;
	if (ov != NULL) {
		if (!cJSON_IsNumber(ov) || ov->valuedouble < 0 || ov->valuedouble > WHAPI_OVERLAP_MAX ||
		    ov->valuedouble != (double)(int64_t)ov->valuedouble) {
			api_error(resp, 422, "validation_error", "overlap_seconds must be an integer 0..604800",
			    "overlap_seconds");
			return;
		}
		overlap = ov->valuedouble;
	}
	if (webhook_new_secret(secret, sizeof(secret)) != 0) {
		api_error(resp, 500, "internal_error", "cannot generate a secret", NULL);
		return;
	}
	if (overlap > 0)
		until = req->now_ms + (int64_t)(overlap * 1000.0);
	rc = store_endpoint_rotate(req->store, req->param, req->all_projects ? NULL : api_project(req),
	    secret, until);
	if (rc != STORE_OK) {
		if (rc == STORE_ERR_NOT_FOUND)
			api_error(resp, 404, "not_found", "no such webhook endpoint", NULL);
		else
			api_store_error(resp, rc);
		goto out;
	}
	log_info("webhook endpoint secret rotated", "endpoint=%s overlap_seconds=%.0f request_id=%s",
	    req->param, overlap, req->request_id);
	o = cJSON_CreateObject();
	if (o == NULL || cJSON_AddStringToObject(o, "id", req->param) == NULL ||
	    cJSON_AddStringToObject(o, "secret", secret) == NULL) {
		cJSON_Delete(o);
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	if (until > 0) {
		util_rfc3339(until, at, sizeof(at));
		if (cJSON_AddStringToObject(o, "previous_secret_expires_at", at) == NULL) {
			cJSON_Delete(o);
			api_error(resp, 500, "internal_error", "out of memory", NULL);
			goto out;
		}
	} else if (cJSON_AddNullToObject(o, "previous_secret_expires_at") == NULL) {
		cJSON_Delete(o);
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	api_json(resp, 200, o);
out:
	memset(secret, 0, sizeof(secret));
}

/*
 * A test or retry being sent: the request is built on the HTTP thread,
 * sent on a thread of its own while the connection is parked (run), and
 * answered back on the HTTP thread (finish: the attempt into the
 * endpoint's deliveries log, a queued delivery settled on a 2xx).
 */
struct whapi_send {
	struct api_deferred d;     /* first: the deferred answer is this */
	const struct config *cfg;
	char *epid, *url, *secret, *old, *event_id, *type, *body;
	int attempt;
	int queued;                /* a delivery of the event is queued: settle it on a 2xx */
	int rc;                    /* webhook_send_now's */
	struct webhook_send_result res;
};

static void
whapi_send_free(struct api_deferred *d)
{
	struct whapi_send *s = (struct whapi_send *)d;

	if (s == NULL)
		return;
	free(s->epid);
	free(s->url);
	if (s->secret != NULL) {
		memset(s->secret, 0, strlen(s->secret));
		free(s->secret);
	}
	if (s->old != NULL) {
		memset(s->old, 0, strlen(s->old));
		free(s->old);
	}
	free(s->event_id);
	free(s->type);
	free(s->body);
	free(s);
}

static void
whapi_send_run(struct api_deferred *d)
{
	struct whapi_send *s = (struct whapi_send *)d;

	s->rc = webhook_send_now(s->cfg, s->url, s->secret, s->old, s->event_id, s->body, &s->res);
	atomic_fetch_sub(&whapi_sending, 1);
}

static void
whapi_send_finish(struct api_deferred *d, const struct api_request *req, struct api_response *resp)
{
	struct whapi_send *s = (struct whapi_send *)d;
	const struct webhook_send_result *res = &s->res;
	struct store_whlog lg;
	char member[160];
	int ok = res->status >= 200 && res->status < 300, rc;
	cJSON *o;

	if (s->rc != 0) {
		api_error(resp, 500, "internal_error", res->error, NULL);
		goto out;
	}
	memset(&lg, 0, sizeof(lg));
	lg.endpoint = s->epid;
	lg.event_id = s->event_id;
	lg.type = s->type;
	lg.attempt = s->attempt;
	lg.status = res->status;
	lg.duration_ms = res->duration_ms;
	lg.response = (char *)res->excerpt;
	lg.error = (char *)res->error;
	lg.at_ms = util_now_ms();
	lg.body = s->body;
	rc = store_webhook_log(req->store, &lg, 1);
	if (rc != STORE_OK)
		log_warn("cannot note a webhook attempt in its log", "endpoint=%s event_id=%s rc=%d", s->epid,
		    s->event_id, rc);
	if (ok && s->queued) {
		/* delivered now: the queued delivery is done (at-least-once: one in flight may still go) */
		snprintf(member, sizeof(member), "%s/%s", s->event_id, s->epid);
		rc = store_webhook_done(req->store, member);
		if (rc != STORE_OK)
			log_warn("cannot settle a queued webhook delivery after its retry", "endpoint=%s "
			    "event_id=%s rc=%d", s->epid, s->event_id, rc);
	}
	log_info("webhook sent on request", "endpoint=%s event_id=%s type=%s status=%ld duration_ms=%lld "
	    "request_id=%s", s->epid, s->event_id, s->type, res->status, (long long)res->duration_ms,
	    req->request_id);
	o = cJSON_CreateObject();
	if (o == NULL || cJSON_AddStringToObject(o, "event_id", s->event_id) == NULL ||
	    cJSON_AddBoolToObject(o, "ok", ok) == NULL ||
	    (res->status > 0 ? cJSON_AddNumberToObject(o, "status_code", (double)res->status) :
	    cJSON_AddNullToObject(o, "status_code")) == NULL ||
	    cJSON_AddNumberToObject(o, "duration_ms", (double)res->duration_ms) == NULL ||
	    cJSON_AddStringToObject(o, "response", res->excerpt) == NULL ||
	    (res->status == 0 ? cJSON_AddStringToObject(o, "error", res->error) :
	    cJSON_AddNullToObject(o, "error")) == NULL) {
		cJSON_Delete(o);
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	api_json(resp, 200, o);
out:
	whapi_send_free(d);
}

/*
 * whapi_send_answer - send body (event_id, type) to ep now and answer 200
 * with what the receiver said (whapi_send: deferred when req->can_run,
 * else here); attempt numbers it in the deliveries log. At most
 * WHAPI_SEND_MAX at once, else 503.
 */
static void
whapi_send_answer(const struct api_request *req, const struct store_endpoint *ep,
    const char *event_id, const char *type, const char *body, int attempt, int queued,
    struct api_response *resp)
{
	const char *old = ep->secret_old && ep->secret_old[0] && ep->old_until_ms > util_now_ms() ?
	    ep->secret_old : NULL;
	struct whapi_send *s;

	if (atomic_fetch_add(&whapi_sending, 1) >= WHAPI_SEND_MAX) {
		atomic_fetch_sub(&whapi_sending, 1);
		api_error(resp, 503, "unavailable", "too many tests and retries are being sent; retry in a "
		    "second", NULL);
		api_header(resp, "Retry-After", "1");
		return;
	}
	s = calloc(1, sizeof(*s));
	if (s != NULL) {
		s->cfg = req->cfg;
		s->epid = strdup(ep->id);
		s->url = strdup(ep->url);
		s->secret = strdup(ep->secret ? ep->secret : "");
		s->old = old ? strdup(old) : NULL;
		s->event_id = strdup(event_id);
		s->type = strdup(type);
		s->body = strdup(body);
		s->attempt = attempt;
		s->queued = queued;
		s->d.run = whapi_send_run;
		s->d.finish = whapi_send_finish;
		s->d.discard = whapi_send_free;
	}
	if (s == NULL || !s->epid || !s->url || !s->secret || (old && !s->old) || !s->event_id ||
	    !s->type || !s->body) {
		atomic_fetch_sub(&whapi_sending, 1);
		whapi_send_free(s != NULL ? &s->d : NULL);
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		return;
	}
	if (req->can_run) {
		resp->deferred = &s->d;   /* sent on a thread of its own, answered in finish */
		return;
	}
	whapi_send_run(&s->d);
	whapi_send_finish(&s->d, req, resp);
}

void
api_webhooks_test(const struct api_request *req, struct api_response *resp)
{
	struct store_endpoint *eps, *ep, def;
	char id[64], at[40];
	cJSON *ev = NULL, *data;
	char *body = NULL;
	size_t n;

	if (whapi_lookup(req, req->param, &eps, &n, &def, &ep, resp) != 0)
		return;
	if (util_random_id("evt_", id, sizeof(id)) != 0) {
		api_error(resp, 500, "internal_error", "cannot generate an id", NULL);
		goto out;
	}
	util_rfc3339(req->now_ms, at, sizeof(at));
	ev = cJSON_CreateObject();
	if (ev == NULL || cJSON_AddStringToObject(ev, "id", id) == NULL ||
	    cJSON_AddStringToObject(ev, "type", "webhook.test") == NULL ||
	    cJSON_AddStringToObject(ev, "created_at", at) == NULL ||
	    (data = cJSON_AddObjectToObject(ev, "data")) == NULL ||
	    cJSON_AddStringToObject(data, "endpoint_id", ep->id) == NULL ||
	    (body = cJSON_PrintUnformatted(ev)) == NULL) {
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	whapi_send_answer(req, ep, id, "webhook.test", body, 1, 0, resp);
out:
	cJSON_free(body);
	cJSON_Delete(ev);
	store_endpoints_free(eps, n);
}

void
api_webhooks_deliveries(const struct api_request *req, struct api_response *resp)
{
	struct store_endpoint *eps, *ep, def;
	struct store_whlog *rows = NULL;
	struct api_page pg;
	size_t n, nr = 0, shown;
	cJSON *root = NULL, *data;
	char at[40];
	int rc;

	if (api_page_parse(req, "deliveries", &pg, resp) != 0)
		return;
	if (whapi_lookup(req, req->param, &eps, &n, &def, &ep, resp) != 0)
		return;
	if (whapi_default_shared(req, ep, &def, resp))
		goto out;
	rc = store_webhook_log_list(req->store, ep->id, pg.has_after ? pg.after : NULL, pg.limit + 1,
	    &rows, &nr);
	if (rc != STORE_OK) {
		if (rc == STORE_ERR_PROTO)
			api_error(resp, 422, "validation_error", "not a cursor of this list", "cursor");
		else
			api_store_error(resp, rc);
		goto out;
	}
	shown = nr > pg.limit ? pg.limit : nr;
	root = cJSON_CreateObject();
	data = root != NULL ? cJSON_AddArrayToObject(root, "data") : NULL;
	if (data == NULL)
		goto oom;
	for (size_t i = 0; i < shown; i++) {
		const struct store_whlog *w = &rows[i];
		cJSON *o = cJSON_CreateObject();

		if (o == NULL || !cJSON_AddItemToArray(data, o)) {
			cJSON_Delete(o);
			goto oom;
		}
		util_rfc3339(w->at_ms, at, sizeof(at));
		if (cJSON_AddStringToObject(o, "event_id", w->event_id) == NULL ||
		    cJSON_AddStringToObject(o, "type", w->type) == NULL ||
		    cJSON_AddNumberToObject(o, "attempt", w->attempt) == NULL ||
		    (w->status > 0 ? cJSON_AddNumberToObject(o, "status_code", (double)w->status) :
		    cJSON_AddNullToObject(o, "status_code")) == NULL ||
		    cJSON_AddNumberToObject(o, "duration_ms", (double)w->duration_ms) == NULL ||
		    cJSON_AddStringToObject(o, "response", w->response) == NULL ||
		    (w->error[0] ? cJSON_AddStringToObject(o, "error", w->error) :
		    cJSON_AddNullToObject(o, "error")) == NULL ||
		    cJSON_AddStringToObject(o, "attempted_at", at) == NULL)
			goto oom;
		if (api_json_time(o, "next_attempt_at", w->next_ms) != 0)
			goto oom;
	}
	api_page_answer(resp, root, "deliveries", nr > pg.limit ? rows[shown - 1].entry : NULL);
	root = NULL;
	goto out;
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
out:
	cJSON_Delete(root);
	store_whlogs_free(rows, nr);
	store_endpoints_free(eps, n);
}

/* whapi_event_id_ok - 1 for an event id as the dispatcher sends them: [A-Za-z0-9_-]{1,63}. */
static int
whapi_event_id_ok(const char *id)
{
	size_t n = id != NULL ? strlen(id) : 0;

	if (n == 0 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

void
api_webhooks_retry(const struct api_request *req, struct api_response *resp)
{
	/* the path is /v1/webhooks/{id}/deliveries/{event_id}/retry: param is the last '*' */
	static const char pre[] = "/v1/webhooks/";
	struct store_endpoint *eps = NULL, *ep, def;
	char epid[80], type[64];
	const char *p = req->path, *slash;
	char *body = NULL;
	size_t n = 0;
	int attempts = 0, queued = 0, rc;

	if (p == NULL || strncmp(p, pre, sizeof(pre) - 1) != 0 ||
	    (slash = strchr(p + sizeof(pre) - 1, '/')) == NULL ||
	    (size_t)(slash - p - (sizeof(pre) - 1)) >= sizeof(epid)) {
		api_error(resp, 404, "not_found", "no such webhook endpoint", NULL);
		return;
	}
	memcpy(epid, p + sizeof(pre) - 1, (size_t)(slash - p - (sizeof(pre) - 1)));
	epid[slash - p - (sizeof(pre) - 1)] = '\0';
	if (whapi_lookup(req, epid, &eps, &n, &def, &ep, resp) != 0)
		return;
	if (whapi_default_shared(req, ep, &def, resp))
		goto out;
	if (!whapi_event_id_ok(req->param)) {
		api_error(resp, 404, "not_found", "no such delivery", NULL);
		goto out;
	}
	rc = store_webhook_find(req->store, ep->id, req->param, &body, &attempts, &queued);
	if (rc != STORE_OK) {
		if (rc == STORE_ERR_NOT_FOUND)
			api_error(resp, 404, "not_found", "no such delivery (none queued, none among the "
			    "endpoint's recent attempts)", NULL);
		else
			api_store_error(resp, rc);
		goto out;
	}
	if (webhook_event_field(body, "type", type, sizeof(type)) < 0)
		type[0] = '\0';
	whapi_send_answer(req, ep, req->param, type, body, attempts + 1, queued, resp);
out:
	free(body);
	store_endpoints_free(eps, n);
}

void
api_webhooks_delete(const struct api_request *req, struct api_response *resp)
{
	int rc;

	if (whapi_changeable(req, req->param, resp) != 0)
		return;
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
