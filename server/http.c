/*
 * http.c - the HTTP front door: libmicrohttpd glue, routing, bearer-key
 * authentication, body caps and JSON parsing (the error envelope and the
 * other response helpers are api.c's, shared with the resources).
 *
 * Owns the listening socket and the MHD daemon (a pool of cfg->http_threads
 * polling threads), one lazily opened struct store per HTTP thread, and the
 * route table that maps method + path to the handlers of api_*.c (see
 * api.h). With http_deadlines.c (the header and body deadlines) it is the
 * only code that includes microhttpd.h. It must never
 * buffer a body beyond cfg->max_body (nor all bodies together beyond
 * cfg->http_body_budget), store a body for a route that reads none, log a
 * key or an Authorization header, or let any request, however malformed,
 * crash the process.
 *
 * Each request has an id (the client's X-Request-Id when sane, else a new
 * one), echoed on every answer built here and handed to the handlers as
 * req->request_id; when the request ends, http_completed writes its one
 * access line (msg="request": method, route pattern, status, duration,
 * bytes, tenant, request_id).
 * A request that charged its project's token bucket (every ROUTE_AUTH route
 * once the key is known, TXMAIL_RATE_LIMIT > 0, Redis reachable) carries
 * RateLimit-Limit, -Remaining and -Reset on its answer, whatever its status
 * (http_common_headers); a ROUTE_ETAG route's 200 carries a strong ETag over
 * its body, and If-None-Match matching it turns the answer into a bodiless
 * 304 (http_etag, etag.h).
 *
 * Limits against clients that hold connections: MHD's idle timeout
 * (cfg->http_timeout), a deadline for each request's headers
 * (cfg->http_header_timeout; http_deadlines.c), and a
 * connection limit taken from RLIMIT_NOFILE (whose soft limit http_start
 * raises towards the hard one) less a reserve of descriptors for Redis,
 * SMTP and webhooks, at most HTTP_CONNECTION_LIMIT_MAX. Against bodies
 * that are cheap to send and dear to parse: at most VALIDATE_MAX_JSON_VALUES
 * values, counted on the raw text before cJSON allocates a node for each.
 *
 * Against bodies that pin memory (see "request bodies" below): only the
 * routes marked ROUTE_JSON take one (the others answer 413 before a body
 * byte is read), only after the key was checked; each body must be complete
 * cfg->http_body_timeout after its headers (else the connection is cut);
 * and all bodies being received stay within cfg->http_body_budget bytes
 * together (past it, 503 with Retry-After).
 */
#include "http.h"
#include "http_internal.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "api.h"
#include "api_events.h"
#include "cidr.h"
#include "enqpipe.h"
#include "etag.h"
#include "health.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "util.h"
#include "validate.h"

#define HTTP_CONNECTION_LIMIT_MAX 16384   /* the issue asks for 10,000 idle ones to be harmless */
#define HTTP_CONNECTION_LIMIT_MIN 64
#define HTTP_FD_RESERVE 1024        /* descriptors kept for everything but API connections */
#define HTTP_MHD_LOG_BURST 20       /* libmicrohttpd messages logged a second; the rest counted */
#define HTTP_MAX_JSON_DEPTH 32
#define HTTP_MAX_TOKEN 512
#define HTTP_MAX_PARAM 256
#define HTTP_REQUEST_ID_MAX 128     /* a client's X-Request-Id longer than this is replaced */
#define HTTP_LOG_PATH_MAX 200       /* an unmatched path is logged cut to this */
#define HTTP_DEFAULT_MAX_BODY ((size_t)10 * 1024 * 1024)
#define HTTP_DRAIN_ALLOWANCE ((size_t)1024 * 1024)
#define HTTP_DEFAULT_BODY_BUDGET ((size_t)256 * 1024 * 1024)
#define HTTP_BODY_FIRST ((size_t)4096)   /* a chunked body's first buffer (and reservation) */
#define HTTP_ADMIN_CONNECTIONS 64   /* the admin listener: probes and scrapers, not clients */
#define HTTP_ADMIN_THREADS 1
#define HTTP_READY_WHY_MAX 600      /* /readyz: the stalled loops, named */
/*
 * Each connection's memory pool (request headers, read and write buffers;
 * bodies go to http_req's own buffer): libmicrohttpd zeroes the whole pool
 * between two requests of a keep-alive connection, which at its 32 KiB
 * default was a quarter of the instructions of an accept. 16 KiB still
 * takes any sane set of request headers (larger ones get 431).
 */
#define HTTP_CONNECTION_MEMORY ((size_t)16 * 1024)

/* --- routes --------------------------------------------------------------- */

enum {
	ROUTE_AUTH = 1,     /* needs Authorization: Bearer <key> */
	ROUTE_JSON = 2,     /* body must be application/json, parsed, an object; the others take no body */
	ROUTE_NO_STORE = 4, /* never touches Redis (req->store is NULL) */
	ROUTE_ACCEPT = 8,   /* a send: timed in txmail_accept_duration_seconds */
	ROUTE_DEV = 16,     /* exists in `run --dev` only (cfg->dev): else 404 like any unknown path */
	ROUTE_ETAG = 32,    /* a 200 carries a strong ETag; If-None-Match matching it: 304, no body */
};

struct http_route {
	const char *method;
	const char *pattern;    /* '*' matches exactly one non-empty segment */
	int flags;
	enum keys_scope scope;  /* ROUTE_AUTH: the scope a key needs (keys_scope_allows), else NONE */
	api_handler_fn *handler;
};

#define SC_NONE  KEYS_SCOPE_NONE
#define SC_SEND  KEYS_SCOPE_SEND    /* send, full, admin */
#define SC_READ  KEYS_SCOPE_READ    /* read, full, admin */
#define SC_FULL  KEYS_SCOPE_FULL    /* full, admin */

static api_handler_fn http_healthz;
static api_handler_fn http_readyz;

static const struct http_route http_routes[] = {
	{ "GET",  "/healthz",        ROUTE_NO_STORE,         SC_NONE, http_healthz },
	{ "GET",  "/readyz",         0,                      SC_NONE, http_readyz },
	{ "GET",  "/metrics",        0,                      SC_NONE, metrics_http_get },
	{ "GET",  "/",               ROUTE_NO_STORE,         SC_NONE, dashboard_index_get },
	{ "GET",  "/ui/*",           ROUTE_NO_STORE,         SC_NONE, dashboard_asset_get },
	{ "GET",  "/favicon.ico",    ROUTE_NO_STORE,         SC_NONE, dashboard_favicon_get },
	{ "POST", "/v1/messages",    ROUTE_AUTH | ROUTE_JSON | ROUTE_ACCEPT, SC_SEND, api_messages_create },
	{ "POST", "/v1/messages/batch", ROUTE_AUTH | ROUTE_JSON | ROUTE_ACCEPT, SC_SEND, api_messages_batch },
	{ "GET",  "/v1/messages",    ROUTE_AUTH,             SC_READ, api_messages_list },
	{ "GET",  "/v1/messages/*",  ROUTE_AUTH | ROUTE_ETAG, SC_READ, api_messages_get },
	{ "DELETE", "/v1/messages/*", ROUTE_AUTH,            SC_FULL, api_messages_cancel },
	{ "GET",  "/v1/templates",   ROUTE_AUTH,             SC_READ, api_templates_list },
	{ "PUT",  "/v1/templates/*", ROUTE_AUTH | ROUTE_JSON, SC_FULL, api_templates_put },
	{ "GET",  "/v1/templates/*", ROUTE_AUTH,             SC_READ, api_templates_get },
	{ "DELETE", "/v1/templates/*", ROUTE_AUTH,           SC_FULL, api_templates_delete },
	{ "GET",  "/v1/keys",        ROUTE_AUTH,             SC_FULL, api_keys_list },
	{ "GET",  "/v1/suppressions", ROUTE_AUTH,            SC_READ, api_suppressions_list },
	{ "POST", "/v1/suppressions", ROUTE_AUTH | ROUTE_JSON, SC_FULL, api_suppressions_create },
	{ "DELETE", "/v1/suppressions/*", ROUTE_AUTH,        SC_FULL, api_suppressions_delete },
	{ "POST", "/v1/webhooks",    ROUTE_AUTH | ROUTE_JSON, SC_FULL, api_webhooks_create },
	{ "GET",  "/v1/webhooks",    ROUTE_AUTH,             SC_READ, api_webhooks_list },
	{ "DELETE", "/v1/webhooks/*", ROUTE_AUTH,            SC_FULL, api_webhooks_delete },
	{ "GET",  "/v1/webhooks/*",  ROUTE_AUTH,             SC_READ, api_webhooks_get },
	{ "PATCH", "/v1/webhooks/*", ROUTE_AUTH | ROUTE_JSON, SC_FULL, api_webhooks_patch },
	{ "POST", "/v1/webhooks/*/test", ROUTE_AUTH,         SC_FULL, api_webhooks_test },
	{ "POST", "/v1/webhooks/*/rotate", ROUTE_AUTH | ROUTE_JSON, SC_FULL, api_webhooks_rotate },
	{ "GET",  "/v1/webhooks/*/deliveries", ROUTE_AUTH,   SC_READ, api_webhooks_deliveries },
	{ "POST", "/v1/webhooks/*/deliveries/*/retry", ROUTE_AUTH, SC_FULL, api_webhooks_retry },
	{ "GET",  "/v1/events/stream", ROUTE_AUTH | ROUTE_NO_STORE, SC_READ, api_events_stream },
	{ "GET",  "/v1/whoami",      ROUTE_AUTH | ROUTE_NO_STORE, SC_READ, dashboard_whoami_get },
	{ "GET",  "/dev/mail",       ROUTE_AUTH | ROUTE_NO_STORE | ROUTE_DEV, SC_READ, api_devmail_list },
	{ "DELETE", "/dev/mail",     ROUTE_AUTH | ROUTE_NO_STORE | ROUTE_DEV, SC_FULL, api_devmail_delete },
	{ "GET",  "/dev/mail/*",     ROUTE_AUTH | ROUTE_NO_STORE | ROUTE_DEV, SC_READ, api_devmail_get },
	{ "GET",  "/dev/mail/*/raw", ROUTE_AUTH | ROUTE_NO_STORE | ROUTE_DEV, SC_READ, api_devmail_raw },
	{ "GET",  "/dev/mail/*/attachments/*", ROUTE_AUTH | ROUTE_NO_STORE | ROUTE_DEV, SC_READ,
	  api_devmail_attachment },
};
#define HTTP_NROUTES (sizeof(http_routes) / sizeof(http_routes[0]))

/* The admin listener (http_start_admin): probes and the scrape, no key, no body. */
static const struct http_route http_admin_routes[] = {
	{ "GET",  "/healthz",        ROUTE_NO_STORE,         SC_NONE, http_healthz },
	{ "GET",  "/readyz",         0,                      SC_NONE, http_readyz },
	{ "GET",  "/metrics",        0,                      SC_NONE, metrics_http_get },
};
#define HTTP_ADMIN_NROUTES (sizeof(http_admin_routes) / sizeof(http_admin_routes[0]))

/* per-request state, MHD's con_cls */
struct http_req {
	const struct http_route *route;
	char param[HTTP_MAX_PARAM];
	char tenant[KEYS_TENANT_MAX];  /* set by http_authenticate; req.tenant points here */
	char project[KEYS_TENANT_MAX]; /* set by http_authenticate; req.project points here */
	int all_projects;       /* set by http_authenticate (scope admin); copied to req */
	struct keys_rate rate;  /* set by http_authenticate: the RateLimit-* headers when charged */
	char request_id[HTTP_REQUEST_ID_MAX + 1];  /* echoed as X-Request-Id, logged */
	char method[16];        /* as the client sent it, for the access line */
	char path[HTTP_LOG_PATH_MAX + 1];  /* the raw path, cut; logged only when no route matched */
	char *buf;
	size_t len;
	size_t cap;
	size_t reserved;        /* bytes of http_server.body_bytes held for buf (at least cap) */
	int refused;            /* 413 (over max_body) or 503 (over the budget): the rest is drained */
	size_t drained;         /* bytes discarded after refused */
	int answered;           /* a response was queued early */
	int status;             /* the status queued, 0 while none */
	size_t bytes_in;        /* body bytes received, kept or not */
	size_t bytes_out;       /* the body queued (0 for a stream) */
	double start_s;         /* http_mono_s() when the headers were in */
	/* a deferred answer (api.h): the request and its JSON live on while the pipe runs */
	struct api_request req;
	cJSON *json;
	struct api_deferred *deferred;
	struct enqpipe_job job;
};

/* --- per-thread store handles ------------------------------------------- */

struct http_store_node {
	struct store *store;
	struct http_store_node *next;
};

/* each MHD thread belongs to one server: its handle is on that server's list */
static _Thread_local struct store *http_tl_store;

static struct store *
http_thread_store(struct http_server *h)
{
	struct http_store_node *node;

	if (http_tl_store != NULL)
		return http_tl_store;
	node = calloc(1, sizeof(*node));
	if (node == NULL)
		return NULL;
	node->store = store_open(&h->cfg->redis);
	if (node->store == NULL) {
		free(node);
		return NULL;
	}
	pthread_mutex_lock(&h->stores_lock);
	node->next = h->stores;
	h->stores = node;
	pthread_mutex_unlock(&h->stores_lock);
	http_tl_store = node->store;
	return http_tl_store;
}

/* closes every handle of h; only after its daemon (and its threads) stopped */
static void
http_close_stores(struct http_server *h)
{
	struct http_store_node *node, *next;

	pthread_mutex_lock(&h->stores_lock);
	node = h->stores;
	h->stores = NULL;
	pthread_mutex_unlock(&h->stores_lock);
	for (; node != NULL; node = next) {
		next = node->next;
		store_close(node->store);
		free(node);
	}
}

/* api_request_header's view of a request (api.h): conn is the MHD connection */
static const char *
http_lookup_header(void *conn, const char *name)
{
	return MHD_lookup_connection_value((struct MHD_Connection *)conn, MHD_HEADER_KIND, name);
}

/* api_request_query's view: a decoded query argument */
static const char *
http_lookup_query(void *conn, const char *name)
{
	return MHD_lookup_connection_value((struct MHD_Connection *)conn, MHD_GET_ARGUMENT_KIND, name);
}

/* --- health --------------------------------------------------------------- */

static void
http_healthz(const struct api_request *req, struct api_response *resp)
{
	(void)req;
	api_json_text(resp, 200, "{\"status\":\"ok\"}");
}

/*
 * /readyz: Redis answers a PING, and every loop this process runs (worker,
 * scheduler, webhooks, DSN listener: health.h) came round within its bound;
 * else 503 whose message says which (the stalled loops by name).
 */
static void
http_readyz(const struct api_request *req, struct api_response *resp)
{
	char why[HTTP_READY_WHY_MAX], msg[HTTP_READY_WHY_MAX + 32];

	if (store_ping(req->store) != 0) {
		api_error(resp, 503, "unavailable", "storage is unreachable", NULL);
		api_header(resp, "Retry-After", "1");
		return;
	}
	if (health_check(util_mono_ms(), why, sizeof(why)) > 0) {
		snprintf(msg, sizeof(msg), "stalled: %s", why);
		api_error(resp, 503, "unavailable", msg, NULL);
		api_header(resp, "Retry-After", "1");
		return;
	}
	api_json_text(resp, 200, "{\"status\":\"ready\"}");
}

/* --- routing and checks --------------------------------------------------- */

/* 1 when path matches pattern; the '*' segment is copied to param. */
static int
http_match(const char *pattern, const char *path, char *param, size_t paramlen)
{
	const char *p = pattern, *s = path;

	while (*p != '\0') {
		if (*p == '*') {
			const char *e = strchr(s, '/');
			size_t n = e != NULL ? (size_t)(e - s) : strlen(s);

			if (n == 0 || n >= paramlen)
				return 0;
			memcpy(param, s, n);
			param[n] = '\0';
			s += n;
			p++;
			continue;
		}
		if (*p != *s)
			return 0;
		p++;
		s++;
	}
	return *s == '\0';
}

/*
 * http_route_find - the route for method + path; NULL with *status 404 or
 * 405 (allow filled with the methods that path accepts).
 */
static const struct http_route *
http_route_find(const struct http_server *h, const char *method, const char *path, char *param,
    size_t paramlen, int *status, char *allow, size_t allowlen)
{
	char tmp[HTTP_MAX_PARAM];
	int path_known = 0;
	size_t off = 0;

	if (strcmp(method, "HEAD") == 0)
		method = "GET";
	allow[0] = '\0';
	for (size_t i = 0; i < h->nroutes; i++) {
		const struct http_route *r = &h->routes[i];

		if ((r->flags & ROUTE_DEV) != 0 && (h->cfg == NULL || !h->cfg->dev))
			continue;
		tmp[0] = '\0';   /* patterns without '*' leave it untouched */
		if (!http_match(r->pattern, path, tmp, sizeof(tmp)))
			continue;
		if (strcmp(r->method, method) == 0) {
			util_strlcpy(param, tmp, paramlen);
			return r;
		}
		path_known = 1;
		if (off < allowlen) {
			int w = snprintf(allow + off, allowlen - off, "%s%s%s", off ? ", " : "",
			    r->method, strcmp(r->method, "GET") == 0 ? ", HEAD" : "");
			if (w > 0)
				off += (size_t)w;
		}
	}
	*status = path_known ? 405 : 404;
	return NULL;
}

/*
 * http_bearer - the token of "Authorization: Bearer <token>" (surrounding
 * blanks trimmed); NULL when absent, empty or longer than HTTP_MAX_TOKEN.
 */
static const char *
http_bearer(const char *auth, size_t *toklen)
{
	const char *tok;
	size_t n;

	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
		return NULL;
	tok = auth + 7;
	while (*tok == ' ' || *tok == '\t')
		tok++;
	n = strnlen(tok, HTTP_MAX_TOKEN + 1);
	while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
		n--;
	if (n == 0 || n > HTTP_MAX_TOKEN)
		return NULL;
	*toklen = n;
	return tok;
}

/* 1 for "application/json" with optional parameters, case-insensitive type */
static int
http_is_json(const char *ct)
{
	static const char want[] = "application/json";
	size_t n = sizeof(want) - 1;

	if (ct == NULL)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, want, n) != 0)
		return 0;
	ct += n;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

/* http_mono_s - the monotonic clock in seconds, to the microsecond (access line durations) */
static double
http_mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * http_request_id - the request's id: the client's X-Request-Id when it is
 * 1..HTTP_REQUEST_ID_MAX characters of [A-Za-z0-9._:-] (so it is safe in a
 * header and a log line), else a new "req_" + 26-character random id.
 */
static void
http_request_id(const char *given, char *out, size_t outlen)
{
	size_t n = given != NULL ? strnlen(given, HTTP_REQUEST_ID_MAX + 1) : 0;
	int ok = n >= 1 && n <= HTTP_REQUEST_ID_MAX && n < outlen;

	for (size_t i = 0; ok && i < n; i++) {
		char c = given[i];

		ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '_' || c == ':' || c == '-';
	}
	if (ok) {
		memcpy(out, given, n);
		out[n] = '\0';
		return;
	}
	if (util_random_id("req_", out, outlen) != 0)
		util_strlcpy(out, "req_unavailable", outlen);   /* getrandom failed */
}

/*
 * http_connection_limit - how many API connections to accept at once:
 * RLIMIT_NOFILE (its soft limit first raised towards the hard one, as far
 * as HTTP_CONNECTION_LIMIT_MAX needs) less a reserve of descriptors for
 * Redis, SMTP, webhooks and files (a quarter of the limit, at most
 * HTTP_FD_RESERVE), within [HTTP_CONNECTION_LIMIT_MIN, _MAX].
 */
static unsigned int
http_connection_limit(unsigned long long *nofile)
{
	const rlim_t want = HTTP_CONNECTION_LIMIT_MAX + HTTP_FD_RESERVE;
	struct rlimit rl;
	rlim_t cur, reserve;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		rl.rlim_cur = 1024;
		rl.rlim_max = 1024;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want && rl.rlim_max > rl.rlim_cur) {
		struct rlimit up = rl;

		up.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl.rlim_cur = up.rlim_cur;
	}
	cur = rl.rlim_cur == RLIM_INFINITY ? want : rl.rlim_cur;
	*nofile = (unsigned long long)cur;
	reserve = cur / 4 < HTTP_FD_RESERVE ? cur / 4 : HTTP_FD_RESERVE;
	cur -= reserve;
	if (cur > HTTP_CONNECTION_LIMIT_MAX)
		cur = HTTP_CONNECTION_LIMIT_MAX;
	if (cur < HTTP_CONNECTION_LIMIT_MIN)
		cur = HTTP_CONNECTION_LIMIT_MIN;
	return (unsigned int)cur;
}

/* --- MHD glue ------------------------------------------------------------- */

/*
 * Streamed answers (SSE): MHD pulls bytes with http_stream_read from the
 * HTTP thread; an empty buffer suspends the connection (called by
 * api_events with its lock held, from inside the read) and the hub
 * resumes it when data arrives, so no thread ever waits on a client.
 */
static void
http_stream_park(void *arg)
{
	MHD_suspend_connection(arg);
}

static void
http_stream_wake(void *arg)
{
	MHD_resume_connection(arg);
}

static ssize_t
http_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	ssize_t n = api_events_client_read(cls, buf, max);

	(void)pos;
	return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : n;
}

static void
http_stream_free(void *cls)
{
	api_events_client_close(cls);
}

/*
 * http_common_headers - what every answer carries: X-Request-Id, and on a
 * request that charged its project's bucket RateLimit-Limit (the bucket's
 * size), RateLimit-Remaining (whole tokens left) and RateLimit-Reset
 * (seconds until it is full again), draft-ietf-httpapi-ratelimit-headers.
 */
static void
http_common_headers(struct MHD_Response *r, const struct http_req *rq)
{
	char v[24];

	MHD_add_response_header(r, "X-Request-Id", rq->request_id);
	if (!rq->rate.charged)
		return;
	snprintf(v, sizeof(v), "%lld", (long long)rq->rate.limit);
	MHD_add_response_header(r, "RateLimit-Limit", v);
	snprintf(v, sizeof(v), "%lld", (long long)rq->rate.remaining);
	MHD_add_response_header(r, "RateLimit-Remaining", v);
	snprintf(v, sizeof(v), "%lld", (long long)rq->rate.reset_s);
	MHD_add_response_header(r, "RateLimit-Reset", v);
}

static enum MHD_Result
http_send_stream(struct MHD_Connection *conn, const struct http_req *rq,
    struct api_response *resp)
{
	struct api_events_client *c = resp->stream;
	const union MHD_ConnectionInfo *fdi =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct MHD_Response *r;
	enum MHD_Result ret;

	resp->stream = NULL;
	api_events_client_attach(c, http_stream_park, http_stream_wake, conn,
	    fdi != NULL ? fdi->connect_fd : -1);
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, http_stream_read, c,
	    http_stream_free);
	if (r == NULL) {
		api_events_client_close(c);
		return MHD_NO;
	}
	http_common_headers(r, rq);
	for (size_t i = 0; i < resp->nheaders; i++)
		MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
	ret = MHD_queue_response(conn, (unsigned int)resp->status, r);
	MHD_destroy_response(r);   /* the stream lives on until the connection ends */
	return ret;
}

/*
 * http_send - queue resp (its body is freed either way), with the
 * request's X-Request-Id; records the status and size in rq for the
 * access line.
 */
static enum MHD_Result
http_send(struct MHD_Connection *conn, struct http_req *rq, struct api_response *resp)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	int typed = 0;

	rq->status = resp->status;
	if (resp->stream != NULL)
		return http_send_stream(conn, rq, resp);
	if (resp->body == NULL)
		api_body(resp, resp->status, strdup(""));
	if (resp->body == NULL)
		return MHD_NO;
	r = MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(resp->body);
		resp->body = NULL;
		return MHD_NO;
	}
	resp->body = NULL;  /* owned by r now */
	rq->bytes_out = resp->body_len;
	http_common_headers(r, rq);
	for (size_t i = 0; i < resp->nheaders; i++) {
		typed |= strcasecmp(resp->headers[i].name, MHD_HTTP_HEADER_CONTENT_TYPE) == 0;
		MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
	}
	if (!typed && resp->status != 304)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	ret = MHD_queue_response(conn, (unsigned int)resp->status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
http_send_error(struct MHD_Connection *conn, struct http_req *rq, int status, const char *type,
    const char *message, const char *field, const char *hname, const char *hvalue)
{
	struct api_response resp = { .status = 500 };

	api_error(&resp, status, type, message, field);
	if (hname != NULL)
		api_header(&resp, hname, hvalue);
	return http_send(conn, rq, &resp);
}

/* the X-Forwarded-For lines of a request, in order (MHD_get_connection_values) */
struct http_xff {
	const char *v[CIDR_XFF_MAX_VALUES + 1];
	size_t n;               /* may reach CIDR_XFF_MAX_VALUES + 1: too many */
};

static enum MHD_Result
http_xff_collect(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct http_xff *x = cls;

	(void)kind;
	if (key == NULL || strcasecmp(key, "X-Forwarded-For") != 0)
		return MHD_YES;
	if (x->n > CIDR_XFF_MAX_VALUES)
		return MHD_NO;
	x->v[x->n++] = value;
	return MHD_YES;
}

/*
 * http_client_addr - the address the request comes from into out: the TCP
 * peer, or behind a peer in TXMAIL_TRUSTED_PROXIES the right-most untrusted
 * X-Forwarded-For entry (cidr_client). 0, or -1 when it is unknown (no peer
 * address, a malformed entry): then keys with an allowlist are refused.
 */
static int
http_client_addr(const struct config *cfg, struct MHD_Connection *conn,
    unsigned char out[CIDR_ADDR_LEN])
{
	const union MHD_ConnectionInfo *ci;
	unsigned char peer[CIDR_ADDR_LEN];
	struct http_xff x = { .n = 0 };

	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || cidr_from_sockaddr(ci->client_addr, peer) != CIDR_OK)
		return -1;
	if (cfg->trusted_proxies.n == 0 || !cidr_list_match(&cfg->trusted_proxies, peer)) {
		memcpy(out, peer, CIDR_ADDR_LEN);
		return 0;
	}
	MHD_get_connection_values(conn, MHD_HEADER_KIND, http_xff_collect, &x);
	return cidr_client(peer, &cfg->trusted_proxies, x.v, x.n, out) == CIDR_OK ? 0 : -1;
}

/*
 * http_authenticate - who is calling (before any body byte is read): 0 with
 * rq->tenant, rq->project and rq->all_projects set, or -1 after queueing
 * 401 unauthorized, 403 forbidden (a key with an allowlist from another
 * address: one fixed answer for every key, naming neither the key nor
 * the addresses; or a route the key's scope does not allow, naming the
 * scope it needs), 429 rate_limited (Retry-After: whole seconds, rounded
 * up, at least 1), 503 unavailable (a stored key while Redis is down) or
 * 500. Never logs the token.
 */
/*
 * http_choose_project - `?project=P`: a scope admin key acts inside project
 * P alone (its templates, suppressions, endpoints; a send is stored as P's);
 * any other key may name only its own project. 0, or -1 after queueing 422
 * validation_error (not a project name) or 403.
 */
static int
http_choose_project(struct MHD_Connection *conn, struct http_req *rq,
    const struct keys_identity *who, enum MHD_Result *ret)
{
	const char *sel = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "project");

	if (sel == NULL)
		return 0;
	if (!keys_valid_name(sel)) {
		*ret = http_send_error(conn, rq, 422, "validation_error",
		    "project must be 1 to 64 of A-Z a-z 0-9 _ . -", "project", NULL, NULL);
		return -1;
	}
	if (who->scope != KEYS_SCOPE_ADMIN && strcmp(sel, who->project) != 0) {
		*ret = http_send_error(conn, rq, 403, "forbidden",
		    "only a scope admin key may name another project", "project", NULL, NULL);
		return -1;
	}
	util_strlcpy(rq->project, sel, sizeof(rq->project));
	rq->all_projects = 0;
	return 0;
}

static int
http_authenticate(struct http_server *h, struct MHD_Connection *conn, struct http_req *rq,
    enum MHD_Result *ret)
{
	const char *tok;
	size_t toklen = 0;
	int64_t retry_ms = 0;
	char ra[32], msg[160];
	unsigned char client[CIDR_ADDR_LEN];
	struct keys_identity who;
	int rc = KEYS_ERR_UNAUTHORIZED, known;

	tok = http_bearer(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_AUTHORIZATION), &toklen);
	if (tok != NULL) {
		known = http_client_addr(h->cfg, conn, client) == 0;
		rc = keys_authenticate(h->cfg, http_thread_store(h), tok, toklen,
		    known ? client : NULL, util_now_ms(), &who, &retry_ms);
	}
	switch (rc) {
	case 0:
		break;
	case KEYS_ERR_UNAUTHORIZED:
		*ret = http_send_error(conn, rq, 401, "unauthorized",
		    "missing or invalid API key (Authorization: Bearer <key>)", NULL,
		    "WWW-Authenticate", "Bearer");
		return -1;
	case KEYS_ERR_FORBIDDEN:
		*ret = http_send_error(conn, rq, 403, "forbidden",
		    "this API key may not be used from this address", NULL, NULL, NULL);
		return -1;
	case KEYS_ERR_UNAVAILABLE:
		*ret = http_send_error(conn, rq, 503, "unavailable",
		    "storage is unavailable, cannot check the API key; retry later", NULL,
		    "Retry-After", "1");
		return -1;
	default:
		log_warn("authentication failed internally", "method=%s route=%s request_id=%s error=%d",
		    rq->method, rq->route->pattern, rq->request_id, rc);
		*ret = http_send_error(conn, rq, 500, "internal_error", "internal error", NULL, NULL, NULL);
		return -1;
	}
	util_strlcpy(rq->tenant, who.tenant, sizeof(rq->tenant));
	rq->rate = who.rate;
	if (retry_ms > 0) {
		long long secs = (long long)((retry_ms + 999) / 1000);

		if (secs < 1)
			secs = 1;
		snprintf(ra, sizeof(ra), "%lld", secs);
		snprintf(msg, sizeof(msg), "rate limit exceeded for this API key's project; retry in %lld s",
		    secs);
		*ret = http_send_error(conn, rq, 429, "rate_limited", msg, NULL, "Retry-After", ra);
		rq->tenant[0] = '\0';
		return -1;
	}
	if (!keys_scope_allows(who.scope, rq->route->scope)) {
		snprintf(msg, sizeof(msg), "this API key has scope %s; %s %s needs scope %s%s",
		    keys_scope_name(who.scope), rq->route->method, rq->route->pattern,
		    keys_scope_name(rq->route->scope),
		    rq->route->scope == KEYS_SCOPE_SEND || rq->route->scope == KEYS_SCOPE_READ ?
		    " (or full)" : "");
		*ret = http_send_error(conn, rq, 403, "forbidden", msg, NULL, NULL, NULL);
		return -1;
	}
	util_strlcpy(rq->project, who.project, sizeof(rq->project));
	rq->all_projects = who.scope == KEYS_SCOPE_ADMIN;
	return http_choose_project(conn, rq, &who, ret);
}

/* --- request bodies -------------------------------------------------------- */

/*
 * A body is stored only for a route that reads one (ROUTE_JSON), after the
 * key was checked, and only within the budget: every body being received
 * holds a reservation of h->body_bytes covering its buffer - Content-Length
 * + 1 up front when the length is known, else HTTP_BODY_FIRST, grown (by
 * doubling) as chunks arrive. A request whose reservation does not fit is
 * answered 503 before its body is read; a chunked one that outgrows the
 * budget is drained like one over max_body and answered 503 at its end.
 * The reservation is given back by http_body_release once the handler ran,
 * and in http_completed on every other path (error, timeout, client gone).
 */

/* http_body_reserve - hold total bytes for rq in all (more than it holds): 0, or -1 over the budget */
static int
http_body_reserve(struct http_server *h, struct http_req *rq, size_t total)
{
	size_t cur, delta;

	if (total <= rq->reserved)
		return 0;
	delta = total - rq->reserved;
	cur = atomic_load(&h->body_bytes);
	do {
		if (cur > h->body_budget || delta > h->body_budget - cur)
			return -1;
	} while (!atomic_compare_exchange_weak(&h->body_bytes, &cur, cur + delta));
	rq->reserved = total;
	metrics_http_body_bytes((int64_t)delta);
	return 0;
}

/* http_body_release - free rq's buffer and give its reservation back; idempotent */
static void
http_body_release(struct http_server *h, struct http_req *rq)
{
	free(rq->buf);
	rq->buf = NULL;
	rq->len = rq->cap = 0;
	if (rq->reserved > 0) {
		atomic_fetch_sub(&h->body_bytes, rq->reserved);
		metrics_http_body_bytes(-(int64_t)rq->reserved);
		rq->reserved = 0;
	}
}

/*
 * http_body_admit - the body checks done with the headers: a route without
 * ROUTE_JSON takes no body (Content-Length above 0, or any Transfer-Encoding:
 * 413, so a chunked body is refused before its first byte), a Content-Length
 * must be a number within max_body (413), and the body's first reservation
 * must fit the budget (503). 0, or -1 with the answer queued.
 */
static int
http_body_admit(struct http_server *h, struct MHD_Connection *conn, struct http_req *rq,
    int check_size, enum MHD_Result *ret)
{
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_TRANSFER_ENCODING);
	unsigned long long v = 0;

	if (cl != NULL) {
		char *end = NULL;

		errno = 0;
		v = strtoull(cl, &end, 10);
		if (errno != 0 || end == cl)
			v = ULLONG_MAX;   /* MHD refuses a malformed length before this; be safe */
	}
	if ((rq->route->flags & ROUTE_JSON) == 0) {
		if (v > 0 || te != NULL) {
			*ret = http_send_error(conn, rq, 413, "payload_too_large",
			    "this route takes no request body; send none (Content-Length: 0 or no body)",
			    NULL, "Connection", "close");
			return -1;
		}
		return 0;
	}
	if (!check_size)
		return 0;
	if (cl != NULL && v > h->max_body) {
		*ret = http_send_error(conn, rq, 413, "payload_too_large",
		    "request body exceeds the size limit", NULL, NULL, NULL);
		return -1;
	}
	if (http_body_reserve(h, rq, cl != NULL ? (size_t)v + 1 : HTTP_BODY_FIRST) != 0) {
		*ret = http_send_error(conn, rq, 503, "unavailable",
		    "too many request bodies are being received at once; retry later", NULL,
		    "Retry-After", "1");
		return -1;
	}
	return 0;
}

/* header checks done before any body byte is read; 0 or a response was queued */
static int
http_precheck(struct http_server *h, struct MHD_Connection *conn, const char *method,
    const char *url, struct http_req *rq, enum MHD_Result *ret)
{
	char allow[128];
	int status = 404;

	rq->route = http_route_find(h, method, url, rq->param, sizeof(rq->param), &status,
	    allow, sizeof(allow));
	if (atomic_load(&h->draining) &&
	    (rq->route == NULL || rq->route->handler != http_healthz)) {
		/* shutting down: /readyz fails so load balancers move on; clients retry elsewhere */
		struct api_response resp = { .status = 500 };

		api_error(&resp, 503, "unavailable", "server is shutting down; retry later", NULL);
		api_header(&resp, "Retry-After", "5");
		api_header(&resp, "Connection", "close");
		*ret = http_send(conn, rq, &resp);   /* X-Request-Id; access line in http_completed */
		return -1;
	}
	if (rq->route == NULL) {
		if (status == 405)
			*ret = http_send_error(conn, rq, 405, "method_not_allowed",
			    "method not allowed on this path", NULL, "Allow", allow);
		else
			*ret = http_send_error(conn, rq, 404, "not_found", "no such route", NULL, NULL, NULL);
		return -1;
	}
	if (http_body_admit(h, conn, rq, 0, ret) != 0)   /* no body where none is read, before any work */
		return -1;
	if ((rq->route->flags & ROUTE_AUTH) != 0 && http_authenticate(h, conn, rq, ret) != 0)
		return -1;
	if ((rq->route->flags & ROUTE_JSON) != 0 &&
	    !http_is_json(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	        MHD_HTTP_HEADER_CONTENT_TYPE))) {
		*ret = http_send_error(conn, rq, 415, "unsupported_media_type",
		    "Content-Type must be application/json", NULL, NULL, NULL);
		return -1;
	}
	/* after authentication: only a known key's body is stored, or counted in the budget */
	return http_body_admit(h, conn, rq, 1, ret);
}

/*
 * http_append - add n body bytes to rq->buf (kept NUL-terminated): 0, -1
 * past max_body, -2 out of memory, -3 over the body budget.
 */
static int
http_append(struct http_server *h, struct http_req *rq, const char *data, size_t n)
{
	size_t max_body = h->max_body;

	if (n > max_body || rq->len > max_body - n)
		return -1;
	if (rq->len + n + 1 > rq->cap) {
		/* first the reservation made with the headers: a known length's whole body, in one buffer */
		size_t cap = rq->cap != 0 ? rq->cap : rq->reserved != 0 ? rq->reserved : HTTP_BODY_FIRST;
		char *nb;

		while (cap < rq->len + n + 1)
			cap *= 2;
		if (cap > max_body + 1)
			cap = max_body + 1;
		if (http_body_reserve(h, rq, cap) != 0)
			return -3;
		nb = realloc(rq->buf, cap);
		if (nb == NULL)
			return -2;
		rq->buf = nb;
		rq->cap = cap;
	}
	memcpy(rq->buf + rq->len, data, n);
	rq->len += n;
	rq->buf[rq->len] = '\0';
	return 0;
}

/*
 * http_replicated - a change the handler made and is about to report (a
 * 2xx to anything but GET) waits for TXMAIL_REDIS_MIN_REPLICAS replicas, as
 * a send's 202 does (store_enqueue_ops waits for those itself): when they
 * do not confirm, 504 outcome_unknown instead, since a failover now could
 * undo what the answer would claim. A no-op without the setting.
 */
static void
http_replicated(const struct http_req *rq, const struct api_request *req, struct api_response *resp)
{
	int rc;

	if (resp->deferred != NULL || resp->stream != NULL || req->store == NULL ||
	    (rq->route->flags & ROUTE_ACCEPT) != 0 || strcmp(rq->route->method, "GET") == 0 ||
	    resp->status < 200 || resp->status > 299)
		return;
	if ((rc = store_wait_replicas(req->store)) == 0)
		return;
	metrics_redis_unreplicated(METRICS_UNREPL_CHANGE);
	log_warn("change not confirmed by the replicas", "method=%s route=%s request_id=%s error=%s",
	    rq->route->method, rq->route->pattern, req->request_id, store_strerror(rc));
	resp->nheaders = 0;     /* a Location of what may be undone goes too */
	api_error(resp, 504, "outcome_unknown", "the change is made on the Redis primary, but fewer "
	    "replicas than TXMAIL_REDIS_MIN_REPLICAS confirmed it in time: a failover now could undo "
	    "it. Read it back, or retry", NULL);
	api_header(resp, "Retry-After", "1");
}

static void
http_dispatch(struct http_server *h, struct MHD_Connection *conn, const char *method,
    const char *url, struct http_req *rq, struct api_response *resp)
{
	struct api_request req_init = {
		.cfg = h->cfg,
		.method = method,
		.path = url,
		.param = rq->param[0] != '\0' ? rq->param : NULL,
		.body = rq->buf != NULL ? rq->buf : "",
		.body_len = rq->len,
		.now_ms = util_now_ms(),
		.lookup_header = http_lookup_header,
		.lookup_query = http_lookup_query,
		.conn = conn,
		.tenant = rq->tenant[0] != '\0' ? rq->tenant : NULL,
		.project = rq->project[0] != '\0' ? rq->project : NULL,
		.all_projects = rq->all_projects,
		.request_id = rq->request_id,
		.can_defer = h->pipe != NULL,
		.can_run = 1,
	};
	struct api_request *req = &rq->req;
	cJSON *json = NULL;
	char field[128];

	rq->req = req_init;
	if ((rq->route->flags & ROUTE_NO_STORE) == 0)
		req->store = http_thread_store(h);
	if (req->store == NULL && (rq->route->flags & ROUTE_NO_STORE) == 0) {
		api_error(resp, 503, "unavailable", "out of resources, retry later", NULL);
		api_header(resp, "Retry-After", "1");
		return;
	}
	if ((rq->route->flags & ROUTE_JSON) != 0) {
		const char *end = NULL;

		if (rq->len == 0) {
			api_error(resp, 400, "invalid_json", "request body is empty", NULL);
			goto out;
		}
		if (memchr(req->body, '\0', rq->len) != NULL) {
			api_error(resp, 400, "invalid_json", "request body contains a NUL byte", NULL);
			goto out;
		}
		/* before the parse: cJSON would allocate a node for each value */
		if (validate_json_count(req->body, rq->len, VALIDATE_MAX_JSON_VALUES) > VALIDATE_MAX_JSON_VALUES) {
			char msg[160];

			snprintf(msg, sizeof(msg), "request body has more than %d JSON values (each "
			    "object member and array element is one); send fewer or smaller messages per request",
			    VALIDATE_MAX_JSON_VALUES);
			api_error(resp, 413, "payload_too_large", msg, NULL);
			goto out;
		}
		/* length includes the terminating NUL: nothing may follow the value */
		json = cJSON_ParseWithLengthOpts(req->body, rq->len + 1, &end, 1);
		if (json == NULL) {
			char msg[96];
			size_t at = end != NULL && end >= req->body ? (size_t)(end - req->body) : 0;

			snprintf(msg, sizeof(msg), "request body is not valid JSON (near byte %zu)", at);
			api_error(resp, 400, "invalid_json", msg, NULL);
			goto out;
		}
		if (validate_json_depth(json, HTTP_MAX_JSON_DEPTH + 1) > HTTP_MAX_JSON_DEPTH) {
			api_error(resp, 400, "invalid_json", "JSON nesting is deeper than 32 levels", NULL);
			goto out;
		}
		if (!cJSON_IsObject(json)) {
			api_error(resp, 422, "validation_error", "request body must be a JSON object", NULL);
			goto out;
		}
		if (validate_json_nul(req->body, rq->len, field, sizeof(field))) {
			api_error(resp, 422, "validation_error",
			    "strings must not contain NUL (\\u0000)", field);
			goto out;
		}
		req->json = json;
	}
	rq->route->handler(req, resp);
	http_replicated(rq, req, resp);
out:
	if (resp->deferred != NULL)
		rq->json = json;    /* the handler's messages point into it until finish */
	else
		cJSON_Delete(json);
}

/*
 * http_etag - a ROUTE_ETAG route's 200: add ETag (etag.h, over the body
 * as sent) and, when the request's If-None-Match matches it, turn the
 * answer into 304 Not Modified with no body (the ETag stays).
 */
static void
http_etag(struct MHD_Connection *conn, const struct http_req *rq, struct api_response *resp)
{
	char tag[ETAG_LEN + 1];

	if ((rq->route->flags & ROUTE_ETAG) == 0 || resp->status != 200 || resp->body == NULL ||
	    resp->stream != NULL || etag_make(resp->body, resp->body_len, tag, sizeof(tag)) != 0)
		return;
	api_header(resp, "ETag", tag);
	if (!etag_none_match(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_IF_NONE_MATCH), tag))
		return;
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
	resp->status = 304;
}

/* the pipe has answered the enqueue (on its thread): let MHD call http_access again */
static void
http_deferred_done(void *arg)
{
	MHD_resume_connection(arg);
}

/*
 * http_defer - park the connection and have the accept pipe run d's
 * enqueue; when the pipe refuses (stopping), run it here. Either way the
 * connection is resumed once d->op is answered and http_access finishes.
 * Suspended before the job can complete: a resume never comes first.
 */
/* one api_deferred.run on its own thread */
struct http_run {
	struct http_server *h;
	struct MHD_Connection *conn;
	struct api_deferred *d;
};

static void *
http_run_thread(void *arg)
{
	struct http_run *r = arg;
	struct http_server *h = r->h;

	r->d->run(r->d);
	MHD_resume_connection(r->conn);
	free(r);
	pthread_mutex_lock(&h->runs_lock);
	h->runs--;
	pthread_cond_broadcast(&h->runs_done);
	pthread_mutex_unlock(&h->runs_lock);
	return NULL;
}

/*
 * http_defer_run - park the connection and run d->run on a detached thread
 * (http_stop waits for them); when no thread can start, run it here.
 */
static void
http_defer_run(struct http_server *h, struct MHD_Connection *conn, struct http_req *rq,
    struct api_deferred *d)
{
	struct http_run *r = malloc(sizeof(*r));
	pthread_attr_t at;
	pthread_t t;
	int ok = 0;

	rq->deferred = d;
	MHD_suspend_connection(conn);
	if (r != NULL && pthread_attr_init(&at) == 0) {
		*r = (struct http_run){ .h = h, .conn = conn, .d = d };
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_mutex_lock(&h->runs_lock);
		h->runs++;
		pthread_mutex_unlock(&h->runs_lock);
		ok = pthread_create(&t, &at, http_run_thread, r) == 0;
		pthread_attr_destroy(&at);
		if (!ok) {
			pthread_mutex_lock(&h->runs_lock);
			h->runs--;
			pthread_mutex_unlock(&h->runs_lock);
		}
	}
	if (!ok) {
		free(r);
		d->run(d);
		MHD_resume_connection(conn);
	}
}

static void
http_defer(struct http_server *h, struct MHD_Connection *conn, struct http_req *rq,
    struct api_deferred *d)
{
	struct store_enqueue_op *op = &d->op;

	if (d->run != NULL) {
		http_defer_run(h, conn, rq, d);
		return;
	}
	rq->deferred = d;
	rq->job = (struct enqpipe_job){ .op = op, .done = http_deferred_done, .arg = conn };
	MHD_suspend_connection(conn);
	if (enqpipe_submit(h->pipe, &rq->job) != 0) {
		store_enqueue_ops(rq->req.store, &op, 1);
		http_deferred_done(conn);
	}
}

static enum MHD_Result
http_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct http_server *h = cls;
	struct http_req *rq = *con_cls;
	struct api_response resp = { .status = 500 };
	enum MHD_Result ret = MHD_YES;

	(void)version;
	if (rq == NULL) {
		http_deadlines_mark(h, conn, -1);   /* the headers are in: their deadline is met */
		rq = calloc(1, sizeof(*rq));
		if (rq == NULL)
			return MHD_NO;
		rq->start_s = http_mono_s();
		http_request_id(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id"),
		    rq->request_id, sizeof(rq->request_id));
		util_strlcpy(rq->method, method, sizeof(rq->method));
		util_strlcpy(rq->path, url, sizeof(rq->path));
		*con_cls = rq;
		atomic_fetch_add(&h->active, 1);
		if (http_precheck(h, conn, method, url, rq, &ret) != 0) {
			rq->answered = 1;
			metrics_http_request(rq->route != NULL ? rq->route->pattern : NULL, rq->status);
		} else if ((rq->route->flags & ROUTE_JSON) != 0) {
			http_deadlines_mark(h, conn, HTTP_Q_BODY);   /* the body's clock starts */
		}
		return ret;
	}
	if (rq->answered) {
		*upload_data_size = 0;  /* discard what is still coming */
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		rq->bytes_in += n;
		if (rq->refused != 0) {
			/*
			 * libmicrohttpd 0.9.75 can queue a response only before the
			 * body is read or after all of it was: a chunked body over
			 * the cap is drained (not stored) so the client gets its
			 * 413, but a client that keeps sending past a further
			 * allowance is cut off.
			 */
			rq->drained += n;
			return rq->drained > HTTP_DRAIN_ALLOWANCE ? MHD_NO : MHD_YES;
		}
		int r = http_append(h, rq, upload_data, n);

		if (r == -2)
			return MHD_NO;
		if (r != 0) {
			rq->refused = r == -3 ? 503 : 413;
			rq->drained = n;
			http_body_release(h, rq);
		}
		return MHD_YES;
	}
	if ((rq->route->flags & ROUTE_JSON) != 0)
		http_deadlines_mark(h, conn, -1);   /* the whole body is in: its deadline is met */
	if (rq->refused == 503) {
		metrics_http_request(rq->route->pattern, 503);
		return http_send_error(conn, rq, 503, "unavailable",
		    "too many request bodies are being received at once; retry later", NULL,
		    "Retry-After", "1");
	}
	if (rq->refused != 0) {
		metrics_http_request(rq->route->pattern, 413);
		return http_send_error(conn, rq, 413, "payload_too_large",
		    "request body exceeds the size limit", NULL, NULL, NULL);
	}

	if (rq->deferred != NULL) {
		/* resumed: the pipe ran the enqueue; answer on this thread, with its store handle */
		struct api_deferred *d = rq->deferred;

		rq->deferred = NULL;
		rq->req.store = http_thread_store(h);
		d->finish(d, &rq->req, &resp);
	} else {
		http_dispatch(h, conn, method, url, rq, &resp);
		http_etag(conn, rq, &resp);
	}
	if (resp.deferred != NULL) {
		http_defer(h, conn, rq, resp.deferred);   /* the first round trip, or one more */
		return MHD_YES;
	}
	cJSON_Delete(rq->json);
	rq->json = NULL;
	http_body_release(h, rq);   /* the handler is done with the body */
	ret = http_send(conn, rq, &resp);   /* the access line is written by http_completed */
	metrics_http_request(rq->route->pattern, resp.status);
	if ((rq->route->flags & ROUTE_ACCEPT) != 0)
		metrics_accept_duration(rq->route->pattern, http_mono_s() - rq->start_s);
	free(resp.body);
	return ret;
}

/* the access line's "end" field: how the request ended */
static const char *
http_termination(enum MHD_RequestTerminationCode toe)
{
	switch (toe) {
	case MHD_REQUEST_TERMINATED_COMPLETED_OK: return "completed";
	case MHD_REQUEST_TERMINATED_WITH_ERROR: return "error";
	case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "timeout";
	case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "shutdown";
	case MHD_REQUEST_TERMINATED_READ_ERROR: return "read_error";
	case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "client_abort";
	default: return "unknown";
	}
}

/*
 * http_access_log - the one access line of a request, when it ends: the
 * route pattern (never the raw path with its ids) when one matched, else
 * the raw path cut to HTTP_LOG_PATH_MAX; warn for 5xx and for a request
 * that got no answer (status 0). The tenant is the key's name, never the key.
 * body_cut: the body deadline cut the connection (end=body_timeout).
 */
static void
http_access_log(const struct http_req *rq, enum MHD_RequestTerminationCode toe, int body_cut)
{
	char dur[32];
	enum log_level lv = rq->status >= 500 || rq->status == 0 ? LOG_WARN : LOG_INFO;

	if (!log_enabled(lv))
		return;     /* at TXMAIL_LOG_LEVEL=warn: no duration to format on every 2xx */
	util_fmt_duration(http_mono_s() - rq->start_s, dur, sizeof(dur));
	log_msg(lv, "request",
	    " method=%s route=%s status=%d duration=%s bytes_in=%zu bytes_out=%zu tenant=%s"
	    " request_id=%s end=%s",
	    rq->method, rq->route != NULL ? rq->route->pattern : rq->path, rq->status, dur,
	    rq->bytes_in, rq->bytes_out, rq->tenant, rq->request_id,
	    body_cut ? "body_timeout" : http_termination(toe));
}

static void
http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct http_req *rq = *con_cls;
	int body_cut = http_deadlines_mark(cls, conn, HTTP_Q_KEPT);   /* the next request's headers, if any */

	if (rq == NULL)
		return;
	http_access_log(rq, toe, body_cut);
	atomic_fetch_sub(&((struct http_server *)cls)->active, 1);   /* after its access line */
	http_body_release(cls, rq);   /* every path: error, timeout, client gone */
	if (rq->deferred != NULL)
		rq->deferred->discard(rq->deferred);   /* resumed, never finished: the server stops */
	cJSON_Delete(rq->json);
	free(rq);
	*con_cls = NULL;
}

/*
 * http_mhd_log - libmicrohttpd's messages as warnings, at most
 * HTTP_MHD_LOG_BURST a second: it writes one per connection that breaks
 * off, so hostile clients (and the header deadline cutting them) would
 * otherwise flood the log. What is dropped is counted and reported with
 * the next message that is logged.
 */
static void
http_mhd_log(void *cls, const char *fmt, va_list ap)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static int64_t window;
	static unsigned int in_window, dropped;
	int64_t sec = util_mono_ms() / 1000;
	unsigned int was_dropped = 0;
	char buf[512];
	size_t n;

	(void)cls;
	pthread_mutex_lock(&lock);
	if (sec != window) {
		was_dropped = dropped;
		dropped = 0;
		in_window = 0;
		window = sec;
	}
	if (in_window >= HTTP_MHD_LOG_BURST) {
		dropped++;
		pthread_mutex_unlock(&lock);
		return;
	}
	in_window++;
	pthread_mutex_unlock(&lock);
	if (was_dropped > 0)
		log_warn("libmicrohttpd messages not logged", "count=%u limit_per_second=%d",
		    was_dropped, HTTP_MHD_LOG_BURST);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_warn("libmicrohttpd message", "detail=%s", buf);
}

/*
 * http_listen - the common start of both listeners: routes, where, how
 * many threads and connections; events: the API (start the event hub),
 * else the admin listener (its log lines say "admin").
 */
static struct http_server *
http_listen(const struct config *cfg, const struct http_route *routes,
    size_t nroutes, const char *lhost, uint16_t lport, unsigned int threads,
    unsigned int max_conns, int events, char *err, size_t errlen)
{
	struct http_server *h = NULL;
	struct addrinfo hints = { 0 }, *ai = NULL;
	const union MHD_DaemonInfo *info;
	char port[8], host[300], hdr_to[32], body_to[32];
	unsigned int flags;
	unsigned int limit;
	unsigned long long nofile = 0;
	uint16_t bound;
	int rc;

	for (size_t i = 0; i < nroutes; i++)
		if ((routes[i].flags & ROUTE_ACCEPT) != 0)
			metrics_accept_route(routes[i].pattern);   /* a series from the start */
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	h->cfg = cfg;
	h->routes = routes;
	h->nroutes = nroutes;
	pthread_mutex_init(&h->stores_lock, NULL);
	pthread_mutex_init(&h->runs_lock, NULL);
	pthread_cond_init(&h->runs_done, NULL);
	h->max_body = cfg->max_body != 0 ? cfg->max_body : HTTP_DEFAULT_MAX_BODY;
	h->body_budget = cfg->http_body_budget != 0 ? cfg->http_body_budget : HTTP_DEFAULT_BODY_BUDGET;
	if (h->body_budget < h->max_body + 1)
		h->body_budget = h->max_body + 1;   /* config check refuses less; a largest body always fits alone */
	atomic_init(&h->body_bytes, 0);

	snprintf(port, sizeof(port), "%u", (unsigned)lport);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(lhost[0] != '\0' ? lhost : NULL, port, &hints, &ai);
	if (rc != 0 || ai == NULL) {
		snprintf(err, errlen, "cannot resolve listen address %s: %s", lhost, gai_strerror(rc));
		goto fail;
	}
	if (threads < 1)
		threads = 1;
	limit = http_connection_limit(&nofile);
	if (limit > max_conns)
		limit = max_conns;

	if (events && (h->events = api_events_hub_start(cfg, err, errlen)) == NULL)
		goto fail;
	if (events && (h->pipe = enqpipe_start(&cfg->redis, err, errlen)) == NULL)
		goto fail;
	if (http_deadlines_start(h, err, errlen) != 0)
		goto fail;
	/*
	 * A name with several addresses (localhost: ::1 and 127.0.0.1) is
	 * served on the first of them that can be bound, in getaddrinfo's
	 * order; one listener only.
	 */
	for (const struct addrinfo *cur = ai; cur != NULL && h->daemon == NULL; cur = cur->ai_next) {
		flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
		flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;
		if (cur->ai_family == AF_INET6)
			flags |= MHD_USE_IPv6;
		h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, http_access, h,
		    MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, h,
		    MHD_OPTION_SOCK_ADDR, cur->ai_addr,
		    MHD_OPTION_THREAD_POOL_SIZE, threads,
		    MHD_OPTION_CONNECTION_LIMIT, limit,
		    MHD_OPTION_CONNECTION_MEMORY_LIMIT, HTTP_CONNECTION_MEMORY,
		    MHD_OPTION_CONNECTION_TIMEOUT,
		    (unsigned)(cfg->http_timeout > 0 ? cfg->http_timeout : HTTP_CONNECTION_TIMEOUT_S),
		    MHD_OPTION_NOTIFY_COMPLETED, http_completed, h,
		    MHD_OPTION_NOTIFY_CONNECTION, http_notify_connection, h,
		    MHD_OPTION_END);
	}
	if (h->daemon == NULL) {
		snprintf(err, errlen, "cannot listen on %s:%u (in use, or not permitted)", lhost,
		    (unsigned)lport);
		goto fail;
	}
	bound = lport;
	info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	if (info != NULL && info->port != 0)
		bound = info->port;
	if (strchr(lhost, ':') != NULL)
		snprintf(host, sizeof(host), "[%s]", lhost);
	else
		snprintf(host, sizeof(host), "%s", lhost);
	if (lport == 0)
		log_msg(LOG_INFO, events ? "http port bound" : "admin port bound", " port=%u",
		    (unsigned)bound);
	log_msg(LOG_INFO, events ? "http listening" : "admin listening", " url=http://%s:%u", host,
	    (unsigned)bound);
	log_msg(LOG_INFO, events ? "http limits" : "admin limits", " max_connections=%u nofile=%llu idle_timeout=%ds header_timeout=%s"
	    " body_timeout=%s max_body=%zu body_budget=%zu threads=%u",
	    limit, nofile, cfg->http_timeout > 0 ? cfg->http_timeout : HTTP_CONNECTION_TIMEOUT_S,
	    util_fmt_duration((double)h->hd.after_ms[HTTP_Q_FRESH] / 1000.0, hdr_to, sizeof(hdr_to)),
	    util_fmt_duration((double)h->hd.after_ms[HTTP_Q_BODY] / 1000.0, body_to, sizeof(body_to)),
	    h->max_body, h->body_budget, threads);
	freeaddrinfo(ai);
	return h;
fail:
	if (ai != NULL)
		freeaddrinfo(ai);
	if (h != NULL) {
		http_deadlines_stop(h);
		enqpipe_stop(h->pipe);
		api_events_hub_free(h->events);
		pthread_mutex_destroy(&h->stores_lock);
		pthread_mutex_destroy(&h->runs_lock);
		pthread_cond_destroy(&h->runs_done);
	}
	free(h);
	return NULL;
}

struct http_server *
http_start(const struct config *cfg, char *err, size_t errlen)
{
	return http_listen(cfg, http_routes, HTTP_NROUTES, cfg->listen_host, cfg->listen_port,
	    cfg->http_threads > 0 ? (unsigned)cfg->http_threads : 1, HTTP_CONNECTION_LIMIT_MAX, 1,
	    err, errlen);
}

struct http_server *
http_start_admin(const struct config *cfg, char *err, size_t errlen)
{
	return http_listen(cfg, http_admin_routes, HTTP_ADMIN_NROUTES, cfg->admin_listen_host,
	    cfg->admin_listen_port, HTTP_ADMIN_THREADS, HTTP_ADMIN_CONNECTIONS, 0, err, errlen);
}

void
http_drain(struct http_server *h)
{
	if (h == NULL)
		return;
	atomic_store(&h->draining, 1);
	api_events_hub_shutdown(h->events);   /* event streams end; new ones get 503 */
}

int
http_active(struct http_server *h)
{
	return h != NULL ? atomic_load(&h->active) : 0;
}

void
http_stop(struct http_server *h)
{
	if (h == NULL)
		return;
	/* end every event stream first: MHD must not be stopped with suspended connections */
	api_events_hub_shutdown(h->events);
	enqpipe_stop(h->pipe);   /* every parked send answered and its connection resumed */
	/* and every deferred run (bounded by its own timeout) */
	pthread_mutex_lock(&h->runs_lock);
	while (h->runs > 0)
		pthread_cond_wait(&h->runs_done, &h->runs_lock);
	pthread_mutex_unlock(&h->runs_lock);
	http_deadlines_stop(h);
	if (h->daemon != NULL)
		MHD_stop_daemon(h->daemon);   /* every CLOSED notification has run after this */
	pthread_cond_destroy(&h->hd.wake);
	pthread_mutex_destroy(&h->hd.lock);
	api_events_hub_free(h->events);
	http_close_stores(h);
	pthread_mutex_destroy(&h->stores_lock);
	pthread_mutex_destroy(&h->runs_lock);
	pthread_cond_destroy(&h->runs_done);
	free(h);
}
