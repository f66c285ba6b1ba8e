"""test_accept_group_commit.py - the accept's group commit (server/store_pipe.c).

Owns: the HTTP threads' enqueues going through one shared Redis connection,
many per round trip, without giving up what an answer means:
* many concurrent sends are each answered 202 with an id of their own, and
  each is stored as sent (its own subject under its own id); while Redis
  holds them (CLIENT PAUSE WRITE), they queue and go out together: fewer
  round trips than commands (the "enqueue pipe closed" line at shutdown
  counts both);
* a stopped Redis (SIGSTOP) with many sends queued behind a stalled round
  trip: every one is answered while Redis is still stopped (none waits
  past its timeout), each 503 `unavailable` or 504 `outcome_unknown`, and
  after SIGCONT no 503 was stored and a 504 retried with its
  Idempotency-Key is stored once;
* SIGTERM while sends wait on a paused Redis: the process exits 0, each
  send gets 202 (stored), 503 (not stored) or, when it was never read,
  a close (not stored).

`txmail api` alone (no worker: messages stay as stored, looked up by
subject in Redis). Must never: wait without a deadline, or leave Redis
stopped (SIGCONT in a finally).
"""
import os
import signal
import socket
import threading
import time

import helpers
from helpers import dl, wait_until
from logparse import records

TIMEOUT_S = 0.3
THREADS = "16"


def token():
    return "gc%s" % os.urandom(6).hex()


def message(tok):
    return {"from": "sender@example.com", "to": "%s@example.com" % tok, "subject": tok, "text": "hello\n"}


def stored_subjects(redis):
    """{subject: [message ids]} of every message hash in Redis."""
    out = {}
    for k in redis.cmd("KEYS", "txm{0}:msg:*"):
        if k.count(":") != 2:      # msg:<id>:tl, msg:<id>:mime
            continue
        subj = redis.cmd("HGET", k, "subject")
        if subj is not None:
            out.setdefault(subj, []).append(k.split(":", 2)[2])
    return out


def send_all(t, msgs, keys=None, timeout=dl(20)):
    """POST each message at once from a thread of its own; [(status, json)] in order."""
    out = [None] * len(msgs)
    errors = []
    go = threading.Event()

    def one(i):
        c = t.client(timeout=timeout)
        try:
            go.wait(dl(5))
            h = {"Idempotency-Key": keys[i]} if keys and keys[i] else {}
            r = c.send(msgs[i], headers=h)
            out[i] = (r.status, r.json, time.monotonic())
        except Exception as e:   # reported below
            errors.append("%d: %r" % (i, e))
        finally:
            c.close()
    ths = [threading.Thread(target=one, args=(i,)) for i in range(len(msgs))]
    for th in ths:
        th.start()
    go.set()
    for th in ths:
        th.join(timeout + dl(5))
    assert not errors, "sends failed: %s" % errors[:5]
    assert all(o is not None for o in out), "sends unanswered: %r" % [i for i, o in enumerate(out) if o is None]
    return out


def pipe_counts(t):
    """(round_trips, commands) from the last "enqueue pipe closed" line of t's log."""
    recs = records(t.log, "enqueue pipe closed")
    assert recs, "no \"enqueue pipe closed\" line in %s" % t.log
    return int(recs[-1]["round_trips"]), int(recs[-1]["commands"])


def test_concurrent_sends_distinct_ids_shared_round_trips(txmail_factory, redis):
    t = txmail_factory(args=("api",), extra_env={"TXMAIL_HTTP_THREADS": THREADS})
    toks = [token() for _ in range(48)]
    # the scripts wait in Redis meanwhile (EVALSHA is a write for CLIENT PAUSE):
    # the sends arriving behind the first queue in txmail and go out together
    redis.cmd("CLIENT", "PAUSE", "400", "WRITE")
    got = send_all(t, [message(x) for x in toks])
    ids = []
    for tok, (status, body, _) in zip(toks, got):
        assert status == 202, "%s: got %s %r, want 202" % (tok, status, body)
        ids.append(body["id"])
    assert len(set(ids)) == len(ids), "ids not distinct: %r" % ids
    subj = stored_subjects(redis)
    for tok, mid in zip(toks, ids):
        assert subj.get(tok) == [mid], "%s: stored as %r, want [%s]" % (tok, subj.get(tok), mid)
    t.stop()
    assert not t.problems, t.problems
    rounds, cmds = pipe_counts(t)
    assert cmds == len(toks), "enqueues through the pipe: got %d, want %d" % (cmds, len(toks))
    assert rounds < cmds, "round trips %d for %d enqueues: none was shared" % (rounds, cmds)
    helpers.log("group commit: %d enqueues in %d round trips" % (cmds, rounds))


def test_stopped_redis_many_queued_each_503_or_504(txmail_factory, redis):
    redis.cmd("CONFIG", "SET", "appendfsync", "no")
    t = txmail_factory(args=("api",), extra_env={"TXMAIL_REDIS_TIMEOUT": str(TIMEOUT_S),
                                                 "TXMAIL_HTTP_THREADS": THREADS})
    helpers.warm_http_threads(t, redis, n=32)
    # fewer sends than threads: a thread waiting on Redis reads no other
    # connection, so one that took several would hold them past their deadline
    toks = [token() for _ in range(12)]
    keys = [("k-" + x) if i % 2 == 0 else None for i, x in enumerate(toks)]
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        got = send_all(t, [message(x) for x in toks], keys)
        resumed = time.monotonic()
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    statuses = [s for s, _, _ in got]
    for tok, (status, body, at) in zip(toks, got):
        assert status in (503, 504), "%s while Redis was stopped: got %s %r" % (tok, status, body)
        want = "unavailable" if status == 503 else "outcome_unknown"
        assert body["error"]["type"] == want, "%s: %s with %r" % (tok, status, body)
        assert at <= resumed, "%s answered after SIGCONT" % tok
    assert 504 in statuses, "no 504 among %r: no send was in a stalled round trip" % statuses

    # a 504 retried with its key: 202; then nothing answered 503 is stored
    for tok, key, (status, _, _) in zip(toks, keys, got):
        if status == 504 and key:
            c = t.client(timeout=dl(10))
            try:
                r = wait_until(lambda: (lambda x: x if x.status == 202 else None)(
                    c.send(message(tok), headers={"Idempotency-Key": key})), dl(10),
                    "a 202 for the retry of %s" % tok, interval=0.1)
            finally:
                c.close()
            assert r.status == 202
    c = t.client(timeout=dl(10))
    try:
        # after SIGCONT (503 while txmail reconnects): late commands ran before its reply
        ctl = token()
        wait_until(lambda: (lambda x: x if x.status == 202 else None)(c.send(message(ctl))), dl(10),
                   "a 202 for a control send after SIGCONT", interval=0.1)
    finally:
        c.close()
    subj = stored_subjects(redis)
    for tok, key, (status, _, _) in zip(toks, keys, got):
        n = len(subj.get(tok, []))
        if status == 503:
            assert n == 0, "%s: 503, yet stored %d time(s)" % (tok, n)
        elif key:
            assert n == 1, "%s: 504 retried with its key, stored %d times" % (tok, n)
        else:
            assert n <= 1, "%s: 504, stored %d times" % (tok, n)
    for mid in redis.cmd("KEYS", "txm{0}:abandoned:*"):
        mid = mid.split(":", 2)[2]
        assert redis.cmd("EXISTS", "txm{0}:msg:" + mid) == 0, "%s is abandoned and stored" % mid
    helpers.log("stopped Redis, %d queued sends: %r" % (len(toks), statuses))


def raw_post(port, key, msg):
    """A socket with one whole POST /v1/messages written to it."""
    import json
    body = json.dumps(msg).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=dl(20))
    s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
                  key.encode(), len(body), body))
    return s


def read_status(s):
    """The status of the response on s, or None when it closed without one."""
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    finally:
        s.close()
    if not data:
        return None
    assert data.startswith(b"HTTP/1.1 "), "not an HTTP response: %r" % data[:80]
    return int(data[9:12])


def test_sigterm_while_sends_wait(txmail_factory, redis):
    t = txmail_factory(args=("api",), extra_env={"TXMAIL_HTTP_THREADS": THREADS})
    assert t.client().send(message(token())).status == 202
    toks = [token() for _ in range(24)]
    redis.cmd("CLIENT", "PAUSE", "500", "WRITE")
    socks = [raw_post(t.port, t.key, message(x)) for x in toks]
    t.proc.send_signal(signal.SIGTERM)
    statuses = [read_status(s) for s in socks]
    try:
        rc = t.proc.wait(timeout=dl(15))
    except Exception:
        raise AssertionError("txmail did not exit within %.0fs of SIGTERM" % dl(15))
    assert rc == 0, "exit status after SIGTERM: %s" % rc
    subj = stored_subjects(redis)
    for tok, st in zip(toks, statuses):
        n = len(subj.get(tok, []))
        # None: closed unanswered, a request MHD had not read when the server stopped
        assert st in (202, 503, None), "%s: got %r, want 202, 503 or a close (statuses %r)" % (
            tok, st, statuses)
        assert n == (1 if st == 202 else 0), "%s: %s, stored %d times" % (tok, st, n)
    helpers.log("SIGTERM with sends waiting: %r" % statuses)
