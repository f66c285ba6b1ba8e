/*
 * util.c - clock, random ids and RFC 3339 times for the server. Pure
 * except for the clock and getrandom(2).
 */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int64_t
util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
util_random_bytes(void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len > 0) {
		ssize_t r = getrandom(p, len, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

static const char util_id_alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

int64_t
util_id_time_read(const char t10[10])
{
	uint64_t t = 0;

	for (int i = 0; i < 10; i++) {
		const char *p = t10[i] != '\0' ? strchr(util_id_alphabet, t10[i]) : NULL;

		if (p == NULL)
			return -1;
		t = (t << 5) | (uint64_t)(p - util_id_alphabet);
	}
	return t > 0 && t < ((uint64_t)1 << 47) ? (int64_t)t : -1;
}

void
util_id_time(int64_t ms, char out[10])
{
	const char *alphabet = util_id_alphabet;
	uint64_t t = ms > 0 ? (uint64_t)ms : 0;

	/* 48 bits of time: 10 chars of 5 bits (top 2 bits zero). */
	for (int i = 0; i < 10; i++)
		out[i] = alphabet[(t >> (45 - 5 * i)) & 31];
}

int
util_random_id(const char *prefix, char *buf, size_t len)
{
	const char *alphabet = util_id_alphabet;
	unsigned char rnd[10];
	uint64_t t = (uint64_t)util_now_ms();
	size_t plen = strlen(prefix), i;
	char *out;

	if (len < plen + 27)
		return -1;
	if (util_random_bytes(rnd, sizeof(rnd)) != 0)
		return -1;
	memcpy(buf, prefix, plen);
	out = buf + plen;
	util_id_time((int64_t)t, out);
	/* 80 random bits: 16 chars. */
	for (i = 0; i < 16; i++) {
		size_t bit = i * 5;
		unsigned v = (unsigned)rnd[bit / 8] << 8;
		if (bit / 8 + 1 < sizeof(rnd))
			v |= rnd[bit / 8 + 1];
		out[10 + i] = alphabet[(v >> (11 - bit % 8)) & 31];
	}
	out[26] = '\0';
	return 0;
}

void
util_rfc3339(int64_t ms, char *buf, size_t len)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	char tmp[32];
	int y, f = (int)(ms % 1000);

	gmtime_r(&s, &tm);
	y = tm.tm_year + 1900;
	if (len < sizeof("2026-11-23T15:58:00.123Z") || y < 0 || y > 9999 || f < 0) {
		strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(buf, len, "%s.%03dZ", tmp, f);
		return;
	}
	/* the same text by hand: several per accept, where strftime + snprintf cost ~2k instructions */
	buf[0] = (char)('0' + y / 1000);
	buf[1] = (char)('0' + y / 100 % 10);
	buf[2] = (char)('0' + y / 10 % 10);
	buf[3] = (char)('0' + y % 10);
	buf[4] = '-';
	buf[5] = (char)('0' + (tm.tm_mon + 1) / 10);
	buf[6] = (char)('0' + (tm.tm_mon + 1) % 10);
	buf[7] = '-';
	buf[8] = (char)('0' + tm.tm_mday / 10);
	buf[9] = (char)('0' + tm.tm_mday % 10);
	buf[10] = 'T';
	buf[11] = (char)('0' + tm.tm_hour / 10);
	buf[12] = (char)('0' + tm.tm_hour % 10);
	buf[13] = ':';
	buf[14] = (char)('0' + tm.tm_min / 10);
	buf[15] = (char)('0' + tm.tm_min % 10);
	buf[16] = ':';
	buf[17] = (char)('0' + tm.tm_sec / 10);
	buf[18] = (char)('0' + tm.tm_sec % 10);
	buf[19] = '.';
	buf[20] = (char)('0' + f / 100);
	buf[21] = (char)('0' + f / 10 % 10);
	buf[22] = (char)('0' + f % 10);
	buf[23] = 'Z';
	buf[24] = '\0';
}

static int
parse_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int
util_parse_rfc3339(const char *s, int64_t *ms)
{
	int y, mo, d, h, mi, sec, frac_ms = 0, oh = 0, om = 0, sign = 0;
	const char *p = s;
	struct tm tm;
	time_t t;

	if (parse_digits(&p, 4, &y) || *p++ != '-' || parse_digits(&p, 2, &mo) ||
	    *p++ != '-' || parse_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
		return -1;
	p++;
	if (parse_digits(&p, 2, &h) || *p++ != ':' || parse_digits(&p, 2, &mi) ||
	    *p++ != ':' || parse_digits(&p, 2, &sec))
		return -1;
	if (*p == '.') {
		int scale = 100;
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9') {
			frac_ms += (*p - '0') * scale;
			scale /= 10;
			p++;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		p++;
		if (parse_digits(&p, 2, &oh) || *p++ != ':' || parse_digits(&p, 2, &om))
			return -1;
	} else {
		return -1;
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || sec > 60 || oh > 23 || om > 59)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	*ms = ((int64_t)t - (int64_t)sign * (oh * 3600 + om * 60)) * 1000 + frac_ms;
	return 0;
}

const char *
util_fmt_duration(double secs, char *buf, size_t size)
{
	char tmp[64];
	size_t n;

	if (size == 0)
		return buf;
	if (secs != secs)
		secs = 0;   /* NaN */
	if (secs > 1e15)
		secs = 1e15;
	else if (secs < -1e15)
		secs = -1e15;
	snprintf(tmp, sizeof(tmp), "%.6f", secs);
	n = strlen(tmp);
	while (n > 0 && tmp[n - 1] == '0')
		n--;
	if (n > 0 && tmp[n - 1] == '.')
		n--;
	tmp[n] = '\0';
	snprintf(buf, size, "%ss", strcmp(tmp, "-0") == 0 ? "0" : tmp);
	return buf;
}

size_t
util_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (size > 0) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}
