"""test_mx.py - direct delivery without TXMAIL_RELAY: a real DNS server
(dnsmasq on a random loopback port, TXMAIL_DNS_SERVER) serves MX, A and
null-MX records; receiving MX hosts are smtpd.py peers on 127.0.0.2 and
127.0.0.3 sharing one random port (TXMAIL_MX_PORT).

Cases: delivered via the primary MX (preference 10), the backup (20) used
when the primary is down, a domain with only an A record (RFC 5321 5.1),
NXDOMAIN -> failed, null MX (RFC 7505) -> failed. With TXMAIL_MX_TLS_VERIFY=1
(and TXMAIL_TLS_CA_FILE for the test CA): an MX whose certificate names the
MX host is verified and delivered to (the MX name is not resolvable by the
system resolver, so txmail connects to the address dnsmasq gave), and one
whose certificate does not name it is deferred, nothing delivered. In the
default opportunistic mode, a TLS handshake that fails after STARTTLS was
accepted defers the delivery; nothing is sent in plain text (README policy).

Must never: wait without a deadline, or trust txmail's view where the
peer's can be checked.
"""

import json
import os
import subprocess

import pytest

from dns_server import DnsServer
from helpers import PEERS, PYTHON, PlainPeer, dl, free_port, wait_until

MX1, MX2 = "127.0.0.2", "127.0.0.3"

RECORDS = [
    "mx-host=example.test,mx1.example.test,10",
    "mx-host=example.test,mx2.example.test,20",
    "host-record=mx1.example.test,%s" % MX1,
    "host-record=mx2.example.test,%s" % MX2,
    "host-record=aonly.test,%s" % MX1,
    "mx-host=nullmx.test,.,0",
    "mx-host=tlsmx.test,mx.tlsmx.test,10",
    "host-record=mx.tlsmx.test,%s" % MX1,
]


@pytest.fixture
def dns(workdir, register_log):
    d = DnsServer(workdir, ["test"], RECORDS, "mx1.example.test")
    register_log("dnsmasq log", d.log)
    try:
        yield d.start()
    finally:
        d.stop()


@pytest.fixture
def mx_port():
    return free_port()


@pytest.fixture
def peers(workdir, mx_port, register_log):
    started = []

    def start(host, extra=()):
        p = PlainPeer(workdir, host, mx_port, extra)
        register_log("smtpd.py %s stderr" % host, p.stderr)
        started.append(p)
        return p.start()
    yield start
    for p in started:
        p.stop()


def direct_env(dns, mx_port):
    return {"TXMAIL_RELAY": None, "TXMAIL_DNS_SERVER": dns.address, "TXMAIL_MX_PORT": str(mx_port)}


def send(api, to):
    r = api.send({"from": "sender@txmail.test", "to": to, "subject": "mx", "text": "hello"})
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    return r.json["id"]


def wait_rcpts(api, mid, want, timeout):
    """Wait until every recipient reached a final status; return the message."""
    last = {}

    def check():
        r = api.get("/v1/messages/" + mid)
        assert r.status == 200, "GET: got %s %r" % (r.status, r.body)
        last["j"] = r.json
        got = {x["email"]: x["status"] for x in r.json["recipients"]}
        return r.json if all(got.get(k) == v for k, v in want.items()) else None
    return wait_until(check, timeout, "%s: recipients %r" % (mid, want), interval=0.05,
                      diag=lambda: "last GET: %r" % (last.get("j"),))


def test_mx_routing(dns, peers, mx_port, txmail_factory):
    p1, p2 = peers(MX1), peers(MX2)
    tx = txmail_factory(extra_env=direct_env(dns, mx_port))
    api = tx.client()
    try:
        to = ["one@example.test", "two@aonly.test", "three@nope.test", "four@nullmx.test"]
        mid = send(api, to)
        j = wait_rcpts(api, mid, {"one@example.test": "delivered", "two@aonly.test": "delivered",
                                  "three@nope.test": "failed", "four@nullmx.test": "failed"}, dl(20))
        got1, got2 = p1.rcpts(), p2.rcpts()
        assert "one@example.test" in got1, "primary MX %s: got %r, want one@example.test" % (MX1, got1)
        assert "two@aonly.test" in got1, "A-only host %s: got %r, want two@aonly.test" % (MX1, got1)
        assert got2 == [], "backup MX %s: got %r, want nothing while the primary is up" % (MX2, got2)
        assert not any(r in got1 + got2 for r in ("three@nope.test", "four@nullmx.test")), (got1, got2)
        rc = {x["email"]: x for x in j["recipients"]}
        for r in ("three@nope.test", "four@nullmx.test"):
            assert rc[r]["attempts"] == 1, "%s attempts: got %r, want 1 (final at once)" % (r, rc[r]["attempts"])
        text = json.dumps(j)
        assert "NXDOMAIN" in text, "no NXDOMAIN detail in %s" % text
        assert "null MX" in text, "no null MX detail in %s" % text
    finally:
        api.close()


def test_mx_backup_when_primary_down(dns, peers, mx_port, txmail_factory):
    p2 = peers(MX2)   # nothing listens on the primary (127.0.0.2): connection refused
    tx = txmail_factory(extra_env=direct_env(dns, mx_port))
    api = tx.client()
    try:
        mid = send(api, "backup@example.test")
        j = wait_rcpts(api, mid, {"backup@example.test": "delivered"}, dl(20))
        assert p2.rcpts() == ["backup@example.test"], "backup MX: got %r" % p2.rcpts()
        rc = j["recipients"][0]
        assert rc["attempts"] == 1, "attempts: got %r, want 1 (next MX tried in the same attempt)" % rc["attempts"]
    finally:
        api.close()


def make_certs(workdir, name, names):
    """A test CA and a server certificate for localhost + `names` (smtpd.py --make-cert)."""
    d = os.path.join(workdir, name)
    subprocess.run([PYTHON, os.path.join(PEERS, "smtpd.py"), "--make-cert", d,
                    "--cert-names", ",".join(names)],
                   check=True, timeout=dl(30), stdin=subprocess.DEVNULL, capture_output=True)
    return d


@pytest.mark.parametrize("cert_names,want", [
    (["mx.tlsmx.test"], "delivered"),      # the certificate names the MX host
    (["other.tlsmx.test"], "deferred"),    # it does not: verification fails
])
def test_mx_tls_verify(dns, peers, mx_port, txmail_factory, workdir, cert_names, want):
    certs = make_certs(workdir, "mxcerts", cert_names)
    p1 = peers(MX1, ["--tls-cert", os.path.join(certs, "cert.pem"),
                     "--tls-key", os.path.join(certs, "key.pem"), "--require-starttls"])
    env = direct_env(dns, mx_port)
    env.update({"TXMAIL_MX_TLS_VERIFY": "1", "TXMAIL_TLS_CA_FILE": os.path.join(certs, "ca.pem"),
                # one attempt is enough to see the outcome; no retry while we look
                "TXMAIL_RETRY_BASE": "60", "TXMAIL_RETRY_MAX": "60"})
    tx = txmail_factory(extra_env=env)
    api = tx.client()
    try:
        rcpt = "verified@tlsmx.test"
        mid = send(api, rcpt)
        j = wait_rcpts(api, mid, {rcpt: want}, dl(20))
        rc = j["recipients"][0]
        if want == "delivered":
            msgs = p1.messages()
            assert [m["rcpt_tos"] for m in msgs] == [[rcpt]], "MX %s: got %r, want one message" % (MX1, msgs)
            assert msgs[0]["tls"] is True, "got tls %r, want True (STARTTLS)" % msgs[0]["tls"]
        else:
            assert p1.rcpts() == [], "MX %s: got %r, want nothing delivered over a bad certificate" % (
                MX1, p1.rcpts())
            assert rc["attempts"] == 1, "attempts: got %r, want 1" % rc["attempts"]
            text = json.dumps(j)   # the timeline's detail
            assert "certificate verification failed" in text, \
                "got %s, want a certificate verification error" % text
            # the handshake was tried (STARTTLS offered and accepted), not skipped
            with open(os.path.join(p1.dir, "transcript.log")) as f:
                log = f.read()
            assert "C: STARTTLS" in log, "got transcript %r, want STARTTLS attempted" % log[-2000:]
            assert "C: MAIL" not in log, "got MAIL in transcript: fell back to plain text"
    finally:
        api.close()


def test_mx_starttls_handshake_failure_deferred_not_plain(dns, peers, mx_port, txmail_factory, workdir):
    certs = make_certs(workdir, "mxcerts", [])
    p1 = peers(MX1, ["--tls-cert", os.path.join(certs, "cert.pem"),
                     "--tls-key", os.path.join(certs, "key.pem"), "--broken-starttls"])
    env = direct_env(dns, mx_port)   # opportunistic, unverified
    env.update({"TXMAIL_RETRY_BASE": "60", "TXMAIL_RETRY_MAX": "60"})
    tx = txmail_factory(extra_env=env)
    api = tx.client()
    try:
        rcpt = "downgrade@tlsmx.test"
        mid = send(api, rcpt)
        j = wait_rcpts(api, mid, {rcpt: "deferred"}, dl(20))
        assert j["recipients"][0]["attempts"] == 1, "attempts: got %r, want 1" % j["recipients"][0]["attempts"]
        assert p1.rcpts() == [], "got %r delivered, want nothing after a failed handshake" % p1.rcpts()
        with open(os.path.join(p1.dir, "transcript.log")) as f:
            log = f.read()
        assert "BROKEN TLS" in log, "got transcript %r, want the broken handshake" % log[-2000:]
        assert "C: MAIL" not in log, "got MAIL in transcript: resent in plain text after a TLS failure"
        assert log.count("CONNECT ") == 1, "got %d connections, want 1 (no plain-text retry): %r" % (
            log.count("CONNECT "), log[-2000:])
    finally:
        api.close()
