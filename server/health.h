/*
 * health.h - liveness of the process's long-running loops, for /readyz.
 *
 * Every loop that must keep turning for the process to be useful (each
 * delivery loop's feeder, engine and recorder, the scheduler, the webhook
 * dispatcher, the DSN listener) registers once with the longest wait one
 * of its rounds may legitimately take (a Redis command within
 * TXMAIL_REDIS_TIMEOUT, a poll timeout), and beats once a round: an
 * atomic store of the monotonic clock, no lock, no allocation. /readyz
 * (http.c) asks health_check, which names every loop that has not beaten
 * within its bound: max(TXMAIL_LOOP_STALL, 3 x its longest legitimate
 * wait). A process that registered no loop (`txmail api`) is always alive
 * here; its readiness is Redis alone.
 *
 * TXMAIL_TEST_WEDGE=<loop>:<file> (tests only) makes that loop's beat block
 * for as long as <file> exists: the loop's thread really stops turning (it
 * is not the clock that is faked), so tests can see /readyz notice it and
 * recover. Nothing else in the process waits on a loop's beat.
 *
 * This module never logs from health_beat, never blocks a beat (but for the
 * test wedge) and holds no pointer into its callers' memory.
 */
#ifndef SERVER_HEALTH_H
#define SERVER_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#define HEALTH_MAX_LOOPS 256   /* 64 delivery loops x 3 threads, plus the rest */
#define HEALTH_NAME_MAX 48

struct health_loop;

/*
 * health_configure - the least bound, in ms (TXMAIL_LOOP_STALL), and the
 * test wedge spec (TXMAIL_TEST_WEDGE, "" or NULL: none). Call before the
 * loops register; later registrations use the new values.
 */
void health_configure(int64_t stall_ms, const char *wedge);

/*
 * health_register - a loop called name (copied, cut to HEALTH_NAME_MAX - 1)
 * whose rounds may legitimately take up to wait_ms; it counts as beaten
 * now. NULL when every slot is taken (the loop then goes unwatched: a
 * warning is logged). Thread-safe.
 */
struct health_loop *health_register(const char *name, int64_t wait_ms);

/* health_beat - the loop came round (any thread; NULL is ignored). */
void health_beat(struct health_loop *l);

/* health_unregister - the loop has ended: it is no longer watched (NULL is ignored). */
void health_unregister(struct health_loop *l);

/*
 * health_check - 0 when every registered loop has beaten within its bound
 * at now_ms (util_mono_ms), else the number of stalled loops, with why
 * naming them ("loop delivery.0.engine has not run for 12.3s (bound 10s)",
 * several joined by "; "). Logs a warning the first time a loop is seen
 * stalled and an info line when it runs again.
 */
int health_check(int64_t now_ms, char *why, size_t whylen);

/* health_loops - how many loops are registered now. */
int health_loops(void);

/* health_release_wedge - end a test wedge at once (shutdown: the loops must stop). */
void health_release_wedge(void);

#endif
