/*
 * test_webhook.c - the pure parts of the webhook dispatcher: Standard
 * Webhooks signatures (against the specification's published example and
 * against Python's hmac module as an independent implementation) and the
 * retry backoff table. The dispatcher itself is tested end to end with a
 * real receiver in tests/integration.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/webhook.h"
#include "../../server/webhook_internal.h"

#define T_PYTHON "/usr/bin/python3"

/*
 * The example from the Standard Webhooks specification test suite
 * (github.com/standard-webhooks/standard-webhooks, libraries' tests).
 * Re-checked with:
 *   /usr/bin/python3 -c 'import hmac,hashlib,base64;
 *     k=base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
 *     m=b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{\"test\": 2432232314}";
 *     print("v1,"+base64.b64encode(hmac.new(k,m,hashlib.sha256).digest()).decode())'
 */
Test(webhook_sign, specification_example)
{
	static const char body[] = "{\"test\": 2432232314}";
	static const char want[] = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
	char got[128];
	int rc = webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
	    1614265330, body, strlen(body), got, sizeof(got));

	cr_assert_eq(rc, 0, "rc: got %d, want 0", rc);
	cr_assert_str_eq(got, want, "signature: got %s, want %s", got, want);
}

static void t_hex(const char *s, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hx[(unsigned char)s[i] >> 4];
		out[2 * i + 1] = hx[(unsigned char)s[i] & 15];
	}
	out[2 * n] = '\0';
}

/* t_python_sign - the same signature computed by Python's hmac module. */
static void t_python_sign(const char *secret, const char *id, long long ts,
    const char *body, char *out, size_t outlen)
{
	char hs[512], hb[2048], cmd[4096];
	FILE *p;
	size_t n;

	cr_assert_lt(strlen(secret) * 2, sizeof(hs));
	cr_assert_lt(strlen(body) * 2, sizeof(hb));
	t_hex(secret, strlen(secret), hs);
	t_hex(body, strlen(body), hb);
	snprintf(cmd, sizeof(cmd),
	    T_PYTHON " -c 'import sys,hmac,hashlib,base64\n"
	    "s=bytes.fromhex(sys.argv[1]).decode()\n"
	    "k=base64.b64decode(s[6:]+\"==\") if s.startswith(\"whsec_\") else s.encode()\n"
	    "m=(sys.argv[2]+\".\"+sys.argv[3]+\".\").encode()+bytes.fromhex(sys.argv[4])\n"
	    "print(\"v1,\"+base64.b64encode(hmac.new(k,m,hashlib.sha256).digest()).decode())'"
	    " '%s' '%s' '%lld' '%s'", hs, id, ts, hb);
	p = popen(cmd, "r");
	cr_assert_not_null(p, "popen python");
	cr_assert_not_null(fgets(out, (int)outlen, p), "python printed nothing");
	cr_assert_eq(pclose(p), 0, "python failed");
	n = strlen(out);
	if (n > 0 && out[n - 1] == '\n')
		out[n - 1] = '\0';
}

struct t_sign_case {
	const char *secret;
	const char *id;
	long long ts;
	const char *body;
};

Test(webhook_sign, matches_python_hmac)
{
	static const struct t_sign_case cases[] = {
		{ "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "evt_01hzyq6b2m3k4n5p6q7r8s9t0v", 1795450156,
		  "{\"id\":\"evt_01hzyq6b2m3k4n5p6q7r8s9t0v\",\"type\":\"message.delivered\"}" },
		/* unpadded base64 secrets ("secret", "secret1" without its "==") */
		{ "whsec_c2VjcmV0", "msg_1", 0, "" },
		{ "whsec_c2VjcmV0MQ", "msg_2", 1, "x" },
		{ "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "evt_x", 1700000000,
		  "{\"subject\":\"你好，世界\",\"n\":1}" },
		/* no prefix: raw bytes */
		{ "plain-secret", "evt_raw", 42, "{}" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char got[128], want[128];
		int rc = webhook_sign(cases[i].secret, cases[i].id, cases[i].ts, cases[i].body,
		    strlen(cases[i].body), got, sizeof(got));

		t_python_sign(cases[i].secret, cases[i].id, cases[i].ts, cases[i].body, want, sizeof(want));
		cr_expect_eq(rc, 0, "case %zu rc: got %d, want 0", i, rc);
		cr_expect_str_eq(got, want, "case %zu: got %s, want %s", i, got, want);
	}
}

Test(webhook_sign, any_change_changes_the_signature)
{
	static const char secret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
	char base[128], other[128];

	cr_assert_eq(webhook_sign(secret, "evt_a", 100, "{\"a\":1}", 7, base, sizeof(base)), 0);
	cr_assert_eq(webhook_sign(secret, "evt_a", 100, "{\"a\":2}", 7, other, sizeof(other)), 0);
	cr_expect_str_neq(base, other, "different body: got the same signature %s", base);
	cr_assert_eq(webhook_sign(secret, "evt_a", 101, "{\"a\":1}", 7, other, sizeof(other)), 0);
	cr_expect_str_neq(base, other, "different timestamp: got the same signature %s", base);
	cr_assert_eq(webhook_sign(secret, "evt_b", 100, "{\"a\":1}", 7, other, sizeof(other)), 0);
	cr_expect_str_neq(base, other, "different id: got the same signature %s", base);
	cr_assert_eq(webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx", "evt_a", 100, "{\"a\":1}", 7,
	    other, sizeof(other)), 0);
	cr_expect_str_neq(base, other, "different secret: got the same signature %s", base);
	/* body_len is honoured: a prefix of the body is a different body */
	cr_assert_eq(webhook_sign(secret, "evt_a", 100, "{\"a\":1}", 6, other, sizeof(other)), 0);
	cr_expect_str_neq(base, other, "shorter body_len: got the same signature %s", base);
}

Test(webhook_sign, keyed_context_reused)
{
	/* the dispatcher signs every request of an endpoint with one context
	 * (wh_mac_sign re-initialises it): each must equal a fresh signature */
	static const char *const bodies[] = { "{\"id\":\"evt_a\"}", "", "{\"id\":\"evt_b\",\"x\":[1,2,3]}" };
	const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
	EVP_MAC_CTX *ctx = wh_mac_new(secret);
	char got[64], want[64];
	size_t i;
	int round;

	cr_assert(ctx != NULL, "wh_mac_new: got NULL, want a context");
	for (round = 0; round < 2; round++) {
		for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
			int64_t ts = 1674087231 + (int64_t)i + round;

			cr_assert_eq(wh_mac_sign(ctx, "msg_x", ts, bodies[i], strlen(bodies[i]), got,
			    sizeof(got)), 0, "wh_mac_sign: got error, want 0");
			cr_assert_eq(webhook_sign(secret, "msg_x", ts, bodies[i], strlen(bodies[i]), want,
			    sizeof(want)), 0, "webhook_sign: got error, want 0");
			cr_expect_str_eq(got, want, "round %d body %zu: got %s, want %s", round, i, got, want);
		}
	}
	EVP_MAC_CTX_free(ctx);
}

Test(webhook_sign, refuses_bad_input)
{
	static const char *const bad_secrets[] = { "", "whsec_", "whsec_!!!!", "whsec_abc$def",
		"whsec_a=bc", "whsec_a" };
	char out[128];
	size_t i;

	for (i = 0; i < sizeof(bad_secrets) / sizeof(bad_secrets[0]); i++) {
		int rc = webhook_sign(bad_secrets[i], "evt_a", 1, "{}", 2, out, sizeof(out));

		cr_expect_eq(rc, -1, "secret %s: got %d, want -1", bad_secrets[i], rc);
	}
	/* "v1," + 44 base64 chars + NUL = 48 */
	cr_expect_eq(webhook_sign("whsec_c2VjcmV0", "evt_a", 1, "{}", 2, out, 47), -1,
	    "47-byte buffer: want -1");
	cr_expect_eq(webhook_sign("whsec_c2VjcmV0", "evt_a", 1, "{}", 2, out, 48), 0,
	    "48-byte buffer: want 0");
	cr_expect_eq(strlen(out), 47u, "length: got %zu, want 47", strlen(out));
}

struct t_backoff_case {
	double base, max;
	int attempts;
	long long want;
};

Test(webhook_backoff, table)
{
	static const struct t_backoff_case cases[] = {
		{ 5, 3600, 1, 5000 },
		{ 5, 3600, 2, 10000 },
		{ 5, 3600, 3, 20000 },
		{ 5, 3600, 4, 40000 },
		{ 5, 3600, 10, 2560000 },
		{ 5, 3600, 11, 3600000 },      /* 5120 s capped */
		{ 5, 3600, 1000, 3600000 },    /* no overflow for huge attempt counts */
		{ 5, 3600, 0, 5000 },          /* attempts < 1 behaves as the first */
		{ 5, 3600, -3, 5000 },
		{ 0.1, 1, 1, 100 },            /* fractions of a second (tests) */
		{ 0.1, 1, 3, 400 },
		{ 0.1, 1, 5, 1000 },
		{ 0.25, 0.3, 2, 300 },
		{ 10, 5, 1, 5000 },            /* max below base: max wins */
		{ 0, 3600, 3, 0 },             /* nonsense config: no delay rather than a crash */
		{ -1, 3600, 3, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long got = (long long)webhook_backoff_ms(cases[i].base, cases[i].max, cases[i].attempts);

		cr_expect_eq(got, cases[i].want, "backoff(%g, %g, %d): got %lld, want %lld",
		    cases[i].base, cases[i].max, cases[i].attempts, got, cases[i].want);
	}
}

/* ---- endpoints: filters, URLs, event fields, secrets ---------------------------- */

Test(webhook_filter, table)
{
	static const char *const only_delivered[] = { "message.delivered" };
	static const char *const two[] = { "message.deferred", "message.failed" };
	static const struct {
		const char *const *events;
		size_t n;
		const char *type;
		int want;
	} cases[] = {
		{ NULL, 0, "message.delivered", 1 },          /* empty filter: every type */
		{ NULL, 0, "message.failed", 1 },
		{ NULL, 0, "", 1 },
		{ only_delivered, 1, "message.delivered", 1 },
		{ only_delivered, 1, "message.failed", 0 },
		{ only_delivered, 1, "message.delivered.x", 0 },
		{ only_delivered, 1, "message.deliver", 0 },
		{ only_delivered, 1, "", 0 },
		{ two, 2, "message.failed", 1 },
		{ two, 2, "message.deferred", 1 },
		{ two, 2, "message.delivered", 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = webhook_filter_match(cases[i].events, cases[i].n, cases[i].type);

		cr_expect_eq(got, cases[i].want, "filter case %zu (%s): got %d, want %d", i,
		    cases[i].type, got, cases[i].want);
	}
	cr_expect_eq(webhook_filter_match(only_delivered, 1, NULL), 0, "NULL type: got match, want none");
}

Test(webhook_types, known)
{
	static const struct { const char *type; int want; } cases[] = {
		{ "message.delivered", 1 }, { "message.deferred", 1 }, { "message.failed", 1 },
		{ "message.bounced", 1 }, { "message.complained", 1 }, { "message.bounce", 0 },
		{ "message.*", 0 }, { "MESSAGE.FAILED", 0 }, { "", 0 }, { "message.failed ", 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = webhook_type_known(cases[i].type);

		cr_expect_eq(got, cases[i].want, "type_known(%s): got %d, want %d", cases[i].type, got,
		    cases[i].want);
	}
	cr_expect_eq(webhook_type_known(NULL), 0, "type_known(NULL): got known, want unknown");
}

Test(webhook_url, table)
{
	static const struct { const char *url; int want; } cases[] = {
		{ "http://127.0.0.1:8080/hook", 0 },
		{ "https://example.com/a/b?c=d#e", 0 },
		{ "HTTPS://Example.COM", 0 },
		{ "http://[::1]:9000/x", 0 },
		{ "", -1 },
		{ "ftp://example.com/", -1 },
		{ "example.com/hook", -1 },
		{ "http://", -1 },
		{ "http:///path", -1 },
		{ "http://user:pw@example.com/", -1 },
		{ "http://exa mple.com/", -1 },
		{ "http://example.com/\x01", -1 },
		{ "http://example.com/\xc3\xa9", -1 },
		{ "javascript:alert(1)", -1 },
		{ "http://example.com:99999/", -1 },
	};
	char why[128];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got;

		why[0] = '\0';
		got = webhook_url_check(cases[i].url, why, sizeof(why));
		cr_expect_eq(got, cases[i].want, "url_check(%s): got %d, want %d (%s)", cases[i].url,
		    got, cases[i].want, why);
		if (got != 0)
			cr_expect_neq(why[0], '\0', "url_check(%s): no reason given", cases[i].url);
	}
}

Test(webhook_url, length_cap)
{
	char url[WEBHOOK_URL_MAX + 2], why[128];
	size_t n;

	memcpy(url, "https://example.com/", 20);
	for (n = 20; n < WEBHOOK_URL_MAX; n++)
		url[n] = 'a';
	url[n] = '\0';
	cr_expect_eq(webhook_url_check(url, why, sizeof(why)), 0, "url of exactly %d bytes: got refused (%s), want ok",
	    WEBHOOK_URL_MAX, why);
	url[n] = 'a';
	url[n + 1] = '\0';
	cr_expect_eq(webhook_url_check(url, why, sizeof(why)), -1, "url of %d bytes: got ok, want refused",
	    WEBHOOK_URL_MAX + 1);
}

Test(webhook_event_field, table)
{
	static const struct {
		const char *json, *key, *want;   /* want NULL: -1 */
	} cases[] = {
		{ "{\"id\":\"evt_1\",\"type\":\"message.failed\"}", "type", "message.failed" },
		{ "{\"id\":\"evt_1\",\"type\":\"message.failed\"}", "id", "evt_1" },
		{ "{ \"type\" : \"message.deferred\" }", "type", "message.deferred" },
		/* nested members and values named like the key do not count */
		{ "{\"data\":{\"type\":\"inner\"},\"type\":\"outer\"}", "type", "outer" },
		{ "{\"x\":\"type\",\"type\":\"t\"}", "type", "t" },
		{ "{\"data\":{\"type\":\"inner\"}}", "type", NULL },
		{ "{\"type\":\"a\\\"b\"}", "type", NULL },     /* escapes refused */
		{ "{\"type\":5}", "type", NULL },
		{ "{\"type\":\"\"}", "type", NULL },
		{ "{\"type\":\"unterminated", "type", NULL },
		{ "", "type", NULL },
	};
	char out[32];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = webhook_event_field(cases[i].json, cases[i].key, out, sizeof(out));

		if (!cases[i].want) {
			cr_expect_eq(rc, -1, "field(%s, %s): got %d (%s), want -1", cases[i].json,
			    cases[i].key, rc, rc == 0 ? out : "");
			continue;
		}
		cr_expect_eq(rc, 0, "field(%s, %s): got %d, want 0", cases[i].json, cases[i].key, rc);
		if (rc == 0)
			cr_expect_str_eq(out, cases[i].want, "field(%s, %s): got %s, want %s",
			    cases[i].json, cases[i].key, out, cases[i].want);
	}
	cr_expect_eq(webhook_event_field("{\"type\":\"abcdefgh\"}", "type", out, 8), -1,
	    "value longer than the buffer: got accepted, want -1");
}

Test(webhook_event_about, table)
{
	static const struct {
		const char *json, *type, *created, *msg_id, *rcpt;
	} cases[] = {
		/* as outcome_json.c writes it */
		{ "{\"id\":\"evt_1\",\"type\":\"message.delivered\",\"created_at\":\"2026-01-02T03:04:05.678Z\","
		  "\"data\":{\"message_id\":\"msg_1\",\"recipient\":\"a@b.example\",\"status\":\"delivered\","
		  "\"attempt\":1,\"smtp\":{\"code\":250}}}",
		  "message.delivered", "2026-01-02T03:04:05.678Z", "msg_1", "a@b.example" },
		/* any order, white space, nested and look-alike members ignored */
		{ "{ \"data\" : { \"smtp\": {\"recipient\":\"inner\"}, \"recipient\" : \"r@x\", "
		  "\"message_id\":\"m\" }, \"message_id\":\"top\", \"type\":\"message.failed\" }",
		  "message.failed", "", "m", "r@x" },
		{ "{\"x\":\"type\",\"meta\":{\"type\":\"no\"},\"type\":\"t\"}", "t", "", "", "" },
		/* escapes decoded, \u kept as written */
		{ "{\"data\":{\"recipient\":\"\\\"q\\\"@x\\u00e9\"}}", "", "", "", "\"q\"@x\\u00e9" },
		/* a data that is not an object, a non-string type, broken JSON */
		{ "{\"data\":\"message_id\",\"type\":1,\"message_id\":\"no\"}", "", "", "", "" },
		{ "{\"type\":\"message.deferred\",\"data\":{\"message_id\":\"unterminated", "message.deferred",
		  "", "", "" },
		{ "", "", "", "", "" },
	};
	struct webhook_about a;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		webhook_event_about(cases[i].json, &a);
		cr_expect_str_eq(a.type, cases[i].type, "about(%s).type: got %s, want %s", cases[i].json,
		    a.type, cases[i].type);
		cr_expect_str_eq(a.created_at, cases[i].created, "about(%s).created_at: got %s, want %s",
		    cases[i].json, a.created_at, cases[i].created);
		cr_expect_str_eq(a.msg_id, cases[i].msg_id, "about(%s).msg_id: got %s, want %s",
		    cases[i].json, a.msg_id, cases[i].msg_id);
		cr_expect_str_eq(a.rcpt, cases[i].rcpt, "about(%s).rcpt: got %s, want %s", cases[i].json,
		    a.rcpt, cases[i].rcpt);
	}
	/* a value longer than its field is cut, still terminated */
	{
		static const char head[] = "{\"data\":{\"recipient\":\"";
		char big[600];
		size_t hl = sizeof(head) - 1;

		memset(big, 0, sizeof(big));
		memcpy(big, head, hl);
		memset(big + hl, 'r', 500);
		memcpy(big + hl + 500, "\"}}", 3);
		webhook_event_about(big, &a);
		cr_expect_eq(strlen(a.rcpt), sizeof(a.rcpt) - 1, "long rcpt: got %zu bytes, want %zu",
		    strlen(a.rcpt), sizeof(a.rcpt) - 1);
	}
}

Test(webhook_secret, generated_secrets_sign_and_differ)
{
	char a[64], b[64], sig[64];

	cr_assert_eq(webhook_new_secret(a, sizeof(a)), 0, "new_secret: got error, want 0");
	cr_assert_eq(webhook_new_secret(b, sizeof(b)), 0, "new_secret: got error, want 0");
	cr_expect_eq(strlen(a), (size_t)WEBHOOK_SECRET_LEN, "length: got %zu, want %d", strlen(a),
	    WEBHOOK_SECRET_LEN);
	cr_expect_eq(strncmp(a, "whsec_", 6), 0, "prefix: got %.6s, want whsec_", a);
	cr_expect_str_neq(a, b, "two secrets: got the same %s twice", a);
	cr_expect_eq(webhook_sign(a, "msg_1", 1, "{}", 2, sig, sizeof(sig)), 0,
	    "a generated secret must be usable for signing");
	cr_expect_eq(webhook_new_secret(a, WEBHOOK_SECRET_LEN), -1, "small buffer: got ok, want -1");
}

Test(webhook, projects_match)
{
	cr_assert_eq(webhook_projects_match("default", "default"), 1);
	cr_assert_eq(webhook_projects_match("default", NULL), 1);   /* an event from before projects */
	cr_assert_eq(webhook_projects_match("default", ""), 1);
	cr_assert_eq(webhook_projects_match("default", "A"), 0);
	cr_assert_eq(webhook_projects_match("*", "A"), 1);
	cr_assert_eq(webhook_projects_match("A,billing", "billing"), 1);
	cr_assert_eq(webhook_projects_match("A,billing", "A"), 1);
	cr_assert_eq(webhook_projects_match("A,billing", "bill"), 0);    /* whole names only */
	cr_assert_eq(webhook_projects_match("A,billing", "billing2"), 0);
	cr_assert_eq(webhook_projects_match("A,billing", "default"), 0);
	cr_assert_eq(webhook_projects_match(NULL, "default"), 0);
}

/* --- issue 17: the deliveries log's answer excerpt, two signatures, the new types --- */

Test(webhook_answer_excerpt, table)
{
	static const struct { const char *in; size_t len; size_t outlen; const char *want; } cases[] = {
		{ "ok\n", 3, 201, "ok " },
		{ "a\tb\rc\0d", 7, 201, "a b c d" },
		{ "\x7f" "x", 2, 201, " x" },
		{ "caf\xc3\xa9", 5, 201, "caf\xc3\xa9" },              /* valid UTF-8 kept */
		{ "caf\xc3\xa9", 5, 5, "caf" },                         /* never cut in a sequence */
		{ "\xff\xfe" "a", 3, 201, "??a" },                      /* invalid bytes */
		{ "\xc3", 1, 201, "?" },                                /* truncated sequence */
		{ "\xed\xa0\x80", 3, 201, "???" },                      /* a surrogate is not UTF-8 */
		{ "\xc2\x85" "z", 3, 201, " z" },                       /* C1 control (NEL) */
		{ "\xf0\x9f\x98\x80", 4, 201, "\xf0\x9f\x98\x80" },     /* 4-byte sequence */
		{ "", 0, 201, "" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[256];

		memset(out, 'X', sizeof(out));
		webhook_answer_excerpt(cases[i].in, cases[i].len, out, cases[i].outlen);
		cr_expect_str_eq(out, cases[i].want, "case %zu: got \"%s\", want \"%s\"", i, out, cases[i].want);
	}
}

Test(webhook_answer_excerpt, capped_at_200)
{
	char in[1000], out[1000];

	memset(in, 'a', sizeof(in));
	webhook_answer_excerpt(in, sizeof(in), out, sizeof(out));
	cr_expect_eq(strlen(out), WEBHOOK_EXCERPT_MAX, "got %zu bytes, want %d", strlen(out), WEBHOOK_EXCERPT_MAX);
	webhook_answer_excerpt(NULL, 5, out, sizeof(out));
	cr_expect_str_eq(out, "", "NULL input: got \"%s\", want \"\"", out);
}

Test(webhook_sig_join, one_or_two)
{
	char out[200], small[8];

	cr_assert_eq(webhook_sig_join("v1,AAA", NULL, out, sizeof(out)), 0);
	cr_expect_str_eq(out, "v1,AAA");
	cr_assert_eq(webhook_sig_join("v1,AAA", "", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "v1,AAA");
	cr_assert_eq(webhook_sig_join("v1,AAA", "v1,BBB", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "v1,AAA v1,BBB", "got \"%s\"", out);
	cr_expect_eq(webhook_sig_join("v1,AAA", "v1,BBB", small, sizeof(small)), -1, "small buffer: want -1");
	cr_expect_str_eq(small, "");
	cr_expect_eq(webhook_sig_join(NULL, "v1,BBB", out, sizeof(out)), -1);
}

Test(webhook_sig_join, both_verify_per_standard_webhooks)
{
	/* each signature of the joined header is the one webhook_sign makes with its own secret */
	const char *s1 = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", *s2 = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
	char a[64], b[64], joined[160];

	cr_assert_eq(webhook_sign(s1, "msg_1", 1700000000, "{}", 2, a, sizeof(a)), 0);
	cr_assert_eq(webhook_sign(s2, "msg_1", 1700000000, "{}", 2, b, sizeof(b)), 0);
	cr_assert_str_neq(a, b);
	cr_assert_eq(webhook_sig_join(a, b, joined, sizeof(joined)), 0);
	cr_expect(strncmp(joined, a, strlen(a)) == 0 && joined[strlen(a)] == ' ' &&
	    strcmp(joined + strlen(a) + 1, b) == 0, "got \"%s\"", joined);
}

Test(webhook_types, issue17_types)
{
	static const char *const want[] = { "message.delivered", "message.deferred", "message.failed",
		"message.bounced", "message.complained", "webhook.test" };

	cr_assert_eq(WEBHOOK_NTYPES, 6);
	for (size_t i = 0; i < WEBHOOK_NTYPES; i++) {
		cr_expect_str_eq(webhook_event_types[i], want[i], "type %zu: got %s, want %s", i,
		    webhook_event_types[i], want[i]);
		cr_expect_eq(webhook_type_known(want[i]), 1, "%s: want known", want[i]);
	}
}
