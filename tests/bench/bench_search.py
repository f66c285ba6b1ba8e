#!/usr/bin/python3
"""bench_search.py - GET /v1/messages (issue 17, point 1) with --messages
(default 1,000,000) retained: how long a page takes, per kind of query.

Starts its own redis-server (deploy/redis.conf as shipped but port, bind,
dir, daemonize - and appendfsync everysec: filling 1M messages is set-up,
not the figure) and `txmail api` (no workers: every message stays queued
and retained), fills the store with POST /v1/messages/batch (500 a batch,
four connections): 1 in 100 messages to one of 100 "hot" recipients,
1 in 50 tagged "tenth", everything from one of 20 senders, one message
canceled among the oldest (a rare status, with its own run in the index;
delivered, which has none, matches nothing: a whole budget walked); then times each query --runs
times from one keep-alive client and prints median, p90 and max in ms,
and each median's ratio to the reference measured in the same run: GET
/v1/messages/{id} of one message (one lookup). The goal (< 50 ms) is
printed beside it; nothing is asserted (the box is shared).

  bench_search.py --bin build/txmail [--messages N] [--runs N] [--keep]
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import Procs, start_redis, wait_http_ok  # noqa: E402
from benchlib import free_port, resp_cmd  # noqa: E402

KEY = "bench-search-key-0123456789abcdef"
GOAL_MS = 50.0
LATER = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 20 * 86400))


def conn(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=120)


def call(c, method, path, body=None):
    h = {"Authorization": "Bearer " + KEY}
    if body is not None:
        body = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    return r.status, (json.loads(data) if data else None)


def fill(port, n, log):
    """n messages in batches of 500 over four connections; the oldest id and a canceled one."""
    batches = (n + 499) // 500
    nxt = {"b": 0}
    lock = threading.Lock()
    errors = []
    t0 = time.monotonic()

    def worker():
        c = conn(port)
        while True:
            with lock:
                b = nxt["b"]
                nxt["b"] += 1
            if b >= batches or errors:
                return
            msgs = []
            for i in range(b * 500, min(n, (b + 1) * 500)):
                to = ["hot%d@example.net" % ((i // 100) % 100)] if i % 100 == 0 else ["u%d@example.net" % i]
                msgs.append({"from": "Sender <s%d@example.com>" % (i % 20), "to": to,
                             "subject": "bench %d" % i, "text": "code %06d" % (i % 1000000),
                             "tags": ["tenth"] if i % 50 == 0 else ["bulk"],
                             "send_at": LATER if i == 5 else None})
                if msgs[-1]["send_at"] is None:
                    del msgs[-1]["send_at"]
            st, body = call(c, "POST", "/v1/messages/batch", {"messages": msgs})
            if st != 202:
                errors.append((st, body))
                return
            if b % 200 == 0:
                log("fill: %d of %d messages (%.0f s)" % (b * 500, n, time.monotonic() - t0))

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit("bench: a batch failed: %r" % (errors[0],))
    return time.monotonic() - t0


def timed(c, path, runs):
    out = []
    body = None
    for _ in range(runs):
        t = time.perf_counter()
        st, body = call(c, "GET", path)
        out.append((time.perf_counter() - t) * 1000.0)
        if st != 200:
            raise SystemExit("bench: GET %s: %s %r" % (path, st, body))
    out.sort()
    return out, body


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/txmail")
    ap.add_argument("--messages", type=int, default=1000000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()

    def log(s):
        print("[bench_search %s] %s" % (time.strftime("%H:%M:%S"), s), flush=True)

    procs = Procs(prefix="txm-search-", keep=a.keep)
    procs.install_handlers()
    try:
        rport, over = start_redis(procs, "redis-search", ["appendfsync everysec"])
        port = free_port()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TXMAIL_REDIS_URL": "redis://127.0.0.1:%d" % rport,
               "TXMAIL_LISTEN": "127.0.0.1:%d" % port, "TXMAIL_API_KEYS": KEY, "TXMAIL_RATE_LIMIT": "0",
               "TXMAIL_LOG_LEVEL": "warn", "TXMAIL_MAX_AGE": "86400"}
        api = procs.start("txmail-api", [os.path.abspath(a.bin), "api"], env=env)
        wait_http_ok(port, "/healthz", 30, api)
        took = fill(port, a.messages, log)
        used = resp_cmd(rport, "INFO", "memory", timeout=10)
        mem = [ln for ln in used.splitlines() if ln.startswith("used_memory_human:")]
        log("filled %d messages in %.0f s (%.0f/s); redis %s" % (a.messages, took, a.messages / took,
                                                                mem[0] if mem else "?"))
        c = conn(port)
        # the rare status: cancel the scheduled one (the 6th message sent: among the oldest)
        st, first = call(c, "GET", "/v1/messages?limit=1&status=scheduled")
        cur, sched = None, None
        for _ in range(10000):
            st, page = call(c, "GET", "/v1/messages?limit=100&status=scheduled" + ("&cursor=" + cur if cur else ""))
            if page["data"]:
                sched = page["data"][0]["id"]
                break
            cur = page["next_cursor"]
            if not cur:
                break
        if sched:
            call(c, "DELETE", "/v1/messages/" + sched)
        ref, _ = timed(c, "/v1/messages/" + (sched or "msg_00000000000000000000000000"), a.runs) \
            if sched else (None, None)
        st, p1 = call(c, "GET", "/v1/messages?limit=100")
        deep = p1["next_cursor"]
        for _ in range(49):
            st, p = call(c, "GET", "/v1/messages?limit=100&cursor=" + deep)
            deep = p["next_cursor"]
        mid = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - took / 2))
        queries = [
            ("newest 100", "/v1/messages?limit=100"),
            ("page 51 (cursor)", "/v1/messages?limit=100&cursor=" + deep),
            ("recipient (1 in 100 x 100 addresses)", "/v1/messages?limit=100&recipient=hot7@example.net"),
            ("tag (1 in 50)", "/v1/messages?limit=100&tag=tenth"),
            ("from (1 in 20)", "/v1/messages?limit=100&from=s3@example.com"),
            ("status=queued", "/v1/messages?limit=100&status=queued"),
            ("status=canceled (1 of all: its own run)", "/v1/messages?limit=100&status=canceled"),
            ("status=delivered (none: no run, a budget)", "/v1/messages?limit=100&status=delivered"),
            ("tag + status", "/v1/messages?limit=100&tag=tenth&status=queued"),
            ("created_before (the middle)", "/v1/messages?limit=100&created_before=" + mid),
        ]
        rows = []
        refmed = statistics.median(ref) if ref else None
        for name, path in queries:
            t, body = timed(c, path, a.runs)
            med = statistics.median(t)
            rows.append((name, med, t[int(len(t) * 0.9) - 1], t[-1], len(body["data"]),
                         med / refmed if refmed else float("nan")))
        print()
        print("GET /v1/messages with %d messages retained (%d runs each; reference: GET /v1/messages/{id} "
              "median %.2f ms)" % (a.messages, a.runs, refmed or float("nan")))
        print("%-44s %9s %9s %9s %6s %9s %s" % ("query", "p50 ms", "p90 ms", "max ms", "items", "x ref",
                                               "goal < 50 ms"))
        for name, med, p90, mx, items, ratio in rows:
            print("%-44s %9.2f %9.2f %9.2f %6d %9.1f %s" % (name, med, p90, mx, items, ratio,
                                                           "met" if med < GOAL_MS else "NOT MET"))
        print("load average: %.2f %.2f %.2f" % os.getloadavg())
    finally:
        procs.cleanup()


if __name__ == "__main__":
    main()
