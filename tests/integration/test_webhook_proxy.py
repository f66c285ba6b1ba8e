"""test_webhook_proxy.py - webhooks ignore the proxy variables of the
environment; TXMAIL_WEBHOOK_PROXY is the only proxy they use.

libcurl honours http_proxy, HTTPS_PROXY, ALL_PROXY (and NO_PROXY) from the
environment. Through a proxy the connect-time address guard would judge the
proxy's address while the proxy reaches whatever the URL names, so:

- with proxy variables pointing at a real (logging) proxy on loopback and
  the suite's TXMAIL_WEBHOOK_ALLOW_PRIVATE=1, the webhook goes straight to
  the receiver and the proxy sees no connection;
- with the guard on and an endpoint on loopback (stored while it was off),
  the guard refuses the target's own address and port, as without the
  variables, and the proxy sees no connection;
- TXMAIL_WEBHOOK_PROXY with the guard on stops txmail with a configuration
  error that says why (the guard cannot judge what a proxy connects to);
- TXMAIL_WEBHOOK_PROXY with the guard off: every request goes through that
  proxy, also for a host NO_PROXY lists, and never through the one the
  environment names.

Must never: wait without a deadline, or use a fixed port.
"""

import os
import socket
import socketserver
import subprocess
import threading

import helpers
from helpers import dl, reap, tail, wait_until

NO_FLAG = {"TXMAIL_WEBHOOK_ALLOW_PRIVATE": None, "TXMAIL_WEBHOOK_URL": None,
           "TXMAIL_WEBHOOK_SECRET": None}


class LoggingProxy:
    """A tiny HTTP proxy on loopback: records each connection and request
    line, answers 200 itself (it forwards nothing)."""

    def __init__(self):
        self.connections = 0
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                with outer.lock:
                    outer.connections += 1
                self.request.settimeout(5)
                buf = b""
                try:
                    while b"\r\n\r\n" not in buf and len(buf) < 65536:
                        b = self.request.recv(4096)
                        if not b:
                            break
                        buf += b
                except OSError:
                    pass
                head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
                with outer.lock:
                    outer.requests.append(head.split("\r\n", 1)[0])
                try:
                    if head.startswith("CONNECT "):
                        self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    else:
                        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def seen(self):
        with self.lock:
            return self.connections, list(self.requests)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def proxy_env(url):
    return {"http_proxy": url, "HTTP_PROXY": url, "https_proxy": url, "HTTPS_PROXY": url,
            "all_proxy": url, "ALL_PROXY": url, "no_proxy": None, "NO_PROXY": None}


def send(tx):
    r = tx.client().send({"from": "a@example.com", "to": ["ok@example.com"], "subject": "s", "text": "t"})
    assert r.status == 202, "send: got %r" % r
    return r.json["id"]


def log_has(tx, text):
    with open(tx.log, "r", encoding="utf-8", errors="replace") as f:
        return text in f.read()


def test_env_proxy_ignored(txmail_factory, webhook):
    proxy = LoggingProxy()
    try:
        tx = txmail_factory(extra_env=proxy_env(proxy.url))
        mid = send(tx)
        webhook.wait_events_for(mid, 1, dl(15))
        conns, reqs = proxy.seen()
        assert conns == 0, "the environment's proxy got %d connections (%r), want none" % (conns, reqs)
    finally:
        proxy.stop()


def test_env_proxy_cannot_carry_past_guard(txmail_factory, webhook):
    # stored while allowed, then the guard goes on with proxy variables set
    tx = txmail_factory(extra_env={"TXMAIL_WEBHOOK_URL": None, "TXMAIL_WEBHOOK_SECRET": None})
    r = tx.client().post_json("/v1/webhooks", {"url": webhook.url})
    assert r.status == 201, "got %r, want 201" % r
    tx.stop()
    assert not tx.problems, "got %r" % tx.problems
    proxy = LoggingProxy()
    try:
        env = dict(NO_FLAG)
        env.update(proxy_env(proxy.url))
        tx2 = txmail_factory(extra_env=env)
        send(tx2)
        want = "port=%d class=loopback" % webhook.port
        wait_until(lambda: log_has(tx2, want), dl(15), "log line with %r" % want, interval=0.1,
                   diag=lambda: tail(tx2.log, 40))
        conns, reqs = proxy.seen()
        assert conns == 0, "the environment's proxy got %d connections (%r), want none" % (conns, reqs)
        assert not webhook.attempts, "got %d webhook attempts, want none" % len(webhook.attempts)
        assert "port=%d class" % proxy.port not in tail(tx2.log, 400), "the guard judged the proxy"
    finally:
        proxy.stop()


def test_configured_proxy_refused_with_guard(txmail_binary, txmail_env, workdir, webhook):
    env = dict(txmail_env)
    env.pop("TXMAIL_WEBHOOK_ALLOW_PRIVATE", None)
    env.pop("TXMAIL_WEBHOOK_URL", None)
    env.pop("TXMAIL_WEBHOOK_SECRET", None)
    env["TXMAIL_WEBHOOK_PROXY"] = "http://127.0.0.1:9"
    env["TXMAIL_LISTEN"] = "127.0.0.1:%d" % helpers.free_port()
    logp = os.path.join(workdir, "proxy-start.log")
    with open(logp, "wb") as lf:
        p = subprocess.Popen([txmail_binary, "run"], env=helpers.clean_env(env), stdin=subprocess.DEVNULL,
                             stdout=lf, stderr=lf, start_new_session=True)
    try:
        assert reap(p, dl(10)), "txmail kept running with TXMAIL_WEBHOOK_PROXY and the guard on"
    finally:
        helpers.kill_group(p)
        reap(p, dl(5))
    log = tail(logp, 20)
    assert p.returncode != 0, "got exit 0, want a configuration error"
    assert "TXMAIL_WEBHOOK_PROXY" in log and "TXMAIL_WEBHOOK_ALLOW_PRIVATE=1" in log and \
        "cannot judge" in log, "got log %r, want the reason" % log


def test_configured_proxy_used(txmail_factory, webhook):
    proxy, decoy = LoggingProxy(), LoggingProxy()
    try:
        env = proxy_env(decoy.url)
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        env["TXMAIL_WEBHOOK_PROXY"] = proxy.url
        tx = txmail_factory(extra_env=env)
        mid = send(tx)

        def through_proxy():
            _, reqs = proxy.seen()
            return [q for q in reqs if q.startswith("POST http://127.0.0.1:%d/" % webhook.port)]
        wait_until(through_proxy, dl(15), "the webhook POST at TXMAIL_WEBHOOK_PROXY", interval=0.05)
        wait_until(lambda: log_has(tx, "webhook delivered"), dl(10), "webhook delivered (the proxy's 200)",
                   interval=0.05, diag=lambda: tail(tx.log, 40))
        conns, reqs = decoy.seen()
        assert conns == 0, "the environment's proxy got %d connections (%r), want none" % (conns, reqs)
        assert not webhook.events_for(mid), "the receiver got the event directly, want it through the proxy"
    finally:
        proxy.stop()
        decoy.stop()
