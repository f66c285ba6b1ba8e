/*
 * log.h - one line per event on stderr, logfmt style:
 *   2026-11-23T15:58:00.123Z level=info msg="delivered" msg_id=... rcpt=...
 * Thread-safe (one write(2) per line). Never pass secrets (API keys,
 * passwords, webhook secrets) to these functions.
 */
#ifndef SERVER_LOG_H
#define SERVER_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* log_set_level - messages below `level` are dropped (default LOG_INFO; TXMAIL_LOG_LEVEL). */
void log_set_level(enum log_level level);
/* log_level_parse - "debug|info|warn|error" -> level, -1 if unknown. */
int log_level_parse(const char *s);

/* log_msg - printf-style; the text after the level is written as given. */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
