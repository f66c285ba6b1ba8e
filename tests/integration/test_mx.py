"""test_mx.py - direct delivery without TXMAIL_RELAY: a real DNS server
(dnsmasq on a random loopback port, TXMAIL_DNS_SERVER) serves MX, A and
null-MX records; receiving MX hosts are smtpd.py peers on 127.0.0.2 and
127.0.0.3 sharing one random port (TXMAIL_MX_PORT).

Cases: delivered via the primary MX (preference 10), the backup (20) used
when the primary is down, a domain with only an A record (RFC 5321 5.1),
NXDOMAIN -> failed, null MX (RFC 7505) -> failed.

Must never: wait without a deadline, or trust txmail's view where the
peer's can be checked.
"""

import json
import os
import subprocess

import pytest

from dns_server import DnsServer
from helpers import PEERS, PYTHON, dl, free_port, kill_group, reap, tail, wait_until

MX1, MX2 = "127.0.0.2", "127.0.0.3"

RECORDS = [
    "mx-host=example.test,mx1.example.test,10",
    "mx-host=example.test,mx2.example.test,20",
    "host-record=mx1.example.test,%s" % MX1,
    "host-record=mx2.example.test,%s" % MX2,
    "host-record=aonly.test,%s" % MX1,
    "mx-host=nullmx.test,.,0",
]


class PlainPeer:
    """smtpd.py on one address: no TLS, no AUTH, stores what it accepts."""

    def __init__(self, workdir, host, port):
        self.host = host
        self.port = port
        self.dir = os.path.join(workdir, "mx-" + host)
        self.maildir = os.path.join(self.dir, "mail")
        os.makedirs(self.maildir, exist_ok=True)
        self.ready = os.path.join(self.dir, "ready")
        self.stderr = os.path.join(self.dir, "stderr.log")
        self.proc = None

    def start(self):
        with open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen(
                [PYTHON, os.path.join(PEERS, "smtpd.py"), "--host", self.host, "--port", str(self.port),
                 "--maildir", self.maildir, "--ready-file", self.ready,
                 "--log", os.path.join(self.dir, "transcript.log")],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("smtpd.py on %s exited: %s" % (self.host, tail(self.stderr, 30)))
            return os.path.exists(self.ready)
        wait_until(ready, dl(15), "smtpd.py on %s ready" % self.host)
        return self

    def rcpts(self):
        out = []
        for n in sorted(os.listdir(self.maildir)):
            if n.endswith(".json") and not n.startswith("."):
                with open(os.path.join(self.maildir, n)) as f:
                    out.extend(r.lower() for r in json.load(f).get("rcpt_tos", []))
        return out

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            if not reap(self.proc, dl(5)):
                kill_group(self.proc)
                reap(self.proc, dl(5))
        kill_group(self.proc)


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

    def start(host):
        p = PlainPeer(workdir, host, mx_port)
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
