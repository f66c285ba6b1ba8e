"""test_submission_more.py - SMTP submission (issue 16): what test_submission.py
leaves out - DKIM on submitted mail, the rate limit charged per message, a
key revoked in the middle of a session, the whole-session deadline, the
stop (SIGTERM: 421 4.3.2 to a session waiting for a command) and the
metrics of the listener.

Owns nothing new: the listeners are started by test_submission's
`submission` fixture (its throwaway CA, certificates and clients), the
signature is verified by python3-dkim as in test_dkim.py, with the public
key served by a dnsfunc that answers only the test's selector.

Must never: sleep instead of waiting for a condition with a deadline, or
touch real DNS.
"""
import re
import signal
import smtplib
import socket
import subprocess
import time

import pytest

import helpers
from helpers import dl, wait_until
from test_dkim import dkim_headers, dnsfunc_for, keygen
from test_submission import (CLIENT_NAME, client_ctx, quit_, raw_b64, simple,  # noqa: F401 (fixtures)
                             smtp_465, sub_certs, submission, submit)

dkim = pytest.importorskip("dkim", reason="python3-dkim is not installed (make deps)")


def test_submitted_mail_is_dkim_signed(txmail_binary, submission, smtp_peer, workdir):
    key, txt_name, txt_value = keygen(txmail_binary, workdir, "signed.example", "sub1", "rsa")
    s = submission(extra_env={"TXMAIL_DKIM_KEYS": "signed.example:sub1:%s" % key})
    c = smtp_465(s)
    try:
        mid = submit(c, "bounces@signed.example", ["dkim-sub@peer.example"],
                     simple("签名 signed over SMTP", frm="News <news@signed.example>",
                            to="dkim-sub@peer.example",
                            extra=[("Bcc", "hidden@peer.example"), ("X-Txmail-Tags", "dkim")]))
    finally:
        quit_(c)
    raw = smtp_peer.wait_for_rcpt("dkim-sub@peer.example", dl(20))[0].raw
    sigs = dkim_headers(raw)
    assert len(sigs) == 1, "got %d DKIM-Signature headers, want 1 (message %s)" % (len(sigs), mid)
    unfolded = re.sub(rb"\r\n[ \t]", b" ", sigs[0])
    assert b"d=signed.example;" in unfolded and b"s=sub1;" in unfolded, "got %r" % unfolded
    dns = dnsfunc_for({txt_name: txt_value})
    assert dkim.verify(raw, dnsfunc=dns), "python3-dkim: the submitted message does not verify"
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nbcc:" not in head and b"x-txmail-" not in head, "Bcc or X-Txmail-* signed and sent: %r" % head
    assert not dkim.verify(raw.replace(b"Subject: ", b"Subject: Re: ", 1), dnsfunc=dns), \
        "tampered subject verified"


def test_rate_limit_per_message(submission, smtp_peer):
    # a bucket of 2 that refills once in ~17 minutes: AUTH takes one token (its first
    # message uses it), the second message the other, the third finds none
    s = submission(extra_env={"TXMAIL_RATE_LIMIT": "0.001", "TXMAIL_RATE_BURST": "2"})
    c = smtp_465(s)
    try:
        submit(c, "a@example.com", ["rl-1@example.net"], simple("one", to="rl-1@example.net"))
        submit(c, "a@example.com", ["rl-2@example.net"], simple("two", to="rl-2@example.net"))
        code, r = c.mail("a@example.com")
        assert code == 451 and r.startswith(b"4.7.1") and re.search(rb"retry in \d+ s", r), (
            "the third message of a bucket of 2: got %s %r, want 451 4.7.1 ... retry in N s" % (code, r))
        assert c.noop()[0] == 250, "the session does not go on after the 451"
    finally:
        quit_(c)
    with pytest.raises(smtplib.SMTPResponseException) as e:
        quit_(smtp_465(s))
    assert e.value.smtp_code == 454 and e.value.smtp_error.startswith(b"4.7.0"), (
        "AUTH with an empty bucket: got %s %r, want 454 4.7.0" % (e.value.smtp_code, e.value.smtp_error))
    smtp_peer.wait_for_rcpt("rl-2@example.net", dl(20))


def test_revoked_key_stops_within_the_session(txmail_binary, redis, submission, smtp_peer):
    key = helpers.make_key(txmail_binary, redis, "revoked")
    s = submission()
    c = smtp_465(s, key=key)
    try:
        mid = submit(c, "a@example.com", ["rv-1@example.net"], simple("before", to="rv-1@example.net"))
        p = subprocess.run([txmail_binary, "keys", "revoke", "revoked"],
                           env=helpers.clean_env({"TXMAIL_REDIS_URL": redis.url}),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=dl(20))
        assert p.returncode == 0, "keys revoke: exit %d: %s" % (p.returncode, p.stderr)
        code, r = c.mail("a@example.com")
        assert code == 530 and r.startswith(b"5.7.0"), (
            "MAIL after the key was revoked: got %s %r, want 530 5.7.0" % (code, r))
        code, r = c.mail("a@example.com")
        assert code == 530, "the session stays authenticated after the revocation: %s %r" % (code, r)
    finally:
        quit_(c)
    smtp_peer.wait_for_rcpt("rv-1@example.net", dl(20))
    assert mid


def test_session_deadline(submission):
    s = submission(extra_env={"TXMAIL_SUBMISSION_SESSION_TIMEOUT": "1.5"})
    with socket.create_connection(("127.0.0.1", s.port), timeout=dl(10)) as sock:
        f = sock.makefile("rb")
        t0 = time.monotonic()
        assert f.readline().startswith(b"220 ")
        line = b""
        # a busy client (a NOOP every 0.2 s) is cut all the same
        while time.monotonic() - t0 < dl(10):
            sock.sendall(b"NOOP\r\n")
            line = f.readline()
            if not line.startswith(b"250"):
                break
            time.sleep(0.2)   # the client's pace, not a wait for the server
        took = time.monotonic() - t0
        assert line.startswith(b"421 4.4.2") and b"Session" in line, "got %r, want 421 4.4.2 Session ..." % line
        assert 1.4 <= took <= dl(5), "cut after %.2f s, want about 1.5 s" % took
        assert f.readline() == b"", "the connection stays open after the 421"


def test_stop_tells_waiting_sessions(submission):
    s = submission()
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=dl(10))
    try:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")
        sock.sendall(b"EHLO " + CLIENT_NAME.encode() + b"\r\n")
        while f.readline()[3:4] == b"-":
            pass
        s.t.proc.send_signal(signal.SIGTERM)
        line = f.readline()
        assert line.startswith(b"421 4.3.2"), "a session waiting for a command at SIGTERM: got %r" % line
        assert f.readline() == b""
    finally:
        sock.close()
    assert s.t.proc.wait(timeout=dl(30)) == 0, "txmail did not stop cleanly"


def test_metrics(submission, smtp_peer):
    s = submission()

    def counts():
        r = s.api().get("/metrics")
        assert r.status == 200
        text = r.body.decode()
        ev = dict(re.findall(r'txmail_submission_events_total\{event="(\w+)"\} (\d+)', text))
        return {k: int(v) for k, v in ev.items()}
    before = counts()
    for k in ("connection", "refused", "timeout", "auth_ok", "auth_failed", "queued", "rejected", "deferred"):
        assert k in before, "txmail_submission_events_total{event=%r} missing: %r" % (k, before)
    c = smtp_465(s)
    try:
        submit(c, "a@example.com", ["m-1@example.net"], simple("metrics", to="m-1@example.net"))
    finally:
        quit_(c)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        quit_(smtp_465(s, key="txm_" + "y" * 40))

    def moved():
        now = counts()
        return (now["connection"] >= before["connection"] + 2 and now["auth_ok"] >= before["auth_ok"] + 1 and
                now["auth_failed"] >= before["auth_failed"] + 1 and now["queued"] == before["queued"] + 1)
    wait_until(moved, dl(10), "the submission counters moved", diag=counts)
    wait_until(lambda: re.search(r"(?m)^txmail_submission_sessions 0$",
                                 s.api().get("/metrics").body.decode()),
               dl(10), "txmail_submission_sessions back to 0")
