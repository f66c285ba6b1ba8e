"""test_bounce_bounds.py - the DSN listener of `run` (TXMAIL_BOUNCE_LISTEN)
holds a bounded amount of memory, whatever its clients send.

- A DSN past TXMAIL_BOUNCE_MAX_BYTES is answered 552 5.3.4 at the end of
  DATA and nothing is recorded (the same report under the cap fails the
  recipient, so the check can see a recording); EHLO advertises the cap.
- TXMAIL_BOUNCE_MAX_CLIENTS_PER_IP and TXMAIL_BOUNCE_MAX_CLIENTS: the
  excess connection is greeted 421 4.7.0 (other loopback addresses,
  127.0.0.x, stand for other peers), and a closed connection frees its slot.
- TXMAIL_BOUNCE_IDLE_TIMEOUT cuts a silent client and
  TXMAIL_BOUNCE_DATA_TIMEOUT a DATA phase that trickles (421 4.4.2).
- The attack: clients that each send several times the cap without the
  final dot (one valid VERP address is enough): the `run` process's RSS
  grows by less than clients x cap + slack.

Run as a script it repeats the attack at full size against a binary, for
the before/after figures:
  /usr/bin/python3 tests/integration/test_bounce_bounds.py build/txmail 24 48

Must never: wait without a deadline, or use a fixed port.
"""

import hashlib
import hmac
import os
import smtplib
import socket
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.join(HERE, "peers")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import helpers  # noqa: E402
from helpers import dl, free_port, tail, wait_until  # noqa: E402
from test_bounce import deliver, dsn, get_msg, smtp_send  # noqa: E402

DOMAIN = "bounce.test.txmail.local"
SECRET = "it-bounce-secret-0123456789abcdef"
MiB = 1024 * 1024


def verp(msg_id, idx=0):
    """A valid recipient-level VERP address (server/verp.h) for msg_id; the
    message need not exist: RCPT checks only the MAC."""
    mac = hmac.new(SECRET.encode(), ("%s.%d" % (msg_id, idx)).encode(), hashlib.sha256).hexdigest()
    return "bounces+%s.%d.%s@%s" % (msg_id, idx, mac[:10], DOMAIN)


def bounce_env(port, **limits):
    env = {"TXMAIL_BOUNCE_DOMAIN": DOMAIN, "TXMAIL_BOUNCE_SECRET": SECRET,
           "TXMAIL_BOUNCE_LISTEN": "127.0.0.1:%d" % port}
    for k, v in limits.items():
        env["TXMAIL_BOUNCE_" + k.upper()] = str(v)
    return env


def start(txmail_factory, **limits):
    port = free_port()
    t = txmail_factory(extra_env=bounce_env(port, **limits))
    t.bounce_port = port
    return t


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def recv_line(s, deadline):
    """One reply line (or b"" on EOF) before the monotonic deadline."""
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no reply line before the deadline (got %r)" % buf)
        s.settimeout(left)
        try:
            b = s.recv(1)
        except ConnectionResetError:
            return buf
        if not b:
            return buf
        buf += b
    return buf


def connect(port, src="127.0.0.1"):
    """A raw connection from source address src; returns (socket, greeting line)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=dl(5), source_address=(src, 0))
    return s, recv_line(s, time.monotonic() + dl(5))


def open_data(port, rcpt, src="127.0.0.1"):
    """A client past DATA's 354, ready for message bytes."""
    s, greet = connect(port, src)
    assert greet.startswith(b"220 "), "greeting: got %r, want 220" % greet
    end = time.monotonic() + dl(5)
    s.sendall(b"EHLO mx.example.net\r\n")
    while True:
        line = recv_line(s, end)
        if not line.startswith(b"250-"):
            break
    assert line.startswith(b"250 "), "EHLO: got %r" % line
    for cmd, want in ((b"MAIL FROM:<>\r\n", b"250"), (b"RCPT TO:<%s>\r\n" % rcpt.encode(), b"250"),
                      (b"DATA\r\n", b"354")):
        s.sendall(cmd)
        line = recv_line(s, end)
        assert line.startswith(want), "%r: got %r, want %s" % (cmd, line, want)
    return s


def flood(socks, nbytes, chunk=256 * 1024):
    """Send nbytes of message lines to each socket (no final dot), interleaved."""
    line = b"X" * 998 + b"\r\n"
    block = line * (chunk // len(line))
    sent = [0] * len(socks)
    while min(sent) < nbytes:
        for i, s in enumerate(socks):
            if sent[i] < nbytes:
                s.sendall(block)
                sent[i] += len(block)
    return sum(sent)


def test_oversize_dsn_refused_and_not_recorded(txmail_factory, smtp_peer):
    cap = 64 * 1024
    t = start(txmail_factory, max_bytes=cap)
    rcpt = "gone@example.net"
    api, mid, mail_from = deliver(t, smtp_peer, rcpt)
    body = dsn(mail_from, rcpt, "failed", "5.1.1", "550 5.1.1 <gone@example.net>: User unknown")

    s = smtplib.SMTP("127.0.0.1", t.bounce_port, timeout=dl(10))
    try:
        s.ehlo("mx.example.net")
        assert s.esmtp_features.get("size") == str(cap), \
            "EHLO SIZE: got %r, want %d" % (s.esmtp_features.get("size"), cap)
    finally:
        s.quit()

    # the same report with a long text part: past the cap
    pad = b"".join(b"%06d padding padding padding padding padding padding padding padding\r\n" % i
                   for i in range(2 * cap // 70))
    big = body.replace(b"Your message could not be delivered.\r\n",
                       b"Your message could not be delivered.\r\n" + pad, 1)
    assert len(big) > 2 * cap
    rcode, _, dcode = smtp_send(t.bounce_port, mail_from, big)
    assert (rcode, dcode) == (250, 552), "oversize DSN: got RCPT %s DATA %s, want 250 552" % (rcode, dcode)
    # the hook runs before the end-of-DATA reply: a recording would be visible now
    st = get_msg(api, mid)["recipients"][0]["status"]
    assert st == "delivered", "after the oversize DSN: status %r, want delivered (nothing recorded)" % st
    log = tail(t.log, 200)
    assert "inbound message refused, too big" in log and "max=%d" % cap in log, "got log %r" % log[-2000:]

    # under the cap the same report is recorded: the check above could see one
    rcode, _, dcode = smtp_send(t.bounce_port, mail_from, body)
    assert (rcode, dcode) == (250, 250), "DSN under the cap: got RCPT %s DATA %s" % (rcode, dcode)
    wait_until(lambda: get_msg(api, mid)["recipients"][0]["status"] == "failed", dl(10),
               "%s failed after the DSN under the cap" % mid)


def test_client_limits(txmail_factory):
    t = start(txmail_factory, max_clients=3, max_clients_per_ip=2)
    held = []
    try:
        for _ in range(2):
            s, g = connect(t.bounce_port, "127.0.0.1")
            held.append(s)
            assert g.startswith(b"220 "), "client from 127.0.0.1: got %r, want 220" % g
        s, g = connect(t.bounce_port, "127.0.0.1")
        s.close()
        assert g.startswith(b"421 4.7.0 "), "third client from 127.0.0.1: got %r, want 421 4.7.0" % g
        s, g = connect(t.bounce_port, "127.0.0.2")
        held.append(s)
        assert g.startswith(b"220 "), "client from 127.0.0.2: got %r, want 220" % g
        s, g = connect(t.bounce_port, "127.0.0.3")
        s.close()
        assert g.startswith(b"421 4.7.0 "), "fourth client in all: got %r, want 421 4.7.0" % g

        # a closed connection frees its slot
        held.pop(0).close()

        def admitted():
            c, greet = connect(t.bounce_port, "127.0.0.3")
            if greet.startswith(b"220 "):
                held.append(c)
                return True
            c.close()
            return False
        wait_until(admitted, dl(5), "a slot freed by a closed connection", interval=0.05)
    finally:
        for s in held:
            s.close()
    log = tail(t.log, 200)
    assert "inbound connection refused, too many clients" in log, "got log %r" % log[-2000:]


def test_idle_and_data_timeouts(txmail_factory):
    t = start(txmail_factory, idle_timeout=0.5, data_timeout=1)
    s, g = connect(t.bounce_port)
    try:
        assert g.startswith(b"220 ")
        line = recv_line(s, time.monotonic() + dl(5))
        assert line.startswith(b"421 4.4.2"), "silent client: got %r, want 421 4.4.2" % line
    finally:
        s.close()

    # a DATA phase that trickles a line every 0.2 s (never idle) is cut at its deadline
    s = open_data(t.bounce_port, verp("msg_trickle"))
    try:
        t0 = time.monotonic()
        end = t0 + dl(6)
        got = b""
        s.setblocking(False)
        while time.monotonic() < end and not got:
            try:
                s.sendall(b"x\r\n")
            except OSError:
                break
            time.sleep(0.2)
            try:
                got = s.recv(200)
            except BlockingIOError:
                pass
            except OSError:
                break
        s.setblocking(True)
        if not got:
            got = recv_line(s, time.monotonic() + dl(2))
        assert got.startswith(b"421 4.4.2"), "trickling DATA: got %r, want 421 4.4.2" % got
        assert time.monotonic() - t0 < dl(4), "cut after %.1fs, want about 1s" % (time.monotonic() - t0)
    finally:
        s.close()


def attack(pid, port, clients, nbytes, spread=1):
    """clients connections (from spread loopback addresses 127.0.0.x), each
    sending nbytes of DATA without the final dot; returns (RSS before in
    KiB, RSS after, the greetings refused)."""
    before = rss_kib(pid)
    socks, refused = [], 0
    try:
        for i in range(clients):
            try:
                socks.append(open_data(port, verp("msg_attack%d" % i), "127.0.0.%d" % (1 + i % spread)))
            except AssertionError as e:
                if "421" not in str(e):
                    raise
                refused += 1
        flood(socks, nbytes)
        # wait for the listener to have read it all: the RSS settles
        last, stable_since, end = -1, time.monotonic(), time.monotonic() + dl(10)
        while time.monotonic() < end:
            now = rss_kib(pid)
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since > 0.5:
                break
            time.sleep(0.05)
        after = rss_kib(pid)
    finally:
        for s in socks:
            s.close()
    return before, after, refused


def test_rss_bounded_under_attack(txmail_factory):
    cap, clients = 1 * MiB, 8
    port = free_port()
    env = bounce_env(port, max_bytes=cap, max_clients=clients, max_clients_per_ip=clients)
    if helpers.ASAN:
        # ASan keeps freed blocks in quarantine (counted in RSS): keep it small here
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:quarantine_size_mb=1"
    t = txmail_factory(extra_env=env)
    t.bounce_port = port
    before, after, refused = attack(t.proc.pid, t.bounce_port, clients, 4 * cap)
    assert refused == 0, "got %d clients refused, want none" % refused
    growth = (after - before) * 1024
    # clients x (cap + the sink's per-client buffers) + allocator slack
    limit = clients * (cap + 512 * 1024) + 8 * MiB
    assert growth < limit, "RSS grew by %.1f MiB sending %d x %d MiB without the dot, want < %.1f MiB" % (
        growth / MiB, clients, 4 * cap // MiB, limit / MiB)


if __name__ == "__main__":
    # manual figures: `run` with the default limits against the full attack
    import tempfile
    binary, clients, mib = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    spread = int(os.environ.get("SPREAD", "1"))
    work = tempfile.mkdtemp(prefix="bounce-attack-")
    r = helpers.RedisServer(work)
    r.start()
    port, bport = free_port(), free_port()
    env = {"TXMAIL_REDIS_URL": r.url, "TXMAIL_API_KEYS": "txm_test_attack0000000000000000",
           "TXMAIL_LISTEN": "127.0.0.1:%d" % port, "TXMAIL_DATA_DIR": work}
    env.update(bounce_env(bport))
    env.update(dict(a.split("=", 1) for a in sys.argv[4:]))
    t = helpers.Txmail(os.path.abspath(binary), ["run"], helpers.clean_env(env), os.path.join(work, "txmail.log"),
                       port=port)
    t.start()
    try:
        b, a, refused = attack(t.proc.pid, bport, clients, int(mib * MiB), spread)
        print("%s: %d clients from %d addresses x %g MiB without the dot (%d refused): "
              "RSS %.0f MiB -> %.0f MiB (+%.0f MiB)" % (binary, clients, spread, mib, refused,
                                                       b / 1024, a / 1024, (a - b) / 1024))
    finally:
        t.stop()
        r.stop()
