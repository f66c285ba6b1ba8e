#!/usr/bin/python3
"""redis_cost.py - what one message costs Redis on this code: the figures
docs/scaling.md sizes Redis from.

Starts everything itself on loopback ports from the harness's port block
(TXM_PORT_GROUP): a redis-server on deploy/redis.conf with `appendfsync
everysec` (--fsync; only port, bind, dir and daemonize changed besides),
optionally --replicas replicas of it, Postfix's smtp-sink as the relay, the
webhook receiver build/bench/whrecv, and a split deployment: `txmail api`
and `txmail worker`. For each recipient count of --rcpts (default 1 and 3)
it runs, on a fresh Redis:

  backlog  --messages POSTs (one at a time over --conns keep-alive
           connections, each a unique ~2.5 KB receipt: text + HTML, an
           Idempotency-Key unless --no-idempotency) with no worker running:
           used_memory delta / N is the memory of a queued message. Then the
           worker starts, drains the queue, and the api and worker stop:
           used_memory delta / N (from before the POSTs) is the memory of a
           finished message during its retention (the summary and timeline,
           7 days; the outbox entry, TXMAIL_EVENTS_RETENTION; the
           idempotency record, 24 h; the content is gone:
           TXMAIL_CONTENT_RETENTION 0). The commands, CPU and AOF bytes of
           the two halves are printed too: accepting alone, and delivering
           a queued message with its webhook.
  steady   api and worker running; first --idle-seconds of nothing (the
           background commands per second of one api + one worker: the
           scheduler, the feeders' blocking reads, the webhook dispatcher),
           then --messages POSTs while the worker delivers, until every
           recipient's message.delivered webhook arrived. Per message, from
           INFO deltas over the run (background not subtracted, it is
           printed): Redis commands by command (commandstats: a script's
           inner calls count as commands, EVALSHA is the script run), the
           server's CPU (used_cpu_sys + used_cpu_user) and the usec Redis
           spent inside scripts (commandstats usec of EVALSHA), network
           bytes in and out, AOF bytes (aof_current_size; no rewrite may
           run: checked), replication stream bytes (master_repl_offset,
           with --replicas), and 1e6 / CPU us: the messages per second one
           Redis core would sustain at this cost.

BENCH_TXMAIL_X=v in the environment gives txmail TXMAIL_X=v (suite.py's
start_txmail), e.g. BENCH_TXMAIL_REDIS_MIN_REPLICAS=1 with --replicas 1.

The counts are deterministic to a few percent (batching of reads depends
on timing); the CPU figures are not: the box is shared, Redis does more
per wake-up under load (its per-message CPU falls as the rate rises), and
a core at 100 % is not a target. The load average is printed.

  redis_cost.py --bin build/txmail --whrecv build/bench/whrecv
                [--messages 5000] [--rcpts 1,3] [--fsync everysec|always]
                [--replicas N] [--redis-set 'NAME VALUE'] [--conns 8]
                [--json [FILE]] [--keep]
"""
import argparse
import http.client
import json
import os
import shlex
import sys
import threading
import time

from benchlib import Procs, start_redis, info, cmd_delta, wait_until, tail
from helpers import resp_cmd
import suite

EVENTS_KEY = suite.EVENTS_KEY
RETENTION_DAYS = 7          # store_conn.c: a finished message's summary (no setting)


def log(msg):
    print("redis_cost: " + msg, flush=True)


# --- the load -----------------------------------------------------------------
LINE_ITEMS = ("Espresso beans, 1 kg", "Oat milk, 6 x 1 l", "Descaler tablets", "Milk jug, 350 ml",
              "Paper filters, 100", "Burr grinder cleaning kit")


def message(seq, rcpts, run):
    """A receipt of about 2.5 KB of JSON (text 1.1 KB + HTML 1.3 KB),
    unique per seq; rcpts recipients (to, then cc)."""
    order = "A-%s-%06d" % (run, seq)
    items = [(LINE_ITEMS[(seq + i) % len(LINE_ITEMS)], (seq * 7 + i * 13) % 40 + 2) for i in range(4)]
    total = sum(p for _, p in items)
    text = ("Hello,\n\nthank you for your order %s. We have received your payment and "
            "will ship the items below within two working days.\n\n" % order +
            "".join("  %-34s EUR %6.2f\n" % (n, p) for n, p in items) +
            "  %-34s EUR %6.2f\n\n" % ("Total (incl. VAT)", total) +
            "Delivery address:\n  Ada Lovelace\n  12 Example Street\n  10115 Berlin\n\n"
            "You can follow the parcel at https://shop.example.com/orders/%s once it has left "
            "our warehouse. Questions? Answer this mail or call +49 30 1234567 (Mon-Fri 9-17).\n\n"
            "Kind regards,\nThe Example Shop team\n\n--\nExample Shop GmbH, 1 Market Square, "
            "10117 Berlin. Registered at Amtsgericht Berlin HRB 123456. VAT DE123456789.\n" % order)
    rows = "".join("<tr><td>%s</td><td style=\"text-align:right\">EUR %.2f</td></tr>" % (n, p) for n, p in items)
    html = ("<!doctype html><html><body style=\"font-family:sans-serif;color:#222\">"
            "<h1 style=\"font-size:20px\">Thank you for your order %s</h1>"
            "<p>We have received your payment and will ship the items below within two working days.</p>"
            "<table style=\"border-collapse:collapse;width:100%%\">%s"
            "<tr><td><b>Total (incl. VAT)</b></td><td style=\"text-align:right\"><b>EUR %.2f</b></td></tr>"
            "</table><p>Delivery address: Ada Lovelace, 12 Example Street, 10115 Berlin</p>"
            "<p><a href=\"https://shop.example.com/orders/%s\">Follow your parcel</a> once it has left our "
            "warehouse. Questions? Answer this mail or call +49 30 1234567 (Mon-Fri 9-17).</p>"
            "<p>Kind regards,<br>The Example Shop team</p><hr><p style=\"font-size:11px;color:#777\">"
            "Example Shop GmbH, 1 Market Square, 10117 Berlin. Registered at Amtsgericht Berlin HRB 123456. "
            "VAT DE123456789.</p></body></html>" % (order, rows, total, order))
    to = ["customer%d-%d@example.com" % (seq, i) for i in range(rcpts)]
    body = {"from": "Example Shop <orders@shop.example.com>", "to": to[0],
            "subject": "Your order %s" % order, "text": text, "html": html,
            "metadata": {"order": order}, "tags": ["receipt"]}
    if rcpts > 1:
        body["cc"] = to[1:]
    return json.dumps(body).encode()


def send_all(port, n, rcpts, conns, run, idempotency):
    """POST n messages over conns keep-alive connections; returns the
    seconds taken. Any answer but 202 stops the bench."""
    nxt = {"i": 0}
    lock = threading.Lock()
    errors = []

    def one_conn():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        hdrs = {"Authorization": "Bearer " + suite.KEY, "Content-Type": "application/json"}
        try:
            while not errors:
                with lock:
                    i = nxt["i"]
                    nxt["i"] += 1
                if i >= n:
                    return
                h = dict(hdrs, **({"Idempotency-Key": "%s-%d" % (run, i)} if idempotency else {}))
                c.request("POST", "/v1/messages", body=message(i, rcpts, run), headers=h)
                r = c.getresponse()
                data = r.read()
                if r.status != 202:
                    errors.append("POST %d answered %d: %r" % (i, r.status, data[:300]))
        except OSError as e:
            errors.append("POST: %s" % e)
        finally:
            c.close()
    t0 = time.monotonic()
    threads = [threading.Thread(target=one_conn, daemon=True) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    if errors or any(t.is_alive() for t in threads):
        raise SystemExit("redis_cost: sending failed: %s" % (errors[:3] or "a sender hung"))
    return time.monotonic() - t0


def wait_delivered(whp, want, what, procs_to_watch):
    """Until whrecv counted want message.delivered webhooks; stops the
    bench when progress stalls for 60 s or a process exited."""
    state = {"last": -1, "since": time.monotonic()}

    def done():
        for p in procs_to_watch:
            if p.poll() is not None:
                raise SystemExit("redis_cost: %s exited: %s" % (p.bench_name, tail(p.bench_log, 20)))
        got = suite.wh_stats(whp)["delivered"]
        if got != state["last"]:
            state["last"], state["since"] = got, time.monotonic()
        elif time.monotonic() - state["since"] > 60:
            raise SystemExit("redis_cost: %s: stuck at %d of %d webhooks" % (what, got, want))
        return got >= want
    wait_until(done, 1800, "%s: %d message.delivered webhooks" % (what, want), interval=0.1)


# --- one recipient count -------------------------------------------------------
def mem(port):
    return info(port)["used_memory"]


def events_bytes(port):
    return suite.events_bytes(port)


def start_replicas(procs, a, name, rport):
    ports = []
    for i in range(a.replicas):
        p, _ = start_redis(procs, "%s-replica%d" % (name, i), a.redis_set + ["replicaof 127.0.0.1 %d" % rport])
        ports.append(p)

    def synced():
        rep = resp_cmd(rport, "INFO", "replication", timeout=5)
        return rep.count("state=online") >= a.replicas
    if ports:
        wait_until(synced, 30, "%d replicas online" % a.replicas, interval=0.1)
    return ports


def per_message(before, after, n):
    """The per-message figures of one run between two info() snapshots."""
    cmds = cmd_delta(before, after)
    calls = sum(c for c, _ in cmds.values())
    # a script's usec already holds its inner calls' (counted again on their own)
    script_usec = sum(u for k, (_, u) in cmds.items() if k.split("|")[0] in ("evalsha", "eval", "fcall"))
    cpu = (after["used_cpu_sys"] + after["used_cpu_user"]) - (before["used_cpu_sys"] + before["used_cpu_user"])
    child = ((after["used_cpu_sys_children"] + after["used_cpu_user_children"]) -
             (before["used_cpu_sys_children"] + before["used_cpu_user_children"]))
    scripts = sum(c for k, (c, _) in cmds.items() if k.split("|")[0] in ("evalsha", "eval", "fcall"))

    def d(k):
        return (after.get(k, 0) - before.get(k, 0)) / n
    return {
        "commands": calls / n,
        "by_command": {k: round(c / n, 3) for k, (c, _) in sorted(cmds.items(), key=lambda kv: -kv[1][0])},
        "script_runs": scripts / n,
        "cpu_us": cpu * 1e6 / n,
        "cpu_children_us": child * 1e6 / n,
        "script_usec": script_usec / n,
        "msgs_per_core_s": n / cpu if cpu > 0 else None,
        "net_in_bytes": d("total_net_input_bytes"),
        "net_out_bytes": d("total_net_output_bytes"),
        "aof_bytes": d("aof_current_size"),
        "repl_bytes": d("master_repl_offset"),
        "aof_rewrites": int(after.get("aof_rewrites", 0) - before.get("aof_rewrites", 0)),
    }


def key_sizes(port):
    """{key kind: "MEMORY USAGE bytes (OBJECT ENCODING)"} of one finished
    message's keys (the first of each kind SCAN finds)."""
    kinds = (("msg:<id>", "txm{0}:msg:*", lambda k: k.count(":") == 2),
             ("idem:<key>", "txm{0}:idem:*", lambda k: True))
    out = {}
    for kind, pattern, fits in kinds:
        cursor, found = "0", None
        for _ in range(10000):
            cursor, keys = resp_cmd(port, "SCAN", cursor, "MATCH", pattern, "COUNT", "1000", timeout=5)
            found = next((k for k in keys if fits(k)), None)
            if found or cursor == "0":
                break
        if found:
            out[kind] = "%d (%s)" % (resp_cmd(port, "MEMORY", "USAGE", found, "SAMPLES", "0", timeout=5),
                                     resp_cmd(port, "OBJECT", "ENCODING", found, timeout=5))
    return out


def run_rcpts(a, procs, rcpts):
    name = "r%d" % rcpts
    rport, over = start_redis(procs, "redis-" + name, a.redis_set)
    replicas = start_replicas(procs, a, name, rport)
    sink, sport, _ = suite.start_sink(procs, "sink-" + name)
    secret = suite.new_secret()
    wh, whp = suite.start_whrecv(procs, a, secret, "whrecv-" + name)
    relay = "smtp://127.0.0.1:%d?tls=none" % sport
    n = a.messages
    res = {"rcpts": rcpts, "messages": n, "redis": over, "replicas": len(replicas)}

    # backlog: queued with no worker, then drained; memory only
    api, apip = suite.start_txmail(procs, a, "api-" + name, rport, None, whp, secret, role="api")
    m0, e0 = mem(rport), events_bytes(rport)
    log("%d rcpt: backlog: %d POSTs, no worker running" % (rcpts, n))
    b0 = info(rport)
    secs = send_all(apip, n, rcpts, a.conns, "b" + name + suite.KEY[-6:], a.idempotency)
    b1 = info(rport)
    m1 = b1["used_memory"]
    log("%d rcpt: %d queued in %.1f s; starting the worker" % (rcpts, n, secs))
    worker, _ = suite.start_txmail(procs, a, "worker-" + name, rport, relay, whp, secret, role="worker")
    wait_delivered(whp, n * rcpts, "%d rcpt backlog" % rcpts, (api, worker))
    b2 = info(rport)
    # the two halves of the work: what accepting costs, and what delivering
    # and notifying costs (the queue drained at the worker's own pace)
    res["accept"], res["drain"] = per_message(b0, b1, n), per_message(b1, b2, n)
    procs.stop(worker, timeout=40)
    procs.stop(api, timeout=40)
    m2, e2 = mem(rport), events_bytes(rport)
    res["memory"] = {"queued_bytes": (m1 - m0) / n, "retained_bytes": (m2 - m0) / n,
                     "keys": key_sizes(rport),
                     "retained_events_bytes": (e2 - e0) / n, "retained_other_bytes": (m2 - m0 - (e2 - e0)) / n,
                     "dbsize_after": int(resp_cmd(rport, "DBSIZE", timeout=5))}

    # steady: api and worker together, an idle stretch first
    api, apip = suite.start_txmail(procs, a, "api2-" + name, rport, None, whp, secret, role="api")
    worker, _ = suite.start_txmail(procs, a, "worker2-" + name, rport, relay, whp, secret, role="worker")
    time.sleep(1.0)             # start-up commands (script loads, groups) out of the idle window
    i0 = info(rport)
    t0 = time.monotonic()
    time.sleep(a.idle_seconds)  # the window measured, not a wait for a condition
    i1 = info(rport)
    idle_s = time.monotonic() - t0
    idle = cmd_delta(i0, i1)
    res["background"] = {"commands_per_s": sum(c for c, _ in idle.values()) / idle_s,
                         "by_command_per_s": {k: round(c / idle_s, 1) for k, (c, _) in
                                              sorted(idle.items(), key=lambda kv: -kv[1][0])},
                         "seconds": idle_s, "processes": "1 api + 1 worker"}
    have = suite.wh_stats(whp)["delivered"]
    log("%d rcpt: steady: %d POSTs while the worker delivers" % (rcpts, n))
    before = info(rport)
    t0 = time.monotonic()
    secs = send_all(apip, n, rcpts, a.conns, "s" + name + suite.KEY[-6:], a.idempotency)
    wait_delivered(whp, have + n * rcpts, "%d rcpt steady" % rcpts, (api, worker))
    after = info(rport)
    elapsed = time.monotonic() - t0
    res["steady"] = per_message(before, after, n)
    res["steady"].update({"seconds": elapsed, "post_seconds": secs, "msgs_per_s": n / elapsed,
                          "background_share": res["background"]["commands_per_s"] * elapsed /
                          max(1, res["steady"]["commands"] * n)})
    if res["steady"]["aof_rewrites"]:
        log("%d rcpt: an AOF rewrite ran: the AOF figure is not the bytes written" % rcpts)
    for p in (worker, api, wh, sink):
        procs.stop(p, timeout=40)
    return res


# --- output ---------------------------------------------------------------------
def report(a, results, header):
    out = list(header) + [""]
    for r in results:
        s, m, b = r["steady"], r["memory"], r["background"]
        out.append("%d recipient%s per message, %d messages (steady: %.0f msg/s end to end here)" %
                   (r["rcpts"], "" if r["rcpts"] == 1 else "s", r["messages"], s["msgs_per_s"]))
        out.append("  Redis commands per message      %.1f (of them script runs EVALSHA %.2f; %.0f %% of them "
                   "the idle background)" % (s["commands"], s["script_runs"], 100 * s["background_share"]))
        out.append("    by command                    " + ", ".join(
            "%s %.2f" % (k.split("|")[0] + ("|" + k.split("|")[1] if "|" in k else ""), v)
            for k, v in list(s["by_command"].items())[:12]))
        out.append("  Redis CPU per message, us       %.0f (server; children %.0f); inside scripts %.0f"
                   % (s["cpu_us"], s["cpu_children_us"], s["script_usec"]))
        out.append("    -> messages/s one Redis core  %s (1e6 / CPU us; noisy: shared box)" %
                   ("%.0f" % s["msgs_per_core_s"] if s["msgs_per_core_s"] else "-"))
        out.append("  network per message, bytes      in %.0f, out %.0f" % (s["net_in_bytes"], s["net_out_bytes"]))
        out.append("  AOF bytes per message           %.0f%s" % (s["aof_bytes"], " (a rewrite ran!)" if s["aof_rewrites"] else ""))
        if r["replicas"]:
            out.append("  replication bytes per message   %.0f (to each of %d replicas)" % (s["repl_bytes"], r["replicas"]))
        out.append("  memory per queued message       %.0f bytes (used_memory delta, no worker)" % m["queued_bytes"])
        out.append("  memory per finished message     %.0f bytes during retention (of them the outbox entry %.0f, "
                   "kept %s s)" % (m["retained_bytes"], m["retained_events_bytes"], "86400"))
        out.append("    one finished message's keys   " + ", ".join(
            "%s %s" % kv for kv in sorted(m["keys"].items())) + " bytes (MEMORY USAGE)")
        for half in ("accept", "drain"):
            h = r[half]
            out.append("  %-31s %.1f commands (scripts %.2f), CPU %.0f us, AOF %.0f bytes per message" % (
                "backlog run, " + ("accepting only" if half == "accept" else "delivering it"),
                h["commands"], h["script_runs"], h["cpu_us"], h["aof_bytes"]))
        out.append("  background, 1 api + 1 worker    %.1f commands/s idle (%s)" % (
            b["commands_per_s"], ", ".join("%s %.1f" % (k, v) for k, v in list(b["by_command_per_s"].items())[:6])))
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/txmail")
    ap.add_argument("--whrecv", default="build/bench/whrecv")
    ap.add_argument("--messages", type=int, default=5000, help="messages per run (5,000)")
    ap.add_argument("--rcpts", default="1,3", help="recipient counts, one run pair each (1,3)")
    ap.add_argument("--fsync", default="everysec", choices=("everysec", "always"),
                    help="appendfsync (everysec; deploy/redis.conf ships always)")
    ap.add_argument("--replicas", type=int, default=0, help="replicas of the measured Redis (0)")
    ap.add_argument("--redis-set", metavar="'NAME VALUE'", action="append", default=[],
                    help="also change this deploy/redis.conf setting (repeatable; printed)")
    ap.add_argument("--conns", type=int, default=8, help="sending connections (8)")
    ap.add_argument("--idle-seconds", type=float, default=3.0, help="the idle window of the steady run (3)")
    ap.add_argument("--no-idempotency", dest="idempotency", action="store_false",
                    help="send without Idempotency-Key")
    ap.add_argument("--json", metavar="FILE", nargs="?", const="-", help="also the figures as JSON (- : stdout)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    a = ap.parse_args()
    a.bin, a.whrecv = os.path.abspath(a.bin), os.path.abspath(a.whrecv)
    for b in (a.bin, a.whrecv):
        if not os.access(b, os.X_OK):
            raise SystemExit("redis_cost: %s missing (make build/txmail build/bench/whrecv)" % b)
    a.redis_set = ["appendfsync " + a.fsync] + a.redis_set
    rcpts = [int(x) for x in a.rcpts.split(",") if x]
    procs = Procs(prefix="txm-rcost-", keep=a.keep)
    procs.install_handlers()
    model, nproc, _, redis_v = suite.machine()
    load0 = os.getloadavg()
    t_start = time.monotonic()
    results = []
    try:
        for k in rcpts:
            results.append(run_rcpts(a, procs, k))
    finally:
        procs.cleanup()
    load1 = os.getloadavg()
    header = [
        "command: redis_cost.py %s" % " ".join(shlex.quote(x) for x in sys.argv[1:]),
        "machine: %s; nproc %s; %s" % (model, nproc, redis_v),
        "redis-server: deploy/redis.conf except port, bind, dir, daemonize, %s; %d replicas"
        % (", ".join(a.redis_set), a.replicas),
        "load average: %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end; run time %.0f s"
        % (load0 + load1 + (time.monotonic() - t_start,)),
        "retention: summary %d days (compiled in), outbox TXMAIL_EVENTS_RETENTION 86400 s, content 0 s, "
        "idempotency records 24 h" % RETENTION_DAYS,
    ]
    print()
    print(report(a, results, header), flush=True)
    if a.json:
        doc = json.dumps({"header": header, "results": results}, indent=1, sort_keys=True)
        if a.json == "-":
            print(doc)
        else:
            with open(a.json, "w") as f:
                f.write(doc + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
