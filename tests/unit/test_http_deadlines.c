/*
 * test_http_deadlines.c - http_deadlines.c's sweeper against a body whose
 * client hung up: cut within two hang-up checks even when the sweeper was
 * asleep on empty queues when the body became due (CI saw an aborted
 * upload keep its budget reservation: the sweeper slept for the header
 * allowance while libmicrohttpd missed the FIN).
 *
 * The connections are real loopback TCP sockets; libmicrohttpd is not: the
 * missed FIN is a fault a real libmicrohttpd shows only now and then, so
 * MHD_get_connection_info is this file's own (the linker takes the
 * executable's definition) and hands the sweeper the socket and entry of a
 * fake connection.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../server/config.h"
#include "../../server/http_internal.h"

struct fake_conn {
	int fd;
	void *socket_context;
	union MHD_ConnectionInfo info;
};

const union MHD_ConnectionInfo *
MHD_get_connection_info(struct MHD_Connection *connection, enum MHD_ConnectionInfoType kind, ...)
{
	struct fake_conn *f = (struct fake_conn *)(void *)connection;

	memset(&f->info, 0, sizeof(f->info));
	if (kind == MHD_CONNECTION_INFO_CONNECTION_FD)
		f->info.connect_fd = f->fd;
	else if (kind == MHD_CONNECTION_INFO_SOCKET_CONTEXT)
		f->info.socket_context = f->socket_context;
	else
		return NULL;
	return &f->info;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* a connected loopback pair: *srv is the server's side (the one the sweeper watches) */
static void
tcp_pair(int *cli, int *srv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(l >= 0);
	cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(l, 4), 0);
	cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	*cli = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(*cli >= 0);
	cr_assert_eq(connect(*cli, (struct sockaddr *)&a, sizeof(a)), 0);
	*srv = accept(l, NULL, NULL);
	cr_assert(*srv >= 0);
	close(l);
}

static int
tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
	return ti.tcpi_state;
}

/* every other thread of this process asleep (state S): the sweeper is in its wait */
static int
others_asleep(void)
{
	char path[300], buf[256], self[32];
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int asleep = 1, others = 0;

	cr_assert(d != NULL);
	snprintf(self, sizeof(self), "%ld", (long)gettid());
	while ((e = readdir(d)) != NULL) {
		FILE *f;
		char *p;

		if (e->d_name[0] == '.' || strcmp(e->d_name, self) == 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL) {
			others++;
			if (p[1] != ' ' || p[2] != 'S')
				asleep = 0;
		}
		fclose(f);
	}
	closedir(d);
	return others > 0 && asleep;
}

/* the server side shut down by the sweeper (no longer CLOSE-WAIT) within limit seconds */
static double
wait_cut(int srv, double limit)
{
	double t0 = now_s();

	while (now_s() - t0 < limit) {
		if (tcp_state(srv) != TCP_CLOSE_WAIT)
			return now_s() - t0;
		usleep(20 * 1000);
	}
	return -1;
}

static struct config cfg;
static struct http_server h;

static void
start(void)
{
	char err[128];
	double t0;

	memset(&cfg, 0, sizeof(cfg));
	cfg.http_header_timeout = 60;   /* the sweeper's longest sleep on empty queues */
	cfg.http_body_timeout = 120;
	memset(&h, 0, sizeof(h));
	h.cfg = &cfg;
	cr_assert_eq(http_deadlines_start(&h, err, sizeof(err)), 0, "%s", err);
	t0 = now_s();
	while (!others_asleep()) {
		cr_assert(now_s() - t0 < 10, "the sweeper thread never went to sleep");
		usleep(10 * 1000);
	}
}

Test(http_deadlines, hung_up_body_cut_though_the_sweeper_slept)
{
	struct fake_conn f = { 0 };
	int cli, srv;
	double took;

	tcp_pair(&cli, &srv);
	start();   /* asleep for up to 60 s: nothing was due */
	f.fd = srv;
	http_notify_connection(&h, (struct MHD_Connection *)(void *)&f, &f.socket_context,
	    MHD_CONNECTION_NOTIFY_STARTED);
	cr_assert(f.socket_context != NULL);
	http_deadlines_mark(&h, (struct MHD_Connection *)(void *)&f, -1);         /* headers in */
	http_deadlines_mark(&h, (struct MHD_Connection *)(void *)&f, HTTP_Q_BODY); /* body due */
	cr_assert_eq(write(cli, "{\"te", 4), 4);
	close(cli);   /* the client goes away in the middle of its body */
	took = wait_cut(srv, 8);
	cr_assert(took >= 0, "a hung-up body was not cut within 8 s (the sweeper sleeps 60 s on empty "
	    "queues; its hang-up checks come every %d ms)", 1000);
	cr_log_info("hung-up body cut %.2f s after the client's FIN", took);
	http_notify_connection(&h, (struct MHD_Connection *)(void *)&f, &f.socket_context,
	    MHD_CONNECTION_NOTIFY_CLOSED);
	http_deadlines_stop(&h);
	close(srv);
}

Test(http_deadlines, only_the_hung_up_body_is_cut)
{
	struct fake_conn f[3] = { { 0 } };   /* hung up mid-body, live body, whole body in then half-closed */
	struct MHD_Connection *mc[3];
	int cli[3], srv[3];
	char c;

	for (int i = 0; i < 3; i++) {
		tcp_pair(&cli[i], &srv[i]);
		f[i].fd = srv[i];
		mc[i] = (struct MHD_Connection *)(void *)&f[i];
	}
	start();
	for (int i = 0; i < 3; i++) {
		http_notify_connection(&h, mc[i], &f[i].socket_context, MHD_CONNECTION_NOTIFY_STARTED);
		http_deadlines_mark(&h, mc[i], -1);
		http_deadlines_mark(&h, mc[i], HTTP_Q_BODY);
	}
	http_deadlines_mark(&h, mc[2], -1);   /* its whole body is in: its answer is owed */
	close(cli[0]);
	shutdown(cli[2], SHUT_WR);
	cr_assert(wait_cut(srv[0], 8) >= 0, "the hung-up body was not cut within 8 s");
	/* the checks that cut the first saw the others: neither may have been cut */
	cr_assert_eq(tcp_state(srv[2]), TCP_CLOSE_WAIT, "a complete request's half-closed connection was cut");
	cr_assert_eq(tcp_state(srv[1]), TCP_ESTABLISHED, "a live body's connection was cut");
	cr_assert_eq(recv(cli[1], &c, 1, MSG_DONTWAIT), -1, "the live client got an EOF or data");
	for (int i = 0; i < 3; i++)
		http_notify_connection(&h, mc[i], &f[i].socket_context, MHD_CONNECTION_NOTIFY_CLOSED);
	http_deadlines_stop(&h);
	for (int i = 0; i < 3; i++) {
		if (i != 0)
			close(cli[i]);
		close(srv[i]);
	}
}
