/*
 * test_outcome_json.c - server/outcome_json.c writes the texts of a
 * recorded outcome without cJSON trees; each must be byte for byte what
 * the cJSON code it replaced printed. The reference below is that code
 * (worker.c's build_rec before outcome_json.c), run on a table of outcomes:
 * replies with and without a code, every escape, UTF-8 and DEL, stored
 * metadata and tags that are unset, empty, not JSON or need a reprint.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../server/outcome_json.h"

static cJSON *
ref_smtp(const struct smtp_outcome *o)
{
	cJSON *s;

	if (o->code == 0)
		return cJSON_CreateNull();
	s = cJSON_CreateObject();
	cr_assert(s);
	cJSON_AddNumberToObject(s, "code", o->code);
	cJSON_AddStringToObject(s, "enhanced", o->enhanced);
	cJSON_AddStringToObject(s, "response", o->text);
	return s;
}

static void
reference(const struct outcome_json_in *in, struct outcome_json *r)
{
	cJSON *ev, *data, *tl, *sj, *m, *t;

	sj = ref_smtp(in->out);
	r->smtp = cJSON_IsNull(sj) ? NULL : cJSON_PrintUnformatted(sj);
	cJSON_Delete(sj);
	ev = cJSON_CreateObject();
	cJSON_AddStringToObject(ev, "id", in->evt_id);
	cJSON_AddStringToObject(ev, "type", in->type);
	cJSON_AddStringToObject(ev, "created_at", in->at);
	data = cJSON_AddObjectToObject(ev, "data");
	cJSON_AddStringToObject(data, "message_id", in->msg_id);
	cJSON_AddStringToObject(data, "recipient", in->rcpt);
	cJSON_AddStringToObject(data, "status", in->status);
	cJSON_AddNumberToObject(data, "attempt", in->attempt);
	if (in->reason != NULL)
		cJSON_AddStringToObject(data, "reason", in->reason);
	cJSON_AddItemToObject(data, "smtp", ref_smtp(in->out));
	m = cJSON_Parse(in->metadata_json ? in->metadata_json : "{}");
	t = cJSON_Parse(in->tags_json ? in->tags_json : "[]");
	cJSON_AddItemToObject(data, "metadata", m != NULL ? m : cJSON_CreateObject());
	cJSON_AddItemToObject(data, "tags", t != NULL ? t : cJSON_CreateArray());
	cJSON_AddNumberToObject(data, "latency_ms", (double)in->latency_ms);
	cJSON_AddNumberToObject(data, "queued_ms", (double)in->queued_ms);
	if (in->delivered_at != NULL)
		cJSON_AddStringToObject(data, "delivered_at", in->delivered_at);
	if (in->next_attempt_at != NULL)
		cJSON_AddStringToObject(data, "next_attempt_at", in->next_attempt_at);
	r->event = cJSON_PrintUnformatted(ev);
	tl = cJSON_CreateObject();
	cJSON_AddStringToObject(tl, "type", in->status);
	cJSON_AddStringToObject(tl, "at", in->at);
	cJSON_AddStringToObject(tl, "recipient", in->rcpt);
	cJSON_AddNumberToObject(tl, "attempt", in->attempt);
	if (in->reason != NULL)
		cJSON_AddStringToObject(tl, "reason", in->reason);
	cJSON_AddItemToObject(tl, "smtp", ref_smtp(in->out));
	if (in->out->code == 0 && in->out->text[0] != '\0')
		cJSON_AddStringToObject(tl, "detail", in->out->text);
	r->timeline = cJSON_PrintUnformatted(tl);
	cJSON_Delete(ev);
	cJSON_Delete(tl);
}

static void
same(const char *what, const char *part, const char *got, const char *want)
{
	if (want == NULL) {
		cr_assert_null(got, "%s, %s: got %s, want NULL", what, part, got);
		return;
	}
	cr_assert_not_null(got, "%s, %s: got NULL, want %s", what, part, want);
	cr_assert_str_eq(got, want, "%s, %s:\n got %s\nwant %s", what, part, got, want);
}

struct row {
	const char *what;
	int code;
	const char *enhanced, *text, *rcpt, *reason, *metadata, *tags;
	int attempt;
	long long latency_ms, queued_ms;
};

static const struct row rows[] = {
	{ "delivered", 250, "2.0.0", "OK queued as 1234", "user@example.com", NULL, NULL, NULL, 1, 0, 0 },
	{ "no reply code", 0, "", "connect to localhost: [::1]:2525 refused", "a@b.c", NULL, NULL, NULL, 3, 0, 0 },
	{ "no code, no text", 0, "", "", "a@b.c", "expired", "", "", 12, 0, 0 },
	{ "bounced", 550, "5.1.1", "No such user \"x\"\\here", "x@y.z", "bounced", "{}", "[]", 1, 0, 0 },
	{ "escapes", 451, "4.3.0", "a\tb\r\nc\bd\fe\x01\x1f\x7f end", "t@e.st", NULL, NULL, NULL, 2, 0, 0 },
	{ "UTF-8", 250, "", "d\xc3\xa9j\xc3\xa0 vu \xe2\x82\xac", "\xc3\xa9@example.com", NULL, NULL, NULL, 1, 0, 0 },
	{ "metadata reprinted", 250, "2.0.0", "ok", "a@b.c", NULL,
	  "{\"order\":\"A-1\",\"n\":1.50,\"big\":12345678901234567890,\"e\":\"\\u00e9\\/x\",\"l\":[1, 2]}",
	  "[\"otp\", \"login\"]", 1, 0, 0 },
	{ "not JSON", 250, "2.0.0", "ok", "a@b.c", NULL, "{broken", "nope", 1, 0, 0 },
	{ "other JSON types", 250, "2.0.0", "ok", "a@b.c", NULL, "null", "5", 1, 0, 0 },
	{ "no recipient", 250, "2.0.0", "ok", NULL, NULL, NULL, NULL, -7, 0, 0 },
	{ "latency over 2^31 ms", 451, "4.2.0", "later", "a@b.c", NULL, NULL, NULL, 9,
	  5000000000LL, 4999999999LL },
	{ "latency and queue", 250, "2.0.0", "ok", "a@b.c", NULL, NULL, NULL, 1, 1234, 56 },
};

Test(outcome_json, same_bytes_as_cjson)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *w = &rows[i];
		struct smtp_outcome o;
		struct outcome_json_in in;
		struct outcome_json got, want;

		memset(&o, 0, sizeof(o));
		o.code = w->code;
		snprintf(o.enhanced, sizeof(o.enhanced), "%s", w->enhanced);
		snprintf(o.text, sizeof(o.text), "%s", w->text);
		memset(&in, 0, sizeof(in));
		in.evt_id = "evt_01abc";
		in.type = w->code >= 500 ? "message.failed" : "message.delivered";
		in.at = "2026-12-02T05:00:00.123Z";
		in.msg_id = "msg_01xyz";
		in.rcpt = w->rcpt;
		in.status = w->code >= 500 ? "failed" : "delivered";
		in.reason = w->reason;
		in.attempt = w->attempt;
		in.out = &o;
		in.metadata_json = w->metadata;
		in.tags_json = w->tags;
		in.latency_ms = w->latency_ms;
		in.queued_ms = w->queued_ms;
		if (strcmp(in.status, "delivered") == 0)
			in.delivered_at = "2026-12-02T05:00:00.123Z";
		else if (w->code / 100 == 4)
			in.next_attempt_at = "2026-12-02T05:05:00.000Z";
		cr_assert_eq(outcome_json_build(&in, &got), 0, "%s: build failed", w->what);
		reference(&in, &want);
		same(w->what, "smtp", got.smtp, want.smtp);
		same(w->what, "event", got.event, want.event);
		same(w->what, "timeline", got.timeline, want.timeline);
		outcome_json_free(&got);
		cJSON_free(want.smtp);
		cJSON_free(want.event);
		cJSON_free(want.timeline);
	}
}

Test(outcome_json, free_twice_is_harmless)
{
	struct smtp_outcome o;
	struct outcome_json_in in;
	struct outcome_json r;

	memset(&o, 0, sizeof(o));
	memset(&in, 0, sizeof(in));
	in.status = "deferred";
	in.out = &o;
	cr_assert_eq(outcome_json_build(&in, &r), 0);
	cr_assert_null(r.smtp, "no reply code: no smtp text");
	cr_assert_str_eq(r.timeline, "{\"type\":\"deferred\",\"attempt\":0,\"smtp\":null}");
	outcome_json_free(&r);
	outcome_json_free(&r);
}

Test(outcome_json, times)
{
	static const struct {
		const char *what;
		long long created, due, start, now, lat, queued;
	} cases[] = {
		{ "sent at once", 1000, 0, 1100, 1500, 500, 100 },
		{ "scheduled: due at send_at", 1000, 5000, 5200, 6000, 5000, 200 },
		{ "retry: from its due time", 1000, 60000, 60050, 61000, 60000, 50 },
		{ "never began (expired)", 1000, 0, 0, 9000, 8000, 8000 },
		{ "start after now: now", 1000, 0, 99999, 2000, 1000, 1000 },
		{ "due before created: created", 1000, 10, 1300, 1400, 400, 300 },
		{ "due after start (skew): 0", 1000, 3000, 2000, 4000, 3000, 0 },
		{ "created after now (skew): 0, 0", 5000, 0, 4000, 4500, 0, 0 },
		{ "no created: 0, 0", 0, 0, 100, 200, 0, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long lat = -1, q = -1;

		outcome_json_times(cases[i].created, cases[i].due, cases[i].start, cases[i].now, &lat, &q);
		cr_expect_eq(lat, cases[i].lat, "%s: latency got %lld, want %lld", cases[i].what, lat,
		    cases[i].lat);
		cr_expect_eq(q, cases[i].queued, "%s: queued got %lld, want %lld", cases[i].what, q,
		    cases[i].queued);
		cr_expect(lat >= q && q >= 0, "%s: latency %lld >= queued %lld >= 0", cases[i].what, lat, q);
	}
}

Test(outcome_json, receipt_fields)
{
	struct smtp_outcome o;
	struct outcome_json_in in;
	struct outcome_json r;

	memset(&o, 0, sizeof(o));
	o.code = 451;
	memset(&in, 0, sizeof(in));
	in.type = "message.deferred";
	in.status = "deferred";
	in.out = &o;
	in.latency_ms = 1200;
	in.queued_ms = 30;
	in.next_attempt_at = "2026-12-02T05:05:00.000Z";
	cr_assert_eq(outcome_json_build(&in, &r), 0);
	cr_expect_str_eq(r.event, "{\"type\":\"message.deferred\",\"data\":{\"status\":\"deferred\","
	    "\"attempt\":0,\"smtp\":{\"code\":451,\"enhanced\":\"\",\"response\":\"\"},\"metadata\":{},\"tags\":[],\"latency_ms\":1200,"
	    "\"queued_ms\":30,\"next_attempt_at\":\"2026-12-02T05:05:00.000Z\"}}", "got %s", r.event);
	outcome_json_free(&r);
}
