"""test_shaping.py - per-destination shaping (server/shaper.c), end to end.

Cases:
  - TXMAIL_DOMAIN_RATE: ten messages to a domain limited to 5/s reach the
    SMTP peer spread over >= ~1.4 s (one every 200 ms), while ten messages
    to an unlimited domain, posted at the same time, arrive at once.
  - destination backoff: a relay that accepts TCP connections and closes
    them at once (no banner) is suspended after TXMAIL_DEST_FAIL_THRESHOLD
    connection failures; while suspended the listener sees no new
    connection although the retry policy would retry every 0.5 s; the
    deliveries are deferred ("not attempted: destination suspended"), never
    failed; when the suspension ends one probe is tried, and its failure
    suspends the destination again for twice as long.

Must never: wait without a deadline, or trust txmail's view where the
peer's can be checked (arrival times and connection counts are measured
on the peer side).
"""

import os
import re
import socket
import threading
import time

from helpers import SCALE, dl, wait_until


def send(api, to):
    r = api.send({"from": "sender@txmail.test", "to": to, "subject": "shaping", "text": "hello"})
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    return r.json["id"]


def test_domain_rate_spaces_one_domain_only(smtp_peer, txmail_factory):
    tx = txmail_factory(extra_env={"TXMAIL_DOMAIN_RATE": "slow.test=5, *=0"})
    api = tx.client()
    try:
        n = 10
        for i in range(n):
            send(api, ["s%d@slow.test" % i, "f%d@fast.test" % i])
        seen = {}

        def all_arrived():
            now = time.monotonic()
            for r in smtp_peer_rcpts(smtp_peer):
                seen.setdefault(r, now)
            return len(seen) >= 2 * n
        wait_until(all_arrived, dl(30), "20 deliveries at the peer", interval=0.01,
                   diag=lambda: "seen %r" % sorted(seen))
        slow = sorted(t for r, t in seen.items() if r.endswith("@slow.test"))
        fast = sorted(t for r, t in seen.items() if r.endswith("@fast.test"))
        assert len(slow) == n and len(fast) == n, "got %r" % sorted(seen)
        slow_spread, fast_spread = slow[-1] - slow[0], fast[-1] - fast[0]
        # 9 gaps of 200 ms = 1.8 s; generous lower bound
        assert slow_spread >= 1.4, "slow.test (5/s): 10 arrivals spread over %.2fs, want >= 1.4s" % slow_spread
        assert fast_spread < max(1.0, slow_spread / 2) * SCALE, \
            "fast.test (unlimited): spread %.2fs, want well under slow.test's %.2fs" % (fast_spread, slow_spread)
        assert fast[-1] < slow[-1] - 0.5, \
            "the unlimited domain was held back: last fast at +%.2fs, last slow at +%.2fs" % (
                fast[-1] - slow[0], slow[-1] - slow[0])
        # nothing is lost or duplicated by holding
        rc = smtp_peer_rcpts(smtp_peer)
        assert len(rc) == 2 * n and len(set(rc)) == 2 * n, "peer got %r, want 20 distinct" % sorted(rc)
    finally:
        api.close()


def smtp_peer_rcpts(peer):
    out = []
    for m in peer.messages():
        out.extend(r.lower() for r in m.meta.get("rcpt_tos", []))
    return out


class SlamListener:
    """Accepts TCP connections and closes them at once (no banner); counts them."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.times = []
        self.stopping = False
        self.thr = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thr.start()
        return self

    def _run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.times.append(time.monotonic())
            c.close()

    def count(self):
        with self.lock:
            return len(self.times)

    def stop(self):
        self.stopping = True
        self.thr.join(5)
        self.sock.close()


def read_log(tx):
    with open(tx.log, errors="replace") as f:
        return f.read()


def test_failing_relay_is_suspended_not_hammered(txmail_factory):
    lis = SlamListener().start()
    try:
        base = 3.0 * SCALE
        tx = txmail_factory(extra_env={
            "TXMAIL_RELAY": "smtp://127.0.0.1:%d?tls=none" % lis.port,
            "TXMAIL_DEST_FAIL_THRESHOLD": "3",
            "TXMAIL_DEST_BACKOFF_BASE": "%g" % base,
            "TXMAIL_DEST_BACKOFF_MAX": "600",
            # without the backoff every delivery would be retried every <= 0.5 s
            "TXMAIL_RETRY_BASE": "0.2",
            "TXMAIL_RETRY_MAX": "0.5",
        })
        api = tx.client()
        try:
            mids = [send(api, "r%d@dest.test" % i) for i in range(3)]
            dest = "relay 127.0.0.1:%d" % lis.port
            # shaper.c: msg="suspending destination, deliveries deferred" destination="relay h:p"
            # suspended_for=6s connection_failures=3
            susp_re = re.compile(r'msg="suspending destination, deliveries deferred" destination="%s" '
                                 r'suspended_for=(\d+)s connection_failures=(\d+)' % re.escape(dest))
            m = wait_until(lambda: susp_re.search(read_log(tx)), dl(20), "suspension logged",
                           diag=lambda: "connections: %d" % lis.count())
            assert int(m.group(2)) >= 3, "suspended after %s failures, want >= 3" % m.group(2)
            t_susp = time.monotonic()
            # in-flight stragglers settle; then no connection at all until the end
            time.sleep(0.3)
            c0 = lis.count()
            quiet_until = t_susp + base - 0.5
            while time.monotonic() < quiet_until:
                time.sleep(0.05)
            c1 = lis.count()
            assert c1 == c0, "the peer saw %d new connections during the suspension, want 0" % (c1 - c0)

            # every delivery is deferred (not failed), some of them without an attempt
            for mid in mids:
                r = api.get("/v1/messages/" + mid)
                assert r.status == 200, "GET: got %s %r" % (r.status, r.body)
                st = r.json["recipients"][0]["status"]
                assert st == "deferred", "%s: got status %r, want deferred" % (mid, st)
            # the end of the suspension is logged once, then a probe connects
            wait_until(lambda: lis.count() > c1, dl(base + 10), "a probe after the suspension")
            over = 'msg="destination suspension over, trying it again" destination="%s"' % dest
            wait_until(lambda: over in read_log(tx), dl(5),
                       "suspension end logged")
            # the probe fails: suspended again at once, for twice as long
            m2 = wait_until(lambda: [x for x in susp_re.finditer(read_log(tx))][1:] or None,
                            dl(10), "second suspension logged")
            got2 = int(m2[0].group(1))
            assert got2 >= int(2 * base) - 1, "second suspension: got %ds, want ~%gs (doubled)" % (got2, 2 * base)
            log = read_log(tx)
            assert log.count("suspension over") == 1, "suspension end logged %d times, want once" % (
                log.count("suspension over"))
            # each one's retry was set to the end of the suspension, so one may be
            # in flight (read as "queued", or "sending" once a worker holds it) for a
            # moment: wait for it to be deferred again; failed or delivered fails at once
            for mid in mids:
                def deferred(mid=mid):
                    r = api.get("/v1/messages/" + mid)
                    st = r.json["recipients"][0]["status"]
                    assert st in ("deferred", "queued", "sending"), \
                        "%s: got status %r, want deferred" % (mid, st)
                    return st == "deferred"
                wait_until(deferred, dl(5), "%s deferred again after the probe" % mid)
            assert "destination suspended" in log, "no 'not attempted: destination suspended' outcome in the log"
        finally:
            api.close()
    finally:
        lis.stop()
