/*
 * config.c - configuration from TXMAIL_* environment variables.
 *
 * Every variable is one row of config_vars (name, kind, default, range,
 * unit, one line of meaning, field or parser): the one table that drives
 * parsing, `txmail config list` (and so the README's table), `txmail
 * config check` and the warning for unknown TXMAIL_* names. Loading parses
 * every row even after an error and collects each problem as one line.
 * The URL and address parsers are pure (strings in, structs out) and live
 * in config_parse.c, so they are unit-tested and fuzzed; only the loader
 * (and config_secret) reads the environment. Secrets are never printed:
 * every view of them is masked. Every secret-bearing variable goes through
 * config_secret (config_parse.c), so each also has a NAME_FILE form
 * (Docker/Kubernetes secrets); no error message ever carries a secret's text.
 */
#include "config.h"
#include "config_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpuquota.h"
#include "dkim_keys.h"
#include "log.h"
#include "netguard.h"
#include "shaper.h"
#include "util.h"

/* --- the variable table ------------------------------------------------------ */

enum cv_kind {
	CV_STR,       /* char[size] at off */
	CV_INT,       /* int at off: a whole number in min..max */
	CV_PORT,      /* uint16_t at off: a whole number in min..max */
	CV_SECONDS,   /* double at off: seconds, fractions allowed */
	CV_NUM,       /* double at off, in `unit` */
	CV_SIZE,      /* size_t at off: bytes, or a number with K, M or G (1024-based) */
	CV_BOOL,      /* int at off: 0 or 1 (also true/false, yes/no, on/off) */
	CV_CUSTOM,    /* parsed by set, shown by show */
};

#define CV_SECRET 1u    /* has a NAME_FILE form (config_secret); shown masked, never echoed */
#define CV_DYNAMIC 2u   /* unset: set(cfg, NULL) computes the default; def is text only */
#define CV_CPUS 4u      /* CV_DYNAMIC from the CPU quota: config check says where it came from */

_Static_assert(sizeof(((struct config *)0)->cpu_basis) == CPUQUOTA_BASIS_MAX, "cpu_basis size");

/*
 * One variable. Unset (or empty), the value is def, parsed like any other
 * ("" = off/none); def NULL: the field keeps the value config_defaults
 * gave it (the SMTP timeouts, whose defaults the engine owns). For a
 * generic kind, set (if any) validates after the value is stored; for
 * CV_CUSTOM it parses the value ("" = unset). Both write their error text
 * without the variable's name; the loader puts it in front.
 */
struct config_var {
	const char *name;
	enum cv_kind kind;
	unsigned flags;
	const char *def;
	const char *note;     /* shown with the default, or alone when def is "" or dynamic */
	const char *dev_def;  /* `run --dev`'s default when the variable is unset (CONFIG_SRC_DEV), or NULL */
	double min, max;
	const char *unit;     /* "seconds", "requests per second", "bytes", ...; NULL: none */
	const char *help;     /* one line; `code` in backticks (dropped in plain text) */
	size_t off, size;     /* the field; CV_STR and secrets: the value's buffer size */
	int (*set)(struct config *cfg, const char *v, char *err, size_t errlen);
	void (*show)(const struct config *cfg, char *out, size_t outlen);
};

#define FIELD(f) .off = offsetof(struct config, f), .size = sizeof(((struct config *)0)->f)
#define SECONDS(lo, hi) .kind = CV_SECONDS, .min = (lo), .max = (hi), .unit = "seconds"

static int set_listen(struct config *, const char *, char *, size_t);
static int set_admin_listen(struct config *, const char *, char *, size_t);
static int set_redis(struct config *, const char *, char *, size_t);
static int set_redis_timeout(struct config *, const char *, char *, size_t);
static int set_content_retention(struct config *, const char *, char *, size_t);
static int set_api_keys(struct config *, const char *, char *, size_t);
static int set_relay(struct config *, const char *, char *, size_t);
static int check_ca_file(struct config *, const char *, char *, size_t);
static int set_helo(struct config *, const char *, char *, size_t);
static int check_webhook_url(struct config *, const char *, char *, size_t);
static int check_webhook_proxy(struct config *, const char *, char *, size_t);
static int check_webhook_projects(struct config *, const char *, char *, size_t);
static int set_http_threads(struct config *, const char *, char *, size_t);
static int set_workers(struct config *, const char *, char *, size_t);
static int set_domain_rate(struct config *, const char *, char *, size_t);
static int set_log_level(struct config *, const char *, char *, size_t);
static int set_log_format(struct config *, const char *, char *, size_t);
static int set_sink_listen(struct config *, const char *, char *, size_t);
static int set_dkim_keys(struct config *, const char *, char *, size_t);
static int check_dns_server(struct config *, const char *, char *, size_t);
static int check_bounce_domain(struct config *, const char *, char *, size_t);
static int set_bounce_listen(struct config *, const char *, char *, size_t);
static int set_trusted_proxies(struct config *, const char *, char *, size_t);
static void show_listen(const struct config *, char *, size_t);
static void show_admin_listen(const struct config *, char *, size_t);
static void show_redis(const struct config *, char *, size_t);
static void show_api_keys(const struct config *, char *, size_t);
static void show_relay(const struct config *, char *, size_t);
static void show_webhook_url(const struct config *, char *, size_t);
static void show_webhook_secret(const struct config *, char *, size_t);
static void show_webhook_proxy(const struct config *, char *, size_t);
static void show_bounce_secret(const struct config *, char *, size_t);
static void show_domain_rate(const struct config *, char *, size_t);
static void show_log_level(const struct config *, char *, size_t);
static void show_log_format(const struct config *, char *, size_t);
static void show_sink_listen(const struct config *, char *, size_t);
static void show_dkim_keys(const struct config *, char *, size_t);
static void show_bounce_listen(const struct config *, char *, size_t);
static void show_trusted_proxies(const struct config *, char *, size_t);

static const struct config_var config_vars[] = {
	{ .name = "TXMAIL_LISTEN", .kind = CV_CUSTOM, .def = "127.0.0.1:8080",
	  .note = "the Docker image sets `0.0.0.0:8080`",
	  .help = "HTTP listen address, `host:port` or `[v6]:port`",
	  .set = set_listen, .show = show_listen },
	{ .name = "TXMAIL_ADMIN_LISTEN", .kind = CV_CUSTOM, .def = "127.0.0.1:9090",
	  .note = "`worker` and `bounce`; `run` and `api` open it only when it is set",
	  .help = "the admin listener, `host:port` (port `0`: any free one, logged) or `off`: `GET /metrics`, "
	    "`/healthz` and `/readyz` only, no key (the API port serves them too); `/readyz` is 200 while "
	    "Redis answers and every loop of the process runs (see Health and readiness)",
	  .set = set_admin_listen, .show = show_admin_listen },
	{ .name = "TXMAIL_LOOP_STALL", SECONDS(1, 3600), .def = "10",
	  .help = "`/readyz` answers 503 naming a loop (delivery feeder, engine, recorder; scheduler; "
	    "webhooks; DSN listener) that has not come round for this long, or for 3 times its longest "
	    "legitimate wait (a Redis command: `TXMAIL_REDIS_TIMEOUT`) when that is longer",
	  FIELD(loop_stall) },
	{ .name = "TXMAIL_TEST_WEDGE", .kind = CV_STR, .def = "", .note = "none",
	  .help = "tests only: `<loop>:<file>` makes that loop (e.g. `delivery.0.engine`) stop while `<file>` "
	    "exists, to test `/readyz`; never set it in production",
	  FIELD(test_wedge) },
	{ .name = "TXMAIL_REDIS_URL", .kind = CV_CUSTOM, .flags = CV_SECRET, .def = "",
	  .note = "unset: `run` spawns an embedded `redis-server` (no password, Unix socket under `$TXMAIL_DATA_DIR`)",
	  .help = "`redis://[[user]:password@]host[:port][/db]` or `unix://[[user]:password@]/path[?db=N]`; "
	    "with a password every connection and reconnect starts with `AUTH [user] password` "
	    "(user: a Redis 6+ ACL user); user and password percent-encoded (`%40` for `@`; in the "
	    "`unix://` form `%2F` for `/`); logged as `redis://user:***@host:port`; a refused AUTH is "
	    "logged as `redis: AUTH failed: ...` and `/readyz` answers 503. No TLS (`rediss://`): "
	    "keep Redis on a private network",
	  .size = SECRET_URL_MAX, .set = set_redis, .show = show_redis },
	/* after TXMAIL_REDIS_URL: its parser resets cfg->redis, this row then sets redis.timeout_ms */
	{ .name = "TXMAIL_REDIS_TIMEOUT", SECONDS(0.05, 600), .def = "5",
	  .help = "a Redis command not answered in this time fails (the set-up after a reconnect: 1 s "
	    "per command; a blocking read: its block time + 5 s): the request answers 503 `unavailable`; "
	    "a send whose enqueue was not answered is first settled (see Delivery semantics): 202, 503 "
	    "(nothing stored) or 504 `outcome_unknown`", FIELD(redis_timeout), .set = set_redis_timeout },
	/* after TXMAIL_REDIS_URL too: this row sets redis.content_keep_ms */
	{ .name = "TXMAIL_CONTENT_RETENTION", SECONDS(0, 604800), .def = "0",
	  .note = "delete it at once",
	  .help = "how long a message's content (its MIME: body, attachments, headers) stays in Redis "
	    "once no recipient can be attempted again (delivered, failed, canceled, suppressed); deferred "
	    "recipients keep it. At most 7 days, the time a finished message's summary and timeline "
	    "stay for `GET /v1/messages/{id}`, which keeps answering without it (`content`: `deleted`)",
	  FIELD(content_retention), .set = set_content_retention },
	{ .name = "TXMAIL_DATA_DIR", .kind = CV_STR, .def = "./var",
	  .help = "embedded Redis data, dev key, dev mail", FIELD(data_dir) },
	{ .name = "TXMAIL_REDIS_SERVER", .kind = CV_STR, .def = "redis-server",
	  .help = "the `redis-server` binary for the embedded Redis", FIELD(redis_server) },
	{ .name = "TXMAIL_API_KEYS", .kind = CV_CUSTOM, .flags = CV_SECRET, .def = "", .note = "unset",
	  .help = "comma-separated bearer keys accepted on `/v1`, besides those made with `txmail keys create`",
	  .size = API_KEYS_SPEC_MAX, .set = set_api_keys, .show = show_api_keys },
	{ .name = "TXMAIL_RELAY", .kind = CV_CUSTOM, .flags = CV_SECRET, .def = "",
	  .note = "unset: direct delivery to each domain's MX hosts (see below; in `--dev`: the sink)",
	  .help = "`smtp://[user:pass@]host:port[?tls=none|starttls|required]` or "
	    "`smtps://[user:pass@]host[:port]`; user and password percent-decoded; `starttls` is "
	    "opportunistic, `required` fails (temporarily) without TLS; with a user and no `tls=` the "
	    "default is `required`, so a man in the middle who strips STARTTLS never sees the password",
	  .size = SECRET_URL_MAX, .set = set_relay, .show = show_relay },
	{ .name = "TXMAIL_TLS_CA_FILE", .kind = CV_STR, .def = "", .note = "system store",
	  .help = "extra CA bundle for verifying the relay's certificate", FIELD(tls_ca_file),
	  .set = check_ca_file },
	{ .name = "TXMAIL_HELO_NAME", .kind = CV_STR, .flags = CV_DYNAMIC, .note = "the host name",
	  .help = "EHLO name and Message-ID domain", FIELD(helo_name), .set = set_helo },
	{ .name = "TXMAIL_WEBHOOK_URL", .kind = CV_STR, .flags = CV_SECRET, .def = "",
	  .note = "unset: no webhooks",
	  .help = "default webhook endpoint (`http://` or `https://`); a secret (it may carry credentials "
	    "or a token): shown as `https://host/***`",
	  FIELD(webhook_url), .set = check_webhook_url, .show = show_webhook_url },
	{ .name = "TXMAIL_WEBHOOK_SECRET", .kind = CV_STR, .flags = CV_SECRET, .def = "", .note = "unset",
	  .help = "its signing secret, `whsec_<base64>`; required with the URL",
	  FIELD(webhook_secret), .show = show_webhook_secret },
	{ .name = "TXMAIL_WEBHOOK_PROJECTS", .kind = CV_STR, .def = "default",
	  .help = "whose events the `TXMAIL_WEBHOOK_URL` endpoint gets: comma-separated project names, "
	    "or `*` for every project (endpoints made with `POST /v1/webhooks` get their own "
	    "project's only)",
	  FIELD(webhook_projects), .set = check_webhook_projects },
	{ .name = "TXMAIL_WEBHOOK_ALLOW_PRIVATE", .kind = CV_BOOL, .def = "0", .dev_def = "1",
	  .note = "loopback, private and link-local targets refused",
	  .help = "`1` allows webhook targets on loopback, private and link-local addresses",
	  FIELD(webhook_allow_private) },
	{ .name = "TXMAIL_WEBHOOK_PROXY", .kind = CV_STR, .flags = CV_SECRET, .def = "",
	  .note = "none: direct connections; `http_proxy`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` are ignored",
	  .help = "the proxy for webhook requests, `http://`, `https://`, `socks5://` or `socks5h://host:port` "
	    "(every request goes through it; `NO_PROXY` is ignored); only with "
	    "`TXMAIL_WEBHOOK_ALLOW_PRIVATE=1`, since the address guard cannot judge what a proxy connects "
	    "to: the proxy must enforce the egress policy; shown without its credentials",
	  FIELD(webhook_proxy), .set = check_webhook_proxy, .show = show_webhook_proxy },
	{ .name = "TXMAIL_RETRY_BASE", SECONDS(0.001, 86400), .def = "60", .dev_def = "1",
	  .help = "first delay between delivery attempts", FIELD(retry_base) },
	{ .name = "TXMAIL_RETRY_MAX", SECONDS(0.001, 604800), .def = "3600", .dev_def = "30",
	  .help = "largest delay between delivery attempts (at least `TXMAIL_RETRY_BASE`)", FIELD(retry_max) },
	{ .name = "TXMAIL_MAX_AGE", SECONDS(1, 31536000), .def = "86400",
	  .help = "an undelivered recipient expires this long after acceptance", FIELD(max_age) },
	{ .name = "TXMAIL_WEBHOOK_RETRY_BASE", SECONDS(0.001, 86400), .def = "5",
	  .help = "first delay between webhook attempts", FIELD(webhook_retry_base) },
	{ .name = "TXMAIL_WEBHOOK_RETRY_MAX", SECONDS(0.001, 604800), .def = "3600",
	  .help = "largest delay between webhook attempts (at least `TXMAIL_WEBHOOK_RETRY_BASE`)",
	  FIELD(webhook_retry_max) },
	{ .name = "TXMAIL_WEBHOOK_MAX_AGE", SECONDS(1, 31536000), .def = "259200", .note = "3 days",
	  .help = "a webhook delivery is given up (and logged) after this", FIELD(webhook_max_age) },
	{ .name = "TXMAIL_WEBHOOK_TIMEOUT", SECONDS(0.1, 3600), .def = "10",
	  .help = "a webhook request without an answer in this time is retried", FIELD(webhook_timeout) },
	{ .name = "TXMAIL_VISIBILITY_TIMEOUT", SECONDS(0.5, 86400), .def = "30",
	  .help = "work held by a worker that stopped (crashed, killed, hung) is handed to another after this",
	  FIELD(visibility_timeout) },
	{ .name = "TXMAIL_SHUTDOWN_GRACE", SECONDS(0, 3600), .def = "25",
	  .note = "inside Kubernetes' 30 s",
	  .help = "SIGTERM: how long in-flight SMTP transactions may take before the rest is handed back "
	    "to the queue", FIELD(shutdown_grace) },
	{ .name = "TXMAIL_MAX_BODY", .kind = CV_SIZE, .min = 1024, .max = 1073741824, .unit = "bytes",
	  .def = "10485760", .note = "10 MiB",
	  .help = "largest request body", FIELD(max_body) },
	{ .name = "TXMAIL_MAX_ATTACHMENT_BYTES", .kind = CV_SIZE, .min = 0, .max = 1073741824,
	  .unit = "bytes", .def = "7340032", .note = "7 MiB",
	  .help = "largest total of one message's decoded attachments (413 above it)", FIELD(max_attach) },
	{ .name = "TXMAIL_RATE_LIMIT", .kind = CV_NUM, .min = 0, .max = 1000000,
	  .unit = "requests per second", .def = "200", .dev_def = "0",
	  .help = "requests per second per project (one token bucket in Redis, shared by the project's keys; `TXMAIL_API_KEYS` keys are the project `default`); `0` turns it off",
	  FIELD(rate_limit) },
	{ .name = "TXMAIL_RATE_BURST", .kind = CV_NUM, .min = 1, .max = 10000000, .unit = "requests",
	  .def = "400", .help = "token bucket size: the largest burst per project", FIELD(rate_burst) },
	{ .name = "TXMAIL_TRUSTED_PROXIES", .kind = CV_CUSTOM, .def = "", .note = "none: the TCP peer is the client",
	  .help = "comma-separated IPv4/IPv6 networks (CIDR; a bare address is one host) of reverse proxies: "
	    "a request from one of them comes from the right-most `X-Forwarded-For` entry that is not "
	    "one of them (used by a key's `--allow-ip`); a malformed entry there makes the address "
	    "unknown, and keys with an allowlist get 403",
	  .set = set_trusted_proxies, .show = show_trusted_proxies },
	{ .name = "TXMAIL_EVENTS_RETENTION", SECONDS(1, 31536000), .def = "86400",
	  .help = "events are kept this long for `Last-Event-ID` resume of `/v1/events/stream`",
	  FIELD(events_retention) },
	{ .name = "TXMAIL_SSE_PER_KEY", .kind = CV_INT, .min = 1, .max = 256, .def = "8",
	  .unit = "streams",
	  .help = "open `/v1/events/stream` connections one API key may hold in one process; more get 429",
	  FIELD(sse_per_key) },
	{ .name = "TXMAIL_HTTP_THREADS", .kind = CV_INT, .flags = CV_DYNAMIC | CV_CPUS, .min = 1, .max = 256,
	  .note = "the CPU quota, at most 64", .help = "HTTP threads; unset: the cgroup CPU quota "
	    "(v2 `cpu.max`, v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`, the smallest up the tree) rounded "
	    "up, at least 1, at most the usable CPUs (`config check` says which)", FIELD(http_threads),
	  .set = set_http_threads },
	{ .name = "TXMAIL_HTTP_TIMEOUT", .kind = CV_INT, .min = 1, .max = 86400, .unit = "seconds",
	  .def = "30", .help = "an API connection idle this long (no byte in or out) is closed, whole seconds",
	  FIELD(http_timeout) },
	{ .name = "TXMAIL_HTTP_HEADER_TIMEOUT", SECONDS(0.1, 3600), .def = "10",
	  .help = "a request's headers must be complete this long after the connection was accepted (on a "
	    "kept-alive connection: `TXMAIL_HTTP_TIMEOUT` plus this after the previous response), however "
	    "slowly they trickle in; else the connection is cut", FIELD(http_header_timeout) },
	{ .name = "TXMAIL_HTTP_BODY_TIMEOUT", SECONDS(0.1, 3600), .def = "30",
	  .help = "a request body must be complete this long after its headers, however slowly it "
	    "trickles in; else the connection is cut and the body freed", FIELD(http_body_timeout) },
	{ .name = "TXMAIL_HTTP_BODY_BUDGET", .kind = CV_SIZE, .min = 1024, .max = 68719476736,
	  .unit = "bytes", .def = "268435456", .note = "256 MiB",
	  .help = "request bodies being received at once, all connections together, at most this many bytes "
	    "(at least `TXMAIL_MAX_BODY`; unset, raised to it); past it a new request with a body gets 503 "
	    "with `Retry-After`",
	  FIELD(http_body_budget) },
	{ .name = "TXMAIL_WORKERS", .kind = CV_INT, .flags = CV_DYNAMIC | CV_CPUS, .min = 1, .max = 64,
	  .note = "the CPU quota, as `TXMAIL_HTTP_THREADS`",
	  .help = "delivery loops per process (each an asynchronous SMTP engine on a thread of its own)",
	  FIELD(workers), .set = set_workers },
	{ .name = "TXMAIL_WORKER_CONCURRENCY", .kind = CV_INT, .min = 1, .max = 10000, .def = "256",
	  .help = "deliveries in flight per loop", FIELD(worker_concurrency) },
	{ .name = "TXMAIL_MAX_CONNS_PER_HOST", .kind = CV_INT, .min = 1, .max = 1000, .def = "32",
	  .note = "KumoMTA's default",
	  .help = "SMTP connections per destination (MX host or relay) per loop", FIELD(max_conns_per_target) },
	{ .name = "TXMAIL_MAX_MSGS_PER_CONN", .kind = CV_INT, .min = 1, .max = 100000, .def = "1024",
	  .note = "KumoMTA's default",
	  .help = "messages sent over one SMTP connection before it is closed", FIELD(max_msgs_per_conn) },
	{ .name = "TXMAIL_DOMAIN_RATE", .kind = CV_CUSTOM, .def = "", .note = "none: unlimited",
	  .help = "messages per second per recipient domain, `domain=rate,...,*=rate` (e.g. "
	    "`gmail.com=20,outlook.com=10,*=0`; see Shaping)", .set = set_domain_rate, .show = show_domain_rate },
	{ .name = "TXMAIL_DEST_FAIL_THRESHOLD", .kind = CV_INT, .min = 1, .max = 1000000, .def = "5",
	  .help = "consecutive connection failures before a destination is suspended (see Shaping)",
	  FIELD(dest_fail_threshold) },
	{ .name = "TXMAIL_DEST_BACKOFF_BASE", SECONDS(0.01, 86400), .def = "10",
	  .help = "first suspension of a failing destination; doubles on each new suspension",
	  FIELD(dest_backoff_base) },
	{ .name = "TXMAIL_DEST_BACKOFF_MAX", SECONDS(0.01, 604800), .def = "600",
	  .help = "longest suspension (at least `TXMAIL_DEST_BACKOFF_BASE`)", FIELD(dest_backoff_max) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_CONNECT", SECONDS(0.01, 86400),
	  .help = "SMTP: TCP connect, per address", FIELD(smtp_timeouts.connect) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_BANNER", SECONDS(0.01, 86400),
	  .help = "SMTP: the greeting (RFC 5321 4.5.3.2)", FIELD(smtp_timeouts.banner) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_EHLO", SECONDS(0.01, 86400),
	  .help = "SMTP: the EHLO reply", FIELD(smtp_timeouts.ehlo) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_TLS", SECONDS(0.01, 86400),
	  .help = "SMTP: the STARTTLS reply and the TLS handshake", FIELD(smtp_timeouts.tls) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_AUTH", SECONDS(0.01, 86400),
	  .help = "SMTP: each AUTH reply", FIELD(smtp_timeouts.auth) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_MAIL", SECONDS(0.01, 86400),
	  .help = "SMTP: the MAIL FROM reply", FIELD(smtp_timeouts.mail) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_RCPT", SECONDS(0.01, 86400),
	  .help = "SMTP: each RCPT TO reply", FIELD(smtp_timeouts.rcpt) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_DATA", SECONDS(0.01, 86400),
	  .help = "SMTP: the DATA command's reply", FIELD(smtp_timeouts.data) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_BLOCK", SECONDS(0.01, 86400),
	  .help = "SMTP: each write of message data", FIELD(smtp_timeouts.block) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_DOT", SECONDS(0.01, 86400),
	  .help = "SMTP: the reply after the final `.`", FIELD(smtp_timeouts.dot) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_RSET", SECONDS(0.01, 86400),
	  .help = "SMTP: the RSET reply", FIELD(smtp_timeouts.rset) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_QUIT", SECONDS(0.01, 86400),
	  .help = "SMTP: the QUIT reply", FIELD(smtp_timeouts.quit) },
	{ .name = "TXMAIL_SMTP_TIMEOUT_IDLE", SECONDS(0.01, 86400),
	  .help = "SMTP: how long a pooled idle connection is kept", FIELD(smtp_timeouts.idle) },
	{ .name = "TXMAIL_LOG_LEVEL", .kind = CV_CUSTOM, .def = "info",
	  .help = "`debug`, `info`, `warn` or `error`", .set = set_log_level, .show = show_log_level },
	{ .name = "TXMAIL_LOG_FORMAT", .kind = CV_CUSTOM, .def = "logfmt",
	  .help = "`logfmt` (`ts=... level=... msg=\"...\" key=value`) or `json` (one object per line, same keys)",
	  .set = set_log_format, .show = show_log_format },
	{ .name = "TXMAIL_SINK_LISTEN", .kind = CV_CUSTOM, .def = "127.0.0.1:2525",
	  .help = "`run --dev` only: the capture sink's address", .set = set_sink_listen, .show = show_sink_listen },
	{ .name = "TXMAIL_DKIM_KEYS", .kind = CV_CUSTOM, .def = "", .note = "none: unsigned",
	  .help = "DKIM signing keys, `domain:selector:/path/key.pem[,...]` (see below)",
	  .set = set_dkim_keys, .show = show_dkim_keys },
	{ .name = "TXMAIL_DNS_SERVER", .kind = CV_STR, .def = "",
	  .note = "the system resolver (`/etc/resolv.conf`)",
	  .help = "direct delivery: the DNS server for MX/A/AAAA lookups, IPv4 `ip:port`",
	  FIELD(dns_server), .set = check_dns_server },
	{ .name = "TXMAIL_MX_PORT", .kind = CV_PORT, .min = 1, .max = 65535, .def = "25",
	  .help = "direct delivery: SMTP port of MX hosts", FIELD(mx_port) },
	{ .name = "TXMAIL_MX_TLS_VERIFY", .kind = CV_BOOL, .def = "0", .note = "opportunistic, unverified",
	  .help = "direct delivery: `1` requires STARTTLS with a certificate verified against the MX name",
	  FIELD(mx_tls_verify) },
	{ .name = "TXMAIL_BOUNCE_DOMAIN", .kind = CV_STR, .def = "", .note = "none: the message's own sender",
	  .help = "VERP return paths `bounces+<token>@` this domain on every delivery (see below)",
	  FIELD(bounce_domain), .set = check_bounce_domain },
	{ .name = "TXMAIL_BOUNCE_SECRET", .kind = CV_STR, .flags = CV_SECRET, .def = "", .note = "none",
	  .help = "key of the tokens' HMAC, at least 16 characters; required with the domain",
	  FIELD(bounce_secret), .show = show_bounce_secret },
	{ .name = "TXMAIL_BOUNCE_LISTEN", .kind = CV_CUSTOM, .def = "", .note = "off",
	  .help = "`run` also starts the DSN listener on this `host:port`",
	  .set = set_bounce_listen, .show = show_bounce_listen },
	{ .name = "TXMAIL_BOUNCE_MAX_BYTES", .kind = CV_SIZE, .min = 1024, .max = 52428800, .unit = "bytes",
	  .def = "1048576", .note = "1 MiB; a real DSN is a few kB",
	  .help = "DSN listener: largest message kept; past it the rest is read and discarded and the end "
	    "of DATA answered `552 5.3.4`", FIELD(bounce_max_bytes) },
	{ .name = "TXMAIL_BOUNCE_MAX_CLIENTS", .kind = CV_INT, .min = 1, .max = 256, .def = "64",
	  .help = "DSN listener: connections at once; more are greeted `421 4.7.0` and closed (memory held: "
	    "at most this times `TXMAIL_BOUNCE_MAX_BYTES` plus ~0.5 MiB each)", FIELD(bounce_max_clients) },
	{ .name = "TXMAIL_BOUNCE_MAX_CLIENTS_PER_IP", .kind = CV_INT, .min = 1, .max = 256, .def = "8",
	  .help = "DSN listener: connections at once from one IPv4 address or IPv6 /64; more get `421 4.7.0`",
	  FIELD(bounce_max_clients_per_ip) },
	{ .name = "TXMAIL_BOUNCE_IDLE_TIMEOUT", SECONDS(0.1, 3600), .def = "300",
	  .help = "DSN listener: a client silent this long is cut (`421 4.4.2`)", FIELD(bounce_idle_timeout) },
	{ .name = "TXMAIL_BOUNCE_DATA_TIMEOUT", SECONDS(0.1, 3600), .def = "120",
	  .help = "DSN listener: the whole DATA phase (354 to the final dot) must end within this, however "
	    "slowly it trickles; else the client is cut (`421 4.4.2`)", FIELD(bounce_data_timeout) },
};

#define NVARS (sizeof(config_vars) / sizeof(config_vars[0]))
_Static_assert(NVARS <= CONFIG_MAX_VARS, "raise CONFIG_MAX_VARS");

static const char *const source_names[] = { "default", "environment", "file", "dev" };
#define NSOURCES (sizeof(source_names) / sizeof(source_names[0]))

static int
cv_index(const char *name)
{
	for (size_t i = 0; i < NVARS; i++)
		if (strcmp(config_vars[i].name, name) == 0)
			return (int)i;
	return -1;
}

enum config_source
config_source_of(const struct config *cfg, const char *name)
{
	int i = cv_index(name);

	return i < 0 ? CONFIG_SRC_DEFAULT : (enum config_source)cfg->source[i];
}

/* --- numbers ------------------------------------------------------------------ */

/* d as people write it: "86400", "0.25", "0.001" (no exponent). */
static void
fmt_num(double d, char *out, size_t outlen)
{
	size_t n;

	if (d == floor(d) && fabs(d) < 1e15) {
		snprintf(out, outlen, "%.0f", d);
		return;
	}
	snprintf(out, outlen, "%.6f", d);
	n = strlen(out);
	while (n > 0 && out[n - 1] == '0')
		out[--n] = '\0';
	if (n > 0 && out[n - 1] == '.')
		out[--n] = '\0';
}

/* "min..max unit", or "0 or 1" for a bool. */
/* size_text - a size as people write it and parse_size reads it: "10M", "1536", "0" */
static void
size_text(size_t n, char *out, size_t outlen)
{
	static const char units[] = "GMK";

	for (int i = 0; i < 3 && n != 0; i++) {
		size_t u = (size_t)1 << (10 * (3 - i));

		if (n % u == 0) {
			snprintf(out, outlen, "%zu%c", n / u, units[i]);
			return;
		}
	}
	snprintf(out, outlen, "%zu", n);
}

static void
range_text(const struct config_var *var, char *out, size_t outlen)
{
	char lo[40], hi[40];

	if (var->kind == CV_BOOL) {
		util_strlcpy(out, "0 or 1", outlen);
		return;
	}
	if (var->kind == CV_SIZE) {
		size_text((size_t)var->min, lo, sizeof(lo));
		size_text((size_t)var->max, hi, sizeof(hi));
	} else {
		fmt_num(var->min, lo, sizeof(lo));
		fmt_num(var->max, hi, sizeof(hi));
	}
	snprintf(out, outlen, "%s..%s%s%s", lo, hi, var->unit ? " " : "", var->unit ? var->unit : "");
}

static int
range_err(const struct config_var *var, const char *v, char *err, size_t errlen)
{
	char range[128];

	range_text(var, range, sizeof(range));
	return config_err(err, errlen, "%.32s is out of range (%s)", v, range);
}

/* A size: digits, then optionally K, M or G (1024-based; "KiB", "MB" ... accepted). */
static int
parse_size(const char *v, double *out)
{
	static const char *const suffixes[] = { "", "K", "M", "G" };
	unsigned long long n;
	char *e;

	if (!isdigit((unsigned char)v[0]))
		return -1;
	errno = 0;
	n = strtoull(v, &e, 10);
	if (errno != 0)
		return -1;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		size_t sl = strlen(suffixes[i]);

		if (strncasecmp(e, suffixes[i], sl) != 0)
			continue;
		if (e[sl] == '\0' || (i > 0 && (strcasecmp(e + sl, "B") == 0 || strcasecmp(e + sl, "iB") == 0))) {
			*out = (double)n * (double)(1ULL << (10 * i));
			return 0;
		}
	}
	return -1;
}

static int
parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" }, *const no[] = { "0", "false", "no", "off" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* Parse v (not empty) for a generic kind and store it in cfg. 0, or -1 with err. */
static int
cv_store(struct config *cfg, const struct config_var *var, const char *v, char *err, size_t errlen)
{
	void *field = (char *)cfg + var->off;
	char *e;
	double d;
	int b;

	switch (var->kind) {
	case CV_STR:
		if (strlen(v) >= var->size)
			return config_err(err, errlen, "longer than %zu bytes", var->size - 1);
		util_strlcpy(field, v, var->size);
		return 0;
	case CV_BOOL:
		if (parse_bool(v, &b) != 0)
			return config_err(err, errlen, "\"%.32s\" is not 0 or 1", v);
		*(int *)field = b;
		return 0;
	case CV_INT:
	case CV_PORT: {
		long l;

		errno = 0;
		l = strtol(v, &e, 10);
		if (errno == ERANGE)
			return range_err(var, v, err, errlen);
		if (e == v || *e != '\0')
			return config_err(err, errlen, "\"%.32s\" is not a whole number%s%s", v,
			    var->unit ? " of " : "", var->unit ? var->unit : "");
		if ((double)l < var->min || (double)l > var->max)
			return range_err(var, v, err, errlen);
		if (var->kind == CV_PORT)
			*(uint16_t *)field = (uint16_t)l;
		else
			*(int *)field = (int)l;
		return 0;
	}
	case CV_SIZE:
		if (parse_size(v, &d) != 0)
			return config_err(err, errlen, "\"%.32s\" is not a size in bytes (e.g. 10485760 or 10M)", v);
		if (d < var->min || d > var->max)
			return range_err(var, v, err, errlen);
		*(size_t *)field = (size_t)d;
		return 0;
	case CV_SECONDS:
	case CV_NUM:
		errno = 0;
		d = strtod(v, &e);
		if (e == v || *e != '\0' || !isfinite(d))
			return config_err(err, errlen, "\"%.32s\" is not a number%s%s", v,
			    var->kind == CV_SECONDS ? " of seconds" : " of ", var->kind == CV_SECONDS ? "" : var->unit);
		if (errno == ERANGE || d < var->min || d > var->max)
			return range_err(var, v, err, errlen);
		*(double *)field = d;
		return 0;
	case CV_CUSTOM:
		break;
	}
	abort();   /* broken invariant: a custom variable without set */
}

/* The value of var in cfg, as it would be written in the environment; secrets masked. */
static void
cv_show(const struct config *cfg, const struct config_var *var, char *out, size_t outlen)
{
	const void *field = (const char *)cfg + var->off;

	if (var->show != NULL) {
		var->show(cfg, out, outlen);
		return;
	}
	switch (var->kind) {
	case CV_STR:
		util_strlcpy(out, field, outlen);
		return;
	case CV_INT:
	case CV_BOOL:
		snprintf(out, outlen, "%d", *(const int *)field);
		return;
	case CV_PORT:
		snprintf(out, outlen, "%u", (unsigned)*(const uint16_t *)field);
		return;
	case CV_SIZE:
		size_text(*(const size_t *)field, out, outlen);
		return;
	case CV_SECONDS:
	case CV_NUM:
		fmt_num(*(const double *)field, out, outlen);
		return;
	case CV_CUSTOM:
		break;
	}
	abort();   /* broken invariant: a custom variable without show */
}

/* --- parsers and views of the custom variables ------------------------------- */

static void
show_hostport(const char *host, uint16_t port, char *out, size_t outlen)
{
	int v6 = strchr(host, ':') != NULL;

	snprintf(out, outlen, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)port);
}

static int
set_listen(struct config *cfg, const char *v, char *err, size_t errlen)
{
	return config_parse_listen(v, cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port,
	    err, errlen);
}

static void
show_listen(const struct config *cfg, char *out, size_t outlen)
{
	show_hostport(cfg->listen_host, cfg->listen_port, out, outlen);
}

static int
set_admin_listen(struct config *cfg, const char *v, char *err, size_t errlen)
{
	cfg->admin_listen_off = strcasecmp(v, "off") == 0;
	if (cfg->admin_listen_off)
		return 0;
	return config_parse_listen(v, cfg->admin_listen_host, sizeof(cfg->admin_listen_host),
	    &cfg->admin_listen_port, err, errlen);
}

static void
show_admin_listen(const struct config *cfg, char *out, size_t outlen)
{
	if (cfg->admin_listen_off)
		util_strlcpy(out, "off", outlen);
	else
		show_hostport(cfg->admin_listen_host, cfg->admin_listen_port, out, outlen);
}

static int
set_sink_listen(struct config *cfg, const char *v, char *err, size_t errlen)
{
	return config_parse_listen(v, cfg->sink_listen_host, sizeof(cfg->sink_listen_host),
	    &cfg->sink_listen_port, err, errlen);
}

static void
show_sink_listen(const struct config *cfg, char *out, size_t outlen)
{
	show_hostport(cfg->sink_listen_host, cfg->sink_listen_port, out, outlen);
}

static int
set_redis(struct config *cfg, const char *v, char *err, size_t errlen)
{
	int rc;

	if (*v == '\0')
		return 0;
	rc = config_parse_redis(v, &cfg->redis, err, errlen);
	cfg->redis_set = rc == 0;
	return rc;
}

/* the command timeout travels with the address, so every store handle (store_open) gets it */
static int
set_redis_timeout(struct config *cfg, const char *v, char *err, size_t errlen)
{
	(void)v;
	(void)err;
	(void)errlen;
	cfg->redis.timeout_ms = (int)(cfg->redis_timeout * 1000.0 + 0.5);
	return 0;
}

/* like the timeout: the content retention travels with the address to every store handle */
static int
set_content_retention(struct config *cfg, const char *v, char *err, size_t errlen)
{
	(void)v;
	(void)err;
	(void)errlen;
	cfg->redis.content_keep_ms = (int64_t)(cfg->content_retention * 1000.0 + 0.5);
	return 0;
}

static void
show_redis(const struct config *cfg, char *out, size_t outlen)
{
	if (cfg->redis_set)
		config_redis_masked(&cfg->redis, out, outlen);
	else
		util_strlcpy(out, "", outlen);
}

static int load_api_keys(struct config *cfg, const char *v, char *err, size_t errlen);

static int
set_api_keys(struct config *cfg, const char *v, char *err, size_t errlen)
{
	return load_api_keys(cfg, v, err, errlen);
}

static void
show_api_keys(const struct config *cfg, char *out, size_t outlen)
{
	if (cfg->napi_keys == 0)
		util_strlcpy(out, "", outlen);
	else
		snprintf(out, outlen, "*** (%zu key%s)", cfg->napi_keys, cfg->napi_keys == 1 ? "" : "s");
}

static int
set_relay(struct config *cfg, const char *v, char *err, size_t errlen)
{
	int rc;

	if (*v == '\0')
		return 0;
	rc = config_parse_relay(v, &cfg->relay, err, errlen);
	cfg->relay_set = rc == 0;
	if (rc != 0)
		explicit_bzero(&cfg->relay, sizeof(cfg->relay));
	return rc;
}

static void relay_masked(const struct smtp_target *t, char *out, size_t outlen);

static void
show_relay(const struct config *cfg, char *out, size_t outlen)
{
	static const char *const tls_names[] = { "none", "starttls", "required", "implicit" };
	char url[sizeof(cfg->relay.user) + sizeof(cfg->relay.host) + 32];

	if (!cfg->relay_set) {
		util_strlcpy(out, "", outlen);
		return;
	}
	relay_masked(&cfg->relay, url, sizeof(url));
	if (cfg->relay.tls == SMTP_TLS_IMPLICIT)
		snprintf(out, outlen, "%s%s", url, cfg->relay.no_verify ? "?verify=0" : "");
	else
		snprintf(out, outlen, "%s?tls=%s%s", url, tls_names[cfg->relay.tls & 3],
		    cfg->relay.no_verify ? "&verify=0" : "");
}

static int
check_ca_file(struct config *cfg, const char *v, char *err, size_t errlen)
{
	(void)v;
	if (access(cfg->tls_ca_file, R_OK) != 0)
		return config_err(err, errlen, "cannot read %s: %s", cfg->tls_ca_file, strerror(errno));
	return 0;
}

static int
set_helo(struct config *cfg, const char *v, char *err, size_t errlen)
{
	if (v == NULL) {
		if (gethostname(cfg->helo_name, sizeof(cfg->helo_name)) != 0 || cfg->helo_name[0] == '\0')
			util_strlcpy(cfg->helo_name, "localhost", sizeof(cfg->helo_name));
		cfg->helo_name[sizeof(cfg->helo_name) - 1] = '\0';
	}
	if (!config_host_ok(cfg->helo_name, strlen(cfg->helo_name)))
		return config_err(err, errlen, "\"%.64s\" is not a host name", cfg->helo_name);
	return 0;
}

static int
check_webhook_url(struct config *cfg, const char *v, char *err, size_t errlen)
{
	(void)v;
	if (strncmp(cfg->webhook_url, "http://", 7) != 0 && strncmp(cfg->webhook_url, "https://", 8) != 0)
		return config_err(err, errlen, "%s", "want an http:// or https:// URL");
	return 0;
}

static int
check_webhook_proxy(struct config *cfg, const char *v, char *err, size_t errlen)
{
	static const char *const schemes[] = { "http://", "https://", "socks5://", "socks5h://" };
	const char *p = cfg->webhook_proxy;
	size_t i;

	(void)v;
	if (*p == '\0')
		return 0;
	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strncmp(p, schemes[i], strlen(schemes[i])) == 0)
			break;
	if (i == sizeof(schemes) / sizeof(schemes[0]))
		return config_err(err, errlen, "%s", "want an http://, https://, socks5:// or socks5h:// URL");
	p += strlen(schemes[i]);
	if (*p == '\0' || *p == '/' || strpbrk(p, " \t\r\n") != NULL)
		return config_err(err, errlen, "%s", "want scheme://host:port");
	return 0;
}

/* The proxy as scheme://host[:port], without credentials or a path. */
static void
show_webhook_proxy(const struct config *cfg, char *out, size_t outlen)
{
	const char *u = cfg->webhook_proxy, *sep = strstr(u, "://"), *p, *end, *at = NULL;

	if (*u == '\0' || sep == NULL) {
		util_strlcpy(out, *u ? "***" : "", outlen);
		return;
	}
	p = sep + 3;
	end = p + strcspn(p, "/?#");
	for (const char *q = p; q < end; q++)
		if (*q == '@')
			at = q;
	snprintf(out, outlen, "%.*s%s%.*s", (int)(p - u), u, at ? "***@" : "",
	    (int)(end - (at ? at + 1 : p)), at ? at + 1 : p);
}

/* "*", or a comma-separated list of project names ([A-Za-z0-9_.-]{1,64} each). */
static int
check_webhook_projects(struct config *cfg, const char *v, char *err, size_t errlen)
{
	const char *p = cfg->webhook_projects;
	size_t len = 0;

	(void)v;
	if (strcmp(p, "*") == 0)
		return 0;
	for (;; p++) {
		char c = *p;

		if (c == ',' || c == '\0') {
			if (len == 0 || len > 64)
				return config_err(err, errlen, "%s", "want `*` or comma-separated project "
				    "names (1 to 64 of A-Z a-z 0-9 _ . -)");
			if (c == '\0')
				return 0;
			len = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '.' || c == '-') {
			len++;
		} else {
			return config_err(err, errlen, "%s", "want `*` or comma-separated project "
			    "names (1 to 64 of A-Z a-z 0-9 _ . -)");
		}
	}
}

/*
 * The webhook URL with anything that may be a credential masked: the
 * password of user:password@, and the path and query (shown as "/" and
 * three stars).
 */
static void
show_webhook_url(const struct config *cfg, char *out, size_t outlen)
{
	const char *u = cfg->webhook_url, *p, *end, *at;
	size_t scheme;

	if (*u == '\0') {
		util_strlcpy(out, "", outlen);
		return;
	}
	scheme = strncmp(u, "https://", 8) == 0 ? 8 : 7;
	p = u + scheme;
	end = p + strcspn(p, "/?#");
	at = NULL;
	for (const char *q = p; q < end; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		size_t ul = colon != NULL ? (size_t)(colon - p) : (size_t)(at - p);

		snprintf(out, outlen, "%.*s%.*s%s@%.*s%s", (int)scheme, u, (int)ul, p,
		    colon != NULL ? ":***" : "", (int)(end - at - 1), at + 1,
		    *end != '\0' && strcmp(end, "/") != 0 ? "/***" : "");
		return;
	}
	snprintf(out, outlen, "%.*s%s", (int)(end - u), u, *end != '\0' && strcmp(end, "/") != 0 ? "/***" : "");
}

static void
show_masked(const char *secret, char *out, size_t outlen)
{
	util_strlcpy(out, secret[0] != '\0' ? "***" : "", outlen);
}

static void
show_webhook_secret(const struct config *cfg, char *out, size_t outlen)
{
	show_masked(cfg->webhook_secret, out, outlen);
}

static void
show_bounce_secret(const struct config *cfg, char *out, size_t outlen)
{
	show_masked(cfg->bounce_secret, out, outlen);
}

/* cfg->cpu_count, detected once per load (cpuquota.h) */
static int
config_cpus(struct config *cfg)
{
	struct cpuquota q;

	if (cfg->cpu_count == 0) {
		cpuquota_detect("", cpuquota_usable(), &q);
		cfg->cpu_count = q.count;
		util_strlcpy(cfg->cpu_basis, q.basis, sizeof(cfg->cpu_basis));
	}
	return cfg->cpu_count;
}

static int
set_http_threads(struct config *cfg, const char *v, char *err, size_t errlen)
{
	int n;

	(void)err;
	(void)errlen;
	if (v == NULL) {
		n = config_cpus(cfg);
		cfg->http_threads = n < 64 ? n : 64;
	}
	return 0;
}

static int
set_workers(struct config *cfg, const char *v, char *err, size_t errlen)
{
	int n;

	(void)err;
	(void)errlen;
	if (v == NULL) {
		n = config_cpus(cfg);
		cfg->workers = n < 64 ? n : 64;
	}
	return 0;
}

static int
set_domain_rate(struct config *cfg, const char *v, char *err, size_t errlen)
{
	struct shaper_rates *rates = NULL;
	char why[256];

	if (*v == '\0')
		return 0;
	if (shaper_rates_parse(v, &rates, why, sizeof(why)) != 0) {
		/* its message names TXMAIL_DOMAIN_RATE: without it, the loader puts it back */
		const char *w = strncmp(why, "TXMAIL_DOMAIN_RATE: ", 20) == 0 ? why + 20 : why;

		return config_err(err, errlen, "%s", w);
	}
	shaper_rates_free(rates);
	if ((cfg->domain_rate = strdup(v)) == NULL)
		return config_err(err, errlen, "%s", "out of memory");
	return 0;
}

static void
show_domain_rate(const struct config *cfg, char *out, size_t outlen)
{
	util_strlcpy(out, cfg->domain_rate != NULL ? cfg->domain_rate : "", outlen);
}

static const char *const log_level_names[] = { "debug", "info", "warn", "error" };

static int
set_log_level(struct config *cfg, const char *v, char *err, size_t errlen)
{
	int lv = log_level_parse(v);

	if (lv < 0)
		return config_err(err, errlen, "\"%.32s\": want debug, info, warn or error", v);
	cfg->log_level = lv;
	return 0;
}

static void
show_log_level(const struct config *cfg, char *out, size_t outlen)
{
	util_strlcpy(out, log_level_names[cfg->log_level & 3], outlen);
}

static int
set_log_format(struct config *cfg, const char *v, char *err, size_t errlen)
{
	int f = log_format_parse(v);

	if (f < 0)
		return config_err(err, errlen, "\"%.32s\": want logfmt or json", v);
	cfg->log_format = f;
	return 0;
}

static void
show_log_format(const struct config *cfg, char *out, size_t outlen)
{
	util_strlcpy(out, cfg->log_format == LOG_FORMAT_JSON ? "json" : "logfmt", outlen);
}

static int
set_dkim_keys(struct config *cfg, const char *v, char *err, size_t errlen)
{
	return dkim_keys_load(*v != '\0' ? v : NULL, &cfg->dkim_keys, err, errlen);
}

static void
show_dkim_keys(const struct config *cfg, char *out, size_t outlen)
{
	size_t n = dkim_keys_count(cfg->dkim_keys);

	if (n == 0)
		util_strlcpy(out, "", outlen);
	else
		snprintf(out, outlen, "(%zu key%s loaded)", n, n == 1 ? "" : "s");
}

static int
check_dns_server(struct config *cfg, const char *v, char *err, size_t errlen)
{
	char dh[64], why[256];
	uint16_t dp;
	struct in_addr ia;

	(void)v;
	if (config_parse_listen(cfg->dns_server, dh, sizeof(dh), &dp, why, sizeof(why)) != 0 ||
	    inet_pton(AF_INET, dh, &ia) != 1)
		return config_err(err, errlen, "%s", "want an IPv4 ip:port");
	return 0;
}

static int
check_bounce_domain(struct config *cfg, const char *v, char *err, size_t errlen)
{
	(void)v;
	if (strchr(cfg->bounce_domain, '@') || strchr(cfg->bounce_domain, ' ') ||
	    strchr(cfg->bounce_domain, '<'))
		return config_err(err, errlen, "%s", "want a domain name");
	return 0;
}

static int
set_bounce_listen(struct config *cfg, const char *v, char *err, size_t errlen)
{
	if (*v == '\0')
		return 0;
	if (config_parse_listen(v, cfg->bounce_listen_host, sizeof(cfg->bounce_listen_host),
	    &cfg->bounce_listen_port, err, errlen) != 0)
		return -1;
	cfg->bounce_listen_set = 1;
	return 0;
}

static void
show_bounce_listen(const struct config *cfg, char *out, size_t outlen)
{
	if (cfg->bounce_listen_set)
		show_hostport(cfg->bounce_listen_host, cfg->bounce_listen_port, out, outlen);
	else
		util_strlcpy(out, "", outlen);
}

static int
set_trusted_proxies(struct config *cfg, const char *v, char *err, size_t errlen)
{
	char why[160];

	if (cidr_list_parse(v, strlen(v), &cfg->trusted_proxies, why, sizeof(why)) != CIDR_OK)
		return config_err(err, errlen, "%s", why);
	return 0;
}

static void
show_trusted_proxies(const struct config *cfg, char *out, size_t outlen)
{
	cidr_list_format(&cfg->trusted_proxies, out, outlen);
}

/* --- problems ------------------------------------------------------------------ */

static void rep_add(struct config_report *rep, enum config_severity sev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
rep_add(struct config_report *rep, enum config_severity sev, const char *fmt, ...)
{
	va_list ap;

	if (sev == CONFIG_ERROR)
		rep->nerrors++;
	else
		rep->nwarnings++;
	if (rep->n == CONFIG_MAX_PROBLEMS) {
		rep->dropped++;
		return;
	}
	rep->p[rep->n].severity = sev;
	va_start(ap, fmt);
	vsnprintf(rep->p[rep->n].text, sizeof(rep->p[rep->n].text), fmt, ap);
	va_end(ap);
	rep->n++;
}

/* --- unknown variables ---------------------------------------------------------- */

#define NAME_CMP_MAX 64

/*
 * Optimal string alignment distance (Damerau-Levenshtein with adjacent
 * transpositions), case-insensitive; a, b at most NAME_CMP_MAX chars.
 */
static size_t
osa_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[NAME_CMP_MAX + 1][NAME_CMP_MAX + 1];

	if (la > NAME_CMP_MAX || lb > NAME_CMP_MAX)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			int ca = toupper((unsigned char)a[i - 1]), cb = toupper((unsigned char)b[j - 1]);
			size_t cost = ca != cb, best = d[i - 1][j] + 1;

			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < best)
				best = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && ca == toupper((unsigned char)b[j - 2]) &&
			    toupper((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

/*
 * Names the server never reads but a shell that starts it may hold: the
 * README's client examples take the API's address and key from these.
 */
static const char *const client_names[] = { "TXMAIL_URL", "TXMAIL_KEY" };

/* Known: a table name, NAME_FILE of a secret one, or a client-side name. */
static int
name_known(const char *name)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < sizeof(client_names) / sizeof(client_names[0]); i++)
		if (strcmp(name, client_names[i]) == 0)
			return 1;

	for (size_t i = 0; i < NVARS; i++) {
		const char *k = config_vars[i].name;
		size_t kl = strlen(k);

		if (strcmp(name, k) == 0)
			return 1;
		if ((config_vars[i].flags & CV_SECRET) && nl == kl + 5 && strncmp(name, k, kl) == 0 &&
		    strcmp(name + kl, "_FILE") == 0)
			return 1;
	}
	return 0;
}

/*
 * The known name closest to `name` (both past "TXMAIL_"), or NULL when
 * none is within a fifth of its length (at least 1 edit) - close enough
 * to be a typo, not a different word. *file is set when the match is the
 * NAME_FILE form of a secret.
 */
static const char *
name_suggest(const char *name, int *file)
{
	const char *best = NULL, *s = name + 7;
	size_t bestd = SIZE_MAX, limit = strlen(s) / 5;
	char buf[NAME_CMP_MAX + 8];

	if (limit < 1)
		limit = 1;
	*file = 0;
	for (size_t i = 0; i < NVARS; i++) {
		for (int f = 0; f < 2; f++) {
			size_t d;

			if (f == 1 && !(config_vars[i].flags & CV_SECRET))
				continue;
			snprintf(buf, sizeof(buf), "%s%s", config_vars[i].name + 7, f ? "_FILE" : "");
			d = osa_distance(s, buf);
			if (d < bestd) {
				bestd = d;
				best = config_vars[i].name;
				*file = f;
			}
		}
	}
	return bestd <= limit ? best : NULL;
}

extern char **environ;

void
config_unknown_vars(struct config_report *rep)
{
	for (char **e = environ; e != NULL && *e != NULL; e++) {
		const char *eq = strchr(*e, '=');
		size_t nl = eq != NULL ? (size_t)(eq - *e) : strlen(*e);
		char name[NAME_CMP_MAX + 1], base[NAME_CMP_MAX + 1];
		const char *sugg;
		int file;

		if (strncmp(*e, "TXMAIL_", 7) != 0)
			continue;
		/* printable names only: the text goes to logs */
		if (nl > NAME_CMP_MAX)
			nl = NAME_CMP_MAX;
		for (size_t i = 0; i < nl; i++) {
			unsigned char c = (unsigned char)(*e)[i];
			name[i] = isalnum(c) || c == '_' ? (char)c : '?';
		}
		name[nl] = '\0';
		if (name_known(name))
			continue;
		if (nl > 12 && strcmp(name + nl - 5, "_FILE") == 0) {
			snprintf(base, sizeof(base), "%.*s", (int)(nl - 5), name);
			if (cv_index(base) >= 0) {
				rep_add(rep, CONFIG_WARNING, "%s: unknown variable, ignored: only secrets have "
				    "a _FILE form, %s does not", name, base);
				continue;
			}
		}
		sugg = name_suggest(name, &file);
		if (sugg != NULL)
			rep_add(rep, CONFIG_WARNING, "%s: unknown variable, ignored; did you mean %s%s?",
			    name, sugg, file ? "_FILE" : "");
		else
			rep_add(rep, CONFIG_WARNING, "%s: unknown variable, ignored "
			    "('txmail config list' lists the known ones)", name);
	}
}

/* --- loading ---------------------------------------------------------------------- */

/* Fields whose defaults are not a table value. */
static void
config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	smtp_timeouts_default(&cfg->smtp_timeouts);
}

/*
 * Apply one variable: its value from the environment (or its file), else
 * (dev) its dev default, else its default. bad[i] is set on an error.
 */
static void
load_var(struct config *cfg, size_t i, struct config_report *rep, unsigned char *bad, int dev)
{
	const struct config_var *var = &config_vars[i];
	char err[CONFIG_PROBLEM_MAX - 80] = "";
	char *buf = NULL;
	const char *v = NULL;
	int rc;

	cfg->source[i] = CONFIG_SRC_DEFAULT;
	if (var->flags & CV_SECRET) {
		const char *ev = getenv(var->name);

		if ((buf = malloc(var->size)) == NULL) {
			rep_add(rep, CONFIG_ERROR, "%s: out of memory", var->name);
			bad[i] = 1;
			return;
		}
		if (config_secret(var->name, buf, var->size, err, sizeof(err)) != 0) {
			rep_add(rep, CONFIG_ERROR, "%s", err);   /* it names the variable */
			bad[i] = 1;
			goto out;
		}
		if (buf[0] != '\0') {
			v = buf;
			cfg->source[i] = ev != NULL && *ev != '\0' ? CONFIG_SRC_ENV : CONFIG_SRC_FILE;
		}
	} else {
		v = getenv(var->name);
		if (v != NULL && *v != '\0')
			cfg->source[i] = CONFIG_SRC_ENV;
		else
			v = NULL;
	}
	if (v == NULL && dev && var->dev_def != NULL) {
		v = var->dev_def;
		cfg->source[i] = CONFIG_SRC_DEV;
	}
	if (v == NULL && (var->flags & CV_DYNAMIC)) {
		rc = var->set(cfg, NULL, err, sizeof(err));
	} else {
		if (v == NULL)
			v = var->def;
		if (v == NULL)
			goto out;   /* the field keeps config_defaults' value */
		if (var->kind == CV_CUSTOM)
			rc = var->set(cfg, v, err, sizeof(err));
		else if (*v == '\0')
			rc = 0;     /* "" default: the zeroed field */
		else if ((rc = cv_store(cfg, var, v, err, sizeof(err))) == 0 && var->set != NULL)
			rc = var->set(cfg, v, err, sizeof(err));
	}
	if (rc != 0) {
		size_t nl = strlen(var->name);

		bad[i] = 1;
		if (strncmp(err, var->name, nl) == 0 && (err[nl] == ':' || err[nl] == ' '))
			rep_add(rep, CONFIG_ERROR, "%s", err);
		else
			rep_add(rep, CONFIG_ERROR, "%s: %s", var->name, err);
	}
out:
	if (buf != NULL) {
		explicit_bzero(buf, var->size);
		free(buf);
	}
}

/* The pairs where one value bounds another: the larger one is raised, and said so. */
static const struct {
	const char *base, *max;
	size_t base_off, max_off;
} config_bounds[] = {
	{ "TXMAIL_RETRY_BASE", "TXMAIL_RETRY_MAX",
	  offsetof(struct config, retry_base), offsetof(struct config, retry_max) },
	{ "TXMAIL_WEBHOOK_RETRY_BASE", "TXMAIL_WEBHOOK_RETRY_MAX",
	  offsetof(struct config, webhook_retry_base), offsetof(struct config, webhook_retry_max) },
	{ "TXMAIL_DEST_BACKOFF_BASE", "TXMAIL_DEST_BACKOFF_MAX",
	  offsetof(struct config, dest_backoff_base), offsetof(struct config, dest_backoff_max) },
};

static int
is_bad(const unsigned char *bad, const char *name)
{
	int i = cv_index(name);

	return i < 0 || bad[i];
}

/* Checks that involve more than one variable, on the ones that parsed. */
static void
cross_checks(struct config *cfg, struct config_report *rep, const unsigned char *bad)
{
	for (size_t i = 0; i < sizeof(config_bounds) / sizeof(config_bounds[0]); i++) {
		double *base = (double *)(void *)((char *)cfg + config_bounds[i].base_off);
		double *max = (double *)(void *)((char *)cfg + config_bounds[i].max_off);
		char b[40], m[40];

		if (is_bad(bad, config_bounds[i].base) || is_bad(bad, config_bounds[i].max) || *max >= *base)
			continue;
		/* a dev default gives way to the value that was set, without a warning */
		if (config_source_of(cfg, config_bounds[i].base) == CONFIG_SRC_DEV) {
			*base = *max;
			continue;
		}
		if (config_source_of(cfg, config_bounds[i].max) == CONFIG_SRC_DEV) {
			*max = *base;
			continue;
		}
		fmt_num(*base, b, sizeof(b));
		fmt_num(*max, m, sizeof(m));
		rep_add(rep, CONFIG_WARNING, "%s: %s is below %s (%s): using %s for both",
		    config_bounds[i].max, m, config_bounds[i].base, b, b);
		*max = *base;
	}
	if (!is_bad(bad, "TXMAIL_HTTP_BODY_BUDGET") && !is_bad(bad, "TXMAIL_MAX_BODY") &&
	    cfg->http_body_budget < cfg->max_body) {
		/* the default gives way to a larger TXMAIL_MAX_BODY; a budget that was set must be right */
		if (config_source_of(cfg, "TXMAIL_HTTP_BODY_BUDGET") == CONFIG_SRC_DEFAULT)
			cfg->http_body_budget = cfg->max_body;
		else
			rep_add(rep, CONFIG_ERROR, "%s: below TXMAIL_MAX_BODY (%zu bytes): a body of the largest "
			    "size could never be received", "TXMAIL_HTTP_BODY_BUDGET", cfg->max_body);
	}
	if (!is_bad(bad, "TXMAIL_MAX_AGE") && !is_bad(bad, "TXMAIL_RETRY_BASE") &&
	    cfg->max_age <= cfg->retry_base)
		rep_add(rep, CONFIG_WARNING, "%s: not above TXMAIL_RETRY_BASE: a temporary failure is never retried",
		    "TXMAIL_MAX_AGE");
	if (!is_bad(bad, "TXMAIL_WEBHOOK_URL") && !is_bad(bad, "TXMAIL_WEBHOOK_SECRET") &&
	    cfg->webhook_url[0] != '\0' && cfg->webhook_secret[0] == '\0')
		rep_add(rep, CONFIG_ERROR, "%s: required when TXMAIL_WEBHOOK_URL is set", "TXMAIL_WEBHOOK_SECRET");
	if (!is_bad(bad, "TXMAIL_WEBHOOK_URL") && !is_bad(bad, "TXMAIL_WEBHOOK_ALLOW_PRIVATE") &&
	    cfg->webhook_url[0] != '\0') {
		/* refuse to start with a default endpoint we would never connect to */
		char why[256];

		if (netguard_url_check(cfg->webhook_url, cfg->webhook_allow_private,
		    NETGUARD_RESOLVE_MS, why, sizeof(why)) != 0)
			rep_add(rep, CONFIG_ERROR, "%s: %s", "TXMAIL_WEBHOOK_URL", why);
	}
	if (!is_bad(bad, "TXMAIL_WEBHOOK_PROXY") && !is_bad(bad, "TXMAIL_WEBHOOK_ALLOW_PRIVATE") &&
	    cfg->webhook_proxy[0] != '\0' && !cfg->webhook_allow_private)
		rep_add(rep, CONFIG_ERROR, "%s", "TXMAIL_WEBHOOK_PROXY: refused while the webhook address guard "
		    "is on: through a proxy txmail connects only to the proxy, which resolves and reaches the "
		    "target itself, so the guard cannot judge the target; make the proxy enforce the egress "
		    "policy and set TXMAIL_WEBHOOK_ALLOW_PRIVATE=1");
	if (!is_bad(bad, "TXMAIL_BOUNCE_DOMAIN") && !is_bad(bad, "TXMAIL_BOUNCE_SECRET") &&
	    cfg->bounce_domain[0] != '\0' && strlen(cfg->bounce_secret) < 16)
		rep_add(rep, CONFIG_ERROR, "%s", "TXMAIL_BOUNCE_SECRET: required with TXMAIL_BOUNCE_DOMAIN, "
		    "at least 16 characters (e.g. openssl rand -hex 32)");
	if (!is_bad(bad, "TXMAIL_BOUNCE_LISTEN") && !is_bad(bad, "TXMAIL_BOUNCE_DOMAIN") &&
	    cfg->bounce_listen_set && cfg->bounce_domain[0] == '\0')
		rep_add(rep, CONFIG_ERROR, "%s", "TXMAIL_BOUNCE_LISTEN needs TXMAIL_BOUNCE_DOMAIN and TXMAIL_BOUNCE_SECRET");
}

int
config_load_report(struct config *cfg, struct config_report *rep)
{
	return config_load_report_dev(cfg, rep, 0);
}

int
config_load_report_dev(struct config *cfg, struct config_report *rep, int dev)
{
	unsigned char bad[NVARS];

	memset(rep, 0, sizeof(*rep));
	memset(bad, 0, sizeof(bad));
	config_defaults(cfg);
	for (size_t i = 0; i < NVARS; i++)
		load_var(cfg, i, rep, bad, dev);
	cross_checks(cfg, rep, bad);
	config_unknown_vars(rep);
	return rep->nerrors == 0 ? 0 : -1;
}

int
config_load(struct config *cfg, char *err, size_t errlen)
{
	struct config_report *rep = malloc(sizeof(*rep));
	size_t o = 0;
	int rc;

	if (rep == NULL) {
		config_defaults(cfg);
		return config_err(err, errlen, "%s", "out of memory");
	}
	rc = config_load_report(cfg, rep);
	if (errlen > 0)
		err[0] = '\0';
	for (size_t i = 0; i < rep->n; i++) {
		if (rep->p[i].severity == CONFIG_WARNING) {
			log_warn("configuration warning", "problem=%s", rep->p[i].text);
			continue;
		}
		if (o < errlen) {
			int w = snprintf(err + o, errlen - o, "%s%s", o > 0 ? "; " : "", rep->p[i].text);
			o = w < 0 ? errlen : o + (size_t)w;
		}
	}
	free(rep);
	return rc;
}

/* --- config list / config check ---------------------------------------------------- */

/* The default of var as config list shows it (markdown: values in backticks). */
static void
default_text(const struct config_var *var, int markdown, char *out, size_t outlen)
{
	const char *q = markdown ? "`" : "";
	char val[256];

	if (var->def == NULL && !(var->flags & CV_DYNAMIC)) {
		struct config d;

		config_defaults(&d);
		cv_show(&d, var, val, sizeof(val));
	} else {
		util_strlcpy(val, var->def != NULL ? var->def : "", sizeof(val));
	}
	if (val[0] == '\0')
		util_strlcpy(out, var->note != NULL ? var->note : "unset", outlen);
	else if (var->note != NULL)
		snprintf(out, outlen, "%s%s%s (%s)", q, val, q, var->note);
	else
		snprintf(out, outlen, "%s%s%s", q, val, q);
	if (var->dev_def != NULL) {
		size_t n = strlen(out);
		int paren = n > 0 && out[n - 1] == ')';

		if (paren)
			out[--n] = '\0';
		snprintf(out + n, outlen - n, "%s%s%s%s in %s--dev%s)", paren ? "; " : " (",
		    q, var->dev_def, q, q, q);
	}
}

/* The meaning of var: its help, then unit and range for numbers. */
static void
meaning_text(const struct config_var *var, char *out, size_t outlen)
{
	char range[128];

	switch (var->kind) {
	case CV_INT:
	case CV_PORT:
	case CV_SECONDS:
	case CV_NUM:
	case CV_SIZE:
		range_text(var, range, sizeof(range));
		snprintf(out, outlen, "%s (%s)", var->help, range);
		break;
	default:
		util_strlcpy(out, var->help, outlen);
		break;
	}
	if (var->flags & CV_SECRET) {
		size_t n = strlen(out);
		snprintf(out + n, outlen - n, "; secret: also `%s_FILE`", var->name);
	}
}

/* s to out: markdown escapes '|'; plain text drops the backticks. */
static void
put_text(FILE *out, const char *s, int markdown)
{
	for (; *s != '\0'; s++) {
		if (markdown && *s == '|')
			fputs("\\|", out);
		else if (!markdown && *s == '`')
			continue;
		else
			fputc(*s, out);
	}
}

void
config_list(FILE *out, int markdown)
{
	char meaning[1536], def[512];

	if (markdown)
		fputs("| variable | meaning | default |\n|---|---|---|\n", out);
	for (size_t i = 0; i < NVARS; i++) {
		const struct config_var *var = &config_vars[i];

		meaning_text(var, meaning, sizeof(meaning));
		default_text(var, markdown, def, sizeof(def));
		if (markdown) {
			fprintf(out, "| `%s` | ", var->name);
			put_text(out, meaning, 1);
			fputs(" | ", out);
			put_text(out, def, 1);
			fputs(" |\n", out);
		} else {
			fprintf(out, "%s\n    ", var->name);
			put_text(out, meaning, 0);
			fputs("\n    default: ", out);
			put_text(out, def, 0);
			fputs("\n", out);
		}
	}
}

int
config_check(FILE *out, FILE *errout, int dev)
{
	struct config_report *rep = malloc(sizeof(*rep));
	struct config *cfg = malloc(sizeof(*cfg));
	char val[4096];
	int rc = 1;

	if (rep == NULL || cfg == NULL) {
		fputs("txmail config check: out of memory\n", errout);
		free(rep);
		free(cfg);
		return 1;
	}
	rc = config_load_report_dev(cfg, rep, dev) == 0 ? 0 : 1;
	for (size_t i = 0; i < NVARS; i++) {
		const struct config_var *var = &config_vars[i];
		int invalid = 0;

		for (size_t j = 0; j < rep->n && !invalid; j++) {
			size_t nl = strlen(var->name);
			const char *t = rep->p[j].text;

			invalid = rep->p[j].severity == CONFIG_ERROR && strncmp(t, var->name, nl) == 0 &&
			    (t[nl] == ':' || (t[nl] == '_' && strncmp(t + nl, "_FILE", 5) == 0) ||
			    (t[nl] == ' ' && strncmp(t + nl, " and ", 5) == 0));
		}
		if (invalid)
			util_strlcpy(val, "(invalid)", sizeof(val));
		else
			cv_show(cfg, var, val, sizeof(val));
		fprintf(out, "%-11s %s=%s", source_names[cfg->source[i] % NSOURCES], var->name, val);
		/* a default from the CPU quota: where it came from, as a comment */
		if ((var->flags & CV_CPUS) && cfg->source[i] == CONFIG_SRC_DEFAULT && cfg->cpu_basis[0] != '\0')
			fprintf(out, "  # %s", cfg->cpu_basis);
		fputc('\n', out);
	}
	for (size_t j = 0; j < rep->n; j++)
		fprintf(errout, "%s: %s\n", rep->p[j].severity == CONFIG_ERROR ? "error" : "warning",
		    rep->p[j].text);
	if (rep->dropped > 0)
		fprintf(errout, "error: %zu more problems not shown\n", rep->dropped);
	fprintf(errout, "config check: %zu error%s, %zu warning%s\n", rep->nerrors,
	    rep->nerrors == 1 ? "" : "s", rep->nwarnings, rep->nwarnings == 1 ? "" : "s");
	config_free(cfg);
	free(cfg);
	free(rep);
	return rc;
}

/* Split the comma-separated TXMAIL_API_KEYS value v into cfg->api_keys. */
static int
load_api_keys(struct config *cfg, const char *v, char *err, size_t errlen)
{
	while (*v != '\0') {
		const char *comma = strchr(v, ',');
		size_t len = comma != NULL ? (size_t)(comma - v) : strlen(v);
		while (len > 0 && isspace((unsigned char)*v)) {
			v++;
			len--;
		}
		while (len > 0 && isspace((unsigned char)v[len - 1]))
			len--;
		if (len > 0) {
			if (cfg->napi_keys == CONFIG_MAX_API_KEYS)
				return config_err(err, errlen, "%s: too many keys", "TXMAIL_API_KEYS");
			if (len > 256)
				return config_err(err, errlen, "%s: a key is longer than 256 characters", "TXMAIL_API_KEYS");
			cfg->api_keys[cfg->napi_keys] = strndup(v, len);
			if (cfg->api_keys[cfg->napi_keys] == NULL)
				return config_err(err, errlen, "%s", "out of memory");
			cfg->napi_keys++;
		}
		v += len;
		while (*v != '\0' && *v != ',')
			v++;
		if (*v == ',')
			v++;
	}
	return 0;
}

void
config_free(struct config *cfg)
{
	for (size_t i = 0; i < cfg->napi_keys; i++) {
		/* keys are secrets: clear before freeing */
		explicit_bzero(cfg->api_keys[i], strlen(cfg->api_keys[i]));
		free(cfg->api_keys[i]);
		cfg->api_keys[i] = NULL;
	}
	cfg->napi_keys = 0;
	explicit_bzero(cfg->relay.pass, sizeof(cfg->relay.pass));
	explicit_bzero(cfg->redis.pass, sizeof(cfg->redis.pass));
	explicit_bzero(cfg->webhook_url, sizeof(cfg->webhook_url));
	explicit_bzero(cfg->webhook_secret, sizeof(cfg->webhook_secret));
	explicit_bzero(cfg->webhook_proxy, sizeof(cfg->webhook_proxy));
	explicit_bzero(cfg->bounce_secret, sizeof(cfg->bounce_secret));
	dkim_keys_free(cfg->dkim_keys);
	cfg->dkim_keys = NULL;
	free(cfg->domain_rate);
	cfg->domain_rate = NULL;
}

/* The relay as a URL with the password masked: "smtp://user:***@host:587". */
static void
relay_masked(const struct smtp_target *t, char *out, size_t outlen)
{
	int v6 = strchr(t->host, ':') != NULL;

	snprintf(out, outlen, "%s://%s%s%s%s%s%s:%u", t->tls == SMTP_TLS_IMPLICIT ? "smtps" : "smtp",
	    t->user, t->user[0] && t->pass[0] ? ":***" : "", t->user[0] ? "@" : "",
	    v6 ? "[" : "", t->host, v6 ? "]" : "", (unsigned)t->port);
}


void
config_describe(const struct config *cfg)
{
	static const char *const tls_names[] = { "none", "starttls", "required", "implicit" };
	char redis[sizeof(cfg->redis.path) + sizeof(cfg->redis.user) + 32];
	char relay[sizeof(cfg->relay.user) + sizeof(cfg->relay.host) + 64];
	char val[4096];

	if (cfg->redis_set)
		config_redis_masked(&cfg->redis, redis, sizeof(redis));
	else
		util_strlcpy(redis, "embedded", sizeof(redis));
	if (cfg->relay_set)
		relay_masked(&cfg->relay, relay, sizeof(relay));
	else
		util_strlcpy(relay, "none", sizeof(relay));
	log_info("config", "listen=%s:%u redis=%s relay=%s relay_tls=%s relay_verify=%s api_keys=%zu "
	    "webhook=%s workers=%d dkim_keys=%zu", cfg->listen_host, (unsigned)cfg->listen_port, redis,
	    relay, cfg->relay_set ? tls_names[cfg->relay.tls & 3] : "none",
	    cfg->relay_set && cfg->relay.no_verify ? "off" : "on", cfg->napi_keys,
	    cfg->webhook_url[0] ? "set" : "none", cfg->workers, dkim_keys_count(cfg->dkim_keys));
	if (cfg->cpu_basis[0] != '\0')
		log_info("cpu quota", "cpus=%d http_threads=%d workers=%d basis=%s", cfg->cpu_count,
		    cfg->http_threads, cfg->workers, cfg->cpu_basis);
	for (size_t i = 0; i < NVARS; i++) {
		const struct config_var *var = &config_vars[i];
		enum config_source src = (enum config_source)(cfg->source[i] % NSOURCES);

		cv_show(cfg, var, val, sizeof(val));
		log_msg(src == CONFIG_SRC_DEFAULT ? LOG_DEBUG : LOG_INFO, "config setting",
		    " name=%s value=%s source=%s",
		    var->name, val, source_names[src]);
	}
}
