"""test_redis_cluster_txmail.py - txmail itself on a Redis Cluster
(TXMAIL_REDIS_URL=redis+cluster://...: the store's router,
server/store_cluster.c) with one partition (TXMAIL_PARTITIONS=1; more:
test_cluster_partitions.py).

The cluster of test_redis_cluster.py (six nodes, three primaries with a
replica each, node timeout 1 s). With one partition every key carries the
hash tag txm{0}, so the whole store is on the primary of that one slot;
txmail reads the slot map from the seeds and routes every command to its
slot's primary, following MOVED and ASK.

Checked:
  - mail is accepted and delivered through the cluster; every key is on the
    primary of txm{0}'s slot (the others hold none) and the log shows the
    slot map (msg="redis cluster map" ... slots="127.0.0.1:<port>=...");
  - that primary SIGKILLed while messages are being sent with
    Idempotency-Keys (retried on 503/504 and connection errors as a client
    would, TXMAIL_REDIS_MIN_REPLICAS=1): its replica is promoted, the old
    node comes back as its replica, sends are accepted again, every message
    answered 202 is delivered;
  - txm{0}'s slot migrated by hand to another primary (SETSLOT
    IMPORTING/MIGRATING, MIGRATE of every key, SETSLOT NODE) while sending:
    no answer but 202, 503 or 504, and every 202 delivered; the keys are on
    the new primary afterwards.

Must never: wait without a deadline, or leave a node stopped (the cluster
fixture stops them all).
"""

import os
import threading
import time


from helpers import dl, wait_until
from test_redis_cluster import cluster, keyslot  # noqa: F401

# asserts one partition's layout (all keys on one slot; more: test_cluster_partitions.py): TXMAIL_PARTITIONS stays 1 under TXM_PARTITIONS (conftest)
ONE_PARTITION = True

SLOT = keyslot("txm{0}:ready")


def msg(rcpt):
    return {"from": "sender@example.com", "to": rcpt, "subject": "cluster", "text": "hello\n"}


class Sender:
    """n messages from one thread, each retried with its Idempotency-Key until 202 (bounded)."""

    def __init__(self, t, prefix, n, pause=0.0):
        self.t, self.prefix, self.n, self.pause = t, prefix, n, pause
        self.accepted, self.retried, self.bad = {}, 0, []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        c = self.t.client(timeout=dl(10))
        try:
            for i in range(self.n):
                rcpt = "%s%d@example.com" % (self.prefix, i)
                key = "%s-%d-%s" % (self.prefix, i, os.urandom(4).hex())
                end = time.monotonic() + dl(40)
                while time.monotonic() < end:
                    try:
                        r = c.send(msg(rcpt), headers={"Idempotency-Key": key})
                    except OSError:
                        c.close()
                        self.retried += 1
                        time.sleep(0.05)
                        continue
                    if r.status == 202:
                        self.accepted[rcpt] = r.json["id"]
                        break
                    if r.status not in (503, 504):
                        self.bad.append((rcpt, r.status, r.body[:200]))
                        break
                    self.retried += 1
                    time.sleep(0.05)
                else:
                    self.bad.append((rcpt, "no 202 within the deadline", ""))
                if self.pause:
                    time.sleep(self.pause)
        finally:
            c.close()

    def start(self):
        self.thread.start()
        return self

    def join(self):
        self.thread.join(dl(120))
        assert not self.thread.is_alive(), "the sender did not finish"
        assert not self.bad, "answers other than 202/503/504: %r" % self.bad[:5]


def keys_by_port(c):
    return {n.port: n.cmd("DBSIZE") for n in c.nodes if n.proc.poll() is None and
            "master" in next(d for d in n.nodes() if d["port"] == n.port)["flags"]}


def all_delivered(smtp_peer, accepted):
    have = set()
    for m in smtp_peer.messages():
        have.update(m.meta.get("rcpt_tos", []))
    return [r for r in accepted if r not in have]


def test_txmail_on_a_cluster(txmail_factory, cluster, smtp_peer):
    c = cluster
    t = txmail_factory(extra_env={"TXMAIL_REDIS_URL": c.url()})
    s = Sender(t, "one", 20).start()
    s.join()
    wait_until(lambda: not all_delivered(smtp_peer, s.accepted), dl(20), "20 messages delivered",
               diag=lambda: "missing %r" % all_delivered(smtp_peer, s.accepted)[:5])
    owner = c.owner(SLOT)
    keys = keys_by_port(c)
    assert keys[owner["port"]] > 0, "no key on the primary of slot %d: %r" % (SLOT, keys)
    assert all(v == 0 for p, v in keys.items() if p != owner["port"]), \
        "keys outside the primary of slot %d: %r" % (SLOT, keys)
    log = open(t.log, encoding="utf-8", errors="replace").read()
    maps = [ln for ln in log.splitlines() if 'msg="redis cluster map"' in ln]
    want = "127.0.0.1:%d=" % owner["port"]
    assert maps and want in maps[-1], "no map naming %r in the log; its redis lines:\n%s" % (
        want, "\n".join(ln for ln in log.splitlines() if "redis" in ln)[-3000:])


def test_failover_of_txmails_primary(txmail_factory, cluster, smtp_peer):
    c = cluster
    t = txmail_factory(extra_env={"TXMAIL_REDIS_URL": c.url(), "TXMAIL_REDIS_MIN_REPLICAS": "1",
                                  "TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT": "0.3"})
    victim = c.owner(SLOT)
    vnode = c.by_port(victim["port"])
    replica = next(n for n in vnode.nodes() if n["master"] == victim["id"])
    others = [x for x in c.nodes if x is not vnode]
    senders = [Sender(t, "f%d-" % k, 150, pause=0.01).start() for k in range(2)]
    wait_until(lambda: sum(len(x.accepted) for x in senders) >= 60, dl(30), "60 accepted before the kill")
    vnode.kill9()
    t_kill = time.monotonic()
    wait_until(lambda: replica["id"] in c.primaries(via=others[0]) and c.ok(others), dl(30),
               "replica %d promoted" % replica["port"], interval=0.1)
    promoted = time.monotonic() - t_kill
    # the promoted replica has no replica of its own: with MIN_REPLICAS=1 every send is 504 until
    # the old primary is back, as its replica (what a pod restart does)
    vnode.start()
    for x in senders:
        x.join()
    accepted = {r: i for x in senders for r, i in x.accepted.items()}
    assert len(accepted) == 300, "accepted %d of 300" % len(accepted)
    wait_until(lambda: not all_delivered(smtp_peer, accepted), dl(60), "every 202 delivered",
               diag=lambda: "missing %d, e.g. %r" % (len(all_delivered(smtp_peer, accepted)),
                                                    all_delivered(smtp_peer, accepted)[:5]))
    print("cluster failover: replica promoted %.1fs after the kill, %d retries, 300 delivered" % (
        promoted, sum(x.retried for x in senders)))


def test_migration_of_txmails_slot(txmail_factory, cluster, smtp_peer):
    c = cluster
    t = txmail_factory(extra_env={"TXMAIL_REDIS_URL": c.url()})
    Sender(t, "warm", 5).start().join()
    src = c.owner(SLOT)
    dst = next(d for d in c.primaries().values() if d["id"] != src["id"])
    snode, dnode = c.by_port(src["port"]), c.by_port(dst["port"])
    s = Sender(t, "m", 200, pause=0.01).start()
    wait_until(lambda: len(s.accepted) >= 40, dl(30), "40 accepted before the migration")
    assert dnode.cmd("CLUSTER", "SETSLOT", SLOT, "IMPORTING", src["id"]) == "OK"
    assert snode.cmd("CLUSTER", "SETSLOT", SLOT, "MIGRATING", dst["id"]) == "OK"
    moved = 0
    while True:
        keys = snode.cmd("CLUSTER", "GETKEYSINSLOT", SLOT, 50)
        if not keys:
            break
        args = ["MIGRATE", "127.0.0.1", dst["port"], "", 0, 5000]
        if c.password:
            args += ["AUTH", c.password]
        snode.cmd(*(args + ["KEYS"] + keys))
        moved += len(keys)
        time.sleep(0.02)   # a migration of many keys takes a while: let sends hit it midway
    # the new owner first, then the old, then the other primaries (replicas learn it by gossip)
    third = [c.by_port(d["port"]) for d in c.primaries().values() if d["id"] not in (src["id"], dst["id"])]
    for n in [dnode, snode] + third:
        assert n.cmd("CLUSTER", "SETSLOT", SLOT, "NODE", dst["id"]) == "OK"
    s.join()
    wait_until(lambda: not all_delivered(smtp_peer, s.accepted), dl(60), "every 202 delivered",
               diag=lambda: "missing %r" % all_delivered(smtp_peer, s.accepted)[:5])
    assert len(s.accepted) == 200
    assert snode.cmd("DBSIZE") == 0 and dnode.cmd("DBSIZE") > 0, "keys not on the new primary"
    Sender(t, "after", 5).start().join()
    print("slot %d migrated (%d keys) under 200 sends: %d retries" % (SLOT, moved, s.retried))
