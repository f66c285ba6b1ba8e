/*
 * etag.h - entity tags for GET answers (RFC 9110 8.8.3, 13.1.2): a strong
 * ETag computed over the exact body bytes, and the If-None-Match test.
 *
 * Pure: no I/O, no allocation. http.c uses it for the routes marked
 * ROUTE_ETAG (GET /v1/messages/{id}): the tag is made from the answer the
 * handler built, so it changes exactly when the body does (a recipient's
 * status, an event), and a match is answered 304 with no body.
 */
#ifndef SERVER_ETAG_H
#define SERVER_ETAG_H

#include <stddef.h>

#define ETAG_HEX 32                   /* 128 bits of SHA-256 */
#define ETAG_LEN (ETAG_HEX + 2)       /* with the double quotes */
#define ETAG_HEADER_MAX 4096          /* a longer If-None-Match is not looked into (no match) */

/* etag_make - "\"<32 hex of SHA-256(body)>\"" into out (>= ETAG_LEN + 1 bytes). 0, or -1 (hashing failed, out too small). */
int etag_make(const char *body, size_t len, char *out, size_t outlen);

/*
 * etag_none_match - 1 when the If-None-Match value inm (NULL: absent)
 * matches etag (as etag_make gives it): "*", or one of its comma-separated
 * entity tags equals etag by the weak comparison (a W/ prefix is ignored),
 * which RFC 9110 13.1.2 asks for. 0 otherwise, also for a malformed list
 * (a match followed by junk included).
 */
int etag_none_match(const char *inm, const char *etag);

#endif
