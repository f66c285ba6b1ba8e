"""test_redis_sentinel.py - TXMAIL_REDIS_URL=redis+sentinel://: Redis Sentinel.

Each test starts its own Sentinel group (sentinel_group.py) on loopback
ports, in its own directory: a primary redis-server, two replicas
(--replicaof) and three sentinels (`redis-server <conf> --sentinel`; quorum
2, down after 1 s, failover timeout 3 s). txmail is given only the
sentinels and the master name, so it can work only if it asks them.

Checked: a message is accepted and delivered through the primary the
sentinels name, the log says which primary (msg="redis primary"
addr=... master=...) and the config line masks the URL's password; after
the primary is SIGKILLed and the sentinels promote a replica, /readyz is
200 again within a deadline, a new send gets 202 and is delivered, its
message is on the new primary, and the log names the new primary. A
primary demoted under txmail (REPLICAOF, its clients kept) while the
sentinels still name it is left on its first -READONLY answer and not used
again (ROLE) until it is a primary again: /readyz 503, then 200. With a
password on the data nodes (in the URL) and another on the sentinels
(TXMAIL_REDIS_SENTINEL_PASSWORD) mail is delivered, `txmail config check`
shows both masked and neither is in the log (debug level).

Must never: wait without a deadline, leave a redis-server running, or pass
because a log is empty (the "redis primary" line must be there).
"""

import secrets
import subprocess
import urllib.parse

import helpers
from helpers import dl, wait_until
from sentinel_group import MASTER, sentinel_group  # noqa: F401 (the fixture, for the tests below)

# asserts message keys on the nodes: TXMAIL_PARTITIONS stays 1 under TXM_PARTITIONS (conftest)
ONE_PARTITION = True


def read_log(t):
    with open(t.log, "r", encoding="utf-8", errors="replace") as f:
        return f.read()


def primary_line(port):
    return 'msg="redis primary" addr=127.0.0.1:%d master=%s' % (port, MASTER)


def send(t, rcpt):
    api = t.client()
    try:
        return api.send({"from": "sender@example.com", "to": rcpt, "subject": "sentinel",
                         "text": "hello\n"})
    finally:
        api.close()


def send_and_deliver(t, smtp_peer, rcpt):
    r = send(t, rcpt)
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    smtp_peer.wait_for_rcpt(rcpt, dl(15))
    return r.json["id"]


def test_failover_to_a_promoted_replica(txmail_factory, sentinel_group, redis, smtp_peer):
    g = sentinel_group()
    old = g.primary
    t = txmail_factory(extra_env={"TXMAIL_REDIS_URL": g.url()})
    mid = send_and_deliver(t, smtp_peer, "before@example.com")
    assert old.cmd("EXISTS", "txm{0}:msg:" + mid) == 1, "message %s is not on the primary" % mid
    assert redis.cmd("DBSIZE") == 0, "the conftest Redis was written to"
    wait_until(lambda: primary_line(old.port) in read_log(t), dl(5),
               "a log line %s" % primary_line(old.port))

    old.kill9()
    new = g.wait_promoted(old, dl(30))
    c = t.client()
    try:
        wait_until(lambda: c.get("/readyz", auth=False).status == 200, dl(20),
                   "GET /readyz == 200 on the promoted replica", interval=0.1)
    finally:
        c.close()

    def accepted():
        r = send(t, "after@example.com")
        assert r.status in (202, 503), "POST after the failover: got %s %r" % (r.status, r.body)
        return r if r.status == 202 else None
    r = wait_until(accepted, dl(15), "POST /v1/messages accepted after the failover", interval=0.1)
    smtp_peer.wait_for_rcpt("after@example.com", dl(15))
    assert new.cmd("EXISTS", "txm{0}:msg:" + r.json["id"]) == 1, \
        "message %s is not on the new primary %d" % (r.json["id"], new.port)
    log = read_log(t)
    assert primary_line(new.port) in log, \
        "the log does not name the new primary (%s):\n%s" % (primary_line(new.port), log[-3000:])
    assert "redis=redis+sentinel://127.0.0.1:%d," % g.sentinels[0].port in log, \
        "no redis+sentinel:// URL in the config line:\n%s" % log[:3000]


def test_demoted_primary_readonly_is_left(txmail_factory, sentinel_group, smtp_peer):
    """The primary turned into a replica under txmail (REPLICAOF keeps its
    clients connected) while the sentinels still name it: the -READONLY
    answers drop the connection, and the replica is never used (ROLE), so
    /readyz is 503 until it is a primary again."""
    g = sentinel_group()
    old = g.primary
    t = txmail_factory(extra_env={"TXMAIL_REDIS_URL": g.url()})
    send_and_deliver(t, smtp_peer, "first@example.com")

    assert old.cmd("REPLICAOF", "127.0.0.1", str(helpers.free_port())) == "OK"
    r = send(t, "demoted@example.com")
    assert r.status in (503, 504), \
        "POST right after the primary became a replica: got %s %r, want 503 or 504" % (r.status, r.body)
    wait_until(lambda: "READONLY: no longer the primary" in read_log(t), dl(5),
               "a msg=\"redis connection lost\" line for the READONLY answer",
               diag=lambda: read_log(t)[-2000:])
    c = t.client()
    try:
        wait_until(lambda: c.get("/readyz", auth=False).status == 503, dl(10),
                   "GET /readyz == 503 while the sentinels name a replica", interval=0.1)
        assert "ROLE says slave, not master" in read_log(t), \
            "the log does not say the named node is a replica:\n%s" % read_log(t)[-3000:]
        assert old.cmd("REPLICAOF", "NO", "ONE") == "OK"
        wait_until(lambda: c.get("/readyz", auth=False).status == 200, dl(10),
                   "GET /readyz == 200 once it is the primary again", interval=0.1)
    finally:
        c.close()

    def accepted():
        resp = send(t, "after@example.com")
        assert resp.status in (202, 503, 504), "POST after REPLICAOF NO ONE: got %s %r" % (
            resp.status, resp.body)
        return resp if resp.status == 202 else None
    r = wait_until(accepted, dl(15), "POST /v1/messages accepted on the primary again", interval=0.1)
    smtp_peer.wait_for_rcpt("after@example.com", dl(15))
    assert old.cmd("EXISTS", "txm{0}:msg:" + r.json["id"]) == 1, \
        "message %s is not on the primary %d" % (r.json["id"], old.port)


def new_password(tag):
    return "%s-%s@/:%%?" % (tag, secrets.token_hex(8))


def test_sentinel_and_data_passwords(txmail_factory, txmail_binary, sentinel_group, smtp_peer):
    data_pw, sent_pw = new_password("Data"), new_password("Sent")
    g = sentinel_group(data_password=data_pw, sentinel_password=sent_pw)
    env = {"TXMAIL_REDIS_URL": g.url(data_pw), "TXMAIL_REDIS_SENTINEL_PASSWORD": sent_pw,
           "TXMAIL_LOG_LEVEL": "debug"}
    t = txmail_factory(extra_env=env)
    mid = send_and_deliver(t, smtp_peer, "pw@example.com")
    assert g.primary.cmd("EXISTS", "txm{0}:msg:" + mid) == 1, "message %s is not on the primary" % mid

    p = subprocess.run([txmail_binary, "config", "check"], env=dict(t.env), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=dl(20))
    out = p.stdout + p.stderr
    assert "TXMAIL_REDIS_SENTINEL_PASSWORD" in out and "***" in out, \
        "config check does not show the sentinel password masked:\n%s" % out
    log = read_log(t)
    assert primary_line(g.primary.port) in log, "no %s in the log:\n%s" % (
        primary_line(g.primary.port), log[-3000:])
    for pw in (data_pw, sent_pw):
        for form in (pw, urllib.parse.quote(pw, safe=""), pw[:12]):
            assert form not in log, "the txmail log holds a password (%r)" % form
            assert form not in out, "config check shows a password (%r)" % form


def test_wrong_sentinel_password_is_unavailable(txmail_factory, sentinel_group, smtp_peer):
    g = sentinel_group(sentinel_password=new_password("Sent"))
    wrong = new_password("Wrong")
    t = txmail_factory(extra_env={"TXMAIL_REDIS_URL": g.url(),
                                  "TXMAIL_REDIS_SENTINEL_PASSWORD": wrong}, wait=False)
    try:
        wait_until(lambda: 'msg="redis unavailable"' in read_log(t) or t.proc.poll() is not None,
                   dl(15), "a msg=\"redis unavailable\" line (or an exit)")
    finally:
        log = read_log(t)
    assert "AUTH refused (TXMAIL_REDIS_SENTINEL_PASSWORD)" in log, \
        "the log does not say the sentinels refused the password:\n%s" % log[-3000:]
    for form in (wrong, urllib.parse.quote(wrong, safe=""), wrong[:12]):
        assert form not in log, "the txmail log holds the password (%r)" % form
