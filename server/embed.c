/*
 * embed.c - the embedded redis-server child of `txmail run`.
 *
 * Owns the child's configuration file, its data directory
 * (<data_dir>/redis: AOF, log, pid file, unix socket) and its lifetime. It
 * does not speak the Redis protocol (the store does): readiness here means
 * the unix socket accepts connections; the caller then waits for PING.
 */
#include "embed.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static int
mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	size_t len = util_strlcpy(tmp, path, sizeof(tmp));

	if (len >= sizeof(tmp))
		return -1;
	for (char *p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* A redis-server left by a txmail that was killed must be gone before we start another on the same AOF. */
static void
wait_previous(const char *pidfile)
{
	char buf[32];
	ssize_t n;
	long pid;
	int fd = open(pidfile, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	pid = strtol(buf, NULL, 10);
	if (pid <= 1)
		return;
	for (int i = 0; i < 100 && kill((pid_t)pid, 0) == 0; i++) {
		char exe[PATH_MAX], link[64];
		ssize_t l;
		snprintf(link, sizeof(link), "/proc/%ld/exe", pid);
		l = readlink(link, exe, sizeof(exe) - 1);
		if (l <= 0)
			return;
		exe[l] = '\0';
		if (strstr(exe, "redis") == NULL)
			return;   /* pid reused by something else */
		if (i == 0)
			log_info("embedded redis waiting for the previous one to exit", "pid=%ld", pid);
		sleep_ms(50);
	}
}

static int
socket_ready(const char *path)
{
	struct sockaddr_un sa;
	int fd, ok;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	util_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

int
embed_redis_start(struct embed_redis *r, const char *data_dir, const char *server_bin,
    struct redis_addr *addr, char *err, size_t errlen)
{
	char dir[PATH_MAX], abs[PATH_MAX], conf[PATH_MAX + 16], pidfile[PATH_MAX + 16];
	FILE *f;
	pid_t pid;
	int n;

	memset(r, 0, sizeof(*r));
	r->pid = -1;
	n = snprintf(dir, sizeof(dir), "%s/redis", data_dir);
	if (n < 0 || (size_t)n >= sizeof(dir) || mkdir_p(dir) != 0 || realpath(dir, abs) == NULL) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	n = snprintf(r->socket_path, sizeof(r->socket_path), "%s/redis.sock", abs);
	if (n < 0 || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, errlen, "data dir path too long for a unix socket: %s", abs);
		return -1;
	}
	snprintf(conf, sizeof(conf), "%s/redis.conf", abs);
	snprintf(pidfile, sizeof(pidfile), "%s/redis.pid", abs);
	wait_previous(pidfile);
	f = fopen(conf, "we");
	if (f == NULL) {
		snprintf(err, errlen, "cannot write %s: %s", conf, strerror(errno));
		return -1;
	}
	/* Generated at every start; edit TXMAIL_* settings, not this file. */
	fprintf(f,
	    "# written by txmail run: the embedded development redis\n"
	    "port 0\n"
	    "unixsocket %s\n"
	    "unixsocketperm 700\n"
	    "dir %s\n"
	    "pidfile %s\n"
	    "logfile %s/redis.log\n"
	    "daemonize no\n"
	    "save \"\"\n"
	    "appendonly yes\n"
	    "appendfsync everysec\n"
	    "maxmemory-policy noeviction\n",
	    r->socket_path, abs, pidfile, abs);
	if (fclose(f) != 0) {
		snprintf(err, errlen, "cannot write %s", conf);
		return -1;
	}
	unlink(r->socket_path);
	pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* Die with the parent, even when it is killed with SIGKILL. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		/* Own process group: Ctrl-C in a terminal reaches us, and we stop it in order. */
		setpgid(0, 0);
		execlp(server_bin, server_bin, conf, (char *)NULL);
		_exit(127);
	}
	r->pid = pid;
	for (int i = 0; i < 200; i++) {   /* 10 s */
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			r->pid = -1;
			snprintf(err, errlen, "%s exited at start (status %d); see %s/redis.log",
			    server_bin, WIFEXITED(status) ? WEXITSTATUS(status) : -1, abs);
			return -1;
		}
		if (socket_ready(r->socket_path)) {
			memset(addr, 0, sizeof(*addr));
			addr->is_unix = 1;
			util_strlcpy(addr->path, r->socket_path, sizeof(addr->path));
			log_info("embedded redis started", "pid=%d socket=%s persistence=aof appendfsync=everysec",
			    (int)pid, r->socket_path);
			return 0;
		}
		sleep_ms(50);
	}
	embed_redis_stop(r);
	snprintf(err, errlen, "%s did not start within 10 s; see %s/redis.log", server_bin, abs);
	return -1;
}

void
embed_redis_stop(struct embed_redis *r)
{
	int status;

	if (r->pid <= 0)
		return;
	kill(r->pid, SIGTERM);   /* redis flushes the AOF and exits */
	for (int i = 0; i < 200; i++) {
		if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
			log_info("embedded redis stopped");
			r->pid = -1;
			return;
		}
		sleep_ms(50);
	}
	log_warn("embedded redis did not stop, killing it", "waited=10s");
	kill(r->pid, SIGKILL);
	waitpid(r->pid, &status, 0);
	r->pid = -1;
}
