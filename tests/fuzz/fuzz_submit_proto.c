/*
 * fuzz_submit_proto.c - libFuzzer target for server/submit_proto.c, the
 * pure half of SMTP submission that reads what clients send.
 *
 * The input is used four ways. (1) All but the last byte as one command line for
 * subm_parse (the last byte picks SMTPUTF8 for RCPT and a SIZE limit): the result is 0 or a
 * known SUBM_ERR_*, whose reply is a 3-digit line without CR/LF; a parsed
 * path is NUL-terminated, as long as path_len, within SUBM_PATH_MAX, has
 * no control, blank, CR, LF or NUL, is non-ASCII only under SMTPUTF8 and
 * passes validate_email; SIZE is within the limit; arg and the AUTH
 * initial response lie inside the line. (2) As subm_next_line input: a
 * line found ends in CRLF within the cap and holds no CR or LF. (3) As
 * AUTH PLAIN and base64 input: fields within 255 octets, authcid and
 * passwd non-empty, all "" on failure; a decoded line re-encodes and
 * decodes to the same bytes. (4) As a DATA stream fed in chunks whose
 * sizes come from bytes 1-2, into a buffer of exactly the cap (byte 3):
 * nothing past the cap; the reader ends exactly where a simple reference
 * scan finds the first "." CRLF after CRLF (or at the start) and nowhere
 * else; a message read without error is the input up to the final
 * ".\r\n" with each line's first dot dropped (a reference unstuffing),
 * and holds no bare CR or LF, so a terminator can only be where the
 * reference found it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/submit_proto.h"
#include "../../server/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_reply(int rc)
{
	const char *r = subm_reply(rc);

	if (rc < SUBM_ERR_UTF8 || rc > 0)
		abort();
	if (r == NULL || strlen(r) < 10 || r[0] < '2' || r[0] > '5' || r[3] != ' ' ||
	    strpbrk(r, "\r\n") != NULL)
		abort();
}

static void
fuzz_parse(const char *s, size_t n, uint8_t flags)
{
	struct subm_opts o = { .smtputf8 = flags & 1, .max_size = (flags & 2) ? 1000 : 0 };
	struct subm_cmd c;
	int rc, utf8;

	memset(&c, 0xA5, sizeof(c));
	rc = subm_parse(s, n, &o, &c);
	check_reply(rc);
	if (rc != 0)
		return;
	if (c.verb == SUBM_V_UNKNOWN)
		abort();
	if (c.arg != NULL && (c.arg < s || c.arg + c.arg_len > s + n || c.arg_len == 0))
		abort();
	if (c.verb == SUBM_V_MAIL || c.verb == SUBM_V_RCPT) {
		if (memchr(c.path, '\0', sizeof(c.path)) == NULL || strlen(c.path) != c.path_len ||
		    c.path_len > SUBM_PATH_MAX)
			abort();
		if (c.null_path != (c.path_len == 0) || (c.null_path && c.verb == SUBM_V_RCPT))
			abort();
		utf8 = c.verb == SUBM_V_MAIL ? c.smtputf8 : o.smtputf8;
		for (size_t i = 0; i < c.path_len; i++) {
			unsigned char u = (unsigned char)c.path[i];

			if (u <= ' ' || u == 0x7F || (u >= 0x80 && !utf8))
				abort();
		}
		if (!c.null_path && !validate_email(c.path))
			abort();
		if (c.has_size && o.max_size != 0 && c.size > o.max_size)
			abort();
	}
	if (c.verb == SUBM_V_AUTH) {
		if (c.mech != SUBM_MECH_PLAIN && c.mech != SUBM_MECH_LOGIN)
			abort();
		if (c.has_initial && (c.initial < s || c.initial + c.initial_len > s + n))
			abort();
	}
}

static void
fuzz_line(const char *s, size_t n, size_t cap)
{
	size_t ll, used, eff = cap == 0 ? SUBM_LINE_DEFAULT : cap > SUBM_LINE_MAX ? SUBM_LINE_MAX : cap;
	int rc = subm_next_line(s, n, cap, &ll, &used);

	if (eff < 2)
		eff = 2;
	if (rc == 1) {
		if (used != ll + 2 || used > n || used > eff || s[ll] != '\r' || s[ll + 1] != '\n' ||
		    memchr(s, '\r', ll) != NULL || memchr(s, '\n', ll) != NULL)
			abort();
	} else if (rc == 0) {
		if (used != 0 || n >= eff || memchr(s, '\n', n) != NULL ||
		    (memchr(s, '\r', n) != NULL && (const char *)memchr(s, '\r', n) != s + n - 1))
			abort();
	} else if (rc != SUBM_ERR_BARE_EOL && rc != SUBM_ERR_LINE_TOO_LONG) {
		abort();
	}
}

static void
fuzz_auth(const char *s, size_t n)
{
	char z[SUBM_SASL_FIELD_MAX + 1], c[SUBM_SASL_FIELD_MAX + 1], p[SUBM_SASL_FIELD_MAX + 1];
	static char dec[4096], enc[8192], dec2[4096];
	size_t dn = 0, dn2 = 0;
	int rc;

	rc = subm_auth_plain(s, n, z, c, p);
	if (rc == 0) {
		if (strlen(z) > SUBM_SASL_FIELD_MAX || strlen(c) > SUBM_SASL_FIELD_MAX ||
		    strlen(p) > SUBM_SASL_FIELD_MAX || c[0] == '\0' || p[0] == '\0')
			abort();
	} else if (rc == SUBM_ERR_AUTH_CANCEL || rc == SUBM_ERR_AUTH_DATA) {
		if (z[0] != '\0' || c[0] != '\0' || p[0] != '\0')
			abort();
	} else {
		abort();
	}
	if (n > 4096)
		return;
	rc = subm_b64_decode(s, n, dec, sizeof(dec), &dn);
	if (rc == SUBM_ERR_AUTH_CANCEL || rc == SUBM_ERR_AUTH_DATA)
		return;
	if (rc != 0 || dn > n / 4 * 3 || dec[dn] != '\0')
		abort();
	if (subm_b64_encode(dec, dn, enc, sizeof(enc)) != 0)
		abort();
	if (subm_b64_decode(enc, strlen(enc), dec2, sizeof(dec2), &dn2) != 0 || dn2 != dn ||
	    memcmp(dec, dec2, dn) != 0)
		abort();
}

/* ref_end - octets up to and including the first CRLF "." CRLF (start counts as after CRLF); 0: none. */
static size_t
ref_end(const char *s, size_t n)
{
	for (size_t i = 0; i + 3 <= n; i++)
		if (memcmp(s + i, ".\r\n", 3) == 0 && (i == 0 || (i >= 2 && s[i - 2] == '\r' && s[i - 1] == '\n')))
			return i + 3;
	return 0;
}

static void
fuzz_data(const char *s, size_t n, uint32_t seed, size_t cap)
{
	struct subm_data d;
	char *out = malloc(cap == 0 ? 1 : cap);
	char *re = NULL;
	size_t off = 0, want = ref_end(s, n), rl = 0;
	int ended = 0;

	if (out == NULL)
		abort();
	subm_data_init(&d, cap == 0 ? out + 1 : out, cap);   /* cap 0: any write is out of bounds */
	while (off < n && !ended) {
		size_t k, used;
		int rc;

		seed ^= seed << 13;
		seed ^= seed >> 17;
		seed ^= seed << 5;
		k = (seed & 0x100) ? n - off : 1 + seed % 17;
		if (k > n - off)
			k = n - off;
		rc = subm_data_feed(&d, s + off, k, &used);
		if (used > k)
			abort();
		off += used;
		if (rc == SUBM_DATA_END)
			ended = 1;
		else if (rc != SUBM_DATA_MORE || used != k)
			abort();
		if (subm_data_length(&d) > cap)
			abort();
	}
	if (ended != (want != 0) || (ended && off != want))
		abort();
	if (subm_data_status(&d) != 0 && subm_data_status(&d) != SUBM_ERR_SIZE &&
	    subm_data_status(&d) != SUBM_ERR_DATA_BARE_EOL)
		abort();
	if (ended && subm_data_status(&d) == 0) {
		const char *m = cap == 0 ? out + 1 : out;
		size_t ml = subm_data_length(&d);
		int bol = 1;

		/* the reference: the input before ".\r\n", each line's first dot dropped */
		re = malloc(off);
		if (re == NULL)
			abort();
		for (size_t i = 0; i < off - 3; i++) {
			if (!(bol && s[i] == '.'))
				re[rl++] = s[i];
			bol = i > 0 && s[i - 1] == '\r' && s[i] == '\n';
		}
		if (rl != ml || memcmp(re, m, ml) != 0)
			abort();
		for (size_t i = 0; i < ml; i++)
			if ((m[i] == '\r' && (i + 1 == ml || m[i + 1] != '\n')) ||
			    (m[i] == '\n' && (i == 0 || m[i - 1] != '\r')))
				abort();
	}
	free(re);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;

	if (size > 65536)
		return 0;
	if (size > 0)
		fuzz_parse(s, size - 1, data[size - 1]);   /* the last byte: the options */
	fuzz_line(s, size, size > 0 ? (size_t)data[0] * 24 : 0);
	fuzz_auth(s, size);
	if (size >= 4)
		fuzz_data(s + 4, size - 4, ((uint32_t)data[1] << 8 | data[2]) | 1u,
		    (size_t)data[3] * 4);
	else
		fuzz_data(s, size, 1u, 64);
	return 0;
}
