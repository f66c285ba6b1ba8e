/*
 * netguard.h - the webhook target address guard (SSRF protection).
 *
 * Owns the decision "may txmail open a connection to this address": loopback,
 * private (RFC 1918, fc00::/7), link-local, unspecified, multicast, CGNAT
 * (100.64/10) and reserved addresses are refused unless allow_private is set
 * (TXMAIL_WEBHOOK_ALLOW_PRIVATE=1). IPv4-mapped, IPv4-compatible and NAT64
 * (64:ff9b::/96) IPv6 addresses are judged by the IPv4 address they carry.
 * It is checked twice: when a URL is configured (netguard_url_check: IP
 * literals, and names that resolve only to refused addresses) and at connect
 * time after DNS resolution (webhook_request.c, so DNS rebinding cannot
 * bypass it). The connect-time check sees only the address txmail itself
 * connects to, so webhook_request.c turns libcurl's environment proxies off
 * and config.c accepts TXMAIL_WEBHOOK_PROXY only with the guard off (the
 * proxy then decides).
 * Never opens a connection itself.
 */
#ifndef SERVER_NETGUARD_H
#define SERVER_NETGUARD_H

#include <stddef.h>
#include <sys/socket.h>

/* default bound on the name lookup of netguard_url_check */
#define NETGUARD_RESOLVE_MS 2000

/*
 * netguard_addr_class - NULL for a public (allowed) address, else a short name
 * of the refused class ("loopback", "private", "link-local", "unspecified",
 * "multicast", "cgnat", "reserved", "not an IP address"). sa is a sockaddr_in
 * or sockaddr_in6 (by sa_family); NULL gives "not an IP address".
 */
const char *netguard_addr_class(const struct sockaddr *sa);

/* netguard_addr_allowed - 1 when a connection to sa is allowed, else 0. */
int netguard_addr_allowed(const struct sockaddr *sa, int allow_private);

/*
 * netguard_url_check - the host of an http(s) URL: 0 when allowed, -1 with a
 * message in why when the host is an IP literal of a refused class or a name
 * whose addresses are all refused. A name that does not resolve, or whose
 * lookup takes longer than timeout_ms, is allowed: the connect-time check
 * still applies, and a passing DNS failure must not refuse a good URL.
 * With allow_private this returns 0 without any lookup.
 */
int netguard_url_check(const char *url, int allow_private, int timeout_ms,
    char *why, size_t whylen);

#endif
