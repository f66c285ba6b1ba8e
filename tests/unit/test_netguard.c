/*
 * test_netguard.c - the webhook target address guard: address classes for
 * IPv4, IPv6 and IPv4-carrying IPv6, the allow_private switch, and URL checks
 * on IP literals (no DNS: names are not resolved here except "localhost").
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "../../server/netguard.h"

static void addr_of(const char *ip, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, ip, &a->sin6_addr), 1, "bad test address %s", ip);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, ip, &a->sin_addr), 1, "bad test address %s", ip);
	}
}

Test(netguard, addr_classes)
{
	static const struct { const char *ip, *cls; } cases[] = {
		{ "8.8.8.8", NULL },
		{ "93.184.216.34", NULL },
		{ "0.0.0.0", "unspecified" },
		{ "0.1.2.3", "unspecified" },
		{ "127.0.0.1", "loopback" },
		{ "127.255.255.254", "loopback" },
		{ "10.0.0.1", "private" },
		{ "10.255.255.255", "private" },
		{ "172.15.255.255", NULL },
		{ "172.16.0.1", "private" },
		{ "172.31.255.255", "private" },
		{ "172.32.0.0", NULL },
		{ "192.168.1.1", "private" },
		{ "192.169.0.1", NULL },
		{ "169.254.169.254", "link-local" },
		{ "100.63.255.255", NULL },
		{ "100.64.0.1", "cgnat" },
		{ "100.127.255.255", "cgnat" },
		{ "100.128.0.0", NULL },
		{ "224.0.0.1", "multicast" },
		{ "239.255.255.250", "multicast" },
		{ "240.0.0.1", "reserved" },
		{ "255.255.255.255", "reserved" },
		{ "2606:2800:220:1:248:1893:25c8:1946", NULL },
		{ "2001:4860:4860::8888", NULL },
		{ "::", "unspecified" },
		{ "::1", "loopback" },
		{ "fc00::1", "private" },
		{ "fd12:3456::1", "private" },
		{ "fe80::1", "link-local" },
		{ "febf::1", "link-local" },
		{ "fec0::1", "private" },
		{ "ff02::1", "multicast" },
		{ "::ffff:127.0.0.1", "loopback" },
		{ "::ffff:10.1.2.3", "private" },
		{ "::ffff:169.254.169.254", "link-local" },
		{ "::ffff:8.8.8.8", NULL },
		{ "64:ff9b::a00:1", "private" },
		{ "64:ff9b::808:808", NULL },
		{ "::127.0.0.1", "loopback" },
	};
	struct sockaddr_storage ss;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got;

		addr_of(cases[i].ip, &ss);
		got = netguard_addr_class((struct sockaddr *)&ss);
		if (cases[i].cls == NULL)
			cr_expect_null(got, "%s: got %s, want public", cases[i].ip, got);
		else
			cr_expect(got != NULL && strcmp(got, cases[i].cls) == 0, "%s: got %s, want %s",
			    cases[i].ip, got ? got : "public", cases[i].cls);
		cr_expect_eq(netguard_addr_allowed((struct sockaddr *)&ss, 0), cases[i].cls == NULL,
		    "%s allowed: got %d, want %d", cases[i].ip,
		    netguard_addr_allowed((struct sockaddr *)&ss, 0), cases[i].cls == NULL);
		cr_expect_eq(netguard_addr_allowed((struct sockaddr *)&ss, 1), 1,
		    "%s allowed with allow_private: got 0, want 1", cases[i].ip);
	}
}

Test(netguard, non_ip_refused)
{
	struct sockaddr sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNIX;
	cr_expect_eq(netguard_addr_allowed(&sa, 1), 0, "AF_UNIX: got allowed, want refused");
	cr_expect_eq(netguard_addr_allowed(NULL, 1), 0, "NULL: got allowed, want refused");
	cr_expect_str_eq(netguard_addr_class(NULL), "not an IP address",
	    "NULL class: got %s, want not an IP address", netguard_addr_class(NULL));
}

Test(netguard, url_check)
{
	static const struct { const char *url; int allow, want; } cases[] = {
		{ "http://127.0.0.1:8080/hook", 0, -1 },
		{ "http://127.0.0.1:8080/hook", 1, 0 },
		{ "http://10.0.0.1/", 0, -1 },
		{ "https://192.168.0.10/x", 0, -1 },
		{ "http://169.254.169.254/latest/meta-data/", 0, -1 },
		{ "http://100.64.1.1/", 0, -1 },
		{ "http://[::1]:9000/h", 0, -1 },
		{ "http://[fe80::1%25eth0]/h", 0, -1 },
		{ "http://[::ffff:127.0.0.1]/h", 0, -1 },
		{ "http://[fd00::5]/h", 0, -1 },
		{ "http://0.0.0.0/", 0, -1 },
		{ "http://8.8.8.8/hook", 0, 0 },
		{ "https://[2001:4860:4860::8888]/hook", 0, 0 },
		{ "http://localhost:8080/hook", 0, -1 },
		{ "http://localhost:8080/hook", 1, 0 },
		{ "not a url", 0, -1 },
	};
	char why[512];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got;

		why[0] = '\0';
		got = netguard_url_check(cases[i].url, cases[i].allow, 2000, why, sizeof(why));
		cr_expect_eq(got, cases[i].want, "%s (allow %d): got %d (%s), want %d", cases[i].url,
		    cases[i].allow, got, why, cases[i].want);
		if (got != 0)
			cr_expect(why[0] != '\0', "%s: got empty reason, want one", cases[i].url);
	}
}
