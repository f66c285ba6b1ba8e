/*
 * api_events.c - live events: GET /v1/events/stream (Server-Sent Events)
 * and the hub that feeds every open stream.
 *
 * Owns the SSE framing, each client's bounded buffer and the hub thread,
 * which has its own struct store: it tails the events stream with
 * store_events_since (blocking at most HUB_BLOCK_MS), appends every event
 * to each live client's buffer, catches up clients that resumed with
 * Last-Event-ID from the store (flow-controlled: a client is read for only
 * while its buffer is less than half full), and queues a ": keepalive"
 * comment after API_EVENTS_KEEPALIVE_MS of silence. A key holds at most
 * TXMAIL_SSE_PER_KEY streams at once (of the process's API_EVENTS_MAX_CLIENTS).
 * A parked connection is not watched by libmicrohttpd, so the hub polls the
 * sockets of parked clients on every pass and ends a client whose peer hung
 * up: the connection resumes, the stream ends, and the response's free
 * callback (api_events_client_close) gives the slot back within a pass
 * (HUB_BLOCK_MS), not at the next keepalive. A client gets only its
 * project's events (each event carries its project; another project's are
 * stepped over, live and on resume alike). HTTP threads only copy
 * bytes out of a buffer under the hub's lock; they never wait on Redis or
 * on a client. A client that falls API_EVENTS_CLIENT_BUF behind is
 * disconnected (it resumes with Last-Event-ID); the event stream's
 * retention bounds how far back it can resume.
 *
 * The hub reads the stream only while a client is connected: with none it
 * forgets its position and sleeps on a condition variable (no Redis call,
 * no timer), the first client's open wakes it at once, and it reads the
 * stream's last id again before tailing. A client that asked for new
 * events while the hub had no position starts just before its open's wall
 * time (api_events_start_at), so what was appended between the open and
 * that read reaches it, as it would have from a hub that never stopped.
 *
 * It must never block an HTTP thread, never let one client's pace affect
 * another or the API, and never include microhttpd.h (http.c parks and
 * wakes connections through the callbacks of api_events_client_attach).
 */
#include "api_events.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "keys.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "webhook.h"

#define HUB_BLOCK_MS 250          /* longest wait on Redis before looking at stop/keepalives */
#define HUB_READ_MAX 256          /* live events per read */
#define HUB_CATCHUP_MAX 64        /* events per catch-up read of one client */
#define HUB_REDIS_BACKOFF_MS 500
#define HUB_ID_MAX 48             /* stream ids, as store_event.entry_id */

/* a position in the stream: dollar = "whatever is new" (no id seen yet) */
struct hub_cursor {
	int dollar;
	uint64_t ms, seq;
};

struct api_events_client {
	struct api_events_hub *hub;
	struct api_events_client *next;
	uint64_t serial;             /* never reused: finds a client again after unlocking */
	char *buf;                   /* queued bytes are buf[off..len) */
	size_t off, len, cap;
	int closed;                  /* overflow or shutdown: the stream ends */
	int parked;                  /* park() was called; wake() is owed */
	int catching_up;             /* resumed with Last-Event-ID, not yet at the live edge */
	char project[STORE_PROJECT_MAX + 1];  /* whose events it gets */
	int all_projects;            /* a key of scope admin: every project's */
	struct hub_cursor cur;       /* the last event queued for it */
	int64_t open_ms;             /* wall clock at open, for a "$" cursor (hub had no position) */
	int64_t last_queued_ms;      /* monotonic: for keepalives */
	api_events_conn_fn *park, *wake;
	void *arg;
	int fd;                      /* the connection's socket, watched while parked; -1: none */
	char tenant[API_EVENTS_TENANT_MAX];  /* the API key it counts against */
};

struct api_events_hub {
	pthread_mutex_t lock;        /* everything below but st */
	struct api_events_client *clients;
	int nclients;
	pthread_cond_t wake;         /* signalled by the first client's open and by shutdown */
	int per_key;                 /* TXMAIL_SSE_PER_KEY */
	int closing;
	uint64_t next_serial;
	struct hub_cursor cur;       /* the last event the live tail read; "$" while idle */

	struct store *st;            /* the hub thread's own */
	pthread_t thr;
	int thr_started;
	atomic_int stop;
};

_Static_assert(API_EVENTS_TENANT_MAX >= KEYS_TENANT_MAX, "a tenant must fit a client's copy");

/* The hub of this process (one HTTP server per process); set by start, cleared by free. */
static struct api_events_hub *api_events_current;

/* ---- pure helpers ------------------------------------------------------------- */

int api_events_parse_id(const char *s, uint64_t *ms, uint64_t *seq)
{
	uint64_t v[2] = { 0, 0 };
	int part = 0, digits = 0;

	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s >= '0' && *s <= '9') {
			unsigned d = (unsigned)(*s - '0');

			if (v[part] > (UINT64_MAX - d) / 10)
				return -1;
			v[part] = v[part] * 10 + d;
			if (++digits > 20)
				return -1;
		} else if (*s == '-' && part == 0 && digits > 0) {
			part = 1;
			digits = 0;
		} else {
			return -1;
		}
	}
	if (part != 1 || digits == 0)
		return -1;
	*ms = v[0];
	*seq = v[1];
	return 0;
}

int api_events_start_at(int64_t open_ms, uint64_t last_ms, uint64_t last_seq, uint64_t *ms,
    uint64_t *seq)
{
	uint64_t floor = last_ms > API_EVENTS_NOW_SLACK_MS ? last_ms - API_EVENTS_NOW_SLACK_MS : 0;
	uint64_t at;

	if (open_ms <= 0 || (uint64_t)open_ms > last_ms) {
		*ms = last_ms;
		*seq = last_seq;
		return 0;
	}
	at = (uint64_t)open_ms - 1;
	*ms = at > floor ? at : floor;
	*seq = UINT64_MAX;   /* everything from millisecond *ms + 1 on */
	return 1;
}

/* fr_put - append (p, n) at *len when it fits in outlen - 1; *len always advances. */
static void fr_put(char *out, size_t outlen, size_t *len, const char *p, size_t n)
{
	if (outlen > 0 && *len < outlen - 1) {
		size_t room = outlen - 1 - *len;

		memcpy(out + *len, p, n < room ? n : room);
	}
	*len += n;
}

int api_events_frame(const char *id, const char *type, const char *data, size_t data_len,
    char *out, size_t outlen)
{
	size_t len = 0, i = 0;

	if (!id || strpbrk(id, "\r\n") || (type && strpbrk(type, "\r\n")) || (!data && data_len))
		return -1;
	if (data_len > (size_t)1 << 30)
		return -1;
	fr_put(out, outlen, &len, "id: ", 4);
	fr_put(out, outlen, &len, id, strlen(id));
	fr_put(out, outlen, &len, "\n", 1);
	if (type && *type) {
		fr_put(out, outlen, &len, "event: ", 7);
		fr_put(out, outlen, &len, type, strlen(type));
		fr_put(out, outlen, &len, "\n", 1);
	}
	for (;;) {
		size_t e = i;

		while (e < data_len && data[e] != '\r' && data[e] != '\n')
			e++;
		fr_put(out, outlen, &len, "data: ", 6);
		fr_put(out, outlen, &len, data + i, e - i);
		fr_put(out, outlen, &len, "\n", 1);
		if (e >= data_len)
			break;
		if (data[e] == '\r' && e + 1 < data_len && data[e + 1] == '\n')
			e++;
		i = e + 1;
	}
	fr_put(out, outlen, &len, "\n", 1);
	if (outlen > 0)
		out[len < outlen - 1 ? len : outlen - 1] = '\0';
	return (int)len;
}

/* ---- cursors -------------------------------------------------------------------- */

/* 1 when event (ms, seq) comes after cursor c (anything comes after "$") */
static int hub_after(const struct hub_cursor *c, uint64_t ms, uint64_t seq)
{
	if (c->dollar)
		return 1;
	return ms > c->ms || (ms == c->ms && seq > c->seq);
}

static void hub_cursor_str(const struct hub_cursor *c, char *out, size_t outlen)
{
	if (c->dollar)
		snprintf(out, outlen, "$");
	else
		snprintf(out, outlen, "%" PRIu64 "-%" PRIu64, c->ms, c->seq);
}

/* ---- client buffers (hub lock held) ---------------------------------------------- */

static void client_wake(struct api_events_client *c)
{
	if (c->parked) {
		c->parked = 0;
		if (c->wake)
			c->wake(c->arg);
	}
}

static void client_end(struct api_events_client *c)
{
	c->closed = 1;
	free(c->buf);
	c->buf = NULL;
	c->off = c->len = c->cap = 0;
	client_wake(c);
}

/* client_queue - append bytes; on overflow the client is ended. 0 or -1. */
static int client_queue(struct api_events_client *c, const char *p, size_t n)
{
	size_t queued;

	if (c->closed)
		return -1;
	queued = c->len - c->off;
	if (n > API_EVENTS_CLIENT_BUF || queued > API_EVENTS_CLIENT_BUF - n) {
		log_info("event stream client too slow, disconnected", "queued_bytes=%zu", queued);
		client_end(c);
		return -1;
	}
	if (c->off > 0 && c->len + n > c->cap) {
		memmove(c->buf, c->buf + c->off, queued);
		c->off = 0;
		c->len = queued;
	}
	if (c->len + n > c->cap) {
		size_t cap = c->cap ? c->cap : 4096;
		char *nb;

		while (cap < c->len + n)
			cap *= 2;
		nb = realloc(c->buf, cap);
		if (!nb) {
			log_warn("event stream client out of memory, disconnected");
			client_end(c);
			return -1;
		}
		c->buf = nb;
		c->cap = cap;
	}
	memcpy(c->buf + c->len, p, n);
	c->len += n;
	c->last_queued_ms = util_mono_ms();
	client_wake(c);
	return 0;
}

static struct api_events_client *hub_find(struct api_events_hub *hub, uint64_t serial)
{
	struct api_events_client *c;

	for (c = hub->clients; c; c = c->next)
		if (c->serial == serial)
			return c;
	return NULL;
}

/* ---- the hub thread ---------------------------------------------------------------- */

struct hub_frame {
	uint64_t ms, seq;
	char *text;
	size_t len;
	const char *project;         /* the event's (points into its store_event) */
};

/* hub_frames - frame each event (malloc'd text); events with a bad id get text NULL. */
static void hub_frames(struct store_event **evs, int n, struct hub_frame *fr)
{
	int i;

	for (i = 0; i < n; i++) {
		char type[64];
		size_t dlen = strlen(evs[i]->json);
		int len;

		memset(&fr[i], 0, sizeof(fr[i]));
		fr[i].project = evs[i]->project;
		if (api_events_parse_id(evs[i]->entry_id, &fr[i].ms, &fr[i].seq) != 0)
			continue;
		if (webhook_event_field(evs[i]->json, "type", type, sizeof(type)) != 0)
			type[0] = '\0';
		len = api_events_frame(evs[i]->entry_id, type, evs[i]->json, dlen, NULL, 0);
		if (len < 0)
			continue;
		fr[i].text = malloc((size_t)len + 1);
		if (!fr[i].text)
			continue;
		api_events_frame(evs[i]->entry_id, type, evs[i]->json, dlen, fr[i].text, (size_t)len + 1);
		fr[i].len = (size_t)len;
	}
}

static void hub_frames_free(struct hub_frame *fr, int n)
{
	int i;

	for (i = 0; i < n; i++)
		free(fr[i].text);
}

/*
 * hub_deliver - queue frames to c in order, skipping what it already has;
 * another project's events are stepped over (the cursor moves past them, so
 * a resumed client never reads them again, and never sees them at all).
 */
static void hub_deliver(struct api_events_client *c, const struct hub_frame *fr, int n)
{
	int i;

	for (i = 0; i < n && !c->closed; i++) {
		int mine;

		if (!hub_after(&c->cur, fr[i].ms, fr[i].seq))
			continue;
		mine = c->all_projects || (fr[i].project && strcmp(fr[i].project, c->project) == 0);
		if (mine && fr[i].text && client_queue(c, fr[i].text, fr[i].len) != 0)
			return;
		c->cur.dollar = 0;
		c->cur.ms = fr[i].ms;
		c->cur.seq = fr[i].seq;
	}
}

/*
 * hub_catch_up - one store read for each client behind the live edge
 * whose buffer has room. Returns 1 when some client is still behind.
 */
static int hub_catch_up(struct api_events_hub *hub)
{
	struct store_event *evs[HUB_CATCHUP_MAX];
	struct hub_frame fr[HUB_CATCHUP_MAX];
	uint64_t done_upto = 0;   /* serials <= this were served in this pass */
	int behind = 0;

	for (;;) {
		struct api_events_client *c, *pick = NULL;
		char from[HUB_ID_MAX];
		uint64_t serial;
		int n;

		if (atomic_load(&hub->stop))
			return 0;
		pthread_mutex_lock(&hub->lock);
		for (c = hub->clients; c; c = c->next) {
			if (!c->catching_up || c->closed || c->serial <= done_upto)
				continue;
			if (c->len - c->off >= API_EVENTS_CLIENT_BUF / 2) {
				behind = 1;   /* let it drain first */
				continue;
			}
			if (!pick || c->serial < pick->serial)
				pick = c;
		}
		if (!pick) {
			pthread_mutex_unlock(&hub->lock);
			return behind;
		}
		serial = pick->serial;
		done_upto = serial;
		hub_cursor_str(&pick->cur, from, sizeof(from));
		pthread_mutex_unlock(&hub->lock);

		n = store_events_since(hub->st, from, HUB_CATCHUP_MAX, 0, evs);
		if (n < 0)
			return 0;   /* Redis trouble: the live read notices and backs off */
		hub_frames(evs, n, fr);
		pthread_mutex_lock(&hub->lock);
		c = hub_find(hub, serial);
		if (c && !c->closed) {
			hub_deliver(c, fr, n);
			if (n < HUB_CATCHUP_MAX)
				c->catching_up = 0;
			else
				behind = 1;
		}
		pthread_mutex_unlock(&hub->lock);
		hub_frames_free(fr, n);
		while (n > 0)
			store_event_free(evs[--n]);
	}
}

static void hub_keepalives(struct api_events_hub *hub)
{
	static const char ka[] = ": keepalive\n\n";
	int64_t now = util_mono_ms();
	struct api_events_client *c;

	pthread_mutex_lock(&hub->lock);
	for (c = hub->clients; c; c = c->next)
		if (!c->closed && now - c->last_queued_ms >= API_EVENTS_KEEPALIVE_MS)
			client_queue(c, ka, sizeof(ka) - 1);
	pthread_mutex_unlock(&hub->lock);
}

/*
 * hub_reap_gone - end every parked client whose peer closed its socket
 * (libmicrohttpd watches no suspended connection). Under the lock, so a
 * parked client's fd is its live connection's: the connection cannot end
 * while suspended, and the client is freed only when it ends.
 */
static void hub_reap_gone(struct api_events_hub *hub)
{
	struct pollfd pfd[API_EVENTS_MAX_CLIENTS];
	struct api_events_client *who[API_EVENTS_MAX_CLIENTS];
	struct api_events_client *c;
	int n = 0, gone = 0;

	pthread_mutex_lock(&hub->lock);
	for (c = hub->clients; c && n < API_EVENTS_MAX_CLIENTS; c = c->next) {
		if (!c->parked || c->closed || c->fd < 0)
			continue;
		pfd[n].fd = c->fd;
		pfd[n].events = POLLRDHUP;
		pfd[n].revents = 0;
		who[n++] = c;
	}
	if (n > 0 && poll(pfd, (nfds_t)n, 0) > 0) {
		for (int i = 0; i < n; i++) {
			if (pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) {
				client_end(who[i]);
				gone++;
			}
		}
	}
	pthread_mutex_unlock(&hub->lock);
	if (gone > 0)
		log_debug("event stream clients hung up, slots freed", "count=%d", gone);
}

static void hub_sleep(struct api_events_hub *hub, int ms)
{
	while (ms > 0 && !atomic_load(&hub->stop)) {
		int step = ms > 50 ? 50 : ms;

		usleep((useconds_t)step * 1000);
		ms -= step;
	}
}

/*
 * hub_idle - with no client, forget the position and wait for the first one
 * (or stop): nothing is read for nobody. Returns at once when one is there.
 */
static void hub_idle(struct api_events_hub *hub)
{
	pthread_mutex_lock(&hub->lock);
	if (hub->nclients == 0 && !atomic_load(&hub->stop)) {
		hub->cur.dollar = 1;
		log_debug("event stream idle, no client");
		while (hub->nclients == 0 && !atomic_load(&hub->stop))
			pthread_cond_wait(&hub->wake, &hub->lock);
	}
	pthread_mutex_unlock(&hub->lock);
}

/*
 * hub_position - the hub has no position ("$": just started, or woken by a
 * first client): read the stream's last id and start there, and place each
 * client that asked for "now" meanwhile (api_events_start_at; one before
 * the last id catches up from its place). Read from an explicit id, never
 * "$", which would skip what is appended between two reads. 0 or a store
 * error (the caller backs off).
 */
static int hub_position(struct api_events_hub *hub)
{
	char last[HUB_ID_MAX];
	uint64_t ms, seq;
	struct api_events_client *c;
	int rc = store_events_last_id(hub->st, last, sizeof(last));

	if (rc != STORE_OK)
		return rc;
	if (api_events_parse_id(last, &ms, &seq) != 0)
		return STORE_ERR_PROTO;
	pthread_mutex_lock(&hub->lock);
	hub->cur.dollar = 0;
	hub->cur.ms = ms;
	hub->cur.seq = seq;
	for (c = hub->clients; c; c = c->next) {
		if (!c->cur.dollar || c->closed)
			continue;
		c->cur.dollar = 0;
		c->catching_up = api_events_start_at(c->open_ms, ms, seq, &c->cur.ms, &c->cur.seq);
	}
	pthread_mutex_unlock(&hub->lock);
	return 0;
}

static void *hub_thread(void *arg)
{
	struct api_events_hub *hub = arg;
	struct store_event *evs[HUB_READ_MAX];
	struct hub_frame fr[HUB_READ_MAX];
	int redis_down = 0;

	while (!atomic_load(&hub->stop)) {
		char from[HUB_ID_MAX];
		int behind, n = 0, i;

		hub_idle(hub);
		if (atomic_load(&hub->stop))
			break;
		/* the position first: a client catching up then ends at or past it, leaving no gap */
		if (hub->cur.dollar)
			n = hub_position(hub);
		if (n == 0) {
			behind = hub_catch_up(hub);
			pthread_mutex_lock(&hub->lock);
			hub_cursor_str(&hub->cur, from, sizeof(from));
			pthread_mutex_unlock(&hub->lock);
			n = store_events_since(hub->st, from, HUB_READ_MAX, behind ? 0 : HUB_BLOCK_MS, evs);
		}
		if (n < 0) {
			if (!redis_down)
				log_warn("event stream cannot read events, backing off", "error=%s",
				    store_strerror(n));
			redis_down = 1;
			hub_keepalives(hub);
			hub_reap_gone(hub);
			hub_sleep(hub, HUB_REDIS_BACKOFF_MS);
			continue;
		}
		if (redis_down)
			log_info("event stream reading events again");
		redis_down = 0;
		if (n > 0) {
			struct api_events_client *c;

			hub_frames(evs, n, fr);
			pthread_mutex_lock(&hub->lock);
			for (c = hub->clients; c; c = c->next)
				if (!c->catching_up && !c->closed)
					hub_deliver(c, fr, n);
			for (i = n - 1; i >= 0; i--) {
				if (api_events_parse_id(evs[i]->entry_id, &hub->cur.ms, &hub->cur.seq) == 0) {
					hub->cur.dollar = 0;
					break;
				}
			}
			pthread_mutex_unlock(&hub->lock);
			hub_frames_free(fr, n);
			for (i = 0; i < n; i++)
				store_event_free(evs[i]);
		}
		hub_keepalives(hub);
		hub_reap_gone(hub);
	}
	return NULL;
}

/* ---- lifecycle -------------------------------------------------------------------- */

struct api_events_hub *api_events_hub_start(const struct config *cfg, char *err, size_t errlen)
{
	struct api_events_hub *hub = calloc(1, sizeof(*hub));
	int rc;

	if (!hub) {
		snprintf(err, errlen, "events: out of memory");
		return NULL;
	}
	pthread_mutex_init(&hub->lock, NULL);
	pthread_cond_init(&hub->wake, NULL);
	hub->cur.dollar = 1;
	hub->next_serial = 1;
	hub->per_key = cfg->sse_per_key > 0 ? cfg->sse_per_key : API_EVENTS_PER_KEY_DEFAULT;
	atomic_init(&hub->stop, 0);
	hub->st = store_open(&cfg->redis);
	if (!hub->st) {
		snprintf(err, errlen, "events: out of memory");
		goto fail;
	}
	rc = pthread_create(&hub->thr, NULL, hub_thread, hub);
	if (rc != 0) {
		snprintf(err, errlen, "events: cannot start thread: %s", strerror(rc));
		goto fail;
	}
	hub->thr_started = 1;
	api_events_current = hub;
	return hub;
fail:
	store_close(hub->st);
	pthread_cond_destroy(&hub->wake);
	pthread_mutex_destroy(&hub->lock);
	free(hub);
	return NULL;
}

void api_events_hub_shutdown(struct api_events_hub *hub)
{
	struct api_events_client *c;

	if (!hub)
		return;
	pthread_mutex_lock(&hub->lock);
	atomic_store(&hub->stop, 1);
	pthread_cond_signal(&hub->wake);
	pthread_mutex_unlock(&hub->lock);
	if (hub->thr_started) {
		pthread_join(hub->thr, NULL);
		hub->thr_started = 0;
	}
	pthread_mutex_lock(&hub->lock);
	hub->closing = 1;
	for (c = hub->clients; c; c = c->next)
		client_end(c);
	pthread_mutex_unlock(&hub->lock);
}

void api_events_hub_free(struct api_events_hub *hub)
{
	if (!hub)
		return;
	api_events_hub_shutdown(hub);
	if (api_events_current == hub)
		api_events_current = NULL;
	while (hub->clients) {
		struct api_events_client *c = hub->clients;

		hub->clients = c->next;
		free(c->buf);
		free(c);
	}
	store_close(hub->st);
	pthread_cond_destroy(&hub->wake);
	pthread_mutex_destroy(&hub->lock);
	free(hub);
}

/* ---- clients ------------------------------------------------------------------------ */

enum { OPEN_NOMEM, OPEN_FULL, OPEN_KEY_FULL };

/*
 * events_client_open - a new client of tenant, getting the events of project
 * (all: every project's), after `last` (NULL: only new events). NULL with
 * *why OPEN_FULL (closing, or API_EVENTS_MAX_CLIENTS open), OPEN_KEY_FULL
 * (tenant holds hub->per_key; *open gets its count) or OPEN_NOMEM.
 */
static struct api_events_client *events_client_open(struct api_events_hub *hub, const char *last,
    const char *tenant, const char *project, int all, int *why, int *open)
{
	static const char hello[] = ": txmail event stream\n\n";
	struct api_events_client *c = calloc(1, sizeof(*c)), *o;
	uint64_t ms, seq;
	int mine = 0;

	*why = OPEN_NOMEM;
	*open = 0;
	if (!c)
		return NULL;
	c->hub = hub;
	c->fd = -1;
	util_strlcpy(c->tenant, tenant ? tenant : "", sizeof(c->tenant));
	util_strlcpy(c->project, project, sizeof(c->project));
	c->all_projects = all;
	pthread_mutex_lock(&hub->lock);
	for (o = hub->clients; o; o = o->next)
		mine += strcmp(o->tenant, c->tenant) == 0;
	if (hub->closing || hub->nclients >= API_EVENTS_MAX_CLIENTS || mine >= hub->per_key) {
		*why = hub->closing || hub->nclients >= API_EVENTS_MAX_CLIENTS ? OPEN_FULL : OPEN_KEY_FULL;
		*open = mine;
		pthread_mutex_unlock(&hub->lock);
		free(c);
		return NULL;
	}
	c->serial = hub->next_serial++;
	if (last && api_events_parse_id(last, &ms, &seq) == 0) {
		c->cur.ms = ms;
		c->cur.seq = seq;
		c->catching_up = 1;
	} else {
		c->cur = hub->cur;   /* what is new from now on */
		c->open_ms = util_now_ms();   /* "$" (idle hub): hub_position places it */
	}
	if (client_queue(c, hello, sizeof(hello) - 1) != 0) {
		pthread_mutex_unlock(&hub->lock);
		free(c->buf);
		free(c);
		return NULL;
	}
	c->next = hub->clients;
	hub->clients = c;
	if (hub->nclients++ == 0)
		pthread_cond_signal(&hub->wake);   /* the hub was idle: start reading now */
	pthread_mutex_unlock(&hub->lock);
	return c;
}

void api_events_client_attach(struct api_events_client *c, api_events_conn_fn *park,
    api_events_conn_fn *wake, void *arg, int fd)
{
	pthread_mutex_lock(&c->hub->lock);
	c->park = park;
	c->wake = wake;
	c->arg = arg;
	c->fd = fd;
	pthread_mutex_unlock(&c->hub->lock);
}

ssize_t api_events_client_read(struct api_events_client *c, char *buf, size_t max)
{
	ssize_t n = 0;
	size_t avail;

	pthread_mutex_lock(&c->hub->lock);
	if (c->closed || c->hub->closing) {
		n = -1;
		goto out;
	}
	avail = c->len - c->off;
	if (avail == 0) {
		if (c->park && !c->parked) {
			c->parked = 1;
			c->park(c->arg);
		}
		goto out;
	}
	if (avail > max)
		avail = max;
	if (avail > (size_t)SSIZE_MAX)
		avail = (size_t)SSIZE_MAX;
	memcpy(buf, c->buf + c->off, avail);
	c->off += avail;
	if (c->off == c->len)
		c->off = c->len = 0;
	n = (ssize_t)avail;
out:
	pthread_mutex_unlock(&c->hub->lock);
	return n;
}

void api_events_client_close(struct api_events_client *c)
{
	struct api_events_hub *hub;
	struct api_events_client **pp;

	if (!c)
		return;
	hub = c->hub;
	pthread_mutex_lock(&hub->lock);
	for (pp = &hub->clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			hub->nclients--;
			break;
		}
	}
	pthread_mutex_unlock(&hub->lock);
	free(c->buf);
	free(c);
}

/* ---- the handler ---------------------------------------------------------------------- */

void api_events_stream(const struct api_request *req, struct api_response *resp)
{
	struct api_events_hub *hub = api_events_current;
	const char *last = api_request_header(req, "Last-Event-ID");
	struct api_events_client *c;
	int why = OPEN_NOMEM, open = 0;

	if (!hub) {
		api_error(resp, 503, "unavailable", "the event stream is not running", NULL);
		api_header(resp, "Retry-After", "5");
		return;
	}
	if (req->method && strcmp(req->method, "HEAD") == 0) {
		/* the headers a GET would get, and no stream: HEAD holds no slot */
		resp->status = 200;
		api_header(resp, "Content-Type", "text/event-stream");
		api_header(resp, "Cache-Control", "no-cache");
		return;
	}
	c = events_client_open(hub, last, req->tenant, api_project(req), req->all_projects, &why,
	    &open);
	if (!c && why == OPEN_KEY_FULL) {
		char msg[128];

		log_warn("event stream refused, too many open for this key",
		    "request_id=%s tenant=%s open=%d limit=%d", req->request_id ? req->request_id : "",
		    req->tenant ? req->tenant : "", open, hub->per_key);
		snprintf(msg, sizeof(msg), "this API key already has %d event streams open "
		    "(TXMAIL_SSE_PER_KEY); close one first", open);
		api_error(resp, 429, "rate_limited", msg, NULL);
		api_header(resp, "Retry-After", "5");
		return;
	}
	if (!c) {
		api_error(resp, 503, "unavailable", why == OPEN_FULL ? "too many event streams are open" :
		    "out of memory", NULL);
		api_header(resp, "Retry-After", "5");
		return;
	}
	resp->status = 200;
	resp->stream = c;
	api_header(resp, "Content-Type", "text/event-stream");
	api_header(resp, "Cache-Control", "no-cache");
	api_header(resp, "X-Accel-Buffering", "no");
}
