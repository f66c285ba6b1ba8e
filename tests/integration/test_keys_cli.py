"""test_keys_cli.py - `txmail keys create|list|revoke` against a real
redis-server, the keys used against a running txmail, and the rate limit
(a token bucket per project in Redis -> 429 rate_limited with Retry-After;
two keys made without --project are two projects, two buckets).

Owns: nothing but its own processes (through the conftest fixtures, plus one
unix-socket redis-server for the embedded-socket case, killed in a finally).
Must never: sleep instead of waiting for a condition, or print a key.
"""

import hashlib
import os
import re
import subprocess

import pytest

import helpers
from helpers import dl, wait_until

KEY_RE = re.compile(r"^txm_[0-9A-Za-z]{40}$")
MSG = {"from": "a@example.com", "to": "keys@example.com", "subject": "keys", "text": "x"}
NO_SUCH_MSG = "/v1/messages/msg_00000000000000000000000000"


def keys_cli(binary, env, *args):
    p = subprocess.run([binary, "keys"] + list(args), env=helpers.clean_env(env),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=dl(20))
    for pat in helpers.SANITIZER_PATTERNS:
        assert pat not in p.stderr, "txmail keys %s: sanitizer report:\n%s" % (" ".join(args), p.stderr)
    return p.returncode, p.stdout, p.stderr


def all_redis_text(redis):
    """Every key name and value (strings and hashes) in the test redis."""
    out = []
    for k in redis.cmd("KEYS", "*"):
        out.append(k)
        t = redis.cmd("TYPE", k)
        if t == "string":
            out.append(redis.cmd("GET", k) or "")
        elif t == "hash":
            out.extend(redis.cmd("HGETALL", k))
        elif t == "set":
            out.extend(redis.cmd("SMEMBERS", k))
        elif t == "zset":
            out.extend(redis.cmd("ZRANGE", k, 0, -1))
    return "\n".join(out)


def list_rows(binary, env):
    rc, out, err = keys_cli(binary, env, "list")
    assert rc == 0, "keys list: got exit %d, want 0; stderr: %s" % (rc, err)
    lines = out.splitlines()
    # issue 11 added PROJECT, SCOPE (after NAME) and ALLOW IP (last); test_key_scopes.py checks them
    assert lines and lines[0].split() == ["NAME", "PROJECT", "SCOPE", "CREATED", "LAST", "USED", "HASH",
                                          "PREFIX", "ALLOW", "IP"], \
        "keys list header: got %r" % (lines[:1],)
    rows = {}
    for ln in lines[1:]:
        f = ln.split()
        assert len(f) == 7, "keys list row: got %r, want 7 columns" % ln
        rows[f[0]] = {"created": f[3], "last_used": f[4], "hash_prefix": f[5]}
    return rows


def test_create_use_list_revoke(txmail_binary, redis, txmail, smtp_peer):
    env = {"TXMAIL_REDIS_URL": redis.url}
    rc, out, err = keys_cli(txmail_binary, env, "create", "--name", "ci")
    assert rc == 0, "keys create: got exit %d, want 0; stderr: %s" % (rc, err)
    key = out.strip()
    assert KEY_RE.match(key), "keys create stdout: got %r, want txm_ + 40 base62" % out
    assert out.count("\n") == 1, "keys create stdout: got %r, want exactly one line" % out
    assert "cannot be shown again" in err, "keys create stderr: got %r" % err

    digest = hashlib.sha256(key.encode()).hexdigest()
    stored = all_redis_text(redis)
    assert key not in stored and key[4:] not in stored, "the key itself is stored in Redis"
    assert digest in stored, "the key's SHA-256 hex is not stored in Redis"

    rc, out, err = keys_cli(txmail_binary, env, "create", "--name", "ci")
    assert rc == 1, "duplicate create: got exit %d, want 1" % rc
    assert "already exists" in err and out == "", "duplicate create: got out=%r err=%r" % (out, err)

    rows = list_rows(txmail_binary, env)
    assert set(rows) == {"ci"}, "keys list: got %r, want only ci" % sorted(rows)
    assert rows["ci"]["last_used"] == "never", "last used: got %r, want never" % rows["ci"]
    assert rows["ci"]["hash_prefix"] == digest[:12], "hash prefix: got %r, want %s" % (rows["ci"], digest[:12])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", rows["ci"]["created"]), rows["ci"]

    c = helpers.Client(txmail.port, key=key)
    try:
        r = c.send(MSG)
        assert r.status == 202, "send with a created key: got %r, want 202" % r
        mid = r.json["id"]
        smtp_peer.wait_for_rcpt("keys@example.com", dl(20))
        r = c.get("/v1/messages/" + mid)
        assert r.status == 200, "GET with a created key: got %r, want 200" % r

        rows = list_rows(txmail_binary, env)
        assert rows["ci"]["last_used"] != "never", "last used after a send: got %r" % rows["ci"]

        r = c.send(MSG, headers={"Authorization": "Bearer " + key[:-1] + ("A" if key[-1] != "A" else "B")})
        assert r.status == 401, "a key one character off: got %r, want 401" % r

        rc, out, err = keys_cli(txmail_binary, env, "revoke", "ci")
        assert rc == 0 and "revoked" in out, "revoke: got exit %d out=%r err=%r" % (rc, out, err)
        r = c.send(MSG)
        assert r.status == 401, "send after revoke: got %r, want 401" % r
        assert r.json["error"]["type"] == "unauthorized", r
    finally:
        c.close()

    rc, out, err = keys_cli(txmail_binary, env, "revoke", "ci")
    assert rc == 1 and "no API key named" in err, "second revoke: got exit %d err=%r" % (rc, err)
    rc, out, err = keys_cli(txmail_binary, env, "list")
    assert rc == 0 and "no API keys" in out, "list when empty: got exit %d out=%r" % (rc, out)


def test_usage_and_missing_redis(txmail_binary, workdir):
    env = {"TXMAIL_DATA_DIR": os.path.join(workdir, "nothing-here")}
    for args, want in ((("--help",), 0), (("create", "--help"), 0), (("list", "--help"), 0),
                       (("revoke", "--help"), 0), ((), 2), (("create",), 2),
                       (("create", "--name", "bad name"), 2), (("frobnicate",), 2)):
        rc, out, err = keys_cli(txmail_binary, env, *args)
        assert rc == want, "keys %s: got exit %d, want %d; stderr %r" % (" ".join(args), rc, want, err)
    rc, out, err = keys_cli(txmail_binary, env, "list")
    assert rc == 1 and "TXMAIL_REDIS_URL" in err, "no redis: got exit %d err=%r" % (rc, err)
    rc, out, err = keys_cli(txmail_binary, {"TXMAIL_REDIS_URL": "redis://127.0.0.1:%d" % helpers.free_port()},
                            "create", "--name", "x")
    assert rc == 1 and "cannot reach" in err and out == "", "redis down: got exit %d out=%r err=%r" % (rc, out, err)


def test_embedded_socket_without_url(txmail_binary, workdir):
    """With TXMAIL_REDIS_URL unset, the socket of a running `txmail run` is used."""
    data = os.path.join(workdir, "data")
    os.makedirs(os.path.join(data, "redis"))
    sock = os.path.join(data, "redis", "redis.sock")
    proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--save", "",
                             "--appendonly", "no", "--dir", os.path.join(data, "redis")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # answering, not only there: the socket file exists from bind(), before redis serves it
        # (make test once saw the CLI's one connect come too early)
        wait_until(lambda: os.path.exists(sock) and subprocess.run(
            ["redis-cli", "-s", sock, "PING"], capture_output=True, text=True,
            timeout=dl(5)).stdout.strip() == "PONG", dl(10), "redis on unix socket %s" % sock)
        env = {"TXMAIL_DATA_DIR": data}
        rc, out, err = keys_cli(txmail_binary, env, "create", "--name", "dev")
        assert rc == 0 and KEY_RE.match(out.strip()), "create: got exit %d out=%r err=%r" % (rc, out, err)
        assert "embedded redis" in err, "create stderr: got %r, want it to name the embedded redis" % err
        assert "dev" in list_rows(txmail_binary, env)
    finally:
        helpers.kill_group(proc)
        helpers.reap(proc, dl(5))


def test_rate_limit_per_key(txmail_binary, redis, txmail_factory):
    env = {"TXMAIL_REDIS_URL": redis.url}
    keys = {}
    for name in ("a", "b"):
        rc, out, err = keys_cli(txmail_binary, env, "create", "--name", name)
        assert rc == 0, "create %s: exit %d %s" % (name, rc, err)
        keys[name] = out.strip()
    tx = txmail_factory(extra_env={"TXMAIL_RATE_LIMIT": "1", "TXMAIL_RATE_BURST": "3"})
    ca, cb, ce = tx.client(), tx.client(), tx.client()
    ca.key, cb.key = keys["a"], keys["b"]
    try:
        for c, who in ((ca, "stored key a"), (ce, "env key")):
            got = [c.get(NO_SUCH_MSG).status for _ in range(4)]
            assert got[:3] == [404, 404, 404], "%s, first 3 (burst): got %r, want 404s" % (who, got)
            assert got[3] == 429, "%s, 4th quick request: got %r, want 429" % (who, got)
            r = c.get(NO_SUCH_MSG)
            assert r.status == 429 and r.json["error"]["type"] == "rate_limited", r
            ra = r.headers.get("retry-after", "")
            assert ra.isdigit() and int(ra) >= 1, "Retry-After: got %r, want whole seconds >= 1" % ra
        r = cb.get(NO_SUCH_MSG)
        assert r.status == 404, "key b after a was limited: got %r, want 404" % r
        r = cb.send(MSG)
        assert r.status == 202, "send with key b: got %r, want 202" % r
        # the bucket refills at 1 token/s
        wait_until(lambda: ca.get(NO_SUCH_MSG).status == 404, dl(5), "key a allowed again after refill",
                   interval=0.25)
    finally:
        for c in (ca, cb, ce):
            c.close()


def test_redis_down_env_key_still_authenticates(txmail_binary, redis, txmail):
    rc, out, err = keys_cli(txmail_binary, {"TXMAIL_REDIS_URL": redis.url}, "create", "--name", "s")
    assert rc == 0, err
    stored_key = out.strip()
    redis.kill9()
    ce = txmail.client()
    cs = helpers.Client(txmail.port, key=stored_key)
    try:
        r = cs.get(NO_SUCH_MSG)
        assert r.status == 503 and "API key" in r.json["error"]["message"], \
            "stored key, redis down: got %r, want 503 from authentication" % r
        assert r.headers.get("retry-after") == "1", r.headers
        r = ce.get(NO_SUCH_MSG)
        assert r.status == 503 and "API key" not in r.json["error"]["message"], \
            "env key, redis down: got %r, want past authentication (503 from the handler)" % r
        r = cs.get(NO_SUCH_MSG, headers={"Authorization": "Bearer nope"})
        assert r.status == 503, "unknown key, redis down: got %r, want 503 (cannot tell)" % r
    finally:
        ce.close()
        cs.close()
    redis.start()
