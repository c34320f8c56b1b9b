"""HTTP/2 in cleartext, end to end, with Debian's own servers and clients: nginx serves
h2c with prior knowledge (`listen ... http2`) to h2load (many streams in flight on each
connection) and nghttp; Apache's mod_http2 answers curl's `Upgrade: h2c` with 101 and the
response over HTTP/2. Every request must be one SERVER span of the server with
network.protocol.version "2" and the right method, path, query and status, and the
clients' CLIENT spans on this node must be the SERVER spans' parents (per stream, as
streams are answered in any order)."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

H2LOAD_REQUESTS = 60


def start_apache(procs, port, root):
    conf = os.path.join(procs.tmp, "apache.conf")
    with open(conf, "w") as f:
        f.write("""
ServerRoot %(tmp)s
PidFile %(tmp)s/apache.pid
ErrorLog %(tmp)s/apache-error.log
Mutex file:%(tmp)s default
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule http2_module /usr/lib/apache2/modules/mod_http2.so
User www-data
Group www-data
ServerName localhost
Listen 127.0.0.1:%(port)d
DocumentRoot %(root)s
Protocols h2c http/1.1
""" % {"tmp": procs.tmp, "port": port, "root": root})
    p = procs.start(["apache2", "-f", conf, "-DFOREGROUND"], "apache")
    if not h.wait_port(port):
        h.fail("apache did not listen: " + procs.log(p))
    return p


def main():
    for tool in ("h2load", "nghttp", "apache2", "curl"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode != 0:
            h.skip("%s missing: run scripts/install-deps.sh" % tool)
    with h.Procs() as procs:
        recv = h.Receiver(procs)
        daemon = h.start_daemon(procs, "--otlp-endpoint", recv.endpoint, "--summary-interval", "2")
        root = os.path.join(procs.tmp, "www")
        os.makedirs(root)
        os.chmod(root, 0o755)
        with open(os.path.join(root, "index.html"), "w") as f:
            # Small enough that the responses in flight on a connection (4 at most) fit
            # the first capture_bytes of the client's read: a read holding more frames
            # than that cannot be decoded (docs/protocols.md).
            f.write("<html>" + "h" * 60 + "</html>\n")
        os.chmod(os.path.join(root, "index.html"), 0o644)

        ng_port, ap_port = h.free_port(), h.free_port()
        conf = os.path.join(procs.tmp, "nginx.conf")
        h.write_nginx_conf(conf, procs.tmp, """
  server {
    listen 127.0.0.1:%d http2;
    root %s;
    location /missing { return 404; }
  }""" % (ng_port, root), worker_connections=64, error_log="nginx-error.log")
        nginx = procs.start(["nginx", "-c", conf, "-p", procs.tmp], "nginx")
        if not h.wait_port(ng_port):
            h.fail("nginx did not listen: " + procs.log(nginx))
        apache = start_apache(procs, ap_port, root)
        time.sleep(0.3)

        load = procs.start(["h2load", "-n", str(H2LOAD_REQUESTS), "-c", "2", "-m", "4",
                            "http://127.0.0.1:%d/index.html?from=h2load" % ng_port], "h2load")
        if load.wait(60) != 0 or "%d succeeded" % H2LOAD_REQUESTS not in procs.log(load):
            h.fail("h2load: " + procs.log(load))
        miss = procs.start(["nghttp", "-n", "http://127.0.0.1:%d/missing?from=nghttp" % ng_port], "nghttp")
        miss.wait(30)
        up = procs.start(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "--http2",
                          "http://127.0.0.1:%d/index.html?from=curl" % ap_port], "curl")
        up.wait(30)
        if procs.log(up).strip() != "2 200":
            h.fail("curl --http2 (upgrade): %r" % procs.log(up))
        nginx_pids = h.process_tree(nginx.pid)
        apache_pids = h.process_tree(apache.pid)

        spans, dlog = h.stop_and_collect(procs, daemon, recv)
        pid_of = h.pid_of

        def query(s):
            return h.span_attrs(s).get("url.query")

        errors = []
        by_id = {s["spanId"]: s for s in spans}
        expect = [("from=h2load", nginx_pids, load.pid, H2LOAD_REQUESTS, 200, "/index.html"),
                  ("from=nghttp", nginx_pids, miss.pid, 1, 404, "/missing"),
                  ("from=curl", apache_pids, up.pid, 1, 200, "/index.html")]
        for q, server_pids, client_pid, n, status, path in expect:
            servers = [s for s in spans if query(s) == q and s.get("spanKind") == 2]
            clients = [s for s in spans if query(s) == q and s.get("spanKind") == 3]
            if len(servers) != n:
                errors.append("%s: %d SERVER spans, want %d" % (q, len(servers), n))
            if len(clients) != n:
                errors.append("%s: %d CLIENT spans, want %d" % (q, len(clients), n))
            for s in servers:
                a = h.span_attrs(s)
                if pid_of(s) not in server_pids:
                    errors.append("%s: SERVER span from pid %d, not the server %s" % (q, pid_of(s), server_pids))
                for k, v in (("network.protocol.version", "2"), ("http.request.method", "GET"),
                             ("url.path", path), ("http.response.status_code", status)):
                    got = a.get(k)
                    if (int(got) if isinstance(v, int) and got is not None else got) != v:
                        errors.append("%s: %s = %r, want %r" % (q, k, got, v))
                if "rpc.system" in a:
                    errors.append("%s: rpc attributes on plain HTTP/2: %s" % (q, a))
                parent = by_id.get(s.get("parentSpanId"))
                if (parent is None or parent.get("spanKind") != 3 or pid_of(parent) != client_pid
                        or parent.get("traceId") != s.get("traceId") or query(parent) != q):
                    errors.append("%s: SERVER span's parent is not the client's CLIENT span" % q)
                elif not (int(parent["startTimeUnixNano"]) <= int(s["startTimeUnixNano"])
                          and int(s["endTimeUnixNano"]) <= int(parent["endTimeUnixNano"])):
                    errors.append("%s: SERVER span outside its CLIENT span" % q)
            for c in clients:
                if pid_of(c) != client_pid:
                    errors.append("%s: CLIENT span from pid %d, want %d" % (q, pid_of(c), client_pid))
                if h.span_attrs(c).get("network.protocol.version") != "2":
                    errors.append("%s: CLIENT span version %r" % (q, h.span_attrs(c).get("network.protocol.version")))
        print("spans %d: %s" % (len(spans), ", ".join(
            "%s %d" % (q, sum(1 for s in spans if query(s) == q)) for q, *_ in expect)))
        h.finish(errors, dlog)


if __name__ == "__main__":
    main()
