/*
 * store_search.c - GET /v1/messages' search (store.h, "Search"): one
 * search.lua call per partition, all in one round trip, and the pages
 * merged newest first.
 *
 * Each partition walks its index below the cursor and stops after limit
 * matches or its budget of ids; it says where it stopped (last) and
 * whether it reached the end. Every match above the highest stop of a
 * partition that did not reach its end is known, so the merged page is
 * the newest limit of those, and the next page starts below the last one
 * given - or, when fewer were known, below that highest stop. One id
 * orders every partition's messages (msg_<ULID>[p<k>]): the cursor is an
 * id.
 */
#include "store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/*
 * search_status_run - 1 when status has its own run in the index ("s:",
 * lib/msgix.lua's msgix_indexed): the rare statuses, which a walk of
 * every message would look for through whole budgets of others
 */
static int
search_status_run(const char *status)
{
	static const char *const runs[] = { "scheduled", "deferred", "failed", "expired", "suppressed",
	    "canceled" };

	for (size_t i = 0; status != NULL && i < sizeof(runs) / sizeof(runs[0]); i++)
		if (strcmp(status, runs[i]) == 0)
			return 1;
	return 0;
}

/* search_idtime - "msg_" and the 10 time characters of an id made at ms (util_id_time) */
static void
search_idtime(int64_t ms, char out[15])
{
	memcpy(out, "msg_", 4);
	util_id_time(ms, out + 4);
	out[14] = '\0';
}

static void
search_item_free(struct store_search_item *it)
{
	for (size_t k = 0; k < it->nrcpts; k++) {
		free(it->emails[k]);
		free(it->statuses[k]);
	}
	free(it->emails);
	free(it->statuses);
	free(it->id);
	free(it->from);
	free(it->subject);
	free(it->tags_json);
	free(it->metadata_json);
	free(it->prio);
	memset(it, 0, sizeof(*it));
}

void
store_search_res_free(struct store_search_res *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		search_item_free(&r->items[i]);
	free(r->items);
	memset(r, 0, sizeof(*r));
}

/* search_item - one item of a reply into it: 0, or -1 (malformed, out of memory) */
static int
search_item(const redisReply *e, struct store_search_item *it)
{
	int64_t n = 0;

	memset(it, 0, sizeof(*it));
	if (!st_is_array(e, 9))
		return -1;
	for (size_t i = 0; i < e->elements; i++)
		if (!st_is_str(e->element[i]))
			return -1;
	if (st_int(e->element[8], &n) != 0 || n < 0 || (size_t)n > ST_MAX_RCPTS ||
	    e->elements != 9 + 2 * (size_t)n)
		return -1;
	if (st_int(e->element[1], &it->created_ms) != 0)
		return -1;
	if (st_int(e->element[7], &it->send_at_ms) != 0)
		it->send_at_ms = 0;
	it->id = st_dup(e->element[0]);
	it->from = st_dup(e->element[2]);
	it->subject = st_dup(e->element[3]);
	it->tags_json = st_dup(e->element[4]);
	it->metadata_json = st_dup(e->element[5]);
	it->prio = st_dup(e->element[6]);
	it->emails = calloc((size_t)n + 1, sizeof(*it->emails));
	it->statuses = calloc((size_t)n + 1, sizeof(*it->statuses));
	if (!it->id || !it->from || !it->subject || !it->tags_json || !it->metadata_json || !it->prio ||
	    !it->emails || !it->statuses)
		return -1;
	for (size_t k = 0; k < (size_t)n; k++) {
		it->emails[k] = st_dup(e->element[9 + 2 * k]);
		it->statuses[k] = st_dup(e->element[10 + 2 * k]);
		it->nrcpts = k + 1;
		if (!it->emails[k] || !it->statuses[k])
			return -1;
	}
	return 0;
}

static int
search_cmp_desc(const void *a, const void *b)
{
	const struct store_search_item *x = a, *y = b;

	return strcmp(y->id, x->id);
}

int
store_message_search(struct store *s, const struct store_search_q *q, struct store_search_res *r)
{
	struct st_batch b;
	const char *project = st_project_name(q->project);
	char key[ST_KEY_MAX + 64], mp[512] = "", lo[15] = "", hi[15] = "", cut[64] = "";
	struct store_search_item *all = NULL;
	size_t nall = 0, cap = 0, above = 0;
	int64_t budget;
	int rc;

	memset(r, 0, sizeof(*r));
	if (!s || !q || q->limit == 0 || q->limit > 1000)
		return STORE_ERR_PROTO;
	budget = STORE_SEARCH_BUDGET / (int64_t)s->nparts;
	if (budget < 200)
		budget = 200;
	if (q->created_after_ms > 0)
		search_idtime(q->created_after_ms, lo);
	if (q->created_before_ms > 0)
		search_idtime(q->created_before_ms, hi);   /* a message's "created" is its id's time */
	memset(&b, 0, sizeof(b));
	rc = st_connect(s);
	if (rc == 0)
		rc = st_batch_init(&b, s->nparts, 20);
	/* the run walked: the most selective filter's (a recipient; a rare status; a tag; a From) */
	const char *kind = q->rcpt ? "r:" : search_status_run(q->status) ? "s:" : q->tag ? "t:" :
	    q->from ? "f:" : "a:";
	const char *val = q->rcpt ? q->rcpt : kind[0] == 's' ? q->status : q->tag ? q->tag :
	    q->from ? q->from : "";

	for (unsigned p = 0; p < s->nparts && rc == 0; p++) {
		int n = snprintf(key, sizeof(key), "%six:%s", st_pk(s, p, PK_PREFIX), project);
		int m = snprintf(mp, sizeof(mp), "%s%s", kind, val);

		if (n < 0 || (size_t)n >= sizeof(key) || m < 0 || (size_t)m + 1 >= sizeof(mp)) {
			rc = STORE_ERR_PROTO;
			break;
		}
		st_eval(&b.a, s, SC_SEARCH, 1);
		st_adds(&b.a, key);
		st_addi(&b.a, (int64_t)q->limit);
		st_addi(&b.a, budget);
		st_adds(&b.a, q->after ? q->after : "");
		st_adds(&b.a, lo);
		st_adds(&b.a, hi);
		st_adds(&b.a, q->status ? q->status : "");
		st_adds(&b.a, q->tag ? q->tag : "");
		st_adds(&b.a, q->rcpt ? q->rcpt : "");
		st_adds(&b.a, q->from ? q->from : "");
		if (q->created_after_ms > 0)
			st_addi(&b.a, q->created_after_ms);
		else
			st_adds(&b.a, "");
		if (q->created_before_ms > 0)
			st_addi(&b.a, q->created_before_ms);
		else
			st_adds(&b.a, "");
		st_adds(&b.a, st_pk(s, p, PK_PREFIX));
		st_add(&b.a, mp, (size_t)m + 1);   /* with its \0: "<kind><value>\0" */
		rc = st_batch_add(&b);
	}
	if (rc == 0)
		rc = st_batch_run(s, &b);
	/* every partition's matches, and the highest place a partition stopped before its end */
	for (size_t i = 0; i < b.n && rc == 0; i++) {
		const redisReply *x = b.rep[i];
		int64_t done = 0;

		if (!st_is_array(x, 2) || st_int(x->element[0], &done) != 0 || !st_is_str(x->element[1])) {
			rc = st_bad("search", x);
			break;
		}
		if (!done && x->element[1]->len > 0 && x->element[1]->len < sizeof(cut) &&
		    (cut[0] == '\0' || strcmp(x->element[1]->str, cut) > 0))
			memcpy(cut, x->element[1]->str, x->element[1]->len + 1);
		for (size_t k = 2; k < x->elements; k++) {
			if (nall == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct store_search_item *na = realloc(all, nc * sizeof(*all));

				if (!na) {
					rc = STORE_ERR_NOMEM;
					break;
				}
				all = na;
				cap = nc;
			}
			if (search_item(x->element[k], &all[nall]) != 0) {
				search_item_free(&all[nall]);   /* the half-made one */
				rc = st_bad("search item", x->element[k]);
				break;
			}
			nall++;
		}
	}
	st_batch_release(&b);
	if (rc != 0) {
		struct store_search_res tmp = { .items = all, .n = nall };

		store_search_res_free(&tmp);
		return rc;
	}
	if (nall > 1)
		qsort(all, nall, sizeof(*all), search_cmp_desc);
	/* only what lies at or above the cut is complete (the cut itself was looked at) */
	for (above = 0; above < nall && (cut[0] == '\0' || strcmp(all[above].id, cut) >= 0); above++)
		;
	r->items = all;
	r->n = above < q->limit ? above : q->limit;
	if (r->n < q->limit && cut[0] != '\0')
		util_strlcpy(r->next, cut, sizeof(r->next));
	else if (r->n == q->limit && (above > q->limit || cut[0] != '\0'))
		util_strlcpy(r->next, all[r->n - 1].id, sizeof(r->next));
	for (size_t i = r->n; i < nall; i++)   /* the items not answered go now */
		search_item_free(&all[i]);
	return STORE_OK;
}

int
store_sweep_index(struct store *s, int64_t now_ms)
{
	struct st_batch b;
	char key[ST_KEY_MAX], cutoff[15];
	int64_t v = 0, total = 0;
	int rc;

	if (!s)
		return STORE_ERR_PROTO;
	search_idtime(now_ms - STORE_SWEEP_KEEP_MS, cutoff);
	memset(&b, 0, sizeof(b));
	rc = st_connect(s);
	if (rc == 0)
		rc = st_batch_init(&b, s->nparts, 12);
	for (unsigned p = 0; p < s->nparts && rc == 0; p++) {
		snprintf(key, sizeof(key), "%six:sweep", st_pk(s, p, PK_PREFIX));
		st_eval(&b.a, s, SC_IX_SWEEP, 3);
		st_adds(&b.a, st_pk(s, p, PK_READY_PROJECTS));
		st_adds(&b.a, st_pk(s, p, PK_READY_HIGH_PROJECTS));
		st_adds(&b.a, key);
		st_adds(&b.a, st_pk(s, p, PK_PREFIX));
		st_addi(&b.a, STORE_SWEEP_SLICE);
		st_adds(&b.a, cutoff);
		rc = st_batch_add(&b);
	}
	if (rc == 0)
		rc = st_batch_run(s, &b);
	for (size_t i = 0; i < b.n && rc == 0; i++) {
		if (st_int(b.rep[i], &v) != 0 || v < 0)
			rc = st_bad("sweep index", b.rep[i]);
		total += v;
	}
	st_batch_release(&b);
	if (rc)
		return rc;
	return total > INT32_MAX ? INT32_MAX : (int)total;
}

int
store_backfill_index(struct store *s, int64_t *seen)
{
	struct st_batch b;
	char key[ST_KEY_MAX];
	int64_t v = 0;
	int rc, more = 0;

	*seen = 0;
	if (!s)
		return STORE_ERR_PROTO;
	memset(&b, 0, sizeof(b));
	rc = st_connect(s);
	if (rc == 0)
		rc = st_batch_init(&b, s->nparts, 6);
	for (unsigned p = 0; p < s->nparts && rc == 0; p++) {
		snprintf(key, sizeof(key), "%six:backfill", st_pk(s, p, PK_PREFIX));
		st_eval(&b.a, s, SC_IX_BACKFILL, 1);
		st_adds(&b.a, key);
		st_adds(&b.a, st_pk(s, p, PK_PREFIX));
		st_addi(&b.a, STORE_BACKFILL_SLICE);
		rc = st_batch_add(&b);
	}
	if (rc == 0)
		rc = st_batch_run(s, &b);
	for (size_t i = 0; i < b.n && rc == 0; i++) {
		if (st_int(b.rep[i], &v) != 0 || v < -1) {
			rc = st_bad("backfill index", b.rep[i]);
		} else if (v >= 0) {
			more = 1;   /* this partition's scan had not ended before this call */
			*seen += v;
		}
	}
	st_batch_release(&b);
	return rc != 0 ? rc : more;
}
