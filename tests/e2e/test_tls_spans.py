"""TLS, end to end: nginx (Debian's, linked to libssl3) serves HTTPS over HTTP/1.1 and
HTTP/2 (ALPN h2) with a certificate made here by the openssl CLI; curl (SSL_read/SSL_write)
and Python's ssl module (SSL_read_ex/SSL_write_ex) are the clients. Every process starts
after the daemon, so the uprobes must already cover the library they map.

Checked at the independent OTLP receiver, span by span: method, path, query, status,
url.scheme "https", tls.protocol.version "1.3", network.protocol.version ("1.1" or "2"),
the CLIENT span as the SERVER span's parent (same-node link by the socket's 4-tuple), the
breakdown summing to the duration, and that the ciphertext made no spans of its own: the
spans of these processes are exactly the requests sent."""
import http.client
import os
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PARTS = ["isotrace.app.oncpu_ns", "isotrace.kernel.runq_ns", "isotrace.container.throttled_ns",
         "isotrace.kernel.blkio_ns", "isotrace.kernel.memstall_ns", "isotrace.offcpu_other_ns"]


def main():
    for tool in ("nginx", "curl", "openssl"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode != 0:
            h.skip("%s missing: run scripts/install-deps.sh" % tool)
    with h.Procs() as procs:
        cert, key = os.path.join(procs.tmp, "cert.pem"), os.path.join(procs.tmp, "key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                            "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True, text=True)
        if r.returncode != 0:
            h.fail("openssl req: " + r.stderr)
        root = os.path.join(procs.tmp, "www")
        os.makedirs(root)
        os.chmod(root, 0o755)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("<html>" + "t" * 60 + "</html>\n")
        os.chmod(os.path.join(root, "index.html"), 0o644)

        recv = h.Receiver(procs)
        daemon = h.start_daemon(procs, "--otlp-endpoint", recv.endpoint, "--summary-interval", "2")

        p1, p2 = h.free_port(), h.free_port()
        conf = os.path.join(procs.tmp, "nginx.conf")
        h.write_nginx_conf(conf, procs.tmp, """
  ssl_certificate %(cert)s;
  ssl_certificate_key %(key)s;
  ssl_protocols TLSv1.3;
  server {
    listen 127.0.0.1:%(p1)d ssl;
    root %(root)s;
    location /missing { return 404; }
  }
  server {
    listen 127.0.0.1:%(p2)d ssl http2;
    root %(root)s;
    location /missing { return 404; }
  }""" % {"cert": cert, "key": key, "p1": p1, "p2": p2, "root": root}, worker_connections=64,
                           error_log="nginx-error.log")
        nginx = procs.start(["nginx", "-c", conf, "-p", procs.tmp], "nginx")
        if not h.wait_port(p1) or not h.wait_port(p2):
            h.fail("nginx did not listen: " + procs.log(nginx))
        time.sleep(2.5)  # the daemon's scan for new TLS files runs every 2 s

        sent = {}  # query -> (client pid, count, status, path, version)

        def curl(q, port, version, path, status, n=1):
            flag = "--http2" if version == "2" else "--http1.1"
            urls = []
            for _ in range(n):  # one -o per URL: curl pairs them in order
                urls += ["https://127.0.0.1:%d%s?%s" % (port, path, q), "-o", "/dev/null"]
            p = procs.start(["curl", "-sk", flag, "-w", "%{http_version} %{http_code}\\n", *urls], "curl-" + q)
            p.wait(30)
            got = procs.log(p).split()
            if got != [version, str(status)] * n:
                h.fail("curl %s: %r" % (q, procs.log(p)))
            sent[q] = (p.pid, n, status, path, version)

        curl("from=curl1", p1, "1.1", "/index.html", 200, n=3)   # three on one connection
        curl("from=curl404", p1, "1.1", "/missing", 404)
        curl("from=curl2", p2, "2", "/index.html", 200, n=2)     # two streams, one connection
        # Python's ssl module: SSL_read_ex / SSL_write_ex, keep-alive, in this process.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", p1, context=ctx, timeout=10)
        for _ in range(2):
            conn.request("GET", "/index.html?from=python")
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                h.fail("python https: %d" % resp.status)
        conn.close()
        sent["from=python"] = (os.getpid(), 2, 200, "/index.html", "1.1")
        nginx_pids = h.process_tree(nginx.pid)

        spans, dlog = h.stop_and_collect(procs, daemon, recv)
        pid_of = h.pid_of
        errors = []
        by_id = {s["spanId"]: s for s in spans}
        clients = {v[0] for v in sent.values()}
        ours = [s for s in spans if pid_of(s) in nginx_pids or pid_of(s) in clients]
        want_total = 2 * sum(v[1] for v in sent.values())
        if len(ours) != want_total:
            errors.append("%d spans from nginx and the clients, want %d (one SERVER and one CLIENT per request): %s"
                          % (len(ours), want_total, sorted((h.span_attrs(s).get("url.query"), s.get("spanKind"))
                                                           for s in ours)))
        for q, (client_pid, n, status, path, version) in sent.items():
            mine = [s for s in ours if h.span_attrs(s).get("url.query") == q]
            servers = [s for s in mine if s.get("spanKind") == 2]
            cl = [s for s in mine if s.get("spanKind") == 3]
            if len(servers) != n or len(cl) != n:
                errors.append("%s: %d SERVER and %d CLIENT spans, want %d of each" % (q, len(servers), len(cl), n))
            for s in servers + cl:
                a = h.span_attrs(s)
                kind = "SERVER" if s.get("spanKind") == 2 else "CLIENT"
                for k, v in (("http.request.method", "GET"), ("url.path", path), ("http.response.status_code", status),
                             ("url.scheme", "https"), ("tls.protocol.version", "1.3"),
                             ("network.protocol.version", version)):
                    got = a.get(k)
                    if (int(got) if isinstance(v, int) and got is not None else got) != v:
                        errors.append("%s %s: %s = %r, want %r" % (q, kind, k, got, v))
                want_pid = client_pid if kind == "CLIENT" else None
                if want_pid is not None and pid_of(s) != want_pid:
                    errors.append("%s CLIENT: pid %d, want %d" % (q, pid_of(s), want_pid))
                if kind == "SERVER" and pid_of(s) not in nginx_pids:
                    errors.append("%s SERVER: pid %d is not nginx %s" % (q, pid_of(s), nginx_pids))
                missing = [p for p in PARTS if p not in a]
                if missing:
                    errors.append("%s %s: breakdown missing %s" % (q, kind, missing))
                else:
                    dur = int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])
                    total = sum(int(a[p]) for p in PARTS)
                    if abs(total - dur) > max(dur // 100, 2000):
                        errors.append("%s %s: breakdown sums to %d, duration %d" % (q, kind, total, dur))
            for s in servers:
                parent = by_id.get(s.get("parentSpanId"))
                if (parent is None or parent.get("spanKind") != 3 or pid_of(parent) != client_pid
                        or parent.get("traceId") != s.get("traceId")
                        or h.span_attrs(parent).get("url.query") != q):
                    errors.append("%s: SERVER span's parent is not the client's CLIENT span" % q)
        print("spans from the TLS processes: %d (want %d); by query: %s" % (len(ours), want_total, ", ".join(
            "%s %d" % (q, sum(1 for s in ours if h.span_attrs(s).get("url.query") == q)) for q in sent)))
        if "TLS: OpenSSL uprobes on" not in dlog:
            errors.append("the daemon logged no TLS attachment")
        h.finish(errors, dlog)


if __name__ == "__main__":
    main()
