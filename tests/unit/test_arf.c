/*
 * test_arf.c - server/dsn.c's RFC 5965 feedback report parser (dsn_arf_parse)
 * on reports shaped like the big mailbox providers' feedback loops (an
 * RFC 5965 example, a Yahoo-style one with the original headers only),
 * LF and CRLF, folded fields; on mail that is not a report; and the
 * policy helpers: which Feedback-Type is a complaint, which DSN Status is
 * a hard or a soft bounce and which suppresses the address.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/dsn.h"

/* RFC 5965 appendix B.2 (a full report), the VERP address as the reported rcpt's return path */
static const char rfc5965_report[] =
	"From: <abusedesk@example.com>\n"
	"Date: Thu, 8 Mar 2005 17:40:36 EDT\n"
	"Subject: FW: Earn money\n"
	"To: <bounces+msg_01abc.0.0123456789@bounce.example.com>\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/report; report-type=feedback-report;\n"
	"     boundary=\"part1_13d.2e68ed54_boundary\"\n"
	"\n"
	"--part1_13d.2e68ed54_boundary\n"
	"Content-Type: text/plain; charset=\"US-ASCII\"\n"
	"Content-Transfer-Encoding: 7bit\n"
	"\n"
	"This is an email abuse report for an email message received from IP\n"
	"192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\n"
	"Feedback-Type: not-this-one\n"
	"\n"
	"--part1_13d.2e68ed54_boundary\n"
	"Content-Type: message/feedback-report\n"
	"\n"
	"Feedback-Type: Abuse\n"
	"User-Agent: SomeGenerator/1.0\n"
	"Version: 1\n"
	"Original-Mail-From: <bounces+msg_01abc.0.0123456789@bounce.example.com>\n"
	"Original-Rcpt-To: <User@example.net>\n"
	"Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\n"
	"Reporting-MTA: dns; mail.example.com\n"
	"Source-IP: 192.0.2.1\n"
	"Authentication-Results: mail.example.com;\n"
	"               spf=fail smtp.mail=somespammer@example.com\n"
	"Reported-Domain: example.com\n"
	"\n"
	"--part1_13d.2e68ed54_boundary\n"
	"Content-Type: message/rfc822\n"
	"Content-Disposition: inline\n"
	"\n"
	"From: <sender@example.com>\n"
	"Received: from mailserver.example.net\n"
	"     (mailserver.example.net [192.0.2.1])\n"
	"     by example.com with ESMTP id M63d4137594e46;\n"
	"     Thu, 08 Mar 2005 14:00:00 -0400\n"
	"To: Some One <user@example.net>, other@example.net\n"
	"Subject: Earn money\n"
	"MIME-Version: 1.0\n"
	"Content-type: text/plain\n"
	"Message-ID: <8787KJKJ3K4J3K4J3K4J3.mail@example.net>\n"
	"Date: Thu, 02 Sep 2004 12:31:03 -0500\n"
	"\n"
	"Spam Spam Spam\n"
	"--part1_13d.2e68ed54_boundary--\n";

/* headers only (text/rfc822-headers), no Original-Rcpt-To, unquoted boundary */
static const char headers_only_report[] =
	"Content-Type: multipart/report; report-type=\"feedback-report\"; boundary=b0\n"
	"\n"
	"--b0\n"
	"Content-Type: text/plain\n"
	"\n"
	"A complaint.\n"
	"--b0\n"
	"Content-Type: message/feedback-report\n"
	"Content-Transfer-Encoding: 7bit\n"
	"\n"
	"Feedback-Type: fraud\n"
	"User-Agent: Yahoo!-Mail-Feedback/2.0\n"
	"Version: 1\n"
	"--b0\n"
	"Content-Type: text/rfc822-headers\n"
	"\n"
	"To: victim@example.org\n"
	"Message-Id: <abc@txmail>\n"
	"--b0--\n";

static char *
lf2crlf(const char *s, size_t *n)
{
	size_t len = strlen(s), k = 0;
	char *o = malloc(2 * len + 1);

	cr_assert_not_null(o);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\n')
			o[k++] = '\r';
		o[k++] = s[i];
	}
	o[k] = '\0';
	*n = k;
	return o;
}

Test(arf, rfc5965_lf_and_crlf)
{
	struct dsn_arf a;
	size_t n;
	char *crlf = lf2crlf(rfc5965_report, &n);
	const char *msgs[2] = { rfc5965_report, crlf };
	size_t lens[2] = { strlen(rfc5965_report), n };

	for (int i = 0; i < 2; i++) {
		char err[64] = "";
		int rc = dsn_arf_parse(msgs[i], lens[i], &a, err, sizeof(err));

		cr_assert_eq(rc, DSN_OK, "%s: got %d (%s), want DSN_OK", i ? "CRLF" : "LF", rc, err);
		cr_expect_str_eq(a.feedback_type, "abuse", "feedback_type: got %s, want abuse", a.feedback_type);
		cr_expect_str_eq(a.user_agent, "SomeGenerator/1.0", "user_agent: got %s", a.user_agent);
		cr_expect_str_eq(a.original_rcpt_to, "User@example.net", "original_rcpt_to: got %s",
		    a.original_rcpt_to);
		cr_expect_str_eq(a.original_mail_from, "bounces+msg_01abc.0.0123456789@bounce.example.com",
		    "original_mail_from: got %s", a.original_mail_from);
		cr_expect_str_eq(a.source_ip, "192.0.2.1", "source_ip: got %s", a.source_ip);
		cr_expect_str_eq(a.reported_domain, "example.com", "reported_domain: got %s", a.reported_domain);
		cr_expect_str_eq(a.arrival_date, "Thu, 8 Mar 2005 14:00:00 EDT", "arrival_date: got %s",
		    a.arrival_date);
		cr_expect_eq(a.has_original, 1, "has_original: got %d, want 1", a.has_original);
		cr_expect_str_eq(a.original_to, "user@example.net", "original_to: got %s", a.original_to);
		cr_expect_str_eq(a.original_message_id, "<8787KJKJ3K4J3K4J3K4J3.mail@example.net>",
		    "original_message_id: got %s", a.original_message_id);
	}
	free(crlf);
}

Test(arf, headers_only)
{
	struct dsn_arf a;
	int rc = dsn_arf_parse(headers_only_report, strlen(headers_only_report), &a, NULL, 0);

	cr_assert_eq(rc, DSN_OK, "got %d, want DSN_OK", rc);
	cr_expect_str_eq(a.feedback_type, "fraud", "feedback_type: got %s, want fraud", a.feedback_type);
	cr_expect_str_eq(a.original_rcpt_to, "", "original_rcpt_to: got %s, want \"\"", a.original_rcpt_to);
	cr_expect_str_eq(a.original_to, "victim@example.org", "original_to: got %s", a.original_to);
	cr_expect_str_eq(a.original_message_id, "<abc@txmail>", "message id: got %s", a.original_message_id);
}

Test(arf, refused)
{
	static const struct { const char *name, *msg; int want; } cases[] = {
		{ "plain text", "From: a@b\nSubject: hi\n\nFeedback-Type: abuse\n", DSN_ERR_NOT_REPORT },
		{ "a DSN",
		  "Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n"
		  "--x\nContent-Type: message/delivery-status\n\nAction: failed\n--x--\n", DSN_ERR_NOT_REPORT },
		{ "no boundary",
		  "Content-Type: multipart/report; report-type=feedback-report\n\nbody\n", DSN_ERR_MALFORMED },
		{ "no feedback part",
		  "Content-Type: multipart/report; report-type=feedback-report; boundary=x\n\n"
		  "--x\nContent-Type: text/plain\n\nFeedback-Type: abuse\n--x--\n", DSN_ERR_MALFORMED },
		{ "no Feedback-Type",
		  "Content-Type: multipart/report; report-type=feedback-report; boundary=x\n\n"
		  "--x\nContent-Type: message/feedback-report\n\nUser-Agent: a/1\nVersion: 1\n--x--\n",
		  DSN_ERR_MALFORMED },
		{ "base64 feedback part",
		  "Content-Type: multipart/report; report-type=feedback-report; boundary=x\n\n"
		  "--x\nContent-Type: message/feedback-report\nContent-Transfer-Encoding: base64\n\n"
		  "RmVlZGJhY2stVHlwZTogYWJ1c2UK\n--x--\n", DSN_ERR_MALFORMED },
		{ "empty", "", DSN_ERR_NOT_REPORT },
	};
	struct dsn_arf a;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = dsn_arf_parse(cases[i].msg, strlen(cases[i].msg), &a, NULL, 0);

		cr_expect_eq(rc, cases[i].want, "%s: got %d, want %d", cases[i].name, rc, cases[i].want);
	}
	cr_expect_eq(dsn_arf_parse("x", DSN_MSG_MAX + 1, &a, NULL, 0), DSN_ERR_TOO_BIG,
	    "too big: want DSN_ERR_TOO_BIG");
	cr_expect_eq(dsn_arf_parse(NULL, 0, &a, NULL, 0), DSN_ERR_NOT_REPORT, "NULL: want NOT_REPORT");
}

Test(arf, truncated_fields_stay_terminated)
{
	static char msg[8192];
	struct dsn_arf a;
	char longua[1000];
	int rc;

	memset(longua, 'u', sizeof(longua) - 1);
	longua[sizeof(longua) - 1] = '\0';
	snprintf(msg, sizeof(msg),
	    "Content-Type: multipart/report; report-type=feedback-report; boundary=x\n\n"
	    "--x\nContent-Type: message/feedback-report\n\nFeedback-Type: abuseabuseabuseabuseabuseabuseabuse\n"
	    "User-Agent: %s\x01\nOriginal-Rcpt-To: no-at-sign\n--x--\n", longua);
	rc = dsn_arf_parse(msg, strlen(msg), &a, NULL, 0);
	cr_assert_eq(rc, DSN_OK, "got %d, want DSN_OK", rc);
	cr_expect_eq(strlen(a.feedback_type), sizeof(a.feedback_type) - 1, "feedback_type cut at its cap");
	cr_expect_eq(strlen(a.user_agent), sizeof(a.user_agent) - 1, "user_agent cut at its cap");
	cr_expect_str_eq(a.original_rcpt_to, "", "not an address: got %s, want \"\"", a.original_rcpt_to);
	cr_expect_eq(dsn_arf_is_complaint(a.feedback_type), 0, "a cut type is no complaint");
}

Test(arf, complaint_types)
{
	static const struct { const char *type; int want; } cases[] = {
		{ "abuse", 1 }, { "fraud", 1 }, { "virus", 1 }, { "other", 1 },
		{ "not-spam", 0 }, { "auth-failure", 0 }, { "", 0 }, { "Abuse", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(dsn_arf_is_complaint(cases[i].type), cases[i].want,
		    "is_complaint(%s): got %d, want %d", cases[i].type,
		    dsn_arf_is_complaint(cases[i].type), cases[i].want);
	cr_expect_eq(dsn_arf_is_complaint(NULL), 0, "is_complaint(NULL): want 0");
}

Test(bounce_policy, type_and_suppression)
{
	static const struct { const char *status, *type; int suppress; } cases[] = {
		{ "5.1.1", "hard", 1 },  /* no such user */
		{ "5.1.10", "hard", 1 },
		{ "5.4.1", "hard", 1 },
		{ "5.7.1", "hard", 0 },  /* policy: never suppressed */
		{ "5.7.26", "hard", 0 },
		{ "5.2.2", "soft", 0 },  /* mailbox full */
		{ "5.2.1", "hard", 1 },
		{ "4.2.2", "soft", 0 },
		{ "4.4.7", "soft", 0 },
		{ "", "hard", 0 },       /* a failure without a Status: hard, but nothing to judge the address by */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *t = dsn_bounce_type(cases[i].status);
		int s = dsn_bounce_suppresses(cases[i].status);

		cr_expect_str_eq(t, cases[i].type, "type(%s): got %s, want %s", cases[i].status, t,
		    cases[i].type);
		cr_expect_eq(s, cases[i].suppress, "suppresses(%s): got %d, want %d", cases[i].status, s,
		    cases[i].suppress);
	}
	cr_expect_str_eq(dsn_bounce_type(NULL), "hard", "type(NULL): want hard");
	cr_expect_eq(dsn_bounce_suppresses(NULL), 0, "suppresses(NULL): want 0");
}
