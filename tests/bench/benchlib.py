"""benchlib.py - the pieces the benches share: processes in their own
process groups that are all killed on the way out (also on failure, ^C or
SIGTERM), a redis-server on the shipped deploy/redis.conf, Redis INFO
deltas, and wrk driven by unique.lua.

Must never: talk to anything but 127.0.0.1, or leave a process or a
temporary directory behind (Procs.cleanup runs from atexit and from the
signal handlers installed by Procs.install_handlers).
"""
import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
IT = os.path.join(ROOT, "tests", "integration")
# Ports from a block of their own (helpers._port_block): group 3 is not used
# by the integration passes that may run beside a bench.
os.environ.setdefault("TXM_PORT_GROUP", "3")
sys.path.insert(0, IT)

from helpers import free_port, resp_cmd, kill_group, reap, wait_until, tail  # noqa: E402,F401

REDIS_CONF = os.path.join(ROOT, "deploy", "redis.conf")
UNIQUE_LUA = os.path.join(HERE, "unique.lua")


class Procs:
    """Every child of a bench, each in its own session (process group), and
    the bench's temporary directory."""

    def __init__(self, prefix="txmail-bench-", keep=False):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.keep = keep
        self.procs = []
        atexit.register(self.cleanup)

    def install_handlers(self):
        def on_signal(sig, frame):
            raise SystemExit("bench: stopped by signal %d" % sig)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, on_signal)

    def start(self, name, argv, env=None, log=None, stdout=None):
        """Start argv in a new session; stderr (and stdout unless given) to
        <dir>/<name>.log."""
        log = log or os.path.join(self.dir, name + ".log")
        err = open(log, "ab")
        out = err if stdout is None else stdout
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             start_new_session=True)
        err.close()
        p.bench_name, p.bench_log = name, log
        self.procs.append(p)
        return p

    def stop(self, p, timeout=15):
        """SIGTERM to p's group, SIGKILL after timeout; True if it ended by itself."""
        clean = True
        if p.poll() is None:
            kill_group(p, signal.SIGTERM)
            if not reap(p, timeout):
                clean = False
                kill_group(p, signal.SIGKILL)
                reap(p, 5)
        kill_group(p, signal.SIGKILL)   # anything it left in its group
        if p in self.procs:
            self.procs.remove(p)
        return clean

    def cleanup(self):
        for p in list(self.procs):
            kill_group(p, signal.SIGKILL)
            reap(p, 5)
        self.procs = []
        if not self.keep and self.dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)


# --- Redis ----------------------------------------------------------------------
# What the bench's redis-server must change in deploy/redis.conf, and why:
# its own port and loopback only (the box is shared), its own data directory,
# in the foreground (a child of the bench). Everything else is as shipped.
REDIS_OVERRIDES = ("port", "bind", "dir", "daemonize")


def start_redis(procs, name="redis", extra=()):
    """redis-server on a copy of deploy/redis.conf with REDIS_OVERRIDES
    changed, and the settings of `extra` ("name value" lines, e.g.
    "appendfsync everysec") too; returns (port, [override lines])."""
    d = os.path.join(procs.dir, name)
    os.makedirs(d, exist_ok=True)
    port = free_port()
    over = ["port %d" % port, "bind 127.0.0.1", "dir %s" % d, "daemonize no"] + list(extra)
    names = set(REDIS_OVERRIDES) | {e.split(None, 1)[0].lower() for e in extra}
    # The shipped lines of those settings are commented out, not just
    # followed by ours: redis-server applies `dir` while it reads the file
    # (a shipped /data that does not exist here is fatal).
    lines = []
    with open(REDIS_CONF) as f:
        for line in f:
            word = line.split(None, 1)[0].lower() if line.strip() else ""
            lines.append(("# make bench: " + line) if word in names else line)
    path = os.path.join(d, "redis.conf")
    with open(path, "w") as f:
        f.write("".join(lines) + "\n# make bench: overrides\n" + "\n".join(over) + "\n")
    p = procs.start(name, ["redis-server", path])

    def up():
        if p.poll() is not None:
            raise SystemExit("bench: redis-server exited: " + tail(p.bench_log, 20))
        try:
            return resp_cmd(port, "PING", timeout=0.5) == "PONG"
        except (OSError, RuntimeError):
            return False
    wait_until(up, 20, "redis-server on port %d" % port)
    return port, over


def info(port):
    """INFO everything as {field: value} (numbers as float), plus
    "cmdstat" {command: (calls, usec)}."""
    text = resp_cmd(port, "INFO", "everything", timeout=10)
    out, cmds = {}, {}
    for line in text.splitlines():
        if ":" not in line or line.startswith("#"):
            continue
        k, v = line.split(":", 1)
        if k.startswith("cmdstat_"):
            m = re.search(r"calls=(\d+),usec=(\d+)", v)
            if m:
                cmds[k[len("cmdstat_"):]] = (int(m.group(1)), int(m.group(2)))
            continue
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    out["cmdstat"] = cmds
    return out


def redis_cpu(i):
    """Seconds of CPU of the server and its children (BGSAVE/BGREWRITEAOF)."""
    return (i["used_cpu_sys"] + i["used_cpu_user"] +
            i["used_cpu_sys_children"] + i["used_cpu_user_children"])


def cmd_delta(before, after):
    """{command: (calls, usec)} run between two info() snapshots."""
    out = {}
    for c, (calls, usec) in after["cmdstat"].items():
        b = before["cmdstat"].get(c, (0, 0))
        if calls - b[0] > 0:
            out[c] = (calls - b[0], usec - b[1])
    return out


def ping_rate(port, conns, n):
    """redis-benchmark's unpipelined PINGs per second (one round trip each)."""
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(conns),
                          "-n", str(n), "-q", "-t", "ping_mbulk"],
                         capture_output=True, text=True, timeout=300).stdout
    m = re.findall(r"([\d.]+) requests per second", out)
    return float(m[-1]) if m else 0.0


# --- wrk ------------------------------------------------------------------------
BENCH_RE = re.compile(r"BENCH posts=(\d+) accepted=(\d+) refused=(\d+) duration_us=(\d+) "
                      r"p50_us=(\d+) p90_us=(\d+) p99_us=(\d+) p999_us=(\d+) max_us=(\d+)")


def run_wrk(port, key, conns=64, seconds=10, limit=0, priority=None, threads=2, timeout_s=10, idfile=None):
    """wrk POSTing unique bodies (unique.lua) to 127.0.0.1:port for `seconds`
    or until `limit` messages were answered. Returns a dict: posts,
    accepted, refused, seconds (wrk's own duration), rate (accepted/s),
    p50/p90/p99/p999/max in ms, errors (wrk's socket errors line or "").
    With idfile, the ids of the accepted messages are written there; a
    limit needs an idfile (its .done.N marks end the run)."""
    if limit and not idfile:
        raise ValueError("run_wrk: a limit needs an idfile")
    args = [key, str(threads), str(limit), priority or "-", idfile or "-", str(timeout_s + 2)]
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "--timeout", "%ds" % timeout_s,
           "-s", UNIQUE_LUA, "http://127.0.0.1:%d/v1/messages" % port, "--"] + args
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    t_done = None
    try:
        if limit:
            marks = [idfile + ".done.%d" % i for i in range(threads)]
            while p.poll() is None and not all(os.path.exists(f) for f in marks):
                time.sleep(0.02)
            t_done = time.monotonic()
            if p.poll() is None:
                p.send_signal(signal.SIGINT)     # wrk prints its summary and runs done()
        out, err_out = p.communicate(timeout=seconds + 120)
    finally:
        if p.poll() is None:
            kill_group(p)
            p.wait()
    t_done = t_done or time.monotonic()
    m = BENCH_RE.search(out)
    if not m:
        raise SystemExit("bench: cannot read wrk's output (%s):\n%s%s" % (" ".join(cmd), out, err_out))
    v = [int(x) for x in m.groups()]
    err = re.search(r"Socket errors:.*", out)
    # with a limit, the time until every thread had its answers (wrk's own
    # duration also counts the moments until the SIGINT arrived)
    secs = (t_done - t0) if limit else v[3] / 1e6
    return {"posts": v[0], "accepted": v[1], "refused": v[2], "seconds": secs,
            "rate": v[1] / secs if secs else 0.0,
            "p50": v[4] / 1000, "p90": v[5] / 1000, "p99": v[6] / 1000, "p999": v[7] / 1000,
            "max": v[8] / 1000, "errors": err.group(0) if err else "", "cmd": cmd}


def wait_http_ok(port, path, timeout, proc=None):
    import http.client

    def ok():
        if proc is not None and proc.poll() is not None:
            raise SystemExit("bench: %s exited: %s" % (proc.bench_name, tail(proc.bench_log, 30)))
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            st = c.getresponse().status
            c.close()
            return st == 200
        except OSError:
            return False
    wait_until(ok, timeout, "http://127.0.0.1:%d%s answering 200" % (port, path))


def proc_status(pid):
    """{VmRSS, VmHWM}: kB, from /proc/<pid>/status."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def now():
    return time.time()
