"""test_fair_projects.py - fair between projects inside a lane (issue 14, item 4).

Owns: two projects, A and B (stored keys, `txmail keys create --name`), one
`txmail run` with concurrency 4 and a real SMTP peer that numbers what it
accepts (seq, in arrival order). Each project first sends one message, so
both have their ready stream and the delivery loop knows it (its list of
streams is at most a second old). Then A posts a 2,000-message batch and,
while it is being delivered, B posts one message: B's must arrive before at
most a few dozen of A's remaining ones (an order assertion: the A messages
the peer accepted after B's send returned and before B's). With one stream
per lane B's message waited behind all of A's (about 1,900 of them). Then
everything arrives, each message once.

Must never: assert on time (only on the order the peer saw), post B's
message before A's batch is stored, or wait without a deadline.
"""
import time

import helpers
from helpers import dl, wait_until

BATCH = 2000
CHUNK = 500          # messages per POST /v1/messages/batch
CONCURRENCY = 4
AHEAD_MAX = 40       # A's messages that may still arrive before B's: the in-flight ones and a few fetches
WARM = int(helpers.PARTITIONS or 1)   # warm-up sends per project: one into each partition


def send(c, to):
    r = c.send({"from": "p@example.com", "to": to, "subject": to, "text": "x"})
    assert r.status == 202, "send to %s: got %s" % (to, r)
    return r.json["id"]


def rcpt_of(m):
    return (m.meta.get("rcpt_tos") or [""])[0].lower()


def test_one_message_not_behind_another_projects_batch(txmail_binary, redis, txmail_factory,
                                                       smtp_peer):
    ka, kb = helpers.make_key(txmail_binary, redis, "A"), helpers.make_key(txmail_binary, redis, "B")
    t = txmail_factory(extra_env={"TXMAIL_WORKER_CONCURRENCY": str(CONCURRENCY)})
    a, b = helpers.Client(t.port, key=ka), helpers.Client(t.port, key=kb)
    try:
        # both projects have sent before: their streams exist and the loop has seen them -
        # in every partition (TXM_PARTITIONS: the sends go to the partitions in turn)
        for i in range(WARM):
            send(a, "warm-a%d@example.com" % i)
        for i in range(WARM):
            send(b, "warm-b%d@example.com" % i)
        smtp_peer.wait_count(2 * WARM, dl(30), "the warm-up messages")
        time.sleep(1.5)     # not an assertion: the loop's stream list is at most 1 s old

        for start in range(0, BATCH, CHUNK):
            msgs = [{"from": "bulk@example.com", "to": "a%04d@example.com" % i,
                     "subject": "a %d" % i, "text": "bulk %d" % i}
                    for i in range(start, start + CHUNK)]
            r = a.post_json("/v1/messages/batch", {"messages": msgs})
            assert r.status == 202, "A's batch at %d: got %s %r" % (start, r.status, r.body[:300])
        bid = send(b, "one-b@example.com")
        before = smtp_peer.count() - 2 * WARM   # A's batch messages accepted before B's send returned

        (one,) = smtp_peer.wait_for_rcpt("one-b@example.com", dl(60))
        got = smtp_peer.messages()
        a_before_b = [m for m in got if m.seq < one.seq and rcpt_of(m).startswith("a")]
        ahead = len(a_before_b) - before
        print("A's batch: %d accepted before B's send returned, %d more before B's message "
              "(of %d still queued then)" % (before, ahead, BATCH - before))
        assert BATCH - before > 500, (
            "A's batch was nearly delivered (%d of %d) before B posted: the order proves nothing"
            % (before, BATCH))
        assert ahead <= AHEAD_MAX, (
            "B's message arrived after %d more of A's (want at most %d of the %d still queued)"
            % (ahead, AHEAD_MAX, BATCH - before))

        # and A's batch is not starved: everything arrives, each once
        got = smtp_peer.wait_count(BATCH + 2 * WARM + 1, dl(300), "A's whole batch at the SMTP peer")
        rcpts = [rcpt_of(m) for m in got]
        want = {"a%04d@example.com" % i for i in range(BATCH)} | {"one-b@example.com"} | {
            "warm-%s%d@example.com" % (p, i) for p in "ab" for i in range(WARM)}
        assert set(rcpts) == want, "missing: %r" % sorted(want - set(rcpts))[:10]
        assert len(rcpts) == len(want), "duplicates: %d deliveries for %d recipients" % (
            len(rcpts), len(want))
        j = wait_until(lambda: (lambda r: r.json if r.json.get("status") == "delivered" else None)(
            b.get("/v1/messages/" + bid)), dl(10), "B's message delivered")
        assert j["recipients"][0]["attempts"] == 1, j
        assert t.alive()
    finally:
        a.close()
        b.close()
