/*
 * api_devmail.c - /dev/mail: the mail the dev sink captured, as JSON (`run --dev` only).
 *
 * Reads the directory the dev sink writes ($TXMAIL_DATA_DIR/mail, one
 * file "<unix ms>-<seq>.eml" per message, sink.c) and answers:
 *   GET    /dev/mail                       newest first; ?limit= (1..100, 50),
 *                                          ?before=<id> (the page after), ?q= (from,
 *                                          to or subject contains it, any case)
 *   GET    /dev/mail/{id}                  headers, text, html, attachments, raw
 *   GET    /dev/mail/{id}/raw              the file as message/rfc822
 *   GET    /dev/mail/{id}/attachments/{n}  attachment n, decoded
 *   DELETE /dev/mail                       every captured message
 * An id is the file name without ".eml" and must be exactly two runs of
 * digits joined by '-' (no other byte reaches a path); files are opened
 * with O_NOFOLLOW and must be regular. Bounded: a list entry reads at
 * most DEVMAIL_HEAD_MAX octets of its file, one q= page reads at most
 * DEVMAIL_SEARCH_MAX files, a message is parsed and returned up to
 * DEVMAIL_READ_MAX octets (the JSON says truncated; /raw answers 413),
 * at most DEVMAIL_DIR_MAX names are listed.
 *
 * Project scoping: the sink cannot tell whose mail it captured, so the
 * captured mail is the dev project's, "default" (that of the dev key and
 * of TXMAIL_API_KEYS keys): keys of that project and admin keys see it,
 * a key of any other project gets the 404 of a missing route.
 *
 * Must never: answer outside dev mode (cfg->dev), build a path from
 * anything but a validated id, follow a symlink, or read a file whole
 * without the cap. Touches no Redis.
 */
#include "api.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "mailparse.h"
#include "util.h"

#define DEVMAIL_LIMIT_DEFAULT 50
#define DEVMAIL_LIMIT_MAX 100
#define DEVMAIL_DIR_MAX 100000                  /* names listed from the directory */
#define DEVMAIL_HEAD_MAX ((size_t)64 * 1024)    /* read of one file for a list entry */
#define DEVMAIL_SEARCH_MAX 2000                 /* files read for one ?q= page */
#define DEVMAIL_READ_MAX ((size_t)16 * 1024 * 1024)   /* a message parsed and returned */
#define DEVMAIL_Q_MAX 200
#define DEVMAIL_TEXT_MAX 1024                   /* from, to, subject in a list entry */

struct devmail_ent {
	uint64_t ms, seq;
};

/* devmail_num - a run of 1..19 digits without a leading zero (but "0") at s[0..n): 0 and *v, or -1. */
static int
devmail_num(const char *s, size_t n, uint64_t *v)
{
	uint64_t x = 0;

	if (n == 0 || n > 19 || (s[0] == '0' && n > 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	*v = x;
	return 0;
}

/* devmail_id_parse - id[0..n) as "<ms>-<seq>": 0 with both numbers, or -1. */
static int
devmail_id_parse(const char *id, size_t n, struct devmail_ent *e)
{
	const char *dash = memchr(id, '-', n);

	if (dash == NULL)
		return -1;
	if (devmail_num(id, (size_t)(dash - id), &e->ms) != 0 ||
	    devmail_num(dash + 1, n - (size_t)(dash + 1 - id), &e->seq) != 0)
		return -1;
	return 0;
}

int
api_devmail_id_ok(const char *id)
{
	struct devmail_ent e;

	return id != NULL && strnlen(id, 41) <= 40 && devmail_id_parse(id, strlen(id), &e) == 0;
}

static void
devmail_id(const struct devmail_ent *e, char *buf, size_t len)
{
	snprintf(buf, len, "%llu-%llu", (unsigned long long)e->ms, (unsigned long long)e->seq);
}

/* newest first: larger ms, then larger seq */
static int
devmail_cmp(const void *a, const void *b)
{
	const struct devmail_ent *x = a, *y = b;

	if (x->ms != y->ms)
		return x->ms < y->ms ? 1 : -1;
	if (x->seq != y->seq)
		return x->seq < y->seq ? 1 : -1;
	return 0;
}

static void
devmail_dir(const struct config *cfg, char *buf, size_t len)
{
	snprintf(buf, len, "%s/mail", cfg->data_dir);
}

/*
 * devmail_read - up to cap octets of the file of e into malloc'd *buf
 * (NUL-terminated, *len octets; *size: the file's size). 0, -ENOENT (no
 * such regular file), -ENOMEM or -EIO.
 */
static int
devmail_read(const struct config *cfg, const struct devmail_ent *e, size_t cap, char **buf,
    size_t *len, size_t *size)
{
	char dir[PATH_MAX + 8], id[48], path[PATH_MAX + 64];
	struct stat st;
	size_t want, got = 0;
	char *b = NULL;
	int fd, rc = -EIO;

	*buf = NULL;
	devmail_dir(cfg, dir, sizeof(dir));
	devmail_id(e, id, sizeof(id));
	snprintf(path, sizeof(path), "%s/%s.eml", dir, id);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT || errno == ELOOP || errno == ENOTDIR ? -ENOENT : -EIO;
	if (fstat(fd, &st) != 0)
		goto out;
	if (!S_ISREG(st.st_mode)) {
		rc = -ENOENT;
		goto out;
	}
	*size = (size_t)st.st_size;
	want = *size < cap ? *size : cap;
	b = malloc(want + 1);
	if (b == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	while (got < want) {
		ssize_t r = read(fd, b + got, want - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;   /* shorter than fstat said: what is there */
		got += (size_t)r;
	}
	b[got] = '\0';
	*buf = b;
	*len = got;
	b = NULL;
	rc = 0;
out:
	free(b);
	close(fd);
	return rc;
}

/*
 * devmail_scan - the captured messages, newest first, into malloc'd *out
 * (*n of them, at most DEVMAIL_DIR_MAX). 0 (a missing directory is
 * empty), -ENOMEM or -EIO.
 */
static int
devmail_scan(const struct config *cfg, struct devmail_ent **out, size_t *n)
{
	char dir[PATH_MAX + 8];
	struct devmail_ent *v = NULL;
	size_t cap = 0, k = 0;
	struct dirent *d;
	DIR *dh;

	*out = NULL;
	*n = 0;
	devmail_dir(cfg, dir, sizeof(dir));
	dh = opendir(dir);
	if (dh == NULL)
		return errno == ENOENT ? 0 : -EIO;
	while ((d = readdir(dh)) != NULL && k < DEVMAIL_DIR_MAX) {
		size_t nl = strlen(d->d_name);
		struct devmail_ent e;

		if (nl < 5 || nl > 44 || strcmp(d->d_name + nl - 4, ".eml") != 0 ||
		    devmail_id_parse(d->d_name, nl - 4, &e) != 0)
			continue;
		if (k == cap) {
			size_t nc = cap != 0 ? cap * 2 : 256;
			struct devmail_ent *nv = realloc(v, nc * sizeof(*v));

			if (nv == NULL) {
				free(v);
				closedir(dh);
				return -ENOMEM;
			}
			v = nv;
			cap = nc;
		}
		v[k++] = e;
	}
	closedir(dh);
	if (k > 1)
		qsort(v, k, sizeof(*v), devmail_cmp);
	*out = v;
	*n = k;
	return 0;
}

/* devmail_hdr - the decoded text of top-level field name, "" when absent. */
static void
devmail_hdr(const struct mailparse_msg *m, const char *msg, const char *name, char *out,
    size_t outlen)
{
	int i = mailparse_find(m, msg, name);

	out[0] = '\0';
	if (i >= 0)
		mailparse_header_text(msg, m->headers[i].value, out, outlen);
}

/* devmail_gate - 0 when the request may see captured mail; else the 404 is answered. */
static int
devmail_gate(const struct api_request *req, struct api_response *resp)
{
	if (req->cfg == NULL || !req->cfg->dev || !api_project_sees(req, STORE_PROJECT_DEFAULT)) {
		api_error(resp, 404, "not_found", "no such route", NULL);
		return -1;
	}
	return 0;
}

static void
devmail_read_error(struct api_response *resp, int rc)
{
	if (rc == -ENOENT)
		api_error(resp, 404, "not_found", "no such captured message", NULL);
	else if (rc == -ENOMEM)
		api_error(resp, 500, "internal_error", "out of memory", NULL);
	else
		api_error(resp, 500, "internal_error", "cannot read the captured message", NULL);
}

static int
devmail_add_str(cJSON *o, const char *name, const char *v)
{
	return cJSON_AddStringToObject(o, name, v) != NULL ? 0 : -1;
}

/* devmail_time - RFC 3339 of the capture time in the id. */
static void
devmail_time(const struct devmail_ent *e, char *buf, size_t len)
{
	util_rfc3339(e->ms > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)e->ms, buf, len);
}

/* devmail_summary - {id, from, to, subject, time, size} of e, into *out (NULL: skip it). */
static int
devmail_summary(const struct api_request *req, const struct devmail_ent *e,
    struct mailparse_msg *m, const char *q, cJSON **out)
{
	char id[48], tm[40], from[DEVMAIL_TEXT_MAX], to[DEVMAIL_TEXT_MAX], subj[DEVMAIL_TEXT_MAX];
	size_t len = 0, size = 0;
	char *buf = NULL;
	cJSON *o;
	int rc;

	*out = NULL;
	rc = devmail_read(req->cfg, e, DEVMAIL_HEAD_MAX, &buf, &len, &size);
	if (rc == -ENOENT)
		return 0;   /* deleted meanwhile */
	if (rc != 0)
		return rc;
	mailparse_parse(buf, len, m);
	devmail_hdr(m, buf, "From", from, sizeof(from));
	devmail_hdr(m, buf, "To", to, sizeof(to));
	devmail_hdr(m, buf, "Subject", subj, sizeof(subj));
	free(buf);
	if (q != NULL && strcasestr(from, q) == NULL && strcasestr(to, q) == NULL &&
	    strcasestr(subj, q) == NULL)
		return 0;
	devmail_id(e, id, sizeof(id));
	devmail_time(e, tm, sizeof(tm));
	o = cJSON_CreateObject();
	if (o == NULL || devmail_add_str(o, "id", id) || devmail_add_str(o, "from", from) ||
	    devmail_add_str(o, "to", to) || devmail_add_str(o, "subject", subj) ||
	    devmail_add_str(o, "time", tm) || cJSON_AddNumberToObject(o, "size", (double)size) == NULL) {
		cJSON_Delete(o);
		return -ENOMEM;
	}
	*out = o;
	return 0;
}

/* devmail_query - the query argument name, or NULL. */
static const char *
devmail_query(const struct api_request *req, const char *name)
{
	return api_request_query(req, name);
}

void
api_devmail_list(const struct api_request *req, struct api_response *resp)
{
	const char *ls = devmail_query(req, "limit"), *bs = devmail_query(req, "before");
	const char *q = devmail_query(req, "q");
	struct devmail_ent *v = NULL, before = { UINT64_MAX, UINT64_MAX };
	struct mailparse_msg *m = NULL;
	cJSON *root = NULL, *data;
	size_t n = 0, i, got = 0, read = 0;
	long limit = DEVMAIL_LIMIT_DEFAULT;
	int rc, more = 0;
	char next[48] = "";

	if (devmail_gate(req, resp) != 0)
		return;
	if (ls != NULL) {
		char *end = NULL;

		errno = 0;
		limit = strtol(ls, &end, 10);
		if (errno != 0 || end == ls || *end != '\0' || limit < 1 || limit > DEVMAIL_LIMIT_MAX) {
			api_error(resp, 422, "validation_error", "limit must be an integer from 1 to 100",
			    "limit");
			return;
		}
	}
	if (bs != NULL && (strlen(bs) > 40 || devmail_id_parse(bs, strlen(bs), &before) != 0)) {
		api_error(resp, 422, "validation_error", "before must be a captured message id", "before");
		return;
	}
	if (q != NULL && strlen(q) > DEVMAIL_Q_MAX) {
		api_error(resp, 422, "validation_error", "q is longer than 200 octets", "q");
		return;
	}
	if (q != NULL && q[0] == '\0')
		q = NULL;
	rc = devmail_scan(req->cfg, &v, &n);
	if (rc != 0) {
		devmail_read_error(resp, rc == -ENOMEM ? -ENOMEM : -EIO);
		return;
	}
	m = malloc(sizeof(*m));
	root = cJSON_CreateObject();
	data = root != NULL ? cJSON_AddArrayToObject(root, "data") : NULL;
	if (m == NULL || data == NULL)
		goto oom;
	for (i = 0; i < n; i++) {
		cJSON *o = NULL;

		if (devmail_cmp(&v[i], &before) <= 0)
			continue;   /* not older than the cursor */
		if (got == (size_t)limit || read == DEVMAIL_SEARCH_MAX) {
			more = 1;
			break;
		}
		rc = devmail_summary(req, &v[i], m, q, &o);
		if (rc == -ENOMEM)
			goto oom;
		read++;
		devmail_id(&v[i], next, sizeof(next));   /* the last one looked at */
		if (o != NULL) {
			cJSON_AddItemToArray(data, o);
			got++;
		}
	}
	if (cJSON_AddNumberToObject(root, "total", (double)n) == NULL ||
	    (more ? cJSON_AddStringToObject(root, "next_before", next) :
	    cJSON_AddNullToObject(root, "next_before")) == NULL)
		goto oom;
	free(v);
	free(m);
	api_json(resp, 200, root);
	return;
oom:
	free(v);
	free(m);
	cJSON_Delete(root);
	api_error(resp, 500, "internal_error", "out of memory", NULL);
}

/* devmail_part_name - the attachment's file name, or one made up from its index and type. */
static void
devmail_part_name(const struct mailparse_part *p, size_t idx, char *buf, size_t len)
{
	if (p->filename[0] != '\0')
		util_strlcpy(buf, p->filename, len);
	else
		snprintf(buf, len, "part-%zu%s", idx + 1,
		    strcmp(p->type, "message/rfc822") == 0 ? ".eml" : "");
}

/* devmail_is_attachment - 1 when part i is listed under attachments (neither body). */
static int
devmail_is_attachment(const struct mailparse_msg *m, size_t i)
{
	return (int)i != m->text && (int)i != m->html;
}

/*
 * devmail_load - the request's message (its id in req->param, or for the
 * attachment route the segment after /dev/mail/): parsed into malloc'd
 * *m, its bytes in *buf. 0, or -1 with the answer given.
 */
static int
devmail_load(const struct api_request *req, struct api_response *resp, const char *id,
    struct devmail_ent *e, char **buf, size_t *len, size_t *size, struct mailparse_msg **m)
{
	int rc;

	*buf = NULL;
	*m = NULL;
	if (id == NULL || strlen(id) > 40 || devmail_id_parse(id, strlen(id), e) != 0) {
		api_error(resp, 404, "not_found", "no such captured message", NULL);
		return -1;
	}
	rc = devmail_read(req->cfg, e, DEVMAIL_READ_MAX, buf, len, size);
	if (rc != 0) {
		devmail_read_error(resp, rc);
		return -1;
	}
	*m = malloc(sizeof(**m));
	if (*m == NULL) {
		free(*buf);
		*buf = NULL;
		devmail_read_error(resp, -ENOMEM);
		return -1;
	}
	mailparse_parse(*buf, *len, *m);
	return 0;
}

/* devmail_add_body - "text"/"html": part idx decoded as UTF-8, or null. */
static int
devmail_add_body(cJSON *o, const char *name, const char *buf, const struct mailparse_msg *m, int idx)
{
	char *t = NULL;
	size_t tn = 0;
	cJSON *s;

	if (idx < 0)
		return cJSON_AddNullToObject(o, name) != NULL ? 0 : -1;
	if (mailparse_body(buf, &m->parts[idx], 1, &t, &tn) != 0)
		return -1;
	s = cJSON_AddStringToObject(o, name, t);
	free(t);
	return s != NULL ? 0 : -1;
}

void
api_devmail_get(const struct api_request *req, struct api_response *resp)
{
	struct devmail_ent e;
	struct mailparse_msg *m = NULL;
	char *buf = NULL, *raw = NULL, *text = NULL;
	char id[48], tm[40];
	size_t len = 0, size = 0, rawn = 0;
	cJSON *o = NULL, *hs, *as;

	if (devmail_gate(req, resp) != 0)
		return;
	if (devmail_load(req, resp, req->param, &e, &buf, &len, &size, &m) != 0)
		return;
	text = malloc(MAILPARSE_VALUE_MAX);
	o = cJSON_CreateObject();
	if (text == NULL || o == NULL)
		goto oom;
	devmail_id(&e, id, sizeof(id));
	devmail_time(&e, tm, sizeof(tm));
	if (devmail_add_str(o, "id", id) || devmail_add_str(o, "time", tm) ||
	    cJSON_AddNumberToObject(o, "size", (double)size) == NULL ||
	    cJSON_AddBoolToObject(o, "truncated", size > len || m->truncated) == NULL)
		goto oom;
	{
		static const char *const fields[][2] = { { "From", "from" }, { "To", "to" },
		    { "Cc", "cc" }, { "Subject", "subject" }, { "Date", "date" },
		    { "Message-ID", "message_id" } };

		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			devmail_hdr(m, buf, fields[i][0], text, MAILPARSE_VALUE_MAX);
			if (devmail_add_str(o, fields[i][1], text))
				goto oom;
		}
	}
	hs = cJSON_AddArrayToObject(o, "headers");
	if (hs == NULL)
		goto oom;
	for (size_t i = 0; i < m->nheaders; i++) {
		char *name;
		cJSON *h = cJSON_CreateObject();

		if (h == NULL || !cJSON_AddItemToArray(hs, h)) {
			cJSON_Delete(h);
			goto oom;
		}
		name = mailparse_utf8(buf + m->headers[i].name.off, m->headers[i].name.len, NULL);
		mailparse_header_text(buf, m->headers[i].value, text, MAILPARSE_VALUE_MAX);
		if (name == NULL || devmail_add_str(h, "name", name) || devmail_add_str(h, "value", text)) {
			free(name);
			goto oom;
		}
		free(name);
	}
	if (devmail_add_body(o, "text", buf, m, m->text) || devmail_add_body(o, "html", buf, m, m->html))
		goto oom;
	as = cJSON_AddArrayToObject(o, "attachments");
	if (as == NULL)
		goto oom;
	for (size_t i = 0, k = 0; i < m->nparts; i++) {
		const struct mailparse_part *p = &m->parts[i];
		char name[MAILPARSE_NAME_MAX + 16], *bytes = NULL;
		size_t bn = 0;
		cJSON *a;

		if (!devmail_is_attachment(m, i))
			continue;
		if (mailparse_body(buf, p, 0, &bytes, &bn) != 0)
			goto oom;
		free(bytes);
		devmail_part_name(p, i, name, sizeof(name));
		a = cJSON_CreateObject();
		if (a == NULL || !cJSON_AddItemToArray(as, a)) {
			cJSON_Delete(a);
			goto oom;
		}
		if (cJSON_AddNumberToObject(a, "index", (double)k) == NULL || devmail_add_str(a, "name", name) ||
		    devmail_add_str(a, "type", p->type) || cJSON_AddNumberToObject(a, "size", (double)bn) == NULL ||
		    (p->content_id[0] != '\0' && devmail_add_str(a, "content_id", p->content_id)))
			goto oom;
		k++;
	}
	raw = mailparse_utf8(buf, len, &rawn);
	if (raw == NULL || devmail_add_str(o, "raw", raw))
		goto oom;
	free(raw);
	free(text);
	free(buf);
	free(m);
	api_json(resp, 200, o);
	return;
oom:
	free(raw);
	free(text);
	free(buf);
	free(m);
	cJSON_Delete(o);
	api_error(resp, 500, "internal_error", "out of memory", NULL);
}

/* devmail_bytes - respond with status and n bytes (taken, malloc'd, may hold NULs). */
static void
devmail_bytes(struct api_response *resp, int status, char *b, size_t n)
{
	api_body(resp, status, b);
	resp->body_len = n;
	api_header(resp, "X-Content-Type-Options", "nosniff");
	api_header(resp, "Content-Security-Policy", "default-src 'none'; sandbox");
	api_header(resp, "Cache-Control", "no-store");
}

void
api_devmail_raw(const struct api_request *req, struct api_response *resp)
{
	struct devmail_ent e;
	char *buf = NULL;
	size_t len = 0, size = 0;
	int rc;

	if (devmail_gate(req, resp) != 0)
		return;
	if (req->param == NULL || strlen(req->param) > 40 ||
	    devmail_id_parse(req->param, strlen(req->param), &e) != 0) {
		api_error(resp, 404, "not_found", "no such captured message", NULL);
		return;
	}
	rc = devmail_read(req->cfg, &e, DEVMAIL_READ_MAX, &buf, &len, &size);
	if (rc != 0) {
		devmail_read_error(resp, rc);
		return;
	}
	if (size > len) {
		free(buf);
		api_error(resp, 413, "payload_too_large",
		    "the captured message is larger than 16 MiB; read its file in TXMAIL_DATA_DIR/mail", NULL);
		return;
	}
	devmail_bytes(resp, 200, buf, len);
	api_header(resp, "Content-Type", "message/rfc822");
}

/* devmail_token_ok - 1 when t is "type/subtype" of RFC 2045 token characters. */
static int
devmail_token_ok(const char *t)
{
	int slash = 0;

	if (t[0] == '\0' || t[0] == '/')
		return 0;
	for (const char *p = t; *p != '\0'; p++) {
		if (*p == '/') {
			if (slash++ || p[1] == '\0')
				return 0;
		} else if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    strchr("!#$&^_.+-", *p) != NULL)) {
			return 0;
		}
	}
	return slash == 1;
}

/* devmail_disposition - attachment; filename="ascii"; filename*=UTF-8''pct (cut to fit len). */
static void
devmail_disposition(const char *name, char *buf, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	char ascii[101], pct[301];
	size_t a = 0, p = 0;

	for (const char *s = name; *s != '\0' && a + 1 < sizeof(ascii); s++)
		ascii[a++] = ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= '0' && *s <= '9') || *s == '.' || *s == '-' || *s == '_') ? *s : '_';
	ascii[a] = '\0';
	for (const unsigned char *s = (const unsigned char *)name; *s != '\0'; s++) {
		int plain = (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= '0' && *s <= '9') || *s == '.' || *s == '-' || *s == '_';

		/* stop before a character that does not fit whole (a lead byte starts one) */
		if ((*s & 0xc0) != 0x80 && p + 12 >= sizeof(pct))
			break;
		if (p + 4 > sizeof(pct))
			break;
		if (plain) {
			pct[p++] = (char)*s;
		} else {
			pct[p++] = '%';
			pct[p++] = hex[*s >> 4];
			pct[p++] = hex[*s & 15];
		}
	}
	pct[p] = '\0';
	snprintf(buf, len, "attachment; filename=\"%s\"; filename*=UTF-8''%s", ascii, pct);
}

void
api_devmail_attachment(const struct api_request *req, struct api_response *resp)
{
	const char *pre = "/dev/mail/", *p, *slash;
	struct devmail_ent e;
	struct mailparse_msg *m = NULL;
	char id[48], name[MAILPARSE_NAME_MAX + 16], disp[512], *buf = NULL, *bytes = NULL, *end = NULL;
	size_t len = 0, size = 0, bn = 0, i, k = 0;
	unsigned long want;

	if (devmail_gate(req, resp) != 0)
		return;
	p = strncmp(req->path, pre, strlen(pre)) == 0 ? req->path + strlen(pre) : "";
	slash = strchr(p, '/');
	if (slash == NULL || (size_t)(slash - p) >= sizeof(id)) {
		api_error(resp, 404, "not_found", "no such captured message", NULL);
		return;
	}
	memcpy(id, p, (size_t)(slash - p));
	id[slash - p] = '\0';
	errno = 0;
	want = req->param != NULL && req->param[0] >= '0' && req->param[0] <= '9' &&
	    strlen(req->param) <= 4 ? strtoul(req->param, &end, 10) : ULONG_MAX;
	if (want == ULONG_MAX || end == NULL || *end != '\0') {
		api_error(resp, 404, "not_found", "no such attachment", NULL);
		return;
	}
	if (devmail_load(req, resp, id, &e, &buf, &len, &size, &m) != 0)
		return;
	for (i = 0; i < m->nparts; i++) {
		if (!devmail_is_attachment(m, i))
			continue;
		if (k++ == want)
			break;
	}
	if (i == m->nparts) {
		free(buf);
		free(m);
		api_error(resp, 404, "not_found", "no such attachment", NULL);
		return;
	}
	if (mailparse_body(buf, &m->parts[i], 0, &bytes, &bn) != 0) {
		free(buf);
		free(m);
		devmail_read_error(resp, -ENOMEM);
		return;
	}
	devmail_part_name(&m->parts[i], i, name, sizeof(name));
	devmail_disposition(name, disp, sizeof(disp));
	devmail_bytes(resp, 200, bytes, bn);
	api_header(resp, "Content-Type", devmail_token_ok(m->parts[i].type) ? m->parts[i].type :
	    "application/octet-stream");
	api_header(resp, "Content-Disposition", disp);
	free(buf);
	free(m);
}

void
api_devmail_delete(const struct api_request *req, struct api_response *resp)
{
	struct devmail_ent *v = NULL;
	char dir[PATH_MAX + 8], id[48], path[PATH_MAX + 64];
	size_t n = 0, deleted = 0;
	cJSON *o;
	int rc;

	if (devmail_gate(req, resp) != 0)
		return;
	rc = devmail_scan(req->cfg, &v, &n);
	if (rc != 0) {
		devmail_read_error(resp, rc == -ENOMEM ? -ENOMEM : -EIO);
		return;
	}
	devmail_dir(req->cfg, dir, sizeof(dir));
	for (size_t i = 0; i < n; i++) {
		devmail_id(&v[i], id, sizeof(id));
		snprintf(path, sizeof(path), "%s/%s.eml", dir, id);
		if (unlink(path) == 0)
			deleted++;
	}
	free(v);
	log_info("captured mail deleted", "deleted=%zu request_id=%s", deleted,
	    req->request_id != NULL ? req->request_id : "");
	o = cJSON_CreateObject();
	if (o == NULL || cJSON_AddNumberToObject(o, "deleted", (double)deleted) == NULL) {
		cJSON_Delete(o);
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		return;
	}
	api_json(resp, 200, o);
}
