"""Pieces shared by the production-path e2e tests (exporter faults, ring-buffer overload):
a single-process nginx the daemon can be pinned to with --pid, a load driver, wrk, RSS
sampling, the receiver's control file and call log, and the daemon's --stats-file.
Standard library only."""
import http.client
import json
import os
import re
import subprocess
import threading
import time

import harness as h


def start_nginx_single(procs, port, name="nginx"):
    """nginx as ONE process (no master, one worker loop), so `--pid` covers every request
    it serves and the test can count them exactly."""
    tmp = os.path.join(procs.tmp, name)
    os.makedirs(tmp, exist_ok=True)
    conf = os.path.join(tmp, "nginx.conf")
    h.write_nginx_conf(conf, tmp, """
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:%(port)d;
    location / { return 200 "ok\\n"; }
  }""" % {"port": port}, master=False)
    p = procs.start(["nginx", "-c", conf, "-p", tmp], name)
    if not h.wait_port(port):
        h.fail("nginx did not listen: " + procs.log(p))
    return p


class Requests:
    """Keep-alive HTTP/1.1 GETs with a unique query each, so every span can be matched to
    the request that made it. Counts what it sent; thread-safe."""

    def __init__(self, port, prefix):
        self.port = port
        self.prefix = prefix
        self.lock = threading.Lock()
        self.sent = []  # query strings of requests that got a response
        self.n = 0
        self.conn = None

    def one(self, tag=""):
        with self.lock:
            self.n += 1
            key = "%s=%d%s" % (self.prefix, self.n, tag)
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                self.conn.request("GET", "/r?" + key)
                r = self.conn.getresponse()
                r.read()
                if r.status != 200:
                    h.fail("nginx answered %d" % r.status)
                with self.lock:
                    self.sent.append(key)
                return key
            except (OSError, http.client.HTTPException):
                # A request that failed before nginx answered made no complete span; retry
                # once on a fresh connection under a new key.
                self.conn = None
                with self.lock:
                    self.n += 1
                    key = "%s=%d%s" % (self.prefix, self.n, tag)
        h.fail("nginx stopped answering")

    def run_for(self, seconds, pause=0.002):
        end = time.time() + seconds
        while time.time() < end:
            self.one()
            if pause:
                time.sleep(pause)


def wrk(port, seconds, conns=8, threads=2, path="/w"):
    """Returns (requests completed, requests/s) as wrk reports them."""
    out = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds,
                          "http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, text=True, timeout=seconds + 30)
    if out.returncode != 0:
        h.fail("wrk failed: " + out.stdout + out.stderr)
    m = re.search(r"(\d+) requests in", out.stdout)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    if not m or not rps:
        h.fail("cannot read wrk's output: " + out.stdout)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if errs:
        h.fail("wrk saw errors: " + out.stdout)
    return int(m.group(1)), float(rps.group(1))


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class RssSampler(threading.Thread):
    """Samples a process's RSS every `every` seconds until stopped; .peak in KiB."""

    def __init__(self, pid, every=0.1):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples = []
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            r = rss_kib(self.pid)
            if r is not None:
                self.samples.append((time.time(), r))
            time.sleep(self.every)

    def stop(self):
        self.stop_flag.set()
        self.join(5)

    @property
    def peak(self):
        return max((r for _, r in self.samples), default=0)


class ControlledReceiver:
    """The npm receiver with a control file: behaviour switches without a restart, and it
    can be SIGKILLed and restarted on the same port, appending to the same output."""

    def __init__(self, procs, port=None):
        self.procs = procs
        self.control = os.path.join(procs.tmp, "receiver-control.json")
        self.out = os.path.join(procs.tmp, "received.jsonl")
        self.port = port or h.free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.proc = None
        self.generation = 0
        self.call_logs = []
        self.set()

    def set(self, **kw):
        tmp = self.control + ".tmp"
        with open(tmp, "w") as f:
            json.dump(kw, f)
        os.replace(tmp, self.control)

    def start(self):
        if not os.path.isdir(os.path.join(h.E2E, "node_modules", "@opentelemetry", "otlp-transformer")):
            h.skip("tests/e2e/node_modules missing: run scripts/install-deps.sh")
        self.generation += 1
        # Its per-call log (stderr) goes to a file of its own: left on the stdout pipe, which
        # only the LISTENING line is read from, it would fill the pipe and stall the receiver.
        calls = open(os.path.join(self.procs.tmp, "receiver-%d.calls" % self.generation), "wb")
        self.call_logs.append(calls.name)
        self.proc = self.procs.start(
            ["node", os.path.join(h.E2E, "otlp_receiver.mjs"), "--port", str(self.port), "--out", self.out,
             "--control", self.control],
            "receiver-%d" % self.generation, stdout=subprocess.PIPE, stderr=calls)
        calls.close()
        line = self.proc.stdout.readline().decode()
        if not line.startswith("LISTENING"):
            h.fail("receiver did not start: " + line + self.procs.log(self.proc))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def calls(self):
        """Every CALL line of every generation: dicts with status (str), items, t (ms)."""
        out = []
        for path in self.call_logs:
            with open(path, "rb") as fh:
                text = fh.read().decode(errors="replace")
            for m in re.finditer(r"CALL (\w+) items=(\d+) status=(\w+) rejected=(\d+) t=(\d+)", text):
                out.append(dict(signal=m.group(1), items=int(m.group(2)), status=m.group(3),
                                rejected=int(m.group(4)), t=int(m.group(5))))
        return sorted(out, key=lambda c: c["t"])

    def spans(self):
        out = []
        if not os.path.exists(self.out):
            return out
        with open(self.out) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue  # a line cut by SIGKILL
                    if r.get("kind") == "span":
                        out.append(r)
        return out


def wait_for(pred, timeout, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def read_stats(path):
    if not os.path.exists(path):
        h.fail("the daemon wrote no stats file at " + path)
    with open(path) as f:
        return json.load(f)


def write_config(procs, text, name="isotrace.yaml"):
    path = os.path.join(procs.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path
