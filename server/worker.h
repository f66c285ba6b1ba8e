/*
 * worker.h - a delivery loop: pulls due recipients from the store, drives
 * the smtp engine, records outcomes (and their events) back.
 *
 * Threads of one worker: a feeder (store_fetch / store_reclaim /
 * heartbeat, submit to the engine), the engine loop (smtp_engine_run), and
 * a recorder (applies retry_decide and store_record, pipelined). They share
 * only a small locked queue of finished jobs. Nothing is acknowledged in
 * Redis before its outcome is recorded, so a killed worker loses nothing.
 */
#ifndef SERVER_WORKER_H
#define SERVER_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct worker;

/* What a stop did with the deliveries the worker held (worker_stop). */
struct worker_stop_stats {
	size_t finished;      /* outcomes recorded after the stop began (transactions that finished) */
	size_t not_started;   /* handed back before their SMTP transaction began: attempt not counted */
	size_t cut;           /* handed back, cut mid-transaction at the deadline: attempt counted,
	                       * the server may have the message (at-least-once) */
	size_t left_pending;  /* could not be handed back (Redis unreachable): reclaimed after
	                       * the visibility timeout */
};

/* worker_start - NULL with err on failure. index names the consumer. */
struct worker *worker_start(const struct config *cfg, int index, char *err, size_t errlen);

/*
 * worker_drain - begin stopping, return at once (call it on every worker
 * first, so they drain together): nothing more is fetched; deliveries
 * whose SMTP transaction has not begun (waiting for a connection, held by
 * the shaper, read ahead) go back to the queue with their attempt not
 * counted, so another worker takes them at once; transactions in flight
 * go on. Idempotent.
 */
void worker_drain(struct worker *w);

/*
 * worker_stop - worker_drain, then wait until util_mono_ms() deadline_ms
 * for the transactions in flight to finish and be recorded (their
 * entries kept fresh meanwhile), cut the rest and hand them back with
 * their attempt counted. Adds what happened to *stats (NULL: not wanted)
 * and frees w.
 */
void worker_stop(struct worker *w, int64_t deadline_ms, struct worker_stop_stats *stats);

#endif
