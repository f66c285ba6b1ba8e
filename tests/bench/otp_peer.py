#!/usr/bin/python3
"""otp_peer.py - the SMTP peer of the bench's lone-verification-code run:
an aiosmtpd server on 127.0.0.1 that accepts everything and, for each
message, writes "<CLOCK_REALTIME ns at end of DATA> <X-Bench-Seq value>"
to --record (one line, flushed at once), so the bench can match each
message to the POST that sent it. Enough for 100 messages/s; not a
throughput peer (the end-to-end run uses Postfix's smtp-sink).

  otp_peer.py --port P --record FILE [--ready-file F]
"""
import argparse
import os
import re
import signal
import threading
import time

from aiosmtpd.controller import Controller

SEQ_RE = re.compile(rb"(?im)^X-Bench-Seq:\s*(\S+)")


class Handler:
    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        t = time.time_ns()
        m = SEQ_RE.search(envelope.original_content or envelope.content or b"")
        seq = m.group(1).decode() if m else "-"
        with self.lock:
            self.out.write("%d %s\n" % (t, seq))
            self.out.flush()
        return "250 2.0.0 OK"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--ready-file")
    a = ap.parse_args()
    out = open(a.record, "a")
    ctl = Controller(Handler(out), hostname="127.0.0.1", port=a.port)
    ctl.start()
    if a.ready_file:
        with open(a.ready_file + ".tmp", "w") as f:
            f.write("%d\n" % a.port)
        os.rename(a.ready_file + ".tmp", a.ready_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1):
        pass
    ctl.stop()
    out.close()


if __name__ == "__main__":
    main()
