/*
 * api.h - the interface between http.c (libmicrohttpd glue) and the
 * resource handlers in api_*.c (and metrics.c, dashboard.c).
 *
 * http.c owns the socket, routing, authentication, body caps and JSON
 * parsing; a handler sees one complete, authenticated request
 * (struct api_request) and fills one struct api_response. Handlers never
 * include microhttpd.h, never write to the network and never call into
 * http.c: the response helpers below live in api.c, under both. The graph
 * is one-way (tests/integration/test_layering.py). To add a resource:
 * write api_<name>.c with handlers of type api_handler_fn, declare them
 * below, and add one line per method+path to the route table in http.c.
 */
#ifndef SERVER_API_H
#define SERVER_API_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "store.h"

#define API_MAX_RESP_HEADERS 8

struct api_events_client;   /* a live event stream (api_events.h) */

struct api_request {
	const struct config *cfg;
	struct store *store;        /* this HTTP thread's handle; NULL only on routes marked ROUTE_NO_STORE */
	const char *method;         /* "GET", "POST", ... */
	const char *path;           /* decoded path, no query string */
	const char *param;          /* the segment matched by '*' in the route, or NULL */
	const char *body;           /* NUL-terminated raw body ("" when none) */
	size_t body_len;
	const cJSON *json;          /* parsed body for routes that take JSON, else NULL */
	int64_t now_ms;             /* wall clock when the request completed */
	/* how api_request_header() reads a request header: set by http.c, called with conn */
	const char *(*lookup_header)(void *conn, const char *name);
	/* how api_request_query() reads a query argument (decoded): set by http.c */
	const char *(*lookup_query)(void *conn, const char *name);
	void *conn;                 /* opaque to everyone but http.c */
	const char *tenant;         /* who is calling: the API key's name, or "env:<hash prefix>" for a
	                             * TXMAIL_API_KEYS key; NULL on routes without auth */
	const char *project;        /* the project whose data this request may see: "default" for a
	                             * TXMAIL_API_KEYS key, else the key's project; NULL without auth */
	int all_projects;           /* 1 for a key of scope "admin": the data layer ignores project and
	                             * sees (and lists) every project's data; project still names the
	                             * key's own project (where what it creates belongs). 0 otherwise. */
	const char *request_id;     /* the X-Request-Id of this request (the client's, when sane,
	                             * else generated): log lines about it carry request_id= */
	int can_defer;              /* 1: the handler may answer with resp->deferred (http.c runs
	                             * its store work on the accept pipe, enqpipe.h) */
	int can_run;                /* 1: the handler may answer with a resp->deferred whose run is
	                             * set (http.c runs it on a thread of its own) */
};

struct api_response;

/*
 * A deferred answer: the handler built its store work (op) but did not
 * run it. http.c suspends the connection, has the accept pipe run op and,
 * back on the HTTP thread, calls finish with the same request (body and
 * JSON still there) to fill the response; finish frees d, or sets
 * resp->deferred = d again for one more round trip. discard frees
 * d when it is never finished (the server stopped first).
 */
struct api_deferred {
	struct store_enqueue_op op;
	void (*finish)(struct api_deferred *d, const struct api_request *req,
	    struct api_response *resp);
	void (*discard)(struct api_deferred *d);
	/*
	 * Set instead of op: blocking work with no store (a request to a
	 * webhook receiver), run on a thread of its own while the connection
	 * is parked, then finish as above. Only when req->can_run.
	 */
	void (*run)(struct api_deferred *d);
};

struct api_header {
	char name[64];
	char value[512];
};

struct api_response {
	int status;
	char *body;                 /* malloc'd; NULL for an empty body */
	size_t body_len;
	struct api_header headers[API_MAX_RESP_HEADERS];
	size_t nheaders;
	/*
	 * A streamed answer (Server-Sent Events) instead of body: http.c sends
	 * `status` with these headers and then whatever the client yields
	 * (api_events.h), and closes the client when the connection ends.
	 */
	struct api_events_client *stream;
	/* set instead of status and body when the handler defers (req->can_defer) */
	struct api_deferred *deferred;
};

typedef void api_handler_fn(const struct api_request *req, struct api_response *resp);

/*
 * --- helpers (api.c) -------------------------------------------------------
 * Below both http.c and the resources: a resource never calls into http.c.
 */

/* api_request_header - a request header (case-insensitive name) or NULL. */
const char *api_request_header(const struct api_request *req, const char *name);

/* api_request_query - a query-string argument (decoded; "" when given without a value) or NULL. */
const char *api_request_query(const struct api_request *req, const char *name);

/*
 * api_project - the project a request works in: where what it creates
 * belongs, and whose templates and suppressions it reads and writes
 * (req->project; "default" when none).
 */
const char *api_project(const struct api_request *req);

/*
 * api_project_sees - 1 when the request may see an object of project owner
 * (NULL or "": "default", as data stored before projects): its own project,
 * or any with all_projects. A handler answers an object it may not see
 * exactly as a missing one (404, same body: no existence oracle).
 */
int api_project_sees(const struct api_request *req, const char *owner);

/* api_header - add a response header (silently dropped past the cap). */
void api_header(struct api_response *resp, const char *name, const char *value);

/* api_body - respond with `status` and a malloc'd NUL-terminated body (taken; NULL: empty). */
void api_body(struct api_response *resp, int status, char *body);

/* api_json_text - respond with `status` and a copy of constant JSON text. On OOM a 500. */
void api_json_text(struct api_response *resp, int status, const char *json);

/*
 * api_json - respond with `status` and the compact JSON of obj. Takes
 * ownership of obj (deletes it). On OOM the response becomes a 500.
 */
void api_json(struct api_response *resp, int status, cJSON *obj);

/*
 * api_json_time - add name to o: the RFC 3339 time of ms when ms > 0,
 * else null. 0, or -1 out of memory.
 */
int api_json_time(cJSON *o, const char *name, int64_t ms);

/*
 * api_json_stored - add name to o: the stored JSON text json parsed, when
 * it is of dflt's kind (an object, an array), else dflt (a fresh node).
 * Takes dflt. 0, or -1 out of memory.
 */
int api_json_stored(cJSON *o, const char *name, const char *json, cJSON *dflt);

/*
 * api_error - the error envelope {"error":{"type","message","field"?}};
 * field NULL or "" leaves "field" out.
 */
void api_error(struct api_response *resp, int status, const char *type,
    const char *message, const char *field);

/*
 * api_store_error - a store failure the handler did not expect: 503
 * unavailable (+ Retry-After: 1) when Redis is unreachable, else 500.
 * Handlers answer the outcomes they expect (404, 409) themselves.
 */
void api_store_error(struct api_response *resp, int rc);

/* --- handlers ------------------------------------------------------------ */

/* api_messages.c */
api_handler_fn api_messages_create;   /* POST /v1/messages */
api_handler_fn api_messages_get;      /* GET /v1/messages/{id} */
api_handler_fn api_messages_batch;    /* POST /v1/messages/batch */
api_handler_fn api_messages_cancel;   /* DELETE /v1/messages/{id} */
api_handler_fn api_messages_list;     /* GET /v1/messages (api_search.c) */

/*
 * A message submitted over SMTP, ready to store (submission.c): the
 * envelope, the message as subm_msg_prepare left it (mime: malloc'd,
 * taken by api_messages_submit) and what its X-Txmail-* headers said.
 */
struct api_submitted {
	const char *id;                /* api_messages_new_id */
	const char *mail_from;         /* MAIL FROM */
	const char *const *rcpts;      /* RCPT TO, accepted ones */
	const char *const *kinds;      /* "to", "cc" or "bcc" each */
	size_t nrcpts;
	char *mime;
	size_t mime_len;
	const char *from;              /* the From field decoded ("" none: mail_from) */
	const char *from_email;        /* its address, for the DKIM key */
	const char *subject;
	const char *metadata_json;     /* "{}" */
	const char *tags_json;         /* "[]" */
	int priority_high;
	int64_t ttl_ms;                /* 0: TXMAIL_MAX_AGE */
};

/* api_messages_submit - store sm as POST /v1/messages would (202 or the error in resp). */
void api_messages_submit(const struct api_request *req, struct api_submitted *sm,
    struct api_response *resp);

/* api_messages_id_ms - the time (ms) a message id was made at (its first 10 characters after "msg_"), else dflt. Pure. */
int64_t api_messages_id_ms(const char *id, int64_t dflt);

/* api_messages_new_id - a new message id of partition part ("msg_<ulid>[p<k>]"). 0, or -1. */
int api_messages_new_id(unsigned part, char *id, size_t len);

/*
 * api_messages_partition - the partition of a send of project: from its
 * Idempotency-Key (NULL: none) when given, so that a retry meets the first
 * answer, else in turn.
 */
unsigned api_messages_partition(const struct config *cfg, const char *project,
    const char *idem_key);

/* pure helpers of api_messages.c (unit-tested) */
/* api_messages_idem_key_ok - 1 when key is 1..255 printable ASCII characters (space allowed). */
int api_messages_idem_key_ok(const char *key);
/*
 * api_messages_quote - s as a JSON string, quotes included, escaped byte for
 * byte as cJSON_PrintUnformatted escapes it (the 202 body is written by
 * hand with it); malloc'd, NULL when out of memory.
 */
char *api_messages_quote(const char *s);
/* api_messages_summary - the common status of n recipient statuses, else "partial" ("queued" when n is 0). */
const char *api_messages_summary(const char *const *statuses, size_t n);
/*
 * api_messages_expiry - when an undelivered recipient expires: max_age after
 * it becomes due (now, or send_at when later), but never later than now+ttl
 * (ttl_ms 0: none).
 */
int64_t api_messages_expiry(int64_t now_ms, int64_t send_at_ms, int64_t ttl_ms,
    int64_t max_age_ms);

/* api_templates.c */
api_handler_fn api_templates_put;     /* PUT /v1/templates/{name} */
api_handler_fn api_templates_get;     /* GET /v1/templates/{name} */
api_handler_fn api_templates_delete;  /* DELETE /v1/templates/{name} */
api_handler_fn api_templates_list;    /* GET /v1/templates */

/* api_suppressions.c */
api_handler_fn api_suppressions_list;   /* GET /v1/suppressions */
api_handler_fn api_suppressions_create; /* POST /v1/suppressions */
api_handler_fn api_suppressions_delete; /* DELETE /v1/suppressions/{email} */

/* api_keys.c */
api_handler_fn api_keys_list;         /* GET /v1/keys (scope full: its project's; admin: every project's) */

/* api_webhooks.c */
api_handler_fn api_webhooks_create;   /* POST /v1/webhooks */
api_handler_fn api_webhooks_list;     /* GET /v1/webhooks */
api_handler_fn api_webhooks_delete;   /* DELETE /v1/webhooks/{id} */
api_handler_fn api_webhooks_get;      /* GET /v1/webhooks/{id} */
api_handler_fn api_webhooks_patch;    /* PATCH /v1/webhooks/{id} */
api_handler_fn api_webhooks_test;     /* POST /v1/webhooks/{id}/test */
api_handler_fn api_webhooks_rotate;   /* POST /v1/webhooks/{id}/rotate */
api_handler_fn api_webhooks_deliveries;  /* GET /v1/webhooks/{id}/deliveries */
api_handler_fn api_webhooks_retry;    /* POST /v1/webhooks/{id}/deliveries/{event_id}/retry */

/* api_events.c (see api_events.h for the stream itself) */
api_handler_fn api_events_stream;     /* GET /v1/events/stream: resp->stream */

/* api_devmail.c: the dev sink's captured mail (`run --dev` only, cfg->dev; else 404) */
api_handler_fn api_devmail_list;        /* GET /dev/mail */
api_handler_fn api_devmail_get;         /* GET /dev/mail/{id} */
api_handler_fn api_devmail_raw;         /* GET /dev/mail/{id}/raw */
api_handler_fn api_devmail_attachment;  /* GET /dev/mail/{id}/attachments/{n} */
api_handler_fn api_devmail_delete;      /* DELETE /dev/mail */
/* api_devmail_id_ok - 1 when id is a captured message id: "<digits>-<digits>", no leading zeros. */
int api_devmail_id_ok(const char *id);

/* metrics.c (the counters themselves are in metrics.h, which does not
 * include this file: modules that only count see no HTTP types) */
api_handler_fn metrics_http_get;      /* GET /metrics: text/plain; version=0.0.4. No auth. */

/* dashboard.c: the embedded operator pages (server/ui); no Redis. */
api_handler_fn dashboard_index_get;   /* GET /: index.html */
api_handler_fn dashboard_asset_get;   /* GET /ui/{name} */
api_handler_fn dashboard_favicon_get; /* GET /favicon.ico: 204 */
api_handler_fn dashboard_whoami_get;  /* GET /v1/whoami: the key's name and project (auth) */

#endif
