/* test_auth.c - AUTH PLAIN / LOGIN encodings (pure, table-driven). */
#include <criterion/criterion.h>
#include <string.h>

#include "../../smtp/auth.h"

struct b64_case {
	const char *in;
	size_t len;
	const char *want;
};

Test(auth, base64_rfc4648_vectors)
{
	static const struct b64_case cases[] = {
		{ "", 0, "" },
		{ "f", 1, "Zg==" },
		{ "fo", 2, "Zm8=" },
		{ "foo", 3, "Zm9v" },
		{ "foob", 4, "Zm9vYg==" },
		{ "fooba", 5, "Zm9vYmE=" },
		{ "foobar", 6, "Zm9vYmFy" },
		{ "\xff\xfe\x00", 3, "//4A" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64];
		int rc = smtp_auth_base64(cases[i].in, cases[i].len, out, sizeof(out));
		cr_assert_eq(rc, 0, "case %zu: got rc %d, want 0", i, rc);
		cr_assert_str_eq(out, cases[i].want, "case %zu: got %s, want %s", i, out, cases[i].want);
	}
}

Test(auth, base64_space)
{
	char out[5];
	cr_assert_eq(smtp_auth_base64("foo", 3, out, 5), 0, "got error, want 0 (exact fit)");
	cr_assert_eq(smtp_auth_base64("foo", 3, out, 4), SMTP_AUTH_ERR_SPACE, "got success, want ERR_SPACE");
	cr_assert_eq(smtp_auth_base64("fooba", 5, out, 8), SMTP_AUTH_ERR_SPACE, "got success, want ERR_SPACE");
}

Test(auth, plain)
{
	static const struct { const char *u, *p, *want; } cases[] = {
		{ "u", "p", "AHUAcA==" },                      /* swaks: AUTH PLAIN AHUAcA== */
		{ "tim", "tanstaaftanstaaf", "AHRpbQB0YW5zdGFhZnRhbnN0YWFm" }, /* RFC 4954 example */
		{ "", "", "AAA=" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[128];
		int rc = smtp_auth_plain(cases[i].u, cases[i].p, out, sizeof(out));
		cr_assert_eq(rc, 0, "case %zu: got rc %d, want 0", i, rc);
		cr_assert_str_eq(out, cases[i].want, "case %zu: got %s, want %s", i, out, cases[i].want);
	}
}

Test(auth, plain_limits)
{
	char big[SMTP_AUTH_FIELD_MAX + 2];
	char out[1024];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(smtp_auth_plain(big, "p", out, sizeof(out)), SMTP_AUTH_ERR_INPUT, "got accept, want ERR_INPUT for long user");
	cr_assert_eq(smtp_auth_plain("u", big, out, sizeof(out)), SMTP_AUTH_ERR_INPUT, "got accept, want ERR_INPUT for long pass");
	big[SMTP_AUTH_FIELD_MAX] = '\0';
	cr_assert_eq(smtp_auth_plain(big, big, out, sizeof(out)), 0, "got error, want 0 at the cap");
	cr_assert_eq(smtp_auth_plain("user", "pass", out, 8), SMTP_AUTH_ERR_SPACE, "got accept, want ERR_SPACE");
}

Test(auth, login)
{
	static const struct { const char *in, *want; } cases[] = {
		{ "u", "dQ==" },
		{ "p", "cA==" },
		{ "user@example.com", "dXNlckBleGFtcGxlLmNvbQ==" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64];
		int rc = smtp_auth_login(cases[i].in, out, sizeof(out));
		cr_assert_eq(rc, 0, "case %zu: got rc %d, want 0", i, rc);
		cr_assert_str_eq(out, cases[i].want, "case %zu: got %s, want %s", i, out, cases[i].want);
	}
}

Test(auth, wipe)
{
	char buf[8] = "secret";
	smtp_auth_wipe(buf, sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0, "byte %zu: got %d, want 0", i, buf[i]);
}
