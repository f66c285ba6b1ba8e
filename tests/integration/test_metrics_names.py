"""test_metrics_names.py - every metric people alert on exists in a live
scrape, with values that follow from the mail sent, and the scrape passes
`promtool check metrics`.

Owns: a `txmail run` process and a real SMTP peer (tests/integration/peers/
smtpd.py, via the relay) that accepts one recipient (250 2.0.0), defers
another three times (451 4.3.0) before accepting it, refuses a third
(550 5.1.1) and holds a fourth (slow-) at the end of DATA. While the slow
one is in flight the queue gauges show it claimed, not ready (the old
"ready" counted claimed entries too). Once all are settled: each recipient
is counted once in txmail_recipients_total (the deferred one once, with its
enhanced class as reason, while txmail_delivery_attempts_total counts its
three deferred attempts), the delivered ones have latency observations, the
replies are counted by enhanced class, the per-destination outcomes add up
to the attempts, and every histogram, gauge and process figure is there.
In the split deployment (`txmail api` + `txmail worker`) each process
counts what it did: the worker's admin listener (TXMAIL_ADMIN_LISTEN) shows
the deliveries and webhooks, the api's port the accepts, both pass
promtool, and both show the same queue gauges.

Must never: wait without a deadline, depend on another test's process.
"""
import os
import re
import shutil
import subprocess
import time

import pytest

from helpers import Client, SmtpPeer, dl, free_port, send_text, wait_status, wait_until

PROMTOOL = shutil.which("promtool")
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

HISTOGRAMS = {
    "txmail_accept_duration_seconds": "route",
    "txmail_delivery_latency_seconds": "priority",
    "txmail_smtp_transaction_duration_seconds": "result",
    "txmail_webhook_latency_seconds": None,
}
COUNTERS = {
    "txmail_recipients_total": ("status", "reason"),
    "txmail_delivery_attempts_total": ("result",),
    "txmail_smtp_replies_total": ("class",),
    "txmail_destination_outcomes_total": ("destination", "result"),
    "txmail_messages_accepted_total": (),
    "txmail_http_requests_total": ("route", "code_class"),
    "txmail_deliveries_parked_total": (),
    "txmail_complaints_total": ("feedback_type",),
    "process_cpu_seconds_total": (),
}
GAUGES = {
    "txmail_queue_ready": ("lane",),
    "txmail_queue_claimed": ("lane",),
    "txmail_queue_oldest_age_seconds": ("lane",),
    "txmail_queue_due": (),
    "txmail_events_retained": (),
    "txmail_destinations_suspended": (),
    "txmail_destinations_at_cap": (),
    "txmail_destination_waiting": (),
    "txmail_webhook_backlog": ("endpoint",),
    "txmail_build_info": ("version",),
    "txmail_redis_up": (),
    "process_resident_memory_bytes": (),
    "process_open_fds": (),
    "process_max_fds": (),
    "process_start_time_seconds": (),
}


@pytest.fixture
def smtp_peer(workdir, certs, request):
    """The default peer, with a shorter hold for slow- recipients (keeps the test fast)."""
    from conftest import register_log
    p = SmtpPeer(workdir, certs, extra_args=["--slow-delay", "1.5"])
    register_log(request, "smtpd.py stderr", p.stderr)
    try:
        p.start()
        yield p
    finally:
        p.stop()


class Scrape:
    def __init__(self, text):
        self.text = text
        self.types = {}
        self.samples = []   # (name, {labels}, value)
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, typ = line.split(" ", 3)
                self.types[name] = typ
                continue
            if not line or line.startswith("#"):
                continue
            m = SAMPLE_RE.match(line)
            assert m, "got malformed sample line %r" % line
            labels = dict(LABEL_RE.findall(m.group(2) or ""))
            self.samples.append((m.group(1), labels, float(m.group(3))))

    def series(self, name, **want):
        return [(lb, v) for n, lb, v in self.samples
                if n == name and all(lb.get(k) == w for k, w in want.items())]

    def sum(self, name, **want):
        return sum(v for _, v in self.series(name, **want))

    def one(self, name, **want):
        got = self.series(name, **want)
        assert len(got) == 1, "got %d series %s%r, want 1: %r" % (len(got), name, want, got)
        return got[0][1]


def scrape(port):
    c = Client(port)
    try:
        r = c.get("/metrics", auth=False)
    finally:
        c.close()
    assert r.status == 200, "got %d for /metrics, want 200" % r.status
    return Scrape(r.body.decode("utf-8"))


def check_names(s, accepts=True):
    """Every name exists with its type and labels (accepts=False: a process
    without the API, whose accept histogram has its TYPE but no series)."""
    for name, label in HISTOGRAMS.items():
        assert s.types.get(name) == "histogram", "got TYPE %r for %s, want histogram" % (s.types.get(name), name)
        for suffix in ("_bucket", "_sum", "_count"):
            got = s.series(name + suffix)
            if not accepts and name == "txmail_accept_duration_seconds":
                assert not got, "got accept series %r in a process without the API" % got
                continue
            assert got, "got no %s%s series" % (name, suffix)
            if label is not None and name != "txmail_accept_duration_seconds":
                assert all(label in lb for lb, _ in got), "got %s%s without label %s" % (name, suffix, label)
        infs = s.series(name + "_bucket", le="+Inf")
        for lb, v in infs:
            key = {k: x for k, x in lb.items() if k != "le"}
            assert s.one(name + "_count", **key) == v, "got %s_count != +Inf bucket for %r" % (name, key)
    for table, typ in ((COUNTERS, "counter"), (GAUGES, "gauge")):
        for name, labels in table.items():
            assert s.types.get(name) == typ, "got TYPE %r for %s, want %s" % (s.types.get(name), name, typ)
            got = s.series(name)
            assert got, "got no %s series" % name
            for lb, _ in got:
                assert set(lb) == set(labels), "got labels %r on %s, want %r" % (sorted(lb), name, labels)


def promtool_check(text, tmpdir):
    with open(os.path.join(tmpdir, "scrape-%d.txt" % len(os.listdir(tmpdir))), "w") as f:
        f.write(text)   # kept with TXMAIL_IT_KEEP=1
    assert PROMTOOL, "promtool not installed (Debian package prometheus, make deps-test)"
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert p.returncode == 0, "promtool check metrics: exit %d\n%s%s" % (
        p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))


def test_metric_names_after_real_mail(txmail, capi, smtp_peer, workdir):
    s0 = scrape(txmail.port)
    check_names(s0)
    promtool_check(s0.text, workdir)
    assert s0.one("txmail_build_info")  == 1
    version = s0.series("txmail_build_info")[0][0]["version"]
    assert re.match(r"^\d+\.\d+\.\d+", version), "got version label %r" % version

    # held at the end of DATA: claimed by the worker, not ready any more
    slow = send_text(capi, "slow-metrics@example.com", "slow")

    def held():
        m = scrape(txmail.port)
        return m if m.one("txmail_queue_claimed", lane="normal") == 1 else None
    m = wait_until(held, dl(10), "the slow recipient claimed")
    assert m.one("txmail_queue_ready", lane="normal") == 0, \
        "got ready %r while the only delivery is claimed, want 0" % m.one("txmail_queue_ready", lane="normal")
    assert m.one("txmail_queue_ready", lane="high") == 0
    assert m.one("txmail_queue_oldest_age_seconds", lane="normal") >= 0

    ok = send_text(capi, "ok-metrics@example.com", "ok")
    temp = send_text(capi, "temp3-metrics@example.com", "temp")
    perm = send_text(capi, "perm-metrics@example.com", "perm")
    for mid, want in ((ok, "delivered"), (perm, "failed"), (temp, "delivered"), (slow, "delivered")):
        wait_status(capi, mid, want, dl(20))

    def settled():
        m = scrape(txmail.port)
        done = (m.sum("txmail_recipients_total", status="delivered") == 3 and
                m.sum("txmail_recipients_total", status="failed") == 1 and
                m.sum("txmail_webhook_latency_seconds_count") >= 1)
        return m if done else None
    m = wait_until(settled, dl(15), "three delivered, one failed, a webhook answered")
    check_names(m)
    promtool_check(m.text, workdir)

    # each recipient once per state; the deferred one once, its three attempts counted apart
    assert m.one("txmail_recipients_total", status="delivered", reason="ok") == 3
    assert m.sum("txmail_recipients_total", status="deferred") == 1, \
        "got deferred recipients %r, want 1 (one recipient deferred three times)" % (
            m.series("txmail_recipients_total", status="deferred"),)
    assert m.one("txmail_recipients_total", status="deferred", reason="4.3") == 1
    assert m.one("txmail_recipients_total", status="failed", reason="5.1") == 1
    assert m.one("txmail_delivery_attempts_total", result="deferred") == 3
    assert m.one("txmail_delivery_attempts_total", result="delivered") == 3
    assert m.one("txmail_delivery_attempts_total", result="failed") == 1
    # replies by enhanced class
    assert m.one("txmail_smtp_replies_total", **{"class": "4.3"}) == 3
    assert m.one("txmail_smtp_replies_total", **{"class": "5.1"}) == 1
    assert m.one("txmail_smtp_replies_total", **{"class": "2.0"}) == 3
    # per destination: the relay, with the outcomes adding up to the attempts
    dests = {lb["destination"] for lb, _ in m.series("txmail_destination_outcomes_total")}
    relay = "relay 127.0.0.1:%d" % smtp_peer.port
    assert relay in dests, "got destinations %r, want %r" % (sorted(dests), relay)
    assert m.sum("txmail_destination_outcomes_total") == 7
    assert dests <= {relay, "other"}, "got destinations %r" % sorted(dests)
    # latency: one observation per delivered recipient, the slow one took >= 1.5 s
    assert m.one("txmail_delivery_latency_seconds_count", priority="normal") == 3
    assert m.one("txmail_delivery_latency_seconds_count", priority="high") == 0
    assert m.one("txmail_delivery_latency_seconds_sum", priority="normal") >= 1.5
    assert m.one("txmail_delivery_latency_seconds_bucket", priority="normal", le="0.5") <= 2
    assert m.one("txmail_accept_duration_seconds_count", route="/v1/messages") == 4
    assert m.one("txmail_smtp_transaction_duration_seconds_count", result="ok") == 3
    assert m.one("txmail_smtp_transaction_duration_seconds_count", result="tempfail") == 3
    assert m.one("txmail_smtp_transaction_duration_seconds_count", result="permfail") == 1
    assert m.one("txmail_smtp_transaction_duration_seconds_bucket", result="ok", le="1") <= 2, \
        "got the 1.5 s slow transaction in the 1 s bucket"
    # gauges once idle
    for lane in ("normal", "high"):
        assert m.one("txmail_queue_ready", lane=lane) == 0
        assert m.one("txmail_queue_claimed", lane=lane) == 0
        assert m.one("txmail_queue_oldest_age_seconds", lane=lane) == 0
    assert m.one("txmail_destinations_suspended") == 0
    assert m.one("txmail_webhook_backlog", endpoint="default") >= 0
    assert m.one("process_resident_memory_bytes") > 1 << 20
    assert m.one("process_open_fds") > 3
    assert m.one("process_cpu_seconds_total") > 0
    # no label value a client chose (the recipients' local parts)
    assert "metrics@" not in m.text and "slow-" not in m.text


def test_split_roles_each_scrape_their_own(txmail_factory, smtp_peer, workdir):
    api = txmail_factory(args=("api",))
    admin = free_port()
    worker = txmail_factory(args=("worker",), http=False, name="txmail worker",
                            extra_env={"TXMAIL_ADMIN_LISTEN": "127.0.0.1:%d" % admin})
    c = api.client()
    try:
        mids = [(send_text(c, to, "split"), want) for to, want in (
            ("ok-split@example.com", "delivered"), ("temp1-split@example.com", "delivered"),
            ("perm-split@example.com", "failed"))]
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        r = c.send({"from": "sender@example.com", "to": "later-split@example.com", "subject": "later",
                    "text": "hello\n", "send_at": later})
        assert r.status == 202, "scheduled send: got %s %r" % (r.status, r.body)
        r = c.request("DELETE", "/v1/messages/" + r.json["id"])
        assert r.status == 200, "cancel: got %s %r" % (r.status, r.body)
        for mid, want in mids:
            wait_status(c, mid, want, dl(20))
    finally:
        c.close()

    def settled():
        try:
            w = scrape(admin)
        except OSError:
            return None
        return w if (w.sum("txmail_recipients_total", status="delivered") == 2 and
                     w.sum("txmail_webhook_latency_seconds_count") >= 1) else None
    wait_until(settled, dl(15), "the worker's /metrics counting its deliveries")
    w = scrape(admin)   # again: this one counts the scrapes before it (txmail_http_requests_total)
    a = scrape(api.port)
    check_names(w, accepts=False)
    check_names(a)
    promtool_check(w.text, workdir)
    promtool_check(a.text, workdir)
    # the worker counts the deliveries, the api the accepts
    assert w.sum("txmail_recipients_total", status="deferred") == 1
    assert w.one("txmail_recipients_total", status="failed", reason="5.1") == 1
    assert w.one("txmail_delivery_attempts_total", result="deferred") == 1
    assert w.one("txmail_delivery_latency_seconds_count", priority="normal") == 2
    assert w.one("txmail_smtp_replies_total", **{"class": "4.3"}) == 1
    assert w.one("txmail_messages_accepted_total") == 0
    assert a.one("txmail_messages_accepted_total") == 4
    assert a.one("txmail_accept_duration_seconds_count", route="/v1/messages") == 4
    assert a.one("txmail_recipients_total", status="canceled", reason="canceled") == 1
    assert w.one("txmail_recipients_total", status="canceled", reason="canceled") == 0
    assert a.sum("txmail_recipients_total", status="delivered") == 0
    assert a.one("txmail_delivery_latency_seconds_count", priority="normal") == 0
    # the queue gauges come from Redis: the same in both
    for lane in ("normal", "high"):
        assert w.one("txmail_queue_ready", lane=lane) == a.one("txmail_queue_ready", lane=lane) == 0
    assert w.one("txmail_redis_up") == a.one("txmail_redis_up") == 1
