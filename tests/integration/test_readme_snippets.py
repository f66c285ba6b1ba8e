"""test_readme_snippets.py - README.md's client examples, run as written.

Owns: extracting every fenced block of README.md that follows a
`<!-- snippet: NAME -->` line and running it, byte for byte, with the
toolchain a reader would use (curl, node, /usr/bin/python3, `go run`, php)
against a real txmail (real redis-server, the SMTP test peer):
- send-*: the program reads TXMAIL_URL / TXMAIL_KEY from the environment,
  must exit 0 and print the message id; the message must be delivered to
  the SMTP peer with the code it generated in the subject and the text.
- smtp-*: the program sends through SMTP submission (nodemailer, smtplib)
  to SMTP_HOST / SMTP_PORT (587 style, STARTTLS) with the key
  TXMAIL_KEY as the password, verifying the server's certificate against
  the system's CAs - here the test's own CA, given the way a reader's
  runtime takes an extra one (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS); it must
  exit 0 and the message must be delivered like a send-* one, its
  X-Txmail-* headers gone.
- webhook-*: the program is a webhook receiver on $PORT; txmail delivers to
  it through a recording forwarder of this test (which passes the request
  on byte for byte and answers txmail with the receiver's status). The
  genuine delivery must be accepted (2xx), and the recorded request, sent
  again with its body changed, a foreign signature, no signature or a
  correctly signed stale timestamp, must be refused (4xx).
A missing toolchain skips its snippet, naming what to install (`make
deps-test` installs them all; standardwebhooks comes from `make spec-tools`).

Must never: edit a snippet before running it (the README text is what
runs), reach the network (Go runs with GOPROXY=off and a private GOCACHE),
use fixed ports, or leave a process behind.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import helpers
from conftest import new_secret
from helpers import dl, free_port, kill_group, reap, wait_status, wait_until
from test_submission import sub_certs, submission  # noqa: F401 (fixtures: a txmail with SMTP submission)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
README = os.path.join(REPO, "README.md")
NODE_MODULES = os.path.join(REPO, "tests", "spec", "node_modules")

SNIPPET_RE = re.compile(r"^<!-- snippet: ([a-z0-9-]+) -->\n```([a-z]+)\n(.*?)^```$", re.M | re.S)
MSG_ID_RE = re.compile(r"\bmsg_[0-9a-z]{26}(?:p[1-9][0-9]?)?\b")
RCPT = "ada@example.com"

# name -> (fence language, file name a reader would save it as)
SNIPPETS = {
    "send-curl": ("sh", "send-code.sh"),
    "send-node": ("js", "send-code.mjs"),
    "send-python": ("python", "send_code.py"),
    "send-go": ("go", "send_code.go"),
    "send-php": ("php", "send_code.php"),
    "search-curl": ("sh", "search.sh"),
    "keys-python": ("python", "list_keys.py"),
    "smtp-node": ("js", "send-smtp.mjs"),
    "smtp-python": ("python", "send_smtp.py"),
    "webhook-node": ("js", "webhook-receiver.mjs"),
    "webhook-python": ("python", "webhook_receiver.py"),
    "page-python": ("python", "list_suppressions.py"),
    "poll-curl": ("sh", "poll-message.sh"),
    "ops-webhooks": ("sh", "webhook-ops.sh"),   # run by test_webhook_ops.py
}


def readme_snippets():
    """{name: [(fence language, code), ...]} of README.md."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    out = {}
    for m in SNIPPET_RE.finditer(text):
        out.setdefault(m.group(1), []).append((m.group(2), m.group(3)))
    return out


def snippet(name):
    got = readme_snippets().get(name)
    assert got and len(got) == 1, "README.md: want one block after <!-- snippet: %s -->, got %d" % (
        name, len(got or []))
    return got[0][1]


def need(cmd, package):
    if shutil.which(cmd) is None:
        pytest.skip("%s is not installed (Debian package %s; `make deps-test` installs it)" % (cmd, package))


def runner(name, path, workdir):
    """The argv and extra environment that run snippet `name` saved at path."""
    lang = name.split("-", 1)[1]
    if lang == "curl" and name.startswith("search-"):
        need("curl", "curl")
        return ["bash", path], {}
    if lang == "curl":
        need("curl", "curl")
        return ["sh", path], {}
    if lang == "node":
        need("node", "nodejs")
        return ["node", path], {}
    if lang == "python":
        return [helpers.PYTHON, path], {}
    if lang == "go":
        need("go", "golang-go")
        home = os.path.join(workdir, "gohome")
        os.makedirs(home, exist_ok=True)
        # CGO_ENABLED stays as it is: Debian's precompiled standard library is
        # built with cgo, and CGO_ENABLED=0 recompiles net (4.6 s cold, not 0.9 s)
        return ["go", "run", path], {
            "HOME": home, "GOCACHE": os.path.join(home, "cache"), "GOPATH": os.path.join(home, "path"),
            "GOPROXY": "off", "GOTOOLCHAIN": "local", "GOFLAGS": "", "GO111MODULE": ""}
    if lang == "php":
        need("php", "php-cli")
        probe = subprocess.run(["php", "-r", "exit(function_exists('curl_init') ? 0 : 1);"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=dl(20))
        if probe.returncode != 0:
            pytest.skip("php has no curl extension (Debian package php-curl; `make deps-test` installs it)")
        return ["php", path], {}
    raise AssertionError("no runner for snippet %s" % name)


def save(name, workdir):
    path = os.path.join(workdir, SNIPPETS[name][1])
    with open(path, "w", encoding="utf-8") as f:
        f.write(snippet(name))
    return path


def test_readme_marks_every_snippet():
    got = readme_snippets()
    assert sorted(got) == sorted(SNIPPETS), "README.md snippet markers: got %s, want %s" % (
        sorted(got), sorted(SNIPPETS))
    for name, (lang, _) in SNIPPETS.items():
        assert [g[0] for g in got[name]] == [lang], "%s: fence languages %r, want [%r]" % (
            name, [g[0] for g in got[name]], lang)
        code = got[name][0][1]
        if name.startswith(("send-", "search-", "keys-")):
            assert "TXMAIL_URL" in code and "TXMAIL_KEY" in code, "%s reads no TXMAIL_URL/TXMAIL_KEY" % name
        elif name.startswith("smtp-"):
            assert "SMTP_HOST" in code and "TXMAIL_KEY" in code, "%s reads no SMTP_HOST/TXMAIL_KEY" % name
        elif name.startswith(("page-", "poll-", "ops-")):
            assert "TXMAIL_URL" in code and "TXMAIL_KEY" in code, "%s reads no TXMAIL_URL/TXMAIL_KEY" % name
        else:
            assert "TXMAIL_WEBHOOK_SECRET" in code and "PORT" in code, "%s reads no secret/PORT" % name


# --- sending ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["send-curl", "send-node", "send-python", "send-go", "send-php"])
def test_send_snippet_delivers(name, txmail, smtp_peer, workdir):
    path = save(name, workdir)
    argv, extra = runner(name, path, workdir)
    env = helpers.clean_env(dict(extra, TXMAIL_URL="http://127.0.0.1:%d" % txmail.port, TXMAIL_KEY=txmail.key))
    t0 = time.monotonic()
    p = subprocess.run(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=dl(60))
    took = time.monotonic() - t0
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, "%s exited %d\nstdout: %s\nstderr: %s" % (name, p.returncode, out, err)
    ids = MSG_ID_RE.findall(out)
    assert len(ids) == 1, "%s: want one message id on stdout, got %r (stderr %r)" % (name, out, err)
    helpers.log("%s ran in %.2fs" % (name, took))

    j = wait_status(txmail.client(), ids[0], "delivered", dl(20))
    assert [r["email"] for r in j["recipients"]] == [RCPT], j
    assert j["tags"] == ["verification"], j
    m = re.fullmatch(r"Your Acme code is (\d{6})", j["subject"])
    assert m, "%s: subject %r, want 'Your Acme code is NNNNNN'" % (name, j["subject"])
    code = m.group(1)
    (got,) = [r for r in smtp_peer.wait_for_rcpt(RCPT, dl(10)) if r.message_id and ids[0] in r.message_id]
    text = got.msg.get_body(("plain",)).get_content().replace("\r\n", "\n")  # CRLF on the wire
    assert text == "Your verification code is %s. It expires in 10 minutes.\n" % code, (
        "%s: delivered text %r" % (name, text))
    if name == "send-curl":
        # the same command again is a replay of its Idempotency-Key, not a second mail
        p2 = subprocess.run(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=dl(30))
        assert p2.returncode == 0 and MSG_ID_RE.findall(p2.stdout.decode()) == ids, (p2.stdout, p2.stderr)


# --- searching -----------------------------------------------------------------------


def test_search_snippet_lists(txmail, smtp_peer, workdir):
    """search-curl pages through GET /v1/messages: Ada's verification mail of the week, every page."""
    api = txmail.client()
    want = []
    for i in range(3):
        r = api.send({"from": "Acme <noreply@acme.example>", "to": RCPT, "subject": "code %d" % i,
                      "text": "x", "tags": ["verification"]})
        assert r.status == 202, r
        want.append(r.json["id"])
    other = api.send({"from": "a@acme.example", "to": "bob@example.com", "subject": "not Ada's", "text": "x",
                      "tags": ["verification"]})
    assert other.status == 202
    path = save("search-curl", workdir)
    argv, extra = runner("search-curl", path, workdir)
    env = helpers.clean_env(dict(extra, TXMAIL_URL="http://127.0.0.1:%d" % txmail.port, TXMAIL_KEY=txmail.key))
    p = subprocess.run(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=dl(60))
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "search-curl exited %d: %s %s" % (p.returncode, out, p.stderr)
    got = MSG_ID_RE.findall(out)
    assert got == sorted(want, reverse=True), "search-curl printed %r, want Ada's 3 newest first" % got


# --- lists and polling (issue 17) -------------------------------------------------------


def run_snippet(name, workdir, txmail, extra_env=None):
    path = save(name, workdir)
    argv, extra = runner(name, path, workdir)
    env = helpers.clean_env(dict(extra, TXMAIL_URL="http://127.0.0.1:%d" % txmail.port, TXMAIL_KEY=txmail.key,
                                 **(extra_env or {})))
    p = subprocess.run(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=dl(60))
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, "%s exited %d\nstdout: %s\nstderr: %s" % (name, p.returncode, out, err)
    return out


def test_page_snippet_lists_everything(txmail_factory, workdir):
    # 131 tokens, one back every 2 s: the 130 adds leave about one, so the second page
    # gets 429 and the snippet waits as Retry-After tells it
    t = txmail_factory(extra_env={"TXMAIL_RATE_LIMIT": "0.5", "TXMAIL_RATE_BURST": "131"})
    api = t.client()
    want = []
    for i in range(130):
        e = "gone%03d@example.com" % i
        r = api.post_json("/v1/suppressions", {"email": e, "reason": "user_request"})
        assert r.status == 201, r
        want.append("%s user_request" % e)
    r = api.get("/v1/whoami")
    assert r.headers.get("ratelimit-remaining") in ("0", "1"), "after the adds: %r, want 0 or 1 left" % r.headers
    api.close()
    t0 = time.monotonic()
    out = run_snippet("page-python", workdir, t)
    helpers.log("page-python ran in %.2fs (a 429 waited out)" % (time.monotonic() - t0))
    assert out.splitlines() == want, "page-python printed %d lines %r..., want %d" % (
        len(out.splitlines()), out.splitlines()[:3], len(want))


def test_poll_snippet_gets_304(txmail, smtp_peer, workdir):
    api = txmail.client()
    mid = helpers.send_text(api, RCPT, "poll snippet")
    wait_status(api, mid, "delivered", dl(20))
    api.close()
    out = run_snippet("poll-curl", workdir, txmail, {"MSG_ID": mid})
    lines = out.strip().splitlines()
    assert json.loads(lines[0])["id"] == mid, "poll-curl: first line %r, want the message" % lines[0]
    assert lines[-1] == "304", "poll-curl: last line %r, want 304" % lines[-1]


def test_keys_snippet_lists(txmail_binary, redis, txmail_factory, workdir):
    """keys-python pages through GET /v1/keys with an admin key and prints every stored key."""
    def create(name, *args):
        p = subprocess.run([txmail_binary, "keys", "create", "--name", name] + list(args),
                           env=helpers.clean_env({"TXMAIL_REDIS_URL": redis.url}),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=dl(20))
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()
    admin = create("ops", "--scope", "admin")
    create("billing-worker", "--project", "billing", "--scope", "send", "--allow-ip", "10.0.0.0/8")
    t = txmail_factory()
    path = save("keys-python", workdir)
    argv, extra = runner("keys-python", path, workdir)
    env = helpers.clean_env(dict(extra, TXMAIL_URL="http://127.0.0.1:%d" % t.port, TXMAIL_KEY=admin))
    p = subprocess.run(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=dl(60))
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "keys-python exited %d: %s %s" % (p.returncode, out, p.stderr)
    lines = out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["billing-worker", "ops"], out
    assert lines[0].split()[1:3] == ["billing", "send"] and lines[0].endswith("never used"), out
    assert "any address" in lines[1] and admin not in out, out


# --- sending over SMTP submission ------------------------------------------------------


@pytest.mark.parametrize("name", ["smtp-node", "smtp-python"])
def test_smtp_snippet_delivers(name, submission, smtp_peer, workdir):
    path = save(name, workdir)
    argv, extra = runner(name, path, workdir)
    if name == "smtp-node":
        if not os.path.isfile(os.path.join(NODE_MODULES, "nodemailer", "package.json")):
            pytest.skip("npm package nodemailer is not installed (make spec-tools)")
        # where `npm install nodemailer` would have put it, next to the script
        os.symlink(NODE_MODULES, os.path.join(workdir, "node_modules"))
    s = submission(implicit=False)
    env = helpers.clean_env(dict(extra, SMTP_HOST="127.0.0.1", SMTP_PORT=str(s.port),
                                 TXMAIL_KEY=s.key_secret, SSL_CERT_FILE=s.ca, NODE_EXTRA_CA_CERTS=s.ca))
    t0 = time.monotonic()
    p = subprocess.run(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=dl(60))
    took = time.monotonic() - t0
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, "%s exited %d\nstdout: %s\nstderr: %s" % (name, p.returncode, out, err)
    helpers.log("%s ran in %.2fs" % (name, took))
    (got,) = smtp_peer.wait_for_rcpt(RCPT, dl(20))
    m = re.fullmatch(r"Your Acme code is (\d{6})", str(got.msg["Subject"]))
    assert m, "%s: delivered subject %r" % (name, str(got.msg["Subject"]))
    text = got.msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text == "Your verification code is %s. It expires in 10 minutes.\n" % m.group(1), (
        "%s: delivered text %r" % (name, text))
    assert not [k for k in got.msg.keys() if k.lower().startswith("x-txmail-")], got.msg.keys()
    ids = MSG_ID_RE.findall(out)
    if name == "smtp-node":
        # nodemailer hands back the 250's text: the id links the client's log to txmail
        assert len(ids) == 1, "%s: want the 250 reply's msg_ id on stdout, got %r" % (name, out)
        j = wait_status(txmail_client(s), ids[0], "delivered", dl(20))
        assert j["tags"] == ["verification"] and j["subject"] == str(got.msg["Subject"]), j


def txmail_client(s):
    return helpers.Client(s.t.port, key=s.key_secret)


# --- verifying webhooks ---------------------------------------------------------------


class Forwarder:
    """The URL txmail delivers to: passes each request on to the receiver
    under test (same headers that matter, the same raw body) and answers
    txmail with the receiver's status. Records every exchange."""

    HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent")

    def __init__(self, target_port):
        self.target_port = target_port
        self.lock = threading.Lock()
        self.seen = []   # {"headers": {...}, "body": bytes, "status": int}
        fw = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hdrs = {k: self.headers[k] for k in fw.HEADERS if self.headers.get(k) is not None}
                try:
                    status = post(fw.target_port, hdrs, body)
                except OSError:
                    status = 599
                with fw.lock:
                    fw.seen.append({"headers": hdrs, "body": body, "status": status})
                self.send_response(status if status < 599 else 502)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d/hook" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def snapshot(self):
        with self.lock:
            return list(self.seen)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def post(port, headers, body):
    """POST body to the receiver on port; its status."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=dl(10))
    try:
        c.request("POST", "/hook", body=body, headers=headers)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def sign(secret, msg_id, ts, body):
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, b"%s.%s.%s" % (msg_id.encode(), str(ts).encode(), body), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def port_open(proc, port, out_path):
    if proc.poll() is not None:
        raise AssertionError("receiver exited with %s: %s" % (proc.returncode, helpers.read_text(out_path)))
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("name", ["webhook-node", "webhook-python"])
def test_webhook_snippet_verifies(name, txmail_factory, workdir):
    path = save(name, workdir)
    argv, extra = runner(name, path, workdir)
    if name == "webhook-node":
        if not os.path.isfile(os.path.join(NODE_MODULES, "standardwebhooks", "package.json")):
            pytest.skip("npm package standardwebhooks is not installed (make spec-tools)")
        # where `npm install standardwebhooks` would have put it, next to the script
        os.symlink(NODE_MODULES, os.path.join(workdir, "node_modules"))
    secret = new_secret()
    port = free_port()
    out_path = os.path.join(workdir, "receiver.out")
    env = helpers.clean_env(dict(extra, PORT=str(port), TXMAIL_WEBHOOK_SECRET=secret))
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    fw = None
    try:
        wait_until(lambda: port_open(proc, port, out_path), dl(15), "%s listening on %d" % (name, port),
                   interval=0.05)
        fw = Forwarder(port)
        t = txmail_factory(extra_env={"TXMAIL_WEBHOOK_URL": fw.url, "TXMAIL_WEBHOOK_SECRET": secret})
        api = t.client()
        mid = helpers.send_text(api, "you@example.com", "webhook snippet")
        wait_status(api, mid, "delivered", dl(20))

        def delivered_event():
            for s in fw.snapshot():
                ev = json.loads(s["body"])
                if ev.get("type") == "message.delivered" and ev["data"].get("message_id") == mid:
                    return s
            return None
        genuine = wait_until(delivered_event, dl(20), "txmail's message.delivered webhook for %s" % mid,
                             interval=0.05, diag=lambda: [(s["status"], s["body"][:120]) for s in fw.snapshot()])
        assert 200 <= genuine["status"] < 300, "%s refused a genuine delivery: %s; output: %s" % (
            name, genuine["status"], helpers.read_text(out_path))
        refused = [s for s in fw.snapshot() if not 200 <= s["status"] < 300]
        assert not refused, "%s refused genuine deliveries: %r" % (name, refused)
        evt = json.loads(genuine["body"])["id"]
        wait_until(lambda: ("verified %s message.delivered %s" % (evt, mid)) in helpers.read_text(out_path),
                   dl(5), "%s printing the verified event" % name, diag=lambda: helpers.read_text(out_path))

        h, body = genuine["headers"], genuine["body"]
        assert post(port, h, body) // 100 == 2, "the genuine request, sent again, must still pass"
        tampered = body.replace(b'"status":"delivered"', b'"status":"failed"')
        assert tampered != body, body
        ts_now = str(int(time.time()))
        cases = {
            "body changed": (h, tampered),
            "one byte appended": (h, body + b" "),
            "signed with another secret": (dict(h, **{"webhook-signature": sign(new_secret(), h["webhook-id"],
                                                                                 h["webhook-timestamp"], body)}), body),
            "no signature": ({k: v for k, v in h.items() if k != "webhook-signature"}, body),
            "timestamp changed": (dict(h, **{"webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}), body),
            "stale (signed 10 min ago)": (dict(h, **{
                "webhook-timestamp": str(int(ts_now) - 600),
                "webhook-signature": sign(secret, h["webhook-id"], int(ts_now) - 600, body)}), body),
        }
        for what, (hh, bb) in cases.items():
            st = post(port, hh, bb)
            assert 400 <= st < 500, "%s accepted a request with %s: %d" % (name, what, st)
        # the control: the test's own signature with the right secret passes
        good = dict(h, **{"webhook-timestamp": ts_now, "webhook-signature": sign(secret, h["webhook-id"], ts_now, body)})
        assert post(port, good, body) // 100 == 2, "%s refused a correctly signed request" % name
        assert "rejected" in helpers.read_text(out_path)
    finally:
        if fw is not None:
            fw.stop()
        kill_group(proc)
        reap(proc, dl(5))
