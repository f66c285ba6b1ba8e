"""test_webhook_ops.py - webhook endpoints you can operate (issue 17, point 3).

Owns: GET/PATCH /v1/webhooks/{id}, POST .../test, .../rotate, GET
.../deliveries, POST .../deliveries/{event_id}/retry, the default endpoint
(TXMAIL_WEBHOOK_URL) listed as `default` (inspectable and testable; PATCH,
DELETE, rotate 409), pagination of GET /v1/webhooks by id, and an endpoint
disabled after failing for TXMAIL_WEBHOOK_DISABLE_AFTER, then re-enabled and
replayed. Receivers are real HTTP servers that check every signature with
Python's hmac alone (peers/webhook_receiver.py); the rotation's two
signatures are each checked here against the old and the new secret. Every
API answer is validated against the spec, every webhook body against its
schema.

Must never: wait without a deadline, or sleep instead of waiting for a
condition.
"""
import base64
import hashlib
import hmac
import subprocess
import time
import urllib.request

import pytest

import helpers
import spec_check
from helpers import dl, make_key, wait_until
from webhook_receiver import decode_secret


def v1_signatures(att):
    """The v1 signatures (bytes) of one attempt's webhook-signature header."""
    out = []
    for part in (att["signature"] or "").split(" "):
        ver, _, b64 = part.partition(",")
        if ver == "v1" and b64:
            out.append(base64.b64decode(b64))
    return out


def signed_by(att, secret):
    key = decode_secret(secret)
    want = hmac.new(key, b"%s.%s.%s" % (att["webhook_id"].encode(), att["timestamp"].encode(), att["body"]),
                    hashlib.sha256).digest()
    return [hmac.compare_digest(want, s) for s in v1_signatures(att)]


def attempts_for(rx, pred):
    atts, _, _ = rx.snapshot()
    return [a for a in atts if pred(a)]


def wait_attempts(rx, pred, n, timeout, what):
    return wait_until(lambda: (lambda a: a if len(a) >= n else None)(attempts_for(rx, pred)), timeout, what)


def about(mid):
    return lambda a: mid.encode() in a["body"]


def create(c, rx, **extra):
    body = {"url": rx.url}
    body.update(extra)
    r = c.post_json("/v1/webhooks", body)
    assert r.status == 201, "got %r, want 201" % r
    rx.set_secret(r.json["secret"])
    return r.json


def test_endpoint_ops_rotate_test_deliveries(txmail, capi, webhook, receivers, smtp_peer, spec_validator,
                                             txmail_binary, redis):
    rx = receivers()
    ep = create(capi, rx, description="billing hooks", events=["message.delivered"])
    eid = ep["id"]
    r = capi.get("/v1/webhooks/" + eid)
    assert r.status == 200 and r.json["description"] == "billing hooks" and r.json["enabled"] is True, \
        "got %r" % r.json
    assert r.json["events"] == ["message.delivered"] and "secret" not in r.json, "got %r" % r.json

    # the list: by id, `default` (TXMAIL_WEBHOOK_URL) first, paginated
    create(capi, receivers())
    r = capi.get("/v1/webhooks")
    ids = [e["id"] for e in r.json["data"]]
    assert ids[0] == "default" and ids == sorted(ids) and eid in ids and r.json["next_cursor"] is None, \
        "got %r" % r.json
    assert r.json["data"][0]["configured_by"] == "environment" and r.json["data"][0]["url"] == webhook.url
    seen, cursor = [], None
    while True:
        r = capi.get("/v1/webhooks?limit=1" + ("&cursor=" + cursor if cursor else ""))
        assert r.status == 200 and len(r.json["data"]) <= 1, "got %r" % r
        seen += [e["id"] for e in r.json["data"]]
        cursor = r.json["next_cursor"]
        if cursor is None:
            break
    assert seen == ids, "pages gave %r, want %r" % (seen, ids)
    assert capi.get("/v1/webhooks?limit=0").status == 422
    assert capi.get("/v1/webhooks?cursor=bm90LW1pbmU").status == 422

    # PATCH: events, description; unknown members and bad values are 422
    r = capi.request("PATCH", "/v1/webhooks/" + eid,
                     json_body={"events": ["message.delivered", "message.bounced", "webhook.test"],
                                "description": None})
    assert r.status == 200 and r.json["description"] is None, "got %r" % r
    assert sorted(r.json["events"]) == ["message.bounced", "message.delivered", "webhook.test"], "got %r" % r.json
    for bad in ({"colour": "red"}, {"enabled": "yes"}, {"url": "ftp://x/"}, {"events": ["message.opened"]}):
        r = capi.request("PATCH", "/v1/webhooks/" + eid, json_body=bad)
        assert r.status == 422, "PATCH %r: got %r, want 422" % (bad, r)
    # the default endpoint: read and test yes; change no (409)
    assert capi.get("/v1/webhooks/default").status == 200
    assert capi.request("PATCH", "/v1/webhooks/default", json_body={"enabled": False}).status == 409
    assert capi.delete("/v1/webhooks/default").status == 409
    assert capi.post_json("/v1/webhooks/default/rotate", {}).status == 409
    r = capi.post_json("/v1/webhooks/default/test", None)
    assert r.status == 200 and r.json["ok"] is True and r.json["status_code"] == 200, "got %r" % r.json
    webhook.wait_for(lambda evs: [e for e in evs if e["id"] == r.json["event_id"]], dl(10), "default's test")

    # another project sees none of it
    other = spec_check.CheckedClient(txmail.port, spec_validator, key=make_key(txmail_binary, redis, "other"))
    for method, path in (("GET", "/v1/webhooks/" + eid), ("POST", "/v1/webhooks/" + eid + "/test"),
                         ("GET", "/v1/webhooks/" + eid + "/deliveries"), ("GET", "/v1/webhooks/default")):
        r = other.request(method, path)
        assert r.status == 404, "%s %s from another project: got %r, want 404" % (method, path, r)
    for path, body in (("/v1/webhooks/" + eid, {"enabled": False}), ("/v1/webhooks/%s/rotate" % eid, {})):
        r = other.request("PATCH" if "rotate" not in path else "POST", path, json_body=body)
        assert r.status == 404, "%s from another project: got %r, want 404" % (path, r)
    assert other.delete("/v1/webhooks/" + eid).status == 404
    assert [e["id"] for e in other.get("/v1/webhooks").json["data"]] == [], "another project lists endpoints"
    other.close()

    # test: a signed webhook.test now, the receiver's status and time
    r = capi.post_json("/v1/webhooks/" + eid + "/test", None)
    assert r.status == 200 and r.json["ok"] is True and r.json["status_code"] == 200, "got %r" % r.json
    assert r.json["duration_ms"] >= 0 and r.json["error"] is None and r.json["response"] == "ok ", "got %r" % r.json
    test_id = r.json["event_id"]
    evs = rx.wait_for(lambda evs: [e for e in evs if e["id"] == test_id], dl(5), "the test event")
    assert evs[0]["type"] == "webhook.test" and evs[0]["body"]["data"]["endpoint_id"] == eid
    spec_validator.check_webhook("webhook.test", evs[0]["body"])
    # a receiver that is not there: no status, an error
    dead = receivers()
    dead_ep = create(capi, dead)
    dead.stop()
    r = capi.post_json("/v1/webhooks/" + dead_ep["id"] + "/test", None)
    assert r.status == 200 and r.json["ok"] is False and r.json["status_code"] is None and r.json["error"], \
        "got %r" % r.json

    # rotate: both secrets sign during the overlap, then only the new one
    old_secret = rx.secret
    r = capi.post_json("/v1/webhooks/" + eid + "/rotate", {"overlap_seconds": 3})
    assert r.status == 200 and r.json["secret"] != old_secret and r.json["previous_secret_expires_at"], \
        "got %r" % r
    new_secret_ = r.json["secret"]
    rx.set_secret(new_secret_)
    assert capi.post_json("/v1/webhooks/" + eid + "/rotate", {"overlap_seconds": 604801}).status == 422
    m1 = capi.send({"from": "a@example.com", "to": "ok1@example.com", "subject": "s", "text": "t"}).json["id"]
    att = wait_attempts(rx, about(m1), 1, dl(20), "the event during the overlap")[0]
    assert att["valid"] and sorted(signed_by(att, new_secret_)) == [False, True], "got %r" % att["signature"]
    assert sorted(signed_by(att, old_secret)) == [False, True], "the old secret did not sign: %r" % att["signature"]
    until = capi.get("/v1/webhooks/" + eid).json["previous_secret_expires_at"]
    assert until is not None
    wait_until(lambda: capi.get("/v1/webhooks/" + eid).json["previous_secret_expires_at"] is None, dl(10),
               "the overlap to end")
    m2 = capi.send({"from": "a@example.com", "to": "ok2@example.com", "subject": "s", "text": "t"}).json["id"]
    att = wait_attempts(rx, about(m2), 1, dl(20), "the event after the overlap")[0]
    assert att["valid"] and signed_by(att, new_secret_) == [True], "got %r" % att["signature"]
    assert signed_by(att, old_secret) == [False], "the old secret still signs after the overlap"

    # deliveries: newest first, paginated; the test and both events are there
    def deliveries():
        out, cursor = [], None
        while True:
            r = capi.get("/v1/webhooks/%s/deliveries?limit=2%s" % (eid, "&cursor=" + cursor if cursor else ""))
            assert r.status == 200 and len(r.json["data"]) <= 2, "got %r" % r
            out += r.json["data"]
            cursor = r.json["next_cursor"]
            if cursor is None:
                return out
    ev_m2 = rx.wait_events_for(m2, 1, dl(5))[0]["id"]
    d = wait_until(lambda: (lambda x: x if len(x) >= 3 and x[0]["event_id"] == ev_m2 else None)(deliveries()),
                   dl(10), "the deliveries log")
    assert [x["attempted_at"] for x in d] == sorted((x["attempted_at"] for x in d), reverse=True), "not newest first"
    tst = [x for x in d if x["event_id"] == test_id]
    assert len(tst) == 1 and tst[0]["type"] == "webhook.test" and tst[0]["status_code"] == 200 and \
        tst[0]["attempt"] == 1 and tst[0]["response"] == "ok " and tst[0]["next_attempt_at"] is None, "got %r" % tst
    assert d[0]["type"] == "message.delivered" and d[0]["status_code"] == 200, "got %r" % d[0]

    # retry: the same event (same webhook-id) again, now
    before = len(attempts_for(rx, lambda a: a["webhook_id"] == ev_m2))
    r = capi.post_json("/v1/webhooks/%s/deliveries/%s/retry" % (eid, ev_m2), None)
    assert r.status == 200 and r.json["ok"] is True and r.json["event_id"] == ev_m2, "got %r" % r
    assert len(attempts_for(rx, lambda a: a["webhook_id"] == ev_m2)) == before + 1, "the retry did not arrive"
    d = deliveries()
    assert d[0]["event_id"] == ev_m2 and d[0]["attempt"] == 2, "got %r" % d[0]
    assert capi.post_json("/v1/webhooks/%s/deliveries/evt_nope/retry" % eid, None).status == 404
    _, _, failures = rx.snapshot()
    assert failures == [], "got signature/format failures %r" % [f["reason"] for f in failures]


def metric(port, name):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=dl(5)).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_failing_endpoint_disabled_then_replayed(txmail_factory, spec_validator, receivers, smtp_peer):
    t = txmail_factory(extra_env={"TXMAIL_WEBHOOK_DISABLE_AFTER": "1", "TXMAIL_WEBHOOK_RETRY_BASE": "0.1",
                                  "TXMAIL_WEBHOOK_RETRY_MAX": "0.3"})
    c = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
    rx = receivers()
    eid = create(c, rx)["id"]
    rx.fail_first(10 ** 6)
    m1 = c.send({"from": "a@example.com", "to": "d1@example.com", "subject": "s", "text": "t"}).json["id"]
    wait_until(lambda: c.get("/v1/webhooks/" + eid).json["enabled"] is False, dl(20), "the endpoint disabled")
    ep = c.get("/v1/webhooks/" + eid).json
    assert "HTTP 500" in ep["disabled_reason"] and ep["disabled_at"], "got %r" % ep
    assert metric(t.port, "txmail_webhook_endpoints_disabled_total") == 1
    wait_until(lambda: "webhook endpoint disabled" in open(t.log).read(), dl(5), "the warning")
    assert any("level=warn" in line and "webhook endpoint disabled" in line and eid in line
               for line in open(t.log)), "no warn line for the disabled endpoint"
    fails = [x for x in c.get("/v1/webhooks/%s/deliveries" % eid).json["data"] if x["status_code"] == 500]
    assert fails and fails[0]["next_attempt_at"] is not None, "got %r" % fails[:2]

    # disabled: events are kept, not sent
    m2 = c.send({"from": "a@example.com", "to": "d2@example.com", "subject": "s", "text": "t"}).json["id"]
    smtp_peer.wait_for_rcpt("d2@example.com", dl(15))
    wait_until(lambda: c.get("/v1/webhooks/" + eid).json["backlog"] >= 2, dl(10), "both events kept")
    n_before = len(rx.snapshot()[0])

    rx.fail_first(0)
    enabled_at = time.time()
    r = c.request("PATCH", "/v1/webhooks/" + eid, json_body={"enabled": True})
    assert r.status == 200 and r.json["enabled"] is True and r.json["disabled_reason"] is None, "got %r" % r
    for mid in (m1, m2):
        rx.wait_events_for(mid, 1, dl(20))
    assert not [a for a in rx.snapshot()[0][:n_before] if m2.encode() in a["body"]], \
        "an event was sent while the endpoint was disabled"
    assert all(e["at"] >= enabled_at for e in rx.events_for(m2)), "m2 arrived before re-enabling"
    wait_until(lambda: c.get("/v1/webhooks/" + eid).json["backlog"] == 0, dl(10), "the queue drained")
    # disabled by PATCH too: kept, then replayed
    r = c.request("PATCH", "/v1/webhooks/" + eid, json_body={"enabled": False})
    assert r.status == 200 and r.json["enabled"] is False and "PATCH" in r.json["disabled_reason"], "got %r" % r
    m3 = c.send({"from": "a@example.com", "to": "d3@example.com", "subject": "s", "text": "t"}).json["id"]
    wait_until(lambda: c.get("/v1/webhooks/" + eid).json["backlog"] >= 1, dl(15), "m3 kept")
    assert rx.events_for(m3) == []
    assert c.request("PATCH", "/v1/webhooks/" + eid, json_body={"enabled": True}).status == 200
    rx.wait_events_for(m3, 1, dl(20))
    c.close()


def test_readme_ops_snippet(txmail, api, receivers, workdir):
    """README's `ops-webhooks` block, run as written with curl against a real receiver."""
    import subprocess
    from helpers import clean_env
    from test_readme_snippets import need, save
    need("curl", "curl")
    rx = receivers()
    path = save("ops-webhooks", workdir)
    env = clean_env({"TXMAIL_URL": "http://127.0.0.1:%d" % txmail.port, "TXMAIL_KEY": txmail.key,
                     "HOOK_URL": rx.url})
    p = subprocess.run(["sh", path], cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=dl(60))
    assert p.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    out = p.stdout.decode()
    assert '"ok":true' in out.replace(" ", "") or '"ok":false' in out, "got %s" % out
    assert "whsec_" in out and "(shown once)" in out and '"next_cursor":null' in out, "got %s" % out
    tests = attempts_for(rx, lambda a: b'"webhook.test"' in a["body"])
    assert len(tests) == 2 and tests[0]["webhook_id"] == tests[1]["webhook_id"], \
        "want the test event and its retry (same webhook-id), got %r" % [a["webhook_id"] for a in tests]
    eps = [e for e in api.get("/v1/webhooks").json["data"] if e.get("description") == "billing"]
    assert len(eps) == 1 and eps[0]["enabled"] is True and \
        sorted(eps[0]["events"]) == ["message.bounced", "message.failed"], "got %r" % eps


def test_disabled_endpoint_keeps_events_for_the_retention_only(txmail_factory, spec_validator, receivers,
                                                                smtp_peer):
    t = txmail_factory(extra_env={"TXMAIL_WEBHOOK_MAX_AGE": "2"})
    c = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
    rx = receivers()
    eid = create(c, rx)["id"]
    assert c.request("PATCH", "/v1/webhooks/" + eid, json_body={"enabled": False}).status == 200
    gave_up0 = metric(t.port, 'txmail_webhook_attempts_total{result="gave_up"}') or 0
    m = c.send({"from": "a@example.com", "to": "r1@example.com", "subject": "s", "text": "t"}).json["id"]
    smtp_peer.wait_for_rcpt("r1@example.com", dl(15))
    wait_until(lambda: c.get("/v1/webhooks/" + eid).json["backlog"] >= 1, dl(10), "the event kept")
    wait_until(lambda: c.get("/v1/webhooks/" + eid).json["backlog"] == 0, dl(15),
               "the kept event given up after TXMAIL_WEBHOOK_MAX_AGE")
    assert (metric(t.port, 'txmail_webhook_attempts_total{result="gave_up"}') or 0) > gave_up0
    assert c.request("PATCH", "/v1/webhooks/" + eid, json_body={"enabled": True}).status == 200
    m2 = c.send({"from": "a@example.com", "to": "r2@example.com", "subject": "s", "text": "t"}).json["id"]
    rx.wait_events_for(m2, 1, dl(20))
    assert rx.events_for(m) == [], "an event older than the retention was replayed"
    c.close()


def test_test_and_retry_obey_the_address_guard(txmail_factory, spec_validator, webhook):
    """An endpoint stored while TXMAIL_WEBHOOK_ALLOW_PRIVATE was on, the flag then off: .../test and
    .../retry refuse to connect (the same connect-time guard as the dispatcher's), nothing arrives."""
    tx = txmail_factory(extra_env={"TXMAIL_WEBHOOK_URL": None, "TXMAIL_WEBHOOK_SECRET": None})
    c = spec_check.CheckedClient(tx.port, spec_validator, key=tx.key)
    r = c.post_json("/v1/webhooks", {"url": webhook.url})
    assert r.status == 201, "got %r" % r
    eid = r.json["id"]
    webhook.set_secret(r.json["secret"])
    r = c.post_json("/v1/webhooks/%s/test" % eid, None)
    assert r.status == 200 and r.json["ok"] is True, "with the flag: got %r" % r.json
    evt = r.json["event_id"]
    c.close()
    tx.stop()
    assert not tx.problems, "got %r" % tx.problems
    n = len(webhook.snapshot()[0])
    tx2 = txmail_factory(extra_env={"TXMAIL_WEBHOOK_ALLOW_PRIVATE": None, "TXMAIL_WEBHOOK_URL": None,
                                    "TXMAIL_WEBHOOK_SECRET": None})
    c = spec_check.CheckedClient(tx2.port, spec_validator, key=tx2.key)
    for path in ("/v1/webhooks/%s/test" % eid, "/v1/webhooks/%s/deliveries/%s/retry" % (eid, evt)):
        r = c.post_json(path, None)
        assert r.status == 200 and r.json["ok"] is False and r.json["status_code"] is None, "%s: got %r" % (
            path, r.json)
        assert "refused to connect to 127.0.0.1" in r.json["error"] and "loopback" in r.json["error"], \
            "%s: got %r" % (path, r.json)
    assert len(webhook.snapshot()[0]) == n, "the guard let a request through"
    d = c.get("/v1/webhooks/%s/deliveries" % eid).json["data"]
    assert d[0]["status_code"] is None and "refused" in d[0]["error"] and d[0]["attempt"] == 2, "got %r" % d[:2]
    c.close()


def test_sends_are_parked_bounded_and_timed_out(txmail_factory, spec_validator, receivers):
    """.../test waits for the receiver at most TXMAIL_WEBHOOK_TIMEOUT on a thread of its own (the
    connection parked, the HTTP threads free); 16 such sends at once at most, a 17th is 503."""
    import socket
    import threading
    t = txmail_factory(extra_env={"TXMAIL_WEBHOOK_TIMEOUT": "2"})
    c = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    conns, outs, threads = [], [], []
    try:
        r = c.post_json("/v1/webhooks", {"url": "http://127.0.0.1:%d/hang" % hang.getsockname()[1]})
        assert r.status == 201, "got %r" % r
        slow_id = r.json["id"]
        fast = create(c, receivers())["id"]

        def slow():
            c2 = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
            outs.append(c2.post_json("/v1/webhooks/%s/test" % slow_id, None))
            c2.close()
        for _ in range(16):
            th = threading.Thread(target=slow, daemon=True)
            th.start()
            threads.append(th)
        hang.settimeout(dl(10))
        while len(conns) < 16:
            conns.append(hang.accept()[0])   # every slow test connected and waiting
        t0 = time.monotonic()
        r = c.post_json("/v1/webhooks/%s/test" % fast, None)
        assert r.status == 503 and r.headers.get("retry-after") == "1", "the 17th: got %r" % r
        for _ in range(5):
            assert c.get("/v1/webhooks/" + fast).status == 200
        assert time.monotonic() - t0 < 1.5, "the API waited for the parked sends"
        for th in threads:
            th.join(dl(15))
        assert len(outs) == 16
        for r in outs:
            assert r.status == 200 and r.json["ok"] is False and r.json["status_code"] is None, "got %r" % r.json
            assert 1900 <= r.json["duration_ms"] < 6000 and "timed out" in r.json["error"].lower(), \
                "got %r" % r.json
        r = c.post_json("/v1/webhooks/%s/test" % fast, None)
        assert r.status == 200 and r.json["ok"] is True, "after the slow ones: got %r" % r
    finally:
        for x in conns:
            x.close()
        hang.close()
        c.close()


def test_shared_default_endpoint_deliveries_need_admin(txmail_factory, txmail_binary, redis, spec_validator,
                                                        webhook):
    """The default endpoint (TXMAIL_WEBHOOK_URL) getting two projects' events (TXMAIL_WEBHOOK_PROJECTS):
    each project's key sees and tests it, but its deliveries (the other project's event ids and
    types, the receiver's answers to them) and their retries are 403 but for a scope admin key.
    Named for one project alone, that project's key reads them."""
    t = txmail_factory(extra_env={"TXMAIL_WEBHOOK_PROJECTS": "default,b"})
    mine = spec_check.CheckedClient(t.port, spec_validator, key=t.key)   # project default, scope full
    r = mine.post_json("/v1/webhooks/default/test", None)
    assert r.status == 200 and r.json["ok"] is True, "got %r" % r
    evt = r.json["event_id"]
    assert mine.get("/v1/webhooks/default").status == 200
    kb = spec_check.CheckedClient(t.port, spec_validator, key=make_key(txmail_binary, redis, "b"))
    for c in (mine, kb):
        for method, path in (("GET", "/v1/webhooks/default/deliveries"),
                             ("POST", "/v1/webhooks/default/deliveries/%s/retry" % evt)):
            r = c.request(method, path)
            assert r.status == 403 and r.json["error"]["type"] == "forbidden", \
                "%s %s of a shared default endpoint: got %r, want 403" % (method, path, r)
    p = subprocess.run([txmail_binary, "keys", "create", "--name", "ops", "--scope", "admin"],
                       env=helpers.clean_env({"TXMAIL_REDIS_URL": redis.url}), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=dl(20))
    assert p.returncode == 0, p.stderr
    adm = spec_check.CheckedClient(t.port, spec_validator, key=p.stdout.strip())
    r = adm.get("/v1/webhooks/default/deliveries")
    assert r.status == 200 and [d["event_id"] for d in r.json["data"]] == [evt], "admin: got %r" % r
    assert adm.post_json("/v1/webhooks/default/deliveries/%s/retry" % evt, None).status == 200
    for c in (mine, kb, adm):
        c.close()
    t.stop()
    # the default endpoint for project default alone: its own key reads the deliveries
    t2 = txmail_factory(extra_env={"TXMAIL_WEBHOOK_PROJECTS": "default"})
    c = spec_check.CheckedClient(t2.port, spec_validator, key=t2.key)
    assert c.get("/v1/webhooks/default/deliveries").status == 200
    c.close()
