/*
 * test_dkim_keys.c - TXMAIL_DKIM_KEYS parsing, loading and the From-domain
 * match (server/dkim_keys.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../server/dkim_keys.h"
#include "../../smtp/dkim.h"

Test(dkim_keys, parse_table)
{
	static const struct {
		const char *spec;
		int want_n;
		const char *d0, *s0, *p0, *err;
	} cases[] = {
		{ "example.com:s1:/k/a.pem", 1, "example.com", "s1", "/k/a.pem", NULL },
		{ " a.example : s1 : /k/a.pem , b.example:s2:/k/b:c.pem", 2, "a.example", "s1", "/k/a.pem", NULL },
		{ "", 0, NULL, NULL, NULL, NULL },
		{ "example.com:s1", -1, NULL, NULL, NULL, "want domain:selector" },
		{ "example.com::/k", -1, NULL, NULL, NULL, "empty" },
		{ "a.example:s:/k,", -1, NULL, NULL, NULL, "trailing comma" },
		{ "a.example:s:/k,,b:s:/k", -1, NULL, NULL, NULL, "want domain:selector" },
		{ "A.example:s:/k,a.EXAMPLE:t:/j", -1, NULL, NULL, NULL, "twice" },
	};
	struct dkim_keys_entry e[4];
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n;

		err[0] = '\0';
		n = dkim_keys_parse(cases[i].spec, e, 4, err, sizeof(err));
		cr_expect_eq(n, cases[i].want_n, "%s: got %d, want %d (%s)", cases[i].spec, n,
		    cases[i].want_n, err);
		if (n > 0) {
			cr_expect_str_eq(e[0].domain, cases[i].d0, "got domain %s", e[0].domain);
			cr_expect_str_eq(e[0].selector, cases[i].s0, "got selector %s", e[0].selector);
			cr_expect_str_eq(e[0].path, cases[i].p0, "got path %s", e[0].path);
		}
		if (cases[i].err != NULL)
			cr_expect(strstr(err, cases[i].err) != NULL, "%s: got error \"%s\", want \"%s\"",
			    cases[i].spec, err, cases[i].err);
	}
}

Test(dkim_keys, load_find_sign)
{
	char path[] = "/tmp/test_dkim_keys_XXXXXX", spec[256], err[256], *pem, *txt;
	struct dkim_keys *k = NULL;
	char *msg = strdup("From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n");
	size_t len = strlen(msg), orig = len;
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	cr_assert_eq(dkim_keygen(DKIM_KEY_ED25519, &pem, &txt), 0);
	cr_assert_eq(write(fd, pem, strlen(pem)), (ssize_t)strlen(pem));
	close(fd);

	cr_expect_eq(dkim_keys_load(NULL, &k, err, sizeof(err)), 0);
	cr_expect_null(k);
	cr_expect_eq(dkim_keys_load("example.com:s:/nonexistent/key.pem", &k, err, sizeof(err)), -1);
	cr_expect(strstr(err, "cannot read /nonexistent/key.pem") != NULL, "got error \"%s\"", err);

	snprintf(spec, sizeof(spec), "Example.COM:s1:%s", path);
	cr_assert_eq(dkim_keys_load(spec, &k, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(dkim_keys_count(k), 1);
	cr_expect_not_null(dkim_keys_find(k, "x@EXAMPLE.com"), "case-insensitive match");
	cr_expect_null(dkim_keys_find(k, "x@sub.example.com"), "a subdomain must not match");
	cr_expect_null(dkim_keys_find(k, "x@example.org"));
	cr_expect_null(dkim_keys_find(k, "no-at-sign"));

	/* another domain: untouched */
	cr_assert_eq(dkim_keys_sign_message(k, "a@other.example", 1, &msg, &len), 0);
	cr_expect_eq(len, orig, "got %zu bytes, want the message unchanged (%zu)", len, orig);
	/* the key's domain: a DKIM-Signature prepended */
	cr_assert_eq(dkim_keys_sign_message(k, "a@example.com", 1, &msg, &len), 0);
	cr_expect(len > orig && strncmp(msg, "DKIM-Signature: v=1; a=ed25519-sha256;", 38) == 0,
	    "got %.60s", msg);
	cr_expect_str_eq(msg + len - orig, "From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n");
	cr_expect_eq(strlen(msg), len);

	dkim_keys_free(k);
	unlink(path);
	free(msg);
	free(pem);
	free(txt);
}
