"""test_cpu_quota.py - TXMAIL_HTTP_THREADS and TXMAIL_WORKERS default from a real cgroup CPU quota.

Owns: in a cgroup made for the test (v1 `cpu` hierarchy: cpu.cfs_quota_us;
v2 with the cpu controller: cpu.max) `txmail config check` shows both
defaults as the quota rounded up (1 CPU -> 1, 1.5 CPUs -> 2 when 2 CPUs are
usable, a limit on the parent applies to a child) with a `# cgroup ...`
comment naming the file, and a real `txmail worker` started in it runs that
many delivery loops and logs `cpu quota`. The parsers themselves are
unit-tested on sample files (tests/unit/test_cpuquota.c).

Must never: leave a cgroup behind (each is removed once its processes have
exited, also when the test fails), change any cgroup but its own, or run
without root (it skips, saying why).
"""
import os
import re
import subprocess
import time

import pytest

import helpers
import logparse
from helpers import Txmail, dl, tail, wait_until


def cpu_hierarchy():
    """(kind, mount point) of a cgroup hierarchy with the cpu controller, or (None, why)."""
    if os.geteuid() != 0:
        return None, "not root: cannot make a cgroup"
    v1 = v2 = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if "-" not in parts[6:]:
                continue
            i = parts.index("-", 6)
            fstype, opts = parts[i + 1], parts[i + 3].split(",")
            if fstype == "cgroup" and "cpu" in opts and v1 is None:
                v1 = parts[4]
            elif fstype == "cgroup2" and v2 is None:
                v2 = parts[4]
    if v1 is not None and os.access(v1, os.W_OK):
        return "v1", v1
    if v2 is not None:
        try:
            with open(os.path.join(v2, "cgroup.subtree_control")) as f:
                if "cpu" in f.read().split():
                    return "v2", v2
        except OSError:
            pass
    return None, "no writable cgroup hierarchy with the cpu controller"


class Cgroup:
    """A cgroup of the test's own under the hierarchy's top; removed by remove()."""

    def __init__(self, kind, top, name):
        self.kind = kind
        self.path = os.path.join(top, name)
        os.mkdir(self.path)
        self.children = []

    def child(self, name):
        c = Cgroup.__new__(Cgroup)
        c.kind, c.path, c.children = self.kind, os.path.join(self.path, name), []
        os.mkdir(c.path)
        self.children.append(c)
        return c

    def limit(self, cpus):
        quota = -1 if cpus is None else int(cpus * 100000)
        if self.kind == "v1":
            with open(os.path.join(self.path, "cpu.cfs_quota_us"), "w") as f:
                f.write("%d\n" % quota)
        else:
            with open(os.path.join(self.path, "cpu.max"), "w") as f:
                f.write("%s 100000\n" % ("max" if quota < 0 else quota))

    def wrapper(self, workdir, binary):
        """A script that moves itself into this cgroup, then execs binary."""
        path = os.path.join(workdir, "in-cgroup-%s" % os.path.basename(self.path))
        with open(path, "w") as f:
            f.write('#!/bin/sh\n# test_cpu_quota.py: run txmail inside %s\n'
                    'echo $$ > "%s/cgroup.procs" && exec "%s" "$@"\n' % (self.path, self.path, binary))
        os.chmod(path, 0o755)
        return path

    def remove(self):
        for c in self.children:
            c.remove()

        def gone():
            try:
                os.rmdir(self.path)
                return True
            except FileNotFoundError:
                return True
            except OSError:  # EBUSY while an exiting process is still counted
                return False
        wait_until(gone, dl(10), "cgroup %s removed" % self.path, interval=0.05)


@pytest.fixture
def cgroup(request):
    kind, top = cpu_hierarchy()
    if kind is None:
        pytest.skip(top)
    cg = Cgroup(kind, top, "txm-it-%d-%s" % (os.getpid(), os.urandom(3).hex()))
    try:
        yield cg
    finally:
        cg.remove()


def check_defaults(wrapper, want):
    env = helpers.clean_env()
    p = subprocess.run([wrapper, "config", "check"], env=env, capture_output=True, text=True,
                       timeout=dl(20), stdin=subprocess.DEVNULL)
    assert p.returncode == 0, "config check in the cgroup: exit %d: %s" % (p.returncode, p.stderr)
    got = {}
    for name in ("TXMAIL_HTTP_THREADS", "TXMAIL_WORKERS"):
        m = re.search(r"^default +%s=(\d+)  # (.*)$" % name, p.stdout, re.M)
        assert m, "config check: no 'default %s=N  # basis' line in:\n%s" % (name, p.stdout)
        got[name] = (int(m.group(1)), m.group(2))
    for name, (n, basis) in got.items():
        assert n == want, "%s: got %d, want %d (%s)" % (name, n, want, basis)
        assert basis.startswith("cgroup v") and ("cpu.cfs_quota_us" in basis or "cpu.max" in basis), \
            "%s: got basis %r, want the cgroup file named" % (name, basis)
    return got["TXMAIL_WORKERS"][1]


def test_defaults_follow_the_quota(cgroup, txmail_binary, workdir):
    usable = len(os.sched_getaffinity(0))
    leaf = cgroup.child("leaf")
    wrapper = leaf.wrapper(workdir, txmail_binary)
    cgroup.limit(1)                       # on the parent: the child is limited too
    basis = check_defaults(wrapper, 1)
    assert os.path.basename(cgroup.path) in basis and "leaf" not in basis, \
        "basis: got %r, want the parent's file" % basis
    if usable >= 2:
        cgroup.limit(1.5)
        assert "1.5 CPUs, rounded up to 2" in check_defaults(wrapper, 2)
    cgroup.limit(None)
    leaf.limit(0.5)
    assert "0.5 CPUs, rounded up to 1" in check_defaults(wrapper, 1)


def test_worker_runs_one_loop_per_quota_cpu(cgroup, txmail_binary, txmail_env, workdir, register_log):
    # 1.5 CPUs -> 2 loops where 2 CPUs are usable (the former default was 1 whatever the quota)
    want = 2 if len(os.sched_getaffinity(0)) >= 2 else 1
    cgroup.limit(1.5 if want == 2 else 1)
    env = dict(txmail_env, TXMAIL_ADMIN_LISTEN="127.0.0.1:%d" % helpers.free_port())
    env.pop("TXMAIL_WORKERS")
    logp = os.path.join(workdir, "worker-cgroup.log")
    register_log("txmail worker (cgroup) log", logp)
    t = Txmail(cgroup.wrapper(workdir, txmail_binary), ["worker"], helpers.clean_env(env), logp,
               http=False, name="txmail worker (1 CPU cgroup)")
    t.start()
    try:
        wait_until(lambda: logparse.records(logp, "txmail ready"), dl(15), "worker ready",
                   diag=lambda: tail(logp, 30))
        recs = logparse.records(logp, "cpu quota")
        assert len(recs) == 1, "got %d 'cpu quota' log lines, want 1: %r" % (len(recs), recs)
        q = recs[0]
        assert q.get("cpus") == str(want) and q.get("workers") == str(want), "cpu quota line: got %r" % q
        assert "cgroup v" in q.get("basis", ""), "cpu quota basis: got %r" % q
        started = logparse.records(logp, "worker started")
        assert len(started) == want, "got %d delivery loops, want %d: %r" % (len(started), want, started)
    finally:
        t.stop()
        deadline = time.monotonic() + dl(5)
        while t.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not t.problems, "worker teardown: %r" % t.problems
