/*
 * api_page.c - cursor pagination of the list endpoints (api_page.h).
 * base64url through OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock, with the
 * alphabet mapped and the padding dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "api.h"
#include "api_page.h"

#define PAGE_RAW_MAX (64 + 1 + API_PAGE_KEY_MAX)            /* kind \n key */
#define PAGE_B64_MAX (4 * ((PAGE_RAW_MAX + 2) / 3) + 1)

int
api_page_cursor_make(const char *kind, const char *key, char *out, size_t outlen)
{
	unsigned char raw[PAGE_RAW_MAX];
	size_t kl = strlen(kind), n = strlen(key);
	int len;

	if (kl > 64 || n > API_PAGE_KEY_MAX || outlen < 4 * ((kl + 1 + n + 2) / 3) + 1)
		return -1;
	memcpy(raw, kind, kl);
	raw[kl] = '\n';
	memcpy(raw + kl + 1, key, n);
	len = EVP_EncodeBlock((unsigned char *)out, raw, (int)(kl + 1 + n));
	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (char *p = out; *p != '\0'; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	return 0;
}

int
api_page_cursor_read(const char *kind, const char *cursor, char *out, size_t outlen)
{
	char b64[PAGE_B64_MAX + 3];
	unsigned char raw[PAGE_B64_MAX];
	size_t n = strlen(cursor), kl = strlen(kind), pad;
	int len;

	if (n == 0 || n > PAGE_B64_MAX - 1 || n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = cursor[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_'))
			return -1;
		b64[i] = c == '-' ? '+' : c == '_' ? '/' : c;
	}
	pad = (4 - n % 4) % 4;
	memset(b64 + n, '=', pad);
	b64[n + pad] = '\0';
	len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)(n + pad));
	if (len < 0 || (size_t)len < pad)
		return -1;
	len -= (int)pad;   /* EVP_DecodeBlock counts the padding as data */
	if ((size_t)len < kl + 1 || memcmp(raw, kind, kl) != 0 || raw[kl] != '\n' ||
	    (size_t)len - kl - 1 >= outlen || memchr(raw + kl + 1, '\0', (size_t)len - kl - 1) != NULL)
		return -1;
	memcpy(out, raw + kl + 1, (size_t)len - kl - 1);
	out[len - (int)kl - 1] = '\0';
	return 0;
}

int
api_page_parse(const struct api_request *req, const char *kind, struct api_page *p,
    struct api_response *resp)
{
	const char *lim = api_request_query(req, "limit");
	const char *cur = api_request_query(req, "cursor");
	char msg[96];

	memset(p, 0, sizeof(*p));
	p->limit = API_PAGE_DEFAULT;
	if (lim != NULL) {
		char *end = NULL;
		long v;

		v = lim[0] >= '0' && lim[0] <= '9' ? strtol(lim, &end, 10) : 0;
		if (end == NULL || *end != '\0' || v < 1 || v > API_PAGE_MAX) {
			snprintf(msg, sizeof(msg), "must be an integer from 1 to %d", API_PAGE_MAX);
			api_error(resp, 422, "validation_error", msg, "limit");
			return -1;
		}
		p->limit = (size_t)v;
	}
	if (cur != NULL) {
		if (api_page_cursor_read(kind, cur, p->after, sizeof(p->after)) != 0) {
			api_error(resp, 422, "validation_error",
			    "not a cursor of this list (use the next_cursor of the page before)", "cursor");
			return -1;
		}
		p->has_after = 1;
	}
	return 0;
}

int
api_page_finish(cJSON *root, const char *kind, const char *last_key)
{
	char c[PAGE_B64_MAX];

	if (last_key == NULL)
		return cJSON_AddNullToObject(root, "next_cursor") != NULL ? 0 : -1;
	if (api_page_cursor_make(kind, last_key, c, sizeof(c)) != 0)
		return -1;
	return cJSON_AddStringToObject(root, "next_cursor", c) != NULL ? 0 : -1;
}

void
api_page_answer(struct api_response *resp, cJSON *root, const char *kind, const char *last_key)
{
	if (api_page_finish(root, kind, last_key) != 0) {
		cJSON_Delete(root);
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		return;
	}
	api_json(resp, 200, root);
}
