#!/usr/bin/python3
"""webhook_receiver.py - the real webhook endpoint txmail's tests deliver to.

Owns: an HTTP server (ThreadingHTTPServer, loopback) that checks every
request against the Standard Webhooks specification INDEPENDENTLY of
txmail's C code - Python hmac/hashlib/base64 only:
    key       = base64decode(secret[len("whsec_"):])
    signed    = f"{webhook-id}.{webhook-timestamp}.{body}"
    signature = "v1," + base64(HMAC-SHA256(key, signed))
The webhook-signature header may carry several space-separated signatures;
one matching v1 signature is enough. It also checks that the timestamp is
within 5 minutes of now, that the body is a JSON object whose "id" equals
the webhook-id header, and that Content-Type is application/json.

It also counts the TCP connections it accepted (`connections()`), so a
test can see whether txmail keeps them alive between requests.

Must never: trust anything computed by txmail, accept a request that fails
a check (those get 400 and are recorded in `failures`, which tests assert
to be empty), or talk to anything but loopback.

Importable (tests use WebhookReceiver in-process) and runnable:
  webhook_receiver.py --secret whsec_... [--host 127.0.0.1] [--port 0]
                      [--fail-first N] [--ready-file F] [--record F.jsonl]
                      [--tls-cert CERT --tls-key KEY]
  --fail-first N   answer the first N correctly signed requests with 500.
  --tls-cert/--tls-key  serve HTTPS with this certificate (PEM; e.g. from
                   smtpd.py --make-cert); the URL becomes https://. Each
                   handshake runs in the connection's thread; one that fails
                   (the client refused the certificate) is recorded in
                   `tls_errors` and never reaches the checks above.
  --ready-file F   the bound port is written to F (tmp + rename) when listening.
  --record F       one JSON line per attempt (what tests see as `attempts`).
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import signal
import ssl
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_S = 300
MAX_BODY = 1 << 20
TLS_HANDSHAKE_TIMEOUT_S = 10


def decode_secret(secret):
    if not secret.startswith("whsec_"):
        raise ValueError("secret must start with whsec_")
    return base64.b64decode(secret[len("whsec_"):], validate=True)


def sign(key, msg_id, timestamp, body):
    """The v1 signature (without the "v1," prefix) - used by the self-test."""
    mac = hmac.new(key, b"%s.%s.%s" % (msg_id.encode(), str(timestamp).encode(), body), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def verify(key, headers, body, now=None, tolerance=TOLERANCE_S):
    """Check one request. Returns (ok, reason, parsed_body)."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        return False, "missing webhook-id/webhook-timestamp/webhook-signature header", None
    try:
        ts_i = int(ts)
    except ValueError:
        return False, "webhook-timestamp %r is not an integer" % ts, None
    now = time.time() if now is None else now
    if abs(now - ts_i) > tolerance:
        return False, "webhook-timestamp %d is %.0fs away from now" % (ts_i, now - ts_i), None
    expected = hmac.new(key, b"%s.%s.%s" % (msg_id.encode(), ts.encode(), body), hashlib.sha256).digest()
    good = False
    for part in sigs.split(" "):
        if not part:
            continue
        ver, _, b64 = part.partition(",")
        if ver != "v1":
            continue
        try:
            got = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(got, expected):
            good = True
    if not good:
        return False, "no valid v1 signature in %r" % sigs, None
    ctype = headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        return False, "content-type %r is not application/json" % ctype, None
    try:
        obj = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        return False, "body is not JSON: %s" % e, None
    if not isinstance(obj, dict):
        return False, "body is not a JSON object", None
    if obj.get("id") != msg_id:
        return False, "body id %r != webhook-id %r" % (obj.get("id"), msg_id), None
    return True, "", obj


class _Server(ThreadingHTTPServer):
    # the default listen backlog (5) drops SYNs when txmail opens many
    # connections at once, which looks like a slow receiver to txmail
    request_queue_size = 1024
    daemon_threads = True
    tls_context = None   # an ssl.SSLContext: serve HTTPS
    tls_failed = None    # called with the reason of a failed TLS handshake
    accepted = 0         # TCP connections accepted (keep-alive reuse keeps it small)

    def process_request(self, request, client_address):
        # the accept loop's thread only: a plain counter is enough
        self.accepted += 1
        super().process_request(request, client_address)

    def finish_request(self, request, client_address):
        # runs in the connection's own thread, so a slow or failing
        # handshake never holds up the accept loop
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(TLS_HANDSHAKE_TIMEOUT_S)
        try:
            conn = self.tls_context.wrap_socket(request, server_side=True)
        except OSError as e:   # ssl.SSLError is an OSError
            if self.tls_failed is not None:
                self.tls_failed(str(e))
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def handle_error(self, request, client_address):
        # a client that dies mid-request (the kill -9 tests) is not news;
        # everything that matters is recorded in attempts/failures
        pass


class WebhookReceiver:
    """In-process receiver. Thread-safe views: attempts, events, failures.

    attempts: every request: {"webhook_id","timestamp","signature","body"(bytes),
              "valid"(bool),"reason","status"(answer sent),"at","user_agent"}
    events:   every accepted request: {"webhook_id","id","type","body"(dict),"at"}
    failures: every request that failed a check: {"reason", "headers", "body"}
    tls_errors: with tls_cert/tls_key, every failed TLS handshake: {"reason","at"}
    """

    def __init__(self, secret, host="127.0.0.1", port=0, record=None, tls_cert=None, tls_key=None):
        self.secret = secret
        self.key = decode_secret(secret)
        self.cond = threading.Condition()
        self.attempts = []
        self.events = []
        self.failures = []
        self.tls_errors = []
        self._fail_remaining = 0
        self._record = open(record, "a", buffering=1) if record else None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                receiver._handle(self)

            def do_GET(self):
                self._answer(405, b"POST only\n")

            def _answer(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._handler_cls = Handler
        self.httpd = _Server((host, port), Handler)
        self.httpd.daemon_threads = True
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_cert, tls_key)
            self.httpd.tls_context = ctx
            self.httpd.tls_failed = self._tls_failed
        self.port = self.httpd.server_address[1]
        self.url = "%s://%s:%d/webhook" % ("https" if tls_cert else "http", host, self.port)
        self._thread = None

    # --- control ----------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._record:
            self._record.close()

    def set_secret(self, secret):
        """Verify from now on with another whsec_ secret (an endpoint's secret
        is only known once txmail created it, after this receiver started)."""
        with self.cond:
            self.secret = secret
            self.key = decode_secret(secret)

    def _tls_failed(self, reason):
        with self.cond:
            self.tls_errors.append({"reason": reason, "at": time.time()})
            self.cond.notify_all()

    def fail_first(self, n):
        """Answer the next n correctly signed requests with 500."""
        with self.cond:
            self._fail_remaining = n

    # --- handling ---------------------------------------------------------
    def _read_body(self, h):
        te = h.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            out = b""
            while True:
                line = h.rfile.readline(1024)
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while h.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += h.rfile.read(n)
                h.rfile.readline(16)
                if len(out) > MAX_BODY:
                    raise ValueError("body too large")
        n = int(h.headers.get("Content-Length", "0"))
        if n > MAX_BODY:
            raise ValueError("body too large")
        return h.rfile.read(n)

    def _handle(self, h):
        try:
            body = self._read_body(h)
        except (ValueError, OSError) as e:
            with self.cond:
                self.failures.append({"reason": "unreadable body: %s" % e, "headers": dict(h.headers), "body": b""})
                self.cond.notify_all()
            h._answer(400, b"bad body\n")
            h.close_connection = True
            return
        headers = {k.lower(): v for k, v in h.headers.items()}
        ok, reason, obj = verify(self.key, headers, body)
        now = time.time()
        with self.cond:
            if not ok:
                status = 400
                self.failures.append({"reason": reason, "headers": headers, "body": body})
            elif self._fail_remaining > 0:
                self._fail_remaining -= 1
                status = 500
            else:
                status = 200
                self.events.append({"webhook_id": headers.get("webhook-id"), "id": obj.get("id"),
                                    "type": obj.get("type"), "body": obj, "at": now})
            att = {"webhook_id": headers.get("webhook-id"), "timestamp": headers.get("webhook-timestamp"),
                   "signature": headers.get("webhook-signature"), "body": body, "valid": ok,
                   "reason": reason, "status": status, "at": now,
                   "user_agent": headers.get("user-agent")}
            self.attempts.append(att)
            if self._record:
                rec = dict(att)
                rec["body"] = body.decode("utf-8", "replace")
                self._record.write(json.dumps(rec) + "\n")
            self.cond.notify_all()
        h._answer(status, b"ok\n" if status == 200 else b"no\n")

    # --- views for tests --------------------------------------------------
    def snapshot(self):
        with self.cond:
            return list(self.attempts), list(self.events), list(self.failures)

    def connections(self):
        """TCP connections accepted so far (a client reusing them opens few)."""
        return self.httpd.accepted

    def tls_failures(self):
        """The reasons of the failed TLS handshakes so far (HTTPS only)."""
        with self.cond:
            return [e["reason"] for e in self.tls_errors]

    def wait_for(self, pred, timeout, what):
        """Wait until pred(events) is truthy (called under the lock); return it."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred(self.events)
                if v:
                    return v
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %.1fs waiting for webhook %s; have %d events "
                                         "(%s), %d attempts, %d failures %s" % (
                                             timeout, what, len(self.events),
                                             [(e["type"], e["body"].get("data", {}).get("attempt"))
                                              for e in self.events[-10:]],
                                             len(self.attempts), len(self.failures),
                                             [f["reason"] for f in self.failures[:3]]))
                self.cond.wait(min(left, 0.2))

    def events_for(self, message_id, types=None):
        """Accepted events (unique by webhook-id, first acceptance) for a message."""
        with self.cond:
            seen = set()
            out = []
            for e in self.events:
                d = e["body"].get("data") or {}
                if d.get("message_id") != message_id:
                    continue
                if types is not None and e["type"] not in types:
                    continue
                if e["webhook_id"] in seen:
                    continue
                seen.add(e["webhook_id"])
                out.append(e)
            return out

    def wait_events_for(self, message_id, n, timeout, types=None):
        def have(_events):
            evs = self.events_for(message_id, types)
            return evs if len(evs) >= n else None
        # events_for takes the (reentrant? no) lock: call it without holding it
        end = time.monotonic() + timeout
        while True:
            evs = have(None)
            if evs:
                return evs
            if time.monotonic() >= end:
                _, events, failures = self.snapshot()
                raise AssertionError("timed out after %.1fs waiting for %d webhook(s) %s for %s; "
                                     "have for it: %s; failures: %s" % (
                                         timeout, n, types or "", message_id,
                                         [(e["type"], (e["body"].get("data") or {}).get("attempt"))
                                          for e in events
                                          if (e["body"].get("data") or {}).get("message_id") == message_id],
                                         [f["reason"] for f in failures[:3]]))
            with self.cond:
                self.cond.wait(0.1)


def _write_atomic(path, data):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Standard Webhooks test receiver")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--ready-file")
    ap.add_argument("--record")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    a = ap.parse_args(argv)
    if bool(a.tls_cert) != bool(a.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    r = WebhookReceiver(a.secret, a.host, a.port, record=a.record, tls_cert=a.tls_cert, tls_key=a.tls_key)
    r.fail_first(a.fail_first)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    r.start()
    if a.ready_file:
        _write_atomic(a.ready_file, b"%d\n" % r.port)
    print("listening on %s" % r.url, flush=True)
    while not stop.wait(0.5):
        pass
    r.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
