"""test_dev_sink.py - the failure paths of `txmail run --dev` (issue 9, item 6).

Owns: a real `txmail run --dev` (embedded redis-server, its dev SMTP sink)
on random loopback ports with a temporary TXMAIL_DATA_DIR, reporting to a
real webhook receiver on loopback that only --dev allows (no
TXMAIL_WEBHOOK_ALLOW_PRIVATE in the environment). One message each to
defer+, bounce+, full+, reject+, slow+ and a plain address; the final recipient
statuses (GET /v1/messages/{id}), the webhook events with their SMTP codes,
the suppression list and the files in the mail dir are checked against what
README.md ("Failure paths in dev mode") promises. Also: the banner and the
log say that loopback webhooks are allowed, and without --dev (or with
TXMAIL_WEBHOOK_ALLOW_PRIVATE=0) the same loopback webhook URL is refused.

Must never: use fixed ports, wait without a deadline, or leave the dev
redis-server behind.
"""

import os
import re
import signal
import subprocess
import time

import pytest

import helpers
import logparse
from helpers import RAW_MSGID_RE, Txmail, dl, free_port, read_text, wait_until


@pytest.fixture
def dev(txmail_binary, workdir, webhook, register_log):
    """A `txmail run --dev` wired to the webhook receiver; yields (Txmail with its dev key, data dir)."""
    data = os.path.join(workdir, "data")
    os.makedirs(data)
    env = helpers.clean_env({
        "TXMAIL_DATA_DIR": data,
        "TXMAIL_LISTEN": "127.0.0.1:%d" % free_port(),
        "TXMAIL_SINK_LISTEN": "127.0.0.1:%d" % free_port(),
        "TXMAIL_WEBHOOK_URL": webhook.url,
        "TXMAIL_WEBHOOK_SECRET": webhook.secret,
        "TXMAIL_WEBHOOK_RETRY_BASE": "0.2",
        "TXMAIL_LOG_LEVEL": "info",
    })
    port = int(env["TXMAIL_LISTEN"].rsplit(":", 1)[1])
    logp = os.path.join(workdir, "dev.log")
    register_log("txmail run --dev log", logp)
    t = Txmail(txmail_binary, ("run", "--dev"), env, logp, port=port, name="txmail run --dev")
    try:
        t.start()
        # the banner comes after /readyz answers; the key file is written before it
        wait_until(lambda: "curl -sS" in read_text(logp), dl(10), "the dev banner",
                   diag=lambda: helpers.tail(logp, 30))
        with open(os.path.join(data, "dev-api-key")) as f:
            t.key = f.read().strip()
        yield t, data
    finally:
        t.stop()
        for pid in helpers.find_redis_servers(mention=data):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    assert not t.problems, "txmail run --dev: %s" % t.problems


def rcpt(c, mid):
    r = c.get("/v1/messages/" + mid)
    assert r.status == 200, "GET /v1/messages/%s: got %s %r" % (mid, r.status, r.body[:300])
    return r.json


def final(c, mid, timeout):
    """The message once its recipient is delivered or failed."""
    last = {}

    def done():
        j = last["j"] = rcpt(c, mid)
        return j if j["recipients"][0]["status"] in ("delivered", "failed", "expired") else None
    return wait_until(done, timeout, "%s final" % mid, interval=0.05, diag=lambda: last.get("j"))


def test_dev_sink_failure_paths(dev, webhook):
    t, data = dev
    text = read_text(t.log)
    assert re.search(r"Webhooks: +loopback and private targets allowed", text), \
        "banner does not say that loopback webhooks are allowed:\n%s" % helpers.tail(t.log, 20)
    assert re.search(r"Retries: +after 1s, doubling up to 30s", text), \
        "banner does not print the dev retry delays:\n%s" % helpers.tail(t.log, 20)
    warned = [r for r in logparse.records(t.log, "dev mode: loopback and private webhook targets allowed")
              if r["level"] == "warn"]
    assert len(warned) == 1, "want one warn line saying loopback webhooks are allowed:\n%s" % (
        helpers.tail(t.log, 40),)
    retries = [(r.get("retry_base"), r.get("retry_max")) for r in logparse.records(t.log, "dev mode retries")]
    assert retries == [("1s", "30s")], "dev mode retries lines: got %r" % retries
    # the start-up config lines say where the loopback permission came from: run --dev's default
    allow = [(r["value"], r["source"]) for r in logparse.records(t.log, "config setting")
             if r.get("name") == "TXMAIL_WEBHOOK_ALLOW_PRIVATE"]
    assert allow == [("1", "dev")], "config setting TXMAIL_WEBHOOK_ALLOW_PRIVATE: got %r" % allow

    c = t.client()
    sent = {}
    t0 = time.monotonic()
    for local in ("defer+dev", "bounce+dev", "full+dev", "reject+dev", "slow+dev", "ok"):
        r = c.send({"from": "Dev <dev@example.com>", "to": "%s@example.com" % local,
                    "subject": "dev sink %s" % local, "text": "x"})
        assert r.status == 202, "POST %s: got %s %r" % (local, r.status, r.body[:300])
        sent[local] = r.json["id"]

    res = {k: final(c, mid, dl(30)) for k, mid in sent.items()}
    took = time.monotonic() - t0

    def r0(k):
        return res[k]["recipients"][0]

    want = {  # status, attempts, smtp code, enhanced
        "defer+dev": ("delivered", 3, 250, "2.0.0"),
        "bounce+dev": ("failed", 1, 550, "5.1.1"),
        "full+dev": ("failed", 1, 552, "5.2.2"),
        "reject+dev": ("failed", 1, 554, "5.7.1"),
        "slow+dev": ("delivered", 1, 250, "2.0.0"),
        "ok": ("delivered", 1, 250, "2.0.0"),
    }
    for k, (status, attempts, code, enh) in want.items():
        got = r0(k)
        assert (got["status"], got["attempts"], got["smtp"]["code"], got["smtp"]["enhanced"]) == \
            (status, attempts, code, enh), "%s: got %r, want %r" % (k, got, (status, attempts, code, enh))
    assert took < dl(25), "all final after %.1fs: the dev retry delays are too long" % took

    # webhooks: to a loopback receiver, allowed by --dev alone
    want_events = {
        "defer+dev": [("message.deferred", 451, "4.3.0"), ("message.deferred", 451, "4.3.0"),
                      ("message.delivered", 250, "2.0.0")],
        "bounce+dev": [("message.failed", 550, "5.1.1")],
        "full+dev": [("message.failed", 552, "5.2.2")],
        "reject+dev": [("message.failed", 554, "5.7.1")],
        "slow+dev": [("message.delivered", 250, "2.0.0")],
        "ok": [("message.delivered", 250, "2.0.0")],
    }
    for k, evs in want_events.items():
        got = webhook.wait_events_for(sent[k], len(evs), dl(15))
        got = sorted(got, key=lambda e: e["body"]["data"]["attempt"])
        seen = [(e["type"], e["body"]["data"]["smtp"]["code"], e["body"]["data"]["smtp"]["enhanced"])
                for e in got]
        assert seen == evs, "%s webhooks: got %r, want %r" % (k, seen, evs)
    for k in ("bounce+dev", "full+dev", "reject+dev"):
        d = webhook.events_for(sent[k], types=("message.failed",))[0]["body"]["data"]
        assert (d["status"], d.get("reason")) == ("failed", "bounced"), "%s: got %r" % (k, d)
    slow_at = webhook.events_for(sent["slow+dev"], types=("message.delivered",))[0]["at"]
    ok_at = webhook.events_for(sent["ok"], types=("message.delivered",))[0]["at"]
    assert slow_at - ok_at >= 3.5, "slow+ delivered %.1fs after ok, want about 5s later" % (slow_at - ok_at)

    # only the 5.1.1 bounce goes on the suppression list
    r = c.get("/v1/suppressions")
    assert r.status == 200, "GET /v1/suppressions: got %r" % r
    sup = {s["email"].lower(): s for s in r.json["data"]}
    assert set(sup) == {"bounce+dev@example.com"}, "suppressions: got %r" % list(sup)
    assert sup["bounce+dev@example.com"]["reason"] == "bounced", "got %r" % sup

    # the mail dir holds what was accepted, once each, and nothing refused
    maildir = os.path.join(data, "mail")
    ids = []
    for name in sorted(os.listdir(maildir)):
        if not name.endswith(".eml"):
            continue
        with open(os.path.join(maildir, name), "rb") as f:
            m = RAW_MSGID_RE.search(f.read())
        assert m, "%s has no Message-ID" % name
        ids.append(m.group(1).decode())
    by_msg = {k: [i for i in ids if mid in i] for k, mid in sent.items()}
    assert {k: len(v) for k, v in by_msg.items()} == {
        "defer+dev": 1, "bounce+dev": 0, "full+dev": 0, "reject+dev": 0, "slow+dev": 1, "ok": 1}, \
        "files in %s by message: got %r (Message-IDs %r)" % (maildir, by_msg, ids)
    assert len(ids) == 3, "files: got %r, want 3" % ids

    # the sink's own lines name the message (local part of its Message-ID) and the recipient
    def sink_lines(msg):
        return {(r.get("msg_id"), r.get("rcpt"), r.get("code")) for r in logparse.records(t.log, msg)}
    stored, refused, refused_rcpt = (sink_lines("sink stored message"), sink_lines("sink refused message"),
                                     sink_lines("sink refused recipient"))
    for k in ("defer+dev", "slow+dev", "ok"):
        assert (sent[k], "%s@example.com" % k, None) in stored, \
            "no 'sink stored message' line with msg_id=%s rcpt=%s@example.com: %r" % (sent[k], k, stored)
    for k, code in (("defer+dev", "451"), ("full+dev", "552"), ("reject+dev", "554")):
        assert (sent[k], "%s@example.com" % k, code) in refused, \
            "no 'sink refused message' line with msg_id=%s rcpt=%s@example.com code=%s: %r" % (
                sent[k], k, code, refused)
    assert refused_rcpt == {(None, "bounce+dev@example.com", "550")}, \
        "'sink refused recipient' lines: got %r" % refused_rcpt
    assert os.listdir(os.path.join(maildir, "tmp")) == [], "left in mail/tmp"
    c.close()


@pytest.mark.parametrize("args,extra,word", [
    (("run",), {}, "loopback"),                                   # no --dev: refused
    (("run", "--dev"), {"TXMAIL_WEBHOOK_ALLOW_PRIVATE": "0"}, "loopback"),   # --dev, but said no
])
def test_loopback_webhook_refused_without_dev(txmail_binary, workdir, webhook, args, extra, word):
    env = helpers.clean_env(dict({
        "TXMAIL_DATA_DIR": os.path.join(workdir, "data"),
        "TXMAIL_LISTEN": "127.0.0.1:%d" % free_port(),
        "TXMAIL_SINK_LISTEN": "127.0.0.1:%d" % free_port(),
        "TXMAIL_WEBHOOK_URL": webhook.url,
        "TXMAIL_WEBHOOK_SECRET": webhook.secret,
    }, **extra))
    try:
        r = subprocess.run([txmail_binary] + list(args), env=env, cwd=workdir, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=dl(15), start_new_session=True)
    finally:
        for pid in helpers.find_redis_servers(mention=workdir):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 2, "exit status: got %s, want 2; stderr: %s" % (r.returncode, err[-2000:])
    assert "TXMAIL_WEBHOOK_URL" in err and word in err and "TXMAIL_WEBHOOK_ALLOW_PRIVATE" in err, \
        "stderr: got %r" % err[-2000:]
