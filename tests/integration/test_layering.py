"""test_layering.py - the module graph of server/ and smtp/ is one-way.

Owns the checks that keep the layering of docs/architecture.md true:
(a) no circle of calls between modules, read from the symbols of the
    objects the binary under test was linked from ($TXMAIL_BIN's
    libtxmail.a: who defines a function, who calls it), so a call back
    into http.c is caught even when the header it goes through is not
    http.h (api.h's response helpers used to live in http.c);
(b) nothing but main.c calls into http.c;
(c) no circle of #include lines between modules (X.c and X.h are module X)
    but the ones in ALLOWED_INCLUDE_CYCLES, each with its reason;
(d) api.h, the resource-side interface, is reached (directly or through
    another header) by http.c and the resources only: a module that just
    counts (webhook.c, worker.c -> metrics.h) must not see HTTP types;
(e) smtp/ never includes a server/ header;
(f) each third-party library header is included by its owning files only.
The store files (store.c and store_*.c, one interface behind store.h) are
one module for (a) and (c); so are the HTTP files (http.c and http_*.c,
one interface behind http.h, sharing the private http_internal.h), so (b)
means nothing outside them calls in; and so are the webhook files
(webhook.c and webhook_*.c behind webhook.h, sharing webhook_internal.h).

Must never: start a process or open a port (it reads files and runs nm),
or skip because the objects are missing - it fails and says how to build.
"""
import collections
import fnmatch
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, txmail_bin

SRC_DIRS = ("server", "smtp")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)

# Third-party headers (prefix of the <...> path) and the files allowed to include them.
OWNERS = {
    # store_internal.h is the store files' private header (included by
    # server/store*.c only), so hiredis types stay inside the store.
    "hiredis/": ["server/store_*.c", "server/store_internal.h"],
    # the webhook module sends: webhook.c and its split-out files
    # (webhook_request.c), and their private header, whose shared types name
    # curl's; netguard.c parses a webhook URL with curl's own parser so the
    # host it checks is the host libcurl will connect to.
    "curl/": ["server/webhook.c", "server/webhook_*.c", "server/webhook_internal.h",
              "server/netguard.c"],
    # the HTTP module: http.c and its split-out files (http_deadlines.c), and
    # their private header, whose shared types name MHD's.
    "microhttpd.h": ["server/http.c", "server/http_*.c", "server/http_internal.h"],
    # smtp/tls.c is the client side (relay, MX); submission.c is the one
    # server side (STARTTLS and implicit TLS of SMTP submission).
    "openssl/ssl.h": ["smtp/tls.c", "server/submission.c"],
}

# Include circles that are types only, with the reason. smtp/session.h uses
# engine.h's public types (the message, the callbacks) and engine.c drives
# sessions: one piece, split in two files; the calls are one-way (engine ->
# session, checked by test_no_call_cycles).
ALLOWED_INCLUDE_CYCLES = [["smtp/engine", "smtp/session"]]

# Who may reach the resource-side interface (api.h) and call its helpers.
# submission.c is the SMTP front door: like http.c it makes an api_request
# and hands a message to the accept resource (api_messages_submit).
API_USERS = ["server/http.c", "server/api.c", "server/api_*.c", "server/metrics.c",
             "server/dashboard.c", "server/submission.c"]


def module_of(relpath):
    """server/store_conn.c -> server/store; server/http_deadlines.c, server/http.h -> server/http;
    server/webhook_request.c -> server/webhook."""
    stem = os.path.splitext(relpath)[0]
    d, base = os.path.split(stem)
    if d == "server" and (base == "store" or base.startswith("store_")):
        base = "store"
    if d == "server" and (base == "http" or base.startswith("http_")):
        base = "http"
    if d == "server" and (base == "webhook" or base.startswith("webhook_")):
        base = "webhook"
    return d + "/" + base


def sources():
    out = []
    for d in SRC_DIRS:
        for name in sorted(os.listdir(os.path.join(REPO, d))):
            if name.endswith((".c", ".h")):
                out.append(d + "/" + name)
    return out


def includes(relpath):
    """[(kind, target)]: kind '"' with target resolved to a repo path, or '<' with it raw."""
    with open(os.path.join(REPO, relpath), encoding="utf-8") as f:
        text = f.read()
    out = []
    for kind, target in INCLUDE_RE.findall(text):
        if kind == '"':
            target = os.path.normpath(os.path.join(os.path.dirname(relpath), target))
        out.append((kind, target))
    return out


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def matches(relpath, patterns):
    return any(fnmatch.fnmatchcase(relpath, p) for p in patterns)


# --- (a), (b): calls, from the objects -----------------------------------------

def call_graph():
    """{module: {module it calls}} from nm of the libtxmail.a next to $TXMAIL_BIN."""
    lib = os.path.join(os.path.dirname(txmail_bin()), "libtxmail.a")
    if not os.path.exists(lib):
        pytest.fail(f"{lib} is missing: build first (make -j2 build)")
    nm = shutil.which("nm")
    assert nm is not None, "nm (binutils) is needed"
    res = subprocess.run([nm, "-A", lib], capture_output=True, text=True, timeout=60, check=True)
    # the archive names members without their directory; the base names are unique
    dirs = {os.path.splitext(f)[0].split("/")[1]: f.split("/")[0] for f in sources()
            if f.endswith(".c")}
    defined, used = {}, collections.defaultdict(set)
    for line in res.stdout.splitlines():
        # "path/libtxmail.a:http.o:0000000000000120 T api_error" or "...:http.o:   U cJSON_Delete"
        where, _, rest = line.rpartition(":")
        member = where.rsplit(":", 1)[-1]
        parts = rest.split()
        if len(parts) < 2 or not member.endswith(".o"):
            continue
        typ, sym = parts[-2], parts[-1]
        mod = module_of(dirs.get(member[:-2], "?") + "/" + member[:-2] + ".c")
        if typ == "U":
            used[mod].add(sym)
        elif typ in "TDBRGSVW":
            defined[sym] = mod
    graph = collections.defaultdict(set)
    for mod, syms in used.items():
        for s in syms:
            if s in defined and defined[s] != mod:
                graph[mod].add(defined[s])
    return graph


def test_no_call_cycles():
    g = call_graph()
    assert "server/http" in g, "http.o not found in libtxmail.a: the graph is empty"
    found = cycles(g)
    assert not found, "modules that call each other in a circle: " + "; ".join(
        " <-> ".join(m.split("/", 1)[1] for m in c) for c in found)


def test_nothing_calls_into_http():
    g = call_graph()
    callers = sorted(m for m, to in g.items() if "server/http" in to)
    assert callers == [], f"these call back into http.c (only main.c may): {callers}"


# --- (c)-(f): #include lines ---------------------------------------------------------

def test_no_include_cycles():
    graph = collections.defaultdict(set)
    for f in sources():
        for kind, target in includes(f):
            if kind == '"' and module_of(target) != module_of(f):
                graph[module_of(f)].add(module_of(target))
    found = [c for c in cycles(graph) if c not in ALLOWED_INCLUDE_CYCLES]
    assert not found, "modules whose #includes form a circle: " + "; ".join(
        " <-> ".join(c) for c in found)


def test_api_h_only_for_http_and_resources():
    direct = {f: [t for k, t in includes(f) if k == '"'] for f in sources()}

    def reaches(f, seen):
        for t in direct.get(f, ()):
            if t == "server/api.h":
                return True
            if t not in seen and t.endswith(".h"):
                seen.add(t)
                if reaches(t, seen):
                    return True
        return False

    bad = sorted(f for f in sources()
                 if f.endswith(".c") and not matches(f, API_USERS) and reaches(f, set()))
    bad_h = sorted(f for f in sources()
                   if f.endswith(".h") and f != "server/api.h" and reaches(f, set()))
    assert bad == [] and bad_h == [], (
        f"api.h (the HTTP resource interface) is reached by {bad} (through headers {bad_h}); "
        "only http.c and the resources may see it")


def test_smtp_includes_no_server_header():
    bad = [(f, t) for f in sources() if f.startswith("smtp/")
           for k, t in includes(f) if k == '"' and not t.startswith("smtp/")]
    assert bad == [], f"smtp/ must not depend on server/: {bad}"


def test_third_party_headers_stay_with_their_owners():
    bad = []
    for f in sources():
        for kind, target in includes(f):
            if kind != "<":
                continue
            for prefix, owners in OWNERS.items():
                if target.startswith(prefix) and not matches(f, owners):
                    bad.append(f"{f} includes <{target}> (owners: {', '.join(owners)})")
    assert bad == [], "\n".join(bad)


def private_header_user_ok(relpath, target):
    """A <x>_internal.h is included only by x.c, x_*.c and x_*.h (its own module)."""
    name = os.path.basename(target)
    if not name.endswith("_internal.h"):
        return True
    owner = name[:-len("_internal.h")]
    d, base = os.path.split(relpath)
    return d == os.path.dirname(target) and (
        base == owner + ".c" or (base.startswith(owner + "_") and base.endswith((".c", ".h"))))


def test_private_headers_stay_in_their_module():
    bad = [f"{f} includes {t}" for f in sources() for k, t in includes(f)
           if k == '"' and not private_header_user_ok(f, t)]
    assert bad == [], "\n".join(bad)


# --- the checks can fail ----------------------------------------------------------------

def test_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    assert module_of("server/store_conn.c") == "server/store"
    assert module_of("server/http_deadlines.c") == "server/http"
    assert module_of("server/httpd.c") == "server/httpd"
    assert module_of("server/webhook_request.c") == "server/webhook"
    assert module_of("server/webhook_internal.h") == "server/webhook"
    assert module_of("server/webhooks.c") == "server/webhooks"
    assert module_of("smtp/../server/api.h") != "server/api"   # callers normalise first
    assert module_of(os.path.normpath("smtp/../server/api.h")) == "server/api"
    assert private_header_user_ok("server/store_conn.c", "server/store_internal.h")
    assert private_header_user_ok("server/config.c", "server/config_internal.h")
    assert not private_header_user_ok("server/worker.c", "server/store_internal.h")
    assert not private_header_user_ok("server/storefront.c", "server/store_internal.h")
    assert private_header_user_ok("server/http_deadlines.c", "server/http_internal.h")
    assert not private_header_user_ok("server/api_messages.c", "server/http_internal.h")
    assert private_header_user_ok("server/webhook_request.c", "server/webhook_internal.h")
    assert private_header_user_ok("server/webhook.c", "server/webhook_internal.h")
    assert not private_header_user_ok("server/api_webhooks.c", "server/webhook_internal.h")
    assert not private_header_user_ok("server/store_webhooks.c", "server/webhook_internal.h")
    assert not private_header_user_ok("smtp/store_x.c", "server/store_internal.h")
