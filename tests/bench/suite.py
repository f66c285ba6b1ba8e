#!/usr/bin/python3
"""suite.py - `make bench`: issue 13's figures in one table.

Starts everything itself on random loopback ports - its own redis-server on
the shipped deploy/redis.conf (only port, bind, dir and daemonize changed;
printed), Postfix's smtp-sink, the webhook receiver build/bench/whrecv (C,
libmicrohttpd thread pool: never the bottleneck), `txmail run`, wrk with
unique.lua (every request a different ~1 KB verification-code body, 64
connections) - and prints one table: figure, value, same-run reference,
ratio, goal, met.

Phases, each on a fresh Redis and txmail:
  reference  smtp-source -> smtp-sink, 64 sessions with connection reuse
             (-d): what this box can push through SMTP at all.
  e2e        --messages POSTs (wrk) -> txmail run -> smtp-sink -> the
             message.delivered webhook at whrecv. msg/s = messages / (last
             webhook received - first POST); lost = accepted - distinct
             delivered webhooks; duplicates = repeated webhook-ids + extra
             copies at the sink; every second the sink's count and the
             webhooks received are sampled: the backlog (delivered, not yet
             notified), its maximum and its growth (least-squares slope over
             the load). The accept rate of this phase is "accept while
             delivering". Redis cost over the phase from INFO deltas: CPU
             (server + children) per message, commands per message and the
             top commands (commandstats), AOF bytes per message,
             BGREWRITEAOF and BGSAVE runs, and used_memory kept per message
             after txmail has stopped, split into what is kept for lookup
             (the goal) and the outbox stream's entry (MEMORY USAGE of
             `events`: kept 24 h for SSE resume, read by no lookup).
  parts      e2e again with TXMAIL_PARTITIONS=4 (--parts-messages), its
             rate against the e2e run's (one partition) of the same run.
  accept     `txmail api` + Redis only, wrk for --accept-seconds; reference:
             redis-benchmark unpipelined PINGs at as many connections.
  otp        --otp-rate messages/s, priority high, for --otp-seconds, one at
             a time from one keep-alive client, to a real SMTP peer
             (otp_peer.py, aiosmtpd: stamps end of DATA per message by its
             X-Bench-Seq header) and whrecv (--log: stamps each webhook):
             POST -> end of DATA and POST -> webhook received, p50 p90 p99
             p99.9 max (the first --otp-warmup messages are not counted).
  rss        --rss-messages POSTs with the relay down (a port nobody
             listens on): txmail's peak RSS (VmHWM).

No figure is asserted: the exit status is 0 when the run completed, even
if goals are not met (the table says so). The box is shared: wall-clock
figures are noisy; the load average is printed before and after.

  suite.py --bin build/txmail --whrecv build/bench/whrecv [--quick]
           [--messages N] [--markdown FILE] [--only e2e,parts,accept,otp,rss]
"""
import argparse
import base64
import http.client
import json
import math
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import threading
import time

from benchlib import (Procs, start_redis, info, redis_cpu, cmd_delta, ping_rate, run_wrk,
                      wait_http_ok, proc_status, free_port, wait_until, tail, REDIS_OVERRIDES)
from helpers import PYTHON, resp_cmd

EVENTS_KEY = "txm{0}:events"


def events_bytes(port):
    """MEMORY USAGE of the outbox stream, every node counted (0 when absent)."""
    v = resp_cmd(port, "MEMORY", "USAGE", EVENTS_KEY, "SAMPLES", "0", timeout=30)
    return int(v) if v is not None else 0

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "txm_bench_" + os.urandom(8).hex()


def log(msg):
    print("bench: " + msg, flush=True)


def wait_port(port, timeout, proc=None):
    def up():
        if proc is not None and proc.poll() is not None:
            raise SystemExit("bench: %s exited: %s" % (proc.bench_name, tail(proc.bench_log, 20)))
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    wait_until(up, timeout, "port %d listening" % port)


def pct(values, q):
    """The q-quantile (0..1) of values, nearest rank."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(math.ceil(q * len(s))) - 1))]


def slope(points):
    """Least-squares slope of [(x, y)]; 0 with fewer than 3 points."""
    if len(points) < 3:
        return 0.0
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var if var else 0.0


def cpu_seconds(pid):
    """utime + stime of pid, in seconds (0 when gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


# --- the pieces -------------------------------------------------------------------
def sink_cmd(port):
    cmd = ["smtp-sink", "-c", "127.0.0.1:%d" % port, "1024"]
    if os.geteuid() == 0:       # smtp-sink refuses to run as root without -u
        cmd[1:1] = ["-u", "nobody"]
    return cmd


def sink_count(path):
    """The last "mesg=N" smtp-sink -c wrote (its running count of messages)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200))
            m = re.findall(rb"mesg=(\d+)", f.read())
        return int(m[-1]) if m else 0
    except OSError:
        return 0


def start_sink(procs, name):
    port = free_port()
    out = os.path.join(procs.dir, name + ".count")
    with open(out, "wb") as f:
        p = procs.start(name, sink_cmd(port), stdout=f)
    wait_port(port, 10, p)
    return p, port, out


def start_whrecv(procs, a, secret, name="whrecv", log_path=None):
    port = free_port()
    cmd = [a.whrecv, "--port", str(port), "--secret", secret, "--threads", "2"]
    if log_path:
        cmd += ["--log", log_path]
    p = procs.start(name, cmd)
    wait_http_ok(port, "/stats", 10, p)
    return p, port


def wh_stats(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/stats")
        return json.loads(c.getresponse().read())
    finally:
        c.close()


def start_txmail(procs, a, name, rport, relay, wh_port=None, secret=None, role="run", extra=None):
    """`txmail <role>` on Redis rport; returns (proc, port): the API port,
    or for role "worker" its admin port (its /readyz; never the shared
    default 9090)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXMAIL_")}
    env.update({"TXMAIL_REDIS_URL": "redis://127.0.0.1:%d" % rport,
                "TXMAIL_LISTEN": "127.0.0.1:%d" % port, "TXMAIL_API_KEYS": KEY,
                "TXMAIL_RATE_LIMIT": "0", "TXMAIL_LOG_LEVEL": "warn",
                "TXMAIL_HELO_NAME": "bench.txmail.local"})
    # BENCH_TXMAIL_X=v in the environment: txmail gets TXMAIL_X=v (to compare settings)
    env.update({k[6:]: v for k, v in os.environ.items() if k.startswith("BENCH_TXMAIL_")})
    if relay:
        env["TXMAIL_RELAY"] = relay
    env.update(extra or {})
    if wh_port:
        env.update({"TXMAIL_WEBHOOK_URL": "http://127.0.0.1:%d/webhook" % wh_port,
                    "TXMAIL_WEBHOOK_SECRET": secret, "TXMAIL_WEBHOOK_ALLOW_PRIVATE": "1"})
    if role == "worker":
        env["TXMAIL_ADMIN_LISTEN"] = env.pop("TXMAIL_LISTEN")
    p = procs.start(name, [a.bin, role], env=env)
    wait_http_ok(port, "/readyz", 60, p)
    return p, port


def new_secret():
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


# --- phases -----------------------------------------------------------------------
def phase_reference(a, procs):
    sink, port, out = start_sink(procs, "ref-sink")
    n = a.ref_messages
    cmd = ["smtp-source", "-d", "-s", "64", "-m", str(n), "-l", "1024",
           "-f", "bench@example.com", "-t", "user@example.com", "127.0.0.1:%d" % port]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit("bench: smtp-source failed: " + r.stderr[-2000:])
    wait_until(lambda: sink_count(out) >= n, 60, "%d messages at the reference sink" % n)
    rate = n / (time.monotonic() - t0)
    procs.stop(sink)
    log("reference: smtp-source -> smtp-sink %d messages, %.0f msg/s" % (n, rate))
    return {"rate": rate, "n": n, "cmd": " ".join(cmd[:-1]) + " HOST:PORT"}


def phase_receiver(a, procs):
    """whrecv's own rate (wrk, unsigned, unique ids): the e2e figures mean
    something only while this is well above them."""
    port = free_port()
    p = procs.start("whrecv-load", [a.whrecv, "--port", str(port), "--threads", "2"])
    wait_http_ok(port, "/stats", 10, p)
    cmd = ["wrk", "-t2", "-c%d" % a.conns, "-d3s", "-s", os.path.join(HERE, "whload.lua"),
           "http://127.0.0.1:%d/webhook" % port]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    st = wh_stats(port)
    procs.stop(p)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    rate = float(m.group(1)) if m else 0.0
    if st["unique"] != st["received"] or st["duplicates"]:
        raise SystemExit("bench: whrecv counted %s for unique requests" % st)
    log("receiver: whrecv takes %.0f POST/s (wrk, %d connections)" % (rate, a.conns))
    return {"rate": rate, "received": st["received"]}


def phase_e2e(a, procs, partitions=1, n=None):
    rport, over = start_redis(procs, "redis-e2e", a.redis_set)
    sink, sport, sink_out = start_sink(procs, "sink")
    secret = new_secret()
    tag = "" if partitions == 1 else "-p%d" % partitions     # each run its own files (wrk's done marks)
    whlog = os.path.join(procs.dir, "e2e%s-webhooks.txt" % tag)
    idfile = os.path.join(procs.dir, "e2e%s-accepted.txt" % tag)
    wh, whp = start_whrecv(procs, a, secret, log_path=whlog)
    tx, api = start_txmail(procs, a, "txmail-e2e", rport, "smtp://127.0.0.1:%d?tls=none" % sport, whp, secret,
                           extra={"TXMAIL_PARTITIONS": str(partitions)})
    n = n or a.messages
    before = info(rport)
    ev0 = events_bytes(rport)
    pids = {"redis-server": None, "txmail": tx.pid, "smtp-sink": sink.pid, "whrecv": wh.pid}
    for p in procs.procs:
        if p.bench_name == "redis-e2e":
            pids["redis-server"] = p.pid
    cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
    samples = []            # (t since first POST, at sink, webhooks received)
    stop = threading.Event()
    t0 = time.time()

    def sampler():
        while not stop.wait(1.0):
            try:
                s = wh_stats(whp)
            except OSError:
                continue
            samples.append((time.time() - t0, sink_count(sink_out), s["delivered"]))
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    log("e2e: %d messages, wrk 64 connections -> txmail run (TXMAIL_PARTITIONS=%d) -> smtp-sink -> whrecv" %
        (n, partitions))
    w = run_wrk(api, KEY, conns=a.conns, seconds=max(120, n // 100), limit=n, idfile=idfile)
    t_accepted = time.time()
    acc = w["accepted"]
    if w["refused"] or w["posts"] != acc:
        log("e2e: %d POSTs, %d refused, %d unanswered %s" % (w["posts"], w["refused"],
                                                          w["posts"] - acc - w["refused"], w["errors"]))
    log("e2e: %d accepted in %.1f s (%.0f/s), waiting for the webhooks" % (acc, w["seconds"], w["rate"]))
    state = {"last": -1, "since": time.monotonic()}

    def drained():
        s = wh_stats(whp)
        if s["delivered"] >= acc:
            return True
        if s["delivered"] != state["last"]:
            state["last"], state["since"] = s["delivered"], time.monotonic()
        elif time.monotonic() - state["since"] > 30:
            return True        # no progress for 30 s: count what is missing as lost
        return False
    deadline = time.monotonic() + a.drain_seconds
    timed_out = False
    while not drained():
        if time.monotonic() > deadline:
            log("e2e: %d s after the last POST webhooks are still missing: counted as lost" % a.drain_seconds)
            timed_out = True
            break
        time.sleep(0.2)
    stop.set()
    th.join(5)
    st = wh_stats(whp)
    t_end = st["last_ns"] / 1e9
    at_sink = sink_count(sink_out)
    samples.append((time.time() - t0, at_sink, st["delivered"]))
    cpu1 = {k: cpu_seconds(v) for k, v in pids.items()}
    after_run = info(rport)
    procs.stop(tx, timeout=40)
    after = info(rport)
    ev1 = events_bytes(rport)
    elapsed = t_end - t0
    cpu = {k: (cpu1[k] - cpu0[k]) / elapsed * 100 for k in pids}
    # the backlog while the load ran, and after it
    load = [(t, s - wh_) for (t, s, wh_) in samples if t <= t_accepted - t0]
    lag = [s - wh_ for (_, s, wh_) in samples]
    t_sink_done = next((t for (t, s, _) in samples if s >= acc), None)
    procs.stop(sink)
    procs.stop(wh)          # flushes its log
    with open(idfile) as f:
        ids = set(f.read().split())
    notified = set()
    with open(whlog) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4 and parts[2] == "message.delivered":
                notified.add(parts[3])
    cmds = cmd_delta(before, after_run)
    calls = sum(c for c, _ in cmds.values())
    top = sorted(cmds.items(), key=lambda kv: -kv[1][0])[:6]
    r = {
        "n": n, "accepted": acc, "refused": w["refused"], "wrk": w,
        # 202s wrk never read (answers in flight when it stopped) reach the sink too
        "rate": len(notified) / elapsed if elapsed > 0 else 0.0,   # messages through every stage
        "sink_rate": (min(at_sink, acc) / t_sink_done) if t_sink_done else None,
        "lost": len(ids - notified), "unseen": len(notified - ids), "dup_webhooks": st["duplicates"],
        "timed_out": timed_out,
        "dup_sink": max(0, at_sink - len(ids | notified)), "bad_webhooks": st["bad"],
        "max_lag": max(lag) if lag else 0, "lag_slope": slope(load),
        "tail_s": (t_end - t0 - t_sink_done) if t_sink_done and not timed_out else None,
        "samples": samples, "cpu": cpu,
        "redis_cpu_us": (redis_cpu(after_run) - redis_cpu(before)) * 1e6 / max(1, acc),
        "calls": calls / max(1, acc),
        "top": [(c, v[0] / max(1, acc), v[1] / max(1, v[0])) for c, v in top],
        "aof_bytes": (after_run.get("aof_current_size", 0) - before.get("aof_current_size", 0)) / max(1, acc),
        "aof_rewrites": int(after_run.get("aof_rewrites", 0) - before.get("aof_rewrites", 0)),
        "rdb_saves": int(after_run.get("rdb_saves", 0) - before.get("rdb_saves", 0)),
        "mem_per_msg": (after["used_memory"] - before["used_memory"]) / max(1, acc),
        # the outbox stream's share: entries kept TXMAIL_EVENTS_RETENTION (24 h) for
        # SSE resume, not for lookup (GET /v1/messages/{id} never reads them)
        "mem_events": (ev1 - ev0) / max(1, acc),
        "redis_over": over,
    }
    log("e2e: %.0f msg/s end to end, lost %d, duplicates %d+%d, max backlog %d" %
        (r["rate"], r["lost"], r["dup_webhooks"], r["dup_sink"], r["max_lag"]))
    return r


def phase_accept(a, procs):
    rport, _ = start_redis(procs, "redis-accept", a.redis_set)
    tx, api = start_txmail(procs, a, "txmail-api", rport, None, role="api")
    log("accept: txmail api + Redis, wrk %d connections for %d s" % (a.conns, a.accept_seconds))
    w = run_wrk(api, KEY, conns=a.conns, seconds=a.accept_seconds)
    if w["refused"]:
        log("accept: %d refused %s" % (w["refused"], w["errors"]))
    procs.stop(tx)
    ping = ping_rate(rport, a.conns, max(100000, int(w["rate"] * a.accept_seconds)))
    log("accept: %.0f/s, p99 %.2f ms; redis-benchmark PING %.0f/s" % (w["rate"], w["p99"], ping))
    return {"wrk": w, "ping": ping}


def phase_otp(a, procs):
    rport, _ = start_redis(procs, "redis-otp", a.redis_set)
    pport = free_port()
    rec = os.path.join(procs.dir, "otp-data.txt")
    ready = os.path.join(procs.dir, "otp-peer.ready")
    peer = procs.start("otp-peer", [PYTHON, os.path.join(HERE, "otp_peer.py"), "--port", str(pport),
                                    "--record", rec, "--ready-file", ready])
    wait_until(lambda: os.path.exists(ready) or peer.poll() is not None, 20, "the OTP SMTP peer")
    if peer.poll() is not None:
        raise SystemExit("bench: otp_peer.py exited: " + tail(peer.bench_log, 20))
    secret = new_secret()
    whlog = os.path.join(procs.dir, "otp-webhooks.txt")
    wh, whp = start_whrecv(procs, a, secret, "whrecv-otp", whlog)
    tx, api = start_txmail(procs, a, "txmail-otp", rport, "smtp://127.0.0.1:%d?tls=none" % pport, whp, secret)
    total = int(a.otp_rate * a.otp_seconds) + a.otp_warmup
    log("otp: %d messages at %d/s, priority high, one client" % (total, a.otp_rate))
    c = http.client.HTTPConnection("127.0.0.1", api, timeout=10)
    hdrs = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    sent = {}
    start = time.monotonic() + 0.1
    for seq in range(total):
        delay = start + seq / a.otp_rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)       # the pace of the load, not a wait for a result
        code = "%06d" % ((seq * 7919) % 1000000)
        body = json.dumps({"from": "Bench <bench@example.com>", "to": "otp%d@example.com" % seq,
                           "subject": "Your code is " + code, "priority": "high",
                           "headers": {"X-Bench-Seq": str(seq)},
                           "text": "Your verification code is %s.\n" % code})
        t = time.time_ns()
        c.request("POST", "/v1/messages", body=body, headers=hdrs)
        resp = c.getresponse()
        data = resp.read()
        if resp.status != 202:
            raise SystemExit("bench: otp POST answered %d: %s" % (resp.status, data[:300]))
        sent[seq] = (t, json.loads(data)["id"])
    c.close()

    def done():
        return wh_stats(whp)["delivered"] >= total
    wait_until(done, 60, "the %d OTP webhooks" % total, interval=0.1)
    procs.stop(tx)
    procs.stop(wh)          # flushes its log
    procs.stop(peer)
    data_at, wh_at = {}, {}
    with open(rec) as f:
        for line in f:
            t, seq = line.split()
            if seq.isdigit():
                data_at.setdefault(int(seq), int(t))
    with open(whlog) as f:
        for line in f:
            t, _, typ, mid = line.split()
            if typ == "message.delivered":
                wh_at.setdefault(mid, int(t))
    lat_data, lat_wh = [], []
    for seq, (t, mid) in sent.items():
        if seq < a.otp_warmup:
            continue
        if seq in data_at:
            lat_data.append((data_at[seq] - t) / 1e6)
        if mid in wh_at:
            lat_wh.append((wh_at[mid] - t) / 1e6)
    counted = total - a.otp_warmup

    def dist(v):
        return {"p50": pct(v, .5), "p90": pct(v, .9), "p99": pct(v, .99), "p999": pct(v, .999),
                "max": max(v) if v else float("nan"), "n": len(v)}
    r = {"n": counted, "data": dist(lat_data), "wh": dist(lat_wh)}
    log("otp: DATA p50 %.2f p99 %.2f max %.2f ms; webhook p50 %.2f p99 %.2f max %.2f ms" %
        (r["data"]["p50"], r["data"]["p99"], r["data"]["max"], r["wh"]["p50"], r["wh"]["p99"], r["wh"]["max"]))
    return r


def phase_rss(a, procs):
    rport, _ = start_redis(procs, "redis-rss", a.redis_set)
    dead = free_port()          # nothing listens there: the relay is down
    tx, api = start_txmail(procs, a, "txmail-rss", rport, "smtp://127.0.0.1:%d?tls=none" % dead)
    peak = {"hwm": 0}
    stop = threading.Event()

    def sampler():
        while not stop.wait(0.2):
            s = proc_status(tx.pid)
            peak["hwm"] = max(peak["hwm"], s.get("VmHWM", 0))
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    log("rss: %d messages with the relay down" % a.rss_messages)
    w = run_wrk(api, KEY, conns=a.conns, seconds=max(120, a.rss_messages // 100), limit=a.rss_messages,
                idfile=os.path.join(procs.dir, "rss-accepted.txt"))
    # a few seconds of the workers deferring the backlog, measured
    t_end = time.monotonic() + 5
    while time.monotonic() < t_end and tx.poll() is None:
        time.sleep(0.2)
    stop.set()
    th.join(2)
    s = proc_status(tx.pid)
    hwm = max(peak["hwm"], s.get("VmHWM", 0))
    procs.stop(tx)
    log("rss: %d accepted, VmHWM %.1f MiB" % (w["accepted"], hwm / 1024))
    return {"accepted": w["accepted"], "hwm_mib": hwm / 1024, "rss_mib": s.get("VmRSS", 0) / 1024}


# --- the table ----------------------------------------------------------------------
def fnum(v, fmt="{:,.0f}"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return fmt.format(v)


def met(ok):
    return "-" if ok is None else ("yes" if ok else "**no**")


def build_rows(a, res):
    rows = []
    ref = res.get("reference")
    e = res.get("e2e")
    if e:
        refr = ref["rate"] if ref else None
        ratio = e["rate"] / refr if refr else None
        asked = "" if e["accepted"] >= e["n"] else " of %s asked: wrk's time ran out" % fnum(e["n"])
        rows.append(("end to end with receipts: POST -> smtp-sink -> webhook received, msg/s (%s messages%s)"
                     % (fnum(e["accepted"]), asked),
                     fnum(e["rate"]), fnum(refr) + " (smtp-source -> smtp-sink)" if refr else "-",
                     fnum(ratio, "{:.2f}"), ">= 10,000 and >= 0.50 x ref",
                     met(e["rate"] >= 10000 and ratio is not None and ratio >= 0.5)))
        rows.append(("  delivered at smtp-sink, msg/s", fnum(e["sink_rate"]), fnum(refr) if refr else "-",
                     fnum(e["sink_rate"] / refr if refr and e["sink_rate"] else None, "{:.2f}"), "-", "-"))
        rows.append(("  lost (answered 202, no message.delivered webhook%s)%s" %
                     (" within --drain-seconds %d" % a.drain_seconds if e["timed_out"] else "",
                      " [+%d delivered whose 202 wrk never saw]" % e["unseen"] if e["unseen"] else ""),
                     fnum(e["lost"]), "-", "-", "0", met(e["lost"] == 0)))
        rows.append(("  duplicates (webhook-ids again + extra copies at the sink)",
                     "%d + %d" % (e["dup_webhooks"], e["dup_sink"]), "-", "-", "0",
                     met(e["dup_webhooks"] + e["dup_sink"] == 0)))
        rows.append(("  webhook backlog (delivered, not yet notified), max, messages", fnum(e["max_lag"]), "-",
                     "-", "bounded", "-"))
        grow_ok = e["lag_slope"] <= 0.05 * max(e["rate"], 1)
        rows.append(("  webhook backlog growth during the load, messages/s", fnum(e["lag_slope"], "{:+,.0f}"), "-",
                     fnum(e["lag_slope"] / max(e["rate"], 1), "{:+.3f}") + " x rate", "<= 0.05 x rate (not growing)",
                     met(grow_ok)))
        rows.append(("  last webhook after the last delivery, s", fnum(e["tail_s"], "{:.1f}"), "-", "-", "-", "-"))
        w = e["wrk"]
        rc = res.get("receiver")
        if rc:
            rows.append(("  the webhook receiver alone (whrecv, wrk, unsigned), POST/s", fnum(rc["rate"]),
                         fnum(e["rate"]) + " (e2e msg/s)", fnum(rc["rate"] / e["rate"] if e["rate"] else None, "{:.1f}"),
                         ">= 3 x e2e (not the bottleneck)", met(rc["rate"] >= 3 * e["rate"])))
        rows.append(("accept while delivering, POST/s (p99 %s ms)" % fnum(w["p99"], "{:.1f}"),
                     fnum(w["rate"]), "-", "-", ">= 10,000", met(w["rate"] >= 10000)))
    pe = res.get("parts")
    if pe:
        base = e["rate"] if e else None
        rows.append(("end to end on TXMAIL_PARTITIONS=4 (one Redis), msg/s (%s messages)" % fnum(pe["accepted"]),
                     fnum(pe["rate"]), fnum(base) + " (the e2e above, 1 partition)" if base else "-",
                     fnum(pe["rate"] / base if base else None, "{:.2f}"), ">= 0.90 x 1 partition",
                     met(base is not None and pe["rate"] >= 0.9 * base)))
        rows.append(("  lost + duplicates on 4 partitions", "%d + %d" % (pe["lost"], pe["dup_webhooks"] + pe["dup_sink"]),
                     "-", "-", "0", met(pe["lost"] + pe["dup_webhooks"] + pe["dup_sink"] == 0)))
    acc = res.get("accept")
    if acc:
        w = acc["wrk"]
        rows.append(("accept alone (txmail api + Redis), POST/s, %d connections" % a.conns, fnum(w["rate"]),
                     fnum(acc["ping"]) + " (redis-benchmark PING, unpipelined)",
                     fnum(w["rate"] / acc["ping"] if acc["ping"] else None, "{:.2f}"), ">= 30,000",
                     met(w["rate"] >= 30000)))
        rows.append(("  accept alone p99, ms (p50 %s, p90 %s)" % (fnum(w["p50"], "{:.2f}"), fnum(w["p90"], "{:.2f}")),
                     fnum(w["p99"], "{:.2f}"), "-", "-", "< 10", met(w["p99"] < 10)))
    o = res.get("otp")
    if o:
        for key, what, goals in (("data", "POST -> end of DATA at the SMTP peer", {"p50": 3, "p99": 10}),
                                 ("wh", "POST -> signed webhook received", {"p99": 25})):
            d = o[key]
            for p in ("p50", "p90", "p99", "p999", "max"):
                g = goals.get(p)
                name = ("lone verification code (%d/s, high, %d counted): %s, %s, ms" %
                        (a.otp_rate, d["n"], what, p)) if p == "p50" else "  %s %s, ms" % (what, p)
                rows.append((name, fnum(d[p], "{:.2f}"), "-", "-", "< %d" % g if g else "-",
                             met(d[p] < g) if g else "-"))
    if e:
        rows.append(("Redis CPU per delivered-and-notified message, us (server + children)",
                     fnum(e["redis_cpu_us"], "{:.1f}"), "-", "-", "<= 50", met(e["redis_cpu_us"] <= 50)))
        rows.append(("  Redis commands per message (commandstats, scripts' inner calls included)",
                     fnum(e["calls"], "{:.1f}"), "-", "-", "-", "-"))
        rows.append(("  top commands, calls per message",
                     ", ".join("%s %.2f" % (c.split("|")[0], k) for c, k, _ in e["top"]), "-", "-", "-", "-"))
        rows.append(("  AOF bytes per message (aof_current_size delta%s)" %
                     ("; a rewrite ran, so this is not the bytes written" if e["aof_rewrites"] else ""),
                     fnum(e["aof_bytes"]), "-", "-", "-", "-"))
        rows.append(("  BGREWRITEAOF during the run (aof_rewrites delta)", str(e["aof_rewrites"]), "-", "-", "0",
                     met(e["aof_rewrites"] == 0)))
        rows.append(("  BGSAVE during the run (rdb_saves delta; deploy/redis.conf save rules)", str(e["rdb_saves"]),
                     "-", "-", "-", "-"))
        lookup = e["mem_per_msg"] - e["mem_events"]
        rows.append(("Redis memory kept per delivered message for lookup, bytes (used_memory delta, "
                     "txmail stopped, without the outbox stream)",
                     fnum(lookup), "-", "-", "<= 800", met(lookup <= 800)))
        rows.append(("  the outbox stream's entry per message, bytes (MEMORY USAGE delta; kept 24 h "
                     "for SSE resume)", fnum(e["mem_events"]), "-", "-", "-", "-"))
        rows.append(("  everything Redis kept per message, bytes (used_memory delta)",
                     fnum(e["mem_per_msg"]), "-", "-", "-", "-"))
        rows.append(("CPU during the e2e run, % of one core",
                     ", ".join("%s %.0f" % (k, v) for k, v in e["cpu"].items()), "-", "-", "-", "-"))
    r = res.get("rss")
    if r:
        rows.append(("txmail RSS (VmHWM) with %s queued, relay down, MiB" % fnum(r["accepted"]),
                     fnum(r["hwm_mib"], "{:.1f}"), "-", "-", "< 100", met(r["hwm_mib"] < 100)))
    return rows


def render(rows, header, markdown=False):
    cols = ("figure", "value", "same-run reference", "ratio", "goal", "met")
    if markdown:
        out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
        return "\n".join(header + [""] + out) + "\n"
    w = [max(len(c), *(len(r[i].replace("**", "")) for r in rows)) for i, c in enumerate(cols)]
    line = lambda r: "  ".join(str(x).replace("**", "").ljust(w[i]) for i, x in enumerate(r)).rstrip()
    return "\n".join(header + ["", line(cols), line(["-" * n for n in w])] + [line(r) for r in rows]) + "\n"


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            model = m.group(1) if m else "?"
    except OSError:
        pass
    free = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.rstrip()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    return model, nproc, free, redis_v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/txmail")
    ap.add_argument("--whrecv", default="build/bench/whrecv")
    ap.add_argument("--quick", action="store_true",
                    help="a short run: 20,000 messages, 5 s of accept, 10 s of OTP, 20,000 queued")
    ap.add_argument("--messages", type=int, help="end-to-end messages (default 200,000; --quick 20,000)")
    ap.add_argument("--ref-messages", type=int, help="smtp-source messages (default 50,000; --quick 10,000)")
    ap.add_argument("--conns", type=int, default=64, help="wrk connections (64)")
    ap.add_argument("--accept-seconds", type=int, help="accept-alone load (20 s; --quick 5)")
    ap.add_argument("--otp-rate", type=int, default=100)
    ap.add_argument("--otp-seconds", type=int, help="lone-OTP run (30 s; --quick 10)")
    ap.add_argument("--otp-warmup", type=int, default=20)
    ap.add_argument("--rss-messages", type=int, help="queued with the relay down (100,000; --quick 20,000)")
    ap.add_argument("--drain-seconds", type=int, default=180,
                    help="after the last POST, how long the e2e run waits for missing webhooks (180)")
    ap.add_argument("--parts-messages", type=int,
                    help="end-to-end messages on TXMAIL_PARTITIONS=4 (default 50,000; --quick 10,000)")
    ap.add_argument("--only", default="e2e,parts,accept,otp,rss",
                    help="phases to run (e2e includes the reference; parts: e2e on 4 partitions)")
    ap.add_argument("--redis-set", metavar="'NAME VALUE'", action="append", default=[],
                    help="also change this deploy/redis.conf setting (e.g. 'appendfsync everysec'; "
                         "repeatable; printed with the table)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table as markdown to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    a = ap.parse_args()
    q = a.quick
    a.messages = a.messages or (20000 if q else 200000)
    a.ref_messages = a.ref_messages or (10000 if q else 50000)
    a.parts_messages = a.parts_messages or (10000 if q else 50000)
    a.accept_seconds = a.accept_seconds or (5 if q else 20)
    a.otp_seconds = a.otp_seconds or (10 if q else 30)
    a.rss_messages = a.rss_messages or (20000 if q else 100000)
    a.bin, a.whrecv = os.path.abspath(a.bin), os.path.abspath(a.whrecv)
    for b in (a.bin, a.whrecv):
        if not os.access(b, os.X_OK):
            raise SystemExit("bench: %s missing (make build %s)" % (b, "build/bench/whrecv"))
    phases = set(a.only.split(","))
    procs = Procs(prefix="txm-suite-", keep=a.keep)
    procs.install_handlers()
    model, nproc, free, redis_v = machine()
    cmdline = "make bench" + (" BENCH_ARGS=%s" % shlex.quote(" ".join(sys.argv[1:][4:])) if sys.argv[5:] else "")
    load0 = os.getloadavg()
    t_start = time.monotonic()
    log("machine: %s, nproc %s, %s" % (model, nproc, redis_v))
    print(free, flush=True)
    log("load average at the start: %.2f %.2f %.2f" % load0)
    log("temporary directory: %s" % procs.dir)
    res = {}
    interrupted = None
    try:
        if "e2e" in phases:
            res["reference"] = phase_reference(a, procs)
            res["receiver"] = phase_receiver(a, procs)
            res["e2e"] = phase_e2e(a, procs)
        if "parts" in phases:
            res["parts"] = phase_e2e(a, procs, partitions=4, n=a.parts_messages)
        if "accept" in phases:
            res["accept"] = phase_accept(a, procs)
        if "otp" in phases:
            res["otp"] = phase_otp(a, procs)
        if "rss" in phases:
            res["rss"] = phase_rss(a, procs)
    except SystemExit as e:
        interrupted = e         # the phases done so far are still shown
    finally:
        procs.cleanup()
    if interrupted is not None and not res:
        raise interrupted
    load1 = os.getloadavg()
    rows = build_rows(a, res)
    over = ", ".join(REDIS_OVERRIDES)
    header = [
        "command: `%s` (suite.py %s)" % (cmdline, " ".join(shlex.quote(x) for x in sys.argv[1:])),
        "machine: %s; nproc %s; %s; %s" % (model, nproc, platform.platform(), redis_v),
        "memory (free -h): " + " ".join(free.splitlines()[1].split()[1:4]) + " (total used free)"
        if len(free.splitlines()) > 1 else "memory: ?",
        "redis-server: deploy/redis.conf as shipped except %s (127.0.0.1, a random port, a temporary dir, foreground)%s"
        % (over, "; and, asked for: " + ", ".join(a.redis_set) if a.redis_set else ""),
        "smtp reference: %s" % (res["reference"]["cmd"] if "reference" in res else "-"),
        "load average: %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end (shared box: wall-clock figures are noisy)"
        % (load0 + load1),
        "run time: %.0f s%s" % (time.monotonic() - t_start, "; --quick: fewer messages than the goals are stated for" if q else ""),
    ]
    if interrupted is not None:
        header.append("INCOMPLETE: %s; only the phases done before are shown" % interrupted)
    print()
    print(render(rows, header), flush=True)
    if "e2e" in res:
        e = res["e2e"]
        print("backlog samples (s since the first POST: at sink, webhooks received, backlog):")
        print("  " + "; ".join("%.0f: %d %d %d" % (t, s, w, s - w) for t, s, w in e["samples"]))
        print("top commands (calls per message, usec per call): " +
              ", ".join("%s %.2f %.1f" % (c, k, u) for c, k, u in e["top"]))
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(render(rows, ["- " + h for h in header], markdown=True))
        log("markdown table written to " + a.markdown)
    return 1 if interrupted is not None else 0


if __name__ == "__main__":
    sys.exit(main())
