"""test_redis_auth.py - TXMAIL_REDIS_URL with credentials: Redis AUTH.

Each test starts its own redis-server that refuses unauthenticated clients:
one with --requirepass (txmail sends "AUTH pass"), one with an ACL user and
the default user switched off (txmail sends "AUTH alice pass", then SELECT:
a SELECT before AUTH would be refused). The password holds characters that
must be percent-encoded in the URL. Checked: a message is accepted and
delivered to the SMTP peer through that Redis (and nothing lands in the
conftest Redis); `txmail keys list` authenticates too; a kill -9 + restart
of Redis (same password) is survived, so the reconnect authenticates again;
a password changed under a running txmail makes /readyz 503 and logs
msg="redis AUTH failed", and putting it back makes it ready again; a wrong
password stops the start with a non-zero status and a message naming AUTH.
In every case the password is nowhere in txmail's log (debug level), in
clear or percent-encoded, and the config line shows it masked.

Must never: wait without a deadline, or pass because a log is empty (the
masked config line must be there).
"""

import os
import secrets
import socket
import subprocess
import urllib.parse

import pytest

import helpers
from helpers import RedisServer, dl, wait_until

# asserts message keys under txm{0}: TXMAIL_PARTITIONS stays 1 under TXM_PARTITIONS (conftest)
ONE_PARTITION = True


def redis_url(password, port, user="", db=None):
    url = "redis://%s:%s@127.0.0.1:%d" % (urllib.parse.quote(user, safe=""),
                                          urllib.parse.quote(password, safe=""), port)
    return url if db is None else "%s/%d" % (url, db)


def resp_pipeline(port, *cmds, timeout=2.0):
    """Send cmds (tuples) on one fresh connection; their replies, in order.
    RuntimeError on an error reply (helpers.resp_cmd's decoding)."""
    out = b""
    for cmd in cmds:
        out += b"*%d\r\n" % len(cmd)
        for a in cmd:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        f = s.makefile("rb")
        return [helpers._resp_read(f) for _ in cmds]


class AuthRedis(RedisServer):
    """A RedisServer that needs AUTH: extra_args adds --requirepass or
    --user directives; auth is what the harness itself sends."""

    def __init__(self, workdir, extra_args, auth):
        super().__init__(workdir, extra_args=extra_args)
        self.auth = tuple(auth)

    def cmd(self, *args, db=0):
        return resp_pipeline(self.port, ("AUTH",) + self.auth, ("SELECT", db), args)[-1]


def new_password():
    # '@', '/', ':', '%' and '?' must survive the URL's percent-encoding
    return "Rds-%s@/:%%?" % secrets.token_hex(10)


@pytest.fixture
def auth_redis(workdir, register_log):
    """start(extra_args, auth) -> a running AuthRedis, stopped at teardown."""
    started = []

    def start(extra_args, auth):
        r = AuthRedis(os.path.join(workdir, "auth%d" % len(started)), extra_args, auth)
        started.append(r)
        register_log("auth redis-server log %d" % len(started), r.log)
        r.start()
        return r
    yield start
    for r in started:
        r.stop()


def read_log(t):
    with open(t.log, "r", encoding="utf-8", errors="replace") as f:
        return f.read()


def assert_no_password(text, password, what):
    for form in (password, urllib.parse.quote(password, safe=""), password[:12]):
        assert form not in text, "%s holds the Redis password (%r):\n%s" % (what, form, text[-3000:])


def send_and_deliver(t, smtp_peer, rcpt):
    api = t.client()
    try:
        r = api.send({"from": "sender@example.com", "to": rcpt, "subject": "redis auth",
                      "text": "hello\n"})
    finally:
        api.close()
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    smtp_peer.wait_for_rcpt(rcpt, dl(15))
    return r.json["id"]


def test_requirepass_delivers_and_survives_restart(txmail_factory, txmail_binary, auth_redis,
                                                   redis, smtp_peer):
    pw = new_password()
    r = auth_redis(["--requirepass", pw], (pw,))
    t = txmail_factory(extra_env={"TXMAIL_REDIS_URL": redis_url(pw, r.port),
                                  "TXMAIL_LOG_LEVEL": "debug"})
    mid = send_and_deliver(t, smtp_peer, "before@example.com")
    assert r.cmd("EXISTS", "txm{0}:msg:" + mid) == 1, "message %s is not in the AUTH Redis" % mid
    assert redis.cmd("DBSIZE") == 0, "the conftest Redis (no AUTH) was written to"

    # kill -9 + restart with the same password: every connection is new and must AUTH again
    r.restart()
    api = t.client()
    try:
        def accepted():
            resp = api.send({"from": "sender@example.com", "to": "after@example.com",
                             "subject": "after restart", "text": "hello\n"})
            assert resp.status in (202, 503), "POST after the restart: got %s %r" % (
                resp.status, resp.body)
            return resp if resp.status == 202 else None
        wait_until(accepted, dl(15), "POST /v1/messages accepted after the Redis restart",
                   interval=0.1)
    finally:
        api.close()
    smtp_peer.wait_for_rcpt("after@example.com", dl(15))

    # the keys CLI connects through the same helper
    env = dict(t.env)
    p = subprocess.run([txmail_binary, "keys", "list"], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=dl(20))
    assert p.returncode == 0, "txmail keys list with AUTH: status %s, stderr %r" % (
        p.returncode, p.stderr)
    assert_no_password(p.stdout + p.stderr, pw, "txmail keys output")

    log = read_log(t)
    assert "redis=redis://:***@127.0.0.1:%d " % r.port in log, \
        "no masked redis URL in the config line:\n%s" % log[:3000]
    assert_no_password(log, pw, "the txmail log")


def auth_failed_line(log):
    """The log line of a refused AUTH (store_conn.c: msg="redis AUTH failed" error="AUTH failed: WRONGPASS ...")."""
    return [ln for ln in log.splitlines()
            if 'msg="redis AUTH failed"' in ln and "error=\"AUTH failed: WRONGPASS" in ln]


def test_acl_user_with_db(txmail_factory, auth_redis, smtp_peer):
    pw = new_password()
    r = auth_redis(["--user", "alice", "on", ">" + pw, "~*", "&*", "+@all",
                    "--user", "default", "off"], ("alice", pw))
    t = txmail_factory(extra_env={"TXMAIL_REDIS_URL": redis_url(pw, r.port, user="alice", db=3),
                                  "TXMAIL_LOG_LEVEL": "debug"})
    mid = send_and_deliver(t, smtp_peer, "acl@example.com")
    assert r.cmd("EXISTS", "txm{0}:msg:" + mid, db=3) == 1, \
        "message %s is not in db 3 of the ACL Redis" % mid
    assert r.cmd("DBSIZE") == 0, "db 0 of the ACL Redis was written to (SELECT not sent?)"
    log = read_log(t)
    assert "redis=redis://alice:***@127.0.0.1:%d/3 " % r.port in log, \
        "no masked redis URL in the config line:\n%s" % log[:3000]
    assert_no_password(log, pw, "the txmail log")


def test_password_changed_at_runtime_readyz_503(txmail_factory, auth_redis, smtp_peer):
    pw, other = new_password(), new_password()
    r = auth_redis(["--requirepass", pw], (pw,))
    t = txmail_factory(extra_env={"TXMAIL_REDIS_URL": redis_url(pw, r.port)})
    send_and_deliver(t, smtp_peer, "first@example.com")

    # a new password: connections already made stay authenticated, so drop them
    assert r.cmd("CONFIG", "SET", "requirepass", other) == "OK"
    r.auth = (other,)
    r.cmd("CLIENT", "KILL", "TYPE", "normal")
    c = t.client()
    try:
        wait_until(lambda: c.get("/readyz", auth=False).status == 503, dl(10),
                   "GET /readyz == 503 with a refused AUTH")
        wait_until(lambda: auth_failed_line(read_log(t)), dl(10),
                   "a msg=\"redis AUTH failed\" line naming WRONGPASS in the txmail log")
        assert r.cmd("CONFIG", "SET", "requirepass", pw) == "OK"
        r.auth = (pw,)
        wait_until(lambda: c.get("/readyz", auth=False).status == 200, dl(10),
                   "GET /readyz == 200 once the password is right again")
    finally:
        c.close()
    send_and_deliver(t, smtp_peer, "second@example.com")
    log = read_log(t)
    assert_no_password(log, pw, "the txmail log")
    assert_no_password(log, other, "the txmail log")


def test_wrong_password_stops_the_start(txmail_factory, auth_redis):
    pw, wrong = new_password(), new_password()
    r = auth_redis(["--requirepass", pw], (pw,))
    t = txmail_factory(extra_env={"TXMAIL_REDIS_URL": redis_url(wrong, r.port)},
                       wait=False)
    try:
        rc = t.proc.wait(timeout=dl(15))
    except subprocess.TimeoutExpired:
        pytest.fail("txmail kept running with a wrong Redis password; log:\n%s" % read_log(t)[-3000:])
    log = read_log(t)
    assert rc != 0, "exit status: got %s, want non-zero; log:\n%s" % (rc, log[-3000:])
    assert auth_failed_line(log), \
        "the error does not name AUTH:\n%s" % log[-3000:]
    assert_no_password(log, wrong, "the txmail log")
    assert_no_password(log, pw, "the txmail log")
