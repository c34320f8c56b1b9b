"""gRPC over HTTP/2, end to end: Debian's python3-grpcio serves two services (chain.Front
calls chain.Back without passing any trace context) and a python3-grpcio client makes
unary calls that succeed, fail with NOT_FOUND, carry a traceparent, or go down the chain.
isotraced exports to the independent npm OTLP receiver; every call must be exactly one
SERVER span of the right process with the RPC conventions' fields (rpc.system,
rpc.service, rpc.method, rpc.grpc.status_code), HTTP/2's network.protocol.version "2",
the right status and error.type, a duration within the client's, and the chain's four
spans (client → Front → Front's call → Back) must form one trace."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# Debian's interpreter: the image's default python3 is another build without grpcio.
GRPC_PY = "/usr/bin/python3"
FIX = os.path.join(h.E2E, "fixtures")
TP_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TP_PARENT = "00f067aa0ba902b7"


def start_service(procs, port, service, name, *extra):
    env = dict(os.environ, OTEL_SERVICE_NAME=name)
    p = procs.start([GRPC_PY, os.path.join(FIX, "grpc_svc.py"), str(port), service, *map(str, extra)], name,
                    env=env)
    if not h.wait_port(port):
        h.fail("%s did not listen:\n%s" % (name, procs.log(p)))
    return p


def main():
    if subprocess.run([GRPC_PY, "-c", "import grpc"], capture_output=True).returncode != 0:
        h.skip("python3-grpcio missing for %s: run scripts/install-deps.sh" % GRPC_PY)
    with h.Procs() as procs:
        recv = h.Receiver(procs)
        daemon = h.start_daemon(procs, "--otlp-endpoint", recv.endpoint, "--summary-interval", "2")
        back_port, front_port = h.free_port(), h.free_port()
        back = start_service(procs, back_port, "chain.Back", "e2e-grpc-back")
        front = start_service(procs, front_port, "chain.Front", "e2e-grpc-front", back_port)

        tp = "00-%s-%s-01" % (TP_TRACE, TP_PARENT)
        calls = []
        for _ in range(6):
            calls += ["/chain.Front/Ok", "/chain.Front/Fail", "/chain.Front/Ok," + tp, "/chain.Front/Chain"]
        client = subprocess.Popen([GRPC_PY, os.path.join(FIX, "grpc_client.py"), str(front_port), *calls],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = client.communicate(timeout=120)
        if client.returncode != 0:
            h.fail("grpc client failed: %s" % stderr.decode(errors="replace")[-2000:])
        results = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
        if len(results) != len(calls):
            h.fail("client made %d of %d calls" % (len(results), len(calls)))
        for r in results:
            want = 5 if r["path"].endswith("/Fail") else 0
            if r["code"] != want:
                h.fail("call %s: status %d, want %d" % (r["path"], r["code"], want))

        spans, dlog = h.stop_and_collect(procs, daemon, recv)
        pid_of = h.pid_of

        front_server = sorted([s for s in spans if pid_of(s) == front.pid and s.get("spanKind") == 2],
                              key=lambda s: int(s["startTimeUnixNano"]))
        front_client = [s for s in spans if pid_of(s) == front.pid and s.get("spanKind") == 3]
        back_server = [s for s in spans if pid_of(s) == back.pid and s.get("spanKind") == 2]
        client_spans = [s for s in spans if pid_of(s) == client.pid and s.get("spanKind") == 3]
        errors = []
        if len(front_server) != len(calls):
            errors.append("%d SERVER spans from Front, want %d" % (len(front_server), len(calls)))

        # Each call ↔ the one Front SERVER span inside its client-measured window.
        for r in results:
            inside = [s for s in front_server
                      if r["t0"] <= int(s["startTimeUnixNano"]) and int(s["endTimeUnixNano"]) <= r["t1"]]
            if len(inside) != 1:
                errors.append("%s at %d: %d Front SERVER spans inside its window" % (r["path"], r["t0"], len(inside)))
                continue
            s = inside[0]
            a = h.span_attrs(s)
            method = r["path"].rsplit("/", 1)[1]
            want = {"rpc.system": "grpc", "rpc.service": "chain.Front", "rpc.method": method,
                    "rpc.grpc.status_code": 5 if method == "Fail" else 0, "network.protocol.version": "2",
                    "http.request.method": "POST", "url.path": r["path"], "http.response.status_code": 200,
                    "server.port": front_port}
            for k, v in want.items():
                got = a.get(k)
                if (int(got) if isinstance(v, int) and got is not None else got) != v:
                    errors.append("%s: %s = %r, want %r" % (r["path"], k, got, v))
            if method == "Fail":
                if a.get("error.type") != "NOT_FOUND":
                    errors.append("Fail: error.type %r" % a.get("error.type"))
                # NOT_FOUND is the caller's problem: no error status on the SERVER span.
                if s.get("status", {}).get("code", 0) == 2:
                    errors.append("Fail: SERVER span status is ERROR for NOT_FOUND")
            elif "error.type" in a:
                errors.append("%s: unexpected error.type %r" % (r["path"], a["error.type"]))
            if s.get("name") != "chain.Front/" + method:
                errors.append("%s: span name %r" % (r["path"], s.get("name")))
            if h.res_attrs(s).get("service.name") != "e2e-grpc-front":
                errors.append("%s: service.name %r" % (r["path"], h.res_attrs(s).get("service.name")))
            if r["tp"]:
                if s.get("traceId") != TP_TRACE or s.get("parentSpanId") != TP_PARENT:
                    errors.append("traceparent call: trace/parent %s/%s" % (s.get("traceId"), s.get("parentSpanId")))
            else:
                # No context sent: the client's own CLIENT span (seen on this node) is the parent.
                parents = [c for c in client_spans if c.get("spanId") == s.get("parentSpanId")]
                if len(parents) != 1 or parents[0].get("traceId") != s.get("traceId"):
                    errors.append("%s: parent %s is not the client's CLIENT span" % (r["path"], s.get("parentSpanId")))
                else:
                    c = parents[0]
                    ca = h.span_attrs(c)
                    if ca.get("rpc.method") != method or int(ca.get("rpc.grpc.status_code", -1)) != want["rpc.grpc.status_code"]:
                        errors.append("%s: CLIENT span rpc %s" % (r["path"], ca))
                    if method == "Fail" and c.get("status", {}).get("code", 0) != 2:
                        errors.append("Fail: CLIENT span status is not ERROR")
            if method == "Chain":
                # Front's call to Back: Front's CLIENT span, the child of this SERVER span;
                # Back's SERVER span, the child of that CLIENT span; one trace.
                kids = [c for c in front_client if c.get("parentSpanId") == s.get("spanId")]
                if len(kids) != 1:
                    errors.append("Chain: %d CLIENT spans of Front under its SERVER span" % len(kids))
                    continue
                k = kids[0]
                ka = h.span_attrs(k)
                if (k.get("traceId") != s.get("traceId") or ka.get("rpc.service") != "chain.Back"
                        or ka.get("rpc.method") != "Ok" or int(ka.get("server.port", 0)) != back_port):
                    errors.append("Chain: Front's call %s %s" % (k.get("traceId"), ka))
                backs = [b for b in back_server if b.get("parentSpanId") == k.get("spanId")]
                if len(backs) != 1 or backs[0].get("traceId") != s.get("traceId"):
                    errors.append("Chain: Back's SERVER span not linked under Front's call (%d)" % len(backs))
                elif h.span_attrs(backs[0]).get("rpc.service") != "chain.Back":
                    errors.append("Chain: Back's span %s" % h.span_attrs(backs[0]))
            dur = int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])
            if not 0 < dur <= r["t1"] - r["t0"]:
                errors.append("%s: duration %d ns, client measured %d" % (r["path"], dur, r["t1"] - r["t0"]))
        chains = sum(1 for r in results if r["path"].endswith("/Chain"))
        if len(back_server) != chains:
            errors.append("%d SERVER spans from Back, want %d" % (len(back_server), chains))
        # Nothing from isotrace's own export calls, as the receiver got them.
        own = [s for s in spans if "opentelemetry.proto.collector" in str(h.span_attrs(s).get("rpc.service", ""))]
        if own:
            errors.append("%d spans of isotrace's own OTLP exports" % len(own))
        print("calls %d, Front SERVER %d, Front CLIENT %d, Back SERVER %d, client CLIENT %d, spans %d"
              % (len(results), len(front_server), len(front_client), len(back_server), len(client_spans), len(spans)))
        h.finish(errors, dlog)


if __name__ == "__main__":
    main()
