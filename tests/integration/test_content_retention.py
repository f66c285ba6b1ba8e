"""test_content_retention.py - a message's content leaves Redis once it is finished (issue 13).

Owns: the MIME lives in its own key, txm{0}:msg:<id>:mime, while a
recipient can still be attempted; with TXMAIL_CONTENT_RETENTION unset (0)
it is gone in the step that makes the last recipient terminal (delivered,
canceled, all suppressed at accept), and a deferred recipient keeps it
until its retry is delivered; with a retention of N s it is there (PTTL
<= N s) and then goes. GET /v1/messages/{id} keeps answering the summary
and the timeline with `content: deleted` (answers validated against the
spec). A message stored by the release before projects (its MIME in the
hash's "mime" field) is read, delivered with that content, and then loses
it the same way. A deliverable recipient whose content is missing fails
loudly (error log line, status failed) and nothing is sent.

Must never: wait without a deadline, or sleep "long enough".
"""
import json
import os
import time

import helpers
from helpers import dl
from spec_check import wait_message, all_terminal

# asserts message and content keys under txm{0}: TXMAIL_PARTITIONS stays 1 under TXM_PARTITIONS (conftest)
ONE_PARTITION = True

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "store_before_projects.txt")
BODY = "Your verification code is 482913.\n"


def ckey(mid):
    return "txm{0}:msg:%s:mime" % mid


def content_in_redis(redis, mid):
    """1 while the message's MIME is anywhere in Redis (its key or the old hash field)."""
    return int(redis.cmd("EXISTS", ckey(mid))) + int(redis.cmd("HEXISTS", "txm{0}:msg:" + mid, "mime"))


def send(api, to, **extra):
    m = {"from": "a@example.com", "to": to, "subject": "Your code", "text": BODY}
    m.update(extra)
    r = api.send(m)
    assert r.status == 202, "POST /v1/messages: got %r, want 202" % r
    return r.json["id"]


def check_summary(body, status):
    assert body["status"] == status, "status: got %r, want %r" % (body["status"], status)
    assert body["content"] == "deleted", "content: got %r, want deleted" % body.get("content")
    assert body["subject"] == "Your code" and body["recipients"], "summary: got %r" % body
    types = [e.get("type") for e in body["events"]]
    assert len(types) >= 2, "timeline: got %r, want the accept and the outcome" % types


def test_content_deleted_when_delivered(capi, redis, smtp_peer):
    redis.cmd("CONFIG", "SET", "hash-max-listpack-value", "256")   # as deploy/redis.conf
    mid = send(capi, "otp@example.com")
    (got,) = smtp_peer.wait_for_rcpt("otp@example.com", dl(15))
    assert b"482913" in got.raw, "the peer got no body: %r" % got.raw[-200:]
    body = wait_message(capi, mid, all_terminal, dl(10), "delivered")
    check_summary(body, "delivered")
    # terminal and content gone are one script: no window between them
    assert content_in_redis(redis, mid) == 0, "the MIME is still in Redis after delivery"
    h = redis.cmd("HGETALL", "txm{0}:msg:" + mid)
    assert not any("482913" in x for x in h), "the code is still in the message hash: %r" % h
    assert redis.cmd("EXISTS", "txm{0}:msg:" + mid) == 1 and int(redis.cmd("PTTL", "txm{0}:msg:" + mid)) > 0
    # one key per finished message: the timeline folded into the hash, what only delivery needed gone
    fields = dict(zip(h[::2], h[1::2]))
    assert redis.cmd("EXISTS", "txm{0}:msg:%s:tl" % mid) == 0 and "tl" in fields, "timeline not folded: %r" % h
    assert not {"mail_from", "expires", "tenant", "id", "mime"} & set(fields), "fields kept: %r" % sorted(fields)
    # with deploy/redis.conf's limit (set below) the finished hash stays compact
    enc = redis.cmd("OBJECT", "ENCODING", "txm{0}:msg:" + mid)
    assert enc == "listpack", "encoding: got %r, want listpack: %r" % (enc, h)


def test_content_kept_while_scheduled_then_canceled(capi, redis):
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    mid = send(capi, "later@example.com", send_at=at)
    assert content_in_redis(redis, mid) == 1, "no content stored for a scheduled message"
    assert capi.get("/v1/messages/" + mid).json["content"] == "stored"
    r = capi.request("DELETE", "/v1/messages/" + mid)
    assert r.status in (200, 202), "cancel: got %r" % r
    assert content_in_redis(redis, mid) == 0, "the MIME is still in Redis after cancel"
    check_summary(capi.get("/v1/messages/" + mid).json, "canceled")


def test_content_gone_when_all_suppressed(capi, redis):
    r = capi.post_json("/v1/suppressions", {"email": "blocked@example.com"})
    assert r.status in (200, 201), "got %r" % r
    mid = send(capi, "blocked@example.com")
    assert content_in_redis(redis, mid) == 0, "the MIME of an all-suppressed message was stored"
    check_summary(capi.get("/v1/messages/" + mid).json, "suppressed")


def test_deferred_keeps_content_until_delivered(capi, redis, smtp_peer):
    # temp2-: the first two RCPTs get 451, the third attempt is delivered
    mid = send(capi, ["temp2-otp@example.com", "now@example.com"])

    def deferred():
        j = capi.get("/v1/messages/" + mid).json
        st = {x["email"]: x for x in j["recipients"]}
        return j if st["now@example.com"]["status"] == "delivered" and \
            st["temp2-otp@example.com"]["attempts"] >= 1 and \
            st["temp2-otp@example.com"]["status"] != "delivered" else None
    j = helpers.wait_until(deferred, dl(15), "one delivered, the other deferred")
    assert j["content"] == "stored", "content: got %r while a recipient is deferred" % j["content"]
    assert content_in_redis(redis, mid) == 1
    (got,) = smtp_peer.wait_for_rcpt("temp2-otp@example.com", dl(20))
    assert b"482913" in got.raw, "the retry had no body"
    body = wait_message(capi, mid, all_terminal, dl(10), "retry delivered")
    check_summary(body, "delivered")
    assert content_in_redis(redis, mid) == 0


def test_retention_keeps_content_then_expires(txmail_factory, redis, smtp_peer, spec_validator):
    import spec_check
    t = txmail_factory(extra_env={"TXMAIL_CONTENT_RETENTION": "2"})
    c = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
    try:
        mid = send(c, "kept@example.com")
        smtp_peer.wait_for_rcpt("kept@example.com", dl(15))
        body = wait_message(c, mid, all_terminal, dl(10), "delivered")
        assert body["status"] == "delivered"
        ttl = int(redis.cmd("PTTL", ckey(mid)))
        # 2 s from the delivery step on; -2 would mean already gone, -1 no expiry
        assert 0 < ttl <= 2000, "PTTL of the content: got %d, want 0 < ttl <= 2000" % ttl
        assert redis.cmd("HEXISTS", "txm{0}:msg:" + mid, "mime") == 0
        assert c.get("/v1/messages/" + mid).json["content"] in ("stored", "deleted")
        helpers.wait_until(lambda: content_in_redis(redis, mid) == 0, dl(10), "the content expires")
        check_summary(c.get("/v1/messages/" + mid).json, "delivered")
    finally:
        c.close()


def load_fixture(redis):
    with open(FIXTURE) as f:
        for line in f:
            if line.strip():
                redis.cmd(*json.loads(line))


def test_old_message_delivered_then_content_gone(txmail_factory, redis, smtp_peer):
    load_fixture(redis)
    old = [k.split(":", 2)[2] for k in redis.cmd("KEYS", "txm{0}:msg:*")
           if k.count(":") == 2 and redis.cmd("HGET", k, "subject") == "Old scheduled"]
    assert len(old) == 1, "fixture: got %r" % old
    mid = old[0]
    assert redis.cmd("HEXISTS", "txm{0}:msg:" + mid, "mime") == 1, "the fixture's MIME is not in the hash"
    t = txmail_factory()
    api = t.client()
    try:
        assert api.get("/v1/messages/" + mid).json["content"] == "stored"
        # due now instead of in three weeks: promote, claim, deliver with the hash's MIME
        redis.cmd("ZADD", "txm{0}:due", str(int(time.time() * 1000)), mid + "/0")
        (got,) = smtp_peer.wait_for_rcpt("later@example.com", dl(20))
        assert b"Subject: Old scheduled" in got.raw and got.raw.rstrip().endswith(b"x"), \
            "the old message's content was not what was sent: %r" % got.raw[-300:]
        j = helpers.wait_status(api, mid, "delivered", dl(10))
        assert j["content"] == "deleted" and j["subject"] == "Old scheduled", "got %r" % j
        assert content_in_redis(redis, mid) == 0, "the old hash's MIME stayed after delivery"
    finally:
        api.close()


def test_missing_content_fails_loudly(txmail_factory, redis, smtp_peer):
    t = txmail_factory()
    api = t.client()
    try:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        mid = send(api, "lost@example.com", send_at=at)
        redis.cmd("DEL", ckey(mid))          # a broken store: content gone, recipient deliverable
        redis.cmd("ZADD", "txm{0}:due", str(int(time.time() * 1000)), mid + "/0")
        j = helpers.wait_status(api, mid, "failed", dl(15))
        assert "content missing" in json.dumps(j["events"]), "timeline: got %r" % j["events"]
        helpers.wait_until(lambda: "message content missing from the store" in helpers.read_text(t.log),
                           dl(5), "the error log line")
        # the failure was recorded instead of a send: nothing can reach the peer after it
        assert not any("lost@example.com" in m.meta.get("rcpt_tos", []) for m in smtp_peer.messages()), \
            "an empty message was sent"
    finally:
        api.close()
