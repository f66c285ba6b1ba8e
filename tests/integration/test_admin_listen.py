"""test_admin_listen.py - the admin listener (TXMAIL_ADMIN_LISTEN) of every long-running role.

Owns: a real `txmail worker` (real redis-server, the SMTP test peer) answers
GET /healthz, /readyz and /metrics on its admin port, no key, and nothing
else there (404 for the API's routes, 405 for other methods, 413 for a body);
its /metrics counts the delivery it made; /readyz is 503 while Redis is
stopped and 200 once it is back; a delivery loop that stops turning (the
test-only TXMAIL_TEST_WEDGE hook: the engine thread really blocks while a
file exists) turns /readyz 503 naming the loop, holds the delivery back, and
/readyz is 200 again once it runs; `txmail bounce` serves the same three on
its admin port; `txmail api` keeps serving them on its own port and opens an
admin port only when TXMAIL_ADMIN_LISTEN is set, as does `txmail run`;
TXMAIL_ADMIN_LISTEN=off turns the worker's off.

Must never: use port 9090 (each process gets a free port), wait without a
deadline.
"""
import os
import re

import logparse
from helpers import Client, dl, free_port, raw_http, send_text, tail, wait_status, wait_until

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+]+|NaN|\+Inf|-Inf)$')


def samples(text):
    """[(name, labels, value)] of an exposition text; fails on a malformed sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, "got malformed sample line %r" % line
        out.append((m.group(1), m.group(2) or "", float(m.group(3))))
    return out


def admin_env(**extra):
    env = {"TXMAIL_ADMIN_LISTEN": "127.0.0.1:%d" % free_port()}
    env.update(extra)
    return env


def port_of(env):
    return int(env["TXMAIL_ADMIN_LISTEN"].rsplit(":", 1)[1])


def readyz(c):
    """(status, body json) of GET /readyz; (None, None) while nothing listens."""
    try:
        r = c.get("/readyz", auth=False)
    except OSError:
        c.close()
        return None, None
    return r.status, r.json


def wait_ready(c, t, want=200, timeout=20, what=None):
    """Wait for /readyz == want on client c of process t; returns the last body."""
    last = {}

    def check():
        assert t.alive(), "%s exited: %s" % (t.name, tail(t.log, 40))
        st, body = readyz(c)
        last["r"] = (st, body)
        return body if st == want else None
    return wait_until(check, dl(timeout), what or "%s /readyz %d" % (t.name, want), interval=0.05,
                      diag=lambda: "last /readyz: %r" % (last.get("r"),))


def check_three_routes(c, name):
    """/healthz, /readyz, /metrics answer without a key on c; the metrics parse."""
    r = c.get("/healthz", auth=False)
    assert r.status == 200 and r.json == {"status": "ok"}, "%s /healthz: got %r" % (name, r)
    r = c.get("/readyz", auth=False)
    assert r.status == 200 and r.json == {"status": "ready"}, "%s /readyz: got %r" % (name, r)
    r = c.get("/metrics", auth=False)
    assert r.status == 200, "%s /metrics: got %r" % (name, r)
    ctype = r.headers.get("content-type", "")
    assert ctype.startswith("text/plain"), "%s /metrics Content-Type: got %r" % (name, ctype)
    got = samples(r.body.decode("utf-8"))
    assert ("txmail_redis_up", "", 1.0) in got, "%s /metrics: no txmail_redis_up 1 in %r" % (name, got[:20])
    return got


def delivered(got):
    return sum(v for n, labels, v in got if n == "txmail_recipients_total" and 'status="delivered"' in labels)


def test_worker_admin_port_serves_probes_and_metrics(txmail_factory, smtp_peer):
    api = txmail_factory(args=("api",))
    env = admin_env()
    worker = txmail_factory(args=("worker",), http=False, extra_env=env, name="txmail worker")
    c = Client(port_of(env), timeout=dl(5))
    try:
        wait_ready(c, worker)
        got = check_three_routes(c, "worker")
        assert delivered(got) == 0, "worker /metrics before any delivery: got %r" % delivered(got)
        # the admin port is not the API: no /v1, no dashboard, GET only, no body
        assert c.get("/v1/messages/msg_x", auth=False).status == 404
        assert c.get("/", auth=False).status == 404
        r = c.request("POST", "/readyz", auth=False)
        assert r.status == 405 and "GET" in r.headers.get("allow", ""), "POST /readyz: got %r" % r
        status, _, _ = raw_http(port_of(env), b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                b"\r\nhello")
        assert status == 413, "GET /metrics with a body: got %r, want 413" % status

        a = api.client()
        try:
            mid = send_text(a, "admin-metrics@example.com", "admin port")
            wait_status(a, mid, "delivered", dl(20))
        finally:
            a.close()
        wait_until(lambda: delivered(check_three_routes(c, "worker")) >= 1, dl(5),
                   "the worker's /metrics counting the delivery")
    finally:
        c.close()


def test_worker_readyz_follows_redis(txmail_factory, redis):
    env = admin_env()
    worker = txmail_factory(args=("worker",), http=False, extra_env=env, name="txmail worker")
    c = Client(port_of(env), timeout=dl(10))
    try:
        wait_ready(c, worker)
        redis.kill9()
        body = wait_ready(c, worker, 503, what="worker /readyz 503 with Redis stopped")
        assert "storage" in body["error"]["message"], "503 body: got %r" % body
        assert c.get("/healthz", auth=False).status == 200, "/healthz must not depend on Redis"
        redis.start()
        wait_ready(c, worker, 200, what="worker /readyz 200 with Redis back")
    finally:
        c.close()


def test_wedged_delivery_loop_turns_worker_unready(txmail_factory, workdir, smtp_peer):
    wedge = os.path.join(workdir, "wedge-engine")
    # the engine's bound: max(TXMAIL_LOOP_STALL 1 s, 3 x its 1 s round) = 3 s
    env = admin_env(TXMAIL_TEST_WEDGE="delivery.0.engine:" + wedge, TXMAIL_LOOP_STALL="1",
                    TXMAIL_WORKERS="1")
    api = txmail_factory(args=("api",))
    worker = txmail_factory(args=("worker",), http=False, extra_env=env, name="txmail worker")
    c = Client(port_of(env), timeout=dl(5))
    a = api.client()
    try:
        wait_ready(c, worker)
        open(wedge, "w").close()
        body = wait_ready(c, worker, 503, timeout=15, what="worker /readyz 503 with the engine wedged")
        msg = body["error"]["message"]
        assert "delivery.0.engine" in msg, "503 message: got %r, want the wedged loop named" % msg
        for other in ("feeder", "recorder", "scheduler", "webhooks"):
            assert other not in msg, "503 message names a loop that runs: %r" % msg
        assert c.get("/healthz", auth=False).status == 200, "/healthz must stay 200 (liveness)"
        # it is a real stall: a message is not delivered while the engine does not turn
        mid = send_text(a, "wedged@example.com", "wedged")
        r = a.get("/v1/messages/" + mid)
        assert r.json["recipients"][0]["status"] != "delivered", "delivered while wedged: %r" % r.json
        os.unlink(wedge)
        wait_ready(c, worker, 200, what="worker /readyz 200 once the engine runs again")
        wait_status(a, mid, "delivered", dl(20))
        recs = logparse.records(worker.log, "loop stalled, /readyz answers 503")
        assert [r.get("loop") for r in recs] == ["delivery.0.engine"], "stall log lines: got %r" % recs
        assert [r.get("loop") for r in logparse.records(worker.log, "stalled loop runs again")] == \
            ["delivery.0.engine"], "no recovery log line"
    finally:
        a.close()
        c.close()
        if os.path.exists(wedge):
            os.unlink(wedge)


def test_bounce_role_serves_admin_routes(txmail_factory, redis):
    env = admin_env(TXMAIL_BOUNCE_DOMAIN="bounces.example", TXMAIL_BOUNCE_SECRET="0123456789abcdef0123",
                    TXMAIL_BOUNCE_LISTEN="127.0.0.1:%d" % free_port())
    t = txmail_factory(args=("bounce",), http=False, extra_env=env, name="txmail bounce")
    c = Client(port_of(env), timeout=dl(5))
    try:
        wait_ready(c, t)
        check_three_routes(c, "bounce")
    finally:
        c.close()


def test_api_serves_them_on_its_port_and_admin_only_when_set(txmail_factory):
    api = txmail_factory(args=("api",))
    c = api.client()
    try:
        check_three_routes(c, "api")
    finally:
        c.close()
    assert logparse.records(api.log, "admin listening") == [], "api opened an admin port unasked"
    env = admin_env()
    api2 = txmail_factory(args=("api",), extra_env=env)
    c = Client(port_of(env), timeout=dl(5))
    try:
        check_three_routes(c, "api admin port")
        assert c.get("/v1/templates", auth=False).status == 404
    finally:
        c.close()
    assert len(logparse.records(api2.log, "admin listening")) == 1


def test_run_opens_admin_when_set(txmail_factory):
    env = admin_env()
    t = txmail_factory(extra_env=env)    # `run`: API, worker loops, scheduler, webhooks
    c = Client(port_of(env), timeout=dl(5))
    try:
        check_three_routes(c, "run admin port")
    finally:
        c.close()
    assert len(logparse.records(t.log, "admin listening")) == 1


def test_worker_admin_off(txmail_factory):
    worker = txmail_factory(args=("worker",), http=False, extra_env={"TXMAIL_ADMIN_LISTEN": "off"},
                            name="txmail worker")
    wait_until(lambda: logparse.records(worker.log, "txmail ready"), dl(10), "worker ready",
               diag=lambda: tail(worker.log, 30))
    assert worker.alive()
    assert logparse.records(worker.log, "admin listening") == [], "TXMAIL_ADMIN_LISTEN=off opened one"
