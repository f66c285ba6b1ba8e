/*
 * redis_child.h - the redis-server child of the store's unit tests
 * (test_store.c, test_store_shaping.c): each test starts its own on a
 * random loopback port (killed in the fixture teardown, and by
 * PR_SET_PDEATHSIG if the test crashes), opens the store on it (st) and a
 * separate hiredis connection to inspect it (rc_ctx). Static functions for
 * one test file: define REDIS_CHILD_DIR (a mkdtemp template) and include
 * it once, after the system headers, then declare the suite with
 * .init = setup, .fini = teardown.
 */
#ifndef TESTS_UNIT_REDIS_CHILD_H
#define TESTS_UNIT_REDIS_CHILD_H

static pid_t rs_pid = -1;
static uint16_t rs_port;
static char rs_dir[64];
static struct redis_addr rs_addr;
static redisContext *rc_ctx;
static struct store *st;

/* --- redis-server child ------------------------------------------------- */

static uint16_t
free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t port = 0;

	cr_assert(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static pid_t
redis_spawn(uint16_t port)
{
	char p[16], sock[128];
	pid_t pid;

	snprintf(p, sizeof(p), "%u", (unsigned)port);
	snprintf(sock, sizeof(sock), "%s/redis.sock", rs_dir);
	pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (devnull >= 0) {
			dup2(devnull, 0);
			dup2(devnull, 1);
			dup2(devnull, 2);
		}
		execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1",
		    "--save", "", "--appendonly", "no", "--dir", rs_dir,
		    "--unixsocket", sock, "--unixsocketperm", "700", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* redis_wait - PING until PONG or the deadline; 0 when up. */
static int
redis_wait(pid_t pid, uint16_t port, int64_t timeout_ms)
{
	int64_t deadline = util_mono_ms() + timeout_ms;
	struct timeval tv = { 0, 200000 };

	while (util_mono_ms() < deadline) {
		redisContext *c;
		int status;

		if (waitpid(pid, &status, WNOHANG) == pid)
			return -1;   /* exited: port taken? */
		c = redisConnectWithTimeout("127.0.0.1", port, tv);
		if (c && !c->err) {
			redisReply *r = redisCommand(c, "PING");
			int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;

			if (r)
				freeReplyObject(r);
			redisFree(c);
			if (ok)
				return 0;
		} else if (c) {
			redisFree(c);
		}
		usleep(20000);
	}
	return -1;
}

static void
redis_kill(void)
{
	if (rs_pid > 0) {
		kill(rs_pid, SIGKILL);
		waitpid(rs_pid, NULL, 0);
	}
	rs_pid = -1;
}

static void
inspector_connect(void)
{
	struct timeval tv = { 2, 0 };

	if (rc_ctx)
		redisFree(rc_ctx);
	rc_ctx = redisConnectWithTimeout("127.0.0.1", rs_port, tv);
	cr_assert(rc_ctx && !rc_ctx->err, "inspector connect failed");
	redisSetTimeout(rc_ctx, tv);
}

static void
setup(void)
{
	int attempt;

	util_strlcpy(rs_dir, REDIS_CHILD_DIR, sizeof(rs_dir));
	cr_assert(mkdtemp(rs_dir) != NULL);
	for (attempt = 0; attempt < 5; attempt++) {
		rs_port = free_port();
		cr_assert(rs_port != 0);
		rs_pid = redis_spawn(rs_port);
		cr_assert(rs_pid > 0);
		if (redis_wait(rs_pid, rs_port, 5000) == 0)
			break;
		redis_kill();
	}
	cr_assert(rs_pid > 0, "redis-server did not start");
	memset(&rs_addr, 0, sizeof(rs_addr));
	util_strlcpy(rs_addr.host, "127.0.0.1", sizeof(rs_addr.host));
	rs_addr.port = rs_port;
	inspector_connect();
	st = store_open(&rs_addr);
	cr_assert(st);
	char err[256];
	cr_assert_eq(store_init(st, err, sizeof(err)), 0, "store_init: %s", err);
}

static void
teardown(void)
{
	store_close(st);
	st = NULL;
	if (rc_ctx)
		redisFree(rc_ctx);
	rc_ctx = NULL;
	redis_kill();
	if (rs_dir[0]) {
		char path[128];

		snprintf(path, sizeof(path), "%s/dump.rdb", rs_dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/redis.sock", rs_dir);
		unlink(path);
		rmdir(rs_dir);
	}
}

static long long
rint_cmd(const char *fmt, const char *arg)
{
	redisReply *r = redisCommand(rc_ctx, fmt, arg);
	long long v;

	cr_assert(r, "inspector command failed: %s", fmt);
	cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "%s: got reply type %d, want integer", fmt, r->type);
	v = r->integer;
	freeReplyObject(r);
	return v;
}

#endif
