"""test_address_controls.py - addresses refuse control, separator, bidi and
BOM code points (issue 11, item 6).

Owns the property, end to end over HTTP: for every C0 control (U+0000 to
U+001F, TAB included), DEL, every C1 control (U+0080 to U+009F), U+2028,
U+2029, the bidi controls (U+200E, U+200F, U+202A to U+202E, U+2066 to
U+2069) and U+FEFF, put in the local part, the domain or the display name
of every address field (from, to, cc, bcc, reply_to; as a string and in an
array; in a single send and in a batch; and the address of POST
/v1/suppressions), txmail answers 422 validation_error naming exactly that
field. Bodies are JSON as clients write it (C0 as \\u escapes, everything
else raw UTF-8). Ordinary non-ASCII ("Jörg", "用户", an IDN address) is
still accepted in each field. One txmail, one keep-alive connection: some
3,000 requests in a few seconds.

Must never: open a connection per request, or wait without a deadline.
"""

import http.client
import json
import time

from helpers import dl

NAMED = [0x7F, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
         0x2066, 0x2067, 0x2068, 0x2069, 0xFEFF]
CODE_POINTS = list(range(0x00, 0x20)) + list(range(0x80, 0xA0)) + NAMED

# where the code point goes; "name" places need a display name, so not for suppressions
PLACES = {
    "local": lambda ch: "jo%sn@example.com" % ch,
    "domain": lambda ch: "john@exa%smple.com" % ch,
    "name": lambda ch: "Jo%sn <john@example.com>" % ch,
}

OK = "ok@example.com"


def base():
    return {"from": "sender@example.com", "to": "rcpt@example.com", "subject": "s", "text": "hi"}


def single(field, addr, as_list):
    m = base()
    m[field] = [OK, addr] if as_list else addr
    return m


# (label, path, body(addr) -> dict, want field, places)
def cases():
    out = []
    for f in ("from", "to", "cc", "bcc", "reply_to"):
        out.append(("single " + f, "/v1/messages", lambda a, f=f: single(f, a, False), f, PLACES))
    for f in ("to", "cc", "bcc", "reply_to"):
        out.append(("single %s[]" % f, "/v1/messages", lambda a, f=f: single(f, a, True),
                    f + "[1]", PLACES))
    out.append(("batch from", "/v1/messages/batch",
                lambda a: {"messages": [base(), single("from", a, False)]}, "messages[1].from", PLACES))
    for f in ("to", "cc", "bcc", "reply_to"):
        out.append(("batch " + f, "/v1/messages/batch",
                    lambda a, f=f: {"messages": [base(), single(f, a, False)]}, "messages[1].%s" % f,
                    PLACES))
        out.append(("batch %s[]" % f, "/v1/messages/batch",
                    lambda a, f=f: {"messages": [base(), base(), single(f, a, True)]},
                    "messages[2].%s[1]" % f, PLACES))
    out.append(("suppression", "/v1/suppressions", lambda a: {"email": a}, "email",
                {k: v for k, v in PLACES.items() if k != "name"}))
    return out


class Conn:
    """One keep-alive connection; post() -> (status, parsed JSON or None)."""

    def __init__(self, port, key):
        self.port = port
        self.key = key
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=dl(10))

    def post(self, path, obj):
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.c.request("POST", path, body=body, headers={
            "Authorization": "Bearer " + self.key, "Content-Type": "application/json"})
        r = self.c.getresponse()
        data = r.read()
        if r.will_close:
            self.c.close()
            self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=dl(10))
        try:
            return r.status, json.loads(data.decode("utf-8")) if data else None
        except ValueError:
            return r.status, None

    def close(self):
        self.c.close()


def test_every_refused_code_point_in_every_address_field(txmail):
    conn = Conn(txmail.port, txmail.key)
    wrong = []
    n = 0
    t0 = time.monotonic()
    try:
        for label, path, body, want_field, places in cases():
            for place, make in places.items():
                for cp in CODE_POINTS:
                    status, js = conn.post(path, body(make(chr(cp))))
                    n += 1
                    err = (js or {}).get("error") or {}
                    if status != 422 or err.get("type") != "validation_error" or \
                            err.get("field") != want_field:
                        wrong.append("%s, U+%04X in the %s: got %s %r, want 422 validation_error "
                                     "field %r" % (label, cp, place, status, js, want_field))
        took = time.monotonic() - t0
        assert not wrong, "%d of %d requests not refused as they should be:\n%s" % (
            len(wrong), n, "\n".join(wrong[:40]))
        assert n > 2500, "only %d requests made" % n
        print("%d refusals checked in %.1f s" % (n, took))

        # ordinary non-ASCII is still accepted, in every field
        good = {"from": "Jörg Müller <joerg@example.com>",
                "to": ["用户 <user@example.com>", "用户@例子.广告"],
                "cc": "\"Zoë, Ltd\" <zoe@example.com>",
                "bcc": "jörg@bücher.de",
                "reply_to": ["Family \u200d <family@example.com>", "Ünïcødé <u@example.com>"],
                "subject": "s", "text": "hi"}
        status, js = conn.post("/v1/messages", good)
        assert status == 202, "ordinary non-ASCII addresses: got %s %r, want 202" % (status, js)
        status, js = conn.post("/v1/messages/batch", {"messages": [good, base()]})
        assert status == 202, "ordinary non-ASCII addresses in a batch: got %s %r, want 202" % (
            status, js)
        status, js = conn.post("/v1/suppressions", {"email": "jörg@bücher.de"})
        assert status in (200, 201), "suppressing jörg@bücher.de: got %s %r" % (status, js)
    finally:
        conn.close()
