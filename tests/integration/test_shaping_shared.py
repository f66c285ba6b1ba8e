"""test_shaping_shared.py - shaping shared by worker processes through Redis
(server/shaper.c's sync thread, server/store_shaping.c), end to end.

Cases:
  - TXMAIL_DOMAIN_RATE=slow.test=5 with two `txmail worker` processes on one
    Redis: 30 messages to slow.test reach the SMTP peer no faster than 5/s
    together over any window (slack: the first message, one block - at 5/s
    a block is one slot - and a short stall of the SMTP path), and both
    processes delivered some of them. Per-process buckets (the code before
    this) give ~10/s, 13 messages over, and fail here.
  - a suspension found by one worker holds every worker: worker A alone
    meets a relay that closes connections at once and suspends it; worker
    B, started afterwards, learns the suspension from Redis; messages sent
    then (both workers fetch them, in turn) make no connection from either
    process until the suspension ends, and B's deferrals say "not
    attempted: destination suspended".

Must never: wait without a deadline, or bound a rate from below (a slow
machine is slower: only upper bounds are asserted; times are the peer's).
"""

import re
import time

from helpers import SCALE, dl, wait_until
from test_shaping import SlamListener, read_log, send


def arrivals(peer, domain):
    """Arrival times (peer clock) of the recipients at domain."""
    out = []
    for m in peer.messages():
        for r in m.meta.get("rcpt_tos", []):
            if r.lower().endswith("@" + domain):
                out.append(m.meta["t"])
    return sorted(out)


def worst_excess(times, rate):
    """The largest (messages in a window) - rate * (window length), over every window."""
    worst = 0.0
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            worst = max(worst, (j - i) - rate * (times[j] - times[i]))
    return worst


def test_two_workers_share_one_domain_rate(txmail_factory, smtp_peer):
    env = {"TXMAIL_DOMAIN_RATE": "slow.test=5"}
    api_p = txmail_factory(args=("api",), extra_env=env)
    w1 = txmail_factory(args=("worker",), http=False, extra_env=env)
    w2 = txmail_factory(args=("worker",), http=False, extra_env=env)
    for w in (w1, w2):
        wait_until(lambda w=w: 'msg="worker started"' in read_log(w), dl(10), "%s started" % w.name)
    api = api_p.client()
    try:
        n = 30
        # paced at 10/s (twice the rate, so the shared bucket still has to hold them back),
        # not one burst: a worker still starting (ASan, a loaded CI box) when a burst arrives
        # leaves the other to take it all in one fetch (CI saw "worker #2 delivered none")
        t_next = time.monotonic()
        for i in range(n):
            send(api, "s%d@slow.test" % i)
            t_next += 0.1
            time.sleep(max(0.0, t_next - time.monotonic()))
        wait_until(lambda: len(arrivals(smtp_peer, "slow.test")) >= n, dl(60),
                   "%d deliveries to slow.test at the peer" % n, interval=0.1,
                   diag=lambda: "have %d" % len(arrivals(smtp_peer, "slow.test")))
        t = arrivals(smtp_peer, "slow.test")
        assert len(t) == n, "peer got %d deliveries, want %d" % (len(t), n)
        # over any window: at most 5/s plus the first message and one block (1 slot at 5/s),
        # plus 3 for a stall of the SMTP path (a peer or engine pause of 0.6 s, on a loaded
        # machine) after which the deliveries sent on time arrive together. The shaper's
        # own release times are exact (checked from debug logs: <= 2.4 over 300 at 100/s);
        # per-process buckets give ~13 here (10/s for 3 s)
        excess = worst_excess(t, 5.0)
        achieved = (n - 1) / (t[-1] - t[0]) if t[-1] > t[0] else float("inf")
        assert excess <= 5.0, \
            "two workers sent %.1f messages more than 5/s allows in some window " \
            "(%.2f/s over the run): the rate is not shared" % (excess, achieved)
        # both processes took part, or this proves nothing
        for w in (w1, w2):
            got = len(re.findall(r'msg="delivered" [^\n]*rcpt=s\d+@slow\.test', read_log(w)))
            assert got > 0, "%s delivered none of them: want both workers sending" % w.name
        print("shared rate: %d messages at %.2f/s over %.2fs, worst window excess %.2f" % (
            n, achieved, t[-1] - t[0], excess))
    finally:
        api.close()


def test_suspension_found_by_one_worker_holds_every_worker(txmail_factory):
    lis = SlamListener().start()
    try:
        base = 8.0 * SCALE
        env = {
            "TXMAIL_RELAY": "smtp://127.0.0.1:%d?tls=none" % lis.port,
            "TXMAIL_DEST_FAIL_THRESHOLD": "3",
            "TXMAIL_DEST_BACKOFF_BASE": "%g" % base,
            "TXMAIL_DEST_BACKOFF_MAX": "600",
            "TXMAIL_RETRY_BASE": "0.2",
            "TXMAIL_RETRY_MAX": "0.5",
        }
        api_p = txmail_factory(args=("api",), extra_env=env)
        wa = txmail_factory(args=("worker",), http=False, extra_env=env, name="worker A")
        api = api_p.client()
        try:
            dest = "relay 127.0.0.1:%d" % lis.port
            for i in range(3):
                send(api, "a%d@dest.test" % i)
            susp = 'msg="suspending destination, deliveries deferred" destination="%s"' % dest
            wait_until(lambda: susp in read_log(wa), dl(20), "worker A suspends the relay",
                       diag=lambda: "connections: %d" % lis.count())
            t_susp = time.monotonic()
            wb = txmail_factory(args=("worker",), http=False, extra_env=env, name="worker B")
            wait_until(lambda: 'msg="worker started"' in read_log(wb), dl(10), "worker B started")
            time.sleep(1.5)   # the shared suspensions are read at start and every second
            quiet_until = t_susp + base - 1.0
            assert time.monotonic() < quiet_until - 2.5, \
                "worker B took too long to start: no time left in the suspension to test"
            c0 = lis.count()
            mids = []
            for i in range(8):
                # spread out, so that both workers' fetches get some of them
                mids.append(send(api, "b%d@dest.test" % i))
                time.sleep(0.2)
            while time.monotonic() < quiet_until:
                time.sleep(0.05)
            c1 = lis.count()
            assert c1 == c0, "the relay saw %d connections during worker A's suspension, want 0 " \
                "(worker B did not honour it)" % (c1 - c0)
            learned = 'msg="destination suspended by another delivery loop, deferring here too" ' \
                      'destination="%s"' % dest
            assert learned in read_log(wb), "worker B did not log learning the suspension"
            not_attempted = re.compile(r'msg="deferred" [^\n]*rcpt=b\d+@dest\.test[^\n]*stage=suspended')
            assert not_attempted.search(read_log(wb)), \
                "worker B deferred none of the new messages as suspended: want both workers holding"
            for mid in mids:
                r = api.get("/v1/messages/" + mid)
                st = r.json["recipients"][0]["status"]
                assert st in ("deferred", "queued", "sending"), "%s: got status %r, want deferred" % (mid, st)
        finally:
            api.close()
    finally:
        lis.stop()
