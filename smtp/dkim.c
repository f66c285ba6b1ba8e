/*
 * dkim.c - DKIM signatures (RFC 6376, RFC 8463) over OpenSSL EVP.
 *
 * Owns relaxed/relaxed canonicalization, the DKIM-Signature tag list and
 * its folding, and the PEM <-> EVP_PKEY handling for DKIM keys. It must
 * never do I/O, read the clock, log, or prompt for a pass phrase; the
 * signer it hands out is never modified after dkim_signer_new, so threads
 * may share it.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkim.h"

#define DKIM_LINE_MAX 78          /* fold the signature header at this width */
#define DKIM_DOMAIN_MAX 253
#define DKIM_SELECTOR_MAX 253
#define DKIM_MAX_HEADERS 1000     /* header fields looked at per message */

struct dkim_signer {
	char domain[DKIM_DOMAIN_MAX + 1];
	char selector[DKIM_SELECTOR_MAX + 1];
	int type;
	EVP_PKEY *key;
};

/* The fields we sign, in h= order; From must be first (it is required). */
static const char *const dkim_signed[] = {
	"from", "to", "cc", "reply-to", "subject", "date", "message-id",
	"mime-version", "content-type",
};

/* --- a small growable buffer ---------------------------------------------- */

struct dkim_buf {
	char *p;
	size_t len, cap;
	int failed;
};

static void
buf_add(struct dkim_buf *b, const char *s, size_t n)
{
	size_t cap;
	char *np;

	if (b->failed)
		return;
	if (n > SIZE_MAX - b->len - 1) {
		b->failed = 1;
		return;
	}
	if (b->len + n + 1 > b->cap) {
		cap = b->cap != 0 ? b->cap : 256;
		while (cap < b->len + n + 1) {
			if (cap > SIZE_MAX / 2) {
				b->failed = 1;
				return;
			}
			cap *= 2;
		}
		np = realloc(b->p, cap);
		if (np == NULL) {
			b->failed = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
buf_str(struct dkim_buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* --- base64 ------------------------------------------------------------------- */

/* dkim_b64 - malloc'd standard base64 of (in, len), or NULL on OOM. */
static char *
dkim_b64(const unsigned char *in, size_t len)
{
	size_t n;
	char *out;

	if (len > (SIZE_MAX / 4) * 3 - 3 || len > (size_t)0x3fffffff)
		return NULL;
	n = 4 * ((len + 2) / 3) + 1;
	out = malloc(n);
	if (out == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

/* --- canonicalization ------------------------------------------------------- */

static int
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

int
dkim_canon_header_relaxed(const char *field, size_t len, char **out, size_t *out_len)
{
	struct dkim_buf b = { 0 };
	size_t i = 0, colon;
	int pending_sp = 0, started = 0;
	char c;

	/* drop the final line end */
	while (len > 0 && (field[len - 1] == '\n' || field[len - 1] == '\r'))
		len--;
	for (colon = 0; colon < len && field[colon] != ':'; colon++)
		;
	/* name: lower case, without WSP before the colon */
	{
		size_t end = colon;
		while (end > 0 && is_wsp(field[end - 1]))
			end--;
		for (i = 0; i < end; i++) {
			c = (char)tolower((unsigned char)field[i]);
			buf_add(&b, &c, 1);
		}
	}
	buf_add(&b, ":", 1);
	/* value: unfold, WSP runs -> one SP, none at the start or the end */
	for (i = colon < len ? colon + 1 : len; i < len; i++) {
		c = field[i];
		if (c == '\r' || c == '\n' || is_wsp(c)) {
			pending_sp = 1;
			continue;
		}
		if (pending_sp && started)
			buf_add(&b, " ", 1);
		pending_sp = 0;
		started = 1;
		buf_add(&b, &c, 1);
	}
	buf_add(&b, "\r\n", 2);
	if (b.failed) {
		free(b.p);
		return DKIM_ERR_NOMEM;
	}
	*out = b.p;
	*out_len = b.len;
	return 0;
}

/*
 * The relaxed body, fed to `emit` in pieces: per line, WSP runs become one
 * SP and trailing WSP goes; empty lines are held back and written only
 * when a non-empty line follows (so trailing empty lines vanish).
 */
typedef int body_sink_fn(void *ctx, const char *p, size_t n);

static int
canon_body(const char *body, size_t len, body_sink_fn *emit, void *ctx)
{
	size_t pending_crlf = 0, i = 0;

	while (i < len) {
		size_t start = i, end, next;
		int sp = 0, any = 0;

		while (i < len && body[i] != '\n')
			i++;
		end = i;
		next = i < len ? i + 1 : i;
		if (end > start && body[end - 1] == '\r')
			end--;
		for (size_t k = start; k < end; k++) {
			if (is_wsp(body[k])) {
				sp = 1;
				continue;
			}
			if (!any) {
				for (; pending_crlf > 0; pending_crlf--)
					if (emit(ctx, "\r\n", 2) != 0)
						return -1;
			}
			if (sp && emit(ctx, " ", 1) != 0)
				return -1;
			sp = 0;
			any = 1;
			if (emit(ctx, &body[k], 1) != 0)
				return -1;
		}
		if (any) {
			if (emit(ctx, "\r\n", 2) != 0)
				return -1;
		} else {
			pending_crlf++;
		}
		i = next;
	}
	return 0;
}

static int
sink_buf(void *ctx, const char *p, size_t n)
{
	struct dkim_buf *b = ctx;

	buf_add(b, p, n);
	return b->failed ? -1 : 0;
}

static int
sink_md(void *ctx, const char *p, size_t n)
{
	return EVP_DigestUpdate(ctx, p, n) == 1 ? 0 : -1;
}

int
dkim_canon_body_relaxed(const char *body, size_t len, char **out, size_t *out_len)
{
	struct dkim_buf b = { 0 };

	buf_add(&b, "", 0);
	if (canon_body(body, len, sink_buf, &b) != 0 || b.failed) {
		free(b.p);
		return DKIM_ERR_NOMEM;
	}
	*out = b.p;
	*out_len = b.len;
	return 0;
}

int
dkim_body_hash(const char *body, size_t len, char *out, size_t outlen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	char *b64 = NULL;
	int rc = DKIM_ERR_CRYPTO;

	if (md == NULL)
		return DKIM_ERR_NOMEM;
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    canon_body(body, len, sink_md, md) != 0 ||
	    EVP_DigestFinal_ex(md, dig, &dlen) != 1)
		goto out;
	b64 = dkim_b64(dig, dlen);
	if (b64 == NULL) {
		rc = DKIM_ERR_NOMEM;
		goto out;
	}
	if (strlen(b64) + 1 > outlen) {
		rc = DKIM_ERR_INVALID;
		goto out;
	}
	memcpy(out, b64, strlen(b64) + 1);
	rc = 0;
out:
	free(b64);
	EVP_MD_CTX_free(md);
	return rc;
}

/* --- header block ------------------------------------------------------------ */

struct dkim_field {
	const char *p;      /* start of the name */
	size_t len;         /* through the final line end */
	size_t name_len;
};

/*
 * split_header - the fields of the header block and where the body starts.
 * A field is a line plus its continuation lines (starting with WSP).
 */
static size_t
split_header(const char *msg, size_t len, struct dkim_field *f, size_t maxf, size_t *nf)
{
	size_t i = 0, n = 0;

	*nf = 0;
	while (i < len) {
		size_t start = i;

		if (msg[i] == '\n')
			return i + 1;
		if (msg[i] == '\r' && i + 1 < len && msg[i + 1] == '\n')
			return i + 2;
		for (;;) {
			while (i < len && msg[i] != '\n')
				i++;
			if (i < len)
				i++;
			if (i < len && is_wsp(msg[i]))
				continue;
			break;
		}
		if (n < maxf) {
			size_t k = 0;
			*nf = n + 1;
			while (start + k < i && msg[start + k] != ':' && msg[start + k] != '\n')
				k++;
			while (k > 0 && is_wsp(msg[start + k - 1]))
				k--;
			f[n].p = msg + start;
			f[n].len = i - start;
			f[n].name_len = k;
			n++;
		}
	}
	*nf = n;
	return len;
}

/* --- folding -------------------------------------------------------------------- */

struct dkim_fold {
	struct dkim_buf b;
	size_t col;
};

/* fold_word - add an unbreakable word, after one SP (sep) or a fold when it would not fit. */
static void
fold_word(struct dkim_fold *f, const char *w, int sep)
{
	size_t n = strlen(w);

	if (f->col + (sep ? 1 : 0) + n > DKIM_LINE_MAX) {
		buf_add(&f->b, "\r\n\t", 3);
		f->col = 1;
	} else if (sep) {
		buf_add(&f->b, " ", 1);
		f->col++;
	}
	buf_add(&f->b, w, n);
	f->col += n;
}

/* fold_chars - add a value that may be folded anywhere (base64). */
static void
fold_chars(struct dkim_fold *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (f->col >= DKIM_LINE_MAX) {
			buf_add(&f->b, "\r\n\t", 3);
			f->col = 1;
		}
		buf_add(&f->b, s, 1);
		f->col++;
	}
}

/* --- signer ------------------------------------------------------------------------ */

static int
dkim_err(char *err, size_t errlen, const char *msg)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", msg);
	return DKIM_ERR_INVALID;
}

/* copy_name - lower-cased DNS name of [A-Za-z0-9._-] labels; 0 or -1. */
static int
copy_name(const char *in, char *out, size_t outlen, int allow_underscore)
{
	size_t n = in != NULL ? strlen(in) : 0;

	if (n == 0 || n >= outlen || in[0] == '.' || in[n - 1] == '.')
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		if (!(isalnum(c) || c == '-' || c == '.' || (allow_underscore && c == '_')))
			return -1;
		if (c == '.' && in[i + 1] == '.')
			return -1;
		out[i] = (char)tolower(c);
	}
	out[n] = '\0';
	return 0;
}

static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

struct dkim_signer *
dkim_signer_new(const char *domain, const char *selector, const char *pem, size_t pem_len,
    char *err, size_t errlen)
{
	struct dkim_signer *s = NULL;
	BIO *bio = NULL;
	int id;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (pem == NULL || pem_len == 0 || pem_len > DKIM_MAX_KEY_PEM) {
		dkim_err(err, errlen, "the key is empty or larger than 64 KiB");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		dkim_err(err, errlen, "out of memory");
		return NULL;
	}
	if (copy_name(domain, s->domain, sizeof(s->domain), 0) != 0) {
		dkim_err(err, errlen, "the domain is not a DNS name");
		goto fail;
	}
	if (copy_name(selector, s->selector, sizeof(s->selector), 1) != 0) {
		dkim_err(err, errlen, "the selector is not a DNS name");
		goto fail;
	}
	bio = BIO_new_mem_buf(pem, (int)pem_len);
	if (bio == NULL) {
		dkim_err(err, errlen, "out of memory");
		goto fail;
	}
	s->key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	if (s->key == NULL) {
		dkim_err(err, errlen, "not a PEM private key (or an encrypted one)");
		goto fail;
	}
	id = EVP_PKEY_get_base_id(s->key);
	if (id == EVP_PKEY_RSA) {
		if (EVP_PKEY_get_bits(s->key) < 1024) {
			dkim_err(err, errlen, "RSA key shorter than 1024 bits (RFC 8301)");
			goto fail;
		}
		s->type = DKIM_KEY_RSA;
	} else if (id == EVP_PKEY_ED25519) {
		s->type = DKIM_KEY_ED25519;
	} else {
		dkim_err(err, errlen, "unsupported key type (want RSA or Ed25519)");
		goto fail;
	}
	BIO_free(bio);
	return s;
fail:
	BIO_free(bio);
	dkim_signer_free(s);
	return NULL;
}

void
dkim_signer_free(struct dkim_signer *s)
{
	if (s == NULL)
		return;
	EVP_PKEY_free(s->key);
	free(s);
}

int
dkim_signer_type(const struct dkim_signer *s)
{
	return s->type;
}

const char *
dkim_signer_domain(const struct dkim_signer *s)
{
	return s->domain;
}

/* pubkey_txt - "v=DKIM1; k=...; p=..." for key's public half. */
static int
pubkey_txt(EVP_PKEY *key, int type, char **txt)
{
	unsigned char *der = NULL, raw[32];
	size_t rawlen = sizeof(raw);
	struct dkim_buf b = { 0 };
	char *p64 = NULL;
	int n, rc = DKIM_ERR_CRYPTO;

	if (type == DKIM_KEY_RSA) {
		n = i2d_PUBKEY(key, &der);
		if (n <= 0)
			goto out;
		p64 = dkim_b64(der, (size_t)n);
	} else {
		if (EVP_PKEY_get_raw_public_key(key, raw, &rawlen) != 1 || rawlen != 32)
			goto out;
		p64 = dkim_b64(raw, rawlen);
	}
	if (p64 == NULL) {
		rc = DKIM_ERR_NOMEM;
		goto out;
	}
	buf_str(&b, "v=DKIM1; k=");
	buf_str(&b, type == DKIM_KEY_RSA ? "rsa" : "ed25519");
	buf_str(&b, "; p=");
	buf_str(&b, p64);
	if (b.failed) {
		free(b.p);
		rc = DKIM_ERR_NOMEM;
		goto out;
	}
	*txt = b.p;
	rc = 0;
out:
	OPENSSL_free(der);
	free(p64);
	return rc;
}

int
dkim_signer_txt(const struct dkim_signer *s, char **txt)
{
	return pubkey_txt(s->key, s->type, txt);
}

static int
name_is(const struct dkim_field *f, const char *name)
{
	return f->name_len == strlen(name) && strncasecmp(f->p, name, f->name_len) == 0;
}

/* sign_data - the b= bytes for the canonical header data (data, len): malloc'd base64. */
static int
sign_data(const struct dkim_signer *s, const char *data, size_t len, char **b64)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char dig[EVP_MAX_MD_SIZE], *sig = NULL;
	unsigned int dlen = 0;
	size_t siglen = 0;
	int rc = DKIM_ERR_CRYPTO;

	if (ctx == NULL)
		return DKIM_ERR_NOMEM;
	if (s->type == DKIM_KEY_RSA) {
		if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, s->key) != 1 ||
		    EVP_DigestSignUpdate(ctx, data, len) != 1 ||
		    EVP_DigestSignFinal(ctx, NULL, &siglen) != 1)
			goto out;
		if ((sig = malloc(siglen)) == NULL) {
			rc = DKIM_ERR_NOMEM;
			goto out;
		}
		if (EVP_DigestSignFinal(ctx, sig, &siglen) != 1)
			goto out;
	} else {
		/* RFC 8463: PureEd25519 over the SHA-256 of the header data */
		if (EVP_Digest(data, len, dig, &dlen, EVP_sha256(), NULL) != 1 ||
		    EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->key) != 1 ||
		    EVP_DigestSign(ctx, NULL, &siglen, dig, dlen) != 1)
			goto out;
		if ((sig = malloc(siglen)) == NULL) {
			rc = DKIM_ERR_NOMEM;
			goto out;
		}
		if (EVP_DigestSign(ctx, sig, &siglen, dig, dlen) != 1)
			goto out;
	}
	*b64 = dkim_b64(sig, siglen);
	rc = *b64 != NULL ? 0 : DKIM_ERR_NOMEM;
out:
	free(sig);
	EVP_MD_CTX_free(ctx);
	return rc;
}

int
dkim_sign(const struct dkim_signer *s, const char *msg, size_t len, int64_t now_s,
    char **header_out)
{
	struct dkim_field *fields = NULL;
	struct dkim_fold f = { 0 };
	struct dkim_buf data = { 0 };
	char bh[64], word[DKIM_DOMAIN_MAX + 64], *canon = NULL, *sig = NULL;
	size_t nf = 0, body_off, clen, nh = 0;
	int have_from = 0, rc;

	*header_out = NULL;
	fields = calloc(DKIM_MAX_HEADERS, sizeof(*fields));
	if (fields == NULL)
		return DKIM_ERR_NOMEM;
	body_off = split_header(msg, len, fields, DKIM_MAX_HEADERS, &nf);
	rc = dkim_body_hash(msg + body_off, len - body_off, bh, sizeof(bh));
	if (rc != 0)
		goto out;

	/* the tag list up to h= */
	buf_str(&f.b, "DKIM-Signature:");
	f.col = strlen("DKIM-Signature:");
	fold_word(&f, "v=1;", 1);
	fold_word(&f, s->type == DKIM_KEY_RSA ? "a=rsa-sha256;" : "a=ed25519-sha256;", 1);
	fold_word(&f, "c=relaxed/relaxed;", 1);
	snprintf(word, sizeof(word), "d=%s;", s->domain);
	fold_word(&f, word, 1);
	snprintf(word, sizeof(word), "s=%s;", s->selector);
	fold_word(&f, word, 1);
	snprintf(word, sizeof(word), "t=%lld;", (long long)now_s);
	fold_word(&f, word, 1);

	/*
	 * h= and the canonical header data: for each name, every instance,
	 * last first (RFC 6376 5.4.2).
	 */
	for (size_t k = 0; k < sizeof(dkim_signed) / sizeof(dkim_signed[0]); k++) {
		for (size_t i = nf; i-- > 0;) {
			if (!name_is(&fields[i], dkim_signed[k]))
				continue;
			if (k == 0)
				have_from = 1;
			snprintf(word, sizeof(word), "%s%s", nh == 0 ? "h=" : ":", dkim_signed[k]);
			fold_word(&f, word, nh == 0);
			nh++;
			if (dkim_canon_header_relaxed(fields[i].p, fields[i].len, &canon, &clen) != 0) {
				rc = DKIM_ERR_NOMEM;
				goto out;
			}
			buf_add(&data, canon, clen);
			free(canon);
			canon = NULL;
		}
	}
	if (!have_from) {
		rc = DKIM_ERR_INVALID;
		goto out;
	}
	buf_add(&f.b, ";", 1);
	f.col++;
	snprintf(word, sizeof(word), "bh=%s;", bh);
	fold_word(&f, word, 1);
	/* b= starts its own line; its value is empty while signing */
	buf_add(&f.b, "\r\n\tb=", 5);
	f.col = 3;
	if (f.b.failed) {
		rc = DKIM_ERR_NOMEM;
		goto out;
	}

	/* the signature header itself, canonical, without its CRLF, ends the data */
	if (dkim_canon_header_relaxed(f.b.p, f.b.len, &canon, &clen) != 0) {
		rc = DKIM_ERR_NOMEM;
		goto out;
	}
	buf_add(&data, canon, clen - 2);
	if (data.failed) {
		rc = DKIM_ERR_NOMEM;
		goto out;
	}
	rc = sign_data(s, data.p, data.len, &sig);
	if (rc != 0)
		goto out;
	fold_chars(&f, sig);
	buf_add(&f.b, "\r\n", 2);
	if (f.b.failed) {
		rc = DKIM_ERR_NOMEM;
		goto out;
	}
	*header_out = f.b.p;
	f.b.p = NULL;
	rc = 0;
out:
	free(fields);
	free(canon);
	free(sig);
	free(data.p);
	free(f.b.p);
	return rc;
}

int
dkim_keygen(int type, char **pem, char **txt_value)
{
	EVP_PKEY *key = NULL;
	BIO *bio = NULL;
	BUF_MEM *mem = NULL;
	char *p = NULL;
	int rc = DKIM_ERR_CRYPTO;

	*pem = NULL;
	*txt_value = NULL;
	if (type == DKIM_KEY_RSA)
		key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)DKIM_RSA_BITS);
	else if (type == DKIM_KEY_ED25519)
		key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	else
		return DKIM_ERR_INVALID;
	if (key == NULL)
		goto out;
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1)
		goto out;
	BIO_get_mem_ptr(bio, &mem);
	if (mem == NULL || mem->length == 0)
		goto out;
	p = malloc(mem->length + 1);
	if (p == NULL) {
		rc = DKIM_ERR_NOMEM;
		goto out;
	}
	memcpy(p, mem->data, mem->length);
	p[mem->length] = '\0';
	OPENSSL_cleanse(mem->data, mem->length);
	rc = pubkey_txt(key, type, txt_value);
	if (rc != 0)
		goto out;
	*pem = p;
	p = NULL;
out:
	if (p != NULL) {
		OPENSSL_cleanse(p, strlen(p));
		free(p);
	}
	BIO_free(bio);
	EVP_PKEY_free(key);
	return rc;
}
