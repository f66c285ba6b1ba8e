"""test_esmtp.py - ESMTP through the whole stack: several recipients of one
message at one domain go to the SMTP peer as ONE transaction, pipelined
(RFC 2920) when the peer offers PIPELINING, and each recipient still gets
its own result (accepted ones delivered, a refused RCPT failed).

The peer is smtpd.py with --pipelining (plus the usual STARTTLS + AUTH);
its transcript shows pipelining as an "AHEAD" line after the reply to MAIL
(RCPT and DATA had already arrived when MAIL was answered). Recipients at
different domains get one transaction each. With VERP a group's
transaction carries the message-level return path bounces+<id>.<mac>@D;
a lone recipient keeps its recipient-level bounces+<id>.<idx>.<mac>@D.

Must never: wait without a deadline, or trust txmail's view where the
peer's can be checked.
"""

import hashlib
import hmac
import os
import subprocess

import pytest

from helpers import PEERS, PYTHON, SmtpPeer, dl, wait_until

TERMINAL = ("delivered", "failed")


class PipeliningPeer(SmtpPeer):
    """The standard peer (STARTTLS required, AUTH) that also offers PIPELINING."""

    def start(self):
        with open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen(
                [PYTHON, os.path.join(PEERS, "smtpd.py"), "--host", "127.0.0.1", "--port", "0",
                 "--maildir", self.maildir, "--ready-file", self.ready,
                 "--tls-cert", os.path.join(self.certdir, "cert.pem"),
                 "--tls-key", os.path.join(self.certdir, "key.pem"),
                 "--require-starttls", "--auth", "%s:%s" % (self.user, self.password),
                 "--pipelining", "--log", self.log],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("smtpd.py exited (%s)" % self.proc.returncode)
            return os.path.exists(self.ready)
        wait_until(ready, dl(15), "smtpd.py ready file")
        with open(self.ready) as f:
            self.port = int(f.read().strip())


@pytest.fixture
def pipe_peer(workdir, certs, register_log):
    p = PipeliningPeer(os.path.join(workdir, "pipe"), certs)
    register_log("pipelining smtpd.py stderr", p.stderr)
    register_log("pipelining smtpd.py transcript", p.log)
    try:
        p.start()
        yield p
    finally:
        p.stop()


def send_and_wait(api, rcpts, timeout=20):
    r = api.send({"from": "sender@example.com", "to": rcpts, "subject": "group",
                  "text": "one message, several recipients\n"})
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    mid = r.json["id"]
    last = {}

    def done():
        g = api.get("/v1/messages/" + mid)
        assert g.status == 200, "GET: got %s %r" % (g.status, g.body)
        last["j"] = g.json
        sts = [x["status"] for x in g.json["recipients"]]
        return g.json if all(s in TERMINAL for s in sts) else None
    j = wait_until(done, dl(timeout), "%s: every recipient terminal" % mid, interval=0.05,
                   diag=lambda: "last GET: %r" % (last.get("j"),))
    return mid, j


def statuses(j):
    return [(x["email"], x["status"]) for x in j["recipients"]]


def test_one_transaction_per_domain_pipelined(txmail_factory, pipe_peer):
    t = txmail_factory(extra_env={"TXMAIL_RELAY": pipe_peer.relay_url()})
    api = t.client()
    rcpts = ["one@example.com", "perm-two@example.com", "three@example.com"]
    _, j = send_and_wait(api, rcpts)
    want = [("one@example.com", "delivered"), ("perm-two@example.com", "failed"),
            ("three@example.com", "delivered")]
    assert statuses(j) == want, "GET recipients: got %r, want %r" % (statuses(j), want)

    msgs = pipe_peer.messages()
    assert len(msgs) == 1, "peer: got %d messages, want 1 transaction: %r" % (
        len(msgs), [m.meta for m in msgs])
    got = msgs[0].meta["rcpt_tos"]
    assert got == ["one@example.com", "three@example.com"], \
        "peer rcpt_tos: got %r, want the 2 accepted recipients" % got

    with open(pipe_peer.log) as f:
        log = f.read().splitlines()
    mail = [i for i, line in enumerate(log) if " C: MAIL FROM:<sender@example.com>" in line]
    assert len(mail) == 1, "transcript: got %d MAIL commands, want 1:\n%s" % (len(mail), "\n".join(log))
    i = mail[0]
    assert " S: 250" in log[i + 1] and " AHEAD " in log[i + 2], \
        "transcript: RCPT/DATA had not arrived when MAIL was answered (not pipelined):\n%s" % (
            "\n".join(log[i:i + 12]))
    rcpt_lines = [line for line in log if " C: RCPT TO:" in line]
    assert len(rcpt_lines) == 3, "transcript: got %r, want 3 RCPT" % rcpt_lines
    api.close()


def test_other_domains_get_their_own_transaction(txmail_factory, pipe_peer):
    t = txmail_factory(extra_env={"TXMAIL_RELAY": pipe_peer.relay_url()})
    api = t.client()
    _, j = send_and_wait(api, ["a@one.example", "b@two.example"])
    assert [s for _, s in statuses(j)] == ["delivered", "delivered"], statuses(j)
    msgs = pipe_peer.messages()
    assert sorted(m.meta["rcpt_tos"][0] for m in msgs) == ["a@one.example", "b@two.example"], \
        [m.meta for m in msgs]
    assert all(len(m.meta["rcpt_tos"]) == 1 for m in msgs), [m.meta for m in msgs]
    api.close()


BOUNCE_SECRET = "0123456789abcdef0123"


def verp_addr(mid, idx=None, domain="bounces.example.com"):
    """The return path txmail must use: message level (idx None) or recipient level."""
    data = mid if idx is None else "%s.%d" % (mid, idx)
    mac = hmac.new(BOUNCE_SECRET.encode(), data.encode(), hashlib.sha256).hexdigest()[:10]
    token = mid if idx is None else "%s.%d" % (mid, idx)
    return "bounces+%s.%s@%s" % (token, mac, domain)


def test_verp_group_shares_one_transaction_with_message_level_token(txmail_factory, pipe_peer):
    t = txmail_factory(extra_env={"TXMAIL_RELAY": pipe_peer.relay_url(),
                                  "TXMAIL_BOUNCE_DOMAIN": "bounces.example.com",
                                  "TXMAIL_BOUNCE_SECRET": BOUNCE_SECRET})
    api = t.client()
    rcpts = ["x@example.com", "y@example.com", "z@example.com"]
    mid, j = send_and_wait(api, rcpts)
    assert [s for _, s in statuses(j)] == ["delivered"] * 3, statuses(j)
    msgs = pipe_peer.messages()
    assert len(msgs) == 1, "peer: got %d messages, want 1 transaction: %r" % (
        len(msgs), [m.meta for m in msgs])
    assert msgs[0].meta["rcpt_tos"] == rcpts, \
        "peer rcpt_tos: got %r, want %r" % (msgs[0].meta["rcpt_tos"], rcpts)
    want = verp_addr(mid)
    assert msgs[0].meta["mail_from"] == want, \
        "MAIL FROM: got %r, want the message-level VERP address %r" % (msgs[0].meta["mail_from"], want)

    # a lone recipient keeps its own recipient-level token
    mid1, j1 = send_and_wait(api, ["solo@example.com"])
    assert statuses(j1) == [("solo@example.com", "delivered")], statuses(j1)
    msgs = [m for m in pipe_peer.messages() if m.meta["rcpt_tos"] == ["solo@example.com"]]
    assert len(msgs) == 1, "peer: got %d messages for solo@, want 1" % len(msgs)
    want = verp_addr(mid1, 0)
    assert msgs[0].meta["mail_from"] == want, \
        "MAIL FROM: got %r, want the recipient-level VERP address %r" % (msgs[0].meta["mail_from"], want)
    api.close()
