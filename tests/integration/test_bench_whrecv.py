"""test_bench_whrecv.py - the bench's webhook receiver counts what it must.

`make bench` reads its lost and duplicate figures from tests/bench/whrecv.c,
so the counting is checked here: the receiver is compiled (the Makefile's
warnings, -Werror) into the test's directory, started on a loopback port,
and sent Standard Webhooks requests signed with Python's hmac (never with
its own code): three distinct ids, one of them twice, one with a wrong
signature, one without headers. /stats must then read received 4, unique
3, duplicates 1, delivered 2 (the third type is message.deferred), bad 2,
and the --log file must hold one line per good request, in the format the
bench parses.

Must never: wait without a deadline or leave the receiver running.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import shlex
import subprocess
import time

from helpers import dl, free_port, kill_group, reap, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.join(REPO, "tests", "bench", "whrecv.c")


def make_var(name):
    out = subprocess.run(["make", "-s", "-C", REPO, "--no-print-directory", "-f", "Makefile",
                          "-f", "-", "print-" + name],
                         input="print-%:\n\t@echo $($*)\n", capture_output=True, text=True, timeout=dl(30))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def build(tmp):
    binary = os.path.join(tmp, "whrecv")
    cflags, ldlibs = make_var("CFLAGS"), make_var("LDLIBS")
    cmd = ["cc"] + shlex.split(cflags) + ["-o", binary, SRC] + shlex.split(ldlibs)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=dl(60), cwd=REPO)
    assert p.returncode == 0, "compiling whrecv.c: %s" % p.stderr
    return binary


def post(port, body, headers):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=dl(5))
    try:
        c.request("POST", "/webhook", body=body, headers=headers)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def stats(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=dl(5))
    try:
        c.request("GET", "/stats")
        return json.loads(c.getresponse().read())
    finally:
        c.close()


def signed(key, wid, body, good=True):
    ts = str(int(time.time()))
    mac = hmac.new(key, b"%s.%s.%s" % (wid.encode(), ts.encode(), body), hashlib.sha256).digest()
    if not good:
        mac = bytes([mac[0] ^ 1]) + mac[1:]
    return {"Content-Type": "application/json", "webhook-id": wid, "webhook-timestamp": ts,
            "webhook-signature": "v0,xyz v1," + base64.b64encode(mac).decode()}


def test_whrecv_counts_ids_duplicates_and_bad_signatures(tmp_path):
    binary = build(str(tmp_path))
    key = os.urandom(24)
    secret = "whsec_" + base64.b64encode(key).decode()
    port = free_port()
    log = os.path.join(str(tmp_path), "webhooks.txt")
    ready = os.path.join(str(tmp_path), "ready")
    p = subprocess.Popen([binary, "--port", str(port), "--secret", secret, "--log", log,
                          "--ready-file", ready], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: os.path.exists(ready) or p.poll() is not None, dl(10), "whrecv ready")
        assert p.poll() is None, "whrecv exited: %s" % p.stderr.read()
        sent = []
        for i, typ in enumerate(("message.delivered", "message.delivered", "message.deferred")):
            wid = "evt_test_%d" % i
            body = json.dumps({"id": wid, "type": typ,
                               "data": {"message_id": "msg_%d" % i, "status": "x"}}).encode()
            sent.append((wid, typ, "msg_%d" % i, body))
            assert post(port, body, signed(key, wid, body)) == 204
        wid, _, _, body = sent[0]
        assert post(port, body, signed(key, wid, body)) == 204          # the same id again
        assert post(port, body, signed(key, "evt_bad", body, good=False)) == 400
        assert post(port, body, {"Content-Type": "application/json"}) == 400
        got = stats(port)
        want = {"received": 4, "unique": 3, "duplicates": 1, "delivered": 2, "bad": 2}
        assert {k: got[k] for k in want} == want, "got %s, want %s" % (got, want)
        assert 0 < got["first_ns"] <= got["last_ns"]
        with open(log) as f:                     # /stats flushed it
            lines = [ln.split() for ln in f.read().splitlines()]
        assert [ln[1:] for ln in lines] == [[w, t, m] for (w, t, m, _) in sent] + [[sent[0][0], sent[0][1], sent[0][2]]], \
            "got %s" % lines
        assert all(ln[0].isdigit() for ln in lines)
    finally:
        kill_group(p)
        reap(p, dl(5))
