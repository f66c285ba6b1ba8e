#!/usr/bin/python3
"""faults.py - "accepted means delivered or reported failed", under faults.

Runs a real stack on loopback - redis-server (AOF, appendfsync --fsync),
one `txmail api` and --workers `txmail worker` processes, the SMTP test peer
(tests/integration/peers/smtpd.py: STARTTLS required, AUTH, fault
injection) and the Standard Webhooks receiver (webhook_receiver.py, its own
process) - sends --messages messages through the API at an even pace over
--load-seconds, and meanwhile, at moments drawn from --seed:

  - SIGKILLs txmail processes (--kills times, api and workers) and starts
    them again at once, as a container runtime would;
  - SIGKILLs redis-server and starts it again on its AOF (--redis-restarts);
    with --redis sentinel the stack runs on a Sentinel group instead
    (sentinel_group.py: primary, 2 replicas, 3 sentinels;
    TXMAIL_REDIS_MIN_REPLICAS=2, every replica) and each of these is a failover: the
    replicas are made to lag for LAG_S, the current primary is SIGKILLed,
    the sentinels promote a replica, and the killed node is started again
    as a replica of the new primary, as a restarted pod would be; with
    --redis cluster on a Redis Cluster (test_redis_cluster.py's six nodes:
    three primaries with a replica each; TXMAIL_REDIS_MIN_REPLICAS=1, each
    primary's replica) each SIGKILLs the primary of a partition's slot
    (in turn over the partitions, so partition 0's too), waits for its
    replica's promotion and starts the old node again, which rejoins as its
    replica;
  - makes the SMTP peer answer new connections with a 421 banner, tarpit
    them (accept, say nothing), and drop connections in the middle of DATA,
    in short storms plus a low background rate;
  - takes the webhook receiver down for --webhook-down seconds.

Senders retry a request whose answer was lost (connection reset, 503, 504
outcome_unknown) with
the same Idempotency-Key, as a careful caller would, so every message has
one id. After the load, faults stop and the harness waits (bounded by
--drain-seconds) until every recipient is terminal and its terminal webhook
arrived, then counts:

  accepted      messages answered 202 (and their recipients)
  delivered     recipients `delivered` per GET, with a copy at the SMTP peer
  failed        recipients `failed` (the 2% perm- addresses, by design)
  lost          accepted but neither at the peer nor reported failed: a GET
                404, `delivered` with no copy at the peer, or `failed` for an
                address the peer would have taken
  duplicates    extra copies at the peer; each must have been stored within
                a window around a worker or Redis kill (an in-flight delivery
                whose outcome the kill erased), else it is "unexplained";
                copies of a message id no sender got a 202 for count here
                too (with Sentinel: delivered from a primary that died
                before its replicas confirmed the accept; the retry made the
                message again)
  webhook lost  terminal recipients whose terminal event never arrived
  stuck         recipients not in a terminal state at the end

Exit status 0 when lost, webhook lost, stuck and unexplained duplicates are
all 0. With --fsync everysec, loss of acknowledged writes is possible by
design (see docs/faults.md) and is reported, not failed on; stuck and
webhook lost for messages that exist still fail the run.

Usage
  faults.py --bin build/txmail [--messages 50000] [--load-seconds 150]
            [--kills 12] [--redis-restarts 2] [--webhook-down 60]
            [--fsync always|everysec] [--redis single|sentinel|cluster]
            [--partitions P] [--seed 1]
            [--json out.json] [--keep]

Must never: sleep where it can wait for a condition, talk to anything but
loopback, or leave a process behind (everything runs in its own process
group and is killed on the way out, also on failure or ^C).
"""

import argparse
import contextlib
import http.client
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
IT = os.path.join(os.path.dirname(HERE), "integration")
sys.path.insert(0, IT)
sys.path.insert(0, os.path.join(IT, "peers"))

from helpers import (PYTHON, RedisServer, SmtpPeer, Txmail, Client, clean_env, free_port,  # noqa: E402
                     make_certs, read_text, tail, wait_until, kill_group, reap, WaitTimeout)
from sentinel_group import Group  # noqa: E402
from test_redis_cluster import Cluster, keyslot  # noqa: E402

TERMINAL = ("delivered", "failed", "expired", "suppressed", "canceled")
MSGID_RE = re.compile(rb"(?im)^message-id:\s*<[^>]*?(msg_[0-9a-z]{26}(?:p[1-9][0-9]?)?)@")
BASELINE = {"banner421": 0.01, "tarpit": 0.003, "middata": 0.01}
STORMS = [{"banner421": 1.0}, {"tarpit": 0.5}, {"middata": 0.5}, {"banner421": 0.3, "middata": 0.3}]
VISIBILITY = 3.0
LAG_S = 0.5   # --redis sentinel: how long the replicas lag before a primary is killed


def now():
    return time.time()


class Run:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.t0 = None
        self.lock = threading.Lock()
        self.accepted = {}        # seq -> (id, [recipients])
        self.next_seq = 0
        self.replays = 0
        self.retries = 0
        self.errors = []
        self.kills = []           # (kind, name, t_down, t_up)
        self.storms = []
        self.webhook_outage = None
        self.stop_faults = threading.Event()
        self.abort = threading.Event()
        self.procs = []           # every Txmail
        self.wh_proc = None
        self.wh_files = []
        self.hidden_events = set()  # --self-check: events the counter must then miss

    # --- setup -------------------------------------------------------------
    def log(self, msg):
        t = now() - self.t0 if self.t0 else 0.0
        print("[%7.1fs] %s" % (t, msg), flush=True)

    def setup(self):
        a = self.a
        self.dir = a.workdir or tempfile.mkdtemp(prefix="txm-faults-")
        os.makedirs(self.dir, exist_ok=True)
        self.certs = os.path.join(self.dir, "certs")
        make_certs(self.certs)
        if a.redis == "sentinel":
            self.group = Group(os.path.join(self.dir, "sentinel"), lambda name, path: None, fsync=a.fsync)
            redis_env = {"TXMAIL_REDIS_URL": self.group.url(), "TXMAIL_REDIS_MIN_REPLICAS": "2",
                         "TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT": "0.5"}
        elif a.redis == "cluster":
            self.cluster = Cluster(os.path.join(self.dir, "cluster"), lambda name, path: None)
            # every primary's replica in sync first (MIN_REPLICAS=1 answers 504 until then)
            wait_until(lambda: all("state=online" in (n.cmd("INFO", "replication") or "")
                                   for n in (self.cluster.by_port(p["port"])
                                             for p in self.cluster.primaries().values())),
                       60, "every primary's replica online")
            redis_env = {"TXMAIL_REDIS_URL": self.cluster.url(), "TXMAIL_REDIS_MIN_REPLICAS": "1",
                         "TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT": "0.5"}
            self.cluster_turn = 0
        else:
            self.redis = RedisServer(self.dir, fsync=a.fsync)
            self.redis.start()
            redis_env = {"TXMAIL_REDIS_URL": self.redis.url}
        self.faults_file = os.path.join(self.dir, "faults.json")
        self.faults_count = os.path.join(self.dir, "faults-count.json")
        self.set_faults({})
        self.peer = SmtpPeer(self.dir, self.certs, transcript=False, extra_args=[
            "--faults-file", self.faults_file, "--faults-count", self.faults_count,
            "--fault-seed", str(a.seed)])
        self.peer.start()
        self.secret = "whsec_" + __import__("base64").b64encode(os.urandom(24)).decode()
        self.wh_port = free_port()
        self.start_webhook()
        key = "txm_faults_" + os.urandom(12).hex()
        env = {
            "TXMAIL_API_KEYS": key,
            "TXMAIL_RELAY": self.peer.relay_url(),
            "TXMAIL_TLS_CA_FILE": self.peer.ca,
            "TXMAIL_HELO_NAME": "faults.txmail.local",
            "TXMAIL_WEBHOOK_URL": "http://127.0.0.1:%d/webhook" % self.wh_port,
            "TXMAIL_WEBHOOK_SECRET": self.secret,
            "TXMAIL_WEBHOOK_ALLOW_PRIVATE": "1",
            "TXMAIL_RETRY_BASE": "0.5",
            "TXMAIL_RETRY_MAX": "4",
            "TXMAIL_VISIBILITY_TIMEOUT": str(VISIBILITY),
            "TXMAIL_WEBHOOK_RETRY_BASE": "0.5",
            "TXMAIL_WEBHOOK_RETRY_MAX": "4",
            "TXMAIL_WEBHOOK_TIMEOUT": "3",
            "TXMAIL_SMTP_TIMEOUT_BANNER": "3",
            "TXMAIL_RATE_LIMIT": "0",
            "TXMAIL_LOG_LEVEL": "warn",
            "TXMAIL_WORKERS": "1",   # the former default (now the CPU quota): the same run as before
            "TXMAIL_PARTITIONS": str(a.partitions),
        }
        env.update(redis_env)
        self.key = key
        api_env = dict(env, TXMAIL_LISTEN="127.0.0.1:%d" % free_port(), TXMAIL_HTTP_THREADS="4")
        self.api = Txmail(a.bin, ["api"], clean_env(api_env), os.path.join(self.dir, "api.log"),
                          port=int(api_env["TXMAIL_LISTEN"].rsplit(":", 1)[1]), key=key, name="api")
        self.procs.append(self.api)
        self.workers = []
        for i in range(a.workers):
            wenv = dict(env, TXMAIL_ADMIN_LISTEN="127.0.0.1:%d" % free_port())  # not 9090 for each
            w = Txmail(a.bin, ["worker"], clean_env(wenv), os.path.join(self.dir, "worker%d.log" % (i + 1)),
                       http=False, name="worker%d" % (i + 1))
            self.workers.append(w)
            self.procs.append(w)
        self.api.start()
        for w in self.workers:
            w.start()

    def start_webhook(self):
        n = len(self.wh_files) + 1
        rec = os.path.join(self.dir, "webhooks-%d.jsonl" % n)
        ready = os.path.join(self.dir, "webhook-ready-%d" % n)
        err = open(os.path.join(self.dir, "webhook-%d.err" % n), "ab")
        self.wh_proc = subprocess.Popen(
            [PYTHON, os.path.join(IT, "peers", "webhook_receiver.py"), "--secret", self.secret,
             "--port", str(self.wh_port), "--record", rec, "--ready-file", ready],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        err.close()
        self.wh_files.append(rec)
        p = self.wh_proc
        wait_until(lambda: os.path.exists(ready) or p.poll() is not None, 15, "webhook receiver ready")
        if p.poll() is not None:
            raise RuntimeError("webhook receiver exited: %s" % tail(err.name, 20))

    def stop_webhook(self):
        p, self.wh_proc = self.wh_proc, None
        if p is None:
            return
        p.send_signal(signal.SIGTERM)
        if not reap(p, 10):
            kill_group(p)
            reap(p, 5)

    def set_faults(self, probs):
        helpers_write(self.faults_file, json.dumps(probs).encode())

    # --- load ----------------------------------------------------------------
    def message(self, seq):
        r = random.Random(self.a.seed * 1000003 + seq).random()
        if r < 0.02:
            rcpts = ["perm-u%d@example.com" % seq]
        elif r < 0.05:
            rcpts = ["temp1-u%d@example.com" % seq]
        elif r < 0.10:
            rcpts = ["u%da@example.com" % seq, "u%db@example.com" % seq]
        else:
            rcpts = ["u%d@example.com" % seq]
        body = {"from": "Faults <faults@example.com>", "to": rcpts,
                "subject": "fault run %d" % seq, "text": "message %d\nof the fault-injection run\n" % seq,
                "metadata": {"seq": str(seq)}}
        if 0.10 <= r < 0.20 or seq % 10 == 7:
            body["priority"] = "high"  # both lanes go through the same faults
        return body, rcpts

    def sender(self, idx):
        c = Client(self.api.port, key=self.key, timeout=10)
        rate = self.a.messages / self.a.load_seconds
        try:
            while not self.abort.is_set():
                with self.lock:
                    seq = self.next_seq
                    if seq >= self.a.messages:
                        return
                    self.next_seq += 1
                due = self.t0 + seq / rate
                delay = due - now()
                if delay > 0:
                    time.sleep(delay)  # pacing the load, not waiting for a condition
                body, rcpts = self.message(seq)
                hdr = {"Idempotency-Key": "faults-%d-%d" % (self.a.seed, seq)}
                end = now() + 120
                backoff = 0.05
                while True:
                    try:
                        r = c.send(body, headers=hdr)
                    except (OSError, http.client.HTTPException):
                        c.close()
                        r = None
                    if r is not None and r.status == 202:
                        with self.lock:
                            self.accepted[seq] = (r.json["id"], rcpts)
                            if r.headers.get("idempotent-replayed"):
                                self.replays += 1
                        break
                    if r is not None and r.status not in (500, 502, 503, 504):
                        self.errors.append("seq %d: %s %r" % (seq, r.status, r.body[:200]))
                        break
                    with self.lock:
                        self.retries += 1
                    if now() > end or self.abort.is_set():
                        self.errors.append("seq %d: no 202 within 120 s (last %s)" % (
                            seq, r.status if r else "connection error"))
                        break
                    time.sleep(backoff)  # back off before retrying the same request
                    backoff = min(backoff * 2, 0.5)
        finally:
            c.close()

    # --- faults --------------------------------------------------------------
    def schedule(self, n, lo=0.08, hi=0.9):
        L = self.a.load_seconds
        return sorted(self.t0 + self.rng.uniform(lo * L, hi * L) for _ in range(n))

    def wait_until_time(self, t):
        """False if the run is stopping."""
        return not self.stop_faults.wait(max(0.0, t - now()))

    def killer(self):
        """txmail and Redis kills, one at a time, in time order."""
        events = [(t, "txmail") for t in self.schedule(self.a.kills)]
        events += [(t, "redis") for t in self.schedule(self.a.redis_restarts, 0.2, 0.8)]
        events.sort()
        names = ["api"] + ["worker"] * len(self.workers)  # a third of the kills hit the API
        for t, kind in events:
            if not self.wait_until_time(t):
                return
            try:
                if kind == "redis" and self.a.redis == "sentinel":
                    self.failover()
                elif kind == "redis" and self.a.redis == "cluster":
                    self.cluster_failover()
                elif kind == "redis":
                    t_down = now()
                    self.redis.kill9()
                    outage = self.rng.uniform(0.5, 3.0)
                    self.log("fault: redis-server SIGKILL (down %.1fs)" % outage)
                    self.stop_faults.wait(outage)  # the outage itself
                    self.redis.start()
                    self.kills.append(("redis", "redis-server", t_down, now()))
                else:
                    pick = self.rng.choice(names)
                    p = self.api if pick == "api" else self.rng.choice(self.workers)
                    t_down = now()
                    p.kill9()
                    p.start()
                    self.kills.append(("txmail", p.name, t_down, now()))
                    self.log("fault: SIGKILL %s, restarted (%.1fs)" % (p.name, now() - t_down))
            except Exception as e:  # reported at the end; the run goes on
                self.errors.append("fault %s: %r" % (kind, e))
                self.log("fault %s failed: %r" % (kind, e))

    def failover(self):
        """--redis sentinel: the replicas lag, the primary is SIGKILLed, the
        sentinels promote a replica; the killed node comes back as a replica
        of the new primary once it was down for a while."""
        g = self.group
        # a group whole again first: a primary with both replicas linked
        wait_until(lambda: len(g.primary.cmd("ROLE")[2]) == 2, 60, "the primary with 2 replicas linked")
        old = g.primary
        g.lag_replicas(10000)
        self.stop_faults.wait(LAG_S)  # the lag itself
        t_down = now()
        old.kill9()
        g.end_lag(old, 10)
        try:
            new = g.wait_promoted(old, 60)
        except WaitTimeout:
            tilted = [i for i, x in enumerate(g.sentinels) if "+tilt" in read_text(x.log)]
            if not tilted:
                raise
            # as in test_redis_failover: sentinels starved of CPU (make test's lanes) sat in
            # TILT and then found "no good slave"; the killed primary comes back in place (its
            # AOF, fsync always) so the run goes on as after a Redis restart, and says so
            self.log("fault: sentinels %r entered TILT, no failover: primary %d restarted in place" % (
                tilted, old.port))
            old.start()
            self.kills.append(("redis", "redis primary %d (restarted, TILT)" % old.port, t_down, now()))
            return
        self.log("fault: primary %d SIGKILLed after a %.1fs replica lag, %d promoted after %.1fs" % (
            old.port, LAG_S, new.port, now() - t_down))
        outage = self.rng.uniform(0.5, 3.0)
        self.stop_faults.wait(outage)  # the old node's outage itself
        g.restart_as_replica(old)
        self.kills.append(("redis", "redis primary %d" % old.port, t_down, now()))

    def cluster_failover(self):
        """--redis cluster: the primary of the next partition's slot is
        SIGKILLed, its replica promoted by the cluster's vote; the old node
        is started again after an outage and rejoins as a replica."""
        c = self.cluster
        wait_until(lambda: c.ok() and c.roles_agree(), 60, "the cluster whole: 3 primaries, 3 replicas")
        part = self.cluster_turn % self.a.partitions
        self.cluster_turn += 1
        victim = c.owner(keyslot("txm{%d}:x" % part))
        vnode = c.by_port(victim["port"])
        replica = next(n for n in vnode.nodes() if n["master"] == victim["id"])
        others = [x for x in c.nodes if x is not vnode]
        t_down = now()
        vnode.kill9()
        wait_until(lambda: replica["id"] in c.primaries(via=others[0]) and c.ok(others), 60,
                   "replica %d promoted" % replica["port"], interval=0.1)
        self.log("fault: cluster primary %d (partition %d's) SIGKILLed, replica %d promoted after %.1fs" % (
            victim["port"], part, replica["port"], now() - t_down))
        outage = self.rng.uniform(0.5, 3.0)
        self.stop_faults.wait(outage)  # the old node's outage itself
        vnode.start()
        self.kills.append(("redis", "cluster primary %d" % victim["port"], t_down, now()))

    def redis_nodes(self):
        if self.a.redis == "cluster":
            return self.cluster.nodes
        return self.group.nodes if self.a.redis == "sentinel" else [self.redis]

    def primary(self, part=0):
        """The node that holds partition part's keys."""
        if self.a.redis == "cluster":
            return self.cluster.by_port(self.cluster.owner(keyslot("txm{%d}:x" % part))["port"])
        return self.group.primary if self.a.redis == "sentinel" else self.redis

    def smtp_storms(self):
        self.set_faults(BASELINE)
        times = self.schedule(len(STORMS) * self.a.storm_rounds, 0.05, 0.85)
        order = STORMS * self.a.storm_rounds
        self.rng.shuffle(order)
        for t, storm in zip(times, order):
            if not self.wait_until_time(t):
                break
            length = self.rng.uniform(2.0, 5.0)
            self.set_faults(storm)
            self.log("fault: SMTP storm %s for %.1fs" % (storm, length))
            self.stop_faults.wait(length)
            self.storms.append((storm, length))
            self.set_faults(BASELINE)
        self.stop_faults.wait()
        self.set_faults({})

    def webhook_down(self):
        if self.a.webhook_down <= 0:
            return
        t = self.schedule(1, 0.1, 0.5)[0]
        if not self.wait_until_time(t):
            return
        t_down = now()
        self.stop_webhook()
        self.log("fault: webhook receiver down for %.0fs" % self.a.webhook_down)
        time.sleep(self.a.webhook_down)  # the outage itself
        self.start_webhook()
        self.webhook_outage = (t_down, now())
        self.log("webhook receiver back")

    # --- the run ---------------------------------------------------------------
    def run(self):
        a = self.a
        self.t0 = now()
        self.log("load: %d messages over %.0fs, %d senders; redis=%s fsync=%s seed=%d" % (
            a.messages, a.load_seconds, a.senders, a.redis, a.fsync, a.seed))
        senders = [threading.Thread(target=self.sender, args=(i,), name="sender-%d" % i) for i in range(a.senders)]
        faults = [threading.Thread(target=f, name=f.__name__) for f in (self.killer, self.smtp_storms)]
        wh = threading.Thread(target=self.webhook_down, name="webhook_down")
        for t in senders + faults + [wh]:
            t.start()
        progress_end = now() + a.load_seconds + 180
        while True:
            alive = [t for t in senders if t.is_alive()]
            if not alive:
                break
            alive[0].join(5)
            with self.lock:
                n = len(self.accepted)
            self.log("accepted %d/%d, at the peer %d" % (n, a.messages, self.peer.count()))
            if now() > progress_end:
                self.abort.set()
        self.t_load_end = now()
        self.stop_faults.set()
        for t in faults:
            t.join()
        self.log("load done: %d accepted, %d retried requests, %d idempotent replays; faults off" % (
            len(self.accepted), self.retries, self.replays))
        wh.join()
        # processes a fault left down are started again (a kill that raced the end)
        for p in self.procs:
            if not p.alive():
                p.start()
        self.drain()

    def drain(self):
        """Wait (bounded by --drain-seconds) until every accepted recipient
        has its terminal webhook; the counting afterwards says what is missing."""
        want = [(mid, r.lower()) for mid, rcpts in self.accepted.values() for r in rcpts]
        last = {"n": -1}

        def drained():
            got = self.terminal_events()
            n = sum(1 for k in want if k not in got)
            if n != last["n"]:
                self.log("drain: %d recipients without a terminal webhook yet, peer has %d" % (
                    n, self.peer.count()))
                last["n"] = n
            return n == 0
        try:
            wait_until(drained, self.a.drain_seconds, "a terminal webhook for every recipient", interval=2)
            self.log("drain: every recipient has its terminal webhook")
        except WaitTimeout:
            self.log("drain: deadline (%ds) passed with %d missing" % (self.a.drain_seconds, last["n"]))

    def terminal_events(self):
        """(message_id, recipient) -> set of terminal event types received."""
        out = {}
        self.events_total = 0
        self.events_redelivered = 0
        seen = set()
        for f in self.wh_files:
            try:
                fh = open(f)
            except OSError:
                continue
            with fh:
                for line in fh:
                    if not line.endswith("\n"):
                        break
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if rec.get("status") != 200 or not rec.get("valid"):
                        continue
                    self.events_total += 1
                    if rec["webhook_id"] in seen:
                        self.events_redelivered += 1
                        continue
                    seen.add(rec["webhook_id"])
                    body = json.loads(rec["body"])
                    t = body.get("type")
                    d = body.get("data") or {}
                    if t in ("message.delivered", "message.failed") and \
                            (d.get("message_id"), (d.get("recipient") or "").lower()) not in self.hidden_events:
                        out.setdefault((d.get("message_id"), (d.get("recipient") or "").lower()), set()).add(t)
        return out

    # --- counting -----------------------------------------------------------
    def peer_copies(self):
        copies = {}
        first_at = {}
        md = self.peer.maildir
        for n in os.listdir(md):
            if not n.endswith(".json") or n.startswith("."):
                continue
            p = os.path.join(md, n)
            with open(p, "rb") as f:
                meta = json.loads(f.read())
            mtime = os.stat(p).st_mtime
            with open(os.path.join(md, n[:-5] + ".eml"), "rb") as f:
                head = f.read(4096)
            m = MSGID_RE.search(head)
            mid = m.group(1).decode() if m else "?"
            for r in meta["rcpt_tos"]:
                k = (mid, r.lower())
                copies[k] = copies.get(k, 0) + 1
                first_at[k] = min(first_at.get(k, mtime), mtime)
        return copies, first_at

    def statuses(self):
        ids = [v[0] for v in self.accepted.values()]
        res = {}
        errs = []
        parts = [ids[i::6] for i in range(6)]

        def work(part):
            c = Client(self.api.port, key=self.key, timeout=10)
            try:
                for mid in part:
                    for _ in range(20):
                        try:
                            r = c.get("/v1/messages/" + mid)
                        except (OSError, http.client.HTTPException):
                            c.close()
                            continue
                        if r.status in (200, 404):
                            res[mid] = r.json if r.status == 200 else None
                            break
                    else:
                        errs.append(mid)
            finally:
                c.close()
        ts = [threading.Thread(target=work, args=(p,)) for p in parts]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errs:
            self.errors.append("%d GETs never answered 200/404" % len(errs))
        return res

    def report(self, write_json=True):
        """Count, print, and return (ok, figures)."""
        a = self.a
        copies, first_at = self.peer_copies()
        st = self.statuses()
        events = self.terminal_events()
        n_rcpt = delivered = failed = lost = stuck = wh_lost = wrong_fail = 0
        lost_ex, stuck_ex, wh_ex = [], [], []
        vanished = 0
        for seq, (mid, rcpts) in self.accepted.items():
            doc = st.get(mid)
            if doc is None:
                vanished += 1
                n_rcpt += len(rcpts)
                # a vanished message is lost unless every copy reached the peer anyway
                for r in rcpts:
                    if copies.get((mid, r.lower()), 0) == 0:
                        lost += 1
                        lost_ex.append((seq, mid, r, "GET 404"))
                continue
            by = {x["email"].lower(): x for x in doc.get("recipients", [])}
            for r in rcpts:
                n_rcpt += 1
                k = (mid, r.lower())
                s = (by.get(r.lower()) or {}).get("status")
                if s not in TERMINAL:
                    stuck += 1
                    stuck_ex.append((seq, mid, r, s))
                    continue
                if s == "delivered":
                    delivered += 1
                    if copies.get(k, 0) == 0:
                        lost += 1
                        lost_ex.append((seq, mid, r, "delivered but not at the peer"))
                else:
                    failed += 1
                    if not r.lower().startswith("perm-"):
                        wrong_fail += 1
                        lost += 1
                        lost_ex.append((seq, mid, r, "%s: %r" % (s, (by.get(r.lower()) or {}).get("smtp"))))
                want_ev = "message.delivered" if s == "delivered" else "message.failed"
                if want_ev not in events.get(k, ()):
                    wh_lost += 1
                    wh_ex.append((seq, mid, r, s, sorted(events.get(k, ()))))
        dups = 0
        unexplained = []
        windows = [(d - 10.0, u + VISIBILITY + 5.0) for kind, name, d, u in self.kills
                   if kind == "redis" or name.startswith("worker")]
        accepted_ids = {mid for mid, _ in self.accepted.values()}
        not_accepted = 0
        for k, n in copies.items():
            extra = n - 1
            if k[0] not in accepted_ids:
                extra = n   # its message was made again by the retry, under another id
                not_accepted += n
            if extra > 0:
                dups += extra
                t = first_at[k]
                if not any(lo <= t <= hi for lo, hi in windows):
                    unexplained.append((k, n, round(t - self.t0, 1)))
        try:
            with open(self.faults_count) as f:
                fc = json.load(f)
        except (OSError, ValueError):
            fc = {}
        tx_kills = [k for k in self.kills if k[0] == "txmail"]
        slow_fsync = 0
        for node in self.redis_nodes():
            try:
                with open(node.log, errors="replace") as fh:
                    slow_fsync += sum(1 for line in fh if "fsync is taking too long" in line)
            except OSError:
                pass
        out = {
            "redis": a.redis, "fsync": a.fsync, "seed": a.seed, "messages_sent": a.messages,
            "accepted": len(self.accepted), "recipients": n_rcpt,
            "delivered": delivered, "failed": failed, "failed_unexpected": wrong_fail,
            "lost": lost, "vanished_messages": vanished,
            "duplicates": dups, "duplicates_unexplained": len(unexplained),
            "copies_of_ids_not_accepted": not_accepted,
            "webhook_events_lost": wh_lost, "webhook_events_received": self.events_total,
            "webhook_redeliveries": self.events_redelivered,
            "stuck": stuck,
            "redis_slow_fsync_warnings": slow_fsync,
            "faults": {
                "txmail_sigkill": len(tx_kills),
                "txmail_sigkill_by_process": {n: sum(1 for k in tx_kills if k[1] == n)
                                              for n in sorted({k[1] for k in tx_kills})},
                # with --redis sentinel or cluster: failovers
                "redis_kill_restart": sum(1 for k in self.kills if k[0] == "redis"),
                "smtp_banner_421": fc.get("banner421", 0), "smtp_tarpit": fc.get("tarpit", 0),
                "smtp_drop_mid_data": fc.get("middata", 0),
                "smtp_storms": len(self.storms),
                "webhook_receiver_down_s": round(self.webhook_outage[1] - self.webhook_outage[0], 1)
                if self.webhook_outage else 0,
            },
            "request_retries": self.retries, "idempotent_replays": self.replays,
            "load_seconds": round(self.t_load_end - self.t0, 1),
            "total_seconds": round(now() - self.t0, 1),
            "errors": self.errors[:20],
        }
        f = out["faults"]
        print()
        print("faults: redis=%s fsync=%s seed=%d, %d messages over %.0fs, %d worker processes" % (
            a.redis, a.fsync, a.seed, a.messages, a.load_seconds, a.workers))
        print("  injected      txmail SIGKILL %d %s, %s %d, SMTP 421 banner %d, tarpit %d, "
              "mid-DATA drop %d (%d storms), webhook receiver down %ss" % (
                  f["txmail_sigkill"], f["txmail_sigkill_by_process"],
                  "redis primary kill+failover" if a.redis != "single" else "redis kill+restart",
                  f["redis_kill_restart"],
                  f["smtp_banner_421"], f["smtp_tarpit"], f["smtp_drop_mid_data"], f["smtp_storms"],
                  f["webhook_receiver_down_s"]))
        print("  accepted      %d messages, %d recipients (%d requests retried, %d idempotent replays)" % (
            out["accepted"], n_rcpt, self.retries, self.replays))
        print("  delivered     %d recipients" % delivered)
        print("  failed        %d recipients (%d not perm- addresses)" % (failed, wrong_fail))
        print("  lost          %d%s" % (lost, (" e.g. %r" % lost_ex[:3]) if lost_ex else ""))
        if vanished:
            print("                (%d accepted messages vanished from Redis)" % vanished)
        print("  duplicates    %d (%d outside a kill window%s; %d copies of ids never 202'd)" % (
            dups, len(unexplained), (": %r" % unexplained[:3]) if unexplained else "", not_accepted))
        print("  webhook lost  %d%s (%d events received, %d redeliveries)" % (
            wh_lost, (" e.g. %r" % wh_ex[:3]) if wh_ex else "", self.events_total, self.events_redelivered))
        print("  stuck         %d%s" % (stuck, (" e.g. %r" % stuck_ex[:3]) if stuck_ex else ""))
        print("  time          load %.0fs, total %.0fs" % (out["load_seconds"], out["total_seconds"]))
        if slow_fsync:
            print("  redis         %d \"fsync is taking too long\" warnings: with everysec, writes were held in "
                  "memory up to 2 s (a kill then would lose them)" % slow_fsync)
        if self.errors:
            print("  errors        %r" % self.errors[:5])
        problems = []
        if len(self.accepted) != a.messages:
            problems.append("only %d of %d messages accepted" % (len(self.accepted), a.messages))
        if stuck:
            problems.append("stuck recipients")
        if a.fsync == "always" or a.strict:
            if lost:
                problems.append("lost")
            if wh_lost:
                problems.append("webhook events lost")
            if unexplained:
                problems.append("duplicates outside kill windows")
        else:
            # everysec may drop acknowledged writes; what remains must still be consistent
            wl = sum(1 for x in wh_ex if x[1] in st and st[x[1]] is not None)
            if wl:
                problems.append("webhook events lost for messages that exist")
        if self.errors:
            problems.append("errors")
        if a.min_kills and len(tx_kills) < a.min_kills:
            problems.append("only %d txmail kills happened" % len(tx_kills))
        out["result"] = "FAIL: " + ", ".join(problems) if problems else "PASS"
        print("RESULT: %s" % out["result"])
        if a.json and write_json:
            with open(a.json, "w") as fh:
                json.dump(out, fh, indent=2)
        return not problems, out

    def self_check(self, base):
        """Tamper with the evidence in three ways and check that the counters
        see each: a stored copy removed (lost), a terminal webhook hidden
        (webhook lost), a recipient set back to queued in Redis (stuck)."""
        copies, _ = self.peer_copies()
        st = self.statuses()
        singles = [(mid, rc[0]) for mid, rc in self.accepted.values()
                   if len(rc) == 1 and not rc[0].startswith("perm-") and copies.get((mid, rc[0].lower())) == 1
                   and (st.get(mid) or {}).get("status") == "delivered"]
        if len(singles) < 3:
            print("self-check: not enough delivered single-recipient messages")
            return False
        (m1, r1), (m2, r2), (m3, r3) = self.rng.sample(singles, 3)
        md = self.peer.maildir
        for n in os.listdir(md):
            if n.endswith(".eml") and m1.encode() in open(os.path.join(md, n), "rb").read(4096):
                os.rename(os.path.join(md, n[:-4] + ".json"), os.path.join(md, n[:-4] + ".sabotaged"))
        self.hidden_events.add((m2, r2.lower()))
        part = re.search(r"p([1-9][0-9]?)$", m3[4 + 26:]) if len(m3) > 4 + 26 else None
        k = int(part.group(1)) if part else 0
        self.primary(k).cmd("HSET", "txm{%d}:msg:%s" % (k, m3), "r0:status", "queued")
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            _, out = self.report(write_json=False)
        want = {"lost": base["lost"] + 1, "webhook_events_lost": base["webhook_events_lost"] + 1,
                "stuck": base["stuck"] + 1}
        got = {k: out[k] for k in want}
        ok = got == want and out["result"].startswith("FAIL")
        print("self-check: removed a stored copy, hid a webhook, set a recipient back to queued -> "
              "counted %r, want %r, result %r: %s" % (got, want, out["result"], "OK" if ok else "BROKEN"))
        return ok

    def teardown(self):
        self.stop_faults.set()
        self.abort.set()
        bad = []
        for p in self.procs:
            p.stop(timeout=15)
            bad.extend(p.problems)
        self.stop_webhook()
        for part in ("peer", "redis", "group", "cluster"):
            if hasattr(self, part):
                getattr(self, part).stop()
        for b in bad:
            print("teardown: %s" % b)
        return not bad


def helpers_write(path, data):
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "txmail"))
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--load-seconds", type=float, default=150)
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="txmail worker processes")
    ap.add_argument("--kills", type=int, default=12, help="txmail SIGKILLs during the load")
    ap.add_argument("--min-kills", type=int, default=0, help="fail if fewer kills happened")
    ap.add_argument("--redis-restarts", type=int, default=2)
    ap.add_argument("--storm-rounds", type=int, default=2, help="rounds of the SMTP fault storms")
    ap.add_argument("--webhook-down", type=float, default=60, help="seconds the webhook receiver is down")
    ap.add_argument("--drain-seconds", type=float, default=240)
    ap.add_argument("--fsync", choices=("always", "everysec"), default="always")
    ap.add_argument("--redis", choices=("single", "sentinel", "cluster"), default="single",
                    help="one redis-server, a Sentinel group whose primary the Redis kills hit, or a "
                    "Redis Cluster whose partitions' primaries they hit")
    ap.add_argument("--partitions", type=int, default=1, help="TXMAIL_PARTITIONS of every txmail")
    ap.add_argument("--strict", action="store_true", help="fail on loss even with --fsync everysec")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, maildir, AOF)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--self-check", action="store_true",
                    help="after a passing run, tamper with the evidence and check the counters notice")
    a = ap.parse_args(argv)
    if not os.access(a.bin, os.X_OK):
        ap.error("%s is not executable (make build)" % a.bin)
    r = Run(a)
    ok = False
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        r.setup()
        r.run()
        ok, figures = r.report()
        if ok and a.self_check:
            ok = r.self_check(figures)
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        clean = r.teardown()
        ok = ok and clean
        if a.keep or not ok:
            print("work dir kept: %s" % r.dir if hasattr(r, "dir") else "")
        elif hasattr(r, "dir") and not a.workdir:
            shutil.rmtree(r.dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
