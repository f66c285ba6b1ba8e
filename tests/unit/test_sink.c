/*
 * test_sink.c - the capture SMTP sink over real loopback sockets: pipelined
 * sessions, dot-unstuffing, exact file bytes, sequence errors, line caps,
 * swaks as an independent client, and clean shutdown with clients attached;
 * the answers by local part (bounce+, defer+, full+, reject+, slow+) as
 * pure functions, table-driven, and over a socket.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../server/sink.h"

#define T_DEADLINE_MS 5000

static char t_dir[256];
static struct sink *t_sink;
static uint16_t t_port;

static int64_t t_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void t_setup(void)
{
	char err[256] = "";

	snprintf(t_dir, sizeof(t_dir), "/tmp/txmail-sink-XXXXXX");
	cr_assert_not_null(mkdtemp(t_dir), "mkdtemp: %s", strerror(errno));
	/* a nested dir that does not exist yet: sink_start must create it */
	strncat(t_dir, "/mail", sizeof(t_dir) - strlen(t_dir) - 1);
	t_sink = sink_start("127.0.0.1", 0, t_dir, &t_port, err, sizeof(err));
	cr_assert_not_null(t_sink, "sink_start: got NULL (%s), want a sink", err);
	cr_assert_neq(t_port, 0, "bound port: got 0, want an ephemeral port");
}

static void t_teardown(void)
{
	char cmd[600];
	char *slash;

	sink_stop(t_sink);
	t_sink = NULL;
	slash = strrchr(t_dir, '/');
	if (slash)
		*slash = '\0';
	if (strncmp(t_dir, "/tmp/txmail-sink-", 17) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cleanup of %s failed\n", t_dir);
	}
}

TestSuite(sink, .init = t_setup, .fini = t_teardown, .timeout = 30);

static int t_connect(void)
{
	struct sockaddr_in sa = { 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(t_port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s", strerror(errno));
	return fd;
}

static void t_send(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		cr_assert_gt(w, 0, "send: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
}

static size_t t_read_until_ms(int fd, char *buf, size_t cap, const char *want, int64_t ms);

/* t_read_until - read into buf until `want` appears (or EOF when want is NULL); returns length. */
static size_t t_read_until(int fd, char *buf, size_t cap, const char *want)
{
	return t_read_until_ms(fd, buf, cap, want, T_DEADLINE_MS);
}

static size_t t_read_until_ms(int fd, char *buf, size_t cap, const char *want, int64_t ms)
{
	size_t len = 0;
	int64_t deadline = t_mono_ms() + ms;

	buf[0] = '\0';
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - t_mono_ms();
		ssize_t r;

		if (want && strstr(buf, want))
			return len;
		cr_assert_gt(left, 0, "timeout waiting for %s; got so far: %s",
		    want ? want : "EOF", buf);
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		r = recv(fd, buf + len, cap - 1 - len, 0);
		if (r <= 0) {
			cr_assert(want == NULL, "connection closed before %s; got: %s", want, buf);
			return len;
		}
		len += (size_t)r;
		buf[len] = '\0';
		cr_assert_lt(len, cap - 1, "reply buffer full");
	}
}

/* t_codes - the codes of final reply lines ("NNN " ...) joined by spaces. */
static void t_codes(const char *replies, char *out, size_t cap)
{
	const char *p = replies;

	out[0] = '\0';
	while (*p) {
		const char *eol = strstr(p, "\r\n");

		if (!eol)
			break;
		if (eol - p >= 4 && p[3] == ' ') {
			if (out[0])
				strncat(out, " ", cap - strlen(out) - 1);
			strncat(out, p, 3 < cap - strlen(out) - 1 ? 3 : cap - strlen(out) - 1);
		}
		p = eol + 2;
	}
}

/* t_eml_files - number of .eml files in t_dir; the last name goes to name. */
static int t_eml_files(char *name, size_t cap)
{
	DIR *d = opendir(t_dir);
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d, "opendir %s: %s", t_dir, strerror(errno));
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);

		if (l > 4 && strcmp(e->d_name + l - 4, ".eml") == 0) {
			n++;
			if (name)
				snprintf(name, cap, "%s", e->d_name);
		}
	}
	closedir(d);
	return n;
}

static char *t_slurp(const char *name, size_t *len)
{
	char path[600];
	struct stat st;
	char *buf;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", t_dir, name);
	f = fopen(path, "rb");
	cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
	cr_assert_eq(fstat(fileno(f), &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(buf);
	*len = fread(buf, 1, (size_t)st.st_size, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

Test(sink, pipelined_session_stores_unstuffed_bytes)
{
	static const char wire[] =
	    "EHLO client.example\r\n"
	    "MAIL FROM:<a@example.com> SIZE=300\r\n"
	    "RCPT TO:<b@example.com>\r\n"
	    "RCPT TO:<c@example.org>\r\n"
	    "DATA\r\n"
	    "From: a@example.com\r\n"
	    "To: b@example.com\r\n"
	    "Subject: =?UTF-8?B?5L2g5aW9?=\r\n"
	    "\r\n"
	    "..leading dot\r\n"
	    "...\r\n"
	    "..\r\n"
	    "middle . dot.\r\n"
	    "你好，世界 — 验证码 123456\r\n"
	    ".\r\n"
	    "QUIT\r\n";
	static const char want_msg[] =
	    "From: a@example.com\r\n"
	    "To: b@example.com\r\n"
	    "Subject: =?UTF-8?B?5L2g5aW9?=\r\n"
	    "\r\n"
	    ".leading dot\r\n"
	    "..\r\n"
	    ".\r\n"
	    "middle . dot.\r\n"
	    "你好，世界 — 验证码 123456\r\n";
	char buf[4096], codes[256], name[256], want_reply[300];
	size_t len;
	char *got;
	int fd = t_connect();

	t_read_until(fd, buf, sizeof(buf), "\r\n");
	cr_assert(strncmp(buf, "220 ", 4) == 0, "greeting: got %s, want 220", buf);
	cr_assert_not_null(strstr(buf, "txmail sink ESMTP"), "greeting: got %s", buf);
	t_send(fd, wire, sizeof(wire) - 1);
	t_read_until(fd, buf, sizeof(buf), NULL);
	close(fd);
	t_codes(buf, codes, sizeof(codes));
	cr_assert_str_eq(codes, "250 250 250 250 354 250 221", "codes: got %s, want %s",
	    codes, "250 250 250 250 354 250 221");
	cr_assert_not_null(strstr(buf, "250-PIPELINING\r\n"), "EHLO: got %s", buf);
	cr_assert_not_null(strstr(buf, "250-8BITMIME\r\n"), "EHLO: got %s", buf);
	cr_assert_not_null(strstr(buf, "250-SIZE "), "EHLO: got %s", buf);
	cr_assert_not_null(strstr(buf, "250 ENHANCEDSTATUSCODES\r\n"), "EHLO: got %s", buf);
	cr_assert_null(strstr(buf, "STARTTLS"), "EHLO must not offer STARTTLS: got %s", buf);

	cr_assert_eq(t_eml_files(name, sizeof(name)), 1, "eml files: got %d, want 1",
	    t_eml_files(NULL, 0));
	snprintf(want_reply, sizeof(want_reply), "250 2.0.0 Ok: queued as %s\r\n", name);
	cr_assert_not_null(strstr(buf, want_reply), "queued reply: got %s, want %s", buf, want_reply);
	got = t_slurp(name, &len);
	cr_assert_eq(len, sizeof(want_msg) - 1, "file size: got %zu, want %zu", len, sizeof(want_msg) - 1);
	cr_assert(memcmp(got, want_msg, len) == 0, "file bytes: got\n%s\nwant\n%s", got, want_msg);
	free(got);
}

Test(sink, two_messages_one_connection_and_rset)
{
	static const char wire[] =
	    "HELO x\r\n"
	    "MAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\none\r\n.\r\n"
	    "MAIL FROM:<a@b>\r\nRSET\r\nRCPT TO:<a@b>\r\n"
	    "MAIL FROM:<a@b>\r\nRCPT TO:<a@b>\r\nDATA\r\ntwo\r\n.\r\n"
	    "NOOP\r\nQUIT\r\n";
	char buf[4096], codes[256];
	int fd = t_connect();

	t_send(fd, wire, sizeof(wire) - 1);
	t_read_until(fd, buf, sizeof(buf), NULL);
	close(fd);
	t_codes(buf, codes, sizeof(codes));
	cr_assert_str_eq(codes, "220 250 250 250 354 250 250 250 503 250 250 354 250 250 221",
	    "codes: got %s", codes);
	cr_assert_eq(t_eml_files(NULL, 0), 2, "eml files: got %d, want 2", t_eml_files(NULL, 0));
}

struct t_seq_case {
	const char *name;
	const char *wire;
	const char *codes;
};

Test(sink, sequence_and_syntax_errors)
{
	static const struct t_seq_case cases[] = {
		{ "mail before helo", "MAIL FROM:<a@b>\r\nQUIT\r\n", "220 503 221" },
		{ "unknown command", "FOO bar\r\nQUIT\r\n", "220 500 221" },
		{ "empty line", "\r\nQUIT\r\n", "220 500 221" },
		{ "rcpt without mail", "EHLO x\r\nRCPT TO:<a@b>\r\nQUIT\r\n", "220 250 503 221" },
		{ "data without rcpt", "EHLO x\r\nMAIL FROM:<a@b>\r\nDATA\r\nQUIT\r\n", "220 250 250 503 221" },
		{ "data without mail", "EHLO x\r\nDATA\r\nQUIT\r\n", "220 250 503 221" },
		{ "nested mail", "EHLO x\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nQUIT\r\n", "220 250 250 503 221" },
		{ "ehlo without name", "EHLO\r\nQUIT\r\n", "220 501 221" },
		{ "mail syntax", "EHLO x\r\nMAIL <a@b>\r\nQUIT\r\n", "220 250 501 221" },
		{ "size too big", "EHLO x\r\nMAIL FROM:<a@b> SIZE=999999999999\r\nQUIT\r\n", "220 250 552 221" },
		{ "lower case verbs, bare LF", "ehlo x\nmail from:<a@b>\nrcpt to:<c@d>\nrset\nquit\n", "220 250 250 250 250 221" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[4096], codes[256];
		int fd = t_connect();

		t_send(fd, cases[i].wire, strlen(cases[i].wire));
		t_read_until(fd, buf, sizeof(buf), NULL);
		close(fd);
		t_codes(buf, codes, sizeof(codes));
		cr_expect_str_eq(codes, cases[i].codes, "%s: got %s, want %s", cases[i].name,
		    codes, cases[i].codes);
	}
	cr_assert_eq(t_eml_files(NULL, 0), 0, "eml files: got %d, want 0", t_eml_files(NULL, 0));
}

Test(sink, oversize_command_line_is_refused_and_closed)
{
	char line[5000 + 3], buf[4096];
	int fd = t_connect();

	memset(line, 'A', 5000);
	memcpy(line + 5000, "\r\n", 3);
	t_read_until(fd, buf, sizeof(buf), "\r\n");
	t_send(fd, line, 5002);
	t_read_until(fd, buf, sizeof(buf), NULL);   /* must close */
	close(fd);
	cr_assert(strncmp(buf, "500 ", 4) == 0, "got %s, want a 500 then close", buf);
}

Test(sink, long_data_lines_are_kept_intact)
{
	/* data lines longer than the command line cap, one starting with a stuffed dot */
	size_t n = 20000, i;
	char *body = malloc(2 * n + 64), *want = malloc(2 * n + 64), buf[4096], name[256];
	size_t blen = 0, wlen = 0, glen;
	char *got;
	int fd = t_connect();

	cr_assert(body && want);
	body[blen++] = '.';
	body[blen++] = '.';
	want[wlen++] = '.';
	for (i = 0; i < n; i++) {
		body[blen++] = (char)('a' + i % 26);
		want[wlen++] = (char)('a' + i % 26);
	}
	memcpy(body + blen, "\r\n", 2);
	memcpy(want + wlen, "\r\n", 2);
	blen += 2;
	wlen += 2;
	for (i = 0; i < n; i++) {
		body[blen++] = (char)('0' + i % 10);
		want[wlen++] = (char)('0' + i % 10);
	}
	memcpy(body + blen, "\r\n.\r\n", 5);
	memcpy(want + wlen, "\r\n", 2);
	blen += 5;
	wlen += 2;

	t_read_until(fd, buf, sizeof(buf), "\r\n");
	t_send(fd, "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", 46);
	t_read_until(fd, buf, sizeof(buf), "354 ");
	t_send(fd, body, blen);
	t_read_until(fd, buf, sizeof(buf), "queued as");
	t_send(fd, "QUIT\r\n", 6);
	t_read_until(fd, buf, sizeof(buf), NULL);
	close(fd);
	cr_assert_eq(t_eml_files(name, sizeof(name)), 1);
	got = t_slurp(name, &glen);
	cr_assert_eq(glen, wlen, "file size: got %zu, want %zu", glen, wlen);
	cr_assert(memcmp(got, want, wlen) == 0, "file bytes differ");
	free(got);
	free(body);
	free(want);
}

Test(sink, swaks_delivers_a_message)
{
	char cmd[1024], name[256];
	size_t len;
	char *got;
	int rc;

	if (system("command -v swaks >/dev/null 2>&1") != 0) {
		cr_skip_test("swaks not installed");
	}
	snprintf(cmd, sizeof(cmd),
	    "swaks --server 127.0.0.1 --port %u --from a@example.com --to b@example.com "
	    "--h-Subject 'swaks test' --body 'hello from swaks' --pipeline "
	    "--silent 2 </dev/null >/dev/null 2>&1", (unsigned)t_port);
	rc = system(cmd);
	cr_assert_eq(rc, 0, "swaks exit status: got %d, want 0", rc);
	cr_assert_eq(t_eml_files(name, sizeof(name)), 1, "eml files: got %d, want 1",
	    t_eml_files(NULL, 0));
	got = t_slurp(name, &len);
	cr_assert_not_null(strstr(got, "Subject: swaks test\r\n"), "file: got %s", got);
	cr_assert_not_null(strstr(got, "hello from swaks"), "file: got %s", got);
	free(got);
}

Test(sink, no_tmp_files_left_and_stop_with_open_clients)
{
	char buf[4096];
	int fd1 = t_connect(), fd2 = t_connect();
	DIR *d;
	struct dirent *e;
	char tmp[300];
	int left = 0;

	t_read_until(fd1, buf, sizeof(buf), "\r\n");
	/* fd2 sits in the middle of DATA when the sink stops */
	t_send(fd2, "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial", 53);
	t_read_until(fd2, buf, sizeof(buf), "354 ");
	sink_stop(t_sink);
	t_sink = NULL;
	/* the sink closed both connections */
	t_read_until(fd1, buf, sizeof(buf), NULL);
	t_read_until(fd2, buf, sizeof(buf), NULL);
	close(fd1);
	close(fd2);
	snprintf(tmp, sizeof(tmp), "%s/tmp", t_dir);
	d = opendir(tmp);
	cr_assert_not_null(d, "tmp dir %s: %s", tmp, strerror(errno));
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			left++;
	closedir(d);
	cr_assert_eq(left, 0, "files in tmp: got %d, want 0", left);
	cr_assert_eq(t_eml_files(NULL, 0), 0, "eml files: got %d, want 0", t_eml_files(NULL, 0));
}

Test(sink, bind_failure_reports_error)
{
	char err[256] = "";
	uint16_t port = 0;
	struct sink *s2 = sink_start("127.0.0.1", t_port, t_dir, &port, err, sizeof(err));

	cr_assert_null(s2, "second sink on the same port: got a sink, want NULL");
	cr_assert_neq(err[0], '\0', "err: got empty, want a message");
}

Test(sink, oversize_message_gets_552_and_session_continues)
{
	static char block[64 * 1024];
	size_t sent = 0, i;
	char buf[4096], codes[256];
	int fd = t_connect();

	for (i = 0; i < sizeof(block); i++)
		block[i] = (i % 100 == 98) ? '\r' : (i % 100 == 99) ? '\n' : 'x';
	t_read_until(fd, buf, sizeof(buf), "\r\n");
	t_send(fd, "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", 46);
	t_read_until(fd, buf, sizeof(buf), "354 ");
	while (sent <= (size_t)50 * 1024 * 1024) {
		t_send(fd, block, sizeof(block));
		sent += sizeof(block);
	}
	t_send(fd, "\r\n.\r\nNOOP\r\nQUIT\r\n", 17);   /* the last block ends mid-line */
	t_read_until(fd, buf, sizeof(buf), NULL);
	close(fd);
	t_codes(buf, codes, sizeof(codes));
	cr_assert_str_eq(codes, "552 250 221", "codes: got %s, want 552 250 221", codes);
	cr_assert_eq(t_eml_files(NULL, 0), 0, "eml files: got %d, want 0", t_eml_files(NULL, 0));
}

Test(sink, half_closed_client_still_gets_its_replies)
{
	char buf[4096], codes[256];
	int fd = t_connect();

	t_send(fd, "EHLO x\r\nNOOP\r\nMAIL FROM:<a@b>\r\n", 31);
	cr_assert_eq(shutdown(fd, SHUT_WR), 0);
	t_read_until(fd, buf, sizeof(buf), NULL);
	close(fd);
	t_codes(buf, codes, sizeof(codes));
	cr_assert_str_eq(codes, "220 250 250 250", "codes: got %s, want 220 250 250 250", codes);
}

/* ---- answers by local part ------------------------------------------------------ */

struct t_behave_case {
	const char *addr;
	enum sink_behaviour want;
};

Test(sink_rules, behaviour_by_local_part)
{
	static const struct t_behave_case cases[] = {
		{ "you@example.com", SINK_BEHAVE_ACCEPT },
		{ "bounce+x@example.com", SINK_BEHAVE_BOUNCE },
		{ "bounce@example.com", SINK_BEHAVE_BOUNCE },
		{ "BOUNCE+Tag@Example.COM", SINK_BEHAVE_BOUNCE },
		{ "defer+anything@example.org", SINK_BEHAVE_DEFER },
		{ "defer+a+b@x", SINK_BEHAVE_DEFER },
		{ "full+x@example.com", SINK_BEHAVE_FULL },
		{ "reject+x@example.com", SINK_BEHAVE_REJECT },
		{ "slow+x@example.com", SINK_BEHAVE_SLOW },
		{ "slow+@example.com", SINK_BEHAVE_SLOW },
		{ "deferred@example.com", SINK_BEHAVE_ACCEPT },   /* the whole word only */
		{ "xdefer+y@example.com", SINK_BEHAVE_ACCEPT },
		{ "x+defer@example.com", SINK_BEHAVE_ACCEPT },    /* the keyword comes first */
		{ "bou@example.com", SINK_BEHAVE_ACCEPT },
		{ "example.com@bounce", SINK_BEHAVE_ACCEPT },     /* the domain does not count */
		{ "full", SINK_BEHAVE_FULL },                     /* no domain: all local part */
		{ "", SINK_BEHAVE_ACCEPT },
		{ "@example.com", SINK_BEHAVE_ACCEPT },
		{ "+defer@example.com", SINK_BEHAVE_ACCEPT },
		{ "\"bounce\"@example.com", SINK_BEHAVE_ACCEPT }, /* quoted: taken literally */
		{ "a@b@bounce+x@c", SINK_BEHAVE_ACCEPT },         /* local part is up to the last '@' */
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum sink_behaviour got = sink_behaviour_for(cases[i].addr);

		cr_expect_eq(got, cases[i].want, "%s: got %s, want %s", cases[i].addr,
		    sink_behaviour_name(got), sink_behaviour_name(cases[i].want));
	}
}

Test(sink_rules, rcpt_replies)
{
	static const struct { enum sink_behaviour b; const char *want; } cases[] = {
		{ SINK_BEHAVE_ACCEPT, NULL },
		{ SINK_BEHAVE_BOUNCE, "550 5.1.1 " },
		{ SINK_BEHAVE_DEFER, NULL },    /* decided at end of DATA */
		{ SINK_BEHAVE_FULL, NULL },
		{ SINK_BEHAVE_REJECT, NULL },
		{ SINK_BEHAVE_SLOW, NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = sink_rcpt_reply(cases[i].b);

		if (!cases[i].want)
			cr_expect_null(got, "%s: got %s, want NULL", sink_behaviour_name(cases[i].b), got);
		else
			cr_expect(got && strncmp(got, cases[i].want, strlen(cases[i].want)) == 0,
			    "%s: got %s, want %s...", sink_behaviour_name(cases[i].b),
			    got ? got : "NULL", cases[i].want);
	}
}

#define T_A SINK_BEHAVE_ACCEPT
#define T_D SINK_BEHAVE_DEFER
#define T_F SINK_BEHAVE_FULL
#define T_R SINK_BEHAVE_REJECT
#define T_S SINK_BEHAVE_SLOW

Test(sink_rules, data_replies)
{
	static const struct {
		const char *name;
		size_t n;
		enum sink_behaviour b[3];
		unsigned attempt[3];
		const char *want;     /* reply prefix, NULL: store and 250 */
		int delay_ms;
	} cases[] = {
		{ "accept", 1, { T_A }, { 1 }, NULL, 0 },
		{ "no recipients", 0, { T_A }, { 1 }, NULL, 0 },
		{ "defer, attempt 1", 1, { T_D }, { 1 }, "451 4.3.0 ", 0 },
		{ "defer, attempt 2", 1, { T_D }, { 2 }, "451 4.3.0 ", 0 },
		{ "defer, attempt 3", 1, { T_D }, { 3 }, NULL, 0 },
		{ "defer, attempt 9", 1, { T_D }, { 9 }, NULL, 0 },
		{ "full", 1, { T_F }, { 1 }, "552 5.2.2 ", 0 },
		{ "reject", 1, { T_R }, { 1 }, "554 5.7.1 ", 0 },
		{ "slow", 1, { T_S }, { 1 }, NULL, SINK_SLOW_MS },
		{ "slow and full", 2, { T_S, T_F }, { 1, 1 }, "552 5.2.2 ", SINK_SLOW_MS },
		{ "full before reject", 2, { T_R, T_F }, { 1, 1 }, "552 5.2.2 ", 0 },
		{ "reject before defer", 2, { T_D, T_R }, { 1, 1 }, "554 5.7.1 ", 0 },
		{ "defer covers the transaction", 2, { T_A, T_D }, { 1, 1 }, "451 4.3.0 ", 0 },
		{ "one defer still due", 3, { T_D, T_A, T_D }, { 3, 1, 2 }, "451 4.3.0 ", 0 },
		{ "all defers done", 3, { T_D, T_S, T_D }, { 3, 1, 4 }, NULL, SINK_SLOW_MS },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int delay = -1;
		const char *got = sink_data_reply(cases[i].b, cases[i].attempt, cases[i].n, &delay);

		if (!cases[i].want)
			cr_expect_null(got, "%s: got %s, want NULL (store, 250)", cases[i].name, got);
		else
			cr_expect(got && strncmp(got, cases[i].want, strlen(cases[i].want)) == 0,
			    "%s: got %s, want %s...", cases[i].name, got ? got : "NULL", cases[i].want);
		cr_expect_eq(delay, cases[i].delay_ms, "%s: delay got %d, want %d", cases[i].name,
		    delay, cases[i].delay_ms);
	}
}

Test(sink_rules, message_id_from_header_section)
{
	static const struct { const char *name, *msg, *want; } cases[] = {
		{ "plain", "From: a\r\nMessage-ID: <msg_1@h>\r\n\r\nbody\r\n", "<msg_1@h>" },
		{ "case and blanks", "message-id:\t  <x@y>  \r\n\r\n", "<x@y>" },
		{ "folded", "Message-ID:\r\n <f@g>\r\nTo: b\r\n\r\n", "<f@g>" },
		{ "bare LF", "Subject: s\nMessage-Id: <lf@h>\n\nbody\n", "<lf@h>" },
		{ "last header, no body", "Message-ID: <end@h>", "<end@h>" },
		{ "none", "From: a\r\nTo: b\r\n\r\nMessage-ID: <in@body>\r\n", NULL },
		{ "empty value", "Message-ID:   \r\n\r\n", NULL },
		{ "not that field", "X-Message-ID: <no@h>\r\nMessage-IDs: <no@h>\r\n\r\n", NULL },
		{ "empty message", "", NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64] = "unset";
		int rc = sink_message_id(cases[i].msg, strlen(cases[i].msg), out, sizeof(out));

		if (!cases[i].want)
			cr_expect_eq(rc, -1, "%s: got %d (%s), want -1", cases[i].name, rc, out);
		else
			cr_expect(rc == 0 && strcmp(out, cases[i].want) == 0, "%s: got %d %s, want 0 %s",
			    cases[i].name, rc, out, cases[i].want);
	}
	{
		char small[8];
		const char *m = "Message-ID: <much-too-long@h>\r\n\r\n";

		cr_expect_eq(sink_message_id(m, strlen(m), small, sizeof(small)), -1,
		    "too long for the buffer: got 0, want -1");
	}
}

Test(sink_rules, tries_count_per_message_and_recipient)
{
	struct sink_tries *t = sink_tries_new(8, 1000);
	unsigned got;

	cr_assert_not_null(t);
	cr_expect_eq((got = sink_tries_hit(t, "<m1@h>", "defer+a@x", 0)), 1, "m1/a: got %u, want 1", got);
	cr_expect_eq((got = sink_tries_hit(t, "<m1@h>", "defer+a@x", 10)), 2, "m1/a: got %u, want 2", got);
	cr_expect_eq((got = sink_tries_hit(t, "<m1@h>", "DEFER+A@X", 20)), 3,
	    "m1/a, other case: got %u, want 3 (the address counts without case)", got);
	cr_expect_eq((got = sink_tries_hit(t, "<m1@h>", "defer+b@x", 30)), 1, "m1/b: got %u, want 1", got);
	cr_expect_eq((got = sink_tries_hit(t, "<m2@h>", "defer+a@x", 40)), 1, "m2/a: got %u, want 1", got);
	cr_expect_eq((got = sink_tries_hit(t, "<M1@h>", "defer+a@x", 50)), 1,
	    "the Message-ID counts with case: got %u, want 1", got);
	/* no separator confusion: ("ab", "c") is not ("a", "bc") */
	sink_tries_hit(t, "ab", "c", 60);
	cr_expect_eq((got = sink_tries_hit(t, "a", "bc", 70)), 1, "a/bc: got %u, want 1", got);
	cr_expect_eq(sink_tries_count(t), 6, "entries: got %zu, want 6", sink_tries_count(t));
	sink_tries_free(t);
}

Test(sink_rules, tries_expire_and_stay_within_the_cap)
{
	struct sink_tries *t = sink_tries_new(4, 1000);
	char id[32];
	unsigned got;
	int i;

	cr_assert_not_null(t);
	cr_assert_null(sink_tries_new(0, 1000), "cap 0: got a table, want NULL");
	cr_assert_null(sink_tries_new(4, 0), "ttl 0: got a table, want NULL");
	sink_tries_hit(t, "old", "r", 0);
	sink_tries_hit(t, "old", "r", 500);
	/* seen 999 ms ago: still counted; 1000 ms: forgotten, counting starts again */
	cr_expect_eq((got = sink_tries_hit(t, "old", "r", 1499)), 3, "before ttl: got %u, want 3", got);
	cr_expect_eq((got = sink_tries_hit(t, "old", "r", 2499)), 1, "after ttl: got %u, want 1", got);

	/* full table: the least recently seen entry makes room */
	sink_tries_hit(t, "a", "r", 3000);
	sink_tries_hit(t, "b", "r", 3001);
	sink_tries_hit(t, "c", "r", 3002);
	sink_tries_hit(t, "a", "r", 3003);     /* now "old" (2499) is the least recent, then b */
	cr_expect_eq(sink_tries_count(t), 4, "entries: got %zu, want 4", sink_tries_count(t));
	sink_tries_hit(t, "d", "r", 3004);     /* evicts "old" */
	cr_expect_eq(sink_tries_count(t), 4, "entries after eviction: got %zu, want 4", sink_tries_count(t));
	cr_expect_eq((got = sink_tries_hit(t, "a", "r", 3005)), 3, "a kept: got %u, want 3", got);
	cr_expect_eq((got = sink_tries_hit(t, "old", "r", 3006)), 1, "old evicted: got %u, want 1", got);
	cr_expect_eq((got = sink_tries_hit(t, "c", "r", 3007)), 2, "c kept: got %u, want 2", got);
	cr_expect_eq((got = sink_tries_hit(t, "b", "r", 3008)), 1, "b evicted by old: got %u, want 1", got);

	/* many distinct keys never grow it past the cap; expired ones go first */
	for (i = 0; i < 1000; i++) {
		snprintf(id, sizeof(id), "<%d@h>", i);
		sink_tries_hit(t, id, "r", 10000 + i * 10);
		cr_assert_leq(sink_tries_count(t), 4, "entries: got %zu, want <= 4", sink_tries_count(t));
	}
	sink_tries_hit(t, "late", "r", 10000000);
	cr_expect_eq(sink_tries_count(t), 1, "after everything expired: got %zu, want 1", sink_tries_count(t));
	sink_tries_free(t);
}

/* t_txn - one session: EHLO, MAIL, the RCPTs, DATA with msg when any RCPT was taken, QUIT; the codes. */
static void t_txn(const char *const *rcpts, size_t n, const char *msg, char *codes, size_t cap)
{
	char buf[8192], wire[4096];
	size_t i, len = 0;
	int fd = t_connect();

	len += (size_t)snprintf(wire + len, sizeof(wire) - len, "EHLO x\r\nMAIL FROM:<dev@example.com>\r\n");
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(wire + len, sizeof(wire) - len, "RCPT TO:<%s>\r\n", rcpts[i]);
	len += (size_t)snprintf(wire + len, sizeof(wire) - len, "DATA\r\n%s.\r\nQUIT\r\n", msg);
	cr_assert_lt(len, sizeof(wire));
	t_send(fd, wire, len);
	t_read_until_ms(fd, buf, sizeof(buf), NULL, T_DEADLINE_MS + SINK_SLOW_MS);
	close(fd);
	t_codes(buf, codes, cap);
}

Test(sink, answers_by_local_part_over_smtp)
{
	static const char m1[] = "Message-ID: <m1@h>\r\nSubject: one\r\n\r\nbody\r\n";
	static const char m2[] = "Message-ID: <m2@h>\r\nSubject: two\r\n\r\nbody\r\n";
	static const char *const bounce[] = { "bounce+x@example.com" };
	static const char *const mixed[] = { "bounce+x@example.com", "ok@example.com" };
	static const char *const full[] = { "full+x@example.com" };
	static const char *const reject[] = { "reject+x@example.com" };
	static const char *const defer[] = { "defer+x@example.com" };
	static const struct {
		const char *name;
		const char *const *rcpts;
		size_t n;
		const char *msg, *codes;
		int files;     /* .eml files after this case */
	} cases[] = {
		/* all refused at RCPT: DATA has no recipient (503, then 500 for each
		 * line of the message and its dot), nothing stored */
		{ "bounce", bounce, 1, m1, "220 250 250 550 503 500 500 500 500 500 221", 0 },
		{ "bounce and ok", mixed, 2, m1, "220 250 250 550 250 354 250 221", 1 },
		{ "full", full, 1, m1, "220 250 250 250 354 552 221", 1 },
		{ "reject", reject, 1, m1, "220 250 250 250 354 554 221", 1 },
		{ "defer m1, 1", defer, 1, m1, "220 250 250 250 354 451 221", 1 },
		{ "defer m2, 1", defer, 1, m2, "220 250 250 250 354 451 221", 1 },
		{ "defer m1, 2", defer, 1, m1, "220 250 250 250 354 451 221", 1 },
		{ "defer m1, 3", defer, 1, m1, "220 250 250 250 354 250 221", 2 },
		{ "defer m2, 2", defer, 1, m2, "220 250 250 250 354 451 221", 2 },
		{ "defer m2, 3", defer, 1, m2, "220 250 250 250 354 250 221", 3 },
		{ "defer m1, 4", defer, 1, m1, "220 250 250 250 354 250 221", 4 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char codes[256];
		int files;

		t_txn(cases[i].rcpts, cases[i].n, cases[i].msg, codes, sizeof(codes));
		cr_expect_str_eq(codes, cases[i].codes, "%s: got %s, want %s", cases[i].name, codes,
		    cases[i].codes);
		files = t_eml_files(NULL, 0);
		cr_expect_eq(files, cases[i].files, "%s: eml files got %d, want %d", cases[i].name,
		    files, cases[i].files);
	}
}

Test(sink, slow_reply_does_not_hold_up_other_sessions)
{
	static const char wire[] =
	    "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<slow+x@example.com>\r\nDATA\r\n"
	    "Subject: slow\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n";
	static const char *const fast[] = { "fast@example.com" };
	char buf[4096], codes[256];
	int64_t t0, waited;
	int fd = t_connect();

	t0 = t_mono_ms();
	t_send(fd, wire, sizeof(wire) - 1);
	t_read_until(fd, buf, sizeof(buf), "354 ");
	/* while the slow session waits for its answer, another one goes through */
	t_txn(fast, 1, "Subject: fast\r\n\r\nx\r\n", codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 250 250 354 250 221", "other session: got %s", codes);
	cr_expect_lt(t_mono_ms() - t0, SINK_SLOW_MS - 1000, "other session took %lld ms, want well under %d",
	    (long long)(t_mono_ms() - t0), SINK_SLOW_MS);
	/* a slow server that has taken the message: stored before the answer */
	cr_expect_eq(t_eml_files(NULL, 0), 2, "eml files during the wait: got %d, want 2",
	    t_eml_files(NULL, 0));
	t_read_until_ms(fd, buf, sizeof(buf), NULL, T_DEADLINE_MS + SINK_SLOW_MS);
	waited = t_mono_ms() - t0;
	close(fd);
	t_codes(buf, codes, sizeof(codes));
	/* after the 354: the held 250, then the pipelined NOOP and QUIT, in order */
	cr_expect_str_eq(codes, "250 250 221", "slow session after 354: got %s, want 250 250 221", codes);
	cr_expect_geq(waited, SINK_SLOW_MS - 50, "slow answer after %lld ms, want >= %d",
	    (long long)waited, SINK_SLOW_MS);
	cr_expect_eq(t_eml_files(NULL, 0), 2, "eml files: got %d, want 2", t_eml_files(NULL, 0));
}
