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

#include "config.h"

struct worker;

/* worker_start - NULL with err on failure. index names the consumer. */
struct worker *worker_start(const struct config *cfg, int index, char *err, size_t errlen);
/* worker_stop - stop fetching, wait up to grace_s for deliveries in flight, then leave the rest pending (they are reclaimed). Frees w. */
void worker_stop(struct worker *w, double grace_s);

#endif
