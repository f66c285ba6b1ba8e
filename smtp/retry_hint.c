/*
 * retry_hint.c - read the delay a temporary-failure reply names (see retry_hint.h).
 *
 * Owns the grammar of "try again in N <unit>" and its relatives, nothing
 * else: the retry policy decides what the delay means (retry.c). Handed
 * (text, len), it never reads past len, never allocates, keeps no state and
 * uses no locale (ASCII classes of its own), so any bytes are safe input.
 * Each candidate is a phrase at a word start; a candidate that does not
 * complete (no amount, no unit, a version-like "4.7.1") is dropped and the
 * scan goes on, so the work is linear in len times the small phrase table.
 */
#include "retry_hint.h"

#include <stdint.h>

#define AMOUNT_CAP 1000000000   /* longer numbers saturate here (then clamp) */

enum {
	HINT_IN = 1 << 0,        /* "... in": "H:MM:SS" is a duration */
	HINT_COLON = 1 << 1,     /* "retry after": with ':' a bare number is seconds */
};

static const struct {
	const char *words;       /* lower case, one space between words */
	unsigned flags;
} phrases[] = {
	{ "try again in", HINT_IN },
	{ "try again after", 0 },
	{ "retry in", HINT_IN },
	{ "retry after", HINT_COLON },
	{ "retry again in", HINT_IN },
	{ "come back in", HINT_IN },
	{ "come back after", 0 },
	{ "wait", 0 },
};

static const char *const fillers[] = {
	"about", "around", "approximately", "roughly", "at least", "another", "for",
};

static const struct {
	const char *name;
	int seconds;
} units[] = {
	{ "s", 1 }, { "sec", 1 }, { "secs", 1 }, { "second", 1 }, { "seconds", 1 },
	{ "m", 60 }, { "min", 60 }, { "mins", 60 }, { "minute", 60 }, { "minutes", 60 },
	{ "h", 3600 }, { "hr", 3600 }, { "hrs", 3600 }, { "hour", 3600 }, { "hours", 3600 },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int
is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
is_alnum(char c)
{
	return is_digit(c) || is_alpha(c);
}

static int
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static char
ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static size_t
skip_space(const char *t, size_t len, size_t i)
{
	while (i < len && is_space(t[i]))
		i++;
	return i;
}

/*
 * match_words - the index just past the words of pat at t[i..len) (a space
 * in pat matches a run of white space or '-'), ending at a word boundary;
 * 0 when they are not there. The caller checks that i is a word start.
 */
static size_t
match_words(const char *t, size_t len, size_t i, const char *pat)
{
	for (const char *p = pat; *p != '\0'; p++) {
		if (*p == ' ') {
			size_t j = i;

			while (j < len && (is_space(t[j]) || t[j] == '-'))
				j++;
			if (j == i)
				return 0;
			i = j;
		} else if (i < len && ascii_lower(t[i]) == *p) {
			i++;
		} else {
			return 0;
		}
	}
	if (i < len && is_alnum(t[i]))
		return 0;
	return i;
}

/* unit_seconds - seconds per unit for the letters t[i..e), 0 when no unit. */
static int
unit_seconds(const char *t, size_t i, size_t e)
{
	for (size_t u = 0; u < NELEM(units); u++) {
		const char *n = units[u].name;
		size_t k = 0;

		while (i + k < e && n[k] != '\0' && ascii_lower(t[i + k]) == n[k])
			k++;
		if (i + k == e && n[k] == '\0')
			return units[u].seconds;
	}
	return 0;
}

/* two_digits - the value of t[i..i+2) when both are digits and it is < 60, else -1. */
static int
two_digits(const char *t, size_t len, size_t i)
{
	int v;

	if (i + 2 > len || !is_digit(t[i]) || !is_digit(t[i + 1]))
		return -1;
	v = (t[i] - '0') * 10 + (t[i + 1] - '0');
	return v < 60 ? v : -1;
}

/* no_more_number - true when t[j] does not continue a number ("5.", "5,3", "5:"). */
static int
no_more_number(const char *t, size_t len, size_t j)
{
	if (j >= len)
		return 1;
	if (is_alnum(t[j]) || t[j] == ':')
		return 0;
	if ((t[j] == '.' || t[j] == ',') && j + 1 < len && is_digit(t[j + 1]))
		return 0;
	return 1;
}

/*
 * hint_after - the seconds named by the amount and unit at t[j..len), after
 * a phrase with `flags` (and `colon` seen); 0 when they are not complete.
 */
static int64_t
hint_after(const char *t, size_t len, size_t j, unsigned flags, int colon)
{
	int64_t n = 0;
	size_t e, k;
	int mult, bare = 0;

	for (size_t f = 0, used = 0; f < NELEM(fillers) && used < 2;) {
		size_t m = match_words(t, len, j, fillers[f]);

		if (m != 0) {
			j = skip_space(t, len, m);
			used++;
			f = 0;
		} else {
			f++;
		}
	}
	if (j < len && is_digit(t[j])) {
		for (; j < len && is_digit(t[j]); j++)
			n = n >= AMOUNT_CAP ? AMOUNT_CAP : n * 10 + (t[j] - '0');
		if (j < len && t[j] == ':') {
			int mm = two_digits(t, len, j + 1), ss;

			if (!(flags & HINT_IN) || mm < 0 || j + 3 >= len || t[j + 3] != ':')
				return 0;
			ss = two_digits(t, len, j + 4);
			if (ss < 0 || !no_more_number(t, len, j + 6))
				return 0;
			return n * 3600 + mm * 60 + ss;
		}
		if (j + 1 < len && (t[j] == '.' || t[j] == ',') && is_digit(t[j + 1]))
			return 0;
		bare = colon && no_more_number(t, len, j);
	} else if ((k = match_words(t, len, j, "a")) != 0 || (k = match_words(t, len, j, "an")) != 0 ||
	    (k = match_words(t, len, j, "one")) != 0) {
		n = 1;
		j = k;
	} else {
		return 0;
	}
	k = skip_space(t, len, j);
	for (e = k; e < len && is_alpha(t[e]); e++)
		;
	mult = e > k && !(e < len && is_digit(t[e])) ? unit_seconds(t, k, e) : 0;
	if (mult == 0)
		return bare ? n : 0;
	return n * mult;
}

int
retry_hint_parse(const char *text, size_t len)
{
	if (text == NULL)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (!is_alpha(text[i]) || (i > 0 && is_alnum(text[i - 1])))
			continue;
		for (size_t p = 0; p < NELEM(phrases); p++) {
			size_t j = match_words(text, len, i, phrases[p].words);
			int colon = 0;
			int64_t s;

			if (j == 0)
				continue;
			j = skip_space(text, len, j);
			if ((phrases[p].flags & HINT_COLON) && j < len && text[j] == ':') {
				colon = 1;
				j = skip_space(text, len, j + 1);
			}
			s = hint_after(text, len, j, phrases[p].flags, colon);
			if (s <= 0)
				continue;
			if (s < RETRY_HINT_MIN_S)
				return RETRY_HINT_MIN_S;
			return s > RETRY_HINT_MAX_S ? RETRY_HINT_MAX_S : (int)s;
		}
	}
	return 0;
}
