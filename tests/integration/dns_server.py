"""dns_server.py - a real DNS server (Debian's dnsmasq) for tests, run as an
unprivileged child on a random loopback port.

Owns: the dnsmasq process and its command line. Everything is local: no
upstream servers, no /etc/hosts, and `local=/<zone>/` so names under the
test zones that are not configured answer NXDOMAIN. Used by test_mx.py (MX,
A, null MX) and test_dkim.py (TXT: the DKIM key record, read back with
query_txt, a small UDP TXT client; txt_record_option splits long values).

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


def _skip_name(data, off):
    """Offset just past the (possibly compressed) domain name at off."""
    while True:
        if off >= len(data):
            raise ValueError("truncated name")
        n = data[off]
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n
        if n == 0:
            return off


def query_txt(port, name, timeout=2.0):
    """Ask dnsmasq on 127.0.0.1:port for the TXT records of name over UDP.
    Returns a list with one bytes value per TXT record (its strings joined,
    as RFC 6376 3.6.2.2 reads a DKIM key record); [] for NOERROR without TXT;
    raises LookupError for another rcode and OSError when no answer came."""
    qid = int.from_bytes(os.urandom(2), "big")
    qname = b"".join(bytes([len(x)]) + x.encode() for x in name.rstrip(".").split(".")) + b"\0"
    pkt = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 16, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(pkt, ("127.0.0.1", port))
        while True:
            data, _ = s.recvfrom(65535)
            if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
                break
    _, flags, qd, an = struct.unpack(">HHHH", data[:8])
    if flags & 0x0200:
        raise LookupError("truncated answer for %s (TC set)" % name)
    if flags & 0x0F:
        raise LookupError("rcode %d for %s" % (flags & 0x0F, name))
    off = 12
    for _ in range(qd):
        off = _skip_name(data, off) + 4
    out = []
    for _ in range(an):
        off = _skip_name(data, off)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[off:off + 10])
        off += 10
        rdata, off = data[off:off + rdlen], off + rdlen
        if rtype != 16:
            continue
        parts, i = [], 0
        while i < len(rdata):
            parts.append(rdata[i + 1:i + 1 + rdata[i]])
            i += 1 + rdata[i]
        out.append(b"".join(parts))
    return out


def txt_record_option(name, value):
    """The dnsmasq option (without "--") serving TXT `value` (str) at `name`:
    split into character-strings of at most 255 bytes, as a DNS TXT string
    cannot be longer (a DKIM RSA-2048 key record is ~400 bytes). dnsmasq
    separates the strings at commas and keeps quotes literally on its
    command line, so a value with either is refused."""
    if any(c in value for c in '"\\,\r\n'):
        raise ValueError("TXT value with a quote, backslash, comma or newline: %r" % value)
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
    return "txt-record=%s,%s" % (name, ",".join(chunks))


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
