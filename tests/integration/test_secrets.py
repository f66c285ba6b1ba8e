"""test_secrets.py - secrets read from NAME_FILE, and never written to the log.

txmail starts with TXMAIL_API_KEYS, TXMAIL_RELAY and TXMAIL_WEBHOOK_SECRET
removed from its environment and read from files instead (the _FILE forms,
each file ending in a newline as `echo` and editors leave it). It must
accept the key, deliver through a relay that requires AUTH with a password
of its own, and sign the webhook with the file's secret; then its whole
log, at debug level, must hold none of the secrets: not the API key, not
the relay password (as is, percent-encoded, or inside the AUTH PLAIN /
AUTH LOGIN base64), not the webhook secret. The configuration line must
show the relay with the password masked. Setting both NAME and NAME_FILE
stops the start with an error naming both and no secret.

Must never: wait without a deadline, or pass because the log is empty (the
masked relay line and the delivery line must be there).
"""

import base64
import os
import secrets
import urllib.parse

import pytest

from helpers import SmtpPeer, dl


def write_secret(workdir, name, value):
    path = os.path.join(workdir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return path


@pytest.fixture
def relay_peer(workdir, certs, register_log):
    """An SMTP peer (STARTTLS + AUTH required) whose password is unique
    enough to search for: the default peer's is "pass"."""
    p = SmtpPeer(os.path.join(workdir, "relay"), certs, user="relayuser",
                 password="Rly-" + secrets.token_hex(12))
    register_log("relay smtpd.py stderr", p.stderr)
    try:
        p.start()
        yield p
    finally:
        p.stop()


def read_log(t):
    with open(t.log, "r", encoding="utf-8", errors="replace") as f:
        return f.read()


def test_secrets_from_files_never_logged(txmail_factory, relay_peer, webhook, workdir):
    api_key = "txm_file_" + secrets.token_hex(16)
    env = {
        "TXMAIL_API_KEYS": None,
        "TXMAIL_RELAY": None,
        "TXMAIL_WEBHOOK_SECRET": None,
        "TXMAIL_API_KEYS_FILE": write_secret(workdir, "api_keys", api_key),
        "TXMAIL_RELAY_FILE": write_secret(workdir, "relay_url", relay_peer.relay_url()),
        "TXMAIL_WEBHOOK_SECRET_FILE": write_secret(workdir, "webhook_secret", webhook.secret),
        "TXMAIL_LOG_LEVEL": "debug",
    }
    t = txmail_factory(extra_env=env, key=api_key)
    api = t.client()
    try:
        r = api.send({"from": "sender@example.com", "to": "rcpt@example.com",
                      "subject": "secrets from files", "text": "hello\n"})
        assert r.status == 202, "POST /v1/messages with the key from the file: got %s %r, want 202" % (
            r.status, r.body)
        mid = r.json["id"]
    finally:
        api.close()

    (got,) = relay_peer.wait_for_rcpt("rcpt@example.com", dl(15))
    assert got.meta["auth_user"] == "relayuser", "relay AUTH user: got %r" % got.meta["auth_user"]
    assert got.meta["tls"] is True, "relay: message not received over TLS: %r" % got.meta
    webhook.wait_events_for(mid, 1, dl(10), types=("message.delivered",))
    _, _, failures = webhook.snapshot()
    assert failures == [], "webhook requests that failed verification with the file's secret: %r" % (
        [f["reason"] for f in failures],)
    t.stop()   # the shutdown lines are part of the log too

    log = read_log(t)
    masked = "relay=smtp://relayuser:***@127.0.0.1:%d " % relay_peer.port
    assert masked in log, "config line %r missing from the log:\n%s" % (masked, log[-3000:])
    assert mid in log, "no line about %s in the log: the log is not what this test checks" % mid
    pw = relay_peer.password
    leaks = {
        "API key": api_key,
        "relay password": pw,
        "relay password, percent-encoded": urllib.parse.quote(pw, safe=""),
        "relay URL": relay_peer.relay_url(),
        "AUTH PLAIN payload": base64.b64encode(b"\0relayuser\0" + pw.encode()).decode(),
        "AUTH LOGIN password": base64.b64encode(pw.encode()).decode(),
        "webhook secret": webhook.secret,
        "webhook secret key": webhook.secret[len("whsec_"):],
    }
    found = [what for what, s in leaks.items() if s in log]
    assert found == [], "the txmail log (%s) holds: %s" % (t.log, ", ".join(found))


def test_both_name_and_file_refused(txmail_factory, smtp_peer, workdir):
    path = write_secret(workdir, "relay_url", smtp_peer.relay_url())
    t = txmail_factory(extra_env={"TXMAIL_RELAY_FILE": path}, wait=False)
    rc = t.proc.wait(timeout=dl(10))
    log = read_log(t)
    assert rc == 2, "exit status: got %s, want 2 (configuration error); log:\n%s" % (rc, log[-2000:])
    assert "TXMAIL_RELAY and TXMAIL_RELAY_FILE are both set" in log, \
        "the error does not name both variables:\n%s" % log[-2000:]
    assert smtp_peer.relay_url() not in log and ":%s@" % smtp_peer.password not in log, \
        "the error leaks the relay URL:\n%s" % log[-2000:]
