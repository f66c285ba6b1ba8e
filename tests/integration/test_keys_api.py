"""test_keys_api.py - GET /v1/keys (issue 17, point 1: every list endpoint is
paginated the same way): the keys made with `txmail keys create`, by name,
in pages; a key of scope full sees its project's keys only, admin every
project's (or one with ?project=); no secret ever in the answer.

Must never: print a key's secret, or wait without a deadline.
"""
import subprocess

import helpers
import spec_check
from helpers import dl


def create(binary, redis, name, *args):
    p = subprocess.run([binary, "keys", "create", "--name", name] + list(args),
                       env=helpers.clean_env({"TXMAIL_REDIS_URL": redis.url}),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=dl(20))
    assert p.returncode == 0, "keys create %s: exit %d: %s" % (name, p.returncode, p.stderr)
    return p.stdout.strip()


def page_all(c, query, limit):
    items, cur = [], None
    for _ in range(100):
        r = c.get("/v1/keys?limit=%d%s%s" % (limit, "&" + query if query else "", "&cursor=" + cur if cur else ""))
        assert r.status == 200, (r.status, r.body)
        assert len(r.json["data"]) <= limit
        items += r.json["data"]
        cur = r.json["next_cursor"]
        if cur is None:
            return items
    raise AssertionError("paging does not end")


def test_keys_listed_by_project_and_scope(txmail_binary, redis, txmail_factory, spec_validator):
    secrets = {}
    for n in ("a1", "a2", "a3", "a4", "a5"):
        secrets[n] = create(txmail_binary, redis, n, "--project", "A")
    secrets["b1"] = create(txmail_binary, redis, "b1", "--project", "B", "--allow-ip", "10.0.0.0/8,127.0.0.1/32")
    secrets["boss"] = create(txmail_binary, redis, "boss", "--project", "ops", "--scope", "admin")
    secrets["sender"] = create(txmail_binary, redis, "sender", "--project", "A", "--scope", "send")
    t = txmail_factory()

    def client(name):
        return spec_check.CheckedClient(t.port, spec_validator, key=secrets[name])
    a = client("a1")
    got = page_all(a, "", 2)
    assert [k["name"] for k in got] == ["a1", "a2", "a3", "a4", "a5", "sender"], got
    assert all(k["project"] == "A" for k in got)
    sender = [k for k in got if k["name"] == "sender"][0]
    assert sender["scope"] == "send" and sender["allow_ip"] == [] and sender["last_used_at"] is None, sender
    assert [k for k in got if k["name"] == "a1"][0]["last_used_at"] is not None, "a1 just called"
    boss = client("boss")
    everyone = page_all(boss, "", 3)
    assert [k["name"] for k in everyone] == ["a1", "a2", "a3", "a4", "a5", "b1", "boss", "sender"], everyone
    b1 = [k for k in everyone if k["name"] == "b1"][0]
    assert b1["allow_ip"] == ["10.0.0.0/8", "127.0.0.1/32"] and b1["project"] == "B", b1
    assert [k["name"] for k in page_all(boss, "project=B", 100)] == ["b1"]
    text = "".join(repr(page_all(boss, "", 100)))
    for name, sec in secrets.items():
        assert sec not in text, "the secret of %s is in the answer" % name
        assert sec[4:20] not in text
    # scope send may not list keys; another project's cursor is still only a place in the names
    r = client("sender").get("/v1/keys")
    assert r.status == 403, r
    r = a.get("/v1/keys?cursor=bm9wZQ")
    assert r.status == 422 and r.json["error"]["field"] == "cursor", r.body
