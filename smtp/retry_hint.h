/*
 * retry_hint.h - the delay a temporary-failure reply asks for, read from its text.
 *
 * Many servers say when to come back: "451 4.7.1 Greylisted, please try
 * again in 300 seconds", "421 4.7.0 Try again in 5 minutes", "Retry-After:
 * 120". retry_hint_parse reads that delay so the retry policy
 * (retry_decide_hint in retry.h) does not come back earlier. Pure: handed
 * bytes, no I/O, no allocation, no locale; fuzzed (tests/fuzz/fuzz_retry_hint.c).
 *
 * What counts as a hint, case-insensitively, each word starting and ending
 * at a word boundary, words separated by white space (line ends of a
 * multi-line reply included) or '-':
 *   phrase   "try again in", "try again after", "retry in", "retry after",
 *            "retry again in", "come back in", "come back after", "wait"
 *   filler   up to two of "about", "around", "approximately", "approx",
 *            "roughly", "at least", "another", "for" (optional)
 *   amount   digits, or "a", "an", "one" (1); not followed by '.' or ','
 *            and a digit (so "4.7.0" and "10.0.0.1" are no amount)
 *   unit     s, sec, secs, second, seconds, m, min, mins, minute, minutes,
 *            h, hr, hrs, hour, hours; or, after an "... in" phrase, the
 *            amount may instead be a duration "H:MM:SS" ("come back in
 *            0:04:57", milter-greylist's form); after "retry after" with a
 *            colon ("Retry-After: 120", the HTTP header form) a bare number
 *            is seconds
 * The first complete hint in the text wins. A text with no number ("try
 * again later", Gmail's, Microsoft's and Yahoo's usual replies) names none;
 * neither do enhanced status codes, addresses or "[TSS04]"-style tags.
 */
#ifndef SMTP_RETRY_HINT_H
#define SMTP_RETRY_HINT_H

#include <stddef.h>

#define RETRY_HINT_MIN_S 1        /* a shorter named delay is read as this */
#define RETRY_HINT_MAX_S 86400    /* a longer one (24 h) is read as this */

/*
 * retry_hint_parse - the delay in seconds that text[0..len) names, clamped
 * to [RETRY_HINT_MIN_S, RETRY_HINT_MAX_S]; 0 when it names none (or names
 * zero). Reads text[0..len) only, NUL bytes included; text may be NULL when
 * len is 0. Cannot fail.
 */
int retry_hint_parse(const char *text, size_t len);

#endif
