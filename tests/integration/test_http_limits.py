"""Idle and slowloris connections do not stop service.

2000 idle TCP connections plus 50 slowloris clients (one header byte per
second, never finishing the request) are held open against the API; /healthz
and a send must still answer within a deadline, and the idle connections must
be closed by txmail once TXMAIL_HTTP_TIMEOUT (set to 2 s here; default 30 s,
MHD_OPTION_CONNECTION_TIMEOUT) has passed. The test raises RLIMIT_NOFILE for
itself and, by inheritance, for txmail.
"""

import resource
import selectors
import socket
import threading
import time

from helpers import dl, wait_until

IDLE = 2000
SLOW = 50
TIMEOUT_S = 2


def test_idle_and_slowloris_connections(txmail_factory, smtp_peer):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE + SLOW + 1024
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise AssertionError("RLIMIT_NOFILE hard limit %d < %d needed" % (hard, want))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    socks, slow = [], []
    stop = threading.Event()
    sel = selectors.DefaultSelector()
    try:
        tx = txmail_factory(extra_env={"TXMAIL_HTTP_TIMEOUT": str(TIMEOUT_S)})
        for _ in range(IDLE):
            s = socket.create_connection(("127.0.0.1", tx.port), timeout=dl(5))
            s.setblocking(False)
            socks.append(s)
        for _ in range(SLOW):
            s = socket.create_connection(("127.0.0.1", tx.port), timeout=dl(5))
            s.sendall(b"G")
            slow.append(s)
        opened = time.monotonic()

        def loris():
            hdr = b"ET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
            i = 0
            while not stop.wait(1.0):
                b = hdr[i % len(hdr):i % len(hdr) + 1]
                i += 1
                for s in slow:
                    try:
                        s.sendall(b)
                    except OSError:
                        pass
        t = threading.Thread(target=loris, daemon=True)
        t.start()

        c = tx.client(timeout=dl(5))
        t0 = time.monotonic()
        r = c.get("/healthz", auth=False)
        assert r.status == 200, "healthz under load: got %r, want 200" % r
        r = c.send({"from": "a@example.com", "to": ["ok@example.com"], "subject": "s", "text": "t"})
        assert r.status in (200, 201, 202), "send under load: got %r, want 2xx" % r
        took = time.monotonic() - t0
        assert took < dl(5), "healthz + send took %.1fs, want < %.1fs" % (took, dl(5))
        smtp_peer.wait_count(1, dl(10), "the message sent under load")
        c.close()

        # idle connections are closed by txmail after the timeout (EOF or reset)
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        closed = set()

        def all_closed():
            for key, _ in sel.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data == b"":
                    sel.unregister(key.fileobj)
                    closed.add(key.fileobj)
            return len(closed) == IDLE
        wait_until(all_closed, TIMEOUT_S + dl(10), "txmail closing %d idle connections" % IDLE,
                   interval=0.0, diag=lambda: "%d of %d closed" % (len(closed), IDLE))
        elapsed = time.monotonic() - opened
        assert elapsed >= TIMEOUT_S - 0.5, \
            "idle connections closed after %.1fs, want >= the %ds timeout" % (elapsed, TIMEOUT_S)
        assert tx.alive(), "txmail died"
        r = tx.client(timeout=dl(5)).get("/healthz", auth=False)
        assert r.status == 200, "healthz after: got %r, want 200" % r
    finally:
        stop.set()
        sel.close()
        for s in socks + slow:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
