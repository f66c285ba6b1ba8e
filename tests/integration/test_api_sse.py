"""test_api_sse.py - GET /v1/events/stream, Server-Sent Events (issue 3, point 8).

Owns: events arrive live (each frame's data validated against the spec's
WebhookEvent schema), authentication, `Last-Event-ID` resume delivering
exactly what was missed, a stuck client (tiny receive buffer, never
reads) that does not slow deliveries or the API, and the hub reading
nothing from Redis while no client is connected (issue 13).

Must never: read without a deadline, or leave a socket open.
"""
import json
import socket
import time

import logparse
from helpers import dl, wait_until


class SseClient:
    """A raw-socket SSE reader (chunked or not), every read bounded."""

    def __init__(self, port, key, last_id=None, rcvbuf=None):
        self.s = socket.socket()
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(dl(5))
        self.s.connect(("127.0.0.1", port))
        req = "GET /v1/events/stream HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n"
        if key:
            req += "Authorization: Bearer %s\r\n" % key
        if last_id:
            req += "Last-Event-ID: %s\r\n" % last_id
        self.s.sendall((req + "\r\n").encode())
        self.raw = b""
        self.body = b""
        self.status = None
        self.headers = {}
        self.chunked = False
        self.frames = []

    def read_head(self, timeout):
        end = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.raw:
            self._recv(end)
        head, _, self.raw = self.raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        return self.status

    def _recv(self, end):
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError("SSE read timed out; have frames %r" % [f.get("event") for f in self.frames])
        self.s.settimeout(left)
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            raise AssertionError("SSE read timed out; have frames %r" % [f.get("event") for f in self.frames])
        if not d:
            raise AssertionError("SSE stream closed")
        self.raw += d

    def _dechunk(self):
        if not self.chunked:
            self.body += self.raw
            self.raw = b""
            return
        while True:
            line, sep, rest = self.raw.partition(b"\r\n")
            if not sep:
                return
            n = int(line.split(b";")[0], 16)
            if len(rest) < n + 2:
                return
            self.body += rest[:n]
            self.raw = rest[n + 2:]

    def _parse(self):
        self.body = self.body.replace(b"\r\n", b"\n")
        while b"\n\n" in self.body:
            block, _, self.body = self.body.partition(b"\n\n")
            f = {}
            for ln in block.decode("utf-8").split("\n"):
                if ln.startswith(":") or not ln:
                    continue
                k, _, v = ln.partition(":")
                v = v[1:] if v.startswith(" ") else v
                f[k] = f[k] + "\n" + v if k == "data" and k in f else v
            if "data" in f:
                f["json"] = json.loads(f["data"])
                self.frames.append(f)

    def wait(self, pred, timeout, what):
        end = time.monotonic() + timeout
        while True:
            self._dechunk()
            self._parse()
            got = [f for f in self.frames if pred(f)]
            if got:
                return got
            if time.monotonic() >= end:
                raise AssertionError("SSE: timed out waiting for %s; have %r" % (
                    what, [(f.get("event"), f["json"].get("data", {}).get("message_id")) for f in self.frames]))
            self._recv(end)

    def close(self):
        self.s.close()


def for_msg(mid, etype=None):
    return lambda f: f["json"]["data"]["message_id"] == mid and (etype is None or f["json"]["type"] == etype)


def test_live_events_and_auth(txmail, capi, spec_validator, webhook):
    bad = SseClient(txmail.port, None)
    try:
        assert bad.read_head(dl(5)) == 401, "got %s, want 401 without a key" % bad.status
    finally:
        bad.close()
    c = SseClient(txmail.port, txmail.key)
    try:
        assert c.read_head(dl(5)) == 200, "got %s" % c.status
        assert c.headers.get("content-type", "").startswith("text/event-stream"), "got %r" % c.headers
        spec_validator._ask({"request": {"method": "GET", "path": "/v1/events/stream", "status": 200,
                                         "content_type": c.headers["content-type"]}, "data": ""})
        r = capi.send({"from": "a@example.com", "to": ["live@example.com", "perm-dead@example.com"],
                       "subject": "s", "text": "t"})
        mid = r.json["id"]
        t0 = time.monotonic()
        c.wait(for_msg(mid, "message.delivered"), dl(10), "message.delivered")
        got = c.wait(for_msg(mid, "message.failed"), dl(10), "message.failed")
        assert time.monotonic() - t0 < dl(5), "events were not live"
        for f in [f for f in c.frames if f["json"]["data"]["message_id"] == mid]:
            assert f.get("id"), "got a frame without id: %r" % f
            assert f.get("event") == f["json"]["type"], "got event %r for type %r" % (f.get("event"), f["json"]["type"])
            spec_validator.check_webhook(f["json"]["type"], f["json"])
        # the same event as the webhook (same evt_ id)
        wh = webhook.wait_events_for(mid, 1, dl(10), types=("message.failed",))
        assert wh[0]["id"] == got[0]["json"]["id"], "got SSE %s vs webhook %s" % (got[0]["json"]["id"], wh[0]["id"])
    finally:
        c.close()


def test_last_event_id_resume(txmail, capi, webhook):
    c = SseClient(txmail.port, txmail.key)
    try:
        c.read_head(dl(5))
        m1 = capi.send({"from": "a@example.com", "to": "one@example.com", "subject": "1", "text": "t"}).json["id"]
        last = c.wait(for_msg(m1), dl(10), "first event")[-1]["id"]
    finally:
        c.close()
    # while disconnected
    m2 = capi.send({"from": "a@example.com", "to": ["two@example.com", "perm-two@example.com"],
                    "subject": "2", "text": "t"}).json["id"]
    webhook.wait_events_for(m2, 2, dl(15))
    c = SseClient(txmail.port, txmail.key, last_id=last)
    try:
        assert c.read_head(dl(5)) == 200, "got %s" % c.status
        c.wait(lambda f: sum(1 for g in c.frames if g["json"]["data"]["message_id"] == m2) >= 2, dl(10),
               "both missed events of m2")
        assert not [f for f in c.frames if f["json"]["data"]["message_id"] == m1], \
            "got m1's event again after Last-Event-ID"
        ids = [f["id"] for f in c.frames]
        assert len(ids) == len(set(ids)), "got duplicate ids %r" % ids
        # and it continues live after catching up
        m3 = capi.send({"from": "a@example.com", "to": "three@example.com", "subject": "3", "text": "t"}).json["id"]
        c.wait(for_msg(m3), dl(10), "live event after resume")
    finally:
        c.close()


def test_stuck_client_does_not_slow_delivery(txmail, capi, smtp_peer, webhook):
    stuck = [SseClient(txmail.port, txmail.key, rcvbuf=1024) for _ in range(3)]
    try:
        for s in stuck:
            s.read_head(dl(5))
        n = 200
        t0 = time.monotonic()
        r = capi.post_json("/v1/messages/batch", {"messages": [
            {"from": "a@example.com", "to": "stuck%03d@example.com" % i, "subject": "x" * 200,
             "text": "t", "metadata": {"pad": "p" * 500}} for i in range(n)]})
        assert r.status == 202, "got %r" % r
        worst = 0.0
        while smtp_peer.count() < n:
            a = time.monotonic()
            assert capi.get("/healthz", auth=False).status == 200
            assert capi.get("/v1/messages/" + r.json["data"][0]["id"]).status == 200
            worst = max(worst, time.monotonic() - a)
            assert time.monotonic() - t0 < dl(60), "only %d of %d delivered with stuck SSE clients" % (
                smtp_peer.count(), n)
            time.sleep(0.05)
        took = time.monotonic() - t0
        assert worst < dl(1.0), "got an API call taking %.2fs while SSE clients are stuck" % worst
        last = r.json["data"][-1]["id"]
        webhook.wait_events_for(last, 1, dl(15))
        print("%d delivered in %.1fs with 3 stuck SSE clients; worst API latency %.3fs" % (n, took, worst))
    finally:
        for s in stuck:
            s.close()


def xread_calls(redis):
    for ln in redis.cmd("INFO", "commandstats").splitlines():
        if ln.startswith("cmdstat_xread:"):
            return int(ln.split("calls=")[1].split(",")[0])
    return 0


def test_hub_reads_nothing_without_a_client(txmail_factory, redis, webhook):
    """No SSE client: no XREAD at all (the hub is the only plain-XREAD user);
    the first client wakes it and gets what happens next; after the last one
    leaves (the hub logs that it is idle) messages cause no XREAD again."""
    tx = txmail_factory(extra_env={"TXMAIL_LOG_LEVEL": "debug"})
    api = tx.client()

    def idle(n):
        return lambda: len(logparse.records(tx.log, "event stream idle, no client")) >= n

    m0 = api.send({"from": "a@example.com", "to": "idle0@example.com", "subject": "0", "text": "t"}).json["id"]
    webhook.wait_events_for(m0, 1, dl(15), types=("message.delivered",))
    assert xread_calls(redis) == 0, "got %d XREAD with no SSE client, want 0" % xread_calls(redis)

    c = SseClient(tx.port, tx.key)
    try:
        assert c.read_head(dl(5)) == 200, "got %s" % c.status
        m1 = api.send({"from": "a@example.com", "to": "idle1@example.com", "subject": "1", "text": "t"}).json["id"]
        c.wait(for_msg(m1, "message.delivered"), dl(10), "message.delivered of the first client")
    finally:
        c.close()
    # idle once at start (before m0), once more now
    wait_until(idle(2), dl(5), "the hub idle again after the last client left")
    before = xread_calls(redis)
    assert before > 0, "got no XREAD while a client was connected"
    m2 = api.send({"from": "a@example.com", "to": "idle2@example.com", "subject": "2", "text": "t"}).json["id"]
    webhook.wait_events_for(m2, 1, dl(15), types=("message.delivered",))
    assert xread_calls(redis) == before, "got %d XREAD after the last client left, want 0" % (
        xread_calls(redis) - before)
