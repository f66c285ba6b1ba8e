/*
 * fuzz_dsn.c - libFuzzer target for dsn_parse and dsn_arf_parse
 * (server/dsn.c), the parsers of delivery status notifications and of
 * feedback reports (spam complaints) that arrive from the internet.
 *
 * The input is a whole message. Checked: the result is DSN_OK or a
 * DSN_ERR_*; on DSN_OK at least one recipient is stored, nrcpts is within
 * DSN_RCPT_MAX and at most nrcpts_total, and every string field is
 * NUL-terminated within its array; action is lower case; status is ""
 * or digit.digits.digits; diag_code is 0 or 200..599 with a matching
 * leading digit; on failure the err text is NUL-terminated. The parse is run
 * into a struct pre-filled with junk so any field it forgets to set shows.
 * The same input goes to dsn_arf_parse: DSN_OK or a DSN_ERR_*; on DSN_OK
 * a non-empty lower-case feedback_type, every string NUL-terminated, every
 * address "" or holding an '@', has_original 0 or 1; and never DSN_OK
 * from both parsers (their report-types differ).
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

static void
check_addr(const char *s, size_t cap)
{
	check_str(s, cap);
	if (s[0] != '\0' && strchr(s, '@') == NULL)
		abort();
}

/* check_arf - the feedback report parse of the input; its result */
static int
check_arf(const uint8_t *data, size_t size)
{
	static struct dsn_arf a;
	char err[128];
	int rc;

	memset(&a, 0xA5, sizeof(a));
	memset(err, 'x', sizeof(err));
	rc = dsn_arf_parse((const char *)data, size, &a, err, sizeof(err));
	if (rc != DSN_OK) {
		check_str(err, sizeof(err));
		if (rc != DSN_ERR_NOT_REPORT && rc != DSN_ERR_MALFORMED && rc != DSN_ERR_TOO_BIG)
			abort();
		return rc;
	}
	check_str(a.feedback_type, sizeof(a.feedback_type));
	if (a.feedback_type[0] == '\0')
		abort();
	for (const char *p = a.feedback_type; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			abort();
	check_str(a.user_agent, sizeof(a.user_agent));
	check_addr(a.original_mail_from, sizeof(a.original_mail_from));
	check_addr(a.original_rcpt_to, sizeof(a.original_rcpt_to));
	check_str(a.source_ip, sizeof(a.source_ip));
	check_str(a.reported_domain, sizeof(a.reported_domain));
	check_str(a.arrival_date, sizeof(a.arrival_date));
	check_addr(a.original_to, sizeof(a.original_to));
	check_str(a.original_message_id, sizeof(a.original_message_id));
	if (a.has_original != 0 && a.has_original != 1)
		abort();
	(void)dsn_arf_is_complaint(a.feedback_type);
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dsn d;
	char err[128];
	int rc, arf;

	arf = check_arf(data, size);

	memset(&d, 0xA5, sizeof(d));
	memset(err, 'x', sizeof(err));
	rc = dsn_parse((const char *)data, size, &d, err, sizeof(err));
	if (rc != DSN_OK) {
		check_str(err, sizeof(err));   /* the reason is written on failure only */
		if (rc != DSN_ERR_NOT_REPORT && rc != DSN_ERR_MALFORMED && rc != DSN_ERR_TOO_BIG)
			abort();
		return 0;
	}
	if (arf == DSN_OK)
		abort();   /* one message cannot be both reports */
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
		(void)dsn_bounce_type(r->status);
		(void)dsn_bounce_suppresses(r->status);
		if (r->diag_code != 0 && (r->diag_code < 200 || r->diag_code > 599))
			abort();
	}
	return 0;
}
