/*
 * health.c - the loops' heartbeats and the stall check of /readyz (see health.h).
 *
 * Owns one fixed table of HEALTH_MAX_LOOPS slots. Registering, unregistering
 * and checking take one mutex (rare: start, stop, a probe); a beat is one
 * relaxed atomic store into the loop's own slot. A slot's name and bound
 * change only under the mutex, so the check never reads a half-written one.
 * It must never allocate, log or block in health_beat (the test wedge aside).
 */
#include "health.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define HEALTH_STALL_DEFAULT_MS 10000
#define HEALTH_WEDGE_MAX_MS 600000   /* a test wedge ends by itself after this */
#define HEALTH_WEDGE_PATH_MAX 512

struct health_loop {
	atomic_int_least64_t last_ms;   /* util_mono_ms of the last beat */
	int used;
	int stalled;                    /* health_check has logged this loop as stalled */
	int wedge;                      /* TXMAIL_TEST_WEDGE names this loop */
	int64_t bound_ms;
	char name[HEALTH_NAME_MAX];
};

static pthread_mutex_t health_lock = PTHREAD_MUTEX_INITIALIZER;
static struct health_loop health_slots[HEALTH_MAX_LOOPS];
static int64_t health_stall_ms = HEALTH_STALL_DEFAULT_MS;
static char health_wedge_loop[HEALTH_NAME_MAX];
static char health_wedge_file[HEALTH_WEDGE_PATH_MAX];
static atomic_int health_wedge_released;

void
health_configure(int64_t stall_ms, const char *wedge)
{
	const char *colon = wedge != NULL ? strchr(wedge, ':') : NULL;

	pthread_mutex_lock(&health_lock);
	health_stall_ms = stall_ms > 0 ? stall_ms : HEALTH_STALL_DEFAULT_MS;
	health_wedge_loop[0] = health_wedge_file[0] = '\0';
	if (colon != NULL && colon > wedge && (size_t)(colon - wedge) < sizeof(health_wedge_loop) &&
	    colon[1] != '\0') {
		memcpy(health_wedge_loop, wedge, (size_t)(colon - wedge));
		health_wedge_loop[colon - wedge] = '\0';
		util_strlcpy(health_wedge_file, colon + 1, sizeof(health_wedge_file));
	}
	atomic_store(&health_wedge_released, 0);
	pthread_mutex_unlock(&health_lock);
}

struct health_loop *
health_register(const char *name, int64_t wait_ms)
{
	struct health_loop *l = NULL;
	int64_t bound;

	pthread_mutex_lock(&health_lock);
	for (size_t i = 0; i < HEALTH_MAX_LOOPS; i++) {
		if (!health_slots[i].used) {
			l = &health_slots[i];
			break;
		}
	}
	if (l != NULL) {
		bound = wait_ms > 0 && wait_ms < INT64_MAX / 3 ? 3 * wait_ms : 0;
		l->bound_ms = bound > health_stall_ms ? bound : health_stall_ms;
		util_strlcpy(l->name, name, sizeof(l->name));
		l->stalled = 0;
		l->wedge = health_wedge_loop[0] != '\0' && strcmp(l->name, health_wedge_loop) == 0;
		atomic_store_explicit(&l->last_ms, util_mono_ms(), memory_order_relaxed);
		l->used = 1;
	}
	pthread_mutex_unlock(&health_lock);
	if (l == NULL)
		log_warn("too many loops to watch, this one goes unwatched by /readyz", "loop=%s max=%d",
		    name, HEALTH_MAX_LOOPS);
	return l;
}

/* health_wedged - the test wedge: wait while its file exists (bounded, releasable) */
static void
health_wedged(void)
{
	int64_t until = util_mono_ms() + HEALTH_WEDGE_MAX_MS;
	struct timespec ts = { 0, 20 * 1000000L };

	while (!atomic_load(&health_wedge_released) && access(health_wedge_file, F_OK) == 0 &&
	    util_mono_ms() < until) {
		struct timespec left = ts;

		while (nanosleep(&left, &left) != 0 && errno == EINTR)
			;
	}
}

void
health_beat(struct health_loop *l)
{
	if (l == NULL)
		return;
	if (l->wedge)
		health_wedged();
	atomic_store_explicit(&l->last_ms, util_mono_ms(), memory_order_relaxed);
}

void
health_unregister(struct health_loop *l)
{
	if (l == NULL)
		return;
	pthread_mutex_lock(&health_lock);
	if (l->stalled)
		log_info("stalled loop ended", "loop=%s", l->name);
	l->used = 0;
	l->stalled = 0;
	l->wedge = 0;
	pthread_mutex_unlock(&health_lock);
}

/* append "; " (after the first) and s to out, cut at outlen */
static void
health_why_add(char *out, size_t outlen, size_t *off, const char *s)
{
	int w;

	if (*off >= outlen)
		return;
	w = snprintf(out + *off, outlen - *off, "%s%s", *off > 0 ? "; " : "", s);
	*off = w < 0 ? outlen : *off + (size_t)w;
}

int
health_check(int64_t now_ms, char *why, size_t whylen)
{
	size_t off = 0;
	int nstalled = 0;

	if (whylen > 0)
		why[0] = '\0';
	pthread_mutex_lock(&health_lock);
	for (size_t i = 0; i < HEALTH_MAX_LOOPS; i++) {
		struct health_loop *l = &health_slots[i];
		int64_t age;
		char line[160], a[32], b[32];

		if (!l->used)
			continue;
		age = now_ms - atomic_load_explicit(&l->last_ms, memory_order_relaxed);
		if (age <= l->bound_ms) {
			if (l->stalled) {
				log_info("stalled loop runs again", "loop=%s", l->name);
				l->stalled = 0;
			}
			continue;
		}
		nstalled++;
		util_fmt_duration((double)age / 1000.0, a, sizeof(a));
		util_fmt_duration((double)l->bound_ms / 1000.0, b, sizeof(b));
		if (!l->stalled) {
			log_warn("loop stalled, /readyz answers 503", "loop=%s since=%s bound=%s", l->name, a, b);
			l->stalled = 1;
		}
		snprintf(line, sizeof(line), "loop %s has not run for %s (bound %s)", l->name, a, b);
		health_why_add(why, whylen, &off, line);
	}
	pthread_mutex_unlock(&health_lock);
	return nstalled;
}

int
health_loops(void)
{
	int n = 0;

	pthread_mutex_lock(&health_lock);
	for (size_t i = 0; i < HEALTH_MAX_LOOPS; i++)
		n += health_slots[i].used;
	pthread_mutex_unlock(&health_lock);
	return n;
}

void
health_release_wedge(void)
{
	atomic_store(&health_wedge_released, 1);
}
