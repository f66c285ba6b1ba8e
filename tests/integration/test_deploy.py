"""test_deploy.py - the deployment files run as written, as far as a machine
without a container engine or a cluster can tell.

Owns:
- deploy/prometheus/alerts.yaml: `promtool check rules`, and `promtool test
  rules` on alerts.test.yaml (each alert fires on its series, quiet otherwise);
- deploy/grafana/txmail.json: well-formed, every query parses as PromQL
  (promtool, with Grafana's $__ variables substituted), panels do not overlap,
  the data source is the variable the provisioning fills in;
- every txmail_* / process_* series the dashboard and the rules use (and every
  label they match on or group by) exists in a live scrape of a split
  deployment - `txmail api` and `txmail worker` (its admin port), real Redis,
  SMTP peer and webhook receiver - after mail went through it (delivered,
  deferred then delivered, failed); a real Prometheus (Debian's) scrapes
  both, and every dashboard query evaluated there returns a result; the
  compose healthcheck commands are run against those same live ports;
- deploy/k8s (`kubectl kustomize`, base, overlays/dev and overlays/sentinel): probes (the
  worker's on its admin port), resources, the restrictive securityContext,
  PodDisruptionBudgets, an HPA for each role, the NetworkPolicy that lets only
  txmail's api and worker reach Redis, the ServiceMonitor, secrets mounted as
  files and named by *_FILE variables (no envFrom of a Secret), the Redis
  StatefulSet with AOF and a PVC, the Redis host a Service that exists, the
  image tag equal to VERSION and no :latest anywhere; the Sentinel overlay:
  three Redis pods on three nodes, each with a sentinel, a PDB, the headless
  Service publishing them before they are ready, txmail's redis-url naming
  exactly those sentinels and the master, the sentinels' password a mounted
  file, TXMAIL_REDIS_MIN_REPLICAS >= 1, the pods reaching each other; its
  start script (redis-ha.sh, as rendered) run on loopback: the group forms,
  a SIGKILLed primary is replaced by a replica with the data, and the
  restarted pod comes back as a replica from its first answer on;
- deploy/docker-compose.yml: `docker-compose config` parses it (Debian's
  docker-compose 1.29 does not know the top-level `name:` of the newer compose
  spec: it is given the file without that one line, and `name` is checked
  from the YAML), profiles, Redis AOF + password + volume + healthcheck, two
  workers with healthchecks on the admin port, Prometheus and Grafana
  provisioned with the dashboard; the Redis start command of compose and of
  the StatefulSet is run with a real redis-server: it requires the password
  from the secret file, and the healthcheck passes with it and fails without;
- the settings each txmail container gets (k8s base with the example secret,
  the dev overlay with its generated one, compose with the values its set-up
  lines make: environment, ConfigMap and secret files) pass `txmail config
  check` with no error and no warning;
- every TXMAIL_* name in deploy/ and the Dockerfile is in `txmail config list`
  (a secret's NAME_FILE included; the Dockerfile's build ARGs are not
  configuration); the Dockerfile's apt packages exist in bookworm and its
  runtime stage installs the package of every library the binary links.

Must never: need a container engine, a cluster or the network; wait without
a deadline; leave a process behind.
"""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.parse

import pytest
import yaml

from helpers import Client, dl, free_port, send_text, tail, wait_status, wait_until

# asserts message keys on the Sentinel group's nodes: TXMAIL_PARTITIONS stays 1 under TXM_PARTITIONS (conftest)
ONE_PARTITION = True

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEPLOY = os.path.join(REPO, "deploy")
ALERTS = os.path.join(DEPLOY, "prometheus", "alerts.yaml")
ALERTS_TEST = os.path.join(DEPLOY, "prometheus", "alerts.test.yaml")
DASHBOARD = os.path.join(DEPLOY, "grafana", "txmail.json")
COMPOSE = os.path.join(DEPLOY, "docker-compose.yml")
K8S = os.path.join(DEPLOY, "k8s")
DOCKERFILE = os.path.join(REPO, "Dockerfile")

TXMAIL_UID = 10001
# labels Prometheus adds to every scraped series, and the bucket label
SCRAPE_LABELS = {"job", "instance", "le"}


def need(tool, package):
    path = shutil.which(tool)
    if path is None:
        pytest.fail("%s is missing: install the Debian package %s (make deps-test)" % (tool, package))
    return path


def run(argv, timeout=30, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=dl(timeout), **kw)


def version():
    with open(os.path.join(REPO, "VERSION"), encoding="utf-8") as f:
        return f.read().strip()


# --- PromQL: the series an expression uses -------------------------------------

STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
NAME_RE = re.compile(r'(?<![\w:])((?:txmail|process)_[A-Za-z0-9_]*)')
SELECTOR_RE = re.compile(r'(?<![\w:])((?:txmail|process)_[A-Za-z0-9_]*)\s*\{([^}]*)\}')
MATCHER_KEY_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)')
GROUPING_RE = re.compile(r'\b(?:by|without)\s*\(([^)]*)\)')


def promql_uses(expr):
    """(names, {name: matcher label keys}, grouping labels) of one expression;
    string literals are blanked first, so no name or label inside a label
    value or a legend counts."""
    bare = STRING_RE.sub('""', expr)
    names = set(NAME_RE.findall(bare))
    matchers = {}
    for name, body in SELECTOR_RE.findall(bare):
        matchers.setdefault(name, set()).update(MATCHER_KEY_RE.findall(body))
    grouping = set()
    for body in GROUPING_RE.findall(bare):
        grouping.update(x.strip() for x in body.split(",") if x.strip())
    return names, matchers, grouping


def grafana_to_promql(expr):
    """Grafana's built-in variables, substituted as Grafana would."""
    for var, val in (("$__rate_interval", "1m"), ("$__interval", "1m"), ("$__range", "1h"),
                     ("${__range}", "1h"), ("${__rate_interval}", "1m")):
        expr = expr.replace(var, val)
    return expr


def dashboard():
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def dashboard_exprs():
    """[(panel title, expr)] of every query of every panel, rows' panels included."""
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
    walk(dashboard()["panels"])
    return out


def alert_exprs():
    with open(ALERTS, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return [(r.get("alert") or r.get("record"), r["expr"]) for g in doc["groups"] for r in g["rules"]]


# --- the Prometheus text format, as far as this test needs it ----------------

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+(?:\s+\S+)?$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_scrape(text):
    """({sample name: set of label keys}, {family: type}) of one exposition."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            types[parts[2]] = parts[3]
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, "malformed sample line %r" % line
        keys = {k for k, _ in LABEL_RE.findall(m.group(2) or "")}
        samples.setdefault(m.group(1), set()).update(keys)
    return samples, types


def missing_series(exprs, samples, types):
    """Problems (strings) of [(where, expr)] against one scrape's samples/types."""
    problems = []
    for where, expr in exprs:
        names, matchers, grouping = promql_uses(expr)
        have = set()
        for n in sorted(names):
            fam = None
            for suf in ("_bucket", "_sum", "_count"):
                if n.endswith(suf) and types.get(n[:-len(suf)]) == "histogram":
                    fam = n[:-len(suf)]
            if types.get(n) == "histogram":
                problems.append("%s: %s is a histogram: use %s_bucket/_sum/_count" % (where, n, n))
                continue
            if n not in samples:
                problems.append("%s: series %s is not in the scrape" % (where, n))
                continue
            if n.endswith("_bucket") and fam is None:
                problems.append("%s: %s is not the bucket of a histogram" % (where, n))
            have |= samples[n]
            for k in sorted(matchers.get(n, ())):
                if k not in samples[n] and k not in SCRAPE_LABELS:
                    problems.append("%s: %s has no label %r (it has %s)" % (where, n, k, sorted(samples[n])))
        for k in sorted(grouping):
            if names and names <= set(samples) and k not in have and k not in SCRAPE_LABELS:
                problems.append("%s: groups by %r, which none of %s has" % (where, k, sorted(names)))
    return sorted(set(problems))


# --- Prometheus rules and the dashboard ------------------------------------------

def test_alert_rules_check_and_unit_tests():
    promtool = need("promtool", "prometheus")
    r = run([promtool, "check", "rules", ALERTS])
    assert r.returncode == 0, "promtool check rules %s: %s%s" % (ALERTS, r.stdout, r.stderr)
    names = [a for a, _ in alert_exprs()]
    for want in ("TxmailQueueAgeHigh", "TxmailDeferredRatioHigh", "TxmailWebhookBacklog",
                 "TxmailRedisDown", "TxmailNoDeliveries"):
        assert want in names, "alerts.yaml: no alert %s (got %s)" % (want, names)
    r = run([promtool, "test", "rules", os.path.basename(ALERTS_TEST)], cwd=os.path.dirname(ALERTS_TEST))
    assert r.returncode == 0, "promtool test rules %s:\n%s%s" % (ALERTS_TEST, r.stdout, r.stderr)
    with open(ALERTS_TEST, encoding="utf-8") as f:
        tested = {t["alertname"] for c in yaml.safe_load(f)["tests"] for t in c.get("alert_rule_test", [])}
    assert tested == set(names), "alerts.test.yaml tests %s, alerts.yaml has %s" % (sorted(tested), sorted(names))


def test_dashboard_is_wellformed_and_its_queries_parse(tmp_path):
    promtool = need("promtool", "prometheus")
    d = dashboard()
    assert d.get("uid") == "txmail" and d.get("title") == "txmail", "got uid/title %r/%r" % (
        d.get("uid"), d.get("title"))
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables.get("datasource", {}).get("type") == "datasource", \
        "want a datasource variable, got %r" % list(variables)
    boxes = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, "panel %r: gridPos %r outside 24 columns" % (p["title"], g)
            for q, h in boxes:
                assert (g["x"] + g["w"] <= h["x"] or h["x"] + h["w"] <= g["x"] or
                        g["y"] + g["h"] <= h["y"] or h["y"] + h["h"] <= g["y"]), \
                    "panels %r and %r overlap: %r %r" % (p["title"], q, g, h)
            boxes.append((p["title"], g))
            if p["type"] != "row":
                assert p.get("datasource", {}).get("uid") == "${datasource}", \
                    "panel %r: datasource %r, want the ${datasource} variable" % (p["title"], p.get("datasource"))
                assert p.get("targets"), "panel %r has no query" % p["title"]
    walk(d["panels"])
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids: %r" % ids

    exprs = dashboard_exprs()
    text = " ".join(e for _, e in exprs)
    for want in ("txmail_accept_duration_seconds_bucket", "txmail_delivery_latency_seconds_bucket",
                 "txmail_smtp_transaction_duration_seconds_bucket", "txmail_webhook_latency_seconds_bucket",
                 "txmail_queue_ready", "txmail_queue_claimed", "txmail_queue_oldest_age_seconds",
                 "txmail_webhook_backlog", "txmail_destination_outcomes_total", "histogram_quantile", "rate("):
        assert want in text, "the dashboard uses no %s" % want
    # promtool parses each query as a recording rule's expression
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:query_%d" % i, "expr": grafana_to_promql(e)} for i, (_, e) in enumerate(exprs)]}]}
    p = tmp_path / "dashboard-rules.yaml"
    p.write_text(yaml.safe_dump(rules))
    r = run([promtool, "check", "rules", str(p)])
    assert r.returncode == 0, "dashboard queries do not parse:\n%s%s\n(queries: %s)" % (
        r.stdout, r.stderr, "\n".join("%d %s: %s" % (i, t, e) for i, (t, e) in enumerate(exprs)))


def test_promql_name_extraction():
    names, matchers, grouping = promql_uses(
        'histogram_quantile(0.9, sum by (le, route) (rate(txmail_accept_duration_seconds_bucket'
        '{route=~"txmail_not_a_name"}[5m]))) / on() process_open_fds{job="x"} + up')
    assert names == {"txmail_accept_duration_seconds_bucket", "process_open_fds"}, names
    assert matchers == {"txmail_accept_duration_seconds_bucket": {"route"}, "process_open_fds": {"job"}}, matchers
    assert grouping == {"le", "route"}, grouping
    samples, types = parse_scrape(
        '# TYPE txmail_x_seconds histogram\ntxmail_x_seconds_bucket{le="1",route="/v1"} 1\n'
        'txmail_x_seconds_sum{route="/v1"} 1\ntxmail_x_seconds_count{route="/v1"} 1\n')
    assert not missing_series([("ok", 'sum by (le, route) (rate(txmail_x_seconds_bucket[1m]))')], samples, types)
    bad = missing_series([("q", 'sum by (lane) (rate(txmail_x_seconds_bucket{code="1"}[1m]))'),
                          ("m", 'txmail_y + txmail_x_seconds_sum'), ("h", 'txmail_x_seconds')], samples, types)
    assert bad == ["h: txmail_x_seconds is a histogram: use txmail_x_seconds_bucket/_sum/_count",
                   "m: series txmail_y is not in the scrape",
                   "q: groups by 'lane', which none of ['txmail_x_seconds_bucket'] has",
                   "q: txmail_x_seconds_bucket has no label 'code' (it has ['le', 'route'])"], bad


# --- a live split deployment ---------------------------------------------------------

def scrape(port):
    c = Client(port, timeout=dl(5))
    try:
        r = c.get("/metrics", auth=False)
    finally:
        c.close()
    assert r.status == 200, "GET /metrics on %d: %s %r" % (port, r.status, r.body[:200])
    return r.body.decode("utf-8")


def compose_doc():
    with open(COMPOSE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def healthcheck_argv(test, port_from, port_to):
    """A compose healthcheck `test` as an argv for this machine, its port
    moved from the container's to the live process's."""
    assert test[0] == "CMD", "healthcheck %r: want the CMD form" % (test,)
    return [a.replace("/127.0.0.1/%d" % port_from, "/127.0.0.1/%d" % port_to) for a in test[1:]]


class Prometheus:
    """A real Prometheus (Debian's package) scraping {job: [host:port]} every
    second, on a random loopback port, its TSDB under workdir."""

    def __init__(self, workdir, jobs):
        self.dir = os.path.join(workdir, "prometheus")
        os.makedirs(self.dir)
        self.port = free_port()
        self.log = os.path.join(self.dir, "log")
        cfg = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
               "scrape_configs": [{"job_name": j, "static_configs": [{"targets": t}]} for j, t in jobs.items()]}
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg, f)
        self.proc = None

    def start(self):
        binary = need("prometheus", "prometheus")
        with open(self.log, "wb") as lf:
            self.proc = subprocess.Popen(
                [binary, "--config.file=" + self.config, "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                 "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=lf, stderr=lf, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited: %s" % tail(self.log, 40))
            try:
                return self.get("/-/ready")[0] == 200
            except OSError:
                return False
        wait_until(ready, dl(20), "prometheus /-/ready", interval=0.05)

    def get(self, path):
        c = Client(self.port, timeout=dl(5))
        try:
            r = c.get(path, auth=False)
            return r.status, r.body
        finally:
            c.close()

    def query(self, expr):
        status, body = self.get("/api/v1/query?query=" + urllib.parse.quote(expr, safe=""))
        j = json.loads(body)
        assert status == 200 and j["status"] == "success", "query %r: %s %r" % (expr, status, j)
        return j["data"]["result"]

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=dl(10))
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def test_dashboard_and_alert_series_exist_in_a_live_scrape(txmail_factory, smtp_peer, webhook, workdir):
    api_port, admin = free_port(), free_port()
    # the job names of deploy/prometheus/prometheus.yml and the ServiceMonitor's
    # Services. Started first: its service discovery hands the targets to the
    # scrapers only after about 5 s, which the start of txmail and the first
    # round of mail overlap.
    prom = Prometheus(workdir, {"txmail-api": ["127.0.0.1:%d" % api_port],
                                "txmail-worker": ["127.0.0.1:%d" % admin]})
    try:
        prom.start()
        api = txmail_factory(("api",), http=False, extra_env={"TXMAIL_LISTEN": "127.0.0.1:%d" % api_port})
        api.port = api_port
        api.wait_ready()
        worker = txmail_factory(("worker",), http=False, extra_env={"TXMAIL_ADMIN_LISTEN": "127.0.0.1:%d" % admin})
        live_series_and_queries(api, worker, admin, webhook, prom)
    finally:
        prom.stop()


def live_series_and_queries(api, worker, admin, webhook, prom):

    def admin_ready():
        if not worker.alive():
            raise AssertionError("txmail worker exited: %s" % tail(worker.log, 40))
        c = Client(admin, timeout=dl(2))
        try:
            return c.get("/readyz", auth=False).status == 200
        except OSError:
            return False
        finally:
            c.close()
    wait_until(admin_ready, dl(20), "worker admin /readyz 200 on %d" % admin, interval=0.05,
               diag=lambda: tail(worker.log, 40))

    def mail_round(n):
        """delivered, deferred then delivered, failed: one recipient each"""
        c = api.client()
        try:
            mids = {to: send_text(c, to, "deploy series %d" % n) for to in
                    ("ok-deploy%d@example.com" % n, "temp1-deploy%d@example.com" % n,
                     "perm-deploy%d@example.com" % n)}
            for to, mid in mids.items():
                wait_status(c, mid, "failed" if to.startswith("perm-") else "delivered", dl(20))
        finally:
            c.close()
        wait_until(lambda: len(webhook.events) >= 3 * n, dl(20), "webhook events of round %d received" % n)
    mail_round(1)

    def worker_counted():
        text = scrape(admin)
        failed = re.search(r'(?m)^txmail_recipients_total\{status="failed"[^}]*\} [1-9]', text)
        return text if failed else None
    wtext = wait_until(worker_counted, dl(10), "the worker's scrape counts the failure")
    samples, types = parse_scrape(scrape(api.port))
    ws, wt = parse_scrape(wtext)
    for k, v in ws.items():
        samples.setdefault(k, set()).update(v)
    types.update(wt)

    exprs = [("dashboard panel %r" % t, e) for t, e in dashboard_exprs()] + \
            [("alert %s" % a, e) for a, e in alert_exprs()]
    problems = missing_series(exprs, samples, types)
    assert not problems, "series used by deploy/grafana/txmail.json or deploy/prometheus/alerts.yaml " \
        "but not served by txmail api + worker:\n  " + "\n  ".join(problems)

    # every dashboard query, evaluated by the real Prometheus scraping both
    # processes, returns something. Prometheus has scraped the first round
    # (so every series it made has a baseline: increase() of a series that
    # starts at 1 is 0), then a second round goes through inside the windows.
    def diag():
        return "targets %s; log %s" % (prom.get("/api/v1/targets")[1][:600], tail(prom.log, 20))
    wait_until(lambda: prom.query('sum(txmail_recipients_total{status="failed"}) >= 1'), dl(20),
               "prometheus scraped the first round", interval=0.2, diag=diag)
    mail_round(2)

    def scraped():
        up = prom.query('count_over_time(up{job=~"txmail-.*"}[30s]) >= 3')
        moved = prom.query('sum(increase(txmail_recipients_total{status="failed"}[30s])) > 0')
        return len(up) == 2 and moved
    wait_until(scraped, dl(20), "prometheus scraped both processes 3 times and the second round",
               interval=0.2, diag=diag)
    empty = []
    for title, expr in dashboard_exprs():
        q = grafana_to_promql(expr).replace("[1m]", "[30s]").replace("[1h]", "[5m]")
        if not prom.query(q):
            empty.append("%s: %s" % (title, q))
    assert not empty, "dashboard queries with no result against a live txmail api + worker " \
        "(scraped by prometheus):\n  " + "\n  ".join(empty)

    # the compose healthchecks, run against the same live ports: they pass
    # on a ready process and fail on a port nothing listens on
    svc = compose_doc()["services"]
    for name, cport, live in (("api", 8080, api.port), ("worker", 9090, admin)):
        argv = healthcheck_argv(svc[name]["healthcheck"]["test"], cport, live)
        assert argv != svc[name]["healthcheck"]["test"][1:], "compose %s healthcheck does not ask port %d" % (
            name, cport)
        r = run(argv, timeout=10)
        assert r.returncode == 0, "compose %s healthcheck against a ready txmail: exit %d %s" % (
            name, r.returncode, r.stderr)
        r = run(healthcheck_argv(svc[name]["healthcheck"]["test"], cport, free_port()), timeout=10)
        assert r.returncode != 0, "compose %s healthcheck passes against a closed port" % name


# --- Kubernetes ----------------------------------------------------------------------

def kustomize(path):
    kubectl = need("kubectl", "kubernetes-client")
    r = run([kubectl, "kustomize", path], timeout=60)
    assert r.returncode == 0, "kubectl kustomize %s: %s" % (path, r.stderr)
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def labels_match(selector, labels):
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []):
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
        if e["operator"] == "NotIn" and labels.get(e["key"]) in e["values"]:
            return False
        if e["operator"] == "Exists" and e["key"] not in labels:
            return False
    return True


def check_pod_security(where, pod, uid):
    psc = pod.get("securityContext", {})
    assert psc.get("runAsNonRoot") is True, "%s: pod runAsNonRoot %r" % (where, psc)
    assert psc.get("runAsUser") == uid, "%s: runAsUser %r, want %d" % (where, psc.get("runAsUser"), uid)
    assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "%s: seccompProfile %r" % (where, psc)
    assert pod.get("automountServiceAccountToken") is False, "%s: the API token is mounted" % where
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        assert sc.get("readOnlyRootFilesystem") is True, "%s/%s: readOnlyRootFilesystem %r" % (where, c["name"], sc)
        assert sc.get("allowPrivilegeEscalation") is False, "%s/%s: allowPrivilegeEscalation" % (where, c["name"])
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], "%s/%s: capabilities %r" % (where, c["name"], sc)
        res = c.get("resources", {})
        assert res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory") and \
            res.get("limits", {}).get("memory"), "%s/%s: resources %r" % (where, c["name"], res)
        assert c.get("readinessProbe") and c.get("livenessProbe"), "%s/%s: probes missing" % (where, c["name"])


def secret_files(pod, container):
    """{mounted file path: (secret name, key)} of one container."""
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    out = {}
    for m in container.get("volumeMounts", []):
        sec = vols[m["name"]].get("secret")
        if sec is None:
            continue
        assert m.get("readOnly") is True, "secret volume %s mounted writable" % m["name"]
        mode = sec.get("defaultMode", 0o644)
        assert mode & 0o007 == 0, "secret volume %s: mode %o readable by others" % (m["name"], mode)
        for it in sec.get("items", []):
            out[os.path.join(m["mountPath"], it["path"])] = (sec["secretName"], it["key"])
    return out


def check_txmail_deployments(docs, secret_name=None):
    deps = by_kind(docs, "Deployment")
    services = by_kind(docs, "Service")
    for role in ("api", "worker"):
        d = deps["txmail-" + role]
        pod = d["spec"]["template"]["spec"]
        check_pod_security("Deployment txmail-" + role, pod, TXMAIL_UID)
        (c,) = [c for c in pod["containers"] if c["name"] == role]
        assert c["args"][0] == role, "txmail-%s runs %r" % (role, c["args"])
        for src in c.get("envFrom", []):
            assert "secretRef" not in src, "txmail-%s: a Secret as envFrom (want *_FILE files): %r" % (role, src)
        env = {e["name"]: e for e in c.get("env", [])}
        for e in env.values():
            assert "valueFrom" not in e or "secretKeyRef" not in e["valueFrom"], \
                "txmail-%s: %s from a secretKeyRef (want a *_FILE file)" % (role, e["name"])
        files = secret_files(pod, c)
        want_files = ["TXMAIL_REDIS_URL_FILE"] + (["TXMAIL_API_KEYS_FILE"] if role == "api" else ["TXMAIL_RELAY_FILE"])
        for name in want_files:
            assert name in env, "txmail-%s: no %s (have %s)" % (role, name, sorted(env))
            path = env[name]["value"]
            assert path in files, "txmail-%s: %s=%s is no mounted secret file (%s)" % (role, name, path, files)
            if secret_name:
                assert files[path][0] == secret_name, "txmail-%s mounts secret %r, want %r" % (
                    role, files[path][0], secret_name)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        probe_port = "http" if role == "api" else "admin"
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            g = c[probe].get("httpGet", {})
            assert g.get("path") == path and g.get("port") == probe_port, \
                "txmail-%s %s: %r, want GET %s on port %s" % (role, probe, c[probe], path, probe_port)
        if role == "worker":
            assert ports.get("admin") == 9090, "txmail-worker ports %r" % ports
            assert env.get("TXMAIL_ADMIN_LISTEN", {}).get("value") == "0.0.0.0:9090", \
                "txmail-worker: TXMAIL_ADMIN_LISTEN %r (the kubelet probes the pod IP)" % env.get("TXMAIL_ADMIN_LISTEN")
        image = c["image"]
        assert image.rsplit(":", 1)[-1] == version() and ":" in image, \
            "txmail-%s image %r: want the tag %s (VERSION)" % (role, image, version())
        assert d["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30) >= 35, \
            "txmail-%s: terminationGracePeriodSeconds below TXMAIL_SHUTDOWN_GRACE + 10" % role
        svc = [s for s in services.values() if s["spec"].get("selector") and
               labels_match({"matchLabels": s["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"])]
        assert svc, "no Service selects txmail-%s" % role
    return deps


def check_redis(docs, cm_names):
    sts = by_kind(docs, "StatefulSet")
    services = by_kind(docs, "Service")
    (r,) = sts.values()
    pod = r["spec"]["template"]["spec"]
    check_pod_security("StatefulSet " + r["metadata"]["name"], pod, 999)
    assert r["spec"]["serviceName"] in services, "StatefulSet serviceName %r is no Service" % r["spec"]["serviceName"]
    claims = r["spec"].get("volumeClaimTemplates", [])
    assert claims and claims[0]["spec"]["resources"]["requests"]["storage"], "Redis has no PVC"
    (c,) = [c for c in pod["containers"] if c["name"] == "redis"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts.get(claims[0]["metadata"]["name"]) == "/data", "the PVC is not /data: %r" % mounts
    vols = {v["name"]: v for v in pod["volumes"]}
    cm = [v["configMap"]["name"] for v in vols.values() if "configMap" in v]
    assert cm and all(n in cm_names for n in cm), "Redis config volumes %r are no ConfigMaps (%s)" % (cm, cm_names)
    confs = [cm_names[n]["data"]["redis.conf"] for n in cm if "redis.conf" in cm_names[n]["data"]]
    assert len(confs) == 1, "want one redis.conf among the Redis pod's ConfigMaps %r" % cm
    conf = confs[0]
    for want in ("appendonly yes", "appendfsync always", "maxmemory-policy noeviction", "dir /data"):
        assert re.search(r"(?m)^%s\s*$" % re.escape(want), conf), "the Redis ConfigMap lacks %r" % want
    # the start command: inline (base), or a script from a mounted ConfigMap (overlays/sentinel)
    start = " ".join(c.get("args", [])) + "".join(
        v for n in cm for k, v in cm_names[n]["data"].items() if k.endswith(".sh"))
    assert "requirepass" in start, "Redis starts without requirepass: %r" % c.get("args")
    assert ":" in c["image"] and not c["image"].endswith(":latest"), "Redis image %r" % c["image"]
    return r, c


def redis_host_of(url):
    m = re.match(r"^redis://(?:[^@/]*@)?([^:/@]+)(?::(\d+))?(?:/\d+)?$", url)
    assert m, "not a redis URL: %r" % url
    return m.group(1)


def check_network_and_scaling(docs):
    deps = by_kind(docs, "Deployment")
    sts = by_kind(docs, "StatefulSet")
    (redis_sts,) = sts.values()
    redis_labels = redis_sts["spec"]["template"]["metadata"]["labels"]
    pols = [p for p in by_kind(docs, "NetworkPolicy").values()
            if labels_match(p["spec"]["podSelector"], redis_labels)]
    assert pols, "no NetworkPolicy selects the Redis pods"
    for p in pols:
        assert "Ingress" in p["spec"]["policyTypes"], "NetworkPolicy %s does not restrict ingress" % p["metadata"]["name"]
        peers = [f for rule in p["spec"].get("ingress", []) for f in rule.get("from", [])]
        assert peers, "NetworkPolicy %s lets everyone in" % p["metadata"]["name"]
        for f in peers:
            assert set(f) == {"podSelector"}, "NetworkPolicy %s admits %r (want only txmail pods)" % (
                p["metadata"]["name"], f)
        for name, want in (("txmail-api", True), ("txmail-worker", True), ("txmail-sink", False)):
            if name not in deps:
                continue
            labels = deps[name]["spec"]["template"]["metadata"]["labels"]
            got = any(labels_match(f["podSelector"], labels) for f in peers)
            assert got == want, "NetworkPolicy %s: %s %s reach Redis" % (
                p["metadata"]["name"], name, "cannot" if want else "can")
        assert not any(labels_match(f["podSelector"], {"app": "other"}) for f in peers), \
            "NetworkPolicy admits any pod"
    pdbs = by_kind(docs, "PodDisruptionBudget")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    for name in ("txmail-api", "txmail-worker"):
        labels = deps[name]["spec"]["template"]["metadata"]["labels"]
        assert any(labels_match(p["spec"]["selector"], labels) for p in pdbs.values()), "no PDB for %s" % name
        h = [h for h in hpas.values() if h["spec"]["scaleTargetRef"]["name"] == name and
             h["spec"]["scaleTargetRef"]["kind"] == "Deployment"]
        assert h and h[0]["spec"]["maxReplicas"] >= h[0]["spec"].get("minReplicas", 1), "no HPA for %s" % name
        assert "replicas" not in deps[name]["spec"], "%s sets replicas: the HPA owns them" % name


def no_latest(docs):
    for d in docs:
        spec = d.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            img = c["image"]
            assert ":" in img.rsplit("/", 1)[-1] and not img.endswith(":latest"), \
                "%s %s: image %r has no pinned tag" % (d["kind"], d["metadata"]["name"], img)


def test_k8s_base_renders_with_the_properties():
    docs = kustomize(K8S)
    kinds = {d["kind"] for d in docs}
    for want in ("Deployment", "Service", "ConfigMap", "StatefulSet", "NetworkPolicy",
                 "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor"):
        assert want in kinds, "deploy/k8s renders no %s (got %s)" % (want, sorted(kinds))
    assert "Secret" not in kinds, "deploy/k8s renders a Secret: secrets are created by hand"
    check_txmail_deployments(docs, "txmail-secrets")
    cms = by_kind(docs, "ConfigMap")
    check_redis(docs, cms)
    check_network_and_scaling(docs)
    no_latest(docs)
    # the ConfigMap holds no secret and no Redis URL (it carries the password)
    data = cms["txmail-config"]["data"]
    for k in data:
        assert k.startswith("TXMAIL_"), "ConfigMap key %r" % k
        assert k not in ("TXMAIL_REDIS_URL", "TXMAIL_API_KEYS", "TXMAIL_RELAY", "TXMAIL_WEBHOOK_SECRET"), \
            "ConfigMap holds the secret %s" % k
    with open(os.path.join(K8S, "base", "configmap.yaml"), encoding="utf-8") as f:
        assert "does not speak Redis AUTH" not in f.read(), "stale comment: txmail speaks Redis AUTH"
    # the Redis host of the example secret is a Service of the render
    with open(os.path.join(K8S, "base", "secret.example.yaml"), encoding="utf-8") as f:
        example = yaml.safe_load(f)
    host = redis_host_of(example["stringData"]["redis-url"])
    services = by_kind(docs, "Service")
    assert host in services, "secret.example.yaml redis-url host %r is no Service (%s)" % (host, sorted(services))
    assert labels_match({"matchLabels": services[host]["spec"]["selector"]},
                        list(by_kind(docs, "StatefulSet").values())[0]["spec"]["template"]["metadata"]["labels"]), \
        "Service %s does not select the Redis pods" % host
    # the ServiceMonitor scrapes the api's and the workers' ports
    (sm,) = by_kind(docs, "ServiceMonitor").values()
    ports = {e["port"] for e in sm["spec"]["endpoints"]}
    for svc, port in (("txmail-api", "http"), ("txmail-worker", "admin")):
        s = services[svc]
        assert labels_match(sm["spec"]["selector"], s["metadata"]["labels"]), "ServiceMonitor misses Service %s" % svc
        assert port in ports and port in {p["name"] for p in s["spec"]["ports"]}, \
            "ServiceMonitor does not scrape %s port %s" % (svc, port)
    # the image tag in the kustomizations is VERSION (the dev overlay's own
    # resources, the sink, need it there too)
    for kdir in ("base", os.path.join("overlays", "dev")):
        with open(os.path.join(K8S, kdir, "kustomization.yaml"), encoding="utf-8") as f:
            k = yaml.safe_load(f)
        tags = {i["name"]: str(i.get("newTag")) for i in k["images"]}
        assert tags.get("txmail") == version(), "deploy/k8s/%s/kustomization.yaml images newTag %r, " \
            "want VERSION %r" % (kdir, tags, version())
    # the StatefulSet's redis.conf is deploy/redis.conf
    with open(os.path.join(DEPLOY, "redis.conf"), "rb") as a, \
            open(os.path.join(K8S, "base", "redis.conf"), "rb") as b:
        assert a.read() == b.read(), "deploy/k8s/base/redis.conf differs from deploy/redis.conf: copy it"


def test_k8s_dev_overlay_renders_complete():
    docs = kustomize(os.path.join(K8S, "overlays", "dev"))
    ns = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert ns == {"txmail-dev"}, "dev overlay namespaces %r" % ns
    assert "ServiceMonitor" not in {d["kind"] for d in docs}, "the dev overlay needs no Prometheus Operator"
    secrets = by_kind(docs, "Secret")
    assert len(secrets) == 1, "dev overlay secrets %r" % list(secrets)
    (sname, secret), = secrets.items()
    check_txmail_deployments(docs, sname)
    check_redis(docs, by_kind(docs, "ConfigMap"))
    check_network_and_scaling(docs)
    no_latest(docs)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    services = by_kind(docs, "Service")
    host = redis_host_of(data["redis-url"])
    assert host in services, "dev redis-url host %r is no Service (%s)" % (host, sorted(services))
    assert ":%s@" % data["redis-password"] in data["redis-url"], "dev redis-url does not carry redis-password"
    relay = re.match(r"^smtp://([^:/]+):(\d+)", data["relay"])
    assert relay and relay.group(1) in services, "dev relay %r is no Service" % data["relay"]
    sink = by_kind(docs, "Deployment")["txmail-sink"]["spec"]["template"]["spec"]
    check_pod_security("Deployment txmail-sink", sink, TXMAIL_UID)
    assert sink["containers"][0]["args"][0] == "sink"
    sink_port = {p["port"] for p in services[relay.group(1)]["spec"]["ports"]}
    assert int(relay.group(2)) in sink_port, "dev relay port %s, sink Service ports %s" % (relay.group(2), sink_port)


SENTINEL = os.path.join(K8S, "overlays", "sentinel")


def sentinel_url_parts(url):
    """(sentinel host:port list, master name) of a redis+sentinel:// URL."""
    m = re.match(r"^redis\+sentinel://(?:[^@/]*@)?([^/@]+)/([^/]+)(?:/\d+)?$", url)
    assert m, "not a redis+sentinel URL: %r" % url
    return m.group(1).split(","), m.group(2)


def sentinel_group(docs):
    """(StatefulSet, its ConfigMap txmail-redis-ha* data) of a render."""
    (sts,) = by_kind(docs, "StatefulSet").values()
    ha = [d for n, d in by_kind(docs, "ConfigMap").items() if n.startswith("txmail-redis-ha")]
    assert len(ha) == 1, "want one txmail-redis-ha ConfigMap, got %r" % [d["metadata"]["name"] for d in ha]
    return sts, ha[0]["data"]


def test_k8s_sentinel_overlay_renders_a_sentinel_group():
    docs = kustomize(SENTINEL)
    with open(os.path.join(SENTINEL, "secret.example.yaml"), encoding="utf-8") as f:
        example = yaml.safe_load(f)["stringData"]
    check_txmail_deployments(docs, "txmail-secrets")
    cms = by_kind(docs, "ConfigMap")
    check_redis(docs, cms)
    check_network_and_scaling(docs)
    no_latest(docs)
    sts, ha = sentinel_group(docs)
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 3, "want three Redis pods, got %r" % spec["replicas"]
    names = {c["name"]: c for c in pod["containers"]}
    assert set(names) == {"redis", "sentinel"}, "Redis pod containers %r" % sorted(names)
    ports = {c: {p["name"]: p["containerPort"] for p in names[c]["ports"]} for c in names}
    assert ports["redis"] == {"redis": 6379} and ports["sentinel"] == {"sentinel": 26379}, ports
    for c in names.values():
        assert c["args"][0] == "/etc/redis-ha/redis-ha.sh" and c["args"][1] == c["name"], \
            "container %s runs %r" % (c["name"], c.get("command", []) + c["args"])
    anti = pod.get("affinity", {}).get("podAntiAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", [])
    assert any(t["topologyKey"] == "kubernetes.io/hostname" and
               labels_match(t["labelSelector"], spec["template"]["metadata"]["labels"]) for t in anti), \
        "two Redis pods may share a node: %r" % pod.get("affinity")
    pdbs = [p for p in by_kind(docs, "PodDisruptionBudget").values()
            if labels_match(p["spec"]["selector"], spec["template"]["metadata"]["labels"])]
    assert pdbs and pdbs[0]["spec"].get("maxUnavailable") == 1, "Redis PDB %r" % pdbs
    svc = by_kind(docs, "Service")[spec["serviceName"]]
    assert svc["spec"].get("clusterIP") == "None" and svc["spec"].get("publishNotReadyAddresses") is True, \
        "the Redis Service must be headless and publish pods before they are ready: %r" % svc["spec"]
    assert {p["port"] for p in svc["spec"]["ports"]} == {6379, 26379}, svc["spec"]["ports"]
    # who is who: the pods' stable names, the ports they listen on, the master
    # name, and the URL txmail gets all agree
    stable = ["%s-%d.%s" % (sts["metadata"]["name"], i, spec["serviceName"]) for i in range(3)]
    assert ha["HA_NODES"].split() == ["%s:6379" % h for h in stable], ha["HA_NODES"]
    assert ha["HA_SENTINELS"].split() == ["%s:26379" % h for h in stable], ha["HA_SENTINELS"]
    sentinels, master = sentinel_url_parts(example["redis-url"])
    assert sentinels == ha["HA_SENTINELS"].split() and master == ha["HA_MASTER"], \
        "secret.example.yaml redis-url %r does not name the sentinels %r and master %r" % (
            example["redis-url"], ha["HA_SENTINELS"], ha["HA_MASTER"])
    assert ":%s@" % example["redis-password"] in example["redis-url"], "redis-url does not carry redis-password"
    # the password file the Redis pods read is the one the txmail pods send to the sentinels
    vols = {v["name"]: v for v in pod["volumes"]}
    pw_mount = [m for m in names["redis"]["volumeMounts"] if m["mountPath"] == os.path.dirname(ha["HA_PASSWORD_FILE"])]
    assert pw_mount and vols[pw_mount[0]["name"]]["secret"]["items"][0]["key"] == "redis-password", pw_mount
    for m in names["sentinel"]["volumeMounts"]:
        assert m.get("readOnly") or m["mountPath"] == ha["HA_SENTINEL_DIR"], "sentinel writes to %r" % m
    assert ha["HA_SENTINEL_DIR"] in {m["mountPath"] for m in names["sentinel"]["volumeMounts"]
                                     if "emptyDir" in vols[m["name"]]}, "the sentinel's directory is no emptyDir"
    for name, d in by_kind(docs, "Deployment").items():
        pod_ = d["spec"]["template"]["spec"]
        (c,) = pod_["containers"]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        files = secret_files(pod_, c)
        path = env.get("TXMAIL_REDIS_SENTINEL_PASSWORD_FILE")
        assert path in files and files[path] == ("txmail-secrets", "redis-password"), \
            "%s: TXMAIL_REDIS_SENTINEL_PASSWORD_FILE %r is not the mounted redis-password (%s)" % (name, path, files)
    assert int(cms["txmail-config"]["data"].get("TXMAIL_REDIS_MIN_REPLICAS", "0")) >= 1, \
        "the Sentinel overlay must wait for a replica: %r" % cms["txmail-config"]["data"]
    # the Redis pods reach each other on both ports, txmail's pods reach the sentinels
    (pol,) = [p for p in by_kind(docs, "NetworkPolicy").values()
              if labels_match(p["spec"]["podSelector"], spec["template"]["metadata"]["labels"])]
    for who in ("redis", "api", "worker"):
        labels = {"app.kubernetes.io/name": "txmail", "app.kubernetes.io/component": who}
        got = {p["port"] for rule in pol["spec"]["ingress"] if any(
            labels_match(f["podSelector"], labels) for f in rule["from"]) for p in rule["ports"]}
        assert got >= {6379, 26379}, "NetworkPolicy: %s pods reach Redis ports %s" % (who, sorted(got))


class HaGroup:
    """The Sentinel overlay's Redis pods, run on this machine: each pod's
    two containers are the rendered redis-ha.sh with the rendered
    environment, only the addresses (loopback ports), the files and the
    failure detection and failover retry times changed."""

    def __init__(self, tmp_path):
        docs = kustomize(SENTINEL)
        sts, self.ha = sentinel_group(docs)
        self.config = by_kind(docs, "ConfigMap")["txmail-config"]["data"]
        self.containers = {c["name"]: c for c in sts["spec"]["template"]["spec"]["containers"]}
        self.dir = tmp_path
        self.script = tmp_path / "redis-ha.sh"
        self.script.write_text(self.ha["redis-ha.sh"])
        self.password = "hatest%s" % os.urandom(8).hex()
        (tmp_path / "password").write_text(self.password + "\n")
        self.nodes = [free_port() for _ in range(3)]
        self.sentinels = [free_port() for _ in range(3)]
        self.procs = {}

    def env(self, i):
        d = self.dir / ("pod%d" % i)
        d.mkdir(exist_ok=True)
        with open(os.path.join(DEPLOY, "redis.conf"), encoding="utf-8") as f:
            conf = re.sub(r"(?m)^dir /data$", "dir %s" % d, f.read())
        conf = re.sub(r"(?m)^bind .*$", "bind 127.0.0.1", conf)
        (d / "redis.conf").write_text(conf + "\ndaemonize no\nlogfile %s\n" % (d / "redis.log"))
        env = {k: v for k, v in self.ha.items() if k.startswith("HA_")}
        env.update(HA_ORDINAL=str(i), HA_NODES=" ".join("127.0.0.1:%d" % p for p in self.nodes),
                   HA_SENTINELS=" ".join("127.0.0.1:%d" % p for p in self.sentinels),
                   HA_PASSWORD_FILE=str(self.dir / "password"), HA_CONF=str(d / "redis.conf"),
                   HA_SENTINEL_DIR=str(d / "sentinel"), HA_BIND="127.0.0.1", HA_DOWN_AFTER_MS="1000",
                   HA_FAILOVER_TIMEOUT_MS="3000")
        return dict(os.environ, **env), d

    def start(self, i, role):
        env, d = self.env(i)
        c = self.containers[role]
        argv = c["command"] + [str(self.script)] + c["args"][1:]
        log = open(d / ("%s.out" % role), "ab")
        self.procs[(i, role)] = subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)
        log.close()

    def start_pod(self, i):
        self.start(i, "redis")
        self.start(i, "sentinel")

    def kill_pod(self, i):
        for role in ("redis", "sentinel"):
            p = self.procs.pop((i, role))
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def cli(self, port, *args, auth=True):
        env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        if auth:
            env["REDISCLI_AUTH"] = self.password
        r = run(["redis-cli", "-p", str(port), "--raw"] + list(args), env=env, timeout=5)
        return r.stdout.strip()

    def primary(self, i):
        """The port sentinel i names as the primary, or None."""
        out = self.cli(self.sentinels[i], "SENTINEL", "get-master-addr-by-name", self.ha["HA_MASTER"]).split()
        return int(out[1]) if len(out) == 2 and out[1].isdigit() else None

    def role(self, port):
        return self.cli(port, "ROLE").split()

    def diag(self):
        out = []
        for i in range(3):
            for f in ("redis.log", "sentinel.out", "redis.out"):
                p = self.dir / ("pod%d" % i) / f
                if p.exists():
                    out.append("pod%d %s: %s" % (i, f, tail(str(p), 8)))
        return "\n".join(out)

    def stop(self):
        for p in self.procs.values():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        self.procs = {}


def send_retried(c, to, subject):
    """POST a text message with an Idempotency-Key, retried as a client
    would on 503/504 (a replica catching up after the failover) until 202;
    its id."""
    key = "ha-%s" % os.urandom(8).hex()
    msg = {"from": "sender@example.com", "to": to, "subject": subject, "text": "hello\n"}

    def sent():
        r = c.send(msg, headers={"Idempotency-Key": key})
        assert r.status in (202, 503, 504), "POST /v1/messages: got %s %r" % (r.status, r.body)
        return r.json["id"] if r.status == 202 else None
    return wait_until(sent, dl(20), "a 202 for %s" % to, interval=0.2)


def test_k8s_sentinel_start_script_elects_fails_over_and_rejoins(tmp_path, txmail_factory):
    """The rendered redis-ha.sh, three pods on loopback: ordinal 0 starts as
    the primary, the others replicate it, the sentinels find each other;
    pod 0 SIGKILLed: a replica is promoted with the data; pod 0 restarted:
    it asks the sentinels and comes back as a replica of the new primary,
    its sentinel watching that primary. Every node and sentinel refuses a
    client without the password, and no argv holds it. A `txmail run`
    configured as the overlay configures the api and worker (the sentinels
    in a redis+sentinel:// URL, their password the same file, the
    ConfigMap's TXMAIL_REDIS_MIN_REPLICAS) delivers through the group
    before and after the failover (sends retried with an Idempotency-Key
    on 503/504, as a client does)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing (make deps-test)")
    g = HaGroup(tmp_path)
    try:
        for i in range(3):
            g.start_pod(i)

        def formed():
            if any(p.poll() is not None for p in g.procs.values()):
                raise AssertionError("a Redis pod's process exited:\n" + g.diag())
            if [g.primary(i) for i in range(3)] != [g.nodes[0]] * 3:
                return False
            replicas = [g.role(g.nodes[i]) for i in (1, 2)]
            if not all(r[:1] == ["slave"] and "connected" in r for r in replicas):
                return False
            # what each sentinel knows, one "name" field per entry: the two
            # other sentinels, and the two replicas (learnt from the
            # primary's INFO, every 10 s: a failover before that finds no
            # replica to promote)
            known = [[g.cli(g.sentinels[i], "SENTINEL", what, g.ha["HA_MASTER"]).splitlines().count("name")
                      for what in ("sentinels", "replicas")] for i in range(3)]
            return known == [[2, 2]] * 3
        wait_until(formed, dl(40), "three pods: primary ordinal 0, two replicas in sync, three sentinels "
                   "that know each other and both replicas",
                   interval=0.2, diag=g.diag)
        assert g.role(g.nodes[0])[0] == "master", g.role(g.nodes[0])
        for port in g.nodes + g.sentinels:
            assert "NOAUTH" in g.cli(port, "PING", auth=False), "port %d answers without the password" % port
        for p in g.procs.values():
            for pid in [p.pid] + [int(x) for x in run(["pgrep", "-g", str(p.pid)]).stdout.split()]:
                try:
                    with open("/proc/%d/cmdline" % pid, "rb") as f:
                        assert g.password.encode() not in f.read(), "the password is in an argv"
                except FileNotFoundError:
                    pass
        assert g.cli(g.nodes[0], "SET", "txm{0}:hatest", "kept") == "OK"
        assert g.cli(g.nodes[0], "WAIT", "2", "5000") == "2", "the replicas did not confirm the write"
        url = "redis+sentinel://:%s@%s/%s" % (g.password, ",".join("127.0.0.1:%d" % p for p in g.sentinels),
                                              g.ha["HA_MASTER"])
        tx = txmail_factory(("run",), extra_env={
            "TXMAIL_REDIS_URL": url, "TXMAIL_REDIS_SENTINEL_PASSWORD_FILE": str(tmp_path / "password"),
            "TXMAIL_REDIS_MIN_REPLICAS": g.config["TXMAIL_REDIS_MIN_REPLICAS"]})
        c = tx.client()
        mid = send_retried(c, "ok-ha1@example.com", "through the sentinel group")
        wait_status(c, mid, "delivered", dl(20))
        assert g.cli(g.nodes[0], "EXISTS", "txm{0}:msg:" + mid) == "1", "the message is not on the primary"

        g.kill_pod(0)
        promoted = {}

        def failed_over():
            names = {g.primary(i) for i in (1, 2)}
            if len(names) == 1 and names <= {g.nodes[1], g.nodes[2]}:
                (port,) = names
                if g.role(port)[:1] == ["master"]:
                    promoted["port"] = port
                    return True
            return False
        wait_until(failed_over, dl(30), "the sentinels promote a replica after pod 0 died",
                   interval=0.2, diag=g.diag)
        assert g.cli(promoted["port"], "GET", "txm{0}:hatest") == "kept", "the promoted replica lost the write"
        tx.wait_ready(dl(20))
        c.close()
        c = tx.client()
        mid2 = send_retried(c, "ok-ha2@example.com", "through the promoted primary")
        wait_status(c, mid2, "delivered", dl(20))
        assert g.cli(promoted["port"], "EXISTS", "txm{0}:msg:" + mid2) == "1", "the message is not on the new primary"
        c.close()

        g.start_pod(0)
        # its first answer already: a replica (Sentinel would convert a node
        # that came back as a primary too, but only seconds later, and
        # meanwhile it takes writes of its own)
        first = wait_until(lambda: g.role(g.nodes[0]) or None, dl(20), "pod 0's Redis answers again",
                           interval=0.02, diag=g.diag)
        assert first[:1] == ["slave"], "pod 0 came back as %r, not as a replica of the promoted node" % first

        def rejoined():
            r = g.role(g.nodes[0])
            return r[:1] == ["slave"] and r[2:3] == [str(promoted["port"])] and "connected" in r and \
                g.primary(0) == promoted["port"]
        wait_until(rejoined, dl(30), "pod 0 restarted as a replica of the promoted node, its sentinel watching it",
                   interval=0.2, diag=g.diag)
        assert g.cli(g.nodes[0], "GET", "txm{0}:hatest") == "kept"
    finally:
        g.stop()


# --- compose ----------------------------------------------------------------------------

def test_compose_file_parses_and_has_the_services(tmp_path):
    dc = need("docker-compose", "docker-compose")
    raw = compose_doc()
    assert raw.get("name") == "txmail", "compose project name %r" % raw.get("name")
    with open(COMPOSE, encoding="utf-8") as f:
        text = f.read()
    # docker-compose 1.29 predates the top-level `name:`; everything else it checks
    stripped = tmp_path / "docker-compose.yml"
    stripped.write_text(re.sub(r"(?m)^name: txmail\n", "", text, count=1))
    base = [dc, "--project-directory", DEPLOY, "-f", str(stripped)]
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("TXMAIL_") or k.startswith("COMPOSE_"):
            del env[k]
    r = run(base + ["config"], env=env, timeout=60)
    assert r.returncode == 0, "docker-compose config: %s" % r.stderr
    cfg = yaml.safe_load(r.stdout)
    r = run(base + ["--profile", "dev", "config"], env=env, timeout=60)
    assert r.returncode == 0, "docker-compose --profile dev config: %s" % r.stderr
    svc = cfg["services"]
    for want in ("redis", "api", "worker", "prometheus", "grafana", "sink"):
        assert want in svc, "compose has no service %s (got %s)" % (want, sorted(svc))
    assert svc["sink"].get("profiles") == ["dev"], "the sink is not in the dev profile: %r" % svc["sink"].get("profiles")
    for name, s in svc.items():
        if name != "sink":
            assert not s.get("profiles"), "service %s is only in profiles %r" % (name, s.get("profiles"))
        img = s.get("image", "")
        assert ":" in img and not img.endswith(":latest"), "service %s image %r is not pinned" % (name, img)

    # Redis: AOF always (deploy/redis.conf mounted), a password from a secret, a volume, a healthcheck
    red = svc["redis"]
    vols = [v if isinstance(v, str) else "%s:%s" % (v["source"], v["target"]) for v in red["volumes"]]
    assert any(v.endswith("/redis.conf:/usr/local/etc/redis/redis.conf:ro") or
               "/redis.conf:/usr/local/etc/redis/redis.conf" in v for v in vols), "redis.conf not mounted: %r" % vols
    assert any(":/data" in v and not v.startswith("/") for v in vols), "no named volume on /data: %r" % vols
    assert "requirepass" in " ".join(red["command"]), "Redis starts without a password"
    assert "redis_password" in [s["source"] if isinstance(s, dict) else s for s in red["secrets"]]
    assert "healthcheck" in red
    # api and workers: secrets as *_FILE, healthchecks, the workers' admin port
    secrets = cfg["secrets"]
    for name in ("api", "worker"):
        s = svc[name]
        env_ = s["environment"]
        assert "TXMAIL_REDIS_URL" not in env_ and env_.get("TXMAIL_REDIS_URL_FILE", "").startswith("/run/secrets/"), \
            "compose %s: Redis URL %r" % (name, {k: v for k, v in env_.items() if "REDIS" in k})
        mounted = {x["source"] if isinstance(x, dict) else x for x in s["secrets"]}
        for k, v in env_.items():
            if k.endswith("_FILE") and v.startswith("/run/secrets/"):
                assert os.path.basename(v) in mounted and os.path.basename(v) in secrets, \
                    "compose %s: %s=%s is no mounted secret" % (name, k, v)
        assert s["healthcheck"]["test"][0] == "CMD", "compose %s healthcheck %r" % (name, s["healthcheck"])
    w = svc["worker"]
    assert w["environment"].get("TXMAIL_ADMIN_LISTEN") == "0.0.0.0:9090", "worker admin listen %r" % (
        w["environment"].get("TXMAIL_ADMIN_LISTEN"))
    assert "/127.0.0.1/9090" in " ".join(w["healthcheck"]["test"]), "worker healthcheck is not on the admin port"
    assert w.get("deploy", {}).get("replicas") == 2, "want two workers: %r" % w.get("deploy")
    assert w["environment"].get("TXMAIL_RELAY") == "smtp://sink:2525?tls=none", \
        "unset TXMAIL_RELAY should mean the dev sink: %r" % w["environment"].get("TXMAIL_RELAY")
    assert "0.0.0.0:2525" in svc["sink"]["command"], "sink command %r" % svc["sink"]["command"]

    # Prometheus scrapes api:8080 and the workers' 9090 and loads the alerts
    with open(os.path.join(DEPLOY, "prometheus", "prometheus.yml"), encoding="utf-8") as f:
        prom = yaml.safe_load(f)
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yaml"]
    pvols = " ".join(svc["prometheus"]["volumes"] if isinstance(svc["prometheus"]["volumes"][0], str) else
                     ["%s:%s" % (v["source"], v["target"]) for v in svc["prometheus"]["volumes"]])
    assert "alerts.yaml:/etc/prometheus/alerts.yaml" in pvols and "prometheus.yml:/etc/prometheus/prometheus.yml" in pvols
    targets = json.dumps(prom["scrape_configs"])
    assert '"api:8080"' in targets and '"worker"' in targets and '"port": 9090' in targets, targets
    promtool = need("promtool", "prometheus")
    tmp_prom = tmp_path / "prometheus.yml"
    shutil.copy(ALERTS, tmp_path / "alerts.yaml")
    tmp_prom.write_text(yaml.safe_dump(dict(prom, rule_files=[str(tmp_path / "alerts.yaml")])))
    r = run([promtool, "check", "config", str(tmp_prom)])
    assert r.returncode == 0, "promtool check config: %s%s" % (r.stdout, r.stderr)
    # Grafana: the provisioning and the dashboard mounted where they point
    gvols = [v if isinstance(v, str) else "%s:%s" % (v["source"], v["target"]) for v in svc["grafana"]["volumes"]]
    prov_dir = [v.split(":")[0] for v in gvols if v.split(":")[1] == "/etc/grafana/provisioning"]
    assert prov_dir and os.path.samefile(prov_dir[0], os.path.join(DEPLOY, "grafana", "provisioning")), gvols
    with open(os.path.join(DEPLOY, "grafana", "provisioning", "dashboards", "txmail.yaml"), encoding="utf-8") as f:
        dash_dir = yaml.safe_load(f)["providers"][0]["options"]["path"]
    dash = [v.split(":")[0] for v in gvols if os.path.dirname(v.split(":")[1]) == dash_dir]
    assert dash and os.path.samefile(dash[0], DASHBOARD), "the dashboard is not mounted in %s: %r" % (dash_dir, gvols)
    with open(os.path.join(DEPLOY, "grafana", "provisioning", "datasources", "prometheus.yaml"), encoding="utf-8") as f:
        ds = yaml.safe_load(f)["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090", ds


def redis_script_argv(script, conf, secret_path, secret_target):
    """The Redis start script of compose or the StatefulSet, run on this machine."""
    return ["sh", "-c", script.replace(secret_target, secret_path)
            .replace("/usr/local/etc/redis/redis.conf", conf).replace("/etc/redis/redis.conf", conf)]


def test_redis_start_commands_require_the_password(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing (make deps-test)")
    compose_red = compose_doc()["services"]["redis"]
    assert compose_red["command"][:2] == ["sh", "-c"], compose_red["command"]
    docs = kustomize(os.path.join(K8S, "base"))
    (sts,) = by_kind(docs, "StatefulSet").values()
    (kc,) = sts["spec"]["template"]["spec"]["containers"]
    assert kc["command"] == ["sh", "-c"], kc["command"]
    k_probe = kc["readinessProbe"]["exec"]["command"]
    cases = [("compose", compose_red["command"][2], "/run/secrets/redis_password",
              compose_red["healthcheck"]["test"][1:]),
             ("k8s", kc["args"][0], "/run/secrets/redis/password", k_probe)]
    password = "deploytest%s" % os.urandom(8).hex()
    for name, script, target, check in cases:
        d = tmp_path / name
        d.mkdir()
        port = free_port()
        with open(os.path.join(DEPLOY, "redis.conf"), encoding="utf-8") as f:
            conf = f.read()
        # the file as shipped, with what must differ on this machine
        assert re.search(r"(?m)^dir /data$", conf), "deploy/redis.conf: no dir /data"
        conf = re.sub(r"(?m)^dir /data$", "dir %s" % d, conf)
        conf += "\nport %d\nbind 127.0.0.1\ndaemonize no\n" % port
        (d / "redis.conf").write_text(conf)
        (d / "password").write_text(password + "\n" if name == "k8s" else password)
        argv = redis_script_argv(script, str(d / "redis.conf"), str(d / "password"), target)
        log = open(d / "redis.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        try:
            def cli(*args, auth=None):
                env = dict(os.environ, REDISCLI_AUTH=auth) if auth else {
                    k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
                return run(["redis-cli", "-p", str(port)] + list(args), env=env, timeout=5).stdout.strip()
            wait_until(lambda: proc.poll() is not None or "PONG" in cli("ping", auth=password), dl(10),
                       "%s Redis answers PONG" % name, interval=0.05)
            assert proc.poll() is None, "%s Redis exited: %s" % (name, (d / "redis.log").read_text())
            with open("/proc/%d/cmdline" % proc.pid, "rb") as f:
                argv_now = f.read()
            assert b"redis-server" in argv_now and password.encode() not in argv_now, \
                "%s Redis: the password is in its argv %r" % (name, argv_now)
            assert "NOAUTH" in cli("ping"), "%s Redis answers without the password" % name
            assert cli("config", "get", "appendfsync", auth=password).split() == ["appendfsync", "always"]
            assert cli("config", "get", "appendonly", auth=password).split() == ["appendonly", "yes"]
            assert cli("config", "get", "maxmemory-policy", auth=password).split() == ["maxmemory-policy", "noeviction"]
            # the healthcheck / readiness probe, pointed at this port: passes, and fails with a wrong password
            hc = [a.replace(target, str(d / "password")).replace("redis-cli ping", "redis-cli -p %d ping" % port)
                  for a in check]
            if hc[0] == "CMD":
                hc = hc[1:]
            r = run(hc, timeout=10)
            assert r.returncode == 0, "%s Redis healthcheck %r: exit %d %s" % (name, hc, r.returncode, r.stderr)
            (d / "password").write_text("wrong")
            r = run(hc, timeout=10)
            assert r.returncode != 0, "%s Redis healthcheck passes with a wrong password" % name
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=dl(10))
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            log.close()


# --- names and packages ------------------------------------------------------------

def config_names(binary):
    r = run([binary, "config", "list"])
    assert r.returncode == 0, "txmail config list: %s" % r.stderr
    names = set(re.findall(r"(?m)^(TXMAIL_[A-Z0-9_]+)$", r.stdout))
    names |= set(re.findall(r"secret: also `?(TXMAIL_[A-Z0-9_]+_FILE)", r.stdout))
    assert "TXMAIL_LISTEN" in names and "TXMAIL_REDIS_URL_FILE" in names, "cannot read config list: %r" % r.stdout[:300]
    return names


def deploy_files():
    out = [DOCKERFILE]
    for root, _, files in os.walk(DEPLOY):
        if os.path.relpath(root, DEPLOY).split(os.sep)[0] == "secrets":
            continue
        out.extend(os.path.join(root, f) for f in files)
    return sorted(out)


def dockerfile_args():
    with open(DOCKERFILE, encoding="utf-8") as f:
        return set(re.findall(r"(?m)^ARG\s+([A-Z0-9_]+)", f.read()))


def test_every_txmail_name_in_deploy_is_a_setting(txmail_binary):
    known = config_names(txmail_binary)
    build_args = dockerfile_args()
    problems = []
    used = set()
    for path in deploy_files():
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for n in set(re.findall(r"\bTXMAIL_[A-Z0-9_]*[A-Z0-9]\b", text)):
            used.add(n)
            if n in known or (path == DOCKERFILE and n in build_args):
                continue
            problems.append("%s: %s" % (os.path.relpath(path, REPO), n))
    assert not problems, "TXMAIL_* names used in deploy/ or the Dockerfile that `txmail config list` " \
        "does not know:\n  " + "\n  ".join(sorted(problems))
    for want in ("TXMAIL_ADMIN_LISTEN", "TXMAIL_REDIS_URL_FILE", "TXMAIL_API_KEYS_FILE"):
        assert want in used, "deploy/ does not use %s" % want


def dockerfile_packages():
    """{stage index: [apt package]} of the Dockerfile's apt-get install lines."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    out, stage = {}, -1
    for line in text.splitlines():
        if line.startswith("FROM "):
            stage += 1
        for m in re.finditer(r"apt-get install ([^&;|]*)", line):
            out.setdefault(stage, []).extend(w for w in m.group(1).split() if not w.startswith("-"))
    return out


def test_dockerfile_packages_exist_in_bookworm(txmail_binary):
    with open("/etc/os-release", encoding="utf-8") as f:
        codename = re.search(r"(?m)^VERSION_CODENAME=(\S+)", f.read())
    if not codename or codename.group(1) != "bookworm":
        pytest.skip("this machine's apt sources are not bookworm (%s)" % (codename and codename.group(1)))
    with open(DOCKERFILE, encoding="utf-8") as f:
        froms = re.findall(r"(?m)^FROM\s+(\S+)", f.read())
    assert froms and all(f == "debian:bookworm-slim" for f in froms), "Dockerfile stages %r" % froms
    pkgs = dockerfile_packages()
    assert sorted(pkgs) == [0, 1], "want apt-get install in both stages: %r" % pkgs
    allp = sorted({p for v in pkgs.values() for p in v})
    r = run(["apt-cache", "show", "--no-all-versions"] + allp, timeout=60)
    found = set(re.findall(r"(?m)^Package: (\S+)$", r.stdout))
    missing = [p for p in allp if p not in found]
    assert not missing, "Dockerfile packages not in this machine's bookworm sources: %s (%s)" % (missing, r.stderr)
    # the runtime stage has the package of every library the binary links
    r = run(["readelf", "-d", txmail_binary])
    assert r.returncode == 0, r.stderr
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)
    assert "libc.so.6" in needed, needed
    # the sanitizer runtimes of the ASan build are not the image's business
    needed = [so for so in needed if not re.match(r"^lib(asan|ubsan|lsan|tsan)\.so", so)]
    runtime = set(pkgs[1]) | {"libc6"}   # libc6 is in every Debian image
    # the files of the runtime packages, from dpkg's lists (they are installed
    # here: the build needs them); faster than `dpkg -S`, which reads them all
    shipped = set()
    for pkg in sorted(runtime):
        lists = [os.path.join("/var/lib/dpkg/info", pkg + suf) for suf in (".list", ":amd64.list", ":arm64.list")]
        lists = [x for x in lists if os.path.exists(x)]
        if not lists:
            continue
        with open(lists[0], encoding="utf-8", errors="replace") as f:
            shipped |= {os.path.basename(line.strip()) for line in f}
    problems = [so for so in needed if so not in shipped]
    assert not problems, "the Dockerfile's runtime stage lacks the package of: %s" % "; ".join(problems)


# --- the deployments' settings, as the binary reads them -------------------------------

def config_check(binary, where, env, files, tmp_path):
    """`txmail config check` with a container's environment, its secret files
    (container path -> content) written under tmp_path: no error, no warning."""
    env = dict(env)
    d = tmp_path / re.sub(r"[^A-Za-z0-9]+", "-", where)
    d.mkdir()
    for i, (cpath, content) in enumerate(sorted(files.items())):
        local = d / ("f%d" % i)
        local.write_text(content)
        for k, v in env.items():
            if v == cpath:
                env[k] = str(local)
    for k, v in env.items():
        assert not (k.endswith("_FILE") and v.startswith("/run/secrets/")), \
            "%s: %s=%s names no secret file it mounts" % (where, k, v)
    r = run([binary, "config", "check"], env=dict(env, PATH=os.environ.get("PATH", "/usr/bin:/bin")))
    summary = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("config check: ")]
    assert r.returncode == 0 and summary == ["config check: 0 errors, 0 warnings"], \
        "%s: txmail config check with its settings: exit %d\n%s" % (where, r.returncode, r.stderr)


def k8s_container_settings(docs, secret_values):
    """[(where, env, files)] of each txmail container of a render."""
    cms = by_kind(docs, "ConfigMap")
    out = []
    for name, d in sorted(by_kind(docs, "Deployment").items()):
        pod = d["spec"]["template"]["spec"]
        for c in pod["containers"]:
            if c["args"][0] not in ("api", "worker", "run", "bounce"):
                continue
            env = {}
            for src in c.get("envFrom", []):
                env.update(cms[src["configMapRef"]["name"]]["data"])
            env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
            files = {p: secret_values[key] for p, (_, key) in secret_files(pod, c).items()}
            out.append(("%s/%s" % (name, c["name"]), env, files))
    return out


def test_deployments_settings_pass_config_check(txmail_binary, tmp_path):
    dev = kustomize(os.path.join(K8S, "overlays", "dev"))
    (secret,) = by_kind(dev, "Secret").values()
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    cases = [("k8s dev " + w, e, f) for w, e, f in k8s_container_settings(dev, values)]
    with open(os.path.join(K8S, "base", "secret.example.yaml"), encoding="utf-8") as f:
        example = yaml.safe_load(f)["stringData"]
    cases += [("k8s base " + w, e, f) for w, e, f in k8s_container_settings(kustomize(K8S), example)]
    with open(os.path.join(SENTINEL, "secret.example.yaml"), encoding="utf-8") as f:
        example = yaml.safe_load(f)["stringData"]
    cases += [("k8s sentinel " + w, e, f) for w, e, f in k8s_container_settings(kustomize(SENTINEL), example)]
    # compose, with the values its set-up lines make
    svc = compose_doc()["services"]
    compose_secrets = {"redis_url": "redis://:%s@redis:6379/0" % ("ab" * 24), "api_keys": "cd" * 24,
                       "redis_password": "ab" * 24, "grafana_admin_password": "ef" * 16}
    for name in ("api", "worker"):
        env = {k: str(v) for k, v in svc[name]["environment"].items()}
        # the ${VAR:-default} and ${VAR-default} interpolations, with nothing exported
        env = {k: re.sub(r"\$\{[A-Z_]+:?-([^}]*)\}", r"\1", v) for k, v in env.items()}
        assert not any("${" in v for v in env.values()), "compose %s: uninterpolated %r" % (name, env)
        files = {"/run/secrets/" + s: compose_secrets[s] for s in svc[name]["secrets"]}
        cases.append(("compose " + name, env, files))
    assert len(cases) >= 8, [c[0] for c in cases]
    for where, env, files in cases:
        config_check(txmail_binary, where, env, files, tmp_path)
