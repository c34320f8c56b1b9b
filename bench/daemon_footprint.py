#!/usr/bin/env python3
"""Macro benchmark: isotraced's own footprint (CPU, resident memory) while it exports to an
OTLP receiver, the figures deploy/'s requests and limits are sized from.

  python3 bench/daemon_footprint.py <builddir>

Scenarios, each DURATION seconds of wrk (CONNS connections) against a single-process
nginx that the daemon traces with --pid:
  idle            no traffic
  load            the receiver (tests/e2e/otlp_receiver.mjs) accepts everything
  collector-down  the receiver is gone: the queue fills, items are dropped and counted
For each: requests/s, the daemon's CPU in cores (utime+stime / wall), its RSS at the end
and the peak sampled every 100 ms, and the exporter's counters from --stats-file.
Prints figures; never passes or fails on a threshold. Exits 2 when it cannot run (no
root, no wrk/nginx/node).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))

DURATION = int(os.environ.get("DURATION", "10"))
CONNS = int(os.environ.get("CONNS", "8"))


def cannot(msg):
    print("daemon_footprint: cannot run: " + msg, file=sys.stderr)
    sys.exit(2)


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build"))
    os.environ["ISOTRACE_BUILD_DIR"] = build
    os.environ["ISOTRACE_SOURCE_DIR"] = SRC
    if os.geteuid() != 0:
        cannot("needs root (loads BPF programs)")
    for tool in ("nginx", "wrk", "node"):
        if shutil.which(tool) is None:
            cannot(tool + " not installed (scripts/install-deps.sh)")
    import harness as h  # noqa: E402  (reads ISOTRACE_BUILD_DIR at import)
    import faults as f  # noqa: E402
    if not os.access(h.ISOTRACED, os.X_OK):
        cannot(h.ISOTRACED + " not built")

    with h.Procs() as procs:
        recv = f.ControlledReceiver(procs)
        recv.start()
        port = h.free_port()
        nginx = f.start_nginx_single(procs, port)
        stats = os.path.join(procs.tmp, "stats.json")
        cfg = f.write_config(procs, """
exporter: {otlp: {endpoint: "%s"}}
log: {stats_file: "%s"}
""" % (recv.endpoint, stats))
        daemon = h.start_daemon(procs, "--config", cfg, "--pid", str(nginx.pid), "--summary-interval", "0",
                                "--prometheus-listen", "", "--api-socket", "")
        tck = os.sysconf("SC_CLK_TCK")
        print("%-15s %10s %8s %10s %10s" % ("scenario", "req/s", "cores", "RSS MiB", "peak MiB"))

        def measure(name, load):
            rss = f.RssSampler(daemon.pid)
            rss.start()
            c0, t0 = f.cpu_ticks(daemon.pid), time.time()
            rps = 0.0
            if load:
                _, rps = f.wrk(port, DURATION, conns=CONNS, threads=1)
            else:
                time.sleep(DURATION)
            cores = (f.cpu_ticks(daemon.pid) - c0) / tck / (time.time() - t0)
            rss.stop()
            print("%-15s %10.0f %8.3f %10.1f %10.1f" % (name, rps, cores, f.rss_kib(daemon.pid) / 1024.0,
                                                         rss.peak / 1024.0), flush=True)

        time.sleep(1)
        measure("idle", False)
        measure("load", True)
        recv.kill()
        measure("collector-down", True)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        with open(stats) as fh:
            st = json.load(fh)["exporter"]
        print("exporter: accepted %d sent %d dropped %s" % (st["accepted"], st["sent"],
                                                            {k: v for k, v in st["dropped"].items() if v}))
        load = os.getloadavg()
        print("load average %.2f %.2f %.2f on %d CPUs (figures depend on what else runs)"
              % (load[0], load[1], load[2], os.cpu_count()))


if __name__ == "__main__":
    main()
