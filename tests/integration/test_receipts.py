"""test_receipts.py - receipts that measure (issue 17, point 2).

Owns: every event's `latency_ms` and `queued_ms`, `delivered_at` on
message.delivered and `next_attempt_at` on message.deferred, the same per
recipient on GET /v1/messages/{id}; message.bounced (an asynchronous DSN
after delivery, `bounce_type` hard or soft; 5.7.x and 5.2.2 never
suppressed); message.complained (an RFC 5965 feedback report mailed to the
VERP address: the address suppressed with reason `complaint`, once).
Real peers: the SMTP peer answers 250, 451 (temp1-) and 550 (perm-, and
550 5.7.1 at MAIL for a perm- sender), the webhook receiver checks each
signature, reports go to the bounce listener with smtplib; every event and
answer is validated against api-spec/openapi.yaml.

Must never: wait without a deadline, or judge a time without a bound from
the test's own clock (the peers run on this host: one clock).
"""

import datetime
import re
import smtplib
import time

import pytest

import spec_check
from helpers import dl, free_port, wait_until
from test_api_sse import SseClient, for_msg

DOMAIN = "bounce.receipts.txmail.local"
SECRET = "it-receipts-secret-0123456789abcdef"
SKEW_MS = 50  # the rounding of RFC 3339 milliseconds and of time.time() against util_now_ms()


def ms(rfc3339):
    """RFC 3339 (txmail writes ...T..:..:..sssZ) -> Unix ms."""
    t = datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    assert t.tzinfo is not None, "got %r, want a time with a zone" % rfc3339
    return int(round(t.timestamp() * 1000))


def now_ms():
    return int(time.time() * 1000)


@pytest.fixture
def rtx(txmail_factory):
    """txmail run with the bounce listener; slow retries so a deferral can be seen."""
    port = free_port()
    t = txmail_factory(extra_env={
        "TXMAIL_BOUNCE_DOMAIN": DOMAIN,
        "TXMAIL_BOUNCE_SECRET": SECRET,
        "TXMAIL_BOUNCE_LISTEN": "127.0.0.1:%d" % port,
        "TXMAIL_RETRY_BASE": "2",
        "TXMAIL_RETRY_MAX": "2",
    })
    t.bounce_port = port
    return t


@pytest.fixture
def rapi(rtx, spec_validator):
    c = spec_check.CheckedClient(rtx.port, spec_validator, key=rtx.key)
    yield c
    c.close()


def send(api, to, sender="Shop <shop@example.com>", **extra):
    msg = {"from": sender, "to": to, "subject": "Your code", "text": "123456\n",
           "metadata": {"user": "u_1"}, "tags": ["otp"]}
    msg.update(extra)
    t0 = now_ms()
    r = api.send(msg)
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    return r.json["id"], t0


def events(webhook, spec_validator, mid, n, types):
    evs = webhook.wait_events_for(mid, n, dl(20), types=types)
    for e in evs:
        spec_validator.check_webhook(e["type"], e["body"])
    return evs


def measures(e, t0, t1):
    """The event's latency_ms and queued_ms, checked against the test's clock."""
    d = e["body"]["data"]
    lat, q = d["latency_ms"], d["queued_ms"]
    assert isinstance(lat, int) and isinstance(q, int), "got latency %r queued %r, want integers" % (lat, q)
    assert lat >= q >= 0, "%s: got latency_ms %d, queued_ms %d, want latency >= queued >= 0" % (e["type"], lat, q)
    created = ms(e["body"]["created_at"])
    # acceptance is between t0 and the event: latency = event - acceptance
    assert lat <= created - t0 + SKEW_MS, "%s: latency_ms %d > created_at - send time %d" % (
        e["type"], lat, created - t0)
    assert created <= t1 + SKEW_MS, "%s: created_at %s after the test saw it" % (e["type"], e["body"]["created_at"])
    return lat, q


def get_rcpt(api, mid, i=0):
    r = api.get("/v1/messages/" + mid)
    assert r.status == 200, "GET /v1/messages/%s: got %s %r" % (mid, r.status, r.body)
    return r.json, r.json["recipients"][i]


def smtp_send(port, rcpt, data):
    s = smtplib.SMTP("127.0.0.1", port, timeout=dl(10))
    try:
        s.ehlo("mx.example.net")
        code, _ = s.mail("<>")
        assert code == 250, "MAIL FROM:<>: got %s, want 250" % code
        rcode, rmsg = s.rcpt(rcpt)
        assert rcode == 250, "RCPT %s: got %s %r, want 250" % (rcpt, rcode, rmsg)
        dcode, dmsg = s.data(data)
        assert dcode == 250, "DATA: got %s %r, want 250" % (dcode, dmsg)
    finally:
        s.quit()


def dsn(to, final_rcpt, status, diag):
    b = "RCPT-DSN.1736157601/mx.example.net"
    return (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: %s\r\nSubject: Undelivered Mail\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"%s\"\r\n\r\n"
        "--%s\r\nContent-Type: text/plain\r\n\r\nIt bounced.\r\n\r\n"
        "--%s\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\n"
        "Diagnostic-Code: smtp; %s\r\n\r\n"
        "--%s--\r\n" % (to, b, b, b, final_rcpt, status, diag, b)).encode()


def arf(to, rcpt, feedback_type="abuse"):
    b = "ARF_part_1234"
    return (
        "From: <fbl@isp.example>\r\nTo: %s\r\nSubject: complaint about message\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=feedback-report;\r\n\tboundary=\"%s\"\r\n\r\n"
        "--%s\r\nContent-Type: text/plain\r\n\r\nA user marked this as spam.\r\n"
        "--%s\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: %s\r\nUser-Agent: ISP-FBL/1.0\r\nVersion: 1\r\n"
        "Original-Mail-From: <%s>\r\nOriginal-Rcpt-To: <%s>\r\n"
        "Arrival-Date: Thu, 3 Dec 2026 10:00:00 +0000\r\nSource-IP: 192.0.2.1\r\n\r\n"
        "--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "From: Shop <shop@example.com>\r\nTo: %s\r\nSubject: Your code\r\n\r\n"
        "--%s--\r\n" % (to, b, b, b, feedback_type, to, rcpt, b, rcpt, b)).encode()


def delivered(rapi, smtp_peer, webhook, spec_validator, rcpt):
    mid, t0 = send(rapi, rcpt)
    (got,) = smtp_peer.wait_for_rcpt(rcpt, dl(15))
    (e,) = events(webhook, spec_validator, mid, 1, ("message.delivered",))
    return mid, t0, got, e


def suppressions(api):
    r = api.get("/v1/suppressions")
    assert r.status == 200, "GET /v1/suppressions: got %s" % r.status
    return {s["email"]: s["reason"] for s in r.json["data"]}


# --- the measures ---------------------------------------------------------------

def test_delivered_measures(rtx, rapi, smtp_peer, webhook, spec_validator):
    mid, t0, got, e = delivered(rapi, smtp_peer, webhook, spec_validator, "ada@example.net")
    t1 = now_ms()
    lat, q = measures(e, t0, t1)
    d = e["body"]["data"]
    assert "next_attempt_at" not in d, "delivered: got next_attempt_at %r" % d.get("next_attempt_at")
    dat = ms(d["delivered_at"])
    arrived = int(got.meta["at"] * 1000)
    assert arrived - SKEW_MS <= dat <= t1 + SKEW_MS, \
        "delivered_at %s: want between the peer's end of DATA (%d) and now (%d)" % (d["delivered_at"], arrived, t1)
    accepted = ms(e["body"]["created_at"]) - lat
    assert accepted <= arrived + SKEW_MS, \
        "latency_ms %d puts acceptance (%d) after the peer had the message (%d)" % (lat, accepted, arrived)
    j, r0 = get_rcpt(rapi, mid)
    assert (r0["status"], r0["latency_ms"], r0["delivered_at"], r0["next_attempt_at"]) == \
        ("delivered", lat, d["delivered_at"], None), \
        "GET recipient: got %r, want delivered with the event's latency_ms %d and delivered_at %s" % (
            r0, lat, d["delivered_at"])


def test_deferred_then_delivered(rtx, rapi, smtp_peer, webhook, spec_validator):
    """451 once (temp1-): message.deferred says when the next attempt is, GET
    shows it while deferred, and the attempt that delivers starts then: its
    queued_ms counts from that due time, not from acceptance."""
    rcpt = "temp1-bob@example.net"
    mid, t0 = send(rapi, rcpt)
    (de,) = events(webhook, spec_validator, mid, 1, ("message.deferred",))
    t1 = now_ms()
    lat_d, q_d = measures(de, t0, t1)
    d = de["body"]["data"]
    assert "delivered_at" not in d, "deferred: got delivered_at %r" % d.get("delivered_at")
    nxt, created = ms(d["next_attempt_at"]), ms(de["body"]["created_at"])
    # TXMAIL_RETRY_BASE = MAX = 2 s: due 2 s after this outcome
    assert abs(nxt - created - 2000) <= SKEW_MS, \
        "next_attempt_at %s: want created_at %s + 2 s (the retry policy)" % (d["next_attempt_at"], de["body"]["created_at"])
    assert nxt > t1 - SKEW_MS, "next_attempt_at %s is not in the future (now %d)" % (d["next_attempt_at"], t1)
    j, r0 = get_rcpt(rapi, mid)
    if now_ms() < nxt - 200:  # the GET was answered well before the retry was due
        assert (r0["status"], r0["next_attempt_at"], r0["latency_ms"], r0["delivered_at"]) == \
            ("deferred", d["next_attempt_at"], lat_d, None), "GET while deferred: got %r" % r0

    (e,) = events(webhook, spec_validator, mid, 1, ("message.delivered",))
    t2 = now_ms()
    lat, q = measures(e, t0, t2)
    (got,) = smtp_peer.wait_for_rcpt(rcpt, dl(5))
    assert int(got.meta["at"] * 1000) >= nxt - SKEW_MS, \
        "the retry reached the peer at %d, before its next_attempt_at %d" % (got.meta["at"] * 1000, nxt)
    accepted = created - lat_d
    assert lat >= nxt - accepted - SKEW_MS, \
        "delivered latency_ms %d: want at least up to next_attempt_at (%d after acceptance)" % (lat, nxt - accepted)
    assert abs(ms(e["body"]["created_at"]) - lat - accepted) <= SKEW_MS, \
        "the two events put acceptance at %d and %d" % (accepted, ms(e["body"]["created_at"]) - lat)
    assert q <= ms(e["body"]["created_at"]) - nxt + SKEW_MS, \
        "delivered queued_ms %d: want it counted from next_attempt_at (outcome %d ms after it)" % (
            q, ms(e["body"]["created_at"]) - nxt)
    assert q < 1500, "queued_ms %d: counted from acceptance, not from the retry's due time" % q
    j, r0 = get_rcpt(rapi, mid)
    assert (r0["status"], r0["latency_ms"], r0["next_attempt_at"]) == ("delivered", lat, None), \
        "GET after delivery: got %r" % r0
    assert r0["delivered_at"] == e["body"]["data"]["delivered_at"], "GET delivered_at: got %r" % r0


def test_scheduled_queued_from_send_at(rtx, rapi, webhook, spec_validator):
    """A send_at message waits for send_at (in latency_ms) but is queued
    only from then (queued_ms)."""
    at = (now_ms() // 1000 + 3) * 1000
    send_at = datetime.datetime.fromtimestamp(at / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    mid, t0 = send(rapi, "cy@example.net", send_at=send_at)
    (e,) = events(webhook, spec_validator, mid, 1, ("message.delivered",))
    lat, q = measures(e, t0, now_ms())
    assert lat >= at - t0 - SKEW_MS, "latency_ms %d: want the wait for send_at (%d ms) in it" % (lat, at - t0)
    assert q <= ms(e["body"]["created_at"]) - at + SKEW_MS, \
        "queued_ms %d: want it counted from send_at %s" % (q, send_at)


def test_failed_policy_and_suppressed(txmail, capi, smtp_peer, webhook, spec_validator):
    """550 5.1.1 at RCPT: message.failed with the measures, suppressed; 550
    5.7.1 (policy, here at MAIL for a perm- sender: a txmail without VERP,
    whose MAIL FROM is the message's sender): failed, never suppressed; a
    send to the suppressed address: message.failed status suppressed, 0 and 0."""
    mid, t0 = send(capi, "perm-gone@example.net")
    (e,) = events(webhook, spec_validator, mid, 1, ("message.failed",))
    measures(e, t0, now_ms())
    assert e["body"]["data"]["smtp"]["enhanced"] == "5.1.1", "got %r" % e["body"]["data"]["smtp"]
    mid2, t0 = send(capi, "policy@example.net", sender="perm-shop@example.com")
    (e2,) = events(webhook, spec_validator, mid2, 1, ("message.failed",))
    measures(e2, t0, now_ms())
    assert e2["body"]["data"]["smtp"]["enhanced"] == "5.7.1", "got %r" % e2["body"]["data"]["smtp"]
    sup = suppressions(capi)
    assert sup.get("perm-gone@example.net") == "bounced", "suppressions: got %r, want perm-gone bounced" % sup
    assert "policy@example.net" not in sup, "a 5.7.1 rejection suppressed the address: %r" % sup
    _, r0 = get_rcpt(capi, mid)
    assert r0["status"] == "failed" and r0["latency_ms"] == e["body"]["data"]["latency_ms"], "GET: got %r" % r0
    assert r0["delivered_at"] is None and r0["next_attempt_at"] is None, "GET: got %r" % r0

    mid3, _ = send(capi, "perm-gone@example.net")
    (e3,) = events(webhook, spec_validator, mid3, 1, ("message.failed",))
    d = e3["body"]["data"]
    assert (d["status"], d["latency_ms"], d["queued_ms"]) == ("suppressed", 0, 0), "suppressed event: got %r" % d
    _, r0 = get_rcpt(capi, mid3)
    assert (r0["status"], r0["latency_ms"]) == ("suppressed", 0), "GET suppressed: got %r" % r0


# --- asynchronous bounces and complaints ----------------------------------------

@pytest.mark.parametrize("status,diag,btype,suppressed", [
    ("5.1.1", "550 5.1.1 <x>: Recipient address rejected: User unknown", "hard", True),
    ("5.2.2", "552 5.2.2 mailbox full", "soft", False),
    ("5.7.1", "550 5.7.1 Message rejected as spam", "hard", False),
    ("4.4.7", "450 4.4.7 delivery time expired", "soft", False),
])
def test_bounced_after_delivery(rtx, rapi, smtp_peer, webhook, spec_validator, status, diag, btype, suppressed):
    rcpt = "dee.%s@example.net" % status.replace(".", "-")
    mid, t0, got, de = delivered(rapi, smtp_peer, webhook, spec_validator, rcpt)
    smtp_send(rtx.bounce_port, got.meta["mail_from"], dsn(got.meta["mail_from"], rcpt, status, diag))
    (e,) = events(webhook, spec_validator, mid, 1, ("message.bounced",))
    lat, q = measures(e, t0, now_ms())
    d = e["body"]["data"]
    assert (d["status"], d["reason"], d["bounce_type"], d["recipient"]) == ("failed", "bounced", btype, rcpt), \
        "message.bounced data: got %r, want failed/bounced %s" % (d, btype)
    assert d["smtp"]["enhanced"] == (status if status[0] == "5" else ""), "smtp: got %r" % d["smtp"]
    assert lat >= de["body"]["data"]["latency_ms"] and q == 0, \
        "bounced: latency_ms %d (delivered %d), queued_ms %d" % (lat, de["body"]["data"]["latency_ms"], q)
    assert d["metadata"] == {"user": "u_1"} and d["tags"] == ["otp"], "got %r" % d
    assert not webhook.events_for(mid, ("message.failed",)), "a bounce after delivery also gave message.failed"
    j, r0 = get_rcpt(rapi, mid)
    assert (r0["status"], r0["latency_ms"], r0["delivered_at"]) == \
        ("failed", lat, de["body"]["data"]["delivered_at"]), \
        "GET after the bounce: got %r, want failed, latency %d, delivered_at kept" % (r0, lat)
    tl = [x for x in j["events"] if x.get("type") == "failed"]
    assert len(tl) == 1 and tl[0].get("bounce_type") == btype, "timeline: got %r" % j["events"]
    sup = suppressions(rapi)
    assert (sup.get(rcpt) == "bounced") == suppressed, \
        "Status %s: suppressions got %r, want %s" % (status, sup, "bounced" if suppressed else "not listed")


def test_complaint(rtx, rapi, smtp_peer, webhook, spec_validator):
    rcpt = "Eve@Example.net"
    c = SseClient(rtx.port, rtx.key)
    try:
        assert c.read_head(dl(5)) == 200, "SSE: got %s" % c.status
        mid, t0, got, de = delivered(rapi, smtp_peer, webhook, spec_validator, rcpt)
        vaddr = got.meta["mail_from"]
        # not-spam is no complaint: dropped, nothing changes
        smtp_send(rtx.bounce_port, vaddr, arf(vaddr, rcpt, "not-spam"))
        smtp_send(rtx.bounce_port, vaddr, arf(vaddr, rcpt))
        (e,) = events(webhook, spec_validator, mid, 1, ("message.complained",))
        f = c.wait(for_msg(mid, "message.complained"), dl(10), "message.complained on SSE")
        assert f[0]["json"]["id"] == e["id"], "SSE %s vs webhook %s" % (f[0]["json"]["id"], e["id"])
        spec_validator.check_webhook("message.complained", f[0]["json"])
    finally:
        c.close()
    lat, q = measures(e, t0, now_ms())
    d = e["body"]["data"]
    assert (d["status"], d["feedback_type"], d["recipient"], q) == ("delivered", "abuse", rcpt, 0), \
        "message.complained data: got %r" % d
    assert "reason" not in d and "bounce_type" not in d, "complained: got %r" % d
    assert suppressions(rapi).get(rcpt.lower()) == "complaint", "suppressions: got %r" % suppressions(rapi)
    j, r0 = get_rcpt(rapi, mid)
    assert r0["status"] == "delivered", "a complaint changed the status: %r" % r0
    cm = [x for x in j["events"] if x.get("type") == "complained"]
    assert len(cm) == 1 and cm[0].get("feedback_type") == "abuse", "timeline: got %r" % j["events"]

    # the same report again: no second event. A bounce after it is the marker
    # that the listener has handled both (one connection each, in order).
    smtp_send(rtx.bounce_port, vaddr, arf(vaddr, rcpt))
    smtp_send(rtx.bounce_port, vaddr, dsn(vaddr, rcpt, "5.2.2", "552 5.2.2 mailbox full"))
    events(webhook, spec_validator, mid, 1, ("message.bounced",))
    assert len(webhook.events_for(mid, ("message.complained",))) == 1, \
        "a repeated report gave another message.complained: %r" % webhook.events_for(mid)
    j, _ = get_rcpt(rapi, mid)
    assert len([x for x in j["events"] if x.get("type") == "complained"]) == 1, "timeline: %r" % j["events"]
    # counted once, by its type; not-spam is not counted
    r = rapi.get("/metrics")
    got = dict(re.findall(r'^txmail_complaints_total\{feedback_type="(\w+)"\} (\d+)$', r.body.decode(), re.M))
    assert got == {"abuse": "1", "fraud": "0", "virus": "0", "other": "0"}, \
        "txmail_complaints_total: got %r, want abuse 1, the others 0" % got

    # and the next send to it is refused at acceptance
    mid2, _ = send(rapi, rcpt)
    (e2,) = events(webhook, spec_validator, mid2, 1, ("message.failed",))
    assert e2["body"]["data"]["status"] == "suppressed", "send after a complaint: got %r" % e2["body"]["data"]


def test_complaint_message_level_token(rtx, rapi, smtp_peer, webhook, spec_validator):
    """Two recipients at one domain share one transaction (message-level
    token): the report's Original-Rcpt-To picks the recipient."""
    rcpts = ["fay@example.net", "gus@example.net"]
    mid, t0 = send(rapi, rcpts)
    (got,) = smtp_peer.wait_for_rcpt(rcpts[0], dl(15))
    events(webhook, spec_validator, mid, 2, ("message.delivered",))
    vaddr = got.meta["mail_from"]
    smtp_send(rtx.bounce_port, vaddr, arf(vaddr, rcpts[1], "fraud"))
    (e,) = events(webhook, spec_validator, mid, 1, ("message.complained",))
    assert (e["body"]["data"]["recipient"], e["body"]["data"]["feedback_type"]) == (rcpts[1], "fraud"), \
        "got %r" % e["body"]["data"]
    sup = suppressions(rapi)
    assert sup.get(rcpts[1]) == "complaint" and rcpts[0] not in sup, "suppressions: got %r" % sup
