"""test_version.py - one version, from the top-level VERSION file.

The Makefile compiles VERSION in (-DTXMAIL_VERSION); everything that shows a
version must agree with it: `txmail version` / `--version` / `--help`, the
webhook User-Agent, api-spec/openapi.yaml's info.version, and the Docker
image label (the Dockerfile takes it as the TXMAIL_VERSION build argument,
whose default must be VERSION's content, and its build stage refuses an argument that differs from the binary it built;
there is no docker engine here, so this test reads the Dockerfile's stages).

Must never: compare a value with itself (each side is read from its own
file or from the running binary), or wait without a deadline.
"""

import os
import re
import subprocess

import yaml

from helpers import dl

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SEMVER_RE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$")


def version_file():
    with open(os.path.join(REPO, "VERSION"), encoding="utf-8") as f:
        text = f.read()
    assert text.endswith("\n") and text.count("\n") == 1, "VERSION: got %r, want one line" % text
    v = text.strip()
    assert SEMVER_RE.match(v), "VERSION: got %r, want MAJOR.MINOR.PATCH" % v
    return v


def run_bin(binary, *args):
    p = subprocess.run([binary, *args], capture_output=True, text=True, timeout=dl(10))
    assert p.returncode == 0, "txmail %s: exit %d, stderr %r" % (" ".join(args), p.returncode, p.stderr)
    return p.stdout


def test_binary_reports_version_file(txmail_binary):
    v = version_file()
    for arg in ("version", "--version"):
        out = run_bin(txmail_binary, arg)
        assert out == "txmail %s\n" % v, "txmail %s: got %r, want %r" % (arg, out, "txmail %s\n" % v)
    first = run_bin(txmail_binary, "--help").splitlines()[0]
    assert first == "txmail %s" % v, "txmail --help first line: got %r, want %r" % (first, "txmail " + v)


def test_openapi_info_version():
    v = version_file()
    with open(os.path.join(REPO, "api-spec", "openapi.yaml"), encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    got = str(spec["info"]["version"])
    assert got == v, "api-spec/openapi.yaml info.version: got %r, want %r (VERSION)" % (got, v)


def dockerfile_stages():
    """[(from_line, [instruction, ...])] with continuation lines joined and comments dropped;
    stage 0 is what comes before the first FROM (global ARGs)."""
    with open(os.path.join(REPO, "Dockerfile"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    instrs, cur = [], ""
    for line in lines:
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        instrs.append((cur + line).strip())
        cur = ""
    stages = [("", [])]
    for ins in instrs:
        if ins.split()[0].upper() == "FROM":
            stages.append((ins, []))
        else:
            stages[-1][1].append(ins)
    return stages


def test_dockerfile_label_is_the_checked_build_arg():
    stages = dockerfile_stages()
    assert len(stages) >= 3, "Dockerfile: got %d stages, want build + runtime" % (len(stages) - 1)
    glob, build, runtime = stages[0][1], stages[1], stages[-1]
    defaults = [i.split("=", 1)[1].strip().strip('"') for i in glob if i.startswith("ARG TXMAIL_VERSION=")]
    assert defaults == [version_file()], "Dockerfile: global ARG TXMAIL_VERSION default: got %r, want [%r] " \
        "(VERSION), so a plain docker build / compose build labels the image right" % (defaults, version_file())
    for name, (frm, ins) in (("build", build), ("runtime", runtime)):
        assert "ARG TXMAIL_VERSION" in ins, "Dockerfile %s stage (%s): no ARG TXMAIL_VERSION" % (name, frm)

    labels = " ".join(i for i in runtime[1] if i.upper().startswith("LABEL "))
    m = re.search(r'org\.opencontainers\.image\.version="?(\$\{?TXMAIL_VERSION\}?)"?(\s|$)', labels)
    assert m, "Dockerfile runtime stage: got labels %r, want org.opencontainers.image.version=${TXMAIL_VERSION}" \
        % labels

    copies = [i for i in build[1] if i.upper().startswith("COPY ")]
    assert any("VERSION" in c.split()[1:-1] for c in copies), \
        "Dockerfile build stage copies no VERSION (the Makefile compiles it in): %r" % copies
    runs = " ".join(i for i in build[1] if i.upper().startswith("RUN "))
    # the build fails unless the binary's own answer equals the label's value
    assert re.search(r'"\$\(\./build/txmail version\)" != "txmail \$\{TXMAIL_VERSION\}"', runs) \
        and "exit 1" in runs, "Dockerfile build stage: no check of `txmail version` against TXMAIL_VERSION"

    with open(os.path.join(REPO, "Makefile"), encoding="utf-8") as f:
        mk = f.read()
    assert "--build-arg TXMAIL_VERSION=$(VERSION)" in mk, "Makefile: `make image` does not pass VERSION"
    assert re.search(r"^VERSION\s*:=\s*\$\(shell cat VERSION\)", mk, re.M), "Makefile: VERSION not read from VERSION"


def test_webhook_user_agent(txmail, api, smtp_peer, webhook):
    v = version_file()
    r = api.send({"from": "s@example.com", "to": "ua@example.com", "subject": "ua", "text": "ua\n"})
    assert r.status == 202, "POST /v1/messages: got %s %r" % (r.status, r.body)
    mid = r.json["id"]
    webhook.wait_events_for(mid, 1, dl(15), types=("message.delivered",))
    attempts, _, _ = webhook.snapshot()
    uas = {a["user_agent"] for a in attempts}
    assert uas == {"txmail/%s" % v}, "webhook User-Agent: got %r, want {'txmail/%s'}" % (uas, v)
