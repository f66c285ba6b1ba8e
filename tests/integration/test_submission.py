"""test_submission.py - SMTP submission (issue 16, points 3-5) with real clients.

Owns: txmail's submission listeners (TXMAIL_SUBMISSION_LISTEN, 587 style,
STARTTLS required before AUTH; TXMAIL_SUBMISSIONS_LISTEN, 465 style,
implicit TLS) driven by clients that are not ours - Python's smtplib
(STARTTLS and SMTP_SSL, AUTH PLAIN and LOGIN), nodemailer from npm
(tests/spec/submit_nodemailer.mjs) and swaks (Debian) - on a throwaway CA
and server certificates made here with the openssl CLI, verified by the
clients (never CERT_NONE). What txmail delivers to the real SMTP peer
(tests/integration/peers/smtpd.py) is parsed with Python's `email`
package and compared with what was submitted: Chinese subject and display
names, HTML, an attachment's bytes, Bcc: and X-Txmail-* gone, Date and
Message-ID present (the client's own kept). The id in `250 ... queued as
msg_...` is the one GET /v1/messages/{id} and the webhooks show; the
X-Txmail-* headers map to metadata, tags, priority, ttl and idempotency.
Refusals: MAIL before AUTH, AUTH before STARTTLS, wrong keys (slowly),
keys of scope read or from outside their allowlist, open relay attempts,
suppressed recipients, another project's key, SMTP smuggling's fake ends,
the recipient, size, time and connection caps. Certificates rotate (files
replaced; SIGHUP), and `txmail submission` runs as its own role beside a
`txmail worker`. The behaviour tested is docs/submission.md's and
README.md's "SMTP submission".

Must never: sleep instead of waiting for a condition with a deadline,
accept an unverified certificate in the tests that check TLS, print an API
key (swaks gets it from the environment and masks it; nodemailer reads it
from the environment), assert "nothing was delivered" before a later
message of the same path was (the marker messages below), or leave a
process or socket behind.
"""

import base64
import email
import email.policy
import email.utils
import hashlib
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from email.headerregistry import Address
from email.message import EmailMessage

import pytest

import helpers
import logparse
from helpers import MSG_ID_RE, dl, free_port, wait_status, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SPEC_DIR = os.path.join(REPO, "tests", "spec")
NODEMAILER_JS = os.path.join(SPEC_DIR, "submit_nodemailer.mjs")
NODE_MODULES = os.path.join(SPEC_DIR, "node_modules")

QUEUED_RE = re.compile(r"queued as (msg_[0-9a-z]{26}(?:p[1-9][0-9]?)?)\b")
CLIENT_NAME = "client.test"

# --------------------------------------------------------------------------
# certificates: a throwaway CA and server certificates from the openssl CLI


def openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=dl(30))
    assert p.returncode == 0, "openssl %s: exit %d: %s" % (" ".join(args), p.returncode,
                                                            p.stderr.decode(errors="replace")[-500:])


def make_server_cert(d, name):
    """d/<name>-cert.pem + d/<name>-key.pem: a P-256 server certificate for
    DNS:localhost and IP:127.0.0.1 signed by d/ca.pem."""
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", name + "-key.pem", "-out", name + ".csr", "-subj", "/CN=localhost/O=txmail test " + name,
            cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3", "-sha256",
            "-extfile", ext, "-out", name + "-cert.pem", cwd=d)
    return os.path.join(d, name + "-cert.pem"), os.path.join(d, name + "-key.pem")


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def fingerprint(der):
    return hashlib.sha256(der).hexdigest()


def make_sub_certs(d):
    """{"dir", "ca", "a"/"b"/"c": (cert, key)}: one CA (d/ca.pem), three server certificates."""
    openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "3", "-sha256",
            "-subj", "/CN=txmail submission test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    out = {"dir": d, "ca": os.path.join(d, "ca.pem")}
    for n in ("a", "b", "c"):
        out[n] = make_server_cert(d, n)
    return out


@pytest.fixture(scope="session")
def sub_certs():
    d = tempfile.mkdtemp(prefix="txm-subca-")
    try:
        yield make_sub_certs(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def client_ctx(ca):
    """A client context that verifies the chain against ca and the host name (127.0.0.1)."""
    ctx = ssl.create_default_context(cafile=ca)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    return ctx


# --------------------------------------------------------------------------
# a txmail with both submission listeners


class Sub:
    """A started txmail with submission listeners: .t (helpers.Txmail),
    .port (587 style), .sport (465 style), .cert/.key (the files it reads),
    .ca, .key_secret (the default project's API key)."""

    def __init__(self, t, port, sport, cert, key, ca):
        self.t, self.port, self.sport, self.cert, self.key, self.ca = t, port, sport, cert, key, ca
        self.key_secret = t.key

    def api(self, key=None):
        return helpers.Client(self.t.port, key=key or self.key_secret)

    def ctx(self):
        return client_ctx(self.ca)


def read_banner(port, ca, implicit, proc, timeout):
    """One connection: the greeting line (b"" when closed first); QUIT, then
    wait for the close, so a probe does not hold a connection slot."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if implicit:
            s = client_ctx(ca).wrap_socket(s, server_hostname="127.0.0.1")
        f = s.makefile("rb")
        line = f.readline()
        if line.startswith(b"220"):
            s.sendall(b"QUIT\r\n")
            while f.readline():
                pass
        return line
    finally:
        s.close()


def wait_listening(t, port, ca, implicit):
    what = "submission listener on %d (%s) greeting 220" % (port, "implicit TLS" if implicit else "plain")

    def up():
        if not t.alive():
            raise AssertionError("%s exited with %s: %s" % (t.name, t.proc.returncode, helpers.tail(t.log, 40)))
        try:
            return read_banner(port, ca, implicit, t.proc, dl(5)).startswith(b"220 ")
        except OSError:
            return False
    wait_until(up, dl(20), what, interval=0.05, diag=lambda: helpers.tail(t.log, 20))


@pytest.fixture
def submission(txmail_factory, sub_certs, workdir):
    """start(extra_env=None, args=("run",), http=True, cert="a", plain=True, implicit=True) -> Sub.
    The certificate files are copies in the test's work dir (a test may
    replace them)."""
    n = {"i": 0}

    def start(extra_env=None, args=("run",), http=True, cert="a", plain=True, implicit=True):
        n["i"] += 1
        tls = os.path.join(workdir, "subtls-%d" % n["i"])
        os.makedirs(tls)
        certf, keyf = os.path.join(tls, "cert.pem"), os.path.join(tls, "key.pem")
        shutil.copyfile(sub_certs[cert][0], certf)
        shutil.copyfile(sub_certs[cert][1], keyf)
        port = free_port() if plain else None
        sport = free_port() if implicit else None
        env = {"TXMAIL_SUBMISSION_TLS_CERT": certf, "TXMAIL_SUBMISSION_TLS_KEY": keyf}
        if plain:
            env["TXMAIL_SUBMISSION_LISTEN"] = "127.0.0.1:%d" % port
        if implicit:
            env["TXMAIL_SUBMISSIONS_LISTEN"] = "127.0.0.1:%d" % sport
        env.update(extra_env or {})
        t = txmail_factory(args=args, extra_env=env, http=http)
        if plain:
            wait_listening(t, port, sub_certs["ca"], False)
        if implicit:
            wait_listening(t, sport, sub_certs["ca"], True)
        return Sub(t, port, sport, certf, keyf, sub_certs["ca"])
    return start


@pytest.fixture
def sub(submission):
    return submission()


# --------------------------------------------------------------------------
# smtplib sessions


def smtp_587(s, key=None, mech="PLAIN", initial=True, ehlo_check=None):
    """smtplib on the 587-style port: EHLO, STARTTLS (verified), EHLO, AUTH
    (mech PLAIN or LOGIN; None: no AUTH). The open smtplib.SMTP."""
    c = smtplib.SMTP("127.0.0.1", s.port, local_hostname=CLIENT_NAME, timeout=dl(15))
    try:
        c.ehlo()
        if ehlo_check:
            ehlo_check("before STARTTLS", c)
        c.starttls(context=s.ctx())
        c.ehlo()
        if ehlo_check:
            ehlo_check("after STARTTLS", c)
        if mech:
            auth(c, key or s.key_secret, mech, initial)
        return c
    except BaseException:
        c.close()
        raise


def smtp_465(s, key=None, mech="PLAIN", initial=True, ehlo_check=None):
    """smtplib.SMTP_SSL on the 465-style port (verified), EHLO, AUTH."""
    c = smtplib.SMTP_SSL("127.0.0.1", s.sport, local_hostname=CLIENT_NAME, timeout=dl(15), context=s.ctx())
    try:
        c.ehlo()
        if ehlo_check:
            ehlo_check("implicit TLS", c)
        if mech:
            auth(c, key or s.key_secret, mech, initial)
        return c
    except BaseException:
        c.close()
        raise


def auth(c, key, mech, initial=True):
    """AUTH with smtplib's own PLAIN / LOGIN encoders (initial=False: no
    initial response, so LOGIN goes through both 334 prompts); mech "login()":
    smtplib's login(), which picks from what EHLO advertised."""
    if mech == "login()":
        return c.login("txmail", key)
    c.user, c.password = "txmail", key
    obj = {"PLAIN": c.auth_plain, "LOGIN": c.auth_login}[mech]
    return c.auth(mech, obj, initial_response_ok=initial)


def quit_(c):
    try:
        c.quit()
    except (smtplib.SMTPException, OSError):
        c.close()


def queued_id(code, reply):
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    assert code == 250, "end of DATA: got %s %r, want 250" % (code, text)
    assert text.startswith("2.0.0"), "end of DATA: got %r, want 2.0.0 ..." % text
    m = QUEUED_RE.search(text)
    assert m and MSG_ID_RE.match(m.group(1)), "end of DATA: %r names no 'queued as msg_...'" % text
    return m.group(1)


def submit(c, mail_from, rcpts, data):
    """MAIL, RCPT each, DATA with data (bytes, CRLF); the msg_ id of the 250."""
    code, r = c.mail(mail_from)
    assert code == 250, "MAIL FROM:<%s>: got %s %r" % (mail_from, code, r)
    for rc in rcpts:
        code, r = c.rcpt(rc)
        assert code == 250, "RCPT TO:<%s>: got %s %r" % (rc, code, r)
    return queued_id(*c.data(data))


def simple(subject, frm="sender@example.com", to="rcpt@example.net", extra=()):
    m = EmailMessage()
    m["From"] = frm
    m["To"] = to
    m["Subject"] = subject
    for k, v in extra:
        m[k] = v
    m.set_content("body of %s\n" % subject)
    return m.as_bytes(policy=email.policy.SMTP)


def stored_ids(redis):
    """Every message id stored in Redis (its hash txm{k}:msg:<id>)."""
    out = set()
    for k in redis.cmd("KEYS", "txm{*}:msg:*") or []:
        rest = k.split(":", 2)[2]
        if MSG_ID_RE.match(rest):
            out.add(rest)
    return out


def wait_all_delivered(api, mid, timeout):
    last = {}

    def check():
        r = api.get("/v1/messages/" + mid)
        assert r.status == 200, "GET /v1/messages/%s: got %s %r" % (mid, r.status, r.body)
        last["j"] = r.json
        sts = [x["status"] for x in r.json["recipients"]]
        assert all(x in ("queued", "deferred", "sending", "delivered") for x in sts), r.json
        return r.json if all(x == "delivered" for x in sts) else None
    return wait_until(check, timeout, "%s: every recipient delivered" % mid, interval=0.05,
                      diag=lambda: "last GET: %r" % (last.get("j"),))


def marker(s, smtp_peer, tag):
    """An authenticated submission after the thing under test, delivered:
    the sync point before asserting that something else was not. Its id."""
    c = smtp_465(s)
    try:
        mid = submit(c, "marker@example.com", ["marker-%s@example.net" % tag], simple("marker " + tag,
                     to="marker-%s@example.net" % tag))
    finally:
        quit_(c)
    wait_status(s.api(), mid, "delivered", dl(20))
    smtp_peer.wait_for_rcpt("marker-%s@example.net" % tag, dl(10))
    return mid


# --------------------------------------------------------------------------
# the rich message: Chinese names and subject, HTML, an attachment, Bcc

TEXT = "李四，您好！\n\n您的订单已经发货，发票见附件。\n\n—— 张三\n"
HTML = "<p>李四，您好！</p>\n<p>您的订单<b>已经发货</b>，发票见附件。</p>\n<p>—— 张三</p>\n"
ATTACHMENT = bytes(range(256)) * 40 + b"\r\n.\r\n\n.\n" + os.urandom(3000)
ATTACH_NAME = "发票-2026.bin"


def rich_message(tag, own_ids=True, extra=()):
    m = EmailMessage()
    m["From"] = Address("张三", "zhangsan", "example.com")
    m["To"] = Address("李四", "lisi", "example.net")
    m["Cc"] = Address("王五", "wangwu", "example.net")
    m["Bcc"] = "hidden@example.org"
    m["Subject"] = "主题：您的订单 %s 已发货" % tag
    if own_ids:
        m["Date"] = email.utils.formatdate(localtime=False)
        m["Message-ID"] = email.utils.make_msgid(idstring=tag, domain="client.example")
    for k, v in extra:
        m[k] = v
    m.set_content(TEXT)
    m.add_alternative(HTML, subtype="html")
    m.add_attachment(ATTACHMENT, maintype="application", subtype="octet-stream", filename=ATTACH_NAME)
    return m


RICH_RCPTS = ["lisi@example.net", "wangwu@example.net", "hidden@example.org"]


def norm(text):
    return text.replace("\r\n", "\n")


def assert_same_message(got_raw, sent, own_ids, what):
    """The delivered bytes (parsed) against the EmailMessage that was submitted."""
    got = email.message_from_bytes(got_raw, policy=email.policy.default)
    head = got_raw.split(b"\r\n\r\n", 1)[0]
    assert str(got["Subject"]) == str(sent["Subject"]), "%s: Subject %r, want %r" % (
        what, str(got["Subject"]), str(sent["Subject"]))
    (f,) = got["From"].addresses
    assert (f.display_name, f.addr_spec) == ("张三", "zhangsan@example.com"), "%s: From %r" % (what, str(got["From"]))
    (t,) = got["To"].addresses
    assert (t.display_name, t.addr_spec) == ("李四", "lisi@example.net"), "%s: To %r" % (what, str(got["To"]))
    if sent["Cc"] is not None:
        (cc,) = got["Cc"].addresses
        assert (cc.display_name, cc.addr_spec) == ("王五", "wangwu@example.net"), "%s: Cc %r" % (what, str(got["Cc"]))
    names = [k.lower() for k in got.keys()]
    assert "bcc" not in names and b"hidden@example.org" not in head, "%s: Bcc left in the header:\n%s" % (
        what, head.decode(errors="replace"))
    assert not [k for k in names if k.startswith("x-txmail-")], "%s: X-Txmail-* left: %r" % (what, names)
    assert names.count("date") == 1 and names.count("message-id") == 1, "%s: Date/Message-ID: %r" % (what, names)
    assert email.utils.parsedate_to_datetime(str(got["Date"])) is not None
    if own_ids:
        assert got["Message-ID"].strip() == sent["Message-ID"].strip(), "%s: Message-ID %r, want the client's %r" % (
            what, got["Message-ID"], sent["Message-ID"])
        assert got["Date"].strip() == sent["Date"].strip(), "%s: Date %r, want the client's %r" % (
            what, got["Date"], sent["Date"])
    else:
        assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", got["Message-ID"].strip()), "%s: added Message-ID %r" % (
            what, got["Message-ID"])
        skew = abs(time.time() - email.utils.parsedate_to_datetime(str(got["Date"])).timestamp())
        assert skew < 300, "%s: added Date %r is %.0fs from now" % (what, str(got["Date"]), skew)
    assert norm(got.get_body(("plain",)).get_content()) == norm(sent.get_body(("plain",)).get_content()), (
        "%s: text part %r" % (what, got.get_body(("plain",)).get_content()))
    assert norm(got.get_body(("html",)).get_content()) == norm(sent.get_body(("html",)).get_content()), (
        "%s: HTML part %r" % (what, got.get_body(("html",)).get_content()))
    atts = list(got.iter_attachments())
    want = list(sent.iter_attachments())
    assert len(atts) == len(want) == 1, "%s: %d attachments, want 1" % (what, len(atts))
    assert atts[0].get_filename() == want[0].get_filename(), "%s: attachment name %r" % (what, atts[0].get_filename())
    assert atts[0].get_content() == want[0].get_content(), "%s: attachment bytes differ (%d vs %d)" % (
        what, len(atts[0].get_content()), len(want[0].get_content()))
    return got


def delivered_to(smtp_peer, rcpt, pred, what, timeout=20):
    """The one message for rcpt at the peer that pred(Received) accepts."""
    def have():
        ms = [m for m in smtp_peer.messages()
              if rcpt.lower() in [r.lower() for r in m.meta.get("rcpt_tos", [])] and pred(m)]
        return ms or None
    ms = wait_until(have, dl(timeout), "%s at the SMTP peer for %s" % (what, rcpt), interval=0.05,
                    diag=lambda: "%d messages there" % smtp_peer.count())
    assert len(ms) == 1, "%s: %d copies for %s, want 1" % (what, len(ms), rcpt)
    return ms[0]


def subject_is(subject):
    return lambda m: str(m.msg["Subject"]) == subject


# --------------------------------------------------------------------------
# 1. smtplib: STARTTLS and SMTPS, PLAIN and LOGIN; the delivered bytes


def ehlo_587_check(stage, c):
    feats = c.esmtp_features
    for f in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes"):
        assert f in feats, "EHLO %s: %s not advertised: %r" % (stage, f.upper(), feats)
    if stage == "before STARTTLS":
        assert "starttls" in feats and "auth" not in feats, "EHLO before STARTTLS: %r" % feats
    else:
        assert "starttls" not in feats, "EHLO %s: STARTTLS offered again: %r" % (stage, feats)
        assert set(feats["auth"].upper().split()) >= {"PLAIN", "LOGIN"}, "EHLO %s: AUTH %r" % (stage, feats.get("auth"))


@pytest.mark.parametrize("port,mech,initial,own_ids", [
    ("587", "PLAIN", True, True),
    ("587", "LOGIN", False, False),
    ("465", "LOGIN", True, True),
    ("465", "PLAIN", True, False),
], ids=["587-plain", "587-login-prompts", "465-login", "465-plain-no-ids"])
def test_smtplib_delivers_what_was_submitted(sub, smtp_peer, webhook, port, mech, initial, own_ids):
    tag = "%s-%s-%s" % (port, mech, os.urandom(3).hex())
    meta = {"order": tag, "n": 7}
    sent = rich_message(tag, own_ids, extra=[("X-Txmail-Metadata", json.dumps(meta)),
                                             ("X-Txmail-Tags", "receipt, zh")])
    data = sent.as_bytes(policy=email.policy.SMTP)
    assert b"Bcc: hidden@example.org" in data
    c = (smtp_587 if port == "587" else smtp_465)(sub, mech=mech, initial=initial, ehlo_check=ehlo_587_check)
    try:
        mid = submit(c, "zhangsan@example.com", RICH_RCPTS, data)
    finally:
        quit_(c)

    api = sub.api()
    r = api.get("/v1/messages/" + mid)
    assert r.status == 200, "GET /v1/messages/%s: got %r" % (mid, r)
    j = r.json
    assert j["id"] == mid and j["subject"] == str(sent["Subject"]), j
    kinds = {x["email"]: x.get("kind") for x in j["recipients"]}
    assert kinds == {"lisi@example.net": "to", "wangwu@example.net": "cc", "hidden@example.org": "bcc"}, (
        "recipients: got %r" % j["recipients"])
    assert j["metadata"] == meta and j["tags"] == ["receipt", "zh"], "metadata/tags: %r %r" % (
        j["metadata"], j["tags"])
    assert j.get("priority") == "normal", "priority: got %r" % j.get("priority")
    wait_all_delivered(api, mid, dl(30))

    copies = {}
    for rc in RICH_RCPTS:
        got = delivered_to(smtp_peer, rc, subject_is(str(sent["Subject"])), "the rich message")
        assert got.meta["mail_from"] == "zhangsan@example.com", "envelope sender: got %r" % got.meta["mail_from"]
        copies[rc] = assert_same_message(got.raw, sent, own_ids, "%s (delivered to %s)" % (tag, rc))
    if not own_ids:
        assert len({str(m["Message-ID"]) for m in copies.values()}) == 1, "added Message-IDs differ per recipient"

    evs = webhook.wait_events_for(mid, 3, dl(20), types=("message.delivered",))
    assert sorted(e["body"]["data"]["recipient"] for e in evs) == sorted(RICH_RCPTS), evs
    for e in evs:
        d = e["body"]["data"]
        assert d["message_id"] == mid, "webhook data.message_id %r, want the 250's %s" % (d["message_id"], mid)
        assert d["metadata"] == meta and d["tags"] == ["receipt", "zh"], "webhook metadata/tags: %r" % d
    assert webhook.snapshot()[2] == [], "webhook requests that failed verification"


def test_priority_and_ttl(sub, smtp_peer, webhook):
    c = smtp_587(sub, mech="login()")
    try:
        hi = submit(c, "a@example.com", ["hi@example.net"],
                    simple("urgent", to="hi@example.net", extra=[("X-Txmail-Priority", "high"),
                                                                  ("X-Txmail-TTL", "600")]))
        lo = submit(c, "a@example.com", ["lo@example.net"],
                    simple("routine", to="lo@example.net", extra=[("X-Txmail-Priority", "normal")]))
        # the peer defers temp99-* again and again: a ttl of 1 s expires it, as HTTP's ttl does
        short = submit(c, "a@example.com", ["temp99-ttl@example.net"],
                       simple("worthless soon", to="temp99-ttl@example.net", extra=[("X-Txmail-TTL", "1")]))
    finally:
        quit_(c)
    api = sub.api()
    j = api.get("/v1/messages/" + hi).json
    assert j["priority"] == "high", "X-Txmail-Priority high: got %r" % j.get("priority")
    assert api.get("/v1/messages/" + lo).json["priority"] == "normal"
    for mid, rc in ((hi, "hi@example.net"), (lo, "lo@example.net")):
        wait_status(api, mid, "delivered", dl(20))
        (got,) = smtp_peer.wait_for_rcpt(rc, dl(10))
        names = [k.lower() for k in got.msg.keys()]
        assert not [k for k in names if k.startswith("x-txmail-")], "X-Txmail-* delivered: %r" % names
    t0 = time.monotonic()
    j = wait_status(api, short, "expired", dl(15))
    assert j["status"] == "expired" and j["recipients"][0]["attempts"] >= 1, j
    assert time.monotonic() - t0 < dl(10), "X-Txmail-TTL 1: expired too late"
    (ev,) = webhook.wait_events_for(short, 1, dl(15), types=("message.failed",))[:1]
    assert ev["body"]["data"]["reason"] == "expired", ev["body"]


def test_idempotency_key_replays(sub, smtp_peer, redis):
    key = "order-%s" % os.urandom(4).hex()
    data = simple("idem", to="idem@example.net", extra=[("X-Txmail-Idempotency-Key", key),
                                                         ("Message-ID", "<idem-%s@client.example>" % key)])
    before = stored_ids(redis)
    c = smtp_587(sub)
    try:
        first = submit(c, "a@example.com", ["idem@example.net"], data)
        again = submit(c, "a@example.com", ["idem@example.net"], data)   # a client retrying after a lost 250
    finally:
        quit_(c)
    assert again == first, "the same X-Txmail-Idempotency-Key twice: ids %s and %s, want one" % (first, again)
    c = smtp_465(sub, mech="LOGIN")
    try:
        third = submit(c, "a@example.com", ["idem@example.net"], data)   # another session, another port
        assert third == first, "the replay on the other listener: %s, want %s" % (third, first)
        c.mail("a@example.com")
        c.rcpt("idem@example.net")
        code, r = c.data(simple("another message", to="idem@example.net",
                                extra=[("X-Txmail-Idempotency-Key", key)]))
        assert code == 554 and r.decode().startswith("5.6.0"), (
            "the key with another message: got %s %r, want 554 5.6.0" % (code, r))
    finally:
        quit_(c)
    wait_status(sub.api(), first, "delivered", dl(20))
    marker(sub, smtp_peer, "idem")
    got = smtp_peer.wait_for_rcpt("idem@example.net", dl(5))
    assert len(got) == 1, "the replayed message was delivered %d times, want once" % len(got)
    new = {m for m in stored_ids(redis) - before if not _is_marker(sub, m)}
    assert new == {first}, "stored: %r, want only %s" % (new, first)


def _is_marker(sub, mid):
    r = sub.api().get("/v1/messages/" + mid)
    return r.status == 200 and r.json["subject"].startswith("marker ")


# --------------------------------------------------------------------------
# 2. nodemailer (npm) and swaks (Debian)


def need_nodemailer():
    if shutil.which("node") is None:
        pytest.skip("node is not installed (`make deps-test`)")
    if not os.path.isfile(os.path.join(NODE_MODULES, "nodemailer", "package.json")):
        pytest.skip("npm package nodemailer is not installed (make spec-tools)")


def run_nodemailer(workdir, s, secure, message, key=None):
    job = {"host": "127.0.0.1", "port": s.sport if secure else s.port, "secure": secure, "ca": s.ca,
           "message": message}
    path = os.path.join(workdir, "nodemailer-%s.json" % os.urandom(3).hex())
    with open(path, "w") as f:
        json.dump(job, f, ensure_ascii=False)
    p = subprocess.run(["node", NODEMAILER_JS, path], cwd=SPEC_DIR, stdin=subprocess.DEVNULL,
                       env=helpers.clean_env({"SMTP_PASS": key or s.key_secret}), capture_output=True,
                       timeout=dl(60))
    out = p.stdout.decode("utf-8", "replace")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert lines, "nodemailer printed no result (exit %d): %r %r" % (p.returncode, out, p.stderr[-800:])
    return p.returncode, json.loads(lines[-1])


@pytest.mark.parametrize("secure", [False, True], ids=["587-requireTLS", "465-secure"])
def test_nodemailer(sub, smtp_peer, webhook, workdir, secure):
    need_nodemailer()
    tag = "node-%s" % os.urandom(3).hex()
    subject = "主题：nodemailer %s 您好" % tag
    message = {
        "from": '"张三" <zhangsan@example.com>',
        "to": '"李四" <lisi@example.net>',
        "bcc": "hidden@example.org",
        "subject": subject,
        "text": TEXT,
        "html": HTML,
        "attachments": [{"filename": ATTACH_NAME, "contentType": "application/octet-stream",
                         "content_b64": base64.b64encode(ATTACHMENT).decode()}],
        "headers": {"X-Txmail-Tags": "nodemailer", "X-Txmail-Metadata": json.dumps({"via": tag})},
    }
    rc, res = run_nodemailer(workdir, sub, secure, message)
    assert rc == 0, "nodemailer failed: %r" % res
    assert sorted(res["accepted"]) == ["hidden@example.org", "lisi@example.net"] and res["rejected"] == [], res
    mid = queued_id(int(res["response"][:3]), res["response"][4:])
    api = sub.api()
    j = api.get("/v1/messages/" + mid).json
    assert j["tags"] == ["nodemailer"] and j["metadata"] == {"via": tag}, j
    assert {x["email"]: x.get("kind") for x in j["recipients"]} == {"lisi@example.net": "to",
                                                                    "hidden@example.org": "bcc"}, j["recipients"]
    wait_all_delivered(api, mid, dl(30))
    for rcpt in ("lisi@example.net", "hidden@example.org"):
        got = delivered_to(smtp_peer, rcpt, subject_is(subject), "nodemailer's message")
        m = got.msg
        assert str(m["Subject"]) == subject
        (f,) = m["From"].addresses
        (t,) = m["To"].addresses
        assert (f.display_name, t.display_name) == ("张三", "李四"), (str(m["From"]), str(m["To"]))
        assert m["Message-ID"].strip() == res["messageId"], "Message-ID %r, want nodemailer's %r" % (
            m["Message-ID"], res["messageId"])
        names = [k.lower() for k in m.keys()]
        assert "bcc" not in names and not [k for k in names if k.startswith("x-txmail-")], names
        assert norm(m.get_body(("html",)).get_content()) == norm(HTML)
        assert norm(m.get_body(("plain",)).get_content()) == norm(TEXT)
        (att,) = list(m.iter_attachments())
        assert att.get_filename() == ATTACH_NAME and att.get_content() == ATTACHMENT, (
            "attachment %r (%d bytes)" % (att.get_filename(), len(att.get_content())))
    (ev,) = webhook.wait_events_for(mid, 1, dl(20), types=("message.delivered",))[:1]
    assert ev["body"]["data"]["message_id"] == mid


def need_swaks():
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed (Debian package swaks; `make deps-test` installs it)")


def run_swaks(s, args, key=None):
    """swaks with the key from the environment (masked in its transcript)."""
    env = helpers.clean_env({"SWAKS_OPT_auth_password": key or s.key_secret})
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--helo", CLIENT_NAME, "--timeout", "20",
                        "--auth-hide-password", "********"] + list(args),
                       stdin=subprocess.DEVNULL, env=env, capture_output=True, timeout=dl(60))
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    assert (key or s.key_secret) not in out, "swaks printed the key"
    return p.returncode, out


@pytest.mark.parametrize("mode,mech", [("587", "PLAIN"), ("587", "LOGIN"), ("465", "LOGIN")])
def test_swaks(sub, smtp_peer, mode, mech):
    need_swaks()
    subject = "swaks %s %s %s" % (mode, mech, os.urandom(3).hex())
    tls = ["--port", str(sub.port), "--tls"] if mode == "587" else ["--port", str(sub.sport), "--tls-on-connect"]
    rc, out = run_swaks(sub, tls + ["--tls-verify", "--tls-ca-path", sub.ca, "--auth", mech,
                                    "--auth-user", "txmail", "--from", "swaks@example.com",
                                    "--to", "swaks-rcpt@example.net", "--header", "Subject: " + subject,
                                    "--header", "X-Txmail-Tags: swaks", "--body", "from swaks\n"])
    assert rc == 0, "swaks exited %d:\n%s" % (rc, out)
    (mid,) = QUEUED_RE.findall(out)
    j = wait_status(sub.api(), mid, "delivered", dl(20))
    assert j["tags"] == ["swaks"], j
    got = delivered_to(smtp_peer, "swaks-rcpt@example.net", subject_is(subject), "swaks's message")
    assert "from swaks" in got.msg.get_body(("plain",)).get_content()


def test_swaks_pipelined_session(sub, smtp_peer, redis):
    """swaks --pipeline: MAIL, RCPTs and DATA in one write after STARTTLS and AUTH."""
    need_swaks()
    sup = sub.api().post_json("/v1/suppressions", {"email": "pipe-blocked@example.net"})
    assert sup.status == 201, sup
    subject = "swaks pipelined %s" % os.urandom(3).hex()
    rc, out = run_swaks(sub, ["--port", str(sub.port), "--tls", "--tls-verify", "--tls-ca-path", sub.ca,
                              "--auth", "PLAIN", "--auth-user", "txmail", "--pipeline",
                              "--from", "pipe@example.com",
                              "--to", "pipe-1@example.net,pipe-blocked@example.net,pipe-2@example.net",
                              "--header", "Subject: " + subject, "--body", "pipelined\n"])
    # swaks carries on past a refused recipient (its exit 24 is for none accepted)
    assert rc == 0, "swaks --pipeline exited %d:\n%s" % (rc, out)
    assert "PIPELINING" in out, "no PIPELINING in the EHLO reply:\n%s" % out
    assert re.search(r"550 5\.7\.1[^\n]*suppress", out), (
        "the suppressed recipient was not refused with 550 5.7.1 ... suppressed:\n%s" % out)
    (mid,) = QUEUED_RE.findall(out)
    j = wait_all_delivered(sub.api(), mid, dl(30))
    assert sorted(x["email"] for x in j["recipients"]) == ["pipe-1@example.net", "pipe-2@example.net"], j
    for rc_ in ("pipe-1@example.net", "pipe-2@example.net"):
        delivered_to(smtp_peer, rc_, subject_is(subject), "the pipelined message")
    marker(sub, smtp_peer, "pipe")
    assert "pipe-blocked@example.net" not in [r for m in smtp_peer.messages() for r in m.meta["rcpt_tos"]]


# --------------------------------------------------------------------------
# 3. refusals


def raw_b64(s):
    return base64.b64encode(s.encode()).decode()


def test_auth_required_and_tls_first(sub, smtp_peer, redis):
    before = stored_ids(redis)
    # 587, plain text: EHLO offers STARTTLS and no AUTH; AUTH and MAIL refused
    c = smtplib.SMTP("127.0.0.1", sub.port, local_hostname=CLIENT_NAME, timeout=dl(15))
    try:
        c.ehlo()
        ehlo_587_check("before STARTTLS", c)
        # (a made-up key: a client that sends AUTH in clear text has given it away already)
        code, r = c.docmd("AUTH", "PLAIN " + raw_b64("\0txmail\0txm_never_checked"))
        assert (code, r[:5]) == (530, b"5.7.0"), "AUTH before STARTTLS: got %s %r, want 530 5.7.0" % (code, r)
        assert b"STARTTLS" in r.upper(), r
        code, r = c.docmd("AUTH", "LOGIN")
        assert code == 530, "AUTH LOGIN before STARTTLS: got %s %r" % (code, r)
        code, r = c.mail("relay@example.com")
        assert code == 530, "MAIL before STARTTLS/AUTH: got %s %r, want 530" % (code, r)
        code, r = c.rcpt("victim@outside.example")
        assert code in (503, 530), "RCPT without AUTH: got %s %r" % (code, r)
    finally:
        quit_(c)
    # after STARTTLS, and on 465: MAIL before AUTH is 530 5.7.0; no recipient is taken; DATA neither
    for opener in (lambda: smtp_587(sub, mech=None), lambda: smtp_465(sub, mech=None)):
        c = opener()
        try:
            code, r = c.mail("relay@example.com")
            assert (code, r[:5]) == (530, b"5.7.0"), "MAIL before AUTH: got %s %r, want 530 5.7.0" % (code, r)
            assert b"uthentication required" in r, r
            for rc in ("victim@outside.example", "postmaster@outside.example"):
                code, r = c.rcpt(rc)
                assert code in (503, 530), "open relay: RCPT TO:<%s> without AUTH got %s %r" % (rc, code, r)
            code, r = c.docmd("DATA")
            assert code in (503, 530, 554), "DATA without AUTH: got %s %r" % (code, r)
            # a client that does not wait for the 354: its lines are commands, each refused
            # (or the server closes after too many errors); none makes a message
            c.send(b"Subject: relayed?\r\n\r\nx\r\n.\r\n")
            try:
                c.noop()
            except smtplib.SMTPServerDisconnected:
                pass
        finally:
            quit_(c)
    marker(sub, smtp_peer, "relay")
    rcpts = [r for m in smtp_peer.messages() for r in m.meta["rcpt_tos"]]
    assert not [r for r in rcpts if "outside.example" in r], "an unauthenticated message was delivered: %r" % rcpts
    new = stored_ids(redis) - before
    assert len(new) == 1 and _is_marker(sub, next(iter(new))), "stored without AUTH: %r" % new


def test_wrong_keys(sub, txmail_binary, redis):
    wrong = helpers.make_key(txmail_binary, redis, "wrongkeys")   # a well-formed key ...
    wrong = wrong[:-4] + ("aaaa" if not wrong.endswith("aaaa") else "bbbb")   # ... not stored
    t0 = time.monotonic()
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        c = smtp_465(sub, key=wrong)
        quit_(c)
    took = time.monotonic() - t0
    assert e.value.smtp_code == 535 and e.value.smtp_error.startswith(b"5.7.8"), (
        "wrong key: got %s %r, want 535 5.7.8" % (e.value.smtp_code, e.value.smtp_error))
    assert took >= 0.5, "a wrong key was answered after %.2fs, want >= 0.5 s" % took
    # three wrong AUTHs in one session: 421 4.7.0 and the connection is closed; LOGIN too
    c = smtp_587(sub, mech=None)
    try:
        codes, times = [], []
        for i in range(3):
            t0 = time.monotonic()
            if i == 1:
                code, r = c.docmd("AUTH", "LOGIN " + raw_b64("txmail"))
                if code == 334:
                    code, r = c.docmd(raw_b64("txm_not_a_key_%d" % i))
            else:
                code, r = c.docmd("AUTH", "PLAIN " + raw_b64("\0txmail\0txm_not_a_key_%d" % i))
            times.append(time.monotonic() - t0)
            codes.append((code, r[:5]))
        assert codes[:2] == [(535, b"5.7.8")] * 2, "two wrong AUTHs: got %r" % codes
        assert all(x >= 0.5 for x in times[:2]), "delays %r, want each >= 0.5 s" % times
        if codes[2][0] == 535:
            code, r = c.getreply()
            codes[2] = (code, r[:5])
        assert codes[2] == (421, b"4.7.0"), "the third wrong AUTH: got %r, want 421 4.7.0" % (codes[2],)
        with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
            c.noop()
            c.noop()
    finally:
        c.close()
    # the good key still works (the slowdown is a delay, not a ban)
    c = smtp_465(sub)
    quit_(c)


def test_keys_scope_allowlist_and_projects(txmail_binary, redis, submission, smtp_peer):
    env = helpers.clean_env({"TXMAIL_REDIS_URL": redis.url})

    def create(name, *args):
        p = subprocess.run([txmail_binary, "keys", "create", "--name", name] + list(args), env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=dl(20))
        assert p.returncode == 0, "keys create %s: exit %d: %s" % (name, p.returncode, p.stderr)
        return p.stdout.strip()
    read = create("reader", "--scope", "read")
    ten = create("tennet", "--allow-ip", "10.0.0.0/8")
    lo = create("loopback", "--allow-ip", "127.0.0.0/8")
    ka = helpers.make_key(txmail_binary, redis, "A")
    kb = helpers.make_key(txmail_binary, redis, "B")
    s = submission()

    def refused(key, what):
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            quit_(smtp_465(s, key=key))
        assert e.value.smtp_code == 535 and e.value.smtp_error.startswith(b"5.7.8"), (
            "%s: got %s %r, want 535 5.7.8" % (what, e.value.smtp_code, e.value.smtp_error))
        return e.value.smtp_error
    bad = refused("txm_" + "x" * 40, "an unknown key")
    why_scope = refused(read, "a key of scope read")
    why_ip = refused(ten, "a key allowed from 10.0.0.0/8 only, from 127.0.0.1")
    assert why_scope != bad and why_ip != bad and why_scope != why_ip, (
        "the refusals do not say why: %r / %r / %r" % (bad, why_scope, why_ip))

    c = smtp_587(s, key=lo)
    try:
        mid_lo = submit(c, "a@example.com", ["lo-key@example.net"], simple("allowed ip", to="lo-key@example.net"))
    finally:
        quit_(c)
    wait_status(s.api(lo), mid_lo, "delivered", dl(20))   # the key's own project ("loopback")

    c = smtp_465(s, key=ka)
    try:
        mid_a = submit(c, "a@example.com", ["proj-a@example.net"], simple("project A", to="proj-a@example.net"))
    finally:
        quit_(c)
    a, b = s.api(ka), s.api(kb)
    assert a.get("/v1/messages/" + mid_a).status == 200
    rb = b.get("/v1/messages/" + mid_a)
    missing = b.get("/v1/messages/msg_00000000000000000000000000")
    assert rb.status == 404 and rb.body == missing.body, "B reads A's submitted message: %r" % rb
    assert s.api().get("/v1/messages/" + mid_a).status == 404, "the default project reads A's message"
    wait_status(a, mid_a, "delivered", dl(20))
    # A's suppression is A's: B's submission to the same address is accepted
    assert a.post_json("/v1/suppressions", {"email": "only-a@example.net"}).status == 201
    c = smtp_465(s, key=ka)
    try:
        c.mail("a@example.com")
        code, r = c.rcpt("only-a@example.net")
        assert code == 550, "A's suppressed address at A's RCPT: got %s %r" % (code, r)
    finally:
        quit_(c)
    c = smtp_465(s, key=kb)
    try:
        mid_b = submit(c, "b@example.com", ["only-a@example.net"], simple("project B", to="only-a@example.net"))
    finally:
        quit_(c)
    wait_status(b, mid_b, "delivered", dl(20))


def test_suppressed_recipient_refused_at_rcpt(sub, smtp_peer, webhook):
    api = sub.api()
    assert api.post_json("/v1/suppressions", {"email": "blocked@example.net"}).status == 201
    c = smtp_587(sub, mech="LOGIN")
    try:
        assert c.mail("a@example.com")[0] == 250
        code, r = c.rcpt("blocked@example.net")
        assert (code, r[:5]) == (550, b"5.7.1") and b"suppress" in r.lower(), (
            "suppressed recipient: got %s %r, want 550 5.7.1 ...suppressed..." % (code, r))
        code, r = c.rcpt("BLOCKED@Example.NET")
        assert code == 550, "the suppressed address in another case: got %s %r" % (code, r)
        code, r = c.rcpt("not an address")
        assert code in (501, 553), "an invalid address: got %s %r" % (code, r)
        code, r = c.rcpt("<bad..dots@example.net>")
        assert (code, r[:5]) == (553, b"5.1.3"), "an invalid address: got %s %r, want 553 5.1.3" % (code, r)
        code, r = c.rcpt("ok@example.net")
        assert code == 250, "the other recipient: got %s %r" % (code, r)
        mid = queued_id(*c.data(simple("one suppressed", to="blocked@example.net, ok@example.net")))
        code, r = c.mail("<>")
        assert (code, r[:5]) == (553, b"5.1.7"), "MAIL FROM:<>: got %s %r, want 553 5.1.7" % (code, r)
    finally:
        quit_(c)
    j = wait_all_delivered(api, mid, dl(20))
    assert [x["email"] for x in j["recipients"]] == ["ok@example.net"], j["recipients"]
    delivered_to(smtp_peer, "ok@example.net", subject_is("one suppressed"), "the accepted recipient's copy")
    marker(sub, smtp_peer, "supp")
    assert "blocked@example.net" not in [r.lower() for m in smtp_peer.messages() for r in m.meta["rcpt_tos"]]


class RawTls:
    """A raw SMTP client over implicit TLS: bytes in, reply lines out, every read with a deadline."""

    def __init__(self, port, ca, timeout):
        self.timeout = timeout
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s = client_ctx(ca).wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""

    def send(self, b):
        self.s.sendall(b)

    def reply(self):
        """(code, text of the last line) of the next whole reply; (None, "") at EOF."""
        end = time.monotonic() + self.timeout
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                if time.monotonic() >= end:
                    raise AssertionError("no reply within %.0fs (have %r)" % (self.timeout, self.buf))
                self.s.settimeout(max(0.01, end - time.monotonic()))
                try:
                    d = self.s.recv(65536)
                except (ConnectionResetError, ssl.SSLError):
                    d = b""
                if not d:
                    return (None, "") if not lines else (int(lines[-1][:3]), lines[-1][4:])
                self.buf += d
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), line[4:].decode("utf-8", "replace")

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


SMUGGLE_ENDS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"]


def test_smtp_smuggling_refused(sub, smtp_peer, redis):
    before = stored_ids(redis)
    c = RawTls(sub.sport, sub.ca, dl(15))
    try:
        assert c.reply()[0] == 220
        assert c.cmd("EHLO " + CLIENT_NAME)[0] == 250
        code, text = c.cmd("AUTH PLAIN " + raw_b64("\0txmail\0" + sub.key_secret))
        assert code == 235, "AUTH PLAIN: got %s %r" % (code, text)
        for i, fake in enumerate(SMUGGLE_ENDS):
            assert c.cmd("RSET")[0] == 250
            assert c.cmd("MAIL FROM:<real@example.com>")[0] == 250
            assert c.cmd("RCPT TO:<real-%d@example.net>" % i)[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(b"From: real@example.com\r\nTo: real-%d@example.net\r\nSubject: real %d\r\n\r\nline one" % (i, i)
                   + fake
                   + b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<smuggled-%d@victim.example>\r\nDATA\r\n"
                     b"From: ceo@example.com\r\nSubject: smuggled %d\r\n\r\nevil\r\n.\r\n" % (i, i))
            code, text = c.reply()
            assert (code, text[:6]) == (550, "5.6.11"), "fake end %r: got %s %r, want 550 5.6.11" % (fake, code, text)
            # in step: the next reply is NOOP's, not one to a smuggled command
            code, text = c.cmd("NOOP")
            assert code == 250, "after the fake end %r, NOOP got %s %r (a smuggled command answered?)" % (
                fake, code, text)
        # the session still sends a real message
        assert c.cmd("MAIL FROM:<real@example.com>")[0] == 250
        assert c.cmd("RCPT TO:<real-ok@example.net>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"From: real@example.com\r\nTo: real-ok@example.net\r\nSubject: real ok\r\n\r\nfine\r\n.\r\n")
        ok = queued_id(*c.reply())
        assert c.cmd("QUIT")[0] == 221
    finally:
        c.close()
    wait_status(sub.api(), ok, "delivered", dl(20))
    delivered_to(smtp_peer, "real-ok@example.net", subject_is("real ok"), "the real message")
    rcpts = [r for m in smtp_peer.messages() for r in m.meta["rcpt_tos"]]
    assert not [r for r in rcpts if "victim" in r or r.startswith("real-") and r != "real-ok@example.net"], (
        "delivered from a refused DATA: %r" % rcpts)
    assert stored_ids(redis) - before == {ok}, "stored: %r, want only %s" % (stored_ids(redis) - before, ok)


def test_recipient_and_size_caps(submission, smtp_peer):
    s = submission(extra_env={"TXMAIL_MAX_BODY": "65536"})
    c = smtp_465(s)
    try:
        size = c.esmtp_features.get("size")
        assert size == "65536", "EHLO SIZE: got %r, want TXMAIL_MAX_BODY 65536" % size
        assert c.mail("a@example.com")[0] == 250
        for i in range(100):
            code, r = c.rcpt("r%03d@example.net" % i)
            assert code == 250, "recipient %d: got %s %r" % (i + 1, code, r)
        code, r = c.rcpt("r100@example.net")
        assert (code, r[:5]) == (452, b"4.5.3"), "the 101st recipient: got %s %r, want 452 4.5.3" % (code, r)
        assert c.rset()[0] == 250
        assert c.mail("a@example.com")[0] == 250
        code, r = c.docmd("DATA")
        assert (code, r[:5]) == (554, b"5.5.1"), "DATA without a recipient: got %s %r, want 554 5.5.1" % (code, r)
        code, r = c.mail("a@example.com", ["SIZE=65537"])
        if code == 503:   # a server may want RSET after the refused DATA
            c.rset()
            code, r = c.mail("a@example.com", ["SIZE=65537"])
        assert (code, r[:5]) == (552, b"5.3.4"), "MAIL SIZE over the limit: got %s %r, want 552 5.3.4" % (code, r)
        c.rset()
        assert c.mail("a@example.com")[0] == 250
        assert c.rcpt("big@example.net")[0] == 250
        big = simple("too big", to="big@example.net").replace(b"body of", b"x" * 70000 + b"\r\nbody of")
        code, r = c.data(big)
        assert (code, r[:5]) == (552, b"5.3.4"), "DATA over the limit: got %s %r, want 552 5.3.4" % (code, r)
        assert c.noop()[0] == 250
    finally:
        quit_(c)


def silent_until_421(sock, f, what):
    t0 = time.monotonic()
    line = f.readline()
    took = time.monotonic() - t0
    assert line.startswith(b"421 4.4.2"), "a silent client (%s): got %r, want 421 4.4.2" % (what, line)
    assert 0.8 <= took <= dl(5), "%s: 421 after %.2fs, want about 1 s (TXMAIL_SUBMISSION_COMMAND_TIMEOUT=1)" % (
        what, took)
    assert f.readline() == b"", "%s: the connection stays open after the 421" % what


def test_command_timeout_silent_client(submission):
    s = submission(extra_env={"TXMAIL_SUBMISSION_COMMAND_TIMEOUT": "1"})
    with socket.create_connection(("127.0.0.1", s.port), timeout=dl(10)) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")
        silent_until_421(sock, f, "after the greeting")
    with socket.create_connection(("127.0.0.1", s.port), timeout=dl(10)) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")
        sock.sendall(b"EHLO " + CLIENT_NAME.encode() + b"\r\nNOOP")   # half a command line
        while f.readline()[3:4] == b"-":
            pass
        silent_until_421(sock, f, "in the middle of a command line")


def test_command_timeout_in_data(submission):
    """The spec: a DATA chunk not completed within the command timeout gets 421 4.4.2 too."""
    s = submission(extra_env={"TXMAIL_SUBMISSION_COMMAND_TIMEOUT": "1"})
    raw = socket.create_connection(("127.0.0.1", s.sport), timeout=dl(15))
    with client_ctx(s.ca).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")
        for line in (b"EHLO " + CLIENT_NAME.encode(), b"AUTH PLAIN " + raw_b64(
                "\0txmail\0" + s.key_secret).encode(), b"MAIL FROM:<a@example.com>",
                b"RCPT TO:<slow@example.net>", b"DATA"):
            sock.sendall(line + b"\r\n")
            while True:
                ln = f.readline()
                assert ln, "closed after %r" % line[:10]
                if ln[3:4] != b"-":
                    break
            assert ln[:1] in (b"2", b"3"), "%r: got %r" % (line[:10], ln)
        sock.sendall(b"Subject: half\r\n\r\nand then the client goes silent")
        silent_until_421(sock, f, "in the middle of DATA")


def test_connections_per_ip(submission):
    s = submission(extra_env={"TXMAIL_SUBMISSION_MAX_CLIENTS_PER_IP": "2"})
    held = []
    try:
        def open_one():
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=dl(10))
            line = sock.makefile("rb").readline()
            if line.startswith(b"220 "):
                held.append(sock)
                return True
            sock.close()   # a slot still held by the readiness probe's session
            return False
        for i in range(2):
            wait_until(open_one, dl(10), "connection %d greeted 220" % (i + 1), interval=0.05)
        for port, implicit in ((s.port, False), (s.sport, True)):
            sock = socket.create_connection(("127.0.0.1", port), timeout=dl(10))
            try:
                if implicit:
                    try:
                        sock = client_ctx(s.ca).wrap_socket(sock, server_hostname="127.0.0.1")
                    except (ssl.SSLError, OSError) as e:
                        helpers.log("test_connections_per_ip: the third 465 connection was cut before "
                                    "the TLS handshake (%r), not greeted 421" % (e,))
                        continue   # refused all the same
                f = sock.makefile("rb")
                line = f.readline()
                assert line.startswith(b"421 4.7.0"), "a third connection from 127.0.0.1 (%s): got %r" % (
                    "465" if implicit else "587", line)
                assert f.readline() == b"", "the connection stays open after the 421"
            finally:
                sock.close()
        held.pop().close()
        wait_until(open_one, dl(10), "a connection greeted 220 once one of two closed", interval=0.05)
    finally:
        for x in held:
            x.close()


# --------------------------------------------------------------------------
# 4. certificate rotation


def presented(s, implicit):
    """sha256 of the DER certificate a new connection presents (verified against the CA)."""
    if implicit:
        raw = socket.create_connection(("127.0.0.1", s.sport), timeout=dl(10))
        with client_ctx(s.ca).wrap_socket(raw, server_hostname="127.0.0.1") as t:
            return fingerprint(t.getpeercert(binary_form=True))
    c = smtplib.SMTP("127.0.0.1", s.port, local_hostname=CLIENT_NAME, timeout=dl(10))
    try:
        c.starttls(context=s.ctx())
        return fingerprint(c.sock.getpeercert(binary_form=True))
    finally:
        quit_(c)


def replace_files(s, pair, keep_mtime=False):
    """Write pair's cert and key over s.cert/s.key: by rename (tmp + rename,
    key first), or in place with the old mtimes put back (keep_mtime; a
    watcher that also compares ctime or size still sees it: the SIGHUP case
    below checks the log's reason=reload as well)."""
    old = {p: os.stat(p) for p in (s.key, s.cert)}
    for src, dst in ((pair[1], s.key), (pair[0], s.cert)):
        with open(src, "rb") as f:
            data = f.read()
        if keep_mtime:
            with open(dst, "wb") as f:
                f.write(data)
            os.utime(dst, ns=(old[dst].st_atime_ns, old[dst].st_mtime_ns))
        else:
            tmp = dst + ".new"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, dst)


def test_certificate_rotation(sub, sub_certs, smtp_peer):
    fa, fb, fc = (fingerprint(der_of(sub_certs[n][0])) for n in ("a", "b", "c"))
    assert presented(sub, True) == fa and presented(sub, False) == fa

    replace_files(sub, sub_certs["b"])
    wait_until(lambda: presented(sub, True) == fb and presented(sub, False) == fb, dl(10),
               "both listeners presenting the replaced certificate b", interval=0.2,
               diag=lambda: "465 presents %s" % presented(sub, True)[:12])
    quit_(smtp_465(sub))   # and AUTH still works on the new one

    def reloads():
        return [r for r in logparse.records(sub.t.log, "submission certificate loaded")
                if r.get("reason") == "reload"]
    n0 = len(reloads())
    replace_files(sub, sub_certs["c"], keep_mtime=True)
    os.kill(sub.t.proc.pid, signal.SIGHUP)
    wait_until(lambda: presented(sub, True) == fc and presented(sub, False) == fc, dl(10),
               "both listeners presenting certificate c after SIGHUP", interval=0.2)
    assert sub.t.alive(), "txmail exited on SIGHUP"
    # SIGHUP alone, the files unchanged: read again all the same (the log says why)
    wait_until(lambda: len(reloads()) > n0, dl(5), "a reload logged after the first SIGHUP")
    n1 = len(reloads())
    os.kill(sub.t.proc.pid, signal.SIGHUP)
    wait_until(lambda: len(reloads()) > n1, dl(5), "the certificate read again on a SIGHUP with no change",
               diag=lambda: helpers.tail(sub.t.log, 10))
    assert presented(sub, True) == fc and sub.t.alive()
    c = smtp_587(sub)
    try:
        mid = submit(c, "a@example.com", ["rotated@example.net"], simple("after rotation", to="rotated@example.net"))
    finally:
        quit_(c)
    wait_status(sub.api(), mid, "delivered", dl(20))


# --------------------------------------------------------------------------
# 5. the `submission` role beside a worker


def test_submission_role_with_worker(submission, txmail_factory, smtp_peer, webhook):
    worker = txmail_factory(args=("worker",), http=False)
    s = submission(args=("submission",), http=False,
                   extra_env={"TXMAIL_ADMIN_LISTEN": "127.0.0.1:%d" % free_port()})
    api_t = txmail_factory(args=("api",))
    c = smtp_587(s, mech="LOGIN", initial=False)
    try:
        mid = submit(c, "role@example.com", ["role@example.net"], simple("via the submission role",
                                                                        to="role@example.net"))
    finally:
        quit_(c)
    api = api_t.client()
    j = wait_status(api, mid, "delivered", dl(30))
    assert j["subject"] == "via the submission role"
    delivered_to(smtp_peer, "role@example.net", subject_is("via the submission role"), "the role's message")
    (ev,) = webhook.wait_events_for(mid, 1, dl(20), types=("message.delivered",))[:1]
    assert ev["body"]["data"]["message_id"] == mid
    assert worker.alive() and s.t.alive()
