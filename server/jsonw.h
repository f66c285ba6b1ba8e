/*
 * jsonw.h - a growing buffer that JSON is written into by hand, for the
 * texts of the hot paths (the 202 body and first timeline entry of every
 * accept, the outcome texts of every delivery) where building, printing
 * and freeing a cJSON tree cost more than the rest of the work.
 *
 * The bytes are what cJSON_PrintUnformatted gives for the same values:
 * strings escaped as cJSON escapes them (", \, \b \f \n \r \t, other
 * bytes below 0x20 as \u00xx, everything else as it is), whole numbers as
 * %d. Out of memory sets err; every later call does nothing, and
 * jsonw_take gives NULL. Start from a zeroed struct.
 */
#ifndef SERVER_JSONW_H
#define SERVER_JSONW_H

#include <stddef.h>

struct jsonw {
	char *p;
	size_t len, cap;
	int err;
};

/* jsonw_raw - n bytes as they are */
void jsonw_raw(struct jsonw *w, const char *s, size_t n);

/* jsonw_lit - a NUL-terminated literal as it is */
void jsonw_lit(struct jsonw *w, const char *s);

/* jsonw_str - s as a JSON string, quotes included, escaped as cJSON does */
void jsonw_str(struct jsonw *w, const char *s);

/* jsonw_int - v in decimal */
void jsonw_int(struct jsonw *w, int v);

/* jsonw_i64 - v in decimal (what cJSON prints for a whole number below 2^53) */
void jsonw_i64(struct jsonw *w, long long v);

/*
 * jsonw_key - ,"key": before a value (no comma when *first; clears it).
 * key is the caller's literal (letters and '_'): it is not escaped.
 */
void jsonw_key(struct jsonw *w, const char *key, int *first);

/* jsonw_take - the text as a C string, handed over (free it); NULL after an error (the buffer freed) */
char *jsonw_take(struct jsonw *w);

#endif
