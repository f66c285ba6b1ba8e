"""test_api_schedule.py - send_at, cancel and ttl (issue 3, point 5).

Owns: a message with send_at ~2 s ahead is `scheduled` and reaches the SMTP
peer no earlier than send_at (peer file time vs send_at); DELETE cancels a
scheduled message (`canceled`, no webhook, never delivered) and a second
DELETE is 409 `conflict`; a message whose recipient keeps deferring expires
at its ttl (`expired`, message.failed reason `expired`). Every answer is
validated against the spec.

Must never: sleep instead of waiting for a condition with a deadline.
"""
import datetime
import os
import time

from helpers import dl
from spec_check import wait_message, all_terminal, rcpt_status


def rfc3339(ts):
    d = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


def test_send_at_never_early(capi, smtp_peer, webhook):
    send_at = time.time() + 2.0
    r = capi.send({"from": "a@example.com", "to": ["s1@example.com", "s2@example.com"], "subject": "later",
                   "text": "scheduled", "send_at": rfc3339(send_at)})
    assert r.status == 202, "got %r" % r
    assert r.json["status"] == "scheduled", "got %r, want scheduled" % r.json
    assert {x["status"] for x in r.json["recipients"]} == {"scheduled"}, "got %r" % r.json["recipients"]
    mid = r.json["id"]
    body = capi.get("/v1/messages/" + mid).json
    assert body["status"] == "scheduled" or time.time() >= send_at, "got %r before send_at" % body["status"]
    assert "send_at" in body, "got no send_at in GET: %r" % sorted(body)
    got = smtp_peer.wait_for_rcpt("s2@example.com", dl(15))
    got += smtp_peer.wait_for_rcpt("s1@example.com", dl(5))
    for m in got:
        at = os.stat(os.path.join(smtp_peer.maildir, "%d.json" % m.seq)).st_mtime
        assert at >= send_at - 0.01, "delivered %.3fs before send_at" % (send_at - at)
    body = wait_message(capi, mid, all_terminal, dl(10), "scheduled message delivered")
    assert body["status"] == "delivered", "got %r" % body["status"]


def test_cancel_scheduled(capi, smtp_peer, webhook):
    r = capi.send({"from": "a@example.com", "to": ["c1@example.com", "c2@example.com"], "subject": "never",
                   "text": "canceled", "send_at": rfc3339(time.time() + 3600)})
    assert r.status == 202 and r.json["status"] == "scheduled", "got %r" % r
    mid = r.json["id"]
    r = capi.delete("/v1/messages/" + mid)
    assert r.status == 200, "got %r, want 200" % r
    assert r.json["id"] == mid and r.json["status"] == "canceled", "got %r" % r.json
    assert set(rcpt_status(r.json).values()) == {"canceled"}, "got %r" % r.json["recipients"]
    assert any(e["type"] == "canceled" for e in r.json["events"]), "got no canceled timeline entry: %r" % (
        r.json["events"],)
    r = capi.delete("/v1/messages/" + mid)
    assert r.status == 409 and r.json["error"]["type"] == "conflict", "got %r, want 409 conflict" % r
    r = capi.delete("/v1/messages/msg_00000000000000000000000000")
    assert r.status == 404, "got %r, want 404" % r
    # a later message goes through; the canceled one never does, and no webhook tells of it
    marker = capi.send({"from": "a@example.com", "to": "marker@example.com", "subject": "m", "text": "m"})
    smtp_peer.wait_for_rcpt("marker@example.com", dl(15))
    webhook.wait_events_for(marker.json["id"], 1, dl(15))
    assert smtp_peer.count() == 1, "got %d messages, want only the marker" % smtp_peer.count()
    assert webhook.events_for(mid) == [], "got webhooks for a canceled message: %r" % webhook.events_for(mid)


def test_cancel_leaves_delivered(capi, smtp_peer):
    r = capi.send({"from": "a@example.com", "to": ["fast@example.com", "temp99-slow@example.com"],
                   "subject": "half", "text": "x"})
    mid = r.json["id"]
    smtp_peer.wait_for_rcpt("fast@example.com", dl(15))
    wait_message(capi, mid, lambda b: rcpt_status(b)["fast@example.com"] == "delivered", dl(10), "fast delivered")
    r = capi.delete("/v1/messages/" + mid)
    assert r.status == 200, "got %r" % r
    st = rcpt_status(r.json)
    assert st == {"fast@example.com": "delivered", "temp99-slow@example.com": "canceled"}, "got %r" % st
    assert r.json["status"] == "partial", "got %r, want partial" % r.json["status"]


def test_ttl_expires_while_deferred(capi, smtp_peer, webhook):
    r = capi.send({"from": "a@example.com", "to": "temp99-ttl@example.com", "subject": "code 123",
                   "text": "worthless soon", "ttl": 1})
    assert r.status == 202, "got %r" % r
    mid = r.json["id"]
    t0 = time.monotonic()
    body = wait_message(capi, mid, all_terminal, dl(15), "ttl expiry")
    assert body["status"] == "expired", "got %r, want expired" % body["status"]
    assert rcpt_status(body) == {"temp99-ttl@example.com": "expired"}, "got %r" % body["recipients"]
    assert body["recipients"][0]["attempts"] >= 1, "got %r, want at least one attempt" % body["recipients"]
    ev = webhook.wait_events_for(mid, 1, dl(15), types=("message.failed",))
    d = ev[0]["body"]["data"]
    assert d["reason"] == "expired" and d["status"] == "expired", "got %r" % d
    assert time.monotonic() - t0 < dl(10), "expired too late"
    assert webhook.events_for(mid, ("message.deferred",)), "got no message.deferred before the expiry"
