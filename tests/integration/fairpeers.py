"""fairpeers.py - the peers and measurements of the fairness tests (issue 14):
tests/integration/test_fair_dest.py, test_fair_lanes.py and the manual
benchmark tests/bench/fairness.py.

Owns: a tarpit MX (accepts TCP, answers nothing, holds every connection
and counts them: how many at once, when), a plain smtpd.py MX peer that
reports each recipient's arrival time (its "at" field), reading the order
of arrival at a `txmail sink`, paced single sends with their POST times,
fast batch enqueues over a few keep-alive connections, and percentiles.

Must never: talk to anything but loopback, wait without a deadline, or
leave a thread, socket or process behind (each class has stop(), and
every wait has a deadline).
"""

import concurrent.futures
import json
import math
import os
import selectors
import socket
import threading
import time

from helpers import Client, PlainPeer, dl, wait_until

BATCH_MAX = 500   # POST /v1/messages/batch takes at most 500 messages


class Tarpit:
    """A listener on host:port that accepts every connection and never sends
    a byte (not even the banner): an MX that holds its clients until they
    give up. It closes a connection only when the client does, or at stop().
    It counts the connections it holds at each moment (peer-side truth)."""

    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.mu = threading.Lock()
        self.held = 0
        self.max_held = 0
        self.accepted = 0
        self.closed_by_client = 0
        self.timeline = []   # (time.time(), connections held from then on)
        self._stop = False
        self._thr = None
        self._lst = None
        self._sel = None

    def start(self):
        self._lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lst.bind((self.host, self.port))
        self._lst.listen(1024)
        self._lst.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._lst, selectors.EVENT_READ, None)
        with self.mu:
            self.timeline.append((time.time(), 0))
        self._thr = threading.Thread(target=self._run, name="tarpit %s" % self.host, daemon=True)
        self._thr.start()
        return self

    def _note(self, delta):
        with self.mu:
            self.held += delta
            self.max_held = max(self.max_held, self.held)
            self.timeline.append((time.time(), self.held))

    def _run(self):
        while not self._stop:
            for key, _ in self._sel.select(timeout=0.1):
                if key.data is None:
                    while True:
                        try:
                            c, _ = self._lst.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        c.setblocking(False)
                        self._sel.register(c, selectors.EVENT_READ, "client")
                        with self.mu:
                            self.accepted += 1
                        self._note(+1)
                    continue
                c = key.fileobj
                try:
                    data = c.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:   # the client gave up
                    self._sel.unregister(c)
                    c.close()
                    with self.mu:
                        self.closed_by_client += 1
                    self._note(-1)

    def now_held(self):
        with self.mu:
            return self.held

    def held_at(self, t):
        """Connections held at time t (time.time())."""
        with self.mu:
            n = 0
            for at, held in self.timeline:
                if at > t:
                    break
                n = held
            return n

    def stats(self):
        with self.mu:
            return {"held": self.held, "max_held": self.max_held, "accepted": self.accepted,
                    "closed_by_client": self.closed_by_client}

    def stop(self):
        self._stop = True
        if self._thr is not None:
            self._thr.join(timeout=5)
        if self._sel is not None:
            for key in list(self._sel.get_map().values()):
                key.fileobj.close()
            self._sel.close()
            self._sel = None


class MxPeer(PlainPeer):
    """helpers.PlainPeer whose .json records also give each arrival's time
    ("at"), read incrementally."""

    def __init__(self, workdir, host, port):
        super().__init__(workdir, host, port)
        self._seen = {}    # file name -> parsed record

    def arrivals(self):
        """{recipient (lower case): arrival time} of everything accepted so far
        (a recipient accepted twice keeps its first arrival)."""
        for n in os.listdir(self.maildir):
            if not n.endswith(".json") or n.startswith(".") or n in self._seen:
                continue
            with open(os.path.join(self.maildir, n)) as f:
                self._seen[n] = json.load(f)
        out = {}
        for rec in sorted(self._seen.values(), key=lambda r: r["seq"]):
            for r in rec["rcpt_tos"]:
                out.setdefault(r.lower(), rec["at"])
        return out

    def deliveries(self):
        """How many recipient deliveries arrived (duplicates counted)."""
        self.arrivals()
        return sum(len(r["rcpt_tos"]) for r in self._seen.values())


def sink_names(maildir):
    """The .eml files of a `txmail sink` dir in order of arrival (names are
    "<unix ms>-<seq>.eml"; seq counts the messages the sink stored)."""
    names = [n for n in os.listdir(maildir) if n.endswith(".eml")]
    return sorted(names, key=lambda n: int(n.rsplit("-", 1)[1][:-4]))


def sink_count(maildir):
    return sum(1 for n in os.listdir(maildir) if n.endswith(".eml"))


def sink_recipients(maildir):
    """The To: address of each message at the sink, in order of arrival."""
    out = []
    for n in sink_names(maildir):
        with open(os.path.join(maildir, n), "rb") as f:
            head = f.read(2048).split(b"\r\n\r\n", 1)[0]
        to = None
        for ln in head.split(b"\r\n"):
            if ln[:4].lower() == b"to: ":
                to = ln[4:].decode("ascii", "replace").strip().lower()
                break
        out.append(to)
    return out


def wait_port(port, timeout, what, host="127.0.0.1"):
    def up():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False
    wait_until(up, timeout, what, interval=0.05)


def enqueue(port, key, msgs, threads=4):
    """POST msgs through /v1/messages/batch, BATCH_MAX a request, over
    `threads` keep-alive connections; every batch must be accepted (202).
    Returns the ids in the order of msgs."""
    batches = [msgs[i:i + BATCH_MAX] for i in range(0, len(msgs), BATCH_MAX)]
    local = threading.local()
    clients = []
    mu = threading.Lock()

    def post(b):
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = Client(port, key=key, timeout=dl(30))
            with mu:
                clients.append(c)
        r = c.post_json("/v1/messages/batch", {"messages": b})
        assert r.status == 202, "POST /v1/messages/batch: got %s %r, want 202" % (r.status, r.body[:300])
        return [d["id"] for d in r.json["data"]]
    try:
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            return [i for ids in ex.map(post, batches) for i in ids]
    finally:
        for c in clients:
            c.close()


def send_paced(api, rcpts, rate, subject="healthy"):
    """POST one single-recipient message to each of rcpts, `rate` a second
    (each at its slot, or at once when behind). -> {rcpt: time.time() just
    before its POST}. Every POST must be accepted (202)."""
    sent = {}
    t0 = time.monotonic()
    for i, to in enumerate(rcpts):
        slot = t0 + i / rate
        d = slot - time.monotonic()
        if d > 0:
            time.sleep(d)
        sent[to] = time.time()
        r = api.send({"from": "sender@txmail.test", "to": to, "subject": "%s %d" % (subject, i),
                      "text": "hello %d\n" % i})
        assert r.status == 202, "POST /v1/messages (%s): got %s %r, want 202" % (to, r.status, r.body[:300])
    return sent


def wait_arrivals(peer, sent, timeout):
    """Wait (at most timeout s) until every recipient of sent arrived at peer;
    returns {rcpt: arrival - POST time} for those that did (no raise)."""
    end = time.monotonic() + timeout
    while True:
        got = peer.arrivals()
        if all(r in got for r in sent) or time.monotonic() >= end:
            break
        time.sleep(0.05)
    return {r: got[r] - t for r, t in sent.items() if r in got}


def percentile(values, p, n=None):
    """The p-th percentile (nearest rank) of values; with n > len(values)
    the missing ones count as infinitely late."""
    n = len(values) if n is None else n
    if n == 0:
        return float("nan")
    v = sorted(values) + [math.inf] * (n - len(values))
    k = max(0, math.ceil(p / 100.0 * n) - 1)
    return v[k]


def summary(lat, n):
    """{count, p50, p99, max} in seconds of the latencies lat of n sent (missing: inf)."""
    vals = list(lat.values())
    return {"sent": n, "arrived": len(vals), "p50": percentile(vals, 50, n),
            "p99": percentile(vals, 99, n), "max": percentile(vals, 100, n)}


def fmt_s(x):
    if x != x:   # nan: nothing was sent
        return "n/a"
    return "never" if x == math.inf else "%.3fs" % x


# --- scenario 1 (test_fair_dest.py, tests/bench/fairness.py) -----------------

TARPIT_IP, HEALTHY_IP = "127.0.0.4", "127.0.0.5"
DEST_RECORDS = [
    "mx-host=tarpit.test,mx.tarpit.test,10",
    "host-record=mx.tarpit.test,%s" % TARPIT_IP,
    "mx-host=healthy.test,mx.healthy.test,10",
    "host-record=mx.healthy.test,%s" % HEALTHY_IP,
]
DEST_PROBE = "mx.healthy.test"


def dest_env(dns_address, mx_port, concurrency):
    """Direct delivery through the test DNS, one loop of `concurrency` slots,
    SMTP timeouts longer than any run (the tarpit holds what it gets), no
    webhooks (the peer's arrival time is the measure)."""
    return {
        "TXMAIL_RELAY": None, "TXMAIL_DNS_SERVER": dns_address, "TXMAIL_MX_PORT": str(mx_port),
        "TXMAIL_WORKERS": "1", "TXMAIL_WORKER_CONCURRENCY": str(concurrency),
        "TXMAIL_SMTP_TIMEOUT_CONNECT": "600", "TXMAIL_SMTP_TIMEOUT_BANNER": "600",
        "TXMAIL_WEBHOOK_URL": None, "TXMAIL_WEBHOOK_SECRET": None,
    }


def tarpit_backlog(port, key, n):
    """Enqueue n single-recipient messages to tarpit.test; their ids."""
    msgs = [{"from": "bulk@txmail.test", "to": "t%05d@tarpit.test" % i, "subject": "tarpit %d" % i,
             "text": "backlog %d\n" % i} for i in range(n)]
    return enqueue(port, key, msgs)


def healthy_phase(api, peer, prefix, n, rate, wait_s):
    """n messages to <prefix>NNN@healthy.test at `rate`/s; waits at most
    wait_s after the last POST. -> (sent {rcpt: POST time}, latencies {rcpt: s})."""
    rcpts = ["%s%04d@healthy.test" % (prefix, i) for i in range(n)]
    sent = send_paced(api, rcpts, rate)
    return sent, wait_arrivals(peer, sent, wait_s)
