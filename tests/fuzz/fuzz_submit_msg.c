/*
 * fuzz_submit_msg.c - libFuzzer target for server/submit_msg.c, which
 * reads the header section of a message an SMTP client submitted.
 *
 * The first byte picks the options (a size cap or none, a sender and a
 * Message-ID given or not); the rest is the message. Checked: the result
 * is 0 or -1 with a one-line reply "ddd x.y.z ..." (or -2, out of memory);
 * on 0, the message fits the cap, is NUL-terminated, its body (from
 * body_off, after an empty line) is a suffix of the input and holds the
 * input after its first empty line; its header section is lines ending in
 * CRLF with no bare CR or LF, each a continuation or a field "name:" with
 * a printable-ASCII name, none of them Bcc, Resent-Bcc or X-Txmail-*, and
 * exactly one Message-ID / Date when one was added; From and Subject are
 * valid UTF-8 without NUL; metadata_json is a JSON object and tags_json an
 * array of at most 20 strings, both at most 4096 octets; ttl and the
 * idempotency key within their rules; each To/Cc address is its own kind
 * and the reply of subm_msg_rcpt_kind is always "to", "cc" or "bcc".
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../server/mailparse.h"
#include "../../server/submit_msg.h"
#include "../../server/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
ieq(const char *s, size_t n, const char *lower)
{
	size_t k = strlen(lower);

	if (n < k)
		return 0;
	for (size_t i = 0; i < k; i++) {
		char c = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] + 32) : s[i];

		if (c != lower[i])
			return 0;
	}
	return 1;
}

/* check_utf8 - s is valid UTF-8 without NUL (mailparse_utf8 leaves such text as it is). */
static void
check_utf8(const char *s)
{
	size_t n = strlen(s), on = 0;
	char *c = mailparse_utf8(s, n, &on);

	if (c == NULL)
		return;
	if (on != n || memcmp(c, s, n) != 0)
		abort();
	free(c);
}

/* check_header - the output header section h[0..n) (each line with its CRLF). */
static void
check_header(const char *h, size_t n, const struct subm_msg *m)
{
	size_t p = 0, mids = 0, dates = 0;

	while (p < n) {
		const char *lf = memchr(h + p, '\n', n - p);
		size_t e, i;

		if (lf == NULL)
			abort();
		e = (size_t)(lf - h);
		if (e == p || h[e - 1] != '\r' || e - 1 == p)
			abort();                    /* no CRLF, or an empty line in the header */
		if (memchr(h + p, '\r', e - 1 - p) != NULL)
			abort();
		if (h[p] == ' ' || h[p] == '\t') {
			if (p == 0)
				abort();
			p = e + 1;
			continue;
		}
		for (i = p; i < e - 1 && h[i] != ':' && h[i] != ' ' && h[i] != '\t'; i++)
			if ((unsigned char)h[i] <= ' ' || (unsigned char)h[i] > '~')
				abort();
		if (i == p)
			abort();
		{
			size_t nl = i - p;

			while (i < e - 1 && (h[i] == ' ' || h[i] == '\t'))
				i++;
			if (i >= e - 1 || h[i] != ':')
				abort();
			if ((nl == 3 && ieq(h + p, nl, "bcc")) || (nl == 10 && ieq(h + p, nl, "resent-bcc")) ||
			    ieq(h + p, nl, "x-txmail-"))
				abort();
			if (nl == 10 && ieq(h + p, nl, "message-id"))
				mids++;
			if (nl == 4 && ieq(h + p, nl, "date"))
				dates++;
		}
		p = e + 1;
	}
	if ((m->added_message_id && mids != 1) || (m->added_date && dates != 1) || dates == 0)
		abort();
}

static void
check_json(const char *s, int object)
{
	cJSON *j;

	if (s == NULL || strlen(s) > 4096)
		abort();
	j = cJSON_Parse(s);
	if (j == NULL)
		return;   /* out of memory */
	if (object ? !cJSON_IsObject(j) : !cJSON_IsArray(j))
		abort();
	if (!object) {
		const cJSON *it;

		if (cJSON_GetArraySize(j) > 20)
			abort();
		cJSON_ArrayForEach(it, j)
			if (!cJSON_IsString(it) || it->valuestring[0] == '\0')
				abort();
	}
	cJSON_Delete(j);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t caps[4] = { 0, 64, 300, 4096 };
	struct subm_msg_opts o = { 0 };
	struct subm_msg m;
	char reply[512];
	const char *raw;
	size_t len, blen, after = 0;
	int rc;

	if (size < 1)
		return 0;
	o.max_len = caps[data[0] & 3];
	o.mail_from = (data[0] & 4) ? "sender@example.com" : NULL;
	o.message_id = (data[0] & 8) ? "<msg_fuzz@example.com>" : NULL;
	o.date_s = (data[0] & 16) ? 1796000000 : 0;
	raw = (const char *)data + 1;
	len = size - 1;

	memset(reply, 'x', sizeof(reply));
	rc = subm_msg_prepare(raw, len, &o, &m, reply, sizeof(reply));
	if (rc == -1) {
		if (strlen(reply) < 10 || reply[0] < '4' || reply[0] > '5' || reply[3] != ' ' ||
		    strpbrk(reply, "\r\n") != NULL)
			abort();
		subm_msg_free(&m);
		return 0;
	}
	if (rc == -2) {
		subm_msg_free(&m);
		return 0;
	}
	if (rc != 0 || m.mime == NULL || m.mime[m.mime_len] != '\0')
		abort();
	if (o.max_len != 0 && m.mime_len > o.max_len)
		abort();
	/* the body: after an empty line, a suffix of the input, holding all after the input's first empty line */
	if (m.body_off < 2 || m.body_off > m.mime_len || memcmp(m.mime + m.body_off - 2, "\r\n", 2) != 0)
		abort();
	blen = m.mime_len - m.body_off;
	if (blen > len || memcmp(m.mime + m.body_off, raw + len - blen, blen) != 0)
		abort();
	if (len >= 2 && raw[0] == '\r' && raw[1] == '\n') {
		after = 2;
	} else {
		for (size_t i = 0; i + 3 < len; i++)
			if (memcmp(raw + i, "\r\n\r\n", 4) == 0) {
				after = i + 4;
				break;
			}
	}
	if (after != 0 && blen < len - after)
		abort();
	check_header(m.mime, m.body_off - 2, &m);
	check_utf8(m.from);
	check_utf8(m.subject);
	if (m.added_from && (o.mail_from == NULL || strcmp(m.from, o.mail_from) != 0))
		abort();
	check_json(m.metadata_json, 1);
	check_json(m.tags_json, 0);
	if (m.ttl_ms < 0 || m.ttl_ms > (int64_t)30 * 24 * 3600 * 1000 || m.ttl_ms % 1000 != 0)
		abort();
	if (m.idem_key[0] != '\0' && !validate_idem_key(m.idem_key))
		abort();
	if (m.n_hdr_addr > SUBM_MSG_HDR_ADDRS)
		abort();
	for (size_t i = 0; i < m.n_hdr_addr; i++) {
		const char *k = subm_msg_rcpt_kind(&m, m.hdr_addr[i]);

		if (strcmp(k, m.hdr_cc[i] ? "cc" : "to") != 0 && strcmp(k, "to") != 0)
			abort();
	}
	{
		char probe[64];
		size_t pn = len < sizeof(probe) - 1 ? len : sizeof(probe) - 1;
		const char *k;

		memcpy(probe, raw, pn);
		probe[pn] = '\0';
		k = subm_msg_rcpt_kind(&m, probe);
		if (strcmp(k, "to") != 0 && strcmp(k, "cc") != 0 && strcmp(k, "bcc") != 0)
			abort();
	}
	subm_msg_free(&m);
	return 0;
}
