"""test_every_address.py - every address of a name is tried (issue 9).

Standard Debian, Ubuntu and Docker images map `localhost` to ::1 as well as
127.0.0.1, and getaddrinfo gives ::1 first; the test peers listen on
127.0.0.1 only. Each test here runs under a private /etc/hosts (a user and
mount namespace: `unshare -rm` + a bind mount; skipped where the machine
cannot make one) that says so:

  - the SMTP engine's own tests that need localhost = ::1 first
    (tests/unit/test_engine.c; they skip themselves otherwise) run, and must
    all pass, not skip: a refused ::1 moves on to 127.0.0.1, so does a ::1
    that never answers (after the connect timeout, which is per address),
    and a job no address took names each one;
  - a relay given as smtp://...@localhost:PORT delivers every message on its
    first attempt, the ones given ::1 first moving on to 127.0.0.1;
  - three relay addresses of which two refuse: every message still goes out
    on its first attempt, whichever address round-robin gave it first (the
    relay used to be retried on one more address only);
  - ::1 never answers (a listener whose accept queue is full) and 127.0.0.1
    refuses: with TXMAIL_SMTP_TIMEOUT_CONNECT=1 the message is deferred
    after about a second per address, the recorded text naming both
    ("connect to localhost: [::1]:P timed out after 1s; 127.0.0.1:P refused").

Traffic stays on loopback. Must never: wait without a deadline, or pass when
the name did not resolve to ::1 first.
"""

import json
import os
import subprocess
import time

import pytest

import helpers
import logparse
from helpers import dl, free_port, read_text, wait_status, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
V6_FIRST = "::1 localhost\n127.0.0.1 localhost\n"
NO_RETRY = {"TXMAIL_RETRY_BASE": "60", "TXMAIL_RETRY_MAX": "60"}

# the tests of tests/unit/test_engine.c that need localhost = ::1 first
ENGINE_TESTS = [
    "starttls_auth_verified_localhost_v6_first",
    "next_address_after_a_refused_one",
    "next_address_after_a_connect_timeout",
    "every_address_refused_names_each",
    "connect_timeout_is_per_address",
]


def send(api, to, subject="every address"):
    return helpers.send_text(api, to, subject)


def private_hosts(workdir, text):
    why = helpers.hosts_ns_problem(workdir)
    if why is not None:
        pytest.skip("cannot make a private /etc/hosts: " + why)
    path = os.path.join(workdir, "hosts-v6-first")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run(helpers.with_hosts(path, ["getent", "ahosts", "localhost"]),
                       capture_output=True, timeout=dl(10), stdin=subprocess.DEVNULL, text=True)
    first = p.stdout.split()[0] if p.stdout.split() else ""
    if first != "::1":
        pytest.skip("localhost does not resolve to ::1 first even with %r (IPv6 off?): %r" % (text, p.stdout))
    return path


def wait_resolved(tx, addrs, ordered=True):
    """Wait for the relay lookup of localhost to give exactly addrs (in this order unless not ordered)."""
    def same(got):
        return got == addrs if ordered else sorted(got) == sorted(addrs)

    def resolved():
        return [r for r in logparse.records(tx.log, "relay host resolved")
                if r.get("host") == "localhost" and same(r.get("addrs", "").split(","))]
    wait_until(resolved, dl(10), "localhost resolved to %s" % ",".join(addrs),
               diag=lambda: read_text(tx.log)[-2000:])


def relay_moves(tx):
    """The worker's "relay address unreachable, trying the next" lines (each about a message)."""
    return [r for r in logparse.records(tx.log, "relay address unreachable, trying the next")
            if r.get("relay") == "localhost" and r.get("stage") == "connect" and r.get("msg_id")
            and r.get("rcpt")]


def engine_binary():
    sub = os.path.join("asan", "tests") if helpers.ASAN else "tests"
    b = os.path.join(REPO, "build", sub, "test_engine")
    if not os.access(b, os.X_OK):
        target = os.path.relpath(b, REPO)
        r = subprocess.run(["make", "-s", target], cwd=REPO, capture_output=True, text=True,
                           timeout=dl(300), stdin=subprocess.DEVNULL)
        assert r.returncode == 0, "make %s: %s" % (target, (r.stdout + r.stderr)[-2000:])
    return b


@pytest.mark.parametrize("name", ENGINE_TESTS)
def test_engine_with_localhost_v6_first(workdir, name):
    hosts = private_hosts(workdir, V6_FIRST)
    b = engine_binary()
    p = subprocess.run(helpers.with_hosts(hosts, [b, "--verbose", "--filter", "engine/" + name]),
                       cwd=REPO, capture_output=True, text=True, timeout=dl(90), stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "[PASS] engine::%s" % name in out, \
        "engine::%s under a private /etc/hosts (%r): rc %s\n%s" % (name, V6_FIRST, p.returncode, out[-3000:])
    assert "Tested: 1 | Passing: 1 | Failing: 0" in out, out[-3000:]


def test_relay_localhost_v6_first_delivers(workdir, hosts_txmail, smtp_peer):
    private_hosts(workdir, V6_FIRST)
    env = dict(NO_RETRY)
    env["TXMAIL_RELAY"] = "smtp://%s:%s@localhost:%d?tls=required" % (
        smtp_peer.user, smtp_peer.password, smtp_peer.port)
    tx = hosts_txmail(V6_FIRST, env)
    api = tx.client()
    try:
        wait_resolved(tx, ["::1", "127.0.0.1"])
        rcpts = ["v6first%d@example.com" % i for i in range(4)]
        helpers.deliver_once_each(api, smtp_peer, rcpts, "every address")
        moved = [r for r in relay_moves(tx)
                 if r.get("addr") == "::1" and r.get("next") == "127.0.0.1"
                 and r.get("error") == "connect to localhost: [::1]:%d refused" % smtp_peer.port]
        assert len(moved) == 2, "got %d moves from ::1 to 127.0.0.1, want 2 (round-robin):\n%s" % (
            len(moved), read_text(tx.log)[-3000:])
    finally:
        api.close()


def test_relay_goes_through_all_its_addresses(workdir, hosts_txmail, smtp_peer):
    hosts = "127.0.0.3 localhost\n127.0.0.4 localhost\n127.0.0.1 localhost\n"
    env = dict(NO_RETRY)
    env["TXMAIL_RELAY"] = "smtp://%s:%s@localhost:%d?tls=required" % (
        smtp_peer.user, smtp_peer.password, smtp_peer.port)
    tx = hosts_txmail(hosts, env)   # nothing listens on 127.0.0.3 and .4: refused at once
    api = tx.client()
    try:
        wait_resolved(tx, ["127.0.0.3", "127.0.0.4", "127.0.0.1"], ordered=False)
        rcpts = ["three%d@example.com" % i for i in range(6)]
        for j, _ in helpers.deliver_once_each(api, smtp_peer, rcpts, "every address"):
            assert "deferred" not in json.dumps(j["events"]), "a deferral was recorded: %r" % j["events"]
        # round-robin over three: two of the six start on the address just before the two dead ones
        twice = [r for r in relay_moves(tx)
                 if r.get("addr") in ("127.0.0.3", "127.0.0.4") and r.get("next") in ("127.0.0.3", "127.0.0.4")]
        assert twice, "no job moved from one dead address to the other:\n%s" % read_text(tx.log)[-3000:]
    finally:
        api.close()


def test_relay_every_address_fails_names_each(workdir, hosts_txmail, smtp_peer):
    private_hosts(workdir, V6_FIRST)
    port = free_port()   # nothing on 127.0.0.1:port: refused
    socks = helpers.blackhole_listen("::1", port)
    try:
        env = dict(NO_RETRY)
        env["TXMAIL_RELAY"] = "smtp://%s:%s@localhost:%d?tls=required" % (
            smtp_peer.user, smtp_peer.password, port)
        env["TXMAIL_SMTP_TIMEOUT_CONNECT"] = "1"
        tx = hosts_txmail(V6_FIRST, env)
        api = tx.client()
        try:
            wait_resolved(tx, ["::1", "127.0.0.1"])
            # round-robin: the first job starts at ::1, the second at 127.0.0.1
            t0 = time.monotonic()
            m1 = send(api, "all1@example.com")
            j1 = wait_status(api, m1, "deferred", dl(20))
            took = time.monotonic() - t0
            m2 = send(api, "all2@example.com")
            j2 = wait_status(api, m2, "deferred", dl(20))
            texts = [json.dumps(j1), json.dumps(j2)]
            want = ["connect to localhost: [::1]:%d timed out after 1s; 127.0.0.1:%d refused" % (port, port),
                    "connect to localhost: 127.0.0.1:%d refused; [::1]:%d timed out after 1s" % (port, port)]
            for t in texts:
                assert any(w in t for w in want), "got %s, want one of %r" % (t, want)
            assert want[0] in "".join(texts) and want[1] in "".join(texts), \
                "got %r, want both orders (round-robin start)" % texts
            assert 0.9 <= took < dl(10), "deferred after %.2fs, want about the 1s connect timeout" % took
            assert j1["recipients"][0]["attempts"] == 1 and j2["recipients"][0]["attempts"] == 1
            assert smtp_peer.count() == 0
        finally:
            api.close()
    finally:
        for s in socks:
            s.close()
