"""test_lua_scripts.py - the store's Lua scripts, as they ship, load into Redis.

Each server/lua/<name>.lua (lib/*.lua are pieces they `-- @include`) is
embedded at build time by server/lua/luagen.c as `store_lua_<name>` in
build/gen/store_lua.h (docs/store.md). This test reads that generated
header - the text compiled into the binary, not the .lua files - and checks:
every script is there and nothing else; each text is inside $TXMAIL_BIN as
a NUL-terminated string (so the header is the one the binary was built
from); each text is its .lua file without the opening comment with the
includes expanded (so the header is not stale against the sources); each
source opens with its header comment (name, KEYS, the reply); and every
script is accepted by SCRIPT LOAD on a real redis-server with the SHA1 of
its text, so a Lua syntax error fails the suite. One more test makes sure a
broken script is refused by this same path (the check can fail).

The header is found next to the binary: <dir of TXMAIL_BIN>/gen/, else its
parent's gen/ (build/asan/txmail uses build/gen/), or $TXMAIL_LUA_HEADER.

Must never: read the scripts from the .lua files for the SCRIPT LOAD (that
would not check what ships), or wait without a deadline.
"""

import hashlib
import os
import re

import pytest

from conftest import REPO, txmail_bin

LUA_DIR = os.path.join(REPO, "server", "lua")
INCLUDE = "-- @include "
DECL_RE = re.compile(r"^static const char store_lua_([a-z0-9_]+)\[\] =$")
OCT_RE = re.compile(r"[0-7]{3}")


def header_path():
    env = os.environ.get("TXMAIL_LUA_HEADER")
    if env:
        return env
    d = os.path.dirname(txmail_bin())
    for cand in (os.path.join(d, "gen", "store_lua.h"),
                 os.path.join(os.path.dirname(d), "gen", "store_lua.h")):
        if os.path.exists(cand):
            return cand
    pytest.fail("no gen/store_lua.h next to %s (make build, or set TXMAIL_LUA_HEADER)" % txmail_bin())


def c_unescape(lit):
    """The bytes of one C string literal's body, with the escapes luagen writes."""
    out, i = bytearray(), 0
    simple = {"n": b"\n", "t": b"\t", "\\": b"\\", '"': b'"', "?": b"?"}
    while i < len(lit):
        c = lit[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        e = lit[i + 1]
        if e in simple:
            out += simple[e]
            i += 2
        elif OCT_RE.match(lit, i + 1):
            out.append(int(lit[i + 1:i + 4], 8))
            i += 4
        else:
            raise AssertionError("unknown escape \\%s in %r" % (e, lit))
    return bytes(out)


def embedded():
    """{name: script bytes} from the generated header."""
    path = header_path()
    with open(path, encoding="ascii") as f:
        lines = f.read().split("\n")
    scripts, name, buf = {}, None, None
    for n, line in enumerate(lines, 1):
        m = DECL_RE.match(line)
        if m:
            assert name is None, "%s:%d: declaration inside %s" % (path, n, name)
            name, buf = m.group(1), b""
        elif name is not None and line == "\t;":
            assert name not in scripts, "%s: store_lua_%s twice" % (path, name)
            scripts[name], name = buf, None
        elif name is not None:
            assert line.startswith('\t"') and line.endswith('"'), "%s:%d: got %r" % (path, n, line)
            buf += c_unescape(line[2:-1])
    assert name is None, "%s: store_lua_%s not terminated" % (path, name)
    assert scripts, "%s: no scripts" % path
    return scripts


def source_names():
    return sorted(f[:-4] for f in os.listdir(LUA_DIR) if f.endswith(".lua"))


def body(path, depth=0):
    """The rule luagen.c documents: no opening comment, includes expanded."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text and not text.endswith("\n"):
        text += "\n"
    out, head = [], True
    for line in text.split("\n")[:-1]:
        if line.startswith(INCLUDE) and len(line) > len(INCLUDE):
            assert depth == 0, "%s: an included file includes" % path
            out.append(body(os.path.join(LUA_DIR, line[len(INCLUDE):]), depth + 1))
            head = False
            continue
        if head and (line == "" or line.startswith("--")):
            continue
        head = False
        out.append(line + "\n")
    return "".join(out)


def test_every_script_is_embedded():
    got, want = sorted(embedded()), source_names()
    assert got == want, "embedded: got %s, want the scripts of server/lua %s" % (got, want)


def test_embedded_text_is_in_the_binary():
    with open(txmail_bin(), "rb") as f:
        image = f.read()
    missing = [n for n, s in embedded().items() if s + b"\0" not in image]
    assert not missing, "not in %s (header newer than the binary? make build): %s" % (txmail_bin(), missing)


def test_embedded_text_is_the_source_without_its_header():
    scripts = embedded()
    for name in source_names():
        want = body(os.path.join(LUA_DIR, name + ".lua")).encode()
        assert scripts[name] == want, "store_lua_%s: got %r..., want %r... (stale header? make build)" % (
            name, scripts[name][:80], want[:80])


def test_each_source_opens_with_its_contract():
    for name in source_names():
        with open(os.path.join(LUA_DIR, name + ".lua"), encoding="utf-8") as f:
            head = []
            for line in f:
                if not line.startswith("--") or line.startswith(INCLUDE):
                    break
                head.append(line)
        text = "".join(head)
        assert head and head[0].startswith("-- %s.lua - " % name), \
            "%s.lua: got first line %r, want '-- %s.lua - ...'" % (name, head[:1], name)
        assert "-- KEYS:" in text, "%s.lua: header comment without KEYS:" % name
        assert "return" in text.lower(), "%s.lua: header comment without the reply" % name


def test_every_embedded_script_loads(redis):
    scripts = embedded()
    for name, text in sorted(scripts.items()):
        try:
            sha = redis.cmd("SCRIPT", "LOAD", text)
        except RuntimeError as e:
            pytest.fail("SCRIPT LOAD store_lua_%s (server/lua/%s.lua): %s" % (name, name, e))
        want = hashlib.sha1(text).hexdigest()
        assert sha == want, "store_lua_%s: got sha %r, want %r" % (name, sha, want)
        assert redis.cmd("SCRIPT", "EXISTS", sha) == [1], "store_lua_%s: not cached after LOAD" % name


def test_a_broken_script_is_refused(redis):
    # the same path as above with one script spoiled: the check can fail
    text = embedded()["enqueue"].replace(b"return {1, ''}", b"return {1, ''", 1)
    with pytest.raises(RuntimeError, match="(?i)compil"):
        redis.cmd("SCRIPT", "LOAD", text)
