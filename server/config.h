/*
 * config.h - configuration from TXMAIL_* environment variables.
 *
 * Every variable is one row of a static table in config.c (name, kind,
 * default, range, unit, one line of meaning, where it is stored); that
 * table drives parsing, `txmail config list` (and the README's table,
 * generated from it), `txmail config check` and the warning for unknown
 * TXMAIL_* variables. Parsing is pure where it can be (URL parsers take
 * strings, not the environment) so it is unit-tested and fuzzed. Secrets
 * read here (API keys, relay URL, Redis URL, webhook URL and secret, bounce
 * secret) are never logged or printed unmasked. Each of them may instead
 * come from a file named by NAME_FILE (Docker/Kubernetes secrets): see
 * config_secret.
 */
#ifndef SERVER_CONFIG_H
#define SERVER_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../smtp/engine.h"
#include "cidr.h"

#define CONFIG_MAX_API_KEYS 64
#define CONFIG_MAX_VARS 96        /* rows of the variable table (checked at compile time) */
#define CONFIG_MAX_PROBLEMS 128
#define CONFIG_PROBLEM_MAX 384

/* Where a setting's value came from. */
enum config_source {
	CONFIG_SRC_DEFAULT = 0,
	CONFIG_SRC_ENV,           /* the variable itself */
	CONFIG_SRC_FILE,          /* NAME_FILE (secrets only) */
	CONFIG_SRC_DEV,           /* unset, and `run --dev` has its own default (config_load_report_dev) */
};

struct dkim_keys;   /* dkim_keys.h */

#define REDIS_MAX_SENTINELS 8     /* hosts a redis+sentinel:// URL may name */
#define REDIS_MAX_SEEDS 16        /* nodes a redis+cluster:// URL may name */
#define REDIS_MASTER_NAME_MAX 128 /* a Sentinel master name: [A-Za-z0-9._-], 1..127 bytes */

/* One host of a list: a sentinel of a redis+sentinel:// URL, a seed node of a redis+cluster:// one. */
struct redis_hostport {
	char host[256];
	uint16_t port;            /* default 26379 (a sentinel), 6379 (a cluster node) */
};

struct redis_addr {
	int is_unix;              /* 1: unix socket at path */
	int is_sentinel;          /* 1: redis+sentinel://: ask sentinels[] for master's primary; host unused */
	struct redis_hostport sentinels[REDIS_MAX_SENTINELS];
	size_t nsentinels;        /* 1..REDIS_MAX_SENTINELS when is_sentinel */
	int is_cluster;           /* 1: redis+cluster://: seeds[] answer CLUSTER SLOTS; host unused, db 0 */
	struct redis_hostport seeds[REDIS_MAX_SEEDS];
	size_t nseeds;            /* 1..REDIS_MAX_SEEDS when is_cluster */
	char master[REDIS_MASTER_NAME_MAX];
	char sentinel_pass[512];  /* TXMAIL_REDIS_SENTINEL_PASSWORD: AUTH to the sentinels; a secret */
	char path[PATH_MAX];
	char host[256];
	uint16_t port;
	int db;
	char user[256];           /* ACL user name; "" = AUTH with the password alone */
	char pass[512];           /* "" = no AUTH; a secret: never logged */
	int timeout_ms;           /* TXMAIL_REDIS_TIMEOUT: a command's answer is due within this; 0 = 5000 */
	int64_t content_keep_ms;  /* TXMAIL_CONTENT_RETENTION: a finished message's MIME stays this long; 0 */
	int min_replicas;         /* TXMAIL_REDIS_MIN_REPLICAS: WAIT for this many after a write told about; 0 */
	int wait_ms;              /* TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT: WAIT's timeout; 1000 */
	int partitions;           /* TXMAIL_PARTITIONS: the keyspace's partitions (hash tags); 0 = 1 */
};

struct config {
	char listen_host[256];    /* TXMAIL_LISTEN, default 127.0.0.1:8080 */
	uint16_t listen_port;
	char admin_listen_host[256];  /* TXMAIL_ADMIN_LISTEN: /metrics, /healthz, /readyz; 127.0.0.1:9090 */
	uint16_t admin_listen_port;
	int admin_listen_off;     /* TXMAIL_ADMIN_LISTEN=off: no admin listener in any role */
	double loop_stall;        /* TXMAIL_LOOP_STALL: least seconds without a round before /readyz calls a loop stalled, 10 */
	char test_wedge[600];     /* TXMAIL_TEST_WEDGE "<loop>:<file>" (tests only), "" none */
	int redis_set;            /* TXMAIL_REDIS_URL given; else `run` embeds redis */
	struct redis_addr redis;
	double redis_timeout;     /* TXMAIL_REDIS_TIMEOUT, 5 (also in redis.timeout_ms) */
	double content_retention; /* TXMAIL_CONTENT_RETENTION, 0 (also in redis.content_keep_ms) */
	int redis_min_replicas;   /* TXMAIL_REDIS_MIN_REPLICAS, 0 (also in redis.min_replicas) */
	double redis_wait;        /* TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT, 1 (also in redis.wait_ms) */
	int partitions;           /* TXMAIL_PARTITIONS, 1 (also in redis.partitions) */
	char data_dir[PATH_MAX];  /* TXMAIL_DATA_DIR, default ./var */
	char *api_keys[CONFIG_MAX_API_KEYS];  /* TXMAIL_API_KEYS, malloc'd */
	size_t napi_keys;
	/* SHA-256 of api_keys[i], made once by the loader (keys.c hashes a key itself when
	 * napi_key_digests != napi_keys, e.g. a config built by hand) */
	unsigned char api_key_digest[CONFIG_MAX_API_KEYS][32];
	size_t napi_key_digests;
	struct cidr_list trusted_proxies; /* TXMAIL_TRUSTED_PROXIES: peers whose X-Forwarded-For is believed */
	int relay_set;            /* TXMAIL_RELAY given */
	struct smtp_target relay;
	char tls_ca_file[PATH_MAX];   /* TXMAIL_TLS_CA_FILE */
	char helo_name[256];      /* TXMAIL_HELO_NAME, default gethostname() */
	char webhook_url[2048];   /* TXMAIL_WEBHOOK_URL */
	char webhook_secret[256]; /* TXMAIL_WEBHOOK_SECRET ("whsec_<base64>") */
	char webhook_projects[1024];  /* TXMAIL_WEBHOOK_PROJECTS: whose events the URL gets; "*" = all */
	int webhook_allow_private;    /* TXMAIL_WEBHOOK_ALLOW_PRIVATE: 1 = loopback/private/link-local webhook targets allowed, 0 */
	char webhook_proxy[1024];     /* TXMAIL_WEBHOOK_PROXY: the only proxy webhooks use ("" none; *_proxy variables ignored) */
	int http_timeout;         /* TXMAIL_HTTP_TIMEOUT: idle API connections closed after this many seconds, 30 */
	double http_header_timeout;   /* TXMAIL_HTTP_HEADER_TIMEOUT: request headers due this many seconds after accept (kept-alive: after the previous request + http_timeout), 10 */
	double http_body_timeout; /* TXMAIL_HTTP_BODY_TIMEOUT: a request body due this many seconds after its headers, 30 */
	size_t http_body_budget;  /* TXMAIL_HTTP_BODY_BUDGET: bytes of request bodies being received at once, 256 MiB */
	double retry_base;        /* TXMAIL_RETRY_BASE, 60 */
	double retry_max;         /* TXMAIL_RETRY_MAX, 3600 */
	double max_age;           /* TXMAIL_MAX_AGE, 86400 */
	double webhook_retry_base;    /* TXMAIL_WEBHOOK_RETRY_BASE, 5 */
	double webhook_retry_max;     /* TXMAIL_WEBHOOK_RETRY_MAX, 3600 */
	double webhook_max_age;       /* TXMAIL_WEBHOOK_MAX_AGE, 259200 (3 days) */
	double webhook_disable_after; /* TXMAIL_WEBHOOK_DISABLE_AFTER, 86400; 0 never */
	double webhook_timeout;       /* TXMAIL_WEBHOOK_TIMEOUT, 10 */
	double test_webhook_poll;     /* TXMAIL_TEST_WEBHOOK_POLL (tests only), 0.05 */
	int webhook_connections;      /* TXMAIL_WEBHOOK_CONNECTIONS: requests in flight per endpoint, 128 */
	double visibility_timeout;    /* TXMAIL_VISIBILITY_TIMEOUT, 30 */
	size_t max_body;          /* TXMAIL_MAX_BODY bytes, 10 MiB */
	int http_threads;         /* TXMAIL_HTTP_THREADS, default cpu_count (at most 64) */
	int workers;              /* TXMAIL_WORKERS: delivery loops per process, default cpu_count (at most 64) */
	int cpu_count;            /* the cgroup CPU quota rounded up, within 1..usable CPUs (cpuquota.h); 0 until needed */
	char cpu_basis[320];      /* where cpu_count came from, for config check and the start-up log */
	int worker_concurrency;   /* TXMAIL_WORKER_CONCURRENCY: deliveries in flight per loop, 256 */
	int dest_max_inflight;    /* TXMAIL_DEST_MAX_INFLIGHT: transactions per destination per loop; 0 = concurrency / 4 direct, all via a relay */
	int lane_weight_high;     /* TXMAIL_LANE_WEIGHTS high:9,normal:1 - the lanes' shares of the slots */
	int lane_weight_normal;
	int max_conns_per_target; /* TXMAIL_MAX_CONNS_PER_HOST, 32 (KumoMTA's default) */
	int max_msgs_per_conn;    /* TXMAIL_MAX_MSGS_PER_CONN, 1024 (KumoMTA's default) */
	char *domain_rate;        /* TXMAIL_DOMAIN_RATE "d=N,...,*=N" msgs/s per recipient domain (validated; malloc'd, NULL = none) */
	int dest_fail_threshold;  /* TXMAIL_DEST_FAIL_THRESHOLD: connection failures before a destination is suspended, 5 */
	double dest_backoff_base; /* TXMAIL_DEST_BACKOFF_BASE: first suspension, 10 s */
	double dest_backoff_max;  /* TXMAIL_DEST_BACKOFF_MAX: longest suspension, 600 s */
	struct smtp_timeouts smtp_timeouts;  /* TXMAIL_SMTP_TIMEOUT_<CMD> (CONNECT, BANNER, ...) */
	int log_level;            /* TXMAIL_LOG_LEVEL */
	int log_format;           /* TXMAIL_LOG_FORMAT: 0 logfmt, 1 json */
	double shutdown_grace;    /* TXMAIL_SHUTDOWN_GRACE: SIGTERM: seconds in-flight SMTP transactions may take, 25 */
	char sink_listen_host[256];   /* TXMAIL_SINK_LISTEN: `run --dev`'s capture sink, 127.0.0.1:2525 */
	uint16_t sink_listen_port;
	char redis_server[PATH_MAX];  /* TXMAIL_REDIS_SERVER: binary for the embedded redis, "redis-server" */
	double rate_limit;        /* TXMAIL_RATE_LIMIT: requests per second per API key, 200; 0 = off */
	double rate_burst;        /* TXMAIL_RATE_BURST: bucket size, 400 */
	size_t max_attach;        /* TXMAIL_MAX_ATTACHMENT_BYTES: decoded total per message, 7 MiB */
	char bounce_domain[254];  /* TXMAIL_BOUNCE_DOMAIN: VERP return paths bounces+<token>@it; "" off */
	char bounce_secret[256];  /* TXMAIL_BOUNCE_SECRET: token MAC key, >= 16 chars (required with the domain) */
	int bounce_listen_set;    /* TXMAIL_BOUNCE_LISTEN given: `run` starts the DSN listener */
	char bounce_listen_host[256];
	uint16_t bounce_listen_port;
	size_t bounce_max_bytes;      /* TXMAIL_BOUNCE_MAX_BYTES: DSN listener message cap, 1 MiB */
	int bounce_max_clients;       /* TXMAIL_BOUNCE_MAX_CLIENTS: DSN listener connections, 64 */
	int bounce_max_clients_per_ip;    /* TXMAIL_BOUNCE_MAX_CLIENTS_PER_IP: ... per IPv4 address / IPv6 /64, 8 */
	double bounce_idle_timeout;   /* TXMAIL_BOUNCE_IDLE_TIMEOUT: seconds, 300 */
	double bounce_data_timeout;   /* TXMAIL_BOUNCE_DATA_TIMEOUT: seconds for the whole DATA phase, 120 */
	int submission_listen_set;    /* TXMAIL_SUBMISSION_LISTEN given: SMTP submission, STARTTLS (587 style) */
	char submission_listen_host[256];
	uint16_t submission_listen_port;
	int submissions_listen_set;   /* TXMAIL_SUBMISSIONS_LISTEN given: SMTP submission, implicit TLS (465 style) */
	char submissions_listen_host[256];
	uint16_t submissions_listen_port;
	char submission_tls_cert[PATH_MAX];   /* TXMAIL_SUBMISSION_TLS_CERT: PEM chain, reloaded when it changes */
	char submission_tls_key[PATH_MAX];    /* TXMAIL_SUBMISSION_TLS_KEY: PEM private key */
	int submission_max_clients;           /* TXMAIL_SUBMISSION_MAX_CLIENTS: sessions at once, 64 */
	int submission_max_clients_per_ip;    /* TXMAIL_SUBMISSION_MAX_CLIENTS_PER_IP: per IPv4 / IPv6 /64, 8 */
	double submission_command_timeout;    /* TXMAIL_SUBMISSION_COMMAND_TIMEOUT: seconds per command line / DATA, 60 */
	double submission_session_timeout;    /* TXMAIL_SUBMISSION_SESSION_TIMEOUT: seconds per connection, 600 */
	double events_retention;  /* TXMAIL_EVENTS_RETENTION: seconds events stay for SSE resume, 86400 */
	int sse_per_key;          /* TXMAIL_SSE_PER_KEY: open event streams per API key and process, 8 */
	struct dkim_keys *dkim_keys;  /* TXMAIL_DKIM_KEYS, key files read at load; NULL: no signing */
	char dns_server[64];      /* TXMAIL_DNS_SERVER: "ip:port" (IPv4) for MX lookups, "" = system resolver */
	uint16_t mx_port;         /* TXMAIL_MX_PORT: SMTP port of MX hosts, 25 */
	int mx_tls_verify;        /* TXMAIL_MX_TLS_VERIFY: 1 = require STARTTLS with a verified certificate */
	int dev;                  /* set by `run --dev` (no variable): /dev/mail serves $data_dir/mail */
	unsigned char source[CONFIG_MAX_VARS];  /* enum config_source of each table row */
};

enum config_severity { CONFIG_WARNING, CONFIG_ERROR };

/* The problems config_load_report found, in the order found. */
struct config_report {
	size_t n, nerrors, nwarnings;
	size_t dropped;           /* problems beyond CONFIG_MAX_PROBLEMS, counted only */
	struct {
		enum config_severity severity;
		char text[CONFIG_PROBLEM_MAX];   /* "TXMAIL_X: ...", never a secret's value */
	} p[CONFIG_MAX_PROBLEMS];
};

/*
 * config_load_report - defaults, then the environment. Every variable is
 * parsed even after an error; each problem is one line in rep (errors:
 * bad values, missing companions; warnings: unknown TXMAIL_* variables,
 * a value that another one overrides). Returns 0 when rep holds no error,
 * -1 otherwise. Logs nothing. Caller calls config_free in both cases.
 */
int config_load_report(struct config *cfg, struct config_report *rep);

/*
 * config_load_report_dev - config_load_report; with dev != 0 (`run --dev`)
 * an unset variable that has a dev default takes it, source
 * CONFIG_SRC_DEV: TXMAIL_WEBHOOK_ALLOW_PRIVATE 1, TXMAIL_RETRY_BASE 1,
 * TXMAIL_RETRY_MAX 30, TXMAIL_RATE_LIMIT 0 (config list shows them).
 * Where a base is above its maximum and one of the two is a dev default,
 * the dev default is moved to the other's value, without a warning.
 */
int config_load_report_dev(struct config *cfg, struct config_report *rep, int dev);

/*
 * config_load - config_load_report that logs the warnings (log_warn) and
 * puts the errors, joined by "; ", in err. 0, or -1. Caller calls
 * config_free in both cases.
 */
int config_load(struct config *cfg, char *err, size_t errlen);

/*
 * config_unknown_vars - warnings for the unknown TXMAIL_* variables of the
 * environment only, with a suggestion for a name close to a known one
 * (for commands that read no other configuration, e.g. `txmail sink`).
 */
void config_unknown_vars(struct config_report *rep);

/* config_source_of - where variable `name` came from; CONFIG_SRC_DEFAULT for unknown names. */
enum config_source config_source_of(const struct config *cfg, const char *name);

/*
 * config_list - every variable, its meaning and default, from the table
 * the parser uses: one line each, or (markdown != 0) the README's table.
 */
void config_list(FILE *out, int markdown);

/*
 * config_check - load the configuration (dev != 0: as `run --dev` does)
 * and print every effective setting as "source NAME=value" (secrets
 * masked; source default, environment, file or dev) to out, then each
 * problem as one line to errout. Returns 0 when there is no error
 * (warnings allowed), 1 otherwise.
 */
int config_check(FILE *out, FILE *errout, int dev);
void config_free(struct config *cfg);

/*
 * config_secret - the secret variable `name` into out: its own value, or
 * else the content of the file named by name_FILE, one trailing "\n" or
 * "\r\n" removed. out is "" when neither is set (an empty value counts as
 * unset). Returns 0, or -1 with err naming the variable (and the file's
 * path, never its content) when both are set, the value is longer than
 * outlen - 1, or the file cannot be read, is not a regular file, is empty,
 * holds a NUL or is longer than outlen - 1 bytes. name is at most 64 chars.
 */
int config_secret(const char *name, char *out, size_t outlen, char *err, size_t errlen);

/*
 * config_parse_relay - "smtp://[user:pass@]host:port[?tls=none|starttls|required]"
 * or "smtps://[user:pass@]host[:port]". User and password are percent-decoded.
 * Defaults: smtp port 25 (587 when tls=required), smtps 465; tls=starttls.
 * Also accepts "&verify=0" (tests only). 0, or -1 with err.
 */
int config_parse_relay(const char *url, struct smtp_target *out, char *err, size_t errlen);

/*
 * config_parse_redis - "redis://[[user]:password@]host[:port][/db]",
 * "unix://[[user]:password@]/path[?db=N]" or
 * "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<master>[/db]"
 * (1..REDIS_MAX_SENTINELS sentinels, default port 26379; the credentials
 * are the data node's, the sentinels' own password is set apart, in
 * sentinel_pass) or "redis+cluster://[[user]:password@]host[:port][,...]"
 * (1..REDIS_MAX_SEEDS seed nodes, default port 6379; a /db is refused:
 * a cluster has only db 0). User and password are percent-decoded (in the unix form
 * a '/' in them must be written %2F); a user needs a password. Defaults:
 * port 6379, db 0. 0, or -1 with err, which never holds the password; on
 * error out holds no credentials.
 */
int config_parse_redis(const char *url, struct redis_addr *out, char *err, size_t errlen);

/*
 * config_redis_masked - addr as a URL with the password masked, for logs:
 * "redis://user:***@host:6379/2", "redis://:***@host:6379",
 * "unix://:***@/path?db=1", "redis+sentinel://:***@s1:26379,s2:26379/mymaster/2",
 * "redis+cluster://:***@n1:6379,n2:6379".
 * Truncated to outlen - 1.
 */
void config_redis_masked(const struct redis_addr *addr, char *out, size_t outlen);

/* config_parse_listen - "host:port" or "[v6]:port". 0, or -1 with err. */
int config_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port,
    char *err, size_t errlen);

/*
 * config_describe - log the configuration at start: a summary line, one
 * info line per setting not at its default, the rest at debug; secrets
 * masked.
 */
void config_describe(const struct config *cfg);

#endif
