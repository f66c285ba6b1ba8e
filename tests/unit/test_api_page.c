/* test_api_page.c - cursor pagination (api_page.c): cursors round trip, refuse other lists and junk; limit and cursor parsing. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "../../server/api.h"
#include "../../server/api_page.h"

Test(api_page, cursor_round_trip)
{
	static const char *const keys[] = { "", "a", "ab", "abc", "welcome-email", "ada@example.com",
	    "msg_01m96kg57pj9nbk3z4gdf7bkvv", "with\nnewline", "ünïcode 字" };
	char c[1024], back[API_PAGE_KEY_MAX + 1];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		cr_assert_eq(api_page_cursor_make("templates", keys[i], c, sizeof(c)), 0);
		for (const char *p = c; *p != '\0'; p++)
			cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p) != NULL,
			    "cursor %s has %c", c, *p);
		cr_assert_eq(api_page_cursor_read("templates", c, back, sizeof(back)), 0, "key %s", keys[i]);
		cr_assert_str_eq(back, keys[i]);
		/* another list's cursor is not this one's */
		cr_assert_eq(api_page_cursor_read("suppressions", c, back, sizeof(back)), -1);
		cr_assert_eq(api_page_cursor_read("template", c, back, sizeof(back)), -1);
	}
}

Test(api_page, cursor_refusals)
{
	char c[2048], back[API_PAGE_KEY_MAX + 1], big[API_PAGE_KEY_MAX + 2];

	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(api_page_cursor_make("t", big, c, sizeof(c)), -1, "a key over the max");
	big[API_PAGE_KEY_MAX] = '\0';
	cr_assert_eq(api_page_cursor_make("t", big, c, sizeof(c)), 0);
	cr_assert_eq(api_page_cursor_read("t", c, back, sizeof(back)), 0);
	cr_assert_eq(strlen(back), API_PAGE_KEY_MAX);
	cr_assert_eq(api_page_cursor_make("t", "x", c, 4), -1, "no room");
	static const char *const junk[] = { "", "=", "a", "ab+/", "abc=", "a b", "%00", "dA" /* "t" alone */ };
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		cr_assert_eq(api_page_cursor_read("t", junk[i], back, sizeof(back)), -1, "junk %s", junk[i]);
	/* a NUL inside the key is refused: "t\nk\0x" */
	cr_assert_eq(api_page_cursor_read("t", "dAprAHg", back, sizeof(back)), -1);
	/* too small an out */
	cr_assert_eq(api_page_cursor_make("t", "abcdef", c, sizeof(c)), 0);
	cr_assert_eq(api_page_cursor_read("t", c, back, 4), -1);
}

static const char *q_limit, *q_cursor;

static const char *
lookup(void *conn, const char *name)
{
	(void)conn;
	return strcmp(name, "limit") == 0 ? q_limit : strcmp(name, "cursor") == 0 ? q_cursor : NULL;
}

static int
parse(const char *limit, const char *cursor, struct api_page *p, int *status, char *field, size_t fl)
{
	struct api_request req;
	struct api_response resp;
	int rc;

	memset(&req, 0, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	req.lookup_query = lookup;
	req.conn = &req;   /* any non-NULL: api_request_query asks conn */
	q_limit = limit;
	q_cursor = cursor;
	rc = api_page_parse(&req, "suppressions", p, &resp);
	*status = resp.status;
	field[0] = '\0';
	if (resp.body != NULL) {
		cJSON *j = cJSON_Parse(resp.body);
		const cJSON *f = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "field");

		if (cJSON_IsString(f))
			snprintf(field, fl, "%s", f->valuestring);
		cJSON_Delete(j);
		free(resp.body);
	}
	return rc;
}

Test(api_page, parse)
{
	struct api_page p;
	char field[32], c[256];
	int st;

	cr_assert_eq(parse(NULL, NULL, &p, &st, field, sizeof(field)), 0);
	cr_assert_eq(p.limit, API_PAGE_DEFAULT);
	cr_assert_eq(p.has_after, 0);
	cr_assert_eq(parse("1", NULL, &p, &st, field, sizeof(field)), 0);
	cr_assert_eq(p.limit, 1);
	cr_assert_eq(parse("100", NULL, &p, &st, field, sizeof(field)), 0);
	cr_assert_eq(p.limit, 100);
	static const char *const bad[] = { "0", "101", "-1", "", "1x", " 1", "+5", "99999999999999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(parse(bad[i], NULL, &p, &st, field, sizeof(field)), -1, "limit %s", bad[i]);
		cr_assert_eq(st, 422);
		cr_assert_str_eq(field, "limit");
	}
	cr_assert_eq(api_page_cursor_make("suppressions", "ada@example.com", c, sizeof(c)), 0);
	cr_assert_eq(parse("5", c, &p, &st, field, sizeof(field)), 0);
	cr_assert_eq(p.has_after, 1);
	cr_assert_str_eq(p.after, "ada@example.com");
	cr_assert_eq(api_page_cursor_make("templates", "ada@example.com", c, sizeof(c)), 0);
	cr_assert_eq(parse(NULL, c, &p, &st, field, sizeof(field)), -1);
	cr_assert_eq(st, 422);
	cr_assert_str_eq(field, "cursor");
}

Test(api_page, finish)
{
	cJSON *o = cJSON_CreateObject();
	char *s;

	cr_assert_eq(api_page_finish(o, "templates", NULL), 0);
	s = cJSON_PrintUnformatted(o);
	cr_assert_str_eq(s, "{\"next_cursor\":null}");
	free(s);
	cJSON_Delete(o);
	o = cJSON_CreateObject();
	cr_assert_eq(api_page_finish(o, "templates", "b"), 0);
	s = cJSON_PrintUnformatted(o);
	cr_assert_str_eq(s, "{\"next_cursor\":\"dGVtcGxhdGVzCmI\"}");
	free(s);
	cJSON_Delete(o);
}
