/*
 * whrecv.c - the webhook receiver of `make bench`: fast enough that it is
 * never the stage being measured.
 *
 * A libmicrohttpd server (epoll, a pool of --threads threads) on loopback
 * that takes every POST as one webhook delivery: it checks the Standard
 * Webhooks signature when --secret is given (HMAC-SHA256 over
 * "id.timestamp.body", one matching v1 entry is enough), answers 204, and
 * counts, under one mutex:
 *   received    requests with a webhook-id
 *   unique      distinct webhook-ids (an open-addressing set of copies)
 *   duplicates  requests whose webhook-id was seen before
 *   delivered   unique ids whose body's "type" is message.delivered
 *   bad         requests without the headers or with a wrong signature
 *               (answered 400, so txmail retries them)
 *   first_ns, last_ns  CLOCK_REALTIME of the first and last good request
 *   connections TCP connections accepted (keep-alive reuse keeps it small)
 * GET /stats answers them as one JSON object. With --log FILE each good
 * request also writes a line "<realtime ns> <webhook-id> <type>
 * <message_id>" (stdio-buffered, flushed at every /stats and at exit), which
 * is how the bench matches a webhook to the POST that caused it.
 *
 *   whrecv --port P [--secret whsec_...] [--threads N] [--log FILE]
 *          [--ready-file F]
 *
 * --ready-file F is created once the port listens. SIGTERM or SIGINT stops
 * it. It is a measuring tool, not part of txmail: it never talks to
 * anything but 127.0.0.1 and keeps everything in memory.
 */
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define MAX_BODY (1u << 20)

struct upload {
	char *buf;
	size_t len, cap;
	int too_big;
};

static struct {
	pthread_mutex_t mu;
	char **slot;            /* the set of webhook-ids: NULL = empty */
	size_t cap, used;
	uint64_t received, duplicates, delivered, bad, connections;
	int64_t first_ns, last_ns;
	FILE *log;
	unsigned char key[64];
	int key_len;            /* -1: no secret, signatures not checked */
} st = { .mu = PTHREAD_MUTEX_INITIALIZER, .key_len = -1 };

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int set_grow(void)
{
	size_t ncap = st.cap ? st.cap * 2 : 1u << 16;
	char **n = calloc(ncap, sizeof(*n));
	if (!n)
		return -1;
	for (size_t i = 0; i < st.cap; i++) {
		if (!st.slot[i])
			continue;
		size_t j = hash(st.slot[i]) & (ncap - 1);
		while (n[j])
			j = (j + 1) & (ncap - 1);
		n[j] = st.slot[i];
	}
	free(st.slot);
	st.slot = n;
	st.cap = ncap;
	return 0;
}

/* 1: id is new (a copy is kept), 0: seen before, -1: out of memory. Under st.mu. */
static int set_add(const char *id)
{
	if (st.used * 2 >= st.cap && set_grow() < 0)
		return -1;
	size_t j = hash(id) & (st.cap - 1);
	while (st.slot[j]) {
		if (strcmp(st.slot[j], id) == 0)
			return 0;
		j = (j + 1) & (st.cap - 1);
	}
	st.slot[j] = strdup(id);
	if (!st.slot[j])
		return -1;
	st.used++;
	return 1;
}

/* The JSON string value of the first "name" key in body (whitespace
 * around the colon allowed), copied into out without unescaping (the
 * fields read here never hold escapes). "" when absent. */
static void json_field(const char *body, size_t len, const char *name, char *out, size_t outsz)
{
	char pat[64];
	out[0] = '\0';
	int n = snprintf(pat, sizeof(pat), "\"%s\"", name);
	if (n < 0 || (size_t)n >= sizeof(pat))
		return;
	const char *end = body + len;
	const char *p = body;
	while ((p = memmem(p, (size_t)(end - p), pat, (size_t)n)) != NULL) {
		p += n;
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
			p++;
		if (p >= end || *p != ':')
			continue;       /* a value that happens to read "name" */
		p++;
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
			p++;
		if (p >= end || *p != '"')
			return;
		p++;
		size_t k = 0;
		while (p < end && *p != '"' && k + 1 < outsz)
			out[k++] = *p++;
		out[k] = '\0';
		return;
	}
}

static int signature_ok(const char *id, const char *ts, const char *sigs, const struct upload *u)
{
	if (st.key_len < 0)
		return 1;
	if (!ts || !sigs)
		return 0;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	size_t idl = strlen(id), tsl = strlen(ts);
	size_t total = idl + 1 + tsl + 1 + u->len;
	unsigned char *msg = malloc(total ? total : 1);
	if (!msg)
		return 0;
	memcpy(msg, id, idl);
	msg[idl] = '.';
	memcpy(msg + idl + 1, ts, tsl);
	msg[idl + 1 + tsl] = '.';
	if (u->len)
		memcpy(msg + idl + tsl + 2, u->buf, u->len);
	unsigned char *r = HMAC(EVP_sha256(), st.key, st.key_len, msg, total, mac, &mac_len);
	free(msg);
	if (!r)
		return 0;
	char want[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
	int wl = EVP_EncodeBlock((unsigned char *)want, mac, (int)mac_len);
	/* space-separated "v1,<base64>" entries */
	const char *p = sigs;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *e = strchr(p, ' ');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == 3 + (size_t)wl && memcmp(p, "v1,", 3) == 0 && memcmp(p + 3, want, (size_t)wl) == 0)
			return 1;
		p += l;
	}
	return 0;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int code, const char *body, const char *type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body,
	                                                         MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	if (type)
		MHD_add_response_header(r, "Content-Type", type);
	enum MHD_Result ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result stats(struct MHD_Connection *c)
{
	char buf[512];
	pthread_mutex_lock(&st.mu);
	if (st.log)
		fflush(st.log);
	snprintf(buf, sizeof(buf),
	         "{\"received\":%" PRIu64 ",\"unique\":%zu,\"duplicates\":%" PRIu64
	         ",\"delivered\":%" PRIu64 ",\"bad\":%" PRIu64 ",\"first_ns\":%" PRId64
	         ",\"last_ns\":%" PRId64 ",\"connections\":%" PRIu64 "}\n",
	         st.received, st.used, st.duplicates, st.delivered, st.bad, st.first_ns, st.last_ns,
	         st.connections);
	pthread_mutex_unlock(&st.mu);
	return reply(c, MHD_HTTP_OK, buf, "application/json");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *data, size_t *data_size, void **con_cls)
{
	(void)cls;
	(void)version;
	if (strcmp(method, "GET") == 0)
		return strcmp(url, "/stats") == 0 ? stats(c) : reply(c, MHD_HTTP_NOT_FOUND, "", NULL);
	if (strcmp(method, "POST") != 0)
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "", NULL);
	struct upload *u = *con_cls;
	if (!u) {
		u = calloc(1, sizeof(*u));
		if (!u)
			return MHD_NO;
		*con_cls = u;
		return MHD_YES;
	}
	if (*data_size) {
		if (u->len + *data_size > MAX_BODY) {
			u->too_big = 1;
		} else {
			if (u->len + *data_size > u->cap) {
				size_t ncap = u->cap ? u->cap : 4096;
				while (ncap < u->len + *data_size)
					ncap *= 2;
				char *n = realloc(u->buf, ncap);
				if (!n)
					return MHD_NO;
				u->buf = n;
				u->cap = ncap;
			}
			memcpy(u->buf + u->len, data, *data_size);
			u->len += *data_size;
		}
		*data_size = 0;
		return MHD_YES;
	}
	int64_t t = now_ns();
	const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id");
	const char *ts = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-timestamp");
	const char *sigs = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-signature");
	if (!id || !*id || u->too_big || !signature_ok(id, ts, sigs, u)) {
		pthread_mutex_lock(&st.mu);
		st.bad++;
		pthread_mutex_unlock(&st.mu);
		return reply(c, MHD_HTTP_BAD_REQUEST, "", NULL);
	}
	char type[64], mid[128];
	json_field(u->buf ? u->buf : "", u->len, "type", type, sizeof(type));
	json_field(u->buf ? u->buf : "", u->len, "message_id", mid, sizeof(mid));
	pthread_mutex_lock(&st.mu);
	int fresh = set_add(id);
	if (fresh < 0) {
		pthread_mutex_unlock(&st.mu);
		return MHD_NO;
	}
	st.received++;
	if (!fresh)
		st.duplicates++;
	else if (strcmp(type, "message.delivered") == 0)
		st.delivered++;
	if (!st.first_ns)
		st.first_ns = t;
	st.last_ns = t;
	if (st.log)
		fprintf(st.log, "%" PRId64 " %s %s %s\n", t, id, type[0] ? type : "-", mid[0] ? mid : "-");
	pthread_mutex_unlock(&st.mu);
	return reply(c, MHD_HTTP_NO_CONTENT, "", NULL);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	struct upload *u = *con_cls;
	if (u) {
		free(u->buf);
		free(u);
		*con_cls = NULL;
	}
}

static int set_secret(const char *s)
{
	if (strncmp(s, "whsec_", 6) != 0)
		return -1;
	s += 6;
	size_t l = strlen(s);
	unsigned char tmp[128];
	if (l == 0 || l % 4 || l / 4 * 3 > sizeof(tmp))
		return -1;
	int n = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)l);
	if (n < 0)
		return -1;
	if (l >= 1 && s[l - 1] == '=')
		n--;
	if (l >= 2 && s[l - 2] == '=')
		n--;
	if (n <= 0 || (size_t)n > sizeof(st.key))
		return -1;
	memcpy(st.key, tmp, (size_t)n);
	st.key_len = n;
	return 0;
}

/* every accepted TCP connection, so a bench or test can see whether a client reuses them */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
	(void)cls;
	(void)c;
	(void)socket_ctx;
	if (code != MHD_CONNECTION_NOTIFY_STARTED)
		return;
	pthread_mutex_lock(&st.mu);
	st.connections++;
	pthread_mutex_unlock(&st.mu);
}

static void usage(void)
{
	fprintf(stderr, "usage: whrecv --port P [--secret whsec_...] [--threads N] [--log FILE] [--ready-file F]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned port = 0, threads = 2;
	const char *log_path = NULL, *ready = NULL;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		if (strcmp(argv[i], "--port") == 0)
			port = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(argv[i], "--threads") == 0)
			threads = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(argv[i], "--secret") == 0) {
			if (set_secret(v) < 0) {
				fprintf(stderr, "whrecv: --secret must be whsec_<base64>\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--log") == 0)
			log_path = v;
		else if (strcmp(argv[i], "--ready-file") == 0)
			ready = v;
		else
			usage();
		i++;
	}
	if (port == 0 || port > 65535 || threads == 0 || threads > 64)
		usage();
	if (log_path) {
		st.log = fopen(log_path, "w");
		if (!st.log) {
			fprintf(stderr, "whrecv: %s: %s\n", log_path, strerror(errno));
			return 1;
		}
		setvbuf(st.log, NULL, _IOFBF, 1 << 20);
	}
	pthread_mutex_lock(&st.mu);
	int grown = set_grow();
	pthread_mutex_unlock(&st.mu);
	if (grown < 0)
		return 1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct MHD_Daemon *d = MHD_start_daemon(
	        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL, handle, NULL,
	        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE, threads,
	        MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
	        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
	        MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "whrecv: cannot listen on 127.0.0.1:%u\n", port);
		return 1;
	}
	struct sigaction sact = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sact, NULL);
	sigaction(SIGINT, &sact, NULL);
	if (ready) {
		FILE *f = fopen(ready, "w");
		if (f) {
			fprintf(f, "%u\n", port);
			fclose(f);
		}
	}
	while (!stop_flag)
		pause();
	MHD_stop_daemon(d);
	if (st.log)
		fclose(st.log);
	return 0;
}
