#!/usr/bin/python3
"""bench.py - end-to-end throughput of txmail through the dev sink.

Starts `txmail run --dev` in a temporary data dir on free loopback ports,
POSTs N messages from C concurrent keep-alive HTTP clients, and measures:
  accept rate   202s per second at the API
  e2e rate      messages per second from the first POST until the N-th
                .eml file exists in the sink's directory
As a reference measured in the same run on the same machine, a bare
Python smtplib client sends N messages straight to the same kind of sink
(one connection per client thread, RSET between messages); the ratio
txmail e2e / reference tells how much the whole pipeline (HTTP, JSON,
MIME, Redis with AOF, SMTP engine) costs against raw SMTP. No timing is
asserted: machines are shared and noisy.

--callgrind N runs `txmail run --dev` under valgrind's callgrind instead and
prints the instructions txmail executes per message end to end (accept,
store, claim, SMTP to the in-process sink, record, webhook-less outcome) over
N messages after a warm-up of N/4: a load-independent figure for comparing
two builds (run it once per --bin).
"""
import re
import argparse
import http.client
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def post_messages(port, key, body, n, conc):
    """POST body n times from conc keep-alive clients; the non-202 statuses."""
    hdrs = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    errors = []
    per = [n // conc + (1 if i < n % conc else 0) for i in range(conc)]

    def client(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(k):
            c.request("POST", "/v1/messages", body=body, headers=hdrs)
            r = c.getresponse()
            r.read()
            if r.status != 202:
                errors.append(r.status)
        c.close()

    ts = [threading.Thread(target=client, args=(k,)) for k in per]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise SystemExit(f"bench: timed out waiting for {what}")


def count_eml(d):
    try:
        return sum(1 for n in os.listdir(d) if n.endswith(".eml"))
    except FileNotFoundError:
        return 0


def run_txmail(binary, n, conc, callgrind=False):
    tmp = tempfile.mkdtemp(prefix="txmail-bench-")
    api, sinkp = free_port(), free_port()
    env = dict(os.environ, TXMAIL_DATA_DIR=tmp, TXMAIL_LISTEN=f"127.0.0.1:{api}",
               TXMAIL_SINK_LISTEN=f"127.0.0.1:{sinkp}", TXMAIL_LOG_LEVEL="warn",
               TXMAIL_RATE_LIMIT="0")
    cmd = [binary, "run", "--dev"]
    if callgrind:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" +
               os.path.join(tmp, "cg.%p")] + cmd
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                            stderr=open(os.path.join(tmp, "txmail.log"), "w"), text=True)
    key = None
    try:
        end = time.monotonic() + (120 if callgrind else 20)
        while time.monotonic() < end:
            line = proc.stdout.readline()
            if not line:
                break
            if "API key:" in line:
                key = line.split("API key:")[1].strip()
            if line.startswith("curl"):
                break
        if key is None:
            raise SystemExit("bench: txmail did not start; see " + tmp)
        body = json.dumps({"from": "Bench <bench@example.com>", "to": "user@example.com",
                           "subject": "Your code is 123456",
                           "text": "Your verification code is 123456.\n" * 4}).encode()
        mail = os.path.join(tmp, "mail")
        if callgrind:
            return callgrind_per_message(tmp, proc.pid, api, key, body, n, mail)
        t0 = time.monotonic()
        errors = post_messages(api, key, body, n, conc)
        t_accept = time.monotonic() - t0
        if errors:
            raise SystemExit(f"bench: {len(errors)} sends refused: {errors[:5]}")
        wait_for(lambda: count_eml(mail) >= n, 300, f"{n} messages in the sink")
        t_e2e = time.monotonic() - t0
        return n / t_accept, n / t_e2e
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def callgrind_per_message(tmp, pid, api, key, body, n, mail):
    """Ir per message, POST to .eml, over n messages after a warm-up of n/4."""
    def ctl(*args):
        subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                       capture_output=True, timeout=60)
    warm = max(1, n // 4)
    if post_messages(api, key, body, warm, 4):
        raise SystemExit("bench: warm-up sends refused")
    wait_for(lambda: count_eml(mail) >= warm, 300, "the warm-up messages in the sink")
    ctl("-z")
    errors = post_messages(api, key, body, n, 4)
    if errors:
        raise SystemExit(f"bench: {len(errors)} sends refused: {errors[:5]}")
    wait_for(lambda: count_eml(mail) >= warm + n, 600, f"{n} messages in the sink")
    ctl("-d")
    for name in os.listdir(tmp):        # cg.<pid>.1: the dump asked for, since the zeroing
        if re.fullmatch(r"cg\.\d+\.1", name):
            with open(os.path.join(tmp, name)) as f:
                m = re.search(r"^(?:totals|summary):\s+(\d+)", f.read(), re.M)
            if m:
                return int(m.group(1)) / n
    raise SystemExit("bench: no callgrind dump found")


def run_reference(binary, n, conc):
    tmp = tempfile.mkdtemp(prefix="txmail-bench-ref-")
    port = free_port()
    proc = subprocess.Popen([binary, "sink", "--listen", f"127.0.0.1:{port}", "--dir", tmp],
                            stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, "reference sink")
        msg = ("From: Bench <bench@example.com>\r\nTo: user@example.com\r\n"
               "Subject: Your code is 123456\r\n\r\n" +
               "Your verification code is 123456.\r\n" * 4)
        per = [n // conc + (1 if i < n % conc else 0) for i in range(conc)]

        def client(k):
            s = smtplib.SMTP("127.0.0.1", port, timeout=30)
            for _ in range(k):
                s.sendmail("bench@example.com", ["user@example.com"], msg)
                s.rset()
            s.quit()

        t0 = time.monotonic()
        ts = [threading.Thread(target=client, args=(k,)) for k in per]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wait_for(lambda: count_eml(tmp) >= n, 120, "reference messages")
        return n / (time.monotonic() - t0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/txmail")
    ap.add_argument("-n", type=int, default=5000, help="messages (default 5000)")
    ap.add_argument("-c", type=int, default=16, help="concurrent HTTP clients (default 16)")
    ap.add_argument("--callgrind", type=int, metavar="N",
                    help="instructions per message end to end over N messages under callgrind")
    a = ap.parse_args()
    if a.callgrind:
        ir = run_txmail(a.bin, a.callgrind, a.c, callgrind=True)
        print(f"{a.bin}: {ir:,.0f} instructions per message end to end (callgrind)")
        return 0
    ref = run_reference(a.bin, a.n, a.c)
    acc, e2e = run_txmail(a.bin, a.n, a.c)
    print(f"reference (python smtplib -> sink): {ref:8.0f} msg/s")
    print(f"txmail accept (HTTP 202):           {acc:8.0f} msg/s")
    print(f"txmail end-to-end (POST -> .eml):   {e2e:8.0f} msg/s")
    print(f"ratio end-to-end / reference:       {e2e / ref:8.2f}")


if __name__ == "__main__":
    sys.exit(main())
