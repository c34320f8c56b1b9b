"""Walking skeleton, end to end: real nginx and Python http.server serve ≥ 200 requests,
half carrying a known traceparent; isotraced exports to the independent npm OTLP
receiver. Every request must be exactly one SERVER span from the right process, with
the sent trace and parent ids, the right method/path/status, and
0 < span duration ≤ the client's measured duration. Non-HTTP traffic makes no span."""
import http.client
import os
import random
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def children(pid):
    out = set()
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out.update(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def non_http_traffic(port):
    """A binary exchange with a TCP echo server: must produce no span."""
    for payload in (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(64)),
                    b"PING\r\n", b"*1\r\n$4\r\nPING\r\n", b"\x00\x01\x02GET"):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(payload)
            s.recv(4096)


ECHO = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(16)
while True:
    c, _ = srv.accept()
    d = c.recv(4096)
    c.sendall(d); c.close()
"""


def main():
    rnd = random.Random(7)
    with h.Procs() as procs:
        recv = h.Receiver(procs)
        daemon = h.start_daemon(procs, "--otlp-endpoint", recv.endpoint, "--summary-interval", "2")

        root = os.path.join(procs.tmp, "www")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("<html>" + "x" * 2000 + "</html>\n")
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(os.urandom(300_000))
        ng_port, py_port, echo_port = h.free_port(), h.free_port(), h.free_port()
        nginx = h.start_nginx(procs, ng_port, root)
        env = dict(os.environ, OTEL_SERVICE_NAME="e2e-pyserver")
        py = procs.start([sys.executable, "-m", "http.server", str(py_port), "--bind", "127.0.0.1",
                          "--directory", root], "pyserver", env=env)
        echo = procs.start([sys.executable, "-c", ECHO, str(echo_port)], "echo")
        if not h.wait_port(py_port) or not h.wait_port(echo_port):
            h.fail("servers did not start")
        time.sleep(0.3)
        nginx_workers = children(nginx.pid)
        if not nginx_workers:
            h.fail("no nginx worker found")

        sent = {}  # query key -> expectation
        i = 0

        def do(conn, server, method, path, expect_status):
            nonlocal i
            i += 1
            key = "i=%d" % i
            headers = {}
            tp = None
            if i % 2 == 0:
                trace = "%032x" % rnd.getrandbits(128)
                parent = "%016x" % rnd.getrandbits(64)
                tp = (trace, parent)
                headers["traceparent"] = "00-%s-%s-01" % (trace, parent)
                headers["tracestate"] = "vendor=e2e"
            t0 = time.perf_counter_ns()
            conn.request(method, path + "?" + key, headers=headers)
            r = conn.getresponse()
            r.read()
            dt = time.perf_counter_ns() - t0
            if r.status != expect_status:
                h.fail("%s %s: status %d, want %d" % (method, path, r.status, expect_status))
            sent[key] = dict(server=server, method=method, path=path, status=expect_status, tp=tp, dur=dt)

        # nginx: keep-alive HTTP/1.1 on a few connections, plus fresh connections.
        for c in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", ng_port)
            for k in range(40):
                choice = k % 8
                if choice == 5:
                    do(conn, "nginx", "GET", "/missing", 404)
                elif choice == 6:
                    do(conn, "nginx", "GET", "/boom", 500)
                elif choice == 7:
                    do(conn, "nginx", "HEAD", "/index.html", 200)
                elif choice == 3:
                    do(conn, "nginx", "GET", "/big.bin", 200)
                else:
                    do(conn, "nginx", "GET", "/index.html", 200)
            conn.close()
        for k in range(20):
            conn = http.client.HTTPConnection("127.0.0.1", ng_port)
            do(conn, "nginx", "GET", "/index.html", 200)
            conn.close()
        # Python http.server: HTTP/1.0, one request per connection.
        for k in range(70):
            conn = http.client.HTTPConnection("127.0.0.1", py_port)
            if k % 10 == 9:
                do(conn, "py", "GET", "/nope.txt", 404)
            else:
                do(conn, "py", "GET", "/index.html", 200)
            conn.close()
        non_http_traffic(echo_port)
        assert len(sent) >= 200, len(sent)

        time.sleep(1.5)
        rc = procs.stop(daemon)
        dlog = procs.log(daemon)
        if rc != 0:
            h.fail("isotraced exited %s on SIGTERM:\n%s" % (rc, dlog))
        time.sleep(1.0)

        spans = recv.records("span")
        server_spans = [s for s in spans if s.get("spanKind") == 2]
        client_spans = {}
        for s in spans:
            if s.get("spanKind") == 3:
                client_spans.setdefault(h.span_attrs(s).get("url.query"), []).append(s)
        by_key = {}
        for s in server_spans:
            a = h.span_attrs(s)
            q = a.get("url.query")
            if q in sent:
                by_key.setdefault(q, []).append(s)
        errors = []
        for key, exp in sent.items():
            got = by_key.get(key, [])
            if len(got) != 1:
                errors.append("%s %s %s: %d SERVER spans" % (key, exp["server"], exp["path"], len(got)))
                continue
            s = got[0]
            a = h.span_attrs(s)
            r = h.res_attrs(s)
            pid = int(r.get("process.pid", 0))
            if exp["server"] == "nginx":
                if pid not in nginx_workers:
                    errors.append("%s: pid %s is not an nginx worker %s" % (key, pid, nginx_workers))
            else:
                if pid != py.pid:
                    errors.append("%s: pid %s, want python %s" % (key, pid, py.pid))
                if r.get("service.name") != "e2e-pyserver":
                    errors.append("%s: service.name %r" % (key, r.get("service.name")))
            if a.get("http.request.method") != exp["method"]:
                errors.append("%s: method %r" % (key, a.get("http.request.method")))
            if a.get("url.path") != exp["path"]:
                errors.append("%s: path %r" % (key, a.get("url.path")))
            if int(a.get("http.response.status_code", 0)) != exp["status"]:
                errors.append("%s: status %r want %d" % (key, a.get("http.response.status_code"), exp["status"]))
            if exp["tp"]:
                if s.get("traceId") != exp["tp"][0] or s.get("parentSpanId") != exp["tp"][1]:
                    errors.append("%s: trace/parent %s/%s, sent %s" % (key, s.get("traceId"), s.get("parentSpanId"), exp["tp"]))
                if s.get("traceState") != "vendor=e2e":
                    errors.append("%s: tracestate %r" % (key, s.get("traceState")))
            else:
                # No context was sent, but this test's own request was seen leaving (a
                # CLIENT span of this process): the server span is its child, by
                # connection (docs/locate.md).
                mine = [c for c in client_spans.get(key, [])
                        if int(h.res_attrs(c).get("process.pid", 0)) == os.getpid()]
                if len(mine) != 1:
                    errors.append("%s: %d CLIENT spans from the test process" % (key, len(mine)))
                elif (s.get("parentSpanId") != mine[0].get("spanId")
                      or s.get("traceId") != mine[0].get("traceId")):
                    errors.append("%s: parent %s/%s, want the client span %s/%s" % (
                        key, s.get("traceId"), s.get("parentSpanId"), mine[0].get("traceId"),
                        mine[0].get("spanId")))
                if not s.get("traceId") or s.get("traceId") == "0" * 32:
                    errors.append("%s: no trace id" % key)
            dur = int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])
            if not (0 < dur <= exp["dur"]):
                errors.append("%s: span duration %d ns, client measured %d ns" % (key, dur, exp["dur"]))
            if not r.get("host.name") or not r.get("process.executable.name"):
                errors.append("%s: resource lacks host.name/process.executable.name: %s" % (key, r))
        # Nothing from non-HTTP traffic, nothing that is not one of our requests from our servers.
        ours = nginx_workers | {py.pid, echo.pid}
        for s in spans:
            r = h.res_attrs(s)
            pid = int(r.get("process.pid", 0))
            if pid == echo.pid:
                errors.append("span from the non-HTTP echo server: %s" % s)
            if pid in ours and s.get("spanKind") == 2 and h.span_attrs(s).get("url.query") not in sent:
                errors.append("unexpected SERVER span from our servers: %s" % h.span_attrs(s))
        traceparents = sum(1 for e in sent.values() if e["tp"])
        print("requests %d (with traceparent %d), server spans matched %d, total spans received %d"
              % (len(sent), traceparents, sum(len(v) for v in by_key.values()), len(spans)))
        if errors:
            print("\n".join(errors[:40]))
            print("daemon log tail:\n" + dlog[-3000:])
            h.fail("%d mismatches" % len(errors))
        print("PASS")


if __name__ == "__main__":
    main()
