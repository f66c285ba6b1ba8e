/*
 * outcome_json.c - the JSON texts of one recorded delivery outcome (the
 * `smtp` field, the webhook event, the timeline entry), written straight
 * into a growing buffer.
 *
 * worker.c used to build three cJSON trees per outcome and print them:
 * with the frees, ~60,000 instructions a delivery (callgrind, bench.py),
 * most of it cJSON's printer. The texts are the same bytes: keys in the
 * same order, strings escaped as cJSON escapes them (", \, \b \f \n \r \t,
 * other bytes below 0x20 as \u00xx, everything else as it is), whole
 * numbers as %d. The message's stored metadata and tags are embedded as
 * cJSON reprints them; only the empty ones ({} and [], or none) skip the
 * parse. tests/unit/test_outcome_json.c compares the output with cJSON's.
 *
 * It must never log, do I/O or abort on input: out of memory is -1.
 */
#include "outcome_json.h"
#include "jsonw.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* a string field, left out when v is NULL (cJSON_AddStringToObject adds nothing then) */
static void
jw_field_str(struct jsonw *w, const char *key, const char *v, int *first)
{
	if (v == NULL)
		return;
	jsonw_key(w, key, first);
	jsonw_str(w, v);
}

/* the smtp object ({"code":..,"enhanced":..,"response":..}) or null when no reply decided it */
static void
jw_smtp(struct jsonw *w, const struct smtp_outcome *o)
{
	int first = 1;

	if (o->code == 0) {
		jsonw_lit(w, "null");
		return;
	}
	jsonw_raw(w, "{", 1);
	jsonw_key(w, "code", &first);
	jsonw_int(w, o->code);
	jw_field_str(w, "enhanced", o->enhanced, &first);
	jw_field_str(w, "response", o->text, &first);
	jsonw_raw(w, "}", 1);
}

/*
 * stored JSON (metadata, tags) as cJSON_Parse + print gives it; unset, empty
 * or not JSON: empty (dflt, "{}" or "[]")
 */
static void
jw_stored(struct jsonw *w, const char *text, const char *dflt)
{
	cJSON *t;
	char *s;

	if (text == NULL || text[0] == '\0') {
		jsonw_lit(w, dflt);
		return;
	}
	if (strcmp(text, "{}") == 0 || strcmp(text, "[]") == 0) {
		jsonw_lit(w, text);   /* what the parse and print would give */
		return;
	}
	t = cJSON_Parse(text);
	if (t == NULL) {
		jsonw_lit(w, dflt);
		return;
	}
	s = cJSON_PrintUnformatted(t);
	cJSON_Delete(t);
	if (s == NULL) {
		w->err = 1;
		return;
	}
	jsonw_lit(w, s);
	cJSON_free(s);
}

int
outcome_json_build(const struct outcome_json_in *in, struct outcome_json *r)
{
	struct jsonw w;
	int first;

	memset(r, 0, sizeof(*r));

	if (in->out->code != 0) {
		memset(&w, 0, sizeof(w));
		jw_smtp(&w, in->out);
		if ((r->smtp = jsonw_take(&w)) == NULL)
			goto fail;
	}

	memset(&w, 0, sizeof(w));
	first = 1;
	jsonw_raw(&w, "{", 1);
	jw_field_str(&w, "id", in->evt_id, &first);
	jw_field_str(&w, "type", in->type, &first);
	jw_field_str(&w, "created_at", in->at, &first);
	jsonw_key(&w, "data", &first);
	first = 1;
	jsonw_raw(&w, "{", 1);
	jw_field_str(&w, "message_id", in->msg_id, &first);
	jw_field_str(&w, "recipient", in->rcpt, &first);
	jw_field_str(&w, "status", in->status, &first);
	jsonw_key(&w, "attempt", &first);
	jsonw_int(&w, in->attempt);
	jw_field_str(&w, "reason", in->reason, &first);
	jsonw_key(&w, "smtp", &first);
	jw_smtp(&w, in->out);
	jsonw_key(&w, "metadata", &first);
	jw_stored(&w, in->metadata_json, "{}");
	jsonw_key(&w, "tags", &first);
	jw_stored(&w, in->tags_json, "[]");
	jsonw_key(&w, "latency_ms", &first);
	jsonw_i64(&w, in->latency_ms);
	jsonw_key(&w, "queued_ms", &first);
	jsonw_i64(&w, in->queued_ms);
	jw_field_str(&w, "delivered_at", in->delivered_at, &first);
	jw_field_str(&w, "next_attempt_at", in->next_attempt_at, &first);
	jsonw_raw(&w, "}}", 2);
	if ((r->event = jsonw_take(&w)) == NULL)
		goto fail;

	memset(&w, 0, sizeof(w));
	first = 1;
	jsonw_raw(&w, "{", 1);
	jw_field_str(&w, "type", in->status, &first);
	jw_field_str(&w, "at", in->at, &first);
	jw_field_str(&w, "recipient", in->rcpt, &first);
	jsonw_key(&w, "attempt", &first);
	jsonw_int(&w, in->attempt);
	jw_field_str(&w, "reason", in->reason, &first);
	jsonw_key(&w, "smtp", &first);
	jw_smtp(&w, in->out);
	if (in->out->code == 0 && in->out->text[0] != '\0')
		jw_field_str(&w, "detail", in->out->text, &first);
	jsonw_raw(&w, "}", 1);
	if ((r->timeline = jsonw_take(&w)) == NULL)
		goto fail;
	return 0;
fail:
	outcome_json_free(r);
	return -1;
}

void
outcome_json_times(long long created_ms, long long due_ms, long long start_ms, long long now_ms,
    long long *latency_ms, long long *queued_ms)
{
	long long lat = created_ms > 0 && now_ms > created_ms ? now_ms - created_ms : 0;
	long long q;

	if (due_ms <= 0 || due_ms < created_ms)
		due_ms = created_ms;
	if (start_ms <= 0 || start_ms > now_ms)
		start_ms = now_ms;
	q = due_ms > 0 && start_ms > due_ms ? start_ms - due_ms : 0;
	if (q > lat)
		q = lat;
	*latency_ms = lat;
	*queued_ms = q;
}

void
outcome_json_free(struct outcome_json *r)
{
	free(r->smtp);
	free(r->event);
	free(r->timeline);
	r->smtp = r->event = r->timeline = NULL;
}
