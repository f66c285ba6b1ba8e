/*
 * log.h - one line per event on stderr, logfmt (default) or JSON:
 *   ts=2026-11-23T15:58:00.123Z level=info msg="delivered" msg_id=... rcpt=...
 *   {"ts":"2026-11-23T15:58:00.123Z","level":"info","msg":"delivered","msg_id":...}
 *
 * The caller gives the message (any text; log.c quotes it) and the fields
 * as a printf format of space-separated key=value pairs, e.g.
 *   log_info("accepted", "msg_id=%s rcpts=%zu", id, n);
 *   log_info("embedded redis stopped");
 * Each value (the text after '=' up to the next space of the format, with
 * its conversions) is rendered, then quoted and escaped by log.c for the
 * format in use, so values from the network (SMTP replies, addresses) can
 * never forge a key or a line. In JSON a value that is exactly one integer
 * conversion is a number, everything else a string. Keys are [a-z0-9_.].
 *
 * Thread-safe (one write(2) per line). Never pass secrets (API keys,
 * passwords, webhook secrets) to these functions.
 */
#ifndef SERVER_LOG_H
#define SERVER_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };
enum log_format { LOG_FORMAT_LOGFMT = 0, LOG_FORMAT_JSON = 1 };

/* log_set_level - messages below `level` are dropped (default LOG_INFO; TXMAIL_LOG_LEVEL). */
void log_set_level(enum log_level level);
/* log_enabled - 1 when a message of this level is written (to skip building its fields). */
int log_enabled(enum log_level level);
/* log_level_parse - "debug|info|warn|error" -> level, -1 if unknown. */
int log_level_parse(const char *s);
/* log_set_format - logfmt (default) or JSON lines (TXMAIL_LOG_FORMAT). */
void log_set_format(enum log_format format);
/* log_format_parse - "logfmt|json" -> format, -1 if unknown. */
int log_format_parse(const char *s);

/*
 * log_msg - write one line: ts, level, msg, then the fields of `fmt`.
 * `fmt` starts with a space when it comes from the macros below; spaces
 * separate fields. A line is cut at 4 KiB (each value at 1 KiB) and then
 * ends with truncated=true, still well-formed.
 */
void log_msg(enum log_level level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * log_render - the line log_msg would write for these fields, without the
 * newline, into buf (always NUL-terminated); returns its length. For
 * tests and for log_msg itself; `ts` is the timestamp text to use.
 */
size_t log_render(char *buf, size_t size, enum log_format format, const char *ts,
    enum log_level level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

#define log_debug(msg, ...) log_msg(LOG_DEBUG, msg, " " __VA_ARGS__)
#define log_info(msg, ...) log_msg(LOG_INFO, msg, " " __VA_ARGS__)
#define log_warn(msg, ...) log_msg(LOG_WARN, msg, " " __VA_ARGS__)
#define log_error(msg, ...) log_msg(LOG_ERROR, msg, " " __VA_ARGS__)

#endif
