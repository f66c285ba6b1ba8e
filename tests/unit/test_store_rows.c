/*
 * test_store_rows.c - the store's reply tables (st_rows_read, st_row_read,
 * st_field_read in server/store_conn.c) on hand-built hiredis replies: the
 * malformed answers a real redis-server running our own scripts does not
 * give (wrong types, short rows, too many rows), and that every allocation
 * is released on each failure path (the ASan run checks the leaks). The
 * happy paths run against a real redis-server in test_store.c.
 */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/store_internal.h"

/* --- building replies -------------------------------------------------------- */

static redisReply *
r_str(const char *s)
{
	redisReply *r = calloc(1, sizeof(*r));

	cr_assert(r);
	r->type = REDIS_REPLY_STRING;
	r->len = strlen(s);
	r->str = strdup(s);
	cr_assert(r->str);
	return r;
}

static redisReply *
r_int(long long v)
{
	redisReply *r = calloc(1, sizeof(*r));

	cr_assert(r);
	r->type = REDIS_REPLY_INTEGER;
	r->integer = v;
	return r;
}

static redisReply *
r_nil(void)
{
	redisReply *r = calloc(1, sizeof(*r));

	cr_assert(r);
	r->type = REDIS_REPLY_NIL;
	return r;
}

/* r_arr - an array of n replies given as arguments (taken over). */
static redisReply *
r_arr(size_t n, ...)
{
	redisReply *r = calloc(1, sizeof(*r));
	va_list ap;
	size_t i;

	cr_assert(r);
	r->type = REDIS_REPLY_ARRAY;
	r->elements = n;
	if (n) {
		r->element = calloc(n, sizeof(*r->element));
		cr_assert(r->element);
	}
	va_start(ap, n);
	for (i = 0; i < n; i++)
		r->element[i] = va_arg(ap, redisReply *);
	va_end(ap);
	return r;
}

/* --- a table with every kind of column ------------------------------------------ */

struct row {
	char *name;
	char *blob;
	size_t blob_len;
	int64_t when;
	int count;
	char **tags;
	size_t ntags;
	char *reason;
	int64_t stamp;
};

static const struct st_col cols[] = {
	{ ST_COL_STR, 0, offsetof(struct row, name), 0, 4, "name" },
	{ ST_COL_BYTES, 0, offsetof(struct row, blob), offsetof(struct row, blob_len), 0, "blob" },
	{ ST_COL_I64, 1, offsetof(struct row, when), 0, 0, "when" },
	{ ST_COL_INT, 0, offsetof(struct row, count), 0, 0, "count" },
	{ ST_COL_STRV, 0, offsetof(struct row, tags), offsetof(struct row, ntags), 2, "tags" },
	{ ST_COL_STAMPED, 0, offsetof(struct row, reason), offsetof(struct row, stamp), 0, "reason" },
};
static const struct st_table nested = {
	"test rows", cols, 6, sizeof(struct row), 1, 3,
};
/* the first four columns as flat runs of four elements */
static const struct st_table flat = {
	"test flat", cols, 4, sizeof(struct row), 0, 2,
};

static redisReply *
good_row(const char *name)
{
	return r_arr(6, r_str(name), r_str("abc"), r_str("1700000000000"), r_int(3),
	    r_arr(2, r_str("a"), r_str("b")), r_str("42:bounced"));
}

Test(store_rows, nested_rows_fill_every_kind)
{
	redisReply *r = r_arr(2, good_row("first-name"), good_row("x"));
	struct row *v;
	void *p = NULL;
	size_t n = 0;

	cr_assert_eq(st_rows_read(&nested, r, &p, &n), 0);
	v = p;
	cr_assert_eq(n, 2);
	cr_assert_str_eq(v[0].name, "firs");            /* maxlen 4 */
	cr_assert_str_eq(v[1].name, "x");
	cr_assert_str_eq(v[0].blob, "abc");
	cr_assert_eq(v[0].blob_len, 3);
	cr_assert_eq(v[0].when, 1700000000000LL);
	cr_assert_eq(v[0].count, 3);
	cr_assert_eq(v[0].ntags, 2);
	cr_assert_str_eq(v[0].tags[1], "b");
	cr_assert_str_eq(v[0].reason, "bounced");
	cr_assert_eq(v[0].stamp, 42);
	st_rows_free(&nested, p, n);
	freeReplyObject(r);
}

Test(store_rows, empty_list_is_null_and_zero)
{
	redisReply *r = r_arr(0);
	void *p = (void *)&p;
	size_t n = 7;

	cr_assert_eq(st_rows_read(&nested, r, &p, &n), 0);
	cr_assert_null(p);
	cr_assert_eq(n, 0);
	freeReplyObject(r);
}

Test(store_rows, optional_column_tolerates_nil_required_does_not)
{
	redisReply *ok = r_arr(4, r_str("a"), r_str("b"), r_nil(), r_int(1));
	redisReply *bad = r_arr(4, r_str("a"), r_str("b"), r_int(5), r_nil());
	struct row *v;
	void *p = NULL;
	size_t n = 0;

	cr_assert_eq(st_rows_read(&flat, ok, &p, &n), 0);
	v = p;
	cr_assert_eq(n, 1);
	cr_assert_eq(v[0].when, 0);
	st_rows_free(&flat, p, n);
	cr_assert_eq(st_rows_read(&flat, bad, &p, &n), STORE_ERR_PROTO);
	cr_assert_null(p);
	cr_assert_eq(n, 0);
	freeReplyObject(ok);
	freeReplyObject(bad);
}

Test(store_rows, malformed_lists_are_refused_and_freed)
{
	/* a failure in the second row frees the first row's strings (ASan: no leak) */
	redisReply *late = r_arr(2, good_row("a"),
	    r_arr(6, r_str("b"), r_str("c"), r_int(1), r_int(-1), r_arr(0), r_str("x")));
	redisReply *short_row = r_arr(1, r_arr(3, r_str("a"), r_str("b"), r_int(1)));
	redisReply *too_many = r_arr(4, good_row("a"), good_row("b"), good_row("c"), good_row("d"));
	redisReply *ragged = r_arr(5, r_str("a"), r_str("b"), r_int(1), r_int(2), r_str("e"));
	redisReply *tags = r_arr(1, r_arr(6, r_str("a"), r_str("b"), r_int(1), r_int(2),
	    r_arr(3, r_str("1"), r_str("2"), r_str("3")), r_str("x")));
	redisReply *tagtype = r_arr(1, r_arr(6, r_str("a"), r_str("b"), r_int(1), r_int(2),
	    r_arr(2, r_str("1"), r_int(2)), r_str("x")));
	redisReply *notarr = r_str("nope");
	void *p = NULL;
	size_t n = 0;

	cr_assert_eq(st_rows_read(&nested, late, &p, &n), STORE_ERR_PROTO);     /* INT < 0 */
	cr_assert_eq(st_rows_read(&nested, short_row, &p, &n), STORE_ERR_PROTO);
	cr_assert_eq(st_rows_read(&nested, too_many, &p, &n), STORE_ERR_PROTO); /* max 3 */
	cr_assert_eq(st_rows_read(&flat, ragged, &p, &n), STORE_ERR_PROTO);     /* 5 % 4 */
	cr_assert_eq(st_rows_read(&nested, tags, &p, &n), STORE_ERR_PROTO);     /* > 2 tags */
	cr_assert_eq(st_rows_read(&nested, tagtype, &p, &n), STORE_ERR_PROTO);
	cr_assert_eq(st_rows_read(&nested, notarr, &p, &n), STORE_ERR_PROTO);
	cr_assert_null(p);
	cr_assert_eq(n, 0);
	freeReplyObject(late);
	freeReplyObject(short_row);
	freeReplyObject(too_many);
	freeReplyObject(ragged);
	freeReplyObject(tags);
	freeReplyObject(tagtype);
	freeReplyObject(notarr);
}

Test(store_rows, int_column_range)
{
	redisReply *big = r_arr(4, r_str("a"), r_str("b"), r_int(1), r_int(2147483648LL));
	redisReply *top = r_arr(4, r_str("a"), r_str("b"), r_int(1), r_str("2147483647"));
	struct row *v;
	void *p = NULL;
	size_t n = 0;

	cr_assert_eq(st_rows_read(&flat, big, &p, &n), STORE_ERR_PROTO);
	cr_assert_eq(st_rows_read(&flat, top, &p, &n), 0);
	v = p;
	cr_assert_eq(v[0].count, 2147483647);
	st_rows_free(&flat, p, n);
	freeReplyObject(big);
	freeReplyObject(top);
}

Test(store_rows, stamped_without_a_stamp_keeps_the_text)
{
	redisReply *r = r_arr(1, r_arr(6, r_str("a"), r_str("b"), r_int(1), r_int(2), r_arr(0),
	    r_str("no stamp: here")));
	struct row *v;
	void *p = NULL;
	size_t n = 0;

	cr_assert_eq(st_rows_read(&nested, r, &p, &n), 0);
	v = p;
	cr_assert_str_eq(v[0].reason, "no stamp: here");
	cr_assert_eq(v[0].stamp, 0);
	cr_assert_null(v[0].tags);
	cr_assert_eq(v[0].ntags, 0);
	st_rows_free(&nested, p, n);
	freeReplyObject(r);
}

Test(store_rows, named_fields)
{
	redisReply *name = r_str("jo"), *again = r_str("jim"), *when = r_str("12");
	redisReply *junk = r_str("zz"), *badint = r_str("x1");
	struct row row = { 0 };

	cr_assert_eq(st_field_read(&nested, "name", 4, name, &row), 0);
	cr_assert_eq(st_field_read(&nested, "name", 4, again, &row), 0);   /* replaces, no leak */
	cr_assert_str_eq(row.name, "jim");
	cr_assert_eq(st_field_read(&nested, "whenever", 4, when, &row), 0); /* "when" by length */
	cr_assert_eq(row.when, 12);
	cr_assert_eq(st_field_read(&nested, "unknown", 7, junk, &row), 0);  /* ignored */
	cr_assert_eq(st_field_read(&nested, "count", 5, badint, &row), STORE_ERR_PROTO);
	cr_assert_eq(st_field_read(&nested, "nam", 3, junk, &row), 0);      /* no prefix match */
	cr_assert_str_eq(row.name, "jim");
	st_row_clear(&nested, &row);
	cr_assert_null(row.name);
	freeReplyObject(name);
	freeReplyObject(again);
	freeReplyObject(when);
	freeReplyObject(junk);
	freeReplyObject(badint);
}

/* --- the wire format ---------------------------------------------------------- */

/* st_format and st_addi write by hand what hiredis's formatter writes: byte for byte */
Test(store_rows, format_matches_hiredis)
{
	static const char big[] = "0123456789abcdefghijklmnopqrstuvwxyz\r\n\0binary";
	const int64_t nums[] = { 0, 7, -1, 10, 999, -1000, INT64_MAX, INT64_MIN };
	struct st_args a;
	struct st_cmd cmd;
	char *want = NULL;
	int wlen;

	cr_assert_eq(st_args_init(&a, 64), 0);
	st_adds(&a, "EVALSHA");
	st_adds(&a, "");
	st_add(&a, big, sizeof(big));
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		st_addi(&a, nums[i]);
	st_adds(&a, NULL);
	wlen = redisFormatCommandArgv(&want, a.n, a.v, a.l);
	cr_assert_gt(wlen, 0);
	cr_assert_eq(st_format(&a, &cmd), 0);
	cr_assert_eq(cmd.len, (size_t)wlen, "got %zu bytes, want %d", cmd.len, wlen);
	cr_assert_eq(memcmp(cmd.buf, want, cmd.len), 0, "got %.*s, want %s", (int)cmd.len,
	    cmd.buf, want);
	cr_assert_str_eq(a.num[6], "9223372036854775807");
	cr_assert_str_eq(a.num[7], "-9223372036854775808");
	cr_assert_eq(a.n, 0, "st_format resets the vector");
	redisFreeCommand(cmd.buf);
	redisFreeCommand(want);

	/* a vector that overflowed is refused, and reset */
	for (int i = 0; i < 65; i++)
		st_adds(&a, "x");
	cr_assert_eq(st_format(&a, &cmd), STORE_ERR_NOMEM);
	cr_assert_null(cmd.buf);
	cr_assert_eq(a.n, 0);
	st_args_release(&a);
}

/* st_key concatenates within the buffer, and refuses what does not fit */
Test(store_rows, key_concatenates_or_refuses)
{
	char buf[8];

	cr_assert_eq(st_key(buf, sizeof(buf), "ab", "cd", "ef"), 0);
	cr_assert_str_eq(buf, "abcdef");
	cr_assert_eq(st_key(buf, sizeof(buf), "ab", "cd", NULL), 0);
	cr_assert_str_eq(buf, "abcd");
	cr_assert_eq(st_key(buf, sizeof(buf), "abc", "defg", ""), 0);
	cr_assert_str_eq(buf, "abcdefg");
	cr_assert_eq(st_key(buf, sizeof(buf), "abcd", "efgh", NULL), -1);
}
