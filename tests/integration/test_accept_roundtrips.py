"""test_accept_roundtrips.py - what one accepted send costs in Redis commands.

Owns: the optimistic enqueue. A plain POST /v1/messages (env API key, no
rate limit) is exactly one command on the API's Redis connection, the
enqueue script (which also checks the suppression list); a send to a
suppressed address is exactly two (the script answers "suppressed" and
writes nothing, then the marked message is stored) and ends `suppressed`
as before; a batch likewise; an idempotent replay of a suppressed send is
one script call and answers the stored body, never the suppression; the
script itself runs one command per key it reads or writes (one EXISTS for
the abandoned mark and the id, one HMGET of the suppression list, one HMGET
of the saturated destinations, one HSET of the whole message hash with its
timeline, SET, one XADD per recipient: issue 13). A project other than
`default` queues on its own ready stream (issue 14): one SADD more per
call, and on its first send the group made. A recipient whose domain is
saturated (a field of txm{0}:sat, written by a worker's feeder: issue 14)
goes to due at the domain's next slot instead of the ready stream, the
slots spaced by its step, and the field is written back with the next one.

How: `txmail api` alone (no worker, scheduler or webhook loop) with one
HTTP thread, warmed up by one send so its connection's set-up (SCRIPT
LOAD, XGROUP) is done; the warm-up also tells which Redis connection
serves requests. A raw MONITOR connection sees every command; a window is
bracketed by two ECHO markers sent on their own connections, and commands
run inside scripts (client "lua") are counted apart. The API's only other
connection is the live-events hub, which reads nothing while no event
stream is open: no other connection may send anything.

Must never: wait without a deadline (the MONITOR socket has one).
"""
import os
import re
import socket
import subprocess

import pytest

import helpers
from helpers import dl

# asserts the enqueue script's commands (MONITOR) on one partition: TXMAIL_PARTITIONS stays 1 under TXM_PARTITIONS (conftest)
ONE_PARTITION = True

LINE_RE = re.compile(r"^\+?[0-9.]+ \[\d+ ([^\]]+)\] (.*)$")
ARG_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


class Monitor:
    """A MONITOR connection; window(fn) -> (fn's result, [(client, command,
    args)] of what ran while fn() did; scripts' inner commands have client "lua")."""

    def __init__(self, port):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=dl(10))
        self.sock.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
        self.f = self.sock.makefile("rb")
        first = self.f.readline()
        assert first == b"+OK\r\n", "MONITOR: got %r, want +OK" % first

    def close(self):
        self.f.close()
        self.sock.close()

    def _until(self, marker):
        """Commands up to the ECHO of marker (socket timeout = the deadline)."""
        out = []
        while True:
            line = self.f.readline()
            if not line:
                raise AssertionError("MONITOR connection closed")
            m = LINE_RE.match(line.decode("utf-8", "replace").rstrip("\r\n"))
            if m is None:
                continue
            client, rest = m.group(1), m.group(2)
            args = ARG_RE.findall(rest)
            if args[:2] == ["ECHO", marker]:
                return out
            if args:
                out.append((client, args[0].upper(), args[1:]))

    def window(self, fn):
        tag = os.urandom(6).hex()
        start, end = "txm-start-" + tag, "txm-end-" + tag
        helpers.resp_cmd(self.port, "ECHO", start)
        self._until(start)
        result = fn()
        helpers.resp_cmd(self.port, "ECHO", end)
        return result, self._until(end)


class Api:
    """The client, the monitor, and the Redis connection that serves requests."""

    def __init__(self, client, mon, conn):
        self.c = client
        self.mon = mon
        self.conn = conn

    def window(self, fn, inner=None):
        """fn()'s result and the command names the request connection sent
        meanwhile; those its scripts ran are appended to inner (a list)."""
        result, cmds = self.mon.window(fn)
        others = [x for x in cmds if x[0] not in (self.conn, "lua")]
        assert not others, "got commands from other connections: %r" % others
        if inner is not None:
            inner += [x[1] for x in cmds if x[0] == "lua"]
        return result, [x[1] for x in cmds if x[0] == self.conn]


@pytest.fixture
def api_only(txmail_factory, redis):
    t = txmail_factory(args=("api",), extra_env={"TXMAIL_HTTP_THREADS": "1"})
    c = t.client()
    mon = Monitor(redis.port)
    try:
        # warm-up: the one HTTP thread's store connects and loads its scripts
        r, cmds = mon.window(lambda: c.send(
            {"from": "w@example.com", "to": "warm@example.com", "subject": "w", "text": "w"}))
        assert r.status == 202, "warm-up: got %r" % r
        conns = {x[0] for x in cmds if x[1] == "EVALSHA"}
        assert len(conns) == 1, "warm-up: got EVALSHA from %r, want one connection" % conns
        yield Api(c, mon, conns.pop())
    finally:
        mon.close()
        c.close()


def test_plain_send_is_one_script_call(api_only):
    a = api_only
    c = a.c
    inner = []
    r, cmds = a.window(lambda: c.send(
        {"from": "a@example.com", "to": ["One@Example.com", "two@example.com"], "subject": "s", "text": "x"}),
        inner)
    assert r.status == 202, "got %r" % r
    assert cmds == ["EVALSHA"], "got %r, want exactly one EVALSHA" % cmds
    # HSET the message, ZADD it to its project's search index (lib/msgix.lua)
    want = ["EXISTS", "HMGET", "HMGET", "HSET", "ZADD", "SET", "XADD", "XADD"]
    assert inner == want, "the enqueue script ran %r, want %r" % (inner, want)
    st = {x["email"]: x["status"] for x in r.json["recipients"]}
    assert st == {"One@Example.com": "queued", "two@example.com": "queued"}, "got %r" % st


def test_saturated_domain_goes_to_due(api_only, redis):
    """A domain the feeder published as saturated: its recipients wait in
    due at its next slots (spaced by the step, no sooner than min after
    the accept), the others still go to the ready stream; the field comes
    back with the next slot; a field whose time is up is ignored."""
    a = api_only
    now = int(helpers.resp_cmd(redis.port, "TIME")[0]) * 1000
    nxt, step = now + 60000, 1500
    helpers.resp_cmd(redis.port, "HSET", "txm{0}:sat", "tarpit.test",
                     "%d %d %d 600000 100 0" % (now + 30000, nxt, step),
                     "gone.test", "%d %d %d 600000 100 0" % (now - 1000, nxt, step))
    inner = []
    r, cmds = a.window(lambda: a.c.send(
        {"from": "a@example.com", "to": ["x@Tarpit.TEST", "ok@example.com", "y@tarpit.test", "z@gone.test"],
         "subject": "s", "text": "x"}), inner)
    assert r.status == 202, "got %r" % r
    assert cmds == ["EVALSHA"], "got %r" % cmds
    want = ["EXISTS", "HMGET", "HMGET", "HSET", "ZADD", "SET", "ZADD", "XADD", "ZADD", "XADD", "HSET"]
    assert inner == want, "the enqueue script ran %r, want %r" % (inner, want)
    mid = r.json["id"]
    got = [helpers.resp_cmd(redis.port, "ZSCORE", "txm{0}:due", "%s/%d" % (mid, i)) for i in range(4)]
    assert got[1] is None and got[3] is None, "only tarpit.test's recipients wait in due: got %r" % got
    assert (int(got[0]), int(got[2])) == (nxt, nxt + step), \
        "due at the next slot, then one step later: got %r, want %d, %d" % (got, nxt, nxt + step)
    f = helpers.resp_cmd(redis.port, "HGET", "txm{0}:sat", "tarpit.test")
    assert f.split()[1] == str(nxt + 2 * step), "the field's next slot: got %r, want %d" % (f, nxt + 2 * step)
    st = {x["email"]: x["status"] for x in r.json["recipients"]}
    assert set(st.values()) == {"queued"}, "every recipient is queued (parked is queued): got %r" % st

    # slots past max (10 min) from the accept: spread over its second half, never past the expiry
    helpers.resp_cmd(redis.port, "HSET", "txm{0}:sat", "far.test",
                     "%d %d 1000 600000 100 0" % (now + 30000, now + 10 ** 7))
    r = a.c.send({"from": "a@example.com", "to": ["a@far.test", "b@far.test", "c@far.test"],
                  "subject": "s", "text": "x"})
    assert r.status == 202, "got %r" % r
    got = [int(helpers.resp_cmd(redis.port, "ZSCORE", "txm{0}:due", "%s/%d" % (r.json["id"], i))) for i in range(3)]
    assert all(now + 300000 - 5000 <= x <= now + 600000 + 5000 for x in got) and len(set(got)) == 3, \
        "past the horizon: got %r, want three times in the second half of the next 10 min" % [x - now for x in got]
    f = helpers.resp_cmd(redis.port, "HGET", "txm{0}:sat", "far.test").split()
    # the first is spread (count 1) and moves next to the horizon, the second takes that slot,
    # the third is past it again (count 2)
    assert f[5] == "2", "the spread's count: got %r" % f
    r = a.c.send({"from": "a@example.com", "to": "d@far.test", "subject": "s", "text": "x", "ttl": 120})
    assert r.status == 202, "got %r" % r
    x = int(helpers.resp_cmd(redis.port, "ZSCORE", "txm{0}:due", "%s/0" % r.json["id"]))
    exp = int(helpers.resp_cmd(redis.port, "HGET", "txm{0}:msg:" + r.json["id"], "expires"))
    assert x == exp, "a message that expires first: due at %d, want its expiry %d" % (x, exp)


def test_suppressed_send_is_two_script_calls(api_only):
    a = api_only
    c = a.c
    r = c.post_json("/v1/suppressions", {"email": "Gone@Example.com"})
    assert r.status in (200, 201), "got %r" % r
    msg = {"from": "a@example.com", "to": ["GONE@example.com", "fine@example.com"], "subject": "s", "text": "x"}
    r, cmds = a.window(lambda: c.send(msg))
    assert r.status == 202, "got %r" % r
    assert cmds == ["EVALSHA", "EVALSHA"], "got %r, want exactly two EVALSHA" % cmds
    st = {x["email"]: x["status"] for x in r.json["recipients"]}
    assert st == {"GONE@example.com": "suppressed", "fine@example.com": "queued"}, "got %r" % st
    assert r.json["status"] == "partial", "got %r" % r.json
    g = c.get("/v1/messages/" + r.json["id"])
    assert g.status == 200, "got %r" % g
    st = {x["email"]: x["status"] for x in g.json["recipients"]}
    assert st == {"GONE@example.com": "suppressed", "fine@example.com": "queued"}, "got %r" % st
    types = [e["type"] for e in g.json["events"]]
    assert types == ["queued", "suppressed"], "got timeline %r" % types

    # only suppressed: the whole message is
    r, cmds = a.window(lambda: c.send(dict(msg, to="gone@example.com")))
    assert r.status == 202 and r.json["status"] == "suppressed", "got %r" % r
    assert cmds == ["EVALSHA", "EVALSHA"], "got %r" % cmds


def test_batch_one_or_two_script_calls(api_only):
    a = api_only
    c = a.c
    assert c.post_json("/v1/suppressions", {"email": "nope@example.com"}).status in (200, 201)
    clean = [{"from": "a@example.com", "to": "b%d@example.com" % i, "subject": "s", "text": "x"}
             for i in range(3)]
    r, cmds = a.window(lambda: c.post_json("/v1/messages/batch", {"messages": clean}))
    assert r.status == 202, "got %r" % r
    assert cmds == ["EVALSHA"], "got %r, want exactly one EVALSHA" % cmds

    mixed = clean[:1] + [dict(clean[1], to=["b1@example.com"], bcc="Nope@example.com")] + clean[2:]
    r, cmds = a.window(lambda: c.post_json("/v1/messages/batch", {"messages": mixed}))
    assert r.status == 202, "got %r" % r
    assert cmds == ["EVALSHA", "EVALSHA"], "got %r, want two EVALSHA" % cmds
    got = [{x["email"]: x["status"] for x in m["recipients"]} for m in r.json["data"]]
    want = [{"b0@example.com": "queued"},
            {"b1@example.com": "queued", "Nope@example.com": "suppressed"},
            {"b2@example.com": "queued"}]
    assert got == want, "got %r, want %r" % (got, want)
    assert [m["status"] for m in r.json["data"]] == ["queued", "partial", "queued"], "got %r" % r.json


def test_idempotent_replay_of_suppressed_send(api_only):
    a = api_only
    c = a.c
    assert c.post_json("/v1/suppressions", {"email": "idem-gone@example.com"}).status in (200, 201)
    msg = {"from": "a@example.com", "to": ["idem-gone@example.com", "ok@example.com"], "subject": "s", "text": "x"}
    h = {"Idempotency-Key": "supp-1"}
    r1, cmds = a.window(lambda: c.send(msg, headers=h))
    assert r1.status == 202, "got %r" % r1
    assert cmds == ["EVALSHA", "EVALSHA"], "got %r" % cmds
    r2, cmds = a.window(lambda: c.send(msg, headers=h))
    assert r2.status == 202, "got %r" % r2
    assert r2.headers.get("idempotent-replayed") == "true", "got headers %r" % r2.headers
    assert r2.body == r1.body, "got %r, want the first body %r" % (r2.body, r1.body)
    assert cmds == ["EVALSHA"], "replay: got %r, want one EVALSHA" % cmds
    r3, cmds = a.window(lambda: c.send(dict(msg, text="other"), headers=h))
    assert r3.status == 409, "got %r" % r3
    assert cmds == ["EVALSHA"], "conflict: got %r, want one EVALSHA" % cmds


def test_project_send_adds_its_stream(txmail_binary, txmail_factory, redis):
    """A project other than `default` queues on its own stream (issue 14 item 4):
    its first send on a lane SADDs it to the lane's set and makes the group,
    every later one costs one SADD more than a `default` send."""
    p = subprocess.run([txmail_binary, "keys", "create", "--name", "A"],
                       env=helpers.clean_env({"TXMAIL_REDIS_URL": redis.url}),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=dl(20))
    assert p.returncode == 0, "keys create: %s" % p.stderr
    t = txmail_factory(args=("api",), extra_env={"TXMAIL_HTTP_THREADS": "1"})
    c = helpers.Client(t.port, key=p.stdout.strip())
    mon = Monitor(redis.port)
    msg = {"from": "a@example.com", "to": "one@example.com", "subject": "s", "text": "x"}

    def enqueue_inner(cmds):
        inner = [x[1] for x in cmds if x[0] == "lua"]
        # the enqueue script's commands: from its EXISTS (an auth script, if any, ran before)
        return inner[len(inner) - 1 - inner[::-1].index("EXISTS"):]

    try:
        r, cmds = mon.window(lambda: c.send(msg))
        assert r.status == 202, "first send: got %r" % r
        got = enqueue_inner(cmds)
        want = ["EXISTS", "HMGET", "HMGET", "HSET", "ZADD", "SET", "SADD", "XGROUP", "XADD"]
        assert got == want, "first send of A: the enqueue ran %r, want %r" % (got, want)
        r, cmds = mon.window(lambda: c.send(msg))
        assert r.status == 202, "second send: got %r" % r
        got = enqueue_inner(cmds)
        want = ["EXISTS", "HMGET", "HMGET", "HSET", "ZADD", "SET", "SADD", "XADD"]
        assert got == want, "a later send of A: the enqueue ran %r, want %r" % (got, want)
        xadds = [x[2][0] for x in cmds if x[0] == "lua" and x[1] == "XADD"]
        assert xadds == ["txm{0}:ready:p:A"], "XADD to %r, want A's stream" % xadds
    finally:
        mon.close()
        c.close()
