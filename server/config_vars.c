/*
 * config_vars.c - the variable table: one row per TXMAIL_* variable (name,
 * kind, default, range, unit, one line of meaning, field or parser) and
 * the parsers and views of the custom rows (listen addresses, the relay
 * and Redis URLs, API keys, webhook targets, worker and thread counts from
 * the CPU quota, log level and format, DKIM keys, the DSN listener,
 * trusted proxies).
 *
 * It owns what each variable means; config.c owns the machinery that
 * walks the table (loading, the report of problems, `txmail config list`
 * and `config check`). It must never read the environment (the loader
 * hands each parser its value; secrets come through config_secret) and
 * never print or log a value: every view of a secret is masked.
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
#include "hash.h"
#include "log.h"
#include "netguard.h"
#include "shaper.h"
#include "util.h"

_Static_assert(sizeof(((struct config *)0)->api_key_digest[0]) == HASH_SHA256_LEN, "digest size");
_Static_assert(sizeof(((struct config *)0)->cpu_basis) == CPUQUOTA_BASIS_MAX, "cpu_basis size");

#define FIELD(f) .off = offsetof(struct config, f), .size = sizeof(((struct config *)0)->f)
#define SECONDS(lo, hi) .kind = CV_SECONDS, .min = (lo), .max = (hi), .unit = "seconds"

static int set_listen(struct config *, const char *, char *, size_t);
static int set_admin_listen(struct config *, const char *, char *, size_t);
static int set_redis(struct config *, const char *, char *, size_t);
static int set_redis_sentinel_pass(struct config *, const char *, char *, size_t);
static int set_redis_timeout(struct config *, const char *, char *, size_t);
static int set_redis_min_replicas(struct config *, const char *, char *, size_t);
static int set_partitions(struct config *, const char *, char *, size_t);
static int set_redis_wait(struct config *, const char *, char *, size_t);
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
static int set_lane_weights(struct config *, const char *, char *, size_t);
static int set_log_level(struct config *, const char *, char *, size_t);
static int set_log_format(struct config *, const char *, char *, size_t);
static int set_sink_listen(struct config *, const char *, char *, size_t);
static int set_dkim_keys(struct config *, const char *, char *, size_t);
static int check_dns_server(struct config *, const char *, char *, size_t);
static int check_bounce_domain(struct config *, const char *, char *, size_t);
static int set_bounce_listen(struct config *, const char *, char *, size_t);
static int set_submission_listen(struct config *, const char *, char *, size_t);
static int set_submissions_listen(struct config *, const char *, char *, size_t);
static int set_trusted_proxies(struct config *, const char *, char *, size_t);
static void show_listen(const struct config *, char *, size_t);
static void show_admin_listen(const struct config *, char *, size_t);
static void show_redis(const struct config *, char *, size_t);
static void show_redis_sentinel_pass(const struct config *, char *, size_t);
static void show_masked(const char *, char *, size_t);
static void show_api_keys(const struct config *, char *, size_t);
static void show_relay(const struct config *, char *, size_t);
static void show_webhook_url(const struct config *, char *, size_t);
static void show_webhook_secret(const struct config *, char *, size_t);
static void show_webhook_proxy(const struct config *, char *, size_t);
static void show_bounce_secret(const struct config *, char *, size_t);
static void show_domain_rate(const struct config *, char *, size_t);
static void show_lane_weights(const struct config *, char *, size_t);
static void show_log_level(const struct config *, char *, size_t);
static void show_log_format(const struct config *, char *, size_t);
static void show_sink_listen(const struct config *, char *, size_t);
static void show_dkim_keys(const struct config *, char *, size_t);
static void show_bounce_listen(const struct config *, char *, size_t);
static void show_submission_listen(const struct config *, char *, size_t);
static void show_submissions_listen(const struct config *, char *, size_t);
static void show_trusted_proxies(const struct config *, char *, size_t);

const struct config_var config_vars[] = {
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
	  .help = "`redis://[[user]:password@]host[:port][/db]`, `unix://[[user]:password@]/path[?db=N]` "
	    "or `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<master-name>[/db]` "
	    "(up to 8 sentinels, port 26379 by default: every connection asks them in turn for the "
	    "primary, checks it with `ROLE` and asks again after a failover; see Redis Sentinel) "
	    "or `redis+cluster://[[user]:password@]host[:port][,host[:port]...]` (up to 16 seed "
	    "nodes of a Redis Cluster, db 0 only: the slot map is read from them and every command "
	    "goes to its slot's primary, following `MOVED` and `ASK`; `TXMAIL_PARTITIONS` spreads "
	    "txmail over the primaries, see Redis Cluster); "
	    "with a password every connection and reconnect starts with `AUTH [user] password` "
	    "(user: a Redis 6+ ACL user; with Sentinel: the data nodes' credentials); user and "
	    "password percent-encoded (`%40` for `@`; in the "
	    "`unix://` form `%2F` for `/`); logged as `redis://user:***@host:port`; a refused AUTH is "
	    "logged as `redis: AUTH failed: ...` and `/readyz` answers 503. No TLS (`rediss://`): "
	    "keep Redis on a private network",
	  .size = SECRET_URL_MAX, .set = set_redis, .show = show_redis },
	/* after TXMAIL_REDIS_URL: its parser resets cfg->redis, this row then sets redis.sentinel_pass */
	{ .name = "TXMAIL_REDIS_SENTINEL_PASSWORD", .kind = CV_CUSTOM, .flags = CV_SECRET, .def = "",
	  .note = "none: the sentinels take no AUTH",
	  .help = "with a `redis+sentinel://` URL only: the sentinels' own password (`requirepass` in "
	    "their configuration), sent as `AUTH password` before asking them for the primary; the "
	    "data node's credentials stay in the URL",
	  .size = sizeof(((struct redis_addr *)0)->sentinel_pass), .set = set_redis_sentinel_pass,
	  .show = show_redis_sentinel_pass },
	/* after TXMAIL_REDIS_URL: its parser resets cfg->redis, this row then sets redis.timeout_ms */
	{ .name = "TXMAIL_REDIS_TIMEOUT", SECONDS(0.05, 600), .def = "5",
	  .help = "a Redis command not answered in this time fails (the set-up after a reconnect: 1 s "
	    "per command; a blocking read: its block time + 5 s): the request answers 503 `unavailable`; "
	    "a send whose enqueue was not answered is first settled (see Delivery semantics): 202, 503 "
	    "(nothing stored) or 504 `outcome_unknown`", FIELD(redis_timeout), .set = set_redis_timeout },
	/* after TXMAIL_REDIS_URL too: these rows set redis.min_replicas and redis.wait_ms */
	{ .name = "TXMAIL_REDIS_MIN_REPLICAS", .kind = CV_INT, .min = 0, .max = 16, .def = "0",
	  .note = "0: a write counts once the primary has it",
	  .help = "replicas that must have a write before a client is told about it: after the "
	    "enqueue of a send, any other change made through the API, and before an event goes out "
	    "as a webhook or on `/v1/events/stream`, txmail sends `WAIT N` (timeout "
	    "`TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT`). Fewer confirming: a send answers 504 "
	    "`outcome_unknown` (retry with the same Idempotency-Key), another change 504 as well, and "
	    "webhooks wait until the replicas catch up. With 1 or more, a failover to a replica that "
	    "had the write loses no 202 (see Redis Sentinel in the README); needs a Redis with replicas "
	    "(`TXMAIL_REDIS_URL`: not the embedded one)",
	  FIELD(redis_min_replicas), .set = set_redis_min_replicas },
	{ .name = "TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT", SECONDS(0.01, 60), .def = "1",
	  .help = "how long `WAIT` gives the replicas (with `TXMAIL_REDIS_MIN_REPLICAS` above 0); a send "
	    "waits this much longer for its answer when a replica is slow or gone",
	  FIELD(redis_wait), .set = set_redis_wait },
	/* after TXMAIL_REDIS_URL too: this row sets redis.partitions */
	{ .name = "TXMAIL_PARTITIONS", .kind = CV_INT, .min = 1, .max = 64, .def = "1",
	  .note = "everything in one hash tag, `txm{0}`",
	  .help = "the partitions of txmail's keyspace: partition k's keys carry the hash tag "
	    "`txm{k}`, so on a Redis Cluster they spread over the primaries by slot (three primaries "
	    "splitting the slots evenly: 4 or more put some on each; see Redis Cluster). A message, its "
	    "recipients' state and its events stay in one partition, named in its id (`msg_...p3`; "
	    "none: partition 0): by its Idempotency-Key when it has one (a retry meets the first "
	    "answer), else in turn. Every worker serves every partition; API keys, templates, "
	    "webhook endpoints and shaping stay in partition 0, the suppression lists are copied into "
	    "each. Raise it, never lower it (mail of a partition no longer served would wait): every "
	    "txmail process of one Redis must use the same value",
	  FIELD(partitions), .set = set_partitions },
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
	{ .name = "TXMAIL_WEBHOOK_DISABLE_AFTER", SECONDS(0, 31536000), .def = "86400", .note = "24 h",
	  .help = "a webhook endpoint (not the default one) whose attempts have all failed for this long is "
	    "disabled (logged at warn, counted in `txmail_webhook_endpoints_disabled_total`); its events "
	    "are kept for `TXMAIL_WEBHOOK_MAX_AGE` and replayed by PATCH `enabled:true`; `0` never disables",
	  FIELD(webhook_disable_after) },
	{ .name = "TXMAIL_WEBHOOK_TIMEOUT", SECONDS(0.1, 3600), .def = "10",
	  .help = "a webhook request without an answer in this time is retried", FIELD(webhook_timeout) },
	{ .name = "TXMAIL_TEST_WEBHOOK_POLL", SECONDS(0.001, 3600), .def = "0.05",
	  .help = "tests only: how long the webhook dispatcher waits in curl's poll while requests are in "
	    "flight, unless woken (an event recorded by this process wakes it at once; one from another "
	    "process is seen within this time, or at once by an idle dispatcher); never set it in production",
	  FIELD(test_webhook_poll) },
	{ .name = "TXMAIL_WEBHOOK_CONNECTIONS", .kind = CV_INT, .min = 1, .max = 256, .def = "128",
	  .help = "webhook requests in flight per endpoint, each on a keep-alive connection of its own "
	    "(events/s one endpoint can take: about this divided by its answer time, 128 / 10 ms = "
	    "12,800; a dead or slow endpoint holds only these)",
	  FIELD(webhook_connections) },
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
	{ .name = "TXMAIL_DEST_MAX_INFLIGHT", .kind = CV_INT, .min = 0, .max = 10000, .def = "0",
	  .note = "0: a quarter of `TXMAIL_WORKER_CONCURRENCY` in direct delivery, all of it through a relay",
	  .help = "SMTP transactions in flight per destination (an MX host set, or the relay) per loop; more "
	    "wait for a slot, and beyond as many again they go back to the queue to be tried later, so a "
	    "destination that holds connections open (a tarpit) never takes every slot (see Fairness)",
	  FIELD(dest_max_inflight) },
	{ .name = "TXMAIL_LANE_WEIGHTS", .kind = CV_CUSTOM, .def = "high:9,normal:1",
	  .help = "how the delivery slots are shared between the priority lanes while both have work: `high` "
	    "first, but `normal` still gets its share during a flood of `high` (each weight 1 to 1000; see "
	    "Fairness)",
	  .set = set_lane_weights, .show = show_lane_weights },
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
	{ .name = "TXMAIL_SUBMISSION_LISTEN", .kind = CV_CUSTOM, .def = "", .note = "off",
	  .help = "SMTP submission (port 587 style) on this `host:port`: STARTTLS offered and required before "
	    "AUTH; the password is an API key. Part of `run` when set, and the `submission` role",
	  .set = set_submission_listen, .show = show_submission_listen },
	{ .name = "TXMAIL_SUBMISSIONS_LISTEN", .kind = CV_CUSTOM, .def = "", .note = "off",
	  .help = "SMTP submission with implicit TLS (port 465 style) on this `host:port`",
	  .set = set_submissions_listen, .show = show_submissions_listen },
	{ .name = "TXMAIL_SUBMISSION_TLS_CERT", .kind = CV_STR, .def = "", .note = "none",
	  .help = "submission: the certificate chain (PEM file); required with either listener; read again "
	    "on SIGHUP and when the file changes", FIELD(submission_tls_cert) },
	{ .name = "TXMAIL_SUBMISSION_TLS_KEY", .kind = CV_STR, .def = "", .note = "none",
	  .help = "submission: the private key of the certificate (PEM file), read again with it",
	  FIELD(submission_tls_key) },
	{ .name = "TXMAIL_SUBMISSION_MAX_CLIENTS", .kind = CV_INT, .min = 1, .max = 4096, .def = "64",
	  .help = "submission: sessions at once (each a thread; memory held: at most this times "
	    "`TXMAIL_MAX_BODY`); more are greeted `421 4.7.0` and closed", FIELD(submission_max_clients) },
	{ .name = "TXMAIL_SUBMISSION_MAX_CLIENTS_PER_IP", .kind = CV_INT, .min = 1, .max = 4096, .def = "8",
	  .help = "submission: sessions at once from one IPv4 address or IPv6 /64; more get `421 4.7.0`",
	  FIELD(submission_max_clients_per_ip) },
	{ .name = "TXMAIL_SUBMISSION_COMMAND_TIMEOUT", SECONDS(0.1, 3600), .def = "60",
	  .help = "submission: a command line not received within this, or a pause this long in DATA: "
	    "`421 4.4.2` and the connection is closed (the whole DATA phase may take 10 times this)",
	  FIELD(submission_command_timeout) },
	{ .name = "TXMAIL_SUBMISSION_SESSION_TIMEOUT", SECONDS(0.1, 86400), .def = "600",
	  .help = "submission: a connection open this long is closed (`421 4.4.2`) at its next command",
	  FIELD(submission_session_timeout) },
};

const size_t config_nvars = sizeof(config_vars) / sizeof(config_vars[0]);
_Static_assert(sizeof(config_vars) / sizeof(config_vars[0]) <= CONFIG_MAX_VARS, "raise CONFIG_MAX_VARS");

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

/* with the address too: every store handle (store_open) asks the sentinels the same way */
static int
set_redis_sentinel_pass(struct config *cfg, const char *v, char *err, size_t errlen)
{
	size_t n = strlen(v);

	if (n == 0)
		return 0;
	if (!cfg->redis.is_sentinel)
		return config_err(err, errlen, "%s", "only with a redis+sentinel:// TXMAIL_REDIS_URL");
	if (n >= sizeof(cfg->redis.sentinel_pass))
		return config_err(err, errlen, "longer than %zu bytes", sizeof(cfg->redis.sentinel_pass) - 1);
	memcpy(cfg->redis.sentinel_pass, v, n + 1);
	return 0;
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

/* like the timeout: the replicas to wait for travel with the address to every store handle */
static int
set_redis_min_replicas(struct config *cfg, const char *v, char *err, size_t errlen)
{
	(void)v;
	(void)err;
	(void)errlen;
	cfg->redis.min_replicas = cfg->redis_min_replicas;
	return 0;
}

static int
set_partitions(struct config *cfg, const char *v, char *err, size_t errlen)
{
	(void)v;
	(void)err;
	(void)errlen;
	cfg->redis.partitions = cfg->partitions;
	return 0;
}

static int
set_redis_wait(struct config *cfg, const char *v, char *err, size_t errlen)
{
	(void)v;
	(void)err;
	(void)errlen;
	cfg->redis.wait_ms = (int)(cfg->redis_wait * 1000.0 + 0.5);
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

static void
show_redis_sentinel_pass(const struct config *cfg, char *out, size_t outlen)
{
	show_masked(cfg->redis.sentinel_pass, out, outlen);
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


static void
show_relay(const struct config *cfg, char *out, size_t outlen)
{
	static const char *const tls_names[] = { "none", "starttls", "required", "implicit" };
	char url[sizeof(cfg->relay.user) + sizeof(cfg->relay.host) + 32];

	if (!cfg->relay_set) {
		util_strlcpy(out, "", outlen);
		return;
	}
	config_relay_masked(&cfg->relay, url, sizeof(url));
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

/* "high:9,normal:1": each lane at most once, in any order; a lane not named keeps its default */
static int
set_lane_weights(struct config *cfg, const char *v, char *err, size_t errlen)
{
	int w[2] = { 9, 1 }, seen[2] = { 0, 0 };
	const char *p = v;

	while (*p != '\0') {
		char name[16];
		size_t n = 0;
		long val;
		char *end;
		int lane;

		while (*p == ' ' || *p == '\t')
			p++;
		while (*p != ':' && *p != ',' && *p != '\0' && n + 1 < sizeof(name))
			name[n++] = *p++;
		name[n] = '\0';
		while (n > 0 && (name[n - 1] == ' ' || name[n - 1] == '\t'))
			name[--n] = '\0';
		if (strcmp(name, "high") == 0)
			lane = 0;
		else if (strcmp(name, "normal") == 0)
			lane = 1;
		else
			return config_err(err, errlen, "\"%.64s\": want high:N,normal:N (lane \"%.16s\"?)", v, name);
		if (*p != ':')
			return config_err(err, errlen, "\"%.64s\": want high:N,normal:N (no weight for %s)", v, name);
		p++;
		val = strtol(p, &end, 10);
		if (end == p || val < 1 || val > 1000)
			return config_err(err, errlen, "\"%.64s\": the weight of %s must be 1 to 1000", v, name);
		if (seen[lane]++)
			return config_err(err, errlen, "\"%.64s\": %s given twice", v, name);
		w[lane] = (int)val;
		p = end;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == ',')
			p++;
		else if (*p != '\0')
			return config_err(err, errlen, "\"%.64s\": want high:N,normal:N", v);
	}
	cfg->lane_weight_high = w[0];
	cfg->lane_weight_normal = w[1];
	return 0;
}

static void
show_lane_weights(const struct config *cfg, char *out, size_t outlen)
{
	snprintf(out, outlen, "high:%d,normal:%d", cfg->lane_weight_high, cfg->lane_weight_normal);
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

/* set_listen_opt - an optional listener: "" leaves it off, else host:port into host/port and *set = 1 */
static int
set_listen_opt(const char *v, char *host, size_t hostlen, uint16_t *port, int *set, char *err,
    size_t errlen)
{
	if (*v == '\0')
		return 0;
	if (config_parse_listen(v, host, hostlen, port, err, errlen) != 0)
		return -1;
	*set = 1;
	return 0;
}

/* show_listen_opt - an optional listener's host:port, "" when off */
static void
show_listen_opt(int set, const char *host, uint16_t port, char *out, size_t outlen)
{
	if (set)
		show_hostport(host, port, out, outlen);
	else
		util_strlcpy(out, "", outlen);
}

static int
set_bounce_listen(struct config *cfg, const char *v, char *err, size_t errlen)
{
	return set_listen_opt(v, cfg->bounce_listen_host, sizeof(cfg->bounce_listen_host),
	    &cfg->bounce_listen_port, &cfg->bounce_listen_set, err, errlen);
}

static void
show_bounce_listen(const struct config *cfg, char *out, size_t outlen)
{
	show_listen_opt(cfg->bounce_listen_set, cfg->bounce_listen_host, cfg->bounce_listen_port, out, outlen);
}

static int
set_submission_listen(struct config *cfg, const char *v, char *err, size_t errlen)
{
	return set_listen_opt(v, cfg->submission_listen_host, sizeof(cfg->submission_listen_host),
	    &cfg->submission_listen_port, &cfg->submission_listen_set, err, errlen);
}

static void
show_submission_listen(const struct config *cfg, char *out, size_t outlen)
{
	show_listen_opt(cfg->submission_listen_set, cfg->submission_listen_host, cfg->submission_listen_port, out, outlen);
}

static int
set_submissions_listen(struct config *cfg, const char *v, char *err, size_t errlen)
{
	return set_listen_opt(v, cfg->submissions_listen_host, sizeof(cfg->submissions_listen_host),
	    &cfg->submissions_listen_port, &cfg->submissions_listen_set, err, errlen);
}

static void
show_submissions_listen(const struct config *cfg, char *out, size_t outlen)
{
	show_listen_opt(cfg->submissions_listen_set, cfg->submissions_listen_host, cfg->submissions_listen_port, out, outlen);
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
			/* hashed once here, not on every request (keys_match_env) */
			if (cfg->napi_key_digests == cfg->napi_keys &&
			    hash_sha256(v, len, cfg->api_key_digest[cfg->napi_keys]) == 0)
				cfg->napi_key_digests++;
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

/* The relay as a URL with the password masked: "smtp://user:***@host:587". */
void
config_relay_masked(const struct smtp_target *t, char *out, size_t outlen)
{
	int v6 = strchr(t->host, ':') != NULL;

	snprintf(out, outlen, "%s://%s%s%s%s%s%s:%u", t->tls == SMTP_TLS_IMPLICIT ? "smtps" : "smtp",
	    t->user, t->user[0] && t->pass[0] ? ":***" : "", t->user[0] ? "@" : "",
	    v6 ? "[" : "", t->host, v6 ? "]" : "", (unsigned)t->port);
}
