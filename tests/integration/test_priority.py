"""test_priority.py - the priority lanes: "priority": "high" messages are
delivered before a queued backlog of normal ones (txm{0}:ready:high is read
first), every message still arrives, and the field is validated and echoed.

Owns: a 2,000-message normal backlog enqueued by `txmail api` alone, one
high message after it, then one `txmail worker` with concurrency 2: the high
message must be among the first few the SMTP peer accepts (by its seq).
Without lanes it would arrive last. Then a second worker joins to deliver
the rest: all 2,001 arrive, none twice.

Must never: start the worker before the backlog and the high message are
stored (the order would then prove nothing), or wait without a deadline.
"""

import spec_check
from helpers import dl, wait_until

FROM = "Bulk <bulk@example.com>"
BACKLOG = 2000
BATCH = 500
CONCURRENCY = 2
VIP = "vip@example.com"


def test_high_priority_overtakes_backlog(txmail_factory, spec_validator, smtp_peer):
    api_p = txmail_factory(args=("api",))
    c = spec_check.CheckedClient(api_p.port, spec_validator, key=api_p.key)

    # the field is validated, in single sends and per batch item
    r = c.send({"from": FROM, "to": "x@example.com", "text": "x", "priority": "urgent"})
    assert r.status == 422, "priority urgent: got %s %r" % (r.status, r.body[:300])
    assert r.json["error"]["field"] == "priority", r.json
    r = c.post_json("/v1/messages/batch", {"messages": [
        {"from": FROM, "to": "x@example.com", "text": "x"},
        {"from": FROM, "to": "y@example.com", "text": "y", "priority": 1}]})
    assert r.status == 422, "batch priority 1: got %s %r" % (r.status, r.body[:300])
    assert r.json["error"]["field"] == "messages[1].priority", r.json

    ids = []
    for start in range(0, BACKLOG, BATCH):
        msgs = [{"from": FROM, "to": "bulk%04d@example.com" % i, "subject": "bulk %d" % i,
                 "text": "newsletter %d" % i,
                 # explicit "normal" on half of them: the default and the value are the same lane
                 **({"priority": "normal"} if i % 2 else {})}
                for i in range(start, start + BATCH)]
        r = c.post_json("/v1/messages/batch", {"messages": msgs})
        assert r.status == 202, "batch at %d: got %s %r" % (start, r.status, r.body[:300])
        ids.extend(d["id"] for d in r.json["data"])
    r = c.send({"from": "Login <login@example.com>", "to": VIP, "subject": "Your code",
                "text": "123456", "priority": "high"})
    assert r.status == 202, "high send: got %s %r" % (r.status, r.body[:300])
    vip_id = r.json["id"]

    r = c.get("/v1/messages/" + vip_id)
    assert r.status == 200 and r.json["priority"] == "high", r
    r = c.get("/v1/messages/" + ids[0])
    assert r.status == 200 and r.json["priority"] == "normal", r
    r = c.get("/v1/messages/" + ids[1])
    assert r.status == 200 and r.json["priority"] == "normal", r
    assert smtp_peer.count() == 0, "nothing may be delivered before the worker starts"

    worker = txmail_factory(args=("worker",), http=False,
                            extra_env={"TXMAIL_WORKER_CONCURRENCY": str(CONCURRENCY)})
    (vip,) = smtp_peer.wait_for_rcpt(VIP, dl(30))
    got = smtp_peer.messages()
    order = [m.seq for m in got]
    pos = order.index(vip.seq)
    limit = 2 * CONCURRENCY + 3
    assert pos < limit, "the high message was delivery #%d (want one of the first %d); peer had %d" % (
        pos + 1, limit, len(got))

    print("high message delivered as #%d of %d at the peer" % (pos + 1, len(got)))

    # and the backlog is not starved: everything arrives, each once. A second
    # worker at the default concurrency joins for the rest (the order is proven;
    # 2,000 deliveries two at a time took ~30 s) and both share the lanes.
    drain = txmail_factory(args=("worker",), http=False)
    got = smtp_peer.wait_count(BACKLOG + 1, dl(240), "the whole backlog at the SMTP peer")
    rcpts = [r.lower() for m in got for r in m.meta.get("rcpt_tos", [])]
    want = {"bulk%04d@example.com" % i for i in range(BACKLOG)} | {VIP}
    assert set(rcpts) == want, "missing: %r" % sorted(want - set(rcpts))[:10]
    assert len(rcpts) == BACKLOG + 1, "duplicates: %d deliveries for %d recipients" % (len(rcpts), BACKLOG + 1)
    j = wait_until(lambda: (lambda r: r.json if r.json.get("status") == "delivered" else None)(
        c.get("/v1/messages/" + vip_id)), dl(10), "the high message delivered")
    assert j["priority"] == "high" and j["recipients"][0]["attempts"] == 1, j
    assert worker.alive() and drain.alive() and api_p.alive()
    c.close()
