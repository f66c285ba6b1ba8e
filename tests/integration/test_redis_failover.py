"""test_redis_failover.py - the Redis primary SIGKILLed under load with
Sentinel: no message that got a 202 is lost (TXMAIL_REDIS_MIN_REPLICAS=2, every replica).

The stack: a Sentinel group (sentinel_group.py: primary, 2 replicas, 3
sentinels), `txmail api` and two `txmail worker` processes given only the
sentinels (redis+sentinel://), TXMAIL_REDIS_MIN_REPLICAS=2 with a 0.2 s
timeout, the SMTP peer as relay; once a replica is promoted the killed node
is started again as its replica (so WAIT 2 can be met again). SENDERS client threads POST N messages
(one recipient each, u<seq>@example.com) with an Idempotency-Key each, as
fast as the server answers, and retry as a careful client does: a
connection error, 503 or 504 sends the same request with the same key
again, after a short backoff, until a 202 or a deadline.

The fault: once a third of the messages are accepted, the replicas are made
to lag (Group.lag_replicas: they receive the primary's writes but neither
apply nor acknowledge them) for LAG_S, then the primary is SIGKILLed, and
the writes of the lag are gone with it, as when a primary dies with its
replicas behind. On loopback, replication is otherwise so fast that a kill
alone hardly ever finds a write that the replicas do not have, and the
test would pass without WAIT. With MIN_REPLICAS=2 the sends of the lag get
504 (WAIT times out) and their retries succeed on the promoted replica;
with 0 they get 202 and vanish (TXM_FAILOVER_MIN_REPLICAS=0 runs the same
test that way: it must fail, counting them lost).

Checked, after every recipient is delivered (or can no longer be): every
202'd message is delivered (GET says so and the peer has a copy with its
Message-ID), lost 0, stuck 0 (every recipient terminal), every sender
finished with a 202, the messages on the new primary are exactly the 202'd
ones (a key that made two messages would leave one more), and a replay of
every tenth key answers its first id. Printed (the closing note's figures):
failover time (kill to the first 202 of a request sent after it), the
sentinels' promotion time, requests retried, 504s and 503s seen, and the
duplicates at the peer by cause: the same id twice (an outcome recorded on
the old primary only, delivered again after the visibility timeout) or a
copy of an id that was never 202'd (delivered from the old primary while
its 202 waited for WAIT; the retry made the message again on the new one).

Must never: wait without a deadline, or pass with fewer than all N
accepted.
"""

import collections
import http.client
import os
import re
import threading
import time

import pytest

import helpers
from helpers import Client, WaitTimeout, dl, log, wait_until
from sentinel_group import sentinel_group  # noqa: F401 (the fixture, for the test below)

# asserts message keys counted on the new primary: TXMAIL_PARTITIONS stays 1 under TXM_PARTITIONS (conftest)
ONE_PARTITION = True

N = 5000
SENDERS = 8
LAG_S = 0.5               # the replicas' lag before the kill: the window a 202 can be lost in
RETRY_DEADLINE_S = 40     # per message, from its first attempt (a failover takes ~3-6 s)
# 2, every replica of the group: with 1 of 2, Sentinel may promote the replica that did not
# confirm a write (it picks by the offsets it last read, which lag): make test lost 4 of 5,000
# that way once; README ("What a failover can undo") says so
MIN_REPLICAS = os.environ.get("TXM_FAILOVER_MIN_REPLICAS", "2")
TERMINAL = ("delivered", "failed", "expired", "suppressed", "canceled")
MSGID_RE = re.compile(rb"(?im)^message-id:\s*<[^>]*?(msg_[0-9a-z]{26}(?:p[1-9][0-9]?)?)@")
RCPT_RE = re.compile(r"^u(\d+)@example\.com$")


def request(seq):
    """(body, headers) of message seq: the same every time it is sent."""
    return ({"from": "sender@example.com", "to": "u%d@example.com" % seq,
             "subject": "failover %d" % seq, "text": "message %d\n" % seq},
            {"Idempotency-Key": "failover-%d" % seq})


class Load:
    """N messages from SENDERS threads, each request retried with its key."""

    def __init__(self, port, key):
        self.port, self.key = port, key
        self.lock = threading.Lock()
        self.next = 0
        self.accepted = {}       # seq -> message id
        self.answers = []        # (t_sent, t_answered, status or None)
        self.retried = 0
        self.replayed = 0
        self.errors = []

    def n_accepted(self):
        with self.lock:
            return len(self.accepted)

    def answers_since(self, t):
        with self.lock:
            return sum(1 for a in self.answers if a[0] >= t)

    def take(self):
        with self.lock:
            if self.next >= N:
                return None
            self.next += 1
            return self.next - 1

    def sender(self):
        c = Client(self.port, key=self.key, timeout=dl(10))
        try:
            while True:
                seq = self.take()
                if seq is None:
                    return
                self.send_one(c, seq)
        finally:
            c.close()

    def send_one(self, c, seq):
        body, hdr = request(seq)
        end = time.monotonic() + dl(RETRY_DEADLINE_S)
        backoff = 0.02
        while True:
            t_sent = time.monotonic()
            try:
                r = c.send(body, headers=hdr)
            except (OSError, http.client.HTTPException):
                c.close()
                r = None
            status = r.status if r is not None else None
            with self.lock:
                self.answers.append((t_sent, time.monotonic(), status))
                if status == 202:
                    self.accepted[seq] = r.json["id"]
                    self.replayed += r.headers.get("idempotent-replayed") == "true"
                    return
                if status not in (None, 503, 504):
                    self.errors.append("seq %d: %s %r" % (seq, status, r.body[:200]))
                    return
                self.retried += 1
            if time.monotonic() > end:
                with self.lock:
                    self.errors.append("seq %d: no 202 within %.0fs (last: %s)" % (
                        seq, dl(RETRY_DEADLINE_S), status or "connection error"))
                return
            time.sleep(backoff)  # a client's backoff before sending the same request again
            backoff = min(backoff * 2, 0.2)


def peer_copies(smtp_peer):
    """seq -> [message id of each copy at the peer]."""
    out = {}
    for m in smtp_peer.messages():
        mid = MSGID_RE.search(m.raw.split(b"\r\n\r\n", 1)[0])
        for r in m.meta.get("rcpt_tos", []):
            s = RCPT_RE.match(r.lower())
            if s:
                out.setdefault(int(s.group(1)), []).append(mid.group(1).decode() if mid else "?")
    return out


def get_all(port, key, ids):
    """id -> the recipient's status per GET (None: 404), from SENDERS threads."""
    res, lock = {}, threading.Lock()

    def work(part):
        c = Client(port, key=key, timeout=dl(10))
        try:
            for mid in part:
                r = c.get("/v1/messages/" + mid)
                assert r.status in (200, 404), "GET /v1/messages/%s: got %s %r" % (mid, r.status, r.body)
                with lock:
                    res[mid] = r.json["recipients"][0]["status"] if r.status == 200 else None
        finally:
            c.close()
    run_threads(work, [ids[i::SENDERS] for i in range(SENDERS)])
    return res


def run_threads(fn, parts):
    errs = []

    def guarded(p):
        try:
            fn(p)
        except BaseException as e:  # reported by the caller's thread
            errs.append(e)
    ts = [threading.Thread(target=guarded, args=(p,)) for p in parts]
    for t in ts:
        t.start()
    for t in ts:
        t.join(dl(120))
    assert not any(t.is_alive() for t in ts), "a client thread did not finish"
    if errs:
        raise errs[0]


def wait_settled(load, smtp_peer, port, key):
    """Wait until every 202'd message has a copy at the peer or a GET says it
    never will (404, or a final status)."""
    gone = set()
    c = Client(port, key=key, timeout=dl(10))

    def settled():
        have = {m for ids in peer_copies(smtp_peer).values() for m in ids}
        missing = sorted(set(load.accepted.values()) - have - gone)
        for mid in missing[:20]:   # the rest are asked about once these are settled
            r = c.get("/v1/messages/" + mid)
            if r.status == 404 or (r.status == 200 and r.json["recipients"][0]["status"] in TERMINAL):
                gone.add(mid)
        return not [m for m in missing if m not in gone]
    try:
        wait_until(settled, dl(60), "every accepted message at the peer or settled otherwise",
                   interval=0.3, diag=lambda: "%d at the peer of %d accepted" % (
                       smtp_peer.count(), len(load.accepted)))
    finally:
        c.close()


def replay_keys(port, key, items):
    """Send (seq, id) items again: -> those not answered 202 with that id."""
    bad = []

    def work(part):
        c = Client(port, key=key, timeout=dl(10))
        try:
            for seq, mid in part:
                body, hdr = request(seq)
                r = c.send(body, headers=hdr)
                if r.status != 202 or r.json["id"] != mid:
                    bad.append((seq, mid, r.status, r.body[:120]))
        finally:
            c.close()
    run_threads(work, [items[i::SENDERS] for i in range(SENDERS)])
    return bad


def redis_message_ids(node):
    """The ids of every message hash on node (SCAN txm{0}:msg:*)."""
    ids, cur = set(), "0"
    while True:
        cur, keys = node.cmd("SCAN", cur, "MATCH", "txm{0}:msg:*", "COUNT", "2000")
        ids.update(k[len("txm{0}:msg:"):] for k in keys if re.fullmatch(r"txm\{0\}:msg:msg_[0-9a-z]{26}", k))
        if cur == "0":
            return ids


def test_primary_killed_under_load_loses_no_202(txmail_factory, sentinel_group, smtp_peer):
    g = sentinel_group()
    env = {"TXMAIL_REDIS_URL": g.url(), "TXMAIL_REDIS_MIN_REPLICAS": MIN_REPLICAS,
           "TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT": "0.2", "TXMAIL_HTTP_THREADS": "4"}
    api_p = txmail_factory(args=("api",), extra_env=env)
    workers = [txmail_factory(args=("worker",), http=False, extra_env=env, name="worker %d" % i)
               for i in (1, 2)]
    for w in workers:
        wait_until(lambda w=w: 'msg="worker started"' in open(w.log, errors="replace").read(), dl(10),
                   "%s started" % w.name)

    load = Load(api_p.port, api_p.key)
    t0 = time.monotonic()
    threads = [threading.Thread(target=load.sender, name="sender %d" % i) for i in range(SENDERS)]
    for t in threads:
        t.start()
    try:
        old = g.primary
        wait_until(lambda: load.n_accepted() >= N // 3 or not any(t.is_alive() for t in threads),
                   dl(60), "a third of the messages accepted", interval=0.01)
        assert load.n_accepted() < N, "every message was accepted before the kill: too fast for the test"
        t_lag = time.monotonic()
        g.lag_replicas(dl(10) * 1000)
        time.sleep(LAG_S)  # the fault's length: the replicas stay behind for LAG_S
        wait_until(lambda: load.answers_since(t_lag) >= SENDERS, dl(10),
                   "%d answers during the replicas' lag" % SENDERS, interval=0.01)
        accepted_at_kill = load.n_accepted()
        t_kill = time.monotonic()
        old.kill9()
        g.end_lag(old, dl(5))
        try:
            new = g.wait_promoted(old, dl(30))
        except WaitTimeout:
            tilted = [i for i, x in enumerate(g.sentinels) if "+tilt" in helpers.read_text(x.log)]
            if not tilted:
                raise
            # A sentinel starved of CPU for over 2 s (make test's parallel passes) enters TILT and
            # acts on nothing for 30 s; after it, the replicas' links have been down longer than
            # it allows (down-after x 10 + the time since it saw the primary down), so it finds
            # "no good slave" for ever (CI saw it). Not a failover this run can time: no new sends.
            with load.lock:
                load.next = N
            pytest.skip("sentinels %r entered TILT (starved of CPU): no failover to test this run" % tilted)
        t_promoted = time.monotonic()
        # the promoted replica has one replica left: the killed node comes back as the second
        # (as its pod would), so that WAIT 2 can be met again
        g.restart_as_replica(old)
    finally:
        for t in threads:
            t.join(dl(RETRY_DEADLINE_S) + dl(60))
    assert not any(t.is_alive() for t in threads), "a sender thread did not finish"
    t_load = time.monotonic()
    assert not load.errors, "%d sends failed, e.g. %r" % (len(load.errors), load.errors[:5])
    assert len(load.accepted) == N, "%d of %d messages accepted" % (len(load.accepted), N)

    wait_settled(load, smtp_peer, api_p.port, api_p.key)
    t_settled = time.monotonic()
    ids = sorted(load.accepted.values())
    status = get_all(api_p.port, api_p.key, ids)

    def final():
        # a copy reaches the peer just before its outcome is recorded: ask those again
        busy = [m for m in ids if status[m] is not None and status[m] not in TERMINAL]
        status.update(get_all(api_p.port, api_p.key, busy))
        return not [m for m in busy if status[m] not in TERMINAL]
    try:
        wait_until(final, dl(20), "every recipient final", interval=0.2)
    except WaitTimeout:
        pass  # counted as stuck below
    t_got = time.monotonic()
    copies = peer_copies(smtp_peer)
    have = {m for c in copies.values() for m in c}
    vanished = [m for m in ids if status[m] is None]
    undelivered = [m for m in ids if status[m] in TERMINAL and status[m] != "delivered"]
    stuck = [m for m in ids if status[m] is not None and status[m] not in TERMINAL]
    no_copy = [m for m in ids if status[m] == "delivered" and m not in have]
    lost = len(vanished) + len(undelivered) + len(no_copy)

    on_primary = redis_message_ids(g.named_primary() or new)  # a second failover moves it on
    extra = on_primary - set(ids)
    replay = sorted(load.accepted.items())[::10]
    replay_bad = replay_keys(api_p.port, api_p.key, replay)

    first_after = min((a[1] for a in load.answers if a[0] >= t_kill and a[2] == 202), default=None)
    codes = [a[2] for a in load.answers]
    dup_same = sum(len(c) - len(set(c)) for c in copies.values())
    dup_other = sum(1 for seq, c in copies.items() for m in set(c) if m != load.accepted.get(seq))
    log("failover (TXMAIL_REDIS_MIN_REPLICAS=%s): %d messages, %d senders, replicas lagging %.1fs, "
        "%d accepted at the kill; kill -> sentinels agree on %d: %.2fs (failovers in all: %d), "
        "kill -> first 202 of a request sent after it: %s; requests retried %d (504: %d, 503: %d, "
        "connection errors: %d), idempotent replays %d; load %.1fs, settled %.1fs, GETs %.1fs, total %.1fs" % (
            MIN_REPLICAS, N, SENDERS, LAG_S, accepted_at_kill, new.port, t_promoted - t_kill, g.failovers(),
            "%.2fs" % (first_after - t_kill) if first_after else "none", load.retried,
            codes.count(504), codes.count(503), codes.count(None), load.replayed,
            t_load - t0, t_settled - t_load, t_got - t_settled, time.monotonic() - t0))
    log("failover: delivered %d, lost %d (GET 404 %d, final but not delivered %d, delivered without a "
        "copy %d), stuck %d %s; duplicates at the peer: %d of one id (an outcome lost with the "
        "old primary, delivered again), %d of an id never 202'd (delivered from the old primary while its "
        "202 waited; the retry made the message again); messages on the new primary not 202'd: %d" % (
            sum(1 for m in ids if status[m] == "delivered"), lost, len(vanished), len(undelivered),
            len(no_copy), len(stuck), dict(collections.Counter(status[m] for m in stuck)), dup_same,
            dup_other, len(extra)))

    assert lost == 0, "%d of %d 202'd messages lost: %d GET 404 (vanished with the old primary), " \
        "%d final but not delivered, %d delivered without a copy at the peer; e.g. %r" % (
            lost, N, len(vanished), len(undelivered), len(no_copy), (vanished + undelivered + no_copy)[:3])
    assert not stuck, "%d recipients not final, e.g. %r" % (len(stuck), [(m, status[m]) for m in stuck[:3]])
    assert not extra, "%d messages on the new primary that no client got a 202 for (one key made " \
        "two messages?), e.g. %r" % (len(extra), sorted(extra)[:3])
    assert not replay_bad, "%d replays of %d did not answer the first id, e.g. %r" % (
        len(replay_bad), len(replay), replay_bad[:3])
