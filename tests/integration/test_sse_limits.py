"""test_sse_limits.py - event streams are shared fairly (issue 11, item 7).

Owns: with TXMAIL_SSE_PER_KEY=2, a key's third open /v1/events/stream gets
429 rate_limited with Retry-After (and a log line), while another key still
has its own two; a client that disconnects gives its slot back at once - a
new stream of that key is accepted within a second of the close, long
before the first keepalive (15 s after a stream opens) would have made
txmail notice; HEAD answers the stream's headers with no body and holds no
slot.

Must never: sleep instead of waiting for a condition, or leave a socket open.
"""
import base64
import os
import socket
import time

import logparse
from helpers import dl


def new_key():
    return "txm_test_" + base64.b32encode(os.urandom(15)).decode().lower()


class Stream:
    """GET (or HEAD) /v1/events/stream on its own socket; every read bounded."""

    def __init__(self, port, key, method="GET"):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=dl(5))
        self.s.sendall(("%s /v1/events/stream HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n"
                        "Authorization: Bearer %s\r\n\r\n" % (method, key)).encode())
        self.raw = b""
        self.status = None
        self.headers = {}

    def _recv(self, end):
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError("read timed out; have %r" % self.raw[:300])
        self.s.settimeout(left)
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            raise AssertionError("read timed out; have %r" % self.raw[:300])
        self.raw += d
        return d

    def head(self, timeout=None):
        end = time.monotonic() + (timeout or dl(5))
        while b"\r\n\r\n" not in self.raw:
            if not self._recv(end):
                raise AssertionError("closed before the headers; have %r" % self.raw)
        head, _, self.raw = self.raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        return self.status

    def read_until(self, marker, timeout=None):
        end = time.monotonic() + (timeout or dl(5))
        while marker not in self.raw:
            if not self._recv(end):
                raise AssertionError("closed before %r; have %r" % (marker, self.raw))

    def close(self):
        self.s.close()


def open_stream(port, key):
    """A stream that is open and parked (its hello comment read)."""
    st = Stream(port, key)
    assert st.head() == 200, "got %s %r, want 200" % (st.status, st.raw[:300])
    st.read_until(b"txmail event stream")
    return st


def refused(port, key):
    """The answer to one more stream of key (which should be refused): status, headers, body."""
    st = Stream(port, key)
    try:
        st.head()
        n = int(st.headers.get("content-length", "0"))
        end = time.monotonic() + dl(5)
        while len(st.raw) < n and st._recv(end):
            pass
        return st.status, st.headers, st.raw[:n]
    finally:
        st.close()


def test_per_key_limit_and_slot_freed_at_once(txmail_factory):
    k1, k2 = new_key(), new_key()
    tx = txmail_factory(extra_env={"TXMAIL_API_KEYS": k1 + "," + k2, "TXMAIL_SSE_PER_KEY": "2"})
    open_ = []
    try:
        open_ += [open_stream(tx.port, k1), open_stream(tx.port, k1)]
        status, headers, body = refused(tx.port, k1)
        assert status == 429, "third stream of a key: got %s %r, want 429" % (status, body)
        assert b'"rate_limited"' in body, "got body %r, want error type rate_limited" % body
        assert int(headers.get("retry-after", "0")) >= 1, "got headers %r, want Retry-After" % headers
        recs = logparse.records(tx.log, "event stream refused, too many open for this key")
        assert recs and recs[-1].get("limit") == "2" and recs[-1].get("open") == "2" and \
            recs[-1].get("request_id"), "got log records %r" % recs

        # another key has its own slots
        open_ += [open_stream(tx.port, k2), open_stream(tx.port, k2)]
        status, _, body = refused(tx.port, k2)
        assert status == 429, "third stream of the second key: got %s %r, want 429" % (status, body)

        # a disconnect frees the slot at once (well before the 15 s keepalive)
        open_.pop(0).close()
        t0 = time.monotonic()
        end = t0 + dl(1.5)
        while True:
            st = Stream(tx.port, k1)
            if st.head() == 200:
                open_.append(st)
                break
            st.close()
            assert time.monotonic() < end, \
                "slot of a closed stream not freed within %.1f s (still %s)" % (dl(1.5), st.status)
            time.sleep(0.05)
        took = time.monotonic() - t0
        assert took < dl(1.5), "new stream after %.2f s" % took
        print("slot freed: a new stream %.3f s after the close" % took)
        status, _, _ = refused(tx.port, k1)
        assert status == 429, "after the replacement, key 1 is full again: got %s" % status
    finally:
        for st in open_:
            st.close()


def test_head_has_no_body_and_holds_no_slot(txmail_factory):
    k1 = new_key()
    tx = txmail_factory(extra_env={"TXMAIL_API_KEYS": k1, "TXMAIL_SSE_PER_KEY": "2"})
    heads, streams = [], []
    try:
        for _ in range(3):
            h = Stream(tx.port, k1, method="HEAD")
            assert h.head() == 200, "HEAD: got %s %r, want 200" % (h.status, h.raw)
            assert h.headers.get("content-type", "").startswith("text/event-stream"), \
                "HEAD headers %r" % h.headers
            heads.append(h)   # kept open: a HEAD that opened a stream would hold its slot now
        # nothing follows the headers: a GET on the same connection is answered next
        h = heads[0]
        h.s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        h.read_until(b"\r\n\r\n")
        assert h.raw.startswith(b"HTTP/1.1 200"), \
            "after HEAD the connection held %r, want the next answer's status line" % h.raw[:200]
        # the HEADs held no slot: the key still has both of its streams
        streams += [open_stream(tx.port, k1), open_stream(tx.port, k1)]
        status, _, _ = refused(tx.port, k1)
        assert status == 429, "third stream: got %s, want 429" % status
        # HEAD on other routes has no body either (libmicrohttpd drops it)
        h = Stream.__new__(Stream)
        h.s = socket.create_connection(("127.0.0.1", tx.port), timeout=dl(5))
        h.raw, h.status, h.headers = b"", None, {}
        heads.append(h)
        h.s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert h.head() == 200
        h.read_until(b"\r\n\r\n")
        assert h.raw.startswith(b"HTTP/1.1 200"), "HEAD /healthz sent a body: %r" % h.raw[:200]
    finally:
        for s in heads + streams:
            s.close()
