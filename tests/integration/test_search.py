"""test_search.py - GET /v1/messages (issue 17, point 1): a project's messages
newest first in cursor pages, filtered by status, tag, recipient, from and
creation time, on one partition and on four (TXMAIL_PARTITIONS).

Owns: the answers compared with what the test sent (every message exactly
once over all pages, in id order, newest first; each filter's set equal to
the set computed here from the sends and their statuses as GET shows
them; failed, a status with its own run in the index, too); a page that
looks at its budget of messages without a match (one delivered message,
a status without a run, under 2,100 scheduled ones: fewer than limit,
even none, and a next_cursor) and the paging that still finds it, while
one canceled message is found on the first page; another project's key
sees none of it; bad arguments get 422 naming the field; the spec's
schema for the answer (spec_check).

Must never: wait without a deadline, or assume an order the API does not
promise beyond "newest first by id".
"""
import time

import pytest

import helpers
import logparse
import spec_check
from helpers import dl, wait_until

P4 = {"TXMAIL_PARTITIONS": "4"}


def page_all(api, query, limit):
    """Every item of every page of GET /v1/messages?query, and the pages' sizes."""
    items, sizes, cur = [], [], None
    for _ in range(1000):
        q = "/v1/messages?limit=%d%s%s" % (limit, "&" + query if query else "",
                                          "&cursor=" + cur if cur else "")
        r = api.get(q)
        assert r.status == 200, "GET %s: %s %r" % (q, r.status, r.body)
        j = r.json
        assert set(j) == {"data", "next_cursor"}, j.keys()
        assert len(j["data"]) <= limit
        items += j["data"]
        sizes.append(len(j["data"]))
        cur = j["next_cursor"]
        if cur is None:
            return items, sizes
    raise AssertionError("more than 1000 pages for %r" % query)


def send_set(api, n, stamp):
    """n messages with tags, recipients and senders that vary; their ids in send order."""
    ids, meta = [], {}
    for i in range(n):
        to = ["r%d-%s@example.net" % (i % 5, stamp)]
        if i % 7 == 0:
            to.append("perm-s%d@example.net" % i)   # the peer refuses it (550): the message ends partial
        elif i % 11 == 5:
            to = ["perm-only%d@example.net" % i]    # refused alone: the message fails
        frm = "Sender %d <s%d-%s@example.com>" % (i % 3, i % 3, stamp)
        tags = ["even" if i % 2 == 0 else "odd", "t%d" % (i % 4)]
        r = api.send({"from": frm, "to": to, "subject": "search %d %s" % (i, stamp), "text": "x",
                      "tags": tags})
        assert r.status == 202, r
        ids.append(r.json["id"])
        meta[r.json["id"]] = {"to": to, "from": "s%d-%s@example.com" % (i % 3, stamp), "tags": tags, "i": i}
    return ids, meta


def settle(api, ids):
    """Wait until no message is queued or sending; their GET statuses."""
    final = {}

    def done():
        for mid in ids:
            if mid in final:
                continue
            r = api.get("/v1/messages/" + mid)
            assert r.status == 200, r
            if all(x["status"] not in ("queued", "sending", "deferred") for x in r.json["recipients"]):
                final[mid] = r.json["status"]
        return len(final) == len(ids)
    wait_until(done, dl(60), "every message delivered or failed", interval=0.1)
    return final


@pytest.mark.parametrize("env", [{}, P4], ids=["P1", "P4"])
def test_pages_and_filters(txmail_factory, smtp_peer, spec_validator, env):
    t = txmail_factory(extra_env=env)
    api = spec_check.CheckedClient(t.port, spec_validator, key=t.key)   # every answer against the spec
    stamp = "%x" % int(time.time() * 1000)
    before_ms = int(time.time() * 1000)
    ids, meta = send_set(api, 45, stamp)
    status = settle(api, ids)
    newest_first = sorted(ids, reverse=True)

    for limit in (7, 100):
        items, sizes = page_all(api, "", limit)
        got = [m["id"] for m in items]
        assert got == newest_first, "limit %d: got %d ids (%d distinct), want the 45 newest first" % (
            limit, len(got), len(set(got)))
        assert all(s == limit for s in sizes[:-1]), "limit %d: short pages %r without a filter" % (limit, sizes)
    one = items[0]
    assert set(one) >= {"id", "status", "created_at", "from", "subject", "priority", "tags", "metadata",
                        "recipients"}, one
    assert one["status"] == status[one["id"]] and one["tags"] == meta[one["id"]]["tags"], one

    def check(query, want_ids, what):
        items, _ = page_all(api, query, 6)
        got = [m["id"] for m in items]
        want = sorted(want_ids, reverse=True)
        assert got == want, "%s (%s): got %d, want %d: missing %r extra %r" % (
            what, query, len(got), len(want), sorted(set(want) - set(got))[:3], sorted(set(got) - set(want))[:3])

    check("tag=odd", [m for m in ids if "odd" in meta[m]["tags"]], "tag")
    check("recipient=R3-%s@Example.net" % stamp, [m for m in ids if "r3-%s@example.net" % stamp in meta[m]["to"]],
          "recipient, any case")
    check("from=s1-%s@example.com" % stamp, [m for m in ids if meta[m]["i"] % 3 == 1], "from")
    check("status=partial", [m for m in ids if status[m] == "partial"], "status partial")
    check("status=delivered", [m for m in ids if status[m] == "delivered"], "status delivered")
    check("status=partial&tag=t0", [m for m in ids if status[m] == "partial" and "t0" in meta[m]["tags"]],
          "status and tag")
    # failed has a run of its own ("s:failed"): the partial ones, with a failed recipient, are in it too
    failed = [m for m in ids if status[m] == "failed"]
    assert len(failed) >= 3, "the sends meant to fail: %r" % [status[m] for m in ids]
    check("status=failed", failed, "status failed")
    check("status=failed&tag=odd", [m for m in failed if "odd" in meta[m]["tags"]], "status failed and tag")
    check("status=failed&recipient=perm-only5@example.net", [m for m in failed if meta[m]["i"] == 5],
          "status failed and recipient")
    check("tag=even&recipient=r2-%s@example.net&from=s0-%s@example.com" % (stamp, stamp),
          [m for m in ids if meta[m]["i"] % 2 == 0 and "r2-%s@example.net" % stamp in meta[m]["to"] and
           meta[m]["i"] % 3 == 0],
          "tag, recipient and from")
    # the creation time: the first 20 sends against the rest
    r20 = api.get("/v1/messages/" + ids[20]).json["created_at"]
    check("created_before=" + r20, [m for m in ids if meta[m]["i"] < 20], "created_before")
    check("created_after=" + r20, [m for m in ids if meta[m]["i"] >= 20], "created_after")
    check("created_after=%s&created_before=%s" % (
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before_ms / 1000 - 60)), r20),
        [m for m in ids if meta[m]["i"] < 20], "a range")
    check("tag=nosuchtag", [], "no match")


def test_budget_and_other_projects(txmail_binary, redis, txmail_factory, smtp_peer, spec_validator):
    t = txmail_factory()
    api = spec_check.CheckedClient(t.port, spec_validator, key=t.key)
    far = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7 * 86400))
    # one delivered and one canceled message under 2,100 scheduled ones: the oldest two
    first = api.send({"from": "a@example.com", "to": "rare@example.net", "subject": "rare", "text": "x"})
    assert first.status == 202
    rare = first.json["id"]
    helpers.wait_status(api, rare, "delivered", dl(20))
    second = api.send({"from": "a@example.com", "to": "gone@example.net", "subject": "gone", "text": "x",
                       "send_at": far})
    assert second.status == 202
    gone = second.json["id"]
    assert api.request("DELETE", "/v1/messages/" + gone).status in (200, 202)
    for b in range(5):
        n = 420
        r = api.post_json("/v1/messages/batch", {"messages": [
            {"from": "a@example.com", "to": "many%d@example.net" % (b * n + i), "subject": "many",
             "text": "x", "send_at": far} for i in range(n)]})
        assert r.status == 202, r
    # delivered is common, so it has no run: the walk of every message meets its budget first
    pages, found, cur = 0, [], None
    while True:
        r = api.get("/v1/messages?status=delivered&limit=10" + ("&cursor=" + cur if cur else ""))
        assert r.status == 200, r
        pages += 1
        found += [m["id"] for m in r.json["data"]]
        cur = r.json["next_cursor"]
        if pages == 1:
            assert r.json["data"] == [] and cur is not None, (
                "the first page looked at its budget of 2,000 scheduled messages: want no match and a "
                "next_cursor, got %d and %r" % (len(r.json["data"]), cur))
        if cur is None:
            break
        assert pages < 10, "paging does not end"
    assert found == [rare], "status=delivered over 2,102 messages: got %r, want [%s]" % (found, rare)
    assert pages >= 2
    # canceled is rare: its own run, found on the first page, and the last
    r = api.get("/v1/messages?status=canceled&limit=10")
    assert r.status == 200, r
    assert ([m["id"] for m in r.json["data"]], r.json["next_cursor"]) == ([gone], None), \
        "status=canceled over 2,102 messages: got %r, want [%s] on one page" % (r.json, gone)
    r = api.get("/v1/messages?status=scheduled&limit=100")
    assert len(r.json["data"]) == 100 and r.json["next_cursor"] is not None, r.json["next_cursor"]
    # another project's key sees none of it, by any filter
    kb = helpers.make_key(txmail_binary, redis, "B")
    b = helpers.Client(t.port, key=kb)
    for q in ("", "status=canceled", "status=scheduled", "recipient=rare@example.net", "from=a@example.com"):
        items, _ = page_all(b, q, 100)
        assert items == [], "project B sees A's messages with %r: %d" % (q, len(items))
    r = b.send({"from": "b@example.com", "to": "rare@example.net", "subject": "B's", "text": "x"})
    assert r.status == 202
    items, _ = page_all(b, "recipient=rare@example.net", 100)
    assert [m["id"] for m in items] == [r.json["id"]]


@pytest.mark.parametrize("query,field", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"),
    ("cursor=bm90YWN1cnNvcg", "cursor"), ("status=sent", "status"),
    ("created_after=yesterday", "created_after"), ("created_before=2026-13-01T00:00:00Z", "created_before"),
    ("recipient=nobody", "recipient"), ("from=", "from"), ("tag=", "tag"),
])
def test_bad_arguments(txmail_factory, spec_validator, query, field):
    t = txmail_factory()
    r = spec_check.CheckedClient(t.port, spec_validator, key=t.key).get("/v1/messages?" + query)
    assert r.status == 422 and r.json["error"]["field"] == field, (query, r.status, r.body)


def test_sweep_removes_entries_of_expired_messages(txmail_factory, redis, smtp_peer):
    """A message hash that expired (deleted here, as its TTL would) leaves index entries;
    the scheduler's sweep (right after start, then every minute) removes them, keeps the rest."""
    t = txmail_factory(args=("api",))
    api = t.client()
    ids = []
    for i in range(6):
        r = api.send({"from": "Sweep <sweep@example.com>", "to": ["sw%d@example.net" % i, "all@example.net"],
                      "subject": "sweep %d" % i, "text": "x", "tags": ["sweep"]})
        assert r.status == 202, r
        ids.append(r.json["id"])
    ix = "txm{0}:ix:default"
    assert int(helpers.resp_cmd(redis.port, "ZCARD", ix)) == 6 * 5   # every message, from, tag, two recipients
    for mid in ids[:4]:
        helpers.resp_cmd(redis.port, "DEL", "txm{0}:msg:" + mid)
    w = txmail_factory(args=("worker",), http=False, extra_env={"TXMAIL_RELAY": "smtp://127.0.0.1:1"})

    def kept():
        # the living ones' deferrals add "s:deferred" members (ZLEXCOUNT: the run from "s:" to "s;")
        s_run = int(helpers.resp_cmd(redis.port, "ZLEXCOUNT", ix, "[s:", "(s;"))
        return int(helpers.resp_cmd(redis.port, "ZCARD", ix)) - s_run
    wait_until(lambda: kept() == 2 * 5, dl(20), "the sweep left the 2 living messages' entries",
               diag=lambda: helpers.resp_cmd(redis.port, "ZCARD", ix))
    assert w.alive()
    got = [m["id"] for m in page_all(api, "recipient=all@example.net", 100)[0]]
    assert got == sorted(ids[4:], reverse=True), got


@pytest.mark.parametrize("env", [{}, P4], ids=["P1", "P4"])
def test_backfill_indexes_messages_stored_without_index(txmail_factory, redis, env):
    """Messages a release without the search index stored (here: the index
    deleted) are put in it by the scheduler's backfill, with the rare
    statuses they have now; once each partition's scan has ended it is
    not scanned again."""
    t = txmail_factory(args=("api",), extra_env=env)
    api = t.client()
    far = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7 * 86400))
    ids = []
    for i in range(30):
        r = api.send({"from": "Old <old%d@example.com>" % (i % 2), "to": ["o%d@example.net" % i],
                      "subject": "old %d" % i, "text": "x", "tags": ["t%d" % (i % 3)], "send_at": far})
        assert r.status == 202, r
        ids.append(r.json["id"])
    assert api.request("DELETE", "/v1/messages/" + ids[7]).status in (200, 202)
    parts = 4 if env else 1
    for k in range(parts):
        helpers.resp_cmd(redis.port, "DEL", "txm{%d}:ix:default" % k, "txm{%d}:ix:backfill" % k)
    assert page_all(api, "", 100)[0] == [], "the index was not emptied"
    # a worker's scheduler backfills (the relay is never reached: every message is scheduled)
    w = txmail_factory(args=("worker",), http=False, extra_env=dict(env, TXMAIL_RELAY="smtp://127.0.0.1:1"))
    wait_until(lambda: [m["id"] for m in page_all(api, "", 100)[0]] == sorted(ids, reverse=True), dl(20),
               "every message listed again", diag=lambda: len(page_all(api, "", 100)[0]))
    assert [m["id"] for m in page_all(api, "status=canceled", 100)[0]] == [ids[7]]
    assert [m["id"] for m in page_all(api, "tag=t1", 10)[0]] == \
        sorted([m for i, m in enumerate(ids) if i % 3 == 1], reverse=True)
    assert [m["id"] for m in page_all(api, "recipient=O12@example.net", 10)[0]] == [ids[12]]
    assert [m["id"] for m in page_all(api, "from=old1@example.com&status=scheduled", 100)[0]] == \
        sorted([m for i, m in enumerate(ids) if i % 2 == 1 and i != 7], reverse=True)
    for k in range(parts):
        wait_until(lambda: helpers.resp_cmd(redis.port, "HGET", "txm{%d}:ix:backfill" % k, "done") == "1",
                   dl(10), "partition %d's scan marked ended" % k)
    # the next round finds every scan ended and says what was done, once
    lines = wait_until(lambda: logparse.records(w.log, "search index backfilled"), dl(10),
                       "the backfill's log line")
    assert len(lines) == 1 and int(lines[0]["messages"]) == 30, lines
    assert w.alive()
