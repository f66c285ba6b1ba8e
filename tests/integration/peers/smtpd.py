#!/usr/bin/python3
"""smtpd.py - the real SMTP server that txmail's tests deliver to.

A small aiosmtpd (1.4.3) server on loopback with scripted behaviour, used by
the C engine tests (tests/unit/test_engine.c) and every integration test. It
stores what it accepts so tests can compare exact bytes; it never relays.
Run it with /usr/bin/python3 (Debian's python3-aiosmtpd).

Usage
  smtpd.py --host 127.0.0.1 --port 0 --maildir DIR --ready-file FILE
           [--tls-cert CERT --tls-key KEY] [--require-starttls]
           [--implicit-tls] [--auth USER:PASS] [--log FILE]
  smtpd.py --make-cert DIR [--cert-names NAME,...]

Options
  --port 0            bind a free port. Once listening, the port number (and a
                      newline) is written to --ready-file via tmp + rename, so
                      a test waits for the file to exist, then reads the port.
  --maildir DIR       accepted messages go to DIR/<seq>.eml (the exact bytes
                      received, dot-unstuffed, CRLF kept) and DIR/<seq>.json:
                        {"seq", "mail_from", "rcpt_tos", "tls": bool,
                         "auth_user": str|null, "conn": int, "peer": "ip:port",
                         "helo": str, "mail_options": [str] (upper-cased
                         MAIL parameters, e.g. "SIZE=123", "BODY=8BITMIME"),
                         "at": float (time.time() when the end of DATA
                         was read: the arrival time, for latency tests)}
                      Both are written tmp + rename (".eml" first, then the
                      ".json"), so a test that sees <seq>.json sees the whole
                      message. seq starts at 1. "conn" is the server's number
                      for the TCP connection (1, 2, ...), so a test can count
                      how many connections the client used.
  --tls-cert/--tls-key  offer STARTTLS with this certificate (PEM).
  --implicit-tls      TLS from the first byte instead (smtps); needs the cert.
  --require-starttls  refuse everything but EHLO/HELO/NOOP/QUIT/STARTTLS
                      before STARTTLS ("530 Must issue a STARTTLS command first").
  --auth USER:PASS    require AUTH (PLAIN and LOGIN offered, also over plain
                      text) before MAIL; wrong credentials get
                      "535 5.7.8 Authentication credentials invalid".
  --log FILE          transcript: "CONNECT n peer", "n C: <command>",
                      "n S: <reply>", "CLOSE n". AUTH payloads are masked.
                      After a reply sent while bytes of later commands had
                      already arrived, "n AHEAD <bytes>": the client did not
                      wait for that reply (pipelining, RFC 2920). A lock-step
                      client never causes it: it sends nothing before the reply.
  --pipelining        advertise PIPELINING in the EHLO reply.
  --size N            advertise "SIZE N" and refuse bigger messages (default
                      64 MiB); --size 0 advertises no SIZE at all.
  --no-8bitmime       do not advertise 8BITMIME.
  --smtputf8          advertise and accept SMTPUTF8 (RFC 6531); without it a
                      non-ASCII command gets "500 Error: strict ASCII mode".
  --make-cert DIR     write DIR/ca.pem (a test CA), DIR/cert.pem + DIR/key.pem
                      (server certificate for DNS:localhost and IP:127.0.0.1
                      signed by the CA), DIR/ca-key.pem, with the openssl CLI,
                      then exit. Verify clients against DIR/ca.pem.
  --broken-starttls  offer STARTTLS and answer it with 220, then send plain
                      bytes and close: the client's TLS handshake fails.
  --rcpt-times FILE   one JSON line per RCPT command, appended as it is
                      answered: {"rcpt", "code", "t"} with t from
                      time.monotonic() (system-wide on Linux), so a test can
                      measure the gap between two attempts from the server's
                      side.
  --cert-names N,...  with --make-cert: extra DNS names in the server
                      certificate's subjectAltName (e.g. an MX host name).

Behaviour chosen by the recipient's local part (per RCPT address; counters
are kept across connections for the life of the process):
  tempN-anything@...  RCPT gets "451 4.3.0 try again later" the first N times
                      the address is tried, then it is accepted (temp2-x@...).
  greyN-Ss-anything@... RCPT gets "451 4.7.1 Greylisted, please try again in
                      S seconds" the first N times the address is tried, then
                      it is accepted (grey1-3s-x@...: a greylisting server
                      that names its delay).
  perm-anything@...   RCPT gets "550 5.1.1 no such user".
  drop-anything@...   after the end of DATA the connection is closed with no
                      reply (message not stored).
  gone-anything@...   accepted and stored; the connection's next RSET gets no
                      reply, the connection is closed (a server that dropped
                      a reused connection as the client began its next
                      transaction).
  slow-anything@...   the reply to the end of DATA comes 3 s late (--slow-delay
                      S to change it; the message is stored only if the client
                      is still there).
  hostile-anything@... accepted, with a two-line reply to the end of DATA whose
                      text imitates a log line (quotes, "=", " level=error",
                      a backslash): HOSTILE_REPLY below.
  anything else       accepted ("250 2.0.0 OK queued as <seq>").
A sender (MAIL FROM) whose local part starts with "perm-" gets
"550 5.7.1 sender refused".

Fault injection (tests/faults/faults.py): --faults-file F names a JSON
object {"banner421": p, "tarpit": p, "middata": p} of probabilities, re-read
whenever the file changes (a missing file means no faults):
  banner421  a new connection gets "421 4.3.2 ..." instead of the 220 banner
             and is closed.
  tarpit     a new connection is accepted and never answered (not even the
             banner) until the client gives up.
  middata    a DATA command gets its 354, the first line of the message is
             read, then the connection is closed with no reply (nothing
             stored: the client must not count it delivered).
Each decision is a draw from a random.Random(--fault-seed); every injected
fault is a "FAULT <kind>" transcript line and counted in --faults-count F
(JSON, rewritten at each fault).

SIGTERM or SIGINT stops the server cleanly (exit status 0).
"""

import argparse
import asyncio
import json
import os
import random
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

TEMP_RE = re.compile(r"^temp(\d+)-", re.IGNORECASE)
GREY_RE = re.compile(r"^grey(\d+)-(\d+)s-", re.IGNORECASE)
SLOW_DELAY_S = 3.0


def write_atomic(path, data):
    """Write bytes to path via a temporary file in the same directory + rename."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def make_cert(outdir, extra_names=()):
    """Create a test CA and a server cert for localhost/127.0.0.1 (and
    DNS:<name> for each of extra_names) in outdir."""
    os.makedirs(outdir, exist_ok=True)
    p = lambda n: os.path.join(outdir, n)  # noqa: E731

    def run(*args):
        subprocess.run(["openssl", *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", p("ca-key.pem"), "-out", p("ca.pem"), "-days", "3650",
        "-subj", "/CN=txmail test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", p("key.pem"), "-out", p("server.csr"),
        "-subj", "/CN=localhost")
    ext = p("server.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:localhost,IP:127.0.0.1%s\n"
                % "".join(",DNS:" + n for n in extra_names))
    run("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"),
        "-CAkey", p("ca-key.pem"), "-CAcreateserial", "-out", p("cert.pem"),
        "-days", "3650", "-sha256", "-extfile", ext)
    for n in ("server.csr", "server.ext", "ca.srl"):
        try:
            os.unlink(p(n))
        except OSError:
            pass


class Transcript:
    """The --log file: one line per event, flushed at once."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1) if path else None

    def write(self, line):
        if self.f:
            self.f.write(line + "\n")


class State:
    """Process-wide state: counters and configuration."""

    def __init__(self, args):
        self.maildir = args.maildir
        self.seq = 0
        self.conns = 0
        self.temp_seen = {}
        self.no_ehlo = args.no_ehlo
        self.slow_delay = getattr(args, "slow_delay", SLOW_DELAY_S)
        self.broken_starttls = getattr(args, "broken_starttls", False)
        self.pipelining = args.pipelining
        self.no_8bitmime = args.no_8bitmime
        self.auth = None
        if args.auth:
            u, _, pw = args.auth.partition(":")
            self.auth = (u.encode(), pw.encode())
        self.log = Transcript(args.log)
        self.rcpt_times = open(args.rcpt_times, "a", buffering=1) if getattr(args, "rcpt_times", None) else None
        self.faults = Faults(getattr(args, "faults_file", None), getattr(args, "fault_seed", 1),
                             getattr(args, "faults_count", None))

    def rcpt_time(self, rcpt, code):
        """--rcpt-times: one line for this RCPT and its reply code."""
        if self.rcpt_times:
            self.rcpt_times.write(json.dumps({"rcpt": rcpt, "code": code, "t": time.monotonic()}) + "\n")

    def next_seq(self):
        # pick a seq not used by files already in the maildir
        while True:
            self.seq += 1
            if not os.path.exists(os.path.join(self.maildir, "%d.json" % self.seq)):
                return self.seq


class Faults:
    """The --faults-file probabilities and the draws against them."""

    KINDS = ("banner421", "tarpit", "middata")

    def __init__(self, path, seed, count_path):
        self.path = path
        self.count_path = count_path
        self.rng = random.Random(seed)
        self.mtime = None
        self.p = {}
        self.counts = {k: 0 for k in self.KINDS}

    def _reload(self):
        try:
            st = os.stat(self.path)
        except OSError:
            self.p, self.mtime = {}, None
            return
        if st.st_mtime_ns == self.mtime:
            return
        try:
            with open(self.path) as f:
                p = json.load(f)
        except (OSError, ValueError):
            return  # half-written: keep the old values until the rename lands
        self.p = {k: float(p.get(k, 0)) for k in self.KINDS}
        self.mtime = st.st_mtime_ns

    def draw(self, kinds):
        """The first of kinds that fires, or None."""
        if not self.path:
            return None
        self._reload()
        for k in kinds:
            pk = self.p.get(k, 0.0)
            if pk > 0 and self.rng.random() < pk:
                self.counts[k] += 1
                if self.count_path:
                    write_atomic(self.count_path, json.dumps(self.counts).encode())
                return k
        return None


def local_part(addr):
    return addr.rsplit("@", 1)[0] if "@" in addr else addr


class Handler:
    def __init__(self, state):
        self.st = state

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # no "250-AUTH " line when no mechanism is offered (no --auth)
        out = [r for r in responses if r.rstrip() != "250-AUTH"]
        if self.st.no_8bitmime:
            out = [r for r in out if r.rstrip() != "250-8BITMIME"]
        if self.st.pipelining:
            out.insert(1, "250-PIPELINING")
        return out

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if local_part(address).lower().startswith("perm-"):
            return "550 5.7.1 sender refused"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self._rcpt_reply(envelope, address, rcpt_options)
        self.st.rcpt_time(address, int(reply[:3]))
        return reply

    def _rcpt_reply(self, envelope, address, rcpt_options):
        lp = local_part(address).lower()
        m = TEMP_RE.match(lp)
        if m:
            n = int(m.group(1))
            seen = self.st.temp_seen.get(address.lower(), 0)
            if seen < n:
                self.st.temp_seen[address.lower()] = seen + 1
                return "451 4.3.0 try again later"
        m = GREY_RE.match(lp)
        if m:
            n, delay = int(m.group(1)), int(m.group(2))
            seen = self.st.temp_seen.get(address.lower(), 0)
            if seen < n:
                self.st.temp_seen[address.lower()] = seen + 1
                return "451 4.7.1 Greylisted, please try again in %d seconds" % delay
        if lp.startswith("perm-"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        at = time.time()
        lps = [local_part(r).lower() for r in envelope.rcpt_tos]
        if any(lp.startswith("drop-") for lp in lps):
            self.st.log.write("%d DROP" % server.conn_id)
            server.transport.close()
            # connection_lost cancels this coroutine
            await asyncio.sleep(3600)
            return "421 not reached"
        if any(lp.startswith("slow-") for lp in lps):
            await asyncio.sleep(self.st.slow_delay)
        seq = self.st.next_seq()
        base = os.path.join(self.st.maildir, str(seq))
        write_atomic(base + ".eml", envelope.original_content)
        meta = {
            "seq": seq,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "tls": server.is_tls(),
            "auth_user": server.auth_user,
            "conn": server.conn_id,
            "peer": "%s:%s" % (session.peer[0], session.peer[1]) if session.peer else "",
            "helo": session.host_name,
            "mail_options": list(envelope.mail_options),
            "t": time.time(),   # when DATA ended: arrival times for the rate tests
            "at": at,
        }
        write_atomic(base + ".json", json.dumps(meta).encode())
        if any(lp.startswith("gone-") for lp in lps):
            server.gone_at_rset = True
        if any(lp.startswith("hostile-") for lp in lps):
            return HOSTILE_REPLY
        return "250 2.0.0 OK queued as %d" % seq


# a reply whose text tries to end a log line's value and forge keys (and a
# second line: the client joins them with a newline); sent as is
HOSTILE_REPLY = ('250-2.0.0 OK "queued" as=1 level=error msg="forged"\r\n'
                 '250 2.0.0 \\" ts=2000-01-01T00:00:00.000Z level=error msg=forged2')

MASK_AUTH = re.compile(r"^(AUTH\s+\S+)(\s+.*)?$", re.IGNORECASE)


class PeerSMTP(SMTP):
    """aiosmtpd SMTP with a transcript, connection ids and TLS bookkeeping."""

    def __init__(self, handler, state, implicit_tls, **kw):
        super().__init__(handler, **kw)
        self.st = state
        self.implicit_tls = implicit_tls
        self.conn_id = 0
        self.auth_user = None
        self._in_auth = False

    def is_tls(self):
        if self.implicit_tls:
            return True
        return self.session is not None and self.session.ssl is not None

    def connection_made(self, transport):
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.st.conns += 1
            self.conn_id = self.st.conns
            self.st.log.write("CONNECT %d %s" % (self.conn_id, self.session.peer))
        else:
            self.st.log.write("%d TLS established" % self.conn_id)

    async def _handle_client(self):
        fault = self.st.faults.draw(("banner421", "tarpit"))
        if fault == "banner421":
            self.st.log.write("%d FAULT banner421" % self.conn_id)
            await self.push("421 4.3.2 fault injection: service not available")
            self.transport.close()
            return
        if fault == "tarpit":
            self.st.log.write("%d FAULT tarpit" % self.conn_id)
            # say nothing; connection_lost cancels this when the client gives up
            await asyncio.sleep(3600)
            return
        return await super()._handle_client()

    def connection_lost(self, error):
        self.st.log.write("CLOSE %d" % self.conn_id)
        super().connection_lost(error)

    async def push(self, status):
        s = status.decode() if isinstance(status, bytes) else status
        self.st.log.write("%d S: %s" % (self.conn_id, s.rstrip("\r\n")))
        # commands already buffered while this reply goes out: the client sent
        # them without waiting for it (StreamReader keeps unread bytes here)
        ahead = len(getattr(self._reader, "_buffer", b"") or b"")
        if ahead and not self._in_auth:
            self.st.log.write("%d AHEAD %d" % (self.conn_id, ahead))
        return await super().push(status)

    async def challenge_auth(self, *a, **kw):
        # lines read here are credentials: keep them out of the transcript
        self._in_auth = True
        try:
            return await super().challenge_auth(*a, **kw)
        finally:
            self._in_auth = False


def _wrap(cmd):
    async def method(self, arg):
        shown = arg or ""
        if cmd == "AUTH":
            mech = shown.split(" ", 1)[0]
            shown = mech + (" ***" if " " in shown else "")
        self.st.log.write("%d C: %s%s" % (self.conn_id, cmd,
                                          (" " + shown) if shown else ""))
        if cmd == "EHLO" and self.st.no_ehlo:
            # an old server: the client must fall back to HELO
            return await self.push("502 5.5.1 EHLO not implemented")
        if cmd == "STARTTLS" and self.st.broken_starttls and self.session.ssl is None:
            # accept STARTTLS, then answer the handshake with plain bytes: it fails
            await self.push("220 2.0.0 Ready to start TLS")
            self.st.log.write("%d BROKEN TLS" % self.conn_id)
            self.transport.write(b"this is not TLS\r\n")
            self.transport.close()
            return
        if cmd == "RSET" and getattr(self, "gone_at_rset", False):
            self.st.log.write("%d GONE" % self.conn_id)
            self.transport.close()
            return
        if cmd == "DATA" and self.envelope.rcpt_tos and not arg and \
                self.st.faults.draw(("middata",)) == "middata":
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\r\n")
            self.st.log.write("%d FAULT middata" % self.conn_id)
            self.transport.close()
            return
        return await getattr(SMTP, "smtp_" + cmd)(self, arg)
    method.__name__ = "smtp_" + cmd
    # keep aiosmtpd's HELP metadata
    orig = getattr(SMTP, "smtp_" + cmd)
    for a in ("__smtp_syntax__", "__smtp_syntax_extended__", "__smtp_syntax_when__"):
        if hasattr(orig, a):
            setattr(method, a, getattr(orig, a))
    return method


for _cmd in ("HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "QUIT", "NOOP",
             "STARTTLS", "AUTH", "VRFY"):
    setattr(PeerSMTP, "smtp_" + _cmd, _wrap(_cmd))


def make_authenticator(state):
    def authenticator(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword) or state.auth is None:
            return AuthResult(success=False, handled=False)
        ok = (auth_data.login, auth_data.password) == state.auth
        state.log.write("%d AUTH %s user=%r %s" % (
            server.conn_id, mechanism, auth_data.login.decode("utf-8", "replace"),
            "ok" if ok else "FAILED"))
        if ok:
            server.auth_user = auth_data.login.decode("utf-8", "replace")
            return AuthResult(success=True, auth_data=auth_data.login)
        return AuthResult(success=False, handled=False)
    return authenticator


def parse_args(argv):
    ap = argparse.ArgumentParser(description="txmail test SMTP server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--maildir")
    ap.add_argument("--ready-file")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--require-starttls", action="store_true")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--auth", metavar="USER:PASS")
    ap.add_argument("--log")
    ap.add_argument("--make-cert", metavar="DIR")
    ap.add_argument("--cert-names", default="", metavar="NAME,...",
                    help="with --make-cert: extra DNS names in the certificate")
    ap.add_argument("--broken-starttls", action="store_true",
                    help="offer STARTTLS, answer 220, then send non-TLS bytes and close "
                         "(the client's handshake fails); needs --tls-cert")
    ap.add_argument("--no-ehlo", action="store_true",
                    help="answer EHLO with 502 (clients must fall back to HELO)")
    ap.add_argument("--pipelining", action="store_true",
                    help="advertise PIPELINING")
    ap.add_argument("--size", type=int, default=64 * 1024 * 1024,
                    help="SIZE limit advertised and enforced (0: no SIZE)")
    ap.add_argument("--no-8bitmime", action="store_true",
                    help="do not advertise 8BITMIME")
    ap.add_argument("--smtputf8", action="store_true",
                    help="advertise and accept SMTPUTF8")
    ap.add_argument("--auth-mechs", default="PLAIN,LOGIN",
                    help="AUTH mechanisms offered with --auth (default PLAIN,LOGIN)")
    ap.add_argument("--slow-delay", type=float, default=SLOW_DELAY_S, metavar="S",
                    help="seconds slow-* recipients wait for the reply to the end of DATA (3)")
    ap.add_argument("--rcpt-times", metavar="FILE",
                    help="append one JSON line per RCPT: rcpt, reply code, time.monotonic()")
    ap.add_argument("--faults-file", metavar="F",
                    help="JSON fault probabilities, re-read when it changes (see the module doc)")
    ap.add_argument("--fault-seed", type=int, default=1, help="seed of the fault draws")
    ap.add_argument("--faults-count", metavar="F", help="JSON counts of injected faults")
    a = ap.parse_args(argv)
    if a.make_cert:
        return a
    if not a.maildir or not a.ready_file:
        ap.error("--maildir and --ready-file are required")
    if bool(a.tls_cert) != bool(a.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if (a.implicit_tls or a.require_starttls) and not a.tls_cert:
        ap.error("--implicit-tls/--require-starttls need --tls-cert/--tls-key")
    if a.broken_starttls and (not a.tls_cert or a.implicit_tls):
        ap.error("--broken-starttls needs --tls-cert/--tls-key (and STARTTLS, not --implicit-tls)")
    if a.auth and ":" not in a.auth:
        ap.error("--auth wants USER:PASS")
    return a


async def serve(args):
    state = State(args)
    os.makedirs(args.maildir, exist_ok=True)
    tls_ctx = None
    if args.tls_cert:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(args.tls_cert, args.tls_key)
    handler = Handler(state)
    kw = dict(hostname="smtpd.test", ident="txmail-test-smtpd",
              timeout=60, auth_require_tls=False,
              data_size_limit=args.size or None,
              enable_SMTPUTF8=args.smtputf8)
    if tls_ctx is not None and not args.implicit_tls:
        kw["tls_context"] = tls_ctx
        kw["require_starttls"] = args.require_starttls
    if state.auth is not None:
        kw["auth_required"] = True
        kw["authenticator"] = make_authenticator(state)
        offered = {m.strip().upper() for m in args.auth_mechs.split(",") if m.strip()}
        kw["auth_exclude_mechanism"] = [m for m in ("PLAIN", "LOGIN") if m not in offered]
    else:
        # no AUTH offered at all
        kw["auth_exclude_mechanism"] = ["PLAIN", "LOGIN"]

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: PeerSMTP(handler, state, args.implicit_tls, loop=loop, **kw),
        host=args.host, port=args.port,
        ssl=tls_ctx if args.implicit_tls else None, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    state.log.write("LISTEN %s:%d" % (args.host, port))

    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(True))
    write_atomic(args.ready_file, b"%d\n" % port)
    await stop
    server.close()
    await server.wait_closed()
    state.log.write("STOP")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.make_cert:
        names = [n.strip() for n in args.cert_names.split(",") if n.strip()]
        for n in names:
            if not all(c.isalnum() or c in "-." for c in n):
                raise SystemExit("--cert-names: bad DNS name %r" % n)
        make_cert(args.make_cert, names)
        return 0
    import logging
    import warnings
    logging.basicConfig(level=logging.CRITICAL)
    # "AUTH without TLS" is deliberate here: tests exercise both
    warnings.simplefilter("ignore")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
