"""test_metrics.py - GET /metrics (Prometheus text) and GET / (dashboard).

Owns: a message to a temp1- recipient (the SMTP peer answers 4xx once, then
accepts) shows up in the per-process counters of a `txmail run` process
(accepted >= 1, deferred >= 1, delivered >= 1), the HTTP counter counts the
send, the queue gauges read from Redis (ready and claimed per lane, due,
events) are present and parse, every sample
line is well-formed exposition text with a TYPE line, neither route needs a
key, and GET / is a self-contained HTML page. Answers are checked against
the spec (capi).

Must never: wait without a deadline.
"""
import re

from helpers import dl, wait_until

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+]+|NaN|\+Inf|-Inf)$')


def parse(text):
    """{(name, labels-string): float}; fails on a malformed line or a sample without TYPE."""
    typed, out = set(), {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            parts = line.split()
            assert len(parts) == 4 and parts[3] in ("counter", "gauge", "histogram"), "got TYPE line %r" % line
            typed.add(parts[2])
            continue
        if line.startswith("#"):
            assert line.startswith("# HELP "), "got comment line %r, want HELP/TYPE" % line
            continue
        m = SAMPLE_RE.match(line)
        assert m, "got malformed sample line %r" % line
        base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in typed or base in typed, "got sample %r before its # TYPE line" % line
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def by_status(m, status):
    """txmail_recipients_total of one status, summed over its reasons."""
    return sum(v for (n, lb), v in m.items()
               if n == "txmail_recipients_total" and ('status="%s"' % status) in lb)


def scrape(capi):
    r = capi.get("/metrics", auth=False)
    assert r.status == 200, "got %d, want 200: %r" % (r.status, r)
    ctype = r.headers.get("content-type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, \
        "got Content-Type %r, want text/plain; version=0.0.4" % ctype
    return parse(r.body.decode("utf-8"))


def test_metrics_counts_a_deferred_then_delivered_recipient(txmail, capi, smtp_peer):
    before = scrape(capi)
    assert before[("txmail_up", "")] == 1, "got txmail_up %r, want 1" % before.get(("txmail_up", ""))
    assert before[("txmail_redis_up", "")] == 1, "got txmail_redis_up %r, want 1" % (
        before.get(("txmail_redis_up", "")),)

    r = capi.send({"from": "a@example.com", "to": "temp1-metrics@example.com",
                   "subject": "metrics", "text": "hello"})
    assert r.status == 202, "got %d, want 202: %r" % (r.status, r)
    mid = r.json["id"]

    def delivered():
        g = capi.get("/v1/messages/" + mid)
        return g.status == 200 and g.json["recipients"][0]["status"] == "delivered"
    wait_until(delivered, dl(30), "temp1- recipient delivered")

    def counted():
        m = scrape(capi)
        ok = by_status(m, "delivered") >= 1 and by_status(m, "deferred") >= 1
        return m if ok else None
    m = wait_until(counted, dl(10), "delivered and deferred counted")

    assert m[("txmail_messages_accepted_total", "")] >= 1, "got accepted %r, want >= 1" % (
        m[("txmail_messages_accepted_total", "")],)
    sends = m.get(("txmail_http_requests_total", '{route="/v1/messages",code_class="2xx"}'), 0)
    assert sends >= 1, "got %r POST /v1/messages 2xx, want >= 1" % sends
    assert m.get(("txmail_smtp_transactions_total", '{result="tempfail"}'), 0) >= 1, \
        "got no tempfail SMTP transaction counted"
    assert m.get(("txmail_smtp_transactions_total", '{result="ok"}'), 0) >= 1, \
        "got no ok SMTP transaction counted"
    # ready (not claimed) and claimed are separate gauges, one per lane
    for g, labels in (("txmail_queue_ready", '{lane="normal"}'), ("txmail_queue_ready", '{lane="high"}'),
                      ("txmail_queue_claimed", '{lane="normal"}'), ("txmail_queue_claimed", '{lane="high"}'),
                      ("txmail_queue_due", ""), ("txmail_events_retained", "")):
        assert (g, labels) in m, "got no gauge %s%s in %s" % (g, labels, sorted(k for k, _ in m))
        v = m[(g, labels)]
        assert v >= 0 and v == int(v), "got %s%s %r, want a count" % (g, labels, v)
    # the outbox holds at least the deferred and delivered events of this message
    assert m[("txmail_events_retained", "")] >= 2, "got events_retained %r, want >= 2" % (
        m[("txmail_events_retained", "")],)
    # the default webhook receiver answered the attempts
    wait_until(lambda: scrape(capi).get(("txmail_webhook_attempts_total", '{result="success"}'), 0) >= 1,
               dl(15), "a successful webhook attempt counted")


def test_metrics_counts_errors_by_route_pattern(txmail, capi):
    r = capi.get("/v1/messages/msg_nope")
    assert r.status == 404, "got %d, want 404" % r.status
    r = capi.get("/v1/messages/msg_nope", auth=False)
    assert r.status == 401, "got %d, want 401" % r.status
    m = scrape(capi)
    got = m.get(("txmail_http_requests_total", '{route="/v1/messages/*",code_class="4xx"}'), 0)
    assert got >= 2, "got %r 4xx on /v1/messages/*, want >= 2" % got
    # the raw path a client chose never becomes a label
    assert not any("msg_nope" in labels for _, labels in m), "got a client path in a label"


def test_dashboard_is_self_contained_html(txmail, capi):
    r = capi.get("/", auth=False)
    assert r.status == 200, "got %d, want 200" % r.status
    assert r.headers.get("content-type", "").startswith("text/html"), \
        "got Content-Type %r, want text/html" % r.headers.get("content-type")
    page = r.body.decode("utf-8")
    assert "txmail" in page, "got a page without 'txmail'"
    assert "/metrics" in page, "got a page that does not poll /metrics"
    assert not re.search(r'(src|href)="https?://', page), "got an external asset in the page"
    # "/" matches only itself (an unchecked client: the spec has no /nope/)
    c = txmail.client()
    try:
        r = c.get("/nope/", auth=False)
    finally:
        c.close()
    assert r.status == 404, "got %d for /nope/, want 404" % r.status
