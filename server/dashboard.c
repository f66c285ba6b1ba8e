/*
 * dashboard.c - the operator pages: GET / (index.html), GET /ui/<name>
 * (its scripts, styles and icon) and GET /favicon.ico.
 *
 * Owns the answers for the files of server/ui, embedded at build time by
 * server/ui/uigen.c into the generated "ui_assets.h" (name, Content-Type,
 * bytes, ETag): the page works offline, with no CDN and nothing read from
 * disk. Every answer carries the same strict Content-Security-Policy
 * (DASHBOARD_CSP: scripts and styles from this origin only, no inline
 * script, no plugin, no framing of the page; frames only for the dev-mail
 * viewer, whose sandboxed srcdoc/blob frames inherit this policy and so
 * reach no other host), X-Content-Type-Options: nosniff, no referrer, and
 * Cache-Control: no-cache with an ETag (a browser revalidates and gets a
 * 304 while the binary is the same). The pages themselves are public like
 * /metrics and hold nothing secret: the data comes from /v1 calls the
 * browser makes with the key the operator types in (server/ui/app.js), so
 * nothing here needs a key, touches Redis or sees a project - but for
 * GET /v1/whoami, with which the page checks the key it was given and
 * names the project it shows (the key's, or every one for an admin key).
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "ui_assets.h"

/*
 * style-src allows inline styles: captured mail is HTML with <style> and
 * style="" everywhere, rendered in a frame that inherits this policy; the
 * page itself never builds markup from data (textContent only), and no
 * inline script runs anywhere (script-src 'self').
 */
#define DASHBOARD_CSP \
	"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " \
	"img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; " \
	"frame-src 'self' blob:; child-src 'self' blob:; worker-src 'none'; " \
	"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static void
dashboard_headers(struct api_response *resp)
{
	api_header(resp, "Content-Security-Policy", DASHBOARD_CSP);
	api_header(resp, "X-Content-Type-Options", "nosniff");
	api_header(resp, "Referrer-Policy", "no-referrer");
	api_header(resp, "X-Frame-Options", "DENY");
}

static const struct ui_asset *
dashboard_find(const char *name)
{
	if (name == NULL)
		return NULL;
	for (const struct ui_asset *a = ui_assets; a->name != NULL; a++)
		if (strcmp(a->name, name) == 0)
			return a;
	return NULL;
}

/* dashboard_fresh - 1 when If-None-Match names this ETag (or is "*"). */
static int
dashboard_fresh(const struct api_request *req, const struct ui_asset *a)
{
	const char *inm = api_request_header(req, "If-None-Match");

	if (inm == NULL)
		return 0;
	return strcmp(inm, "*") == 0 || strstr(inm, a->etag) != NULL;
}

static void
dashboard_send(const struct api_request *req, struct api_response *resp,
    const struct ui_asset *a)
{
	char *body;

	if (dashboard_fresh(req, a)) {
		api_body(resp, 304, NULL);
		api_header(resp, "Content-Type", a->type);
	} else {
		body = malloc(a->len + 1);
		if (body == NULL) {
			api_error(resp, 500, "internal_error", "out of memory", NULL);
			return;
		}
		memcpy(body, a->data, a->len);
		body[a->len] = '\0';
		api_body(resp, 200, body);
		resp->body_len = a->len;
		api_header(resp, "Content-Type", a->type);
	}
	api_header(resp, "Cache-Control", "no-cache");
	api_header(resp, "ETag", a->etag);
	dashboard_headers(resp);
}

void
dashboard_index_get(const struct api_request *req, struct api_response *resp)
{
	const struct ui_asset *a = dashboard_find("index.html");

	if (a == NULL) {
		api_error(resp, 500, "internal_error", "the dashboard was built without index.html",
		    NULL);
		return;
	}
	dashboard_send(req, resp, a);
}

void
dashboard_asset_get(const struct api_request *req, struct api_response *resp)
{
	const struct ui_asset *a = dashboard_find(req->param);

	if (a == NULL) {
		api_error(resp, 404, "not_found", "no such file", NULL);
		dashboard_headers(resp);
		return;
	}
	dashboard_send(req, resp, a);
}

/* Browsers ask for /favicon.ico whatever the page says: no content, cached for a day. */
void
dashboard_favicon_get(const struct api_request *req, struct api_response *resp)
{
	(void)req;
	api_body(resp, 204, NULL);
	api_header(resp, "Cache-Control", "public, max-age=86400");
	dashboard_headers(resp);
}

/* GET /v1/whoami (a read key): who the key is and which project's data it sees. */
void
dashboard_whoami_get(const struct api_request *req, struct api_response *resp)
{
	cJSON *o = cJSON_CreateObject();

	if (o == NULL || cJSON_AddStringToObject(o, "key", req->tenant ? req->tenant : "") == NULL ||
	    cJSON_AddStringToObject(o, "project", api_project(req)) == NULL ||
	    cJSON_AddBoolToObject(o, "all_projects", req->all_projects != 0) == NULL) {
		cJSON_Delete(o);
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		return;
	}
	api_json(resp, 200, o);
}
