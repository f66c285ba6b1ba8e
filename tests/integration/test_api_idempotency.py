"""test_api_idempotency.py - Idempotency-Key on both sends (issue 3, point 2).

Owns: replay of the first answer (same ids, `Idempotent-Replayed: true`),
409 `idempotency_conflict` for another body, 20 concurrent requests with one
key creating exactly one message (and one delivery), batch replay, and keys
scoped per project (the keys of one project share them). Every answer is validated against the spec.

Must never: wait without a deadline.
"""
import threading

import spec_check
from helpers import dl

MSG = {"from": "Idem <idem@example.com>", "to": "once@example.com", "subject": "once", "text": "only once"}


def test_replay_and_conflict(capi, smtp_peer):
    h = {"Idempotency-Key": "order-42"}
    r1 = capi.send(MSG, headers=h)
    assert r1.status == 202, "got %r" % r1
    assert "idempotent-replayed" not in r1.headers, "got %r on the first answer" % r1.headers
    r2 = capi.send(MSG, headers=h)
    assert r2.status == 202, "got %r" % r2
    assert r2.headers.get("idempotent-replayed") == "true", "got headers %r" % r2.headers
    assert r2.json == r1.json, "got %r, want the first answer %r" % (r2.json, r1.json)
    r3 = capi.send(dict(MSG, text="another body"), headers=h)
    assert r3.status == 409 and r3.json["error"]["type"] == "idempotency_conflict", "got %r" % r3
    r4 = capi.send(MSG, headers={"Idempotency-Key": "order-43"})
    assert r4.status == 202 and r4.json["id"] != r1.json["id"], "got %r, want a new message" % r4
    smtp_peer.wait_count(2, dl(15))
    msgs = smtp_peer.messages()
    assert len(msgs) == 2, "got %d deliveries, want 2 (one per key)" % len(msgs)


def test_concurrent_same_key_one_message(txmail, spec_validator, smtp_peer):
    n = 20
    body = dict(MSG, to="race@example.com")
    results = [None] * n
    errors = []
    start = threading.Barrier(n)

    def worker(i):
        c = spec_check.CheckedClient(txmail.port, spec_validator, key=txmail.key)
        try:
            start.wait(timeout=dl(10))
            results[i] = c.send(body, headers={"Idempotency-Key": "race-key"})
        except Exception as e:  # reported below
            errors.append("thread %d: %r" % (i, e))
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(dl(30))
    assert not errors, "got errors: %s" % errors
    statuses = sorted(r.status for r in results)
    ok = [r for r in results if r.status == 202]
    # a request racing the first one may be told to retry (409) but never
    # gets a second message
    assert ok and all(r.status in (202, 409) for r in results), "got statuses %s" % statuses
    ids = {r.json["id"] for r in ok}
    assert len(ids) == 1, "got %d message ids among the 202s, want 1: %s" % (len(ids), ids)
    fresh = [r for r in ok if r.headers.get("idempotent-replayed") != "true"]
    assert len(fresh) == 1, "got %d answers without Idempotent-Replayed, want exactly 1" % len(fresh)
    smtp_peer.wait_for_rcpt("race@example.com", dl(15))
    # one more send through another key flushes the queue behind it
    c = spec_check.CheckedClient(txmail.port, spec_validator, key=txmail.key)
    try:
        assert c.send(dict(MSG, to="after@example.com")).status == 202
    finally:
        c.close()
    smtp_peer.wait_for_rcpt("after@example.com", dl(15))
    got = [m for m in smtp_peer.messages() if "race@example.com" in m.meta["rcpt_tos"]]
    assert len(got) == 1, "got %d deliveries to race@example.com, want 1" % len(got)


def test_batch_replay(capi):
    batch = {"messages": [dict(MSG, to="b%d@example.com" % i) for i in range(3)]}
    h = {"Idempotency-Key": "batch-1"}
    r1 = capi.post_json("/v1/messages/batch", batch, headers=h)
    assert r1.status == 202, "got %r" % r1
    r2 = capi.post_json("/v1/messages/batch", batch, headers=h)
    assert r2.status == 202 and r2.headers.get("idempotent-replayed") == "true", "got %r %r" % (r2, r2.headers)
    assert [d["id"] for d in r2.json["data"]] == [d["id"] for d in r1.json["data"]], "got other ids"
    batch["messages"].pop()
    r3 = capi.post_json("/v1/messages/batch", batch, headers=h)
    assert r3.status == 409 and r3.json["error"]["type"] == "idempotency_conflict", "got %r" % r3


def test_keys_scoped_per_project(txmail_factory, spec_validator):
    """Idempotency-Keys belong to the project (issue 11): two TXMAIL_API_KEYS keys are both
    the project "default", so the second send is a replay. Two projects not sharing one:
    test_key_scopes.py (stored keys with --project)."""
    keys = ["txm_test_scope_a_0123456789", "txm_test_scope_b_0123456789"]
    t = txmail_factory(extra_env={"TXMAIL_API_KEYS": ",".join(keys)})
    ids = []
    for i, k in enumerate(keys):
        c = spec_check.CheckedClient(t.port, spec_validator, key=k)
        try:
            r = c.send(MSG, headers={"Idempotency-Key": "shared-key"})
            replayed = r.headers.get("idempotent-replayed") == "true"
            assert r.status == 202 and replayed == (i == 1), "key %d of project default: got %r" % (i, r)
            ids.append(r.json["id"])
        finally:
            c.close()
    assert ids[0] == ids[1], "two keys of one project: got two messages %s, want one" % ids
