"""test_delivery.py - one message through the whole stack: HTTP API ->
Redis -> SMTP worker (STARTTLS + AUTH) -> the SMTP peer, and the signed
webhooks back. Plain, Chinese, temporary failure, permanent failure,
webhook retries.

Must never: wait without a deadline, or trust txmail's own view where the
peer's can be checked (messages are parsed from the bytes the peer stored,
signatures verified by the receiver in Python).
"""

import datetime
import json
import email.utils
import re

import pytest

from helpers import MSG_ID_RE, dl, wait_until

MSGID_HDR_RE = re.compile(r"^<([^<>@\s]+)@test\.txmail\.local>$")


def assert_accepted(r, rcpts):
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    j = r.json
    assert isinstance(j, dict), "202 body is not a JSON object: %r" % r.body
    mid = j.get("id")
    assert isinstance(mid, str) and MSG_ID_RE.match(mid), "id: got %r, want msg_ + 26 [0-9a-z]" % mid
    assert j.get("status") == "queued", "status: got %r, want queued" % j.get("status")
    loc = r.headers.get("location", "")
    assert loc.endswith("/v1/messages/" + mid), "Location: got %r, want .../v1/messages/%s" % (loc, mid)
    got = [x.get("email") for x in j.get("recipients", [])]
    assert got == rcpts, "recipients: got %r, want %r" % (got, rcpts)
    assert all(x.get("status") == "queued" for x in j["recipients"]), j["recipients"]
    return mid


def wait_message(api, mid, pred, timeout, what):
    last = {}

    def check():
        r = api.get("/v1/messages/" + mid)
        assert r.status == 200, "GET /v1/messages/%s: got %s %r" % (mid, r.status, r.body)
        last["j"] = r.json
        return r.json if pred(r.json) else None
    return wait_until(check, timeout, "%s: %s" % (mid, what), interval=0.05,
                      diag=lambda: "last GET: %r" % (last.get("j"),))


def rcpt_status(j, i=0):
    return j["recipients"][i]["status"]


def check_signed_ok(webhook):
    attempts, _, failures = webhook.snapshot()
    assert failures == [], "webhook requests that failed verification: %r" % (
        [(f["reason"], f["body"][:200]) for f in failures],)
    return attempts


# --- 1 ---------------------------------------------------------------------------

def test_send_plain(txmail, api, smtp_peer, webhook):
    msg = {
        "from": "Sender <sender@example.com>",
        "to": "rcpt@example.com",
        "subject": "Your code is 123456",
        "text": "Hello,\nyour code is 123456.\n",
        "headers": {"X-Test-Header": "kept as is"},
        "metadata": {"user_id": "u_42", "n": 7},
        "tags": ["verification", "login"],
    }
    r = api.send(msg)
    mid = assert_accepted(r, ["rcpt@example.com"])

    (got,) = smtp_peer.wait_for_rcpt("rcpt@example.com", dl(15))
    meta = got.meta
    assert meta["tls"] is True, "peer: message not received over TLS: %r" % meta
    assert meta["auth_user"] == "user", "peer: auth_user got %r, want 'user'" % meta["auth_user"]
    assert meta["mail_from"] == "sender@example.com", "MAIL FROM: got %r" % meta["mail_from"]
    assert meta["rcpt_tos"] == ["rcpt@example.com"], "RCPT TO: got %r" % meta["rcpt_tos"]
    assert meta.get("helo") == "test.txmail.local", "EHLO name: got %r" % meta.get("helo")

    m = got.msg
    for h in ("From", "To", "Subject", "Message-ID", "Date", "MIME-Version"):
        assert m[h] is not None, "header %s missing in:\n%s" % (h, got.raw[:2000].decode("ascii", "replace"))
        assert len(m.get_all(h)) == 1, "header %s appears %d times" % (h, len(m.get_all(h)))
    assert m["Subject"] == "Your code is 123456"
    assert m["From"].addresses[0].addr_spec == "sender@example.com"
    assert m["From"].addresses[0].display_name == "Sender"
    assert m["To"].addresses[0].addr_spec == "rcpt@example.com"
    assert str(m["MIME-Version"]).strip() == "1.0"
    assert m["X-Test-Header"] == "kept as is", "custom header: got %r" % m["X-Test-Header"]
    msgid = str(m["Message-ID"]).strip()
    mm = MSGID_HDR_RE.match(msgid)
    assert mm, "Message-ID: got %r, want <...@test.txmail.local>" % msgid
    assert mid in mm.group(1), "Message-ID %r does not contain the message id %s" % (msgid, mid)
    date = email.utils.parsedate_to_datetime(str(m["Date"]))
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - date).total_seconds())
    assert skew < 300, "Date %r is %.0fs away from now" % (str(m["Date"]), skew)
    body = m.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert body in (msg["text"], msg["text"] + "\n"), "text body: got %r" % body
    assert "bcc" not in {k.lower() for k in m.keys()}

    j = wait_message(api, mid, lambda j: j.get("status") == "delivered", dl(10), "status delivered")
    rc = j["recipients"][0]
    assert rc["email"] == "rcpt@example.com"
    assert rc["status"] == "delivered"
    assert rc["attempts"] == 1, "attempts: got %r, want 1" % rc["attempts"]
    assert rc["smtp"] and rc["smtp"]["code"] == 250, "smtp: got %r, want code 250" % rc["smtp"]
    assert j["id"] == mid
    assert j.get("metadata") == msg["metadata"], "metadata: got %r" % j.get("metadata")
    assert j.get("tags") == msg["tags"], "tags: got %r" % j.get("tags")
    assert j.get("subject") == msg["subject"]
    types = [e.get("type") for e in j.get("events", [])]
    assert "queued" in types and "delivered" in types, "timeline: got %r" % types

    (ev,) = webhook.wait_events_for(mid, 1, dl(10), types=("message.delivered",))
    b = ev["body"]
    assert b["id"].startswith("evt_") and ev["webhook_id"] == b["id"]
    assert b.get("created_at"), "created_at missing: %r" % b
    d = b["data"]
    assert d["message_id"] == mid
    assert d["recipient"] == "rcpt@example.com", "data.recipient: got %r" % d["recipient"]
    assert d["status"] == "delivered"
    assert d["attempt"] == 1, "data.attempt: got %r" % d["attempt"]
    assert d["metadata"] == msg["metadata"], "data.metadata: got %r" % d["metadata"]
    assert d["tags"] == msg["tags"], "data.tags: got %r" % d["tags"]
    assert d["smtp"] and d["smtp"]["code"] == 250, "data.smtp: got %r" % d["smtp"]
    check_signed_ok(webhook)


# --- 2 ---------------------------------------------------------------------------

LONG_ZH = ("这是一段很长的中文正文，用来检查编码器是否正确折行而不破坏多字节字符。" * 40)

CASES = [
    pytest.param({
        "subject": "验证码：您的登录验证码是 123456",
        "text": "李四，您好！\n\n您的登录验证码是 123456，十分钟内有效。\n请勿将验证码告诉他人。\n\n—— 张三\n",
        "html": "<p>李四，您好！</p>\n<p>您的登录验证码是 <b>123456</b>，十分钟内有效。</p>\n",
    }, id="short"),
    pytest.param({
        "subject": "【重要通知】您的账户安全设置已经更新，如非本人操作请立即联系客服人员处理，谢谢您的配合与支持 🔐 123456",
        "text": LONG_ZH + "\n第二行：结束。",
        "html": "<div>" + LONG_ZH + "</div>",
    }, id="long-lines"),
]


@pytest.mark.parametrize("case", CASES)
def test_chinese(txmail, api, smtp_peer, webhook, case):
    msg = {
        "from": "张三 <zhangsan@example.com>",
        "to": "李四 <lisi@example.com>",
        "subject": case["subject"],
        "text": case["text"],
        "html": case["html"],
    }
    mid = assert_accepted(api.send(msg), ["lisi@example.com"])
    (got,) = smtp_peer.wait_for_rcpt("lisi@example.com", dl(15))
    raw = got.raw

    # wire format: CRLF everywhere, no line over 998 octets, 7-bit only
    assert raw.endswith(b"\r\n"), "message does not end with CRLF: %r" % raw[-40:]
    for n, line in enumerate(raw[:-2].split(b"\r\n"), 1):
        assert b"\n" not in line and b"\r" not in line, "line %d has a bare CR or LF: %r" % (n, line[:120])
        assert len(line) <= 998, "line %d is %d octets (> 998)" % (n, len(line))
    bad = [i for i, c in enumerate(raw) if c >= 0x80]
    assert not bad, "raw message has 8-bit octets (first at %d: %r); the contract asks for RFC 2047 " \
                    "headers and QP/base64 bodies" % (bad[0], raw[max(0, bad[0] - 40):bad[0] + 40])

    m = got.msg
    assert not m.defects, "parser defects: %r" % (m.defects,)
    assert m["subject"] == msg["subject"], "Subject: got %r, want %r" % (str(m["subject"]), msg["subject"])
    fa = m["from"].addresses
    ta = m["to"].addresses
    assert len(fa) == 1 and fa[0].display_name == "张三" and fa[0].addr_spec == "zhangsan@example.com", \
        "From: got %r" % (fa,)
    assert len(ta) == 1 and ta[0].display_name == "李四" and ta[0].addr_spec == "lisi@example.com", \
        "To: got %r" % (ta,)
    for kind, want in (("plain", msg["text"]), ("html", msg["html"])):
        part = m.get_body((kind,))
        assert part is not None, "no text/%s part" % kind
        assert part.get_content_charset() == "utf-8", "text/%s charset: got %r" % (kind, part.get_content_charset())
        cte = str(part.get("Content-Transfer-Encoding", "")).lower()
        assert cte in ("quoted-printable", "base64"), "text/%s CTE: got %r" % (kind, cte)
        # the only normalisation allowed: CRLF -> LF, and one trailing newline added
        got_text = part.get_content().replace("\r\n", "\n")
        assert got_text in (want, want + "\n"), "text/%s differs:\n got %r\nwant %r" % (kind, got_text[:300], want[:300])

    wait_message(api, mid, lambda j: j.get("status") == "delivered", dl(10), "status delivered")
    j = api.get("/v1/messages/" + mid).json
    assert j["subject"] == msg["subject"], "GET subject: got %r" % j["subject"]
    assert j["from"] == msg["from"], "GET from: got %r" % j["from"]
    check_signed_ok(webhook)


# --- 3 ---------------------------------------------------------------------------

def test_tempfail_then_success(txmail, api, smtp_peer, webhook):
    to = "temp2-user@example.com"
    mid = assert_accepted(api.send({"from": "a@example.com", "to": to, "subject": "retry me",
                                    "text": "x", "metadata": {"k": "v"}}), [to])
    (got,) = smtp_peer.wait_for_rcpt(to, dl(20))
    j = wait_message(api, mid, lambda j: j.get("status") == "delivered", dl(10), "status delivered")
    rc = j["recipients"][0]
    assert rc["status"] == "delivered"
    assert rc["attempts"] == 3, "attempts: got %r, want 3" % rc["attempts"]
    assert rc["smtp"]["code"] == 250, "smtp: got %r" % rc["smtp"]
    tl = [e for e in j["events"] if e.get("recipient") in (to, None)]
    types = [e["type"] for e in tl]
    assert types.count("deferred") == 2, "timeline: got %r, want two deferred" % types
    assert types.count("delivered") == 1, "timeline: got %r, want one delivered" % types
    assert types.index("delivered") > max(i for i, t in enumerate(types) if t == "deferred"), types

    evs = webhook.wait_events_for(mid, 3, dl(10))
    evs = sorted(evs, key=lambda e: e["body"]["data"]["attempt"])
    got_seq = [(e["type"], e["body"]["data"]["attempt"]) for e in evs]
    assert got_seq == [("message.deferred", 1), ("message.deferred", 2), ("message.delivered", 3)], \
        "webhooks: got %r" % got_seq
    for e in evs[:2]:
        d = e["body"]["data"]
        assert d["status"] == "deferred", d
        assert d["smtp"] and d["smtp"]["code"] == 451, "deferred smtp: got %r, want 451" % d["smtp"]
        assert d["smtp"].get("enhanced") == "4.3.0", "deferred enhanced: got %r" % d["smtp"]
        assert d["metadata"] == {"k": "v"}
    assert evs[2]["body"]["data"]["smtp"]["code"] == 250
    assert len(smtp_peer.messages()) == 1, "delivered more than once"
    check_signed_ok(webhook)


# --- 4 ---------------------------------------------------------------------------

def test_permfail(txmail, api, smtp_peer, webhook):
    to = "perm-user@example.com"
    mid = assert_accepted(api.send({"from": "a@example.com", "to": to, "subject": "bounce",
                                    "text": "x"}), [to])
    j = wait_message(api, mid, lambda j: j.get("status") == "failed", dl(15), "status failed")
    rc = j["recipients"][0]
    assert rc["status"] == "failed"
    assert rc["attempts"] == 1, "attempts: got %r, want 1 (5xx is final)" % rc["attempts"]
    assert rc["smtp"]["code"] == 550, "smtp.code: got %r" % rc["smtp"]
    assert rc["smtp"]["enhanced"] == "5.1.1", "smtp.enhanced: got %r" % rc["smtp"]
    assert "failed" in [e["type"] for e in j["events"]], j["events"]

    (ev,) = webhook.wait_events_for(mid, 1, dl(10))
    assert ev["type"] == "message.failed", "webhook type: got %r" % ev["type"]
    d = ev["body"]["data"]
    assert d["reason"] == "bounced", "reason: got %r" % d.get("reason")
    assert d["status"] == "failed"
    assert d["smtp"]["code"] == 550 and d["smtp"]["enhanced"] == "5.1.1", "smtp: got %r" % d["smtp"]
    assert d["attempt"] == 1
    assert smtp_peer.count() == 0, "the peer stored a message it refused"
    check_signed_ok(webhook)


# --- 5 ---------------------------------------------------------------------------

def test_webhook_retry(txmail, api, smtp_peer, webhook):
    webhook.fail_first(3)
    mid = assert_accepted(api.send({"from": "a@example.com", "to": "hook@example.com",
                                    "subject": "hooks", "text": "x"}), ["hook@example.com"])
    (ev,) = webhook.wait_events_for(mid, 1, dl(20), types=("message.delivered",))
    wid = ev["webhook_id"]
    attempts = check_signed_ok(webhook)
    mine = [a for a in attempts if a["webhook_id"] == wid]
    assert [a["status"] for a in mine] == [500, 500, 500, 200], \
        "attempts for %s: got statuses %r (all attempts: %r)" % (
            wid, [a["status"] for a in mine], [(a["webhook_id"], a["status"]) for a in attempts])
    assert all(a["valid"] for a in mine)
    assert len(attempts) == 4, "other webhook requests seen: %r" % [(a["webhook_id"], a["status"]) for a in attempts]
    ids = {json.loads(a["body"])["id"] for a in mine}
    assert ids == {wid}, "body ids across retries: %r" % ids
    bodies = {json.loads(a["body"])["data"]["message_id"] for a in mine}
    assert bodies == {mid}
    # the operator hears of a failing endpoint once (warn), not once per retry,
    # and hears that it recovered
    def log_text():
        with open(txmail.log, encoding="utf-8", errors="replace") as f:
            return f.read()
    wait_until(lambda: "webhook endpoint recovered" in log_text(), dl(5), "the 'recovered' log line")
    text = log_text()
    failing = [ln for ln in text.splitlines() if "webhook endpoint failing" in ln]
    assert len(failing) == 1 and "level=warn" in failing[0] and "status=500" in failing[0], \
        "want one warn line for the failing endpoint, got %r" % failing
    assert text.count("webhook failed, will retry") == 3
