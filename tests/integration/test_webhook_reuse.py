"""test_webhook_reuse.py - webhooks to one endpoint reuse their connections.

Owns: the dispatcher's keep-alive. Each request reuses a curl easy handle
and a connection from the multi handle's cache, so 200 events to one
endpoint open at most a few TCP connections: TXMAIL_WEBHOOK_CONNECTIONS
(4 here) requests run at once, and a connection is only opened again when
one was lost. The receiver counts the connections it accepted; a dispatcher
that opened one per request (no keep-alive, a handle or cache thrown away
per request) would show ~200 and fail. Every event must arrive, signed
(the receiver checks each signature), each message's webhook-id once at
least.

Must never: wait without a deadline.
"""
import spec_check
from helpers import dl

N = 200
CAP = 4


def test_200_events_few_connections(txmail_factory, spec_validator, webhook, smtp_peer):
    t = txmail_factory(extra_env={"TXMAIL_WEBHOOK_CONNECTIONS": str(CAP)})
    c = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
    ids = set()
    for i in range(N):
        r = c.send({"from": "a@example.com", "to": "reuse%d@example.com" % i, "subject": "s", "text": "t"})
        assert r.status == 202, "got %r, want 202" % r
        ids.add(r.json["id"])
    c.close()

    def all_delivered(events):
        got = {e["body"]["data"]["message_id"] for e in events if e["type"] == "message.delivered"}
        return ids <= got
    webhook.wait_for(all_delivered, dl(60), "message.delivered for all %d messages" % N)
    _, _, failures = webhook.snapshot()
    assert not failures, "got bad requests %s, want none" % [f["reason"] for f in failures[:3]]
    n = webhook.connections()
    assert 1 <= n <= 2 * CAP, (
        "got %d TCP connections for %d webhooks to one endpoint (TXMAIL_WEBHOOK_CONNECTIONS=%d), "
        "want at most %d: connections are not kept alive and reused" % (n, N, CAP, 2 * CAP))
