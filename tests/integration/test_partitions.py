"""test_partitions.py - TXMAIL_PARTITIONS on one Redis (issue 15, point 3):
the keyspace split into hash tags txm{0} .. txm{P-1}, a message and its
recipients' state in one partition named in its id, every worker serving
every partition, project-wide data in partition 0 and the suppression
lists copied into each.

  - messages spread: 40 sends with P = 4 land 10 in each partition (in
    turn), each message's keys under its own tag and nowhere else; every
    one is delivered once at the peer and has its webhooks (the dispatcher
    reads every partition's outbox) and its live events (SSE over every
    partition's outbox);
  - an Idempotency-Key picks the partition: the replay answers the first
    id, one message stored, and a batch is one partition;
  - suppressions: one added through the API is in every partition's copy
    and suppresses a send in each; a 550 5.1.1 in one partition suppresses
    the address in all of them (record.lua writes its own, the store the
    others);
  - upgrade: data written with P = 1 (queued, scheduled and finished
    messages, a suppression) is read and delivered by txmail restarted
    with P = 4: old ids still answer GET, the queued and scheduled ones are
    delivered once, the suppression is copied into the new partitions
    (their supp:synced mark) and suppresses there, and new mail spreads;
  - `txmail config check` refuses 0 and 65 (on a Cluster:
    test_cluster_partitions.py).

Must never: wait without a deadline, or trust txmail's view where Redis or
the peer can be asked.
"""

import re
import subprocess
import time

import pytest

import helpers
from helpers import dl, resp_cmd, wait_until
from test_api_sse import SseClient

PID_RE = re.compile(r"^msg_[0-9a-z]{26}(?:p([1-9][0-9]?))?$")


def part_of(mid):
    m = PID_RE.match(mid)
    assert m, "id %r: want msg_ + 26 [0-9a-z] + an optional p<k>" % mid
    return int(m.group(1) or 0)


def keys(redis, pattern):
    return resp_cmd(redis.port, "KEYS", pattern)


def send(api, to, subject, **kw):
    msg = {"from": "a@example.com", "to": to, "subject": subject, "text": subject + "\n"}
    msg.update(kw.pop("fields", {}))
    r = api.send(msg, **kw)
    assert r.status == 202, "POST /v1/messages: got %s %r" % (r.status, r.body)
    return r.json["id"]


def status_of(api, mid):
    r = api.get("/v1/messages/" + mid)
    assert r.status == 200, "GET /v1/messages/%s: got %s %r" % (mid, r.status, r.body)
    return r.json


def wait_status(api, mid, want, timeout):
    last = {}

    def ok():
        last["j"] = status_of(api, mid)
        return last["j"]["status"] == want
    wait_until(ok, timeout, "%s %s" % (mid, want), interval=0.05, diag=lambda: "last: %r" % last.get("j"))


def peer_subjects(smtp_peer):
    return [m.msg["Subject"] for m in smtp_peer.messages()]


P4 = {"TXMAIL_PARTITIONS": "4"}


def test_messages_spread_over_partitions_and_all_are_served(txmail_factory, redis, smtp_peer, webhook):
    t = txmail_factory(extra_env=P4)
    api = t.client()
    # live events over every partition's outbox, read while the mail goes out
    sse = SseClient(t.port, t.key)
    assert sse.read_head(dl(5)) == 200, "SSE: got %s" % sse.status
    ids = [send(api, "rcpt%02d@example.com" % i, "spread %02d" % i) for i in range(40)]
    parts = [part_of(m) for m in ids]
    assert sorted(set(parts)) == [0, 1, 2, 3], "partitions used: %r" % sorted(set(parts))
    assert all(parts.count(k) == 10 for k in range(4)), "not in turn: %r" % parts
    # each message's keys are under its own tag, and only there
    for mid, k in zip(ids, parts):
        mine = keys(redis, "txm{%d}:msg:%s*" % (k, mid))
        assert "txm{%d}:msg:%s" % (k, mid) in mine, "%s: keys %r" % (mid, mine)
        for other in range(4):
            if other != k:
                assert keys(redis, "txm{%d}:msg:%s*" % (other, mid)) == [], "%s also in partition %d" % (
                    mid, other)
    for mid in ids:
        wait_status(api, mid, "delivered", dl(30))
    subj = peer_subjects(smtp_peer)
    for i in range(40):
        assert subj.count("spread %02d" % i) == 1, "spread %02d at the peer %d times" % (i, subj.count(
            "spread %02d" % i))
    for mid in ids:
        evs = webhook.wait_events_for(mid, 1, dl(20), types=("message.delivered",))
        assert len(evs) == 1, "%s: %d delivered webhooks" % (mid, len(evs))
    # every partition's outbox reached the live stream too
    for mid in ids:
        sse.wait(lambda f, mid=mid: f["json"]["data"].get("message_id") == mid and
                 f["json"]["type"] == "message.delivered", dl(20), "%s delivered on the stream" % mid)
    sse.close()
    # the fixed keys of every partition exist, the project-wide ones only in partition 0
    for k in range(4):
        assert resp_cmd(redis.port, "EXISTS", "txm{%d}:events" % k) == 1, "no outbox in partition %d" % k
    api.close()


def test_idempotency_key_picks_the_partition(txmail_factory, redis, smtp_peer):
    t = txmail_factory(extra_env=P4)
    api = t.client()
    seen = set()
    for i in range(12):
        h = {"Idempotency-Key": "order-%d" % i}
        a = send(api, "idem%d@example.com" % i, "idem %d" % i, headers=h)
        b = send(api, "idem%d@example.com" % i, "idem %d" % i, headers=h)
        assert a == b, "replay of order-%d: got %s, want the first id %s" % (i, b, a)
        k = part_of(a)
        seen.add(k)
        idem = keys(redis, "txm{%d}:idem:*" % k)
        assert len(idem) >= 1, "no idempotency record in partition %d" % k
    assert len(seen) >= 2, "12 keys all in partitions %r: not spread by key" % seen
    # a batch is one script: one partition for all its messages
    r = api.post_json("/v1/messages/batch", {"messages": [
        {"from": "a@example.com", "to": "b%d@example.com" % i, "subject": "batch %d" % i, "text": "x"}
        for i in range(5)]})
    assert r.status == 202, "batch: got %s %r" % (r.status, r.body)
    bp = {part_of(m["id"]) for m in r.json["data"]}
    assert len(bp) == 1, "one batch over partitions %r" % bp
    for i in range(12):
        smtp_peer.wait_for_rcpt("idem%d@example.com" % i, dl(20))
    for i in range(5):
        smtp_peer.wait_for_rcpt("b%d@example.com" % i, dl(20))
    for i in range(12):
        assert peer_subjects(smtp_peer).count("idem %d" % i) == 1, "idem %d delivered twice" % i
    api.close()


def supp_copies(redis, email):
    return [resp_cmd(redis.port, "HGET", "txm{%d}:supp" % k, email) for k in range(4)]


def test_suppressions_reach_every_partition(txmail_factory, redis, smtp_peer):
    t = txmail_factory(extra_env=P4)
    api = t.client()
    r = api.post_json("/v1/suppressions", {"email": "Listed@Example.com"})
    assert r.status == 201, "got %s %r" % (r.status, r.body)
    got = supp_copies(redis, "listed@example.com")
    assert all(v is not None and v.endswith(":manual") for v in got), "copies: %r" % got
    # a send to it is suppressed in every partition (four sends in turn: one in each)
    for i in range(4):
        r = api.send({"from": "a@example.com", "to": ["listed@example.com", "ok%d@example.com" % i],
                      "subject": "s%d" % i, "text": "x"})
        assert r.status == 202, "got %r" % r.body
        st = {x["email"]: x["status"] for x in r.json["recipients"]}
        assert st["listed@example.com"] == "suppressed", "partition %d: %r" % (part_of(r.json["id"]), st)
    # a hard bounce in one partition suppresses the address in all of them
    mid = send(api, "perm-gone@example.com", "bounce")
    wait_status(api, mid, "failed", dl(20))
    wait_until(lambda: all(v is not None for v in supp_copies(redis, "perm-gone@example.com")), dl(10),
               "the bounce's suppression in every partition",
               diag=lambda: "copies: %r" % supp_copies(redis, "perm-gone@example.com"))
    for i in range(4):
        r = api.send({"from": "a@example.com", "to": "perm-gone@example.com", "subject": "again", "text": "x"})
        assert r.json["recipients"][0]["status"] == "suppressed", "send %d (partition %d): %r" % (
            i, part_of(r.json["id"]), r.json)
    # deleting lifts it everywhere
    assert api.request("DELETE", "/v1/suppressions/listed@example.com").status == 204
    assert supp_copies(redis, "listed@example.com") == [None] * 4
    api.close()


def test_upgrade_from_one_partition(txmail_factory, redis, smtp_peer, webhook):
    # the release before partitions: everything under txm{0}, ids without a suffix
    old = txmail_factory(args=("api",), extra_env={"TXMAIL_PARTITIONS": "1"})
    api = old.client()
    queued = [send(api, "q%d@example.com" % i, "queued %d" % i) for i in range(6)]
    later = time.time() + 4
    sched = send(api, "later@example.com", "scheduled", fields={
        "send_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(later + 1))})
    r = api.post_json("/v1/suppressions", {"email": "old-supp@example.com"})
    assert r.status == 201, r.body
    assert all(part_of(m) == 0 for m in queued + [sched]), "ids before partitions: %r" % queued
    assert keys(redis, "txm{1}:*") == [], "P = 1 wrote outside partition 0"
    api.close()
    old.stop()
    # the new release with P = 4 on the same Redis: api and worker
    new = txmail_factory(extra_env=P4)
    api = new.client()
    wait_until(lambda: all(resp_cmd(redis.port, "EXISTS", "txm{%d}:supp:synced" % k) == 1 for k in (1, 2, 3)),
               dl(10), "the suppression lists copied into partitions 1-3")
    assert all(v is not None for v in supp_copies(redis, "old-supp@example.com")), supp_copies(
        redis, "old-supp@example.com")
    for mid in queued:
        wait_status(api, mid, "delivered", dl(30))
    wait_status(api, sched, "delivered", dl(30))
    subj = peer_subjects(smtp_peer)
    for s in ["queued %d" % i for i in range(6)] + ["scheduled"]:
        assert subj.count(s) == 1, "%r at the peer %d times" % (s, subj.count(s))
    for mid in queued:
        webhook.wait_events_for(mid, 1, dl(20), types=("message.delivered",))
    # the old suppression holds in every partition; new mail spreads
    for i in range(4):
        r = api.send({"from": "a@example.com", "to": "old-supp@example.com", "subject": "n", "text": "x"})
        assert r.json["recipients"][0]["status"] == "suppressed", "partition %d: %r" % (
            part_of(r.json["id"]), r.json)
    fresh = [send(api, "new%d@example.com" % i, "new %d" % i) for i in range(8)]
    assert {part_of(m) for m in fresh} == {0, 1, 2, 3}, [part_of(m) for m in fresh]
    for mid in fresh:
        wait_status(api, mid, "delivered", dl(30))
    api.close()


@pytest.mark.parametrize("value,url,why", [
    ("0", None, "TXMAIL_PARTITIONS"),
    ("65", None, "TXMAIL_PARTITIONS"),
])
def test_config_check_refuses(txmail_binary, value, url, why):
    env = {"TXMAIL_PARTITIONS": value}
    if url:
        env["TXMAIL_REDIS_URL"] = url
    p = subprocess.run([txmail_binary, "config", "check"], env=helpers.clean_env(env), capture_output=True,
                       text=True, timeout=dl(10))
    assert p.returncode == 1, "config check with TXMAIL_PARTITIONS=%s: exit %d\n%s%s" % (
        value, p.returncode, p.stdout, p.stderr)
    assert why in p.stdout + p.stderr, "no %r in: %s%s" % (why, p.stdout, p.stderr)
