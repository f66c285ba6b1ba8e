/*
 * enqpipe.h - the accept pipe: every send of an API process goes to Redis
 * through one thread and one connection, pipelined.
 *
 * An HTTP thread that has a message ready to store does not wait for
 * Redis: it suspends the connection and hands the enqueue to the pipe.
 * The pipe thread takes every enqueue waiting (up to ENQPIPE_BATCH), writes
 * them in one go, reads their replies, and calls each job's done (which
 * resumes its connection; the HTTP thread then answers). So two HTTP
 * threads keep every client's send in flight at once, Redis reads many
 * scripts per event-loop turn and, with appendfsync always, makes them
 * durable with one fsync, where one request per HTTP thread at a time
 * used to wait for a round trip and an fsync of its own.
 *
 * Each enqueue keeps its own script call, reply and guarantees
 * (store_enqueue_ops): one refusal never touches another, a lost reply is
 * settled per message. The queue holds only requests whose bodies the HTTP
 * body budget already admitted, so it is bounded by that budget.
 *
 * Lifecycle: enqpipe_start -> enqpipe_submit from any thread ->
 * enqpipe_stop (runs every job already submitted, refuses new ones, joins).
 */
#ifndef SERVER_ENQPIPE_H
#define SERVER_ENQPIPE_H

#include <stddef.h>

#include "config.h"
#include "store.h"

#define ENQPIPE_BATCH 64    /* enqueues written together at most */

struct enqpipe;

struct enqpipe_job {
	struct store_enqueue_op *op;    /* what to run; its rc and replay are set before done */
	void (*done)(void *arg);        /* called on the pipe thread once op is answered */
	void *arg;
	struct enqpipe_job *next;       /* the pipe's */
};

/* enqpipe_start - start the pipe thread (its store handle opened on first use). NULL with err. */
struct enqpipe *enqpipe_start(const struct redis_addr *addr, char *err, size_t errlen);

/* enqpipe_submit - queue j: 0, or -1 when the pipe is stopping (j untouched; run it yourself). */
int enqpipe_submit(struct enqpipe *p, struct enqpipe_job *j);

/* enqpipe_stop - run what was submitted, refuse the rest, join, free. p may be NULL. */
void enqpipe_stop(struct enqpipe *p);

#endif
