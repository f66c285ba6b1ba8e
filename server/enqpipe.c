/*
 * enqpipe.c - the accept pipe (enqpipe.h): a queue under one lock and one
 * thread with its own store handle that drains it in batches.
 *
 * It must never drop a job: every job submitted before enqpipe_stop is run
 * and its done called, whatever Redis does (store_enqueue_ops answers every
 * op, with an error when Redis cannot be reached).
 */
#include "enqpipe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

struct enqpipe {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct enqpipe_job *head, *tail;
	int stopping;
	struct redis_addr addr;
	struct store *store;
};

static void *
enqpipe_main(void *arg)
{
	struct enqpipe *p = arg;
	struct enqpipe_job *batch[ENQPIPE_BATCH];
	struct store_enqueue_op *ops[ENQPIPE_BATCH];
	size_t n, i;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (p->head == NULL && !p->stopping)
			pthread_cond_wait(&p->wake, &p->lock);
		for (n = 0; n < ENQPIPE_BATCH && p->head != NULL; n++) {
			batch[n] = p->head;
			p->head = p->head->next;
		}
		if (p->head == NULL)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		if (n == 0)
			break;      /* stopping, and nothing left */
		for (i = 0; i < n; i++)
			ops[i] = batch[i]->op;
		if (p->store == NULL)
			p->store = store_open(&p->addr);
		if (p->store != NULL) {
			store_enqueue_ops(p->store, ops, n);
		} else {
			for (i = 0; i < n; i++) {
				ops[i]->rc = STORE_ERR_NOMEM;
				ops[i]->replay = NULL;
			}
		}
		metrics_accept_waiting(-(int64_t)n);
		/* batch[i] may be freed by its owner from here on */
		for (i = 0; i < n; i++)
			batch[i]->done(batch[i]->arg);
	}
	return NULL;
}

struct enqpipe *
enqpipe_start(const struct redis_addr *addr, char *err, size_t errlen)
{
	struct enqpipe *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->addr = *addr;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	if (pthread_create(&p->thread, NULL, enqpipe_main, p) != 0) {
		snprintf(err, errlen, "cannot start the accept pipe thread");
		pthread_cond_destroy(&p->wake);
		pthread_mutex_destroy(&p->lock);
		free(p);
		return NULL;
	}
	return p;
}

int
enqpipe_submit(struct enqpipe *p, struct enqpipe_job *j)
{
	int rc = 0;

	if (p == NULL)
		return -1;
	j->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->stopping) {
		rc = -1;
	} else {
		if (p->tail != NULL)
			p->tail->next = j;
		else
			p->head = j;
		p->tail = j;
		metrics_accept_waiting(1);
		pthread_cond_signal(&p->wake);
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void
enqpipe_stop(struct enqpipe *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	store_close(p->store);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
