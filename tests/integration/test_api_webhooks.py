"""test_api_webhooks.py - webhook endpoints (issue 3, point 7).

Owns: POST/GET/DELETE /v1/webhooks; each endpoint signs with its own
generated whsec_ secret (verified independently by a receiver holding only
that secret); event filters; TXMAIL_WEBHOOK_URL stays a default endpoint;
a dead endpoint (a socket that accepts and never answers, with
TXMAIL_WEBHOOK_TIMEOUT=1) never delays a live endpoint. Every API answer is
validated against the spec, every webhook body against its schema.

Must never: wait without a deadline, or leave the dead socket open.
"""
import socket
import threading
import time

import pytest

import spec_check
from helpers import dl


class DeadEndpoint:
    """Accepts connections, reads, never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.url = "http://127.0.0.1:%d/dead" % self.sock.getsockname()[1]
        self.conns = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                continue

    def close(self):
        self.stop.set()
        self.t.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def add_endpoint(capi, receiver, events=None):
    body = {"url": receiver.url}
    if events is not None:
        body["events"] = events
    r = capi.post_json("/v1/webhooks", body)
    assert r.status == 201, "got %r, want 201" % r
    assert r.json["secret"].startswith("whsec_") and r.json["url"] == receiver.url, "got %r" % r.json
    receiver.set_secret(r.json["secret"])
    return r.json


def test_endpoints_secrets_filters(capi, receivers, webhook, smtp_peer, spec_validator):
    all_rx, failed_rx = receivers(), receivers()
    a = add_endpoint(capi, all_rx)
    b = add_endpoint(capi, failed_rx, ["message.failed"])
    assert a["secret"] != b["secret"] and a["secret"] != webhook.secret, "got shared secrets"
    assert sorted(a["events"]) == ["message.bounced", "message.complained", "message.deferred", "message.delivered",
                                   "message.failed", "webhook.test"], "got %r" % a
    listed = {e["id"]: e for e in capi.get("/v1/webhooks").json["data"]}
    assert a["id"] in listed and b["id"] in listed, "got %r" % listed
    assert "secret" not in listed[a["id"]] or listed[a["id"]]["secret"] == a["secret"], "got %r" % listed[a["id"]]
    for bad in ({"url": "ftp://x/y"}, {"url": "http://x/y", "events": ["message.opened"]}, {"events": []},
                {"url": "http://x/y", "events": "message.failed"}):
        r = capi.post_json("/v1/webhooks", bad)
        assert r.status == 422, "body %r: got %r, want 422" % (bad, r)

    r = capi.send({"from": "a@example.com", "to": ["ok@example.com", "perm-x@example.com", "temp1-y@example.com"],
                   "subject": "s", "text": "t"})
    mid = r.json["id"]
    want_all = ["message.deferred", "message.delivered", "message.delivered", "message.failed"]
    for rx in (all_rx, webhook):  # the new endpoint and the default one (TXMAIL_WEBHOOK_URL) get everything
        evs = rx.wait_events_for(mid, 4, dl(20))
        assert sorted(e["type"] for e in evs) == want_all, "got %r" % [e["type"] for e in evs]
    evs = failed_rx.wait_events_for(mid, 1, dl(20))
    assert [e["type"] for e in evs] == ["message.failed"], "got %r" % [e["type"] for e in evs]
    for rx in (all_rx, failed_rx, webhook):
        _, _, failures = rx.snapshot()
        assert failures == [], "got signature/format failures %r" % [f["reason"] for f in failures]
        for e in rx.events_for(mid):
            spec_validator.check_webhook(e["type"], e["body"])
    # the same event has the same id at every endpoint
    ids = lambda rx: sorted(e["id"] for e in rx.events_for(mid, ("message.failed",)))  # noqa: E731
    assert ids(all_rx) == ids(failed_rx) == ids(webhook), "got different event ids per endpoint"

    # after DELETE the endpoint gets nothing more
    assert capi.delete("/v1/webhooks/" + a["id"]).status == 204
    assert capi.delete("/v1/webhooks/" + a["id"]).status == 404
    r = capi.send({"from": "a@example.com", "to": "perm-z@example.com", "subject": "s", "text": "t"})
    mid2 = r.json["id"]
    failed_rx.wait_events_for(mid2, 1, dl(20))
    webhook.wait_events_for(mid2, 1, dl(20))
    assert all_rx.events_for(mid2) == [], "got events at a deleted endpoint"


def test_dead_endpoint_does_not_delay_live(txmail_factory, spec_validator, receivers, smtp_peer):
    dead = DeadEndpoint()
    try:
        t = txmail_factory(extra_env={"TXMAIL_WEBHOOK_TIMEOUT": "1", "TXMAIL_WEBHOOK_URL": dead.url})
        c = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
        live = receivers()
        for _ in range(3):  # several dead endpoints, to occupy any shared pool
            r = c.post_json("/v1/webhooks", {"url": dead.url})
            assert r.status == 201, "got %r" % r
        add_endpoint(c, live)
        lags = []
        for i in range(10):
            r = c.send({"from": "a@example.com", "to": "live%d@example.com" % i, "subject": "s", "text": "t"})
            assert r.status == 202, "got %r" % r
            smtp_peer.wait_for_rcpt("live%d@example.com" % i, dl(15))
            delivered_at = time.time()
            ev = live.wait_events_for(r.json["id"], 1, dl(10))
            lags.append(ev[0]["at"] - delivered_at)
        assert max(lags) < 0.9 * (2 if spec_check.helpers.ASAN else 1), \
            "got webhook lags %s s at the live endpoint while dead ones hang (timeout 1 s)" % (
                ["%.2f" % x for x in lags],)
        assert len(dead.conns) >= 1, "txmail never even tried the dead endpoint"
        c.close()
    finally:
        dead.close()
