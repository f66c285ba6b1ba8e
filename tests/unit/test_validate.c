/*
 * test_validate.c - table-driven tests of server/validate.c: addresses,
 * send-request bodies (good and bad, each bad one naming its field), the
 * \u0000 path finder, the JSON value count and the caps it backs.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/validate.h"

/* --- validate_email ------------------------------------------------------ */

struct email_case {
	const char *in;
	int want;
};

static const struct email_case email_cases[] = {
	{ "a@example.com", 1 },
	{ "first.last+tag@sub.example.co.uk", 1 },
	{ "user@localhost", 1 },
	{ "user@[127.0.0.1]", 1 },
	{ "user@[IPv6:::1]", 1 },
	{ "用户@例子.广告", 1 },
	{ "o'brien@example.com", 1 },
	{ "", 0 },
	{ "plain", 0 },
	{ "@example.com", 0 },
	{ "a@", 0 },
	{ "a@@example.com", 0 },
	{ "a b@example.com", 0 },
	{ ".a@example.com", 0 },
	{ "a.@example.com", 0 },
	{ "a..b@example.com", 0 },
	{ "a@-example.com", 0 },
	{ "a@example-.com", 0 },
	{ "a@example..com", 0 },
	{ "a@exa mple.com", 0 },
	{ "a@example.com.", 0 },
	{ "a@[300.1.1.1]", 0 },
	{ "a@[IPv6:zz]", 0 },
	{ "a<b@example.com", 0 },
	{ "a@example.com\r\n", 0 },
	{ "\"quoted\"@example.com", 0 },
	{ "a@exa_mple.com", 0 },
	/* 65-octet local part */
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com", 0 },
	/* 64-octet local part */
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com", 1 },
	/* invalid UTF-8 */
	{ "\xff@example.com", 0 },
};

Test(validate, email_table)
{
	for (size_t i = 0; i < sizeof(email_cases) / sizeof(email_cases[0]); i++) {
		int got = validate_email(email_cases[i].in);

		cr_expect_eq(got, email_cases[i].want, "validate_email(\"%s\"): got %d, want %d",
		    email_cases[i].in, got, email_cases[i].want);
	}
}

Test(validate, email_total_length)
{
	char buf[300];

	/* 64 + 1 + 189 = 254 ok, 255 not */
	memset(buf, 'a', 64);
	buf[64] = '@';
	for (size_t i = 65; i < 254; i++)
		buf[i] = (i % 60 == 0) ? '.' : 'b';
	buf[253] = 'c';
	buf[254] = '\0';
	cr_expect_eq(validate_email(buf), 1, "254-octet address: got %d, want 1", validate_email(buf));
	buf[254] = 'c';
	buf[255] = '\0';
	cr_expect_eq(validate_email(buf), 0, "255-octet address: got %d, want 0", validate_email(buf));
}

/* --- validate_address ---------------------------------------------------- */

struct addr_case {
	const char *in;
	int want_rc;
	const char *want_name;   /* NULL: no name */
	const char *want_email;
};

static const struct addr_case addr_cases[] = {
	{ "a@example.com", 0, NULL, "a@example.com" },
	{ "  a@example.com  ", 0, NULL, "a@example.com" },
	{ "<a@example.com>", 0, NULL, "a@example.com" },
	{ "Alice <alice@example.com>", 0, "Alice", "alice@example.com" },
	{ "张三 <zhang@example.com>", 0, "张三", "zhang@example.com" },
	{ "\"Doe, John\" <john@example.com>", 0, "Doe, John", "john@example.com" },
	{ "\"Say \\\"hi\\\"\" <hi@example.com>", 0, "Say \"hi\"", "hi@example.com" },
	{ "\"a<b>c\" <x@example.com>", 0, "a<b>c", "x@example.com" },
	{ "\"\" <x@example.com>", 0, NULL, "x@example.com" },
	{ "Zhang, San <z@example.com>", 0, "Zhang, San", "z@example.com" },
	{ "", -1, NULL, NULL },
	{ "   ", -1, NULL, NULL },
	{ "Alice <not-an-address>", -1, NULL, NULL },
	{ "Alice <a@example.com", -1, NULL, NULL },
	{ "Alice a@example.com>", -1, NULL, NULL },
	{ "\"Unterminated <a@example.com>", -1, NULL, NULL },
	{ "\"Name\" junk <a@example.com>", -1, NULL, NULL },
	{ "Al\"ice <a@example.com>", -1, NULL, NULL },
	{ "Alice\r\nBcc: evil@example.com <a@example.com>", -1, NULL, NULL },
	{ "Alice <a@example.com>\n", -1, NULL, NULL },
	{ "Alice <a @example.com>", -1, NULL, NULL },
	{ "Alice <<a@example.com>>", -1, NULL, NULL },
	{ "a@example.com, b@example.com", -1, NULL, NULL },
	{ "Bad \xc3\x28 <a@example.com>", -1, NULL, NULL },
};

Test(validate, address_table)
{
	for (size_t i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
		const struct addr_case *c = &addr_cases[i];
		char *name = NULL, *email = NULL, why[128] = "";
		int rc = validate_address(c->in, &name, &email, why, sizeof(why));

		cr_expect_eq(rc, c->want_rc, "validate_address(\"%s\"): got %d (%s), want %d",
		    c->in, rc, why, c->want_rc);
		if (rc == 0 && c->want_rc == 0) {
			if (c->want_name == NULL)
				cr_expect_null(name, "validate_address(\"%s\") name: got \"%s\", want NULL",
				    c->in, name);
			else
				cr_expect(name != NULL && strcmp(name, c->want_name) == 0,
				    "validate_address(\"%s\") name: got \"%s\", want \"%s\"",
				    c->in, name != NULL ? name : "(null)", c->want_name);
			cr_expect(email != NULL && strcmp(email, c->want_email) == 0,
			    "validate_address(\"%s\") email: got \"%s\", want \"%s\"",
			    c->in, email != NULL ? email : "(null)", c->want_email);
		}
		if (rc != 0) {
			cr_expect_null(name, "validate_address(\"%s\") failed but name set", c->in);
			cr_expect_null(email, "validate_address(\"%s\") failed but email set", c->in);
			cr_expect(why[0] != '\0', "validate_address(\"%s\") failed without a reason", c->in);
		}
		free(name);
		free(email);
	}
}

/* --- validate_message: bad bodies ---------------------------------------- */

struct bad_case {
	const char *json;
	const char *want_field;
};

#define BASE "\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"text\":\"hi\""

static const struct bad_case bad_cases[] = {
	{ "[]", "" },
	{ "\"str\"", "" },
	{ "{\"to\":\"b@example.com\",\"text\":\"hi\"}", "from" },
	{ "{\"from\":null,\"to\":\"b@example.com\",\"text\":\"hi\"}", "from" },
	{ "{\"from\":5,\"to\":\"b@example.com\",\"text\":\"hi\"}", "from" },
	{ "{\"from\":[\"a@example.com\"],\"to\":\"b@example.com\",\"text\":\"hi\"}", "from" },
	{ "{\"from\":\"nope\",\"to\":\"b@example.com\",\"text\":\"hi\"}", "from" },
	{ "{\"from\":\"A\\r\\nBcc: x@y.z <a@example.com>\",\"to\":\"b@example.com\",\"text\":\"hi\"}", "from" },
	{ "{\"from\":\"a@example.com\",\"text\":\"hi\"}", "to" },
	{ "{\"from\":\"a@example.com\",\"to\":[],\"text\":\"hi\"}", "to" },
	{ "{\"from\":\"a@example.com\",\"to\":{},\"text\":\"hi\"}", "to" },
	{ "{\"from\":\"a@example.com\",\"to\":true,\"text\":\"hi\"}", "to" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\",\"bad\"],\"text\":\"hi\"}", "to[1]" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\",7],\"text\":\"hi\"}", "to[1]" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\",\"c@example.com\\n\"],\"text\":\"hi\"}", "to[1]" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"cc\":\"x\",\"text\":\"hi\"}", "cc" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"cc\":[\"c@example.com\",null],\"text\":\"hi\"}", "cc[1]" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"bcc\":[\"\\r\"],\"text\":\"hi\"}", "bcc[0]" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"bcc\":5,\"text\":\"hi\"}", "bcc" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"reply_to\":\"nope\",\"text\":\"hi\"}", "reply_to" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"reply_to\":[\"r@example.com\",\"x\"],\"text\":\"hi\"}", "reply_to[1]" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\"}", "text" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"text\":null}", "text" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"text\":5}", "text" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"html\":[]}", "html" },
	{ "{" BASE ",\"subject\":5}", "subject" },
	{ "{" BASE ",\"subject\":\"a\\r\\nBcc: x@y.z\"}", "subject" },
	{ "{" BASE ",\"subject\":\"line\\nbreak\"}", "subject" },
	{ "{" BASE ",\"subject\":\"bell\\u0007\"}", "subject" },
	{ "{" BASE ",\"headers\":[]}", "headers" },
	{ "{" BASE ",\"headers\":\"X: y\"}", "headers" },
	{ "{" BASE ",\"headers\":{\"X-Foo\":\"a\\r\\nBcc: x@y.z\"}}", "headers.X-Foo" },
	{ "{" BASE ",\"headers\":{\"X-Foo\":5}}", "headers.X-Foo" },
	{ "{" BASE ",\"headers\":{\"X Foo\":\"v\"}}", "headers.X Foo" },
	{ "{" BASE ",\"headers\":{\"X:Foo\":\"v\"}}", "headers.X:Foo" },
	{ "{" BASE ",\"headers\":{\"\":\"v\"}}", "headers." },
	{ "{" BASE ",\"headers\":{\"X-Ok\":\"v\",\"from\":\"v\"}}", "headers.from" },
	{ "{" BASE ",\"headers\":{\"SUBJECT\":\"v\"}}", "headers.SUBJECT" },
	{ "{" BASE ",\"headers\":{\"Message-Id\":\"<x@y>\"}}", "headers.Message-Id" },
	{ "{" BASE ",\"headers\":{\"Content-Type\":\"text/html\"}}", "headers.Content-Type" },
	{ "{" BASE ",\"headers\":{\"Content-Transfer-Encoding\":\"8bit\"}}", "headers.Content-Transfer-Encoding" },
	{ "{" BASE ",\"headers\":{\"Reply-To\":\"x@y.z\"}}", "headers.Reply-To" },
	{ "{" BASE ",\"headers\":{\"Bcc\":\"x@y.z\"}}", "headers.Bcc" },
	{ "{" BASE ",\"headers\":{\"MIME-Version\":\"1.0\"}}", "headers.MIME-Version" },
	{ "{" BASE ",\"headers\":{\"Date\":\"now\"}}", "headers.Date" },
	{ "{" BASE ",\"headers\":{\"To\":\"x@y.z\"}}", "headers.To" },
	{ "{" BASE ",\"headers\":{\"Cc\":\"x@y.z\"}}", "headers.Cc" },
	{ "{" BASE ",\"headers\":{\"X-A\":\"1\",\"x-a\":\"2\"}}", "headers.x-a" },
	{ "{" BASE ",\"metadata\":[]}", "metadata" },
	{ "{" BASE ",\"metadata\":\"x\"}", "metadata" },
	{ "{" BASE ",\"tags\":\"x\"}", "tags" },
	{ "{" BASE ",\"tags\":[\"ok\",5]}", "tags[1]" },
	{ "{" BASE ",\"tags\":[\"ok\",\"\"]}", "tags[1]" },
	{ "{" BASE ",\"tags\":[\"a\\nb\"]}", "tags[0]" },
	{ "{" BASE ",\"tags\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\","
	  "\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\",\"18\",\"19\",\"20\",\"21\"]}", "tags" },
	{ "{" BASE ",\"tags\":[\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]}", "tags[0]" },
	{ "{" BASE ",\"tex\":\"typo\"}", "tex" },
	{ "{" BASE ",\"From\":\"a@example.com\"}", "From" },
	{ "{" BASE ",\"template\":\"welcome\"}", "text" },
	{ "{" BASE ",\"variables\":{}}", "variables" },
	{ "{" BASE ",\"attachments\":{}}", "attachments" },
	{ "{" BASE ",\"send_at\":\"tomorrow\"}", "send_at" },
	{ "{" BASE ",\"ttl\":0}", "ttl" },
	{ "{" BASE ",\"to\":\"c@example.com\"}", "to" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"text\":\"bad \xc3\x28 utf8\"}", "text" },
	/* found by tests/fuzz/fuzz_validate: passed here, then mime_build refused them (500) */
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"text\":\"\"}", "text" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"text\":\"\",\"html\":\"\"}", "text" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a\\tb.txt\",\"content\":\"aGk=\"}]}", "attachments[0].filename" },
};

Test(validate, bad_messages)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		cJSON *j = cJSON_Parse(c->json);
		struct msg_request r;
		struct validate_error err;
		int rc;

		cr_assert_not_null(j, "case %zu: test JSON does not parse: %s", i, c->json);
		rc = validate_message(j, &r, &err);
		cr_expect_eq(rc, -1, "case %zu %s: got rc %d, want -1", i, c->json, rc);
		cr_expect_str_eq(err.field, c->want_field, "case %zu %s: got field \"%s\", want \"%s\" (%s)",
		    i, c->json, err.field, c->want_field, err.message);
		cr_expect(err.message[0] != '\0', "case %zu: empty message", i);
		cr_expect_null(r.to, "case %zu: *out not left empty", i);
		msg_request_free(&r);
		cJSON_Delete(j);
	}
}

/* too many recipients: 51 in to+cc+bcc */
Test(validate, recipient_cap)
{
	cJSON *j = cJSON_CreateObject();
	cJSON *to = cJSON_AddArrayToObject(j, "to");
	cJSON *cc = cJSON_AddArrayToObject(j, "cc");
	struct msg_request r;
	struct validate_error err;
	char buf[64];
	int rc;

	cJSON_AddStringToObject(j, "from", "a@example.com");
	cJSON_AddStringToObject(j, "text", "hi");
	for (int i = 0; i < 30; i++) {
		snprintf(buf, sizeof(buf), "to%d@example.com", i);
		cJSON_AddItemToArray(to, cJSON_CreateString(buf));
	}
	for (int i = 0; i < 20; i++) {
		snprintf(buf, sizeof(buf), "cc%d@example.com", i);
		cJSON_AddItemToArray(cc, cJSON_CreateString(buf));
	}
	rc = validate_message(j, &r, &err);
	cr_expect_eq(rc, 0, "50 recipients: got %d (%s: %s), want 0", rc, err.field, err.message);
	cr_expect_eq(r.nto + r.ncc, 50, "50 recipients: got %zu, want 50", r.nto + r.ncc);
	msg_request_free(&r);

	cJSON_AddStringToObject(j, "bcc", "bcc@example.com");
	rc = validate_message(j, &r, &err);
	cr_expect_eq(rc, -1, "51 recipients: got %d, want -1", rc);
	cr_expect_str_eq(err.field, "bcc", "51 recipients: got field \"%s\", want \"bcc\"", err.field);
	msg_request_free(&r);
	cJSON_Delete(j);
}

Test(validate, header_and_metadata_caps)
{
	cJSON *j = cJSON_Parse("{" BASE "}");
	cJSON *h = cJSON_AddObjectToObject(j, "headers");
	struct msg_request r;
	struct validate_error err;
	char *big = malloc(5000);
	int rc;

	memset(big, 'v', 998);
	big[998] = '\0';
	cJSON_AddStringToObject(h, "X-Long", big);
	rc = validate_message(j, &r, &err);
	cr_expect_eq(rc, 0, "998-octet header: got %d (%s), want 0", rc, err.message);
	msg_request_free(&r);

	cJSON_DeleteItemFromObject(h, "X-Long");
	big[998] = 'v';
	big[999] = '\0';
	cJSON_AddStringToObject(h, "X-Long", big);
	rc = validate_message(j, &r, &err);
	cr_expect_eq(rc, -1, "999-octet header: got %d, want -1", rc);
	cr_expect_str_eq(err.field, "headers.X-Long", "999-octet header: got field \"%s\"", err.field);
	msg_request_free(&r);
	cJSON_DeleteItemFromObject(j, "headers");

	memset(big, 'm', 4100);
	big[4100] = '\0';
	cJSON *m = cJSON_AddObjectToObject(j, "metadata");
	cJSON_AddStringToObject(m, "k", big);
	rc = validate_message(j, &r, &err);
	cr_expect_eq(rc, -1, "4 KiB+ metadata: got %d, want -1", rc);
	cr_expect_str_eq(err.field, "metadata", "big metadata: got field \"%s\", want metadata", err.field);
	msg_request_free(&r);

	free(big);
	cJSON_Delete(j);
}

/* --- validate_message: good bodies -------------------------------------- */

Test(validate, good_full_message)
{
	const char *json =
	    "{\"from\":\"张三 <zhang@example.com>\","
	    "\"to\":[\"\\\"Doe, John\\\" <john@example.com>\",\"b@example.com\",\"B@EXAMPLE.COM\"],"
	    "\"cc\":[\"c@example.com\",\"john@example.com\"],"
	    "\"bcc\":\"d@example.com\","
	    "\"reply_to\":\"Support <help@example.com>\","
	    "\"subject\":\"你好，世界\","
	    "\"text\":\"line1\\r\\nline2\","
	    "\"html\":\"<p>hi</p>\","
	    "\"headers\":{\"X-Campaign\":\"spring\",\"List-Unsubscribe\":\"<mailto:u@example.com>\"},"
	    "\"metadata\":{\"user_id\":42,\"nested\":{\"a\":[1,2]}},"
	    "\"tags\":[\"verify\",\"验证\"]}";
	cJSON *j = cJSON_Parse(json);
	struct msg_request r;
	struct validate_error err;
	int rc;

	cr_assert_not_null(j);
	rc = validate_message(j, &r, &err);
	cr_assert_eq(rc, 0, "got %d (%s: %s), want 0", rc, err.field, err.message);
	cr_expect_str_eq(r.from.name, "张三", "from name: got \"%s\"", r.from.name);
	cr_expect_str_eq(r.from.email, "zhang@example.com", "from email: got \"%s\"", r.from.email);
	/* B@EXAMPLE.COM duplicates b@example.com: dropped */
	cr_expect_eq(r.nto, 2, "nto: got %zu, want 2", r.nto);
	cr_expect_str_eq(r.to[0].name, "Doe, John", "to[0] name: got \"%s\"", r.to[0].name);
	cr_expect_str_eq(r.to[1].email, "b@example.com", "to[1]: got \"%s\"", r.to[1].email);
	/* john@example.com already in to: dropped from cc */
	cr_expect_eq(r.ncc, 1, "ncc: got %zu, want 1", r.ncc);
	cr_expect_eq(r.nbcc, 1, "nbcc: got %zu, want 1", r.nbcc);
	cr_expect_eq(r.nreply_to, 1, "nreply_to: got %zu, want 1", r.nreply_to);
	cr_expect_str_eq(r.reply_to[0].name, "Support", "reply_to name: got \"%s\"", r.reply_to[0].name);
	cr_expect_str_eq(r.subject, "你好，世界", "subject: got \"%s\"", r.subject);
	cr_expect_not_null(r.html);
	cr_expect_eq(r.nheaders, 2, "nheaders: got %zu, want 2", r.nheaders);
	cr_expect_str_eq(r.headers[0].name, "X-Campaign", "header 0: got \"%s\"", r.headers[0].name);
	cr_expect_str_eq(r.metadata_json, "{\"user_id\":42,\"nested\":{\"a\":[1,2]}}",
	    "metadata: got %s", r.metadata_json);
	cr_expect_str_eq(r.tags_json, "[\"verify\",\"验证\"]", "tags: got %s", r.tags_json);
	msg_request_free(&r);
	cJSON_Delete(j);
}

Test(validate, good_minimal_defaults)
{
	cJSON *j = cJSON_Parse("{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"html\":\"<b>x</b>\","
	    "\"cc\":null,\"subject\":null,\"metadata\":null,\"tags\":null,\"headers\":{}}");
	struct msg_request r;
	struct validate_error err;
	int rc = validate_message(j, &r, &err);

	cr_assert_eq(rc, 0, "got %d (%s: %s), want 0", rc, err.field, err.message);
	cr_expect_null(r.from.name);
	cr_expect_eq(r.nto, 1, "nto: got %zu, want 1", r.nto);
	cr_expect_eq(r.ncc, 0, "ncc: got %zu, want 0", r.ncc);
	cr_expect_null(r.subject);
	cr_expect_null(r.text);
	cr_expect_str_eq(r.metadata_json, "{}", "metadata: got %s, want {}", r.metadata_json);
	cr_expect_str_eq(r.tags_json, "[]", "tags: got %s, want []", r.tags_json);
	cr_expect_eq(r.nheaders, 0, "nheaders: got %zu, want 0", r.nheaders);
	msg_request_free(&r);
	cJSON_Delete(j);
}

/* --- validate_json_nul --------------------------------------------------- */

struct nul_case {
	const char *json;
	int want;
	const char *want_field;
};

static const struct nul_case nul_cases[] = {
	{ "{\"a\":\"x\"}", 0, "" },
	{ "{\"a\":\"x\\\\u0000\"}", 0, "" },      /* escaped backslash, then "u0000" */
	{ "{\"subject\":\"x\\u0000y\"}", 1, "subject" },
	{ "{\"from\":\"a\",\"to\":[\"b\",\"c\\u0000\"]}", 1, "to[1]" },
	{ "{\"headers\":{\"X-Foo\":\"v\\u0000\"}}", 1, "headers.X-Foo" },
	{ "{\"headers\":{\"X-A\":\"ok\",\"X-B\":\"\\u0000\"}}", 1, "headers.X-B" },
	{ "{\"a\":[{\"b\":[1,\"\\u0000\"]}]}", 1, "a[0].b[1]" },
	{ "[\"\\u0000\"]", 1, "[0]" },
	{ "{\"k\\u0000\":1}", 1, "" },
};

Test(validate, json_nul_table)
{
	for (size_t i = 0; i < sizeof(nul_cases) / sizeof(nul_cases[0]); i++) {
		const struct nul_case *c = &nul_cases[i];
		char field[128] = "unset";
		int got = validate_json_nul(c->json, strlen(c->json), field, sizeof(field));

		cr_expect_eq(got, c->want, "validate_json_nul(%s): got %d, want %d", c->json, got, c->want);
		if (c->want)
			cr_expect_str_eq(field, c->want_field, "validate_json_nul(%s) field: got \"%s\", want \"%s\"",
			    c->json, field, c->want_field);
	}
}

/* field names echoed in errors are always printable, valid UTF-8 */
Test(validate, field_names_are_sanitized)
{
	static const char *const bodies[] = {
		"{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"text\":\"x\",\"bad\xff\xfekey\":1}",
		"{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"text\":\"x\",\"headers\":{\"X-\xc3\":\"v\"}}",
		"{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"text\":\"x\",\"ctl\\u0001\":1}",
	};

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		cJSON *j = cJSON_Parse(bodies[i]);
		struct msg_request r;
		struct validate_error err;
		int rc;

		cr_assert_not_null(j, "case %zu does not parse", i);
		rc = validate_message(j, &r, &err);
		cr_expect_eq(rc, -1, "case %zu: got %d, want -1", i, rc);
		for (const unsigned char *p = (const unsigned char *)err.field; *p != '\0'; p++)
			cr_expect(*p >= 0x20 && *p < 0x7F, "case %zu: got byte 0x%02x in field \"%s\", want printable ASCII",
			    i, *p, err.field);
		cr_expect(err.field[0] != '\0', "case %zu: got empty field, want one", i);
		msg_request_free(&r);
		cJSON_Delete(j);
	}
}

/* --- issue 3: templates, attachments, send_at, ttl, batch prefixes -------- */

#define NOW_MS 1795392000000LL   /* 2026-11-23T00:00:00Z */
#define MIB ((size_t)1024 * 1024)

struct at_case {
	const char *json;
	const char *prefix;
	size_t max_attach;
	int want_rc;
	const char *want_field;
};

static const struct at_case at_bad_cases[] = {
	/* template */
	{ "{" BASE ",\"template\":\"welcome\"}", NULL, 7 * MIB, -1, "text" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"template\":\"w\",\"subject\":\"s\"}", NULL, 7 * MIB, -1, "subject" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"template\":\"w\",\"html\":\"<p>\"}", NULL, 7 * MIB, -1, "html" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"template\":\"bad name\"}", NULL, 7 * MIB, -1, "template" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"template\":\"\"}", NULL, 7 * MIB, -1, "template" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"template\":5}", NULL, 7 * MIB, -1, "template" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"template\":\"w\",\"variables\":[]}", NULL, 7 * MIB, -1, "variables" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"template\":\"w\",\"variables\":\"x\"}", NULL, 7 * MIB, -1, "variables" },
	{ "{" BASE ",\"variables\":{\"a\":1}}", NULL, 7 * MIB, -1, "variables" },
	{ "{\"from\":\"a@example.com\",\"to\":\"b@example.com\"}", NULL, 7 * MIB, -1, "text" },
	/* attachments */
	{ "{" BASE ",\"attachments\":{}}", NULL, 7 * MIB, -1, "attachments" },
	{ "{" BASE ",\"attachments\":[5]}", NULL, 7 * MIB, -1, "attachments[0]" },
	{ "{" BASE ",\"attachments\":[{\"content\":\"aGk=\"}]}", NULL, 7 * MIB, -1, "attachments[0].filename" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a.txt\"}]}", NULL, 7 * MIB, -1, "attachments[0].content" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a.txt\",\"content\":\"aGk=\"},{\"filename\":\"b.txt\",\"content\":\"not base64!\"}]}", NULL, 7 * MIB, -1, "attachments[1].content" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a.txt\",\"content\":\"aGk\"}]}", NULL, 7 * MIB, -1, "attachments[0].content" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a.txt\",\"content\":5}]}", NULL, 7 * MIB, -1, "attachments[0].content" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"\",\"content\":\"aGk=\"}]}", NULL, 7 * MIB, -1, "attachments[0].filename" },
	{ "{" BASE ",\"attachments\":[{\"filename\":5,\"content\":\"aGk=\"}]}", NULL, 7 * MIB, -1, "attachments[0].filename" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a\\r\\nb.txt\",\"content\":\"aGk=\"}]}", NULL, 7 * MIB, -1, "attachments[0].filename" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"../etc/passwd\",\"content\":\"aGk=\"}]}", NULL, 7 * MIB, -1, "attachments[0].filename" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"c:\\\\x.txt\",\"content\":\"aGk=\"}]}", NULL, 7 * MIB, -1, "attachments[0].filename" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a.txt\",\"content\":\"aGk=\",\"content_type\":\"text\"}]}", NULL, 7 * MIB, -1, "attachments[0].content_type" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a.txt\",\"content\":\"aGk=\",\"content_type\":\"text/plain; charset=x\"}]}", NULL, 7 * MIB, -1, "attachments[0].content_type" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a.txt\",\"content\":\"aGk=\",\"content_type\":\"text/plain\\r\\nBcc: x\"}]}", NULL, 7 * MIB, -1, "attachments[0].content_type" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a.txt\",\"content\":\"aGk=\",\"content_id\":\"a b\"}]}", NULL, 7 * MIB, -1, "attachments[0].content_id" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a.txt\",\"content\":\"aGk=\",\"content_id\":\"<x>\"}]}", NULL, 7 * MIB, -1, "attachments[0].content_id" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a.txt\",\"content\":\"aGk=\",\"content_id\":\"\"}]}", NULL, 7 * MIB, -1, "attachments[0].content_id" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a\",\"content\":\"aGk=\",\"content_id\":\"x\"},"
	  "{\"filename\":\"b\",\"content\":\"aGk=\",\"content_id\":\"x\"}]}", NULL, 7 * MIB, -1, "attachments[1].content_id" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a.txt\",\"content\":\"aGk=\",\"size\":2}]}", NULL, 7 * MIB, -1, "attachments[0].size" },
	/* size cap: 4 bytes allowed, 2 + 3 decoded */
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a\",\"content\":\"aGk=\"},{\"filename\":\"b\",\"content\":\"aGk/\"}]}", NULL, 4, -3, "attachments" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a\",\"content\":\"aGVsbG8gd29ybGQ=\"}]}", NULL, 4, -3, "attachments" },
	/* send_at */
	{ "{" BASE ",\"send_at\":\"tomorrow\"}", NULL, 7 * MIB, -1, "send_at" },
	{ "{" BASE ",\"send_at\":\"2026-11-24T00:00:00\"}", NULL, 7 * MIB, -1, "send_at" },
	{ "{" BASE ",\"send_at\":1795392000}", NULL, 7 * MIB, -1, "send_at" },
	{ "{" BASE ",\"send_at\":\"2026-12-23T00:00:01Z\"}", NULL, 7 * MIB, -1, "send_at" },
	/* ttl */
	{ "{" BASE ",\"ttl\":0}", NULL, 7 * MIB, -1, "ttl" },
	{ "{" BASE ",\"ttl\":-5}", NULL, 7 * MIB, -1, "ttl" },
	{ "{" BASE ",\"ttl\":1.5}", NULL, 7 * MIB, -1, "ttl" },
	{ "{" BASE ",\"ttl\":\"600\"}", NULL, 7 * MIB, -1, "ttl" },
	{ "{" BASE ",\"ttl\":2592001}", NULL, 7 * MIB, -1, "ttl" },
	/* priority */
	{ "{" BASE ",\"priority\":\"urgent\"}", NULL, 7 * MIB, -1, "priority" },
	{ "{" BASE ",\"priority\":\"HIGH\"}", NULL, 7 * MIB, -1, "priority" },
	{ "{" BASE ",\"priority\":\"\"}", NULL, 7 * MIB, -1, "priority" },
	{ "{" BASE ",\"priority\":1}", NULL, 7 * MIB, -1, "priority" },
	{ "{" BASE ",\"priority\":true}", NULL, 7 * MIB, -1, "priority" },
	{ "{" BASE ",\"priority\":\"low\"}", "messages[2].", 7 * MIB, -1, "messages[2].priority" },
	/* batch prefixes */
	{ "{\"from\":\"a@example.com\",\"to\":[\"bad\"],\"text\":\"x\"}", "messages[3].", 7 * MIB, -1, "messages[3].to[0]" },
	{ "[]", "messages[0].", 7 * MIB, -1, "messages[0]" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a\",\"content\":\"!\"}]}", "messages[12].", 7 * MIB, -1, "messages[12].attachments[0].content" },
	{ "{" BASE ",\"attachments\":[{\"filename\":\"a\",\"content\":\"aGVsbG8=\"}]}", "messages[1].", 2, -3, "messages[1].attachments" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"bad\"],\"text\":\"x\"}", "", 7 * MIB, -1, "to[0]" },
};

Test(validate, at_bad_table)
{
	for (size_t i = 0; i < sizeof(at_bad_cases) / sizeof(at_bad_cases[0]); i++) {
		const struct at_case *c = &at_bad_cases[i];
		cJSON *j = cJSON_Parse(c->json);
		struct msg_request r;
		struct validate_error err;
		int rc;

		cr_assert_not_null(j, "case %zu: test JSON does not parse: %s", i, c->json);
		rc = validate_message_at(j, NOW_MS, c->max_attach, c->prefix, &r, &err);
		cr_expect_eq(rc, c->want_rc, "case %zu %s: got rc %d, want %d (%s: %s)", i, c->json, rc,
		    c->want_rc, err.field, err.message);
		cr_expect_str_eq(err.field, c->want_field, "case %zu %s: got field \"%s\", want \"%s\" (%s)",
		    i, c->json, err.field, c->want_field, err.message);
		cr_expect(err.message[0] != '\0', "case %zu: empty message", i);
		cr_expect(r.to == NULL && r.attachments == NULL && r.variables == NULL &&
		    r.template_name == NULL, "case %zu: *out not left empty", i);
		msg_request_free(&r);
		cJSON_Delete(j);
	}
}

/* 21 attachments: one too many */
Test(validate, at_attachment_count)
{
	char *json = malloc(8192);
	size_t n = 0;
	cJSON *j;
	struct msg_request r;
	struct validate_error err;
	int rc;

	cr_assert_not_null(json);
	n += (size_t)snprintf(json + n, 8192 - n, "{" BASE ",\"attachments\":[");
	for (int k = 0; k < 21; k++)
		n += (size_t)snprintf(json + n, 8192 - n, "%s{\"filename\":\"f%d\",\"content\":\"aGk=\"}",
		    k ? "," : "", k);
	snprintf(json + n, 8192 - n, "]}");
	j = cJSON_Parse(json);
	cr_assert_not_null(j);
	rc = validate_message_at(j, NOW_MS, 7 * MIB, NULL, &r, &err);
	cr_expect_eq(rc, -1, "got rc %d, want -1", rc);
	cr_expect_str_eq(err.field, "attachments", "got field \"%s\", want \"attachments\"", err.field);
	msg_request_free(&r);
	cJSON_Delete(j);
	/* 20 is fine */
	*strstr(json, ",{\"filename\":\"f20\"") = '\0';
	n = strlen(json);
	snprintf(json + n, 8192 - n, "]}");
	j = cJSON_Parse(json);
	cr_assert_not_null(j, "got unparsable %s", json);
	rc = validate_message_at(j, NOW_MS, 7 * MIB, NULL, &r, &err);
	cr_expect_eq(rc, 0, "got rc %d (%s: %s), want 0", rc, err.field, err.message);
	cr_expect_eq(r.nattachments, 20, "got %zu attachments, want 20", r.nattachments);
	msg_request_free(&r);
	cJSON_Delete(j);
	free(json);
}

Test(validate, at_good_template_attachments_time)
{
	const char *json =
	    "{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"template\":\"verify-code_1\","
	    "\"variables\":{\"code\":\"123456\",\"user\":{\"name\":\"Z\"}},"
	    "\"attachments\":[{\"filename\":\"报告 2026.pdf\",\"content\":\"JVBERg==\",\"content_type\":\"application/pdf\"},"
	    "{\"filename\":\"logo.png\",\"content\":\"iVBO\\r\\nRw==\",\"content_type\":\"image/png\",\"content_id\":\"logo@acme.example\"},"
	    "{\"filename\":\"empty.bin\",\"content\":\"\"}],"
	    "\"send_at\":\"2026-11-24T01:00:00+01:00\",\"ttl\":600}";
	cJSON *j = cJSON_Parse(json);
	struct msg_request r;
	struct validate_error err;
	int rc;

	cr_assert_not_null(j);
	rc = validate_message_at(j, NOW_MS, 7 * MIB, "messages[0].", &r, &err);
	cr_assert_eq(rc, 0, "got rc %d (%s: %s), want 0", rc, err.field, err.message);
	cr_expect_str_eq(r.template_name, "verify-code_1", "got template %s", r.template_name);
	cr_expect(r.subject == NULL && r.text == NULL && r.html == NULL, "got bodies, want none");
	cr_assert_not_null(r.variables);
	cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(r.variables, "code")->valuestring, "123456",
	    "got other variables");
	cr_assert_eq(r.nattachments, 3, "got %zu attachments, want 3", r.nattachments);
	cr_expect_str_eq(r.attachments[0].filename, "报告 2026.pdf", "got %s", r.attachments[0].filename);
	cr_expect_str_eq(r.attachments[0].content_type, "application/pdf", "got %s", r.attachments[0].content_type);
	cr_expect(r.attachments[0].len == 4 && memcmp(r.attachments[0].data, "%PDF", 4) == 0,
	    "got %zu bytes, want %%PDF", r.attachments[0].len);
	cr_expect_null(r.attachments[0].content_id, "got a content_id, want none");
	cr_expect_str_eq(r.attachments[1].content_id, "logo@acme.example", "got %s", r.attachments[1].content_id);
	cr_expect(r.attachments[1].len == 4 && memcmp(r.attachments[1].data, "\x89PNG", 4) == 0,
	    "got %zu bytes, want \\x89PNG", r.attachments[1].len);
	cr_expect_str_eq(r.attachments[2].content_type, "application/octet-stream", "got %s",
	    r.attachments[2].content_type);
	cr_expect_eq(r.attachments[2].len, 0, "got %zu, want 0", r.attachments[2].len);
	cr_expect_eq(r.send_at_ms, NOW_MS + 86400000LL, "got send_at %lld, want %lld",
	    (long long)r.send_at_ms, (long long)(NOW_MS + 86400000LL));
	cr_expect_eq(r.ttl_ms, 600000, "got ttl %lld, want 600000", (long long)r.ttl_ms);
	msg_request_free(&r);
	cJSON_Delete(j);
}

Test(validate, at_priority_table)
{
	static const struct {
		const char *json;
		int want_high;
	} cases[] = {
		{ "{" BASE "}", 0 },
		{ "{" BASE ",\"priority\":\"normal\"}", 0 },
		{ "{" BASE ",\"priority\":null}", 0 },
		{ "{" BASE ",\"priority\":\"high\"}", 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *j = cJSON_Parse(cases[i].json);
		struct msg_request r;
		struct validate_error err;
		int rc;

		cr_assert_not_null(j, "case %zu: test JSON does not parse", i);
		rc = validate_message_at(j, NOW_MS, 7 * MIB, "", &r, &err);
		cr_expect_eq(rc, 0, "case %zu %s: got rc %d (%s: %s), want 0", i, cases[i].json, rc,
		    err.field, err.message);
		cr_expect_eq(r.priority_high, cases[i].want_high, "case %zu %s: got priority_high %d, want %d",
		    i, cases[i].json, r.priority_high, cases[i].want_high);
		msg_request_free(&r);
		cJSON_Delete(j);
	}
}

Test(validate, at_send_at_table)
{
	static const struct {
		const char *send_at;
		int64_t now;
		int64_t want;
	} cases[] = {
		{ "2026-11-22T00:00:00Z", NOW_MS, 0 },                       /* past: now */
		{ "2026-11-23T00:00:00Z", NOW_MS, 0 },                       /* exactly now */
		{ "2026-11-23T00:00:00.500Z", NOW_MS, NOW_MS + 500 },
		{ "2026-12-23T00:00:00Z", NOW_MS, NOW_MS + 30LL * 86400000 },  /* 30 days: ok */
		{ "2030-01-01T00:00:00Z", 0, 1893456000000LL },             /* no clock: as given */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char json[256];
		cJSON *j;
		struct msg_request r;
		struct validate_error err;
		int rc;

		snprintf(json, sizeof json, "{" BASE ",\"send_at\":\"%s\"}", cases[i].send_at);
		j = cJSON_Parse(json);
		cr_assert_not_null(j);
		rc = validate_message_at(j, cases[i].now, 7 * MIB, NULL, &r, &err);
		cr_expect_eq(rc, 0, "case %zu %s: got rc %d (%s), want 0", i, cases[i].send_at, rc, err.message);
		cr_expect_eq(r.send_at_ms, cases[i].want, "case %zu %s: got %lld, want %lld", i,
		    cases[i].send_at, (long long)r.send_at_ms, (long long)cases[i].want);
		msg_request_free(&r);
		cJSON_Delete(j);
	}
}

Test(validate, template_name_table)
{
	static const struct {
		const char *name;
		int want;
	} cases[] = {
		{ "welcome", 1 }, { "verify-code_2", 1 }, { "A", 1 },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1 },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0 },
		{ "", 0 }, { NULL, 0 }, { "a b", 0 }, { "a.b", 0 }, { "a/b", 0 }, { "..", 0 },
		{ "名前", 0 }, { "a%2F", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = validate_template_name(cases[i].name);
		cr_expect_eq(got, cases[i].want, "validate_template_name(%s): got %d, want %d",
		    cases[i].name ? cases[i].name : "NULL", got, cases[i].want);
	}
}

Test(validate, template_body_table)
{
	static const struct {
		const char *json;
		int want_rc;
		const char *want_field;
	} cases[] = {
		{ "{\"subject\":\"Your code is {{code}}\",\"text\":\"{{code}}\",\"html\":\"<b>{{code}}</b>\"}", 0, "" },
		{ "{\"html\":\"<b>{{{raw}}}</b>\"}", 0, "" },
		{ "{\"text\":\"plain\",\"subject\":null}", 0, "" },
		{ "[]", -1, "" },
		{ "{}", -1, "text" },
		{ "{\"subject\":\"s\"}", -1, "text" },
		{ "{\"subject\":\"s\",\"text\":\"\"}", -1, "text" },
		{ "{\"text\":\"x\",\"from\":\"a@b.c\"}", -1, "from" },
		{ "{\"text\":5}", -1, "text" },
		{ "{\"text\":\"x\",\"html\":\"<b>{{code</b>\"}", -1, "html" },
		{ "{\"text\":\"{{}}\"}", -1, "text" },
		{ "{\"text\":\"x\",\"subject\":\"a {{b\"}", -1, "subject" },
		{ "{\"text\":\"x\",\"subject\":\"a\\nb\"}", -1, "subject" },
		{ "{\"text\":\"x\",\"text\":\"y\"}", -1, "text" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *j = cJSON_Parse(cases[i].json);
		struct validate_error err;
		int rc;

		cr_assert_not_null(j, "case %zu does not parse", i);
		rc = validate_template_body(j, &err);
		cr_expect_eq(rc, cases[i].want_rc, "case %zu %s: got rc %d (%s), want %d", i,
		    cases[i].json, rc, err.message, cases[i].want_rc);
		if (cases[i].want_rc != 0)
			cr_expect_str_eq(err.field, cases[i].want_field, "case %zu %s: got field \"%s\", want \"%s\"",
			    i, cases[i].json, err.field, cases[i].want_field);
		cJSON_Delete(j);
	}
	/* the syntax error names its offset */
	{
		cJSON *j = cJSON_Parse("{\"html\":\"<b>{{code</b>\"}");
		struct validate_error err;

		validate_template_body(j, &err);
		cr_expect(strstr(err.message, "offset 3") != NULL, "got \"%s\", want offset 3", err.message);
		cJSON_Delete(j);
	}
}

Test(validate, rendered_table)
{
	static const struct {
		const char *subject, *text, *html;
		int want_rc;
		const char *want_field;
	} cases[] = {
		{ "Your code is 1", "x", NULL, 0, "" },
		{ NULL, NULL, "<b>1</b>", 0, "" },
		{ "a\r\nBcc: x@y.z", "x", NULL, -1, "messages[2].subject" },
		{ "ok", "", "", -1, "messages[2].template" },
		{ "ok", NULL, NULL, -1, "messages[2].template" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct msg_request r;
		struct validate_error err;
		int rc;

		memset(&r, 0, sizeof r);
		r.subject = (char *)cases[i].subject;
		r.text = (char *)cases[i].text;
		r.html = (char *)cases[i].html;
		rc = validate_rendered(&r, "messages[2].", &err);
		cr_expect_eq(rc, cases[i].want_rc, "case %zu: got rc %d, want %d", i, rc, cases[i].want_rc);
		if (cases[i].want_rc != 0)
			cr_expect_str_eq(err.field, cases[i].want_field, "case %zu: got field \"%s\", want \"%s\"",
			    i, err.field, cases[i].want_field);
	}
}

Test(validate, json_depth)
{
	static const struct { const char *json; int limit, want; } cases[] = {
		{ "1", 5, 0 },
		{ "{}", 5, 1 },
		{ "[[[]]]", 5, 3 },
		{ "{\"a\":[1,{\"b\":{}}],\"c\":2}", 10, 4 },
		{ "[[[[[[[[[[]]]]]]]]]]", 4, 5 },   /* stops counting past the limit */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *j = cJSON_Parse(cases[i].json);
		cr_assert_not_null(j, "%s did not parse", cases[i].json);
		int got = validate_json_depth(j, cases[i].limit);
		cr_assert_eq(got, cases[i].want, "%s (limit %d): got %d, want %d", cases[i].json,
		    cases[i].limit, got, cases[i].want);
		cJSON_Delete(j);
	}
}

/* --- validate_json_count and the caps it backs ---------------------------- */

/* the values of a parsed document, counted on the tree */
static size_t
tree_count(const cJSON *node)
{
	size_t n = 1;

	for (const cJSON *c = node->child; c != NULL; c = c->next)
		n += tree_count(c);
	return n;
}

Test(validate, json_count_table)
{
	static const struct { const char *json; size_t limit, want; } cases[] = {
		{ "1", 10, 1 },
		{ "{}", 10, 1 },
		{ "[]", 10, 1 },
		{ "\"just a string\"", 10, 1 },
		{ "[1,2,3]", 10, 4 },
		{ "{\"a\":1,\"b\":[true,false,null]}", 10, 6 },
		{ "{\"a\":{\"b\":{\"c\":[]}}}", 10, 4 },
		/* ':' and escaped quotes inside strings are not structure */
		{ "{\"a\":\"x:y\",\"b\":\"\\\":\",\"c:\":\"\\\\\"}", 10, 4 },
		/* blanks (cJSON takes any byte up to space) between a name and ':' */
		{ "{ \"k\" \t\r\n: \"v\" , \"l\":\"w\" }", 10, 3 },
		{ "[ \"a\" , \"b\" ]", 10, 3 },
		{ "[-1.5e+10,0,2E-3,-0]", 10, 5 },
		{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\",\"c@example.com\"],\"metadata\":{}}", 10, 6 },
		/* counting stops past the limit */
		{ "[0,0,0,0,0,0,0,0,0,0]", 5, 6 },
		{ "[0,0,0,0,0,0,0,0,0,0]", 11, 11 },
		{ "[0,0,0,0,0,0,0,0,0,0]", 10, 11 },
		{ "[[[[[[[[[[]]]]]]]]]]", 3, 4 },
		/* not JSON: some number, never a read past the end */
		{ "", 10, 0 },
		{ "\"unterminated", 10, 1 },
		{ "\"\\", 10, 1 },
		{ "[1,2", 10, 3 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *js = cases[i].json;
		size_t got = validate_json_count(js, strlen(js), cases[i].limit);
		cJSON *j;

		cr_expect_eq(got, cases[i].want, "validate_json_count(%s, limit %zu): got %zu, want %zu", js,
		    cases[i].limit, got, cases[i].want);
		/* where cJSON takes it, the scan agrees with the tree */
		j = cJSON_Parse(js);
		if (j != NULL && tree_count(j) <= cases[i].limit)
			cr_expect_eq(got, tree_count(j), "%s: got %zu, the tree has %zu", js, got, tree_count(j));
		cJSON_Delete(j);
	}
}

/* random documents, printed compact and formatted: the scan counts the tree */
static cJSON *
random_tree(unsigned *seed, int depth)
{
	static const char *const strs[] = { "", "a", "x:y", "q\"uote", "back\\slash", "中文", "{[,:]}" };
	int kind = depth > 4 ? rand_r(seed) % 5 : rand_r(seed) % 7;
	cJSON *n;

	switch (kind) {
	case 0: return cJSON_CreateNumber((double)(rand_r(seed) % 2001 - 1000) / 7.0);
	case 1: return cJSON_CreateString(strs[rand_r(seed) % 7]);
	case 2: return cJSON_CreateBool(rand_r(seed) % 2);
	case 3: return cJSON_CreateNull();
	case 4: return cJSON_CreateNumber(1e300);
	case 5:
		n = cJSON_CreateArray();
		for (int k = rand_r(seed) % 6; k > 0; k--)
			cJSON_AddItemToArray(n, random_tree(seed, depth + 1));
		return n;
	default:
		n = cJSON_CreateObject();
		for (int k = rand_r(seed) % 6; k > 0; k--) {
			char key[16];

			snprintf(key, sizeof(key), "%s%d", strs[rand_r(seed) % 7], k);
			cJSON_AddItemToObject(n, key, random_tree(seed, depth + 1));
		}
		return n;
	}
}

Test(validate, json_count_random)
{
	unsigned seed = 5;

	for (int i = 0; i < 2000; i++) {
		cJSON *t = random_tree(&seed, 0);
		char *texts[2] = { cJSON_PrintUnformatted(t), cJSON_Print(t) };
		size_t want = tree_count(t);

		for (int k = 0; k < 2; k++) {
			size_t got;

			cr_assert_not_null(texts[k]);
			got = validate_json_count(texts[k], strlen(texts[k]), SIZE_MAX - 1);
			cr_assert_eq(got, want, "case %d: got %zu, want %zu for %s", i, got, want, texts[k]);
			free(texts[k]);
		}
		cJSON_Delete(t);
	}
}

Test(validate, variables_cap)
{
	/* strings at the top, members of a nested object "n" (itself a value) */
	static const struct { int top, nested, want_rc; } cases[] = {
		{ 100, 0, 0 },      /* 100 values */
		{ 101, 0, -1 },
		{ 49, 50, 0 },      /* 49 + 1 + 50 */
		{ 50, 50, -1 },     /* nested members count too */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *j = cJSON_Parse("{\"from\":\"a@example.com\",\"to\":\"b@example.com\",\"template\":\"t\"}");
		cJSON *v = cJSON_AddObjectToObject(j, "variables");
		struct msg_request r;
		struct validate_error err;
		char key[16];
		int rc;

		for (int k = 0; k < cases[i].top; k++) {
			snprintf(key, sizeof(key), "v%d", k);
			cJSON_AddStringToObject(v, key, "x");
		}
		if (cases[i].nested > 0) {
			cJSON *n = cJSON_AddObjectToObject(v, "n");

			for (int k = 0; k < cases[i].nested; k++) {
				snprintf(key, sizeof(key), "m%d", k);
				cJSON_AddStringToObject(n, key, "x");
			}
		}
		rc = validate_message_at(j, NOW_MS, 7 * MIB, "", &r, &err);
		cr_expect_eq(rc, cases[i].want_rc, "case %zu (%zu values): got rc %d (%s: %s), want %d", i,
		    tree_count(v) - 1, rc, err.field, err.message, cases[i].want_rc);
		if (cases[i].want_rc != 0) {
			cr_expect_str_eq(err.field, "variables", "case %zu: got field \"%s\", want variables", i,
			    err.field);
			cr_expect(strstr(err.message, "100") != NULL, "case %zu: got \"%s\", want the limit named",
			    i, err.message);
		}
		msg_request_free(&r);
		cJSON_Delete(j);
	}
}

/* a message at every cap (template form), written out */
static char *
loaded_message(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	static const char *const lists[] = { "to", "cc", "bcc", "reply_to" };
	static const int sizes[] = { 20, 20, 10, 10 };

	cr_assert_not_null(f);
	fprintf(f, "{\"from\":\"Sender <sender@example.com>\",\"template\":\"receipt\",\"send_at\":"
	    "\"2026-11-24T00:00:00Z\",\"ttl\":600");
	for (int l = 0; l < 4; l++) {
		fprintf(f, ",\"%s\":[", lists[l]);
		for (int k = 0; k < sizes[l]; k++)
			fprintf(f, "%s\"%s%02d@example.com\"", k ? "," : "", lists[l], k);
		fprintf(f, "]");
	}
	fprintf(f, ",\"variables\":{");
	for (int k = 0; k < VALIDATE_MAX_VARIABLES; k++)
		fprintf(f, "%s\"v%02d\":\"value %d\"", k ? "," : "", k, k);
	fprintf(f, "},\"headers\":{");
	for (int k = 0; k < 50; k++)
		fprintf(f, "%s\"X-Header-%02d\":\"value %d\"", k ? "," : "", k, k);
	fprintf(f, "},\"metadata\":{");
	for (int k = 0; k < 50; k++)
		fprintf(f, "%s\"m%02d\":%d", k ? "," : "", k, k);
	fprintf(f, "},\"tags\":[");
	for (int k = 0; k < 20; k++)
		fprintf(f, "%s\"tag%02d\"", k ? "," : "", k);
	fprintf(f, "],\"attachments\":[");
	for (int k = 0; k < 20; k++)
		fprintf(f, "%s{\"filename\":\"f%02d.txt\",\"content\":\"aGk=\",\"content_type\":\"text/plain\","
		    "\"content_id\":\"c%02d\"}", k ? "," : "", k, k);
	fprintf(f, "]}");
	fclose(f);
	return buf;
}

/* the documented arithmetic: a 500-message batch at every cap fits */
Test(validate, json_values_fit_a_loaded_batch)
{
	char *msg = loaded_message(), *batch = NULL;
	size_t mlen = strlen(msg), blen = 0, per, got;
	cJSON *j = cJSON_Parse(msg);
	struct msg_request r;
	struct validate_error err;
	FILE *f;
	int rc;

	cr_assert_not_null(j, "the loaded message does not parse");
	rc = validate_message_at(j, NOW_MS, 7 * MIB, "", &r, &err);
	cr_assert_eq(rc, 0, "loaded message: got rc %d (%s: %s), want 0", rc, err.field, err.message);
	cr_expect_eq(r.nto + r.ncc + r.nbcc, VALIDATE_MAX_RCPTS, "got %zu recipients", r.nto + r.ncc + r.nbcc);
	msg_request_free(&r);
	per = validate_json_count(msg, mlen, SIZE_MAX - 1);
	cr_expect_eq(per, tree_count(j), "scan %zu, tree %zu", per, tree_count(j));
	cr_expect(per <= 395, "a loaded message has %zu values, the documented bound is 395", per);
	cJSON_Delete(j);

	f = open_memstream(&batch, &blen);
	cr_assert_not_null(f);
	fprintf(f, "{\"messages\":[");
	for (int k = 0; k < 500; k++)
		fprintf(f, "%s%s", k ? "," : "", msg);
	fprintf(f, "]}");
	fclose(f);
	got = validate_json_count(batch, blen, VALIDATE_MAX_JSON_VALUES);
	cr_expect_eq(got, 2 + 500 * per, "batch: got %zu values, want %zu", got, 2 + 500 * per);
	cr_expect(got <= VALIDATE_MAX_JSON_VALUES, "a loaded 500-message batch has %zu values, over the %d limit",
	    got, VALIDATE_MAX_JSON_VALUES);
	cr_expect(blen < 10 * MIB, "the batch is %zu bytes, over the default body cap", blen);
	free(batch);
	free(msg);
}

/* over the limit: the count stops at limit + 1, whatever the size */
Test(validate, json_values_over_limit)
{
	size_t n = (size_t)VALIDATE_MAX_JSON_VALUES * 3, len = 2 * n + 1;
	char *big = malloc(len + 1);
	size_t got;

	cr_assert_not_null(big);
	big[0] = '[';
	for (size_t k = 0; k < n; k++) {
		big[1 + 2 * k] = '0';
		big[2 + 2 * k] = k + 1 < n ? ',' : ']';
	}
	big[len] = '\0';
	got = validate_json_count(big, len, VALIDATE_MAX_JSON_VALUES);
	cr_expect_eq(got, (size_t)VALIDATE_MAX_JSON_VALUES + 1, "got %zu, want limit + 1", got);
	got = validate_json_count(big, len, SIZE_MAX - 1);
	cr_expect_eq(got, n + 1, "got %zu, want %zu", got, n + 1);
	free(big);
}

/* --- control, separator, bidi and BOM code points in addresses (issue 11) --- */

/* every code point an address or display name must not hold (U+0000 is the \u0000 scan's) */
static size_t
forbidden_cps(unsigned long *out)
{
	static const unsigned long named[] = {
		0x7F, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
		0x2066, 0x2067, 0x2068, 0x2069, 0xFEFF,
	};
	size_t n = 0;

	for (unsigned long cp = 0x01; cp <= 0x1F; cp++)
		out[n++] = cp;
	for (unsigned long cp = 0x80; cp <= 0x9F; cp++)
		out[n++] = cp;
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
		out[n++] = named[i];
	return n;
}

static void
utf8_put(unsigned long cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		out[1] = '\0';
	} else if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		out[2] = '\0';
	} else {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		out[3] = '\0';
	}
}

/* where a code point goes: between pre and post; bare ones are addr-specs */
static const struct {
	const char *pre, *post;
	int bare;
} cp_places[] = {
	{ "jo", "n@example.com", 1 },           /* local part */
	{ "", "john@example.com", 1 },
	{ "john@exa", "mple.com", 1 },          /* domain */
	{ "john@example.com", "", 1 },
	{ "Jo", "n <john@example.com>", 0 },    /* display name */
	{ "", "John <john@example.com>", 0 },
	{ "\"Jo", "n\" <john@example.com>", 0 },
	{ "John <jo", "n@example.com>", 0 },
	{ "John <john@example.com", ">", 0 },
};

Test(validate, address_forbidden_code_points)
{
	unsigned long cps[128];
	size_t ncp = forbidden_cps(cps);

	cr_assert_eq(ncp, 31 + 32 + 15, "got %zu code points, want 78", ncp);
	for (size_t i = 0; i < ncp; i++) {
		char ch[8];

		utf8_put(cps[i], ch);
		for (size_t p = 0; p < sizeof(cp_places) / sizeof(cp_places[0]); p++) {
			char in[128], why[160] = "", *name = NULL, *email = NULL;
			int rc;

			snprintf(in, sizeof(in), "%s%s%s", cp_places[p].pre, ch, cp_places[p].post);
			rc = validate_address(in, &name, &email, why, sizeof(why));
			cr_expect_eq(rc, -1, "validate_address(%s<U+%04lX>%s): got %d (name %s, email %s), want -1",
			    cp_places[p].pre, cps[i], cp_places[p].post, rc, name ? name : "(null)",
			    email ? email : "(null)");
			cr_expect(why[0] != '\0', "U+%04lX in place %zu: no reason given", cps[i], p);
			free(name);
			free(email);
			if (cp_places[p].bare)
				cr_expect_eq(validate_email(in), 0, "validate_email(%s<U+%04lX>%s): got 1, want 0",
				    cp_places[p].pre, cps[i], cp_places[p].post);
		}
	}
}

/* each address field of a send request, alone and in a batch, names itself */
Test(validate, address_forbidden_code_points_name_the_field)
{
	static const struct {
		const char *key;
		int list;   /* also given as an array */
	} fields[] = {
		{ "from", 0 }, { "to", 1 }, { "cc", 1 }, { "bcc", 1 }, { "reply_to", 1 },
	};
	static const char *const bad_pre[] = { "Jo", "jo" };
	static const char *const bad_post[] = { "n <john@example.com>", "n@example.com" };
	unsigned long cps[128];
	size_t ncp = forbidden_cps(cps);

	for (size_t i = 0; i < ncp; i++) {
		char bad[64], esc[16];

		/* as JSON text: a \u escape, so C0 controls are valid JSON too */
		snprintf(esc, sizeof(esc), "\\u%04lx", cps[i]);
		for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
			for (size_t b = 0; b < 2; b++) {
				for (int arr = 0; arr <= fields[f].list; arr++) {
					char json[512], want[64];
					const char *prefix = (i + f + b) % 2 ? "messages[4]." : NULL;
					struct msg_request r;
					struct validate_error err;
					cJSON *j;
					int rc;

					snprintf(bad, sizeof(bad), "%s%s%s", bad_pre[b], esc, bad_post[b]);
					if (strcmp(fields[f].key, "from") == 0)
						snprintf(json, sizeof(json),
						    "{\"from\":\"%s\",\"to\":\"b@example.com\",\"text\":\"hi\"}", bad);
					else if (arr)
						snprintf(json, sizeof(json),
						    "{\"from\":\"a@example.com\",\"to\":\"t@example.com\",\"%s\":[\"ok@example.com\",\"%s\"],\"text\":\"hi\"}",
						    fields[f].key, bad);
					else
						snprintf(json, sizeof(json),
						    "{\"from\":\"a@example.com\",\"to\":\"t@example.com\",\"%s\":\"%s\",\"text\":\"hi\"}",
						    fields[f].key, bad);
					if (strcmp(fields[f].key, "to") == 0)   /* to given twice otherwise */
						snprintf(json, sizeof(json), arr ?
						    "{\"from\":\"a@example.com\",\"to\":[\"ok@example.com\",\"%s\"],\"text\":\"hi\"}" :
						    "{\"from\":\"a@example.com\",\"to\":\"%s\",\"text\":\"hi\"}", bad);
					snprintf(want, sizeof(want), "%s%s%s", prefix ? prefix : "", fields[f].key,
					    arr ? "[1]" : "");
					j = cJSON_Parse(json);
					cr_assert_not_null(j, "test JSON does not parse: %s", json);
					rc = validate_message_at(j, NOW_MS, 7 * MIB, prefix, &r, &err);
					cr_expect_eq(rc, -1, "%s: got rc %d, want -1", json, rc);
					cr_expect_str_eq(err.field, want, "%s: got field \"%s\", want \"%s\" (%s)",
					    json, err.field, want, err.message);
					msg_request_free(&r);
					cJSON_Delete(j);
				}
			}
		}
	}
}

/* U+0000 never reaches validate_address (cJSON would cut the string): the scan names the field */
Test(validate, address_nul_names_the_field)
{
	static const struct {
		const char *json;
		const char *want;
	} cases[] = {
		{ "{\"from\":\"Jo\\u0000n <a@example.com>\"}", "from" },
		{ "{\"to\":[\"ok@example.com\",\"a\\u0000@example.com\"]}", "to[1]" },
		{ "{\"messages\":[{},{\"reply_to\":\"x@exa\\u0000mple.com\"}]}", "messages[1].reply_to" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char field[128];
		int got = validate_json_nul(cases[i].json, strlen(cases[i].json), field, sizeof(field));

		cr_expect_eq(got, 1, "%s: got %d, want 1", cases[i].json, got);
		cr_expect_str_eq(field, cases[i].want, "%s: got field \"%s\", want \"%s\"",
		    cases[i].json, field, cases[i].want);
	}
}

/* ordinary non-ASCII, and the neighbours of every refused range, are still accepted */
Test(validate, address_ordinary_unicode_accepted)
{
	static const char *const good[] = {
		"Jörg <joerg@example.com>",
		"Jörg Müller <jörg@bücher.de>",
		"用户 <user@example.com>",
		"用户@例子.广告",
		"\"Ünïcødé, Ltd\" <a@example.com>",
		"Zoë\xc2\xa0" "Smith <z@example.com>",       /* U+00A0, after C1 */
		"Family \xe2\x80\x8d <f@example.com>",       /* U+200D ZWJ, before U+200E */
		"a\xe2\x80\xa7" "b <a@example.com>",          /* U+2027 */
		"a\xe2\x80\xaf" "b <a@example.com>",          /* U+202F */
		"a\xe2\x81\xa5" "b <a@example.com>",          /* U+2065 */
		"a\xe2\x81\xaa" "b <a@example.com>",          /* U+206A */
		"a\xef\xbb\xbe" "b <a@example.com>",          /* U+FEFE */
		"Emoji \xf0\x9f\x98\x80 <e@example.com>",    /* U+1F600 */
		"~ <tilde@example.com>",                       /* U+007E, before DEL */
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char why[160] = "", *name = NULL, *email = NULL;
		int rc = validate_address(good[i], &name, &email, why, sizeof(why));

		cr_expect_eq(rc, 0, "validate_address(\"%s\"): got %d (%s), want 0", good[i], rc, why);
		free(name);
		free(email);
	}
	cr_expect_eq(validate_email("jörg@bücher.de"), 1, "validate_email(jörg@bücher.de): got 0, want 1");
	cr_expect_eq(validate_email("用户@例子.广告"), 1, "validate_email(用户@例子.广告): got 0, want 1");
}
