"""test_redis_min_replicas.py - TXMAIL_REDIS_MIN_REPLICAS: WAIT for replicas
before a client is told about a write.

A primary redis-server and one replica (--replicaof) on loopback; txmail
with TXMAIL_REDIS_MIN_REPLICAS=1 and a short TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT.
The replica is frozen with SIGSTOP, so it neither applies nor acknowledges
what the primary streams to it: a write is then on the primary alone, which
is exactly what a failover would undo.

Checked:
  - replica live: a send is 202 and the message is on the replica as soon as
    the 202 is in (WAIT returned: nothing to poll for);
  - replica frozen: a send is 504 outcome_unknown (never 202) and said so in
    the log and /metrics; its retry with the same Idempotency-Key is 504
    again while frozen, and 202 with the same message id once the replica
    runs again - one message, delivered once;
  - replica frozen: another change (POST /v1/suppressions) is 504, and 201
    once the replica runs;
  - a message accepted while the replica was live and delivered while it is
    frozen: the delivery happens (the peer has it), but its webhook waits
    (txmail_redis_unreplicated_total{what="events"} counts the held reads)
    and arrives after the replica runs again;
  - `txmail config check` refuses TXMAIL_REDIS_MIN_REPLICAS without
    TXMAIL_REDIS_URL (the embedded redis has no replicas).
Without the setting (the default 0), a send with the replica frozen is 202:
the test of the default shows the checks above can fail.

Must never: leave the replica stopped (SIGCONT in finally, the harness
kills it), or wait without a deadline.
"""

import os
import re
import signal
import subprocess
import time

import pytest

import helpers
from helpers import RedisServer, dl, wait_until
from test_api_schedule import rfc3339


class Replica(RedisServer):
    def __init__(self, workdir, primary_port):
        super().__init__(os.path.join(workdir, "replica"),
                         extra_args=["--replicaof", "127.0.0.1", str(primary_port)])

    def freeze(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture
def replica(redis, workdir, register_log):
    r = Replica(workdir, redis.port)
    register_log("replica redis-server log", r.log)
    r.start()
    try:
        wait_until(lambda: redis.cmd("INFO", "replication").count("state=online") == 1, dl(15),
                   "the replica linked to the primary", interval=0.05,
                   diag=lambda: redis.cmd("INFO", "replication"))
        yield r
    finally:
        r.thaw()
        r.stop()


ENV = {"TXMAIL_REDIS_MIN_REPLICAS": "1", "TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT": "0.3"}


def msg(rcpt, **kw):
    m = {"from": "sender@example.com", "to": rcpt, "subject": "replicas", "text": "hello\n"}
    m.update(kw)
    return m


def metric(c, what):
    body = c.get("/metrics", auth=False).body.decode()
    m = re.search(r'^txmail_redis_unreplicated_total\{what="%s"\} (\d+)$' % what, body, re.M)
    assert m, "no txmail_redis_unreplicated_total{what=%r} in /metrics" % what
    return int(m.group(1))


def test_a_write_waits_for_the_replica(txmail_factory, redis, replica, smtp_peer, webhook, spec_validator):
    import spec_check
    t = txmail_factory(extra_env=ENV)
    # every answer, the 504s included, checked against api-spec/openapi.yaml
    c = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
    try:
        r = c.send(msg("live@example.com"))
        assert r.status == 202, "replica live: got %s %r, want 202" % (r.status, r.body)
        mid = r.json["id"]
        # WAIT returned before the 202: the replica has it now, not eventually
        assert replica.cmd("EXISTS", "txm{0}:msg:" + mid) == 1, \
            "message %s is not on the replica when its 202 arrives" % mid
        smtp_peer.wait_for_rcpt("live@example.com", dl(15))

        replica.freeze()
        try:
            key = "idem-" + os.urandom(6).hex()
            r = c.send(msg("frozen@example.com"), headers={"Idempotency-Key": key})
            assert r.status == 504, "replica frozen: got %s %r, want 504" % (r.status, r.body)
            assert r.json["error"]["type"] == "outcome_unknown", r.body
            assert "Idempotency-Key" in r.json["error"]["message"], r.body
            assert r.headers.get("retry-after") == "1", r.headers
            r = c.send(msg("frozen@example.com"), headers={"Idempotency-Key": key})
            assert r.status == 504, "retry, replica still frozen: got %s %r, want 504" % (
                r.status, r.body)
            r = c.post_json("/v1/suppressions", {"email": "nobody@example.com"})
            assert r.status == 504, "a change, replica frozen: got %s %r, want 504" % (
                r.status, r.body)
            assert metric(c, "send") >= 2 and metric(c, "change") >= 1
            log = open(t.log, encoding="utf-8", errors="replace").read()
            assert 'msg="redis replicas did not confirm a write in time' in log, log[-3000:]
        finally:
            replica.thaw()

        r = wait_until(lambda: (lambda x: x if x.status == 202 else None)(
            c.send(msg("frozen@example.com"), headers={"Idempotency-Key": key})), dl(15),
            "the retry is 202 once the replica runs", interval=0.1)
        again = r.json["id"]
        smtp_peer.wait_for_rcpt("frozen@example.com", dl(15))
        webhook.wait_events_for(again, 1, dl(15), types=("message.delivered",))
        assert len([m for m in smtp_peer.messages()
                    if "frozen@example.com" in m.meta.get("rcpt_tos", [])]) == 1, \
            "the message sent with one Idempotency-Key was delivered more than once"
        r = c.post_json("/v1/suppressions", {"email": "nobody@example.com"})
        assert r.status in (200, 201), "the change after: got %s %r" % (r.status, r.body)
        log = open(t.log, encoding="utf-8", errors="replace").read()
        assert 'msg="redis replicas confirm writes again"' in log, log[-3000:]
    finally:
        replica.thaw()
        c.close()


def test_a_webhook_waits_for_the_replica(txmail_factory, redis, replica, smtp_peer, webhook):
    t = txmail_factory(extra_env=ENV)
    c = t.client()
    try:
        # accepted while the replica is live; delivered after it is frozen
        r = c.send(msg("later@example.com", send_at=rfc3339(time.time() + 2.0 * helpers.SCALE)))
        assert r.status == 202, "got %s %r" % (r.status, r.body)
        mid = r.json["id"]
        replica.freeze()
        try:
            smtp_peer.wait_for_rcpt("later@example.com", dl(20))
            wait_until(lambda: metric(c, "events") >= 1, dl(15),
                       "the dispatcher holds the delivered event back (unreplicated events)",
                       interval=0.1)
            assert webhook.events_for(mid) == [], \
                "a webhook went out for an outcome the replica does not have: %r" % webhook.events_for(mid)
        finally:
            replica.thaw()
        webhook.wait_events_for(mid, 1, dl(15), types=("message.delivered",))
    finally:
        replica.thaw()
        c.close()


def test_without_the_setting_a_frozen_replica_changes_nothing(txmail_factory, redis, replica):
    """The default (0): no WAIT, so the checks above are not met by accident."""
    t = txmail_factory()
    c = t.client()
    try:
        replica.freeze()
        r = c.send(msg("nowait@example.com"))
        assert r.status == 202, "TXMAIL_REDIS_MIN_REPLICAS unset: got %s %r, want 202" % (r.status, r.body)
        assert metric(c, "send") == 0
    finally:
        replica.thaw()
        c.close()


def test_config_check_refuses_it_without_a_redis_url(txmail_binary, workdir):
    env = helpers.clean_env({"TXMAIL_REDIS_MIN_REPLICAS": "1", "TXMAIL_API_KEYS": "txm_test_" + "a" * 24,
                             "TXMAIL_DATA_DIR": os.path.join(workdir, "var")})
    p = subprocess.run([txmail_binary, "config", "check"], env=env, capture_output=True, text=True,
                       timeout=dl(10))
    assert p.returncode != 0, "config check passed: %s %s" % (p.stdout, p.stderr)
    assert "TXMAIL_REDIS_MIN_REPLICAS: needs TXMAIL_REDIS_URL" in p.stdout + p.stderr, p.stdout + p.stderr
