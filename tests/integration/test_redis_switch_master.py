"""test_redis_switch_master.py - Sentinel's +switch-master, heard as it
happens (server/store_watch.c).

A Sentinel group (sentinel_group.py: a primary, two replicas, three
sentinels, down after 1 s) and txmail with TXMAIL_REDIS_TIMEOUT=30. The
primary is frozen with SIGSTOP, not killed: its connections stay open and
silent, as with a primary cut off by the network, so nothing tells txmail
it is gone but the sentinels. Once they have promoted a replica:

  - a send gets 202 within a few seconds of the switch (its connection was
    idle on the frozen primary: without the subscription it would wait the
    30 s command timeout, then settle);
  - the message is delivered within a few seconds too (the workers' fetches
    were waiting on the frozen primary: their sockets are shut down);
  - the log says which failover it heard (msg="sentinel reports a
    failover, reconnecting" master=... from=<old> to=<new>).

Must never: leave the frozen primary stopped (SIGCONT in finally; the
group is stopped at teardown), or wait without a deadline.
"""

import os
import signal
import time

from helpers import dl, wait_until
from sentinel_group import MASTER, sentinel_group  # noqa: F401 (the fixture, for the test below)
from test_redis_sentinel import read_log, send_and_deliver


def test_switch_master_reconnects_at_once(txmail_factory, sentinel_group, smtp_peer):  # noqa: F811
    g = sentinel_group()
    old = g.primary
    t = txmail_factory(extra_env={"TXMAIL_REDIS_URL": g.url(), "TXMAIL_REDIS_TIMEOUT": "30"})
    send_and_deliver(t, smtp_peer, "before@example.com")

    os.kill(old.proc.pid, signal.SIGSTOP)
    try:
        new_port = g.wait_promoted(old, dl(30)).port
        t_switch = time.monotonic()

        c = t.client(timeout=40)
        key = "switch-" + os.urandom(6).hex()
        try:
            def accepted():
                r = c.send({"from": "sender@example.com", "to": "after@example.com",
                            "subject": "after the switch", "text": "hello\n"},
                           headers={"Idempotency-Key": key})
                assert r.status in (202, 503, 504), "got %s %r" % (r.status, r.body)
                return r if r.status == 202 else None
            r = wait_until(accepted, dl(8), "a send accepted soon after the switch", interval=0.1)
        finally:
            c.close()
        took = time.monotonic() - t_switch
        assert took < 25, "a send took %.1fs after the switch: the 30 s timeout, not the subscription" % took
        smtp_peer.wait_for_rcpt("after@example.com", dl(10))
        delivered = time.monotonic() - t_switch
        want = 'msg="sentinel reports a failover, reconnecting" master=%s from=127.0.0.1:%d to=127.0.0.1:%d' % (
            MASTER, old.port, new_port)
        log = read_log(t)
        assert want in log, "no %r in the log:\n%s" % (want, log[-4000:])
        print("after the switch: 202 in %.2fs, delivered in %.2fs (message %s)" % (
            took, delivered, r.json["id"]))
    finally:
        try:
            os.kill(old.proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
