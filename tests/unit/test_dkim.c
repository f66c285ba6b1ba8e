/*
 * test_dkim.c - DKIM signing (smtp/dkim.c): relaxed canonicalization
 * tables (RFC 6376 3.4), the empty-body hash, the folded header, and
 * signatures checked here with OpenSSL EVP_DigestVerify for RSA and
 * Ed25519 (RFC 8463: Ed25519 over the SHA-256 of the header data).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../../smtp/dkim.h"

/* --- canonicalization tables ------------------------------------------------------- */

struct canon_case {
	const char *name;
	const char *in;
	const char *want;
};

static const struct canon_case header_cases[] = {
	/* RFC 6376 3.4.5 */
	{ "rfc A", "A: X\r\n", "a:X\r\n" },
	{ "rfc B folded", "B : Y\t\r\n\tZ  \r\n", "b:Y Z\r\n" },
	{ "no final CRLF", "Subject: hi", "subject:hi\r\n" },
	{ "wsp runs", "Subject:  a \t b   c  \r\n", "subject:a b c\r\n" },
	{ "colon inside value keeps its space", "Subject: a : b\r\n", "subject:a : b\r\n" },
	{ "upper-case name", "MIME-Version: 1.0\r\n", "mime-version:1.0\r\n" },
	{ "empty value", "X-Empty:\r\n", "x-empty:\r\n" },
	{ "only wsp value", "X-Empty:  \t \r\n", "x-empty:\r\n" },
	{ "fold at start", "To:\r\n b@example.com\r\n", "to:b@example.com\r\n" },
	{ "encoded word", "Subject: =?UTF-8?B?5L2g5aW9?=\r\n =?UTF-8?B?5LiW55WM?=\r\n",
	  "subject:=?UTF-8?B?5L2g5aW9?= =?UTF-8?B?5LiW55WM?=\r\n" },
};

static const struct canon_case body_cases[] = {
	/* RFC 6376 3.4.5 */
	{ "rfc example", " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n" },
	{ "empty", "", "" },
	{ "only CRLFs", "\r\n\r\n\r\n", "" },
	{ "only wsp lines", " \t\r\n  \r\n", "" },
	{ "no final CRLF", "abc", "abc\r\n" },
	{ "inner empty lines kept", "a\r\n\r\n \r\nb\r\n", "a\r\n\r\n\r\nb\r\n" },
	{ "trailing wsp", "a  \r\nb\t\r\n", "a\r\nb\r\n" },
	{ "leading wsp becomes one SP", "\t\t x\r\n", " x\r\n" },
	{ "bare LF lines", "a \nb\n\n", "a\r\nb\r\n" },
	{ "trailing wsp no CRLF", "x  ", "x\r\n" },
};

Test(dkim_canon, header_table)
{
	for (size_t i = 0; i < sizeof(header_cases) / sizeof(header_cases[0]); i++) {
		const struct canon_case *c = &header_cases[i];
		char *out = NULL;
		size_t n = 0;

		cr_assert_eq(dkim_canon_header_relaxed(c->in, strlen(c->in), &out, &n), 0, "%s: rc", c->name);
		cr_expect(n == strlen(c->want) && memcmp(out, c->want, n) == 0,
		    "%s: got \"%.*s\", want \"%s\"", c->name, (int)n, out, c->want);
		free(out);
	}
}

Test(dkim_canon, body_table)
{
	for (size_t i = 0; i < sizeof(body_cases) / sizeof(body_cases[0]); i++) {
		const struct canon_case *c = &body_cases[i];
		char *out = NULL;
		size_t n = 99;

		cr_assert_eq(dkim_canon_body_relaxed(c->in, strlen(c->in), &out, &n), 0, "%s: rc", c->name);
		cr_expect(n == strlen(c->want) && memcmp(out, c->want, n) == 0,
		    "%s: got \"%.*s\" (%zu), want \"%s\"", c->name, (int)n, out, n, c->want);
		free(out);
	}
}

Test(dkim_canon, body_hash_vectors)
{
	/* relaxed: an empty body (or one of empty lines) hashes the empty string */
	static const struct { const char *in, *want; } v[] = {
		{ "", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" },
		{ "\r\n", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" },
		{ "\r\n\r\n  \r\n", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" },
		/* "x" and "x \r\n\r\n" canonicalize to "x\r\n" (openssl dgst -sha256 | base64) */
		{ "x", "s14J+iztnrytnRYzb7lhFG/jS/vrxWJnnahfijFMnco=" },
		{ "x \r\n\r\n", "s14J+iztnrytnRYzb7lhFG/jS/vrxWJnnahfijFMnco=" },
	};
	char got[64];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		cr_assert_eq(dkim_body_hash(v[i].in, strlen(v[i].in), got, sizeof(got)), 0);
		cr_expect_str_eq(got, v[i].want, "body %zu: got %s, want %s", i, got, v[i].want);
	}
}

/* --- signing and verifying ------------------------------------------------------- */

static const char test_msg[] =
    "From: Sender <news@Example.COM>\r\n"
    "To: a@x.example,\r\n b@y.example\r\n"
    "Subject: =?UTF-8?B?5L2g5aW9?=\r\n"
    "Date: Mon, 23 Nov 2026 15:58:00 +0000\r\n"
    "Message-ID: <msg_1@test>\r\n"
    "X-Not-Signed: 1\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Hello  world \r\n"
    "\r\n"
    "\r\n";

/* tag - the value of tag t in the unfolded signature header (malloc'd), or NULL. */
static char *
tag(const char *unfolded, const char *t)
{
	const char *p = unfolded;
	size_t tl = strlen(t);

	p = strchr(p, ':') + 1;
	while (*p != '\0') {
		const char *end = strchr(p, ';');
		size_t n;

		while (*p == ' ' || *p == '\t')
			p++;
		if (end == NULL)
			end = p + strlen(p);
		n = (size_t)(end - p);
		if (n > tl && strncmp(p, t, tl) == 0 && p[tl] == '=')
			return strndup(p + tl + 1, n - tl - 1);
		p = *end == ';' ? end + 1 : end;
	}
	return NULL;
}

static char *
unfold(const char *h)
{
	char *u = malloc(strlen(h) + 1), *o = u;

	for (const char *p = h; *p != '\0'; p++) {
		if (*p == '\r' && p[1] == '\n' && (p[2] == ' ' || p[2] == '\t')) {
			p += 2;   /* the WSP after the fold stays */
			*o++ = *p;
			continue;
		}
		if (*p == '\r' || *p == '\n')
			continue;
		*o++ = *p;
	}
	*o = '\0';
	return u;
}

static unsigned char *
b64dec(const char *in, size_t *outlen)
{
	size_t n = 0;
	char *clean = malloc(strlen(in) + 1);
	unsigned char *out;
	int len, pad = 0;

	for (const char *p = in; *p != '\0'; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			clean[n++] = *p;
	clean[n] = '\0';
	out = malloc(n + 1);
	len = EVP_DecodeBlock(out, (unsigned char *)clean, (int)n);
	cr_assert(len >= 0, "base64 decode of %s", clean);
	if (n >= 1 && clean[n - 1] == '=')
		pad++;
	if (n >= 2 && clean[n - 2] == '=')
		pad++;
	*outlen = (size_t)len - (size_t)pad;
	free(clean);
	return out;
}

/* find the i-th field named name counting from the bottom (0 = last), as canonical bytes */
static int
nth_from_bottom(const char *msg, const char *name, int nth, char **canon, size_t *clen)
{
	const char *starts[64];
	size_t lens[64];
	int n = 0;
	const char *p = msg;

	while (*p != '\0' && !(p[0] == '\r' && p[1] == '\n')) {
		const char *s = p;
		while (1) {
			p = strstr(p, "\r\n") + 2;
			if (*p != ' ' && *p != '\t')
				break;
		}
		if (strncasecmp(s, name, strlen(name)) == 0 && s[strlen(name)] == ':') {
			starts[n] = s;
			lens[n] = (size_t)(p - s);
			n++;
		}
	}
	if (nth >= n)
		return -1;
	return dkim_canon_header_relaxed(starts[n - 1 - nth], lens[n - 1 - nth], canon, clen);
}

/* verify_sig - an independent check of hdr over msg with the key's public half. */
static void
verify_sig(const char *hdr, const char *msg, EVP_PKEY *pub, int type)
{
	char *u = unfold(hdr), *h = tag(u, "h"), *bh = tag(u, "bh"), *b = tag(u, "b");
	char *data = calloc(1, strlen(msg) + strlen(hdr) + 16), *hcopy, *canon, want_bh[64];
	size_t dlen = 0, clen, siglen;
	unsigned char *sig;
	const char *body = strstr(msg, "\r\n\r\n") + 4;
	int counts[32] = { 0 }, nnames = 0;
	char *names[32], *save = NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char dig[32];
	unsigned int dl = 0;

	cr_assert(h != NULL && bh != NULL && b != NULL, "h=, bh= and b= present in %s", u);
	cr_assert_eq(dkim_body_hash(body, strlen(body), want_bh, sizeof(want_bh)), 0);
	cr_expect_str_eq(bh, want_bh, "got bh=%s, want %s", bh, want_bh);
	hcopy = strdup(h);
	for (char *t = strtok_r(hcopy, ":", &save); t != NULL; t = strtok_r(NULL, ":", &save)) {
		int seen = 0, known = 0;
		size_t tl;
		while (*t == ' ' || *t == '\t')
			t++;
		tl = strlen(t);
		while (tl > 0 && (t[tl - 1] == ' ' || t[tl - 1] == '\t'))
			t[--tl] = '\0';
		for (int k = 0; k < nnames; k++)
			if (strcasecmp(names[k], t) == 0) {
				seen = counts[k]++;
				known = 1;
			}
		if (!known) {
			names[nnames] = t;
			counts[nnames++] = 1;
		}
		cr_assert_eq(nth_from_bottom(msg, t, seen, &canon, &clen), 0, "signed header %s missing", t);
		memcpy(data + dlen, canon, clen);
		dlen += clen;
		free(canon);
	}
	/* the signature header with an empty b= (b= is last) */
	{
		char *cut = strdup(hdr), *bpos = strstr(cut, "b=");
		/* the b= that is a tag (preceded by WSP or ';'), not inside bh= */
		while (bpos != NULL && !(bpos[-1] == ' ' || bpos[-1] == '\t' || bpos[-1] == ';'))
			bpos = strstr(bpos + 1, "b=");
		cr_assert(bpos != NULL);
		bpos[2] = '\0';
		cr_assert_eq(dkim_canon_header_relaxed(cut, strlen(cut), &canon, &clen), 0);
		memcpy(data + dlen, canon, clen - 2);
		dlen += clen - 2;
		free(canon);
		free(cut);
	}
	sig = b64dec(b, &siglen);
	if (type == DKIM_KEY_RSA) {
		cr_assert_eq(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub), 1);
		cr_expect_eq(EVP_DigestVerify(ctx, sig, siglen, (unsigned char *)data, dlen), 1,
		    "RSA signature: got invalid, want valid");
	} else {
		cr_assert_eq(EVP_Digest(data, dlen, dig, &dl, EVP_sha256(), NULL), 1);
		cr_assert_eq(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub), 1);
		cr_expect_eq(EVP_DigestVerify(ctx, sig, siglen, dig, dl), 1,
		    "Ed25519 signature: got invalid, want valid");
	}
	/* and a changed byte must not verify */
	data[dlen / 2] ^= 1;
	EVP_MD_CTX_reset(ctx);
	if (type == DKIM_KEY_RSA) {
		EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub);
		cr_expect_neq(EVP_DigestVerify(ctx, sig, siglen, (unsigned char *)data, dlen), 1,
		    "tampered data verified");
	} else {
		EVP_Digest(data, dlen, dig, &dl, EVP_sha256(), NULL);
		EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub);
		cr_expect_neq(EVP_DigestVerify(ctx, sig, siglen, dig, dl), 1, "tampered data verified");
	}
	EVP_MD_CTX_free(ctx);
	free(sig);
	free(hcopy);
	free(data);
	free(u);
	free(h);
	free(bh);
	free(b);
}

/* pub_from_txt - the public key the TXT record publishes. */
static EVP_PKEY *
pub_from_txt(const char *txt, int type)
{
	char *p = strstr(txt, "p=");
	size_t n;
	unsigned char *der;
	const unsigned char *q;
	EVP_PKEY *k;

	cr_assert(p != NULL, "no p= in %s", txt);
	der = b64dec(p + 2, &n);
	q = der;
	if (type == DKIM_KEY_RSA)
		k = d2i_PUBKEY(NULL, &q, (long)n);
	else
		k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, n);
	free(der);
	cr_assert(k != NULL, "cannot read the public key from %s", txt);
	return k;
}

static void
sign_and_verify(int type)
{
	char *pem = NULL, *txt = NULL, *hdr = NULL, *txt2 = NULL, err[128];
	struct dkim_signer *s;
	EVP_PKEY *pub;
	char *u;

	cr_assert_eq(dkim_keygen(type, &pem, &txt), 0);
	cr_expect(strncmp(txt, type == DKIM_KEY_RSA ? "v=DKIM1; k=rsa; p=" : "v=DKIM1; k=ed25519; p=",
	    18) == 0, "got TXT %s", txt);
	s = dkim_signer_new("Example.com", "sel-2026", pem, strlen(pem), err, sizeof(err));
	cr_assert(s != NULL, "signer: %s", err);
	cr_expect_eq(dkim_signer_type(s), type, "got type %d, want %d", dkim_signer_type(s), type);
	cr_assert_eq(dkim_signer_txt(s, &txt2), 0);
	cr_expect_str_eq(txt2, txt, "got TXT %s from the signer, want keygen's %s", txt2, txt);
	cr_assert_eq(dkim_sign(s, test_msg, strlen(test_msg), 1795449480, &hdr), 0);

	/* shape: one header, CRLF-terminated, lines <= 78, the tags we promise */
	cr_expect(strncmp(hdr, "DKIM-Signature: v=1; ", 21) == 0, "got %s", hdr);
	cr_expect(strlen(hdr) > 2 && strcmp(hdr + strlen(hdr) - 2, "\r\n") == 0, "no final CRLF");
	for (const char *l = hdr; *l != '\0';) {
		const char *e = strstr(l, "\r\n");
		cr_assert(e != NULL);
		cr_expect(e - l <= 78, "got a %d-char line, want <= 78: %.*s", (int)(e - l), (int)(e - l), l);
		l = e + 2;
		if (*l != '\0')
			cr_expect(*l == '\t' || *l == ' ', "continuation line does not start with WSP");
	}
	u = unfold(hdr);
	{
		char *a = tag(u, "a"), *c = tag(u, "c"), *d = tag(u, "d"), *sel = tag(u, "s"),
		    *t = tag(u, "t"), *h = tag(u, "h"), *l = tag(u, "l");
		cr_expect_str_eq(a, type == DKIM_KEY_RSA ? "rsa-sha256" : "ed25519-sha256", "got a=%s", a);
		cr_expect_str_eq(c, "relaxed/relaxed", "got c=%s", c);
		cr_expect_str_eq(d, "example.com", "got d=%s", d);
		cr_expect_str_eq(sel, "sel-2026", "got s=%s", sel);
		cr_expect_str_eq(t, "1795449480", "got t=%s", t);
		cr_expect_null(l, "got l=%s, want none", l);
		/* two To? no: one To (folded); Cc/Reply-To absent; X-Not-Signed not signed */
		{
			char *hs = unfold(h), *o = hs;
			for (char *p = hs; *p != '\0'; p++)
				if (*p != ' ' && *p != '\t')
					*o++ = *p;
			*o = '\0';
			cr_expect_str_eq(hs, "from:to:subject:date:message-id:mime-version:content-type",
			    "got h=%s", hs);
			free(hs);
		}
		free(a); free(c); free(d); free(sel); free(t); free(h); free(l);
	}
	pub = pub_from_txt(txt, type);
	verify_sig(hdr, test_msg, pub, type);
	EVP_PKEY_free(pub);
	free(u);
	free(hdr);
	free(pem);
	free(txt);
	free(txt2);
	dkim_signer_free(s);
}

Test(dkim_sign, rsa_verifies)
{
	sign_and_verify(DKIM_KEY_RSA);
}

Test(dkim_sign, ed25519_verifies)
{
	sign_and_verify(DKIM_KEY_ED25519);
}

Test(dkim_sign, duplicate_headers_all_signed_and_no_from_refused)
{
	static const char dup[] =
	    "From: a@example.com\r\nTo: x@y\r\nTo: z@w\r\nCc: c@d\r\n\r\nbody\r\n";
	static const char nofrom[] = "To: x@y\r\n\r\nbody\r\n";
	char *pem, *txt, *hdr = NULL, *u, *h, err[128];
	struct dkim_signer *s;
	EVP_PKEY *pub;

	cr_assert_eq(dkim_keygen(DKIM_KEY_ED25519, &pem, &txt), 0);
	s = dkim_signer_new("example.com", "s", pem, strlen(pem), err, sizeof(err));
	cr_assert(s != NULL, "%s", err);
	cr_assert_eq(dkim_sign(s, dup, strlen(dup), 1, &hdr), 0);
	u = unfold(hdr);
	h = tag(u, "h");
	cr_expect_str_eq(h, "from:to:to:cc", "got h=%s, want from:to:to:cc", h);
	pub = pub_from_txt(txt, DKIM_KEY_ED25519);
	verify_sig(hdr, dup, pub, DKIM_KEY_ED25519);
	EVP_PKEY_free(pub);
	free(hdr);
	hdr = NULL;
	cr_expect_eq(dkim_sign(s, nofrom, strlen(nofrom), 1, &hdr), DKIM_ERR_INVALID,
	    "no From: got a signature, want DKIM_ERR_INVALID");
	cr_expect_null(hdr);
	free(u);
	free(h);
	free(pem);
	free(txt);
	dkim_signer_free(s);
}

static char *
pem_of(EVP_PKEY *k)
{
	BIO *b = BIO_new(BIO_s_mem());
	BUF_MEM *m;
	char *out;

	cr_assert(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1);
	BIO_get_mem_ptr(b, &m);
	out = strndup(m->data, m->length);
	BIO_free(b);
	return out;
}

Test(dkim_signer, refused_inputs)
{
	char *good, *txt, err[128];
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)768);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	char *small_pem = pem_of(small), *ec_pem = pem_of(ec);
	struct {
		const char *name, *domain, *selector, *pem;
		const char *want_err;
	} cases[] = {
		{ "domain with space", "exa mple.com", "s", NULL, "domain" },
		{ "domain with CRLF", "example.com\r\nX: y", "s", NULL, "domain" },
		{ "empty domain", "", "s", NULL, "domain" },
		{ "selector with ;", "example.com", "s;x=1", NULL, "selector" },
		{ "not a key", "example.com", "s", "hello", "PEM" },
		{ "RSA 768", "example.com", "s", small_pem, "1024" },
		{ "EC P-256", "example.com", "s", ec_pem, "unsupported" },
	};

	cr_assert_eq(dkim_keygen(DKIM_KEY_RSA, &good, &txt), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *pem = cases[i].pem != NULL ? cases[i].pem : good;
		struct dkim_signer *s = dkim_signer_new(cases[i].domain, cases[i].selector, pem,
		    strlen(pem), err, sizeof(err));
		cr_expect_null(s, "%s: got a signer, want NULL", cases[i].name);
		cr_expect(strstr(err, cases[i].want_err) != NULL, "%s: got error \"%s\", want it to mention %s",
		    cases[i].name, err, cases[i].want_err);
		dkim_signer_free(s);
	}
	free(good);
	free(txt);
	cr_expect_eq(dkim_keygen(7, &good, &txt), DKIM_ERR_INVALID);
	EVP_PKEY_free(small);
	EVP_PKEY_free(ec);
	free(small_pem);
	free(ec_pem);
}
