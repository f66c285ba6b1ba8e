/*
 * test_verp.c - VERP tokens: round trip, forged and altered tokens, case,
 * foreign domains and malformed local parts; both token forms (recipient
 * level and message level).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../server/verp.h"

#define SECRET "test-bounce-secret-0123456789"
#define SLEN (sizeof(SECRET) - 1)
#define ID "msg_01jd0x4mq7r2v8k3n5p6s9t0wy"

Test(verp, round_trip)
{
	static const int idxs[] = { 0, 1, 9, 10, 49, 99999 };
	char addr[VERP_ADDR_MAX + 1], id[64];
	size_t i;

	for (i = 0; i < sizeof(idxs) / sizeof(idxs[0]); i++) {
		int idx = -1, rc;

		rc = verp_make(SECRET, SLEN, "bounce.example.com", ID, idxs[i], addr, sizeof(addr));
		cr_assert_eq(rc, VERP_OK, "make idx %d: got %d, want 0", idxs[i], rc);
		cr_assert_eq(strncmp(addr, "bounces+" ID ".", 8 + strlen(ID) + 1), 0,
		    "make: got %s, want bounces+%s.<idx>.<mac>@...", addr, ID);
		rc = verp_parse(SECRET, SLEN, "bounce.example.com", addr, id, sizeof(id), &idx);
		cr_assert_eq(rc, VERP_OK, "parse %s: got %d, want 0", addr, rc);
		cr_assert_str_eq(id, ID, "parse id: got %s, want %s", id, ID);
		cr_assert_eq(idx, idxs[i], "parse idx: got %d, want %d", idx, idxs[i]);
	}
}

Test(verp, mac_is_hmac_prefix)
{
	/* hmac.new(b"k", b"m.0", hashlib.sha256).hexdigest()[:10], from Python */
	char addr[128];

	cr_assert_eq(verp_make("k", 1, "d", "m", 0, addr, sizeof(addr)), VERP_OK);
	cr_assert_str_eq(addr, "bounces+m.0.354bf4c794@d", "got %s, want bounces+m.0.354bf4c794@d", addr);
}

Test(verp, case_insensitive)
{
	char addr[VERP_ADDR_MAX + 1], up[VERP_ADDR_MAX + 1], id[64];
	int idx = -1, rc;
	size_t i;

	cr_assert_eq(verp_make(SECRET, SLEN, "bounce.example.com", ID, 3, addr, sizeof(addr)), VERP_OK);
	for (i = 0; addr[i]; i++)
		up[i] = (addr[i] >= 'a' && addr[i] <= 'z') ? (char)(addr[i] - 32) : addr[i];
	up[i] = '\0';
	rc = verp_parse(SECRET, SLEN, "bounce.example.com", up, id, sizeof(id), &idx);
	cr_assert_eq(rc, VERP_OK, "parse %s: got %d, want 0", up, rc);
	cr_assert_str_eq(id, ID, "got %s, want %s", id, ID);
	cr_assert_eq(idx, 3, "got %d, want 3", idx);
}

Test(verp, refused)
{
	char good[VERP_ADDR_MAX + 1], id[64];
	char *mac;
	int idx, rc;

	cr_assert_eq(verp_make(SECRET, SLEN, "bounce.example.com", ID, 2, good, sizeof(good)), VERP_OK);
	mac = strchr(good, '@') - VERP_MAC_LEN;

	struct { const char *name; char addr[VERP_ADDR_MAX + 64]; int want; } cases[12];
	size_t n = 0, i;

	/* altered MAC: flip its first character */
	snprintf(cases[n].addr, sizeof(cases[n].addr), "%s", good);
	cases[n].addr[mac - good] = mac[0] == '0' ? '1' : '0';
	cases[n].name = "altered mac";
	cases[n++].want = VERP_ERR_MAC;
	/* another recipient index with the same MAC */
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces+%s.3.%.*s@bounce.example.com",
	    ID, VERP_MAC_LEN, mac);
	cases[n].name = "other index";
	cases[n++].want = VERP_ERR_MAC;
	/* another message id with the same MAC */
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces+msg_01jd0x4mq7r2v8k3n5p6s9t0wz.2.%.*s@bounce.example.com",
	    VERP_MAC_LEN, mac);
	cases[n].name = "other id";
	cases[n++].want = VERP_ERR_MAC;
	snprintf(cases[n].addr, sizeof(cases[n].addr), "%.*s@other.example.com",
	    (int)(strchr(good, '@') - good), good);
	cases[n].name = "other domain";
	cases[n++].want = VERP_ERR_NOT_OURS;
	snprintf(cases[n].addr, sizeof(cases[n].addr), "postmaster@bounce.example.com");
	cases[n].name = "no prefix";
	cases[n++].want = VERP_ERR_NOT_OURS;
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces@bounce.example.com");
	cases[n].name = "bare bounces";
	cases[n++].want = VERP_ERR_NOT_OURS;
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces+%s@bounce.example.com", ID);
	cases[n].name = "no index, no mac";
	cases[n++].want = VERP_ERR_SYNTAX;
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces+%s.x.%.*s@bounce.example.com",
	    ID, VERP_MAC_LEN, mac);
	cases[n].name = "index not a number";
	cases[n++].want = VERP_ERR_SYNTAX;
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces+%s.02.%.*s@bounce.example.com",
	    ID, VERP_MAC_LEN, mac);
	cases[n].name = "leading zero";
	cases[n++].want = VERP_ERR_SYNTAX;
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces+%s.2.%.*s@bounce.example.com",
	    ID, VERP_MAC_LEN - 1, mac);
	cases[n].name = "short mac";
	cases[n++].want = VERP_ERR_SYNTAX;
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces+.2.%.*s@bounce.example.com",
	    VERP_MAC_LEN, mac);
	cases[n].name = "empty id";
	cases[n++].want = VERP_ERR_SYNTAX;
	snprintf(cases[n].addr, sizeof(cases[n].addr), "%s", "bounces+a.b.c.0.0123456789@bounce.example.com");
	cases[n].name = "dotted id";
	cases[n++].want = VERP_ERR_SYNTAX;

	for (i = 0; i < n; i++) {
		idx = -7;
		rc = verp_parse(SECRET, SLEN, "bounce.example.com", cases[i].addr, id, sizeof(id), &idx);
		cr_expect_eq(rc, cases[i].want, "%s (%s): got %d, want %d", cases[i].name,
		    cases[i].addr, rc, cases[i].want);
		cr_expect_eq(idx, -7, "%s: idx written on failure: got %d", cases[i].name, idx);
	}
	/* a different secret refuses a good token */
	rc = verp_parse("other", 5, "bounce.example.com", good, id, sizeof(id), &idx);
	cr_expect_eq(rc, VERP_ERR_MAC, "other secret: got %d, want %d", rc, VERP_ERR_MAC);
}

Test(verp, make_rejects_bad_input)
{
	char out[VERP_ADDR_MAX + 1], tiny[16];

	cr_expect_eq(verp_make("", 0, "d", ID, 0, out, sizeof(out)), VERP_ERR_ARG, "empty secret");
	cr_expect_eq(verp_make(SECRET, SLEN, "", ID, 0, out, sizeof(out)), VERP_ERR_ARG, "empty domain");
	cr_expect_eq(verp_make(SECRET, SLEN, "d", "a.b", 0, out, sizeof(out)), VERP_ERR_ARG, "dotted id");
	cr_expect_eq(verp_make(SECRET, SLEN, "d", ID, -2, out, sizeof(out)), VERP_ERR_ARG, "negative idx");
	cr_expect_eq(verp_make(SECRET, SLEN, "d", ID, 100000, out, sizeof(out)), VERP_ERR_ARG, "idx too big");
	cr_expect_eq(verp_make(SECRET, SLEN, "d", ID, 0, tiny, sizeof(tiny)), VERP_ERR_SPACE, "small buffer");
	cr_expect_eq(tiny[0], '\0', "small buffer: got %s, want empty", tiny);
}

Test(verp, message_level_round_trip)
{
	static const char *const ids[] = { ID, "m", "a-b_c" };
	char addr[VERP_ADDR_MAX + 1], want[VERP_ADDR_MAX + 1], id[64];
	size_t i;

	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		int idx = 7, rc;

		rc = verp_make(SECRET, SLEN, "bounce.example.com", ids[i], VERP_IDX_MESSAGE, addr, sizeof(addr));
		cr_assert_eq(rc, VERP_OK, "make %s: got %d, want 0", ids[i], rc);
		/* bounces+<id>.<mac>@domain: exactly one dot in the local part */
		snprintf(want, sizeof(want), "bounces+%s.", ids[i]);
		cr_assert_eq(strncmp(addr, want, strlen(want)), 0, "make: got %s, want %s<mac>@...", addr, want);
		cr_assert_eq(strlen(addr), strlen(want) + VERP_MAC_LEN + strlen("@bounce.example.com"),
		    "make: got %s, want one dot and a %d-char mac", addr, VERP_MAC_LEN);
		rc = verp_parse(SECRET, SLEN, "bounce.example.com", addr, id, sizeof(id), &idx);
		cr_assert_eq(rc, VERP_OK, "parse %s: got %d, want 0", addr, rc);
		cr_assert_str_eq(id, ids[i], "parse id: got %s, want %s", id, ids[i]);
		cr_assert_eq(idx, VERP_IDX_MESSAGE, "parse idx: got %d, want %d", idx, VERP_IDX_MESSAGE);
	}
}

Test(verp, message_level_mac_is_hmac_prefix)
{
	/* hmac.new(b"k", b"m", hashlib.sha256).hexdigest()[:10], from Python */
	char addr[128], id[8];
	int idx = 0;

	cr_assert_eq(verp_make("k", 1, "d", "m", VERP_IDX_MESSAGE, addr, sizeof(addr)), VERP_OK);
	cr_assert_str_eq(addr, "bounces+m.b60090e305@d", "got %s, want bounces+m.b60090e305@d", addr);
	cr_assert_eq(verp_parse("k", 1, "D", "BOUNCES+M.B60090E305@D", id, sizeof(id), &idx), VERP_OK,
	    "upper case message-level token refused");
	cr_assert_eq(idx, VERP_IDX_MESSAGE, "got %d, want %d", idx, VERP_IDX_MESSAGE);
}

Test(verp, message_level_refused)
{
	char msg[VERP_ADDR_MAX + 1], rcpt[VERP_ADDR_MAX + 1], id[64];
	const char *mmac, *rmac;
	int idx, rc;
	size_t i, n = 0;
	struct { const char *name; char addr[VERP_ADDR_MAX + 64]; int want; } cases[6];

	cr_assert_eq(verp_make(SECRET, SLEN, "bounce.example.com", ID, VERP_IDX_MESSAGE, msg, sizeof(msg)), VERP_OK);
	cr_assert_eq(verp_make(SECRET, SLEN, "bounce.example.com", ID, 0, rcpt, sizeof(rcpt)), VERP_OK);
	mmac = strchr(msg, '@') - VERP_MAC_LEN;
	rmac = strchr(rcpt, '@') - VERP_MAC_LEN;
	cr_assert_neq(strncmp(mmac, rmac, VERP_MAC_LEN), 0, "message and recipient MACs agree: %s %s", msg, rcpt);

	snprintf(cases[n].addr, sizeof(cases[n].addr), "%s", msg);
	cases[n].addr[mmac - msg] = mmac[0] == '0' ? '1' : '0';
	cases[n].name = "altered mac";
	cases[n++].want = VERP_ERR_MAC;
	/* a recipient-level MAC presented as a message-level token */
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces+%s.%.*s@bounce.example.com",
	    ID, VERP_MAC_LEN, rmac);
	cases[n].name = "recipient mac without index";
	cases[n++].want = VERP_ERR_MAC;
	/* the message-level MAC with an index added */
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces+%s.0.%.*s@bounce.example.com",
	    ID, VERP_MAC_LEN, mmac);
	cases[n].name = "message mac with index";
	cases[n++].want = VERP_ERR_MAC;
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces+msg_01jd0x4mq7r2v8k3n5p6s9t0wz.%.*s@bounce.example.com",
	    VERP_MAC_LEN, mmac);
	cases[n].name = "other id";
	cases[n++].want = VERP_ERR_MAC;
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces+%s.%.*s@bounce.example.com",
	    ID, VERP_MAC_LEN - 1, mmac);
	cases[n].name = "short mac";
	cases[n++].want = VERP_ERR_SYNTAX;
	snprintf(cases[n].addr, sizeof(cases[n].addr), "bounces+%s.%.*sz@bounce.example.com",
	    ID, VERP_MAC_LEN - 1, mmac);
	cases[n].name = "mac not hex";
	cases[n++].want = VERP_ERR_SYNTAX;

	for (i = 0; i < n; i++) {
		idx = -7;
		rc = verp_parse(SECRET, SLEN, "bounce.example.com", cases[i].addr, id, sizeof(id), &idx);
		cr_expect_eq(rc, cases[i].want, "%s (%s): got %d, want %d", cases[i].name,
		    cases[i].addr, rc, cases[i].want);
		cr_expect_eq(idx, -7, "%s: idx written on failure: got %d", cases[i].name, idx);
	}
	rc = verp_parse("other", 5, "bounce.example.com", msg, id, sizeof(id), &idx);
	cr_expect_eq(rc, VERP_ERR_MAC, "other secret: got %d, want %d", rc, VERP_ERR_MAC);
}
