/*
 * util.h - small helpers shared by the server: clock, ids, RFC 3339 times.
 */
#ifndef SERVER_UTIL_H
#define SERVER_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* util_now_ms - wall clock, milliseconds since the Unix epoch. */
int64_t util_now_ms(void);
/* util_mono_ms - monotonic clock in milliseconds (for timeouts). */
int64_t util_mono_ms(void);

/*
 * util_random_id - writes prefix + 26 chars of a time-ordered random id
 * (48-bit ms time + 80 random bits, Crockford base32, lower case) into buf.
 * buf must hold strlen(prefix) + 27 bytes. Returns 0, -1 if len too small.
 */
int util_random_id(const char *prefix, char *buf, size_t len);

/* util_id_time - the 10 characters of util_random_id that encode ms (no NUL): ids sort by them. */
void util_id_time(int64_t ms, char out[10]);
/* util_id_time_read - the ms that util_id_time wrote as t10 (no NUL needed), or -1 when it is not one. */
int64_t util_id_time_read(const char t10[10]);

/* util_random_bytes - fill buf from the OS CSPRNG (getrandom); 0 or -1. */
int util_random_bytes(void *buf, size_t len);

/* util_rfc3339 - "2026-11-23T15:58:00.123Z" for ms since epoch; buf >= 32. */
void util_rfc3339(int64_t ms, char *buf, size_t len);
/* util_parse_rfc3339 - parse RFC 3339 (with offset or Z) to ms; 0 ok, -1 invalid. */
int util_parse_rfc3339(const char *s, int64_t *ms);

/*
 * util_fmt_duration - secs as people write it, in seconds with an "s" and
 * never an exponent: 86400 -> "86400s", 1.5 -> "1.5s", 0.25 -> "0.25s",
 * 0.000412 -> "0.000412s" (to the microsecond, trailing zeros dropped). buf is
 * always NUL-terminated; returns buf, for use as a printf argument.
 */
const char *util_fmt_duration(double secs, char *buf, size_t size);

/* util_strlcpy - bounded copy, always NUL-terminates; returns strlen(src). */
size_t util_strlcpy(char *dst, const char *src, size_t size);

#endif
