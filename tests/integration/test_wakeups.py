"""test_wakeups.py - new work wakes the loop that waits for it (issue 13,
the lone verification code's tail).

Owns: the webhook dispatcher's wake-up while it waits in curl's poll with
requests in flight. The delivery recorder tells this process's dispatcher
that it recorded events (webhook_notify), so the dispatcher reads the outbox
at once instead of when its poll interval ends. Here the interval is made
30 s (TXMAIL_TEST_WEBHOOK_POLL) and a request stays in flight all along (a
default endpoint that accepts and never answers, TXMAIL_WEBHOOK_TIMEOUT 60 s):
a second message's webhook must still reach a live endpoint within 10 s.
Waiting for the interval instead would take up to 30 s.

Nothing here is a timed assertion of speed: the deadline is a third of
the interval it proves was not waited for, generous on a shared machine.
The latency figures come from tests/bench/bench_otp.py.

Must never: leave the never-answering socket open.
"""
import os
import socket
import threading

from helpers import dl, resp_cmd, wait_until


class SilentEndpoint:
    """Accepts connections and reads requests, never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.url = "http://127.0.0.1:%d/silent" % self.sock.getsockname()[1]
        self.conns = []
        self.got = []          # the first bytes read on each connection
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            c.settimeout(5)
            self.conns.append(c)
            try:
                self.got.append(c.recv(65536))
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.t.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


POLL_S = 30


def waits_in_poll(pid, timeout_ms):
    """True when a thread of pid is blocked in poll(2) with this timeout
    (x86-64: syscall 7, the third argument): the dispatcher in curl's poll."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/syscall" % (pid, tid)) as f:
                v = f.read().split()
        except OSError:
            continue
        if len(v) > 3 and v[0] == "7" and int(v[3], 16) == timeout_ms:
            return True
    return False


def test_event_wakes_dispatcher_waiting_on_requests_in_flight(txmail_factory, webhook, smtp_peer, redis):
    silent = SilentEndpoint()
    try:
        t = txmail_factory(extra_env={"TXMAIL_WEBHOOK_URL": silent.url,
                                      "TXMAIL_WEBHOOK_TIMEOUT": "60",
                                      "TXMAIL_TEST_WEBHOOK_POLL": str(POLL_S)})
        c = t.client()
        r = c.post_json("/v1/webhooks", {"url": webhook.url, "events": ["message.delivered"]})
        assert r.status == 201, "POST /v1/webhooks: got %r, want 201" % r
        webhook.set_secret(r.json["secret"])
        live_q = "txm{0}:whq:" + r.json["id"]

        # the first message: its request to the silent endpoint stays in flight
        r = c.send({"from": "a@example.com", "to": "first@example.com", "subject": "s", "text": "t"})
        assert r.status == 202, "got %r" % r
        webhook.wait_events_for(r.json["id"], 1, dl(15))
        wait_until(lambda: any(b.startswith(b"POST ") for b in silent.got), dl(10),
                   "the request to the silent endpoint")
        # recorded done, and the dispatcher has gone on into its poll
        wait_until(lambda: resp_cmd(redis.port, "ZCARD", live_q) == 0, dl(10),
                   "the live endpoint's delivery recorded done")
        wait_until(lambda: waits_in_poll(t.proc.pid, POLL_S * 1000), dl(10),
                   "the dispatcher waiting in curl's poll")

        # the second: recorded while the dispatcher waits on that request
        r = c.send({"from": "a@example.com", "to": "second@example.com", "subject": "s", "text": "t"})
        assert r.status == 202, "got %r" % r
        smtp_peer.wait_for_rcpt("second@example.com", dl(10))
        evs = webhook.wait_events_for(r.json["id"], 1, dl(10))
        assert [e["type"] for e in evs] == ["message.delivered"], "got %r" % [e["type"] for e in evs]
        _, _, failures = webhook.snapshot()
        assert failures == [], "got signature/format failures %r" % [f["reason"] for f in failures]
        c.close()
    finally:
        silent.close()
