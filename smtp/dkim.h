/*
 * dkim.h - DKIM signing (RFC 6376) with rsa-sha256 and ed25519-sha256
 * (RFC 8463), relaxed/relaxed canonicalization, and key generation.
 *
 * Pure over OpenSSL EVP: no I/O, no clock, no logging. The caller passes
 * the message bytes (CRLF lines, as mime_build makes them), the signing
 * time and the PEM key; it gets back one "DKIM-Signature: ...\r\n" header
 * to prepend. Signs From (always) and whichever of To, Cc, Reply-To,
 * Subject, Date, Message-ID, MIME-Version and Content-Type are present
 * (every instance, bottom-up as RFC 6376 5.4.2 picks them). Never uses l=
 * (a body-length limit lets anyone append content under the signature).
 * A signer is read-only after dkim_signer_new: one may be shared by threads.
 */
#ifndef SMTP_DKIM_H
#define SMTP_DKIM_H

#include <stddef.h>
#include <stdint.h>

enum dkim_key_type {
	DKIM_KEY_RSA = 1,       /* rsa-sha256; keys below 1024 bits are refused (RFC 8301) */
	DKIM_KEY_ED25519 = 2,   /* ed25519-sha256 (RFC 8463) */
};

enum {
	DKIM_ERR_NOMEM = -1,
	DKIM_ERR_INVALID = -2,  /* bad domain/selector, unreadable or unsupported key, bad type */
	DKIM_ERR_CRYPTO = -3,   /* OpenSSL failed while hashing or signing */
};

#define DKIM_MAX_KEY_PEM ((size_t)64 * 1024)   /* larger PEM input is refused */
#define DKIM_RSA_BITS 2048                     /* dkim_keygen's RSA size */

struct dkim_signer;   /* opaque: d=, s= and the private key */

/*
 * dkim_signer_new - a signer for d=domain, s=selector with the private key
 * in (pem, pem_len) (PKCS#8 or traditional PEM; RSA or Ed25519, detected
 * from the key; encrypted keys are refused, never prompted for). Returns
 * the signer (free with dkim_signer_free), or NULL with a reason in err.
 */
struct dkim_signer *dkim_signer_new(const char *domain, const char *selector,
    const char *pem, size_t pem_len, char *err, size_t errlen);
void dkim_signer_free(struct dkim_signer *s);

/* dkim_signer_type - DKIM_KEY_RSA or DKIM_KEY_ED25519. */
int dkim_signer_type(const struct dkim_signer *s);

/* dkim_signer_domain - the d= value (lower case), owned by the signer. */
const char *dkim_signer_domain(const struct dkim_signer *s);

/*
 * dkim_signer_txt - the DNS TXT record value for the signer's public key
 * ("v=DKIM1; k=rsa|ed25519; p=<base64>") into malloc'd *txt (caller frees).
 * 0, DKIM_ERR_NOMEM or DKIM_ERR_CRYPTO.
 */
int dkim_signer_txt(const struct dkim_signer *s, char **txt);

/*
 * dkim_sign - sign the message (msg, len): header block, empty line, body;
 * lines end in CRLF (a bare LF is read as a line end too). now_s is t=.
 * On success returns 0 and *header_out is a malloc'd NUL-terminated
 * "DKIM-Signature: ...\r\n" folded to lines of at most 78 characters
 * (caller frees). Errors: DKIM_ERR_NOMEM, DKIM_ERR_INVALID (no From
 * header), DKIM_ERR_CRYPTO.
 */
int dkim_sign(const struct dkim_signer *s, const char *msg, size_t len, int64_t now_s,
    char **header_out);

/*
 * dkim_keygen - a new private key: type DKIM_KEY_RSA (DKIM_RSA_BITS) or
 * DKIM_KEY_ED25519. *pem is the PKCS#8 PEM and *txt_value the DNS TXT
 * record value, both malloc'd (caller frees; clear *pem before freeing).
 * 0, DKIM_ERR_INVALID (type), DKIM_ERR_NOMEM or DKIM_ERR_CRYPTO.
 */
int dkim_keygen(int type, char **pem, char **txt_value);

/* --- canonicalization (exposed for tests) --------------------------------- */

/*
 * dkim_canon_header_relaxed - RFC 6376 3.4.2 for one header field
 * (name, colon, value, possibly folded; with or without its final CRLF).
 * Writes "name:value\r\n" into malloc'd *out (*out_len bytes). 0 or DKIM_ERR_NOMEM.
 */
int dkim_canon_header_relaxed(const char *field, size_t len, char **out, size_t *out_len);

/*
 * dkim_canon_body_relaxed - RFC 6376 3.4.4 for the body (body, len):
 * malloc'd *out of *out_len bytes (empty body -> empty output). 0 or DKIM_ERR_NOMEM.
 */
int dkim_canon_body_relaxed(const char *body, size_t len, char **out, size_t *out_len);

/* dkim_body_hash - base64 SHA-256 of the relaxed body into out (>= 45 bytes). 0 or an error. */
int dkim_body_hash(const char *body, size_t len, char *out, size_t outlen);

#endif
