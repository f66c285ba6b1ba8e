/*
 * test_dsn.c - the RFC 3464 parser on realistic reports (Postfix-,
 * Exchange- and Exim-shaped), with LF and CRLF line ends, folded fields,
 * and on mail that is not a DSN.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/dsn.h"

static const char postfix_dsn[] =
	"Return-Path: <>\n"
	"Received: by mx.example.net (Postfix)\n"
	"\tid 4B1C2D3E4F; Mon,  6 Jan 2025 10:00:01 +0000 (UTC)\n"
	"Date: Mon,  6 Jan 2025 10:00:01 +0000 (UTC)\n"
	"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
	"Subject: Undelivered Mail Returned to Sender\n"
	"To: bounces+msg_01abc.0.0123456789@bounce.example.com\n"
	"Auto-Submitted: auto-replied\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/report; report-type=delivery-status;\n"
	"\tboundary=\"4B1C2D3E4F.1736157601/mx.example.net\"\n"
	"Content-Transfer-Encoding: 8bit\n"
	"Message-Id: <20250106100001.5A6B7C8D9E@mx.example.net>\n"
	"\n"
	"This is a MIME-encapsulated message.\n"
	"\n"
	"--4B1C2D3E4F.1736157601/mx.example.net\n"
	"Content-Description: Notification\n"
	"Content-Type: text/plain; charset=us-ascii\n"
	"\n"
	"This is the mail system at host mx.example.net.\n"
	"\n"
	"I'm sorry to have to inform you that your message could not\n"
	"be delivered to one or more recipients.\n"
	"\n"
	"Action: delivered\n"
	"\n"
	"--4B1C2D3E4F.1736157601/mx.example.net\n"
	"Content-Description: Delivery report\n"
	"Content-Type: message/delivery-status\n"
	"\n"
	"Reporting-MTA: dns; mx.example.net\n"
	"X-Postfix-Queue-ID: 4B1C2D3E4F\n"
	"X-Postfix-Sender: rfc822; bounces+msg_01abc.0.0123456789@bounce.example.com\n"
	"Arrival-Date: Mon,  6 Jan 2025 10:00:00 +0000 (UTC)\n"
	"\n"
	"Final-Recipient: rfc822; nobody@example.net\n"
	"Original-Recipient: rfc822;Nobody@Example.net\n"
	"Action: failed\n"
	"Status: 5.1.1\n"
	"Remote-MTA: dns; mail.example.net\n"
	"Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net>: Recipient address\n"
	"    rejected: User unknown in virtual mailbox table\n"
	"\n"
	"--4B1C2D3E4F.1736157601/mx.example.net\n"
	"Content-Description: Undelivered Message Headers\n"
	"Content-Type: text/rfc822-headers\n"
	"\n"
	"From: sender@example.com\n"
	"Subject: hello\n"
	"\n"
	"--4B1C2D3E4F.1736157601/mx.example.net--\n";

static const char exchange_dsn[] =
	"From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com>\n"
	"To: <bounces+msg_01xyz.2.abcdef0123@bounce.example.com>\n"
	"Subject: Undeliverable: Your receipt\n"
	"Content-Type: multipart/report; report-type=\"delivery-status\";\n"
	"\tboundary=\"9B095B5ADSN=_01D9A1B2C3D4E5F600000001EXCH01.contoso.\"\n"
	"X-MS-Exchange-Message-Is-Ndr:\n"
	"Content-Language: en-US\n"
	"MIME-Version: 1.0\n"
	"\n"
	"--9B095B5ADSN=_01D9A1B2C3D4E5F600000001EXCH01.contoso.\n"
	"Content-Type: multipart/alternative; differences=Content-Type;\n"
	"\tboundary=\"ALT=_01D9A1\"\n"
	"\n"
	"--ALT=_01D9A1\n"
	"Content-Type: text/plain; charset=\"us-ascii\"\n"
	"\n"
	"Delivery has failed to these recipients or groups:\n"
	"\n"
	"--ALT=_01D9A1--\n"
	"\n"
	"--9B095B5ADSN=_01D9A1B2C3D4E5F600000001EXCH01.contoso.\n"
	"Content-Type: message/delivery-status\n"
	"\n"
	"Reporting-MTA: dns;EXCH01.contoso.com\n"
	"Received-From-MTA: dns;EXCH02.contoso.com\n"
	"Arrival-Date: Mon, 6 Jan 2025 10:00:00 +0000\n"
	"\n"
	"Final-Recipient: rfc822;first@contoso.com\n"
	"Action: failed\n"
	"Status: 5.2.2\n"
	"Diagnostic-Code: smtp;554 5.2.2 mailbox full;\n"
	" STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded\n"
	"X-Display-Name: First\n"
	"\n"
	"Final-Recipient: rfc822;second@contoso.com\n"
	"Action: delayed\n"
	"Status: 4.4.7\n"
	"Will-Retry-Until: Tue, 7 Jan 2025 10:00:00 +0000\n"
	"\n"
	"--9B095B5ADSN=_01D9A1B2C3D4E5F600000001EXCH01.contoso.\n"
	"Content-Type: message/rfc822\n"
	"\n"
	"Subject: Your receipt\n"
	"\n"
	"--9B095B5ADSN=_01D9A1B2C3D4E5F600000001EXCH01.contoso.--\n";

/* lf2crlf - a malloc'd copy with every LF turned into CRLF. */
static char *lf2crlf(const char *s, size_t *len)
{
	size_t n = strlen(s), extra = 0, i, o = 0;
	char *d;

	for (i = 0; i < n; i++)
		extra += s[i] == '\n';
	d = malloc(n + extra + 1);
	cr_assert_not_null(d);
	for (i = 0; i < n; i++) {
		if (s[i] == '\n')
			d[o++] = '\r';
		d[o++] = s[i];
	}
	d[o] = '\0';
	*len = o;
	return d;
}

struct want_rcpt {
	const char *final, *original, *action, *status, *diag;
	int code;
};

static void check(const char *name, const char *msg, size_t len, const char *mta,
    const struct want_rcpt *w, size_t nw)
{
	struct dsn *d = calloc(1, sizeof(*d));
	char err[128] = "";
	int rc;
	size_t i;

	cr_assert_not_null(d);
	rc = dsn_parse(msg, len, d, err, sizeof(err));
	cr_assert_eq(rc, DSN_OK, "%s: got %d (%s), want DSN_OK", name, rc, err);
	cr_expect_str_eq(d->reporting_mta, mta, "%s: reporting_mta got %s, want %s", name,
	    d->reporting_mta, mta);
	cr_assert_eq(d->nrcpts, nw, "%s: nrcpts got %zu, want %zu", name, d->nrcpts, nw);
	for (i = 0; i < nw; i++) {
		const struct dsn_rcpt *r = &d->rcpts[i];

		cr_expect_str_eq(r->final_recipient, w[i].final, "%s[%zu]: final got %s, want %s",
		    name, i, r->final_recipient, w[i].final);
		cr_expect_str_eq(r->original_recipient, w[i].original, "%s[%zu]: original got %s, want %s",
		    name, i, r->original_recipient, w[i].original);
		cr_expect_str_eq(r->action, w[i].action, "%s[%zu]: action got %s, want %s",
		    name, i, r->action, w[i].action);
		cr_expect_str_eq(r->status, w[i].status, "%s[%zu]: status got %s, want %s",
		    name, i, r->status, w[i].status);
		cr_expect_str_eq(r->diagnostic, w[i].diag, "%s[%zu]: diagnostic got \"%s\", want \"%s\"",
		    name, i, r->diagnostic, w[i].diag);
		cr_expect_eq(r->diag_code, w[i].code, "%s[%zu]: code got %d, want %d",
		    name, i, r->diag_code, w[i].code);
	}
	free(d);
}

static const struct want_rcpt postfix_want[] = {
	{ "nobody@example.net", "Nobody@Example.net", "failed", "5.1.1",
	  "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
	  550 },
};

static const struct want_rcpt exchange_want[] = {
	{ "first@contoso.com", "", "failed", "5.2.2",
	  "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
	  554 },
	{ "second@contoso.com", "", "delayed", "4.4.7", "", 0 },
};

Test(dsn, postfix_lf_and_crlf)
{
	size_t n;
	char *crlf = lf2crlf(postfix_dsn, &n);

	check("postfix LF", postfix_dsn, strlen(postfix_dsn), "mx.example.net", postfix_want, 1);
	check("postfix CRLF", crlf, n, "mx.example.net", postfix_want, 1);
	free(crlf);
}

Test(dsn, exchange_lf_and_crlf)
{
	size_t n;
	char *crlf = lf2crlf(exchange_dsn, &n);

	check("exchange LF", exchange_dsn, strlen(exchange_dsn), "EXCH01.contoso.com", exchange_want, 2);
	check("exchange CRLF", crlf, n, "EXCH01.contoso.com", exchange_want, 2);
	free(crlf);
}

Test(dsn, exim_unquoted_boundary_no_trailing_delimiter)
{
	static const char m[] =
		"From: Mail Delivery System <Mailer-Daemon@exim.example.org>\n"
		"Content-Type: multipart/report; report-type=delivery-status; boundary=1736157601-eximdsn-42\n"
		"MIME-Version: 1.0\n"
		"\n"
		"--1736157601-eximdsn-42\n"
		"Content-type: text/plain; charset=us-ascii\n"
		"\n"
		"This message was created automatically by mail delivery software.\n"
		"\n"
		"--1736157601-eximdsn-42\n"
		"Content-type: message/delivery-status\n"
		"\n"
		"Reporting-MTA: dns; exim.example.org\n"
		"\n"
		"Action: failed\n"
		"Final-Recipient: rfc822;<gone@example.org>\n"
		"Status: 5.0.0 (permanent failure)\n"
		"Diagnostic-Code: X-Exim;\tmailbox\t  gone\n";
	static const struct want_rcpt w[] = {
		{ "gone@example.org", "", "failed", "5.0.0", "mailbox gone", 0 },
	};

	check("exim", m, strlen(m), "exim.example.org", w, 1);
}

Test(dsn, refused)
{
	static const struct { const char *name, *msg; int want; } cases[] = {
		{ "plain text", "From: a@b\nSubject: hi\n\nhello\n", DSN_ERR_NOT_REPORT },
		{ "multipart/mixed",
		  "Content-Type: multipart/mixed; boundary=x\n\n--x\n\nhi\n--x--\n", DSN_ERR_NOT_REPORT },
		{ "other report type",
		  "Content-Type: multipart/report; report-type=disposition-notification; boundary=x\n\n"
		  "--x\nContent-Type: message/disposition-notification\n\nDisposition: manual\n--x--\n",
		  DSN_ERR_NOT_REPORT },
		{ "no boundary",
		  "Content-Type: multipart/report; report-type=delivery-status\n\nbody\n", DSN_ERR_MALFORMED },
		{ "no status part",
		  "Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n"
		  "--x\nContent-Type: text/plain\n\nAction: failed\n--x--\n", DSN_ERR_MALFORMED },
		{ "no recipient group",
		  "Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n"
		  "--x\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; a\n--x--\n",
		  DSN_ERR_MALFORMED },
		{ "base64 status part",
		  "Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n"
		  "--x\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
		  "QWN0aW9uOiBmYWlsZWQK\n--x--\n", DSN_ERR_MALFORMED },
		{ "empty", "", DSN_ERR_NOT_REPORT },
	};
	struct dsn *d = calloc(1, sizeof(*d));
	size_t i;

	cr_assert_not_null(d);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = dsn_parse(cases[i].msg, strlen(cases[i].msg), d, NULL, 0);

		cr_expect_eq(rc, cases[i].want, "%s: got %d, want %d", cases[i].name, rc, cases[i].want);
	}
	cr_expect_eq(dsn_parse("x", DSN_MSG_MAX + 1, d, NULL, 0), DSN_ERR_TOO_BIG,
	    "too big: want DSN_ERR_TOO_BIG");
	free(d);
}

Test(dsn, status_syntax)
{
	static const struct { const char *in, *want; } cases[] = {
		{ "5.1.1", "5.1.1" }, { " 4.4.7 ", "4.4.7" }, { "5.1.10", "5.1.10" },
		{ "2.0.0 (ok)", "2.0.0" }, { "5.1234.1", "" }, { "3.1.1", "" }, { "5.1", "" },
		{ "5.1.1x", "" }, { "55.1.1", "" }, { "", "" },
	};
	char m[512];
	struct dsn *d = calloc(1, sizeof(*d));
	size_t i;

	cr_assert_not_null(d);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = snprintf(m, sizeof(m),
		    "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
		    "--b\nContent-Type: message/delivery-status\n\n"
		    "Reporting-MTA: dns; m\n\nFinal-Recipient: rfc822; a@b\nAction: FAILED\nStatus: %s\n--b--\n",
		    cases[i].in);
		int rc = dsn_parse(m, (size_t)n, d, NULL, 0);

		cr_assert_eq(rc, DSN_OK, "status %s: parse got %d", cases[i].in, rc);
		cr_expect_str_eq(d->rcpts[0].status, cases[i].want, "status \"%s\": got \"%s\", want \"%s\"",
		    cases[i].in, d->rcpts[0].status, cases[i].want);
		cr_expect_str_eq(d->rcpts[0].action, "failed", "action: got %s, want failed",
		    d->rcpts[0].action);
	}
	free(d);
}

Test(dsn, recipient_cap)
{
	size_t cap = 200000, o = 0, i;
	char *m = malloc(cap);
	struct dsn *d = calloc(1, sizeof(*d));
	int rc;

	cr_assert(m && d);
	o += (size_t)snprintf(m + o, cap - o,
	    "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
	    "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; m\n");
	for (i = 0; i < DSN_RCPT_MAX + 10; i++)
		o += (size_t)snprintf(m + o, cap - o, "\nFinal-Recipient: rfc822; r%zu@x\nAction: failed\n", i);
	rc = dsn_parse(m, o, d, NULL, 0);
	cr_assert_eq(rc, DSN_OK, "got %d", rc);
	cr_expect_eq(d->nrcpts, (size_t)DSN_RCPT_MAX, "nrcpts got %zu, want %d", d->nrcpts, DSN_RCPT_MAX);
	cr_expect_eq(d->nrcpts_total, (size_t)DSN_RCPT_MAX + 10, "total got %zu", d->nrcpts_total);
	free(m);
	free(d);
}
