"""conftest.py - fixtures for txmail's end-to-end tests.

Owns: the per-test stack - a real redis-server (AOF), the SMTP test peer
(STARTTLS required, AUTH required, CA-signed certificate), the Standard
Webhooks receiver, and txmail processes started from $TXMAIL_BIN - each on
random free loopback ports, torn down even when a test fails. When a test
fails, the tails of the txmail logs are attached to its report. Under the
sanitizer build (TXMAIL_ASAN=1) a txmail log with an ASan/UBSan/LSan report
fails the test at teardown, as does a txmail that does not exit cleanly on
SIGTERM. TXMAIL_IT_KEEP=1 keeps each test's work dir (logs, maildir,
redis data) for a post-mortem.

Must never: use fixed ports, sleep instead of waiting for a condition, or
leave processes behind.
"""

import base64
import os
import shutil
import signal
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (HERE, os.path.join(HERE, "peers")):
    if p not in sys.path:
        sys.path.insert(0, p)

import helpers  # noqa: E402
from helpers import SCALE, RedisServer, SmtpPeer, Txmail, free_port  # noqa: E402
from webhook_receiver import WebhookReceiver  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
TEST_LIMIT_S = 150 * SCALE  # last-resort per-test alarm; real waits have their own deadlines


def txmail_bin():
    b = os.environ.get("TXMAIL_BIN") or os.path.join(REPO, "build", "txmail")
    return os.path.abspath(b)


# --- reporting ---------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for name, path in getattr(item, "_txm_logs", []):
            rep.sections.append(("%s (%s, last lines)" % (name, path), helpers.tail(path, 150)))


def pytest_terminal_summary(terminalreporter):
    if helpers.NOTES:
        terminalreporter.write_sep("-", "txmail integration notes")
        for line in helpers.NOTES:
            terminalreporter.write_line(line)


def _on_alarm(signum, frame):
    raise TimeoutError("test exceeded the %.0fs harness limit" % TEST_LIMIT_S)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(TEST_LIMIT_S))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def register_log(request, name, path):
    node = request.node
    if not hasattr(node, "_txm_logs"):
        node._txm_logs = []
    node._txm_logs.append((name, path))


@pytest.fixture(autouse=True)
def _one_partition_layout(request, monkeypatch):
    """A module with ONE_PARTITION = True asserts the key layout of one
    partition (txm{0}:...): its txmail processes keep TXMAIL_PARTITIONS=1
    when the suite runs with TXM_PARTITIONS=N."""
    if getattr(request.module, "ONE_PARTITION", False):
        monkeypatch.setattr(helpers, "PARTITIONS", "")


@pytest.fixture(name="register_log")
def register_log_fixture(request):
    """register_log(name, path): attach the file's tail to the report if the test fails."""
    return lambda name, path: register_log(request, name, path)


# --- fixtures ------------------------------------------------------------------

@pytest.fixture(scope="session")
def txmail_binary():
    b = txmail_bin()
    if not os.access(b, os.X_OK):
        pytest.fail("txmail binary %s is missing (make build, or set TXMAIL_BIN)" % b)
    return b


@pytest.fixture
def workdir():
    # short paths: the dev-mode test puts a unix socket under here
    d = tempfile.mkdtemp(prefix="txm-it-")
    yield d
    if os.environ.get("TXMAIL_IT_KEEP"):
        print("kept work dir %s" % d)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def certs():
    d = tempfile.mkdtemp(prefix="txm-certs-")
    helpers.make_certs(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def redis(workdir, request):
    r = RedisServer(workdir)
    register_log(request, "redis-server log", r.log)
    try:
        r.start()
        yield r
    finally:
        r.stop()


@pytest.fixture
def smtp_peer(workdir, certs, request):
    p = SmtpPeer(workdir, certs)
    register_log(request, "smtpd.py stderr", p.stderr)
    try:
        p.start()
        yield p
    finally:
        p.stop()


def new_secret():
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@pytest.fixture
def webhook():
    w = WebhookReceiver(new_secret()).start()
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
def receivers():
    """A maker of webhook receivers (each with its own secret), all stopped at the end."""
    made = []

    def make():
        w = WebhookReceiver(new_secret()).start()
        made.append(w)
        return w
    try:
        yield make
    finally:
        for w in made:
            w.stop()


def new_api_key():
    return "txm_test_" + base64.b32encode(os.urandom(15)).decode().lower()


@pytest.fixture
def txmail_env(redis, smtp_peer, webhook):
    """The environment of a txmail wired to this test's peers (without TXMAIL_LISTEN)."""
    return {
        "TXMAIL_REDIS_URL": redis.url,
        "TXMAIL_API_KEYS": new_api_key(),
        "TXMAIL_RELAY": smtp_peer.relay_url(),
        "TXMAIL_TLS_CA_FILE": smtp_peer.ca,
        "TXMAIL_HELO_NAME": "test.txmail.local",
        "TXMAIL_WEBHOOK_URL": webhook.url,
        "TXMAIL_WEBHOOK_SECRET": webhook.secret,
        # the test peers listen on loopback, which the webhook-URL guard refuses by default
        "TXMAIL_WEBHOOK_ALLOW_PRIVATE": "1",
        "TXMAIL_RETRY_BASE": "0.2",
        "TXMAIL_RETRY_MAX": "1",
        "TXMAIL_VISIBILITY_TIMEOUT": "2",
        # a SIGTERM at teardown waits at most this for SMTP in flight (the
        # harness allows 10 s); test_shutdown.py tests the default of 25 s
        "TXMAIL_SHUTDOWN_GRACE": "5",
        "TXMAIL_WEBHOOK_RETRY_BASE": "0.2",
        "TXMAIL_LOG_LEVEL": os.environ.get("TXM_LOG_LEVEL", "info"),
        # load tests send far more than 50/s with one key; tests of the limit set their own
        "TXMAIL_RATE_LIMIT": "0",
        # one delivery loop, as before it defaulted to the CPU quota (2 here): every test
        # keeps its timing and thread count on a shared machine; test_cpu_quota.py unsets it
        "TXMAIL_WORKERS": "1",
    }


def stop_all(procs):
    """Stop every Txmail of procs; fail the test on any teardown problem, with
    the log tail of each process that had one."""
    problems = []
    for t in procs:
        t.stop()
        problems.extend(t.problems)
    if problems:
        details = "\n".join(problems)
        for t in procs:
            if t.problems:
                details += "\n--- %s log tail ---\n%s" % (t.name, helpers.tail(t.log, 80))
        pytest.fail("txmail teardown problems:\n" + details, pytrace=False)


@pytest.fixture
def txmail_factory(txmail_binary, txmail_env, workdir, request):
    """start(args=("run",), extra_env=None, http=True, wait=True, key=None) -> Txmail.
    `worker` and `bounce` get TXMAIL_ADMIN_LISTEN=127.0.0.1:<free port> (t.admin_port;
    None when not on 127.0.0.1 or off) unless extra_env sets it; extra_env values of None remove a variable; key is the client's API key
    (default: the first of TXMAIL_API_KEYS). Every process started is stopped
    at teardown (SIGTERM, then SIGKILL); sanitizer reports and unclean exits
    fail the test there."""
    procs = []

    def start(args=("run",), extra_env=None, http=True, wait=True, name=None, key=None):
        env = dict(txmail_env)
        port = None
        if http:
            port = free_port()
            env["TXMAIL_LISTEN"] = "127.0.0.1:%d" % port
        if args and args[0] in ("worker", "bounce"):
            # their admin listener (default 127.0.0.1:9090) gets a port of its own
            env["TXMAIL_ADMIN_LISTEN"] = "127.0.0.1:%d" % free_port()
        env.update(extra_env or {})
        name = name or "txmail %s #%d" % (" ".join(args), len(procs) + 1)
        logp = os.path.join(workdir, "txmail-%d.log" % (len(procs) + 1))
        t = Txmail(txmail_binary, args, helpers.clean_env(env), logp, port=port,
                   key=key or (env["TXMAIL_API_KEYS"] or "").split(",")[0], http=http, name=name)
        admin = env.get("TXMAIL_ADMIN_LISTEN") or ""
        t.admin_port = int(admin.rsplit(":", 1)[1]) if admin.startswith("127.0.0.1:") else None
        procs.append(t)
        register_log(request, name + " log", logp)
        t.start(wait=wait)
        return t

    yield start
    stop_all(procs)


@pytest.fixture
def txmail(txmail_factory):
    return txmail_factory()


@pytest.fixture
def api(txmail):
    c = txmail.client()
    yield c
    c.close()


# --- spec-checked clients (tests/integration/spec_check.py) -------------------

@pytest.fixture(scope="session")
def spec_validator():
    """One `node tests/spec/validate.mjs` for the session (ajv over api-spec/openapi.yaml)."""
    import spec_check
    v = spec_check.SpecValidator()
    try:
        yield v
    finally:
        v.close()


@pytest.fixture
def capi(txmail, spec_validator):
    """Like `api`, but every answer is validated against the spec (route + status)."""
    import spec_check
    c = spec_check.CheckedClient(txmail.port, spec_validator, key=txmail.key)
    yield c
    c.close()


# --- a private /etc/hosts (unshare -rm + a bind mount) ----------------------------------

@pytest.fixture
def hosts_txmail(txmail_binary, txmail_env, workdir, register_log):
    """start(hosts_text, extra_env) -> Txmail: a `txmail run` that sees hosts_text as /etc/hosts."""
    why = helpers.hosts_ns_problem(workdir)
    if why is not None:
        pytest.skip("cannot give txmail a private /etc/hosts: " + why)
    procs = []

    def start(hosts_text, extra_env):
        n = len(procs) + 1
        hosts = os.path.join(workdir, "hosts-%d" % n)
        with open(hosts, "w") as f:
            f.write(hosts_text)
        wrapper = os.path.join(workdir, "txmail-hosts-%d" % n)
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\n# txmail with %s as /etc/hosts (conftest.py hosts_txmail)\n'
                    'exec unshare -rm sh -c \'mount --bind "$1" /etc/hosts && shift && exec "$@"\' '
                    'sh "%s" "%s" "$@"\n' % (hosts, hosts, txmail_binary))
        os.chmod(wrapper, 0o755)
        env = dict(txmail_env)
        port = free_port()
        env["TXMAIL_LISTEN"] = "127.0.0.1:%d" % port
        env.update(extra_env)
        logp = os.path.join(workdir, "txmail-hosts-%d.log" % n)
        name = "txmail run (private hosts) #%d" % n
        t = Txmail(wrapper, ["run"], helpers.clean_env(env), logp, port=port,
                   key=env["TXMAIL_API_KEYS"].split(",")[0], name=name)
        procs.append(t)
        register_log(name + " log", logp)
        t.start()
        return t

    yield start
    stop_all(procs)
