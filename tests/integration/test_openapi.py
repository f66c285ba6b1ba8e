"""test_openapi.py - api-spec/openapi.yaml is well-formed, lints clean and is true.

Owns: (a) structural checks of the spec (OpenAPI 3.1, every route of the
contract with its statuses, webhooks, every $ref resolves, status enums);
(b) the redocly lint, as `make spec-lint` runs it; (c) that the ajv
validator (tests/spec/validate.mjs) can fail, on hand-written cases; (d) a
live walk over EVERY operation the spec documents against a real server
(`txmail run` wired to redis, the SMTP peer and the webhook receiver), each
answer validated by ajv against the schema the spec gives for that route +
method + status, and every webhook body against the webhook schema - and a
check that the walk touched every documented operation, so a route added to
one side only fails here.

Must never: carry its own copy of a schema (schemas come from the spec via
validate.mjs), or skip because node is missing - `make` installs it.
"""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse

import pytest
import yaml

from helpers import dl, wait_until
import spec_check

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC_PATH = os.path.join(ROOT, "api-spec", "openapi.yaml")
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def spec():
    with open(SPEC_PATH, "rb") as f:
        return yaml.safe_load(f)


def resolve_ref(root, ref):
    assert ref.startswith("#/"), "got non-local $ref %r" % ref
    node = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, "got unresolvable $ref %r (at %r)" % (ref, part)
        node = node[part]
    return node


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


# --- (a) the spec's structure ---------------------------------------------------

def test_spec_is_openapi_31(spec):
    assert str(spec.get("openapi", "")).startswith("3.1."), "got openapi %r, want 3.1.x" % spec.get("openapi")
    assert spec["info"]["title"] == "txmail", "got title %r, want 'txmail'" % spec["info"].get("title")
    bearer = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer"), "got %r, want http bearer" % bearer
    assert spec["security"] == [{"bearerAuth": []}], "got %r, want bearer on every route" % spec["security"]


V1 = {"401", "403", "429", "503"}
ROUTES = [
    ("/v1/messages", "get", V1 | {"200", "422"}),
    ("/v1/messages", "post", V1 | {"202", "400", "409", "413", "415", "422"}),
    ("/v1/messages/batch", "post", V1 | {"202", "400", "409", "413", "415", "422"}),
    ("/v1/messages/{id}", "get", V1 | {"200", "404"}),
    ("/v1/messages/{id}", "delete", V1 | {"200", "404", "409"}),
    ("/v1/templates", "get", V1 | {"200"}),
    ("/v1/templates/{name}", "put", V1 | {"200", "201", "400", "415", "422"}),
    ("/v1/templates/{name}", "get", V1 | {"200", "404"}),
    ("/v1/templates/{name}", "delete", V1 | {"204", "404"}),
    ("/v1/webhooks", "post", V1 | {"201", "400", "415", "422"}),
    ("/v1/webhooks", "get", V1 | {"200"}),
    ("/v1/webhooks/{id}", "delete", V1 | {"204", "404", "409"}),
    ("/v1/webhooks/{id}", "get", V1 | {"200", "404"}),
    ("/v1/webhooks/{id}", "patch", V1 | {"200", "400", "404", "409", "415", "422"}),
    ("/v1/webhooks/{id}/test", "post", V1 | {"200", "404"}),
    ("/v1/webhooks/{id}/rotate", "post", V1 | {"200", "404", "409", "422"}),
    ("/v1/webhooks/{id}/deliveries", "get", V1 | {"200", "404", "422"}),
    ("/v1/webhooks/{id}/deliveries/{event_id}/retry", "post", V1 | {"200", "404"}),
    ("/v1/keys", "get", V1 | {"200", "422"}),
    ("/v1/suppressions", "get", V1 | {"200"}),
    ("/v1/suppressions", "post", V1 | {"200", "201", "400", "415", "422"}),
    ("/v1/suppressions/{email}", "delete", V1 | {"204", "404"}),
    ("/v1/events/stream", "get", V1 | {"200"}),
    ("/v1/whoami", "get", V1 | {"200"}),
    ("/healthz", "get", {"200"}),
    ("/readyz", "get", {"200", "503"}),
    ("/metrics", "get", {"200"}),
    ("/", "get", {"200"}),
    ("/ui/{name}", "get", {"200", "404"}),
    ("/favicon.ico", "get", {"204"}),
    # `run --dev` only: walked live (through the spec validator) by test_dev_mail.py
    ("/dev/mail", "get", V1 | {"200", "404", "422"}),
    ("/dev/mail", "delete", V1 | {"200", "404"}),
    ("/dev/mail/{id}", "get", V1 | {"200", "404"}),
    ("/dev/mail/{id}/raw", "get", V1 | {"200", "404", "413"}),
    ("/dev/mail/{id}/attachments/{n}", "get", V1 | {"200", "404"}),
]
DEV_ONLY = "/dev/"   # paths the live walk here cannot reach (no --dev): test_dev_mail.py walks them


@pytest.mark.parametrize("path,method,codes", ROUTES, ids=["%s %s" % (m.upper(), p) for p, m, _ in ROUTES])
def test_spec_paths(spec, path, method, codes):
    assert path in spec["paths"], "got paths %s, want %s" % (sorted(spec["paths"]), path)
    op = spec["paths"][path].get(method)
    assert op is not None, "got no %s on %s" % (method.upper(), path)
    missing = codes - set(op["responses"])
    assert not missing, "got responses %s, want also %s" % (sorted(op["responses"]), sorted(missing))
    if path in ("/healthz", "/readyz", "/metrics", "/", "/ui/{name}", "/favicon.ico"):
        assert op.get("security") == [], "got security %r on %s, want [] (no auth)" % (op.get("security"), path)
    else:
        assert "security" not in op, "got per-operation security %r on %s, want the global bearer" % (
            op.get("security"), path)
    if "429" in op["responses"]:
        r = resolve_ref(spec, op["responses"]["429"]["$ref"])
        assert "Retry-After" in r.get("headers", {}), "got 429 without Retry-After on %s %s" % (method, path)


def test_spec_has_no_undeclared_operations(spec):
    want = {(p, m) for p, m, _ in ROUTES}
    got = {(p, m) for p, item in spec["paths"].items() for m in item if m in METHODS}
    assert got == want, "got extra %s, missing %s" % (sorted(got - want), sorted(want - got))


def test_spec_send_headers(spec):
    for path in ("/v1/messages", "/v1/messages/batch"):
        op = spec["paths"][path]["post"]
        names = {resolve_ref(spec, p["$ref"])["name"] if "$ref" in p else p["name"] for p in op["parameters"]}
        assert "Idempotency-Key" in names, "got parameters %s on %s, want Idempotency-Key" % (names, path)
        assert "Idempotent-Replayed" in op["responses"]["202"]["headers"], "got no Idempotent-Replayed on %s" % path
    ev = spec["paths"]["/v1/events/stream"]["get"]["responses"]["200"]["content"]
    assert list(ev) == ["text/event-stream"], "got %s, want text/event-stream" % list(ev)


def test_spec_webhooks(spec):
    got = set(spec.get("webhooks", {}))
    want = {"message.delivered", "message.deferred", "message.failed", "message.bounced", "message.complained",
            "webhook.test"}
    assert got == want, "got webhooks %s, want %s" % (sorted(got), sorted(want))
    for name, item in spec["webhooks"].items():
        body = item["post"]["requestBody"]["content"]["application/json"]["schema"]
        schema = "WebhookTestEvent" if name == "webhook.test" else "WebhookEvent"
        assert body == {"$ref": "#/components/schemas/" + schema}, "got %r for %s" % (body, name)
        headers = {resolve_ref(spec, p["$ref"])["name"] for p in item["post"]["parameters"]}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}, "got %s" % sorted(headers)


def test_spec_refs_resolve(spec):
    refs = list(_walk_refs(spec))
    assert len(refs) > 100, "got %d $refs, want the spec to use components" % len(refs)
    for _, ref in refs:
        resolve_ref(spec, ref)


def test_spec_enums(spec):
    want = ["queued", "scheduled", "sending", "deferred", "delivered", "failed",
            "expired", "suppressed", "canceled"]
    s = spec["components"]["schemas"]
    assert s["RecipientStatus"]["enum"] == want, "got %r, want %r" % (s["RecipientStatus"]["enum"], want)
    assert s["MessageStatus"]["enum"] == want + ["partial"], "got %r" % s["MessageStatus"]["enum"]
    types = ["invalid_json", "unauthorized", "forbidden", "not_found", "method_not_allowed", "idempotency_conflict",
             "conflict", "payload_too_large", "unsupported_media_type", "validation_error",
             "rate_limited", "unavailable", "outcome_unknown", "internal_error"]
    assert s["ErrorType"]["enum"] == types, "got %r, want %r" % (s["ErrorType"]["enum"], types)
    assert s["FailureReason"]["enum"] == ["bounced", "expired", "suppressed"], "got %r" % s["FailureReason"]["enum"]


# --- (b) lint -------------------------------------------------------------------

def test_spec_lints_clean():
    npx = shutil.which("npx")
    assert npx, "npx missing (make deps installs npm)"
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true")
    p = subprocess.run([npx, "--no-install", "--prefix", os.path.join(ROOT, "tests", "spec"), "redocly", "lint",
                        "--config", os.path.join(ROOT, "tests", "spec", "redocly.yaml"), SPEC_PATH],
                       cwd=ROOT, env=env, capture_output=True, timeout=dl(120), stdin=subprocess.DEVNULL)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode == 0, "got redocly lint exit %d, want 0:\n%s" % (p.returncode, out[-4000:])
    assert "warning" not in out.replace("npm warn", "").lower(), "got lint warnings, want none:\n%s" % out[-4000:]


# --- (c) the ajv validator can fail -------------------------------------------------

GOOD_MESSAGE = {
    "id": "msg_01jd3x8m2k5v7q9r4t6w8y0z2a", "status": "delivered", "created_at": "2026-11-23T15:58:00.123Z",
    "from": "Acme <noreply@acme.example>", "subject": "Hi",
    "recipients": [{"email": "a@example.com", "status": "delivered", "attempts": 1,
                    "smtp": {"code": 250, "enhanced": "2.0.0", "response": "OK"}},
                   {"email": "b@example.com", "status": "queued", "attempts": 0, "smtp": None}],
    "events": [{"type": "queued", "at": "2026-11-23T15:58:00.123Z"},
               {"type": "delivered", "at": "2026-11-23T15:58:01.000Z", "recipient": "a@example.com"}],
    "metadata": {"user": 42}, "tags": ["welcome"],
}


def _mut(obj, fn):
    obj = json.loads(json.dumps(obj))
    fn(obj)
    return obj


VALIDATOR_CASES = [
    ({"schema": "Message"}, GOOD_MESSAGE, None),
    ({"schema": "Message"}, _mut(GOOD_MESSAGE, lambda m: m.pop("events")), "required property 'events'"),
    ({"schema": "Message"}, _mut(GOOD_MESSAGE, lambda m: m.update(id="msg_SHOUT")), "must match pattern"),
    ({"schema": "Message"}, _mut(GOOD_MESSAGE, lambda m: m.update(extra=1)), "additional properties 'extra'"),
    ({"schema": "Message"}, _mut(GOOD_MESSAGE, lambda m: m["recipients"][0].update(status="lost")), "allowed values"),
    ({"schema": "Message"}, _mut(GOOD_MESSAGE, lambda m: m.update(created_at="yesterday")), "format \"date-time\""),
    ({"schema": "Message"}, _mut(GOOD_MESSAGE, lambda m: m["recipients"][0].update(
        latency_ms=830, delivered_at="2026-11-23T15:58:01.002Z", next_attempt_at=None)), None),
    ({"schema": "Message"}, _mut(GOOD_MESSAGE, lambda m: m["recipients"][0].update(latency_ms=-1)), "must be >= 0"),
    ({"schema": "Message"}, _mut(GOOD_MESSAGE, lambda m: m["recipients"][0].update(next_attempt_at="later")),
     "format \"date-time\""),
    ({"schema": "SendRequest"}, {"from": "a@b.c", "to": "x@y.z", "template": "welcome", "variables": {"n": 1},
                                 "attachments": [{"filename": "a.txt", "content": "eA=="}], "ttl": 600,
                                 "send_at": "2026-11-23T16:00:00Z"}, None),
    ({"schema": "SendRequest"}, {"from": "a@b.c", "to": "x@y.z", "subject": "no body"}, "must match a schema in anyOf"),
    ({"schema": "SendRequest"}, {"from": "a@b.c", "to": "x@y.z", "text": "t", "ttl": 0}, "must be >= 1"),
    ({"schema": "BatchRequest"}, {"messages": [{"from": "a@b.c", "to": "x@y.z", "text": "t"}] * 501},
     "must NOT have more than 500 items"),
    ({"schema": "Error"}, {"error": {"type": "oops", "message": "x"}}, "allowed values"),
    ({"webhook": "message.failed"}, {"id": "evt_01jd3x8m2k5v7q9r4t6w8y0z2a", "type": "message.failed",
                                     "created_at": "2026-11-23T15:58:00Z",
                                     "data": {"message_id": "msg_01jd3x8m2k5v7q9r4t6w8y0z2a", "recipient": "x@y.z",
                                              "status": "suppressed", "attempt": 0, "reason": "suppressed",
                                              "smtp": None, "metadata": {}, "tags": [],
                                              "latency_ms": 0, "queued_ms": 0}}, None),
    ({"webhook": "message.failed"}, {"id": "evt_01jd3x8m2k5v7q9r4t6w8y0z2a", "type": "message.opened",
                                     "created_at": "2026-11-23T15:58:00Z", "data": {}}, "allowed values"),
    # issue 17: every event has latency_ms and queued_ms (>= 0); bounce_type is hard or soft
    ({"webhook": "message.bounced"}, {"id": "evt_01jd3x8m2k5v7q9r4t6w8y0z2a", "type": "message.bounced",
                                      "created_at": "2026-11-23T15:58:00Z",
                                      "data": {"message_id": "msg_01jd3x8m2k5v7q9r4t6w8y0z2a",
                                               "recipient": "a@b.c", "status": "failed", "attempt": 1,
                                               "reason": "bounced", "bounce_type": "hard", "smtp": None,
                                               "metadata": {}, "tags": [], "latency_ms": 1200,
                                               "queued_ms": 0}}, None),
    ({"webhook": "message.bounced"}, {"id": "evt_01jd3x8m2k5v7q9r4t6w8y0z2a", "type": "message.bounced",
                                      "created_at": "2026-11-23T15:58:00Z",
                                      "data": {"message_id": "msg_01jd3x8m2k5v7q9r4t6w8y0z2a",
                                               "recipient": "a@b.c", "status": "failed", "attempt": 1,
                                               "reason": "bounced", "bounce_type": "medium", "smtp": None,
                                               "metadata": {}, "tags": [], "latency_ms": 1200,
                                               "queued_ms": 0}}, "allowed values"),
    ({"webhook": "message.deferred"}, {"id": "evt_01jd3x8m2k5v7q9r4t6w8y0z2a", "type": "message.deferred",
                                       "created_at": "2026-11-23T15:58:00Z",
                                       "data": {"message_id": "msg_01jd3x8m2k5v7q9r4t6w8y0z2a",
                                                "recipient": "a@b.c", "status": "deferred", "attempt": 1,
                                                "smtp": None, "metadata": {}, "tags": [], "latency_ms": -1,
                                                "queued_ms": 0, "next_attempt_at": "soon"}},
     "must be >= 0"),
    ({"webhook": "message.delivered"}, {"id": "evt_01jd3x8m2k5v7q9r4t6w8y0z2a", "type": "message.delivered",
                                        "created_at": "2026-11-23T15:58:00Z",
                                        "data": {"message_id": "msg_01jd3x8m2k5v7q9r4t6w8y0z2a",
                                                 "recipient": "a@b.c", "status": "delivered", "attempt": 1,
                                                 "smtp": None, "metadata": {}, "tags": []}},
     "required property 'latency_ms'"),
    ({"webhook": "webhook.test"}, {"id": "evt_01jd3x8m2k5v7q9r4t6w8y0z2a", "type": "webhook.test",
                                   "created_at": "2026-11-23T15:58:00Z", "data": {"endpoint_id": "wh_x"}}, None),
    ({"request": {"method": "GET", "path": "/v1/messages/msg_01jd3x8m2k5v7q9r4t6w8y0z2a", "status": 200,
                  "content_type": "application/json"}}, GOOD_MESSAGE, None),
    ({"request": {"method": "GET", "path": "/v1/messages/msg_01jd3x8m2k5v7q9r4t6w8y0z2a", "status": 418,
                  "content_type": "application/json"}}, {}, "status 418 is not documented"),
    ({"request": {"method": "POST", "path": "/v1/messages/batch", "status": 202,
                  "content_type": "application/json"}}, {"data": [{"id": "msg_01jd3x8m2k5v7q9r4t6w8y0z2a"}]},
     "required property 'status'"),
    ({"request": {"method": "POST", "path": "/v1/messages", "status": 422, "content_type": "application/json"}},
     {"error": {"type": "validation_error", "message": "bad"}}, "required property 'field'"),
    ({"request": {"method": "DELETE", "path": "/v1/templates/x", "status": 204, "content_type": ""}}, None, None),
    ({"request": {"method": "DELETE", "path": "/v1/templates/x", "status": 204, "content_type": "application/json"}},
     {"ok": True}, "documents no body"),
    ({"request": {"method": "GET", "path": "/healthz", "status": 200, "content_type": "text/plain"}}, "ok",
     "not documented"),
    ({"request": {"method": "GET", "path": "/v1/nope", "status": 404, "content_type": "application/json"}},
     {"error": {"type": "not_found", "message": "x"}}, "is not in the spec"),
]


@pytest.mark.parametrize("case", range(len(VALIDATOR_CASES)))
def test_validator(spec_validator, case):
    sel, data, want = VALIDATOR_CASES[case]
    line = dict(sel, data=data)
    if want is None:
        spec_validator._ask(line)
    else:
        with pytest.raises(spec_check.SpecMismatch) as ei:
            spec_validator._ask(line)
        assert want in str(ei.value), "got %r, want an error containing %r" % (str(ei.value)[:500], want)


def test_validator_cli_exit_status():
    # the command-line contract: one answer line per input line, exit 1 on a mismatch
    lines = [{"schema": "Health", "data": {"status": "ok"}}, {"schema": "Health", "data": {"status": "bad"}}]
    p = subprocess.run(["node", spec_check.VALIDATE], input="\n".join(json.dumps(x) for x in lines).encode(),
                       capture_output=True, timeout=dl(30))
    out = p.stdout.decode().splitlines()
    assert p.returncode == 1, "got exit %d, want 1 (%r)" % (p.returncode, p.stderr[-500:])
    assert len(out) == 2 and out[0].startswith("ok") and out[1].startswith("FAIL"), "got %r" % out


# --- (d) the live server: every documented operation ----------------------------------

TERMINAL = ("delivered", "failed", "expired", "suppressed", "canceled")


def _template_of(spec, method, path):
    """The spec path template validate.mjs uses for method + path."""
    segs = path.split("?")[0].split("/")
    best, score = None, -1
    for t in spec["paths"]:
        if method.lower() not in spec["paths"][t]:
            continue
        ts = t.split("/")
        if len(ts) != len(segs):
            continue
        s, ok = 0, True
        for a, b in zip(ts, segs):
            if a.startswith("{"):
                continue
            if a != b:
                ok = False
                break
            s += 1
        if ok and s > score:
            best, score = t, s
    return best


def test_live_every_operation(spec, txmail, capi, webhook, smtp_peer, spec_validator):
    c = capi
    st = lambda r, want: (r.status == want) or pytest.fail("got %d, want %d: %r" % (r.status, want, r))  # noqa: E731

    st(c.get("/healthz", auth=False), 200)
    st(c.get("/readyz", auth=False), 200)
    st(c.request("POST", "/healthz", auth=False), 405)
    st(c.get("/metrics", auth=False), 200)
    st(c.get("/", auth=False), 200)
    st(c.get("/ui/app.js", auth=False), 200)
    st(c.get("/ui/nope.js", auth=False), 404)
    st(c.get("/favicon.ico", auth=False), 204)
    st(c.get("/v1/whoami"), 200)

    # templates
    tmpl = {"subject": "Code {{code}}", "text": "code {{code}}", "html": "<b>{{code}}</b>"}
    st(c.put_json("/v1/templates/spec-code", tmpl), 201)
    st(c.put_json("/v1/templates/spec-code", tmpl), 200)
    st(c.get("/v1/templates/spec-code"), 200)
    st(c.get("/v1/templates"), 200)
    st(c.put_json("/v1/templates/spec-bad", {"subject": "{{unclosed"}), 422)
    st(c.put_json("/v1/templates/spec-bad", {"nope": "x"}), 422)
    st(c.get("/v1/templates/nope"), 404)

    # sends: every recipient fate, a template, an attachment, idempotency
    msg = {"from": "Spec <spec@example.com>", "to": ["one@example.com", "Two <two@example.com>"],
           "cc": "temp1-three@example.com", "bcc": ["perm-four@example.com"],
           "subject": "openapi 检查", "text": "body", "html": "<p>body</p>",
           "headers": {"X-Spec": "1"}, "metadata": {"k": "v"}, "tags": ["spec"],
           "attachments": [{"filename": "a.txt", "content": "aGVsbG8=", "content_type": "text/plain"}]}
    r = c.send(msg, headers={"Idempotency-Key": "spec-1"})
    st(r, 202)
    mid = r.json["id"]
    assert r.headers.get("location", "").endswith("/v1/messages/" + mid), "got Location %r" % r.headers.get("location")
    r2 = c.send(msg, headers={"Idempotency-Key": "spec-1"})
    st(r2, 202)
    assert r2.json["id"] == mid and r2.headers.get("idempotent-replayed") == "true", "got %r %r" % (r2.headers, r2.json)
    st(c.send(dict(msg, subject="other"), headers={"Idempotency-Key": "spec-1"}), 409)
    st(c.send({"from": "a@example.com", "to": "t@example.com", "template": "spec-code",
               "variables": {"code": "1"}}), 202)
    st(c.send({"from": "a@example.com", "to": "t@example.com", "template": "spec-code"}), 422)
    r = c.post_json("/v1/messages/batch", {"messages": [{"from": "a@example.com", "to": "b%d@example.com" % i,
                                                         "subject": "s", "text": "t"} for i in range(3)]})
    st(r, 202)
    st(c.post_json("/v1/messages/batch", {"messages": [{"from": "a@example.com", "to": "nope"}]}), 422)
    st(c.post_json("/v1/messages/batch", {"messages": []}), 422)

    for bad, field in [(dict(msg, to=["ok@example.com", "not an address"]), "to[1]"),
                       (dict(msg, headers={"X-Evil": "a\r\nBcc: victim@example.com"}), "headers.X-Evil"),
                       (dict(msg, attachments=[{"filename": "x", "content": "!!"}]), "attachments[0].content")]:
        r = c.send(bad)
        st(r, 422)
        assert r.json["error"]["field"] == field, "got field %r, want %r" % (r.json["error"]["field"], field)

    # GET until terminal; the shape must hold in every state seen on the way
    deadline = time.monotonic() + dl(30)
    while True:
        r = c.get("/v1/messages/" + mid)
        st(r, 200)
        if all(x["status"] in TERMINAL for x in r.json["recipients"]):
            break
        assert time.monotonic() < deadline, "recipients not terminal in time: %r" % r.json["recipients"]
        time.sleep(0.05)
    assert r.json["status"] == "partial", "got %r, want partial" % r.json["status"]
    kinds = [(x["email"], x.get("kind")) for x in r.json["recipients"]]
    assert kinds == [("one@example.com", "to"), ("two@example.com", "to"), ("temp1-three@example.com", "cc"),
                     ("perm-four@example.com", "bcc")], "recipient kinds: got %r" % kinds
    st(c.delete("/v1/messages/" + mid), 409)   # nothing left to cancel
    # the list (GET /v1/messages): the message as a summary, a filter, a bad argument
    st(c.get("/v1/messages?limit=1"), 200)
    r = c.get("/v1/messages?status=partial&recipient=one@example.com")
    st(r, 200)
    assert mid in [m["id"] for m in r.json["data"]], r.json
    st(c.get("/v1/messages?limit=0"), 422)

    # schedule + cancel
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    r = c.send({"from": "a@example.com", "to": "later@example.com", "subject": "s", "text": "t", "send_at": future})
    st(r, 202)
    st(c.delete("/v1/messages/" + r.json["id"]), 200)
    st(c.get("/v1/messages/msg_00000000000000000000000000"), 404)
    st(c.delete("/v1/messages/msg_00000000000000000000000000"), 404)

    # suppressions
    st(c.post_json("/v1/suppressions", {"email": "gone@example.com"}), 201)
    st(c.post_json("/v1/suppressions", {"email": "gone@example.com", "reason": "again"}), 200)
    st(c.post_json("/v1/suppressions", {"email": "not an address"}), 422)
    st(c.get("/v1/suppressions"), 200)
    st(c.get("/v1/keys?limit=5"), 200)
    st(c.get("/v1/keys?limit=500"), 422)
    st(c.delete("/v1/suppressions/" + urllib.parse.quote("gone@example.com")), 204)
    st(c.delete("/v1/suppressions/" + urllib.parse.quote("gone@example.com")), 404)

    # webhooks
    r = c.post_json("/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["message.failed"]})
    st(r, 201)
    wid = r.json["id"]
    st(c.post_json("/v1/webhooks", {"url": "ftp://x", "events": ["message.failed"]}), 422)
    st(c.get("/v1/webhooks"), 200)
    st(c.get("/v1/webhooks/" + wid), 200)
    st(c.request("PATCH", "/v1/webhooks/" + wid, json_body={"description": "spec walk"}), 200)
    st(c.request("PATCH", "/v1/webhooks/" + wid, json_body={"enabled": 1}), 422)
    st(c.request("PATCH", "/v1/webhooks/default", json_body={"enabled": False}), 409)
    st(c.post_json("/v1/webhooks/" + wid + "/rotate", {"overlap_seconds": 60}), 200)
    st(c.post_json("/v1/webhooks/" + wid + "/rotate", {"overlap_seconds": -1}), 422)
    r = c.post_json("/v1/webhooks/default/test", None)
    st(r, 200)
    st(c.get("/v1/webhooks/default/deliveries?limit=1"), 200)
    st(c.get("/v1/webhooks/default/deliveries?limit=1000"), 422)
    st(c.post_json("/v1/webhooks/default/deliveries/%s/retry" % r.json["event_id"], None), 200)
    st(c.post_json("/v1/webhooks/" + wid + "/deliveries/evt_none/retry", None), 404)
    st(c.post_json("/v1/webhooks/" + wid + "/test", None), 200)
    st(c.delete("/v1/webhooks/" + urllib.parse.quote(wid)), 204)
    st(c.delete("/v1/webhooks/" + urllib.parse.quote(wid)), 404)
    st(c.get("/v1/webhooks/" + wid), 404)
    st(c.get("/v1/webhooks/" + wid + "/deliveries"), 404)

    st(c.delete("/v1/templates/spec-code"), 204)
    st(c.delete("/v1/templates/spec-code"), 404)

    # errors common to every route
    st(c.send(msg, auth=False), 401)
    st(c.request("POST", "/v1/messages", body=b"{", headers={"Content-Type": "application/json"}), 400)
    st(c.request("POST", "/v1/messages", body=b"{}", headers={"Content-Type": "text/plain"}), 415)

    # SSE: status and media type; its frames are checked in test_api_sse.py
    with socket.create_connection(("127.0.0.1", txmail.port), timeout=dl(5)) as s:
        s.sendall(b"GET /v1/events/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                  b"Authorization: Bearer " + txmail.key.encode() + b"\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            d = s.recv(4096)
            assert d, "got EOF before the SSE headers: %r" % head
            head += d
        status = int(head.split(b" ", 2)[1])
        ctype = [ln.split(b":", 1)[1].strip().decode() for ln in head.split(b"\r\n")
                 if ln.lower().startswith(b"content-type:")]
        spec_validator._ask({"request": {"method": "GET", "path": "/v1/events/stream", "status": status,
                                         "content_type": ctype[0] if ctype else ""}, "data": ""})
        c.seen.add(("GET", "/v1/events/stream", status))
    st(c.get("/v1/events/stream", auth=False), 401)

    # webhook bodies (1 failed, 1 deferred, 3 delivered for msg) match the spec
    events = webhook.wait_events_for(mid, 5, dl(30))
    for e in events:
        spec_validator.check_webhook(e["type"], e["body"])

    # every documented operation was exercised, with every 2xx it documents
    touched = {(_template_of(spec, m, p), m.lower()) for m, p, _ in c.seen}
    touched_codes = {(_template_of(spec, m, p), m.lower(), str(s)) for m, p, s in c.seen}
    for path, item in spec["paths"].items():
        for m, op in item.items():
            if m not in METHODS or path.startswith(DEV_ONLY):
                continue
            assert (path, m) in touched, "the live walk never called %s %s" % (m.upper(), path)
            for code in op["responses"]:
                if code.startswith("2"):
                    assert (path, m, code) in touched_codes, "the live walk never saw %s %s %s" % (
                        m.upper(), path, code)
