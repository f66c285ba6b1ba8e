"""Webhook-URL guard (SSRF): without TXMAIL_WEBHOOK_ALLOW_PRIVATE=1, webhook
targets on loopback, private, link-local, CGNAT, multicast or unspecified
addresses are refused

- at POST /v1/webhooks: 422 with error.field "url" (IP literals, and names
  that resolve only to such addresses; a name that does not resolve is
  accepted, the connect-time check still applies);
- at startup: a TXMAIL_WEBHOOK_URL in those ranges stops txmail with a
  configuration error naming the variable;
- at connect time, after DNS resolution: an endpoint stored while the flag
  was on is never connected to once it is off (a failed attempt, logged
  "webhook target address refused").

The rest of the suite runs with the flag on (conftest.py) because its test
peers listen on loopback.
"""

import os
import subprocess

import helpers
from helpers import dl, reap, tail, wait_until

NO_FLAG = {"TXMAIL_WEBHOOK_ALLOW_PRIVATE": None, "TXMAIL_WEBHOOK_URL": None,
           "TXMAIL_WEBHOOK_SECRET": None}


def test_register_refuses_private_targets(txmail_factory, webhook):
    tx = txmail_factory(extra_env=NO_FLAG)
    c = tx.client()
    for url in (webhook.url, "http://10.0.0.1/", "http://127.0.0.1:9/hook", "https://192.168.1.20/h",
                "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/", "http://[::1]:8080/h",
                "http://[::ffff:127.0.0.1]/h", "http://[fd00::1]/h", "http://0.0.0.0:80/",
                "http://localhost:8080/hook"):
        r = c.post_json("/v1/webhooks", {"url": url})
        assert r.status == 422, "url %s: got %r, want 422" % (url, r)
        e = r.json["error"]
        assert e.get("field") == "url", "url %s: error.field got %r, want 'url'" % (url, e)
        assert "TXMAIL_WEBHOOK_ALLOW_PRIVATE" in e["message"], \
            "url %s: message %r should say how to allow it" % (url, e["message"])
    # a public IP literal is accepted (nothing is sent to it here)
    r = c.post_json("/v1/webhooks", {"url": "https://8.8.8.8/hook", "events": ["message.failed"]})
    assert r.status == 201, "public url: got %r, want 201" % r
    assert c.request("DELETE", "/v1/webhooks/" + r.json["id"]).status == 204


def test_register_allows_loopback_with_flag(txmail_factory, webhook):
    tx = txmail_factory(extra_env={"TXMAIL_WEBHOOK_URL": None, "TXMAIL_WEBHOOK_SECRET": None})
    r = tx.client().post_json("/v1/webhooks", {"url": webhook.url})
    assert r.status == 201, "with TXMAIL_WEBHOOK_ALLOW_PRIVATE=1: got %r, want 201" % r


def test_startup_refuses_private_default_url(txmail_binary, txmail_env, workdir, webhook):
    env = dict(txmail_env)
    env.pop("TXMAIL_WEBHOOK_ALLOW_PRIVATE", None)
    env["TXMAIL_WEBHOOK_URL"] = webhook.url
    env["TXMAIL_LISTEN"] = "127.0.0.1:%d" % helpers.free_port()
    logp = os.path.join(workdir, "guard-start.log")
    with open(logp, "wb") as lf:
        p = subprocess.Popen([txmail_binary, "run"], env=helpers.clean_env(env), stdin=subprocess.DEVNULL,
                             stdout=lf, stderr=lf, start_new_session=True)
    try:
        assert reap(p, dl(10)), "txmail kept running with a loopback TXMAIL_WEBHOOK_URL and no flag"
    finally:
        helpers.kill_group(p)
        reap(p, dl(5))
    log = tail(logp, 20)
    assert p.returncode != 0, "got exit 0, want a configuration error"
    assert "TXMAIL_WEBHOOK_URL" in log and "loopback" in log, \
        "got log %r, want TXMAIL_WEBHOOK_URL and 'loopback'" % log
    assert not webhook.attempts, "got %d webhook attempts, want none" % len(webhook.attempts)


def test_connect_time_guard(txmail_factory, webhook):
    # stored while allowed, then the flag goes: the dispatcher must not connect
    tx = txmail_factory(extra_env={"TXMAIL_WEBHOOK_URL": None, "TXMAIL_WEBHOOK_SECRET": None})
    r = tx.client().post_json("/v1/webhooks", {"url": webhook.url})
    assert r.status == 201, "got %r, want 201" % r
    tx.stop()
    assert not tx.problems, "got %r" % tx.problems
    tx2 = txmail_factory(extra_env=NO_FLAG)
    r = tx2.client().send({"from": "a@example.com", "to": ["ok@example.com"], "subject": "s", "text": "t"})
    assert r.status in (200, 201, 202), "send: got %r" % r

    def refused():
        # the guard's line and the delivery's failure line are written one after
        # the other by different code: wait for both, not for the first alone
        with open(tx2.log, "r", encoding="utf-8", errors="replace") as f:
            text = f.read()
        return "webhook target address refused" in text and "class=loopback" in text and \
            "refused to connect to 127.0.0.1" in text
    wait_until(refused, dl(15), "the guard's refusal (class=loopback) and the failed attempt "
               "('refused to connect to 127.0.0.1') in the log", interval=0.1,
               diag=lambda: tail(tx2.log, 40))
    assert not webhook.attempts, "got %d webhook attempts, want none" % len(webhook.attempts)
