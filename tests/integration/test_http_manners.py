"""test_http_manners.py - HTTP manners (issue 17, point 4).

Owns: RateLimit-Limit / RateLimit-Remaining / RateLimit-Reset on every
answer of a charged request (200, 202, 404, 403, 429 with Retry-After),
Remaining going down one per request, Reset plausible for the bucket
(TXMAIL_RATE_BURST tokens at TXMAIL_RATE_LIMIT a second); the same through
a stored key (auth.lua) as through a TXMAIL_API_KEYS key (ratelimit.lua);
none with TXMAIL_RATE_LIMIT=0, on a 401, nor for an env key while Redis is
down (fail open). X-Request-Id on every answer: kept when sane, replaced
when not, on the error answers (401, 403, 404, 405, 413, 422, 429, 503) and
on the operator routes (/healthz, /readyz, /metrics, the dashboard). ETag
on GET /v1/messages/{id}: 304 with no body when If-None-Match matches, a
new tag once the message changed. Answers go through the spec check.

Must never: wait without a deadline, or depend on the wall clock beyond
the bucket's own refill (the rate is slow enough that a test's requests
do not get a token back in between).
"""
import datetime
import http.client
import re

import spec_check
from helpers import dl, wait_until
from test_keys_cli import keys_cli

MSG = {"from": "a@example.com", "to": "manners@example.com", "subject": "manners", "text": "x"}
NO_SUCH_MSG = "/v1/messages/msg_00000000000000000000000000"
GEN_ID = re.compile(r"^req_[0-9a-z]{26}$")
# 5 tokens, one back every 10 s: no test here runs long enough to see a refill
SLOW = {"TXMAIL_RATE_LIMIT": "0.1", "TXMAIL_RATE_BURST": "5"}


def rl(r):
    """(limit, remaining, reset) of an answer, or None when it has none of the headers."""
    h = [r.headers.get("ratelimit-" + k) for k in ("limit", "remaining", "reset")]
    if h == [None, None, None]:
        return None
    assert None not in h, "got a partial set of RateLimit headers %r" % h
    for v in h:
        assert re.fullmatch(r"[0-9]+", v), "RateLimit header value %r, want digits" % v
    return tuple(int(v) for v in h)


def test_headers_count_down_to_429(txmail_factory, spec_validator):
    t = txmail_factory(extra_env=SLOW)
    c = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
    try:
        got = []
        r = c.send(MSG)
        assert r.status == 202, "got %r" % r
        got.append(rl(r))
        for path in ("/v1/templates", NO_SUCH_MSG, "/v1/suppressions", "/v1/whoami"):
            r = c.get(path)
            assert r.status in (200, 404), "GET %s: got %r" % (path, r)
            got.append(rl(r))
        assert None not in got, "an answer without RateLimit headers: %r" % got
        assert [g[0] for g in got] == [5] * 5, "RateLimit-Limit: got %r, want 5 each time" % got
        assert [g[1] for g in got] == [4, 3, 2, 1, 0], "RateLimit-Remaining: got %r, want 4..0" % got
        # one token back every 10 s: after k of 5 spent, full again in 10 k s (rounded up)
        for k, g in enumerate(got, 1):
            assert 10 * k - 1 <= g[2] <= 10 * k, "after %d requests Reset %d, want about %d" % (k, g[2], 10 * k)
        r = c.get("/v1/templates")
        assert r.status == 429, "6th request: got %r, want 429" % r
        assert r.json["error"]["type"] == "rate_limited", r.json
        ra = int(r.headers["retry-after"])
        assert 1 <= ra <= 10, "Retry-After %d, want 1..10 (one token comes back every 10 s)" % ra
        lim, rem, reset = rl(r)
        assert (lim, rem) == (5, 0), "429: got Limit %d Remaining %d, want 5 and 0" % (lim, rem)
        assert ra <= reset <= 50, "429: Reset %d, want between Retry-After %d and 50" % (reset, ra)
        assert GEN_ID.match(r.headers["x-request-id"]), r.headers
        r = c.get("/v1/templates", headers={"X-Request-Id": "after-the-limit"})
        assert r.status == 429 and r.headers.get("x-request-id") == "after-the-limit", (r, r.headers)
        assert rl(r)[:2] == (5, 0), r.headers
        # a 401 is charged nothing and says nothing about a bucket
        r = c.get("/v1/templates", headers={"Authorization": "Bearer txm_nope"})
        assert r.status == 401 and rl(r) is None, "401: got %r %r" % (r, r.headers)
    finally:
        c.close()


def test_stored_key_and_scope_403(txmail_binary, redis, txmail_factory, spec_validator):
    env = {"TXMAIL_REDIS_URL": redis.url}
    rc, out, err = keys_cli(txmail_binary, env, "create", "--name", "reader", "--scope", "read")
    assert rc == 0, "keys create: exit %d, stderr %r" % (rc, err)
    t = txmail_factory(extra_env=SLOW)
    c = spec_check.CheckedClient(t.port, spec_validator, key=out.strip())
    try:
        r = c.get("/v1/templates")
        assert r.status == 200 and rl(r)[:2] == (5, 4), "got %r %r" % (r, r.headers)
        assert 9 <= rl(r)[2] <= 10, "Reset: got %r, want 10" % (rl(r),)
        r = c.send(MSG)   # scope read may not send: 403, but the token is spent
        assert r.status == 403 and rl(r)[:2] == (5, 3), "got %r %r" % (r, r.headers)
        # the env key's project ("default") is another bucket than the stored key's ("reader")
        e = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
        try:
            r = e.get("/v1/templates")
            assert rl(r)[:2] == (5, 4), "env key: got %r" % (rl(r),)
        finally:
            e.close()
    finally:
        c.close()


def test_no_headers_when_off_or_redis_down(txmail_factory, redis, spec_validator):
    off = txmail_factory(extra_env={"TXMAIL_RATE_LIMIT": "0"})
    c = spec_check.CheckedClient(off.port, spec_validator, key=off.key)
    try:
        for path in ("/v1/templates", NO_SUCH_MSG):
            r = c.get(path)
            assert r.status in (200, 404) and rl(r) is None, "RATE_LIMIT=0 %s: got %r" % (path, r.headers)
    finally:
        c.close()
    on = txmail_factory(extra_env=SLOW)
    c = spec_check.CheckedClient(on.port, spec_validator, key=on.key)
    try:
        assert rl(c.get("/v1/whoami")) is not None
        redis.stop()
        # fail open: the env key still works, and no bucket was charged
        r = c.get("/v1/whoami")
        assert r.status == 200 and rl(r) is None, "Redis down, env key: got %r %r" % (r, r.headers)
        r = c.get("/v1/templates", headers={"X-Request-Id": "down-1"})
        assert r.status == 503 and r.headers.get("x-request-id") == "down-1", "got %r %r" % (r, r.headers)
    finally:
        c.close()


def test_request_id_on_every_answer(txmail_factory, spec_validator):
    t = txmail_factory()   # no rate limit: the 429's id is test_headers_count_down_to_429's
    c = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
    raw = t.client()
    cases = [
        ("GET", "/v1/templates", {}, None, 200),
        ("GET", "/v1/templates", {"Authorization": "Bearer nope"}, None, 401),
        ("GET", "/v1/templates?project=other", {}, None, 403),
        ("GET", "/v1/nothing-here", {}, None, 404),
        ("DELETE", "/v1/templates", {}, None, 405),
        ("GET", "/v1/templates", {"Content-Type": "application/json"}, b"{}", 413),
        ("GET", "/v1/templates?limit=0", {}, None, 422),
        ("GET", "/healthz", {}, None, 200),
        ("GET", "/readyz", {}, None, 200),
        ("GET", "/metrics", {}, None, 200),
        ("GET", "/", {}, None, 200),
        ("GET", "/favicon.ico", {}, None, 204),
    ]
    try:
        for given, want in [("abc-DEF_1.2:3", "abc-DEF_1.2:3"), ("x" * 128, "x" * 128),
                            ("x" * 129, None), ("bad id", None), ("", None), ("é", None)]:
            for method, path, h, body, status in cases:
                client = raw if path in ("/metrics", "/", "/favicon.ico", "/v1/nothing-here") else c
                hdrs = dict(h)
                if given:
                    hdrs["X-Request-Id"] = given
                r = client.request(method, path, body=body, headers=hdrs)
                assert r.status == status, "%s %s: got %r, want %d" % (method, path, r, status)
                got = r.headers.get("x-request-id")
                if want is not None:
                    assert got == want, "%s %s %d: X-Request-Id %r, want the client's %r" % (
                        method, path, status, got, want)
                else:
                    assert got and GEN_ID.match(got), "%s %s %d with X-Request-Id %r: got %r, want req_..." % (
                        method, path, status, given, got)
        # the event stream's answer (headers first, then it stays open)
        conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=dl(10))
        try:
            conn.request("GET", "/v1/events/stream", headers={"Authorization": "Bearer " + t.key,
                                                              "X-Request-Id": "stream-1"})
            sr = conn.getresponse()
            assert sr.status == 200 and sr.getheader("X-Request-Id") == "stream-1", (sr.status, sr.getheaders())
        finally:
            conn.close()
        # two answers without a client id get two ids
        a, b = (c.get("/healthz").headers["x-request-id"] for _ in range(2))
        assert a != b, "two requests got the same id %s" % a
    finally:
        c.close()
        raw.close()


def test_etag_on_a_message(txmail, smtp_peer, spec_validator):
    c = spec_check.CheckedClient(txmail.port, spec_validator, key=txmail.key)
    try:
        later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
        r = c.send(dict(MSG, send_at=later.strftime("%Y-%m-%dT%H:%M:%SZ")))
        assert r.status == 202, r
        sched = r.json["id"]
        r = c.get("/v1/messages/" + sched)
        tag = r.headers.get("etag")
        assert r.status == 200 and tag and re.fullmatch(r'"[0-9a-f]{32}"', tag), "got %r %r" % (r, r.headers)
        r2 = c.get("/v1/messages/" + sched)
        assert r2.headers.get("etag") == tag and r2.body == r.body, "the same message twice: two tags"
        for inm in (tag, "W/" + tag, '"nope", ' + tag, "*"):
            r = c.get("/v1/messages/" + sched, headers={"If-None-Match": inm})
            assert r.status == 304, "If-None-Match %s: got %r, want 304" % (inm, r)
            assert r.body == b"" and r.headers.get("etag") == tag, "304: body %r, ETag %r" % (
                r.body, r.headers.get("etag"))
            assert GEN_ID.match(r.headers.get("x-request-id", "")), r.headers
        for inm in ('"nope"', tag[:-2] + '"', tag + " junk"):
            r = c.get("/v1/messages/" + sched, headers={"If-None-Match": inm})
            assert r.status == 200 and r.json["id"] == sched, "If-None-Match %s: got %r, want 200" % (inm, r)
        # a change (the cancel) makes a new tag: the old one gets the full answer
        assert c.delete("/v1/messages/" + sched).status == 200
        r = c.get("/v1/messages/" + sched, headers={"If-None-Match": tag})
        assert r.status == 200 and r.headers.get("etag") not in (None, tag), "after the cancel: got %r %r" % (
            r, r.headers)
        # a delivered message: the tag settles once it is terminal
        mid = c.send(MSG).json["id"]
        smtp_peer.wait_for_rcpt("manners@example.com", dl(15))
        wait_until(lambda: spec_check.all_terminal(c.get("/v1/messages/" + mid).json), dl(15), "delivered")
        tag = c.get("/v1/messages/" + mid).headers["etag"]
        r = c.get("/v1/messages/" + mid, headers={"If-None-Match": tag})
        assert r.status == 304, "delivered message, its own tag: got %r" % r
        # other routes have no ETag, and a 404 has none
        assert "etag" not in c.get("/v1/templates").headers
        assert "etag" not in c.get(NO_SUCH_MSG, headers={"If-None-Match": "*"}).headers
    finally:
        c.close()
