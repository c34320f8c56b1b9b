#!/usr/bin/env python3
"""Macro benchmark: does the OTLP span exporter keep up at saturation?

nginx (the e2e harness's, one worker, static file, keep-alive) is driven flat out by wrk
while isotraced traces it and exports every span over OTLP/gRPC to the independent npm
receiver (tests/e2e/otlp_receiver.mjs, writing JSON lines as the e2e tests do). Printed:
requests, spans accepted by the exporter, sent, dropped by reason, export calls and spans
per call, and the CPU time of the daemon and of the receiver. A figure, never a pass/fail
threshold; exit 2 when it cannot run here (not root, no nginx/wrk/node, no isotraced).

    sudo python3 bench/export_saturation.py [builddir]
    # env: DURATION=10 CONNS=16 THREADS=1 FILE_BYTES=1024; extra isotraced flags after --
"""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
if len(sys.argv) > 1 and sys.argv[1] != "--":
    os.environ["ISOTRACE_BUILD_DIR"] = os.path.abspath(sys.argv[1])
import harness  # noqa: E402

DURATION = int(os.environ.get("DURATION", "10"))
CONNS = int(os.environ.get("CONNS", "16"))
THREADS = int(os.environ.get("THREADS", "1"))
FILE_BYTES = int(os.environ.get("FILE_BYTES", "1024"))
EXTRA = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []


def cannot(msg):
    print("export_saturation: cannot run: " + msg, file=sys.stderr)
    sys.exit(2)


def cpu_ms(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def main():
    if os.geteuid() != 0:
        cannot("needs root (loads BPF probes)")
    for tool in ("nginx", "wrk", "node"):
        if not shutil.which(tool):
            cannot(tool + " not installed (scripts/install-deps.sh)")
    if not os.access(harness.ISOTRACED, os.X_OK):
        cannot(harness.ISOTRACED + " not built")
    with harness.Procs() as procs:
        root = os.path.join(procs.tmp, "www")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("x" * FILE_BYTES)
        port = harness.free_port()
        harness.start_nginx(procs, port, root)
        rx = harness.Receiver(procs)
        # The receiver's CALL lines come through a pipe: read them as they come, or a full
        # pipe would stall the receiver and the figure would be the pipe's.
        calls = []
        threading.Thread(target=lambda: [calls.append(int(m.group(1))) for m in
                                         (re.search(rb"CALL traces items=(\d+)", l) for l in rx.proc.stdout) if m],
                         daemon=True).start()
        stats = os.path.join(procs.tmp, "stats.json")
        d = harness.start_daemon(procs, "--otlp-endpoint", rx.endpoint, "--stats-file", stats,
                                 "--summary-interval", "0", *EXTRA)
        url = "http://127.0.0.1:%d/index.html" % port
        subprocess.run(["wrk", "-t1", "-c4", "-d1s", url], capture_output=True)  # warm-up
        d0, r0, t0 = cpu_ms(d.pid), cpu_ms(rx.proc.pid), time.time()
        w = subprocess.run(["wrk", "-t%d" % THREADS, "-c%d" % CONNS, "-d%ds" % DURATION, url],
                           capture_output=True, text=True)
        d1, r1, t1 = cpu_ms(d.pid), cpu_ms(rx.proc.pid), time.time()
        m = re.search(r"(\d+) requests in", w.stdout)
        if not m:
            cannot("wrk failed: " + w.stdout + w.stderr)
        requests = int(m.group(1))
        procs.stop(d, timeout=60)
        time.sleep(0.5)  # the receiver's last CALL lines
        if not os.path.exists(stats):
            harness.fail("no stats file:\n" + procs.log(d))
        ex = json.load(open(stats))["exporter"]
        items = sum(calls)
        print()
        print("OTLP export at saturation: nginx (1 worker, %d B file) under wrk -t%d -c%d for %d s, "
              "isotraced exporting to tests/e2e/otlp_receiver.mjs; %d CPUs; load %s" %
              (FILE_BYTES, THREADS, CONNS, DURATION, os.cpu_count(), open("/proc/loadavg").read().split()[0]))
        print("  requests (wrk)                %10d   %.0f req/s" % (requests, requests / DURATION))
        print("  spans accepted by exporter    %10d   (includes warm-up)" % ex["accepted"])
        print("  sent                          %10d" % ex["sent"])
        dropped = {k: v for k, v in ex["dropped"].items() if v}
        print("  dropped                       %10d   %s" % (ex["dropped_total"], dropped or ""))
        print("  dropped share                 %10.1f %%" % (100.0 * ex["dropped_total"] / max(ex["accepted"], 1)))
        print("  export calls / spans per call %10d   %.0f" % (len(calls), items / max(len(calls), 1)))
        print("  accepted == sent + dropped    %10s" % (ex["accepted"] == ex["sent"] + ex["dropped_total"]))
        print("  daemon CPU during the load    %10.0f ms  (%.1f%% of one CPU, %.2f ms per 1000 req)" %
              (d1 - d0, 100 * (d1 - d0) / 1000 / (t1 - t0), (d1 - d0) / max(requests / 1000, 1)))
        print("  receiver CPU during the load  %10.0f ms  (%.1f%% of one CPU)" %
              (r1 - r0, 100 * (r1 - r0) / 1000 / (t1 - t0)))


if __name__ == "__main__":
    main()
