"""test_log_format.py - a whole run's log, parsed strictly, in both formats.

One real stack per format (redis-server, the SMTP peer with STARTTLS and
AUTH, the webhook receiver, `txmail run` at debug level) sends two
messages: one plain, and one whose SMTP peer answers the end of DATA with a
two-line reply that imitates log syntax (quotes, "=", " level=error", a
backslash; peers/smtpd.py HOSTILE_REPLY). After a clean SIGTERM the whole
of txmail's stderr is parsed: with TXMAIL_LOG_FORMAT unset every line must
be strict logfmt (parse_logfmt below), with TXMAIL_LOG_FORMAT=json every
line one JSON object; in both the first keys are ts, level, msg. Then each
message is followed by its msg_id from the API's "accepted" line (and its
request's access line by request_id) through the SMTP session to its
recorded outcome and its webhook line, the hostile reply must come back as
one value, unchanged, and no secret (API key, webhook secret, SMTP
password, the AUTH PLAIN payload) may appear anywhere.

Must never: accept a line because it "looks close enough" (the parsers are
strict and say where a line broke), or wait without a deadline.
"""

import base64
import os
import re
import subprocess

import pytest

import helpers
from helpers import MSG_ID_RE, Client, dl, free_port, tail, wait_until
from logparse import parse_log, parse_logfmt
from webhook_receiver import WebhookReceiver

# --- the parser itself must be able to fail -----------------------------------

@pytest.mark.parametrize("line", [
    'ts=2026-01-01T00:00:00.000Z level=info msg="ok" junk',             # token without =
    'ts=2026-01-01T00:00:00.000Z level=info msg="ok"  a=b',             # two spaces
    'ts=2026-01-01T00:00:00.000Z level=info msg="ok" a=b ',             # trailing space
    'ts=2026-01-01T00:00:00.000Z level=info msg="ok" A=b',              # upper-case key
    'ts=2026-01-01T00:00:00.000Z level=info msg="ok" a="b',             # unterminated
    'ts=2026-01-01T00:00:00.000Z level=info msg="ok" a="b\\q"',         # unknown escape
    'ts=2026-01-01T00:00:00.000Z level=info msg="ok" a=b"c',            # quote in bare value
    'ts=2026-01-01T00:00:00.000Z level=info msg="ok" a=',               # empty bare value
    'ts=2026-01-01T00:00:00.000Z level=info msg="ok" a="x\ty"',         # raw tab
    'level=info ts=2026-01-01T00:00:00.000Z msg="ok"',                  # order (checked by parse_log)
])
def test_strict_logfmt_parser_rejects(line, tmp_path):
    p = tmp_path / "bad.log"
    p.write_bytes(line.encode() + b"\n")
    with pytest.raises(pytest.fail.Exception):
        parse_log(str(p), "logfmt")


def test_strict_logfmt_parser_accepts():
    got = parse_logfmt('ts=2026-01-01T00:00:00.000Z level=warn msg="a \\"b\\" c=d" '
                       'reply="x\\\\y\\nz level=error" n=42 e=""')
    assert got == [("ts", "2026-01-01T00:00:00.000Z"), ("level", "warn"), ("msg", 'a "b" c=d'),
                   ("reply", "x\\y\nz level=error"), ("n", "42"), ("e", "")], got


# --- the run ---------------------------------------------------------------------

class Stack:
    """redis-server, SMTP peer (STARTTLS + AUTH with a password worth
    looking for), webhook receiver, and `txmail run` with stderr and stdout
    in files of their own."""

    def __init__(self, workdir, certs, fmt):
        self.workdir = workdir
        self.fmt = fmt
        self.redis = helpers.RedisServer(workdir)
        self.smtp_pw = "smtp-pw-" + base64.b32encode(os.urandom(10)).decode().lower()
        self.smtp = helpers.SmtpPeer(workdir, certs, password=self.smtp_pw)
        self.wh_secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        self.webhook = WebhookReceiver(self.wh_secret)
        self.api_key = "txm_test_" + base64.b32encode(os.urandom(15)).decode().lower()
        self.stderr = os.path.join(workdir, "txmail.stderr")
        self.stdout = os.path.join(workdir, "txmail.stdout")
        self.port = free_port()
        self.proc = None

    def start(self, binary):
        self.redis.start()
        self.smtp.start()
        self.webhook.start()
        env = {
            "TXMAIL_LISTEN": "127.0.0.1:%d" % self.port,
            "TXMAIL_REDIS_URL": self.redis.url,
            "TXMAIL_API_KEYS": self.api_key,
            "TXMAIL_RELAY": self.smtp.relay_url(),
            "TXMAIL_TLS_CA_FILE": self.smtp.ca,
            "TXMAIL_HELO_NAME": "test.txmail.local",
            "TXMAIL_WEBHOOK_URL": self.webhook.url,
            "TXMAIL_WEBHOOK_SECRET": self.wh_secret,
            "TXMAIL_WEBHOOK_ALLOW_PRIVATE": "1",
            "TXMAIL_RETRY_BASE": "0.2",
            "TXMAIL_RETRY_MAX": "1",
            "TXMAIL_VISIBILITY_TIMEOUT": "2",
            "TXMAIL_RATE_LIMIT": "0",
            # debug: as many kinds of line as a normal run has, all of them parsed
            "TXMAIL_LOG_LEVEL": "debug",
        }
        if self.fmt == "json":
            env["TXMAIL_LOG_FORMAT"] = "json"
        with open(self.stderr, "ab") as err, open(self.stdout, "ab") as out:
            self.proc = subprocess.Popen([binary, "run"], env=helpers.clean_env(env),
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)
        helpers.wait_readyz(self.proc, self.port, "txmail", self.stderr)

    def stop_txmail(self):
        """SIGTERM; the exit status (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=dl(15))
        except subprocess.TimeoutExpired:
            helpers.kill_group(self.proc)
            self.proc.wait(timeout=dl(10))
            return None

    def close(self):
        if self.proc is not None:
            self.stop_txmail()
            helpers.kill_group(self.proc)
        self.webhook.stop()
        self.smtp.stop()
        self.redis.stop()


@pytest.fixture
def stack_factory(workdir, certs, txmail_binary, register_log):
    stacks = []

    def make(fmt):
        s = Stack(workdir, certs, fmt)
        stacks.append(s)
        register_log("txmail stderr (%s)" % fmt, s.stderr)
        register_log("smtpd.py stderr", s.smtp.stderr)
        s.start(txmail_binary)
        return s
    yield make
    for s in stacks:
        s.close()


def send(api, to, request_id):
    r = api.send({"from": "Sender <sender@example.com>", "to": to, "subject": "log test",
                  "text": "hello\n"}, headers={"X-Request-Id": request_id})
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    mid = r.json["id"]
    assert MSG_ID_RE.match(mid), "id: got %r" % mid
    return mid


def one(recs, what, **want):
    """The records matching every key=value of want (values compared as text)."""
    got = [r for r in recs if all(str(r.get(k)) == str(v) for k, v in want.items())]
    assert got, "no log line %s (%r); lines with that msg_id:\n%s" % (what, want, "\n".join(
        repr(r) for r in recs if r.get("msg_id") == want.get("msg_id"))[:4000])
    return got


HOSTILE_TEXT = 'OK "queued" as=1 level=error msg="forged"\n\\" ts=2000-01-01T00:00:00.000Z level=error msg=forged2'


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_whole_log_parses_and_follows_a_message(stack_factory, fmt):
    st = stack_factory(fmt)
    api = Client(st.port, key=st.api_key)
    try:
        rid = "lf-" + os.urandom(6).hex()
        mid = send(api, "Rcpt <rcpt@example.com>", rid)
        mid_h = send(api, "hostile-x@example.com", rid + "-h")
        for m in (mid, mid_h):
            st.webhook.wait_events_for(m, 1, dl(20), types=("message.delivered",))
    finally:
        api.close()

    def webhook_lines_written():
        text = helpers.read_text(st.stderr)
        return all(text.count(m) and re.search(r"webhook delivered.*%s|%s.*webhook delivered" % (m, m), text)
                   for m in (mid, mid_h))
    # the receiver answers before txmail logs the outcome: wait for the line itself
    wait_until(webhook_lines_written, dl(10), "the webhook delivered lines in the log",
               diag=lambda: tail(st.stderr, 20))
    rc = st.stop_txmail()
    assert rc == 0, "txmail exit status after SIGTERM: got %r, want 0" % rc

    recs = parse_log(st.stderr, fmt)
    assert len(recs) >= 10, "only %d log lines" % len(recs)

    # --- no secret anywhere (raw bytes, not the parsed view) -------------------------
    raw = open(st.stderr, "rb").read() + open(st.stdout, "rb").read()
    plain = base64.b64encode(b"\0user\0" + st.smtp_pw.encode())
    for name, secret in (("API key", st.api_key), ("webhook secret", st.wh_secret),
                         ("webhook secret key", st.wh_secret[len("whsec_"):]),
                         ("SMTP password", st.smtp_pw), ("AUTH PLAIN payload", plain.decode())):
        assert secret.encode() not in raw, "the %s appears in the log" % name

    # --- start and stop -------------------------------------------------------------
    ready = one(recs, "txmail ready", msg="txmail ready")
    assert "version" in ready[0], "txmail ready: no version field: %r" % ready[0]
    assert any(r["msg"] == "txmail stopped" for r in recs[ready[0]["_n"]:]), "no 'txmail stopped' line"

    # --- one message from accept to webhook ----------------------------------------
    for m, rcpt in ((mid, "rcpt@example.com"), (mid_h, "hostile-x@example.com")):
        accepted = one(recs, "accepted", msg="accepted", msg_id=m)[0]
        if accepted.get("request_id"):
            # its access line, by request_id
            one(recs, "access line of the POST", msg="request", request_id=accepted["request_id"])
        # the two messages may share one connection (it is kept for reuse): the
        # session lines are those of the connection the server accepted this one on
        smtp_ok = one(recs, "message accepted by server", msg="message accepted by server",
                      msg_id=m, rcpt=rcpt, code=250)[0]
        conn = smtp_ok.get("conn")
        assert conn and smtp_ok.get("peer"), "accepted by server: no conn/peer: %r" % smtp_ok
        ours = [r for r in recs if r.get("conn") == conn and r.get("msg_id") in (mid, mid_h)]
        connected = one(ours, "connected", msg="connected")[0]
        tls = one(ours, "TLS established", msg="TLS established")[0]
        assert tls.get("tls"), "TLS established: no tls field: %r" % tls
        one(ours, "authenticated", msg="authenticated")
        delivered = one(recs, "delivered", msg="delivered", msg_id=m, rcpt=rcpt, attempt=1, code=250)[0]
        hook = one(recs, "webhook delivered", msg="webhook delivered", msg_id=m, rcpt=rcpt,
                   type="message.delivered")[0]
        assert str(hook.get("status", "")).startswith("2") and hook.get("event_id", "").startswith("evt_") \
            and hook.get("endpoint") and str(hook.get("attempt")) == "1", "webhook delivered: %r" % hook
        # (the API thread's "accepted" may come after the worker's "connected": not ordered)
        order = [connected["_n"], smtp_ok["_n"], delivered["_n"], hook["_n"]]
        assert order == sorted(order) and accepted["_n"] < smtp_ok["_n"], "%s: lines out of order " \
            "(connected, accepted by server, delivered, webhook; accepted before the server's " \
            "reply): line numbers %r, accepted %d" % (m, order, accepted["_n"])
        if fmt == "json":
            for r in (smtp_ok, delivered):
                assert isinstance(r["code"], int), "JSON code is not a number: %r" % r

    # every line about the message's SMTP session carries its msg_id and rcpt
    conns = {r["conn"] for r in recs if r.get("msg_id") in (mid, mid_h) and r.get("conn")}
    for r in recs:
        if r.get("conn") in conns and r["msg"] not in ("idle connection closed", "idle timeout, closing"):
            assert r.get("msg_id") in (mid, mid_h) and r.get("rcpt"), \
                "session line without msg_id/rcpt: %r" % r

    # --- the hostile reply: one value, unchanged, nothing forged ---------------------
    for what in ("message accepted by server", "delivered"):
        (r,) = [x for x in recs if x["msg"] == what and x.get("msg_id") == mid_h]
        assert r.get("reply") == HOSTILE_TEXT, "%s: reply got %r, want %r" % (what, r.get("reply"), HOSTILE_TEXT)
        assert r["level"] == "info", "%s: level got %r" % (what, r["level"])
    forged = [r for r in recs if r["msg"] in ("forged", "forged2") or r["ts"].startswith("2000-")
              or r["level"] == "error"]
    assert not forged, "forged or error lines: %r" % forged
