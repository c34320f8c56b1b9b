"""Shared pieces of the end-to-end tests: the independent OTLP receiver, the daemon,
real servers, and clean-up. Standard library only.

Every test sees the whole machine: filter on the processes the test started.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("ISOTRACE_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("ISOTRACE_BUILD_DIR", os.path.join(SRC, "build"))
E2E = os.path.join(SRC, "tests", "e2e")
ISOTRACED = os.path.join(BUILD, "bin", "isotraced")
ISOTRACE = os.path.join(BUILD, "bin", "isotrace")


def require_bpf():
    return os.environ.get("ISOTRACE_REQUIRE_BPF") == "1"


def skip(msg):
    """Skips the test (exit 0 with a message) unless BPF is required, where it fails."""
    if require_bpf():
        fail("cannot run: " + msg)
    print("SKIP: " + msg)
    sys.exit(0)


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Procs:
    """Starts processes and always stops them (SIGTERM, then SIGKILL)."""

    def __init__(self):
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="isotrace-e2e-")
        os.chmod(self.tmp, 0o755)  # servers running as other users read from here

    def start(self, args, name, **kw):
        log = open(os.path.join(self.tmp, name + ".log"), "wb")
        kw.setdefault("stdout", log)
        kw.setdefault("stderr", subprocess.STDOUT)
        p = subprocess.Popen(args, **kw)
        p._isotrace_name = name
        p._isotrace_log = log.name
        self.procs.append(p)
        return p

    def log(self, p):
        with open(p._isotrace_log, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, p, sig=signal.SIGTERM, timeout=15):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def close(self):
        # SIGTERM first: a SIGKILLed nginx master leaves its workers running (orphans that
        # outlive the test and hold its port).
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(3)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if os.environ.get("ISOTRACE_KEEP_TMP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class Receiver:
    """The npm OTLP/gRPC receiver (upstream-generated protobuf code decodes our bytes)."""

    def __init__(self, procs, extra_args=()):
        if not os.path.isdir(os.path.join(E2E, "node_modules", "@opentelemetry", "otlp-transformer")):
            skip("tests/e2e/node_modules missing: run scripts/install-deps.sh")
        self.out = os.path.join(procs.tmp, "received.jsonl")
        self.proc = procs.start(
            ["node", os.path.join(E2E, "otlp_receiver.mjs"), "--port", "0", "--out", self.out, *extra_args],
            "receiver", stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("LISTENING"):
            fail("receiver did not start: " + line + procs.log(self.proc))
        self.port = int(line.split()[1])
        self.endpoint = "http://127.0.0.1:%d" % self.port

    def records(self, kind=None):
        out = []
        if not os.path.exists(self.out):
            return out
        with open(self.out) as f:
            for line in f:
                line = line.strip()
                if line:
                    r = json.loads(line)
                    if kind is None or r.get("kind") == kind:
                        out.append(r)
        return out


def start_daemon(procs, *args, env=None, ready_timeout=30):
    if not os.access(ISOTRACED, os.X_OK):
        fail("isotraced not built at " + ISOTRACED)
    if os.geteuid() != 0:
        skip("needs root to load BPF probes")
    e = dict(os.environ)
    if env:
        e.update(env)
    p = procs.start([ISOTRACED, *args], "isotraced", env=e)
    deadline = time.time() + ready_timeout
    while time.time() < deadline:
        log = procs.log(p)
        if "probe attached" in log:
            return p
        if p.poll() is not None:
            fail("isotraced exited with %s before attaching:\n%s" % (p.returncode, log))
        time.sleep(0.1)
    fail("isotraced did not attach within %ss:\n%s" % (ready_timeout, procs.log(p)))


def write_nginx_conf(path, tmp, http_body, master=True, worker_connections=1024, error_log="error.log"):
    """One nginx process tree confined to `tmp` (pid file, logs, temp paths), serving
    `http_body` (the inside of the http block)."""
    with open(path, "w") as f:
        f.write("""
worker_processes 1;
daemon off;
master_process %(master)s;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/%(log)s warn;
events { worker_connections %(wc)d; }
http {
  access_log off;
  client_body_temp_path %(tmp)s/body;
  proxy_temp_path %(tmp)s/proxy;
  fastcgi_temp_path %(tmp)s/fastcgi;
  uwsgi_temp_path %(tmp)s/uwsgi;
  scgi_temp_path %(tmp)s/scgi;
%(body)s
}
""" % {"master": "on" if master else "off", "tmp": tmp, "log": error_log, "wc": worker_connections,
       "body": http_body})


def start_nginx(procs, port, root):
    conf = os.path.join(procs.tmp, "nginx.conf")
    write_nginx_conf(conf, procs.tmp, """
  sendfile on;
  keepalive_requests 10000;
  server {
    listen 127.0.0.1:%(port)d;
    root %(root)s;
    location /missing { return 404; }
    location /boom { return 500; }
  }""" % {"port": port, "root": root}, worker_connections=256, error_log="nginx-error.log")
    p = procs.start(["nginx", "-c", conf, "-p", procs.tmp], "nginx")
    if not wait_port(port):
        fail("nginx did not listen: " + procs.log(p))
    return p


def span_attrs(span):
    return span.get("attributes", {})


def res_attrs(rec):
    return rec.get("resource", {})


def stop_and_collect(procs, daemon, recv):
    """Stops the daemon (it must exit 0 on SIGTERM, flushing what it holds) and returns
    the spans the receiver got and the daemon's log."""
    time.sleep(1.5)
    rc = procs.stop(daemon)
    dlog = procs.log(daemon)
    if rc != 0:
        fail("isotraced exited %s on SIGTERM:\n%s" % (rc, dlog))
    time.sleep(1.0)
    return recv.records("span"), dlog


def finish(errors, dlog):
    """Fails with the first mismatches and the daemon's log tail, or prints PASS."""
    if errors:
        print("\n".join(errors[:40]))
        print("daemon log tail:\n" + dlog[-3000:])
        fail("%d mismatches" % len(errors))
    print("PASS")


def veth_namespaces(ns_a, ns_b, dev_a, dev_b, addr_a, addr_b, made):
    """Two new network namespaces joined by a veth pair (dev_a in ns_a with addr_a, a
    CIDR, and dev_b in ns_b), loopback up in both. Appends each namespace to `made` as
    it is created, for the caller to delete (`ip netns del`) in its finally."""
    for ns in (ns_a, ns_b):
        subprocess.run(["ip", "netns", "add", ns], check=True)
        made.append(ns)
    subprocess.run(["ip", "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer",
                    "name", dev_b, "netns", ns_b], check=True)
    for ns, dev, addr in ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)):
        subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", dev], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)


def wait_listening_in(ns, port):
    """True once a TCP listener on `port` exists in network namespace `ns` (10 s at most)."""
    for _ in range(100):
        out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn", "sport = :%d" % port],
                             capture_output=True, text=True).stdout
        if out.strip():
            return True
        time.sleep(0.1)
    return False


def process_tree(pid):
    """pid and every process below it (a server's workers)."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        for tid in os.listdir("/proc/%d/task" % p) if os.path.isdir("/proc/%d" % p) else []:
            try:
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    todo.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    return out


def pid_of(rec):
    return int(res_attrs(rec).get("process.pid", 0))
