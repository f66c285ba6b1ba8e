/*
 * main.c - the txmail command line: subcommands, start-up and shutdown.
 *
 * Owns the order in which roles start and stop, and signal handling
 * (SIGINT/SIGTERM are waited for with sigwait in the main thread; every
 * other thread runs with them blocked). The first one starts a graceful
 * stop on a thread of its own (shutdown_graceful: HTTP answers 503, SMTP
 * transactions in flight get TXMAIL_SHUTDOWN_GRACE to finish, the rest is
 * handed back to the queue, one summary line, exit 0) while the main
 * thread keeps listening: a second signal exits at once. Knows nothing of
 * HTTP, SMTP or Redis details: it only starts the modules that do.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bounce.h"
#include "config.h"
#include "dkim_cli.h"
#include "embed.h"
#include "health.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "scheduler.h"
#include "sink.h"
#include "store.h"
#include "submission.h"
#include "util.h"
#include "webhook.h"
#include "worker.h"

#ifndef TXMAIL_VERSION
#error "TXMAIL_VERSION is the VERSION file, passed by the Makefile as -DTXMAIL_VERSION"
#endif

#define MAX_WORKERS 64
#define STOP_HARD_MARGIN_MS 10000   /* a stop still running this long after the grace: exit anyway */

/* The NAME_FILE variants (config_secret), in every help text that lists configuration. */
#define USAGE_SECRET_FILES \
    "Secrets may come from files instead (Docker/Kubernetes secrets): each of\n" \
    "TXMAIL_API_KEYS, TXMAIL_RELAY, TXMAIL_REDIS_URL, TXMAIL_WEBHOOK_URL,\n" \
    "TXMAIL_WEBHOOK_SECRET and TXMAIL_BOUNCE_SECRET has a NAME_FILE form,\n" \
    "e.g. TXMAIL_RELAY_FILE=/run/secrets/relay (one trailing newline is ignored;\n" \
    "setting both NAME and NAME_FILE is an error).\n"

static const char usage_main[] =
    "txmail " TXMAIL_VERSION "\n"
    "usage: txmail <command> [options]\n"
    "\n"
    "Transactional email HTTP API server: accepts JSON over HTTP, stores it\n"
    "durably in Redis, delivers it over SMTP and reports by signed webhooks.\n"
    "\n"
    "commands:\n"
    "  run [--dev]   every role in one process (API, workers, scheduler, webhooks);\n"
    "                --dev adds an embedded redis, a capture SMTP sink and a dev key\n"
    "  api           the HTTP API only\n"
    "  worker        delivery workers, scheduler and webhook dispatcher only\n"
    "  sink          a capture SMTP server writing .eml files (for development)\n"
    "  keys          create|list|revoke API keys (stored as SHA-256 hashes in Redis)\n"
    "  bounce        inbound SMTP listener for DSNs sent to the VERP return paths\n"
    "                (TXMAIL_BOUNCE_DOMAIN); also part of 'run' with TXMAIL_BOUNCE_LISTEN\n"
    "  submission    SMTP submission (STARTTLS and implicit TLS; the password is an\n"
    "                API key); also part of 'run' with TXMAIL_SUBMISSION_LISTEN\n"
    "  dkim          keygen: make a DKIM signing key and print its DNS TXT record\n"
    "  config        check: print every effective setting and its source, secrets\n"
    "                masked, and every problem (exit 1 on an error);\n"
    "                list [--markdown]: every variable, its meaning and default\n"
    "  version       print the version\n"
    "\n"
    "Configuration is read from TXMAIL_* environment variables: 'txmail config list'\n"
    "lists them, 'txmail config check' checks the current environment.\n"
    USAGE_SECRET_FILES
    "Run 'txmail <command> --help' for the options of a command.\n";

static const char usage_run[] =
    "usage: txmail run [--dev]\n"
    "\n"
    "Runs the HTTP API, delivery workers, scheduler and webhook dispatcher.\n"
    "Without TXMAIL_REDIS_URL an embedded redis-server is started with its\n"
    "data and AOF under $TXMAIL_DATA_DIR/redis (default ./var/redis).\n"
    "\n"
    "  --dev   development mode: also start a capture SMTP sink on\n"
    "          TXMAIL_SINK_LISTEN (127.0.0.1:2525) storing every delivered\n"
    "          message under $TXMAIL_DATA_DIR/mail, deliver through it, and\n"
    "          print an API key and a curl line to try. The sink answers by\n"
    "          local part (bounce+, defer+, full+, reject+, slow+; see\n"
    "          README.md), webhook targets on loopback and private networks\n"
    "          are allowed (TXMAIL_WEBHOOK_ALLOW_PRIVATE defaults to 1), and\n"
    "          retries start after 1 s, up to 30 s (unless TXMAIL_RETRY_BASE\n"
    "          or TXMAIL_RETRY_MAX is set).\n"
    "\n"
    "Stops cleanly on SIGINT (Ctrl-C) or SIGTERM: SMTP transactions in flight get\n"
    "TXMAIL_SHUTDOWN_GRACE (25 s) to finish, the rest goes back to the queue; a\n"
    "second signal exits at once.\n"
    "\n"
    USAGE_SECRET_FILES;

static const char usage_config[] =
    "usage: txmail config check [--dev]\n"
    "       txmail config list [--markdown]\n"
    "\n"
    "check  loads the configuration from the environment as the server does and\n"
    "       prints every effective setting as 'SOURCE NAME=VALUE' (SOURCE: default,\n"
    "       environment, file for a NAME_FILE secret, or dev; secrets masked), then one\n"
    "       line per problem on stderr: errors (bad values, out of range, missing\n"
    "       companions) and warnings (unknown TXMAIL_* variables, a value raised\n"
    "       to match another). Exit 0 without errors, 1 with. --dev: as 'run --dev'\n"
    "       loads it, with its dev defaults (source dev) for the variables unset.\n"
    "list   every variable with its meaning and default; --markdown prints the\n"
    "       table of README.md.\n"
    "\n"
    USAGE_SECRET_FILES;

static const char usage_api[] =
    "usage: txmail api\n"
    "\n"
    "Runs only the HTTP API (scale it out behind a load balancer). Needs\n"
    "TXMAIL_REDIS_URL. Listens on TXMAIL_LISTEN (127.0.0.1:8080), which also\n"
    "serves /metrics, /healthz and /readyz; TXMAIL_ADMIN_LISTEN, when set,\n"
    "opens a second listener with those three alone.\n"
    "\n"
    USAGE_SECRET_FILES;

static const char usage_worker[] =
    "usage: txmail worker\n"
    "\n"
    "Runs delivery workers (TXMAIL_WORKERS loops), the scheduler and the\n"
    "webhook dispatcher. Needs TXMAIL_REDIS_URL; delivers through TXMAIL_RELAY.\n"
    "Serves GET /metrics, /healthz and /readyz (200 while Redis answers and\n"
    "every loop runs) on TXMAIL_ADMIN_LISTEN (127.0.0.1:9090; off: none).\n"
    "\n"
    USAGE_SECRET_FILES;

static const char usage_submission[] =
    "usage: txmail submission\n"
    "\n"
    "Runs only the SMTP submission listeners (scale them out like the API):\n"
    "TXMAIL_SUBMISSION_LISTEN (port 587 style: STARTTLS, required before AUTH)\n"
    "and/or TXMAIL_SUBMISSIONS_LISTEN (port 465 style: implicit TLS), with\n"
    "TXMAIL_SUBMISSION_TLS_CERT and TXMAIL_SUBMISSION_TLS_KEY (read again on\n"
    "SIGHUP and when the files change). AUTH PLAIN or LOGIN: any username, an\n"
    "API key as the password (its project, scope, allowlist and rate limit\n"
    "apply). A message is answered 250 with its id (queued as msg_...) once it\n"
    "is stored; 'txmail worker' delivers it. Needs TXMAIL_REDIS_URL. Serves\n"
    "GET /metrics, /healthz and /readyz on TXMAIL_ADMIN_LISTEN (127.0.0.1:9090).\n"
    "\n"
    USAGE_SECRET_FILES;

enum role {
	ROLE_API = 1,
	ROLE_WORK = 2,
};

struct app {
	struct config cfg;
	struct embed_redis redis;
	int embedded;
	struct sink *sink;
	struct bounce *bounce;
	struct submission *sub;    /* TXMAIL_SUBMISSION(S)_LISTEN */
	struct http_server *http;
	struct http_server *admin;  /* TXMAIL_ADMIN_LISTEN: /metrics, /healthz, /readyz */
	struct worker *workers[MAX_WORKERS];
	int nworkers;
	struct scheduler *sched;
	struct webhook *wh;
	atomic_int stopped;        /* shutdown_graceful has returned */
};

static int
wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	return 0;
}

static void
block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);    /* reloads the submission certificate; never a stop */
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static int
mkdir_one(const char *path)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* The dev key: stable across restarts, kept in $DATA_DIR/dev-api-key. */
static int
dev_api_key(struct config *cfg, char *key, size_t keylen)
{
	char path[PATH_MAX + 32], id[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/dev-api-key", cfg->data_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, key, keylen - 1);
		close(fd);
		if (n > 0) {
			key[n] = '\0';
			key[strcspn(key, "\r\n")] = '\0';
			if (key[0] != '\0')
				goto add;
		}
	}
	if (util_random_id("txm_dev_", id, sizeof(id)) != 0)
		return -1;
	util_strlcpy(key, id, keylen);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (write(fd, key, strlen(key)) < 0 || write(fd, "\n", 1) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
add:
	if (cfg->napi_keys < CONFIG_MAX_API_KEYS &&
	    (cfg->api_keys[cfg->napi_keys] = strdup(key)) != NULL)
		cfg->napi_keys++;
	return 0;
}

static int
start_dev(struct app *a, char *key, size_t keylen, char *sink_addr, size_t sinklen)
{
	const char *host = a->cfg.sink_listen_host;
	char err[256], dir[PATH_MAX + 16], b1[32], b2[32];
	uint16_t port = a->cfg.sink_listen_port, bound = 0;

	snprintf(dir, sizeof(dir), "%s/mail", a->cfg.data_dir);
	a->sink = sink_start(host, port, dir, &bound, err, sizeof(err));
	if (a->sink == NULL) {
		log_error("dev sink cannot start", "error=%s", err);
		return -1;
	}
	snprintf(sink_addr, sinklen, "%s:%u", host, bound);
	a->cfg.dev = 1;   /* GET /dev/mail reads what the sink writes */
	if (!a->cfg.relay_set) {
		memset(&a->cfg.relay, 0, sizeof(a->cfg.relay));
		util_strlcpy(a->cfg.relay.host, host, sizeof(a->cfg.relay.host));
		a->cfg.relay.port = bound;
		a->cfg.relay.tls = SMTP_TLS_NONE;
		a->cfg.relay_set = 1;
	}
	/*
	 * The dev defaults (no rate limit, retries 1 s..30 s so defer+ lands in
	 * ~3 s, loopback webhooks) came from config_load_report_dev.
	 */
	log_info("dev mode retries", "retry_base=%s retry_max=%s",
	    util_fmt_duration(a->cfg.retry_base, b1, sizeof(b1)),
	    util_fmt_duration(a->cfg.retry_max, b2, sizeof(b2)));
	if (a->cfg.webhook_allow_private)
		log_warn("dev mode: loopback and private webhook targets allowed");
	if (dev_api_key(&a->cfg, key, keylen) != 0) {
		log_error("cannot create the dev API key", "dir=%s", a->cfg.data_dir);
		return -1;
	}
	return 0;
}

static void
print_dev_banner(const struct app *a, const char *key, const char *sink_addr)
{
	const char *h = a->cfg.listen_host;
	unsigned p = a->cfg.listen_port;
	char b1[32], b2[32];

	if (strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0)
		h = "127.0.0.1";
	printf("txmail dev server ready\n"
	    "  API:      http://%s:%u\n"
	    "  API key:  %s\n"
	    "  Mail:     %s/mail (captured by the dev SMTP sink on %s)\n"
	    "  Outcomes: the sink answers bounce+x@ 550 5.1.1, defer+x@ 451 twice then 250,\n"
	    "            full+x@ 552 5.2.2, reject+x@ 554 5.7.1, slow+x@ after 5 s (README.md)\n"
	    "  Retries:  after %s, doubling up to %s (TXMAIL_RETRY_BASE, TXMAIL_RETRY_MAX)\n"
	    "  Webhooks: %s\n"
	    "Try:\n"
	    "curl -sS http://%s:%u/v1/messages -H 'Authorization: Bearer %s' "
	    "-H 'Content-Type: application/json' -d '{\"from\":\"Dev <dev@example.com>\","
	    "\"to\":\"you@example.com\",\"subject\":\"Hello from txmail\",\"text\":\"It works.\"}'\n",
	    h, p, key, a->cfg.data_dir, sink_addr, util_fmt_duration(a->cfg.retry_base, b1, sizeof(b1)),
	    util_fmt_duration(a->cfg.retry_max, b2, sizeof(b2)),
	    a->cfg.webhook_allow_private
	    ? "loopback and private targets allowed (dev mode; TXMAIL_WEBHOOK_ALLOW_PRIVATE=0 refuses them)"
	    : "public targets only (TXMAIL_WEBHOOK_ALLOW_PRIVATE=0)",
	    h, p, key);
	fflush(stdout);
}

static void
nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Stop whatever runs; nothing waits past deadline_ms (util_mono_ms). */
static void
stop_all(struct app *a, int64_t deadline_ms, struct worker_stop_stats *ws,
    struct webhook_stop_stats *whs)
{
	health_release_wedge();   /* a test wedge must not hold a loop past its stop */
	http_drain(a->admin);     /* /readyz 503 at once; /healthz keeps answering until the end */
	http_drain(a->http);
	submission_stop(a->sub, deadline_ms);   /* sessions between commands: 421 at once */
	a->sub = NULL;
	for (int i = 0; i < a->nworkers; i++)
		worker_drain(a->workers[i]);   /* all at once: they drain together */
	if (a->sched != NULL)
		scheduler_stop(a->sched);
	a->sched = NULL;
	for (int i = 0; i < a->nworkers; i++)
		worker_stop(a->workers[i], deadline_ms, ws);
	a->nworkers = 0;
	/* requests being handled (an accept half-way) finish too */
	while (http_active(a->http) > 0 && util_mono_ms() < deadline_ms)
		nap_ms(20);
	if (a->http != NULL)
		http_stop(a->http);
	a->http = NULL;
	/* webhooks: the POSTs in flight may finish within what is left of the grace */
	if (a->wh != NULL)
		webhook_stop(a->wh, deadline_ms, whs);
	a->wh = NULL;
	if (a->bounce != NULL)
		bounce_stop(a->bounce);
	a->bounce = NULL;
	if (a->sink != NULL)
		sink_stop(a->sink);
	a->sink = NULL;
	if (a->admin != NULL)
		http_stop(a->admin);
	a->admin = NULL;
	if (a->embedded)
		embed_redis_stop(&a->redis);
	a->embedded = 0;
}

/*
 * Wait (bounded) for Redis, then create groups and load scripts. An
 * unavailable Redis is not fatal (roles retry); -1 when Redis refused the
 * set-up (STORE_ERR_PROTO: wrong credentials, SELECT or scripts refused),
 * which no wait cures.
 */
static int
init_store(const struct config *cfg, int wait_s)
{
	struct store *st = store_open(&cfg->redis);
	char err[256] = "";
	int rc = STORE_ERR_UNAVAILABLE;

	if (st == NULL)
		return 0;
	for (int i = 0; i < wait_s * 10; i++) {
		rc = store_init(st, err, sizeof(err));
		if (rc == STORE_OK || rc == STORE_ERR_PROTO)
			break;
		usleep(100000);
	}
	if (rc == STORE_ERR_PROTO)
		log_error("redis refused the set-up, stopping", "error=%s", err);
	else if (rc != STORE_OK)
		log_warn("redis not ready yet, continuing (requests get 503 until it is)", "error=%s", err);
	store_close(st);
	return rc == STORE_ERR_PROTO ? -1 : 0;
}

/*
 * admin_wanted - whether this role opens TXMAIL_ADMIN_LISTEN: `worker` and
 * `bounce` always (its default 127.0.0.1:9090 when unset), `run` and `api`
 * (whose API port serves the same routes) only when it is set; never when
 * it is "off".
 */
static int
admin_wanted(const struct config *cfg, int always)
{
	if (cfg->admin_listen_off)
		return 0;
	return always || config_source_of(cfg, "TXMAIL_ADMIN_LISTEN") != CONFIG_SRC_DEFAULT;
}

/* health_configure from cfg; says so when the test wedge is armed */
static void
configure_health(const struct config *cfg)
{
	health_configure((int64_t)(cfg->loop_stall * 1000.0), cfg->test_wedge);
	if (cfg->test_wedge[0] != '\0')
		log_warn("TXMAIL_TEST_WEDGE is set: a test can stop a loop (never set it in production)",
		    "wedge=%s", cfg->test_wedge);
}

/* Log the warnings of rep (unknown variables, values raised to match another). */
static void
log_config_warnings(const struct config_report *rep)
{
	for (size_t i = 0; i < rep->n; i++)
		if (rep->p[i].severity == CONFIG_WARNING)
			log_warn("configuration warning", "problem=%s", rep->p[i].text);
}

/*
 * shutdown_graceful - the stop after SIGTERM/SIGINT: /readyz and the API
 * answer 503 at once, workers stop fetching and hand back what has not
 * started, transactions in flight get the grace, webhooks in flight too;
 * then one summary line.
 */
static void
shutdown_graceful(struct app *a)
{
	struct worker_stop_stats ws;
	struct webhook_stop_stats whs;
	int64_t t0 = util_mono_ms();
	char took[32];

	memset(&ws, 0, sizeof(ws));
	memset(&whs, 0, sizeof(whs));
	stop_all(a, t0 + (int64_t)(a->cfg.shutdown_grace * 1000), &ws, &whs);
	/* the receiving server may have accepted a cut one: it can arrive twice */
	if (ws.cut > 0)
		log_warn("deliveries cut mid-transaction at the end of the grace and handed back, "
		    "they may arrive twice", "cut=%zu", ws.cut);
	/* redis unreachable: another worker takes them over after the visibility timeout */
	if (ws.left_pending > 0)
		log_warn("deliveries could not be handed back, they are taken over after the "
		    "visibility timeout", "left_pending=%zu", ws.left_pending);
	log_info("shutdown complete",
	    "finished=%zu handed_back=%zu not_started=%zu cut=%zu left_pending=%zu"
	    " webhooks_finished=%zu webhooks_abandoned=%zu took=%s",
	    ws.finished, ws.not_started + ws.cut, ws.not_started, ws.cut, ws.left_pending,
	    whs.finished, whs.abandoned,
	    util_fmt_duration((double)(util_mono_ms() - t0) / 1000.0, took, sizeof(took)));
}

static void *
stopper_main(void *arg)
{
	struct app *a = arg;

	shutdown_graceful(a);
	atomic_store(&a->stopped, 1);
	return NULL;
}

/*
 * wait_stopped - run the graceful stop on its own thread and keep
 * listening: a second signal, or a stop stuck well past the grace, exits
 * the process at once (what is unfinished stays pending in Redis).
 * Returns 0 when the stop completed.
 */
static int
wait_stopped(struct app *a, const sigset_t *set)
{
	int64_t hard = util_mono_ms() + (int64_t)(a->cfg.shutdown_grace * 1000) + STOP_HARD_MARGIN_MS;
	struct timespec tick = { 0, 100 * 1000000L };
	char dur[32];
	pthread_t thr;
	int sig;

	if (pthread_create(&thr, NULL, stopper_main, a) != 0) {
		shutdown_graceful(a);
		return 0;
	}
	while (!atomic_load(&a->stopped)) {
		sig = sigtimedwait(set, NULL, &tick);
		if (sig == SIGINT || sig == SIGTERM) {
			/* unfinished deliveries stay pending: taken over after the visibility timeout */
			log_warn("received the signal again, exiting now without waiting", "signal=%s",
			    sig == SIGINT ? "SIGINT" : "SIGTERM");
			_exit(1);
		}
		if (util_mono_ms() >= hard) {
			log_error("shutdown still not done after the grace, exiting now", "margin=%s",
			    util_fmt_duration(STOP_HARD_MARGIN_MS / 1000.0, dur, sizeof(dur)));
			_exit(1);
		}
	}
	pthread_join(thr, NULL);
	return 0;
}

static int
serve(int roles, int dev)
{
	struct app *a = calloc(1, sizeof(*a));
	struct config_report *rep = calloc(1, sizeof(*rep));
	char err[512], key[128] = "", sink_addr[300] = "", dur[32];
	sigset_t set;
	int sig, rc = 1;

	if (a == NULL || rep == NULL) {
		free(a);
		free(rep);
		return 1;
	}
	block_signals(&set);
	/* --dev: the variables' dev defaults (source "dev"), e.g. loopback webhook targets allowed */
	if (config_load_report_dev(&a->cfg, rep, dev) != 0) {
		for (size_t i = 0; i < rep->n; i++)
			log_msg(rep->p[i].severity == CONFIG_ERROR ? LOG_ERROR : LOG_WARN,
			    rep->p[i].severity == CONFIG_ERROR ? "configuration error" : "configuration warning",
			    " problem=%s", rep->p[i].text);
		if (rep->dropped > 0)
			log_error("more configuration problems not shown", "count=%zu", rep->dropped);
		config_free(&a->cfg);   /* what was loaded (API keys: secrets) */
		free(rep);
		free(a);
		return 2;
	}
	log_set_level(a->cfg.log_level);
	log_set_format(a->cfg.log_format);
	log_config_warnings(rep);
	free(rep);
	if (!a->cfg.redis_set) {
		if (roles != (ROLE_API | ROLE_WORK)) {
			log_error("TXMAIL_REDIS_URL is required for 'api' and 'worker' (only 'run' embeds a redis-server)");
			goto out;
		}
		if (mkdir_one(a->cfg.data_dir) != 0) {
			log_error("cannot create TXMAIL_DATA_DIR", "dir=%s error=%s", a->cfg.data_dir,
			    strerror(errno));
			goto out;
		}
		if (embed_redis_start(&a->redis, a->cfg.data_dir, a->cfg.redis_server,
		    &a->cfg.redis, err, sizeof(err)) != 0) {
			log_error("embedded redis cannot start", "error=%s", err);
			goto out;
		}
		a->embedded = 1;
	}
	if (dev) {
		if (mkdir_one(a->cfg.data_dir) != 0) {
			log_error("cannot create TXMAIL_DATA_DIR", "dir=%s error=%s", a->cfg.data_dir,
			    strerror(errno));
			goto out;
		}
		if (start_dev(a, key, sizeof(key), sink_addr, sizeof(sink_addr)) != 0)
			goto out;
	}
	config_describe(&a->cfg);
	configure_health(&a->cfg);
	if ((roles & ROLE_API) && a->cfg.napi_keys == 0)
		log_info("TXMAIL_API_KEYS is unset: only keys made with 'txmail keys create' are accepted");
	if (init_store(&a->cfg, a->embedded ? 10 : 1) != 0)
		goto out;

	if (roles & ROLE_WORK) {
		for (int i = 0; i < a->cfg.workers && i < MAX_WORKERS; i++) {
			a->workers[i] = worker_start(&a->cfg, i, err, sizeof(err));
			if (a->workers[i] == NULL) {
				log_error("worker cannot start", "error=%s", err);
				goto out;
			}
			a->nworkers++;
		}
		if ((a->sched = scheduler_start(&a->cfg, err, sizeof(err))) == NULL) {
			log_error("scheduler cannot start", "error=%s", err);
			goto out;
		}
		if ((a->wh = webhook_start(&a->cfg, err, sizeof(err))) == NULL) {
			log_error("webhook dispatcher cannot start", "error=%s", err);
			goto out;
		}
	}
	if (roles == (ROLE_API | ROLE_WORK) && a->cfg.bounce_listen_set) {
		uint16_t bport = 0;

		a->bounce = bounce_start(&a->cfg, a->cfg.bounce_listen_host, a->cfg.bounce_listen_port,
		    &bport, err, sizeof(err));
		if (a->bounce == NULL) {
			log_error("bounce listener cannot start", "error=%s", err);
			goto out;
		}
		log_info("bounce listener started", "addr=%s port=%u", a->cfg.bounce_listen_host,
		    (unsigned)bport);
	}
	if (roles == (ROLE_API | ROLE_WORK) &&
	    (a->cfg.submission_listen_set || a->cfg.submissions_listen_set) &&
	    (a->sub = submission_start(&a->cfg, err, sizeof(err))) == NULL) {
		log_error("submission listener cannot start", "error=%s", err);
		goto out;
	}
	if (roles & ROLE_API) {
		if ((a->http = http_start(&a->cfg, err, sizeof(err))) == NULL) {
			log_error("HTTP server cannot start", "error=%s", err);
			goto out;
		}
	}
	if (admin_wanted(&a->cfg, roles == ROLE_WORK) &&
	    (a->admin = http_start_admin(&a->cfg, err, sizeof(err))) == NULL) {
		log_error("admin listener cannot start (TXMAIL_ADMIN_LISTEN; off: none)", "error=%s", err);
		goto out;
	}
	log_info("txmail ready", "version=%s roles=%s dev=%s", TXMAIL_VERSION,
	    roles == (ROLE_API | ROLE_WORK) ? "api,worker" : roles == ROLE_API ? "api" : "worker",
	    dev ? "true" : "false");
	if (dev)
		print_dev_banner(a, key, sink_addr);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_info("SIGHUP", "action=%s", a->sub != NULL ? "reload the submission certificate" :
			    "none (nothing to reload)");
			submission_reload(a->sub);
			continue;
		}
		/* the API answers 503, SMTP transactions in flight have the grace, the rest goes back */
		log_info("stopping", "signal=%s grace=%s", sig == SIGINT ? "SIGINT" : "SIGTERM",
		    util_fmt_duration(a->cfg.shutdown_grace, dur, sizeof(dur)));
		break;
	}
	rc = wait_stopped(a, &set);
out:
	stop_all(a, util_mono_ms(), NULL, NULL);   /* after a start-up failure: what did start */
	if (rc == 0)
		log_info("txmail stopped");
	config_free(&a->cfg);
	free(a);
	return rc;
}

/*
 * bounce_serve - `txmail bounce`: the DSN listener (bounce.c) and the admin
 * listener, until SIGINT/SIGTERM; then /readyz 503, the listener stops,
 * the admin listener last.
 */
static int
bounce_serve(int argc, char **argv)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	struct bounce *b = NULL;
	struct http_server *admin = NULL;
	const char *listen = NULL;
	char host[256], err[512];
	uint16_t port = 0, bound = 0;
	sigset_t set;
	int sig = 0, rc;

	if (cfg == NULL)
		return 1;
	rc = bounce_cli(argc, argv, &listen);
	if (rc != 0) {
		free(cfg);
		return rc == 1 ? 0 : 2;
	}
	rc = 2;
	block_signals(&set);
	if (config_load(cfg, err, sizeof(err)) != 0) {
		log_error("bounce listener cannot start: invalid configuration", "problem=%s", err);
		goto out;
	}
	log_set_level(cfg->log_level);
	log_set_format((enum log_format)cfg->log_format);
	if (!cfg->redis_set || !cfg->bounce_domain[0]) {
		log_error("bounce listener cannot start: TXMAIL_REDIS_URL, TXMAIL_BOUNCE_DOMAIN and "
		    "TXMAIL_BOUNCE_SECRET are required");
		goto out;
	}
	if (bounce_addr(cfg, listen, host, sizeof(host), &port, err, sizeof(err)) != 0) {
		fprintf(stderr, "txmail bounce: %s\n", err);
		goto out;
	}
	configure_health(cfg);
	rc = 1;
	b = bounce_start(cfg, host, port, &bound, err, sizeof(err));
	if (!b) {
		log_error("bounce listener not started", "error=%s", err);
		goto out;
	}
	log_info("bounce listener started", "addr=%s:%u domain=%s", host, (unsigned)bound,
	    cfg->bounce_domain);
	if (admin_wanted(cfg, 1) && (admin = http_start_admin(cfg, err, sizeof(err))) == NULL) {
		log_error("admin listener cannot start (TXMAIL_ADMIN_LISTEN; off: none)", "error=%s", err);
		goto out;
	}
	while (sigwait(&set, &sig) != 0 || sig == SIGHUP)
		;
	log_info("bounce listener stopping", "signal=%d", sig);
	rc = 0;
out:
	http_drain(admin);
	bounce_stop(b);
	if (admin != NULL)
		http_stop(admin);
	config_free(cfg);
	free(cfg);
	return rc;
}

/*
 * submission_serve - `txmail submission`: the SMTP submission listeners
 * and the admin listener, until SIGINT/SIGTERM (SIGHUP reads the
 * certificate again). Needs TXMAIL_REDIS_URL; delivery is the workers'.
 */
static int
submission_serve(int argc, char **argv)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	struct submission *sub = NULL;
	struct http_server *admin = NULL;
	char err[512];
	sigset_t set;
	int sig = 0, rc = 2;

	if (cfg == NULL)
		return 1;
	if (wants_help(argc, argv)) {
		fputs(usage_submission, stdout);
		free(cfg);
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "txmail submission: unexpected argument %s\n\n%s", argv[1], usage_submission);
		free(cfg);
		return 2;
	}
	block_signals(&set);
	if (config_load(cfg, err, sizeof(err)) != 0) {
		log_error("submission cannot start: invalid configuration", "problem=%s", err);
		goto out;
	}
	log_set_level(cfg->log_level);
	log_set_format((enum log_format)cfg->log_format);
	if (!cfg->redis_set || !(cfg->submission_listen_set || cfg->submissions_listen_set)) {
		log_error("submission cannot start: TXMAIL_REDIS_URL and TXMAIL_SUBMISSION_LISTEN or "
		    "TXMAIL_SUBMISSIONS_LISTEN (with TXMAIL_SUBMISSION_TLS_CERT and _KEY) are required");
		goto out;
	}
	config_describe(cfg);
	configure_health(cfg);
	rc = 1;
	if (init_store(cfg, 1) != 0)
		goto out;
	if ((sub = submission_start(cfg, err, sizeof(err))) == NULL) {
		log_error("submission listener cannot start", "error=%s", err);
		goto out;
	}
	if (admin_wanted(cfg, 1) && (admin = http_start_admin(cfg, err, sizeof(err))) == NULL) {
		log_error("admin listener cannot start (TXMAIL_ADMIN_LISTEN; off: none)", "error=%s", err);
		goto out;
	}
	log_info("txmail ready", "version=%s roles=submission", TXMAIL_VERSION);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig != SIGHUP)
			break;
		log_info("SIGHUP", "action=%s", "reload the submission certificate");
		submission_reload(sub);
	}
	log_info("stopping", "signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
	rc = 0;
out:
	http_drain(admin);
	submission_stop(sub, util_mono_ms() + (int64_t)(cfg->shutdown_grace * 1000));
	if (admin != NULL)
		http_stop(admin);
	if (rc == 0)
		log_info("txmail stopped");
	config_free(cfg);
	free(cfg);
	return rc;
}

static int
config_main(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;

	if (sub == NULL || wants_help(argc, argv)) {
		fputs(usage_config, sub == NULL ? stderr : stdout);
		return sub == NULL ? 2 : 0;
	}
	if (strcmp(sub, "check") == 0 && (argc == 2 || (argc == 3 && strcmp(argv[2], "--dev") == 0)))
		return config_check(stdout, stderr, argc == 3);
	if (strcmp(sub, "list") == 0 && (argc == 2 || (argc == 3 && strcmp(argv[2], "--markdown") == 0))) {
		config_list(stdout, argc == 3);
		return 0;
	}
	fprintf(stderr, "txmail config: unknown arguments\n\n%s", usage_config);
	return 2;
}

int
main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (cmd == NULL || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
	    strcmp(cmd, "help") == 0) {
		fputs(usage_main, cmd == NULL ? stderr : stdout);
		return cmd == NULL ? 2 : 0;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("txmail %s\n", TXMAIL_VERSION);
		return 0;
	}
	if (strcmp(cmd, "run") == 0) {
		int dev = 0;
		if (wants_help(argc - 1, argv + 1)) {
			fputs(usage_run, stdout);
			return 0;
		}
		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--dev") == 0) {
				dev = 1;
			} else {
				fprintf(stderr, "txmail run: unknown option %s\n\n%s", argv[i], usage_run);
				return 2;
			}
		}
		return serve(ROLE_API | ROLE_WORK, dev);
	}
	if (strcmp(cmd, "api") == 0 || strcmp(cmd, "worker") == 0) {
		int api = strcmp(cmd, "api") == 0;
		if (wants_help(argc - 1, argv + 1)) {
			fputs(api ? usage_api : usage_worker, stdout);
			return 0;
		}
		if (argc > 2) {
			fprintf(stderr, "txmail %s: unexpected argument %s\n\n%s", cmd, argv[2],
			    api ? usage_api : usage_worker);
			return 2;
		}
		return serve(api ? ROLE_API : ROLE_WORK, 0);
	}
	if (strcmp(cmd, "sink") == 0) {
		struct config_report *rep = calloc(1, sizeof(*rep));

		if (rep != NULL) {
			config_unknown_vars(rep);
			log_config_warnings(rep);
			free(rep);
		}
		return sink_main(argc - 1, argv + 1);
	}
	if (strcmp(cmd, "config") == 0)
		return config_main(argc - 1, argv + 1);
	if (strcmp(cmd, "keys") == 0)
		return keys_main(argc - 1, argv + 1);
	if (strcmp(cmd, "bounce") == 0)
		return bounce_serve(argc - 1, argv + 1);
	if (strcmp(cmd, "submission") == 0)
		return submission_serve(argc - 1, argv + 1);
	if (strcmp(cmd, "dkim") == 0)
		return dkim_main(argc - 1, argv + 1);
	fprintf(stderr, "txmail: unknown command '%s'\n\n%s", cmd, usage_main);
	return 2;
}
