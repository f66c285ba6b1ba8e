"""test_shutdown.py - graceful shutdown (issue 9, item 5): SIGTERM stops
accepting, lets SMTP transactions in flight finish within
TXMAIL_SHUTDOWN_GRACE, hands the rest back to the queue without counting an
attempt for a delivery that never started, logs one summary line and exits
0; after a restart every message is delivered exactly once (only a delivery
cut mid-transaction at the grace deadline may arrive twice).

The stack is real: redis-server, txmail (`run` or `worker` + `api` against
that Redis), and the SMTP peer with slow-* recipients whose reply to the end
of DATA comes SLOW_S late. Which deliveries are mid-transaction at SIGTERM
is made deterministic with TXMAIL_MAX_CONNS_PER_HOST=2 (two slow
transactions hold both connections; the next ones are fetched and claimed
but wait for a connection) and TXMAIL_WORKER_CONCURRENCY (how many are
fetched at all). TXMAIL_VISIBILITY_TIMEOUT is long (60 s), so a delivery
that comes back quickly was handed back, not reclaimed.

Must never: sleep instead of waiting for a condition with a deadline, or
leave a process behind (the fixtures stop every one).
"""

import os
import re
import signal
import time

import pytest

from helpers import SmtpPeer, dl, wait_until
from logparse import records

# asserts recipient states read from txm{0}:msg:*: TXMAIL_PARTITIONS stays 1 under TXM_PARTITIONS (conftest)
ONE_PARTITION = True

SLOW_S = 6            # the peer's delay before it answers the end of DATA
PREFIX = "txm{0}:"
ID_IN_MSGID = re.compile(r"msg_[0-9a-z]{26}(?:p[1-9][0-9]?)?")
DURATION_RE = re.compile(r"\d+(\.\d+)?s\Z")   # util_fmt_duration
COUNTERS = ("finished", "handed_back", "not_started", "cut", "left_pending",
            "webhooks_finished", "webhooks_abandoned")


@pytest.fixture
def slow_peer(workdir, certs, register_log):
    # its own directory: the default smtp_peer (which txmail_env needs) uses workdir/smtp
    p = SmtpPeer(os.path.join(workdir, "slow"), certs, extra_args=["--slow-delay", str(SLOW_S)])
    register_log("smtpd.py stderr", p.stderr)
    try:
        p.start()
        yield p
    finally:
        p.stop()


def base_env(redis, peer, **extra):
    env = {
        "TXMAIL_RELAY": peer.relay_url(),
        "TXMAIL_WORKERS": "1",
        "TXMAIL_MAX_CONNS_PER_HOST": "2",
        "TXMAIL_VISIBILITY_TIMEOUT": "60",
    }
    env.update({k: None if v is None else str(v) for k, v in extra.items()})
    return env


def msg(rcpt, n):
    return {"from": "Shutdown <shutdown@example.com>", "to": rcpt,
            "subject": "shutdown %d" % n, "text": "message %d\n" % n}


def send(api, rcpt, n):
    r = api.send(msg(rcpt, n))
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    return r.json["id"]


def rcpt_state(redis, mid):
    """(status, attempts) of the message's only recipient, straight from Redis."""
    v = redis.cmd("HMGET", PREFIX + "msg:" + mid, "r0:status", "r0:attempts")
    return v[0], int(v[1] or 0)


def wait_states(redis, ids, want, timeout, what, alive=None):
    """Wait until every id is in state `want` (status, attempts)."""
    def check():
        if alive is not None:
            assert alive.alive(), "%s exited before %s" % (alive.name, what)
        return all(rcpt_state(redis, m) == want for m in ids)
    wait_until(check, timeout, what, interval=0.05,
               diag=lambda: {m: rcpt_state(redis, m) for m in ids})


def data_commands(peer):
    """How many DATA commands the peer has seen (its transcript: "n C: DATA")."""
    try:
        with open(peer.log, encoding="utf-8", errors="replace") as f:
            return sum(1 for ln in f if re.match(r"^\d+ C: DATA\s*$", ln))
    except FileNotFoundError:
        return 0


def peer_counts(peer):
    """message id -> how many times the peer stored it."""
    counts = {}
    for m in peer.messages():
        mm = ID_IN_MSGID.search(m.message_id or "")
        key = mm.group(0) if mm else "?"
        counts[key] = counts.get(key, 0) + 1
    return counts


def summary(txm):
    """The fields of the last "shutdown complete" record of txm's log, checked:
    every counter a number, took= a duration."""
    recs = records(txm.log, "shutdown complete")
    assert recs, "no \"shutdown complete\" line in %s" % txm.log
    s = recs[-1]
    for k in COUNTERS:
        assert re.fullmatch(r"\d+", str(s.get(k, ""))), "summary %s=%r is not a count: %r" % (k, s.get(k), s)
    assert DURATION_RE.match(s.get("took", "")), "summary took=%r is not a duration: %r" % (s.get("took"), s)
    return s


def handed_back(txm):
    """msg_id -> the last "handed back" record about it in txm's log."""
    return {r.get("msg_id"): r for r in records(txm.log, "handed back")}


def sigterm(txm):
    """SIGTERM txm; return the monotonic time it was sent."""
    t0 = time.monotonic()
    txm.proc.send_signal(signal.SIGTERM)
    return t0


def wait_exit(txm, t0, timeout):
    """(exit status, seconds since t0) once txm exits, failing after timeout."""
    try:
        rc = txm.proc.wait(timeout=timeout)
    except Exception:
        raise AssertionError("%s did not exit within %.0fs of SIGTERM" % (txm.name, timeout))
    return rc, time.monotonic() - t0


def wait_delivered_get(api, ids, timeout):
    """GET each id until delivered; return {id: attempts}."""
    out = {}

    def check():
        for m in ids:
            if m in out:
                continue
            r = api.get("/v1/messages/" + m)
            assert r.status == 200, "GET %s: got %s %r" % (m, r.status, r.body)
            rc = r.json["recipients"][0]
            assert rc["status"] not in ("failed", "expired"), "%s: %r" % (m, r.json)
            if rc["status"] == "delivered":
                out[m] = rc["attempts"]
        return len(out) == len(ids)
    wait_until(check, timeout, "%d messages delivered" % len(ids), interval=0.1,
               diag=lambda: "delivered %d: %r" % (len(out), out))
    return out



def busy_then_waiting(api, redis, slow_peer, nwait):
    """Two slow messages, then nwait more; returns (slow ids, waiting ids)
    once both connections are busy with a slow transaction (at DATA) and
    the waiting ones are fetched and claimed (attempt 1) but wait for a
    connection: never started."""
    slow = [send(api, "slow-%d@example.com" % i, i) for i in range(2)]
    wait_until(lambda: data_commands(slow_peer) >= 2, dl(10), "the 2 slow transactions at DATA",
               diag=lambda: "DATA commands: %d" % data_commands(slow_peer))
    waiting = [send(api, "wait-%d@example.com" % i, 10 + i) for i in range(nwait)]
    wait_states(redis, waiting, ("sending", 1), dl(5), "the %d waiting deliveries claimed" % nwait)
    return slow, waiting

# --- the grace is long enough: in-flight transactions finish ---------------------

def test_sigterm_finishes_in_flight_hands_back_the_rest(txmail_factory, redis, slow_peer):
    # the default grace (25 s): conftest's 5 s removed
    env = base_env(redis, slow_peer, TXMAIL_WORKER_CONCURRENCY=6, TXMAIL_SHUTDOWN_GRACE=None)
    txm = txmail_factory(("run",), extra_env=env)
    api = txm.client()
    slow, waiting = busy_then_waiting(api, redis, slow_peer, 4)
    unfetched = [send(api, "later-%d@example.com" % i, 20 + i) for i in range(2)]
    assert slow_peer.count() == 0, "a slow transaction finished before SIGTERM: the test lost its setup"
    assert data_commands(slow_peer) == 2, "a waiting delivery started: got %d DATA commands" % data_commands(slow_peer)
    assert all(rcpt_state(redis, m) == ("queued", 0) for m in unfetched), \
        "beyond TXMAIL_WORKER_CONCURRENCY: want queued, untouched: %r" % {m: rcpt_state(redis, m) for m in unfetched}

    t0 = sigterm(txm)
    # readiness fails at once (503 or refused), and so does the API
    probe = txm.client(timeout=dl(2))

    probe_ids = []

    def not_ready():
        rid = "shutdown-readyz-%d" % len(probe_ids)
        probe_ids.append(rid)
        try:
            r = probe.get("/readyz", auth=False, headers={"X-Request-Id": rid})
        except OSError:
            probe.close()
            return "refused"
        return (r, rid) if r.status != 200 else None
    got = wait_until(not_ready, dl(1), "/readyz != 200 after SIGTERM")
    answered = []   # (request id, route) of the 503s, to find their access lines
    if got != "refused":
        got, rid = got
        assert got.status == 503 and got.json["error"]["type"] == "unavailable", got
        assert got.headers.get("retry-after"), "503 without Retry-After: %r" % got.headers
        assert got.headers.get("x-request-id") == rid, "503 /readyz: X-Request-Id %r, want %r" % (
            got.headers.get("x-request-id"), rid)
        answered.append((rid, "/readyz"))
        try:
            r = probe.send(msg("after@example.com", 99), headers={"X-Request-Id": "shutdown-send"})
            assert r.status == 503 and r.json["error"]["type"] == "unavailable", r
            assert r.headers.get("retry-after"), "503 without Retry-After: %r" % r.headers
            assert r.headers.get("x-request-id") == "shutdown-send", "503 send: X-Request-Id %r" % (
                r.headers.get("x-request-id"),)
            answered.append(("shutdown-send", "/v1/messages"))
        except OSError:
            pass  # the listener closed meanwhile: refusing is fine too
    probe.close()
    api.close()
    # the waiting ones go back at once, attempt uncounted, while the slow ones still run
    wait_states(redis, waiting, ("queued", 0), dl(3), "the 4 waiting deliveries handed back", alive=txm)
    assert slow_peer.count() == 0 and txm.alive(), "handed back only after the transactions ended"

    rc, took = wait_exit(txm, t0, dl(SLOW_S + 10))
    assert rc == 0, "exit status after SIGTERM: got %s, want 0" % rc
    assert took < 25, "took %.1fs, want the time of the slow transactions, not the whole grace" % took
    s = summary(txm)
    assert (s.get("finished"), s.get("handed_back"), s.get("not_started"), s.get("cut")) == ("2", "4", "4", "0"), \
        "summary line: %r" % s
    stopping = records(txm.log, "stopping")
    assert stopping and stopping[-1].get("signal") == "SIGTERM", "no stopping line: %r" % stopping
    assert stopping[-1].get("grace") == "25s", "the default TXMAIL_SHUTDOWN_GRACE is not 25 s: %r" % stopping[-1]
    # every 503 while draining got its access line, like any other answer
    access = {r.get("request_id"): r for r in records(txm.log, "request")}
    for rid, route in answered:
        a = access.get(rid)
        assert a is not None, "no access line for the 503 %s (request_id=%s)" % (route, rid)
        assert (a.get("status"), a.get("route")) == ("503", route), "access line: %r" % a
    back = handed_back(txm)
    for m in waiting:
        b = back.get(m)
        assert b is not None, "no \"handed back\" line for %s: %r" % (m, sorted(back))
        assert (b.get("attempts"), b.get("stage")) == ("0", "not_started") and b.get("rcpt"), \
            "handed back %s: %r, want attempts=0 stage=not_started and its rcpt" % (m, b)
    assert not any(m in back for m in slow), "a finished transaction was handed back: %r" % back
    assert slow_peer.count() == 2, "the 2 in-flight transactions were not finished: %d at the peer" % slow_peer.count()
    for m in slow:
        assert rcpt_state(redis, m) == ("delivered", 1), "%s: %r" % (m, rcpt_state(redis, m))
    for m in waiting + unfetched:
        assert rcpt_state(redis, m) == ("queued", 0), "%s: %r" % (m, rcpt_state(redis, m))

    # restart: everything is delivered, quickly (handed back, not reclaimed after 60 s), once each
    t1 = time.monotonic()
    txm.start()
    api = txm.client()
    attempts = wait_delivered_get(api, slow + waiting + unfetched, dl(20))
    assert time.monotonic() - t1 < 30, "the handed-back deliveries waited for the visibility timeout"
    api.close()
    counts = peer_counts(slow_peer)
    for m in slow + waiting + unfetched:
        assert counts.get(m) == 1, "%s: at the peer %s times, want exactly once (%r)" % (m, counts.get(m), counts)
        assert attempts[m] == 1, "%s: attempts %s, want 1" % (m, attempts[m])


# --- the grace is shorter than the peer: transactions are cut --------------------

def test_short_grace_cuts_and_hands_back(txmail_factory, redis, slow_peer):
    env = base_env(redis, slow_peer, TXMAIL_WORKER_CONCURRENCY=4, TXMAIL_SHUTDOWN_GRACE=1)
    api_proc = txmail_factory(("api",), extra_env=env, name="txmail api")
    worker = txmail_factory(("worker",), extra_env=env, http=False, name="txmail worker")
    api = api_proc.client()
    slow, waiting = busy_then_waiting(api, redis, slow_peer, 2)
    assert slow_peer.count() == 0, "a slow transaction finished before SIGTERM: the test lost its setup"

    t0 = sigterm(worker)
    rc, took = wait_exit(worker, t0, dl(1 + 5))
    assert rc == 0, "exit status after SIGTERM: got %s, want 0" % rc
    assert took < SLOW_S, "took %.1fs: the grace of 1 s was not applied" % took
    s = summary(worker)
    assert (s.get("finished"), s.get("handed_back"), s.get("not_started"), s.get("cut")) == ("0", "4", "2", "2"), \
        "summary line: %r" % s
    warn = [r for r in records(worker.log) if r.get("cut") == "2" and r["level"] == "warn"]
    assert warn, "no warning about the 2 cut transactions"
    back = handed_back(worker)
    for m in slow:
        b = back.get(m)
        assert b is not None and (b.get("attempts"), b.get("stage")) == ("1", "cut"), \
            "handed back (cut) %s: %r, want attempts=1 stage=cut" % (m, b)
    for m in waiting:
        b = back.get(m)
        assert b is not None and (b.get("attempts"), b.get("stage")) == ("0", "not_started"), \
            "handed back (never started) %s: %r, want attempts=0 stage=not_started" % (m, b)
    # cut: back in the queue with the attempt counted; never started: attempt uncounted
    for m in slow:
        assert rcpt_state(redis, m) == ("queued", 1), "cut %s: %r, want queued with 1 attempt" % (m, rcpt_state(redis, m))
    for m in waiting:
        assert rcpt_state(redis, m) == ("queued", 0), "never started %s: %r" % (m, rcpt_state(redis, m))

    worker.start()
    attempts = wait_delivered_get(api, slow + waiting, dl(SLOW_S * 2 + 15))
    api.close()
    counts = peer_counts(slow_peer)
    for m in waiting:
        assert counts.get(m) == 1, "never started %s: at the peer %s times, want 1" % (m, counts.get(m))
        assert attempts[m] == 1, "never started %s: attempts %s, want 1" % (m, attempts[m])
    for m in slow:
        # the only deliveries that may arrive twice: the server might have kept the cut one
        assert counts.get(m) in (1, 2), "cut %s: at the peer %s times, want 1 or 2" % (m, counts.get(m))
        assert attempts[m] == 2, "cut %s: attempts %s, want 2 (the cut one counts)" % (m, attempts[m])


# --- a second signal, and the api role -------------------------------------------

def test_second_sigterm_exits_at_once(txmail_factory, redis, slow_peer):
    env = base_env(redis, slow_peer, TXMAIL_WORKER_CONCURRENCY=2)
    txm = txmail_factory(("run",), extra_env=env)
    api = txm.client()
    send(api, "slow-0@example.com", 0)
    api.close()
    wait_until(lambda: data_commands(slow_peer) >= 1, dl(10), "the slow transaction at DATA")
    t0 = sigterm(txm)

    def stopping():
        return any(r.get("signal") == "SIGTERM" for r in records(txm.log, "stopping"))
    wait_until(stopping, dl(3), "the stop to begin")
    txm.proc.send_signal(signal.SIGTERM)
    rc, took = wait_exit(txm, t0, dl(3))
    assert rc == 1, "exit status after a second SIGTERM: got %s, want 1" % rc
    forced = records(txm.log, "received the signal again, exiting now without waiting")
    assert forced and forced[-1].get("signal") == "SIGTERM" and forced[-1]["level"] == "warn", \
        "the forced exit is not logged: %r" % forced
    assert not records(txm.log, "shutdown complete"), "a forced exit logged a completed shutdown"
    txm.proc = None  # already gone on purpose: not a teardown problem


def test_api_role_stops_at_once(txmail_factory, redis, slow_peer):
    txm = txmail_factory(("api",), extra_env=base_env(redis, slow_peer))
    t0 = sigterm(txm)
    rc, took = wait_exit(txm, t0, dl(5))
    assert rc == 0, "exit status after SIGTERM: got %s, want 0" % rc
    assert took < 3, "an idle api took %.1fs to stop" % took
    s = summary(txm)
    assert s.get("handed_back") == "0" and s.get("finished") == "0", "summary line: %r" % s
    with pytest.raises(OSError):
        txm.client(timeout=dl(2)).get("/readyz", auth=False)
