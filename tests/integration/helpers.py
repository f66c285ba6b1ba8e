"""helpers.py - process and protocol helpers for txmail's integration tests.

Owns: starting/stopping the real peers a test needs (redis-server, the SMTP
test peer tests/integration/peers/smtpd.py, the txmail binary), a small HTTP
client, a minimal RESP client, and `wait_until`, the one way tests wait.

Must never: sleep "long enough" (every wait is a condition with a deadline),
talk to anything but loopback, leave a process behind (every child runs in
its own process group and is killed by the fixture that started it), or
depend on anything but the Python standard library (run with /usr/bin/python3).

Deadlines are scaled by SCALE (3 under the ASan+UBSan build, TXMAIL_ASAN=1).
"""

import email
import email.policy
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers")
PYTHON = "/usr/bin/python3"
ASAN = os.environ.get("TXMAIL_ASAN", "") not in ("", "0")
# TXM_PARTITIONS=N: every txmail the tests start gets TXMAIL_PARTITIONS=N unless the test sets it
PARTITIONS = os.environ.get("TXM_PARTITIONS", "")
SCALE = 3.0 if ASAN else 1.0

SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")

MSG_ID_RE = re.compile(r"^msg_[0-9a-z]{26}(?:p[1-9][0-9]?)?$")   # p<k>: its partition
RAW_MSGID_RE = re.compile(rb"(?im)^message-id:\s*<([^>\s]+)>")


def dl(seconds):
    """A deadline length in seconds, scaled for sanitizer builds."""
    return seconds * SCALE


class WaitTimeout(AssertionError):
    pass


def wait_until(pred, timeout, what, interval=0.02, diag=None):
    """Call pred() until it returns something truthy; return that value.

    Raises WaitTimeout (an AssertionError, so the test fails) naming `what`
    after `timeout` seconds; `diag()` adds a description of the last state.
    """
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            extra = ""
            if diag is not None:
                try:
                    extra = "; " + str(diag())
                except Exception as e:  # diagnostics must not hide the timeout
                    extra = "; (diag failed: %r)" % (e,)
            raise WaitTimeout("timed out after %.1fs waiting for %s%s" % (timeout, what, extra))
        time.sleep(interval)


def read_text(path):
    """A file's text ("" while it does not exist yet)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_status(api, mid, want, timeout):
    """Wait until the message's first recipient has status `want`; return the
    message. A final status (delivered, failed) other than `want` fails at once."""
    last = {}

    def check():
        r = api.get("/v1/messages/" + mid)
        assert r.status == 200, "GET /v1/messages/%s: got %s %r" % (mid, r.status, r.body)
        last["j"] = r.json
        got = r.json["recipients"][0]["status"]
        assert got == want or got not in ("delivered", "failed"), "%s: recipient got %r, want %r: %r" % (
            mid, got, want, r.json)
        return r.json if got == want else None
    return wait_until(check, timeout, "%s: recipient %s" % (mid, want), interval=0.05,
                      diag=lambda: "last GET: %r" % (last.get("j"),))


def send_text(api, to, subject):
    """POST a one-recipient text message; its id (202 or the test fails)."""
    r = api.send({"from": "sender@example.com", "to": to, "subject": subject, "text": "hello\n"})
    assert r.status == 202, "POST /v1/messages: got %s %r, want 202" % (r.status, r.body)
    return r.json["id"]


def deliver_once_each(api, smtp_peer, rcpts, subject, timeout=20):
    """Send one message to each of rcpts; each must be delivered at its
    first attempt and reach smtp_peer once. -> [(message json, Received)]."""
    mids = [send_text(api, to, subject) for to in rcpts]
    msgs = []
    for mid in mids:
        j = wait_status(api, mid, "delivered", dl(timeout))
        assert j["recipients"][0]["attempts"] == 1, "attempts: got %r, want 1" % j["recipients"]
        msgs.append(j)
    out = []
    for j, to in zip(msgs, rcpts):
        (got,) = smtp_peer.wait_for_rcpt(to, dl(10))
        out.append((j, got))
    return out


def _port_block():
    """(first, count): the ports this test process hands out.

    Not from the kernel's ephemeral range: a port found free there can be
    taken, between free_port() and the child's bind, as the source port of
    any outgoing connection on the machine (CI saw txmail fail to listen
    that way with four pytest workers side by side). Below that range the
    kernel never picks a port by itself, and each process gets a block of
    its own: TXM_PORT_GROUP (default 1 under ASan, else 0; integration and
    integration-asan run side by side) times the xdist worker number.
    """
    lo, hi = 32768, 60999
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split()[:2])
    except (OSError, ValueError):
        pass
    if lo - 1 - 10000 >= 8000:
        first, last = 10000, lo - 1
    elif 65535 - hi >= 8000:
        first, last = hi + 1, 65535
    else:
        first, last = 1024, 65535
    groups, workers = 4, 8
    size = (last - first + 1) // (groups * workers)
    group = int(os.environ.get("TXM_PORT_GROUP", "1" if ASAN else "0")) % groups
    m = re.match(r"gw(\d+)$", os.environ.get("PYTEST_XDIST_WORKER", ""))
    worker = int(m.group(1)) % workers if m else 0
    return first + (group * workers + worker) * size, size


_PORTS = {"block": None, "next": 0}


def free_port():
    """A TCP port on 127.0.0.1, free now and outside the ephemeral range.

    Ports are handed out in turn from this process's block (see _port_block),
    so no two callers of one process get the same port until the block wraps.
    """
    if _PORTS["block"] is None:
        _PORTS["block"] = _port_block()
        _PORTS["next"] = int.from_bytes(os.urandom(2), "big")
    first, size = _PORTS["block"]
    for _ in range(size):
        port = first + _PORTS["next"] % size
        _PORTS["next"] += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in %d..%d" % (first, first + size - 1))


def tail(path, lines=150, max_bytes=200000):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


def clean_env(extra=None):
    """os.environ without any TXMAIL_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXMAIL_")}
    if PARTITIONS:
        env["TXMAIL_PARTITIONS"] = PARTITIONS   # the whole suite on a partitioned keyspace
    if ASAN:
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
    return env


def kill_group(proc, sig=signal.SIGKILL):
    """Send sig to proc's process group (it was started with a new session)."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap(proc, timeout):
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


# --------------------------------------------------------------------------
# HTTP


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body
        self.json = None
        try:
            self.json = json.loads(body.decode("utf-8")) if body else None
        except (ValueError, UnicodeDecodeError):
            self.json = None

    def __repr__(self):
        return "<Resp %s %r>" % (self.status, self.body[:400])


class Client:
    """A keep-alive HTTP/1.1 client for one thread. request() -> Resp.

    A request on a reused connection that the server had already closed is
    retried once on a fresh connection (as HTTP clients normally do).
    """

    def __init__(self, port, key=None, host="127.0.0.1", timeout=None):
        self.host = host
        self.port = port
        self.key = key
        self.timeout = timeout if timeout is not None else dl(15)
        self.conn = None
        self.used = False

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self.used = False

    def _send(self, method, path, body, headers):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.used = False
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        self.used = True
        resp = Resp(r.status, r.getheaders(), data)
        if r.will_close:
            self.close()
        return resp

    def request(self, method, path, body=None, headers=None, auth=True, json_body=None):
        h = dict(headers or {})
        if auth and self.key is not None and "Authorization" not in h:
            h["Authorization"] = "Bearer " + self.key
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            h.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode("utf-8")
        reused = self.conn is not None and self.used
        try:
            return self._send(method, path, body, h)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                http.client.BadStatusLine):
            self.close()
            if not reused:
                raise
        except Exception:
            self.close()
            raise
        try:
            return self._send(method, path, body, h)
        except Exception:
            self.close()
            raise

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post_json(self, path, obj, **kw):
        return self.request("POST", path, json_body=obj, **kw)

    def send(self, msg, **kw):
        return self.request("POST", "/v1/messages", json_body=msg, **kw)


def raw_http(port, payload, body_chunks=(), timeout=None):
    """Write `payload` then each of `body_chunks` on a fresh connection; stop
    writing as soon as the server answers (or closes). Returns
    (status, headers dict, body bytes) or (None, {}, b"") when the server
    closed without an HTTP answer."""
    timeout = timeout if timeout is not None else dl(10)
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    end = time.monotonic() + timeout
    try:
        pending = [payload] + list(body_chunks)
        try:
            while pending and time.monotonic() < end:
                r, w, _ = select.select([s], [s], [], max(0.0, end - time.monotonic()))
                if r:
                    break  # the server answered (or closed) before taking everything
                if w:
                    n = s.send(pending[0])
                    pending[0] = pending[0][n:]
                    if not pending[0]:
                        pending.pop(0)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        while time.monotonic() < end:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                break
            if not d:
                break
            buf += d
            if _http_complete(buf):
                break
    finally:
        s.close()
    return _parse_http(buf)


def _http_complete(buf):
    if b"\r\n\r\n" not in buf:
        return False
    head, _, rest = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if m:
        return len(rest) >= int(m.group(1))
    return False


def _parse_http(buf):
    if not buf.startswith(b"HTTP/") or b"\r\n\r\n" not in buf:
        return None, {}, buf
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        headers[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
    if "transfer-encoding" in headers and "chunked" in headers["transfer-encoding"].lower():
        out = b""
        rest = body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            try:
                n = int(size_line.split(b";")[0], 16)
            except ValueError:
                break
            if n == 0:
                break
            out += rest[:n]
            rest = rest[n + 2:]
        body = out
    return status, headers, body


# --------------------------------------------------------------------------
# Redis


def resp_cmd(port, *args, timeout=2.0, password=None):
    """One Redis command over a fresh connection (after AUTH password when
    given); returns the decoded reply (str for simple/bulk strings, int,
    list) or raises RuntimeError on an error reply and OSError when
    unreachable."""
    cmds = [("AUTH", password)] if password is not None else []
    out = b""
    for cmd in cmds + [args]:
        out += b"*%d\r\n" % len(cmd)
        for a in cmd:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        f = s.makefile("rb")
        for _ in cmds:
            _resp_read(f)
        return _resp_read(f)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        raise RuntimeError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("utf-8", "replace")
    if t == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_resp_read(f) for _ in range(n)]
    raise OSError("bad RESP line %r" % line)


class RedisServer:
    """A real redis-server on 127.0.0.1:port with AOF (appendfsync always
    unless fsync= says otherwise: "everysec", "no")."""

    def __init__(self, workdir, port=None, fsync="always", extra_args=()):
        self.fsync = fsync
        self.extra_args = list(extra_args)   # after the usual arguments (a subclass's directives)
        self.dir = os.path.join(workdir, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.log = os.path.join(self.dir, "redis.log")
        self.proc = None
        self.restarts = 0

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def argv(self):
        """The command line (a subclass may run something else, e.g. a sentinel)."""
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--appendonly", "yes", "--appendfsync", self.fsync,
                "--save", "", "--daemonize", "no", "--logfile", self.log,
                "--protected-mode", "no"] + self.extra_args

    def start(self, timeout=None):
        self.proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True)
        wait_until(self._pong, timeout or dl(10), "%s PONG on port %d" % (self.argv()[0], self.port),
                   diag=lambda: tail(self.log, 20))

    def _pong(self):
        if self.proc.poll() is not None:
            raise AssertionError("redis-server exited (%s): %s" % (self.proc.returncode, tail(self.log, 30)))
        try:
            return self.cmd("PING") == "PONG"   # a subclass's cmd may AUTH first
        except (OSError, RuntimeError):  # refused, or -LOADING
            return False

    def cmd(self, *args):
        return resp_cmd(self.port, *args, timeout=0.5 if args == ("PING",) else 2.0)

    def kill9(self):
        kill_group(self.proc, signal.SIGKILL)
        reap(self.proc, dl(10))

    def restart(self):
        """kill -9, then start again on the same port and dir (AOF reload)."""
        self.kill9()
        self.restarts += 1
        self.start()

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            kill_group(self.proc, signal.SIGTERM)
            if not reap(self.proc, dl(5)):
                kill_group(self.proc, signal.SIGKILL)
                reap(self.proc, dl(5))
        kill_group(self.proc, signal.SIGKILL)


# --------------------------------------------------------------------------
# SMTP peer


class Received:
    """One message accepted by the SMTP peer."""

    def __init__(self, seq, meta, raw):
        self.seq = seq
        self.meta = meta
        self.raw = raw
        self._msg = None

    @property
    def msg(self):
        if self._msg is None:
            self._msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        return self._msg

    @property
    def message_id(self):
        """The Message-ID without angle brackets, from the raw header."""
        m = RAW_MSGID_RE.search(self.raw.split(b"\r\n\r\n", 1)[0])
        return m.group(1).decode("ascii", "replace") if m else None


def make_certs(outdir):
    subprocess.run([PYTHON, os.path.join(PEERS, "smtpd.py"), "--make-cert", outdir],
                   check=True, timeout=dl(30), stdin=subprocess.DEVNULL)
    for n in ("ca.pem", "cert.pem", "key.pem"):
        assert os.path.exists(os.path.join(outdir, n)), "smtpd.py --make-cert did not write " + n
    return outdir


class SmtpPeer:
    """tests/integration/peers/smtpd.py with STARTTLS required and AUTH."""

    def __init__(self, workdir, certdir, user="user", password="pass", extra_args=(), transcript=True,
                 tls=True):
        """tls=False: no STARTTLS offered at all (a server, or a man in the
        middle, that strips it)."""
        self.tls = tls
        self.extra_args = list(extra_args)
        self.transcript = transcript
        self.dir = os.path.join(workdir, "smtp")
        self.maildir = os.path.join(self.dir, "mail")
        os.makedirs(self.maildir, exist_ok=True)
        self.certdir = certdir
        self.ca = os.path.join(certdir, "ca.pem")
        self.user = user
        self.password = password
        self.ready = os.path.join(self.dir, "ready")
        self.log = os.path.join(self.dir, "transcript.log")
        self.stderr = os.path.join(self.dir, "stderr.log")
        self.proc = None
        self.port = None
        self._cache = {}

    def start(self):
        with open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen(
                [PYTHON, os.path.join(PEERS, "smtpd.py"), "--host", "127.0.0.1", "--port", "0",
                 "--maildir", self.maildir, "--ready-file", self.ready,
                 "--auth", "%s:%s" % (self.user, self.password)]
                + (["--tls-cert", os.path.join(self.certdir, "cert.pem"),
                    "--tls-key", os.path.join(self.certdir, "key.pem"), "--require-starttls"] if self.tls else [])
                + (["--log", self.log] if self.transcript else []) + self.extra_args,
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("smtpd.py exited (%s): %s" % (self.proc.returncode, tail(self.stderr, 30)))
            return os.path.exists(self.ready)
        wait_until(ready, dl(15), "smtpd.py ready file")
        with open(self.ready) as f:
            self.port = int(f.read().strip())

    def relay_url(self):
        return "smtp://%s:%s@127.0.0.1:%d?tls=required" % (self.user, self.password, self.port)

    def count(self):
        try:
            return sum(1 for n in os.listdir(self.maildir) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return 0

    def messages(self):
        """Every accepted message so far, ordered by seq (cached, incremental)."""
        for n in os.listdir(self.maildir):
            if not n.endswith(".json") or n.startswith("."):
                continue
            seq = int(n[:-5])
            if seq in self._cache:
                continue
            with open(os.path.join(self.maildir, n), "rb") as f:
                meta = json.loads(f.read())
            with open(os.path.join(self.maildir, "%d.eml" % seq), "rb") as f:
                raw = f.read()
            self._cache[seq] = Received(seq, meta, raw)
        return [self._cache[k] for k in sorted(self._cache)]

    def wait_count(self, n, timeout, what=None):
        wait_until(lambda: self.count() >= n, timeout, what or "%d message(s) at the SMTP peer" % n,
                   interval=0.05, diag=lambda: "have %d" % self.count())
        return self.messages()

    def wait_for_rcpt(self, rcpt, timeout, n=1):
        """Wait until n messages for envelope recipient rcpt arrived; return them."""
        def have():
            ms = [m for m in self.messages() if rcpt.lower() in [r.lower() for r in m.meta.get("rcpt_tos", [])]]
            return ms if len(ms) >= n else None
        return wait_until(have, timeout, "%d message(s) for %s at the SMTP peer" % (n, rcpt),
                          interval=0.05, diag=lambda: "have %d messages in total" % self.count())

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if not reap(self.proc, dl(5)):
                kill_group(self.proc, signal.SIGKILL)
                reap(self.proc, dl(5))
        kill_group(self.proc, signal.SIGKILL)


# --------------------------------------------------------------------------
# txmail


def wait_readyz(proc, port, name, log, timeout=None):
    """Wait until GET /readyz on port answers 200; fails at once if proc
    exits first, with the tail of its log file."""
    c = Client(port, timeout=dl(2))

    def ready():
        if proc.poll() is not None:
            raise AssertionError("%s exited with %s before /readyz was 200; log:\n%s" % (
                name, proc.returncode, tail(log, 60)))
        try:
            return c.get("/readyz", auth=False).status == 200
        except OSError:
            c.close()
            return False
    try:
        wait_until(ready, timeout or dl(20), "%s GET /readyz == 200" % name, interval=0.05,
                   diag=lambda: tail(log, 40))
    finally:
        c.close()


class Txmail:
    """One txmail process (`run`, `api` or `worker`), restartable with the
    same environment. stdout+stderr go to a log file (appended across
    restarts). HTTP roles are waited for with GET /readyz == 200."""

    def __init__(self, binary, args, env, log_path, port=None, key=None, http=True, name="txmail"):
        self.binary = binary
        self.args = list(args)
        self.env = env
        self.log = log_path
        self.port = port
        self.key = key
        self.http = http
        self.name = name
        self.proc = None
        self.starts = 0
        self.problems = []

    def start(self, wait=True):
        self.starts += 1
        with open(self.log, "ab") as lf:
            lf.write(b"=== test harness: start #%d: %s %s\n" % (
                self.starts, self.binary.encode(), " ".join(self.args).encode()))
            lf.flush()
            self.proc = subprocess.Popen([self.binary] + self.args, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                         start_new_session=True)
        if wait and self.http:
            self.wait_ready()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def client(self, **kw):
        return Client(self.port, key=self.key, **kw)

    def wait_ready(self, timeout=None):
        wait_readyz(self.proc, self.port, self.name, self.log, timeout)

    def kill9(self):
        if self.proc is None:
            return
        kill_group(self.proc, signal.SIGKILL)
        reap(self.proc, dl(10))
        self.check_sanitizers()

    def restart(self):
        self.kill9()
        self.start()

    def check_sanitizers(self):
        try:
            with open(self.log, "r", encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            return
        for p in SANITIZER_PATTERNS:
            if p in text:
                msg = "%s: sanitizer report %r in %s" % (self.name, p, self.log)
                if msg not in self.problems:
                    self.problems.append(msg)

    def stop(self, timeout=None):
        """SIGTERM, then SIGKILL after a deadline. Records problems (needed
        SIGKILL, non-zero exit, sanitizer reports) in self.problems."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if not reap(self.proc, timeout or dl(10)):
                self.problems.append("%s did not exit within %.0fs of SIGTERM (SIGKILLed)" % (
                    self.name, timeout or dl(10)))
                kill_group(self.proc, signal.SIGKILL)
                reap(self.proc, dl(10))
            elif self.proc.returncode != 0:
                self.problems.append("%s exited with status %s after SIGTERM" % (self.name, self.proc.returncode))
        kill_group(self.proc, signal.SIGKILL)  # anything left in its group
        self.check_sanitizers()


def find_redis_servers(mention=None, ppid=None):
    """pids of running redis-server processes whose cmdline or cwd mentions
    `mention`, or whose parent is `ppid`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        try:
            with open("/proc/%d/stat" % pid, "rb") as f:
                stat = f.read()
            comm = stat[stat.index(b"(") + 1:stat.rindex(b")")]
            fields = stat[stat.rindex(b")") + 2:].split()
            state, parent = fields[0], int(fields[1])
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, ValueError):
            continue
        if state == b"Z":
            continue
        if b"redis-server" not in comm and "redis-server" not in cmdline:
            continue
        hit = False
        if ppid is not None and parent == ppid:
            hit = True
        if mention is not None:
            if mention in cmdline:
                hit = True
            else:
                try:
                    if os.readlink("/proc/%d/cwd" % pid).startswith(mention):
                        hit = True
                except OSError:
                    pass
        if hit:
            out.append(pid)
    return out


NOTES = []


def log(*a):
    """Print (shown with -s or on failure) and keep the line for the
    end-of-run summary (conftest's pytest_terminal_summary)."""
    line = " ".join(str(x) for x in a)
    NOTES.append(line)
    print(line, flush=True)


# --- a private /etc/hosts ----------------------------------------------------------------

def hosts_ns_problem(workdir):
    """None when `unshare -rm` + a bind mount over /etc/hosts works here, else why not."""
    if shutil.which("unshare") is None or shutil.which("getent") is None:
        return "unshare or getent missing"
    hosts = os.path.join(workdir, "probe-hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.9 relaydns-probe.test\n")
    try:
        p = subprocess.run(["unshare", "-rm", "sh", "-c",
                            'mount --bind "$1" /etc/hosts && exec getent ahosts relaydns-probe.test',
                            "sh", hosts], capture_output=True, timeout=dl(10), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "unshare failed: %r" % (e,)
    if p.returncode != 0 or b"127.0.0.9" not in p.stdout:
        return "no private /etc/hosts (rc %s): %s" % (p.returncode, p.stderr.decode(errors="replace")[-300:])
    return None


def with_hosts(hosts_path, argv):
    """argv run with hosts_path as its /etc/hosts (a user + mount namespace of its own)."""
    return ["unshare", "-rm", "sh", "-c", 'mount --bind "$1" /etc/hosts && shift && exec "$@"',
            "sh", hosts_path] + list(argv)


def blackhole_listen(ip, port):
    """A listener on ip:port (loopback) whose accept queue is full, so the kernel
    drops further SYNs and a connect there hangs, as to a host that never
    answers. Returns the sockets to close (the listener and its fillers)."""
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    lst = socket.socket(fam, socket.SOCK_STREAM)
    if fam == socket.AF_INET6:
        lst.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    lst.bind((ip, port))
    lst.listen(0)
    socks = [lst]
    for _ in range(8):
        c = socket.socket(fam, socket.SOCK_STREAM)
        c.setblocking(False)
        socks.append(c)
        if c.connect_ex((ip, port)) not in (0, 115):   # 115: EINPROGRESS
            break
        _, w, _ = select.select([], [c], [], 0.3)
        if not w:
            return socks   # this one hangs: the queue is full
    for c in socks:
        c.close()
    raise AssertionError("the accept queue of %s:%d did not fill" % (ip, port))


class PlainPeer:
    """smtpd.py on one address (an MX host of test_mx.py, test_fair_dest.py): no
    TLS, no AUTH, stores what it accepts."""

    def __init__(self, workdir, host, port, extra=()):
        self.host = host
        self.port = port
        self.extra = list(extra)   # more smtpd.py options (e.g. --tls-cert ...)
        self.dir = os.path.join(workdir, "mx-" + host)
        self.maildir = os.path.join(self.dir, "mail")
        os.makedirs(self.maildir, exist_ok=True)
        self.ready = os.path.join(self.dir, "ready")
        self.stderr = os.path.join(self.dir, "stderr.log")
        self.proc = None

    def start(self):
        with open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen(
                [PYTHON, os.path.join(PEERS, "smtpd.py"), "--host", self.host, "--port", str(self.port),
                 "--maildir", self.maildir, "--ready-file", self.ready,
                 "--log", os.path.join(self.dir, "transcript.log")] + self.extra,
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("smtpd.py on %s exited: %s" % (self.host, tail(self.stderr, 30)))
            return os.path.exists(self.ready)
        wait_until(ready, dl(15), "smtpd.py on %s ready" % self.host)
        return self

    def messages(self):
        """The stored .json records, in order."""
        out = []
        for n in sorted(os.listdir(self.maildir)):
            if n.endswith(".json") and not n.startswith("."):
                with open(os.path.join(self.maildir, n)) as f:
                    out.append(json.load(f))
        return out

    def rcpts(self):
        return [r.lower() for m in self.messages() for r in m.get("rcpt_tos", [])]

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            if not reap(self.proc, dl(5)):
                kill_group(self.proc)
                reap(self.proc, dl(5))
        kill_group(self.proc)


def make_key(binary, redis, name):
    """A stored API key of project `name` (`txmail keys create --name`), its secret."""
    p = subprocess.run([binary, "keys", "create", "--name", name],
                       env=clean_env({"TXMAIL_REDIS_URL": redis.url}),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=dl(20))
    assert p.returncode == 0, "keys create --name %s: exit %d: %s" % (name, p.returncode, p.stderr)
    return p.stdout.strip()
