/*
 * dkim_keys.h - the DKIM keys from TXMAIL_DKIM_KEYS and signing at accept
 * time.
 *
 * TXMAIL_DKIM_KEYS is "domain:selector:/path/key.pem[,domain:selector:/path...]".
 * Every key file is read once at start (a file that cannot be read or
 * parsed is a configuration error); a message is signed with the key whose
 * domain equals its From domain (case-insensitive, exact: a key for
 * example.com does not sign mail from sub.example.com). Mail from other
 * domains goes out unsigned. Read-only after loading: threads share it.
 */
#ifndef SERVER_DKIM_KEYS_H
#define SERVER_DKIM_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define DKIM_KEYS_MAX 256          /* entries in TXMAIL_DKIM_KEYS */
#define DKIM_KEYS_SPEC_MAX 65536   /* length of TXMAIL_DKIM_KEYS */

struct dkim_keys;
struct dkim_signer;

/* One parsed entry of TXMAIL_DKIM_KEYS. */
struct dkim_keys_entry {
	char domain[254];
	char selector[254];
	char path[4096];
};

/*
 * dkim_keys_parse - split spec into entries (pure; no file access). Blanks
 * around items are ignored; empty items are not allowed; a domain may
 * appear once. Returns the number of entries written to out (<= max), or
 * -1 with a reason in err.
 */
int dkim_keys_parse(const char *spec, struct dkim_keys_entry *out, size_t max,
    char *err, size_t errlen);

/*
 * dkim_keys_load - parse spec and read every key file. spec NULL or empty:
 * *out = NULL (signing off) and 0. Else 0 with *out (free with
 * dkim_keys_free), or -1 with a reason naming the entry or file in err.
 */
int dkim_keys_load(const char *spec, struct dkim_keys **out, char *err, size_t errlen);
void dkim_keys_free(struct dkim_keys *k);

/* dkim_keys_count - number of keys (0 for NULL). */
size_t dkim_keys_count(const struct dkim_keys *k);

/* dkim_keys_find - the signer for the domain of from_email (after its last '@'), or NULL. */
const struct dkim_signer *dkim_keys_find(const struct dkim_keys *k, const char *from_email);

/*
 * dkim_keys_sign_message - when a key matches from_email, prepend a
 * DKIM-Signature (t=now_s) to the message: *msg / *len are replaced by a
 * new malloc'd buffer (the old one is freed). No key: unchanged, 0.
 * Returns 0, or -1 (out of memory, signing failed; *msg untouched).
 */
int dkim_keys_sign_message(const struct dkim_keys *k, const char *from_email,
    int64_t now_s, char **msg, size_t *len);

#endif
