/*
 * luagen.c - the build-time generator that embeds the .lua files of server/lua into the
 * binary: `luagen OUT.h NAME.lua...` writes OUT.h, one
 * `static const char store_lua_<NAME>[]` C string per script, for the
 * script table in the store (which includes it as "store_lua.h"; the
 * Makefile puts $(BUILD)/gen on the include path). Not part of txmail: the
 * Makefile compiles it with the host compiler before anything includes
 * the header, so `make build` needs nothing but a C compiler (no xxd, no
 * scripting language).
 *
 * What is embedded, per script: the file without its opening comment (the
 * leading run of `--` and blank lines: the header giving KEYS, ARGV, the
 * reply and the invariants stays in the source, so the text sent to
 * SCRIPT LOAD - and its SHA - does not change when a comment does), with
 * every line that reads exactly `-- @include PATH` replaced by the file
 * PATH (relative to server/lua, e.g. lib/bucket.lua), itself without its
 * opening comment. Included files may not include further. Everything
 * else is copied byte for byte, comments in the code included.
 *
 * It owns nothing at run time and must never write a half header: the
 * output is written to OUT.h.tmp and renamed, so a failed run leaves the
 * previous header (or none) and exits 1 with the reason on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LUAGEN_MAX_FILE (1024 * 1024)   /* a script, or a snippet, in bytes */
#define LUAGEN_MAX_NAME 64
#define LUAGEN_INCLUDE  "-- @include "

struct luagen_buf {
	char *p;
	size_t len, cap;
};

static int luagen_add(struct luagen_buf *b, const char *s, size_t n, char *err, size_t errlen)
{
	if (n > LUAGEN_MAX_FILE * 4 || b->len + n > LUAGEN_MAX_FILE * 4) {
		snprintf(err, errlen, "script too large");
		return -1;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

/* luagen_read - the whole of path into a new buffer (*out, freed by the caller). */
static int luagen_read(const char *path, struct luagen_buf *out, char *err, size_t errlen)
{
	int rc = -1;
	char chunk[8192];
	FILE *f = fopen(path, "rb");

	if (!f) {
		snprintf(err, errlen, "%.300s: %s", path, strerror(errno));
		return -1;
	}
	for (;;) {
		size_t n = fread(chunk, 1, sizeof(chunk), f);
		if (n > 0 && luagen_add(out, chunk, n, err, errlen) < 0)
			goto out;
		if (out->len > LUAGEN_MAX_FILE) {
			snprintf(err, errlen, "%.300s: over %d bytes", path, LUAGEN_MAX_FILE);
			goto out;
		}
		if (n < sizeof(chunk))
			break;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%.300s: read error", path);
		goto out;
	}
	if (out->len > 0 && memchr(out->p, '\0', out->len)) {
		snprintf(err, errlen, "%.300s: contains a NUL byte", path);
		goto out;
	}
	if (out->len > 0 && out->p[out->len - 1] != '\n' &&
	    luagen_add(out, "\n", 1, err, errlen) < 0)
		goto out;
	rc = 0;
out:
	fclose(f);
	return rc;
}

/*
 * luagen_body - path's text without its opening comment into *out, with
 * `-- @include` lines expanded (relative to dir) while depth is 0.
 */
static int luagen_body(const char *dir, const char *path, int depth, struct luagen_buf *out,
		       char *err, size_t errlen)
{
	int rc = -1;
	int head = 1;
	struct luagen_buf src = { 0 };

	if (luagen_read(path, &src, err, errlen) < 0)
		goto out;
	for (size_t pos = 0; pos < src.len;) {
		const char *line = src.p + pos;
		const char *nl = memchr(line, '\n', src.len - pos);
		size_t n = (size_t)(nl - line);         /* without the newline */
		size_t inc = sizeof(LUAGEN_INCLUDE) - 1;

		pos += n + 1;
		if (n > inc && memcmp(line, LUAGEN_INCLUDE, inc) == 0) {
			char sub[4096];
			if (depth > 0) {
				snprintf(err, errlen, "%.300s: an included file may not include", path);
				goto out;
			}
			if ((size_t)snprintf(sub, sizeof(sub), "%s/%.*s", dir, (int)(n - inc),
					     line + inc) >= sizeof(sub)) {
				snprintf(err, errlen, "%.300s: include path too long", path);
				goto out;
			}
			if (luagen_body(dir, sub, depth + 1, out, err, errlen) < 0)
				goto out;
			head = 0;
			continue;
		}
		if (head && (n == 0 || (n >= 2 && line[0] == '-' && line[1] == '-')))
			continue;
		head = 0;
		if (luagen_add(out, line, n + 1, err, errlen) < 0)
			goto out;
	}
	rc = 0;
out:
	free(src.p);
	return rc;
}

/* luagen_name - "dir/enqueue.lua" -> "enqueue" in name; -1 unless [a-z0-9_]+.lua. */
static int luagen_name(const char *path, char *name, size_t namelen, char *err, size_t errlen)
{
	const char *base = strrchr(path, '/');
	size_t n;

	base = base ? base + 1 : path;
	n = strlen(base);
	if (n <= 4 || strcmp(base + n - 4, ".lua") != 0 || n - 4 >= namelen) {
		snprintf(err, errlen, "%.300s: not a NAME.lua file", path);
		return -1;
	}
	for (size_t i = 0; i < n - 4; i++) {
		char c = base[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
			snprintf(err, errlen, "%.300s: the name must be [a-z0-9_]", path);
			return -1;
		}
	}
	memcpy(name, base, n - 4);
	name[n - 4] = '\0';
	return 0;
}

/*
 * luagen_emit - s as a C string literal, one source line per Lua line.
 * '?' is escaped (no trigraphs under -std=c17), and every byte outside
 * printable ASCII but '\n' and '\t' is written as a 3-digit octal escape.
 */
static void luagen_emit(FILE *f, const char *s, size_t len)
{
	int open = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
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

int main(int argc, char **argv)
{
	int rc = 1;
	char err[512] = "";
	char tmp[4096];
	FILE *f = NULL;
	struct luagen_buf body = { 0 };

	if (argc < 3) {
		fprintf(stderr, "usage: luagen OUT.h NAME.lua...\n");
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
	fputs("/*\n * store_lua.h - GENERATED by server/lua/luagen.c from server/lua/NAME.lua:\n"
	      " * do not edit, edit the .lua files. One C string per script, without\n"
	      " * its opening comment, `-- @include` lines expanded. Included by the\n"
	      " * store file that holds the script table only.\n */\n"
	      "#ifndef SERVER_STORE_LUA_H\n#define SERVER_STORE_LUA_H\n", f);
	for (int i = 2; i < argc; i++) {
		char name[LUAGEN_MAX_NAME];
		char dir[4096];
		const char *slash = strrchr(argv[i], '/');
		size_t dlen = slash ? (size_t)(slash - argv[i]) : 1;

		if (luagen_name(argv[i], name, sizeof(name), err, sizeof(err)) < 0)
			goto out;
		if (dlen >= sizeof(dir)) {
			snprintf(err, sizeof(err), "%.300s: path too long", argv[i]);
			goto out;
		}
		memcpy(dir, slash ? argv[i] : ".", dlen);
		dir[dlen] = '\0';
		body.len = 0;
		if (luagen_body(dir, argv[i], 0, &body, err, sizeof(err)) < 0)
			goto out;
		if (body.len == 0) {
			snprintf(err, sizeof(err), "%.300s: no code after the opening comment", argv[i]);
			goto out;
		}
		fprintf(f, "\n/* %s */\nstatic const char store_lua_%s[] =\n", argv[i], name);
		luagen_emit(f, body.p, body.len);
		fputs("\t;\n", f);
	}
	fputs("\n#endif\n", f);
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
	if (f) {
		fclose(f);
	}
	if (rc != 0) {
		remove(tmp);
		fprintf(stderr, "luagen: %s\n", err);
	}
	free(body.p);
	return rc;
}
