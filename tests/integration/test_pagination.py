"""test_pagination.py - paged GET /v1/templates and GET /v1/suppressions (issue 17, point 1's lists).

Owns: 250 items of each list paged with limit 7 and 100 (and the default):
every item exactly once, in the documented order (templates by name,
suppressions by address, bytewise), every page but the last full,
next_cursor null on the last; limit not 1..100 and a cursor that is not
one, or is another list's, answer 422 naming the field; a list written
without its index (an older release, a copy) pages the same (the index is
rebuilt), and with TXMAIL_PARTITIONS=3 partition 0's list is the one read
(a suppression added over the API is in every partition's list). Every
answer goes through the spec check.

Must never: wait without a deadline.
"""
import urllib.parse

import pytest

import spec_check

N = 250


def page_all(c, path, limit):
    """Every item of the list at path, following next_cursor; the pages' sizes too."""
    items, sizes, cursor = [], [], None
    for _ in range(N + 2):
        q = {}
        if limit is not None:
            q["limit"] = str(limit)
        if cursor is not None:
            q["cursor"] = cursor
        r = c.get(path + ("?" + urllib.parse.urlencode(q) if q else ""))
        assert r.status == 200, "GET %s %r: got %r" % (path, q, r)
        assert set(r.json) == {"data", "next_cursor"}, "got members %r" % sorted(r.json)
        items.extend(r.json["data"])
        sizes.append(len(r.json["data"]))
        cursor = r.json["next_cursor"]
        if cursor is None:
            return items, sizes
        assert isinstance(cursor, str) and cursor, "next_cursor %r" % cursor
    raise AssertionError("%s with limit %s: no last page after %d pages" % (path, limit, N + 2))


def check_pages(items, sizes, key, want, limit):
    got = [it[key] for it in items]
    assert len(got) == len(set(got)), "limit %s: an item on two pages" % limit
    assert got == want, "limit %s: got %d items %r..., want %d in order" % (limit, len(got), got[:5], len(want))
    per = limit or 100
    assert all(s == per for s in sizes[:-1]) and 0 < sizes[-1] <= per, "limit %s: page sizes %r" % (limit, sizes)


def bad_requests(c, path, other_cursor):
    for lim in ("0", "101", "-1", "x", "1.5", "", "07a", "1e2"):
        r = c.get(path + "?limit=" + urllib.parse.quote(lim))
        assert r.status == 422 and r.json["error"]["field"] == "limit", "limit=%r: got %r" % (lim, r)
    for cur in ("!!", "abc", "x" * 2000, other_cursor):
        r = c.get(path + "?cursor=" + urllib.parse.quote(cur))
        assert r.status == 422 and r.json["error"]["field"] == "cursor", "cursor=%r: got %r" % (cur[:40], r)


def test_templates_paged(capi):
    # names chosen so that bytewise order differs from a case-insensitive or numeric one
    names = ["t-%03d" % i for i in range(0, N - 50)] + ["T_%02d" % i for i in range(25)] + \
            ["t%d" % i for i in range(25)]
    for n in reversed(names):
        r = capi.put_json("/v1/templates/" + n, {"subject": "s " + n, "text": "x"})
        assert r.status == 201, "PUT %s: got %r" % (n, r)
    want = sorted(names, key=lambda s: s.encode())
    for limit in (7, 100, None):
        items, sizes = page_all(capi, "/v1/templates", limit)
        check_pages(items, sizes, "name", want, limit)
        assert all(it["subject"] == "s " + it["name"] for it in items), "a page mixed up its items"
    first = capi.get("/v1/templates?limit=1").json
    assert first["data"][0]["name"] == want[0] and first["next_cursor"], first
    # a deleted item is just gone; the cursor (a key, not an offset) still works
    cur = first["next_cursor"]
    assert capi.delete("/v1/templates/" + want[1]).status == 204
    r = capi.get("/v1/templates?limit=2&cursor=" + cur)
    assert [t["name"] for t in r.json["data"]] == want[2:4], r.json
    sup = capi.get("/v1/suppressions?limit=1")
    assert sup.status == 200 and sup.json == {"data": [], "next_cursor": None}, sup.json
    bad_requests(capi, "/v1/templates", _cursor_of(capi, "/v1/suppressions", "a@x.example"))


def _cursor_of(c, path, email):
    """A real next_cursor of the suppression list: two entries, limit 1."""
    for e in (email, "z" + email):
        assert c.post_json(path, {"email": e}).status in (200, 201)
    cur = c.get(path + "?limit=1").json["next_cursor"]
    for e in (email, "z" + email):
        assert c.delete(path + "/" + urllib.parse.quote(e)).status == 204
    return cur


@pytest.mark.parametrize("partitions", ["1", "3"])
def test_suppressions_paged(txmail_factory, redis, spec_validator, partitions):
    t = txmail_factory(extra_env={"TXMAIL_PARTITIONS": partitions})
    c = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
    try:
        emails = ["user%03d@example.com" % i for i in range(N - 10)] + ["User.Upper%d@Example.COM" % i
                                                                        for i in range(10)]
        for e in emails:
            r = c.post_json("/v1/suppressions", {"email": e, "reason": "manual"})
            assert r.status in (200, 201), "POST %s: got %r" % (e, r)
        want = sorted((e.lower() for e in emails), key=lambda s: s.encode())
        for limit in (7, 100, None):
            items, sizes = page_all(c, "/v1/suppressions", limit)
            check_pages(items, sizes, "email", want, limit)
        # every partition's list holds the same addresses (partition 0's is read)
        lists = [k for k in redis.cmd("KEYS", "txm{*}:supp")]
        assert len(lists) == int(partitions), "suppression lists %r, want one per partition" % lists
        for k in lists:
            assert redis.cmd("HLEN", k) == N, "%s: HLEN %s, want %d" % (k, redis.cmd("HLEN", k), N)
        # a list without its index (as an older release leaves it) pages the same: it is rebuilt
        idx = [k for k in redis.cmd("KEYS", "txm{*}:suppidx")]
        assert "txm{0}:suppidx" in idx, "no index beside partition 0's list: %r" % idx
        redis.cmd("DEL", "txm{0}:suppidx")
        redis.cmd("HSET", "txm{0}:supp", "added.behind@example.com", "5:manual")
        want = sorted(want + ["added.behind@example.com"], key=lambda s: s.encode())
        items, sizes = page_all(c, "/v1/suppressions", 100)
        check_pages(items, sizes, "email", want, 100)
        assert redis.cmd("ZCARD", "txm{0}:suppidx") == N + 1
        # a deleted address leaves every page, and the index
        assert c.delete("/v1/suppressions/" + urllib.parse.quote(want[0])).status == 204
        r = c.get("/v1/suppressions?limit=2")
        assert [s["email"] for s in r.json["data"]] == want[1:3], r.json
        assert redis.cmd("ZCARD", "txm{0}:suppidx") == N
        assert c.put_json("/v1/templates/one", {"text": "x"}).status == 201
        assert c.put_json("/v1/templates/two", {"text": "x"}).status == 201
        tcur = c.get("/v1/templates?limit=1").json["next_cursor"]
        bad_requests(c, "/v1/suppressions", tcur)
    finally:
        c.close()
