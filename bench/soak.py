#!/usr/bin/env python3
"""Soak: isotraced under mixed traffic for an hour, printing what must stay flat.

    sudo python3 bench/soak.py [builddir]
    env: SOAK_SECONDS=3600 SOAK_SAMPLE_SECONDS=60 SOAK_RATE=40 SOAK_COLLECTOR_PERIOD=120

What runs (all on loopback, started and stopped here):
  - nginx (one worker) and Python's http.server;
  - keep-alive clients (one connection each, many requests), clients that open a new
    connection per request, and short-lived processes (curl, a fresh python3) that send
    one request and exit: process churn for the identity cache and the proc probe;
  - the npm OTLP receiver (tests/e2e/otlp_receiver.mjs), stopped for a third of every
    SOAK_COLLECTOR_PERIOD and started again on the same port: the exporter's retries,
    queue and drops, and gRPC reconnects;
  - isotraced exporting spans, logs and metrics (every 5 s) to it, /metrics on.

Every SOAK_SAMPLE_SECONDS it prints one line about the daemon: RSS, open fds, threads,
the entries of each of its BPF hash maps (bpftool map dump), the exporter queue and the
spans sent/dropped so far (from /metrics). At the end: the first sample after warm-up
against the last, and the largest value seen. A benchmark: it prints figures and exits
0 unless something it started broke; it is not part of `make test`.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
if len(sys.argv) > 1:
    os.environ["ISOTRACE_BUILD_DIR"] = os.path.abspath(sys.argv[1])
os.environ.setdefault("ISOTRACE_SOURCE_DIR", SRC)
import harness as h  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "3600"))
SAMPLE = int(os.environ.get("SOAK_SAMPLE_SECONDS", "60"))
RATE = float(os.environ.get("SOAK_RATE", "40"))  # requests/s over all client kinds
COLLECTOR_PERIOD = int(os.environ.get("SOAK_COLLECTOR_PERIOD", "120"))


def log(msg):
    print(msg, flush=True)


class Load:
    """Client traffic in threads; counts what it sent and what failed."""

    def __init__(self, ports):
        self.ports = ports
        self.stop = threading.Event()
        self.sent = 0
        self.failed = 0
        self.lock = threading.Lock()
        self.threads = []

    def _count(self, ok):
        with self.lock:
            self.sent += 1
            if not ok:
                self.failed += 1

    def _pace(self, share):
        # Each kind of client gets `share` of RATE.
        return 1.0 / max(RATE * share, 0.1)

    def keepalive(self, port, share):
        conn = None
        n = 0
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                path = ["/index.html", "/missing", "/index.html?q=%d" % n][n % 3]
                conn.request("GET", path, headers={"traceparent": "00-%032x-%016x-01" % (n + 1, n + 1)})
                r = conn.getresponse()
                r.read()
                self._count(r.status < 500 or path == "/boom")
                n += 1
                if n % 500 == 0:  # a keep-alive connection does not live forever either
                    conn.close()
                    conn = None
            except OSError:
                self._count(False)
                conn = None
            self.stop.wait(self._pace(share))

    def fresh(self, port, share):
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/index.html" % port, timeout=5) as r:
                    r.read()
                    self._count(True)
            except OSError:
                self._count(False)
            self.stop.wait(self._pace(share))

    def churn(self, share):
        # Short-lived processes: each is a new (pid, start time) the daemon resolves once
        # and must forget after it exits.
        i = 0
        while not self.stop.is_set():
            port = self.ports[i % len(self.ports)]
            if i % 2 == 0:
                cmd = ["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d/index.html" % port]
            else:
                cmd = [sys.executable, "-c",
                       "import urllib.request as u; u.urlopen('http://127.0.0.1:%d/index.html').read()" % port]
            try:
                ok = subprocess.run(cmd, timeout=10, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL).returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
            self._count(ok)
            i += 1
            self.stop.wait(self._pace(share))

    def start(self):
        plan = []
        for port in self.ports:
            plan += [(self.keepalive, (port, 0.2)), (self.keepalive, (port, 0.15)), (self.fresh, (port, 0.1))]
        plan.append((self.churn, (0.1,)))
        for fn, args in plan:
            t = threading.Thread(target=fn, args=args, daemon=True)
            t.start()
            self.threads.append(t)

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(15)


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def daemon_maps(pid):
    """(name, type, max_entries, entries) of each BPF map isotraced holds. The maps are
    found through the daemon's own fds (fdinfo's map_id): Debian's bpftool does not
    report owning pids."""
    ids = set()
    fd_dir = "/proc/%d/fdinfo" % pid
    for fd in os.listdir(fd_dir):
        try:
            with open(os.path.join(fd_dir, fd)) as f:
                for line in f:
                    if line.startswith("map_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    out = []
    for map_id in sorted(ids):
        r = subprocess.run(["bpftool", "-j", "map", "show", "id", str(map_id)],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            continue
        m = json.loads(r.stdout or "{}")
        entries = None
        if "hash" in m.get("type", ""):
            d = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(map_id)],
                               capture_output=True, text=True, timeout=60)
            if d.returncode == 0:
                entries = len(json.loads(d.stdout or "[]"))
        out.append((m.get("name", "?"), m.get("type", "?"), m.get("max_entries", 0), entries))
    return sorted(out)


def metric(text, name, **labels):
    total = None
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^%s(\{[^}]*\})? (\S+)$" % re.escape(name), line)
        if not m:
            continue
        if any('%s="%s"' % kv not in (m.group(1) or "") for kv in labels.items()):
            continue
        total = (total or 0) + float(m.group(2))
    return total


def main():
    if os.geteuid() != 0:
        log("soak: needs root (the daemon loads BPF probes)")
        return 2
    for tool in ("nginx", "curl", "bpftool", "node"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            log("soak: %s not installed (scripts/install-deps.sh test)" % tool)
            return 2
    with h.Procs() as procs:
        root = os.path.join(procs.tmp, "www")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("x" * 2048)
        nginx_port, py_port, prom_port = h.free_port(), h.free_port(), h.free_port()
        h.start_nginx(procs, nginx_port, root)
        procs.start([sys.executable, "-m", "http.server", str(py_port), "--bind", "127.0.0.1",
                     "--directory", root], "pyserver")
        if not h.wait_port(py_port):
            h.fail("python http.server did not listen")

        receiver_port = h.free_port()
        out = os.path.join(procs.tmp, "received.jsonl")

        def start_receiver():
            p = procs.start(["node", os.path.join(h.E2E, "otlp_receiver.mjs"), "--port", str(receiver_port),
                             "--out", out], "receiver", stdout=subprocess.PIPE)
            line = p.stdout.readline().decode()
            if not line.startswith("LISTENING"):
                h.fail("receiver did not start: " + line)
            return p

        receiver = start_receiver()
        daemon = h.start_daemon(
            procs, "--otlp-endpoint", "http://127.0.0.1:%d" % receiver_port,
            "--prometheus-listen", "127.0.0.1:%d" % prom_port,
            "--api-socket", os.path.join(procs.tmp, "api.sock"), "--summary-interval", "0",
            env={"OTEL_METRIC_EXPORT_INTERVAL": "5000"})
        load = Load([nginx_port, py_port])
        load.start()
        log("soak: %d s, sample every %d s, %.0f req/s, collector down %d s of every %d s; daemon pid %d"
            % (SECONDS, SAMPLE, RATE, COLLECTOR_PERIOD // 3, COLLECTOR_PERIOD, daemon.pid))
        log("%7s %8s %5s %4s %9s %8s %10s %9s %6s  %s" % (
            "t_s", "rss_mib", "fds", "thr", "requests", "failed", "spans_sent", "dropped", "queue",
            "bpf hash maps: name=entries/max"))
        samples = []
        start = time.time()
        next_sample = start
        collector_up = True
        cycle_start = start
        while time.time() - start < SECONDS:
            now = time.time()
            # Collector: down for the last third of each period.
            phase = (now - cycle_start) % COLLECTOR_PERIOD
            if collector_up and phase >= COLLECTOR_PERIOD * 2 / 3:
                procs.stop(receiver)
                collector_up = False
                log("%7.0f collector stopped" % (now - start))
            elif not collector_up and phase < COLLECTOR_PERIOD * 2 / 3:
                receiver = start_receiver()
                collector_up = True
                log("%7.0f collector started" % (now - start))
            if daemon.poll() is not None:
                h.fail("isotraced exited with %s:\n%s" % (daemon.returncode, procs.log(daemon)[-3000:]))
            if now >= next_sample:
                st = proc_status(daemon.pid)
                rss = int(st["VmRSS"].split()[0]) / 1024.0
                fds = len(os.listdir("/proc/%d/fd" % daemon.pid))
                thr = int(st["Threads"])
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % prom_port, timeout=10) as r:
                        text = r.read().decode()
                except OSError:
                    text = ""
                sent = metric(text, "isotrace_export_spans_sent_total") or 0
                dropped = metric(text, "isotrace_export_spans_dropped_total") or 0
                queue = metric(text, "isotrace_export_queue_size") or 0
                maps = daemon_maps(daemon.pid)
                hashes = {n: e for n, t, mx, e in maps if e is not None}
                samples.append({"t": now - start, "rss": rss, "fds": fds, "thr": thr, "maps": hashes})
                log("%7.0f %8.1f %5d %4d %9d %8d %10.0f %9.0f %6.0f  %s" % (
                    now - start, rss, fds, thr, load.sent, load.failed, sent, dropped, queue,
                    " ".join("%s=%d/%d" % (n, e, mx) for n, t, mx, e in maps if e is not None)))
                next_sample += SAMPLE
            time.sleep(0.5)
        load.close()
        if not collector_up:
            receiver = start_receiver()
        rc = procs.stop(daemon)
        if rc != 0:
            h.fail("isotraced exited with %s at the end:\n%s" % (rc, procs.log(daemon)[-3000:]))
        for line in procs.log(daemon).splitlines()[-8:]:
            log("daemon: " + line)

    # Flat or not: the first sample after a warm-up (a fifth of the run) against the last.
    warm = [s for s in samples if s["t"] >= SECONDS / 5] or samples
    if warm:
        a, b = warm[0], samples[-1]
        log("summary (t=%.0f s → t=%.0f s): rss %.1f → %.1f MiB (max %.1f), fds %d → %d (max %d), "
            "threads %d → %d" % (a["t"], b["t"], a["rss"], b["rss"], max(s["rss"] for s in samples),
                                 a["fds"], b["fds"], max(s["fds"] for s in samples), a["thr"], b["thr"]))
        for name in sorted(b["maps"]):
            log("summary map %s: %s → %s entries (max %s)" % (
                name, a["maps"].get(name), b["maps"][name], max(s["maps"].get(name, 0) for s in samples)))
    return 0


if __name__ == "__main__":
    rc = 1
    try:
        rc = main()
    except SystemExit as e:  # harness.fail/skip: their message is already printed
        rc = e.code if isinstance(e.code, int) else 1
        raise
    except BaseException:
        import traceback
        traceback.print_exc()
        raise
    finally:
        log("soak: exit %s" % rc)
    sys.exit(rc)
