"""test_accept_pipe.py - sends wait for Redis on the accept pipe, not on an HTTP thread.

Owns: server/enqpipe.c and the deferred answer in http.c (issue 13). An
HTTP thread that has a send ready suspends its connection and hands the
enqueue to the pipe, which writes every waiting enqueue to Redis together;
the thread goes on serving other clients meanwhile. Shown with one HTTP
thread and Redis holding every script (CLIENT PAUSE ... WRITE: reads and
PING still answer, EVALSHA waits): while a send is held inside Redis the
same thread still answers /healthz and takes more sends; once Redis lets
go every send is answered 202 and stored, each exactly once. A SIGTERM
while sends are parked answers them before the process exits (the drain
waits for them), cleanly (sanitizers, exit status: the fixture's checks).

How: the Redis CLIENT LIST shows a client blocked by the pause (flags b,
cmd evalsha) once a send is inside Redis; everything else is ordering,
not timing: /healthz must come back while that client is still blocked.

Must never: wait without a deadline, or leave Redis paused (the pause is
lifted in a finally).
"""
import concurrent.futures
import signal

import helpers
from helpers import dl

# asserts the ready stream's length and message keys: TXMAIL_PARTITIONS stays 1 under TXM_PARTITIONS (conftest)
ONE_PARTITION = True

PAUSE_MS = 60000     # lifted by CLIENT UNPAUSE long before; a cap if the test dies


def blocked_scripts(redis):
    """Clients of this Redis held by the pause in a script call."""
    out = []
    for line in helpers.resp_cmd(redis.port, "CLIENT", "LIST").splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "b" in f.get("flags", "") and f.get("cmd", "").startswith("evalsha"):
            out.append(f)
    return out


def waiting(t):
    """txmail_accept_waiting from /metrics (read-only Redis commands: answered under the pause)."""
    c = t.client(timeout=dl(10))
    try:
        r = c.get("/metrics", auth=False)
    finally:
        c.close()
    assert r.status == 200, "/metrics: got %r" % r
    for line in r.body.decode().splitlines():
        if line.startswith("txmail_accept_waiting "):
            return int(float(line.split()[1]))
    raise AssertionError("no txmail_accept_waiting in /metrics")


def msg(i):
    return {"from": "a@example.com", "to": "p%d@example.com" % i, "subject": "s%d" % i, "text": "x"}


def send_one(t, i):
    c = t.client(timeout=dl(30))
    try:
        return c.send(msg(i))
    finally:
        c.close()


def test_a_send_held_in_redis_does_not_hold_the_http_thread(txmail_factory, redis):
    t = txmail_factory(args=("api",), extra_env={"TXMAIL_HTTP_THREADS": "1"})
    c = t.client(timeout=dl(10))
    assert c.send(msg(100)).status == 202   # warm-up: the pipe's connection and scripts
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    futs = []
    try:
        assert helpers.resp_cmd(redis.port, "CLIENT", "PAUSE", PAUSE_MS, "WRITE") == "OK"
        futs.append(pool.submit(send_one, t, 0))
        helpers.wait_until(lambda: blocked_scripts(redis), dl(10), "a send held inside Redis")
        # the one HTTP thread is free: it answers a route without Redis, and takes more sends
        h = c.get("/healthz", auth=False)
        assert h.status == 200, "healthz: got %r" % h
        assert blocked_scripts(redis), "the send was let go before /healthz answered"
        futs += [pool.submit(send_one, t, i) for i in range(1, 8)]
        helpers.wait_until(lambda: waiting(t) == 8, dl(10), "8 sends parked at once",
                           diag=lambda: "txmail_accept_waiting %d" % waiting(t))
        assert not any(f.done() for f in futs), "a send was answered while Redis held them: %r" % [
            f.result() for f in futs if f.done()]
    finally:
        helpers.resp_cmd(redis.port, "CLIENT", "UNPAUSE")
    ids = []
    for f in futs:
        r = f.result(timeout=dl(30))
        assert r.status == 202, "got %r" % r
        ids.append(r.json["id"])
    pool.shutdown()
    assert len(set(ids)) == 8, "ids: %r" % ids
    for i in ids:
        g = c.get("/v1/messages/" + i)
        assert g.status == 200 and g.json["status"] == "queued", "GET %s: got %r" % (i, g)
    assert helpers.resp_cmd(redis.port, "XLEN", "txm{0}:ready") == 9   # the warm-up's and 8
    c.close()


def test_sigterm_answers_parked_sends_first(txmail_factory, redis):
    t = txmail_factory(args=("api",), extra_env={"TXMAIL_HTTP_THREADS": "1"})
    c = t.client(timeout=dl(10))
    assert c.send(msg(100)).status == 202
    c.close()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    try:
        assert helpers.resp_cmd(redis.port, "CLIENT", "PAUSE", PAUSE_MS, "WRITE") == "OK"
        futs = [pool.submit(send_one, t, i) for i in range(4)]
        helpers.wait_until(lambda: blocked_scripts(redis) and waiting(t) == 4, dl(10),
                           "4 sends parked, one inside Redis")
        t.proc.send_signal(signal.SIGTERM)
        helpers.wait_until(lambda: 'msg="stopping"' in open(t.log, errors="replace").read(),
                           dl(10), "txmail to begin its stop")
        assert t.alive(), "txmail exited with sends parked"
    finally:
        helpers.resp_cmd(redis.port, "CLIENT", "UNPAUSE")
    got = [f.result(timeout=dl(30)) for f in futs]
    pool.shutdown()
    assert [r.status for r in got] == [202] * 4, "got %r" % got
    for r in got:
        key = "txm{0}:msg:" + r.json["id"]
        assert helpers.resp_cmd(redis.port, "EXISTS", key) == 1, "%s answered 202, not stored" % key
    assert helpers.reap(t.proc, dl(15)), "txmail did not exit after its drain"
    assert t.proc.returncode == 0, "exit status %r" % t.proc.returncode
