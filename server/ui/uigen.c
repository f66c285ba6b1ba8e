/*
 * uigen.c - the build-time generator that embeds the operator pages of
 * server/ui (index.html, *.js, *.css, *.svg) into the binary:
 * `uigen OUT.h FILE...` writes OUT.h, a table of struct ui_asset (name,
 * Content-Type, bytes, length, ETag) that server/dashboard.c includes as
 * "ui_assets.h" (the Makefile puts $(BUILD)/gen on the include path). Not
 * part of txmail: the Makefile compiles it with the host compiler before
 * anything includes the header, so `make build` (and the Dockerfile, which
 * copies server/) needs nothing but a C compiler.
 *
 * Each file is copied byte for byte; its name must be [a-z0-9_-]+ with one
 * of the known extensions (the extension gives the Content-Type: a file
 * the server could not type is refused here rather than served as
 * something a browser might sniff). The ETag is a 64-bit FNV-1a of the
 * bytes, so a changed file gets a new tag and a cached copy is revalidated.
 *
 * It owns nothing at run time and must never write a half header: the
 * output is written to OUT.h.tmp and renamed, so a failed run leaves the
 * previous header (or none) and exits 1 with the reason on stderr.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UIGEN_MAX_FILE (2 * 1024 * 1024)   /* one asset, in bytes */
#define UIGEN_MAX_NAME 64

static const struct {
	const char *ext;
	const char *type;
} uigen_types[] = {
	{ ".html", "text/html; charset=utf-8" },
	{ ".js",   "text/javascript; charset=utf-8" },
	{ ".css",  "text/css; charset=utf-8" },
	{ ".svg",  "image/svg+xml" },
	{ ".png",  "image/png" },
	{ ".ico",  "image/x-icon" },
};

/* uigen_read - the whole of path into a new buffer (*out, *outlen; freed by the caller). */
static int uigen_read(const char *path, unsigned char **out, size_t *outlen, char *err,
		      size_t errlen)
{
	int rc = -1;
	size_t len = 0, cap = 8192;
	unsigned char *p = malloc(cap);
	FILE *f = fopen(path, "rb");

	if (!f || !p) {
		snprintf(err, errlen, "%.300s: %s", path, f ? "out of memory" : strerror(errno));
		goto out;
	}
	for (;;) {
		size_t n;
		if (len == cap) {
			unsigned char *q;
			if (cap >= UIGEN_MAX_FILE) {
				snprintf(err, errlen, "%.300s: over %d bytes", path, UIGEN_MAX_FILE);
				goto out;
			}
			q = realloc(p, cap * 2);
			if (!q) {
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			p = q;
			cap *= 2;
		}
		n = fread(p + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%.300s: read error", path);
		goto out;
	}
	*out = p;
	*outlen = len;
	p = NULL;
	rc = 0;
out:
	if (f)
		fclose(f);
	free(p);
	return rc;
}

/* uigen_name - "server/ui/app.js" -> "app.js" and its Content-Type; -1 unless known. */
static int uigen_name(const char *path, const char **name, const char **type, char *err,
		      size_t errlen)
{
	const char *base = strrchr(path, '/');
	const char *dot;
	size_t n;

	base = base ? base + 1 : path;
	n = strlen(base);
	dot = strrchr(base, '.');
	if (n == 0 || n >= UIGEN_MAX_NAME || dot == NULL || dot == base) {
		snprintf(err, errlen, "%.300s: not a NAME.EXT file", path);
		return -1;
	}
	for (const char *c = base; c < dot; c++) {
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' ||
		      *c == '-')) {
			snprintf(err, errlen, "%.300s: the name must be [a-z0-9_-]", path);
			return -1;
		}
	}
	for (size_t i = 0; i < sizeof(uigen_types) / sizeof(uigen_types[0]); i++) {
		if (strcmp(dot, uigen_types[i].ext) == 0) {
			*name = base;
			*type = uigen_types[i].type;
			return 0;
		}
	}
	snprintf(err, errlen, "%.300s: no Content-Type for this extension", path);
	return -1;
}

/*
 * uigen_emit - bytes as a C string literal, one source line per text line.
 * '?' is escaped (no trigraphs), and every byte outside printable ASCII but
 * '\n' and '\t' is a 3-digit octal escape (so a NUL or a high byte is data).
 */
static void uigen_emit(FILE *f, const unsigned char *s, size_t len)
{
	int open = 0;

	if (len == 0)
		fputs("\t\"\"\n", f);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];
		if (!open) {
			fputs("\t\"", f);
			open = 1;
		}
		if (c == '\n') {
			fputs("\\n\"\n", f);
			open = 0;
		} else if (c == '\\' || c == '"' || c == '?') {
			fputc('\\', f);
			fputc(c, f);
		} else if (c == '\t') {
			fputs("\\t", f);
		} else if (c < 0x20 || c >= 0x7f) {
			fprintf(f, "\\%03o", c);
		} else {
			fputc(c, f);
		}
	}
	if (open)
		fputs("\"\n", f);
}

static uint64_t uigen_fnv1a(const unsigned char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

int main(int argc, char **argv)
{
	int rc = 1;
	char err[512] = "";
	char tmp[4096];
	FILE *f = NULL;
	unsigned char *body = NULL;

	if (argc < 2) {
		fprintf(stderr, "usage: uigen OUT.h FILE...\n");
		return 2;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]) >= sizeof(tmp)) {
		snprintf(err, sizeof(err), "output path too long");
		goto out;
	}
	f = fopen(tmp, "w");
	if (!f) {
		snprintf(err, sizeof(err), "%.300s: %s", tmp, strerror(errno));
		goto out;
	}
	fputs("/*\n * ui_assets.h - GENERATED by server/ui/uigen.c from the files of server/ui:\n"
	      " * do not edit, edit the files. One entry per file: name, Content-Type,\n"
	      " * bytes, length, ETag. Included by server/dashboard.c only.\n */\n"
	      "#ifndef SERVER_UI_ASSETS_H\n#define SERVER_UI_ASSETS_H\n\n#include <stddef.h>\n\n"
	      "struct ui_asset {\n\tconst char *name;\n\tconst char *type;\n"
	      "\tconst char *data;\n\tsize_t len;\n\tconst char *etag;\n};\n", f);
	for (int i = 2; i < argc; i++) {
		const char *name, *type;
		size_t len;

		if (uigen_name(argv[i], &name, &type, err, sizeof(err)) < 0)
			goto out;
		free(body);
		body = NULL;
		if (uigen_read(argv[i], &body, &len, err, sizeof(err)) < 0)
			goto out;
		fprintf(f, "\n/* %s */\nstatic const char ui_asset_%d[] =\n", argv[i], i - 2);
		uigen_emit(f, body, len);
		fprintf(f, "\t;\n#define UI_ASSET_%d_LEN ((size_t)%zu)\n#define UI_ASSET_%d_ETAG "
			"\"\\\"%016llx\\\"\"\n", i - 2, len, i - 2,
			(unsigned long long)uigen_fnv1a(body, len));
		(void)type;
	}
	fputs("\nstatic const struct ui_asset ui_assets[] = {\n", f);
	for (int i = 2; i < argc; i++) {
		const char *name, *type;

		if (uigen_name(argv[i], &name, &type, err, sizeof(err)) < 0)
			goto out;
		fprintf(f, "\t{ \"%s\", \"%s\", ui_asset_%d, UI_ASSET_%d_LEN, UI_ASSET_%d_ETAG },\n",
			name, type, i - 2, i - 2, i - 2);
	}
	fputs("\t{ NULL, NULL, NULL, 0, NULL }\n};\n\n#endif\n", f);
	if (ferror(f)) {
		snprintf(err, sizeof(err), "%.300s: write error", tmp);
		goto out;
	}
	if (fclose(f) != 0) {
		f = NULL;
		snprintf(err, sizeof(err), "%.300s: %s", tmp, strerror(errno));
		goto out;
	}
	f = NULL;
	if (rename(tmp, argv[1]) != 0) {
		snprintf(err, sizeof(err), "rename %.300s: %s", argv[1], strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (f)
		fclose(f);
	if (rc != 0) {
		remove(tmp);
		fprintf(stderr, "uigen: %s\n", err);
	}
	free(body);
	return rc;
}
