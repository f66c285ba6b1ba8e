"""test_key_scopes.py - the key model of issue 11: projects, scopes and IP
allowlists of API keys (`txmail keys create --project --scope --allow-ip`),
against a real txmail and redis-server.

Checks: `keys create` refuses bad projects, scopes and networks; `keys
list` shows project, scope and allowlist; each scope against each route
class (403 forbidden naming the scope needed vs. allowed); an allowlist
admits 127.0.0.1 and refuses a key allowed only from 10.0.0.0/8 with one
fixed 403 body for every key; behind TXMAIL_TRUSTED_PROXIES=127.0.0.1/32 the
right-most untrusted X-Forwarded-For entry is the client (a malformed one:
unknown, so allowlisted keys are refused); a refused address charges no
rate-limit token; a key of scope admin reads another project's message,
a full key of a third project gets 404; TXMAIL_API_KEYS keys are the project "default"
(idempotency keys and the rate bucket); keys of one project share
Idempotency-Keys, two projects do not; a key record written by the
previous release (no project, scope or allow) still authenticates, as a
full key of the project named after it.

Owns: nothing but its processes (conftest fixtures). Must never: sleep
instead of waiting for a condition, or print a key.
"""

import hashlib
import socket

import helpers
from helpers import dl
from test_keys_cli import keys_cli

# asserts idempotency records under txm{0}: TXMAIL_PARTITIONS stays 1 under TXM_PARTITIONS (conftest)
ONE_PARTITION = True

MSG = {"from": "a@example.com", "to": "scopes@example.com", "subject": "scopes", "text": "x"}
NO_SUCH_MSG = "/v1/messages/msg_00000000000000000000000000"
PREFIX = "txm{0}:"


def create(binary, env, name, *args):
    rc, out, err = keys_cli(binary, env, "create", "--name", name, *args)
    assert rc == 0, "keys create %s %s: got exit %d, want 0; stderr %r" % (name, " ".join(args), rc, err)
    return out.strip()


def list_rows(binary, env):
    rc, out, err = keys_cli(binary, env, "list")
    assert rc == 0, "keys list: got exit %d; stderr %r" % (rc, err)
    lines = out.splitlines()
    want = ["NAME", "PROJECT", "SCOPE", "CREATED", "LAST", "USED", "HASH", "PREFIX", "ALLOW", "IP"]
    assert lines[0].split() == want, "keys list header: got %r, want %r" % (lines[0], want)
    rows = {}
    for ln in lines[1:]:
        f = ln.split()
        assert len(f) == 7, "keys list row: got %r, want 7 columns" % ln
        rows[f[0]] = {"project": f[1], "scope": f[2], "hash_prefix": f[5], "allow": f[6]}
    return rows


def stream_status(port, key, extra=""):
    """The status of GET /v1/events/stream (headers only; the stream is then dropped)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=dl(10))
    try:
        s.sendall(("GET /v1/events/stream HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n"
                   "Authorization: Bearer %s\r\n%s\r\n" % (key, extra)).encode())
        buf = b""
        while b"\r\n" not in buf:
            d = s.recv(4096)
            if not d:
                break
            buf += d
        return int(buf.split(b" ", 2)[1])
    finally:
        s.close()


def raw_get(port, key, header_lines):
    """GET of a missing message with raw header lines (repeated headers allowed)."""
    req = "GET %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n%sConnection: close\r\n\r\n" % (
        NO_SUCH_MSG, key, "".join(h + "\r\n" for h in header_lines))
    status, _, body = helpers.raw_http(port, req.encode())
    return status, body


# route classes: (name, scope needed, request)
ROUTES = [
    ("POST /v1/messages", "send", lambda c: c.send(MSG)),
    ("POST /v1/messages/batch", "send", lambda c: c.post_json("/v1/messages/batch", {"messages": [MSG]})),
    ("GET /v1/messages/*", "read", lambda c: c.get(NO_SUCH_MSG)),
    ("GET /v1/templates", "read", lambda c: c.get("/v1/templates")),
    ("GET /v1/suppressions", "read", lambda c: c.get("/v1/suppressions")),
    ("GET /v1/webhooks", "read", lambda c: c.get("/v1/webhooks")),
    ("DELETE /v1/messages/*", "full", lambda c: c.request("DELETE", NO_SUCH_MSG)),
    ("PUT /v1/templates/*", "full",
     lambda c: c.request("PUT", "/v1/templates/t1", json_body={"subject": "s", "text": "t"})),
    ("DELETE /v1/templates/*", "full", lambda c: c.request("DELETE", "/v1/templates/nope")),
    ("POST /v1/suppressions", "full",
     lambda c: c.post_json("/v1/suppressions", {"email": "sup@example.com"})),
]
ALLOWS = {"send": {"send"}, "read": {"read"}, "full": {"send", "read", "full"},
          "admin": {"send", "read", "full"}}


def test_cli_refuses_bad_arguments(txmail_binary, workdir):
    env = {"TXMAIL_REDIS_URL": "redis://127.0.0.1:%d" % helpers.free_port()}
    for args, what in ((("--project", "bad name"), "invalid project"),
                       (("--scope", "root"), "invalid scope"),
                       (("--scope", ""), "invalid scope"),
                       (("--allow-ip", "10.1.2.3/8"), "after the prefix length"),
                       (("--allow-ip", "10.0.0.0/33"), "not an IP address"),
                       (("--allow-ip", "10.0.0.0/8,"), "empty entry"),
                       (("--allow-ip", ""), "the list is empty"),
                       (("--allow-ip", "example.com"), "not an IP address")):
        rc, out, err = keys_cli(txmail_binary, env, "create", "--name", "k", *args)
        assert rc == 2 and out == "" and what in err, \
            "keys create %s: got exit %d out=%r err=%r, want 2 and %r" % (" ".join(args), rc, out, err, what)


def test_scopes_allowlists_projects(txmail_binary, redis, txmail_factory, spec_validator):
    env = {"TXMAIL_REDIS_URL": redis.url}
    keys = {
        "send1": create(txmail_binary, env, "send1", "--scope", "send"),
        "read1": create(txmail_binary, env, "read1", "--scope", "read", "--project", "shop"),
        "full1": create(txmail_binary, env, "full1", "--project", "shop"),
        "shop2": create(txmail_binary, env, "shop2", "--project", "shop", "--scope=send"),
        "admin1": create(txmail_binary, env, "admin1", "--scope", "admin"),
        "lo": create(txmail_binary, env, "lo", "--allow-ip", "127.0.0.1"),
        "ten": create(txmail_binary, env, "ten", "--allow-ip", "10.0.0.0/8, 2001:db8::/32"),
        "web": create(txmail_binary, env, "web", "--allow-ip=203.0.113.0/24", "--scope", "read"),
    }
    rows = list_rows(txmail_binary, env)
    want = {"send1": ("send1", "send", "any"), "read1": ("shop", "read", "any"),
            "full1": ("shop", "full", "any"), "shop2": ("shop", "send", "any"),
            "admin1": ("admin1", "admin", "any"), "lo": ("lo", "full", "127.0.0.1/32"),
            "ten": ("ten", "full", "10.0.0.0/8,2001:db8::/32"), "web": ("web", "read", "203.0.113.0/24")}
    for name, (project, scope, allow) in want.items():
        got = rows[name]
        assert (got["project"], got["scope"], got["allow"]) == (project, scope, allow), \
            "keys list %s: got %r, want project %s scope %s allow %s" % (name, got, project, scope, allow)
        assert got["hash_prefix"] == hashlib.sha256(keys[name].encode()).hexdigest()[:12], got

    tx = txmail_factory(extra_env={"TXMAIL_TRUSTED_PROXIES": "127.0.0.1/32",
                                   "TXMAIL_RATE_LIMIT": "1000", "TXMAIL_RATE_BURST": "1000"})
    clients = []

    def client(name):
        c = helpers.Client(tx.port, key=keys[name] if name != "env" else tx.key)
        clients.append(c)
        return c

    try:
        # each scope against each route class
        for name, scope in (("send1", "send"), ("read1", "read"), ("full1", "full"), ("admin1", "admin")):
            c = client(name)
            for route, need, call in ROUTES:
                r = call(c)
                if need in ALLOWS[scope]:
                    assert r.status != 403 and r.status < 500, \
                        "scope %s, %s: got %r, want it allowed" % (scope, route, r)
                else:
                    assert r.status == 403 and r.json["error"]["type"] == "forbidden", \
                        "scope %s, %s: got %r, want 403 forbidden" % (scope, route, r)
                    if route == "GET /v1/templates":
                        spec_validator.check_response("GET", "/v1/templates", r)
                    msg = r.json["error"]["message"]
                    assert "scope %s" % need in msg and "has scope %s" % scope in msg, \
                        "scope %s, %s: the message %r does not name the scope needed (%s)" % (
                            scope, route, msg, need)
            got = stream_status(tx.port, keys[name])
            assert (got == 200) == (scope != "send"), \
                "scope %s, GET /v1/events/stream: got %d" % (scope, got)

        # allowlists: 127.0.0.1 allowed; 10.0.0.0/8 refused with one fixed body
        r = client("lo").get(NO_SUCH_MSG)
        assert r.status == 404, "key allowed from 127.0.0.1, from 127.0.0.1: got %r, want 404" % r
        r_ten = client("ten").get(NO_SUCH_MSG)
        assert r_ten.status == 403 and r_ten.json["error"]["type"] == "forbidden", \
            "key allowed from 10.0.0.0/8, from 127.0.0.1: got %r, want 403" % r_ten
        r_web = client("web").send(MSG)
        assert r_web.status == 403, "key allowed from 203.0.113.0/24: got %r, want 403" % r_web
        spec_validator.check_response("GET", NO_SUCH_MSG, r_ten)
        spec_validator.check_response("POST", "/v1/messages", r_web)
        assert r_ten.body == r_web.body, "403 bodies differ between keys: %r vs %r" % (r_ten.body, r_web.body)
        for leak in (b"10.0.0.0", b"203.0.113", b"ten", b"web", b"scope"):
            assert leak not in r_ten.body, "the 403 body names %r: %r" % (leak, r_ten.body)
        # the refused key's project bucket was never charged; the allowed ones' were
        assert redis.cmd("EXISTS", PREFIX + "rl:ten") == 0, "a refused address charged the bucket"
        assert redis.cmd("EXISTS", PREFIX + "rl:lo") == 1, "the allowed key has no bucket rl:lo"
        assert redis.cmd("EXISTS", PREFIX + "rl:shop") == 1, "project shop has no bucket"
        assert redis.cmd("EXISTS", PREFIX + "rl:read1") == 0, "a bucket per key name, not per project"

        # behind the trusted proxy 127.0.0.1: the right-most untrusted X-Forwarded-For entry
        web = client("web")
        for xff, want_status in (("203.0.113.5", 404),
                                 ("198.51.100.1, 203.0.113.5", 404),
                                 ("203.0.113.5, 198.51.100.1", 403),
                                 ("203.0.113.5, 127.0.0.1", 404),
                                 ("not-an-ip", 403),
                                 ("203.0.113.5:80", 403)):
            r = web.get(NO_SUCH_MSG, headers={"X-Forwarded-For": xff})
            assert r.status == want_status, "key allowed from 203.0.113.0/24, X-Forwarded-For %r: got %r, want %d" % (
                xff, r, want_status)
            if want_status == 403:
                assert r.body == r_ten.body, "X-Forwarded-For %r: another 403 body %r" % (xff, r.body)
        # the proxy's header lines are one list: the last line's entry is right-most
        status, body = raw_get(tx.port, keys["web"], ["X-Forwarded-For: 198.51.100.1",
                                                       "X-Forwarded-For: 203.0.113.9"])
        assert status == 404, "two X-Forwarded-For lines ending in an allowed address: got %r %r" % (status, body)
        status, body = raw_get(tx.port, keys["web"], ["X-Forwarded-For: 203.0.113.9",
                                                       "X-Forwarded-For: 198.51.100.1"])
        assert status == 403, "two X-Forwarded-For lines ending in a refused address: got %r %r" % (status, body)
        # a client cannot pose as 127.0.0.1 through the proxy
        r = client("lo").get(NO_SUCH_MSG, headers={"X-Forwarded-For": "198.51.100.1"})
        assert r.status == 403, "key allowed from 127.0.0.1, forwarded for 198.51.100.1: got %r" % r
        # keys without an allowlist do not care, malformed or not
        r = client("env").get(NO_SUCH_MSG, headers={"X-Forwarded-For": "garbage"})
        assert r.status == 404, "env key with a malformed X-Forwarded-For: got %r, want 404" % r
        r = client("full1").get(NO_SUCH_MSG, headers={"X-Forwarded-For": "198.51.100.1"})
        assert r.status == 404, "key without allowlist, forwarded: got %r, want 404" % r

        # idempotency keys are per project: shop's keys share them, send1's are its own
        idem = {"Idempotency-Key": "scopes-1"}
        r1 = client("full1").send(MSG, headers=idem)
        assert r1.status == 202, r1
        r2 = client("shop2").send(MSG, headers=idem)
        assert r2.status == 202 and r2.headers.get("idempotent-replayed") == "true" and \
            r2.json["id"] == r1.json["id"], \
            "the same Idempotency-Key from another key of project shop: got %r, want the replay of %s" % (
                r2, r1.json["id"])
        # scope admin sees every project (api_request.all_projects); another project's key does not
        mid = "/v1/messages/" + r1.json["id"]
        for name, want_status in (("read1", 200), ("admin1", 200), ("lo", 404)):
            r = client(name).get(mid)
            assert r.status == want_status, "GET project shop's message with key %s: got %r, want %d" % (
                name, r, want_status)
        r3 = client("send1").send(MSG, headers=idem)
        assert r3.status == 202 and r3.headers.get("idempotent-replayed") is None and \
            r3.json["id"] != r1.json["id"], "the same Idempotency-Key in another project: got %r" % r3
        # TXMAIL_API_KEYS keys are the project "default"
        r4 = client("env").send(MSG, headers=idem)
        assert r4.status == 202 and r4.headers.get("idempotent-replayed") is None, r4
        sha = hashlib.sha256(b"scopes-1").hexdigest()
        for project in ("shop", "send1", "default"):
            assert redis.cmd("EXISTS", PREFIX + "idem:%s:%s" % (project, sha)) == 1, \
                "no idempotency record for project %s" % project
        assert redis.cmd("EXISTS", PREFIX + "rl:default") == 1, "env keys: no bucket rl:default"
    finally:
        for c in clients:
            c.close()


def test_key_of_previous_release(txmail_binary, redis, txmail):
    """A key record as the previous release wrote it: name created last_used, nothing more."""
    token = "txm_" + "Q" * 40
    digest = hashlib.sha256(token.encode()).hexdigest()
    redis.cmd("HSET", PREFIX + "key:" + digest, "name", "legacy", "created", "1700000000000", "last_used", "0")
    redis.cmd("SET", PREFIX + "keyname:legacy", digest)
    redis.cmd("SADD", PREFIX + "keys", "legacy")
    env = {"TXMAIL_REDIS_URL": redis.url}
    rows = list_rows(txmail_binary, env)
    assert rows["legacy"]["project"] == "legacy" and rows["legacy"]["scope"] == "full" and \
        rows["legacy"]["allow"] == "any", "keys list, old record: got %r" % rows["legacy"]
    c = helpers.Client(txmail.port, key=token)
    try:
        r = c.get(NO_SUCH_MSG)
        assert r.status == 404, "old key, GET: got %r, want 404 (authenticated)" % r
        r = c.request("DELETE", NO_SUCH_MSG)
        assert r.status == 404, "old key, DELETE (scope full): got %r, want 404" % r
        r = c.send(MSG, headers={"Idempotency-Key": "legacy-1"})
        assert r.status == 202, "old key, send: got %r, want 202" % r
        sha = hashlib.sha256(b"legacy-1").hexdigest()
        assert redis.cmd("EXISTS", PREFIX + "idem:legacy:" + sha) == 1, \
            "old key: idempotency record not under its project (its name)"
    finally:
        c.close()


def test_admin_names_a_project(txmail_binary, redis, txmail_factory, spec_validator):
    """`?project=P`: an admin key acts inside project P alone; other keys may name only their own."""
    env = {"TXMAIL_REDIS_URL": redis.url}
    keys = {"admin1": create(txmail_binary, env, "admin1", "--scope", "admin"),
            "shop": create(txmail_binary, env, "shop"),
            "other": create(txmail_binary, env, "other")}
    tx = txmail_factory()
    cs = {n: helpers.Client(tx.port, key=k) for n, k in keys.items()}
    tpl = {"subject": "Hi {{name}}", "text": "Hello {{name}}"}
    try:
        admin, shop, other = cs["admin1"], cs["shop"], cs["other"]
        # a template written by the admin in project shop is shop's, not the admin's own
        r = admin.request("PUT", "/v1/templates/welcome?project=shop", json_body=tpl)
        assert r.status == 201, "admin PUT ?project=shop: got %r, want 201" % r
        assert shop.get("/v1/templates/welcome").status == 200, "shop does not see the admin's template"
        assert admin.get("/v1/templates/welcome").status == 404, \
            "without ?project the admin acts in its own project: the template should be missing"
        assert other.get("/v1/templates/welcome").status == 404, "another project sees shop's template"
        # a suppression too, and a send on shop's behalf is stored as shop's
        r = admin.post_json("/v1/suppressions?project=shop", {"email": "gone@example.com"})
        assert r.status in (200, 201), "admin POST suppression ?project=shop: got %r" % r
        listed = [s["email"] for s in shop.get("/v1/suppressions").json["data"]]
        assert listed == ["gone@example.com"], "shop's suppressions: got %r" % listed
        assert other.get("/v1/suppressions").json["data"] == [], "another project sees shop's suppression"
        r = admin.request("POST", "/v1/messages?project=shop", json_body=MSG)
        assert r.status == 202, "admin send ?project=shop: got %r" % r
        mid = "/v1/messages/" + r.json["id"]
        assert shop.get(mid).status == 200, "shop cannot read the message sent on its behalf"
        assert other.get(mid).status == 404, "another project reads shop's message"
        # a key naming its own project is fine; another project is 403; a bad name 422
        assert shop.get("/v1/templates/welcome?project=shop").status == 200
        r = shop.get("/v1/templates/welcome?project=other")
        assert r.status == 403 and r.json["error"]["type"] == "forbidden" and \
            r.json["error"].get("field") == "project", "a full key naming another project: got %r" % r
        spec_validator.check_response("GET", "/v1/templates/welcome", r)
        r = admin.request("POST", "/v1/messages?project=no%20such!", json_body=MSG)
        assert r.status == 422 and r.json["error"]["type"] == "validation_error" and \
            r.json["error"].get("field") == "project", "admin with a bad project name: got %r" % r
        spec_validator.check_response("POST", "/v1/messages", r)
    finally:
        for c in cs.values():
            c.close()
