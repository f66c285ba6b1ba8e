"""test_api_batch.py - POST /v1/messages/batch (issue 3, point 1).

Owns: a 500-message batch accepted at once and delivered in full to the
SMTP peer (every message, every recipient, each with its own Message-ID),
all-or-nothing validation naming the field (`messages[3].to[0]`, nothing
enqueued), and the 500 cap. Every answer is validated against the spec
(CheckedClient).

Must never: wait without a deadline or pass on a partial delivery.
"""
import time

from helpers import dl
from spec_check import wait_message, all_terminal

FROM = "Batch <batch@example.com>"


def test_batch_500_delivered_in_full(capi, smtp_peer, webhook):
    msgs = [{"from": FROM, "to": "b%03d@example.com" % i, "subject": "batch %d" % i,
             "text": "message %d of 500" % i, "metadata": {"i": i}} for i in range(500)]
    t0 = time.monotonic()
    r = capi.post_json("/v1/messages/batch", {"messages": msgs})
    assert r.status == 202, "got %d, want 202: %r" % (r.status, r)
    data = r.json["data"]
    assert len(data) == 500, "got %d entries, want 500" % len(data)
    ids = [d["id"] for d in data]
    assert len(set(ids)) == 500, "got %d distinct ids, want 500" % len(set(ids))
    for i, d in enumerate(data):  # request order is kept
        assert [x["email"] for x in d["recipients"]] == ["b%03d@example.com" % i], "entry %d: got %r" % (i, d)
        assert d["status"] == "queued", "entry %d: got %r, want queued" % (i, d["status"])
    got = smtp_peer.wait_count(500, dl(90), "all 500 batch messages at the SMTP peer")
    took = time.monotonic() - t0
    rcpts = sorted(r for m in got for r in m.meta["rcpt_tos"])
    assert rcpts == ["b%03d@example.com" % i for i in range(500)], "got %d recipients (first %r)" % (
        len(rcpts), rcpts[:5])
    subjects = {str(m.msg["subject"]) for m in got}
    assert len(subjects) == 500, "got %d distinct subjects, want 500" % len(subjects)
    assert len({m.message_id for m in got}) == 500, "got duplicate Message-IDs"
    # the API agrees: spot-check first, middle and last
    for i in (0, 249, 499):
        body = wait_message(capi, ids[i], all_terminal, dl(10), "batch message %d terminal" % i)
        assert body["status"] == "delivered", "message %d: got %r, want delivered" % (i, body["status"])
        assert body["metadata"] == {"i": i}, "message %d: got metadata %r" % (i, body["metadata"])
    print("500-message batch delivered in %.1fs" % took)


def test_batch_validation_all_or_nothing(capi, smtp_peer):
    good = {"from": FROM, "to": "ok@example.com", "subject": "s", "text": "t"}
    msgs = [dict(good) for _ in range(5)]
    msgs[3] = dict(good, to=["not an address"])
    r = capi.post_json("/v1/messages/batch", {"messages": msgs})
    assert r.status == 422, "got %d, want 422: %r" % (r.status, r)
    assert r.json["error"]["field"] == "messages[3].to[0]", "got field %r, want messages[3].to[0]" % (
        r.json["error"]["field"],)
    msgs[3] = dict(good, headers={"X-A": "a\r\nb"})
    r = capi.post_json("/v1/messages/batch", {"messages": msgs})
    assert r.status == 422 and r.json["error"]["field"] == "messages[3].headers.X-A", "got %r" % r
    r = capi.post_json("/v1/messages/batch", {"messages": [good] * 501})
    assert r.status == 422, "got %d, want 422 for 501 messages: %r" % (r.status, r)
    assert r.json["error"]["field"] == "messages", "got field %r, want messages" % r.json["error"]["field"]
    for body in ({"messages": []}, {"messages": "x"}, {}, {"messages": [good], "extra": 1}):
        r = capi.post_json("/v1/messages/batch", body)
        assert r.status == 422, "body %r: got %d, want 422" % (body, r.status)
    # nothing of the refused batches was enqueued: a later good send is the only mail
    r = capi.send(dict(good, to="marker@example.com"))
    assert r.status == 202, "got %r" % r
    got = smtp_peer.wait_for_rcpt("marker@example.com", dl(15))
    assert smtp_peer.count() == 1, "got %d messages at the peer, want only the marker" % smtp_peer.count()
    assert got[0].meta["rcpt_tos"] == ["marker@example.com"], "got %r" % got[0].meta
