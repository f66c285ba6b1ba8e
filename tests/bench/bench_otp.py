#!/usr/bin/python3
"""bench_otp.py - the lone verification code: latency, not throughput.

Starts everything itself on loopback, in a temporary directory it removes:
  - its own redis-server with the shipped deploy/redis.conf (copied, with
    port, bind and dir overridden; so AOF with appendfsync always);
  - a real SMTP peer (aiosmtpd, a process of its own) that notes the
    CLOCK_MONOTONIC time at which the end of DATA of each message arrived;
  - a webhook receiver (a process of its own, HTTP/1.1 keep-alive) that
    notes when each signed message.delivered event arrived;
  - `txmail run` relaying to that peer, posting its webhooks to that
    receiver.
Then it POSTs one message with one recipient and "priority": "high" at a
steady --rate per second for --seconds (after a short warm-up that is not
counted), each with a unique subject, and prints the percentiles of
  POST -> end of DATA at the peer        (data_ms)
  POST -> its message.delivered webhook  (webhook_ms)
measured from just before the request is written. The clock is
CLOCK_MONOTONIC in every process (one machine). Sends follow a fixed
schedule (open loop: a slow answer does not delay the next send; four
keep-alive connections take the slots in turn).

  bench_otp.py [--bin build/txmail] [--seconds 20] [--rate 100] [--json PATH]
               [--silent-endpoint] [--appendfsync always|everysec|no] [--keep]

--json PATH writes {"n": N, "data_ms": {"p50", "p90", "p99", "p999",
"max"}, "webhook_ms": {...}, "accept_ms": {...}, "redis_fsync_ms": {...}}
(accept_ms: POST -> 202; redis_fsync_ms: from Redis's latency monitor,
in how many seconds an AOF fsync took 1 ms or more and the worst one of
each such second: what the durable store adds, see appendfsync below).
--silent-endpoint also registers an endpoint that never answers, so
webhook requests are always in flight (a stuck customer endpoint beside
the one measured). --appendfsync overrides the shipped setting, for
diagnosis only (how much of a figure is fsync). BENCH_OTP_LOG_LEVEL sets
txmail's log level (with --keep the log stays, for a per-stage timeline).
Nothing is asserted: the machine may be shared and wall-clock figures are
noisy (make bench reads --json).
"""
import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KEY = "otpbenchkey0123456789"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"   # base64 of 24 bytes
WARMUP = 20
CONNS = 4


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


# --- the peers (run as child processes of this script) -----------------------

def serve_smtp(port_file, out_file):
    """aiosmtpd on a free port; one line "<mono_ns> <token>" per end of DATA."""
    from aiosmtpd.smtp import SMTP

    out = open(out_file, "w", buffering=1)
    tok = re.compile(rb"otp-(\d+)")

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            session.host_name = hostname
            # a relay such as Postfix offers PIPELINING; txmail uses it when offered
            return responses[:-1] + ["250-PIPELINING", responses[-1]]

        async def handle_DATA(self, server, session, envelope):
            t = now_ns()
            m = tok.search(envelope.original_content or envelope.content or b"")
            out.write(f"{t} {m.group(1).decode() if m else '-'}\n")
            return "250 2.0.0 OK"

    async def main():
        loop = asyncio.get_running_loop()
        handler = Handler()
        srv = await loop.create_server(lambda: SMTP(handler, enable_SMTPUTF8=True),
                                       host="127.0.0.1", port=0)
        port = srv.sockets[0].getsockname()[1]
        with open(port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.rename(port_file + ".tmp", port_file)
        stop = asyncio.Event()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stop.set)
        await stop.wait()
        srv.close()

    asyncio.run(main())


def serve_webhook(port_file, out_file):
    """A small asyncio HTTP/1.1 server: 204 to every POST, one line
    "<mono_ns> <message_id>" per message.delivered event with a signature."""
    out = open(out_file, "w", buffering=1)

    async def conn(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                t = now_ns()
                lines = head.decode("latin-1").split("\r\n")
                hdrs = {}
                for ln in lines[1:]:
                    if ":" in ln:
                        k, v = ln.split(":", 1)
                        hdrs[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(hdrs.get("content-length", "0")))
                t = now_ns() if body else t
                try:
                    ev = json.loads(body)
                except ValueError:
                    ev = {}
                if ev.get("type") == "message.delivered" and hdrs.get("webhook-signature"):
                    out.write(f"{t} {ev.get('data', {}).get('message_id', '-')}\n")
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def main():
        srv = await asyncio.start_server(conn, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        with open(port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.rename(port_file + ".tmp", port_file)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stop.set)
        await stop.wait()
        srv.close()

    asyncio.run(main())


# --- the run ---------------------------------------------------------------------

def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise SystemExit(f"bench_otp: timed out waiting for {what}")


def read_port(path, timeout=15):
    wait_for(lambda: os.path.exists(path), timeout, path)
    with open(path) as f:
        return int(f.read())


def read_lines(path):
    try:
        with open(path) as f:
            return [ln.split() for ln in f if ln.strip()]
    except FileNotFoundError:
        return []


def redis_cmd(port, *args):
    """One command on a fresh connection; the reply (str, int, list, None)."""
    out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in
                                             (str(x).encode() for x in args))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(out)
        f = s.makefile("rb")

        def read():
            line = f.readline()
            t, rest = line[:1], line[1:-2]
            if t in (b"+", b"-"):
                return rest.decode()
            if t == b":":
                return int(rest)
            if t == b"$":
                n = int(rest)
                return None if n < 0 else f.read(n + 2)[:-2].decode()
            if t == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            raise SystemExit(f"bench_otp: bad reply from redis: {line!r}")
        return read()


def start_redis(tmp, fsync=None):
    port = free_port()
    with open(os.path.join(ROOT, "deploy", "redis.conf")) as f:
        conf = f.read()
    # replaced where they stand: Redis acts on "dir" as it reads it (chdir)
    over = {"port": str(port), "bind": "127.0.0.1", "dir": tmp}
    conf = re.sub(r"^(port|bind|dir)\b.*$", lambda m: f"{m.group(1)} {over[m.group(1)]}",
                  conf, flags=re.M)
    if fsync:
        conf = re.sub(r"^appendfsync .*$", f"appendfsync {fsync}", conf, flags=re.M)
    path = os.path.join(tmp, "redis.conf")
    with open(path, "w") as f:
        f.write(conf)
    proc = subprocess.Popen(["redis-server", path], stdout=open(os.path.join(tmp, "redis.log"), "w"),
                            stderr=subprocess.STDOUT)

    def up():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=0.2)
            s.sendall(b"PING\r\n")
            ok = s.recv(16).startswith(b"+PONG")
            s.close()
            return ok
        except OSError:
            return False
    wait_for(up, 15, "redis-server")
    return proc, port


def percentiles(xs):
    xs = sorted(xs)

    def pct(p):
        if not xs:
            return None
        k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
        return round(xs[k], 3)
    return {"p50": pct(50), "p90": pct(90), "p99": pct(99), "p999": pct(99.9),
            "max": round(xs[-1], 3) if xs else None}


def post_schedule(api, total, rate, sent):
    """POST total messages at rate/s on a fixed schedule; sent[i] = (mono_ns, msg_id, mono_ns of the 202)."""
    t0 = now_ns() + 50_000_000
    step = int(1e9 / rate)
    errors = []

    def client(k):
        c = http.client.HTTPConnection("127.0.0.1", api, timeout=30)
        hdrs = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
        for i in range(k, total, CONNS):
            body = json.dumps({"from": "Bench <bench@example.com>", "to": "user@example.com",
                               "subject": f"Your code otp-{i}", "priority": "high",
                               "text": f"Your verification code is {i:06d}.\n"})
            at = t0 + i * step
            d = at - now_ns()
            if d > 0:
                time.sleep(d / 1e9)
            t = now_ns()
            try:
                c.request("POST", "/v1/messages", body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException) as e:
                errors.append(str(e))
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", api, timeout=30)
                continue
            if r.status != 202:
                errors.append(f"{r.status} {data[:200]!r}")
                continue
            sent[i] = (t, json.loads(data)["id"], now_ns())
        c.close()

    ts = [threading.Thread(target=client, args=(k,)) for k in range(CONNS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


def silent_endpoint(stop):
    """A listener that accepts and never answers (a stuck customer endpoint):
    its URL; the connections are held until stop is set."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(256)
    lst.settimeout(0.2)
    held = []

    def loop():
        while not stop.is_set():
            try:
                held.append(lst.accept()[0])
            except OSError:
                continue
        for c in held:
            c.close()
        lst.close()
    threading.Thread(target=loop, daemon=True).start()
    return "http://127.0.0.1:%d/silent" % lst.getsockname()[1]


def run(binary, seconds, rate, keep=False, fsync=None, silent=False):
    tmp = tempfile.mkdtemp(prefix="txmail-otp-")
    procs = []
    stop = threading.Event()
    try:
        redis, rport = start_redis(tmp, fsync)
        procs.append(redis)
        me = os.path.abspath(__file__)
        smtp_out, wh_out = os.path.join(tmp, "data.txt"), os.path.join(tmp, "webhook.txt")
        for role, out in (("--serve-smtp", smtp_out), ("--serve-webhook", wh_out)):
            procs.append(subprocess.Popen(["/usr/bin/python3", me, role, out + ".port", out],
                                          stderr=open(out + ".log", "w")))
        sport, wport = read_port(smtp_out + ".port"), read_port(wh_out + ".port")
        api = free_port()
        env = dict(os.environ, TXMAIL_DATA_DIR=tmp, TXMAIL_LISTEN=f"127.0.0.1:{api}",
                   TXMAIL_REDIS_URL=f"redis://127.0.0.1:{rport}",
                   TXMAIL_RELAY=f"smtp://127.0.0.1:{sport}?tls=none",
                   TXMAIL_WEBHOOK_URL=f"http://127.0.0.1:{wport}/hook",
                   TXMAIL_WEBHOOK_SECRET=SECRET, TXMAIL_WEBHOOK_ALLOW_PRIVATE="1",
                   TXMAIL_API_KEYS=KEY, TXMAIL_RATE_LIMIT="0", TXMAIL_LOG_LEVEL=os.environ.get("BENCH_OTP_LOG_LEVEL", "warn"),
                   TXMAIL_HELO_NAME="bench.example.com")
        if silent:
            env["TXMAIL_WEBHOOK_TIMEOUT"] = "60"    # its requests stay in flight
        txm = subprocess.Popen([binary, "run"], env=env, stdout=subprocess.DEVNULL,
                               stderr=open(os.path.join(tmp, "txmail.log"), "w"))
        procs.append(txm)

        def ready():
            try:
                c = http.client.HTTPConnection("127.0.0.1", api, timeout=1)
                c.request("GET", "/readyz")
                ok = c.getresponse().status == 200
                c.close()
                return ok
            except OSError:
                return False
        wait_for(ready, 30, "txmail /readyz")
        if silent:
            c = http.client.HTTPConnection("127.0.0.1", api, timeout=10)
            c.request("POST", "/v1/webhooks", body=json.dumps({"url": silent_endpoint(stop)}),
                      headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
            r = c.getresponse()
            if r.status != 201:
                raise SystemExit(f"bench_otp: POST /v1/webhooks: {r.status} {r.read()[:200]!r}")
            c.close()

        # Redis's latency monitor (monitoring only): the worst fsync of each second
        redis_cmd(rport, "CONFIG", "SET", "latency-monitor-threshold", "1")
        mon_t0 = int(time.time())     # the monitor keys its samples by wall-clock second
        total = WARMUP + int(seconds * rate)
        sent = [None] * total
        errors = post_schedule(api, total, rate, sent)
        if errors:
            raise SystemExit(f"bench_otp: {len(errors)} sends failed: {errors[:3]}")
        wait_for(lambda: len(read_lines(smtp_out)) >= total and len(read_lines(wh_out)) >= total,
                 60, f"{total} messages at the peer and their webhooks")
        data_at = {int(tok): int(t) for t, tok in read_lines(smtp_out) if tok.isdigit()}
        wh_at = {}
        for t, mid in read_lines(wh_out):
            wh_at.setdefault(mid, int(t))       # at least once: the first receipt counts
        dms, wms, ams = [], [], []
        for i in range(WARMUP, total):
            t, mid, t202 = sent[i]
            dms.append((data_at[i] - t) / 1e6)
            wms.append((wh_at[mid] - t) / 1e6)
            ams.append((t202 - t) / 1e6)
        hist = redis_cmd(rport, "LATENCY", "HISTORY", "aof-fsync-always") or []
        worst = [int(h[1]) for h in hist]
        return {"n": total - WARMUP, "data_ms": percentiles(dms), "webhook_ms": percentiles(wms),
                "accept_ms": percentiles(ams),
                "redis_fsync_ms": {"seconds_over_1ms": len(worst), "seconds": int(time.time()) - mon_t0 + 1,
                                   "worst_per_second": percentiles(worst)}}
    finally:
        stop.set()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if keep:
            print(f"bench_otp: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-smtp":
        return serve_smtp(sys.argv[2], sys.argv[3])
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-webhook":
        return serve_webhook(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/txmail")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--appendfsync", choices=("always", "everysec", "no"),
                    help="override deploy/redis.conf's appendfsync (diagnosis only: the "
                    "shipped setting, always, is what the figures are for)")
    ap.add_argument("--silent-endpoint", action="store_true",
                    help="also register a webhook endpoint that never answers (a stuck customer "
                    "endpoint: requests always in flight)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    a = ap.parse_args()
    res = run(os.path.abspath(a.bin), a.seconds, a.rate, a.keep, a.appendfsync, a.silent_endpoint)
    print(f"lone OTP, priority high, {a.rate:g}/s for {a.seconds:g} s, n={res['n']}"
          f"{', a silent endpoint too' if a.silent_endpoint else ''}"
          f" (wall clock; noisy on a shared machine)")
    print(f"{'ms':<28}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}")
    for name, k in (("POST -> 202", "accept_ms"), ("POST -> end of DATA", "data_ms"),
                    ("POST -> webhook received", "webhook_ms")):
        p = res[k]
        print(f"{name:<28}" + "".join(f"{p[x]:>9.2f}" for x in ("p50", "p90", "p99", "p999", "max")))
    f = res["redis_fsync_ms"]
    if f["seconds_over_1ms"]:
        w = f["worst_per_second"]
        print(f"redis appendfsync always: a write's fsync took >= 1 ms in {f['seconds_over_1ms']} of "
              f"{f['seconds']} s; the worst of each such second: p50 {w['p50']:.0f}, "
              f"max {w['max']:.0f} ms")
    else:
        print("redis appendfsync always: no fsync took 1 ms or more")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
