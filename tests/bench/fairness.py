#!/usr/bin/python3
"""fairness.py - healthy-domain latency beside a tarpit, with and without the
per-destination cap (issue 14, TXMAIL_DEST_MAX_INFLIGHT). Run by hand (not
in make test or make bench):

  tests/bench/fairness.py [--bin build/txmail] [--cases none,off,default,8]
                          [--concurrency 32] [--backlog 10000] [--rate 50]
                          [--seconds 10] [--wait 15] [--json PATH] [--keep]

Scenario 1 of tests/integration/test_fair_dest.py, once per case, each on
a fresh stack (redis-server with AOF appendfsync always, dnsmasq, the two
MX peers on 127.0.0.4/.5 sharing a port, one `txmail run` in direct
delivery with one loop of --concurrency slots, SMTP connect and banner
timeouts of 600 s):

  1. baseline: --rate messages a second to healthy.test for --seconds,
     POST -> arrival at the peer (smtpd.py's "at");
  2. --backlog single-recipient messages to tarpit.test (its MX accepts TCP
     and never greets), then a wait (at most 20 s) for the tarpit to hold
     as many connections as it will;
  3. the healthy flow again; waits at most --wait s after the last POST.

Cases: `none` (no backlog in step 2: the flow twice alone), `off`
(TXMAIL_DEST_MAX_INFLIGHT = --concurrency: no cap), `default` (unset:
the built-in default, a quarter of the slots), or a number (that cap).
Prints, per case, healthy p50/p99 in both phases, the p99 ratio (the
issue's goal: within 2x), how many arrived, and the most connections the
tarpit held at once. A message that never arrived counts as infinitely
late (p99 "never"). Nothing is asserted: the machine is shared and
wall-clock figures are noisy; --json PATH writes the figures.

Must never: talk to anything but loopback, or leave a process behind
(every child is stopped in a finally, also on SIGTERM/^C).
"""
import argparse
import base64
import json
import math
import os
import shutil
import signal
import sys
import tempfile
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
from helpers import RedisServer, Txmail, free_port, wait_until  # noqa: E402


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
               "TXMAIL_HELO_NAME": "bench.txmail.local", "TXMAIL_RATE_LIMIT": "0", "TXMAIL_LOG_LEVEL": "warn",
               "TXMAIL_RETRY_BASE": "0.2", "TXMAIL_RETRY_MAX": "1", "TXMAIL_SHUTDOWN_GRACE": "5"}
        env.update(dest_env(dns.address, mx_port, args.concurrency))
        if case == "off":
            env["TXMAIL_DEST_MAX_INFLIGHT"] = str(args.concurrency)
        elif case not in ("none", "default"):
            env["TXMAIL_DEST_MAX_INFLIGHT"] = case
        tx = Txmail(args.bin, ["run"], helpers.clean_env(env), os.path.join(wd, "txmail.log"), port=port,
                    key=key, name="txmail run (%s)" % case)
        tx.start()
        api = tx.client()
        n = int(args.rate * args.seconds)
        try:
            _, lat0 = healthy_phase(api, peer, "b", n, args.rate, args.wait)
            t_backlog = 0.0
            if case != "none":
                t = time.monotonic()
                tarpit_backlog(tx.port, tx.key, args.backlog)
                t_backlog = time.monotonic() - t
                # as many connections as it will get: none new for 2 s, or 20 s in all
                last = {"n": -1, "at": time.monotonic()}

                def settled():
                    h = tarpit.now_held()
                    if h != last["n"]:
                        last["n"], last["at"] = h, time.monotonic()
                    return h > 0 and time.monotonic() - last["at"] >= 2
                try:
                    wait_until(settled, 20, "the tarpit's connections")
                except AssertionError:
                    pass
            held = tarpit.now_held()
            _, lat1 = healthy_phase(api, peer, "l", n, args.rate, args.wait)
        finally:
            api.close()
        base, loaded = summary(lat0, n), summary(lat1, n)
        ratio = loaded["p99"] / base["p99"] if base["p99"] > 0 else math.inf
        dmi = env.get("TXMAIL_DEST_MAX_INFLIGHT", "unset")
        return {"case": case, "dest_max_inflight": dmi, "concurrency": args.concurrency,
                "backlog": 0 if case == "none" else args.backlog, "enqueue_s": t_backlog,
                "baseline": base, "loaded": loaded, "p99_ratio": ratio,
                "tarpit_held_at_phase3": held, "tarpit": tarpit.stats()}
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
