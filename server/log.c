/*
 * log.c - logfmt lines on stderr, one write(2) each so threads never
 * interleave. Owns the process-wide log level. Never formats secrets:
 * callers pass none.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_threshold = LOG_INFO;

static const char *const log_names[] = { "debug", "info", "warn", "error" };

void
log_set_level(enum log_level level)
{
	atomic_store(&log_threshold, (int)level);
}

int
log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, log_names[i]) == 0)
			return i;
	if (strcasecmp(s, "warning") == 0)
		return LOG_WARN;
	return -1;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;
	va_list ap;

	if ((int)level < atomic_load(&log_threshold))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s ",
	    ts.tv_nsec / 1000000, log_names[level < 0 || level > 3 ? 1 : level]);
	if (r > 0)
		n += (size_t)r;
	va_start(ap, fmt);
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (r > 0)
		n += (size_t)r;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;   /* truncated: keep the newline */
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}
