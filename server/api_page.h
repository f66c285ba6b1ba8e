/*
 * api_page.h - cursor pagination, the same for every list endpoint
 * (GET /v1/messages, /v1/templates, /v1/suppressions, /v1/webhooks,
 * /v1/webhooks/{id}/deliveries): `?limit=` 1..API_PAGE_MAX (default
 * API_PAGE_DEFAULT) and `?cursor=` as the previous page's `next_cursor`;
 * the answer is {"data":[...],"next_cursor":"..."|null}.
 *
 * A cursor is opaque to clients: base64url (no padding) of
 * "<kind>\n<key>", where kind names the list (so a cursor of one list is
 * refused by another, 422) and key is the sort key of the last item of the
 * page before (a template name, an address, an id); the next page starts
 * after it. Pure: no store, no allocation but the cursor text.
 */
#ifndef SERVER_API_PAGE_H
#define SERVER_API_PAGE_H

#include <stddef.h>

#include <cjson/cJSON.h>

struct api_request;    /* api.h: resources include it themselves */
struct api_response;

#define API_PAGE_MAX 100
#define API_PAGE_DEFAULT 100
#define API_PAGE_KEY_MAX 512    /* the longest key a cursor carries */

struct api_page {
	size_t limit;                      /* 1..API_PAGE_MAX */
	int has_after;                     /* a cursor was given: start after `after` */
	char after[API_PAGE_KEY_MAX + 1];  /* NUL-terminated; "" when !has_after */
};

/*
 * api_page_parse - the request's ?limit and ?cursor for the list kind (a
 * short constant, e.g. "templates"). 0, or -1 with a 422 validation_error
 * in resp naming the field (`limit`: not an integer 1..API_PAGE_MAX;
 * `cursor`: not a cursor of this list).
 */
int api_page_parse(const struct api_request *req, const char *kind, struct api_page *p,
    struct api_response *resp);

/* api_page_cursor_make - the cursor of key for kind into out (size >= api_page_cursor_len). 0, or -1 when key is too long. */
int api_page_cursor_make(const char *kind, const char *key, char *out, size_t outlen);

/* api_page_cursor_read - key of cursor for kind into out (API_PAGE_KEY_MAX + 1). 0, or -1 when it is not one of kind's. */
int api_page_cursor_read(const char *kind, const char *cursor, char *out, size_t outlen);

/*
 * api_page_finish - add "next_cursor" to the list object root: the cursor
 * of last_key when there is a next page (last_key not NULL), else null.
 * 0, or -1 (out of memory, or a key too long).
 */
int api_page_finish(cJSON *root, const char *kind, const char *last_key);

/*
 * api_page_answer - api_page_finish, then a 200 with root (a 500 when out
 * of memory). Takes root (deletes it) either way.
 */
void api_page_answer(struct api_response *resp, cJSON *root, const char *kind,
    const char *last_key);

#endif
