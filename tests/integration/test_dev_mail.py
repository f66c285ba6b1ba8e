"""test_dev_mail.py - the captured-mail API of `txmail run --dev` (issue 12, item 3).

Owns: a real `txmail run --dev` (embedded redis-server, its capture sink)
on random loopback ports with a temporary TXMAIL_DATA_DIR; three messages
sent through POST /v1/messages (text only; text + HTML with a tracking
pixel, a non-ASCII subject, an attachment and an inline image; a third for
paging), delivered by the worker to the dev sink, then read back through
GET /dev/mail (newest first, the fields, ?limit= and ?before= paging, ?q=),
GET /dev/mail/{id} (headers, text, html, attachments, raw source equal to
the file), /raw and /attachments/{n} (bytes equal to what was sent), the
attempts that must not reach a file (path traversal, a symlink planted in
the mail directory, malformed ids, a bad attachment index), 401 without a
key, 404 for a key of another project (the captured mail is the dev
project's, "default"), 200 for an admin key, DELETE /dev/mail; and outside
dev mode every /dev/mail route is a 404, with a key or without.

Must never: use fixed ports, wait without a deadline, or leave the dev
redis-server behind.
"""

import base64
import json
import os
import signal
import subprocess

import pytest

import helpers
import spec_check
from helpers import Txmail, dl, free_port, read_text, wait_until

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def start_dev(binary, workdir, register_log, name="dev"):
    """A `txmail run --dev` in its own data dir; returns (Txmail with the dev key, data dir)."""
    data = os.path.join(workdir, name + "-data")
    os.makedirs(data)
    env = helpers.clean_env({
        "TXMAIL_DATA_DIR": data,
        "TXMAIL_LISTEN": "127.0.0.1:%d" % free_port(),
        "TXMAIL_SINK_LISTEN": "127.0.0.1:%d" % free_port(),
        "TXMAIL_LOG_LEVEL": "info",
    })
    port = int(env["TXMAIL_LISTEN"].rsplit(":", 1)[1])
    logp = os.path.join(workdir, name + ".log")
    register_log("txmail run --dev log", logp)
    t = Txmail(binary, ("run", "--dev"), env, logp, port=port, name="txmail run --dev")
    t.data = data
    t.start()
    wait_until(lambda: "curl -sS" in read_text(logp), dl(10), "the dev banner",
               diag=lambda: helpers.tail(logp, 30))
    with open(os.path.join(data, "dev-api-key")) as f:
        t.key = f.read().strip()
    return t


def stop_dev(t):
    t.stop()
    for pid in helpers.find_redis_servers(mention=t.data):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not t.problems, "txmail run --dev: %s" % t.problems


@pytest.fixture
def dev(txmail_binary, workdir, register_log):
    t = start_dev(txmail_binary, workdir, register_log)
    try:
        yield t
    finally:
        stop_dev(t)


def make_key(t, name, *args):
    p = subprocess.run([t.binary, "keys", "create", "--name", name] + list(args),
                       env=helpers.clean_env({"TXMAIL_DATA_DIR": t.data}),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=dl(20))
    assert p.returncode == 0, "keys create --name %s: exit %d: %s" % (name, p.returncode, p.stderr)
    return p.stdout.strip()


def b64(b):
    return base64.b64encode(b).decode()


def wait_captured(c, n):
    last = {}

    def enough():
        r = last["r"] = c.get("/dev/mail?limit=100")
        return r.status == 200 and r.json["total"] >= n
    wait_until(enough, dl(20), "%d captured messages" % n, interval=0.05, diag=lambda: last.get("r"))
    return last["r"].json


def send_three(c):
    msgs = [
        {"from": "Dev <dev@example.com>", "to": "plain@example.com", "subject": "plain one",
         "text": "hello plain\nsecond line"},
        {"from": "Shop <shop@example.com>", "to": "Kunde <kunde@example.com>",
         "subject": "Grüße ✓ your order",
         "text": "order text", "html": "<p>Hi <b>there</b><img src=\"http://127.0.0.1:9/pixel\"></p>"
                                      "<img src=\"cid:logo\">",
         "attachments": [{"filename": "Rechnung März.pdf", "content": b64(PDF),
                          "content_type": "application/pdf"},
                         {"filename": "logo.png", "content": b64(PNG), "content_type": "image/png",
                          "content_id": "logo"}]},
        {"from": "dev@example.com", "to": "third@example.com", "subject": "third", "text": "3"},
    ]
    ids = []
    for m in msgs:
        r = c.send(m)
        assert r.status == 202, "POST /v1/messages: got %r" % r
        ids.append(r.json["id"])
    return msgs


def test_dev_mail_api(dev, spec_validator):
    # every answer but an attachment's bytes is checked against api-spec/openapi.yaml
    c = spec_check.CheckedClient(dev.port, spec_validator, key=dev.key)
    plain_c = dev.client()
    send_three(c)
    listing = wait_captured(c, 3)
    items = listing["data"]
    files = sorted(f[:-4] for f in os.listdir(os.path.join(dev.data, "mail")) if f.endswith(".eml"))
    assert sorted(i["id"] for i in items) == files, "ids %r, files %r" % ([i["id"] for i in items], files)
    key = [tuple(int(x) for x in i["id"].split("-")) for i in items]
    assert key == sorted(key, reverse=True), "not newest first: %r" % key
    times = [i["time"] for i in items]
    assert times == sorted(times, reverse=True), "times not newest first: %r" % times
    by_subj = {i["subject"]: i for i in items}
    assert set(by_subj) == {"plain one", "Grüße ✓ your order", "third"}, "subjects: %r" % list(by_subj)
    shop = by_subj["Grüße ✓ your order"]
    assert shop["from"] == "Shop <shop@example.com>" and shop["to"] == "Kunde <kunde@example.com>", shop
    assert shop["size"] == os.path.getsize(os.path.join(dev.data, "mail", shop["id"] + ".eml")), shop
    assert shop["time"].endswith("Z") and shop["time"][:2] == "20", shop
    assert set(shop) == {"id", "from", "to", "subject", "time", "size"}, shop

    # paging: limit + before, and the end of the list
    r = c.get("/dev/mail?limit=2")
    assert r.status == 200 and [i["id"] for i in r.json["data"]] == [i["id"] for i in items[:2]], r
    assert r.json["next_before"] == items[1]["id"], r.json
    r = c.get("/dev/mail?limit=2&before=" + r.json["next_before"])
    assert [i["id"] for i in r.json["data"]] == [items[2]["id"]] and r.json["next_before"] is None, r.json
    # search: from, to or subject, any case
    for q, want in (("PLAIN", {"plain one"}), ("kunde", {"Grüße ✓ your order"}), ("Grüße", {"Grüße ✓ your order"}),
                    ("dev@example", {"plain one", "third"}), ("nothing-like-it", set())):
        r = c.get("/dev/mail?q=" + helpers_quote(q))
        assert r.status == 200 and {i["subject"] for i in r.json["data"]} == want, "q=%s: got %r" % (q, r)
    for bad in ("limit=0", "limit=101", "limit=x", "before=abc", "before=1-01", "q=" + "x" * 201):
        r = c.get("/dev/mail?" + bad)
        assert r.status == 422 and r.json["error"]["type"] == "validation_error", "%s: got %r" % (bad, r)

    # one message: headers, bodies, attachments, raw source
    path = os.path.join(dev.data, "mail", shop["id"] + ".eml")
    with open(path, "rb") as f:
        raw = f.read()
    r = c.get("/dev/mail/" + shop["id"])
    assert r.status == 200, r
    j = r.json
    assert j["raw"] == raw.decode("utf-8"), "raw differs from the file"
    assert j["subject"] == "Grüße ✓ your order" and j["truncated"] is False, j["subject"]
    assert j["text"].rstrip("\n") == "order text", "text: %r" % j["text"]
    assert "http://127.0.0.1:9/pixel" in j["html"] and "<b>there</b>" in j["html"], "html: %r" % j["html"]
    names = {h["name"].lower() for h in j["headers"]}
    assert {"from", "to", "subject", "message-id", "date", "mime-version"} <= names, names
    subj_hdr = [h["value"] for h in j["headers"] if h["name"].lower() == "subject"]
    assert subj_hdr == ["Grüße ✓ your order"], subj_hdr
    atts = j["attachments"]
    assert [a["index"] for a in atts] == [0, 1], "attachment indexes: %r" % atts
    got = sorted((a["name"], a["type"], a["size"], a.get("content_id")) for a in atts)
    want = [("Rechnung März.pdf", "application/pdf", len(PDF), None), ("logo.png", "image/png", len(PNG), "logo")]
    assert got == want, "attachments: got %r, want %r" % (got, want)
    for a in atts:
        r = plain_c.get("/dev/mail/%s/attachments/%d" % (shop["id"], a["index"]))
        body = PDF if a["name"].endswith(".pdf") else PNG
        assert r.status == 200 and r.body == body, "attachment %d: got %s, %d bytes" % (
            a["index"], r.status, len(r.body))
        assert r.headers.get("content-type") == a["type"], r.headers
        disp = r.headers.get("content-disposition", "")
        assert disp.startswith("attachment;") and "filename*=UTF-8''" in disp, disp
        assert r.headers.get("x-content-type-options") == "nosniff", r.headers
    if any(a["name"] == "Rechnung März.pdf" for a in atts):
        i = [a["index"] for a in atts if a["name"].endswith(".pdf")][0]
        disp = plain_c.get("/dev/mail/%s/attachments/%d" % (shop["id"], i)).headers["content-disposition"]
        assert "Rechnung%20M%C3%A4rz.pdf" in disp, disp
    r = c.get("/dev/mail/%s/attachments/2" % shop["id"])
    assert r.status == 404, "attachment 2 of 2: got %r" % r
    for bad in ("x", "-1", "00000", "1e3"):
        r = c.get("/dev/mail/%s/attachments/%s" % (shop["id"], bad))
        assert r.status == 404, "attachment %s: got %r" % (bad, r)
    r = c.get("/dev/mail/%s/raw" % shop["id"])
    assert r.status == 200 and r.body == raw, "raw: got %s, %d bytes" % (r.status, len(r.body))
    assert r.headers.get("content-type") == "message/rfc822", r.headers
    plain = by_subj["plain one"]
    j = c.get("/dev/mail/" + plain["id"]).json
    assert j["text"].rstrip("\n") == "hello plain\nsecond line" and j["html"] is None and j["attachments"] == [], j

    # what must never reach a file: traversal, symlinks, names not made by the sink
    secret_path = os.path.join(dev.data, "dev-api-key")
    os.symlink(secret_path, os.path.join(dev.data, "mail", "1700000000000-777.eml"))
    with open(os.path.join(dev.data, "mail", "tmp", "1700000000000-778.eml"), "w") as f:
        f.write("Subject: half\r\n\r\nnot renamed yet\r\n")
    for p in ("/dev/mail/..%2Fdev-api-key", "/dev/mail/../dev-api-key", "/dev/mail/%2e%2e",
              "/dev/mail/..", "/dev/mail/1700000000000-777", "/dev/mail/1700000000000-777/raw",
              "/dev/mail/1700000000000-778", "/dev/mail/tmp%2F1700000000000-778",
              "/dev/mail/" + shop["id"] + ".eml", "/dev/mail/0" + shop["id"], "/dev/mail/1-2-3",
              "/dev/mail/-1", "/dev/mail/1-", "/dev/mail/%00", "/dev/mail/" + "9" * 20 + "-1",
              "/dev/mail/..%2F..%2Fdev-api-key/raw", "/dev/mail/1-1%2F..%2F..%2Fdev-api-key"):
        r = plain_c.get(p)   # most of these paths are no route of the spec
        assert r.status == 404, "%s: got %r" % (p, r)
        assert dev.key.encode() not in r.body and b"not renamed" not in r.body, "%s leaked: %r" % (p, r)
    r = c.get("/dev/mail/1700000000000-777")
    assert r.status == 404, "a symlink in the mail dir: got %r" % r
    missing = c.get("/dev/mail/1-1")
    assert missing.status == 404 and missing.json["error"]["type"] == "not_found", missing
    for p in ("/dev/mail/abc", "/dev/mail/01-1"):
        r = c.get(p)
        assert r.status == 404 and r.body == missing.body, "%s: got %r, want the missing one's 404" % (p, r)

    # keys: none, wrong, another project's, an admin's
    for h in ({}, {"Authorization": "Bearer nope"}):
        r = c.request("GET", "/dev/mail", headers=h, auth=False)
        assert r.status == 401, "GET /dev/mail with %r: got %r" % (h, r)
        r = c.request("GET", "/dev/mail/" + shop["id"], headers=h, auth=False)
        assert r.status == 401, "GET one with %r: got %r" % (h, r)
    other = helpers.Client(dev.port, key=make_key(dev, "other", "--project", "other"))
    r404 = plain_c.get("/dev/nothing")
    for p in ("/dev/mail", "/dev/mail/" + shop["id"], "/dev/mail/%s/raw" % shop["id"]):
        r = other.get(p)
        assert r.status == 404 and r.body == r404.body, "%s for project other: got %r" % (p, r)
    admin = helpers.Client(dev.port, key=make_key(dev, "root", "--project", "other", "--scope", "admin"))
    r = admin.get("/dev/mail")
    assert r.status == 200 and r.json["total"] == 4, "admin key: got %r" % r   # 3 + the symlink's name
    reader = helpers.Client(dev.port, key=make_key(dev, "reader", "--project", "default", "--scope", "read"))
    assert reader.get("/dev/mail").status == 200
    r = reader.request("DELETE", "/dev/mail")
    assert r.status == 403, "DELETE with a read key: got %r" % r

    # bounded reads: a 17 MiB file is shown from its first 16 MiB, /raw refuses it
    big = os.path.join(dev.data, "mail", "1700000000001-1.eml")
    with open(big, "wb") as f:
        f.write(b"Subject: big\r\nContent-Type: text/plain\r\n\r\n" + b"x" * (17 << 20))
    r = plain_c.get("/dev/mail/1700000000001-1")   # 16 MiB of JSON: not through the validator
    assert r.status == 200 and r.json["truncated"] is True and r.json["size"] == os.path.getsize(big), \
        "17 MiB: got %s truncated=%r" % (r.status, (r.json or {}).get("truncated"))
    assert len(r.json["raw"]) <= 16 << 20 and r.json["subject"] == "big", len(r.json["raw"])
    r = plain_c.get("/dev/mail/1700000000001-1/raw")
    assert r.status == 413 and r.json["error"]["type"] == "payload_too_large", "17 MiB raw: got %r" % r

    r = c.request("DELETE", "/dev/mail")
    assert r.status == 200 and r.json["deleted"] == 5, "DELETE /dev/mail: got %r" % r
    r = c.get("/dev/mail")
    assert r.status == 200 and r.json == {"data": [], "total": 0, "next_before": None}, r
    assert os.path.exists(secret_path), "DELETE followed the symlink"
    assert os.path.exists(os.path.join(dev.data, "mail", "tmp", "1700000000000-778.eml"))
    for x in (other, admin, reader, plain_c):
        x.close()
    c.close()


def helpers_quote(s):
    from urllib.parse import quote
    return quote(s, safe="")


def test_dev_mail_absent_outside_dev_mode(txmail):
    c = txmail.client()
    r404 = c.get("/no/such/path")
    assert r404.status == 404, r404
    for method, p in (("GET", "/dev/mail"), ("GET", "/dev/mail/1700000000000-1"),
                      ("GET", "/dev/mail/1700000000000-1/raw"),
                      ("GET", "/dev/mail/1700000000000-1/attachments/0"), ("DELETE", "/dev/mail")):
        for auth in (True, False):
            r = c.request(method, p, auth=auth)
            assert r.status == 404 and r.body == r404.body, "%s %s (key: %s) without --dev: got %r" % (
                method, p, auth, r)
    c.close()


# --- the viewer, in headless Chromium (tests/ui/devmail.mjs) -------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UI_DIR = os.path.join(REPO, "tests", "ui")
ARTIFACTS = os.path.join(REPO, "build", "artifacts", "devmail")
CHROMIUM = "/usr/bin/chromium"


class PixelServer:
    """An HTTP server on loopback that records every request: what a captured
    mail references (tracking pixel, styles, fonts, frames) must never reach it."""

    def __init__(self):
        import http.server
        import threading
        hits = self.hits = []

        class H(http.server.BaseHTTPRequestHandler):
            def _any(self):
                hits.append(self.command + " " + self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.send_header("Content-Length", "0")
                self.end_headers()
            do_GET = do_POST = do_HEAD = _any

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.url = "http://127.0.0.1:%d/" % self.port
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def tracking_html(pix, self_probe):
    return ("<html><head>"
            "<link rel=\"stylesheet\" href=\"{p}style.css\"><link rel=\"prefetch\" href=\"{p}prefetch\">"
            "<style>@import url(\"{p}import.css\"); @font-face{{font-family:x;src:url({p}font.woff)}}"
            " body{{font-family:x,sans-serif;background:url({p}bg.png)}}</style>"
            "<meta http-equiv=\"refresh\" content=\"0;url={p}refresh\">"
            "</head><body><h1>Your order</h1><p>Thanks for your order! <img src=\"{p}pixel?u=1\" width=1 height=1></p>"
            "<p><img id=\"logo\" src=\"cid:logo\" width=\"32\" height=\"32\" alt=\"logo\"> inline logo</p>"
            "<img src=\"{s}\" alt=\"\">"
            "<script>document.body.insertAdjacentHTML('beforeend','<p id=ran>ran</p>');parent.pwned=1;</script>"
            "<img src=\"x\" onerror=\"parent.pwned=1\"><iframe src=\"{p}frame\"></iframe>"
            "<form action=\"{p}form\" method=\"post\"><button>go</button></form>"
            "<p><a href=\"{p}link\">a link</a></p></body></html>").format(p=pix, s=self_probe)


def test_dev_mail_viewer_in_chromium(dev):
    if not os.path.exists(CHROMIUM):
        pytest.fail("no %s: run make deps-test (Debian package chromium)" % CHROMIUM)
    if not os.path.isdir(os.path.join(UI_DIR, "node_modules", "playwright-core")):
        pytest.fail("no tests/ui/node_modules/playwright-core: run make spec-tools")
    pix = PixelServer()
    try:
        c = dev.client()
        # an image on txmail's own origin: the page's CSP allows 'self', only the frame's own CSP refuses it
        self_probe = "http://127.0.0.1:%d/probe-pixel-from-mail" % dev.port
        subject = "Your order <b id=\"pwn-subject\">tracking</b> test"
        for m in ({"from": "a@example.com", "to": "first@example.com", "subject": "first", "text": "one"},
                  {"from": "Shop <shop@example.com>", "to": "buyer@example.com", "subject": subject,
                   "text": "plain part of the order", "html": tracking_html(pix.url, self_probe),
                   "attachments": [{"filename": "report.txt", "content": b64(b"attached report\n"),
                                    "content_type": "text/plain"},
                                   {"filename": "logo.png", "content": b64(PNG), "content_type": "image/png",
                                    "content_id": "logo"}]},
                  {"from": "a@example.com", "to": "third@example.com", "subject": "third", "text": "three"}):
            r = c.send(m)
            assert r.status == 202, "POST /v1/messages: got %r" % r
        wait_captured(c, 3)
        c.close()
        env = helpers.clean_env({
            "MAIL_URL": "http://127.0.0.1:%d" % dev.port,
            "MAIL_KEY": dev.key,
            "MAIL_ARTIFACTS": ARTIFACTS,
            "MAIL_COUNT": "3",
            "MAIL_HTML_SUBJECT": subject,
            "MAIL_PIXEL": pix.url + "," + self_probe,
            "MAIL_TIMEOUT_MS": str(int(dl(10) * 1000)),
        })
        env["HOME"] = os.path.join(os.path.dirname(dev.log), "home")   # chromium's profile bits
        os.makedirs(env["HOME"], exist_ok=True)
        p = subprocess.run(["node", os.path.join(UI_DIR, "devmail.mjs")], env=env, cwd=UI_DIR,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=dl(60))
        text = p.stdout.decode("utf-8", "replace")
        fail = [ln for ln in text.splitlines() if ln.startswith("FAIL: ")]
        assert p.returncode == 0 and not fail, "devmail.mjs: %s\n%s" % (fail, text[-6000:])
        report = json.loads(text.strip().splitlines()[-1])
        helpers.log("devmail.mjs report: %s" % json.dumps(report)[:3000])
        assert pix.hits == [], "the pixel server got requests: %r" % pix.hits
        probes = [ln for ln in read_text(dev.log).splitlines() if "probe-pixel-from-mail" in ln]
        assert probes == [], "txmail got the mail's same-origin image request: %r" % probes
        for name in ("list.png", "html.png", "text.png", "raw.png", "attachments.png"):
            path = os.path.join(ARTIFACTS, name)
            assert path in report["screenshots"] and os.path.getsize(path) > 1000, \
                "got no screenshot %s (%r)" % (path, report["screenshots"])
    finally:
        pix.stop()
