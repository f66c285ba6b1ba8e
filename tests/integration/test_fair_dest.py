"""test_fair_dest.py - one slow destination does not take every delivery slot
(issue 14, point 1: TXMAIL_DEST_MAX_INFLIGHT).

Direct delivery (no TXMAIL_RELAY): dnsmasq serves the MX records (as in
test_mx.py); tarpit.test's MX on 127.0.0.4 is a tarpit (fairpeers.Tarpit:
accepts TCP, never sends the banner, holds every connection for the life
of the test; the SMTP connect and banner timeouts are 600 s, longer than
the test), healthy.test's MX on 127.0.0.5 is smtpd.py, which stamps each
arrival. Both share one port (TXMAIL_MX_PORT). One delivery loop of 32
slots, TXMAIL_DEST_MAX_INFLIGHT=8.

  1. baseline: 500 messages to healthy.test at 50/s, POST -> arrival at the
     peer, with nothing else queued;
  2. 10,000 single-recipient messages to tarpit.test (the batch endpoint),
     then wait until the tarpit holds the cap of 8 connections;
  3. the same healthy flow again, while the tarpit holds its connections.

What is asserted is the mechanism, measured at the peers, not a latency
ratio (a timed ratio is fragile on a shared 2-core box): the tarpit never
holds more than 8 connections at once; every healthy message of phase 3
arrives (within 30 s of the last POST, a bound only a stuck delivery
misses: without the cap none arrives at all), each while the tarpit held
its 8; once the tarpit is at its cap most of its backlog is put in due by
the enqueue (the feeder published it in txm{0}:sat), not read and parked
by the feeder (before: all of it was, and mail behind it waited for that
read-through, 3.7 s), and once the tarpit goes away (connections closed,
then refused) the feeder clears it there. No latency bound is asserted (make test loads the box to 9 and
more: a healthy p99 of 11.6 s was seen there against 0.9 s alone, which
was just as loaded). The issue's figure - the
healthy p99 with the tarpit within 2x of its value without - is printed
and written to <workdir>/fair_dest.json (tests/bench/fairness.py measures
it with and without the cap). Before the cap (main at 46dd6ff) the tarpit
took all 32 slots and no healthy message of phase 3 arrived.

Also: unset, the cap is a quarter of the slots (8 of 32: the tarpit holds
no more, and a shorter healthy flow all arrives), and `txmail config
check` knows TXMAIL_DEST_MAX_INFLIGHT.

Must never: wait without a deadline, trust txmail's view where a peer's
can be checked, or leave the tarpit's connections open (fixtures stop it).
"""

import json
import math
import os
import re
import subprocess

import pytest

import helpers
from dns_server import DnsServer
from fairpeers import (DEST_PROBE, DEST_RECORDS, HEALTHY_IP, TARPIT_IP, MxPeer, Tarpit, dest_env, fmt_s,
                       healthy_phase, summary, tarpit_backlog)
from helpers import dl, free_port, wait_until

# asserts txm{0}:sat and txm{0}:due: TXMAIL_PARTITIONS stays 1 under TXM_PARTITIONS (conftest)
ONE_PARTITION = True

CONCURRENCY = 32
CAP = 8
BACKLOG = 10000
RATE = 50           # healthy messages a second
HEALTHY = 500       # per phase: 10 s at RATE


@pytest.fixture
def dns(workdir, register_log):
    d = DnsServer(workdir, ["test"], DEST_RECORDS, DEST_PROBE)
    register_log("dnsmasq log", d.log)
    try:
        yield d.start()
    finally:
        d.stop()


@pytest.fixture
def mx_port():
    return free_port()


@pytest.fixture
def tarpit(mx_port):
    t = Tarpit(TARPIT_IP, mx_port).start()
    try:
        yield t
    finally:
        t.stop()


@pytest.fixture
def healthy(workdir, mx_port, register_log):
    p = MxPeer(workdir, HEALTHY_IP, mx_port)
    register_log("smtpd.py %s stderr" % HEALTHY_IP, p.stderr)
    try:
        yield p.start()
    finally:
        p.stop()


PARKED_RE = re.compile(r"(?m)^txmail_deliveries_parked_total (\d+)$")


def parked_total(api):
    r = api.get("/metrics")
    assert r.status == 200, "GET /metrics: got %r" % r
    m = PARKED_RE.search(r.body.decode())
    assert m, "no txmail_deliveries_parked_total in /metrics"
    return int(m.group(1))


def test_tarpit_takes_at_most_its_cap(dns, mx_port, tarpit, healthy, txmail_factory, workdir, redis):
    env = dest_env(dns.address, mx_port, CONCURRENCY)
    env["TXMAIL_DEST_MAX_INFLIGHT"] = str(CAP)
    tx = txmail_factory(extra_env=env)
    api = tx.client()
    try:
        # 1. baseline: the healthy flow alone
        sent0, lat0 = healthy_phase(api, healthy, "b", HEALTHY, RATE, dl(30))
        assert len(lat0) == HEALTHY, "baseline: %d of %d healthy messages arrived (no tarpit yet)" % (
            len(lat0), HEALTHY)
        assert tarpit.stats()["accepted"] == 0, "the tarpit got connections before its backlog"

        # 2. the tarpit backlog, then wait until it holds its cap
        tarpit_backlog(tx.port, tx.key, BACKLOG)
        wait_until(lambda: tarpit.now_held() >= CAP, dl(20),
                   "the tarpit holding %d connections" % CAP, diag=tarpit.stats)
        held_before = tarpit.now_held()
        # ... and most of it never went into the ready stream (where the healthy mail would wait
        # behind it while the feeder read it only to park it): once the feeder found tarpit.test
        # at its cap it published it (txm{0}:sat) and the enqueue put the rest in due at once
        sat = helpers.resp_cmd(redis.port, "HGET", "txm{0}:sat", "tarpit.test")
        assert sat is not None, "tarpit.test was not published as saturated (txm{0}:sat)"
        # the healthy domain is published only when it really was at its cap: at 50/s that takes
        # transactions of 160 ms, which a loaded machine (make test's parallel passes at a load of
        # 8-10) gives the baseline already. Asserted where the baseline shows it had room to spare
        healthy_sat = helpers.resp_cmd(redis.port, "HGET", "txm{0}:sat", "healthy.test")
        base_p99 = summary(lat0, HEALTHY)["p99"]
        if RATE * base_p99 < CAP / 2:
            assert healthy_sat is None, \
                "healthy.test published as saturated (baseline p99 %.3fs: about %.1f in flight of " \
                "its cap of %d)" % (base_p99, RATE * base_p99, CAP)
        elif healthy_sat is not None:
            print("healthy.test published as saturated, as its baseline needed its cap already "
                  "(p99 %.3fs at %d/s, cap %d)" % (base_p99, RATE, CAP))
        parked = parked_total(api)
        in_due = helpers.resp_cmd(redis.port, "ZCARD", "txm{0}:due")
        assert parked < BACKLOG // 2 and in_due > BACKLOG // 2, \
            "of %d tarpit messages the feeder read and parked %d, %d wait in due: want most of them " \
            "put in due by the enqueue, never read" % (BACKLOG, parked, in_due)

        # 3. the healthy flow while the tarpit holds them
        sent1, lat1 = healthy_phase(api, healthy, "l", HEALTHY, RATE, dl(30))
    finally:
        api.close()

    st = tarpit.stats()
    base, loaded = summary(lat0, HEALTHY), summary(lat1, HEALTHY)
    ratio = loaded["p99"] / base["p99"] if base["p99"] > 0 else math.inf
    arrivals = healthy.arrivals()
    while_saturated = sum(1 for r in sent1 if r in arrivals and tarpit.held_at(arrivals[r]) >= CAP)
    result = {"concurrency": CONCURRENCY, "dest_max_inflight": CAP, "tarpit_backlog": BACKLOG,
              "rate": RATE, "baseline": base, "with_tarpit": loaded, "p99_ratio": ratio,
              "tarpit": st, "tarpit_held_when_phase3_began": held_before,
              "healthy_arrived_while_tarpit_saturated": while_saturated,
              # per message in the order sent (None: never arrived), and the tarpit's count over time
              "baseline_latencies": [lat0.get(r) for r in sorted(sent0, key=sent0.get)],
              "with_tarpit_latencies": [lat1.get(r) for r in sorted(sent1, key=sent1.get)],
              "phase3_start": min(sent1.values()), "tarpit_timeline": tarpit.timeline}
    with open(os.path.join(workdir, "fair_dest.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    result["parked_by_feeder_after_backlog"] = parked
    helpers.log("fair_dest: %d of the %d tarpit messages read and parked by the feeder, the rest put in due "
                "by the enqueue" % (parked, BACKLOG))
    helpers.log("fair_dest: healthy p50/p99 alone %s/%s, beside the tarpit %s/%s (%d of %d arrived), "
                "p99 ratio %s (issue: within 2x); tarpit held at most %d connections (cap %d), %d accepted; "
                "%d healthy arrived while it held %d" % (
                    fmt_s(base["p50"]), fmt_s(base["p99"]), fmt_s(loaded["p50"]), fmt_s(loaded["p99"]),
                    loaded["arrived"], HEALTHY, "inf" if ratio == math.inf else "%.2f" % ratio,
                    st["max_held"], CAP, st["accepted"], while_saturated, CAP))

    # 4. the tarpit goes away (its connections closed, then refused): the transactions end, the
    # line drains, the destination has room again and the feeder clears its field (until set to
    # now, earlier than it was: only a clear moves it back), so new mail goes to the stream again
    u_before = int(helpers.resp_cmd(redis.port, "HGET", "txm{0}:sat", "tarpit.test").split()[0])
    tarpit.stop()

    def cleared():
        return int(helpers.resp_cmd(redis.port, "HGET", "txm{0}:sat", "tarpit.test").split()[0]) < u_before
    wait_until(cleared, dl(30), "tarpit.test cleared in txm{0}:sat once it has room again",
               diag=lambda: helpers.resp_cmd(redis.port, "HGET", "txm{0}:sat", "tarpit.test"))

    problems = []
    if st["max_held"] > CAP:
        problems.append("the tarpit held %d connections at once, want at most TXMAIL_DEST_MAX_INFLIGHT=%d "
                        "(of %d slots)" % (st["max_held"], CAP, CONCURRENCY))
    if loaded["arrived"] != HEALTHY:
        problems.append("%d of %d healthy messages arrived within %.0fs of the last POST while the tarpit "
                        "held %d connections" % (loaded["arrived"], HEALTHY, dl(30), tarpit.now_held()))
    if while_saturated != loaded["arrived"]:
        problems.append("%d of the %d healthy arrivals came while the tarpit held its %d connections, want "
                        "all (it let go of them?): %r" % (while_saturated, loaded["arrived"], CAP, st))
    assert not problems, "; ".join(problems)


def test_default_cap_is_a_quarter_of_the_slots(dns, mx_port, tarpit, healthy, txmail_factory):
    """TXMAIL_DEST_MAX_INFLIGHT unset: in direct delivery a destination gets
    at most a quarter of the loop's slots (8 of 32); a shorter healthy flow
    (100 messages at 50/s) must all arrive beside the tarpit."""
    tx = txmail_factory(extra_env=dest_env(dns.address, mx_port, CONCURRENCY))
    api = tx.client()
    quarter = CONCURRENCY // 4
    try:
        tarpit_backlog(tx.port, tx.key, BACKLOG)
        wait_until(lambda: tarpit.now_held() >= quarter, dl(20),
                   "the tarpit holding %d connections" % quarter, diag=tarpit.stats)
        sent, lat = healthy_phase(api, healthy, "d", 100, RATE, dl(30))
    finally:
        api.close()
    st, got = tarpit.stats(), summary(lat, len(sent))
    helpers.log("fair_dest default cap: tarpit held at most %d connections (want <= %d), %d of %d healthy "
                "arrived beside it, p99 %s" % (st["max_held"], quarter, got["arrived"], len(sent), fmt_s(got["p99"])))
    assert st["max_held"] <= quarter and got["arrived"] == len(sent), \
        "default cap: the tarpit held %d connections at once (want at most %d of %d slots); %d of %d healthy " \
        "messages arrived within %.0fs of the last POST" % (st["max_held"], quarter, CONCURRENCY, got["arrived"],
                                                           len(sent), dl(30))


def test_config_check_knows_dest_max_inflight(txmail_binary):
    p = subprocess.run([txmail_binary, "config", "check"],
                       env=helpers.clean_env({"TXMAIL_DEST_MAX_INFLIGHT": str(CAP)}),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=dl(20))
    assert p.returncode == 0, "config check: exit %d; stderr:\n%s" % (p.returncode, p.stderr)
    assert "TXMAIL_DEST_MAX_INFLIGHT" not in p.stderr, "config check: got %r" % p.stderr
    assert re.search(r"(?m)^environment +TXMAIL_DEST_MAX_INFLIGHT=%d$" % CAP, p.stdout), \
        "config check: no 'environment TXMAIL_DEST_MAX_INFLIGHT=%d' row in:\n%s" % (CAP, p.stdout)
