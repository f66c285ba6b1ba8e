"""dns_server.py - a real DNS server (Debian's dnsmasq) for tests, run as an
unprivileged child on a random loopback port.

Owns: the dnsmasq process and its command line. Everything is local: no
upstream servers, no /etc/hosts, and `local=/<zone>/` so names under the
test zones that are not configured answer NXDOMAIN. Used by test_mx.py (MX,
A, null MX) and available to other tests (txt-record=...).

Must never: use a fixed port, or leave the process behind.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess

from helpers import dl, free_port, kill_group, reap, tail, wait_until


def _udp_port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _query_a(port, name, timeout=0.5):
    """One raw A query; returns the rcode, or None when no answer came."""
    qname = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"
    pkt = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(pkt, ("127.0.0.1", port))
            data, _ = s.recvfrom(4096)
        except OSError:
            return None
    return data[3] & 0x0F if len(data) >= 12 else None


class DnsServer:
    """dnsmasq answering for `zones` from `records` (dnsmasq options without
    the leading "--", e.g. "mx-host=example.test,mx1.example.test,10")."""

    def __init__(self, workdir, zones, records, probe_name):
        self.binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        self.dir = os.path.join(workdir, "dns")
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "dnsmasq.log")
        self.zones = zones
        self.records = records
        self.probe_name = probe_name   # a configured name: answers NOERROR when ready
        self.proc = None
        self.port = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise AssertionError("dnsmasq is not installed (make deps)")
        for _ in range(5):
            port = free_port()
            if _udp_port_free(port):
                break
        self.port = port
        args = [self.binary, "--no-daemon", "--port=%d" % port, "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                "--pid-file=", "--user=%s" % _user(), "--log-queries", "--log-facility=-"]
        args += ["--local=/%s/" % z for z in self.zones]
        args += ["--" + r for r in self.records]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("dnsmasq exited (%s): %s" % (self.proc.returncode, tail(self.log, 30)))
            return _query_a(self.port, self.probe_name) == 0
        wait_until(ready, dl(10), "dnsmasq answering on port %d" % port, interval=0.05)
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if not reap(self.proc, dl(5)):
                kill_group(self.proc, signal.SIGKILL)
                reap(self.proc, dl(5))
        kill_group(self.proc, signal.SIGKILL)


def _user():
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name
