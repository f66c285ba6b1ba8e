/*
 * test_config.c - the pure parsers of config.c (relay, redis and listen
 * addresses), config_load, secrets from NAME_FILE (config_secret), the
 * masked configuration log (config_describe), and the table-driven
 * checks: every problem collected, ranges named, unknown variables with
 * suggestions, sources, config list and config check.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../server/config.h"
#include "../../server/config_internal.h"

struct relay_case {
	const char *url;
	int ok;
	const char *host;
	unsigned port;
	enum smtp_tls_mode tls;
	const char *user, *pass;
	int no_verify;
};

static const struct relay_case relay_cases[] = {
	{ "smtp://mail.example.com:587", 0, "mail.example.com", 587, SMTP_TLS_STARTTLS, "", "", 0 },
	{ "smtp://mail.example.com", 0, "mail.example.com", 25, SMTP_TLS_STARTTLS, "", "", 0 },
	{ "smtp://u:p@127.0.0.1:2525?tls=required", 0, "127.0.0.1", 2525, SMTP_TLS_REQUIRED, "u", "p", 0 },
	{ "smtp://h?tls=required", 0, "h", 587, SMTP_TLS_REQUIRED, "", "", 0 },
	{ "smtp://h:25?tls=none", 0, "h", 25, SMTP_TLS_NONE, "", "", 0 },
	{ "smtps://user%40corp:p%3Ass@smtp.example.com", 0, "smtp.example.com", 465, SMTP_TLS_IMPLICIT, "user@corp", "p:ss", 0 },
	{ "smtp://a:b@[::1]:2525?tls=starttls&verify=0", 0, "::1", 2525, SMTP_TLS_STARTTLS, "a", "b", 1 },
	/* credentials without tls=: STARTTLS required, never opportunistic */
	{ "smtp://apikey:p@ss@h:25", 0, "h", 25, SMTP_TLS_REQUIRED, "apikey", "p@ss", 0 },
	{ "smtp://u:p@h:25?verify=0", 0, "h", 25, SMTP_TLS_REQUIRED, "u", "p", 1 },
	{ "smtp://u:p@h:25?tls=none", 0, "h", 25, SMTP_TLS_NONE, "u", "p", 0 },
	{ "smtp://h:25", 0, "h", 25, SMTP_TLS_STARTTLS, "", "", 0 },
	{ "http://h:25", -1, NULL, 0, 0, NULL, NULL, 0 },
	{ "smtp://h:99999", -1, NULL, 0, 0, NULL, NULL, 0 },
	{ "smtp://h:0", -1, NULL, 0, 0, NULL, NULL, 0 },
	{ "smtp://:25", -1, NULL, 0, 0, NULL, NULL, 0 },
	{ "smtp://h:25?tls=maybe", -1, NULL, 0, 0, NULL, NULL, 0 },
	{ "smtp://h:2x5", -1, NULL, 0, 0, NULL, NULL, 0 },
	{ "smtp://u:%zz@h", -1, NULL, 0, 0, NULL, NULL, 0 },
	{ "smtp://u:%00@h", -1, NULL, 0, 0, NULL, NULL, 0 },
	{ "smtp://ho st:25", -1, NULL, 0, 0, NULL, NULL, 0 },
	{ "smtps://h?tls=none", -1, NULL, 0, 0, NULL, NULL, 0 },
};

Test(config, relay_urls)
{
	for (size_t i = 0; i < sizeof(relay_cases) / sizeof(relay_cases[0]); i++) {
		const struct relay_case *c = &relay_cases[i];
		struct smtp_target t;
		char err[256] = "";
		int rc = config_parse_relay(c->url, &t, err, sizeof(err));

		cr_assert_eq(rc, c->ok, "%s: got rc %d (%s), want %d", c->url, rc, err, c->ok);
		if (rc != 0) {
			cr_assert(err[0] != '\0', "%s: error without a message", c->url);
			continue;
		}
		cr_assert_str_eq(t.host, c->host, "%s: host got %s, want %s", c->url, t.host, c->host);
		cr_assert_eq(t.port, c->port, "%s: port got %u, want %u", c->url, t.port, c->port);
		cr_assert_eq(t.tls, c->tls, "%s: tls got %d, want %d", c->url, t.tls, c->tls);
		cr_assert_str_eq(t.user, c->user, "%s: user got %s, want %s", c->url, t.user, c->user);
		cr_assert_str_eq(t.pass, c->pass, "%s: pass mismatch", c->url);
		cr_assert_eq(t.no_verify, c->no_verify, "%s: no_verify got %d", c->url, t.no_verify);
	}
}

Test(config, relay_error_hides_password)
{
	struct smtp_target t;
	char err[256] = "";

	cr_assert_neq(config_parse_relay("smtp://u:SECRETPW@h:25?tls=bogus", &t, err, sizeof(err)), 0);
	cr_assert(strstr(err, "SECRETPW") == NULL, "error text leaks the password: %s", err);
	/* found by tests/fuzz/fuzz_config: a bad scheme or a '?' in the password echoed it */
	static const char *const leaky[] = {
		"smtpx://u:SECRETPW@h:25",
		"smtp://u:SEC?RETPW@h:25",
		"smtp://u:p@h:25?tls=SECRETPW",
	};
	for (size_t i = 0; i < sizeof(leaky) / sizeof(leaky[0]); i++) {
		cr_assert_neq(config_parse_relay(leaky[i], &t, err, sizeof(err)), 0, "%s", leaky[i]);
		cr_assert(strstr(err, "RETPW") == NULL, "%s: error text leaks the password: %s",
		    leaky[i], err);
	}
	struct redis_addr a;
	cr_assert_neq(config_parse_redis("rediss://:SECRETPW@h:6379", &a, err, sizeof(err)), 0);
	cr_assert(strstr(err, "SECRETPW") == NULL, "redis: error text leaks the password: %s", err);
}

Test(config, redis_urls)
{
	struct redis_addr a;
	char err[256];

	cr_assert_eq(config_parse_redis("redis://127.0.0.1:6380/2", &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(a.host, "127.0.0.1");
	cr_assert_eq(a.port, 6380);
	cr_assert_eq(a.db, 2);
	cr_assert_eq(a.is_unix, 0);
	cr_assert_eq(config_parse_redis("redis://redis", &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(a.port, 6379, "got %u, want 6379", a.port);
	cr_assert_eq(config_parse_redis("unix:///run/redis.sock?db=3", &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(a.is_unix, 1);
	cr_assert_str_eq(a.path, "/run/redis.sock");
	cr_assert_eq(a.db, 3);
	cr_assert_neq(config_parse_redis("unix://relative.sock", &a, err, sizeof(err)), 0);
	cr_assert_neq(config_parse_redis("redis://h:70000", &a, err, sizeof(err)), 0);
	cr_assert_neq(config_parse_redis("redis://h:1/x", &a, err, sizeof(err)), 0);
	cr_assert_neq(config_parse_redis("memcached://h", &a, err, sizeof(err)), 0);
}

struct redis_case {
	const char *url;
	int ok;
	int is_unix;
	const char *host_or_path;
	unsigned port;
	int db;
	const char *user, *pass;
};

static const struct redis_case redis_cases[] = {
	{ "redis://h", 0, 0, "h", 6379, 0, "", "" },
	{ "redis://h:6380/2", 0, 0, "h", 6380, 2, "", "" },
	{ "redis://:pw@h", 0, 0, "h", 6379, 0, "", "pw" },
	{ "redis://alice:pw@10.0.0.5:6390/3", 0, 0, "10.0.0.5", 6390, 3, "alice", "pw" },
	{ "redis://:pw@[::1]:7000", 0, 0, "::1", 7000, 0, "", "pw" },
	/* percent-decoded; the last '@' ends the credentials, so '/', '?', ':' need no escape */
	{ "redis://us%40er:p%40ss%3Aw%2Fd@h/1", 0, 0, "h", 6379, 1, "us@er", "p@ss:w/d" },
	{ "redis://u:a/b?c@d:e@h:1", 0, 0, "h", 1, 0, "u", "a/b?c@d:e" },
	{ "redis://:%20x%25@h", 0, 0, "h", 6379, 0, "", " x%" },
	{ "unix:///run/redis.sock", 0, 1, "/run/redis.sock", 0, 0, "", "" },
	{ "unix://:pw@/run/redis.sock?db=4", 0, 1, "/run/redis.sock", 0, 4, "", "pw" },
	{ "unix://bob:p%2Fw@/run/r@dis.sock", 0, 1, "/run/r@dis.sock", 0, 0, "bob", "p/w" },
	{ "redis://user@h", -1, 0, NULL, 0, 0, NULL, NULL },       /* AUTH needs a password */
	{ "redis://user:@h", -1, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://:@h", -1, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://:pw@", -1, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://:p%zz@h", -1, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://:p%00@h", -1, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://u%0:p@h", -1, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://:pw@h:0", -1, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://:pw@h/x", -1, 0, NULL, 0, 0, NULL, NULL },
	{ "unix://:pw@relative.sock", -1, 0, NULL, 0, 0, NULL, NULL },
	{ "unix://:p/w@/run/redis.sock", -1, 0, NULL, 0, 0, NULL, NULL },
	{ "unix://pw@/run/redis.sock", -1, 0, NULL, 0, 0, NULL, NULL },
	{ "unix://:pw@/run/redis.sock?db=x", -1, 0, NULL, 0, 0, NULL, NULL },
	{ "rediss://:pw@h:6379", -1, 0, NULL, 0, 0, NULL, NULL },
};

Test(config, redis_urls_with_credentials)
{
	for (size_t i = 0; i < sizeof(redis_cases) / sizeof(redis_cases[0]); i++) {
		const struct redis_case *c = &redis_cases[i];
		struct redis_addr a;
		char err[256] = "";
		int rc = config_parse_redis(c->url, &a, err, sizeof(err));

		cr_assert_eq(rc, c->ok, "%s: got rc %d (%s), want %d", c->url, rc, err, c->ok);
		if (rc != 0) {
			cr_assert(err[0] != '\0', "%s: error without a message", c->url);
			cr_assert(a.user[0] == '\0' && a.pass[0] == '\0',
			    "%s: credentials left in the output after an error", c->url);
			continue;
		}
		cr_assert_eq(a.is_unix, c->is_unix, "%s: is_unix got %d, want %d", c->url, a.is_unix, c->is_unix);
		if (c->is_unix)
			cr_assert_str_eq(a.path, c->host_or_path, "%s: path got %s, want %s", c->url,
			    a.path, c->host_or_path);
		else {
			cr_assert_str_eq(a.host, c->host_or_path, "%s: host got %s, want %s", c->url,
			    a.host, c->host_or_path);
			cr_assert_eq(a.port, c->port, "%s: port got %u, want %u", c->url, a.port, c->port);
		}
		cr_assert_eq(a.db, c->db, "%s: db got %d, want %d", c->url, a.db, c->db);
		cr_assert_str_eq(a.user, c->user, "%s: user got %s, want %s", c->url, a.user, c->user);
		cr_assert_str_eq(a.pass, c->pass, "%s: password got %s, want %s", c->url, a.pass, c->pass);
	}
}

Test(config, redis_error_hides_password)
{
	static const char *const leaky[] = {
		"rediss://:SECRETPW@h:6379",
		"redis://:SECRETPW@h:99999",
		"redis://:SECRETPW@h/x",
		"redis://u:SECRETPW%zz@h",
		"redis://:SECRETPW@",
		"redis://:SECRETPW@bad host",
		"redis://u:SEC?RETPW@h/db?x",
		"redisx://u:SECRETPW@h",
		"SECRETPW@h",
		"unix://:SECRETPW@/p?db=x",
		"unix://:SECRETPW@/p?x=1",
		"unix://:SEC/RETPW@/p",
		"unix://:SECRETPW@rel",
		"redis+sentinel://:SECRETPW@s1:1",
		"redis+sentinel://:SECRETPW@s1:0/m",
		"redis+sentinel://u:SECRETPW%zz@s1:1/m",
		"redis+sentinel://:SECRETPW@s1:1,,s2/m",
		"redis+sentinel://:SECRETPW@/m",
		"redis+sentinel://:SECRETPW@s1/m/x",
		"redis+cluster://:SECRETPW@n1:1/0",
		"redis+cluster://:SECRETPW@n1:0",
		"redis+cluster://:SECRETPW@n1,,n2",
		"redis+cluster://u:SECRETPW%zz@n1",
	};
	struct redis_addr a;
	char err[256];

	for (size_t i = 0; i < sizeof(leaky) / sizeof(leaky[0]); i++) {
		err[0] = '\0';
		cr_assert_neq(config_parse_redis(leaky[i], &a, err, sizeof(err)), 0, "%s", leaky[i]);
		cr_assert(err[0] != '\0', "%s: error without a message", leaky[i]);
		cr_assert(strstr(err, "RETPW") == NULL, "%s: error text leaks the password: %s",
		    leaky[i], err);
	}
}

Test(config, redis_masked)
{
	static const struct { const char *url, *want; } cases[] = {
		{ "redis://h", "redis://h:6379" },
		{ "redis://:SECRETPW@h", "redis://:***@h:6379" },
		{ "redis://alice:SECRETPW@h:6390/3", "redis://alice:***@h:6390/3" },
		{ "redis://:SECRETPW@[::1]:7000", "redis://:***@[::1]:7000" },
		{ "unix://:SECRETPW@/run/redis.sock?db=2", "unix://:***@/run/redis.sock?db=2" },
		{ "unix:///run/redis.sock", "unix:///run/redis.sock" },
		{ "redis+sentinel://s1:1,s2:2/m", "redis+sentinel://s1:1,s2:2/m" },
		{ "redis+sentinel://:SECRETPW@s1/m/2", "redis+sentinel://:***@s1:26379/m/2" },
		{ "redis+sentinel://alice:SECRETPW@[::1]:5,s2:6/mm", "redis+sentinel://alice:***@[::1]:5,s2:6/mm" },
		{ "redis+cluster://n1,n2:7001", "redis+cluster://n1:6379,n2:7001" },
		{ "redis+cluster://alice:SECRETPW@[::1]:7000,n2:7001/", "redis+cluster://alice:***@[::1]:7000,n2:7001" },
	};
	struct redis_addr a;
	char err[256], out[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(config_parse_redis(cases[i].url, &a, err, sizeof(err)), 0, "%s: %s",
		    cases[i].url, err);
		config_redis_masked(&a, out, sizeof(out));
		cr_assert_str_eq(out, cases[i].want, "%s: got %s, want %s", cases[i].url, out,
		    cases[i].want);
	}
}

struct list_case {
	const char *url;
	const char *hosts;     /* "h:port,h:port" as parsed; NULL for a bad URL */
	const char *master;    /* redis+sentinel:// only ("" for redis+cluster://) */
	int db;
	const char *user, *pass;
	const char *err;       /* for a bad URL: a part of the error text */
};

static const struct list_case sentinel_cases[] = {
	{ "redis+sentinel://s1:26379/mymaster", "s1:26379", "mymaster", 0, "", "", NULL },
	{ "redis+sentinel://s1/m", "s1:26379", "m", 0, "", "", NULL },        /* sentinel's default port */
	{ "redis+sentinel://10.0.0.1:5000,s2:5001,[::1]:5002/prod.mail-1/3",
	  "10.0.0.1:5000,s2:5001,::1:5002", "prod.mail-1", 3, "", "", NULL },
	{ "redis+sentinel://alice:p%40ss@s1:1,s2:2/m/1", "s1:1,s2:2", "m", 1, "alice", "p@ss", NULL },
	{ "redis+sentinel://:a/b@c@s1:1/m", "s1:1", "m", 0, "", "a/b@c", NULL },
	{ "redis+sentinel://a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8/m",
	  "a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8", "m", 0, "", "", NULL },
	{ "redis+sentinel://s1:26379", NULL, NULL, 0, NULL, NULL, "master-name" },
	{ "redis+sentinel://s1:26379/", NULL, NULL, 0, NULL, NULL, "master-name" },
	{ "redis+sentinel://s1:26379//2", NULL, NULL, 0, NULL, NULL, "master-name" },
	{ "redis+sentinel://s1:26379/my master", NULL, NULL, 0, NULL, NULL, "bad master name" },
	{ "redis+sentinel://s1:26379/m/x", NULL, NULL, 0, NULL, NULL, "bad db" },
	{ "redis+sentinel://s1:26379/m/1/2", NULL, NULL, 0, NULL, NULL, "bad db" },
	{ "redis+sentinel://s1:0/m", NULL, NULL, 0, NULL, NULL, "bad sentinel port (sentinel 1)" },
	{ "redis+sentinel://s1:1,s2:70000/m", NULL, NULL, 0, NULL, NULL, "bad sentinel port (sentinel 2)" },
	{ "redis+sentinel://s1:1,s2:x/m", NULL, NULL, 0, NULL, NULL, "bad sentinel port (sentinel 2)" },
	{ "redis+sentinel://s1:1,,s2:2/m", NULL, NULL, 0, NULL, NULL, "empty sentinel host" },
	{ "redis+sentinel://,s1:1/m", NULL, NULL, 0, NULL, NULL, "empty sentinel host" },
	{ "redis+sentinel://s1:1,/m", NULL, NULL, 0, NULL, NULL, "empty sentinel host" },
	{ "redis+sentinel:///m", NULL, NULL, 0, NULL, NULL, "empty sentinel host" },
	{ "redis+sentinel://:1/m", NULL, NULL, 0, NULL, NULL, "bad sentinel host" },
	{ "redis+sentinel://bad host:1/m", NULL, NULL, 0, NULL, NULL, "bad sentinel host" },
	{ "redis+sentinel://a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8,i:9/m", NULL, NULL, 0, NULL, NULL,
	  "more than 8 sentinels" },
	{ "redis+sentinel://user@s1:1/m", NULL, NULL, 0, NULL, NULL, "credentials" },
	{ "redis+sentinel://:@s1:1/m", NULL, NULL, 0, NULL, NULL, "bad password" },
};

static const struct list_case cluster_cases[] = {
	{ "redis+cluster://n1:7000", "n1:7000", "", 0, "", "", NULL },
	{ "redis+cluster://n1", "n1:6379", "", 0, "", "", NULL },        /* a node's default port */
	{ "redis+cluster://n1/", "n1:6379", "", 0, "", "", NULL },
	{ "redis+cluster://10.0.0.1:7000,n2:7001,[::1]:7002", "10.0.0.1:7000,n2:7001,::1:7002", "", 0,
	  "", "", NULL },
	{ "redis+cluster://alice:p%40ss@n1:1,n2:2", "n1:1,n2:2", "", 0, "alice", "p@ss", NULL },
	{ "redis+cluster://:a/b@c@n1:1", "n1:1", "", 0, "", "a/b@c", NULL },
	{ "redis+cluster://a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8,i:9,j:10,k:11,l:12,m:13,n:14,o:15,p:16",
	  "a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8,i:9,j:10,k:11,l:12,m:13,n:14,o:15,p:16", "", 0, "", "", NULL },
	{ "redis+cluster://a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8,i:9,j:10,k:11,l:12,m:13,n:14,o:15,p:16,q:17",
	  NULL, NULL, 0, NULL, NULL, "more than 16 cluster nodes" },
	{ "redis+cluster://n1:7000/0", NULL, NULL, 0, NULL, NULL, "no /db (Redis Cluster has only db 0)" },
	{ "redis+cluster://n1:7000/2", NULL, NULL, 0, NULL, NULL, "no /db" },
	{ "redis+cluster://n1:7000/mymaster", NULL, NULL, 0, NULL, NULL, "no /db" },
	{ "redis+cluster://", NULL, NULL, 0, NULL, NULL, "empty cluster node host" },
	{ "redis+cluster:///", NULL, NULL, 0, NULL, NULL, "empty cluster node host" },
	{ "redis+cluster://n1:1,,n2:2", NULL, NULL, 0, NULL, NULL, "empty cluster node host" },
	{ "redis+cluster://n1:1,", NULL, NULL, 0, NULL, NULL, "empty cluster node host" },
	{ "redis+cluster://n1:0", NULL, NULL, 0, NULL, NULL, "bad cluster node port (cluster node 1)" },
	{ "redis+cluster://n1:1,n2:70000", NULL, NULL, 0, NULL, NULL,
	  "bad cluster node port (cluster node 2)" },
	{ "redis+cluster://bad host:1", NULL, NULL, 0, NULL, NULL, "bad cluster node host (cluster node 1)" },
	{ "redis+cluster://user@n1:1", NULL, NULL, 0, NULL, NULL, "credentials" },
	{ "redis+cluster://:@n1:1", NULL, NULL, 0, NULL, NULL, "bad password" },
};

/* check_list_urls - a table of redis+sentinel:// (cluster 0) or redis+cluster:// URLs */
static void
check_list_urls(const struct list_case *cases, size_t ncases, int cluster)
{
	for (size_t i = 0; i < ncases; i++) {
		const struct list_case *c = &cases[i];
		struct redis_addr a;
		char err[256] = "", hosts[1024] = "";
		int rc = config_parse_redis(c->url, &a, err, sizeof(err));
		const struct redis_hostport *list = cluster ? a.seeds : a.sentinels;
		size_t nlist = cluster ? a.nseeds : a.nsentinels;

		if (c->hosts == NULL) {
			cr_assert_eq(rc, -1, "%s: got rc %d, want -1", c->url, rc);
			cr_assert(strstr(err, c->err) != NULL, "%s: error got \"%s\", want one naming \"%s\"",
			    c->url, err, c->err);
			cr_assert(a.user[0] == '\0' && a.pass[0] == '\0' && a.is_sentinel == 0 &&
			    a.is_cluster == 0,
			    "%s: credentials or the sentinel/cluster flag left in the output after an error", c->url);
			continue;
		}
		cr_assert_eq(rc, 0, "%s: got rc %d (%s), want 0", c->url, rc, err);
		cr_assert_eq(a.is_sentinel, !cluster, "%s: is_sentinel got %d, want %d", c->url, a.is_sentinel,
		    !cluster);
		cr_assert_eq(a.is_cluster, cluster, "%s: is_cluster got %d, want %d", c->url, a.is_cluster,
		    cluster);
		cr_assert_eq(a.is_unix, 0, "%s: is_unix got %d, want 0", c->url, a.is_unix);
		for (size_t k = 0; k < nlist; k++) {
			size_t n = strlen(hosts);

			snprintf(hosts + n, sizeof(hosts) - n, "%s%.255s:%u", k ? "," : "", list[k].host,
			    (unsigned)list[k].port);
		}
		cr_assert_str_eq(hosts, c->hosts, "%s: hosts got %s, want %s", c->url, hosts, c->hosts);
		cr_assert_str_eq(a.master, c->master, "%s: master got %s, want %s", c->url, a.master,
		    c->master);
		cr_assert_eq(a.db, c->db, "%s: db got %d, want %d", c->url, a.db, c->db);
		cr_assert_str_eq(a.user, c->user, "%s: user got %s, want %s", c->url, a.user, c->user);
		cr_assert_str_eq(a.pass, c->pass, "%s: password got %s, want %s", c->url, a.pass, c->pass);
		cr_assert_eq(a.sentinel_pass[0], '\0', "%s: a sentinel password from the URL", c->url);
	}
}

Test(config, redis_sentinel_urls)
{
	check_list_urls(sentinel_cases, sizeof(sentinel_cases) / sizeof(sentinel_cases[0]), 0);
}

Test(config, redis_cluster_urls)
{
	check_list_urls(cluster_cases, sizeof(cluster_cases) / sizeof(cluster_cases[0]), 1);
}

Test(config, redis_sentinel_masked_truncated)
{
	struct redis_addr a;
	char err[256], out[20];

	/* (the masked forms and the errors are in redis_masked and redis_error_hides_password) */
	cr_assert_eq(config_parse_redis("redis+sentinel://a:1,b:2,c:3/m", &a, err, sizeof(err)), 0);
	config_redis_masked(&a, out, sizeof(out));
	cr_assert_str_eq(out, "redis+sentinel://a:", "got %s, want the first 19 bytes, not an overrun", out);
}

Test(config, listen_addresses)
{
	char host[256], err[256];
	uint16_t port;

	cr_assert_eq(config_parse_listen("127.0.0.1:8080", host, sizeof(host), &port, err, sizeof(err)), 0);
	cr_assert_str_eq(host, "127.0.0.1");
	cr_assert_eq(port, 8080);
	cr_assert_eq(config_parse_listen("[::1]:0", host, sizeof(host), &port, err, sizeof(err)), 0);
	cr_assert_str_eq(host, "::1");
	cr_assert_eq(port, 0);
	cr_assert_neq(config_parse_listen("8080", host, sizeof(host), &port, err, sizeof(err)), 0);
	cr_assert_neq(config_parse_listen("h:", host, sizeof(host), &port, err, sizeof(err)), 0);
	cr_assert_neq(config_parse_listen("::1:80", host, sizeof(host), &port, err, sizeof(err)), 0);
}

Test(config, load_rejects_bad_numbers)
{
	struct config c;
	char err[256];

	setenv("TXMAIL_RETRY_BASE", "soon", 1);
	cr_assert_neq(config_load(&c, err, sizeof(err)), 0);
	cr_assert(strstr(err, "TXMAIL_RETRY_BASE") != NULL, "error does not name the variable: %s", err);
	config_free(&c);
	setenv("TXMAIL_RETRY_BASE", "0.25", 1);
	setenv("TXMAIL_API_KEYS", " k1 , k2,,k3 ", 1);
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq((long)(c.retry_base * 1000), 250);
	cr_assert_eq(c.napi_keys, 3, "got %zu keys, want 3", c.napi_keys);
	cr_assert_str_eq(c.api_keys[1], "k2");
	config_free(&c);
	unsetenv("TXMAIL_RETRY_BASE");
	unsetenv("TXMAIL_API_KEYS");
}

Test(config, sentinel_password_reaches_the_address)
{
	struct config c;
	char err[256], shown[64];

	setenv("TXMAIL_REDIS_URL", "redis+sentinel://:datapw@127.0.0.1:26379/m", 1);
	setenv("TXMAIL_REDIS_SENTINEL_PASSWORD", "SENTPW", 1);
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.redis.sentinel_pass, "SENTPW", "got \"%s\", want SENTPW", c.redis.sentinel_pass);
	cr_assert_str_eq(c.redis.pass, "datapw", "the data node's password got \"%s\", want datapw",
	    c.redis.pass);
	for (size_t i = 0; i < config_nvars; i++)
		if (strcmp(config_vars[i].name, "TXMAIL_REDIS_SENTINEL_PASSWORD") == 0) {
			cr_assert(config_vars[i].flags & CV_SECRET, "the sentinel password is not a secret");
			config_vars[i].show(&c, shown, sizeof(shown));
			cr_assert_str_eq(shown, "***", "shown as \"%s\", want ***", shown);
		}
	config_free(&c);
	/* a sentinel password with a URL that asks no sentinel is a mistake, said so */
	setenv("TXMAIL_REDIS_URL", "redis://127.0.0.1:6390", 1);
	cr_assert_neq(config_load(&c, err, sizeof(err)), 0);
	cr_assert(strstr(err, "TXMAIL_REDIS_SENTINEL_PASSWORD") != NULL && strstr(err, "SENTPW") == NULL,
	    "error got \"%s\", want one naming the variable, not its value", err);
	config_free(&c);
	unsetenv("TXMAIL_REDIS_URL");
	unsetenv("TXMAIL_REDIS_SENTINEL_PASSWORD");
}

Test(config, cluster_url_loads)
{
	struct config c;
	char err[256];

	/* the store serves it (every command to its slot's primary: the router, store_cluster.c) */
	setenv("TXMAIL_REDIS_URL", "redis+cluster://:CLUSTERPW@127.0.0.1:7000,127.0.0.1:7001", 1);
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "a redis+cluster:// URL refused: %s", err);
	cr_assert(c.redis.is_cluster == 1 && c.redis.nseeds == 2, "is_cluster %d, %zu seeds",
	    c.redis.is_cluster, c.redis.nseeds);
	cr_assert_str_eq(c.redis.pass, "CLUSTERPW");
	config_free(&c);
	unsetenv("TXMAIL_REDIS_URL");
}

Test(config, redis_timeout_reaches_the_address)
{
	struct config c;
	char err[256];

	unsetenv("TXMAIL_REDIS_TIMEOUT");
	unsetenv("TXMAIL_REDIS_URL");
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.redis.timeout_ms, 5000, "default: got %d ms, want 5000", c.redis.timeout_ms);
	config_free(&c);
	/* the URL's parser resets the address: the timeout must survive it */
	setenv("TXMAIL_REDIS_URL", "redis://127.0.0.1:6390/1", 1);
	setenv("TXMAIL_REDIS_TIMEOUT", "0.3", 1);
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.redis.timeout_ms, 300, "with a URL: got %d ms, want 300", c.redis.timeout_ms);
	cr_expect_eq(c.redis.port, 6390);
	config_free(&c);
	setenv("TXMAIL_REDIS_TIMEOUT", "0.001", 1);
	cr_assert_neq(config_load(&c, err, sizeof(err)), 0, "1 ms: got success, want an error");
	cr_expect(strstr(err, "TXMAIL_REDIS_TIMEOUT") != NULL, "got error \"%s\", want it to name the variable", err);
	config_free(&c);
	unsetenv("TXMAIL_REDIS_TIMEOUT");
	unsetenv("TXMAIL_REDIS_URL");
}

Test(config, shaping_defaults_and_domain_rate)
{
	struct config c;
	char err[256];

	unsetenv("TXMAIL_DOMAIN_RATE");
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.max_conns_per_target, 32, "max conns per host: got %d, want 32", c.max_conns_per_target);
	cr_expect_eq(c.max_msgs_per_conn, 1024, "msgs per conn: got %d, want 1024", c.max_msgs_per_conn);
	cr_expect_null(c.domain_rate, "domain rate: got %s, want none", c.domain_rate);
	cr_expect_eq(c.dest_fail_threshold, 5, "fail threshold: got %d, want 5", c.dest_fail_threshold);
	cr_expect(c.dest_backoff_base == 10 && c.dest_backoff_max == 600, "backoff: got %g..%g, want 10..600",
	    c.dest_backoff_base, c.dest_backoff_max);
	config_free(&c);
	setenv("TXMAIL_DOMAIN_RATE", "gmail.com=20,outlook.com=10,*=0", 1);
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(c.domain_rate, "gmail.com=20,outlook.com=10,*=0");
	config_free(&c);
	setenv("TXMAIL_DOMAIN_RATE", "gmail.com=lots", 1);
	cr_assert_neq(config_load(&c, err, sizeof(err)), 0, "bad rate: got success, want an error");
	cr_expect(strstr(err, "TXMAIL_DOMAIN_RATE") != NULL, "got error \"%s\", want it to name TXMAIL_DOMAIN_RATE", err);
	config_free(&c);
	unsetenv("TXMAIL_DOMAIN_RATE");
}

Test(config, webhook_guard_and_http_timeout)
{
	static const struct { const char *url, *allow; int want_ok; } cases[] = {
		{ "http://127.0.0.1:9/hook", NULL, 0 },
		{ "http://10.1.2.3/hook", "0", 0 },
		{ "http://[::1]/hook", NULL, 0 },
		{ "http://127.0.0.1:9/hook", "1", 1 },
		{ "https://8.8.8.8/hook", NULL, 1 },
	};
	struct config c;
	char err[256];
	size_t i;
	int rc;

	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.http_timeout, 30, "http_timeout: got %d, want 30", c.http_timeout);
	cr_expect_eq(c.webhook_allow_private, 0, "allow_private: got %d, want 0", c.webhook_allow_private);
	config_free(&c);
	setenv("TXMAIL_HTTP_TIMEOUT", "0", 1);
	cr_expect_neq(config_load(&c, err, sizeof(err)), 0, "TXMAIL_HTTP_TIMEOUT=0: got ok, want error");
	config_free(&c);
	setenv("TXMAIL_HTTP_TIMEOUT", "5", 1);
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.http_timeout, 5, "http_timeout: got %d, want 5", c.http_timeout);
	config_free(&c);
	unsetenv("TXMAIL_HTTP_TIMEOUT");

	setenv("TXMAIL_WEBHOOK_SECRET", "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=", 1);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setenv("TXMAIL_WEBHOOK_URL", cases[i].url, 1);
		if (cases[i].allow)
			setenv("TXMAIL_WEBHOOK_ALLOW_PRIVATE", cases[i].allow, 1);
		else
			unsetenv("TXMAIL_WEBHOOK_ALLOW_PRIVATE");
		err[0] = '\0';
		rc = config_load(&c, err, sizeof(err));
		cr_expect_eq(rc == 0, cases[i].want_ok, "%s (allow %s): got %s (%s), want %s",
		    cases[i].url, cases[i].allow ? cases[i].allow : "unset", rc == 0 ? "ok" : "error", err,
		    cases[i].want_ok ? "ok" : "error");
		if (rc != 0)
			cr_expect(strstr(err, "TXMAIL_WEBHOOK_URL") != NULL,
			    "error does not name the variable: %s", err);
		config_free(&c);
	}
	unsetenv("TXMAIL_WEBHOOK_URL");
	unsetenv("TXMAIL_WEBHOOK_SECRET");
	unsetenv("TXMAIL_WEBHOOK_ALLOW_PRIVATE");
}

/* --- secrets from NAME_FILE ------------------------------------------------ */

/* A temporary file holding (data, len); its path in path (PATH_MAX). */
static void
secret_file(char *path, const char *data, size_t len)
{
	int fd;

	snprintf(path, PATH_MAX, "/tmp/txm-test-secret-XXXXXX");
	fd = mkstemp(path);
	cr_assert(fd >= 0, "mkstemp failed");
	cr_assert_eq(write(fd, data, len), (ssize_t)len, "short write to %s", path);
	close(fd);
}

struct secret_case {
	const char *content;
	size_t len;          /* bytes of content (it may hold a NUL) */
	int ok;
	const char *want;    /* the value when ok; a word the error must hold otherwise */
};

#define S(lit) lit, sizeof(lit) - 1

/* outlen 8 below: values of up to 7 bytes fit */
static const struct secret_case secret_cases[] = {
	{ S("abc\n"), 0, "abc" },
	{ S("abc\r\n"), 0, "abc" },
	{ S("abc"), 0, "abc" },
	{ S("abc\n\n"), 0, "abc\n" },         /* only one newline is stripped */
	{ S("abc\r"), 0, "abc\r" },           /* a lone CR is not a line end */
	{ S(" a b \n"), 0, " a b " },          /* no other trimming */
	{ S("1234567\r\n"), 0, "1234567" },   /* exactly fills the buffer */
	{ S("12345678"), -1, "larger" },
	{ S("12345678\n"), -1, "larger" },
	{ S("123456789012345678901234567890"), -1, "larger" },
	{ S(""), -1, "empty" },
	{ S("\n"), -1, "empty" },
	{ S("a\0b"), -1, "NUL" },
};

Test(config, secret_from_file)
{
	for (size_t i = 0; i < sizeof(secret_cases) / sizeof(secret_cases[0]); i++) {
		const struct secret_case *c = &secret_cases[i];
		char path[PATH_MAX], out[8], err[512] = "";
		int rc;

		secret_file(path, c->content, c->len);
		unsetenv("TXMAIL_TEST_SECRET");
		setenv("TXMAIL_TEST_SECRET_FILE", path, 1);
		rc = config_secret("TXMAIL_TEST_SECRET", out, sizeof(out), err, sizeof(err));
		unlink(path);
		cr_assert_eq(rc, c->ok, "case %zu: got rc %d (%s), want %d", i, rc, err, c->ok);
		if (rc == 0) {
			cr_assert_str_eq(out, c->want, "case %zu: got \"%s\" (%zu bytes), want \"%s\" (%zu bytes)",
			    i, out, strlen(out), c->want, strlen(c->want));
			continue;
		}
		cr_assert(strstr(err, "TXMAIL_TEST_SECRET_FILE") != NULL, "case %zu: error does not name "
		    "the variable: %s", i, err);
		cr_assert(strstr(err, path) != NULL, "case %zu: error does not name %s: %s", i, path, err);
		cr_assert(strstr(err, c->want) != NULL, "case %zu: got error \"%s\", want it to say %s",
		    i, err, c->want);
		cr_assert_str_eq(out, "", "case %zu: out not empty after an error", i);
	}
}

Test(config, secret_value_and_unset)
{
	char out[16], err[256] = "";

	unsetenv("TXMAIL_TEST_SECRET");
	unsetenv("TXMAIL_TEST_SECRET_FILE");
	cr_assert_eq(config_secret("TXMAIL_TEST_SECRET", out, sizeof(out), err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(out, "", "unset: got \"%s\", want \"\"", out);
	setenv("TXMAIL_TEST_SECRET", "fromenv", 1);
	setenv("TXMAIL_TEST_SECRET_FILE", "", 1);   /* empty counts as unset */
	cr_assert_eq(config_secret("TXMAIL_TEST_SECRET", out, sizeof(out), err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(out, "fromenv", "got \"%s\", want the value", out);
	setenv("TXMAIL_TEST_SECRET", "0123456789abcdefSECRETPW", 1);
	cr_assert_neq(config_secret("TXMAIL_TEST_SECRET", out, sizeof(out), err, sizeof(err)), 0,
	    "a value longer than the buffer was accepted");
	cr_assert(strstr(err, "TXMAIL_TEST_SECRET") != NULL && strstr(err, "SECRETPW") == NULL,
	    "too long: got error \"%s\", want the name and not the value", err);
}

Test(config, secret_both_set_refused)
{
	char path[PATH_MAX], out[64], err[512] = "";

	secret_file(path, S("FILESECRET\n"));
	setenv("TXMAIL_TEST_SECRET", "ENVSECRET", 1);
	setenv("TXMAIL_TEST_SECRET_FILE", path, 1);
	cr_assert_neq(config_secret("TXMAIL_TEST_SECRET", out, sizeof(out), err, sizeof(err)), 0,
	    "both set: got success (\"%s\"), want an error", out);
	unlink(path);
	cr_assert(strstr(err, "TXMAIL_TEST_SECRET and TXMAIL_TEST_SECRET_FILE") != NULL,
	    "got error \"%s\", want it to name both variables", err);
	cr_assert(strstr(err, "ENVSECRET") == NULL && strstr(err, "FILESECRET") == NULL,
	    "error leaks a secret: %s", err);
}

Test(config, secret_file_unreadable)
{
	char out[64], err[512] = "";
	char dir[] = "/tmp/txm-test-secret-dir-XXXXXX";

	setenv("TXMAIL_TEST_SECRET_FILE", "/nonexistent/txmail/secret", 1);
	cr_assert_neq(config_secret("TXMAIL_TEST_SECRET", out, sizeof(out), err, sizeof(err)), 0,
	    "missing file: got success");
	cr_assert(strstr(err, "TXMAIL_TEST_SECRET_FILE") != NULL &&
	    strstr(err, "/nonexistent/txmail/secret") != NULL,
	    "missing file: got error \"%s\", want the variable and the path", err);
	cr_assert(strstr(err, "No such file") != NULL, "missing file: got error \"%s\", want the reason", err);

	cr_assert_not_null(mkdtemp(dir));
	setenv("TXMAIL_TEST_SECRET_FILE", dir, 1);
	cr_assert_neq(config_secret("TXMAIL_TEST_SECRET", out, sizeof(out), err, sizeof(err)), 0,
	    "directory: got success");
	rmdir(dir);
	cr_assert(strstr(err, dir) != NULL && strstr(err, "not a regular file") != NULL,
	    "directory: got error \"%s\"", err);
}

Test(config, load_secrets_from_files)
{
	char keys[PATH_MAX], relay[PATH_MAX], big[PATH_MAX], err[512] = "";
	char bigsecret[300];
	struct config c;

	secret_file(keys, S(" k1 ,k2\n"));
	secret_file(relay, S("smtp://relayuser:SECRETPW@relay.example:587?tls=required\r\n"));
	unsetenv("TXMAIL_API_KEYS");
	unsetenv("TXMAIL_RELAY");
	setenv("TXMAIL_API_KEYS_FILE", keys, 1);
	setenv("TXMAIL_RELAY_FILE", relay, 1);
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.napi_keys, 2, "got %zu keys, want 2", c.napi_keys);
	cr_expect_str_eq(c.api_keys[1], "k2");
	cr_expect(c.relay_set, "relay from a file: not set");
	cr_expect_str_eq(c.relay.host, "relay.example");
	cr_expect_eq(c.relay.port, 587);
	cr_expect_str_eq(c.relay.user, "relayuser");
	cr_expect_str_eq(c.relay.pass, "SECRETPW", "the password read from the file is wrong");
	config_free(&c);

	/* the bounce secret's buffer holds 255 bytes: a 299-byte file is refused */
	memset(bigsecret, 'S', sizeof(bigsecret) - 1);
	bigsecret[sizeof(bigsecret) - 1] = '\n';
	secret_file(big, bigsecret, sizeof(bigsecret));
	setenv("TXMAIL_BOUNCE_DOMAIN", "bounces.example", 1);
	setenv("TXMAIL_BOUNCE_SECRET_FILE", big, 1);
	cr_assert_neq(config_load(&c, err, sizeof(err)), 0, "too large a secret file was accepted");
	cr_expect(strstr(err, "TXMAIL_BOUNCE_SECRET_FILE") != NULL && strstr(err, big) != NULL,
	    "got error \"%s\", want the variable and the path", err);
	cr_expect(strstr(err, "SSSS") == NULL, "error leaks the file's content: %s", err);
	config_free(&c);

	/* both forms of one variable */
	unsetenv("TXMAIL_BOUNCE_DOMAIN");
	unsetenv("TXMAIL_BOUNCE_SECRET_FILE");
	setenv("TXMAIL_RELAY", "smtp://u:ENVPW@h:25", 1);
	cr_assert_neq(config_load(&c, err, sizeof(err)), 0, "TXMAIL_RELAY and its _FILE: got success");
	cr_expect(strstr(err, "TXMAIL_RELAY and TXMAIL_RELAY_FILE") != NULL, "got error \"%s\"", err);
	cr_expect(strstr(err, "ENVPW") == NULL && strstr(err, "SECRETPW") == NULL, "error leaks: %s", err);
	config_free(&c);
	unlink(keys);
	unlink(relay);
	unlink(big);
}

/* Run config_describe with fd 2 going to a file; its text into out. */
static void
describe_to(const struct config *c, char *out, size_t outlen)
{
	char path[PATH_MAX];
	int saved, fd;
	ssize_t n;

	secret_file(path, "", 0);
	fd = open(path, O_RDWR);
	cr_assert(fd >= 0);
	saved = dup(STDERR_FILENO);
	cr_assert(saved >= 0);
	dup2(fd, STDERR_FILENO);
	config_describe(c);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, out, outlen - 1, 0);
	close(fd);
	unlink(path);
	cr_assert(n > 0, "config_describe wrote nothing");
	out[n] = '\0';
}

Test(config, describe_masks_secrets)
{
	static const char *const secrets[] = {
		"RELAYPW", "txm_KEYSECRET", "whsec_V0VCSE9PS1NFQ1JFVA==", "BOUNCESECRET0123456789",
		"HOOKTOKEN", "REDISPW",
	};
	char text[8192], err[512] = "";
	struct config c;

	setenv("TXMAIL_RELAY", "smtp://relay%40user:RELAYPW@relay.example:587?tls=required", 1);
	setenv("TXMAIL_API_KEYS", "txm_KEYSECRET", 1);
	setenv("TXMAIL_WEBHOOK_URL", "https://hooks.example/t/HOOKTOKEN", 1);
	setenv("TXMAIL_WEBHOOK_ALLOW_PRIVATE", "1", 1);   /* no DNS lookup decides this test */
	setenv("TXMAIL_WEBHOOK_SECRET", "whsec_V0VCSE9PS1NFQ1JFVA==", 1);
	setenv("TXMAIL_BOUNCE_DOMAIN", "bounces.example", 1);
	setenv("TXMAIL_BOUNCE_SECRET", "BOUNCESECRET0123456789", 1);
	setenv("TXMAIL_REDIS_URL", "redis://txm:REDISPW%3F@redis.internal:6390/1", 1);
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	describe_to(&c, text, sizeof(text));
	cr_expect_str_eq(c.redis.pass, "REDISPW?", "redis password: got %s", c.redis.pass);
	config_free(&c);
	cr_expect(c.redis.pass[0] == '\0', "config_free left the redis password in memory");
	cr_expect(strstr(text, "relay=smtp://relay@user:***@relay.example:587 relay_tls=required ") != NULL,
	    "want the relay as smtp://relay@user:***@relay.example:587 relay_tls=required, got:\n%s", text);
	cr_expect(strstr(text, "redis=redis://txm:***@redis.internal:6390/1 ") != NULL,
	    "want redis=redis://txm:***@redis.internal:6390/1, got:\n%s", text);
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		cr_expect(strstr(text, secrets[i]) == NULL, "config log leaks %s:\n%s", secrets[i], text);

	setenv("TXMAIL_RELAY", "smtps://[::1]", 1);
	setenv("TXMAIL_REDIS_URL", "redis://:REDISPW@127.0.0.1", 1);
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	describe_to(&c, text, sizeof(text));
	config_free(&c);
	unsetenv("TXMAIL_REDIS_URL");
	cr_expect(strstr(text, "relay=smtps://[::1]:465 ") != NULL, "want relay=smtps://[::1]:465, got:\n%s", text);
	cr_expect(strstr(text, "msg=\"config setting\" name=TXMAIL_RELAY value=smtps://[::1]:465 source=environment") != NULL,
	    "want a line for the relay setting and its source, got:\n%s", text);
	cr_expect(strstr(text, "redis=redis://:***@127.0.0.1:6379 ") != NULL,
	    "want redis=redis://:***@127.0.0.1:6379, got:\n%s", text);
	cr_expect(strstr(text, "REDISPW") == NULL, "config log leaks the redis password:\n%s", text);
}

Test(config, webhook_proxy_needs_guard_off_and_is_masked)
{
	char text[8192], err[512] = "";
	struct config c;

	setenv("TXMAIL_WEBHOOK_PROXY", "http://puser:PROXYPW@proxy.internal:3128/x", 1);
	unsetenv("TXMAIL_WEBHOOK_ALLOW_PRIVATE");
	cr_expect_neq(config_load(&c, err, sizeof(err)), 0, "proxy with the guard on: got ok, want an error");
	cr_expect(strstr(err, "TXMAIL_WEBHOOK_PROXY") != NULL && strstr(err, "cannot judge") != NULL &&
	    strstr(err, "TXMAIL_WEBHOOK_ALLOW_PRIVATE=1") != NULL, "got error \"%s\", want the reason", err);
	cr_expect(strstr(err, "PROXYPW") == NULL, "error leaks the proxy password: %s", err);
	config_free(&c);

	setenv("TXMAIL_WEBHOOK_ALLOW_PRIVATE", "1", 1);
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	describe_to(&c, text, sizeof(text));
	config_free(&c);
	cr_expect(c.webhook_proxy[0] == '\0', "config_free left the proxy URL in memory");
	cr_expect(strstr(text, "name=TXMAIL_WEBHOOK_PROXY value=http://***@proxy.internal:3128 ") != NULL,
	    "want the proxy as http://***@proxy.internal:3128, got:\n%s", text);
	cr_expect(strstr(text, "PROXYPW") == NULL && strstr(text, "puser") == NULL,
	    "config log leaks the proxy credentials:\n%s", text);

	setenv("TXMAIL_WEBHOOK_PROXY", "ftp://proxy.internal:21", 1);
	cr_expect_neq(config_load(&c, err, sizeof(err)), 0, "ftp:// proxy: got ok, want an error");
	config_free(&c);
	setenv("TXMAIL_WEBHOOK_PROXY", "socks5h://127.0.0.1:1080", 1);
	cr_expect_eq(config_load(&c, err, sizeof(err)), 0, "socks5h proxy: %s", err);
	cr_expect_str_eq(c.webhook_proxy, "socks5h://127.0.0.1:1080");
	config_free(&c);
	unsetenv("TXMAIL_WEBHOOK_PROXY");
	unsetenv("TXMAIL_WEBHOOK_ALLOW_PRIVATE");
}

Test(config, bounce_listener_limits)
{
	char err[512] = "";
	struct config c;

	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.bounce_max_bytes, (size_t)1048576, "max bytes: got %zu, want 1 MiB", c.bounce_max_bytes);
	cr_expect_eq(c.bounce_max_clients, 64, "max clients: got %d, want 64", c.bounce_max_clients);
	cr_expect_eq(c.bounce_max_clients_per_ip, 8, "per ip: got %d, want 8", c.bounce_max_clients_per_ip);
	cr_expect(c.bounce_idle_timeout == 300 && c.bounce_data_timeout == 120, "timeouts: got %g and %g, want 300 and 120",
	    c.bounce_idle_timeout, c.bounce_data_timeout);
	config_free(&c);
	setenv("TXMAIL_BOUNCE_MAX_BYTES", "100M", 1);
	cr_expect_neq(config_load(&c, err, sizeof(err)), 0, "100M: got ok, want an error (at most 50 MiB)");
	config_free(&c);
	setenv("TXMAIL_BOUNCE_MAX_BYTES", "64K", 1);
	cr_assert_eq(config_load(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.bounce_max_bytes, (size_t)65536, "64K: got %zu", c.bounce_max_bytes);
	config_free(&c);
	unsetenv("TXMAIL_BOUNCE_MAX_BYTES");
}

/* --- the variable table: problems, ranges, unknown names, sources ---------- */

static struct config_report rep;

/* The text of the first problem of rep holding `want`, or NULL. */
static const char *
rep_find(const char *want, enum config_severity sev)
{
	for (size_t i = 0; i < rep.n; i++)
		if (rep.p[i].severity == sev && strstr(rep.p[i].text, want) != NULL)
			return rep.p[i].text;
	return NULL;
}

/* All of rep, one problem a line, for failure messages. */
static const char *
rep_text(void)
{
	static char buf[16384];
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < rep.n && o < sizeof(buf); i++) {
		int w = snprintf(buf + o, sizeof(buf) - o, "  %s: %s\n",
		    rep.p[i].severity == CONFIG_ERROR ? "error" : "warning", rep.p[i].text);
		o += w > 0 ? (size_t)w : 0;
	}
	return buf;
}

/* set_vars - setenv each { name, value } of vars, up to the { NULL, NULL } one */
static void
set_vars(const char *const (*vars)[2])
{
	for (; vars[0][0] != NULL; vars++)
		cr_assert_eq(setenv(vars[0][0], vars[0][1], 1), 0, "setenv %s", vars[0][0]);
}

struct range_case {
	const char *var, *value;
	const char *want;      /* the whole problem line */
};

static const struct range_case range_cases[] = {
	{ "TXMAIL_RETRY_BASE", "0", "TXMAIL_RETRY_BASE: 0 is out of range (0.001..86400 seconds)" },
	{ "TXMAIL_RETRY_BASE", "soon", "TXMAIL_RETRY_BASE: \"soon\" is not a number of seconds" },
	{ "TXMAIL_RETRY_MAX", "1e9", "TXMAIL_RETRY_MAX: 1e9 is out of range (0.001..604800 seconds)" },
	{ "TXMAIL_HTTP_TIMEOUT", "0", "TXMAIL_HTTP_TIMEOUT: 0 is out of range (1..86400 seconds)" },
	{ "TXMAIL_HTTP_TIMEOUT", "1.5", "TXMAIL_HTTP_TIMEOUT: \"1.5\" is not a whole number of seconds" },
	{ "TXMAIL_RATE_LIMIT", "-1", "TXMAIL_RATE_LIMIT: -1 is out of range (0..1000000 requests per second)" },
	{ "TXMAIL_RATE_LIMIT", "fast", "TXMAIL_RATE_LIMIT: \"fast\" is not a number of requests per second" },
	{ "TXMAIL_RATE_BURST", "0", "TXMAIL_RATE_BURST: 0 is out of range (1..10000000 requests)" },
	{ "TXMAIL_WORKERS", "65", "TXMAIL_WORKERS: 65 is out of range (1..64)" },
	{ "TXMAIL_MAX_BODY", "100", "TXMAIL_MAX_BODY: 100 is out of range (1K..1G bytes)" },
	{ "TXMAIL_MAX_BODY", "2G", "TXMAIL_MAX_BODY: 2G is out of range (1K..1G bytes)" },
	{ "TXMAIL_MAX_BODY", "ten", "TXMAIL_MAX_BODY: \"ten\" is not a size in bytes (e.g. 10485760 or 10M)" },
	{ "TXMAIL_MX_PORT", "0", "TXMAIL_MX_PORT: 0 is out of range (1..65535)" },
	{ "TXMAIL_MX_TLS_VERIFY", "2", "TXMAIL_MX_TLS_VERIFY: \"2\" is not 0 or 1" },
	{ "TXMAIL_SHUTDOWN_GRACE", "-1", "TXMAIL_SHUTDOWN_GRACE: -1 is out of range (0..3600 seconds)" },
	{ "TXMAIL_SMTP_TIMEOUT_DOT", "0", "TXMAIL_SMTP_TIMEOUT_DOT: 0 is out of range (0.01..86400 seconds)" },
	{ "TXMAIL_LOG_FORMAT", "xml", "TXMAIL_LOG_FORMAT: \"xml\": want logfmt or json" },
	{ "TXMAIL_LOG_LEVEL", "loud", "TXMAIL_LOG_LEVEL: \"loud\": want debug, info, warn or error" },
};

Test(config, range_errors_name_the_range)
{
	for (size_t i = 0; i < sizeof(range_cases) / sizeof(range_cases[0]); i++) {
		const struct range_case *c = &range_cases[i];
		struct config cfg;
		int rc;

		setenv(c->var, c->value, 1);
		rc = config_load_report(&cfg, &rep);
		config_free(&cfg);
		unsetenv(c->var);
		cr_expect_eq(rc, -1, "%s=%s: got success, want an error", c->var, c->value);
		cr_expect_eq(rep.nerrors, 1, "%s=%s: got %zu errors, want 1:\n%s", c->var, c->value,
		    rep.nerrors, rep_text());
		cr_expect(rep.n >= 1 && strcmp(rep.p[0].text, c->want) == 0, "%s=%s: got\n%s want\n  %s",
		    c->var, c->value, rep_text(), c->want);
	}
}

Test(config, good_values_and_units)
{
	struct config cfg;

	set_vars((const char *const[][2]){
		{ "TXMAIL_MAX_BODY", "2M" },
		{ "TXMAIL_MX_TLS_VERIFY", "yes" },
		{ "TXMAIL_RATE_LIMIT", "0.5" },
		{ "TXMAIL_LOG_FORMAT", "json" },
		{ "TXMAIL_SHUTDOWN_GRACE", "0" },
		{ NULL, NULL },
	});
	cr_assert_eq(config_load_report(&cfg, &rep), 0, "got errors:\n%s", rep_text());
	cr_expect_eq(cfg.max_body, 2u << 20, "max_body: got %zu, want %u", cfg.max_body, 2u << 20);
	cr_expect_eq(cfg.mx_tls_verify, 1, "mx_tls_verify: got %d, want 1", cfg.mx_tls_verify);
	cr_expect(cfg.rate_limit == 0.5, "rate_limit: got %g, want 0.5", cfg.rate_limit);
	cr_expect_eq(cfg.log_format, 1, "log_format: got %d, want 1 (json)", cfg.log_format);
	cr_expect(cfg.shutdown_grace == 0, "shutdown_grace: got %g, want 0", cfg.shutdown_grace);
	config_free(&cfg);
	unsetenv("TXMAIL_SHUTDOWN_GRACE");
	unsetenv("TXMAIL_LOG_FORMAT");
	cr_assert_eq(config_load_report(&cfg, &rep), 0, "got errors:\n%s", rep_text());
	cr_expect(cfg.shutdown_grace == 25, "shutdown_grace default: got %g, want 25", cfg.shutdown_grace);
	cr_expect_eq(cfg.log_format, 0, "log_format default: got %d, want 0 (logfmt)", cfg.log_format);
	cr_expect_eq(cfg.smtp_timeouts.dot, 600, "SMTP DOT default: got %g, want 600", cfg.smtp_timeouts.dot);
	cr_expect_str_eq(cfg.sink_listen_host, "127.0.0.1");
	cr_expect_eq(cfg.sink_listen_port, 2525);
	config_free(&cfg);
}

/* A base above its max: a warning naming both, the max raised, never silent. */
Test(config, base_above_max_warns)
{
	/* what is expected, written independently of config.c's config_bounds */
	static const struct { const char *base, *max; size_t max_off; } cases[] = {
		{ "TXMAIL_RETRY_BASE", "TXMAIL_RETRY_MAX", offsetof(struct config, retry_max) },
		{ "TXMAIL_WEBHOOK_RETRY_BASE", "TXMAIL_WEBHOOK_RETRY_MAX",
		  offsetof(struct config, webhook_retry_max) },
		{ "TXMAIL_DEST_BACKOFF_BASE", "TXMAIL_DEST_BACKOFF_MAX",
		  offsetof(struct config, dest_backoff_max) },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config cfg;
		char want[256];
		double got;

		setenv(cases[i].base, "120", 1);
		setenv(cases[i].max, "30", 1);
		cr_assert_eq(config_load_report(&cfg, &rep), 0, "%s > %s: got errors:\n%s", cases[i].base,
		    cases[i].max, rep_text());
		memcpy(&got, (char *)&cfg + cases[i].max_off, sizeof(got));
		config_free(&cfg);
		unsetenv(cases[i].base);
		unsetenv(cases[i].max);
		snprintf(want, sizeof(want), "%s: 30 is below %s (120): using 120 for both", cases[i].max,
		    cases[i].base);
		cr_expect(rep_find(want, CONFIG_WARNING) != NULL, "got\n%s want the warning\n  %s", rep_text(), want);
		cr_expect(got == 120, "%s: got %g, want 120 (raised to the base)", cases[i].max, got);
	}
	/* equal is fine, and a base with the default max below it warns too */
	struct config cfg;
	setenv("TXMAIL_RETRY_BASE", "7200", 1);
	cr_assert_eq(config_load_report(&cfg, &rep), 0, "%s", rep_text());
	config_free(&cfg);
	unsetenv("TXMAIL_RETRY_BASE");
	cr_expect(rep_find("TXMAIL_RETRY_MAX: 3600 is below TXMAIL_RETRY_BASE (7200)", CONFIG_WARNING) != NULL,
	    "got\n%s", rep_text());
}

/* The body limits: defaults, sizes and durations, and a budget below TXMAIL_MAX_BODY. */
Test(config, http_body_budget_and_timeout)
{
	struct config cfg;

	cr_assert_eq(config_load_report(&cfg, &rep), 0, "got errors:\n%s", rep_text());
	cr_expect_eq(cfg.http_body_budget, (size_t)256 << 20, "budget default: got %zu, want 256 MiB",
	    cfg.http_body_budget);
	cr_expect(cfg.http_body_timeout == 30, "body timeout default: got %g, want 30", cfg.http_body_timeout);
	config_free(&cfg);

	set_vars((const char *const[][2]){
		{ "TXMAIL_MAX_BODY", "4M" },
		{ "TXMAIL_HTTP_BODY_BUDGET", "16M" },
		{ "TXMAIL_HTTP_BODY_TIMEOUT", "1.5" },
		{ NULL, NULL },
	});
	cr_assert_eq(config_load_report(&cfg, &rep), 0, "got errors:\n%s", rep_text());
	cr_expect_eq(cfg.http_body_budget, (size_t)16 << 20, "budget: got %zu, want 16 MiB", cfg.http_body_budget);
	cr_expect(cfg.http_body_timeout == 1.5, "body timeout: got %g, want 1.5", cfg.http_body_timeout);
	config_free(&cfg);

	/* a budget that was set below the largest body: refused, naming both */
	setenv("TXMAIL_HTTP_BODY_BUDGET", "2M", 1);
	cr_expect_neq(config_load_report(&cfg, &rep), 0, "budget 2M < max body 4M: got ok, want an error");
	cr_expect(rep_find("TXMAIL_HTTP_BODY_BUDGET: below TXMAIL_MAX_BODY (4194304 bytes)", CONFIG_ERROR) != NULL,
	    "got\n%s", rep_text());
	config_free(&cfg);

	/* the default budget gives way to a larger TXMAIL_MAX_BODY */
	unsetenv("TXMAIL_HTTP_BODY_BUDGET");
	setenv("TXMAIL_MAX_BODY", "512M", 1);
	cr_assert_eq(config_load_report(&cfg, &rep), 0, "got errors:\n%s", rep_text());
	cr_expect_eq(cfg.http_body_budget, (size_t)512 << 20, "budget: got %zu, want 512 MiB (raised)",
	    cfg.http_body_budget);
	config_free(&cfg);
	unsetenv("TXMAIL_MAX_BODY");
	unsetenv("TXMAIL_HTTP_BODY_TIMEOUT");
	setenv("TXMAIL_HTTP_BODY_TIMEOUT", "0", 1);
	cr_expect_neq(config_load_report(&cfg, &rep), 0, "body timeout 0: got ok, want an error");
	config_free(&cfg);
	unsetenv("TXMAIL_HTTP_BODY_TIMEOUT");
}

/* run --dev's defaults: taken only for unset variables, recorded as source dev. */
Test(config, dev_defaults)
{
	struct config cfg;

	cr_assert_eq(config_load_report_dev(&cfg, &rep, 1), 0, "got errors:\n%s", rep_text());
	cr_expect_eq(cfg.webhook_allow_private, 1, "webhook_allow_private: got %d", cfg.webhook_allow_private);
	cr_expect(cfg.retry_base == 1 && cfg.retry_max == 30 && cfg.rate_limit == 0,
	    "retry %g..%g, rate_limit %g: want 1..30, 0", cfg.retry_base, cfg.retry_max, cfg.rate_limit);
	cr_expect_eq(config_source_of(&cfg, "TXMAIL_WEBHOOK_ALLOW_PRIVATE"), CONFIG_SRC_DEV);
	cr_expect_eq(config_source_of(&cfg, "TXMAIL_RETRY_MAX"), CONFIG_SRC_DEV);
	cr_expect_eq(config_source_of(&cfg, "TXMAIL_RATE_BURST"), CONFIG_SRC_DEFAULT);
	config_free(&cfg);

	/* without dev: the plain defaults */
	cr_assert_eq(config_load_report(&cfg, &rep), 0, "got errors:\n%s", rep_text());
	cr_expect(cfg.webhook_allow_private == 0 && cfg.retry_base == 60 && cfg.retry_max == 3600,
	    "no dev: allow_private %d retry %g..%g", cfg.webhook_allow_private, cfg.retry_base, cfg.retry_max);
	cr_expect_eq(config_source_of(&cfg, "TXMAIL_WEBHOOK_ALLOW_PRIVATE"), CONFIG_SRC_DEFAULT);
	config_free(&cfg);

	/* a variable that is set wins, an explicit 0 included; a dev default gives way silently */
	setenv("TXMAIL_WEBHOOK_ALLOW_PRIVATE", "0", 1);
	setenv("TXMAIL_RETRY_MAX", "0.5", 1);
	cr_assert_eq(config_load_report_dev(&cfg, &rep, 1), 0, "got errors:\n%s", rep_text());
	unsetenv("TXMAIL_WEBHOOK_ALLOW_PRIVATE");
	unsetenv("TXMAIL_RETRY_MAX");
	cr_expect_eq(cfg.webhook_allow_private, 0, "ALLOW_PRIVATE=0 in --dev: got %d", cfg.webhook_allow_private);
	cr_expect_eq(config_source_of(&cfg, "TXMAIL_WEBHOOK_ALLOW_PRIVATE"), CONFIG_SRC_ENV);
	cr_expect(cfg.retry_base == 0.5 && cfg.retry_max == 0.5, "retry %g..%g, want 0.5..0.5",
	    cfg.retry_base, cfg.retry_max);
	cr_expect_eq(rep.nwarnings, 0, "got warnings:\n%s", rep_text());
	config_free(&cfg);
	setenv("TXMAIL_RETRY_BASE", "120", 1);
	cr_assert_eq(config_load_report_dev(&cfg, &rep, 1), 0, "got errors:\n%s", rep_text());
	unsetenv("TXMAIL_RETRY_BASE");
	cr_expect(cfg.retry_base == 120 && cfg.retry_max == 120, "retry %g..%g, want 120..120",
	    cfg.retry_base, cfg.retry_max);
	cr_expect_eq(rep.nwarnings, 0, "got warnings:\n%s", rep_text());
	config_free(&cfg);
}

Test(config, every_problem_collected)
{
	static const char *const want[] = {
		"TXMAIL_LISTEN: invalid listen address",
		"TXMAIL_RETRY_BASE: 0 is out of range",
		"TXMAIL_WORKERS: \"many\" is not a whole number",
		"TXMAIL_DOMAIN_RATE: ",
		"TXMAIL_LOG_LEVEL: ",
		"TXMAIL_BOUNCE_SECRET: required with TXMAIL_BOUNCE_DOMAIN",
	};
	struct config cfg;

	set_vars((const char *const[][2]){
		{ "TXMAIL_LISTEN", "nowhere" },
		{ "TXMAIL_RETRY_BASE", "0" },
		{ "TXMAIL_WORKERS", "many" },
		{ "TXMAIL_DOMAIN_RATE", "gmail.com=lots" },
		{ "TXMAIL_LOG_LEVEL", "chatty" },
		{ "TXMAIL_BOUNCE_DOMAIN", "bounces.example" },
		{ "TXMAIL_RETRY_BSAE", "1" },
		{ NULL, NULL },
	});
	cr_assert_eq(config_load_report(&cfg, &rep), -1, "got success, want errors");
	config_free(&cfg);
	cr_expect_eq(rep.nerrors, 6, "got %zu errors, want 6:\n%s", rep.nerrors, rep_text());
	cr_expect_eq(rep.nwarnings, 1, "got %zu warnings, want 1:\n%s", rep.nwarnings, rep_text());
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect(rep_find(want[i], CONFIG_ERROR) != NULL, "want an error with \"%s\", got\n%s",
		    want[i], rep_text());
	/* config_load: the same errors in one message, the first no longer hides the rest */
	char err[2048];
	cr_assert_neq(config_load(&cfg, err, sizeof(err)), 0);
	config_free(&cfg);
	cr_expect(strstr(err, "TXMAIL_LISTEN") != NULL && strstr(err, "TXMAIL_BOUNCE_SECRET") != NULL &&
	    strstr(err, "TXMAIL_WORKERS") != NULL, "config_load error: got %s", err);
}

struct unknown_case {
	const char *name;
	const char *want;      /* in the warning; NULL: no warning at all */
};

static const struct unknown_case unknown_cases[] = {
	{ "TXMAIL_RETRY_BSAE", "TXMAIL_RETRY_BSAE: unknown variable, ignored; did you mean TXMAIL_RETRY_BASE?" },
	{ "TXMAIL_HTTP_TIMOUT", "did you mean TXMAIL_HTTP_TIMEOUT?" },
	{ "TXMAIL_WORKER", "did you mean TXMAIL_WORKERS?" },
	{ "TXMAIL_retry_max", "did you mean TXMAIL_RETRY_MAX?" },
	{ "TXMAIL_API_KEY_FILE", "did you mean TXMAIL_API_KEYS_FILE?" },
	{ "TXMAIL_SMTP_TIMEOUT_DATE", "did you mean TXMAIL_SMTP_TIMEOUT_DATA?" },
	{ "TXMAIL_COMPLETELY_DIFFERENT", "TXMAIL_COMPLETELY_DIFFERENT: unknown variable, ignored ('txmail config list'" },
	{ "TXMAIL_BIN", "TXMAIL_BIN: unknown variable, ignored (" },
	{ "TXMAIL_LISTEN_FILE", "TXMAIL_LISTEN_FILE: unknown variable, ignored: only secrets have a _FILE form" },
	{ "TXMAIL_RETRY_BASE", NULL },
	{ "TXMAIL_SHUTDOWN_GRACE", NULL },
	{ "TXMAIL_LOG_FORMAT", NULL },
	{ "TXMAIL_SINK_LISTEN", NULL },
};

Test(config, unknown_variables_warned_with_suggestion)
{
	for (size_t i = 0; i < sizeof(unknown_cases) / sizeof(unknown_cases[0]); i++) {
		const struct unknown_case *c = &unknown_cases[i];
		struct config cfg;

		/* a value valid for any of them, so only the name decides */
		setenv(c->name, strstr(c->name, "LISTEN") ? "127.0.0.1:1" : strstr(c->name, "FORMAT") ? "json" : "1", 1);
		cr_assert_eq(config_load_report(&cfg, &rep), 0, "%s: got errors:\n%s", c->name, rep_text());
		config_free(&cfg);
		unsetenv(c->name);
		if (c->want == NULL) {
			cr_expect_eq(rep.nwarnings, 0, "%s: a known name, got warnings:\n%s", c->name, rep_text());
			continue;
		}
		cr_expect_eq(rep.nwarnings, 1, "%s: got %zu warnings, want 1:\n%s", c->name, rep.nwarnings, rep_text());
		cr_expect(rep_find(c->want, CONFIG_WARNING) != NULL, "%s: got\n%s want\n  %s", c->name,
		    rep_text(), c->want);
		if (strstr(c->want, "did you mean") == NULL)
			cr_expect(rep_find("did you mean", CONFIG_WARNING) == NULL, "%s: no suggestion wanted, got\n%s",
			    c->name, rep_text());
	}
}

Test(config, secret_file_forms_are_known)
{
	char path[PATH_MAX];
	struct config cfg;

	secret_file(path, S("k1,k2\n"));
	setenv("TXMAIL_API_KEYS_FILE", path, 1);
	setenv("TXMAIL_WEBHOOK_SECRET_FILE", "", 1);   /* empty: unset, and still a known name */
	cr_assert_eq(config_load_report(&cfg, &rep), 0, "%s", rep_text());
	unlink(path);
	cr_expect_eq(rep.nwarnings, 0, "NAME_FILE of a secret: got warnings:\n%s", rep_text());
	cr_expect_eq(cfg.napi_keys, 2);
	cr_expect_eq(config_source_of(&cfg, "TXMAIL_API_KEYS"), CONFIG_SRC_FILE, "source: got %d, want file",
	    config_source_of(&cfg, "TXMAIL_API_KEYS"));
	cr_expect_eq(config_source_of(&cfg, "TXMAIL_WEBHOOK_SECRET"), CONFIG_SRC_DEFAULT);
	config_free(&cfg);
	setenv("TXMAIL_WORKERS", "3", 1);
	cr_assert_eq(config_load_report(&cfg, &rep), -1, "the file is gone: want an error");
	cr_expect(rep_find("TXMAIL_API_KEYS_FILE: cannot read", CONFIG_ERROR) != NULL, "%s", rep_text());
	cr_expect_eq(config_source_of(&cfg, "TXMAIL_WORKERS"), CONFIG_SRC_ENV);
	cr_expect_eq(config_source_of(&cfg, "TXMAIL_RETRY_BASE"), CONFIG_SRC_DEFAULT);
	cr_expect_eq(cfg.workers, 3, "other variables are still parsed: workers got %d, want 3", cfg.workers);
	config_free(&cfg);
}

/* Run f(out) with out a memory stream; its text in a static buffer. */
static const char *
capture(void (*f)(FILE *, void *), void *arg)
{
	static char *text;
	size_t len;
	FILE *out;

	free(text);
	text = NULL;
	out = open_memstream(&text, &len);
	cr_assert_not_null(out);
	f(out, arg);
	fclose(out);
	return text;
}

static void
list_plain(FILE *out, void *arg)
{
	(void)arg;
	config_list(out, 0);
}

static void
list_markdown(FILE *out, void *arg)
{
	(void)arg;
	config_list(out, 1);
}

Test(config, list_names_every_variable)
{
	static const struct { const char *name, *want; } rows[] = {
		{ "TXMAIL_RETRY_BASE", "| `TXMAIL_RETRY_BASE` | first delay between delivery attempts (0.001..86400 seconds) | `60` (`1` in `--dev`) |\n" },
		{ "TXMAIL_RETRY_MAX", "| `3600` (`30` in `--dev`) |\n" },
		{ "TXMAIL_WEBHOOK_ALLOW_PRIVATE", "| `0` (loopback, private and link-local targets refused; `1` in `--dev`) |\n" },
		{ "TXMAIL_RATE_LIMIT", "(0..1000000 requests per second) | `200` (`0` in `--dev`) |\n" },
		{ "TXMAIL_SHUTDOWN_GRACE", "| `TXMAIL_SHUTDOWN_GRACE` | SIGTERM: how long in-flight SMTP transactions may take before the rest is handed back to the queue (0..3600 seconds) | `25`" },
		{ "TXMAIL_LOG_FORMAT", "| `TXMAIL_LOG_FORMAT` |" },
		{ "TXMAIL_SMTP_TIMEOUT_DOT", "(0.01..86400 seconds) | `600` |\n" },
		{ "TXMAIL_RELAY", "`smtp://[user:pass@]host:port[?tls=none\\|starttls\\|required]`" },
		{ "TXMAIL_RELAY", "secret: also `TXMAIL_RELAY_FILE`" },
	};
	const char *md = capture(list_markdown, NULL), *plain;
	size_t lines = 0;

	for (const char *p = md; *p != '\0'; p++)
		lines += *p == '\n';
	cr_expect(lines > 60, "markdown: got %zu lines, want one per variable and two of header", lines);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		cr_expect(strstr(md, rows[i].want) != NULL, "%s: want \"%s\" in\n%s", rows[i].name, rows[i].want, md);
	plain = capture(list_plain, NULL);
	cr_expect(strchr(plain, '`') == NULL, "plain list holds backticks");
	cr_expect(strstr(plain, "TXMAIL_RETRY_BASE\n    first delay between delivery attempts (0.001..86400 seconds)\n"
	    "    default: 60 (1 in --dev)\n") != NULL, "plain list:\n%s", plain);
}
