"""test_bounce.py - asynchronous bounces: the VERP return path on each
delivery, and DSNs sent back to the bounce listener (`run` with
TXMAIL_BOUNCE_LISTEN) turning a delivered recipient into failed/bounced,
with the webhook (message.bounced: the recipient had been delivered) and
the suppression; forged tokens and other domains
refused at RCPT. A transaction carrying several recipients gets the
message-level token, and a DSN to it fails only the recipient its
Final-Recipient names.

Must never: build the return path itself (it is read from what the SMTP
peer received), or wait without a deadline.
"""

import smtplib

import pytest

from helpers import dl, free_port, wait_until

DOMAIN = "bounce.test.txmail.local"
SECRET = "it-bounce-secret-0123456789abcdef"


def dsn(to, final_rcpt, action, status, diag):
    b = "DSN-BOUNDARY.1736157601/mx.example.net"
    diag_line = "Diagnostic-Code: smtp; %s\r\n" % diag if diag else ""
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        "To: %s\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        "\tboundary=\"%s\"\r\n"
        "\r\n"
        "--%s\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "Your message could not be delivered.\r\n"
        "\r\n"
        "--%s\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        "\r\n"
        "Final-Recipient: rfc822; %s\r\n"
        "Action: %s\r\n"
        "Status: %s\r\n"
        "%s"
        "\r\n"
        "--%s--\r\n" % (to, b, b, b, final_rcpt, action, status, diag_line, b)
    ).encode()


@pytest.fixture
def bounce_txmail(txmail_factory):
    port = free_port()
    t = txmail_factory(extra_env={
        "TXMAIL_BOUNCE_DOMAIN": DOMAIN,
        "TXMAIL_BOUNCE_SECRET": SECRET,
        "TXMAIL_BOUNCE_LISTEN": "127.0.0.1:%d" % port,
    })
    t.bounce_port = port
    return t


def deliver(t, smtp_peer, rcpt, metadata=None):
    api = t.client()
    r = api.send({"from": "Shop <shop@example.com>", "to": rcpt, "subject": "Receipt",
                  "text": "thanks\n", "metadata": metadata or {}, "tags": ["receipt"]})
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    mid = r.json["id"]
    (got,) = smtp_peer.wait_for_rcpt(rcpt, dl(15))
    wait_until(lambda: api.get("/v1/messages/" + mid).json["recipients"][0]["status"] == "delivered",
               dl(10), "%s delivered" % mid)
    return api, mid, got.meta["mail_from"]


def smtp_send(port, rcpt, data):
    """Send data from <> to rcpt; returns (rcpt code, data code or None)."""
    s = smtplib.SMTP("127.0.0.1", port, timeout=dl(10))
    try:
        s.ehlo("mx.example.net")
        code, _ = s.mail("<>")
        assert code == 250, "MAIL FROM:<>: got %s, want 250" % code
        rcode, rmsg = s.rcpt(rcpt)
        if rcode != 250:
            s.rset()
            return rcode, rmsg, None
        dcode, _ = s.data(data)
        return rcode, rmsg, dcode
    finally:
        s.quit()


def get_msg(api, mid):
    r = api.get("/v1/messages/" + mid)
    assert r.status == 200, "GET /v1/messages/%s: got %s %r" % (mid, r.status, r.body)
    return r.json


def test_verp_and_hard_bounce(bounce_txmail, smtp_peer, webhook):
    rcpt = "Gone.User@example.net"
    api, mid, mail_from = deliver(bounce_txmail, smtp_peer, rcpt, {"order": "o-17"})
    local, _, domain = mail_from.rpartition("@")
    assert domain == DOMAIN, "MAIL FROM domain: got %r, want %r" % (mail_from, DOMAIN)
    assert local.startswith("bounces+%s.0." % mid), \
        "MAIL FROM: got %r, want bounces+%s.0.<mac>@%s" % (mail_from, mid, DOMAIN)

    body = dsn(mail_from, rcpt.lower(), "failed", "5.1.1",
               "550 5.1.1 <gone.user@example.net>: Recipient address rejected: User unknown")
    rcode, _, dcode = smtp_send(bounce_txmail.bounce_port, mail_from, body)
    assert (rcode, dcode) == (250, 250), "DSN: got RCPT %s DATA %s, want 250 250" % (rcode, dcode)

    j = wait_until(lambda: (lambda m: m if m["recipients"][0]["status"] == "failed" else None)(get_msg(api, mid)),
                   dl(10), "%s failed after the DSN" % mid)
    r0 = j["recipients"][0]
    assert r0["smtp"] == {"code": 550, "enhanced": "5.1.1",
                          "response": "550 5.1.1 <gone.user@example.net>: Recipient address rejected: User unknown"}, \
        "smtp: got %r" % (r0["smtp"],)
    tl = [e for e in j["events"] if e.get("type") == "failed"]
    assert len(tl) == 1 and tl[0].get("reason") == "bounced", "timeline: got %r" % (j["events"],)

    evs = webhook.wait_events_for(mid, 1, dl(15), types=("message.bounced",))
    d = evs[0]["body"]["data"]
    assert d["reason"] == "bounced", "webhook reason: got %r, want bounced" % d.get("reason")
    assert d["bounce_type"] == "hard", "webhook bounce_type: got %r, want hard" % d.get("bounce_type")
    assert d["status"] == "failed" and d["recipient"] == rcpt, "webhook data: got %r" % d
    assert d["smtp"]["code"] == 550 and d["smtp"]["enhanced"] == "5.1.1", "webhook smtp: got %r" % d["smtp"]
    assert d["metadata"] == {"order": "o-17"} and d["tags"] == ["receipt"], "webhook data: got %r" % d

    r = api.get("/v1/suppressions")
    assert r.status == 200, "GET /v1/suppressions: got %s" % r.status
    got = {s["email"]: s["reason"] for s in r.json["data"]}
    assert got.get(rcpt.lower()) == "bounced", "suppressions: got %r, want %s bounced" % (got, rcpt.lower())

    # the same DSN again changes nothing (the recipient is final)
    rcode, _, dcode = smtp_send(bounce_txmail.bounce_port, mail_from, body)
    assert (rcode, dcode) == (250, 250), "repeated DSN: got %s %s" % (rcode, dcode)
    j = get_msg(api, mid)
    assert len([e for e in j["events"] if e.get("type") == "failed"]) == 1, "timeline: %r" % j["events"]
    # the metrics count the bounced recipient once, as failed/bounced (README "Metrics")
    m = api.get("/metrics", auth=False).body.decode()
    line = 'txmail_recipients_total{status="failed",reason="bounced"} 1'
    assert line in m.splitlines(), "metrics: got %r, want %r" % (
        [x for x in m.splitlines() if x.startswith("txmail_recipients_total")], line)


def test_delayed_dsn_and_non_dsn(bounce_txmail, smtp_peer):
    rcpt = "slow@example.net"
    api, mid, mail_from = deliver(bounce_txmail, smtp_peer, rcpt)
    body = dsn(mail_from, rcpt, "delayed", "4.4.7", "")
    rcode, _, dcode = smtp_send(bounce_txmail.bounce_port, mail_from, body)
    assert (rcode, dcode) == (250, 250), "delayed DSN: got %s %s" % (rcode, dcode)
    j = wait_until(lambda: (lambda m: m if any(e.get("type") == "delayed_dsn" for e in m["events"]) else None)(get_msg(api, mid)),
                   dl(10), "delayed_dsn timeline entry")
    assert j["recipients"][0]["status"] == "delivered", "status: got %r, want delivered" % j["recipients"][0]
    e = [e for e in j["events"] if e.get("type") == "delayed_dsn"][0]
    assert e["smtp"]["enhanced"] == "4.4.7" and e["smtp"]["code"] == 450, "delayed entry: got %r" % e

    # plain mail to a valid token: accepted, dropped, nothing changes
    plain = b"From: someone@example.org\r\nSubject: out of office\r\n\r\nI am away.\r\n"
    rcode, _, dcode = smtp_send(bounce_txmail.bounce_port, mail_from, plain)
    assert (rcode, dcode) == (250, 250), "non-DSN: got %s %s" % (rcode, dcode)
    j = get_msg(api, mid)
    assert j["recipients"][0]["status"] == "delivered", "non-DSN changed status: %r" % j["recipients"][0]


def test_forged_and_foreign_refused(bounce_txmail, smtp_peer):
    api, mid, mail_from = deliver(bounce_txmail, smtp_peer, "victim@example.net")
    local, _, domain = mail_from.rpartition("@")
    mac = local.rsplit(".", 1)[1]
    flipped = ("1" if mac[0] == "0" else "0") + mac[1:]
    cases = {
        "altered mac": "%s.%s@%s" % (local.rsplit(".", 1)[0], flipped, domain),
        "other index": "bounces+%s.1.%s@%s" % (mid, mac, domain),
        "no token": "bounces@%s" % domain,
        "postmaster": "postmaster@%s" % domain,
        "other domain": "%s@example.org" % local,
    }
    body = dsn(mail_from, "victim@example.net", "failed", "5.1.1", "550 5.1.1 unknown")
    for name, addr in cases.items():
        rcode, rmsg, dcode = smtp_send(bounce_txmail.bounce_port, addr, body)
        assert rcode == 550 and dcode is None, "%s (%s): got RCPT %s %r, want 550" % (name, addr, rcode, rmsg)
        assert rmsg.startswith(b"5.1.1"), "%s: got %r, want 5.1.1" % (name, rmsg)
    j = get_msg(api, mid)
    assert j["recipients"][0]["status"] == "delivered", "status: got %r, want delivered" % j["recipients"][0]


def test_message_level_token_fails_the_named_recipient(bounce_txmail, smtp_peer, webhook):
    """Several recipients at one domain share one transaction, so the return
    path is message level (bounces+<id>.<mac>@D); a DSN to it fails exactly
    the recipient its Final-Recipient names, and one naming an address not
    in the message changes nothing."""
    rcpts = ["ann@example.net", "Bob.Gone@Example.net", "cy@example.net"]
    api = bounce_txmail.client()
    r = api.send({"from": "Shop <shop@example.com>", "to": rcpts, "subject": "Receipt",
                  "text": "thanks\n", "metadata": {"order": "o-18"}, "tags": ["receipt"]})
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    mid = r.json["id"]
    (got,) = smtp_peer.wait_for_rcpt(rcpts[0], dl(15))
    assert [x.lower() for x in got.meta["rcpt_tos"]] == [x.lower() for x in rcpts], \
        "peer rcpt_tos: got %r, want all of %r in one transaction" % (got.meta["rcpt_tos"], rcpts)
    mail_from = got.meta["mail_from"]
    local, _, domain = mail_from.rpartition("@")
    assert domain == DOMAIN, "MAIL FROM domain: got %r, want %r" % (mail_from, DOMAIN)
    prefix = "bounces+%s." % mid
    assert local.startswith(prefix) and "." not in local[len(prefix):], \
        "MAIL FROM: got %r, want the message-level bounces+%s.<mac>@%s" % (mail_from, mid, DOMAIN)
    wait_until(lambda: all(x["status"] == "delivered" for x in get_msg(api, mid)["recipients"]),
               dl(10), "%s: every recipient delivered" % mid)

    # a DSN about an address that is not one of the message's recipients: nothing changes
    body = dsn(mail_from, "stranger@example.net", "failed", "5.1.1", "550 5.1.1 unknown")
    rcode, _, dcode = smtp_send(bounce_txmail.bounce_port, mail_from, body)
    assert (rcode, dcode) == (250, 250), "DSN for a stranger: got RCPT %s DATA %s, want 250 250" % (rcode, dcode)
    j = get_msg(api, mid)
    assert [x["status"] for x in j["recipients"]] == ["delivered"] * 3, \
        "statuses after a stranger's DSN: got %r, want all delivered" % (j["recipients"],)
    assert not [e for e in j["events"] if e.get("type") == "failed"], "timeline: got %r" % (j["events"],)

    # a DSN naming Bob (case differs): exactly Bob fails
    diag = "550 5.1.1 <bob.gone@example.net>: Recipient address rejected: User unknown"
    body = dsn(mail_from, "bob.gone@example.net", "failed", "5.1.1", diag)
    rcode, _, dcode = smtp_send(bounce_txmail.bounce_port, mail_from, body)
    assert (rcode, dcode) == (250, 250), "DSN: got RCPT %s DATA %s, want 250 250" % (rcode, dcode)
    j = wait_until(lambda: (lambda m: m if m["recipients"][1]["status"] == "failed" else None)(get_msg(api, mid)),
                   dl(10), "%s: Bob failed after the DSN" % mid)
    st = [(x["email"], x["status"]) for x in j["recipients"]]
    want = [("ann@example.net", "delivered"), ("Bob.Gone@Example.net", "failed"), ("cy@example.net", "delivered")]
    assert st == want, "recipients: got %r, want %r" % (st, want)
    assert j["recipients"][1]["smtp"] == {"code": 550, "enhanced": "5.1.1", "response": diag}, \
        "smtp: got %r" % (j["recipients"][1]["smtp"],)
    tl = [e for e in j["events"] if e.get("type") == "failed"]
    assert len(tl) == 1 and tl[0].get("reason") == "bounced" and tl[0].get("recipient") == rcpts[1], \
        "timeline: got %r, want one failed/bounced entry for %s" % (j["events"], rcpts[1])

    evs = webhook.wait_events_for(mid, 1, dl(15), types=("message.bounced",))
    d = evs[0]["body"]["data"]
    assert d["reason"] == "bounced" and d["recipient"] == rcpts[1] and d["status"] == "failed", \
        "webhook data: got %r, want failed/bounced for %s" % (d, rcpts[1])
    assert d["metadata"] == {"order": "o-18"}, "webhook metadata: got %r" % d["metadata"]

    r = api.get("/v1/suppressions")
    assert r.status == 200, "GET /v1/suppressions: got %s" % r.status
    sup = {s["email"]: s["reason"] for s in r.json["data"]}
    assert sup.get("bob.gone@example.net") == "bounced", "suppressions: got %r, want bob.gone bounced" % sup
    assert "ann@example.net" not in sup and "cy@example.net" not in sup, "suppressions: got %r" % sup
    api.close()
