r"""logparse.py - txmail's log lines, parsed strictly (logfmt or JSON lines).

Owns: parse_logfmt / parse_json_line (one line -> (key, value) pairs, or
LogSyntaxError saying where it broke), parse_log (a whole stderr file,
every line strict, first keys ts, level, msg; optionally skipping the
harness's start lines) and records (the lines of a
mixed file - the harness's "=== test harness" lines, stdout - that parse,
as dicts), the one way tests look for a log line by its fields rather than
by its text.

Must never: accept a line as logfmt that log.c would not write (values are
bare or quoted with \" \\ \n \r \t \xHH; keys [a-z0-9_.]+), or depend on
anything but the standard library and pytest.
"""

import json
import re

import pytest

TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
LEVELS = ("debug", "info", "warn", "error")
KEY_RE = re.compile(r"([a-z0-9_.]+)=")
# a bare value: printable ASCII without space, '"', '=' and '\' (log.c quotes anything else)
BARE_RE = re.compile(r"[\x21\x23-\x3c\x3e-\x5b\x5d-\x7e]+")
# the line helpers.Txmail writes into its log at each start of the process
HARNESS_MARK = b"=== test harness:"
ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


class LogSyntaxError(ValueError):
    pass


def parse_logfmt(line):
    """One logfmt line -> list of (key, value). Strict: key=value pairs
    separated by exactly one space, keys [a-z0-9_.]+, values bare or double
    quoted with the escapes \\" \\\\ \\n \\r \\t \\xHH only, no control
    character anywhere, nothing before the first key or after the last
    value. Raises LogSyntaxError naming the offset."""
    pairs = []
    i, n = 0, len(line)
    while True:
        m = KEY_RE.match(line, i)
        if not m:
            raise LogSyntaxError("offset %d: want key=, got %r" % (i, line[i:i + 40]))
        key, i = m.group(1), m.end()
        if i < n and line[i] == '"':
            i += 1
            buf = []
            while True:
                if i >= n:
                    raise LogSyntaxError("value of %s: unterminated quoted value" % key)
                c = line[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\":
                    e = line[i + 1:i + 2]
                    if e in ESCAPES and e != "":
                        buf.append(ESCAPES[e])
                        i += 2
                    elif e == "x" and re.fullmatch(r"[0-9a-f]{2}", line[i + 2:i + 4]):
                        buf.append(chr(int(line[i + 2:i + 4], 16)))
                        i += 4
                    else:
                        raise LogSyntaxError("value of %s, offset %d: bad escape %r" % (key, i, line[i:i + 4]))
                    continue
                if ord(c) < 0x20 or ord(c) == 0x7f:
                    raise LogSyntaxError("value of %s, offset %d: raw control character %r" % (key, i, c))
                buf.append(c)
                i += 1
            value = "".join(buf)
        else:
            m = BARE_RE.match(line, i)
            if not m:
                raise LogSyntaxError("value of %s, offset %d: empty or not a bare value: %r" % (
                    key, i, line[i:i + 20]))
            value, i = m.group(0), m.end()
        pairs.append((key, value))
        if i == n:
            return pairs
        if line[i] != " " or i + 1 == n:
            raise LogSyntaxError("offset %d: want one space before the next key, got %r" % (i, line[i:i + 20]))
        i += 1


def parse_json_line(line):
    """One JSON line -> list of (key, value): an object of scalars (string,
    integer, true), with no duplicate key."""
    try:
        pairs = json.loads(line, object_pairs_hook=lambda p: p)
    except ValueError as e:
        raise LogSyntaxError("not JSON: %s" % e)
    if not isinstance(pairs, list):
        raise LogSyntaxError("not a JSON object")
    for k, v in pairs:
        if not re.fullmatch(r"[a-z0-9_.]+", k):
            raise LogSyntaxError("key %r is not [a-z0-9_.]+" % k)
        if isinstance(v, bool):
            if not (k == "truncated" and v is True):
                raise LogSyntaxError("key %s: unexpected boolean %r" % (k, v))
        elif not isinstance(v, (str, int)):
            raise LogSyntaxError("key %s: value %r is not a string or an integer" % (k, v))
    return pairs


def parse_head(pairs):
    """The checks every record gets: first keys ts, level, msg; no key twice;
    ts YYYY-MM-DDTHH:MM:SS.mmmZ; a known level; a non-empty msg. -> dict."""
    keys = [k for k, _ in pairs]
    if keys[:3] != ["ts", "level", "msg"]:
        raise LogSyntaxError("first keys: got %r, want ts, level, msg" % (keys[:3],))
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise LogSyntaxError("duplicate keys %r" % (dup,))
    rec = dict(pairs)
    if not isinstance(rec["ts"], str) or not TS_RE.match(rec["ts"]):
        raise LogSyntaxError("ts %r is not YYYY-MM-DDTHH:MM:SS.mmmZ" % (rec["ts"],))
    if rec["level"] not in LEVELS:
        raise LogSyntaxError("level %r is not one of %s" % (rec["level"], LEVELS))
    if not isinstance(rec["msg"], str) or not rec["msg"]:
        raise LogSyntaxError("msg %r is empty or not text" % (rec["msg"],))
    return rec


def records(path, msg=None):
    """The lines of a file that are log records (logfmt or JSON), as dicts
    with "_n" (line number); other lines (harness markers, stdout) are
    skipped. msg: only the records with that msg."""
    out = []
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return out
    for n, b in enumerate(lines, 1):
        try:
            line = b.decode("utf-8")
            pairs = parse_json_line(line) if line.startswith("{") else parse_logfmt(line)
            rec = parse_head(pairs)
        except (UnicodeDecodeError, LogSyntaxError):
            continue
        if msg is None or rec["msg"] == msg:
            rec["_n"] = n
            out.append(rec)
    return out


def parse_log(path, fmt, harness=False, live=False):
    """Every line of the file -> a list of dicts (with "_n", the line number).
    Fails the test on the first line that is not strictly one record.
    harness: the file is a helpers.Txmail log, whose own start lines
    ("=== test harness: ...") are skipped; every other line must be a record.
    live: the process is still writing, so a last line without its newline
    is one being written (a reader can see part of a write(2)) and is left
    for the next read; otherwise the file must end with a newline."""
    with open(path, "rb") as f:
        raw = f.read()
    assert raw, "empty log %s" % path
    if live and not raw.endswith(b"\n"):
        raw = raw[:raw.rfind(b"\n") + 1]
        if not raw:
            return []
    assert raw.endswith(b"\n"), "log does not end with a newline: %r" % raw[-200:]
    recs = []
    for n, b in enumerate(raw[:-1].split(b"\n"), 1):
        if harness and b.startswith(HARNESS_MARK):
            continue
        try:
            line = b.decode("utf-8")
        except UnicodeDecodeError as e:
            pytest.fail("%s line %d is not UTF-8 (%s): %r" % (path, n, e, b[:300]))
        try:
            rec = parse_head(parse_logfmt(line) if fmt == "logfmt" else parse_json_line(line))
        except LogSyntaxError as e:
            pytest.fail("%s line %d is not strict %s: %s\n  line: %s" % (path, n, fmt, e, line[:600]),
                        pytrace=False)
        rec["_n"] = n
        recs.append(rec)
    return recs


