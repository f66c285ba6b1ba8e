"""test_dashboard.py - the operator dashboard (GET /, /ui/<name>, /favicon.ico).

The files of server/ui are embedded in the binary (server/ui/uigen.c) and
served with their Content-Type, an ETag (304 on If-None-Match), a strict
Content-Security-Policy and nosniff. The browser test drives the page in
headless Chromium (tests/ui/dashboard.mjs, playwright-core)."""
import json
import os
import re
import subprocess

import pytest

import helpers
from helpers import Txmail, dl, free_port, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHROMIUM = "/usr/bin/chromium"
CSP_MUST = ["default-src 'self'", "script-src 'self'", "object-src 'none'",
            "frame-ancestors 'none'", "base-uri 'none'"]


def check_security_headers(r, what):
    csp = r.headers.get("content-security-policy", "")
    for part in CSP_MUST:
        assert part in csp, "%s: got CSP %r, want it to contain %r" % (what, csp, part)
    assert "unsafe-eval" not in csp, "%s: got 'unsafe-eval' in CSP %r" % (what, csp)
    script = re.search(r"script-src ([^;]*)", csp).group(1)
    assert "unsafe-inline" not in script, "%s: got inline scripts allowed: %r" % (what, csp)
    assert r.headers.get("x-content-type-options") == "nosniff", \
        "%s: got X-Content-Type-Options %r" % (what, r.headers.get("x-content-type-options"))


def test_ui_assets_are_embedded_and_typed(txmail):
    c = txmail.client()
    try:
        r = c.get("/", auth=False)
        assert r.status == 200, "got %d for /, want 200" % r.status
        assert r.headers.get("content-type") == "text/html; charset=utf-8", r.headers
        check_security_headers(r, "/")
        page = r.body.decode("utf-8")
        # no inline script (the CSP would block it) and nothing from another origin
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "got an inline <script> in index.html"
        assert not re.search(r"\son[a-z]+=", page), "got an inline event handler in index.html"
        assert not re.search(r'(src|href)="(https?:)?//', page), "got an external asset in index.html"
        assert '<section id="mail"' in page, "got no <section id=\"mail\"> hook for the dev-mail viewer"
        for name in re.findall(r'(?:src|href)="/ui/([^"]+)"', page):
            a = c.get("/ui/" + name, auth=False)
            assert a.status == 200, "got %d for /ui/%s, which index.html uses" % (a.status, name)
        want = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
                "favicon.svg": "image/svg+xml", "index.html": "text/html; charset=utf-8"}
        for name, ctype in want.items():
            a = c.get("/ui/" + name, auth=False)
            assert a.status == 200, "got %d for /ui/%s" % (a.status, name)
            assert a.headers.get("content-type") == ctype, "got %r for /ui/%s, want %r" % (
                a.headers.get("content-type"), name, ctype)
            check_security_headers(a, "/ui/" + name)
            etag = a.headers.get("etag", "")
            assert re.fullmatch(r'"[0-9a-f]{16}"', etag), "got ETag %r for /ui/%s" % (etag, name)
            assert a.headers.get("cache-control") == "no-cache", a.headers
            n = c.get("/ui/" + name, auth=False, headers={"If-None-Match": etag})
            assert n.status == 304 and n.body == b"", "got %d %r on If-None-Match, want 304" % (n.status, n.body[:40])
            m = c.get("/ui/" + name, auth=False, headers={"If-None-Match": '"0000000000000000"'})
            assert m.status == 200, "got %d for a stale ETag, want 200" % m.status
        with open(os.path.join(REPO, "server/ui/app.js"), "rb") as f:
            assert c.get("/ui/app.js", auth=False).body == f.read(), "got /ui/app.js != server/ui/app.js"
        for bad in ("/ui/nope.js", "/ui/uigen.c", "/ui/", "/ui/..%2fapi.c", "/ui/a/b"):
            r = c.get(bad, auth=False)
            assert r.status == 404, "got %d for %s, want 404" % (r.status, bad)
        r = c.get("/favicon.ico", auth=False)
        assert r.status == 204 and r.body == b"", "got %d %r for /favicon.ico, want 204" % (r.status, r.body[:40])
    finally:
        c.close()


UI_DIR = os.path.join(REPO, "tests", "ui")
ARTIFACTS = os.path.join(REPO, "build", "artifacts", "dashboard")


@pytest.fixture
def dev(txmail_binary, workdir, redis, register_log):
    """A `txmail run --dev` (its capture sink: defer+ and reject+ local parts)
    on the test's redis-server; yields the Txmail with its dev key."""
    data = os.path.join(workdir, "data")
    os.makedirs(data)
    port = free_port()
    env = helpers.clean_env({
        "TXMAIL_DATA_DIR": data,
        "TXMAIL_REDIS_URL": redis.url,
        "TXMAIL_LISTEN": "127.0.0.1:%d" % port,
        "TXMAIL_SINK_LISTEN": "127.0.0.1:%d" % free_port(),
        "TXMAIL_LOG_LEVEL": "info",
    })
    logp = os.path.join(workdir, "dev.log")
    register_log("txmail run --dev log", logp)
    t = Txmail(txmail_binary, ("run", "--dev"), env, logp, port=port, name="txmail run --dev")
    try:
        t.start()
        wait_until(lambda: os.path.exists(os.path.join(data, "dev-api-key")), dl(10), "the dev key")
        with open(os.path.join(data, "dev-api-key")) as f:
            t.key = f.read().strip()
        yield t
    finally:
        t.stop()
    assert not t.problems, "txmail run --dev: %s" % t.problems


def test_dashboard_in_chromium(dev, webhook):
    if not os.path.exists(CHROMIUM):
        pytest.fail("no %s: run make deps-test (Debian package chromium)" % CHROMIUM)
    if not os.path.isdir(os.path.join(UI_DIR, "node_modules", "playwright-core")):
        pytest.fail("no tests/ui/node_modules/playwright-core: run make spec-tools")
    # two webhook endpoints: the receiver (verifying with the endpoint's
    # secret) and a port nobody listens on (a backlog and a last failure)
    dead = "http://127.0.0.1:%d/dead" % free_port()
    c = dev.client()
    try:
        for url in (webhook.url, dead):
            r = c.post_json("/v1/webhooks", {"url": url})
            assert r.status == 201, "POST /v1/webhooks %s: got %d %r" % (url, r.status, r.body[:200])
            if url == webhook.url:
                webhook.set_secret(r.json["secret"])
    finally:
        c.close()
    env = helpers.clean_env({
        "DASH_URL": "http://127.0.0.1:%d" % dev.port,
        "DASH_KEY": dev.key,
        "DASH_ARTIFACTS": ARTIFACTS,
        "DASH_TIMEOUT_MS": str(int(dl(10) * 1000)),
        "DASH_HOOK_OK": webhook.url,
        "DASH_HOOK_DEAD": dead,
    })
    env["HOME"] = os.path.join(os.path.dirname(dev.log), "home")   # chromium's profile bits
    os.makedirs(env["HOME"], exist_ok=True)
    p = subprocess.run(["node", os.path.join(UI_DIR, "dashboard.mjs")], env=env, cwd=UI_DIR,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=dl(60))
    text = p.stdout.decode("utf-8", "replace")
    fail = [l for l in text.splitlines() if l.startswith("FAIL: ")]
    assert p.returncode == 0 and not fail, "dashboard.mjs: %s\n%s" % (fail, text[-6000:])
    report = json.loads(text.strip().splitlines()[-1])
    for name in ("login.png", "overview.png", "message.png"):
        path = os.path.join(ARTIFACTS, name)
        assert path in report["screenshots"] and os.path.getsize(path) > 1000, \
            "got no screenshot %s (%r)" % (path, report["screenshots"])
