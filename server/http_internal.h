/*
 * http_internal.h - what the files of the HTTP module (http.c and
 * http_*.c) share: the server and connection types and the header and
 * body deadlines (http_deadlines.c). Included by server/http*.c only;
 * everyone else uses http.h. Like them, it may include microhttpd.h.
 */
#ifndef SERVER_HTTP_INTERNAL_H
#define SERVER_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "http.h"

#define HTTP_CONNECTION_TIMEOUT_S 30
#define HTTP_HEADER_TIMEOUT_S 10.0
#define HTTP_BODY_TIMEOUT_S 30.0

struct api_events_hub;
struct config;

/* a connection waiting for request headers (socket_context of MHD) */
struct http_conn {
	struct http_conn *prev, *next;
	int64_t deadline_ms;    /* util_mono_ms() */
	int fd;                 /* MHD's; only ever shut down here, never closed */
	int queue;              /* HTTP_Q_*, or -1 while no deadline runs */
	int body_cut;           /* the sweeper cut it past its body deadline */
	int hung_up;            /* the sweeper saw its client's FIN while its body was due (hd_reap_gone) */
};

/* FRESH, KEPT: waiting for request headers; BODY: for the rest of a request body */
enum { HTTP_Q_FRESH, HTTP_Q_KEPT, HTTP_Q_BODY, HTTP_NQ };

struct http_deadlines {
	pthread_mutex_t lock;
	pthread_cond_t wake;    /* CLOCK_MONOTONIC; signalled to stop, and by a first body due */
	struct http_conn *head[HTTP_NQ], *tail[HTTP_NQ];  /* each in deadline order */
	int64_t after_ms[HTTP_NQ];
	pthread_t thread;
	int running;
	int stop;
};

struct http_store_node;
struct http_route;

struct http_server {
	struct MHD_Daemon *daemon;
	struct api_events_hub *events;  /* feeds GET /v1/events/stream; NULL on the admin listener */
	struct enqpipe *pipe;           /* runs the sends' enqueues (enqpipe.h); NULL on the admin listener */
	const struct config *cfg;
	const struct http_route *routes;    /* http_routes, or http_admin_routes */
	size_t nroutes;
	pthread_mutex_t stores_lock;
	struct http_store_node *stores; /* one per MHD thread of this server (http_thread_store) */
	size_t max_body;
	size_t body_budget;     /* cfg->http_body_budget, at least max_body + 1 */
	atomic_size_t body_bytes;   /* reserved by the bodies being received (struct http_req.reserved) */
	struct http_deadlines hd;
	atomic_int draining;    /* http_drain: every route but /healthz answers 503 */
	atomic_int active;      /* requests begun and not completed */
	pthread_mutex_t runs_lock;
	pthread_cond_t runs_done;
	int runs;               /* deferred runs (api_deferred.run) on their threads now */
};

/*
 * http_deadlines_start - the lock, the queues (their allowances from
 * h->cfg) and the sweeper thread; 0, or -1 with err.
 */
int http_deadlines_start(struct http_server *h, char *err, size_t errlen);

/* http_deadlines_stop - ends the sweeper; the queues are empty once MHD has stopped. */
void http_deadlines_stop(struct http_server *h);

/*
 * http_deadlines_mark - headers or body complete (q < 0: stop the clock),
 * body due (q = HTTP_Q_BODY) or request over (q = HTTP_Q_KEPT). Returns 1
 * when the sweeper had cut this connection past a body deadline.
 */
int http_deadlines_mark(struct http_server *h, struct MHD_Connection *conn, int q);

/* http_notify_connection - MHD_OPTION_NOTIFY_CONNECTION: starts and drops the tracking entry. */
void http_notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode toe);

#endif
