"""test_openapi.py - api-spec/openapi.yaml is well-formed and true.

Owns: (a) static checks of the spec (OpenAPI 3.1, the paths and webhooks
that exist, every $ref resolves); (b) a small JSON Schema subset validator,
checked here against hand-written cases; (c) a live check that a real
server's answers (healthz, readyz, 202, GET in every state, 400, 401, 404,
405, 415, 422) and the webhook bodies it sends match the spec's schemas.
Must never depend on anything but the stdlib, PyYAML (Debian python3-yaml)
and the `txmail`/`webhook` fixtures of conftest.py; when those are missing
the live test is skipped, not failed.
"""
import json
import os
import re
import time
import urllib.error
import urllib.request

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC_PATH = os.path.join(ROOT, "api-spec", "openapi.yaml")


def load_spec():
    with open(SPEC_PATH, "rb") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def spec():
    return load_spec()


# --- a JSON Schema subset ----------------------------------------------------

class SchemaError(Exception):
    pass


def resolve_ref(root, ref):
    """Resolve a local JSON pointer ("#/components/schemas/X") in root."""
    if not ref.startswith("#/"):
        raise SchemaError("only local refs are supported, got %r" % ref)
    node = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise SchemaError("unresolvable $ref %r (at %r)" % (ref, part))
    return node


def _type_ok(value, t):
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    raise SchemaError("unknown type %r" % t)


def validate(value, schema, root, path="$"):
    """Errors (list of "path: why" strings) of value against schema.

    Supports type, enum, const, required, properties, additionalProperties,
    items, minItems/maxItems, minLength/maxLength, minimum/maximum, pattern,
    oneOf/anyOf/allOf and local $ref; `format` and annotations are ignored.
    """
    errs = []
    if schema is True or schema == {}:
        return errs
    if schema is False:
        return ["%s: no value allowed here" % path]
    if "$ref" in schema:
        errs += validate(value, resolve_ref(root, schema["$ref"]), root, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(value, t) for t in types):
            return errs + ["%s: got %s, want type %s" % (path, json.dumps(value)[:80], "|".join(types))]
    if "enum" in schema and value not in schema["enum"]:
        errs.append("%s: got %r, want one of %r" % (path, value, schema["enum"]))
    if "const" in schema and value != schema["const"]:
        errs.append("%s: got %r, want %r" % (path, value, schema["const"]))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errs.append("%s: got length %d, want >= %d" % (path, len(value), schema["minLength"]))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append("%s: got length %d, want <= %d" % (path, len(value), schema["maxLength"]))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append("%s: got %r, want match for /%s/" % (path, value, schema["pattern"]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append("%s: got %r, want >= %r" % (path, value, schema["minimum"]))
        if "maximum" in schema and value > schema["maximum"]:
            errs.append("%s: got %r, want <= %r" % (path, value, schema["maximum"]))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errs.append("%s: got %d items, want >= %d" % (path, len(value), schema["minItems"]))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append("%s: got %d items, want <= %d" % (path, len(value), schema["maxItems"]))
        if "items" in schema:
            for i, item in enumerate(value):
                errs += validate(item, schema["items"], root, "%s[%d]" % (path, i))
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errs.append("%s: missing required property %r" % (path, name))
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name in value:
                errs += validate(value[name], sub, root, "%s.%s" % (path, name))
        extra = schema.get("additionalProperties", True)
        for name in value:
            if name in props:
                continue
            if extra is False:
                errs.append("%s: unexpected property %r" % (path, name))
            elif isinstance(extra, dict):
                errs += validate(value[name], extra, root, "%s.%s" % (path, name))
    if "allOf" in schema:
        for sub in schema["allOf"]:
            errs += validate(value, sub, root, path)
    if "anyOf" in schema:
        branch = [validate(value, sub, root, path) for sub in schema["anyOf"]]
        if all(branch):
            errs.append("%s: matches none of anyOf (%s)" % (path, " | ".join("; ".join(b) for b in branch)))
    if "oneOf" in schema:
        branch = [validate(value, sub, root, path) for sub in schema["oneOf"]]
        n = sum(1 for b in branch if not b)
        if n != 1:
            why = " (%s)" % " | ".join("; ".join(b) for b in branch) if n == 0 else ""
            errs.append("%s: matches %d of oneOf, want exactly 1%s" % (path, n, why))
    return errs


def component(spec, name):
    return {"$ref": "#/components/schemas/" + name}


def response_schema(spec, path, method, code):
    """The application/json schema of a documented response (refs followed)."""
    op = spec["paths"][path][method]
    assert str(code) in op["responses"], "got undocumented status %s for %s %s" % (code, method.upper(), path)
    resp = op["responses"][str(code)]
    if "$ref" in resp:
        resp = resolve_ref(spec, resp["$ref"])
    return resp["content"]["application/json"]["schema"]


# --- (a) the spec itself --------------------------------------------------------

def _walk_refs(node, where="$"):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield where, v
            else:
                yield from _walk_refs(v, "%s.%s" % (where, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_refs(v, "%s[%d]" % (where, i))


def test_spec_is_openapi_31(spec):
    assert isinstance(spec, dict), "got %r, want a mapping" % type(spec)
    assert str(spec.get("openapi", "")).startswith("3.1."), "got openapi %r, want 3.1.x" % spec.get("openapi")
    assert spec["info"]["title"] == "txmail", "got title %r, want 'txmail'" % spec["info"].get("title")
    bearer = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer"), "got %r, want http bearer" % bearer
    assert spec["security"] == [{"bearerAuth": []}], "got %r, want bearer on every route" % spec["security"]


@pytest.mark.parametrize("path,method,codes", [
    ("/v1/messages", "post", {"202", "400", "401", "413", "415", "422", "503"}),
    ("/v1/messages/{id}", "get", {"200", "401", "404"}),
    ("/healthz", "get", {"200"}),
    ("/readyz", "get", {"200", "503"}),
])
def test_spec_paths(spec, path, method, codes):
    assert path in spec["paths"], "got paths %s, want %s" % (sorted(spec["paths"]), path)
    op = spec["paths"][path].get(method)
    assert op is not None, "got no %s on %s" % (method.upper(), path)
    missing = codes - set(op["responses"])
    assert not missing, "got responses %s, want also %s" % (sorted(op["responses"]), sorted(missing))
    if path in ("/healthz", "/readyz"):
        assert op.get("security") == [], "got security %r on %s, want [] (no auth)" % (op.get("security"), path)


def test_spec_webhooks(spec):
    got = set(spec.get("webhooks", {}))
    want = {"message.delivered", "message.deferred", "message.failed"}
    assert got == want, "got webhooks %s, want %s" % (sorted(got), sorted(want))
    for name, item in spec["webhooks"].items():
        body = item["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/WebhookEvent"}, "got %r for %s" % (body, name)
        headers = {resolve_ref(spec, p["$ref"])["name"] for p in item["post"]["parameters"]}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}, "got %s" % sorted(headers)


def test_spec_refs_resolve(spec):
    refs = list(_walk_refs(spec))
    assert len(refs) > 20, "got %d $refs, want the spec to use components" % len(refs)
    for where, ref in refs:
        try:
            resolve_ref(spec, ref)
        except SchemaError as e:
            pytest.fail("%s: %s" % (where, e))


def test_spec_status_enums(spec):
    want = ["queued", "scheduled", "sending", "deferred", "delivered", "failed",
            "expired", "suppressed", "canceled"]
    got = spec["components"]["schemas"]["RecipientStatus"]["enum"]
    assert got == want, "got %r, want %r" % (got, want)
    got = spec["components"]["schemas"]["MessageStatus"]["enum"]
    assert got == want + ["partial"], "got %r, want %r" % (got, want + ["partial"])


def test_spec_schemas_are_checkable(spec):
    # Every component schema must be usable by the validator (no unknown
    # types, no dangling refs, patterns that compile).
    for name in spec["components"]["schemas"]:
        for value in (None, 0, "x", [], {}, [{}], {"error": {}}):
            validate(value, component(spec, name), spec)


# --- (b) the validator, checked -------------------------------------------------

GOOD_MESSAGE = {
    "id": "msg_01jd3x8m2k5v7q9r4t6w8y0z2a",
    "status": "delivered",
    "created_at": "2026-11-23T15:58:00.123Z",
    "from": "Acme <noreply@acme.example>",
    "subject": "Hi",
    "recipients": [
        {"email": "a@example.com", "status": "delivered", "attempts": 1,
         "smtp": {"code": 250, "enhanced": "2.0.0", "response": "OK"}},
        {"email": "b@example.com", "status": "queued", "attempts": 0, "smtp": None},
    ],
    "events": [{"type": "queued", "at": "2026-11-23T15:58:00.123Z"},
               {"type": "delivered", "at": "2026-11-23T15:58:01.000Z", "recipient": "a@example.com"}],
    "metadata": {"user": 42},
    "tags": ["welcome"],
}


def _mutate(obj, fn):
    obj = json.loads(json.dumps(obj))
    fn(obj)
    return obj


@pytest.mark.parametrize("schema_name,value,want_error", [
    ("Message", GOOD_MESSAGE, None),
    ("Message", _mutate(GOOD_MESSAGE, lambda m: m.pop("events")), "missing required property 'events'"),
    ("Message", _mutate(GOOD_MESSAGE, lambda m: m.update(id="msg_SHOUT")), "want match"),
    ("Message", _mutate(GOOD_MESSAGE, lambda m: m.update(extra=1)), "unexpected property 'extra'"),
    ("Message", _mutate(GOOD_MESSAGE, lambda m: m["recipients"][0].update(status="lost")), "want one of"),
    ("Message", _mutate(GOOD_MESSAGE, lambda m: m["recipients"][1].update(attempts=True)), "want type integer"),
    ("Message", _mutate(GOOD_MESSAGE, lambda m: m["recipients"][0]["smtp"].update(code="250")), "matches 0 of oneOf"),
    ("Message", _mutate(GOOD_MESSAGE, lambda m: m.update(recipients=[])), "want >= 1"),
    ("SendRequest", {"from": "a@b.c", "to": ["x@y.z", "Z <z@y.z>"], "subject": "s", "text": "t"}, None),
    ("SendRequest", {"from": "a@b.c", "to": "x@y.z", "html": "<p>", "headers": {"X-A": "1"}}, None),
    ("SendRequest", {"from": "a@b.c", "to": 5, "text": "t"}, "matches 0 of oneOf"),
    ("SendRequest", {"from": "a@b.c", "to": "x@y.z", "text": "t", "headers": {"X-A": 1}},
     "$.headers.X-A: got 1, want type string"),
    ("SendRequest", {"to": "x@y.z", "text": "t"}, "missing required property 'from'"),
    ("SendRequest", {"from": "a@b.c", "to": "x@y.z", "subject": "no body"}, "matches none of anyOf"),
    ("SendRequest", {"from": "a@b.c", "to": "x@y.z", "text": "t", "ttl": 600}, "unexpected property 'ttl'"),
    ("SendResponse", {"id": "msg_01jd3x8m2k5v7q9r4t6w8y0z2a", "status": "queued",
                      "recipients": [{"email": "x@y.z", "status": "queued"}]}, None),
    ("SendResponse", {"id": "msg_01jd3x8m2k5v7q9r4t6w8y0z2a", "status": "delivered",
                      "recipients": [{"email": "x@y.z", "status": "queued"}]}, "want one of"),
    ("Error", {"error": {"type": "not_found", "message": "no such message"}}, None),
    ("Error", {"error": {"type": "oops", "message": "x"}}, "want one of"),
    ("Error", {"type": "not_found"}, "missing required property 'error'"),
    ("ValidationErrorBody", {"error": {"type": "validation_error", "message": "bad", "field": "to[1]"}}, None),
    ("ValidationErrorBody", {"error": {"type": "invalid_json", "message": "bad", "field": "to"}}, "want 'validation_error'"),
    ("WebhookEvent", {"id": "evt_01jd3x8m2k5v7q9r4t6w8y0z2a", "type": "message.failed",
                      "created_at": "2026-11-23T15:58:00Z",
                      "data": {"message_id": "msg_01jd3x8m2k5v7q9r4t6w8y0z2a", "recipient": "x@y.z",
                               "status": "failed", "attempt": 1, "reason": "bounced",
                               "smtp": {"code": 550, "enhanced": "5.1.1", "response": "no such user"},
                               "metadata": {}, "tags": []}}, None),
    ("WebhookEvent", {"id": "evt_01jd3x8m2k5v7q9r4t6w8y0z2a", "type": "message.bounced",
                      "created_at": "2026-11-23T15:58:00Z", "data": {}}, "want one of"),
])
def test_validator(spec, schema_name, value, want_error):
    errs = validate(value, component(spec, schema_name), spec)
    if want_error is None:
        assert errs == [], "got errors %r, want none" % errs
    else:
        assert any(want_error in e for e in errs), "got errors %r, want one containing %r" % (errs, want_error)


def test_validator_refuses_dangling_ref(spec):
    with pytest.raises(SchemaError):
        validate({}, {"$ref": "#/components/schemas/NoSuchThing"}, spec)


# --- (c) the live server against the spec ---------------------------------------

def _http(base, method, path, body=None, key=None, ctype="application/json", timeout=10):
    """One request with urllib (independent of helpers.Client on purpose).
    Returns (status, headers, parsed JSON body); every answer must be JSON."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None and ctype:
        req.add_header("Content-Type", ctype)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, headers, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, e.headers, e.read()
    ct = headers.get("Content-Type", "")
    assert ct.startswith("application/json"), "%s %s: got Content-Type %r, want application/json" % (method, path, ct)
    try:
        parsed = json.loads(raw)
    except ValueError:
        pytest.fail("%s %s: got non-JSON body %r" % (method, path, raw[:200]))
    return status, headers, parsed


def _check(spec, path, method, status, body, want_status):
    assert status == want_status, "%s %s: got %d, want %d: %s" % (method.upper(), path, status, want_status, body)
    spec_path = "/v1/messages/{id}" if path.startswith("/v1/messages/") else path
    schema = response_schema(spec, spec_path, method, status)
    errs = validate(body, schema, spec)
    assert not errs, "%s %s %d does not match the spec:\n  %s\nbody: %s" % (
        method.upper(), path, status, "\n  ".join(errs), json.dumps(body)[:2000])


TERMINAL = ("delivered", "failed", "expired", "suppressed", "canceled")


def test_live_responses_match_spec(spec, request):
    # conftest.py's `txmail` is `txmail run` wired to a real redis-server, the
    # SMTP test peer (STARTTLS + AUTH) and the webhook receiver `webhook`.
    try:
        srv = request.getfixturevalue("txmail")
        hooks = request.getfixturevalue("webhook")
    except pytest.FixtureLookupError:
        pytest.skip("no `txmail`/`webhook` fixtures in conftest.py: live spec check not possible")
    base = "http://127.0.0.1:%d" % srv.port
    key = srv.key
    scale = 3 if os.environ.get("TXMAIL_ASAN", "") not in ("", "0") else 1

    st, hdr, body = _http(base, "GET", "/healthz")
    _check(spec, "/healthz", "get", st, body, 200)
    st, hdr, body = _http(base, "GET", "/readyz")
    _check(spec, "/readyz", "get", st, body, 200)

    # Recipients chosen for the SMTP peer's rules: two accepted, one
    # deferred once then accepted ("temp1-"), one bounced ("perm-"), so every
    # recipient status and webhook type that exists today shows up.
    msg = {"from": "Spec <spec@example.com>", "to": ["one@example.com", "Two <two@example.com>"],
           "cc": "temp1-three@example.com", "bcc": ["perm-four@example.com"],
           "subject": "openapi 检查", "text": "body", "html": "<p>body</p>",
           "headers": {"X-Spec": "1"}, "metadata": {"k": "v"}, "tags": ["spec"]}
    st, hdr, body = _http(base, "POST", "/v1/messages", msg, key)
    _check(spec, "/v1/messages", "post", st, body, 202)
    mid = body["id"]
    got = sorted(r["email"] for r in body["recipients"])
    want = ["one@example.com", "perm-four@example.com", "temp1-three@example.com", "two@example.com"]
    assert got == want, "got recipients %r, want %r" % (got, want)
    loc = hdr.get("Location", "")
    assert loc.endswith("/v1/messages/" + mid), "got Location %r, want .../v1/messages/%s" % (loc, mid)

    # GET right away, then until every recipient is terminal; the shape must
    # hold in every state seen on the way.
    deadline = time.monotonic() + 30 * scale
    while True:
        st, hdr, body = _http(base, "GET", "/v1/messages/" + mid, key=key)
        _check(spec, "/v1/messages/" + mid, "get", st, body, 200)
        assert body["id"] == mid, "got id %r, want %r" % (body["id"], mid)
        assert body["metadata"] == {"k": "v"} and body["tags"] == ["spec"], "got %r / %r" % (body["metadata"], body["tags"])
        if all(r["status"] in TERMINAL for r in body["recipients"]):
            break
        assert time.monotonic() < deadline, "recipients not terminal in time: %r" % body["recipients"]
        time.sleep(0.05)
    by_email = {r["email"]: r for r in body["recipients"]}
    assert by_email["perm-four@example.com"]["status"] == "failed", "got %r" % by_email["perm-four@example.com"]
    assert by_email["temp1-three@example.com"]["status"] == "delivered", "got %r" % by_email["temp1-three@example.com"]
    assert body["status"] == "partial", "got message status %r, want 'partial'" % body["status"]

    # Every webhook body (1 failed, 1 deferred, 3 delivered) matches the spec.
    events = hooks.wait_events_for(mid, 5, 30 * scale)
    types = sorted(e["type"] for e in events)
    assert types == ["message.deferred", "message.delivered", "message.delivered", "message.delivered",
                     "message.failed"], "got webhook types %r" % types
    for e in events:
        errs = validate(e["body"], component(spec, "WebhookEvent"), spec)
        assert not errs, "webhook %s does not match the spec:\n  %s\nbody: %s" % (
            e["type"], "\n  ".join(errs), json.dumps(e["body"])[:2000])

    st, hdr, body = _http(base, "GET", "/v1/messages/msg_00000000000000000000000000", key=key)
    _check(spec, "/v1/messages/{id}", "get", st, body, 404)
    assert body["error"]["type"] == "not_found", "got %r" % body
    st, hdr, body = _http(base, "GET", "/v1/messages/nonsense", key=key)
    _check(spec, "/v1/messages/{id}", "get", st, body, 404)

    st, hdr, body = _http(base, "POST", "/v1/messages", msg, None)
    _check(spec, "/v1/messages", "post", st, body, 401)
    assert body["error"]["type"] == "unauthorized", "got %r" % body
    st, hdr, body = _http(base, "GET", "/v1/messages/" + mid, key="wrong-" + key)
    _check(spec, "/v1/messages/{id}", "get", st, body, 401)

    st, hdr, body = _http(base, "POST", "/v1/messages", b"{", key)
    _check(spec, "/v1/messages", "post", st, body, 400)
    assert body["error"]["type"] == "invalid_json", "got %r" % body

    st, hdr, body = _http(base, "POST", "/v1/messages", msg, key, ctype="text/plain")
    _check(spec, "/v1/messages", "post", st, body, 415)

    st, hdr, body = _http(base, "PUT", "/v1/messages", msg, key)
    _check(spec, "/v1/messages", "post", st, body, 405)
    assert "POST" in hdr.get("Allow", ""), "got Allow %r, want it to list POST" % hdr.get("Allow")

    for bad, field in [
        (dict(msg, to=["ok@example.com", "not an address"]), "to[1]"),
        (dict(msg, headers={"X-Evil": "a\r\nBcc: victim@example.com"}), "headers.X-Evil"),
        (dict(msg, ttl=600), "ttl"),
    ]:
        st, hdr, body = _http(base, "POST", "/v1/messages", bad, key)
        _check(spec, "/v1/messages", "post", st, body, 422)
        assert body["error"]["field"] == field, "got field %r, want %r" % (body["error"]["field"], field)
