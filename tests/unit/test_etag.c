/* test_etag.c - etag.c: the tag over a body, and If-None-Match parsing. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../server/etag.h"

Test(etag, make)
{
	char a[ETAG_LEN + 1], b[ETAG_LEN + 1], small[ETAG_LEN];

	cr_assert_eq(etag_make("{\"id\":1}", 8, a, sizeof(a)), 0);
	cr_assert_eq(strlen(a), ETAG_LEN, "got %zu, want %d", strlen(a), ETAG_LEN);
	cr_assert(a[0] == '"' && a[ETAG_LEN - 1] == '"', "got %s, want a quoted tag", a);
	/* SHA-256("") starts e3b0c44298fc1c149afbf4c8996fb924 */
	cr_assert_eq(etag_make("", 0, b, sizeof(b)), 0);
	cr_assert_str_eq(b, "\"e3b0c44298fc1c149afbf4c8996fb924\"");
	cr_assert_eq(etag_make("{\"id\":2}", 8, b, sizeof(b)), 0);
	cr_assert_str_neq(a, b, "two bodies got the same tag %s", a);
	cr_assert_eq(etag_make("{\"id\":1}", 8, b, sizeof(b)), 0);
	cr_assert_str_eq(a, b);
	cr_assert_eq(etag_make("x", 1, small, sizeof(small)), -1);
	cr_assert_eq(etag_make(NULL, 1, b, sizeof(b)), -1);
}

Test(etag, none_match)
{
	static const char tag[] = "\"e3b0c44298fc1c149afbf4c8996fb924\"";
	static const struct {
		const char *inm;
		int want;
	} cases[] = {
		{ NULL, 0 },
		{ "", 0 },
		{ "*", 1 },
		{ "  * ", 1 },
		{ "*, \"x\"", 0 },
		{ "\"e3b0c44298fc1c149afbf4c8996fb924\"", 1 },
		{ "W/\"e3b0c44298fc1c149afbf4c8996fb924\"", 1 },
		{ "\"a\", \"e3b0c44298fc1c149afbf4c8996fb924\"", 1 },
		{ "\"a\",W/\"e3b0c44298fc1c149afbf4c8996fb924\" , \"b\"", 1 },
		{ ",,\"e3b0c44298fc1c149afbf4c8996fb924\",", 1 },
		{ "\"e3b0c44298fc1c149afbf4c8996fb92\"", 0 },
		{ "e3b0c44298fc1c149afbf4c8996fb924", 0 },
		{ "\"e3b0c44298fc1c149afbf4c8996fb924", 0 },
		{ "\"a\" \"e3b0c44298fc1c149afbf4c8996fb924\"", 0 },
		{ "\"E3B0C44298FC1C149AFBF4C8996FB924\"", 0 },
		{ "\"e3b0c44298fc1c149afbf4c8996fb924\" junk", 0 },
		{ "\"e3b0c44298fc1c149afbf4c8996fb924\", junk", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = etag_none_match(cases[i].inm, tag);

		cr_assert_eq(got, cases[i].want, "If-None-Match %s: got %d, want %d",
		    cases[i].inm != NULL ? cases[i].inm : "(absent)", got, cases[i].want);
	}
}

Test(etag, none_match_too_long)
{
	static char big[ETAG_HEADER_MAX + 64];

	memset(big, ' ', sizeof(big) - 1);
	memcpy(big + sizeof(big) - 40, "\"e3b0c44298fc1c149afbf4c8996fb924\"", 34);
	cr_assert_eq(etag_none_match(big, "\"e3b0c44298fc1c149afbf4c8996fb924\""), 0);
}
