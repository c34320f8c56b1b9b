#!/usr/bin/env python3
"""Macro benchmark: what a sandboxed request costs isotrace, seen at the sandbox's edge
(gVisor netstack: the TC program on its veth, reassembly, a sandbox-level breakdown)
next to the same server seen through the Sentry's own host syscalls (gVisor
--network=host), in one run. Real runsc sandboxes (tests/e2e/sandboxes.py) serve a
small file with Python's http.server (HTTP/1.0: one connection per request); the bench
sends REQUESTS sequential GETs to each with the daemon running (embedded mode, no export).

    python3 bench/sandbox_edge.py <builddir>

Prints per mode: requests, spans, BPF ns per request (every isotrace program's
run_time_ns delta over the run, kernel.bpf_stats_enabled=1), the daemon's CPU µs per
request (/proc utime+stime), its RSS, and the per-program table (ns per call) of the
programs that ran. Environment: REQUESTS (default 1000), MODES ("sandbox host"; "host"
alone measures a build from before the edge existed, for before/after figures).
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build"))
os.environ["ISOTRACE_BUILD_DIR"] = BUILD
import harness as h  # noqa: E402
import sandboxes  # noqa: E402

REQUESTS = int(os.environ.get("REQUESTS", "1000"))
HZ = os.sysconf("SC_CLK_TCK")


def progs():
    out = {}
    for p in json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                                       check=True).stdout):
        out[p["id"]] = (p.get("name", "?"), p.get("run_time_ns", 0), p.get("run_cnt", 0))
    return out


def cpu_ns(pid):
    with open("/proc/%d/stat" % pid) as f:
        f = f.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1_000_000_000 // HZ


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure(procs, daemon, url, ours):
    before, c0 = progs(), cpu_ns(daemon.pid)
    t0 = time.time()
    for i in range(REQUESTS):
        with urllib.request.urlopen(url + "?b=%d" % i, timeout=10) as r:
            r.read()
    wall = time.time() - t0
    time.sleep(0.3)  # the daemon's next poll takes the last records
    after, c1 = progs(), cpu_ns(daemon.pid)
    table, bpf = [], 0
    for pid_, (name, rt, rc) in after.items():
        if pid_ not in ours:
            continue
        b = before.get(pid_, (name, 0, 0))
        d_rt, d_rc = rt - b[1], rc - b[2]
        if d_rc > 0:
            bpf += d_rt
            table.append((name, d_rc, d_rt // d_rc))
    return {"wall_s": wall, "bpf_ns_per_req": bpf / REQUESTS, "daemon_us_per_req": (c1 - c0) / 1000 / REQUESTS,
            "rss_mib": rss_kib(daemon.pid) / 1024, "table": sorted(table, key=lambda x: -x[1] * x[2])}


def main():
    if os.geteuid() != 0:
        sys.exit("sandbox_edge: needs root")
    old = subprocess.run(["sysctl", "-n", "kernel.bpf_stats_enabled"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    sandboxes.cleanup_stale()
    results = {}
    try:
        with h.Procs() as procs:
            pre = set(progs())
            for mode in os.environ.get("MODES", "sandbox host").split():
                sb = sandboxes.GvisorSandbox(procs, network=mode)
                sb.start()
                try:
                    daemon = h.start_daemon(procs, "--summary-interval", "0", "--stats-file",
                                            os.path.join(procs.tmp, "stats-%s.json" % mode))
                    if mode == "sandbox":
                        deadline = time.time() + 15
                        while "edge: watching %s" % sb.veth not in procs.log(daemon) and time.time() < deadline:
                            time.sleep(0.2)
                    time.sleep(1)
                    ours = set(progs()) - pre
                    results[mode] = measure(procs, daemon, sb.url("/hello.txt"), ours)
                    procs.stop(daemon)
                    with open(os.path.join(procs.tmp, "stats-%s.json" % mode)) as f:
                        st = json.load(f)
                    results[mode]["spans"] = st.get("spans", st.get("tracker", {}).get("spans"))
                finally:
                    sb.stop()
    finally:
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=%s" % (old or "0")])
    print("requests per mode: %d (sequential GETs, one connection each)" % REQUESTS)
    for mode, r in results.items():
        label = "gVisor netstack (edge: TC on the veth)" if mode == "sandbox" else "gVisor host network (syscalls)"
        print("%-40s %6.0f req/s  BPF %7.0f ns/req  daemon %6.1f µs/req  RSS %5.1f MiB  spans %s" % (
            label, REQUESTS / r["wall_s"], r["bpf_ns_per_req"], r["daemon_us_per_req"], r["rss_mib"], r["spans"]))
        for name, cnt, per in r["table"][:8]:
            print("    %-22s %8d calls %7d ns/call" % (name, cnt, per))


if __name__ == "__main__":
    main()
