"""test_modes.py - the other ways to run txmail: `run --dev` (embedded
redis-server, capture sink, the printed curl line works, Ctrl-C stops
everything) and `api` + `worker` as separate processes on one Redis.

Must never: leave the dev-mode redis-server behind (checked and killed at
teardown), or wait without a deadline.
"""

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time

import helpers
import logparse
from helpers import dl, find_redis_servers, free_port, tail, wait_until


def _reader(stream, q, sink):
    for line in iter(stream.readline, b""):
        sink.write(line)
        sink.flush()
        q.put(line.decode("utf-8", "replace"))
    q.put(None)


# --- 9 ---------------------------------------------------------------------------

def redis_alive(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat[stat.rindex(b")") + 2:].split()[0]
    return state != b"Z" and b"redis" in stat[:stat.rindex(b")")]


def test_dev_mode(txmail_binary, workdir, register_log):
    data = os.path.join(workdir, "data")
    os.makedirs(data)
    api_port, sink_port = free_port(), free_port()
    env = helpers.clean_env({"TXMAIL_DATA_DIR": data,
                             "TXMAIL_LISTEN": "127.0.0.1:%d" % api_port,
                             "TXMAIL_SINK_LISTEN": "127.0.0.1:%d" % sink_port})
    errlog = os.path.join(workdir, "dev-stderr.log")
    outlog = os.path.join(workdir, "dev-stdout.log")
    register_log("txmail run --dev stderr", errlog)
    register_log("txmail run --dev stdout", outlog)
    q = queue.Queue()
    with open(errlog, "wb") as ef, open(outlog, "wb") as of:
        proc = subprocess.Popen([txmail_binary, "run", "--dev"], env=env, cwd=workdir,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=ef,
                                start_new_session=True)
        rd = threading.Thread(target=_reader, args=(proc.stdout, q, of), daemon=True)
        rd.start()
        try:
            lines = []
            curl = None
            end = time.monotonic() + dl(30)
            while curl is None:
                left = end - time.monotonic()
                assert left > 0, "no curl line on stdout within %.0fs; stdout so far: %r" % (dl(30), lines)
                try:
                    line = q.get(timeout=left)
                except queue.Empty:
                    continue
                assert line is not None, "stdout closed (exit %s) before the curl line; stdout: %r" % (
                    proc.poll(), lines)
                lines.append(line)
                if line.lstrip().startswith("curl "):
                    curl = line.strip()
            text = "".join(lines)
            assert "http://127.0.0.1:%d" % api_port in text, "API address not printed: %r" % text
            m = re.search(r"txm_dev_\S+", text)
            assert m, "no dev API key printed: %r" % text
            key = m.group(0).strip("'\"")
            with open(os.path.join(data, "dev-api-key")) as f:
                assert f.read().strip() == key, "printed key differs from $TXMAIL_DATA_DIR/dev-api-key"
            assert "127.0.0.1:%d" % api_port in curl, "curl line does not use TXMAIL_LISTEN: %r" % curl

            redis_pids = find_redis_servers(mention=data, ppid=proc.pid)
            assert redis_pids, "no embedded redis-server child found for the dev server"

            r = subprocess.run(curl, shell=True, capture_output=True, timeout=dl(20), cwd=workdir)
            assert r.returncode == 0, "curl failed (%d): %r %r" % (r.returncode, r.stdout, r.stderr)
            body = json.loads(r.stdout)
            assert re.match(r"^msg_[0-9a-z]{26}(?:p[1-9][0-9]?)?$", body.get("id", "")), "curl answer: %r" % body
            assert body.get("status") == "queued", "curl answer: %r" % body

            maildir = os.path.join(data, "mail")

            def emls():
                try:
                    return [n for n in os.listdir(maildir) if n.endswith(".eml") and not n.startswith(".")]
                except FileNotFoundError:
                    return []
            (name,) = wait_until(emls, dl(20), ".eml in %s" % maildir)
            with open(os.path.join(maildir, name), "rb") as f:
                raw = f.read()
            assert b"Hello from txmail" in raw, "sink file does not hold the message: %r" % raw[:500]
            assert body["id"].encode() in raw, "Message-ID does not carry %s" % body["id"]

            c = helpers.Client(api_port, key=key)
            j = wait_until(lambda: (lambda r: r.json if r.status == 200 and r.json.get("status") == "delivered"
                                    else None)(c.get("/v1/messages/" + body["id"])),
                           dl(10), "dev message delivered")
            c.close()
            assert j["recipients"][0]["attempts"] == 1

            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=dl(15))
            except subprocess.TimeoutExpired:
                raise AssertionError("txmail run --dev did not exit within %.0fs of SIGINT" % dl(15))
            assert rc == 0, "exit status after SIGINT: %s" % rc
            # its redis-server must be gone (not merely orphaned)
            def gone():
                return not find_redis_servers(mention=data) and not [p for p in redis_pids if redis_alive(p)]
            wait_until(gone, dl(5), "the dev redis-server to be gone after txmail exited",
                       diag=lambda: "still running: %r" % (find_redis_servers(mention=data),))
        finally:
            helpers.kill_group(proc, signal.SIGKILL)
            helpers.reap(proc, dl(5))
            for pid in find_redis_servers(mention=data):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            rd.join(2)
    text = tail(errlog, 100000, max_bytes=10 << 20)
    for p in helpers.SANITIZER_PATTERNS:
        assert p not in text, "sanitizer report %r in the dev server log" % p
    # the dev sink says which message it stored (from the Message-ID txmail wrote)
    stored = [r for r in logparse.records(errlog, "sink stored message") if r.get("msg_id") == body["id"]]
    assert len(stored) == 1 and stored[0].get("file") == name, \
        "want one 'sink stored message' line with msg_id=%s file=%s, got %r" % (
            body["id"], name, logparse.records(errlog, "sink stored message"))


# --- 10 --------------------------------------------------------------------------

def test_split_roles(txmail_factory, smtp_peer, webhook, redis):
    api_p = txmail_factory(args=("api",))
    worker = txmail_factory(args=("worker",), http=False)
    c = api_p.client()
    r = c.send({"from": "a@example.com", "to": "split@example.com", "subject": "split roles", "text": "x",
                "metadata": {"via": "split"}})
    assert r.status == 202, "api: got %s %r" % (r.status, r.body[:200])
    mid = r.json["id"]
    smtp_peer.wait_for_rcpt("split@example.com", dl(15))
    j = wait_until(lambda: (lambda r: r.json if r.json.get("status") == "delivered" else None)(
        c.get("/v1/messages/" + mid)), dl(10), "delivered via the worker process")
    assert j["recipients"][0]["attempts"] == 1
    (ev,) = webhook.wait_events_for(mid, 1, dl(10), types=("message.delivered",))
    assert ev["body"]["data"]["metadata"] == {"via": "split"}
    assert worker.alive() and api_p.alive()
    c.close()
