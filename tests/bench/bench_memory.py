#!/usr/bin/python3
"""bench_memory.py - Redis memory kept per delivered message.

Starts a redis-server with the shipped deploy/redis.conf (only port, bind,
dir, log file and daemonize overridden) and `txmail run --dev` on it (the dev
sink delivers), warms up with W messages, then sends N messages with
unique ~1 KB verification-code bodies, waits until every one is delivered
and nothing is left in flight, and prints:
  used_memory delta / N             everything Redis keeps per message, and
                                    that without the outbox's growth (MEMORY
                                    USAGE of `events` before and after): what
                                    is kept for lookup
  per key kind (MEMORY USAGE of a sample, and the encoding): the message
  hash msg:<id>, its timeline msg:<id>:tl, its content msg:<id>:mime (gone
  with TXMAIL_CONTENT_RETENTION=0), and the outbox `events` stream per
  entry (kept TXMAIL_EVENTS_RETENTION, 24 h, for SSE resume)
The figure depends on the build, not on the load: compare two builds with
--bin. No timing is measured.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rcmd(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), "--no-raw"] + [str(a) for a in args],
                         capture_output=True, text=True, timeout=30).stdout.strip()
    return out


def rraw(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), "--raw"] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=30).stdout.strip()


def info_int(port, field):
    for line in rraw(port, "INFO", "memory").splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":", 1)[1])
    raise SystemExit("no %s in INFO" % field)


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise SystemExit("bench_memory: timed out waiting for " + what)


def body(i):
    code = "%06d" % ((i * 7919 + 12345) % 1000000)
    text = ("Your verification code is %s (request %d).\n" % (code, i)) + \
        ("This code expires in 10 minutes. If you did not ask for it, ignore this mail. " * 11)
    return json.dumps({"from": "Acme <noreply@acme.example>", "to": "user%d@example.com" % i,
                       "subject": "Your Acme code", "text": text[:1024],
                       "metadata": {"user_id": str(100000 + i)}, "tags": ["otp"]}).encode()


def post_range(port, key, lo, hi, conc=4):
    hdrs = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    errors = []

    def client(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(lo + k, hi, conc):
            c.request("POST", "/v1/messages", body=body(i), headers=hdrs)
            r = c.getresponse()
            r.read()
            if r.status != 202:
                errors.append(r.status)
        c.close()
    ts = [threading.Thread(target=client, args=(k,)) for k in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit("bench_memory: %d sends refused: %r" % (len(errors), errors[:5]))


def settled(port, mail, n):
    """n messages in the sink and nothing pending in either group."""
    try:
        have = sum(1 for x in os.listdir(mail) if x.endswith(".eml"))
    except FileNotFoundError:
        have = 0
    if have < n:
        return False
    for stream, group in (("txm{0}:ready", "workers"), ("txm{0}:events", "webhooks")):
        p = rraw(port, "XPENDING", stream, group).splitlines()
        if not p or p[0] != "0":
            return False
    return int(rraw(port, "ZCARD", "txm{0}:due") or 0) == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "txmail"))
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("-w", type=int, default=200, help="warm-up messages, not counted")
    ap.add_argument("--retention", default=None, help="TXMAIL_CONTENT_RETENTION (unset: the default)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="txm-mem-")
    rport, api, sinkp = free_port(), free_port(), free_port()
    rlog = os.path.join(tmp, "redis.log")
    conf = os.path.join(tmp, "redis.conf")
    with open(os.path.join(REPO, "deploy", "redis.conf")) as f, open(conf, "w") as g:
        # its "dir /data" must exist when the file is read, before --dir overrides it
        g.write("".join(x for x in f if not x.startswith("dir ")))
    redis = subprocess.Popen(["redis-server", conf,
                              "--port", str(rport), "--bind", "127.0.0.1", "--dir", tmp,
                              "--daemonize", "no", "--logfile", rlog, "--protected-mode", "no"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    proc = None
    try:
        wait_for(lambda: rraw(rport, "PING") == "PONG", 10, "redis-server")
        env = dict(os.environ, TXMAIL_DATA_DIR=tmp, TXMAIL_LISTEN="127.0.0.1:%d" % api,
                   TXMAIL_SINK_LISTEN="127.0.0.1:%d" % sinkp, TXMAIL_LOG_LEVEL="warn",
                   TXMAIL_RATE_LIMIT="0", TXMAIL_REDIS_URL="redis://127.0.0.1:%d" % rport)
        if a.retention is not None:
            env["TXMAIL_CONTENT_RETENTION"] = a.retention
        proc = subprocess.Popen([a.bin, "run", "--dev"], env=env, stdout=subprocess.PIPE,
                                stderr=open(os.path.join(tmp, "txmail.log"), "w"), text=True)
        key = None
        end = time.monotonic() + 20
        while time.monotonic() < end:
            line = proc.stdout.readline()
            if not line:
                break
            if "API key:" in line:
                key = line.split("API key:")[1].strip()
            if line.startswith("curl"):
                break
        if key is None:
            raise SystemExit("bench_memory: txmail did not start; see " + tmp)
        mail = os.path.join(tmp, "mail")
        post_range(api, key, 0, a.w)
        wait_for(lambda: settled(rport, mail, a.w), 120, "the warm-up")
        m0 = info_int(rport, "used_memory")
        k0 = int(rraw(rport, "DBSIZE"))
        e0 = int(rraw(rport, "MEMORY", "USAGE", "txm{0}:events", "SAMPLES", "0") or 0)
        post_range(api, key, a.w, a.w + a.n)
        wait_for(lambda: settled(rport, mail, a.w + a.n), 300, "%d messages delivered" % a.n)
        m1 = info_int(rport, "used_memory")
        k1 = int(rraw(rport, "DBSIZE"))
        e1 = int(rraw(rport, "MEMORY", "USAGE", "txm{0}:events", "SAMPLES", "0") or 0)
        sample = None
        for k in rraw(rport, "SCAN", "0", "MATCH", "txm{0}:msg:*", "COUNT", "1000").splitlines()[1:]:
            if k.count(":") == 2:
                sample = k
                break
        print("binary          %s" % a.bin)
        print("messages        %d (after %d warm-up), unique ~1 KB bodies, deploy/redis.conf" % (a.n, a.w))
        print("used_memory     %+d bytes = %.0f bytes per delivered message" % (m1 - m0, (m1 - m0) / a.n))
        print("  of which the outbox (events, kept 24 h for SSE resume): %.0f; kept for lookup: %.0f"
              % ((e1 - e0) / a.n, (m1 - m0 - (e1 - e0)) / a.n))
        print("keys            %+d = %.2f per message" % (k1 - k0, (k1 - k0) / a.n))
        if sample:
            for k in (sample, sample + ":tl", sample + ":mime"):
                usage = rraw(rport, "MEMORY", "USAGE", k, "SAMPLES", "0")
                enc = rraw(rport, "OBJECT", "ENCODING", k)
                print("  %-44s %6s bytes  %s" % (k.replace(sample, "msg:<id>"), usage or "gone", enc or ""))
            print("  msg:<id> fields %s" % rraw(rport, "HLEN", sample))
            if os.environ.get("BENCH_DUMP"):
                print(rraw(rport, "HGETALL", sample))
                print(rraw(rport, "LRANGE", sample + ":tl", 0, -1))
        xl = int(rraw(rport, "XLEN", "txm{0}:events"))
        ev = int(rraw(rport, "MEMORY", "USAGE", "txm{0}:events", "SAMPLES", "0") or 0)
        print("  events stream: %d entries, %d bytes = %.0f per entry (trimmed after TXMAIL_EVENTS_RETENTION)"
              % (xl, ev, ev / max(xl, 1)))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.terminate()
        try:
            redis.wait(timeout=20)
        except subprocess.TimeoutExpired:
            redis.kill()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
