"""Open-loop load driver of the localization benchmark (its own process, so the daemon
names its CLIENT spans by this process's OTEL_SERVICE_NAME).

  load.py --port P --rate R --prefix PFX --out FILE [--traceparent-every 3] [--workers 32]

Sends GET /api/order?req=<PFX>-<n> at a fixed rate (a dispatcher thread schedules request
n at t0 + n/R; a pool of worker threads, each with its own keep-alive connection, sends
them), every `traceparent-every`-th request with a fresh random W3C traceparent. Runs
until SIGTERM/SIGINT, or until the file given by --stop-file exists. Each finished request
is one JSON line in --out: {"k": query, "t0": send wall time, "t1": end, "st": status
(0 = transport error), "tid": trace id sent or null, "pid": parent span id sent or null,
"late": seconds the request waited for a free worker}.
"""
import argparse
import http.client
import json
import os
import queue
import random
import signal
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--rate", type=float, default=35.0)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--traceparent-every", type=int, default=3)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--stop-file")
    a = ap.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    work = queue.Queue()
    out = open(a.out, "a", buffering=1)
    out_lock = threading.Lock()
    rnd = random.SystemRandom()

    def worker():
        conn = None
        while True:
            item = work.get()
            if item is None:
                return
            n, due = item
            key = "req=%s-%d" % (a.prefix, n)
            headers = {}
            tid = pid = None
            if a.traceparent_every > 0 and n % a.traceparent_every == 0:
                tid = "%032x" % rnd.getrandbits(128)
                pid = "%016x" % rnd.getrandbits(64)
                if int(tid, 16) == 0 or int(pid, 16) == 0:
                    tid, pid = "%032x" % 1, "%016x" % 1
                headers["traceparent"] = "00-%s-%s-01" % (tid, pid)
            t0 = time.time()
            status = 0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(a.host, a.port, timeout=a.timeout)
                conn.request("GET", "/api/order?" + key, headers=headers)
                r = conn.getresponse()
                r.read()
                status = r.status
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
            t1 = time.time()
            with out_lock:
                out.write(json.dumps({"k": key, "t0": t0, "t1": t1, "st": status, "tid": tid, "pid": pid,
                                      "late": round(max(0.0, t0 - due), 4)}) + "\n")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.workers)]
    for t in threads:
        t.start()
    t_start = time.time()
    n = 0
    while not stop.is_set():
        if a.stop_file and os.path.exists(a.stop_file):
            break
        due = t_start + n / a.rate
        d = due - time.time()
        if d > 0:
            stop.wait(d)
            continue
        n += 1
        work.put((n, due))
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join(a.timeout + 2)
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
