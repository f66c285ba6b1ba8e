#!/usr/bin/python3
"""fairness.py - healthy-domain latency beside a tarpit, with and without the
per-destination cap (issue 14, TXMAIL_DEST_MAX_INFLIGHT). Run by hand (not
in make test or make bench):

  tests/bench/fairness.py [--bin build/txmail] [--cases none,off,default,8]
                          [--concurrency 32] [--backlog 10000] [--rate 50]
                          [--seconds 10] [--wait 15] [--settle 0] [--json PATH] [--keep]

Scenario 1 of tests/integration/test_fair_dest.py, once per case, each on
a fresh stack (redis-server with AOF appendfsync always, dnsmasq, the two
MX peers on 127.0.0.4/.5 sharing a port, one `txmail run` in direct
delivery with one loop of --concurrency slots, SMTP connect and banner
timeouts of 600 s):

  1. baseline: --rate messages a second to healthy.test for --seconds,
     POST -> arrival at the peer (smtpd.py's "at");
  2. --backlog single-recipient messages to tarpit.test (its MX accepts TCP
     and never greets); with --settle S, then a wait (at most 20 s) until
     the tarpit's connection count has not changed for S seconds;
  3. the healthy flow again, at once (or after the settling); waits at
     most --wait s after the last POST.

Cases: `none` (no backlog in step 2: the flow twice alone), `off`
(TXMAIL_DEST_MAX_INFLIGHT = --concurrency: no cap), `default` (unset:
the built-in default, a quarter of the slots), `restart` (the default
cap, the backlog queued while only `txmail api` runs, then `txmail run`
again: all of it is in the ready stream, read through after the start;
"read through" then counts from that start), or a number (that cap).
Prints, per case, healthy p50/p99 in both phases, the p99 ratio (the
issue's goal: within 2x), how many arrived, and the most connections the
tarpit held at once. A message that never arrived counts as infinitely
late (p99 "never"). With a backlog it also samples the normal lane's
unclaimed deliveries (txmail_queue_ready from /metrics, every 0.1 s):
when they fall to 10 or fewer the backlog has been read through (parked
or in flight), and the healthy figures are split into messages sent
before and after that moment. Nothing is asserted: the machine is shared and
wall-clock figures are noisy; --json PATH writes the figures.

Must never: talk to anything but loopback, or leave a process behind
(every child is stopped in a finally, also on SIGTERM/^C).
"""
import argparse
import base64
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
IT = os.path.join(ROOT, "tests", "integration")
os.environ.setdefault("TXM_PORT_GROUP", "3")   # not the integration passes' blocks (benchlib.py)
sys.path.insert(0, IT)
sys.path.insert(0, os.path.join(IT, "peers"))

import helpers  # noqa: E402
from dns_server import DnsServer  # noqa: E402
from fairpeers import (DEST_PROBE, DEST_RECORDS, HEALTHY_IP, TARPIT_IP, MxPeer, Tarpit, dest_env,  # noqa: E402
                       fmt_s, healthy_phase, summary, tarpit_backlog)
from helpers import Client, RedisServer, Txmail, free_port, wait_until  # noqa: E402

READY_RE = re.compile(r'(?m)^txmail_queue_ready\{lane="normal"\} (\d+)')


class ReadySampler:
    """Polls GET /metrics every 0.1 s for txmail_queue_ready{lane="normal"}:
    the normal-lane deliveries no worker has claimed (the tarpit backlog not
    yet read through, which healthy mail queued behind it waits for)."""

    def __init__(self, port, key):
        self.c = Client(port, key=key, timeout=5)
        self.samples = []   # (time.time(), ready)
        self.stop_ev = threading.Event()
        self.thr = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_ev.wait(0.1):
            try:
                m = READY_RE.search(self.c.get("/metrics").body.decode("utf-8", "replace"))
            except OSError:
                continue
            if m:
                self.samples.append((time.time(), int(m.group(1))))

    def start(self):
        self.thr.start()
        return self

    def stop(self):
        self.stop_ev.set()
        self.thr.join(timeout=10)
        self.c.close()

    def cleared_at(self, limit):
        """The first time the ready count was at most limit, or None."""
        for at, n in self.samples:
            if n <= limit:
                return at
        return None


def run_case(args, case, root):
    wd = tempfile.mkdtemp(prefix="case-%s-" % case, dir=root)
    redis = dns = tarpit = peer = tx = None
    try:
        redis = RedisServer(wd)
        redis.start()
        dns = DnsServer(wd, ["test"], DEST_RECORDS, DEST_PROBE).start()
        mx_port = free_port()
        tarpit = Tarpit(TARPIT_IP, mx_port).start()
        peer = MxPeer(wd, HEALTHY_IP, mx_port).start()
        key = "txm_bench_" + base64.b32encode(os.urandom(15)).decode().lower()
        port = free_port()
        env = {"TXMAIL_REDIS_URL": redis.url, "TXMAIL_API_KEYS": key, "TXMAIL_LISTEN": "127.0.0.1:%d" % port,
               "TXMAIL_HELO_NAME": "bench.txmail.local", "TXMAIL_RATE_LIMIT": "0", "TXMAIL_LOG_LEVEL": os.environ.get("TXM_LOG_LEVEL", "warn"),
               "TXMAIL_RETRY_BASE": "0.2", "TXMAIL_RETRY_MAX": "1", "TXMAIL_SHUTDOWN_GRACE": "5"}
        env.update(dest_env(dns.address, mx_port, args.concurrency))
        if case == "off":
            env["TXMAIL_DEST_MAX_INFLIGHT"] = str(args.concurrency)
        elif case not in ("none", "default", "restart"):
            env["TXMAIL_DEST_MAX_INFLIGHT"] = case
        tx = Txmail(args.bin, ["run"], helpers.clean_env(env), os.path.join(wd, "txmail.log"), port=port,
                    key=key, name="txmail run (%s)" % case)
        tx.start()
        api = tx.client()
        n = int(args.rate * args.seconds)
        try:
            _, lat0 = healthy_phase(api, peer, "b", n, args.rate, args.wait)
            t_backlog = 0.0
            sampler = None
            if case != "none":
                t = time.monotonic()
                t_enq = time.time()
                if case == "restart":
                    # the backlog queued while no worker runs (an API alone): all of it in the
                    # ready stream when the worker starts, none of it published yet
                    api.close()
                    tx.stop()
                    tx.args = ["api"]
                    tx.start()
                tarpit_backlog(tx.port, tx.key, args.backlog)
                t_backlog = time.monotonic() - t
                if case == "restart":
                    tx.stop()
                    tx.args = ["run"]
                    t_enq = time.time()
                    tx.start()
                    api = tx.client()
                sampler = ReadySampler(tx.port, tx.key).start()
                if args.settle > 0:
                    # as many connections as it will get: none new for --settle s (20 s at most)
                    last = {"n": -1, "at": time.monotonic()}

                    def settled():
                        h = tarpit.now_held()
                        if h != last["n"]:
                            last["n"], last["at"] = h, time.monotonic()
                        return h > 0 and time.monotonic() - last["at"] >= args.settle
                    try:
                        wait_until(settled, 20, "the tarpit's connections")
                    except AssertionError:
                        pass
            held = tarpit.now_held()
            sent1, lat1 = healthy_phase(api, peer, "l", n, args.rate, args.wait)
        finally:
            api.close()
            if sampler is not None:
                sampler.stop()
        split = None
        cleared = sampler.cleared_at(10) if sampler is not None else None
        if cleared is not None:
            before = {r: lat1[r] for r in lat1 if sent1[r] < cleared}
            after = {r: lat1[r] for r in lat1 if sent1[r] >= cleared}
            nb = sum(1 for r in sent1 if sent1[r] < cleared)
            split = {"backlog_read_through_s": cleared - t_enq,
                     "sent_before": summary(before, nb), "sent_after": summary(after, len(sent1) - nb)}
        base, loaded = summary(lat0, n), summary(lat1, n)
        ratio = loaded["p99"] / base["p99"] if base["p99"] > 0 else math.inf
        dmi = env.get("TXMAIL_DEST_MAX_INFLIGHT", "unset")
        return {"case": case, "dest_max_inflight": dmi, "concurrency": args.concurrency,
                "backlog": 0 if case == "none" else args.backlog, "enqueue_s": t_backlog,
                "baseline": base, "loaded": loaded, "p99_ratio": ratio,
                "tarpit_held_at_phase3": held, "tarpit": tarpit.stats(), "split": split,
                # the healthy flow's latencies in the order sent, with the seconds since its start
                "loaded_latencies": [(round(sent1[r] - min(sent1.values()), 3), lat1.get(r))
                                     for r in sorted(sent1, key=sent1.get)]}
    finally:
        for stop in (tx, peer, tarpit, dns, redis):
            if stop is not None:
                stop.stop()
        if tx is not None and tx.problems:
            print("  %s: %s" % (case, "; ".join(tx.problems)), file=sys.stderr)
        if not args.keep:
            shutil.rmtree(wd, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "txmail"))
    ap.add_argument("--cases", default="none,off,default",
                    help="comma-separated: none, off, default, or a TXMAIL_DEST_MAX_INFLIGHT value")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--backlog", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--wait", type=float, default=15, help="seconds to wait after the last POST of a phase")
    ap.add_argument("--settle", type=float, default=0,
                    help="before step 3, wait until the tarpit's connection count has not changed for this "
                         "long (default 0: step 3 begins as soon as the backlog is enqueued)")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--keep", action="store_true", help="keep the work dirs (logs) and print where")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)

    def on_signal(sig, frame):
        raise SystemExit("fairness.py: stopped by signal %d" % sig)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    root = tempfile.mkdtemp(prefix="txmail-fairness-")
    results = []
    try:
        for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
            r = run_case(args, case, root)
            results.append(r)
            b, lo = r["baseline"], r["loaded"]
            print("%-8s cap=%-6s healthy alone p50 %s p99 %s | beside %d tarpit msgs p50 %s p99 %s "
                  "(%d/%d arrived) | p99 ratio %s | tarpit held %d at most" % (
                      r["case"], r["dest_max_inflight"], fmt_s(b["p50"]), fmt_s(b["p99"]), r["backlog"],
                      fmt_s(lo["p50"]), fmt_s(lo["p99"]), lo["arrived"], lo["sent"],
                      "inf" if r["p99_ratio"] == math.inf else "%.2f" % r["p99_ratio"],
                      r["tarpit"]["max_held"]), flush=True)
            sp = r["split"]
            if sp is not None:
                print("         the backlog was read through %.2fs after its enqueue began; healthy sent before: "
                      "p50 %s p99 %s (%d); after: p50 %s p99 %s (%d)" % (
                          sp["backlog_read_through_s"], fmt_s(sp["sent_before"]["p50"]),
                          fmt_s(sp["sent_before"]["p99"]), sp["sent_before"]["sent"],
                          fmt_s(sp["sent_after"]["p50"]), fmt_s(sp["sent_after"]["p99"]),
                          sp["sent_after"]["sent"]), flush=True)
    finally:
        if args.keep:
            print("work dirs kept under %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
