"""test_tls_verify.py - TLS verification is on by default for the relay and
for webhooks (issue 5), end to end with real peers on loopback.

Every peer uses the session's test certificates (conftest `certs`: a test CA
and a server certificate for DNS:localhost and IP:127.0.0.1 signed by it).
A certificate is trusted only through TXMAIL_TLS_CA_FILE=ca.pem; without it
txmail has the system store alone, which does not hold the test CA.

Relay (smtp/tls.c: SSL_VERIFY_PEER, the IP or name checked; a failed
handshake is a connection failure in smtp/session.c, so a temporary one):
  - an untrusted CA: nothing reaches the peer (not even AUTH or MAIL: the
    transcript stops at STARTTLS), the recipient is `deferred` with a
    "certificate verification failed" detail, the log says so; the same
    peer, URL and message with the CA trusted are delivered (the control);
  - the relay addressed as 127.0.0.2, which the certificate does not name
    (CA trusted): deferred, nothing delivered. The DNS-name path
    (SSL_set1_host) is covered by tests/unit/test_engine.c
    `connect_addr_name_checked_not_resolved` and test_mx.py::test_mx_tls_verify;
  - the default relay URL (no ?tls=, no verify=): opportunistic STARTTLS,
    still verified; verify=0 is the only switch and has to be written.
Webhooks (server/webhook_request.c: CURLOPT_SSL_VERIFYPEER 1, VERIFYHOST 2, no switch):
  - HTTPS receiver, CA not trusted: the receiver sees only refused handshakes,
    no request; txmail logs the certificate error and keeps retrying; a txmail
    restarted with the CA trusted delivers that same event (same webhook-id),
    correctly signed;
  - HTTPS receiver on 127.0.0.2 (not named by the certificate), CA trusted:
    no request reaches it, the log names the mismatch.

Must never: wait without a deadline, or trust txmail's view where the peer's
(the SMTP transcript and maildir, the receiver's records) can be checked.
"""

import json
import os
import re

import pytest

from conftest import new_secret
import logparse
from helpers import SmtpPeer, dl, read_text, wait_status, wait_until
from webhook_receiver import WebhookReceiver

# one attempt per message while a test looks (no retry inside its window)
NO_RETRY = {"TXMAIL_RETRY_BASE": "60", "TXMAIL_RETRY_MAX": "60"}
CERT_FAILED = "certificate verification failed"


def send(api, to):
    r = api.send({"from": "sender@example.com", "to": to, "subject": "tls", "text": "hello\n"})
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    return r.json["id"]


def wait_log(tx, pattern, timeout, what):
    """Wait until txmail's log matches the regex `pattern`; return the match."""
    rx = re.compile(pattern)
    return wait_until(lambda: rx.search(read_text(tx.log)), timeout, "txmail log: " + what,
                      interval=0.05, diag=lambda: read_text(tx.log)[-3000:])


def assert_refused_relay(api, tx, peer, mid, host):
    """One attempt, deferred for the certificate, nothing sent past STARTTLS."""
    j = wait_status(api, mid, "deferred", dl(20))
    rc = j["recipients"][0]
    assert rc["attempts"] == 1, "attempts: got %r, want 1" % rc["attempts"]
    text = json.dumps(j)
    assert CERT_FAILED in text, "GET /v1/messages/%s: got %s, want a %r detail" % (mid, text, CERT_FAILED)
    assert j["status"] != "delivered", "message status: got %r" % j["status"]
    line = wait_log(tx, r"TLS handshake with %s:%d failed: %s[^\n]*" % (
        re.escape(host), peer.port, CERT_FAILED), dl(5), "the certificate error").group(0)
    assert peer.count() == 0, "peer stored %d message(s) over a refused certificate" % peer.count()
    log = read_text(peer.log)
    assert "C: STARTTLS" in log, "got transcript %r, want STARTTLS attempted" % log[-2000:]
    for cmd in ("C: AUTH", "C: MAIL", "C: RCPT", "C: DATA"):
        assert cmd not in log, "got %r in the transcript: sent past a refused certificate:\n%s" % (
            cmd, log[-2000:])
    assert log.count("CONNECT ") == 1, "got %d connections, want 1 (no plain-text retry):\n%s" % (
        log.count("CONNECT "), log[-2000:])
    return line


# --- relay ---------------------------------------------------------------------

@pytest.mark.parametrize("trusted", [False, True], ids=["ca-untrusted", "ca-trusted"])
def test_relay_certificate_must_verify(txmail_factory, smtp_peer, trusted):
    env = dict(NO_RETRY)
    if not trusted:
        env["TXMAIL_TLS_CA_FILE"] = None   # the system store only
    tx = txmail_factory(extra_env=env)
    api = tx.client()
    try:
        mid = send(api, "rcpt@example.com")
        if trusted:
            # the control: same peer, URL and message; only the trust differs
            (got,) = smtp_peer.wait_for_rcpt("rcpt@example.com", dl(15))
            assert got.meta["tls"] is True and got.meta["auth_user"] == "user", "got %r" % got.meta
            wait_status(api, mid, "delivered", dl(15))
            return
        line = assert_refused_relay(api, tx, smtp_peer, mid, "127.0.0.1")
        # OpenSSL's reason: the test CA is not in the system store
        assert "issuer certificate" in line or "self-signed" in line, "got log line %r" % line
    finally:
        api.close()


def test_relay_address_not_in_certificate(txmail_factory, workdir, certs, register_log):
    # the certificate names DNS:localhost and IP:127.0.0.1 only; the CA is trusted
    peer = SmtpPeer(os.path.join(workdir, "p2"), certs, extra_args=["--host", "127.0.0.2"])
    register_log("smtpd.py 127.0.0.2 stderr", peer.stderr)
    try:
        peer.start()
        env = dict(NO_RETRY)
        env["TXMAIL_RELAY"] = "smtp://%s:%s@127.0.0.2:%d?tls=required" % (
            peer.user, peer.password, peer.port)
        tx = txmail_factory(extra_env=env)
        api = tx.client()
        try:
            mid = send(api, "rcpt@example.com")
            line = assert_refused_relay(api, tx, peer, mid, "127.0.0.2")
            assert "mismatch" in line, "got log line %r, want an IP address mismatch" % line
        finally:
            api.close()
    finally:
        peer.stop()


def test_relay_default_url_verifies(txmail_factory, smtp_peer):
    env = dict(NO_RETRY)
    env["TXMAIL_TLS_CA_FILE"] = None
    # no ?tls= and no verify=: the defaults (with credentials: STARTTLS required)
    env["TXMAIL_RELAY"] = "smtp://%s:%s@127.0.0.1:%d" % (smtp_peer.user, smtp_peer.password, smtp_peer.port)
    tx = txmail_factory(extra_env=env)
    api = tx.client()
    try:
        cfg = wait_until(lambda: [r for r in logparse.records(tx.log, "config") if "relay_tls" in r],
                         dl(5), "the relay config line", diag=lambda: read_text(tx.log)[-3000:])[0]
        assert cfg["relay_tls"] == "required" and cfg.get("relay_verify") == "on", \
            "config line: got %r, want relay_tls=required relay_verify=on" % cfg
        mid = send(api, "rcpt@example.com")
        assert_refused_relay(api, tx, smtp_peer, mid, "127.0.0.1")
    finally:
        api.close()


def test_relay_credentials_never_in_clear_by_default(txmail_factory, workdir, certs, register_log):
    # a relay (or a man in the middle) that does not offer STARTTLS: with a
    # user and password and no ?tls=, txmail must not fall back to plain
    # text and send AUTH; it defers instead
    peer = SmtpPeer(os.path.join(workdir, "plain"), certs, password="s3cret-" + os.urandom(6).hex(), tls=False)
    register_log("plain smtpd.py stderr", peer.stderr)
    peer.start()
    try:
        env = dict(NO_RETRY)
        env["TXMAIL_RELAY"] = "smtp://%s:%s@127.0.0.1:%d" % (peer.user, peer.password, peer.port)
        tx = txmail_factory(extra_env=env)
        api = tx.client()
        try:
            mid = send(api, "rcpt@example.com")
            j = wait_status(api, mid, "deferred", dl(20))
            assert peer.count() == 0
            log = read_text(peer.log)
            assert "C: EHLO" in log, "got transcript %r, want an EHLO" % log[-2000:]
            for cmd in ("C: AUTH", "C: MAIL"):
                assert cmd not in log, "got %r in the transcript: credentials or mail sent without TLS:\n%s" % (
                    cmd, log[-2000:])
            assert "STARTTLS" in json.dumps(j["events"]), "deferral detail should name STARTTLS: %r" % j
            assert peer.password not in read_text(tx.log)
        finally:
            api.close()
    finally:
        peer.stop()


# --- webhooks ------------------------------------------------------------------

@pytest.fixture
def https_receivers(certs):
    made = []

    def make(host="127.0.0.1"):
        w = WebhookReceiver(new_secret(), host=host, tls_cert=os.path.join(certs, "cert.pem"),
                            tls_key=os.path.join(certs, "key.pem")).start()
        made.append(w)
        return w
    yield make
    for w in made:
        w.stop()


def webhook_env(w):
    return {"TXMAIL_WEBHOOK_URL": w.url, "TXMAIL_WEBHOOK_SECRET": w.secret}


def wait_webhook_refused(tx, rx, attempt):
    """Wait for txmail to log failed attempt number `attempt` of a webhook
    (retried, not dropped); fail at once if the receiver got any request.
    Returns (event_id, error)."""
    def check():
        attempts, _, _ = rx.snapshot()
        assert attempts == [], "receiver got %d request(s) over a refused certificate: %r" % (
            len(attempts), [(a["webhook_id"], a["status"]) for a in attempts])
        return [r for r in logparse.records(tx.log, "webhook failed, will retry")
                if str(r.get("attempt")) == str(attempt) and r.get("event_id") and "error" in r]
    got = wait_until(check, dl(15), "txmail log: failed webhook attempt %d" % attempt, interval=0.05,
                     diag=lambda: read_text(tx.log)[-3000:])
    return got[0]["event_id"], got[0]["error"]


def test_webhook_https_untrusted_then_trusted(txmail_factory, smtp_peer, https_receivers):
    rx = https_receivers()
    assert rx.url.startswith("https://127.0.0.1:"), rx.url
    env = dict(NO_RETRY, **webhook_env(rx))
    env["TXMAIL_TLS_CA_FILE"] = None
    tx = txmail_factory(extra_env=env)
    api = tx.client()
    try:
        # (the relay is refused too, same CA setting: the event is message.deferred)
        mid = send(api, "rcpt@example.com")
        event_id, err = wait_webhook_refused(tx, rx, 2)
        assert "certificate" in err.lower(), "webhook error: got %r, want a certificate error" % err
        tls = rx.tls_failures()
        assert tls and any("unknown ca" in t.lower() for t in tls), \
            "receiver TLS errors: got %r, want the client to refuse the CA" % tls
    finally:
        api.close()
    tx.stop()
    assert not tx.problems, tx.problems

    # the same Redis, now with the CA: the very event that was refused arrives
    env["TXMAIL_TLS_CA_FILE"] = smtp_peer.ca
    tx2 = txmail_factory(extra_env=env)
    rx.wait_for(lambda evs: any(e["webhook_id"] == event_id for e in evs), dl(20),
                "event %s after the CA is trusted" % event_id)
    attempts, events, failures = rx.snapshot()
    assert failures == [], "requests that failed the signature checks: %r" % (
        [f["reason"] for f in failures],)
    ev = [e for e in events if e["webhook_id"] == event_id][0]
    assert (ev["body"].get("data") or {}).get("message_id") == mid, "got event %r, want one for %s" % (
        ev["body"], mid)
    wait_log(tx2, r'webhook delivered" event_id=%s ' % re.escape(event_id), dl(5), "webhook delivered")


def test_webhook_https_name_mismatch(txmail_factory, smtp_peer, https_receivers):
    rx = https_receivers("127.0.0.2")   # the certificate names IP:127.0.0.1 only
    tx = txmail_factory(extra_env=webhook_env(rx))   # the CA is trusted (conftest)
    api = tx.client()
    try:
        send(api, "rcpt@example.com")
        smtp_peer.wait_for_rcpt("rcpt@example.com", dl(15))   # the relay verifies fine
        _, err = wait_webhook_refused(tx, rx, 2)
        assert "127.0.0.2" in err and ("subject" in err or "certificate" in err), \
            "webhook error: got %r, want the name mismatch" % err
    finally:
        api.close()
