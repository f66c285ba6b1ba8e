"""test_http_logs.py - the HTTP access line and X-Request-Id (issue 9, point 4).

Owns: for a 202 send, a 401, a 404 (a known route with an unknown id, and
an unknown route) and a 413 (by Content-Length, and a chunked body over
the cap): the answer echoes a sane client X-Request-Id, replaces a missing
or ill-formed one with a generated `req_` id, and the log has exactly one
access line (msg="request") with that request_id, the method, the route
pattern (never the raw path with its ids; an unmatched path is logged cut
to 200 bytes), the status and a duration in seconds; the "accepted" line
of the send carries the same request_id and the message's msg_id. Every
txmail log line is read with logparse's strict logfmt parser, and the same
access line is checked as a JSON object (logparse's JSON lines) under
TXMAIL_LOG_FORMAT=json. The API key never appears in the log.

Must never: sleep "long enough" (the access line is written when the
request ends, after the answer: every look for it is a wait_until).
"""

import os
import re

import logparse
from helpers import dl, raw_http, wait_until

MAX_BODY = 65536
GEN_ID_RE = re.compile(r"^req_[0-9a-z]{26}$")
OK_MSG = {"from": "a@example.com", "to": "logs@example.com", "subject": "hi", "text": "x"}
DURATION_RE = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]{1,6})?s$")


def read_lines(t):
    with open(t.log, encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


def log_records(t, fmt="logfmt"):
    """Every log line of the running txmail, parsed strictly by logparse (a
    line that is not ours fails; the harness's start lines are skipped; a
    last line still being written is left for the next read)."""
    return logparse.parse_log(t.log, fmt, harness=True, live=True)


def access_lines(t, rid, fmt="logfmt"):
    return [r for r in log_records(t, fmt) if r.get("msg") == "request" and r.get("request_id") == rid]


def wait_access(t, rid, fmt="logfmt"):
    """The one access line of request rid (waits for it; fails on two)."""
    got = wait_until(lambda: access_lines(t, rid, fmt), dl(10), "the access line of %s" % rid,
                     diag=lambda: read_lines(t)[-10:])
    assert len(got) == 1, "request %s: got %d access lines, want exactly 1: %r" % (rid, len(got), got)
    return got[0]


def check_access(rec, rid, method, route, status, fmt="logfmt"):
    want = {"method": method, "route": route, "status": status if fmt == "json" else str(status),
            "request_id": rid}
    for k, v in want.items():
        assert rec.get(k) == v, "access line of %s: %s: got %r, want %r (%r)" % (rid, k, rec.get(k), v, rec)
    assert DURATION_RE.match(str(rec.get("duration", ""))), \
        "access line of %s: duration: got %r, want seconds like 0.0012s" % (rid, rec.get("duration"))
    assert rec.get("level") == ("warn" if status >= 500 else "info"), \
        "access line of %s: level: got %r" % (rid, rec.get("level"))


def test_request_id_and_access_lines(txmail_factory):
    t = txmail_factory(extra_env={"TXMAIL_MAX_BODY": str(MAX_BODY), "TXMAIL_LOG_FORMAT": None})
    c = t.client()
    try:
        # a 202 send with the client's id: echoed, on the access line and on "accepted"
        rid = "send-" + os.urandom(6).hex()
        r = c.send(OK_MSG, headers={"X-Request-Id": rid})
        assert r.status == 202, "send: got %s %r, want 202" % (r.status, r.body[:200])
        assert r.headers.get("x-request-id") == rid, "send: X-Request-Id got %r, want %r" % (
            r.headers.get("x-request-id"), rid)
        rec = wait_access(t, rid)
        check_access(rec, rid, "POST", "/v1/messages", 202)
        assert int(rec["bytes_in"]) > 0 and int(rec["bytes_out"]) > 0, "send: bytes in/out: got %r" % rec
        acc = [x for x in log_records(t) if x["msg"] == "accepted" and x.get("request_id") == rid]
        assert len(acc) == 1 and acc[0].get("msg_id") == r.json["id"], \
            "send: got accepted lines %r, want one with msg_id %s and request_id %s" % (acc, r.json["id"], rid)

        # no id: a generated one, on the answer and the line
        r = c.send(OK_MSG)
        assert r.status == 202, "send without id: got %s" % r.status
        gen = r.headers.get("x-request-id", "")
        assert GEN_ID_RE.match(gen), "send without id: X-Request-Id got %r, want req_ + 26" % gen
        check_access(wait_access(t, gen), gen, "POST", "/v1/messages", 202)

        # ill-formed ids are replaced, never echoed (nor logged)
        for bad in ("has space", "a" * 129, "semi;colon", "quote\"d", "new\\line", "\xe9t\xe9"):
            r = c.get("/healthz", headers={"X-Request-Id": bad}, auth=False)
            got = r.headers.get("x-request-id", "")
            assert r.status == 200 and GEN_ID_RE.match(got), \
                "X-Request-Id %r: got %s %r, want 200 and a generated id" % (bad, r.status, got)
            check_access(wait_access(t, got), got, "GET", "/healthz", 200)
        long_ok = "A-z0.9_:" * 16
        r = c.get("/healthz", headers={"X-Request-Id": long_ok}, auth=False)
        assert r.headers.get("x-request-id") == long_ok, "128-char id: got %r, want it echoed" % (
            r.headers.get("x-request-id"),)
        wait_access(t, long_ok)

        # 401 on a bad key
        rid = "unauth-" + os.urandom(6).hex()
        r = c.send(OK_MSG, headers={"X-Request-Id": rid, "Authorization": "Bearer txm_wrong_key"})
        assert r.status == 401 and r.headers.get("x-request-id") == rid, \
            "401: got %s, X-Request-Id %r, want 401 and %r" % (r.status, r.headers.get("x-request-id"), rid)
        rec = wait_access(t, rid)
        check_access(rec, rid, "POST", "/v1/messages", 401)
        assert rec.get("tenant") == "", "401: tenant got %r, want none" % rec.get("tenant")

        # 404 on a known route: the pattern, not the id; an authenticated tenant (not the key)
        rid = "nf-" + os.urandom(6).hex()
        r = c.get("/v1/messages/msg_00000000000000000000000000", headers={"X-Request-Id": rid})
        assert r.status == 404 and r.headers.get("x-request-id") == rid, "404: got %s %r" % (
            r.status, r.headers)
        rec = wait_access(t, rid)
        check_access(rec, rid, "GET", "/v1/messages/*", 404)
        assert rec.get("tenant", "").startswith("env:"), "404: tenant got %r, want env:<hash>" % rec.get("tenant")

        # 404 on no route at all: the raw path, cut to 200 bytes
        rid = "nr-" + os.urandom(6).hex()
        path = "/no/such/" + "p" * 400
        r = c.get(path, headers={"X-Request-Id": rid}, auth=False)
        assert r.status == 404 and r.headers.get("x-request-id") == rid, "unknown route: got %s" % r.status
        check_access(wait_access(t, rid), rid, "GET", path[:200], 404)
    finally:
        c.close()

    # 413 by Content-Length, before the body is read
    auth = ("Authorization: Bearer %s\r\n" % t.key).encode()
    big = b'{"text":"' + b"x" * (MAX_BODY * 2) + b'"}'
    rid = "big-" + os.urandom(6).hex()
    head = (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + auth
            + b"X-Request-Id: " + rid.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(big))
    st, hd, _ = raw_http(t.port, head, [big[i:i + 16384] for i in range(0, len(big), 16384)])
    assert st == 413 and hd.get("x-request-id") == rid, "413: got %r, X-Request-Id %r" % (st, hd.get("x-request-id"))
    check_access(wait_access(t, rid), rid, "POST", "/v1/messages", 413)

    # 413 for a chunked body that grows past the cap, no id given
    chunks = [b"%x\r\n%s\r\n" % (len(big[i:i + 8192]), big[i:i + 8192]) for i in range(0, len(big), 8192)]
    head = (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + auth
            + b"Transfer-Encoding: chunked\r\n\r\n")
    st, hd, _ = raw_http(t.port, head, chunks + [b"0\r\n\r\n"])
    gen = hd.get("x-request-id", "")
    assert st == 413 and GEN_ID_RE.match(gen), "chunked 413: got %r, X-Request-Id %r" % (st, gen)
    rec = wait_access(t, gen)
    check_access(rec, gen, "POST", "/v1/messages", 413)
    assert int(rec["bytes_in"]) > MAX_BODY, "chunked 413: bytes_in got %r, want > %d" % (rec["bytes_in"], MAX_BODY)

    # one access line per request, all well-formed, and never the key
    recs = log_records(t)
    ids = [x["request_id"] for x in recs if x["msg"] == "request"]
    assert len(ids) == len(set(ids)), "got a request_id on two access lines: %r" % ids
    text = "\n".join(read_lines(t))
    assert t.key not in text, "the API key is in the log"


def test_access_line_json(txmail_factory):
    t = txmail_factory(extra_env={"TXMAIL_LOG_FORMAT": "json"})
    c = t.client()
    try:
        rid = "json-" + os.urandom(6).hex()
        r = c.send(OK_MSG, headers={"X-Request-Id": rid})
        assert r.status == 202 and r.headers.get("x-request-id") == rid, "send: got %s %r" % (r.status, r.headers)
        rec = wait_access(t, rid, "json")
        check_access(rec, rid, "POST", "/v1/messages", 202, "json")
        assert isinstance(rec.get("bytes_in"), int) and isinstance(rec.get("status"), int), \
            "JSON access line: got %r, want numbers for status and bytes_in" % rec
        acc = [x for x in log_records(t, "json") if x["msg"] == "accepted" and x.get("request_id") == rid]
        assert len(acc) == 1 and acc[0].get("msg_id") == r.json["id"], "JSON: accepted lines %r" % acc

        rid = "json-nf-" + os.urandom(6).hex()
        r = c.get("/v1/templates/nope", headers={"X-Request-Id": rid})
        assert r.status == 404, "template 404: got %s" % r.status
        check_access(wait_access(t, rid, "json"), rid, "GET", "/v1/templates/*", 404, "json")
    finally:
        c.close()
