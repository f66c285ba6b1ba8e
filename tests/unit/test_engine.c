/*
 * test_engine.c - the SMTP engine against a real SMTP server.
 *
 * Each test starts tests/integration/peers/smtpd.py (aiosmtpd, /usr/bin/python3)
 * on a free loopback port, drives a real engine on the test thread and checks
 * outcomes and what the server stored. The server is killed in the fini hook
 * (and by PR_SET_PDEATHSIG if the test process dies). Run from the repo root.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../smtp/engine.h"

#define PEER_SCRIPT "tests/integration/peers/smtpd.py"
#define PYTHON "/usr/bin/python3"

struct peer {
	pid_t pid;
	int port;
	char dir[64];
	char maildir[128];
	char certs[128];
};

static struct peer g_peer = { .pid = -1 };
static char g_tmp[64];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (buf != NULL) {
		buf[n] = '\0';
		if (len)
			*len = (size_t)n;
	}
	fclose(f);
	return buf;
}

static int run_cmd(char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void make_tmp(void)
{
	if (g_tmp[0] == '\0') {
		snprintf(g_tmp, sizeof(g_tmp), "/tmp/txmail-te-XXXXXX");
		cr_assert_not_null(mkdtemp(g_tmp), "mkdtemp: %s", strerror(errno));
	}
}

/* make_certs - a CA + server cert under g_tmp/name; returns the dir */
static void make_certs(const char *name, char *out, size_t outlen)
{
	make_tmp();
	snprintf(out, outlen, "%s/%s", g_tmp, name);
	char *argv[] = { (char *)PYTHON, (char *)PEER_SCRIPT, (char *)"--make-cert", out, NULL };
	int rc = run_cmd(argv);
	cr_assert_eq(rc, 0, "smtpd.py --make-cert: got exit %d, want 0", rc);
}

/* peer_start - start the server with extra args (NULL-terminated); waits for the ready file */
static void peer_start(const char *const *extra)
{
	char ready[128], logf[128], errf[128];
	const char *argv[40];
	int n = 0;

	make_tmp();
	struct peer *p = &g_peer;
	snprintf(p->dir, sizeof(p->dir), "%s", g_tmp);
	snprintf(p->maildir, sizeof(p->maildir), "%.60s/md", p->dir);
	snprintf(ready, sizeof(ready), "%.60s/ready", p->dir);
	snprintf(logf, sizeof(logf), "%.60s/log", p->dir);
	snprintf(errf, sizeof(errf), "%.60s/stderr", p->dir);
	argv[n++] = PYTHON;
	argv[n++] = PEER_SCRIPT;
	argv[n++] = "--host";
	argv[n++] = "127.0.0.1";
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--maildir";
	argv[n++] = p->maildir;
	argv[n++] = "--ready-file";
	argv[n++] = ready;
	argv[n++] = "--log";
	argv[n++] = logf;
	for (; extra && *extra; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;

	pid_t parent = getpid();
	p->pid = fork();
	cr_assert_geq(p->pid, 0, "fork: %s", strerror(errno));
	if (p->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(PYTHON, (char *const *)argv);
		_exit(127);
	}
	double deadline = now_s() + 15;
	char *s = NULL;
	while (now_s() < deadline) {
		s = slurp(ready, NULL);
		if (s != NULL)
			break;
		int status;
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			p->pid = -1;
			char *e = slurp(errf, NULL);
			cr_assert_fail("smtpd.py exited early: %s", e ? e : "?");
		}
		usleep(20000);
	}
	cr_assert_not_null(s, "smtpd.py did not become ready within 15 s");
	p->port = (int)strtol(s, NULL, 10);
	free(s);
	cr_assert_gt(p->port, 0, "got port %d, want > 0", p->port);
}

static void peer_stop(void)
{
	if (g_peer.pid > 0) {
		int status;
		kill(g_peer.pid, SIGTERM);
		double deadline = now_s() + 5;
		while (waitpid(g_peer.pid, &status, WNOHANG) == 0) {
			if (now_s() > deadline) {
				kill(g_peer.pid, SIGKILL);
				waitpid(g_peer.pid, &status, 0);
				break;
			}
			usleep(10000);
		}
		g_peer.pid = -1;
	}
	if (g_tmp[0] != '\0') {
		char *argv[] = { (char *)"/bin/rm", (char *)"-rf", g_tmp, NULL };
		run_cmd(argv);
		g_tmp[0] = '\0';
	}
}

static void teardown(void)
{
	peer_stop();
}

TestSuite(engine, .fini = teardown, .timeout = 60);

/* --- engine harness ------------------------------------------------------- */

struct tjob {
	struct smtp_job job;
	struct smtp_outcome o;
	int done;
	int reports;
	double t_done;
};

/* one log event, copied (the engine's strings do not outlive the call) */
struct tevent {
	char msg[96];
	const struct smtp_job *job;
	char rcpt[128];       /* "" for NULL */
	unsigned long long conn;
	char peer[128];
	int code;
	char fields[512];     /* " key=value key=value" (truncated) */
};

#define HARNESS_EVENTS 256

struct harness {
	struct smtp_engine *e;
	int ndone;
	int nlogs;
	struct tevent ev[HARNESS_EVENTS];   /* the first HARNESS_EVENTS events */
	int nev;
};

static void on_done(struct smtp_job *job, const struct smtp_outcome *o, void *arg)
{
	struct harness *h = arg;
	struct tjob *t = job->udata;

	t->o = *o;
	t->done = 1;
	t->reports++;
	t->t_done = now_s();
	h->ndone++;
}

/* every log event: no secret in any part of it; TE_VERBOSE=1 prints them */
static void on_log(const struct smtp_log_event *ev, void *arg)
{
	struct harness *h = arg;

	h->nlogs++;
	cr_assert_not_null(ev->msg, "log event without msg");
	if (h->nev < HARNESS_EVENTS) {
		struct tevent *c = &h->ev[h->nev++];

		snprintf(c->msg, sizeof(c->msg), "%s", ev->msg);
		c->job = ev->job;
		snprintf(c->rcpt, sizeof(c->rcpt), "%s", ev->rcpt != NULL ? ev->rcpt : "");
		c->conn = ev->conn;
		snprintf(c->peer, sizeof(c->peer), "%s", ev->peer != NULL ? ev->peer : "");
		c->code = ev->code;
		c->fields[0] = '\0';
		for (size_t i = 0, used = 0; i < ev->nfields && used + 1 < sizeof(c->fields); i++) {
			int n = snprintf(c->fields + used, sizeof(c->fields) - used, " %s=%s",
			    ev->fields[i].key, ev->fields[i].value != NULL ? ev->fields[i].value : "");

			if (n < 0)
				break;
			used += (size_t)n;
		}
	}
	cr_assert_not_null(ev->peer, "log event without peer (want \"\" when none)");
	cr_assert_null(strstr(ev->msg, "secretpw"), "log leaks password: %s", ev->msg);
	cr_assert_null(strstr(ev->peer, "secretpw"), "log leaks password: %s", ev->peer);
	for (size_t i = 0; i < ev->nfields; i++) {
		const char *v = ev->fields[i].value;

		cr_assert_not_null(v, "field %s without a value", ev->fields[i].key);
		cr_assert_null(strstr(v, "secretpw"), "log leaks password: %s=%s", ev->fields[i].key, v);
		cr_assert_null(strstr(v, "AHUAc2VjcmV0cHc"), "log leaks base64 credentials: %s=%s",
		    ev->fields[i].key, v);
	}
	if (getenv("TE_VERBOSE")) {
		fprintf(stderr, "[%d] %s job=%p rcpt=%s conn=%llu peer=%s code=%d", ev->level, ev->msg,
		    (const void *)ev->job, ev->rcpt ? ev->rcpt : "-", ev->conn, ev->peer, ev->code);
		for (size_t i = 0; i < ev->nfields; i++)
			fprintf(stderr, " %s=%s", ev->fields[i].key, ev->fields[i].value);
		fputc('\n', stderr);
	}
}

static void harness_init(struct harness *h, struct smtp_engine_config *cfg)
{
	char err[256] = "";

	memset(h, 0, sizeof(*h));
	cfg->on_done = on_done;
	cfg->log = on_log;
	cfg->arg = h;
	if (cfg->helo_name[0] == '\0')
		snprintf(cfg->helo_name, sizeof(cfg->helo_name), "client.test");
	h->e = smtp_engine_new(cfg, err, sizeof(err));
	cr_assert_not_null(h->e, "smtp_engine_new: %s", err);
}

static void default_cfg(struct smtp_engine_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	smtp_timeouts_default(&cfg->timeouts);
	cfg->timeouts.quit = 2;
}

static void target_plain(struct smtp_target *t)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->host, sizeof(t->host), "127.0.0.1");
	t->port = (uint16_t)g_peer.port;
	t->tls = SMTP_TLS_NONE;
}

static void job_init(struct tjob *t, const struct smtp_target *tg, const char *from,
    const char *rcpt, const char *data)
{
	memset(t, 0, sizeof(*t));
	t->job.target = *tg;
	t->job.mail_from = from;
	t->job.rcpt = rcpt;
	t->job.data = data;
	t->job.data_len = strlen(data);
	t->job.udata = t;
}

static void submit(struct harness *h, struct tjob *t)
{
	t->done = 0;
	int rc = smtp_engine_submit(h->e, &t->job);
	cr_assert_eq(rc, 0, "submit: got %d, want 0", rc);
}

/* run until ndone reaches want, or fail after limit seconds */
static void run_until(struct harness *h, int want, double limit)
{
	double deadline = now_s() + limit;

	while (h->ndone < want) {
		cr_assert_lt(now_s(), deadline, "timed out: %d of %d jobs done", h->ndone, want);
		cr_assert_eq(smtp_engine_run(h->e, 100), 0, "smtp_engine_run failed");
	}
	cr_assert_eq(h->ndone, want, "got %d done, want %d", h->ndone, want);
}

static void harness_free(struct harness *h)
{
	smtp_engine_free(h->e);
	h->e = NULL;
}

static int count_files(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	size_t sl = strlen(suffix);

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (de->d_name[0] != '.' && l > sl && strcmp(de->d_name + l - sl, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static char *msg_file(int seq, const char *ext, size_t *len)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%d.%s", g_peer.maildir, seq, ext);
	return slurp(path, len);
}

/* distinct "conn" values over all stored messages */
static int distinct_conns(int nmsgs)
{
	int seen[4096] = { 0 };
	int distinct = 0;

	for (int i = 1; i <= nmsgs; i++) {
		char *j = msg_file(i, "json", NULL);
		cr_assert_not_null(j, "message %d.json missing", i);
		char *c = strstr(j, "\"conn\": ");
		cr_assert_not_null(c, "no conn in %s", j);
		int conn = (int)strtol(c + 8, NULL, 10);
		cr_assert(conn > 0 && conn < 4096, "bad conn %d", conn);
		if (!seen[conn]++)
			distinct++;
		free(j);
	}
	return distinct;
}

static void assert_outcome(const struct tjob *t, enum smtp_result res, int code,
    const char *stage)
{
	cr_assert(t->done, "job not done");
	cr_assert_eq(t->o.result, res, "got result %d (%d %s: %s), want %d", t->o.result,
	    t->o.code, t->o.stage ? t->o.stage : "-", t->o.text, res);
	if (code >= 0)
		cr_assert_eq(t->o.code, code, "got code %d (%s), want %d", t->o.code, t->o.text, code);
	if (stage != NULL) {
		cr_assert_not_null(t->o.stage, "got no stage, want %s", stage);
		cr_assert_str_eq(t->o.stage, stage, "got stage %s (%s), want %s", t->o.stage, t->o.text, stage);
	}
}

static const char *k_msg = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n";

/*
 * submit_serial - start h with cfg and one connection per target, then
 * submit n jobs from a@example.com to rcpt on the plain target, job i with
 * body bodies[i] (k_msg when bodies is NULL).
 */
static void submit_serial(struct harness *h, struct smtp_engine_config *cfg, struct smtp_target *tg,
    struct tjob *t, int n, const char *rcpt, const char *const *bodies)
{
	cfg->max_conns_per_target = 1;
	harness_init(h, cfg);
	target_plain(tg);
	for (int i = 0; i < n; i++) {
		job_init(&t[i], tg, "a@example.com", rcpt, bodies != NULL ? bodies[i] : k_msg);
		submit(h, &t[i]);
	}
}

/* --- tests ------------------------------------------------------------------ */

Test(engine, plain_delivery)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;

	peer_start(NULL);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "b@example.com", k_msg);
	submit(&h, &t);
	cr_assert_eq(smtp_engine_inflight(h.e), 1, "got inflight %d, want 1", smtp_engine_inflight(h.e));
	run_until(&h, 1, 10);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	cr_assert_str_eq(t.o.enhanced, "2.0.0", "got enhanced %s, want 2.0.0", t.o.enhanced);
	cr_assert_eq(smtp_engine_inflight(h.e), 0, "got inflight %d, want 0", smtp_engine_inflight(h.e));
	size_t len;
	char *eml = msg_file(1, "eml", &len);
	cr_assert_not_null(eml, "1.eml missing");
	cr_assert_eq(len, strlen(k_msg), "got %zu bytes, want %zu", len, strlen(k_msg));
	cr_assert_eq(memcmp(eml, k_msg, len), 0, "message bytes differ");
	free(eml);
	char *js = msg_file(1, "json", NULL);
	cr_assert_not_null(strstr(js, "\"tls\": false"), "got %s, want tls false", js);
	cr_assert_not_null(strstr(js, "\"mail_from\": \"a@example.com\""), "got %s", js);
	cr_assert_not_null(strstr(js, "\"helo\": \"client.test\""), "got %s", js);
	free(js);
	harness_free(&h);
}

static void hosts_v6_first(void);

/*
 * starttls_auth_case - by name and by IP literal over verified STARTTLS +
 * AUTH; with v6_first, "localhost" reads as ::1 (nothing listens there: the
 * peer is on 127.0.0.1) then 127.0.0.1, as in Debian's, Ubuntu's and
 * Docker's /etc/hosts.
 */
static void starttls_auth_case(int v6_first)
{
	char certs[128], cert[256], key[256], ca[256];
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t1, t2;

	if (v6_first)
		hosts_v6_first();
	make_certs("certs", certs, sizeof(certs));
	snprintf(cert, sizeof(cert), "%s/cert.pem", certs);
	snprintf(key, sizeof(key), "%s/key.pem", certs);
	snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
	const char *args[] = { "--tls-cert", cert, "--tls-key", key, "--require-starttls",
	    "--auth", "user:secretpw", NULL };
	peer_start(args);
	default_cfg(&cfg);
	snprintf(cfg.ca_file, sizeof(cfg.ca_file), "%s", ca);
	harness_init(&h, &cfg);

	/* by name ("localhost": SNI + host check; may try ::1 first) */
	target_plain(&tg);
	snprintf(tg.host, sizeof(tg.host), "localhost");
	tg.tls = SMTP_TLS_REQUIRED;
	snprintf(tg.user, sizeof(tg.user), "user");
	snprintf(tg.pass, sizeof(tg.pass), "secretpw");
	job_init(&t1, &tg, "a@example.com", "b@example.com", k_msg);
	/* by IP literal (IP SAN check), opportunistic mode */
	snprintf(tg.host, sizeof(tg.host), "127.0.0.1");
	tg.tls = SMTP_TLS_STARTTLS;
	job_init(&t2, &tg, "a@example.com", "c@example.com", k_msg);
	submit(&h, &t1);
	submit(&h, &t2);
	run_until(&h, 2, 15);
	assert_outcome(&t1, SMTP_RESULT_OK, 250, "dot");
	assert_outcome(&t2, SMTP_RESULT_OK, 250, "dot");
	for (int i = 1; i <= 2; i++) {
		char *js = msg_file(i, "json", NULL);
		cr_assert_not_null(js, "%d.json missing", i);
		cr_assert_not_null(strstr(js, "\"tls\": true"), "got %s, want tls true", js);
		cr_assert_not_null(strstr(js, "\"auth_user\": \"user\""), "got %s, want auth_user user", js);
		free(js);
	}
	char logp[256];
	snprintf(logp, sizeof(logp), "%s/log", g_peer.dir);
	char *log = slurp(logp, NULL);
	cr_assert_not_null(log, "no peer log");
	cr_assert_null(strstr(log, "secretpw"), "peer transcript shows the password");
	cr_assert_not_null(strstr(log, "AUTH PLAIN ***"), "got no AUTH PLAIN in transcript, want PLAIN preferred");
	free(log);
	harness_free(&h);
}

Test(engine, starttls_auth_verified)
{
	starttls_auth_case(0);
}

/* the same with "::1 localhost" first in /etc/hosts (issue 9) */
Test(engine, starttls_auth_verified_localhost_v6_first)
{
	starttls_auth_case(1);
}

Test(engine, starttls_wrong_ca_fails)
{
	char certs[128], other[128], cert[256], key[256], ca[256];
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;

	make_certs("certs", certs, sizeof(certs));
	make_certs("other", other, sizeof(other));
	snprintf(cert, sizeof(cert), "%s/cert.pem", certs);
	snprintf(key, sizeof(key), "%s/key.pem", certs);
	snprintf(ca, sizeof(ca), "%s/ca.pem", other);
	const char *args[] = { "--tls-cert", cert, "--tls-key", key, "--auth", "user:secretpw", NULL };
	peer_start(args);
	default_cfg(&cfg);
	snprintf(cfg.ca_file, sizeof(cfg.ca_file), "%s", ca);
	harness_init(&h, &cfg);
	target_plain(&tg);
	tg.tls = SMTP_TLS_STARTTLS;
	tg.no_verify = 0;
	snprintf(tg.user, sizeof(tg.user), "user");
	snprintf(tg.pass, sizeof(tg.pass), "secretpw");
	job_init(&t, &tg, "a@example.com", "b@example.com", k_msg);
	submit(&h, &t);
	run_until(&h, 1, 15);
	assert_outcome(&t, SMTP_RESULT_TEMPFAIL, 0, "tls");
	cr_assert_not_null(strstr(t.o.text, "certificate"), "got text %s, want a certificate error", t.o.text);
	cr_assert_eq(count_files(g_peer.maildir, ".eml"), 0, "message delivered despite a bad certificate");
	harness_free(&h);
}

Test(engine, auth_wrong_password_permfails)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;
	const char *args[] = { "--auth", "user:secretpw", NULL };

	peer_start(args);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	snprintf(tg.user, sizeof(tg.user), "user");
	snprintf(tg.pass, sizeof(tg.pass), "wrong");
	job_init(&t, &tg, "a@example.com", "b@example.com", k_msg);
	submit(&h, &t);
	run_until(&h, 1, 10);
	assert_outcome(&t, SMTP_RESULT_PERMFAIL, 535, "auth");
	harness_free(&h);
}

Test(engine, tls_required_not_offered_tempfails)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;

	peer_start(NULL);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	tg.tls = SMTP_TLS_REQUIRED;
	job_init(&t, &tg, "a@example.com", "b@example.com", k_msg);
	submit(&h, &t);
	run_until(&h, 1, 10);
	assert_outcome(&t, SMTP_RESULT_TEMPFAIL, 0, "starttls");
	cr_assert_eq(count_files(g_peer.maildir, ".eml"), 0, "message delivered in plain text");
	harness_free(&h);
}

Test(engine, starttls_opportunistic_without_offer_goes_plain)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;

	peer_start(NULL);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	tg.tls = SMTP_TLS_STARTTLS;
	job_init(&t, &tg, "a@example.com", "b@example.com", k_msg);
	submit(&h, &t);
	run_until(&h, 1, 10);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	harness_free(&h);
}

Test(engine, implicit_tls)
{
	char certs[128], cert[256], key[256], ca[256];
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;

	make_certs("certs", certs, sizeof(certs));
	snprintf(cert, sizeof(cert), "%s/cert.pem", certs);
	snprintf(key, sizeof(key), "%s/key.pem", certs);
	snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
	const char *args[] = { "--tls-cert", cert, "--tls-key", key, "--implicit-tls", NULL };
	peer_start(args);
	default_cfg(&cfg);
	snprintf(cfg.ca_file, sizeof(cfg.ca_file), "%s", ca);
	harness_init(&h, &cfg);
	target_plain(&tg);
	tg.tls = SMTP_TLS_IMPLICIT;
	job_init(&t, &tg, "a@example.com", "b@example.com", k_msg);
	submit(&h, &t);
	run_until(&h, 1, 10);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	char *js = msg_file(1, "json", NULL);
	cr_assert_not_null(js, "1.json missing");
	cr_assert_not_null(strstr(js, "\"tls\": true"), "got %s, want tls true", js);
	free(js);
	harness_free(&h);
}

Test(engine, temp_recipient_then_ok)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;

	peer_start(NULL);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "temp2-x@example.com", k_msg);
	for (int i = 0; i < 3; i++) {
		submit(&h, &t);
		run_until(&h, i + 1, 10);
		if (i < 2) {
			assert_outcome(&t, SMTP_RESULT_TEMPFAIL, 451, "rcpt");
			cr_assert_str_eq(t.o.enhanced, "4.3.0", "got %s, want 4.3.0", t.o.enhanced);
		} else {
			assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
		}
	}
	cr_assert_eq(distinct_conns(1), 1, "want the delivery on one connection");
	harness_free(&h);
}

Test(engine, perm_recipient)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t, t2;

	peer_start(NULL);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "perm-x@example.com", k_msg);
	job_init(&t2, &tg, "a@example.com", "ok@example.com", k_msg);
	submit(&h, &t);
	submit(&h, &t2);
	run_until(&h, 2, 10);
	assert_outcome(&t, SMTP_RESULT_PERMFAIL, 550, "rcpt");
	cr_assert_str_eq(t.o.enhanced, "5.1.1", "got enhanced %s, want 5.1.1", t.o.enhanced);
	cr_assert_not_null(strstr(t.o.text, "no such user"), "got text %s", t.o.text);
	assert_outcome(&t2, SMTP_RESULT_OK, 250, "dot");
	harness_free(&h);
}

Test(engine, drop_after_data)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t, t2;

	peer_start(NULL);
	default_cfg(&cfg);
	cfg.max_conns_per_target = 1;
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "drop-x@example.com", k_msg);
	job_init(&t2, &tg, "a@example.com", "after@example.com", k_msg);
	submit(&h, &t);
	submit(&h, &t2);
	run_until(&h, 2, 10);
	assert_outcome(&t, SMTP_RESULT_TEMPFAIL, 0, "dot");
	/* the waiting job gets a fresh connection */
	assert_outcome(&t2, SMTP_RESULT_OK, 250, "dot");
	harness_free(&h);
}

Test(engine, connection_refused)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t[3];

	peer_start(NULL);
	int port = g_peer.port;
	peer_stop();   /* nothing listens there now */
	g_peer.port = port;
	default_cfg(&cfg);
	submit_serial(&h, &cfg, &tg, t, 3, "b@example.com", NULL);
	run_until(&h, 3, 10);
	for (int i = 0; i < 3; i++) {
		assert_outcome(&t[i], SMTP_RESULT_TEMPFAIL, 0, "connect");
		char want[64];
		snprintf(want, sizeof(want), "connect to 127.0.0.1:%d refused", port);
		cr_assert_str_eq(t[i].o.text, want, "got %s, want %s", t[i].o.text, want);
		cr_assert_eq(t[i].reports, 1, "got %d reports, want 1", t[i].reports);
	}
	harness_free(&h);
}

Test(engine, dns_failure)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;

	default_cfg(&cfg);
	harness_init(&h, &cfg);
	memset(&tg, 0, sizeof(tg));
	snprintf(tg.host, sizeof(tg.host), "no-such-host.invalid");
	tg.port = 25;
	job_init(&t, &tg, "a@example.com", "b@example.com", k_msg);
	submit(&h, &t);
	run_until(&h, 1, 20);
	assert_outcome(&t, SMTP_RESULT_TEMPFAIL, 0, "connect");
	harness_free(&h);
}

Test(engine, connection_reuse)
{
	enum { N = 50 };
	static struct tjob t[N];
	static char rcpt[N][64];
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;

	peer_start(NULL);
	default_cfg(&cfg);
	cfg.max_conns_per_target = 2;
	harness_init(&h, &cfg);
	target_plain(&tg);
	for (int i = 0; i < N; i++) {
		snprintf(rcpt[i], sizeof(rcpt[i]), "r%d@example.com", i);
		job_init(&t[i], &tg, "a@example.com", rcpt[i], k_msg);
		submit(&h, &t[i]);
	}
	run_until(&h, N, 30);
	for (int i = 0; i < N; i++)
		assert_outcome(&t[i], SMTP_RESULT_OK, 250, "dot");
	cr_assert_eq(count_files(g_peer.maildir, ".eml"), N, "got %d messages, want %d",
	    count_files(g_peer.maildir, ".eml"), N);
	int conns = distinct_conns(N);
	cr_assert_leq(conns, 2, "got %d connections, want <= 2", conns);
	harness_free(&h);
}

Test(engine, max_msgs_per_conn)
{
	enum { N = 7 };
	static struct tjob t[N];
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;

	peer_start(NULL);
	default_cfg(&cfg);
	cfg.max_msgs_per_conn = 3;
	submit_serial(&h, &cfg, &tg, t, N, "b@example.com", NULL);
	run_until(&h, N, 20);
	for (int i = 0; i < N; i++)
		assert_outcome(&t[i], SMTP_RESULT_OK, 250, "dot");
	int conns = distinct_conns(N);
	cr_assert_eq(conns, 3, "got %d connections, want 3 (3+3+1)", conns);
	harness_free(&h);
}

Test(engine, dot_stuffing)
{
	static const char *bodies[] = {
		"Subject: dots\r\n\r\n.\r\n..x\r\n.y\r\n. \r\nend\r\n",
		".starts with a dot\r\n\r\n.\r\n",
		"Subject: no final newline\r\n\r\nlast line",
	};
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t[3];

	peer_start(NULL);
	default_cfg(&cfg);
	submit_serial(&h, &cfg, &tg, t, 3, "b@example.com", bodies);
	run_until(&h, 3, 10);
	for (int i = 0; i < 3; i++) {
		assert_outcome(&t[i], SMTP_RESULT_OK, 250, "dot");
		size_t len;
		char *eml = msg_file(i + 1, "eml", &len);
		cr_assert_not_null(eml, "%d.eml missing", i + 1);
		char want[256];
		snprintf(want, sizeof(want), "%s%s", bodies[i], i == 2 ? "\r\n" : "");
		cr_assert_eq(len, strlen(want), "body %d: got %zu bytes, want %zu", i, len, strlen(want));
		cr_assert_eq(memcmp(eml, want, len), 0, "body %d: got [%s], want [%s]", i, eml, want);
		free(eml);
	}
	harness_free(&h);
}

Test(engine, large_message_streamed)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;
	size_t cap = 3 * 1024 * 1024, n = 0;
	char *body = malloc(cap + 1);

	cr_assert_not_null(body);
	n += (size_t)snprintf(body, cap, "Subject: big\r\n\r\n");
	for (int i = 0; n + 100 < cap; i++)
		n += (size_t)snprintf(body + n, cap - n, "%sline %d abcdefghijklmnopqrstuvwxyz0123456789\r\n",
		    i % 7 == 0 ? "." : "", i);
	body[n] = '\0';
	peer_start(NULL);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "b@example.com", body);
	submit(&h, &t);
	run_until(&h, 1, 30);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	size_t len;
	char *eml = msg_file(1, "eml", &len);
	cr_assert_not_null(eml, "1.eml missing");
	cr_assert_eq(len, n, "got %zu bytes, want %zu", len, n);
	cr_assert_eq(memcmp(eml, body, n), 0, "big message bytes differ");
	free(eml);
	free(body);
	harness_free(&h);
}

Test(engine, many_concurrent)
{
	enum { N = 200 };
	static struct tjob t[N];
	static char rcpt[N][64];
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;

	peer_start(NULL);
	default_cfg(&cfg);
	cfg.max_conns_per_target = 8;
	harness_init(&h, &cfg);
	target_plain(&tg);
	for (int i = 0; i < N; i++) {
		snprintf(rcpt[i], sizeof(rcpt[i]), "%sr%d@example.com", i % 10 == 0 ? "perm-" : "", i);
		job_init(&t[i], &tg, "a@example.com", rcpt[i], k_msg);
		submit(&h, &t[i]);
	}
	run_until(&h, N, 60);
	int ok = 0;
	for (int i = 0; i < N; i++) {
		cr_assert_eq(t[i].reports, 1, "job %d: got %d reports, want 1", i, t[i].reports);
		if (i % 10 == 0)
			assert_outcome(&t[i], SMTP_RESULT_PERMFAIL, 550, "rcpt");
		else {
			assert_outcome(&t[i], SMTP_RESULT_OK, 250, "dot");
			ok++;
		}
	}
	cr_assert_eq(count_files(g_peer.maildir, ".eml"), ok, "got %d messages, want %d",
	    count_files(g_peer.maildir, ".eml"), ok);
	int conns = distinct_conns(ok);
	cr_assert_leq(conns, 8, "got %d connections, want <= 8", conns);
	harness_free(&h);
}

Test(engine, dot_timeout)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;

	peer_start(NULL);
	default_cfg(&cfg);
	cfg.timeouts.dot = 1;
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "slow-x@example.com", k_msg);
	double t0 = now_s();
	submit(&h, &t);
	run_until(&h, 1, 10);
	double took = t.t_done - t0;
	assert_outcome(&t, SMTP_RESULT_TEMPFAIL, 0, "dot");
	cr_assert_not_null(strstr(t.o.text, "timeout"), "got text %s, want a timeout", t.o.text);
	cr_assert(took >= 0.9 && took < 2.9, "got %.2f s, want about 1 s", took);
	harness_free(&h);
}

/* run the loop until the peer's transcript contains needle, or fail after limit seconds */
static void run_until_peer_log(struct harness *h, const char *needle, double limit)
{
	char logp[256];
	double deadline = now_s() + limit;

	snprintf(logp, sizeof(logp), "%s/log", g_peer.dir);
	for (;;) {
		char *log = slurp(logp, NULL);
		int hit = log != NULL && strstr(log, needle) != NULL;

		free(log);
		if (hit)
			return;
		cr_assert_lt(now_s(), deadline, "timed out waiting for \"%s\" in the peer transcript", needle);
		cr_assert_eq(smtp_engine_run(h->e, 20), 0, "smtp_engine_run failed");
	}
}

Test(engine, idle_timeout_closes_then_reconnects)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;

	peer_start(NULL);
	default_cfg(&cfg);
	cfg.timeouts.idle = 0.2;
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "b@example.com", k_msg);
	submit(&h, &t);
	run_until(&h, 1, 10);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	/* the idle connection is closed with QUIT */
	run_until_peer_log(&h, "1 C: QUIT", 5);
	run_until_peer_log(&h, "CLOSE 1", 5);
	submit(&h, &t);
	run_until(&h, 2, 10);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	cr_assert_eq(distinct_conns(2), 2, "want a second connection after the idle close");
	harness_free(&h);
}

Test(engine, shutdown_reports_unfinished)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t[5];

	peer_start(NULL);
	default_cfg(&cfg);
	submit_serial(&h, &cfg, &tg, t, 5, "slow-x@example.com", NULL);
	smtp_engine_run(h.e, 50);   /* one session starts, the rest queue */
	harness_free(&h);
	cr_assert_eq(h.ndone, 5, "got %d reports, want 5", h.ndone);
	for (int i = 0; i < 5; i++) {
		assert_outcome(&t[i], SMTP_RESULT_TEMPFAIL, 0, "shutdown");
		cr_assert_eq(t[i].reports, 1, "job %d: got %d reports, want 1", i, t[i].reports);
	}
}

Test(engine, drain_gives_back_unstarted_and_finishes_begun)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t[3], late;
	double t0;

	peer_start(NULL);
	default_cfg(&cfg);
	submit_serial(&h, &cfg, &tg, t, 3, "slow-x@example.com", NULL);
	run_until_peer_log(&h, "1 C: DATA", 10);   /* job 0 is in its transaction, 1 and 2 wait */
	cr_assert_eq(h.ndone, 0, "got %d reports before the drain, want 0", h.ndone);
	smtp_engine_drain(h.e);
	t0 = now_s();
	job_init(&late, &tg, "a@example.com", "b@example.com", k_msg);
	cr_assert_eq(smtp_engine_submit(h.e, &late.job), -1, "submit after drain: got 0, want -1");
	run_until(&h, 2, 2);
	cr_assert_lt(now_s() - t0, 1.0, "the waiting jobs came back after %.2fs, want at once", now_s() - t0);
	for (int i = 1; i < 3; i++)
		assert_outcome(&t[i], SMTP_RESULT_TEMPFAIL, 0, "shutdown");
	cr_assert(!t[0].done, "the job in its transaction was stopped: %s", t[0].o.text);
	run_until(&h, 3, 10);
	assert_outcome(&t[0], SMTP_RESULT_OK, 250, "dot");
	cr_assert_eq(count_files(g_peer.maildir, ".json"), 1, "got %d messages at the peer, want 1",
	    count_files(g_peer.maildir, ".json"));
	harness_free(&h);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(t[i].reports, 1, "job %d: got %d reports, want 1", i, t[i].reports);
}

Test(engine, free_during_transaction_reports_cut)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t[2];

	peer_start(NULL);
	default_cfg(&cfg);
	submit_serial(&h, &cfg, &tg, t, 2, "slow-x@example.com", NULL);
	run_until_peer_log(&h, "1 C: DATA", 10);
	harness_free(&h);
	cr_assert_eq(h.ndone, 2, "got %d reports, want 2", h.ndone);
	assert_outcome(&t[0], SMTP_RESULT_TEMPFAIL, 0, "cut");
	assert_outcome(&t[1], SMTP_RESULT_TEMPFAIL, 0, "shutdown");
}

struct submitter {
	struct harness *h;
	struct tjob *jobs;
	int n;
};

static void *submit_thread(void *arg)
{
	struct submitter *sb = arg;

	for (int i = 0; i < sb->n; i++) {
		if (smtp_engine_submit(sb->h->e, &sb->jobs[i].job) != 0)
			return (void *)1;
		if (i % 5 == 0)
			usleep(2000);
	}
	return NULL;
}

Test(engine, submit_from_other_thread)
{
	enum { N = 40 };
	static struct tjob t[N];
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	pthread_t th;
	void *ret = NULL;

	peer_start(NULL);
	default_cfg(&cfg);
	cfg.max_conns_per_target = 3;
	harness_init(&h, &cfg);
	target_plain(&tg);
	for (int i = 0; i < N; i++)
		job_init(&t[i], &tg, "a@example.com", "b@example.com", k_msg);
	struct submitter sb = { &h, t, N };
	cr_assert_eq(pthread_create(&th, NULL, submit_thread, &sb), 0, "pthread_create");
	run_until(&h, N, 30);
	pthread_join(th, &ret);
	cr_assert_null(ret, "a submit failed");
	for (int i = 0; i < N; i++)
		assert_outcome(&t[i], SMTP_RESULT_OK, 250, "dot");
	harness_free(&h);
}

Test(engine, invalid_address_permfails_without_sending)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t, t2;

	peer_start(NULL);
	default_cfg(&cfg);
	cfg.max_conns_per_target = 1;
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "b@example.com>\r\nRCPT TO:<evil@example.com", k_msg);
	job_init(&t2, &tg, "a@example.com", "good@example.com", k_msg);
	submit(&h, &t);
	submit(&h, &t2);
	run_until(&h, 2, 10);
	assert_outcome(&t, SMTP_RESULT_PERMFAIL, 0, "mail");
	assert_outcome(&t2, SMTP_RESULT_OK, 250, "dot");
	char *js = msg_file(1, "json", NULL);
	cr_assert_not_null(js, "1.json missing");
	cr_assert_null(strstr(js, "evil"), "injected recipient reached the server: %s", js);
	free(js);
	harness_free(&h);
}

Test(engine, helo_fallback_when_ehlo_refused)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;
	const char *args[] = { "--no-ehlo", NULL };

	peer_start(args);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "b@example.com", k_msg);
	submit(&h, &t);
	run_until(&h, 1, 10);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	char logp[256];
	snprintf(logp, sizeof(logp), "%s/log", g_peer.dir);
	char *log = slurp(logp, NULL);
	cr_assert_not_null(log, "no peer log");
	cr_assert_not_null(strstr(log, "C: EHLO"), "got no EHLO in transcript, want EHLO first");
	cr_assert_not_null(strstr(log, "C: HELO client.test"), "got no HELO after the 502, want fallback");
	free(log);
	harness_free(&h);
}

Test(engine, auth_login_when_plain_not_offered)
{
	char certs[128], cert[256], key[256], ca[256];
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;

	make_certs("certs", certs, sizeof(certs));
	snprintf(cert, sizeof(cert), "%s/cert.pem", certs);
	snprintf(key, sizeof(key), "%s/key.pem", certs);
	snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
	const char *args[] = { "--tls-cert", cert, "--tls-key", key, "--require-starttls",
	    "--auth", "user:secretpw", "--auth-mechs", "LOGIN", NULL };
	peer_start(args);
	default_cfg(&cfg);
	snprintf(cfg.ca_file, sizeof(cfg.ca_file), "%s", ca);
	harness_init(&h, &cfg);
	target_plain(&tg);
	tg.tls = SMTP_TLS_REQUIRED;
	snprintf(tg.user, sizeof(tg.user), "user");
	snprintf(tg.pass, sizeof(tg.pass), "secretpw");
	job_init(&t, &tg, "a@example.com", "b@example.com", k_msg);
	submit(&h, &t);
	run_until(&h, 1, 15);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	char *js = msg_file(1, "json", NULL);
	cr_assert_not_null(js, "1.json missing");
	cr_assert_not_null(strstr(js, "\"auth_user\": \"user\""), "got %s, want auth_user user", js);
	free(js);
	char logp[256];
	snprintf(logp, sizeof(logp), "%s/log", g_peer.dir);
	char *log = slurp(logp, NULL);
	cr_assert_not_null(log, "no peer log");
	cr_assert_not_null(strstr(log, "C: AUTH LOGIN"), "got no AUTH LOGIN in transcript");
	cr_assert_null(strstr(log, "secretpw"), "peer transcript shows the password");
	free(log);
	harness_free(&h);
}

/*
 * connect_addr: the engine connects to the given IP and never resolves host;
 * host is only the TLS name (SNI + certificate check). The names below are
 * not resolvable, so a lookup would fail at stage "connect", not "tls".
 */
Test(engine, connect_addr_name_checked_not_resolved)
{
	char certs[128], cert[256], key[256], ca[256];
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob ok, bad, unverified;

	make_certs("certs", certs, sizeof(certs));
	snprintf(cert, sizeof(cert), "%s/cert.pem", certs);
	snprintf(key, sizeof(key), "%s/key.pem", certs);
	snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
	const char *args[] = { "--tls-cert", cert, "--tls-key", key, "--require-starttls", NULL };
	peer_start(args);
	default_cfg(&cfg);
	snprintf(cfg.ca_file, sizeof(cfg.ca_file), "%s", ca);
	harness_init(&h, &cfg);

	/* the certificate is for localhost: verified */
	target_plain(&tg);
	snprintf(tg.connect_addr, sizeof(tg.connect_addr), "127.0.0.1");
	snprintf(tg.host, sizeof(tg.host), "localhost");
	tg.tls = SMTP_TLS_REQUIRED;
	job_init(&ok, &tg, "a@example.com", "ok@example.com", k_msg);
	/* same address, another name: the certificate does not match */
	snprintf(tg.host, sizeof(tg.host), "wrong.example");
	job_init(&bad, &tg, "a@example.com", "bad@example.com", k_msg);
	/* an unresolvable name without verification (opportunistic MX): delivered */
	snprintf(tg.host, sizeof(tg.host), "mx.no-such-name.invalid");
	tg.tls = SMTP_TLS_STARTTLS;
	tg.no_verify = 1;
	job_init(&unverified, &tg, "a@example.com", "unverified@example.com", k_msg);
	submit(&h, &ok);
	submit(&h, &bad);
	submit(&h, &unverified);
	run_until(&h, 3, 20);
	assert_outcome(&ok, SMTP_RESULT_OK, 250, "dot");
	assert_outcome(&bad, SMTP_RESULT_TEMPFAIL, 0, "tls");
	cr_assert_not_null(strstr(bad.o.text, "certificate"),
	    "got text %s, want a certificate verification error", bad.o.text);
	assert_outcome(&unverified, SMTP_RESULT_OK, 250, "dot");
	cr_assert_eq(count_files(g_peer.maildir, ".eml"), 2, "got %d messages stored, want 2",
	    count_files(g_peer.maildir, ".eml"));
	for (int i = 1; i <= 2; i++) {
		char *js = msg_file(i, "json", NULL);
		cr_assert_not_null(js, "%d.json missing", i);
		cr_assert_not_null(strstr(js, "\"tls\": true"), "got %s, want tls true", js);
		cr_assert_null(strstr(js, "bad@example.com"), "got %s: delivered despite a name mismatch", js);
		free(js);
	}
	harness_free(&h);
}

/* --- ESMTP: PIPELINING, SIZE, 8BITMIME, SMTPUTF8, several recipients ------- */

static char *peer_log(void)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/log", g_peer.dir);
	char *s = slurp(path, NULL);
	cr_assert_not_null(s, "transcript %s missing", path);
	return s;
}

/*
 * ahead_after - does the reply to the first command starting with cmd come
 * with an "AHEAD" line (the server had later commands in hand when it sent
 * that reply: the client did not wait for it)?
 */
static int ahead_after(const char *log, const char *cmd)
{
	char pat[64];
	snprintf(pat, sizeof(pat), " C: %s", cmd);
	const char *p = strstr(log, pat);
	cr_assert_not_null(p, "no \"%s\" in transcript:\n%s", pat, log);
	p = strstr(p, " S: ");   /* its reply */
	cr_assert_not_null(p, "no reply to %s in transcript:\n%s", cmd, log);
	p = strchr(p, '\n');
	cr_assert_not_null(p, "transcript ends after the reply to %s", cmd);
	const char *eol = strchr(p + 1, '\n');
	const char *a = strstr(p + 1, " AHEAD ");
	return a != NULL && (eol == NULL || a < eol);
}

static void rcpt_init(struct smtp_rcpt *r, const char *addr)
{
	memset(r, 0, sizeof(*r));
	r->addr = addr;
	r->out.stage = "garbage";   /* the engine must overwrite it */
	r->out.code = 999;
}

/* rcpts_set - t's recipients become r[0..], one per address of the NULL-terminated addrs (at most max) */
static void rcpts_set(struct tjob *t, struct smtp_rcpt *r, size_t max, const char *const *addrs)
{
	size_t n = 0;

	for (; addrs[n] != NULL; n++) {
		cr_assert_lt(n, max, "more than %zu recipients", max);
		rcpt_init(&r[n], addrs[n]);
	}
	t->job.rcpts = r;
	t->job.nrcpts = n;
}

static void assert_rcpt(const struct smtp_rcpt *r, enum smtp_result res, int code,
    const char *stage)
{
	cr_assert_eq(r->out.result, res, "<%s>: got result %d (%d %s: %s), want %d", r->addr,
	    r->out.result, r->out.code, r->out.stage ? r->out.stage : "-", r->out.text, res);
	cr_assert_eq(r->out.code, code, "<%s>: got code %d (%s), want %d", r->addr, r->out.code,
	    r->out.text, code);
	cr_assert_not_null(r->out.stage, "<%s>: got no stage, want %s", r->addr, stage);
	cr_assert_str_eq(r->out.stage, stage, "<%s>: got stage %s, want %s", r->addr,
	    r->out.stage, stage);
}

Test(engine, pipelining_sends_group_in_one_write)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t, t2;

	const char *args[] = { "--pipelining", NULL };
	peer_start(args);
	default_cfg(&cfg);
	cfg.max_conns_per_target = 1;
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "b@example.com", k_msg);
	job_init(&t2, &tg, "a@example.com", "c@example.com", k_msg);
	submit(&h, &t);
	submit(&h, &t2);
	run_until(&h, 2, 10);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	assert_outcome(&t2, SMTP_RESULT_OK, 250, "dot");
	char *log = peer_log();
	cr_assert_not_null(strstr(log, "S: 250-PIPELINING"), "PIPELINING not offered:\n%s", log);
	/* RCPT and DATA were already there when MAIL was answered, DATA when RCPT was */
	cr_assert(ahead_after(log, "MAIL FROM:<a@example.com>"),
	    "got MAIL answered before RCPT/DATA arrived (lock-step), want pipelined:\n%s", log);
	cr_assert(ahead_after(log, "RCPT TO:<b@example.com>"),
	    "got RCPT answered before DATA arrived, want pipelined:\n%s", log);
	cr_assert(!ahead_after(log, "DATA"), "DATA must end the group (got data before 354):\n%s", log);
	/* the second message on the connection: its RSET opens the group, no round trip of its own */
	cr_assert(ahead_after(log, "RSET"),
	    "got RSET answered before MAIL arrived (a round trip per message), want it in the group:\n%s",
	    log);
	free(log);
	cr_assert_eq(distinct_conns(2), 1, "want both messages on one connection");
	harness_free(&h);
}

static int count_events(const struct harness *h, const char *msg, const char *rcpt,
    const struct tevent **last);

/*
 * A reused connection that the server drops at the next transaction's RSET:
 * the job goes back untried (reported once, delivered on a new connection),
 * whether the RSET went alone or with MAIL, RCPT and DATA behind it.
 */
static void reused_gone_case(int pipelining)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t, t2;

	const char *args[] = { "--pipelining", NULL };
	peer_start(pipelining ? args : NULL);
	default_cfg(&cfg);
	cfg.max_conns_per_target = 1;
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "gone-x@example.com", k_msg);
	job_init(&t2, &tg, "a@example.com", "after@example.com", k_msg);
	submit(&h, &t);
	submit(&h, &t2);
	run_until(&h, 2, 10);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	assert_outcome(&t2, SMTP_RESULT_OK, 250, "dot");
	cr_assert_eq(t2.reports, 1, "got %d reports for the requeued job, want 1", t2.reports);
	cr_assert_eq(count_events(&h, "reused connection failed before MAIL, job requeued", NULL, NULL),
	    1, "want the requeue logged once");
	char *log = peer_log();
	cr_assert_not_null(strstr(log, "1 GONE"), "the server did not drop at RSET:\n%s", log);
	free(log);
	cr_assert_eq(count_files(g_peer.maildir, ".eml"), 2, "want each message stored once");
	cr_assert_eq(distinct_conns(2), 2, "want the second message on a new connection");
	harness_free(&h);
}

Test(engine, reused_connection_gone_at_rset_requeues_pipelined)
{
	reused_gone_case(1);
}

Test(engine, reused_connection_gone_at_rset_requeues_lock_step)
{
	reused_gone_case(0);
}

Test(engine, no_pipelining_is_lock_step)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;

	peer_start(NULL);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "b@example.com", k_msg);
	submit(&h, &t);
	run_until(&h, 1, 10);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	char *log = peer_log();
	cr_assert_null(strstr(log, " AHEAD "), "got a command sent ahead without PIPELINING:\n%s", log);
	free(log);
	harness_free(&h);
}

Test(engine, pipelining_refused_sender_drains_then_reuses)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t, t2;

	const char *args[] = { "--pipelining", NULL };
	peer_start(args);
	default_cfg(&cfg);
	cfg.max_conns_per_target = 1;
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "perm-a@example.com", "b@example.com", k_msg);
	job_init(&t2, &tg, "a@example.com", "c@example.com", k_msg);
	submit(&h, &t);
	submit(&h, &t2);
	run_until(&h, 2, 10);
	assert_outcome(&t, SMTP_RESULT_PERMFAIL, 550, "mail");
	assert_outcome(&t2, SMTP_RESULT_OK, 250, "dot");
	cr_assert_eq(count_files(g_peer.maildir, ".json"), 1, "want only the second message stored");
	char *js = msg_file(1, "json", NULL);
	cr_assert_not_null(strstr(js, "\"rcpt_tos\": [\"c@example.com\"]"), "got %s", js);
	free(js);
	cr_assert_eq(distinct_conns(1), 1, "want one connection");
	harness_free(&h);
}

/* several recipients in one transaction, with and without PIPELINING */
static void multi_rcpt_case(int pipelining)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;
	struct smtp_rcpt r[4];

	const char *args[] = { "--pipelining", NULL };
	peer_start(pipelining ? args : NULL);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "ignored@example.com", k_msg);
	rcpts_set(&t, r, sizeof(r) / sizeof(r[0]),
	    (const char *const[]){ "ok1@example.com", "perm-x@example.com", "temp1-y@example.com",
	    "ok2@example.com", NULL });
	submit(&h, &t);
	run_until(&h, 1, 10);
	cr_assert_eq(t.reports, 1, "got %d on_done calls, want 1", t.reports);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	assert_rcpt(&r[0], SMTP_RESULT_OK, 250, "dot");
	assert_rcpt(&r[1], SMTP_RESULT_PERMFAIL, 550, "rcpt");
	cr_assert_str_eq(r[1].out.enhanced, "5.1.1", "got %s, want 5.1.1", r[1].out.enhanced);
	assert_rcpt(&r[2], SMTP_RESULT_TEMPFAIL, 451, "rcpt");
	assert_rcpt(&r[3], SMTP_RESULT_OK, 250, "dot");
	cr_assert_eq(count_files(g_peer.maildir, ".json"), 1, "want the message stored once");
	char *js = msg_file(1, "json", NULL);
	cr_assert_not_null(strstr(js, "\"rcpt_tos\": [\"ok1@example.com\", \"ok2@example.com\"]"),
	    "got %s, want rcpt_tos ok1, ok2", js);
	free(js);
	char *log = peer_log();
	cr_assert_eq(ahead_after(log, "MAIL FROM:") != 0, pipelining != 0,
	    "pipelining %d: transcript:\n%s", pipelining, log);
	free(log);

	/* all refused: each its own outcome, the job's is the first one's */
	job_init(&t, &tg, "a@example.com", "ignored@example.com", k_msg);
	rcpts_set(&t, r, sizeof(r) / sizeof(r[0]),
	    (const char *const[]){ "perm-a@example.com", "temp1-b@example.com", NULL });
	submit(&h, &t);
	run_until(&h, 2, 10);
	assert_outcome(&t, SMTP_RESULT_PERMFAIL, 550, "rcpt");
	assert_rcpt(&r[0], SMTP_RESULT_PERMFAIL, 550, "rcpt");
	assert_rcpt(&r[1], SMTP_RESULT_TEMPFAIL, 451, "rcpt");
	cr_assert_eq(count_files(g_peer.maildir, ".json"), 1, "nothing more may be stored");

	/* and the connection still works */
	job_init(&t, &tg, "a@example.com", "after@example.com", k_msg);
	submit(&h, &t);
	run_until(&h, 3, 10);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	cr_assert_eq(distinct_conns(2), 1, "want one connection for everything");
	harness_free(&h);
}

/* events with this msg (and rcpt, unless NULL); *last gets the last one */
static int count_events(const struct harness *h, const char *msg, const char *rcpt,
    const struct tevent **last)
{
	int n = 0;

	for (int i = 0; i < h->nev; i++)
		if (strcmp(h->ev[i].msg, msg) == 0 && (rcpt == NULL || strcmp(h->ev[i].rcpt, rcpt) == 0)) {
			n++;
			if (last != NULL)
				*last = &h->ev[i];
		}
	return n;
}

/*
 * The log callback gets data, not text: each event of a job's session names
 * the job (the caller maps it to its own ids), the recipient it is about and
 * the reply code, so txmail can put msg_id and rcpt on every SMTP line.
 */
Test(engine, log_events_name_job_recipient_and_code)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;
	struct smtp_rcpt r[3];
	const struct tevent *e = NULL;

	peer_start(NULL);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "ignored@example.com", k_msg);
	rcpts_set(&t, r, sizeof(r) / sizeof(r[0]),
	    (const char *const[]){ "ok1@example.com", "perm-x@example.com", "ok2@example.com", NULL });
	submit(&h, &t);
	run_until(&h, 1, 10);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	cr_assert_lt(h.nev, HARNESS_EVENTS, "too many events to check (%d)", h.nev);

	cr_assert_eq(count_events(&h, "connected", NULL, &e), 1, "want one \"connected\" event");
	cr_assert_eq(e->job, &t.job, "\"connected\": got job %p, want %p", (const void *)e->job,
	    (const void *)&t.job);
	cr_assert_gt(e->conn, 0, "\"connected\": got conn 0, want the session's number");
	cr_assert_neq(strstr(e->peer, ":"), NULL, "\"connected\": got peer %s, want host:port", e->peer);
	cr_assert_str_empty(e->rcpt, "\"connected\" is about the whole job, got rcpt %s", e->rcpt);

	cr_assert_eq(count_events(&h, "RCPT TO refused", "perm-x@example.com", &e), 1,
	    "want one \"RCPT TO refused\" for perm-x@example.com");
	cr_assert_eq(e->job, &t.job, "\"RCPT TO refused\": wrong job");
	cr_assert_eq(e->code, 550, "\"RCPT TO refused\": got code %d, want 550", e->code);

	/* one line per accepted recipient, none for the refused one */
	cr_assert_eq(count_events(&h, "message accepted by server", NULL, NULL), 2,
	    "want 2 \"message accepted by server\" events");
	for (int i = 0; i < 2; i++) {
		const char *want = i == 0 ? "ok1@example.com" : "ok2@example.com";

		cr_assert_eq(count_events(&h, "message accepted by server", want, &e), 1,
		    "want one \"message accepted by server\" for %s", want);
		cr_assert_eq(e->job, &t.job, "accepted %s: wrong job", want);
		cr_assert_eq(e->code, 250, "accepted %s: got code %d, want 250", want, e->code);
	}
	/* nothing names another job, and every session event says which session */
	for (int i = 0; i < h.nev; i++) {
		cr_assert(h.ev[i].job == NULL || h.ev[i].job == &t.job, "event %s: got job %p",
		    h.ev[i].msg, (const void *)h.ev[i].job);
		cr_assert_gt(h.ev[i].conn, 0, "event %s: got conn 0", h.ev[i].msg);
	}
	harness_free(&h);
}

Test(engine, multi_rcpt_partial_lock_step)
{
	multi_rcpt_case(0);
}

Test(engine, multi_rcpt_partial_pipelined)
{
	multi_rcpt_case(1);
}

Test(engine, multi_rcpt_shutdown_fills_every_recipient)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t;
	struct smtp_rcpt r[2];

	peer_start(NULL);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "x@example.com", k_msg);
	rcpts_set(&t, r, sizeof(r) / sizeof(r[0]),
	    (const char *const[]){ "a1@example.com", "a2@example.com", NULL });
	submit(&h, &t);
	smtp_engine_free(h.e);   /* never run: reported at once */
	h.e = NULL;
	cr_assert_eq(t.reports, 1, "got %d reports, want 1", t.reports);
	assert_rcpt(&r[0], SMTP_RESULT_TEMPFAIL, 0, "shutdown");
	assert_rcpt(&r[1], SMTP_RESULT_TEMPFAIL, 0, "shutdown");
}

Test(engine, size_too_big_permfails_unsent)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t, t2;
	static const char small[] = "Subject: s\r\n\r\nx\r\n";

	const char *args[] = { "--size", "40", NULL };
	peer_start(args);
	default_cfg(&cfg);
	cfg.max_conns_per_target = 1;
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "big@example.com", k_msg);   /* 62 bytes */
	job_init(&t2, &tg, "a@example.com", "small@example.com", small);
	submit(&h, &t);
	submit(&h, &t2);
	run_until(&h, 2, 10);
	assert_outcome(&t, SMTP_RESULT_PERMFAIL, 0, "mail");
	cr_assert_str_eq(t.o.enhanced, "5.3.4", "got %s, want 5.3.4", t.o.enhanced);
	cr_assert_not_null(strstr(t.o.text, "SIZE limit of 40"), "got text %s", t.o.text);
	assert_outcome(&t2, SMTP_RESULT_OK, 250, "dot");
	char *log = peer_log();
	cr_assert_null(strstr(log, "big@example.com"), "the big message was sent:\n%s", log);
	free(log);
	char *js = msg_file(1, "json", NULL);
	char want[64];
	snprintf(want, sizeof(want), "\"SIZE=%zu\"", strlen(small));
	cr_assert_not_null(strstr(js, want), "got %s, want %s in mail_options", js, want);
	free(js);
	harness_free(&h);
}

Test(engine, eightbit_body_and_smtputf8)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t, t2;
	static const char msg8[] = "Subject: caf\xc3\xa9\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\n";

	const char *args[] = { "--smtputf8", "--pipelining", NULL };
	peer_start(args);
	default_cfg(&cfg);
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "b@example.com", msg8);
	job_init(&t2, &tg, "a@example.com", "j\xc3\xb6rg@example.com", k_msg);
	submit(&h, &t);
	run_until(&h, 1, 10);
	submit(&h, &t2);
	run_until(&h, 2, 10);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	assert_outcome(&t2, SMTP_RESULT_OK, 250, "dot");
	char *js = msg_file(1, "json", NULL);
	cr_assert_not_null(strstr(js, "\"BODY=8BITMIME\""), "got %s, want BODY=8BITMIME", js);
	cr_assert_null(strstr(js, "\"SMTPUTF8\""), "got %s, want no SMTPUTF8 (ASCII addresses)", js);
	free(js);
	size_t len;
	char *eml = msg_file(1, "eml", &len);
	cr_assert_eq(len, strlen(msg8), "got %zu bytes, want %zu", len, strlen(msg8));
	cr_assert_eq(memcmp(eml, msg8, len), 0, "8-bit bytes changed in transit");
	free(eml);
	js = msg_file(2, "json", NULL);
	cr_assert_not_null(strstr(js, "\"SMTPUTF8\""), "got %s, want SMTPUTF8", js);
	cr_assert_not_null(strstr(js, "j\\u00f6rg@example.com"), "got %s, want the UTF-8 rcpt", js);
	cr_assert_null(strstr(js, "BODY=8BITMIME"), "got %s, want no BODY= for 7-bit data", js);
	free(js);
	harness_free(&h);
}

Test(engine, utf8_address_without_smtputf8_permfails_unsent)
{
	struct smtp_engine_config cfg;
	struct harness h;
	struct smtp_target tg;
	struct tjob t, t2, t3;
	struct smtp_rcpt r[2];

	const char *args[] = { "--no-8bitmime", NULL };
	peer_start(args);
	default_cfg(&cfg);
	cfg.max_conns_per_target = 1;
	harness_init(&h, &cfg);
	target_plain(&tg);
	job_init(&t, &tg, "a@example.com", "j\xc3\xb6rg@example.com", k_msg);
	job_init(&t2, &tg, "a@example.com", "x@example.com", k_msg);
	rcpts_set(&t2, r, sizeof(r) / sizeof(r[0]),
	    (const char *const[]){ "\xc3\xa9@example.com", "plain@example.com", NULL });
	job_init(&t3, &tg, "s\xc3\xa9nder@example.com", "y@example.com", "Subject: 8\r\n\r\n\xc3\xa9\r\n");
	submit(&h, &t);
	submit(&h, &t2);
	submit(&h, &t3);
	run_until(&h, 3, 10);
	assert_outcome(&t, SMTP_RESULT_PERMFAIL, 0, "rcpt");
	cr_assert_str_eq(t.o.enhanced, "5.6.7", "got %s, want 5.6.7", t.o.enhanced);
	cr_assert_not_null(strstr(t.o.text, "needs SMTPUTF8, not offered"), "got %s", t.o.text);
	assert_rcpt(&r[0], SMTP_RESULT_PERMFAIL, 0, "rcpt");
	assert_rcpt(&r[1], SMTP_RESULT_OK, 250, "dot");
	assert_outcome(&t3, SMTP_RESULT_PERMFAIL, 0, "mail");
	cr_assert_str_eq(t3.o.enhanced, "5.6.7", "got %s, want 5.6.7", t3.o.enhanced);
	cr_assert_eq(count_files(g_peer.maildir, ".json"), 1, "want one message stored");
	char *js = msg_file(1, "json", NULL);
	cr_assert_not_null(strstr(js, "\"rcpt_tos\": [\"plain@example.com\"]"), "got %s", js);
	free(js);
	char *log = peer_log();
	cr_assert_null(strstr(log, "500 Error: strict ASCII"), "a non-ASCII command was sent:\n%s", log);
	free(log);
	harness_free(&h);
}

/* --- every address of a name (issue 9) --------------------------------------- */

/* first_family - the family of getaddrinfo's first answer for name, 0 when none. */
static int first_family(const char *name)
{
	struct addrinfo hints, *res = NULL;
	int fam = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(name, "25", &hints, &res) == 0 && res != NULL)
		fam = res->ai_family;
	if (res != NULL)
		freeaddrinfo(res);
	return fam;
}

/*
 * hosts_v6_first - these tests need "localhost" to resolve to ::1 first
 * and 127.0.0.1 after it, as with Debian's, Ubuntu's and Docker's
 * /etc/hosts; skipped where it does not. A Criterion test cannot make its
 * own /etc/hosts (unshare(CLONE_NEWUSER) refuses a threaded process), so
 * tests/integration/test_every_address.py runs them under `unshare -rm`
 * with a bind-mounted /etc/hosts and requires that they pass, not skip.
 */
static void hosts_v6_first(void)
{
	int fam = first_family("localhost");

	if (fam != AF_INET6)
		cr_skip_test("localhost resolves to %s first here, not ::1 "
		    "(tests/integration/test_every_address.py runs this with ::1 first)",
		    fam == AF_INET ? "an IPv4 address" : "nothing");
}

/*
 * blackhole_listen - a listener on ip:port whose accept queue is full, so
 * that the kernel drops further SYNs and a connect to it hangs, as to a
 * host that never answers - on loopback. fds gets the listener and the
 * connections that filled its queue (the caller closes them); returns how
 * many.
 */
static int blackhole_listen(const char *ip, int port, int *fds, int max)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1, n = 0, family = strchr(ip, ':') != NULL ? AF_INET6 : AF_INET;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		cr_assert_eq(inet_pton(AF_INET6, ip, &a->sin6_addr), 1, "bad address %s", ip);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		cr_assert_eq(inet_pton(AF_INET, ip, &a->sin_addr), 1, "bad address %s", ip);
		sl = sizeof(*a);
	}
	int l = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(l, 0, "socket: %s", strerror(errno));
	if (family == AF_INET6)
		(void)setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	cr_assert_eq(bind(l, (struct sockaddr *)&ss, sl), 0, "bind %s:%d: %s", ip, port, strerror(errno));
	cr_assert_eq(listen(l, 0), 0, "listen: %s", strerror(errno));
	fds[n++] = l;
	while (n < max) {
		int c = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		cr_assert_geq(c, 0, "socket: %s", strerror(errno));
		fds[n++] = c;
		int rc = connect(c, (struct sockaddr *)&ss, sl);
		cr_assert(rc == 0 || errno == EINPROGRESS, "connect %s:%d: %s", ip, port, strerror(errno));
		struct pollfd p = { .fd = c, .events = POLLOUT };
		if (rc != 0 && poll(&p, 1, 300) == 0)
			return n;   /* this one hangs: the queue is full */
	}
	cr_assert_fail("the accept queue of %s:%d did not fill with %d connections", ip, port, max);
	return n;
}

static void close_all(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* assert one event with msg whose fields (" k=v k=v") contain want */
static void assert_event(const struct harness *h, const char *msg, const char *want)
{
	char got[4096] = "";
	size_t used = 0;

	for (int i = 0; i < h->nev; i++) {
		if (strcmp(h->ev[i].msg, msg) == 0 && strstr(h->ev[i].fields, want) != NULL)
			return;
		if (used + 1 < sizeof(got)) {
			int n = snprintf(got + used, sizeof(got) - used, "%s%s\n", h->ev[i].msg,
			    h->ev[i].fields);
			if (n > 0)
				used += (size_t)n;
		}
	}
	cr_assert_fail("got events\n%s\nwant \"%s\" with%s", got, msg, want);
}

static void target_localhost(struct smtp_target *tg, int port)
{
	memset(tg, 0, sizeof(*tg));
	snprintf(tg->host, sizeof(tg->host), "localhost");
	tg->port = (uint16_t)port;
	tg->tls = SMTP_TLS_NONE;
}

/*
 * localhost_attempt - one job to localhost:port through a fresh h (connect
 * timeout connect_s seconds when > 0, else the default), run until it is
 * reported; returns how long that took.
 */
static double localhost_attempt(struct harness *h, struct tjob *t, int port, double connect_s)
{
	struct smtp_engine_config cfg;
	struct smtp_target tg;
	double t0;

	default_cfg(&cfg);
	if (connect_s > 0)
		cfg.timeouts.connect = connect_s;
	harness_init(h, &cfg);
	target_localhost(&tg, port);
	job_init(t, &tg, "a@example.com", "b@example.com", k_msg);
	t0 = now_s();
	submit(h, t);
	run_until(h, 1, 10);
	return t->t_done - t0;
}

/*
 * next_address_case - ::1 fails (refused: nothing listens there; with
 * v6_blackhole it never answers, and fails after the 1 s connect timeout
 * for that address), then 127.0.0.1 delivers: one attempt, both in the log.
 */
static void next_address_case(int v6_blackhole)
{
	const char *how = v6_blackhole ? "timed out after 1s" : "refused";
	struct harness h;
	struct tjob t;
	char want[128];
	int fds[8], nfds = 0;
	double took;

	hosts_v6_first();
	peer_start(NULL);
	if (v6_blackhole)
		nfds = blackhole_listen("::1", g_peer.port, fds, 8);
	took = localhost_attempt(&h, &t, g_peer.port, v6_blackhole ? 1 : 0);
	assert_outcome(&t, SMTP_RESULT_OK, 250, "dot");
	if (v6_blackhole)
		cr_assert(took >= 0.9 && took < 5, "took %.2fs, want about the 1s connect timeout", took);
	cr_assert_eq(count_files(g_peer.maildir, ".eml"), 1, "got %d messages stored, want 1",
	    count_files(g_peer.maildir, ".eml"));
	snprintf(want, sizeof(want), " addr=[::1]:%d error=%s next=127.0.0.1:%d", g_peer.port, how,
	    g_peer.port);
	assert_event(&h, "connect failed, trying the next address", want);
	snprintf(want, sizeof(want), " tried=[::1]:%d %s", g_peer.port, how);
	assert_event(&h, "connected", want);
	harness_free(&h);
	close_all(fds, nfds);
}

/*
 * every_address_fails_case - both addresses refuse (with blackhole: never
 * answer, each getting the whole 1 s connect timeout: it is per address,
 * not one for all): one tempfail naming each address and how it failed.
 */
static void every_address_fails_case(int blackhole)
{
	const char *how = blackhole ? "timed out after 1s" : "refused";
	struct harness h;
	struct tjob t;
	char want[200];
	int fds[16], nfds = 0, port;
	double took;

	hosts_v6_first();
	peer_start(NULL);
	port = g_peer.port;
	peer_stop();   /* nothing listens there now */
	if (blackhole) {
		nfds = blackhole_listen("::1", port, fds, 8);
		nfds += blackhole_listen("127.0.0.1", port, fds + nfds, 8);
	}
	took = localhost_attempt(&h, &t, port, blackhole ? 1 : 0);
	assert_outcome(&t, SMTP_RESULT_TEMPFAIL, 0, "connect");
	snprintf(want, sizeof(want), "connect to localhost: [::1]:%d %s; 127.0.0.1:%d %s", port, how,
	    port, how);
	cr_assert_str_eq(t.o.text, want, "got %s, want %s", t.o.text, want);
	cr_assert_eq(t.reports, 1, "got %d reports, want 1", t.reports);
	if (blackhole)
		cr_assert(took >= 1.9 && took < 6, "took %.2fs, want about 2 x the 1s connect timeout", took);
	harness_free(&h);
	close_all(fds, nfds);
}

Test(engine, next_address_after_a_refused_one)
{
	next_address_case(0);
}

Test(engine, next_address_after_a_connect_timeout)
{
	next_address_case(1);
}

Test(engine, every_address_refused_names_each)
{
	every_address_fails_case(0);
}

Test(engine, connect_timeout_is_per_address)
{
	every_address_fails_case(1);
}
