"""test_cluster_partitions.py - txmail with TXMAIL_PARTITIONS > 1 on a Redis
Cluster, through the API: each partition's keys (hash tag txm{k}) on the
primary that owns the slot of txm{k}, and txmail routing each partition's
commands there.

The cluster of test_redis_cluster.py (six nodes, three primaries with a
replica each, node timeout 1 s, the slots in three equal ranges), `txmail
api` and `txmail worker` given its URL (redis+cluster://) and
TXMAIL_PARTITIONS=P (6 unless TXM_CLUSTER_PARTITIONS says otherwise; with
the three ranges of `--cluster create`, txm{0}..txm{5} are on every
primary, which each test asserts before relying on it). The senders post
one recipient per message with an Idempotency-Key (so its partition is
picked by the key) and retry as a careful client does: a connection
error, 503 or 504 sends the same request with the same key again, until a
202 or a deadline.

Checked:
  - spread: 60 messages of one project (no key: the partitions in turn)
    use every partition; each message's hash txm{k}:msg:<id> (k from the
    id's p<k>) is on the primary owning txm{k}'s slot and under no other
    partition's tag; every primary holds keys; each message is delivered
    once at the peer, has its message.delivered webhook, and GET says
    delivered;
  - failover: a primary SIGKILLed while six senders send
    (TXMAIL_REDIS_MIN_REPLICAS=1, 0.3 s), once the owner of partition 0 and
    once a primary owning only other partitions; its replica is promoted,
    the old node comes back as its replica (restarted as soon as the
    promotion shows: its first sync waits 5 s, repl-diskless-sync-delay);
    every message answered 202, and two per partition scheduled before the
    kill to be due during it, is delivered (the peer has its recipient, GET
    says delivered: lost 0, stuck 0) and has its message.delivered
    webhook; the scheduled ones once each; no message is stored that no
    client got a 202 for; a replay of every tenth key answers its first
    id; messages of the killed partitions are accepted again;
  - a replay after a failover the api did not see: its key's partition on
    the primary killed, replayed at once (before the promotion) and again
    once the old node is back and in sync: 202 with the first id within
    seconds;
  - resharding: while senders send, the slot of one partition is migrated
    by hand (SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE: ASK, then
    MOVED) and `redis-cli --cluster reshard` moves the slots up to and
    including another partition's; no answer but 202, 503 or 504, no
    connection error, every 202 delivered (with two per partition
    scheduled before, due after the moves: once each), 3 sends of each
    moved partition accepted after its move, the keys of both partitions
    on their new primaries afterwards, no message stored that was not
    202'd, replays answer their first ids;
  - live events and suppressions: GET /v1/events/stream carries the
    message.delivered of messages of every partition; a suppression added
    through the API is in every partition's copy (on that partition's
    primary) and suppresses sends landing in every partition (answered
    suppressed at once; their message.failed on the stream; a replay of
    each one's Idempotency-Key answers its first id); a 550 5.1.1 in one
    partition puts the address in every partition's copy, on every
    primary, and suppresses sends in each; a DELETE lifts every copy;
  - one primary down and not replaced (its replica may not fail over, the
    cluster serves what it still covers): the other partitions' sends are
    accepted and delivered, their scheduled mail promoted, while the down
    one's answer 503/504; back, it is served again;
  - a planned handover under load: CLUSTER FAILOVER on the replica of the
    primary with the most partitions (nothing killed: the old primary turns
    replica and keeps its connections) while six senders send: answers only
    202/503/504, 80 more accepted within 20 s of it, some in each of its
    partitions, every 202 delivered with its message.delivered webhook, a
    suppression added after it answered 201 within 10 s (or 504 first -
    its WAIT met the demoted node - and 200 on the retry);
  - live events under load: two streams, the first dropped while messages
    of every partition are delivered, the second resumed with Last-Event-ID:
    each stream's ids strictly increasing, the resumed one after the last
    id seen, and every event (the webhooks' ids) on exactly one of them.

Printed: the failover's promotion time and first 202s after the kill,
retries and answers by status, the migrations' keys and time.

Must never: wait without a deadline, pass with fewer than every message
accepted, or trust txmail's view where a node or the peer can be asked.
"""

import http.client
import os
import re
import threading
import time

import pytest

import helpers
from helpers import Client, dl, log, wait_until
from test_api_sse import SseClient
from test_redis_cluster import cluster, keyslot  # noqa: F401 (the fixture)

P = int(os.environ.get("TXM_CLUSTER_PARTITIONS", "6"))
PID_RE = re.compile(r"^msg_[0-9a-z]{26}(?:p([1-9][0-9]?))?$")
RCPT_RE = re.compile(r"^(.+)@example\.com$")
TERMINAL = ("delivered", "failed", "expired", "suppressed", "canceled")
RETRY_DEADLINE_S = 40     # per message, from its first attempt (a failover takes ~2-5 s)


def part_of(mid):
    m = PID_RE.match(mid)
    assert m, "id %r: want msg_ + 26 [0-9a-z] + an optional p<k>" % mid
    return int(m.group(1) or 0)


def tag_slot(k):
    return keyslot("txm{%d}:x" % k)


def partition_owners(c, via=None):
    """{partition: the primary's node dict} of txm{0}..txm{P-1}, as the cluster says."""
    return {k: c.owner(tag_slot(k), via) for k in range(P)}


def assert_every_primary_owns_a_partition(c):
    owners = partition_owners(c)
    prim = c.primaries()
    assert len(prim) == 3, "primaries: %r" % sorted(d["port"] for d in prim.values())
    assert {d["id"] for d in owners.values()} == set(prim), \
        "P=%d: the partitions' slots %r are on primaries %r only, want all three %r" % (
            P, {k: tag_slot(k) for k in range(P)}, sorted({d["port"] for d in owners.values()}),
            sorted(d["port"] for d in prim.values()))
    return owners


def wait_replicas_synced(c, timeout):
    """Every replica's link to its primary up (after `--cluster create` a replica's first
    sync waits repl-diskless-sync-delay, 5 s: until then WAIT 1 times out)."""
    def synced():
        for n in c.nodes:
            if n.proc.poll() is None and "role:slave" in n.cmd("INFO", "replication") and \
                    "master_link_status:up" not in n.cmd("INFO", "replication"):
                return False
        return True
    wait_until(synced, timeout, "every replica's link to its primary up", interval=0.1)


def stack(txmail_factory, c, extra=None):
    """`txmail api` and `txmail worker` on the cluster with P partitions."""
    env = {"TXMAIL_REDIS_URL": c.url(), "TXMAIL_PARTITIONS": str(P), "TXMAIL_HTTP_THREADS": "4"}
    env.update(extra or {})
    api = txmail_factory(args=("api",), extra_env=env)
    w = txmail_factory(args=("worker",), http=False, extra_env=env, name="worker")
    wait_until(lambda: 'msg="worker started"' in helpers.read_text(w.log), dl(20), "the worker started",
               diag=lambda: helpers.tail(w.log, 20))
    return api, w


def msg(rcpt, subject="cluster"):
    return {"from": "sender@example.com", "to": rcpt, "subject": subject, "text": "hello\n"}


class Sender:
    """One thread sending messages to <prefix><i>@example.com, each with its own
    Idempotency-Key, retried with it on 503/504/connection errors; at least n
    messages, then more until stop is set (at most cap)."""

    def __init__(self, t, prefix, n, stop=None, cap=2000, pause=0.0):
        self.t, self.prefix, self.n, self.stop, self.cap, self.pause = t, prefix, n, stop, cap, pause
        self.lock = threading.Lock()
        self.accepted = {}       # rcpt -> id
        self.keys = {}           # rcpt -> its Idempotency-Key
        self.answers = []        # (t_sent, status or None for a connection error)
        self.accepted_at = []    # (t_sent of the attempt that got the 202, id)
        self.retried = 0
        self.first_body = {}     # status -> the first body of a non-202 answer
        self.bad = []
        self.thread = threading.Thread(target=self.run, daemon=True, name="sender " + prefix)

    def more(self, i):
        if i >= self.cap:
            return False
        return i < self.n or (self.stop is not None and not self.stop.is_set())

    def run(self):
        c = self.t.client(timeout=dl(10))
        try:
            i = 0
            while self.more(i):
                self.one(c, i)
                i += 1
                if self.pause:
                    time.sleep(self.pause)
        except BaseException as e:  # reported by join()
            self.bad.append(("exception", repr(e), ""))
        finally:
            c.close()

    def one(self, c, i):
        rcpt = "%s%d@example.com" % (self.prefix, i)
        key = "%s-%d-%s" % (self.prefix, i, os.urandom(4).hex())
        self.keys[rcpt] = key
        end = time.monotonic() + dl(RETRY_DEADLINE_S)
        backoff = 0.02
        while True:
            t_sent = time.monotonic()
            try:
                r = c.send(msg(rcpt), headers={"Idempotency-Key": key})
            except (OSError, http.client.HTTPException):
                c.close()
                r = None
            status = r.status if r is not None else None
            with self.lock:
                self.answers.append((t_sent, status))
                if status != 202:
                    self.first_body.setdefault(status, r.body[:160] if r is not None else b"")
                if status == 202:
                    self.accepted[rcpt] = r.json["id"]
                    self.accepted_at.append((t_sent, r.json["id"]))
                    return
                if status not in (None, 503, 504):
                    self.bad.append((rcpt, status, r.body[:200]))
                    return
                self.retried += 1
            if time.monotonic() > end:
                self.bad.append((rcpt, "no 202 within %.0fs" % dl(RETRY_DEADLINE_S), status))
                return
            time.sleep(backoff)
            backoff = min(backoff * 2, 0.2)

    def n_accepted(self):
        with self.lock:
            return len(self.accepted)

    def start(self):
        self.thread.start()
        return self

    def join(self, timeout=None):
        self.thread.join(timeout or dl(RETRY_DEADLINE_S + 90))
        assert not self.thread.is_alive(), "%s did not finish" % self.thread.name
        assert not self.bad, "%s: answers other than 202/503/504: %r" % (self.thread.name, self.bad[:5])


def join_all(senders):
    for s in senders:
        s.join()
    accepted = {}
    for s in senders:
        accepted.update(s.accepted)
    return accepted


def answers_of(senders):
    return [a for s in senders for a in s.answers]


def peer_rcpts(smtp_peer):
    """rcpt -> copies at the peer."""
    out = {}
    for m in smtp_peer.messages():
        for r in m.meta.get("rcpt_tos", []):
            out[r.lower()] = out.get(r.lower(), 0) + 1
    return out


def not_at_peer(smtp_peer, accepted):
    have = peer_rcpts(smtp_peer)
    return sorted(r for r in accepted if r.lower() not in have)


def wait_all_at_peer(smtp_peer, accepted, timeout):
    """Wait (bounded) until every accepted recipient has a copy at the peer; -> those without one."""
    try:
        wait_until(lambda: not not_at_peer(smtp_peer, accepted), timeout,
                   "all %d accepted messages at the peer" % len(accepted), interval=0.2)
    except helpers.WaitTimeout:
        pass   # counted by the caller
    return not_at_peer(smtp_peer, accepted)


def statuses(port, key, ids, threads=4):
    """id -> the first recipient's status per GET (None: 404)."""
    res, lock, errs = {}, threading.Lock(), []

    def work(part):
        c = Client(port, key=key, timeout=dl(10))
        try:
            for mid in part:
                r = c.get("/v1/messages/" + mid)
                assert r.status in (200, 404), "GET /v1/messages/%s: got %s %r" % (mid, r.status, r.body)
                with lock:
                    res[mid] = r.json["recipients"][0]["status"] if r.status == 200 else None
        except BaseException as e:  # re-raised below
            errs.append(e)
        finally:
            c.close()
    ts = [threading.Thread(target=work, args=(ids[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(dl(60))
    assert not any(t.is_alive() for t in ts), "a GET thread did not finish"
    if errs:
        raise errs[0]
    return res


def wait_statuses(api, ids, timeout):
    """Wait (bounded) until GET says delivered for every id; -> {id: status} of the last round."""
    last = {}

    def done():
        todo = [m for m in ids if last.get(m) != "delivered"]
        last.update(statuses(api.port, api.key, todo))
        return all(last[m] == "delivered" for m in ids)
    try:
        wait_until(done, timeout, "GET delivered for all %d messages" % len(ids), interval=0.3)
    except helpers.WaitTimeout:
        pass   # counted by the caller
    return last


def not_delivered(last):
    """-> (vanished: GET 404, stuck: not final, final otherwise) of {id: status}."""
    vanished = sorted(m for m, st in last.items() if st is None)
    stuck = sorted(m for m, st in last.items() if st not in TERMINAL and st is not None)
    other = sorted(m for m, st in last.items() if st in TERMINAL and st != "delivered")
    return vanished, stuck, other


def wait_all_delivered(api, ids, timeout):
    """GET says delivered for every id within timeout, or the test fails."""
    last = wait_statuses(api, ids, timeout)
    bad = {m: last.get(m) for m in ids if last.get(m) != "delivered"}
    if bad:
        vanished = [m for m, s in bad.items() if s is None]
        raise AssertionError("%d of %d not delivered per GET within %.0fs: %d vanished (404), %d stuck or "
                             "final otherwise %r; e.g. %r" % (
                                 len(bad), len(ids), timeout, len(vanished), len(bad) - len(vanished),
                                 sorted(set(bad.values()) - {None}), sorted(bad.items())[:5]))
    return last


def wait_webhooks(webhook, ids, timeout):
    """Wait (bounded) for a message.delivered webhook of every id; -> the ids without one."""
    def missing():
        return [m for m in ids if not webhook.events_for(m, ("message.delivered",))]
    try:
        wait_until(lambda: not missing(), timeout, "a message.delivered webhook for each of %d" % len(ids),
                   interval=0.2)
    except helpers.WaitTimeout:
        pass   # counted by the caller
    return missing()


def first_bodies(senders):
    """{status: the first body answered with it} over the senders (not 202)."""
    out = {}
    for x in senders:
        for st, b in x.first_body.items():
            out.setdefault(st, b)
    return out


def rfc3339(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%03dZ" % (int(ts * 1000) % 1000)


def send_scheduled(api, prefix, per_part, at):
    """Messages due at `at`, each with a key of its own (retried with it on 503/504), until
    every partition has per_part of them; -> {rcpt: id}."""
    cl = api.client()
    out, retried = {}, []
    try:
        for i in range(40 * P * per_part):
            have = by_part(out.values())
            if all(len(have.get(k, ())) >= per_part for k in range(P)):
                break
            m = msg("%s%d@example.com" % (prefix, i), "scheduled %d" % i)
            m["send_at"] = rfc3339(at)
            h = {"Idempotency-Key": "%s%d-%s" % (prefix, i, os.urandom(4).hex())}
            end = time.monotonic() + dl(10)
            while True:
                r = cl.send(m, headers=h)
                if r.status not in (503, 504) or time.monotonic() > end:
                    break
                retried.append((i, r.status, r.body[:120]))
                time.sleep(0.05)
            assert r.status == 202 and r.json["status"] == "scheduled", "scheduled send: got %s %r" % (
                r.status, r.body)
            out["%s%d@example.com" % (prefix, i)] = r.json["id"]
    finally:
        cl.close()
    if retried:
        log("scheduled sends on a healthy cluster retried %d times, e.g. %r" % (len(retried), retried[:3]))
    assert set(by_part(out.values())) == set(range(P)), "scheduled in partitions %r" % sorted(by_part(out.values()))
    return out


MSG_KEY_RE = re.compile(r"txm\{(\d+)\}:msg:(msg_[0-9a-z]{26}(?:p[1-9][0-9]?)?)")


def stored_message_ids(c):
    """The id of every message hash on the primaries (SCAN txm{k}:msg:* on the owner of txm{k})."""
    ids = set()
    owners = partition_owners(c)
    for k in range(P):
        node, cur = c.by_port(owners[k]["port"]), "0"
        while True:
            cur, keys = node.cmd("SCAN", cur, "MATCH", "txm{%d}:msg:*" % k, "COUNT", "1000")
            for key in keys:
                m = MSG_KEY_RE.fullmatch(key)
                if m:
                    ids.add(m.group(2))
            if cur == "0":
                break
    return ids


def replay(api, senders, every=10):
    """Send every tenth accepted message again with its key: -> those not answered 202 with the first id."""
    bad = []
    cl = api.client(timeout=dl(10))
    try:
        for x in senders:
            for rcpt, mid in sorted(x.accepted.items())[::every]:
                r = cl.send(msg(rcpt), headers={"Idempotency-Key": x.keys[rcpt]})
                if r.status != 202 or r.json["id"] != mid:
                    bad.append((rcpt, mid, r.status, r.body[:160]))
    finally:
        cl.close()
    return bad


def by_part(ids):
    out = {}
    for m in ids:
        out.setdefault(part_of(m), []).append(m)
    return out


def check_keys_where_they_belong(c, ids):
    """Each id's hash under its own tag on its partition's primary, under no other tag."""
    owners = partition_owners(c)
    for mid in ids:
        k = part_of(mid)
        key = "txm{%d}:msg:%s" % (k, mid)
        node = c.by_port(owners[k]["port"])
        assert node.cmd("CLUSTER", "KEYSLOT", key) == tag_slot(k)
        assert node.cmd("EXISTS", key) == 1, "%s: no %s on %d, the primary of slot %d" % (
            mid, key, node.port, tag_slot(k))
        for j in range(P):
            if j != k:
                other = "txm{%d}:msg:%s" % (j, mid)
                assert c.by_port(owners[j]["port"]).cmd("EXISTS", other) == 0, "%s also under txm{%d}" % (mid, j)


def test_partitions_spread_over_every_primary(txmail_factory, cluster, smtp_peer, webhook):
    c = cluster
    owners = assert_every_primary_owns_a_partition(c)
    api, _ = stack(txmail_factory, c)
    cl = api.client()
    ids = []
    for i in range(60):
        r = cl.send(msg("s%02d@example.com" % i, "spread %02d" % i))
        assert r.status == 202, "POST /v1/messages: got %s %r" % (r.status, r.body)
        ids.append(r.json["id"])
    cl.close()
    parts = by_part(ids)
    assert sorted(parts) == list(range(P)), "partitions used by 60 sends: %r" % sorted(parts)
    check_keys_where_they_belong(c, ids)
    wait_all_delivered(api, ids, dl(60))
    subj = [m.msg["Subject"] for m in smtp_peer.messages()]
    for i in range(60):
        assert subj.count("spread %02d" % i) == 1, "spread %02d at the peer %d times" % (
            i, subj.count("spread %02d" % i))
    for mid in ids:
        evs = webhook.wait_events_for(mid, 1, dl(20), types=("message.delivered",))
        assert len(evs) == 1, "%s: %d message.delivered webhooks" % (mid, len(evs))
    counts = {d["port"]: c.by_port(d["port"]).cmd("DBSIZE") for d in c.primaries().values()}
    assert len(counts) == 3 and all(v > 0 for v in counts.values()), "keys per primary: %r" % counts
    log("cluster spread: P=%d, messages per partition %r, partition -> primary %r, keys per primary %r" % (
        P, {k: len(v) for k, v in sorted(parts.items())}, {k: d["port"] for k, d in owners.items()}, counts))


def test_partitions_of_other_primaries_go_on_while_one_is_down(txmail_factory, cluster, smtp_peer):
    """A primary down and not replaced (its replica told not to fail over, the cluster told to
    serve the slots it still covers): the other partitions' mail is accepted and delivered,
    scheduled mail of theirs promoted, meanwhile; the down one's sends answer 503; once the
    node is back its partition is served again. Before st_run_partial the worker's read of
    every partition failed with the one node, and nothing was delivered until it came back."""
    c = cluster
    owners = assert_every_primary_owns_a_partition(c)
    # the primary that owns the fewest partitions (txm{3} alone, with the three ranges)
    counts = {}
    for k, d in owners.items():
        counts.setdefault(d["id"], []).append(k)
    vid, down = min(counts.items(), key=lambda kv: len(kv[1]))
    victim = next(d for d in c.primaries().values() if d["id"] == vid)
    vnode = c.by_port(victim["port"])
    replica = c.by_port(next(n for n in vnode.nodes() if n["master"] == vid)["port"])
    assert replica.cmd("CONFIG", "SET", "cluster-replica-no-failover", "yes") == "OK"
    for n in c.nodes:
        assert n.cmd("CONFIG", "SET", "cluster-require-full-coverage", "no") == "OK"
    api, _ = stack(txmail_factory, c)
    cl = api.client(timeout=dl(10))
    # warm: every node's connection made, both ways
    warm = [cl.send(msg("warm%d@example.com" % i)).json["id"] for i in range(P)]
    wait_all_delivered(api, warm, dl(30))
    later = send_scheduled(api, "sched", 1, time.time() + 3)   # due while the node is down
    vnode.kill9()
    t_kill = time.monotonic()
    ok, refused = {}, []
    for i in range(36):
        r = cl.send(msg("out%d@example.com" % i))
        if r.status == 202:
            ok["out%d@example.com" % i] = r.json["id"]
        else:
            # 503; 504 for the one whose connection died under it (it may have run)
            assert r.status in (503, 504), "a send while partitions %r are down: %s %r" % (down, r.status, r.body)
            refused.append(i)
    assert all(part_of(m) not in down for m in ok.values()), "a 202 in a down partition: %r" % ok
    assert len(ok) >= 36 - 36 * len(down) // P - 1 and refused, \
        "while partitions %r were down: %d accepted, %d refused" % (down, len(ok), len(refused))
    due = {r: m for r, m in later.items() if part_of(m) not in down}
    missing = wait_all_at_peer(smtp_peer, dict(ok, **due), dl(30))
    t_done = time.monotonic()
    assert not missing, "while partitions %r were down, %d of %d not delivered, e.g. %r" % (
        down, len(missing), len(ok) + len(due), missing[:3])
    assert vnode.proc.poll() is not None, "the node came back by itself"
    assert "role:slave" in replica.cmd("INFO", "replication"), "the replica was promoted after all"
    vnode.start()
    t_back = time.monotonic()
    wait_until(lambda: c.ok(), dl(30), "the cluster whole again", interval=0.1)
    back = {}
    for i in range(2 * P):
        r = cl.send(msg("back%d@example.com" % i), headers={"Idempotency-Key": "back-%d" % i})
        end = time.monotonic() + dl(20)
        while r.status in (503, 504) and time.monotonic() < end:
            time.sleep(0.1)
            r = cl.send(msg("back%d@example.com" % i), headers={"Idempotency-Key": "back-%d" % i})
        assert r.status == 202, "a send after the node came back: %s %r" % (r.status, r.body)
        back["back%d@example.com" % i] = r.json["id"]
    assert set(down) <= {part_of(m) for m in back.values()}, "no send in partitions %r after" % down
    rest = {r: m for r, m in later.items() if part_of(m) in down}
    missing = wait_all_at_peer(smtp_peer, dict(back, **rest), dl(30))
    assert not missing, "after the node came back, %d not delivered, e.g. %r" % (len(missing), missing[:3])
    cl.close()
    log("cluster: primary %d (partitions %r) down %.1fs: %d sends accepted and delivered with %d scheduled "
        "in %.1fs, %d refused (503); back: %d more delivered" % (
            victim["port"], down, t_back - t_kill, len(ok), len(due), t_done - t_kill, len(refused),
            len(back) + len(rest)))


@pytest.mark.parametrize("victim_of", ["partition0", "others"])
def test_partitions_primary_killed_under_load(txmail_factory, cluster, smtp_peer, webhook, victim_of):
    c = cluster
    owners = assert_every_primary_owns_a_partition(c)
    if victim_of == "partition0":
        victim = owners[0]
    else:
        victim = next(d for d in owners.values() if d["id"] != owners[0]["id"])
    hit = sorted(k for k, d in owners.items() if d["id"] == victim["id"])
    vnode = c.by_port(victim["port"])
    replica = next(n for n in vnode.nodes() if n["master"] == victim["id"])
    others = [x for x in c.nodes if x is not vnode]
    api, _ = stack(txmail_factory, c, {"TXMAIL_REDIS_MIN_REPLICAS": "1",
                                       "TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT": "0.3"})
    wait_replicas_synced(c, dl(20))
    # due while the victim is down or just after: stored on it before the kill
    sched = send_scheduled(api, "sched-", 2, time.time() + 3)
    stop = threading.Event()
    senders = [Sender(api, "f%d-" % i, 30, stop=stop, pause=0.005).start() for i in range(6)]
    n_acc = lambda: sum(s.n_accepted() for s in senders)  # noqa: E731
    try:
        wait_until(lambda: n_acc() >= 80, dl(30), "80 accepted before the kill", interval=0.02)
        vnode.kill9()
        t_kill, wall_kill = time.monotonic(), time.time()
        at_kill = n_acc()
        wait_until(lambda: replica["id"] in c.primaries(via=others[0]) and c.ok(others), dl(30),
                   "replica %d promoted in place of %d" % (replica["port"], victim["port"]), interval=0.1,
                   diag=lambda: str([c.state(x) for x in others]))
        t_promoted = time.monotonic()
        # back as the promoted node's replica (a pod restart), so WAIT 1 is met again on that shard
        vnode.start()
        wait_until(lambda: c.ok() and c.roles_agree(), dl(30), "the old primary back as a replica: every node "
                   "cluster_state:ok, 3 primaries, 3 replicas", interval=0.1,
                   diag=lambda: str([c.state(x) for x in c.nodes]))
        t_back = time.monotonic()
        wait_until(lambda: "master_link_status:up" in vnode.cmd("INFO", "replication"), dl(30),
                   "the old primary's replication link up", interval=0.05)
        t_synced = time.monotonic()
        n = n_acc()
        wait_until(lambda: n_acc() >= n + 80, dl(40), "80 more accepted with the old node back", interval=0.05)
    finally:
        stop.set()
    accepted = join_all(senders)
    t_load = time.monotonic()
    accepted.update(sched)
    ids = sorted(accepted.values())
    no_copy = wait_all_at_peer(smtp_peer, accepted, dl(60))
    last = wait_statuses(api, ids, dl(60))
    vanished, stuck, other = not_delivered(last)
    no_webhook = wait_webhooks(webhook, ids, dl(60))
    extra = stored_message_ids(c) - set(ids)
    replay_bad = replay(api, senders)
    copies = peer_rcpts(smtp_peer)
    dups = sum(v - 1 for r, v in copies.items() if r in accepted)
    # MIN_REPLICAS=1: an event goes out once the replica has it, so a failover undoes no outcome
    # that was told: one message.delivered event per message, and no second copy of a message
    # whose webhook came before the kill
    evs = {m: webhook.events_for(m, ("message.delivered",)) for m in ids}
    two_events = sorted(m for m, e in evs.items() if len({x["id"] for x in e}) > 1)
    told_then_again = sorted(r for r, m in accepted.items() if copies.get(r.lower(), 0) > 1 and
                             any(x["at"] < wall_kill for x in evs[m]))
    dup_parts = sorted({part_of(accepted[r]) for r, v in copies.items() if r in accepted and v > 1})
    answers = answers_of(senders)
    after = sorted((t, m) for s in senders for t, m in s.accepted_at if t >= t_kill)
    first_any = next((t for t, m in after), None)
    first_hit = next((t for t, m in after if part_of(m) in hit), None)
    during = sum(1 for t, m in after if t < t_promoted)
    log("cluster failover (%s): killed %d (partitions %r) with %d accepted; replica %d promoted %.2fs after "
        "the kill, old node back as replica at %.2fs, its replication link up at %.2fs; first 202 sent after the kill %s, of a killed "
        "partition %s; 202s sent before the promotion %d; %d messages in %.1fs, retries %d (503: %d, 504: %d, "
        "connection errors: %d), duplicates at the peer %d (partitions %r; of a message told delivered before the "
        "kill %d; messages with two delivered events %d), per partition %r; lost %d (no copy at the peer %d, "
        "GET 404 %d, final but not delivered %d), stuck %d, without a message.delivered webhook %d; stored "
        "but never 202'd %d; replays not answering the first id %d; first bodies %r" % (
            victim_of, victim["port"], hit, at_kill, replica["port"], t_promoted - t_kill, t_back - t_kill, t_synced - t_kill,
            "%.2fs" % (first_any - t_kill) if first_any else "none",
            "%.2fs" % (first_hit - t_kill) if first_hit else "none", during, len(ids), t_load - t_kill,
            sum(s.retried for s in senders), sum(1 for a in answers if a[1] == 503),
            sum(1 for a in answers if a[1] == 504), sum(1 for a in answers if a[1] is None), dups, dup_parts,
            len(told_then_again), len(two_events),
            {k: len(v) for k, v in sorted(by_part(ids).items())},
            len(set(no_copy) | {r for r, m in accepted.items() if m in vanished or m in other}),
            len(no_copy), len(vanished), len(other), len(stuck), len(no_webhook), len(extra), len(replay_bad),
            first_bodies(senders)))
    assert not no_copy, "%d 202'd messages never reached the peer, e.g. %r" % (
        len(no_copy), [(r, accepted[r]) for r in no_copy[:5]])
    assert not no_webhook, "%d delivered messages without a message.delivered webhook, e.g. %r" % (
        len(no_webhook), no_webhook[:5])
    assert not vanished, "%d 202'd messages answer GET 404 (gone with the old primary), e.g. %r" % (
        len(vanished), vanished[:5])
    assert not other, "%d 202'd messages final but not delivered: %r" % (
        len(other), [(m, last[m]) for m in other[:5]])
    assert not stuck, "%d messages not final after %.0fs: %r" % (len(stuck), dl(60), [(m, last[m]) for m in stuck[:5]])
    assert not extra, "%d messages stored that no client got a 202 for (one key made two?), e.g. %r" % (
        len(extra), sorted(extra)[:5])
    assert not replay_bad, "%d replays did not answer the first id, e.g. %r" % (len(replay_bad), replay_bad[:3])
    dup_sched = [r for r in sched if copies.get(r.lower(), 0) != 1]
    assert not dup_sched, "scheduled messages not delivered exactly once: %r" % (
        [(r, copies.get(r.lower(), 0)) for r in dup_sched[:5]])
    assert first_hit is not None, "no message of the killed partitions %r accepted after the kill" % hit
    assert set(by_part(ids)) == set(range(P)), "partitions used: %r" % sorted(by_part(ids))


def migrate_by_hand(c, slot, dst, batch=3, pause=0.05):
    """Slot `slot` moved to primary dst (a node dict): IMPORTING/MIGRATING, MIGRATE
    of its keys a few at a time (sends hit it midway), SETSLOT NODE everywhere.
    -> keys moved."""
    src = c.owner(slot)
    snode, dnode = c.by_port(src["port"]), c.by_port(dst["port"])
    assert dnode.cmd("CLUSTER", "SETSLOT", slot, "IMPORTING", src["id"]) == "OK"
    assert snode.cmd("CLUSTER", "SETSLOT", slot, "MIGRATING", dst["id"]) == "OK"
    moved = 0
    end = time.monotonic() + dl(60)
    while True:
        keys = snode.cmd("CLUSTER", "GETKEYSINSLOT", slot, batch)
        if not keys:
            break
        assert time.monotonic() < end, "slot %d: keys still on %d after %.0fs" % (slot, snode.port, dl(60))
        args = ["MIGRATE", "127.0.0.1", dst["port"], "", 0, 5000]
        if c.password:
            args += ["AUTH", c.password]
        snode.cmd(*(args + ["KEYS"] + keys))
        moved += len(keys)
        time.sleep(pause)
    third = [c.by_port(d["port"]) for d in c.primaries().values() if d["id"] not in (src["id"], dst["id"])]
    for n in [dnode, snode] + third:
        assert n.cmd("CLUSTER", "SETSLOT", slot, "NODE", dst["id"]) == "OK"
    return moved


def test_partitions_reshard_under_load(txmail_factory, cluster, smtp_peer):
    c = cluster
    owners = assert_every_primary_owns_a_partition(c)
    # the reshard takes the source's lowest slots first: the partition whose slot is lowest in its
    # owner's range costs the fewest slots to move; another partition goes by hand
    rank = {k: sorted(d["slots"]).index(tag_slot(k)) for k, d in owners.items()}
    by_reshard = min(rank, key=lambda k: rank[k])
    by_hand = next(k for k in range(P) if k != by_reshard and owners[k]["id"] != owners[by_reshard]["id"])
    api, _ = stack(txmail_factory, c)
    # waiting in every partition's due set while the slots move
    sched = send_scheduled(api, "sched-", 2, time.time() + 4)
    stop = threading.Event()
    senders = [Sender(api, "r%d-" % i, 40, stop=stop, pause=0.005).start() for i in range(3)]
    n_acc = lambda: sum(s.n_accepted() for s in senders)  # noqa: E731

    def in_part_since(k, t):
        return sum(1 for x in senders for ts, m in list(x.accepted_at) if ts >= t and part_of(m) == k)

    def more_after(k, t, what):
        n = n_acc()
        wait_until(lambda: n_acc() >= n + 40 and in_part_since(k, t) >= 3, dl(30),
                   "40 more accepted, 3 of them in txm{%d}, after %s" % (k, what), interval=0.02,
                   diag=lambda: "%d more, %d in txm{%d}" % (n_acc() - n, in_part_since(k, t), k))
    try:
        wait_until(lambda: n_acc() >= 120, dl(30), "120 accepted before the migrations", interval=0.02)
        slot_h = tag_slot(by_hand)
        src_h = owners[by_hand]
        dst_h = next(d for d in c.primaries().values() if d["id"] != src_h["id"])
        t0 = time.monotonic()
        moved = migrate_by_hand(c, slot_h, dst_h)
        t_hand = time.monotonic() - t0
        wait_until(lambda: c.owner(slot_h, c.by_port(src_h["port"]))["id"] == dst_h["id"], dl(10),
                   "slot %d on %d" % (slot_h, dst_h["port"]))
        during_h = in_part_since(by_hand, t0)
        more_after(by_hand, time.monotonic(), "the hand migration")

        slot_r = tag_slot(by_reshard)
        src_r = c.owner(slot_r)
        dst_r = next(d for d in c.primaries().values() if d["id"] != src_r["id"])
        nslots = sorted(src_r["slots"]).index(slot_r) + 1
        t0 = time.monotonic()
        c.redis_cli("--cluster", "reshard", "127.0.0.1:%d" % src_r["port"], "--cluster-from", src_r["id"],
                    "--cluster-to", dst_r["id"], "--cluster-slots", str(nslots), "--cluster-yes",
                    "--cluster-pipeline", "20", timeout=120)
        t_reshard = time.monotonic() - t0
        assert c.owner(slot_r)["id"] == dst_r["id"], "the reshard did not move slot %d (txm{%d}) to %d" % (
            slot_r, by_reshard, dst_r["port"])
        during_r = in_part_since(by_reshard, t0)
        more_after(by_reshard, time.monotonic(), "the reshard")
    finally:
        stop.set()
    accepted = join_all(senders)
    accepted.update(sched)
    ids = sorted(accepted.values())
    answers = answers_of(senders)
    codes = {}
    for _, st in answers:
        codes[st] = codes.get(st, 0) + 1
    no_copy = wait_all_at_peer(smtp_peer, accepted, dl(60))
    last = wait_statuses(api, ids, dl(60))
    vanished, stuck, other = not_delivered(last)
    log("cluster reshard: txm{%d} (slot %d, %d keys) by hand %d -> %d in %.1fs (%d of its 202s sent meanwhile), "
        "txm{%d} (slot %d) with %d slots by redis-cli %d -> %d in %.1fs (%d of its 202s meanwhile); %d messages, "
        "answers %r (first bodies %r), retries %d, per partition %r" % (
            by_hand, slot_h, moved, src_h["port"], dst_h["port"], t_hand, during_h, by_reshard, slot_r, nslots,
            src_r["port"], dst_r["port"], t_reshard, during_r, len(ids), codes, first_bodies(senders),
            sum(s.retried for s in senders),
            {k: len(v) for k, v in sorted(by_part(ids).items())}))
    log("cluster reshard: no copy at the peer %d, GET 404 %d, final but not delivered %d, stuck %d" % (
        len(no_copy), len(vanished), len(other), len(stuck)))
    assert set(codes) <= {202, 503, 504}, "answers other than 202/503/504 (None: a connection error): %r" % codes
    assert not no_copy, "%d 202'd messages never reached the peer, e.g. %r" % (
        len(no_copy), [(r, accepted[r]) for r in no_copy[:5]])
    assert not (vanished or stuck or other), "not delivered per GET: %d 404, %d stuck, %d final otherwise: %r" % (
        len(vanished), len(stuck), len(other), [(m, last[m]) for m in (vanished + stuck + other)[:5]])
    assert moved > 0, "no key of txm{%d} moved by hand: nothing was sent to it?" % by_hand
    # both partitions' keys now on their new primaries, none left behind
    for k, dst in ((by_hand, dst_h), (by_reshard, dst_r)):
        slot = tag_slot(k)
        assert c.owner(slot)["id"] == dst["id"]
        for d in c.primaries().values():
            n = c.by_port(d["port"]).cmd("CLUSTER", "COUNTKEYSINSLOT", slot)
            assert (n > 0) == (d["id"] == dst["id"]), "slot %d (txm{%d}): %d keys on %d, want all on %d" % (
                slot, k, n, d["port"], dst["port"])
    check_keys_where_they_belong(c, ids)
    copies = peer_rcpts(smtp_peer)
    assert all(copies.get(r.lower()) == 1 for r in sched), "scheduled messages not delivered exactly once: %r" % (
        {r: copies.get(r.lower(), 0) for r in sched if copies.get(r.lower()) != 1})
    extra = stored_message_ids(c) - set(ids)
    assert not extra, "%d messages stored that no client got a 202 for, e.g. %r" % (len(extra), sorted(extra)[:5])
    replay_bad = replay(api, senders)
    assert not replay_bad, "%d replays did not answer the first id, e.g. %r" % (len(replay_bad), replay_bad[:3])
    # and the moved partitions still take mail
    tail_s = Sender(api, "after-", 3 * P).start()
    after = join_all([tail_s])
    wait_all_delivered(api, sorted(after.values()), dl(30))


def test_partitions_live_events_and_suppressions(txmail_factory, cluster, smtp_peer):
    c = cluster
    owners = assert_every_primary_owns_a_partition(c)
    api, _ = stack(txmail_factory, c)
    cl = api.client()
    sse = SseClient(api.port, api.key)
    try:
        assert sse.read_head(dl(5)) == 200, "SSE: got %s" % sse.status
        ids = []
        for i in range(2 * P):
            r = cl.send(msg("ev%02d@example.com" % i, "events %02d" % i))
            assert r.status == 202, "POST /v1/messages: got %s %r" % (r.status, r.body)
            ids.append(r.json["id"])
        assert sorted(by_part(ids)) == list(range(P)), "partitions used: %r" % sorted(by_part(ids))
        for mid in ids:
            sse.wait(lambda f, mid=mid: f["json"]["data"].get("message_id") == mid and
                     f["json"]["type"] == "message.delivered", dl(30), "%s delivered on the stream" % mid)

        r = cl.post_json("/v1/suppressions", {"email": "Listed@Example.com"})
        assert r.status == 201, "POST /v1/suppressions: got %s %r" % (r.status, r.body)
        for k in range(P):
            v = c.by_port(owners[k]["port"]).cmd("HGET", "txm{%d}:supp" % k, "listed@example.com")
            assert v is not None, "no copy of the suppression in txm{%d}:supp on %d" % (k, owners[k]["port"])
        # sends with their own keys land where the keys say: until each partition had one
        supp, supp_key = {}, {}
        for i in range(40 * P):
            if len(supp) == P:
                break
            r = cl.send(msg("listed@example.com", "suppressed %d" % i), headers={"Idempotency-Key": "supp-%d" % i})
            assert r.status == 202, "POST /v1/messages to a suppressed address: got %s %r" % (r.status, r.body)
            st = r.json["recipients"][0]["status"]
            assert st == "suppressed", "partition %d: %r" % (part_of(r.json["id"]), r.json)
            if part_of(r.json["id"]) not in supp:
                supp[part_of(r.json["id"])] = r.json["id"]
                supp_key[r.json["id"]] = i
        assert sorted(supp) == list(range(P)), "suppressed sends landed in partitions %r only" % sorted(supp)
        for k, mid in sorted(supp.items()):
            sse.wait(lambda f, mid=mid: f["json"]["data"].get("message_id") == mid and
                     f["json"]["type"] == "message.failed", dl(20), "%s (txm{%d}) failed on the stream" % (mid, k))
        # a replay of each partition's key answers its first id
        for k, mid in sorted(supp.items()):
            i = supp_key[mid]
            r = cl.send(msg("listed@example.com", "suppressed %d" % i), headers={"Idempotency-Key": "supp-%d" % i})
            assert r.status == 202 and r.json["id"] == mid, "replay of supp-%d (txm{%d}): got %s %r, want %s" % (
                i, k, r.status, r.body[:200], mid)

        # a hard bounce in one partition suppresses the address in every partition, on every primary
        r = cl.send(msg("perm-gone@example.com", "bounce"))
        assert r.status == 202, "got %s %r" % (r.status, r.body)
        bounced = r.json["id"]
        helpers.wait_status(cl, bounced, "failed", dl(20))

        def copies():
            return {k: c.by_port(owners[k]["port"]).cmd("HGET", "txm{%d}:supp" % k, "perm-gone@example.com")
                    for k in range(P)}
        wait_until(lambda: all(v is not None for v in copies().values()), dl(10),
                   "the bounce's suppression (txm{%d}) in every partition" % part_of(bounced),
                   diag=lambda: "copies: %r" % copies())
        seen = set()
        for i in range(40 * P):
            if len(seen) == P:
                break
            r = cl.send(msg("perm-gone@example.com", "again %d" % i), headers={"Idempotency-Key": "gone-%d" % i})
            assert r.status == 202, "got %s %r" % (r.status, r.body)
            assert r.json["recipients"][0]["status"] == "suppressed", "partition %d: %r" % (
                part_of(r.json["id"]), r.json)
            seen.add(part_of(r.json["id"]))
        assert sorted(seen) == list(range(P)), "sends to the bounced address landed in partitions %r only" % sorted(seen)
        # deleting lifts it in every partition
        r = cl.request("DELETE", "/v1/suppressions/listed@example.com")
        assert r.status == 204, "DELETE /v1/suppressions: got %s %r" % (r.status, r.body)
        left = {k: c.by_port(owners[k]["port"]).cmd("HGET", "txm{%d}:supp" % k, "listed@example.com")
                for k in range(P)}
        assert all(v is None for v in left.values()), "copies left after DELETE: %r" % left
    finally:
        sse.close()
        cl.close()
    assert not [m for m in smtp_peer.messages() if "listed@example.com" in m.meta.get("rcpt_tos", [])], \
        "a suppressed address reached the peer"


def sse_key(fid):
    """An SSE id <ms>-<n> as a tuple that sorts as the ids must."""
    a, _, b = fid.partition("-")
    return int(a), int(b)


def test_partitions_sse_resume_under_load(txmail_factory, cluster, smtp_peer, webhook):
    """Events of every partition, read while they are made: each stream's ids strictly
    increasing, and a Last-Event-ID resume after a drop mid-load hands out exactly the
    events the first stream did not (none twice, none missing)."""
    c = cluster
    assert_every_primary_owns_a_partition(c)
    api, _ = stack(txmail_factory, c)
    c1 = SseClient(api.port, api.key)
    c2 = None
    stop = threading.Event()
    senders = []
    try:
        assert c1.read_head(dl(5)) == 200, "SSE: got %s" % c1.status
        senders = [Sender(api, "sse%d-" % i, 30, stop=stop, pause=0.01).start() for i in range(3)]
        c1.wait(lambda f: len(c1.frames) >= 40, dl(30), "40 events on the first stream")
        c1.close()        # dropped mid-load: deliveries go on
        first = list(c1.frames)
        last = first[-1]["id"]
        n = sum(x.n_accepted() for x in senders)
        wait_until(lambda: sum(x.n_accepted() for x in senders) >= n + 30, dl(30), "30 more accepted after the drop")
        stop.set()
        accepted = join_all(senders)
        ids = sorted(accepted.values())
        assert set(by_part(ids)) == set(range(P)), "partitions used: %r" % sorted(by_part(ids))
        assert not wait_webhooks(webhook, ids, dl(60)), "messages without a message.delivered webhook"
        want = {e["body"]["id"] for m in ids for e in webhook.events_for(m)}
        seen1 = {f["json"]["id"] for f in first}
        c2 = SseClient(api.port, api.key, last_id=last)
        assert c2.read_head(dl(5)) == 200, "SSE resume: got %s" % c2.status

        def covered(_f):
            return want <= seen1 | {g["json"]["id"] for g in c2.frames}
        try:
            c2.wait(covered, dl(20), "every event of the %d messages on one of the two streams" % len(ids))
        except AssertionError:
            missing = want - seen1 - {g["json"]["id"] for g in c2.frames}
            ms = sorted({e["body"]["data"]["message_id"] for m in ids for e in webhook.events_for(m)
                         if e["body"]["id"] in missing})
            raise AssertionError("%d of %d events on neither stream (resumed after %s), messages %r in partitions %r"
                                 % (len(missing), len(want), last, ms[:5], sorted({part_of(m) for m in ms})))
        second = list(c2.frames)
    finally:
        stop.set()
        for x in senders:
            x.thread.join(dl(60))
        c1.close()
        if c2 is not None:
            c2.close()
    again = [f for f in second if f["json"]["id"] in seen1]
    for name, frames in (("first", first), ("resumed", second)):
        keys = [sse_key(f["id"]) for f in frames]
        back = [(frames[i - 1]["id"], frames[i]["id"]) for i in range(1, len(keys)) if keys[i] <= keys[i - 1]]
        assert not back, "the %s stream's ids not increasing: %r" % (name, back[:5])
    assert not second or sse_key(second[0]["id"]) > sse_key(last), "resumed at %s after %s" % (second[0]["id"], last)
    log("cluster SSE resume: %d messages, %d events; first stream %d, resumed after %s: %d (%d seen before), "
        "per partition %r" % (len(ids), len(want), len(first), last, len(second), len(again),
                              {k: len(v) for k, v in sorted(by_part(ids).items())}))
    assert not again, "%d events of the first stream again after Last-Event-ID %s, e.g. %r" % (
        len(again), last, [(f["id"], f["json"]["data"].get("message_id")) for f in again[:5]])


def test_partitions_replay_after_a_failover(txmail_factory, cluster, smtp_peer):
    """A send of a partition on a primary that fails over, replayed with its key once the
    old primary is back as a replica and in sync: 202 with the first id within seconds
    (README: "once the replicas catch up the retry is 202 with the same id"), while the
    api saw nothing of the failover before (its map still names the old primary)."""
    c = cluster
    owners = assert_every_primary_owns_a_partition(c)
    # the primary with the most partitions, so some of its slots stay as the api last knew them
    victim = max(c.primaries().values(), key=lambda d: sum(1 for o in owners.values() if o["id"] == d["id"]))
    hit = sorted(k for k, d in owners.items() if d["id"] == victim["id"])
    assert len(hit) >= 2, "partitions %r on %d: want 2 or more" % (hit, victim["port"])
    vnode = c.by_port(victim["port"])
    replica = next(n for n in vnode.nodes() if n["master"] == victim["id"])
    others = [x for x in c.nodes if x is not vnode]
    api, _ = stack(txmail_factory, c, {"TXMAIL_REDIS_MIN_REPLICAS": "1",
                                       "TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT": "0.3"})
    wait_replicas_synced(c, dl(20))
    cl = api.client(timeout=dl(10))
    try:
        # one message of a victim's partition, sent with a key (the partitions picked by the keys)
        mine = None
        for i in range(40 * P):
            key = "replay-%d-%s" % (i, os.urandom(4).hex())
            r = cl.send(msg("replay%d@example.com" % i), headers={"Idempotency-Key": key})
            assert r.status == 202, "before the kill: got %s %r" % (r.status, r.body)
            if part_of(r.json["id"]) in hit:
                mine = (i, key, r.json["id"])
                break
        assert mine, "no send landed in partitions %r" % hit
        i, key, mid = mine
        vnode.kill9()
        t_kill = time.monotonic()
        # a client's retry at once, before the replica is promoted: txmail finds the node gone and
        # asks for the map, which still names it (the cluster has not failed it over yet)
        r = cl.send(msg("replay%d@example.com" % i), headers={"Idempotency-Key": key})
        early = (r.status, time.monotonic() - t_kill, replica["id"] in c.primaries(via=others[0]))
        wait_until(lambda: replica["id"] in c.primaries(via=others[0]) and c.ok(others), dl(30),
                   "replica %d promoted" % replica["port"], interval=0.1)
        vnode.start()
        wait_until(lambda: c.ok() and c.roles_agree(), dl(30), "the old primary back as a replica", interval=0.1)
        wait_replicas_synced(c, dl(30))
        t_synced = time.monotonic()
        answers = []

        def replayed():
            r = cl.send(msg("replay%d@example.com" % i), headers={"Idempotency-Key": key})
            answers.append(r.status)
            assert r.status in (202, 503, 504), "replay: got %s %r" % (r.status, r.body)
            if r.status == 202:
                assert r.json["id"] == mid, "replay: got id %s, want %s" % (r.json["id"], mid)
                return True
            return False
        try:
            wait_until(replayed, dl(10), "the replay of %s (txm{%d}) answered 202 with the cluster healthy" % (
                key, part_of(mid)), interval=0.1)
        finally:
            log("cluster replay after a failover: txm{%d} on %d (partitions %r); a replay %.3fs after the kill "
                "(replica promoted then: %s) answered %s; synced %.1fs after the kill; replays then answered %r "
                "in %.1fs" % (part_of(mid), victim["port"], hit, early[1], early[2], early[0], t_synced - t_kill,
                              answers, time.monotonic() - t_synced))
    finally:
        cl.close()



def test_partitions_manual_failover_under_load(txmail_factory, cluster, smtp_peer, webhook):
    """CLUSTER FAILOVER on the replica of the primary with the most partitions (a planned
    handover: nothing is killed, the old primary becomes a replica and keeps its
    connections) while six senders send: answers only 202/503/504, sends of every
    partition accepted again within seconds, every 202 delivered."""
    c = cluster
    owners = assert_every_primary_owns_a_partition(c)
    victim = max(c.primaries().values(), key=lambda d: sum(1 for o in owners.values() if o["id"] == d["id"]))
    hit = sorted(k for k, d in owners.items() if d["id"] == victim["id"])
    vnode = c.by_port(victim["port"])
    rdict = next(n for n in vnode.nodes() if n["master"] == victim["id"])
    rnode = c.by_port(rdict["port"])
    api, _ = stack(txmail_factory, c, {"TXMAIL_REDIS_MIN_REPLICAS": "1",
                                       "TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT": "0.3"})
    wait_replicas_synced(c, dl(20))
    stop = threading.Event()
    senders = [Sender(api, "m%d-" % i, 30, stop=stop, pause=0.005).start() for i in range(6)]
    n_acc = lambda: sum(s.n_accepted() for s in senders)  # noqa: E731
    try:
        wait_until(lambda: n_acc() >= 80, dl(30), "80 accepted before the failover", interval=0.02)
        t0 = time.monotonic()
        assert rnode.cmd("CLUSTER", "FAILOVER") == "OK"
        wait_until(lambda: rdict["id"] in c.primaries(via=rnode) and rdict["id"] in c.primaries(via=vnode) and
                   victim["id"] not in c.primaries(via=rnode), dl(20),
                   "%d primary in place of %d" % (rdict["port"], victim["port"]), interval=0.05)
        t_swapped = time.monotonic()
        wait_replicas_synced(c, dl(20))
        t_synced = time.monotonic()
        n = n_acc()

        def in_part_since(k, t):
            return sum(1 for x in senders for ts, m in list(x.accepted_at) if ts >= t and part_of(m) == k)
        wait_until(lambda: n_acc() >= n + 80 and all(in_part_since(k, t_synced) for k in hit), dl(20),
                   "80 more accepted after the handover, some in each of txm{%r}" % hit, interval=0.05,
                   diag=lambda: "%d more; since then per partition %r; retries %d; first bodies %r" % (
                       n_acc() - n, {k: in_part_since(k, t_synced) for k in range(P)},
                       sum(x.retried for x in senders), first_bodies(senders)))
        t_more = time.monotonic()
    finally:
        stop.set()
    accepted = join_all(senders)
    ids = sorted(accepted.values())
    codes = {}
    for _, st in answers_of(senders):
        codes[st] = codes.get(st, 0) + 1
    # a change through the API after the handover (WAIT on what it wrote: every partition's copy)
    change = []
    cl = api.client(timeout=dl(10))
    try:
        def changed():
            r = cl.post_json("/v1/suppressions", {"email": "handover@example.com"})
            change.append(r.status)
            # 200: it exists - a retry after a 503/504 whose write had been made (not confirmed)
            ok = (201,) if len(change) == 1 else (200, 201)
            assert r.status in ok + (503, 504), "POST /v1/suppressions: got %s %r" % (r.status, r.body)
            return r.status in ok
        try:
            wait_until(changed, dl(10), "POST /v1/suppressions answered 201 after the handover", interval=0.2)
        except helpers.WaitTimeout:
            pass   # asserted below, after the log line
    finally:
        cl.close()
    no_copy = wait_all_at_peer(smtp_peer, accepted, dl(60))
    last = wait_statuses(api, ids, dl(60))
    vanished, stuck, other = not_delivered(last)
    no_webhook = wait_webhooks(webhook, ids, dl(30))
    log("cluster manual failover: %d -> %d (partitions %r) swapped %.2fs after CLUSTER FAILOVER, replicas in sync "
        "at %.2fs, 80 more accepted at %.2fs; %d messages, answers %r (first bodies %r); not at the peer %d, "
        "GET 404 %d, stuck %d, final otherwise %d, without a message.delivered webhook %d (of partitions %r); "
        "a suppression added after it answered %r" % (
            victim["port"], rdict["port"], hit, t_swapped - t0, t_synced - t0, t_more - t0, len(ids), codes,
            first_bodies(senders), len(no_copy), len(vanished), len(stuck), len(other), len(no_webhook),
            sorted(by_part(no_webhook)), change))
    assert set(codes) <= {202, 503, 504}, "answers other than 202/503/504 (None: a connection error): %r" % codes
    assert change and change[-1] in ((201,) if len(change) == 1 else (200, 201)), \
        "POST /v1/suppressions after the handover: answers %r" % change
    assert not no_webhook, "%d delivered messages without a message.delivered webhook (partitions %r), e.g. %r" % (
        len(no_webhook), sorted(by_part(no_webhook)), no_webhook[:3])
    assert not no_copy and not vanished and not stuck and not other, \
        "not delivered: %d not at the peer, %d 404, %d stuck, %d final otherwise" % (
            len(no_copy), len(vanished), len(stuck), len(other))
