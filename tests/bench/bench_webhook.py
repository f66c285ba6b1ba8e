#!/usr/bin/python3
"""bench_webhook.py - what one delivered webhook costs txmail: instructions
of the dispatcher thread and of the whole process, Redis commands, and TCP
connections opened to the receiver, per message.delivered webhook.

Starts its own redis-server (deploy/redis.conf), Postfix's smtp-sink, the
bench's webhook receiver (build/bench/whrecv, signed) and `txmail run`
under valgrind's callgrind (--separate-threads=yes), POSTs a warm-up of
N/4 messages, waits until whrecv has their webhooks, zeroes the counters,
POSTs N more and waits for their N webhooks; then prints per delivered
webhook:
  wh_thread Ir   instructions of the dispatcher thread (the callgrind part
                 whose thread runs wh_thread)
  process Ir     instructions of every thread of txmail (accept, delivery,
                 webhook: the whole message)
  redis cmds     Redis commands (INFO commandstats delta), and per command
  connects       TCP connections whrecv accepted during the N (keep-alive
                 reuse makes this a handful, not N)
Instruction counts do not depend on the machine's load: compare two builds
with one run each (--bin). No timing is measured.

--native runs txmail without valgrind instead and prints, for the
dispatcher thread (found with gdb after the warm-up), its CPU time (user +
system, from /proc: kernel time in send/recv/poll included, so noisy on a
loaded box) and its system calls (perf stat on the raw_syscalls
tracepoint, by kind) per delivered webhook, with the same Redis and
connection counts.

  bench_webhook.py --bin build/txmail --whrecv build/bench/whrecv [-n 2000] [--native]
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402
import suite  # noqa: E402


def post(port, n, conc, tag):
    hdrs = {"Authorization": "Bearer " + suite.KEY, "Content-Type": "application/json"}
    per = [n // conc + (1 if i < n % conc else 0) for i in range(conc)]
    errors = []

    def client(ci, k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for j in range(k):
            body = json.dumps({"from": "Bench <bench@example.com>", "to": "user@example.com",
                               "subject": "Your code is %s-%d-%d" % (tag, ci, j),
                               "text": "Your verification code is 123456.\n" * 4})
            c.request("POST", "/v1/messages", body=body, headers=hdrs)
            r = c.getresponse()
            r.read()
            if r.status != 202:
                errors.append(r.status)
        c.close()
    ts = [threading.Thread(target=client, args=(i, k)) for i, k in enumerate(per)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit("bench: %d POSTs refused: %s" % (len(errors), errors[:5]))


SYSCALLS = ("sendto", "recvfrom", "poll", "ppoll", "write", "read", "epoll_wait", "epoll_ctl", "futex",
            "socket", "connect", "close", "getsockopt", "setsockopt", "getsockname", "getpeername")


def dispatcher_tid(pid):
    """The LWP whose stack has wh_thread (gdb attaches for a moment)."""
    out = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                         capture_output=True, text=True, timeout=120).stdout
    lwp = None
    for line in out.splitlines():
        m = re.match(r"Thread \d+ \(.*LWP (\d+)\)", line)
        if m:
            lwp = int(m.group(1))
        elif " wh_thread " in line and lwp:
            return lwp
    raise SystemExit("bench: no thread runs wh_thread:\n" + out[-3000:])


def thread_cpu(pid, tid):
    with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/txmail")
    ap.add_argument("--whrecv", default="build/bench/whrecv")
    ap.add_argument("-n", type=int, default=2000, help="measured messages (default 2000)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--native", action="store_true", help="no valgrind: thread CPU and syscalls")
    ap.add_argument("--wrk", action="store_true",
                    help="POST the measured messages with wrk (64 connections, unique.lua) at full rate")
    ap.add_argument("--strace", metavar="FILE", help="with --native: also strace the dispatcher to FILE")
    a = ap.parse_args()
    a.bin, a.whrecv = os.path.abspath(a.bin), os.path.abspath(a.whrecv)
    procs = benchlib.Procs("txmail-bench-wh-", keep=a.keep)
    procs.install_handlers()
    rport, _ = benchlib.start_redis(procs, "redis")
    sink, sport, _ = suite.start_sink(procs, "sink")
    secret = suite.new_secret()
    wh, whp = suite.start_whrecv(procs, a, secret)
    api = benchlib.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXMAIL_")}
    env.update({"TXMAIL_REDIS_URL": "redis://127.0.0.1:%d" % rport,
                "TXMAIL_LISTEN": "127.0.0.1:%d" % api, "TXMAIL_API_KEYS": suite.KEY,
                "TXMAIL_RATE_LIMIT": "0", "TXMAIL_LOG_LEVEL": "warn",
                "TXMAIL_HELO_NAME": "bench.txmail.local",
                "TXMAIL_RELAY": "smtp://127.0.0.1:%d?tls=none" % sport,
                "TXMAIL_WEBHOOK_URL": "http://127.0.0.1:%d/webhook" % whp,
                "TXMAIL_WEBHOOK_SECRET": secret, "TXMAIL_WEBHOOK_ALLOW_PRIVATE": "1"})
    cg = os.path.join(procs.dir, "cg")
    cmd = [a.bin, "run"]
    if not a.native:
        cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
               "--callgrind-out-file=" + cg + ".%p"] + cmd
    tx = procs.start("txmail", cmd, env=env)
    benchlib.wait_http_ok(api, "/readyz", 180, tx)

    def delivered():
        return suite.wh_stats(whp)["delivered"]

    def ctl(*args):
        subprocess.run(["callgrind_control", *args, str(tx.pid)], check=True,
                       capture_output=True, timeout=120)
    warm = max(1, a.n // 4)
    post(api, warm, 4, "w")
    benchlib.wait_until(lambda: delivered() >= warm, 600, "the warm-up webhooks")
    if a.native:
        tid = dispatcher_tid(tx.pid)
        ev = ",".join(["raw_syscalls:sys_enter"] + ["syscalls:sys_enter_" + c for c in SYSCALLS])
        pst = subprocess.Popen(["perf", "stat", "-x,", "-e", ev, "-t", str(tid)],
                               stderr=subprocess.PIPE, text=True)
        cpu0 = thread_cpu(tx.pid, tid)
        if a.strace:
            strace = subprocess.Popen(["strace", "-tt", "-p", str(tid), "-o", a.strace],
                                      stderr=subprocess.DEVNULL)
    else:
        ctl("-z")
    st0, i0 = suite.wh_stats(whp), benchlib.info(rport)
    if a.wrk:
        w = benchlib.run_wrk(api, suite.KEY, conns=64, seconds=120, limit=a.n,
                             idfile=os.path.join(procs.dir, "ids.txt"))
        print("bench_webhook: wrk accepted %d (%.0f/s)" % (w["accepted"], w["rate"]))
        a.n = w["accepted"]
    else:
        post(api, a.n, 4, "m")
    benchlib.wait_until(lambda: delivered() >= warm + a.n, 900, "the webhooks")
    st1, i1 = suite.wh_stats(whp), benchlib.info(rport)
    n = st1["delivered"] - st0["delivered"]
    if a.native:
        cpu1 = thread_cpu(tx.pid, tid)
        if a.strace:
            strace.send_signal(signal.SIGINT)
            strace.wait(timeout=30)
        pst.send_signal(signal.SIGINT)
        _, err = pst.communicate(timeout=30)
        counts = {}
        for line in err.splitlines():
            parts = line.split(",")
            if len(parts) > 2 and parts[0].strip().isdigit():
                counts[parts[2].split(":")[-1].replace("sys_enter_", "")] = int(parts[0])
        print("bench_webhook --native: %d webhooks delivered (received %d, duplicates %d, bad %d)" % (
            n, st1["received"] - st0["received"], st1["duplicates"] - st0["duplicates"],
            st1["bad"] - st0["bad"]))
        print("  dispatcher CPU per webhook  %10.1f us (user+sys)" % ((cpu1 - cpu0) * 1e6 / n))
        print("  dispatcher syscalls per webhook %8.2f" % (counts.get("sys_enter", 0) / n))
        for c in SYSCALLS:
            if counts.get(c):
                print("    %-22s %8.2f" % (c, counts[c] / n))
    else:
        ctl("-d")
    cmds = benchlib.cmd_delta(i0, i1)
    if not a.native:
        callgrind_report(procs.dir, tx.pid, n, st0, st1)
    print("  redis commands per message %12.2f" % (sum(c for c, _ in cmds.values()) / n))
    for c, (calls, _) in sorted(cmds.items(), key=lambda kv: -kv[1][0]):
        print("    %-22s %8.2f" % (c, calls / n))
    print("  connections opened         %12d" % (st1["connections"] - st0["connections"]))
    procs.stop(tx, timeout=60)


def callgrind_report(d, pid, n, st0, st1):
    total, whir = 0, None
    for name in sorted(os.listdir(d)):
        if not re.fullmatch(r"cg\.%d\.1-\d+" % pid, name):
            continue
        with open(os.path.join(d, name)) as f:
            text = f.read()
        m = re.search(r"^(?:totals|summary):\s+(\d+)", text, re.M)
        ir = int(m.group(1)) if m else 0
        total += ir
        if re.search(r"^c?fn=(?:\(\d+\) )?wh_thread$", text, re.M):
            whir = ir
    if whir is None:
        raise SystemExit("bench: no callgrind part with wh_thread in " + d)
    print("bench_webhook: %d webhooks delivered (received %d, duplicates %d, bad %d)" % (
        n, st1["received"] - st0["received"], st1["duplicates"] - st0["duplicates"],
        st1["bad"] - st0["bad"]))
    print("  wh_thread Ir per webhook   %12.0f" % (whir / n))
    print("  process Ir per message     %12.0f" % (total / n))


if __name__ == "__main__":
    main()
