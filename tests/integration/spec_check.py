"""spec_check.py - real txmail answers checked against api-spec/openapi.yaml.

Owns: one long-lived `node tests/spec/validate.mjs` (ajv over the spec's
schemas, response schemas found from the spec's `paths`), and
CheckedClient, a helpers.Client whose every answer is validated against the
spec for its route, method and status - so any test written with it also
checks the spec, and a change to the server without the spec (or the
reverse) fails.

Must never: hold its own copy of a schema, skip a check because node or the
npm packages are missing (that is a failure: `make spec-tools` installs
them), or wait for the validator without a deadline.
"""

import json
import os
import select
import shutil
import subprocess
import threading
import time
import urllib.parse

import helpers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VALIDATE = os.path.join(ROOT, "tests", "spec", "validate.mjs")
SPEC = os.path.join(ROOT, "api-spec", "openapi.yaml")
NODE_MODULES = os.path.join(ROOT, "tests", "spec", "node_modules")


class SpecMismatch(AssertionError):
    pass


class SpecValidator:
    """A running validate.mjs; check_*() raise SpecMismatch on a mismatch."""

    def __init__(self):
        node = shutil.which("node")
        if node is None:
            raise AssertionError("node is not installed (make deps installs nodejs)")
        for mod in ("ajv", "ajv-formats", "js-yaml"):
            if not os.path.isdir(os.path.join(NODE_MODULES, mod)):
                raise AssertionError("%s missing under %s (run: make spec-tools)" % (mod, NODE_MODULES))
        self.proc = subprocess.Popen([node, VALIDATE, "--spec", SPEC], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.checked = 0
        self.lock = threading.Lock()  # one question at a time (tests use threads)
        self._ask({"check": "spec"})

    def close(self):
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if not helpers.reap(self.proc, 5):
            helpers.kill_group(self.proc)
            helpers.reap(self.proc, 5)
        self.proc = None

    def _ask(self, obj, timeout=20.0):
        with self.lock:
            return self._ask_locked(obj, timeout)

    def _ask_locked(self, obj, timeout):
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError("validate.mjs is not running: %s" % self._stderr())
        line = json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n"
        self.proc.stdin.write(line)
        self.proc.stdin.flush()
        end = time.monotonic() + timeout * helpers.SCALE
        fd = self.proc.stdout.fileno()
        buf = b""
        while not buf.endswith(b"\n"):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("validate.mjs did not answer within %.0fs" % timeout)
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 1)
            if not chunk:
                raise AssertionError("validate.mjs exited: %s" % self._stderr())
            buf += chunk
        ans = buf.decode("utf-8", "replace").rstrip("\n")
        self.checked += 1
        if not ans.startswith("ok"):
            raise SpecMismatch("%s\n  body: %s" % (ans, json.dumps(obj.get("data"), ensure_ascii=False)[:3000]))
        return ans

    def _stderr(self):
        try:
            if self.proc is not None and self.proc.poll() is not None:
                return self.proc.stderr.read().decode("utf-8", "replace")[-2000:]
        except OSError:
            pass
        return "(no stderr)"

    def check_schema(self, name, data, label=None):
        return self._ask({"schema": name, "data": data, "label": label or name})

    def check_webhook(self, event_type, data):
        return self._ask({"webhook": event_type, "data": data})

    def check_response(self, method, path, resp):
        """resp: helpers.Resp. The body must match the spec's schema for
        method + path template + status + Content-Type."""
        ctype = resp.headers.get("content-type", "")
        if resp.body and resp.json is None and ctype.startswith("application/json"):
            raise SpecMismatch("%s %s %d: Content-Type %r but the body is not JSON: %r" % (
                method, path, resp.status, ctype, resp.body[:200]))
        data = resp.json if resp.body else None
        if resp.body and data is None:
            data = resp.body.decode("utf-8", "replace")
        p = urllib.parse.urlsplit(path).path
        return self._ask({"request": {"method": method, "path": p, "status": resp.status,
                                      "content_type": ctype}, "data": data})


class CheckedClient(helpers.Client):
    """helpers.Client that validates every answer against the spec.

    A 405 for a method the spec has no operation for is checked against the
    Error schema (and its Allow header must exist)."""

    def __init__(self, port, validator, key=None, **kw):
        super().__init__(port, key=key, **kw)
        self.validator = validator
        self.seen = set()

    def request(self, method, path, body=None, headers=None, auth=True, json_body=None):
        r = super().request(method, path, body=body, headers=headers, auth=auth, json_body=json_body)
        self.seen.add((method, urllib.parse.urlsplit(path).path, r.status))
        try:
            self.validator.check_response(method, path, r)
        except SpecMismatch as e:
            if r.status == 405 and "is not in the spec" in str(e):
                assert r.headers.get("allow"), "%s %s: 405 without Allow" % (method, path)
                self.validator.check_schema("Error", r.json, label="%s %s 405" % (method, path))
            else:
                raise
        return r

    def put_json(self, path, obj, **kw):
        return self.request("PUT", path, json_body=obj, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


# --- small helpers shared by the test_api_*.py suites ------------------------------

TERMINAL = ("delivered", "failed", "expired", "suppressed", "canceled")


def wait_message(client, mid, pred, timeout, what):
    """GET /v1/messages/{mid} (spec-checked when client is a CheckedClient)
    until pred(body) holds; return the body."""
    last = {}

    def check():
        r = client.get("/v1/messages/" + mid)
        assert r.status == 200, "GET %s: got %d, want 200: %r" % (mid, r.status, r)
        last["body"] = r.json
        return r.json if pred(r.json) else None
    return helpers.wait_until(check, timeout, what, interval=0.05,
                              diag=lambda: json.dumps(last.get("body"), ensure_ascii=False)[:1500])


def all_terminal(body):
    return all(r["status"] in TERMINAL for r in body["recipients"])


def rcpt_status(body):
    return {r["email"]: r["status"] for r in body["recipients"]}
