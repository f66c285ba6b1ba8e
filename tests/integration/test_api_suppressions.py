"""test_api_suppressions.py - the suppression list (issue 3, point 6).

Owns: a 550 5.1.1 bounce adds the address (reason `bounced`); a later send
to it is `suppressed` at once with no SMTP at all (peer count unchanged)
and a message.failed reason `suppressed`; GET/POST/DELETE /v1/suppressions
(case-insensitive, DELETE lifts it). Every answer is validated against the spec.

Must never: wait without a deadline.
"""
import urllib.parse

from helpers import dl
from spec_check import wait_message, all_terminal, rcpt_status


def listed(capi):
    r = capi.get("/v1/suppressions")
    assert r.status == 200, "got %r" % r
    return {s["email"]: s for s in r.json["data"]}


def test_bounce_suppresses_next_send(capi, smtp_peer, webhook):
    r = capi.send({"from": "a@example.com", "to": "perm-gone@example.com", "subject": "1", "text": "x"})
    mid = r.json["id"]
    body = wait_message(capi, mid, all_terminal, dl(15), "bounce")
    assert body["status"] == "failed", "got %r" % body["status"]
    sup = listed(capi)
    assert "perm-gone@example.com" in sup, "got suppressions %r, want the bounced address" % list(sup)
    assert sup["perm-gone@example.com"]["reason"] == "bounced", "got %r" % sup["perm-gone@example.com"]
    transcript_before = open(smtp_peer.log).read().lower().count("perm-gone@example.com")

    r = capi.send({"from": "a@example.com", "to": ["Perm-Gone@Example.com", "fine@example.com"],
                   "subject": "2", "text": "x"})
    assert r.status == 202, "got %r" % r
    st = {k.lower(): v for k, v in rcpt_status(r.json).items()}
    assert st == {"perm-gone@example.com": "suppressed", "fine@example.com": "queued"}, "got %r" % st
    mid2 = r.json["id"]
    smtp_peer.wait_for_rcpt("fine@example.com", dl(15))
    ev = webhook.wait_events_for(mid2, 2, dl(15))
    failed = [e for e in ev if e["type"] == "message.failed"]
    assert len(failed) == 1, "got %r" % [(e["type"], e["body"]["data"]) for e in ev]
    d = failed[0]["body"]["data"]
    assert d["reason"] == "suppressed" and d["status"] == "suppressed", "got %r" % d
    assert d["smtp"] is None, "got smtp %r for a suppressed recipient" % d["smtp"]
    body = wait_message(capi, mid2, all_terminal, dl(10), "second send terminal")
    assert body["status"] == "partial", "got %r" % body["status"]
    after = open(smtp_peer.log).read().lower().count("perm-gone@example.com")
    assert after == transcript_before, "got SMTP traffic for a suppressed address (%d -> %d mentions)" % (
        transcript_before, after)
    assert all("perm-gone@example.com" not in [x.lower() for x in m.meta["rcpt_tos"]] for m in smtp_peer.messages())


def test_crud_and_lift(capi, smtp_peer, webhook):
    r = capi.post_json("/v1/suppressions", {"email": "Manual@Example.com"})
    assert r.status == 201 and r.json["email"] == "manual@example.com", "got %r" % r
    r = capi.post_json("/v1/suppressions", {"email": "manual@example.com", "reason": "complaint"})
    assert r.status == 200, "got %r, want 200 (already listed, refreshed)" % r
    assert listed(capi)["manual@example.com"]["reason"] == "complaint", "got %r" % listed(capi)
    for bad in ({"email": "not an address"}, {}, {"email": 5}, {"email": "a@b.c", "x": 1}):
        r = capi.post_json("/v1/suppressions", bad)
        assert r.status == 422, "body %r: got %r, want 422" % (bad, r)
    r = capi.send({"from": "a@example.com", "to": "manual@example.com", "subject": "s", "text": "t"})
    assert r.status == 202 and r.json["status"] == "suppressed", "got %r" % r.json
    assert rcpt_status(r.json) == {"manual@example.com": "suppressed"}, "got %r" % r.json
    r = capi.delete("/v1/suppressions/" + urllib.parse.quote("MANUAL@example.com"))
    assert r.status == 204, "got %r, want 204" % r
    assert "manual@example.com" not in listed(capi), "still listed after DELETE"
    assert capi.delete("/v1/suppressions/" + urllib.parse.quote("manual@example.com")).status == 404
    r = capi.send({"from": "a@example.com", "to": "manual@example.com", "subject": "s", "text": "t"})
    assert r.status == 202 and r.json["status"] == "queued", "got %r" % r.json
    smtp_peer.wait_for_rcpt("manual@example.com", dl(15))
    assert smtp_peer.count() == 1, "got %d messages, want 1" % smtp_peer.count()
