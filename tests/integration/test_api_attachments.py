"""test_api_attachments.py - attachments (issue 3, point 4).

Owns: bytes that arrive identical (parsed with Python's email package at
the SMTP peer), non-ASCII filenames (RFC 2231), content_type, an inline
image by content_id inside multipart/related, multipart/mixed around
multipart/alternative, invalid base64 -> 422 `attachments[0].content`, and
the size limit -> 413. Every answer is validated against the spec.

Must never: wait without a deadline.
"""
import base64
import os

from helpers import dl

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def b64(b):
    return base64.b64encode(b).decode()


def test_attachments_arrive_identical(capi, smtp_peer):
    blob = os.urandom(70000) + b"\x00\r\n.\r\n" + bytes(range(256))
    names = ["Rechnung März 2026.pdf", "报告 final.bin", "plain.txt"]
    r = capi.send({"from": "a@example.com", "to": "att@example.com", "subject": "files",
                   "text": "see attached", "html": "<p>logo: <img src=\"cid:logo\"></p>",
                   "attachments": [
                       {"filename": names[0], "content": b64(blob), "content_type": "application/pdf"},
                       {"filename": names[1], "content": b64(b"\xe4\xb8\xad" * 1000)},
                       {"filename": names[2], "content": b64(b"line1\nline2 \n.\n"), "content_type": "text/plain"},
                       {"filename": "logo.png", "content": b64(PNG), "content_type": "image/png",
                        "content_id": "logo"}]})
    assert r.status == 202, "got %r" % r
    m = smtp_peer.wait_for_rcpt("att@example.com", dl(15))[0].msg
    assert m.get_content_type() == "multipart/mixed", "got %s, want multipart/mixed" % m.get_content_type()
    types = [p.get_content_type() for p in m.walk()]
    assert "multipart/alternative" in types and "multipart/related" in types, "got parts %s" % types
    atts = {p.get_filename(): p for p in m.iter_attachments()}
    for n in names:
        assert n in atts, "got attachment names %r, want %r" % (list(atts), n)
    assert atts[names[0]].get_content_type() == "application/pdf", "got %s" % atts[names[0]].get_content_type()
    assert atts[names[0]].get_payload(decode=True) == blob, "attachment 0 bytes differ"
    assert atts[names[1]].get_content_type() == "application/octet-stream", "got default %s" % (
        atts[names[1]].get_content_type(),)
    assert atts[names[1]].get_payload(decode=True) == b"\xe4\xb8\xad" * 1000, "attachment 1 bytes differ"
    assert atts[names[2]].get_payload(decode=True) == b"line1\nline2 \n.\n", "attachment 2 bytes differ"
    # the inline image: in multipart/related next to the html, by Content-ID
    related = [p for p in m.walk() if p.get_content_type() == "multipart/related"][0]
    inner = list(related.iter_parts())
    assert inner[0].get_content_type() in ("text/html", "multipart/alternative"), "got %s first in related" % (
        inner[0].get_content_type(),)
    img = [p for p in inner if p.get_content_type() == "image/png"]
    assert img, "got related parts %s, want the image" % [p.get_content_type() for p in inner]
    assert img[0]["Content-ID"].strip() == "<logo>", "got Content-ID %r" % img[0]["Content-ID"]
    assert img[0].get_payload(decode=True) == PNG, "inline image bytes differ"
    raw = smtp_peer.wait_for_rcpt("att@example.com", dl(1))[0].raw
    assert b"filename*=" in raw, "got no RFC 2231 filename*= parameter in the raw message"
    assert max(len(ln) for ln in raw.split(b"\r\n")) <= 998, "got a line over 998 octets"


def test_invalid_base64_and_limits(txmail_factory, spec_validator, smtp_peer):
    import spec_check
    t = txmail_factory(extra_env={"TXMAIL_MAX_ATTACHMENT_BYTES": "4096"})
    c = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
    try:
        base = {"from": "a@example.com", "to": "x@example.com", "subject": "s", "text": "t"}
        for bad in ("not base64!", "QUJD=", "QQ", "Q" * 5):
            r = c.send(dict(base, attachments=[{"filename": "a", "content": bad}]))
            assert r.status == 422, "content %r: got %r, want 422" % (bad, r)
            assert r.json["error"]["field"] == "attachments[0].content", "got field %r" % r.json["error"]["field"]
        r = c.send(dict(base, attachments=[{"filename": "a", "content": b64(b"x")},
                                           {"filename": "b", "content": "%%%"}]))
        assert r.status == 422 and r.json["error"]["field"] == "attachments[1].content", "got %r" % r
        r = c.send(dict(base, attachments=[{"content": b64(b"x")}]))
        assert r.status == 422 and r.json["error"]["field"].startswith("attachments[0]"), "got %r" % r
        r = c.send(dict(base, attachments=[{"filename": "big", "content": b64(b"y" * 5000)}]))
        assert r.status == 413 and r.json["error"]["type"] == "payload_too_large", "got %r, want 413" % r
        r = c.send(dict(base, attachments=[{"filename": "a", "content": b64(b"y" * 3000)},
                                           {"filename": "b", "content": b64(b"y" * 3000)}]))
        assert r.status == 413, "got %r, want 413 for the total over the limit" % r
        r = c.send(dict(base, to="fits@example.com", attachments=[{"filename": "ok", "content": b64(b"z" * 4000)}]))
        assert r.status == 202, "got %r, want 202 under the limit" % r
        got = smtp_peer.wait_for_rcpt("fits@example.com", dl(15))
        assert smtp_peer.count() == 1, "got %d messages, want only the one that fits" % smtp_peer.count()
        assert [p.get_payload(decode=True) for p in got[0].msg.iter_attachments()] == [b"z" * 4000]
    finally:
        c.close()
