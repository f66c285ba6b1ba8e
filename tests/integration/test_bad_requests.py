"""test_bad_requests.py - a table of malformed, hostile and unauthorised
requests against one txmail (TXMAIL_MAX_BODY=65536). Each must get its
documented status and the error envelope {"error":{"type","message"}};
afterwards the server is still healthy and still delivers.

test_json_value_limits: at the default body cap, a body of more than
200,000 JSON values is 413 before it is parsed (the exact boundary, a
single send and a batch) and over 100 template variables is 422; every
answer checked against the spec.

Must never: accept a crash or a hang as an answer (every request has a
client timeout; the process must still be alive at the end).
"""

import json
import os
import random

import pytest

from helpers import dl, raw_http

MAX_BODY = 65536

OK_MSG = {"from": "a@example.com", "to": "ok@example.com", "subject": "hi", "text": "x"}


def with_(**kw):
    m = dict(OK_MSG)
    m.update(kw)
    return m


def J(obj):
    return json.dumps(obj).encode()


def nested(depth):
    return ("[" * depth + "]" * depth).encode()


def nested_meta(depth):
    return (b'{"from":"a@example.com","to":"ok@example.com","subject":"x","text":"x","metadata":'
            + b'{"a":' * depth + b"1" + b"}" * depth + b"}")


JSON = {"Content-Type": "application/json"}
ANY = "<any field>"  # a 422 that must name some field

# (name, method, path, headers, body, auth, want statuses, want type, want field)
TABLE = [
    ("no auth", "POST", "/v1/messages", JSON, J(OK_MSG), None, (401,), "unauthorized", None),
    ("wrong key", "POST", "/v1/messages", JSON, J(OK_MSG), "wrong-key", (401,), "unauthorized", None),
    ("not bearer", "POST", "/v1/messages", JSON, J(OK_MSG), "BASIC", (401,), "unauthorized", None),
    ("GET no auth", "GET", "/v1/messages/msg_00000000000000000000000000", {}, None, None, (401,), "unauthorized", None),
    ("unknown route", "GET", "/v1/nope", {}, None, "key", (404,), "not_found", None),
    ("DELETE /healthz", "DELETE", "/healthz", {}, None, "key", (405,), "method_not_allowed", None),
    ("PUT /v1/messages", "PUT", "/v1/messages", JSON, J(OK_MSG), "key", (405,), "method_not_allowed", None),
    ("text/plain", "POST", "/v1/messages", {"Content-Type": "text/plain"}, J(OK_MSG), "key", (415,),
     "unsupported_media_type", None),
    ("no content-type", "POST", "/v1/messages", {}, J(OK_MSG), "key", (415,), "unsupported_media_type", None),
    ("invalid json", "POST", "/v1/messages", JSON, b'{"from": "a@example.com",, }', "key", (400,), "invalid_json", None),
    ("empty body", "POST", "/v1/messages", JSON, b"", "key", (400,), "invalid_json", None),
    ("truncated json", "POST", "/v1/messages", JSON, J(OK_MSG)[:-7], "key", (400,), "invalid_json", None),
    ("garbage bytes", "POST", "/v1/messages", JSON, b"\xff\xfe" + random.Random(7).randbytes(3000), "key",
     (400,), "invalid_json", None),
    ("trailing garbage", "POST", "/v1/messages", JSON, J(OK_MSG) + b" xyz", "key", (400,), "invalid_json", None),
    ("invalid utf-8 in string", "POST", "/v1/messages", JSON,
     b'{"from":"a@example.com","to":"ok@example.com","subject":"\xc3\x28","text":"x"}', "key",
     (400, 422), None, None),
    ("json array", "POST", "/v1/messages", JSON, J([OK_MSG]), "key", (422,), "validation_error", None),
    ("json string", "POST", "/v1/messages", JSON, J("hello"), "key", (422,), "validation_error", None),
    ("missing to", "POST", "/v1/messages", JSON, J({k: v for k, v in OK_MSG.items() if k != "to"}), "key",
     (422,), "validation_error", "to"),
    ("to not an address", "POST", "/v1/messages", JSON, J(with_(to="not-an-address")), "key", (422,),
     "validation_error", "to"),
    ("to wrong type", "POST", "/v1/messages", JSON, J(with_(to=42)), "key", (422,), "validation_error", "to"),
    ("missing from", "POST", "/v1/messages", JSON, J({k: v for k, v in OK_MSG.items() if k != "from"}), "key",
     (422,), "validation_error", "from"),
    ("CRLF in subject", "POST", "/v1/messages", JSON, J(with_(subject="hi\r\nBcc: victim@example.com")), "key",
     (422,), "validation_error", "subject"),
    ("LF in subject", "POST", "/v1/messages", JSON, J(with_(subject="hi\nX: y")), "key",
     (422,), "validation_error", "subject"),
    ("CRLF in to[1]", "POST", "/v1/messages", JSON, J(with_(to=["ok@example.com", "bad\r\nBcc: x@y"])), "key",
     (422,), "validation_error", "to[1]"),
    ("CRLF in from name", "POST", "/v1/messages", JSON, J(with_(**{"from": "Evil\r\nBcc: x@y <a@example.com>"})),
     "key", (422,), "validation_error", "from"),
    ("header From override", "POST", "/v1/messages", JSON, J(with_(headers={"From": "x@example.com"})), "key",
     (422,), "validation_error", "headers.From"),
    ("header message-id override", "POST", "/v1/messages", JSON, J(with_(headers={"Message-ID": "<a@b>"})),
     "key", (422,), "validation_error", "headers.Message-ID"),
    ("CRLF in header value", "POST", "/v1/messages", JSON,
     J(with_(headers={"X-Foo": "a\r\nBcc: victim@example.com"})), "key", (422,), "validation_error", "headers.X-Foo"),
    ("bad header name", "POST", "/v1/messages", JSON, J(with_(headers={"X Foo: y\r\nZ": "a"})), "key",
     (422,), "validation_error", ANY),
    ("51 recipients", "POST", "/v1/messages", JSON,
     J(with_(to=["r%d@example.com" % i for i in range(51)])), "key", (422,), "validation_error", ANY),
    ("tags not strings", "POST", "/v1/messages", JSON, J(with_(tags=[1, 2])), "key", (422,), "validation_error",
     ("tags", "tags[0]")),
    ("metadata not object", "POST", "/v1/messages", JSON, J(with_(metadata=[1])), "key", (422,),
     "validation_error", "metadata"),
    ("unsupported template", "POST", "/v1/messages", JSON, J(with_(template="welcome")), "key", (422,),
     "validation_error", ANY),
    ("nested 10000 array", "POST", "/v1/messages", JSON, nested(10000), "key", (400, 422), None, None),
    ("nested 10000 metadata", "POST", "/v1/messages", JSON, nested_meta(10000), "key", (400, 422), None, None),
    ("unknown message id", "GET", "/v1/messages/msg_doesnotexist", {}, None, "key", (404,), "not_found", None),
    ("well-formed unknown id", "GET", "/v1/messages/msg_00000000000000000000000000", {}, None, "key", (404,),
     "not_found", None),
    ("path traversal id", "GET", "/v1/messages/..%2f..%2fetc%2fpasswd", {}, None, "key", (404,), "not_found", None),
]


@pytest.fixture
def tx(txmail_factory):
    return txmail_factory(extra_env={"TXMAIL_MAX_BODY": str(MAX_BODY)})


def check_envelope(r, want_type, want_field, name):
    ctype = r.headers.get("content-type", "")
    assert ctype.startswith("application/json"), "%s: Content-Type got %r, want application/json" % (name, ctype)
    j = r.json
    assert isinstance(j, dict) and isinstance(j.get("error"), dict), "%s: no error envelope in %r" % (name, r.body[:300])
    e = j["error"]
    assert isinstance(e.get("type"), str) and isinstance(e.get("message"), str) and e["message"], \
        "%s: error needs string type and message: %r" % (name, e)
    if want_type is not None:
        assert e["type"] == want_type, "%s: error.type got %r, want %r" % (name, e["type"], want_type)
    if want_field is not None and want_field != ANY:
        ok = want_field if isinstance(want_field, tuple) else (want_field,)
        assert e.get("field") in ok, "%s: error.field got %r, want %r" % (name, e.get("field"), want_field)
    return e


def test_bad_requests(tx, smtp_peer, webhook):
    c = tx.client()
    failures = []
    for name, method, path, headers, body, auth, want, want_type, want_field in TABLE:
        h = dict(headers)
        if auth == "key":
            h["Authorization"] = "Bearer " + tx.key
        elif auth == "BASIC":
            h["Authorization"] = "Basic " + tx.key
        elif auth is not None:
            h["Authorization"] = "Bearer " + auth
        try:
            r = c.request(method, path, body=body, headers=h, auth=False)
        except OSError as e:
            failures.append("%s: no HTTP answer (%r)" % (name, e))
            c.close()
            if not tx.alive():
                break
            continue
        try:
            assert r.status in want, "%s: status got %s, want %s (body %r)" % (name, r.status, want, r.body[:300])
            e = check_envelope(r, want_type, want_field, name)
            if r.status == 405:
                assert r.headers.get("allow"), "%s: 405 without Allow header" % name
            if r.status == 401:
                assert "bearer" in r.headers.get("www-authenticate", "").lower(), \
                    "%s: 401 without WWW-Authenticate: Bearer" % name
            if want_field == ANY:
                assert isinstance(e.get("field"), str) and e["field"], "%s: 422 without field: %r" % (name, e)
        except AssertionError as ae:
            failures.append(str(ae))
    assert tx.alive(), "txmail died during the table (exit %s)" % tx.proc.returncode
    assert not failures, "%d of %d rows failed:\n  %s" % (len(failures), len(TABLE), "\n  ".join(failures))

    # still healthy, and still delivering
    c = tx.client()
    r = c.get("/healthz", auth=False)
    assert r.status == 200, "/healthz after the table: got %s" % r.status
    r = c.send({"from": "a@example.com", "to": "after@example.com", "subject": "still here", "text": "ok"})
    assert r.status == 202, "send after the table: got %s %r" % (r.status, r.body[:200])
    r = c.send({"from": "a@example.com", "to": "charset@example.com", "subject": "x", "text": "y"},
               headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status == 202, "Content-Type with charset: got %s %r" % (r.status, r.body[:200])
    smtp_peer.wait_for_rcpt("after@example.com", dl(15))
    smtp_peer.wait_for_rcpt("charset@example.com", dl(15))
    assert smtp_peer.count() == 2, "the peer got %d messages; only 2 sends were valid" % smtp_peer.count()
    c.close()


def test_body_limits_raw(tx):
    """413 by Content-Length before the body is read, and for a chunked body
    that grows past the limit; garbage that is not HTTP at all."""
    auth = ("Authorization: Bearer %s\r\n" % tx.key).encode()
    big = b'{"text":"' + b"x" * (MAX_BODY * 4) + b'"}'
    head = (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + auth
            + b"Content-Length: %d\r\n\r\n" % len(big))
    st, hd, body = raw_http(tx.port, head, [big[i:i + 16384] for i in range(0, len(big), 16384)])
    assert st == 413, "Content-Length %d > %d: got %r %r" % (len(big), MAX_BODY, st, body[:200])
    assert json.loads(body)["error"]["type"] == "payload_too_large"

    chunks = []
    for i in range(0, len(big), 8192):
        piece = big[i:i + 8192]
        chunks.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    chunks.append(b"0\r\n\r\n")
    head = (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + auth
            + b"Transfer-Encoding: chunked\r\n\r\n")
    st, hd, body = raw_http(tx.port, head, chunks)
    assert st == 413, "chunked body of %d > %d: got %r %r" % (len(big), MAX_BODY, st, body[:200])
    assert json.loads(body)["error"]["type"] == "payload_too_large"

    # a body exactly at the limit is not refused for its size
    pad = MAX_BODY - len(J(with_(text="")))
    exact = J(with_(text="y" * pad))
    assert len(exact) == MAX_BODY
    c = tx.client()
    r = c.send(json.loads(exact))
    assert r.status == 202, "body of exactly TXMAIL_MAX_BODY: got %s %r" % (r.status, r.body[:200])

    # not HTTP at all
    st, hd, body = raw_http(tx.port, os.urandom(512) + b"\r\n\r\n")
    assert st in (None, 400, 505), "garbage request line: got %r" % st
    st, hd, body = raw_http(tx.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 200000 + b"\r\n\r\n")
    assert st == 431, "200 kB header: got %r, want 431" % st
    st, hd, body = raw_http(tx.port, b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 414, "100 kB request target: got %r, want 414" % st
    r = c.get("/healthz", auth=False)
    assert r.status == 200
    c.close()
    assert tx.alive()


MAX_VALUES = 200000  # VALIDATE_MAX_JSON_VALUES


def with_array(n):
    """OK_MSG plus metadata {"a": [0] * n}: 7 + n JSON values in all."""
    return with_(metadata={"a": [0] * n})


def test_json_value_limits(capi, smtp_peer):
    # exactly at the limit: counted, parsed, then refused by validation (metadata over 4 KiB)
    r = capi.send(with_array(MAX_VALUES - 7))
    assert r.status == 422, "%d values: got %d %r, want 422" % (MAX_VALUES, r.status, r.body[:200])
    assert r.json["error"]["field"] == "metadata", "got %r" % r.json
    # one more: 413 before the parse, naming the limit
    r = capi.send(with_array(MAX_VALUES - 6))
    assert r.status == 413, "%d values: got %d %r, want 413" % (MAX_VALUES + 1, r.status, r.body[:200])
    e = r.json["error"]
    assert e["type"] == "payload_too_large" and "200000" in e["message"], "got %r" % e
    # far more, in a body well under TXMAIL_MAX_BODY
    r = capi.post_json("/v1/messages/batch", {"messages": [with_array(395)] * 500})
    assert r.status == 413, "batch of 500 * 402 values: got %d %r, want 413" % (r.status, r.body[:200])
    assert r.json["error"]["type"] == "payload_too_large", "got %r" % r.json

    # template variables: 100 pass the cap (then the unknown template is named), 101 do not
    tpl = {"from": "a@example.com", "to": "ok@example.com", "template": "no-such-template"}
    r = capi.send(dict(tpl, variables={"v%d" % i: "x" for i in range(100)}))
    assert r.status == 422 and r.json["error"]["field"] == "template", "100 variables: got %r" % r
    r = capi.send(dict(tpl, variables={"v%d" % i: "x" for i in range(101)}))
    assert r.status == 422 and r.json["error"]["field"] == "variables", "101 variables: got %r" % r
    assert "100" in r.json["error"]["message"], "got %r" % r.json

    # nothing refused was enqueued; the server still delivers
    r = capi.get("/healthz", auth=False)
    assert r.status == 200, "healthz: got %r" % r
    r = capi.send(with_(to="after-limits@example.com"))
    assert r.status == 202, "send after the limits: got %r" % r
    smtp_peer.wait_for_rcpt("after-limits@example.com", dl(15))
    assert smtp_peer.count() == 1, "the peer got %d messages, want 1" % smtp_peer.count()
