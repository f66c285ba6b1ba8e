/*
 * api_keys.c - GET /v1/keys: the API keys an operator can see, in pages
 * (api_page.h, by name): a key of scope full sees its own project's keys,
 * a key of scope admin every project's (or, with ?project=, that one's).
 * Never a secret: the store holds only each key's SHA-256, and this
 * shows its first 12 hex characters, as `txmail keys list` does. Keys
 * are made and revoked with the CLI (`txmail keys create|revoke`).
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_page.h"
#include "store.h"
#include "util.h"

#define KEYS_KIND "keys"

static int
apikeys_cmp(const void *a, const void *b)
{
	const struct store_apikey *x = a, *y = b;

	return strcmp(x->name, y->name);
}

static cJSON *
apikeys_json(const struct store_apikey *k)
{
	cJSON *o = cJSON_CreateObject(), *allow;
	char at[40];

	if (o == NULL ||
	    cJSON_AddStringToObject(o, "name", k->name) == NULL ||
	    cJSON_AddStringToObject(o, "project", k->project != NULL ? k->project : k->name) == NULL ||
	    cJSON_AddStringToObject(o, "scope", k->scope != NULL ? k->scope : "full") == NULL ||
	    cJSON_AddStringToObject(o, "hash_prefix", k->hash_prefix != NULL ? k->hash_prefix : "") == NULL ||
	    (allow = cJSON_AddArrayToObject(o, "allow_ip")) == NULL)
		goto fail;
	if (k->allow != NULL && k->allow[0] != '\0') {
		char *copy = strdup(k->allow), *save = NULL;

		if (copy == NULL)
			goto fail;
		for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
			if (t[0] != '\0' && !cJSON_AddItemToArray(allow, cJSON_CreateString(t))) {
				free(copy);
				goto fail;
			}
		free(copy);
	}
	util_rfc3339(k->created_ms, at, sizeof(at));
	if (cJSON_AddStringToObject(o, "created_at", at) == NULL)
		goto fail;
	if (api_json_time(o, "last_used_at", k->last_used_ms) != 0)
		goto fail;
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

void
api_keys_list(const struct api_request *req, struct api_response *resp)
{
	struct api_page pg;
	struct store_apikey *v = NULL;
	size_t n = 0, shown = 0, i;
	const char *last = NULL;
	cJSON *out = NULL, *arr;
	int rc;

	if (api_page_parse(req, KEYS_KIND, &pg, resp) != 0)
		return;
	rc = store_key_list(req->store, &v, &n);
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), apikeys_cmp);
	out = cJSON_CreateObject();
	arr = out != NULL ? cJSON_AddArrayToObject(out, "data") : NULL;
	if (arr == NULL)
		goto oom;
	for (i = 0; i < n; i++) {
		cJSON *o;

		if (v[i].name == NULL || (pg.has_after && strcmp(v[i].name, pg.after) <= 0) ||
		    !api_project_sees(req, v[i].project != NULL ? v[i].project : v[i].name))
			continue;
		if (shown == pg.limit)
			break;   /* one more exists: a next page */
		if ((o = apikeys_json(&v[i])) == NULL || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			goto oom;
		}
		last = v[i].name;
		shown++;
	}
	api_page_answer(resp, out, KEYS_KIND, i < n ? last : NULL);   /* before the free: last is in v */
	store_apikeys_free(v, n);
	return;
oom:
	store_apikeys_free(v, n);
	cJSON_Delete(out);
	api_error(resp, 500, "internal_error", "out of memory", NULL);
}
