#!/usr/bin/python3
"""bench_api.py - the accept path alone: `txmail api` against a real
redis-server (AOF on), no workers, POST /v1/messages from keep-alive
clients: wrk (C, --client wrk, the default when installed; -d seconds;
benchlib.run_wrk: every body unique, tests/bench/unique.lua) or
the Python client of bench.py (--client python; -n messages). Prints
accepts per second and, as the reference measured in the
same run on the same Redis, redis-benchmark's rate of unpipelined PINGs
(one round trip each), so the ratio says how many Redis round trips' worth
of time one accepted message costs (the design budget is about one). No assertion:
machines are shared and noisy.

--replica also starts a replica of that Redis and measures twice in the
same run: TXMAIL_REDIS_MIN_REPLICAS=0 (the reference) and 1 (a fence write
and WAIT after each batch of accepts), and prints the ratio of the rates
and of the p99 latencies: what waiting for a replica costs.

--callgrind N runs `txmail api` under valgrind's callgrind instead and
prints the instructions executed per accepted message over N sends (after
a warm-up of N/4, counters zeroed in between with callgrind_control): a
figure that does not move with the machine's load, for comparing two builds
(run it once per --bin).
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from bench import free_port, post_messages
from benchlib import run_wrk


def wait_port(port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench_api: port {port} never opened")


def callgrind_per_accept(tmp, pid, port, body, n):
    """Ir per accepted message over n sends, after a warm-up."""
    def ctl(*args):
        subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                       capture_output=True, timeout=60)
    if post_messages(port, "bench-key", body, max(1, n // 4), 4):
        raise SystemExit("bench_api: warm-up sends refused")
    ctl("-z")
    bad = post_messages(port, "bench-key", body, n, 4)
    if bad:
        raise SystemExit(f"bench_api: {len(bad)} sends refused: {bad[:5]}")
    ctl("-d")
    total = 0
    for name in os.listdir(tmp):        # cg.<pid>.1: the dump asked for, since the zeroing
        if re.fullmatch(r"cg\.\d+\.1", name):
            with open(os.path.join(tmp, name)) as f:
                m = re.search(r"^(?:totals|summary):\s+(\d+)", f.read(), re.M)
            total = int(m.group(1)) if m else 0
    if not total:
        raise SystemExit("bench_api: no callgrind dump found")
    return total / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/txmail")
    ap.add_argument("-n", type=int, default=4000)
    ap.add_argument("-c", type=int, default=16)
    ap.add_argument("-d", type=int, default=10, help="seconds of load (wrk)")
    ap.add_argument("--callgrind", type=int, metavar="N",
                    help="instructions per accept over N sends under callgrind")
    ap.add_argument("--client", choices=("wrk", "python"),
                    default="wrk" if shutil.which("wrk") else "python")
    ap.add_argument("--replica", action="store_true",
                    help="with a replica: TXMAIL_REDIS_MIN_REPLICAS=0 against 1, same run")
    a = ap.parse_args()
    if a.replica:
        return replica_cost(a)
    tmp = tempfile.mkdtemp(prefix="txmail-bench-api-")
    rport, hport = free_port(), free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "yes", "--dir", tmp],
                             stdout=subprocess.DEVNULL)
    api = None
    try:
        wait_port(rport)
        env = dict(os.environ, TXMAIL_REDIS_URL=f"redis://127.0.0.1:{rport}",
                   TXMAIL_LISTEN=f"127.0.0.1:{hport}", TXMAIL_API_KEYS="bench-key",
                   TXMAIL_RATE_LIMIT="0", TXMAIL_LOG_LEVEL="warn")
        cmd = [a.bin, "api"]
        if a.callgrind:
            cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" +
                   os.path.join(tmp, "cg.%p")] + cmd
        api = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        wait_port(hport, 60 if a.callgrind else 10)
        body = json.dumps({"from": "Bench <bench@example.com>", "to": "user@example.com",
                           "subject": "Your code is 123456",
                           "text": "Your verification code is 123456.\n"}).encode()
        if a.callgrind:
            print(f"{a.bin}: {callgrind_per_accept(tmp, api.pid, hport, body, a.callgrind):,.0f}"
                  " instructions per accept (callgrind)")
            return
        p99 = None
        if a.client == "wrk":
            w = run_wrk(hport, "bench-key", conns=a.c, seconds=a.d)
            if w["refused"]:
                raise SystemExit(f"bench_api: {w['refused']} answers were not 202")
            rate, n, p99 = w["rate"], w["accepted"], w["p99"]
        else:
            t0 = time.monotonic()
            bad = post_messages(hport, "bench-key", body, a.n, a.c)
            rate, n = a.n / (time.monotonic() - t0), a.n
            if bad:
                raise SystemExit(f"bench_api: {len(bad)} sends refused: {bad[:5]}")
        a.n = n
        out = subprocess.run(["redis-benchmark", "-p", str(rport), "-c", str(a.c), "-n",
                              str(a.n * 5), "-q", "-t", "ping_mbulk"],
                             capture_output=True, text=True, timeout=120).stdout
        m = re.search(r"([\d.]+) requests per second", out)
        ref = float(m.group(1)) if m else 0.0
        print(f"reference (redis-benchmark PING, {a.c} clients): {ref:9.0f} round trips/s")
        print(f"txmail api accept (HTTP 202, {a.client}):    {rate:9.0f} msg/s"
              + (f", p99 {p99:.2f} ms" if p99 is not None else ""))
        if ref:
            print(f"round trips' worth of time per accept:  {ref / rate:9.2f}")
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=10)
        redis.terminate()
        redis.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def replica_cost(a):
    """Accept rate and p99 with TXMAIL_REDIS_MIN_REPLICAS 0 and 1, one primary and its replica."""
    tmp = tempfile.mkdtemp(prefix="txmail-bench-api-")
    rport, sport = free_port(), free_port()
    procs = []

    def redis_server(port, d, *extra):
        os.makedirs(d, exist_ok=True)
        procs.append(subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "yes", "--dir", d, *extra],
                                      stdout=subprocess.DEVNULL))
        wait_port(port)
    try:
        redis_server(rport, os.path.join(tmp, "primary"))
        redis_server(sport, os.path.join(tmp, "replica"), "--replicaof", "127.0.0.1", str(rport))
        end = time.monotonic() + 20
        while b"master_link_status:up" not in subprocess.run(
                ["redis-cli", "-p", str(sport), "INFO", "replication"], capture_output=True).stdout:
            if time.monotonic() > end:
                raise SystemExit("bench_api: the replica never linked")
            time.sleep(0.05)
        res = {}
        for want in (0, 1):
            hport = free_port()
            env = dict(os.environ, TXMAIL_REDIS_URL=f"redis://127.0.0.1:{rport}",
                       TXMAIL_LISTEN=f"127.0.0.1:{hport}", TXMAIL_API_KEYS="bench-key",
                       TXMAIL_RATE_LIMIT="0", TXMAIL_LOG_LEVEL="warn",
                       TXMAIL_REDIS_MIN_REPLICAS=str(want))
            api = subprocess.Popen([a.bin, "api"], env=env, stderr=subprocess.DEVNULL)
            try:
                wait_port(hport)
                w = run_wrk(hport, "bench-key", conns=a.c, seconds=a.d)
                if w["refused"]:
                    raise SystemExit(f"bench_api: {w['refused']} answers were not 202 "
                                     f"(TXMAIL_REDIS_MIN_REPLICAS={want})")
                res[want] = w
            finally:
                api.terminate()
                api.wait(timeout=10)
        for want in (0, 1):
            print(f"accept, TXMAIL_REDIS_MIN_REPLICAS={want}: {res[want]['rate']:9.0f} msg/s, "
                  f"p99 {res[want]['p99']:.2f} ms ({a.c} wrk connections)")
        print(f"waiting for the replica: rate x{res[1]['rate'] / res[0]['rate']:.2f}, "
              f"p99 x{res[1]['p99'] / res[0]['p99']:.2f} (against 0, same run)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
