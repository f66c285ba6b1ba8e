"""sentinel_group.py - a Redis Sentinel group on loopback ports, for the
integration tests (test_redis_sentinel.py, test_redis_failover.py) and the
fault-injection run (tests/faults/faults.py --redis sentinel).

Owns: a primary redis-server, two replicas (--replicaof) and three sentinels
(`redis-server <conf> --sentinel`; quorum 2, down after 1 s, failover
timeout 3 s), each in its own directory under the group's; the failover
steps a test drives: the current primary as the sentinels name it, a
replication lag made on purpose (lag_replicas), the wait for a promotion,
and a killed node started again as a replica of the new primary, as a pod
restart would.

Must never: wait without a deadline, or leave a redis-server running (stop()
stops every node ever started, also after a failed start).
"""

import os
import socket
import urllib.parse

import pytest

import helpers
from helpers import RedisServer, dl, wait_until

MASTER = "txm-primary"


class Node(RedisServer):
    """A redis-server of the group: extra_args after the usual ones; auth
    (a password or None) is what the harness sends before each command."""

    def __init__(self, workdir, extra_args, auth=None, fsync="always"):
        super().__init__(workdir, fsync=fsync, extra_args=extra_args)
        self.auth = auth

    def cmd(self, *args):
        if self.auth is None:
            return helpers.resp_cmd(self.port, *args)
        return resp_auth(self.port, self.auth, *args)


class Sentinel(Node):
    """`redis-server <conf> --sentinel` watching MASTER at primary_port."""

    def __init__(self, workdir, primary_port, password=None, data_password=None):
        super().__init__(workdir, [], auth=password)
        self.conf = os.path.join(self.dir, "sentinel.conf")
        lines = [
            "port %d" % self.port,
            "bind 127.0.0.1",
            "protected-mode no",
            "daemonize no",
            "dir %s" % self.dir,
            "logfile %s" % self.log,
            "sentinel monitor %s 127.0.0.1 %d 2" % (MASTER, primary_port),
            "sentinel down-after-milliseconds %s 1000" % MASTER,
            "sentinel failover-timeout %s 3000" % MASTER,
            "sentinel parallel-syncs %s 1" % MASTER,
        ]
        if data_password is not None:
            lines.append("sentinel auth-pass %s %s" % (MASTER, data_password))
        if password is not None:
            # its own password, and the one it gives the other sentinels
            lines += ["requirepass %s" % password, "sentinel sentinel-pass %s" % password]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def argv(self):
        return ["redis-server", self.conf, "--sentinel"]

    def primary_port(self):
        try:
            r = self.cmd("SENTINEL", "get-master-addr-by-name", MASTER)
        except (OSError, RuntimeError):
            return None
        return int(r[1]) if isinstance(r, list) and len(r) == 2 else None


def resp_auth(port, password, *args):
    """AUTH password, then args, on one fresh connection: the reply to args."""
    out = b""
    for cmd in (("AUTH", password), args):
        out += b"*%d\r\n" % len(cmd)
        for a in cmd:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
        s.sendall(out)
        f = s.makefile("rb")
        helpers._resp_read(f)
        return helpers._resp_read(f)


class Group:
    """A primary, two replicas and three sentinels; stop() stops them all.
    register_log(name, path) is told of every log file (the test report's)."""

    def __init__(self, workdir, register_log, data_password=None, sentinel_password=None,
                 fsync="always"):
        self.nodes, self.sentinels = [], []
        self.data_password = data_password
        self.sentinel_password = sentinel_password
        self.fsync = fsync
        self.auth = []
        if data_password is not None:
            self.auth = ["--requirepass", data_password, "--masterauth", data_password]
        try:
            self.primary = self._node(workdir, "primary", self.auth, register_log)
            for i in range(2):
                self._node(workdir, "replica%d" % i, self.auth + self._replicaof(self.primary),
                           register_log)
            wait_until(self._replicas_linked, dl(15), "2 replicas linked to the primary",
                       interval=0.1, diag=lambda: str(self.primary.cmd("ROLE")))
            for i in range(3):
                s = Sentinel(os.path.join(workdir, "sentinel%d" % i), self.primary.port,
                             password=sentinel_password, data_password=data_password)
                self.sentinels.append(s)
                register_log("sentinel %d log" % i, s.log)
                s.start()
            wait_until(self._sentinels_see_all, dl(20),
                       "every sentinel knows the 2 replicas and the 2 other sentinels", interval=0.1)
        except BaseException:
            self.stop()
            raise

    def _node(self, workdir, name, args, register_log):
        # a full resync starts at once, not after the default 5 s of waiting for more
        # replicas to share the transfer: a replica whose link broke during lag_replicas
        # cannot resync partially (it drops its cached master with the link), and its
        # transfer would otherwise add 5 s to every failover measured here
        args = ["--repl-diskless-sync-delay", "0"] + args
        n = Node(os.path.join(workdir, name), args, auth=self.data_password, fsync=self.fsync)
        self.nodes.append(n)
        register_log("%s redis-server log" % name, n.log)
        n.start()
        return n

    @staticmethod
    def _replicaof(primary):
        return ["--replicaof", "127.0.0.1", str(primary.port)]

    def _replicas_linked(self):
        role = self.primary.cmd("ROLE")
        return role[0] == "master" and len(role[2]) == 2

    def _sentinels_see_all(self):
        for s in self.sentinels:
            try:
                m = s.cmd("SENTINEL", "master", MASTER)
            except (OSError, RuntimeError):
                return False
            info = dict(zip(m[0::2], m[1::2]))
            if info.get("num-slaves") != "2" or info.get("num-other-sentinels") != "2":
                return False
        return True

    def url(self, password=None):
        cred = ":%s@" % urllib.parse.quote(password, safe="") if password else ""
        hosts = ",".join("127.0.0.1:%d" % s.port for s in self.sentinels)
        return "redis+sentinel://%s%s/%s" % (cred, hosts, MASTER)

    def by_port(self, port):
        return next(n for n in self.nodes if n.port == port)

    def named_primary(self):
        """The node every sentinel names as the primary, or None while they differ."""
        ports = {s.primary_port() for s in self.sentinels}
        return self.by_port(ports.pop()) if len(ports) == 1 and None not in ports else None

    def wait_promoted(self, old, timeout):
        """Wait until every sentinel names one node other than old; that node
        (now self.primary)."""
        def promoted():
            n = self.named_primary()
            return n if n is not None and n is not old else None
        self.primary = wait_until(promoted, timeout, "the sentinels promote a replica of port %d" % old.port,
                                  interval=0.05,
                                  diag=lambda: [s.primary_port() for s in self.sentinels])
        return self.primary

    def failovers(self):
        """How many times the sentinels switched the primary (+switch-master
        in the log of the sentinel that saw most)."""
        return max(helpers.read_text(s.log).count("+switch-master") for s in self.sentinels)

    def replicas(self):
        """The running nodes other than self.primary."""
        return [n for n in self.nodes if n is not self.primary and n.proc is not None
                and n.proc.poll() is None]

    def lag_replicas(self, max_ms):
        """Make the replicas lag, as over a slow link: `CLIENT PAUSE max_ms
        WRITE` on each holds the writes the primary streams to it unapplied
        (received into its query buffer, not executed, not acknowledged, so
        WAIT does not count it), while PING and INFO - what the sentinels ask -
        are still answered, so they stay fit for promotion. When the primary
        dies in the meantime, a replica throws the unapplied part away with
        the broken link: the writes of the lag are lost, as with a real lag."""
        for n in self.replicas():
            assert n.cmd("CLIENT", "PAUSE", str(int(max_ms)), "WRITE") == "OK"

    def end_lag(self, dead, timeout):
        """After dead (the primary) was killed during lag_replicas: wait until
        every replica saw its link drop (so the unapplied writes are gone),
        then let them apply again (CLIENT UNPAUSE)."""
        reps = [n for n in self.replicas() if n is not dead]
        wait_until(lambda: all("master_link_status:down" in n.cmd("INFO", "replication") for n in reps),
                   timeout, "the replicas see the link to the killed primary drop", interval=0.02)
        for n in reps:
            n.cmd("CLIENT", "UNPAUSE")

    def restart_as_replica(self, node):
        """Start node (killed) again as a replica of self.primary, as a pod
        whose start-up asks the sentinels would: it loads its own AOF, then
        takes the primary's data (its own writes since the fork are dropped)."""
        node.extra_args = ["--repl-diskless-sync-delay", "0"] + self.auth + self._replicaof(self.primary)
        node.start()

    def stop(self):
        for n in self.sentinels + self.nodes:
            try:
                n.stop()
            except Exception:  # stop the others anyway
                pass


@pytest.fixture
def sentinel_group(workdir, register_log):
    """start(**kw) -> a running Group, stopped at teardown."""
    groups = []

    def start(**kw):
        g = Group(os.path.join(workdir, "group%d" % len(groups)), register_log, **kw)
        groups.append(g)
        return g
    yield start
    for g in groups:
        g.stop()
