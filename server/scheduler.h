/*
 * scheduler.h - promotes due work (retries, send_at) from the due set to
 * the ready stream at its time, in bounded batches, sleeping until the
 * earliest due time (capped at 1 s so work added meanwhile is seen).
 */
#ifndef SERVER_SCHEDULER_H
#define SERVER_SCHEDULER_H

#include "config.h"

struct scheduler;
struct scheduler *scheduler_start(const struct config *cfg, char *err, size_t errlen);
void scheduler_stop(struct scheduler *s);

#endif
