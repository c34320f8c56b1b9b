"""The localization benchmark's chain on this node, and everything around it: the npm OTLP
receiver (tailed, every record stamped with the wall time it arrived), the daemon, and
clean-up of whatever was created (network namespace, container, processes).

    load driver ──► nginx ──► svc-b ──► svc-c (runc container, own netns) ──► db (TCP, not HTTP)
     (CPU 0)       (CPU 0)   (CPU 1)         (CPU 0)                         (CPU 0)

nginx proxies on 127.0.0.1; svc-b reaches svc-c at 10.203.X.2:8080 over a veth pair whose
host side 10.203.X.1 also carries db. No process propagates trace context (nginx forwards
the client's headers unchanged, as any proxy does). Standard library only; reuses
tests/e2e/harness.py.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("ISOTRACE_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
import harness as h  # noqa: E402

SERVICES = os.path.join(HERE, "services.py")
LOAD = os.path.join(HERE, "load.py")
SVC_C_PORT = 8080
CONTAINER_MNT = "/srv"  # an existing empty directory of the host's root fs: the work dir's mountpoint in svc-c
CHAIN_SERVICES = ("loadgen", "nginx", "svc-b", "svc-c", "db")


def run(args, check=True, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 60)
    r = subprocess.run(args, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), r.returncode,
                                                (r.stderr or b"").decode(errors="replace")[-800:]))
    return r


def need_tools(tools=("nginx", "runc", "ip", "nft", "taskset", "stress-ng", "unshare", "node")):
    missing = [t for t in tools if not shutil.which(t)]
    return missing


class Tail(threading.Thread):
    """Reads the receiver's JSONL as it grows and stamps each record with its arrival."""

    def __init__(self, path, every=0.05):
        super().__init__(daemon=True)
        self.path, self.every = path, every
        self.lock = threading.Lock()
        self.spans = []
        self.logs = []  # records, each with "_arrival" (wall time it was read)
        # Kept as records arrive, so that watching for verdicts while a fault lasts costs
        # next to nothing (the harness must not load the CPUs it measures):
        self.needle = None        # "req=<prefix>-": the chain's spans carry it in url.query
        self.start_of = {}        # (traceId, spanId) -> span start (s)
        self.chain_traces = set()  # trace ids of the chain's spans
        self.stop_flag = threading.Event()
        self.pos = 0
        self.buf = b""

    def poll(self):
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        if not data:
            return
        now = time.time()
        self.pos += len(data)
        self.buf += data
        lines = self.buf.split(b"\n")
        self.buf = lines.pop()
        spans, logs = [], []
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            k = r.get("kind")
            if k == "span":
                r["_arrival"] = now
                spans.append(r)
                self.start_of[(r.get("traceId"), r.get("spanId"))] = int(r.get("startTimeUnixNano", 0)) / 1e9
                if self.needle and (r.get("attributes", {}).get("url.query") or "").startswith(self.needle):
                    self.chain_traces.add(r.get("traceId"))
            elif k == "log":
                r["_arrival"] = now
                logs.append(r)
        with self.lock:
            self.spans.extend(spans)
            self.logs.extend(logs)

    def run(self):
        while not self.stop_flag.is_set():
            self.poll()
            time.sleep(self.every)
        self.poll()

    def stop(self):
        self.stop_flag.set()
        self.join(5)

    def snapshot(self):
        with self.lock:
            return list(self.spans), list(self.logs)

    def chain_verdicts_since(self, t0):
        """Verdict logs of the chain's traces that started at or after t0 (cheap)."""
        out = []
        with self.lock:
            logs = list(self.logs)
        for rec in logs:
            if rec.get("traceId") not in self.chain_traces:
                continue
            st = self.start_of.get((rec.get("traceId"), rec.get("spanId")))
            if st is None:
                a = rec.get("attributes", {})
                t = int(rec.get("timeUnixNano") or 0)
                st = (t - int(a.get("isotrace.verdict.duration_ns", 0) or 0)) / 1e9 if t else None
            if st is not None and st >= t0:
                out.append(rec)
        return out


def write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def start_daemon(procs, endpoint, interval_ms=200, extra_yaml=""):
    conf = os.path.join(procs.tmp, "isotrace-locate.yaml")
    with open(conf, "w") as f:
        f.write("exporter:\n  interval_ms: %d\n  queue_size: 262144\n  queue_bytes: 536870912\n"
                "  batch_size: 4096\n  shutdown_timeout_ms: 10000\n%s" % (interval_ms, extra_yaml))
    return h.start_daemon(procs, "--config", conf, "--otlp-endpoint", endpoint, "--summary-interval", "0",
                          "--api-socket", "", "--prometheus-listen", "")


class Chain:
    """Builds the chain; .close() removes everything it made (also after a failure)."""

    DATA_MB = 8  # svc-c's data file (read through the page cache)

    def __init__(self, procs, rate=35.0, traceparent_every=3, log=print, db_poll=False):
        self.procs = procs
        self.db_poll = db_poll
        self.rate = rate
        self.traceparent_every = traceparent_every
        self.log = log
        self.tag = "%d" % os.getpid()
        self.prefix = "loc%s" % self.tag
        self.work = os.path.join(procs.tmp, "locate")
        os.makedirs(self.work, exist_ok=True)
        os.chmod(self.work, 0o755)
        self.control_path = os.path.join(self.work, "control.json")
        self.control = {"svc-b": {}, "svc-c": {}, "db": {}}
        write_json_atomic(self.control_path, self.control)
        self.netns = None
        self.veth = None
        self.cid = None
        self.runc_proc = None
        self.load_proc = None
        self.load_out = os.path.join(self.work, "load.jsonl")
        octet = 1 + os.getpid() % 250
        self.host_ip = "10.203.%d.1" % octet
        self.c_ip = "10.203.%d.2" % octet
        self.nginx_port = h.free_port()
        self.b_port = h.free_port()
        self.db_port = h.free_port()
        self.pids = {}

    # ---- control ----------------------------------------------------------------------

    def set_control(self, section, **kw):
        self.control.setdefault(section, {}).update(kw)
        write_json_atomic(self.control_path, self.control)

    def reset_control(self, section, *keys):
        for k in keys:
            self.control.get(section, {}).pop(k, None)
        write_json_atomic(self.control_path, self.control)

    # ---- building ---------------------------------------------------------------------

    def _netns(self):
        self.netns = "itloc" + self.tag
        run(["ip", "netns", "add", self.netns])
        self.veth = "itlh" + self.tag
        run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "itlc" + self.tag, "netns", self.netns])
        run(["ip", "addr", "add", self.host_ip + "/24", "dev", self.veth])
        run(["ip", "link", "set", self.veth, "up"])
        run(["ip", "-n", self.netns, "addr", "add", self.c_ip + "/24", "dev", "itlc" + self.tag])
        run(["ip", "-n", self.netns, "link", "set", "itlc" + self.tag, "up"])
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])

    def _db(self):
        p = self.procs.start(["taskset", "-c", "0", sys.executable, SERVICES, "db", "--host", self.host_ip,
                              "--port", str(self.db_port), "--control", self.control_path],
                             "db", env=dict(os.environ, OTEL_SERVICE_NAME="db"))
        if not h.wait_port(self.db_port, host=self.host_ip):
            raise RuntimeError("db did not listen: " + self.procs.log(p))
        self.pids["db"] = p.pid

    def _svc_c(self):
        if not os.path.isdir(CONTAINER_MNT):
            raise RuntimeError("%s does not exist: the container needs an existing mountpoint" % CONTAINER_MNT)
        self.cid = "isotrace-locate-" + self.tag
        bundle = os.path.join(self.procs.tmp, "bundle")
        # rootfs stays an empty directory on the host: the host's / is bind-mounted onto it
        # only inside the private mount namespace runc runs in (never visible, never leaked).
        os.makedirs(os.path.join(bundle, "rootfs"))
        run(["runc", "spec"], cwd=bundle)
        with open(os.path.join(bundle, "config.json")) as f:
            cfg = json.load(f)
        cfg["root"] = {"path": "rootfs", "readonly": True}
        p = cfg["process"]
        p["terminal"] = False
        p["cwd"] = "/"
        # The container sees the host's / but its own /tmp (where a checkout may live, as
        # CI's does): run a copy from the work directory it mounts.
        shutil.copy(SERVICES, os.path.join(self.work, "services.py"))
        p["args"] = ["taskset", "-c", "0", sys.executable, CONTAINER_MNT + "/services.py", "svc-c", "--port", str(SVC_C_PORT),
                     "--db", "%s:%d" % (self.host_ip, self.db_port),
                     "--control", CONTAINER_MNT + "/control.json", "--data", CONTAINER_MNT + "/svc-c-data.bin",
                     "--data-mb", str(self.DATA_MB)] + (["--db-poll"] if self.db_poll else [])
        p["env"] = [e for e in p["env"] if not e.startswith("PATH=")] + [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "OTEL_SERVICE_NAME=svc-c", "PYTHONDONTWRITEBYTECODE=1"]
        lx = cfg["linux"]
        lx["namespaces"] = [n for n in lx["namespaces"] if n["type"] != "network"] + [
            {"type": "network", "path": "/var/run/netns/" + self.netns}]
        cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys/fs/cgroup"] + [
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": CONTAINER_MNT, "type": "bind", "source": self.work, "options": ["rbind", "rw"]}]
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        self.runc_proc = self.procs.start(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount --bind / "$1/rootfs" && exec runc run -b "$1" "$2"', "sh", bundle, self.cid], "svc-c")
        deadline = time.time() + 30
        while time.time() < deadline:
            if h.wait_port(SVC_C_PORT, timeout=0.3, host=self.c_ip):
                break
            if self.runc_proc.poll() is not None:
                raise RuntimeError("svc-c container exited: " + self.procs.log(self.runc_proc))
        else:
            raise RuntimeError("svc-c did not listen: " + self.procs.log(self.runc_proc))
        st = json.loads(run(["runc", "state", self.cid]).stdout)
        self.pids["svc-c"] = st["pid"]

    def _svc_b(self):
        p = self.procs.start(["taskset", "-c", "1", sys.executable, SERVICES, "svc-b", "--port", str(self.b_port),
                              "--downstream", "%s:%d" % (self.c_ip, SVC_C_PORT), "--control", self.control_path,
                              "--scratch", self.work],
                             "svc-b", env=dict(os.environ, OTEL_SERVICE_NAME="svc-b"))
        if not h.wait_port(self.b_port):
            raise RuntimeError("svc-b did not listen: " + self.procs.log(p))
        self.pids["svc-b"] = p.pid

    def _nginx(self):
        tmp = os.path.join(self.procs.tmp, "nginx")
        os.makedirs(tmp, exist_ok=True)
        conf = os.path.join(tmp, "nginx.conf")
        h.write_nginx_conf(conf, tmp, """
  upstream svc_b {
    server 127.0.0.1:%(b)d;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:%(port)d;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://svc_b;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 120s;
    }
  }""" % {"port": self.nginx_port, "b": self.b_port}, worker_connections=2048)
        p = self.procs.start(["taskset", "-c", "0", "nginx", "-c", conf, "-p", tmp], "nginx")
        if not h.wait_port(self.nginx_port):
            raise RuntimeError("nginx did not listen: " + self.procs.log(p))
        self.pids["nginx"] = p.pid

    def start(self):
        self._netns()
        self._db()
        self._svc_c()
        self._svc_b()
        self._nginx()
        # One request through the whole chain proves it works before any load.
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.nginx_port, timeout=30)
        c.request("GET", "/api/order?req=%s-probe" % self.prefix)
        r = c.getresponse()
        body = r.read()
        c.close()
        if r.status != 200 or not body.startswith(b"b:c:OK"):
            raise RuntimeError("the chain answered %d %r" % (r.status, body[:200]))
        self.log("chain up: nginx 127.0.0.1:%d → svc-b 127.0.0.1:%d → svc-c %s:%d (runc %s, netns %s) → db %s:%d"
                 % (self.nginx_port, self.b_port, self.c_ip, SVC_C_PORT, self.cid, self.netns, self.host_ip,
                    self.db_port))

    def start_load(self):
        self.load_proc = self.procs.start(
            ["taskset", "-c", "0", sys.executable, LOAD, "--port", str(self.nginx_port), "--rate", str(self.rate),
             "--prefix", self.prefix, "--out", self.load_out, "--traceparent-every", str(self.traceparent_every)],
            "loadgen", env=dict(os.environ, OTEL_SERVICE_NAME="loadgen"))
        self.pids["loadgen"] = self.load_proc.pid

    def stop_load(self):
        if self.load_proc is not None:
            self.procs.stop(self.load_proc, timeout=40)

    def load_records(self):
        out = []
        if os.path.exists(self.load_out):
            with open(self.load_out) as f:
                for line in f:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
        return out

    # ---- container and netns helpers for faults ---------------------------------------

    def runc_update(self, *args):
        run(["runc", "update", *args, self.cid])

    def container_cgroup(self, controller):
        st = json.loads(run(["runc", "state", self.cid]).stdout)
        with open("/proc/%d/cgroup" % st["pid"]) as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if controller in ctrls.split(","):
                    return "/sys/fs/cgroup/%s%s" % (ctrls, path)
        return None

    def nft_in_container_netns(self, script):
        run(["ip", "netns", "exec", self.netns, "nft", "-f", "-"], input=script.encode())

    def close(self):
        errs = []
        try:
            self.stop_load()
        except Exception as e:  # noqa: BLE001
            errs.append(str(e))
        if self.cid:
            run(["runc", "kill", self.cid, "KILL"], check=False, timeout=30)
            if self.runc_proc is not None:
                self.procs.stop(self.runc_proc, timeout=10)
            r = run(["runc", "delete", "-f", self.cid], check=False, timeout=30)
            if r.returncode != 0 and b"does not exist" not in r.stderr:
                errs.append("runc delete: " + r.stderr.decode(errors="replace"))
        for name in ("nginx", "svc-b", "db"):
            for p in self.procs.procs:
                if getattr(p, "_isotrace_name", "") == name:
                    self.procs.stop(p, timeout=10)
        if self.netns:
            run(["ip", "netns", "del", self.netns], check=False)
        if self.veth:
            run(["ip", "link", "del", self.veth], check=False)  # gone with the netns already
        return errs
