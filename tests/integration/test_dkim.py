"""test_dkim.py - DKIM signing (issue 4, point 3).

Owns: keys made by `txmail dkim keygen` (RSA and Ed25519), a txmail started
with TXMAIL_DKIM_KEYS for the From domain, and the message as it arrived at
the SMTP peer verified by an independent verifier (Debian's python3-dkim,
Ed25519 through python3-nacl) with the public key served from the TXT
record value keygen printed; a UTF-8 subject and an attachment are part of
the signed message; a From domain without a key goes out unsigned; a key
file that cannot be read stops txmail at start with an error naming
TXMAIL_DKIM_KEYS. The same verification again with the public key served
by a real DNS server (dnsmasq on a loopback port, dns_server.py): the
verifier's dnsfunc asks it over UDP, so the TXT record as published -
split into 255-byte strings for RSA-2048 - is what verifies.

Must never: wait without a deadline, or touch real DNS (the dnsfunc serves
only the selector record this test made, or asks only the test's dnsmasq).
"""
import base64
import os
import re
import subprocess

import pytest

from dns_server import DnsServer, query_txt, txt_record_option
from helpers import dl, reap, tail

dkim = pytest.importorskip("dkim", reason="python3-dkim is not installed (make deps)")


def keygen(txmail_binary, workdir, domain, selector, ktype):
    out = os.path.join(workdir, "%s-%s.pem" % (selector, ktype))
    p = subprocess.run([txmail_binary, "dkim", "keygen", "--domain", domain, "--selector", selector,
                        "--type", ktype, "--out", out],
                       capture_output=True, timeout=dl(60), stdin=subprocess.DEVNULL)
    assert p.returncode == 0, "keygen: got exit %d, want 0; stderr %r" % (p.returncode, p.stderr)
    text = p.stdout.decode()
    name = re.search(r"(?m)^name:\s+(\S+)$", text)
    value = re.search(r"(?m)^value:\s+(.+)$", text)
    assert name and value, "keygen printed no name/value lines: %r" % text
    assert name.group(1) == "%s._domainkey.%s" % (selector, domain), "got TXT name %r" % name.group(1)
    assert os.stat(out).st_mode & 0o777 == 0o600, "got key file mode %o, want 600" % (os.stat(out).st_mode & 0o777)
    return out, name.group(1), value.group(1).strip().encode()


def dnsfunc_for(records):
    """A python3-dkim dnsfunc serving only `records` ({"sel._domainkey.d": b"v=DKIM1; ..."})."""
    asked = []

    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        n = n.rstrip(".").lower()
        asked.append(n)
        return records.get(n)
    dnsfunc.asked = asked
    return dnsfunc


def dkim_headers(raw):
    head = raw.split(b"\r\n\r\n", 1)[0]
    return re.findall(rb"(?im)^dkim-signature:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*", head)


@pytest.mark.parametrize("ktype,alg", [("rsa", b"rsa-sha256"), ("ed25519", b"ed25519-sha256")])
def test_signed_message_verifies(txmail_binary, txmail_factory, smtp_peer, workdir, ktype, alg):
    key, txt_name, txt_value = keygen(txmail_binary, workdir, "signed.example", "s2026", ktype)
    tm = txmail_factory(extra_env={"TXMAIL_DKIM_KEYS": "Signed.Example:s2026:%s" % key})
    c = tm.client()
    try:
        blob = os.urandom(5000) + b"\r\n.\r\n"
        rcpt = "dkim-%s@peer.example" % ktype
        r = c.send({"from": "Sender <news@SIGNED.example>", "to": rcpt,
                    "cc": "Copy <cc-%s@peer.example>" % ktype,
                    "reply_to": "help@signed.example",
                    "subject": "你好，世界 — DKIM test with a long subject that needs folding " * 2,
                    "text": "Hello\r\n\r\nthis  line has  spaces \t\r\n\r\n\r\n",
                    "html": "<p>Hello — 世界</p>",
                    "attachments": [{"filename": "报告.bin", "content": base64.b64encode(blob).decode()}]})
        assert r.status == 202, "got %r, want 202" % r
        raw = smtp_peer.wait_for_rcpt(rcpt, dl(20))[0].raw
    finally:
        c.close()
    sigs = dkim_headers(raw)
    assert len(sigs) == 1, "got %d DKIM-Signature headers, want 1" % len(sigs)
    sig = sigs[0]
    for ln in sig.split(b"\r\n"):
        assert len(ln) <= 78, "got a DKIM-Signature line of %d chars, want <= 78: %r" % (len(ln), ln)
    unfolded = re.sub(rb"\r\n[ \t]", b" ", sig)
    assert b"a=" + alg + b";" in unfolded, "got %r, want a=%s" % (unfolded, alg)
    assert b"d=signed.example;" in unfolded and b"s=s2026;" in unfolded, "got %r" % unfolded
    assert b"c=relaxed/relaxed;" in unfolded, "got %r" % unfolded
    assert not re.search(rb"[; ]l=", unfolded), "got an l= tag: %r" % unfolded
    h = re.search(rb"h=([^;]+);", unfolded).group(1)
    names = [x.strip().lower() for x in h.split(b":")]
    for want in (b"from", b"to", b"cc", b"reply-to", b"subject", b"date", b"message-id",
                 b"mime-version", b"content-type"):
        assert want in names, "got h=%r, want %s signed" % (h, want)
    dns = dnsfunc_for({txt_name: txt_value})
    assert dkim.verify(raw, dnsfunc=dns), "python3-dkim: got verify False, want True for %s" % ktype
    assert dns.asked == [txt_name], "got DNS lookups %r, want [%r]" % (dns.asked, txt_name)
    # a changed body or subject must not verify (the verifier really checks)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert not dkim.verify(head + b"\r\n\r\nX" + body, dnsfunc=dns), "tampered body verified"
    assert not dkim.verify(raw.replace(b"Subject: ", b"Subject: Re: ", 1), dnsfunc=dns), \
        "tampered subject verified"
    # a different key under the same name must not verify
    other = keygen(txmail_binary, workdir, "signed.example", "other", ktype)[2]
    assert not dkim.verify(raw, dnsfunc=dnsfunc_for({txt_name: other})), "verified with the wrong key"


def test_other_domain_unsigned(txmail_binary, txmail_factory, smtp_peer, workdir):
    key, _, _ = keygen(txmail_binary, workdir, "signed.example", "s1", "ed25519")
    tm = txmail_factory(extra_env={"TXMAIL_DKIM_KEYS": "signed.example:s1:%s" % key})
    c = tm.client()
    try:
        # a subdomain is another domain: no key, no signature
        for i, frm in enumerate(("a@unsigned.example", "a@sub.signed.example")):
            rcpt = "plain%d@peer.example" % i
            r = c.send({"from": frm, "to": rcpt, "subject": "plain", "text": "no key"})
            assert r.status == 202, "got %r, want 202" % r
            raw = smtp_peer.wait_for_rcpt(rcpt, dl(20))[0].raw
            assert dkim_headers(raw) == [], "got a DKIM-Signature for From %s, want none" % frm
    finally:
        c.close()


@pytest.mark.parametrize("spec,want", [
    ("signed.example:s1:/nonexistent/key.pem", "cannot read /nonexistent/key.pem"),
    ("signed.example:s1", "want domain:selector:/path/key.pem"),
    ("signed.example:s1:NOTAKEY", None),
])
def test_bad_config_refused(txmail_binary, txmail_env, workdir, spec, want):
    if spec.endswith("NOTAKEY"):
        bad = os.path.join(workdir, "notakey.pem")
        with open(bad, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        spec = spec.replace("NOTAKEY", bad)
        want = "not a PEM private key"
    import helpers
    env = dict(txmail_env)
    env["TXMAIL_DKIM_KEYS"] = spec
    env["TXMAIL_LISTEN"] = "127.0.0.1:%d" % helpers.free_port()
    logp = os.path.join(workdir, "bad.log")
    with open(logp, "wb") as lf:
        p = subprocess.Popen([txmail_binary, "run"], env=helpers.clean_env(env), stdin=subprocess.DEVNULL,
                             stdout=lf, stderr=lf, start_new_session=True)
    try:
        exited = reap(p, dl(10))
        assert exited, "txmail kept running with TXMAIL_DKIM_KEYS=%r" % spec
    finally:
        helpers.kill_group(p)
        reap(p, dl(5))
    log = tail(logp, 20)
    assert p.returncode != 0, "got exit 0, want a configuration error"
    assert "TXMAIL_DKIM_KEYS" in log and want in log, "got log %r, want TXMAIL_DKIM_KEYS and %r" % (log, want)


def dnsfunc_via(dns):
    """A python3-dkim dnsfunc asking the test's dnsmasq (UDP, 127.0.0.1)."""
    asked = []

    def dnsfunc(name, timeout=5):
        n = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower()
        asked.append(n)
        try:
            recs = query_txt(dns.port, n, timeout=min(float(timeout), 2.0))
        except LookupError:
            return None
        return recs[0] if recs else None
    dnsfunc.asked = asked
    return dnsfunc


@pytest.mark.parametrize("ktype", ["rsa", "ed25519"])
def test_verified_with_key_from_dns(txmail_binary, txmail_factory, smtp_peer, workdir, register_log, ktype):
    key, txt_name, txt_value = keygen(txmail_binary, workdir, "dns.example", "sel1", ktype)
    if ktype == "rsa":
        # RSA-2048: more than one 255-byte TXT string, reassembled by the verifier
        assert len(txt_value) > 255, "got an RSA TXT value of %d bytes, want > 255" % len(txt_value)
    dns = DnsServer(workdir, ["dns.example"],
                    ["host-record=probe.dns.example,127.0.0.9",
                     txt_record_option(txt_name, txt_value.decode())], "probe.dns.example")
    register_log("dnsmasq log", dns.log)
    dns.start()
    try:
        assert query_txt(dns.port, txt_name) == [txt_value], "dnsmasq serves %r, want %r" % (
            query_txt(dns.port, txt_name), txt_value)
        tm = txmail_factory(extra_env={"TXMAIL_DKIM_KEYS": "dns.example:sel1:%s" % key})
        c = tm.client()
        try:
            rcpt = "dns-%s@peer.example" % ktype
            r = c.send({"from": "News <news@dns.example>", "to": rcpt,
                        "subject": "DKIM key from DNS — %s" % ktype,
                        "text": "verified with the key served by dnsmasq\r\n", "html": "<p>é</p>"})
            assert r.status == 202, "got %r, want 202" % r
            raw = smtp_peer.wait_for_rcpt(rcpt, dl(20))[0].raw
        finally:
            c.close()
        assert len(dkim_headers(raw)) == 1, "got %d DKIM-Signature headers, want 1" % len(dkim_headers(raw))
        fn = dnsfunc_via(dns)
        assert dkim.verify(raw, dnsfunc=fn), "python3-dkim: got verify False, want True (%s, key from DNS)" % ktype
        assert fn.asked == [txt_name], "got DNS lookups %r, want [%r]" % (fn.asked, txt_name)
        with open(dns.log, errors="replace") as f:
            log = f.read()
        assert "query[TXT] %s" % txt_name in log, "dnsmasq log shows no TXT query for %s" % txt_name
        head, body = raw.split(b"\r\n\r\n", 1)
        assert not dkim.verify(head + b"\r\n\r\nX" + body, dnsfunc=fn), "tampered body verified"
        # a signature naming a selector that DNS does not have must not verify
        other = re.sub(rb"(\bs=)sel1;", rb"\1nosuch;", raw, count=1)
        assert other != raw, "could not rewrite s= in %r" % dkim_headers(raw)
        assert not dkim.verify(other, dnsfunc=fn), "verified with no key in DNS"
    finally:
        dns.stop()
