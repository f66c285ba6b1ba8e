/*
 * fuzz_dsn.c - libFuzzer target for dsn_parse (server/dsn.c), the parser
 * of delivery status notifications that arrive from the internet.
 *
 * The input is a whole message. Checked: the result is DSN_OK or a
 * DSN_ERR_*; on DSN_OK at least one recipient is stored, nrcpts is within
 * DSN_RCPT_MAX and at most nrcpts_total, and every string field is
 * NUL-terminated within its array; action is lower case; status is ""
 * or digit.digits.digits; diag_code is 0 or 200..599 with a matching
 * leading digit; on failure the err text is NUL-terminated. The parse is run
 * into a struct pre-filled with junk so any field it forgets to set shows.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/dsn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_str(const char *s, size_t cap)
{
	if (memchr(s, '\0', cap) == NULL)
		abort();
}

static void
check_status(const char *s)
{
	int dots = 0, digits = 0;

	if (s[0] == '\0')
		return;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '.') {
			if (digits == 0)
				abort();
			dots++;
			digits = 0;
		} else if (*p >= '0' && *p <= '9') {
			digits++;
		} else {
			abort();
		}
	}
	if (dots != 2 || digits == 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dsn d;
	char err[128];
	int rc;

	memset(&d, 0xA5, sizeof(d));
	memset(err, 'x', sizeof(err));
	rc = dsn_parse((const char *)data, size, &d, err, sizeof(err));
	if (rc != DSN_OK) {
		check_str(err, sizeof(err));   /* the reason is written on failure only */
		if (rc != DSN_ERR_NOT_REPORT && rc != DSN_ERR_MALFORMED && rc != DSN_ERR_TOO_BIG)
			abort();
		return 0;
	}
	if (d.nrcpts == 0 || d.nrcpts > DSN_RCPT_MAX || d.nrcpts > d.nrcpts_total)
		abort();
	check_str(d.reporting_mta, sizeof(d.reporting_mta));
	for (size_t i = 0; i < d.nrcpts; i++) {
		const struct dsn_rcpt *r = &d.rcpts[i];

		check_str(r->final_recipient, sizeof(r->final_recipient));
		check_str(r->original_recipient, sizeof(r->original_recipient));
		check_str(r->action, sizeof(r->action));
		check_str(r->status, sizeof(r->status));
		check_str(r->diagnostic, sizeof(r->diagnostic));
		for (const char *p = r->action; *p != '\0'; p++)
			if (*p >= 'A' && *p <= 'Z')
				abort();
		check_status(r->status);
		if (r->diag_code != 0 && (r->diag_code < 200 || r->diag_code > 599))
			abort();
	}
	return 0;
}
