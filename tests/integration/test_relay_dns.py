"""test_relay_dns.py - a relay given by name (TXMAIL_RELAY=smtp://...@NAME:port)
is resolved off the SMTP engine thread (server/relaydns.c) and each delivery
connects to one of its addresses, while TLS still checks the name.

  - by name: smtp://user:pass@localhost:PORT?tls=required (the test
    certificate names DNS:localhost) delivers over verified STARTTLS + AUTH.
    The peer listens on 127.0.0.1 only; where localhost also resolves to ::1
    that address is refused and the job moves to the next one;
  - a name that does not resolve (.invalid): each message is deferred after
    one attempt with a "relay host NAME: not resolved yet (...)" detail, the
    engine never looks the name up itself (no "DNS lookup of" from
    smtp/session.c), nothing reaches the peer, and /healthz and the API stay
    quick throughout, with two worker loops;
  - with a private /etc/hosts (a mount namespace: `unshare -rm` and a bind
    mount; skipped where the machine cannot make one):
      * localhost -> 127.0.0.3 (nothing listens) and 127.0.0.1: every message
        is delivered on its first attempt; the ones given 127.0.0.3 are
        moved to the next address before anything is recorded;
      * a name the certificate does not cover, pointing at the very peer
        (127.0.0.1 is in the certificate as an IP): deferred with a
        certificate failure and nothing sent past STARTTLS - verification
        is of the relay name, not of the address connected to.

Must never: wait without a deadline, or trust txmail's view where the peer's
(its transcript and maildir) can be checked.
"""

import json
import re
import time

import pytest

import helpers
import logparse
from helpers import dl, read_text, wait_status, wait_until

NO_RETRY = {"TXMAIL_RETRY_BASE": "60", "TXMAIL_RETRY_MAX": "60"}


def send(api, to, subject="relay dns"):
    return helpers.send_text(api, to, subject)


def timed_get(c, path):
    t0 = time.monotonic()
    r = c.get(path, auth=False)
    return r, time.monotonic() - t0


# --- the system resolver -----------------------------------------------------------

def test_relay_by_name_delivers(txmail_factory, smtp_peer):
    env = dict(NO_RETRY)
    env["TXMAIL_RELAY"] = "smtp://%s:%s@localhost:%d?tls=required" % (
        smtp_peer.user, smtp_peer.password, smtp_peer.port)
    tx = txmail_factory(extra_env=env)
    api = tx.client()
    try:
        rcpts = ["rcpt%d@example.com" % i for i in range(3)]
        for _, got in helpers.deliver_once_each(api, smtp_peer, rcpts, "relay dns"):
            assert got.meta["tls"] is True and got.meta["auth_user"] == "user", "got %r" % got.meta
        log = read_text(tx.log)
        assert [r for r in logparse.records(tx.log, "relay host resolved")
                if r.get("host") == "localhost" and r.get("addrs")], \
            "txmail log: want the relay's resolved addresses:\n%s" % log[-3000:]
        assert "DNS lookup of" not in log, "the engine resolved the relay itself:\n%s" % log[-3000:]
    finally:
        api.close()


def test_relay_unresolvable_defers_and_stays_responsive(txmail_factory, smtp_peer):
    env = dict(NO_RETRY)
    env["TXMAIL_WORKERS"] = "2"
    env["TXMAIL_RELAY"] = "smtp://%s:%s@no-such-host.invalid:%d?tls=required" % (
        smtp_peer.user, smtp_peer.password, smtp_peer.port)
    tx = txmail_factory(extra_env=env)
    api = tx.client()
    probe = tx.client()
    try:
        worst = 0.0
        mids = []
        for i in range(10):
            mids.append(send(api, "rcpt%d@example.com" % i))
            r, took = timed_get(probe, "/healthz")
            assert r.status == 200, "/healthz: got %s %r" % (r.status, r.body)
            worst = max(worst, took)
        want = "relay host no-such-host.invalid: not resolved yet ("
        for mid in mids:
            j = wait_status(api, mid, "deferred", dl(15))
            rc = j["recipients"][0]
            assert rc["attempts"] == 1, "attempts: got %r, want 1" % rc
            text = json.dumps(j)
            assert want in text, "GET /v1/messages/%s: got %s, want a %r detail" % (mid, text, want)
            r, took = timed_get(probe, "/healthz")
            assert r.status == 200, "/healthz: got %s %r" % (r.status, r.body)
            worst = max(worst, took)
        assert worst < dl(1), "/healthz took %.3fs at worst while the relay did not resolve" % worst
        log = read_text(tx.log)
        assert len(logparse.records(tx.log, "worker started")) == 2, "want two worker loops:\n%s" % log[-3000:]
        assert [r for r in logparse.records(tx.log) if r["msg"].startswith("relay host lookup failed")
                and r.get("host") == "no-such-host.invalid" and r.get("error")], \
            "txmail log: want the failed lookup:\n%s" % log[-3000:]
        assert "DNS lookup of" not in log, "the engine resolved the relay itself:\n%s" % log[-3000:]
        assert smtp_peer.count() == 0
        assert "CONNECT " not in read_text(smtp_peer.log), "a connection reached the peer: %s" % read_text(smtp_peer.log)
    finally:
        probe.close()
        api.close()


def test_relay_next_address_after_a_refused_one(hosts_txmail, smtp_peer):
    env = dict(NO_RETRY)
    env["TXMAIL_RELAY"] = "smtp://%s:%s@localhost:%d?tls=required" % (
        smtp_peer.user, smtp_peer.password, smtp_peer.port)
    # nothing listens on 127.0.0.3: a connection there is refused at once
    tx = hosts_txmail("127.0.0.3 localhost\n127.0.0.1 localhost\n", env)
    api = tx.client()
    try:
        def resolved():
            return [r for r in logparse.records(tx.log, "relay host resolved")
                    if r.get("host") == "localhost" and len(r.get("addrs", "").split(",")) == 2]
        r = wait_until(resolved, dl(10), "the relay's two addresses",
                       diag=lambda: read_text(tx.log)[-2000:])[-1]
        assert set(r["addrs"].split(",")) == {"127.0.0.1", "127.0.0.3"}, "got %r" % r
        rcpts = ["rcpt%d@example.com" % i for i in range(4)]
        # one attempt each: moved on to the next address before recording anything
        for j, got in helpers.deliver_once_each(api, smtp_peer, rcpts, "relay dns"):
            assert "deferred" not in json.dumps(j["events"]), "a deferral was recorded: %r" % j["events"]
            assert got.meta["tls"] is True and got.meta["auth_user"] == "user", "got %r" % got.meta
        # round-robin: half of the four were given 127.0.0.3 first
        moved = [r for r in logparse.records(tx.log, "relay address unreachable, trying the next")
                 if r.get("relay") == "localhost" and r.get("addr") == "127.0.0.3"
                 and r.get("stage") == "connect" and r.get("next") == "127.0.0.1" and r.get("msg_id")]
        assert len(moved) == 2, "got %d moves from 127.0.0.3 to 127.0.0.1, want 2:\n%s" % (
            len(moved), read_text(tx.log)[-3000:])
        assert "DNS lookup of" not in read_text(tx.log)
    finally:
        api.close()


def test_relay_tls_checks_the_name_not_the_address(hosts_txmail, smtp_peer):
    env = dict(NO_RETRY)
    env["TXMAIL_RELAY"] = "smtp://%s:%s@relay-not-in-cert.test:%d?tls=required" % (
        smtp_peer.user, smtp_peer.password, smtp_peer.port)
    # the very peer, whose certificate names DNS:localhost and IP:127.0.0.1
    tx = hosts_txmail("127.0.0.1 relay-not-in-cert.test localhost\n", env)
    api = tx.client()
    try:
        mid = send(api, "rcpt@example.com")
        j = wait_status(api, mid, "deferred", dl(20))
        assert j["recipients"][0]["attempts"] == 1, "attempts: got %r" % j["recipients"]
        text = json.dumps(j)
        assert "certificate verification failed" in text, "got %s, want a certificate failure" % text
        assert smtp_peer.count() == 0, "peer stored %d message(s)" % smtp_peer.count()
        transcript = read_text(smtp_peer.log)
        assert "C: STARTTLS" in transcript, "got transcript %r, want STARTTLS" % transcript[-2000:]
        for cmd in ("C: AUTH", "C: MAIL"):
            assert cmd not in transcript, "%r sent past a refused certificate:\n%s" % (cmd, transcript[-2000:])
        line = wait_until(lambda: re.search(r"TLS handshake with [^\n]*failed[^\n]*", read_text(tx.log)), dl(5),
                          "the TLS failure in the log", diag=lambda: read_text(tx.log)[-2000:]).group(0)
        assert "relay-not-in-cert.test" in line and "mismatch" in line, \
            "got %r, want a host name mismatch for relay-not-in-cert.test" % line
    finally:
        api.close()
