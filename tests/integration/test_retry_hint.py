"""test_retry_hint.py - a 4xx reply that names a delay is not retried sooner.

Owns the end-to-end check of smtp/retry_hint.c and retry_decide_hint: a
real SMTP peer (peers/smtpd.py, grey1-Ss-... recipients) answers the first
RCPT with "451 4.7.1 Greylisted, please try again in S seconds" and
accepts the next one; txmail runs with a retry policy far shorter than S.
The gap between the two attempts is measured on the peer's side
(--rcpt-times, time.monotonic()) and checked as a lower bound only, so a
slow machine cannot break it; the deferral's log line (retry_in,
retry_hint), the message's timeline (the next attempt's time, GET
/v1/messages/{id}) and the message.deferred webhook say what was decided.
A control recipient (temp1-..., "451 4.3.0 try again later": no number)
is retried on the policy's delay, and a named delay shorter than the
policy's keeps the policy's.

Must never: assert an upper bound on a gap (a slow machine is always
later), or wait without a deadline.
"""
import datetime
import json
import os

import pytest

import logparse
from conftest import register_log
from helpers import SmtpPeer, dl, send_text, wait_status


@pytest.fixture
def smtp_peer(workdir, certs, request):
    """The usual peer, recording the time of every RCPT it answers."""
    times = os.path.join(workdir, "rcpt-times.jsonl")
    p = SmtpPeer(workdir, certs, extra_args=["--rcpt-times", times])
    p.rcpt_times = times
    register_log(request, "smtpd.py stderr", p.stderr)
    try:
        p.start()
        yield p
    finally:
        p.stop()


def rcpt_tries(peer, rcpt):
    """[(code, monotonic time)] of the RCPTs of rcpt the peer answered, in order."""
    out = []
    try:
        with open(peer.rcpt_times) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    if r["rcpt"].lower() == rcpt.lower():
                        out.append((r["code"], r["t"]))
    except FileNotFoundError:
        pass
    return out


def at_seconds(at):
    """An RFC 3339 "at" of the timeline ("2026-01-02T03:04:05.678Z") as epoch seconds."""
    return datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def deferral(t, mid):
    """The one "deferred" log record of message mid."""
    recs = [r for r in logparse.records(t.log, "deferred") if r.get("msg_id") == mid]
    assert len(recs) == 1, "deferred log lines of %s: got %r, want one" % (mid, recs)
    return recs[0]


def two_tries(peer, rcpt):
    tries = rcpt_tries(peer, rcpt)
    assert [c for c, _ in tries] == [451, 250], "RCPT replies for %s: got %r, want 451 then 250" % (rcpt, tries)
    return tries[1][1] - tries[0][1]


def test_named_delay_is_honoured(txmail, api, smtp_peer, webhook):
    """Policy 0.2 s doubling to 1 s (conftest); the server asks for 3 s."""
    grey, control = "grey1-3s-alice@example.com", "temp1-bob@example.com"
    mid_grey = send_text(api, grey, "greylisted")
    mid_control = send_text(api, control, "no hint")
    j = wait_status(api, mid_grey, "delivered", dl(30))
    jc = wait_status(api, mid_control, "delivered", dl(30))

    gap = two_tries(smtp_peer, grey)
    assert gap >= 2.99, "second attempt %.3f s after the 451 naming 3 s, want >= 3 s" % gap
    gap_c = two_tries(smtp_peer, control)
    assert gap_c >= 0.19, "control retried %.3f s after its 451, want >= the policy's 0.2 s" % gap_c

    d = deferral(txmail, mid_grey)
    assert (d.get("retry_in"), d.get("retry_hint")) == ("3s", "honoured"), \
        "deferral of the greylisted recipient: got retry_in=%r retry_hint=%r, want 3s honoured: %r" % (
            d.get("retry_in"), d.get("retry_hint"), d)
    assert d.get("code") == "451" and "try again in 3 seconds" in d.get("reply", ""), d
    dc = deferral(txmail, mid_control)
    assert (dc.get("retry_in"), dc.get("retry_hint")) == ("0.2s", None), \
        "deferral of the control: got retry_in=%r retry_hint=%r, want 0.2s and no hint: %r" % (
            dc.get("retry_in"), dc.get("retry_hint"), dc)

    rc = j["recipients"][0]
    assert rc["attempts"] == 2, "attempts: got %r, want 2" % rc
    deferred = [e for e in j["events"] if e["type"] == "deferred"]
    delivered = [e for e in j["events"] if e["type"] == "delivered"]
    assert len(deferred) == 1 and len(delivered) == 1, "timeline: got %r, want one deferred, one delivered" % (
        j["events"],)
    assert "try again in 3 seconds" in deferred[0]["smtp"]["response"], "timeline deferred: got %r" % deferred
    # the timeline's times are txmail's: the attempt after the deferral began at its next attempt or later
    tl_gap = at_seconds(delivered[0]["at"]) - at_seconds(deferred[0]["at"])
    assert tl_gap >= 2.999, "timeline: delivered %.3f s after deferred, want >= 3 s: %r" % (tl_gap, j["events"])
    assert jc["recipients"][0]["attempts"] == 2, "control attempts: got %r, want 2" % jc["recipients"]

    evs = webhook.wait_events_for(mid_grey, 2, dl(10))
    ev = [e["body"]["data"] for e in evs if e["type"] == "message.deferred"]
    assert len(ev) == 1 and ev[0]["smtp"]["code"] == 451 and ev[0]["smtp"]["enhanced"] == "4.7.1" and \
        "try again in 3 seconds" in ev[0]["smtp"]["response"], "message.deferred: got %r" % ev


def test_shorter_named_delay_keeps_policy(txmail_factory, smtp_peer):
    """Policy 2 s; the server asks for 1 s: txmail does not retry faster."""
    t = txmail_factory(extra_env={"TXMAIL_RETRY_BASE": "2", "TXMAIL_RETRY_MAX": "2"})
    c = t.client()
    try:
        rcpt = "grey1-1s-carol@example.com"
        mid = send_text(c, rcpt, "short hint")
        wait_status(c, mid, "delivered", dl(30))
    finally:
        c.close()
    gap = two_tries(smtp_peer, rcpt)
    assert gap >= 1.99, "second attempt %.3f s after the 451, want >= the policy's 2 s" % gap
    d = deferral(t, mid)
    assert (d.get("retry_in"), d.get("retry_hint")) == ("2s", None), \
        "deferral: got retry_in=%r retry_hint=%r, want 2s and no hint: %r" % (
            d.get("retry_in"), d.get("retry_hint"), d)
