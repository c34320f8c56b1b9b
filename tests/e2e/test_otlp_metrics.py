"""OTLP metrics, decoded by the independent npm receiver (upstream-generated protobuf
code): while two named services serve known numbers of requests, isotraced exports
MetricsService/Export every second. The histograms carry exactly the counts the test
sent (in total and per status code), are cumulative with the semantic conventions'
buckets and a stable start time, agree with the same daemon's Prometheus /metrics, and
sit on a resource that is the spans' resource minus its per-process keys (process.pid,
process.command_line). After SIGTERM the final
export's self-telemetry keeps the contract: accepted spans = sent + dropped."""
import http.client
import os
import random
import re
import signal
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

TAG = "%06x" % random.getrandbits(24)
ALPHA = "e2e-otlpm-alpha-" + TAG
BETA = "e2e-otlpm-beta-" + TAG
# Keys that differ between the processes of one workload (docs/metrics.md): on spans, not
# on the workload's metric series.
PER_PROCESS = {"process.pid", "process.parent_pid", "process.command_line", "process.command",
               "process.command_args", "process.creation.time"}
BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)
        print("  MISMATCH: " + msg, flush=True)


def request(port, method, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request(method, path)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def metric_records(recv, name, service):
    return [r for r in recv.records("metric") if r["name"] == name and r["resource"].get("service.name") == service]


def latest_points(records):
    """The data points of the most recent export among `records`."""
    if not records:
        return []
    last = max(int(p["timeUnixNano"]) for r in records for p in r["dataPoints"])
    return [p for r in records for p in r["dataPoints"] if int(p["timeUnixNano"]) == last]


def prometheus_counts(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^http_server_request_duration_seconds_count\{(.*)\} (\S+)$', line)
        if not m:
            continue
        svc = re.search(r'service_name="([^"]*)"', m.group(1))
        if svc:
            out[svc.group(1)] = out.get(svc.group(1), 0) + int(float(m.group(2)))
    return out


def main():
    with h.Procs() as procs:
        recv = h.Receiver(procs)
        metrics_port = h.free_port()
        daemon = h.start_daemon(procs, "--otlp-endpoint", recv.endpoint, "--summary-interval", "0",
                                "--prometheus-listen", "127.0.0.1:%d" % metrics_port,
                                "--api-socket", os.path.join(procs.tmp, "api.sock"),
                                env={"OTEL_METRIC_EXPORT_INTERVAL": "1000"})

        root = os.path.join(procs.tmp, "www")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("hello\n")
        ports = {}
        for svc in (ALPHA, BETA):
            ports[svc] = h.free_port()
            procs.start([sys.executable, "-m", "http.server", str(ports[svc]), "--bind", "127.0.0.1",
                         "--directory", root], svc, env=dict(os.environ, OTEL_SERVICE_NAME=svc))
        for svc in (ALPHA, BETA):
            if not h.wait_port(ports[svc]):
                h.fail(svc + " did not start")

        sent = {}
        plan = {ALPHA: [("GET", "/index.html")] * 45,
                BETA: [("GET", "/index.html")] * 15 + [("GET", "/missing")] * 5 + [("PUT", "/x")] * 3}
        for svc, reqs in plan.items():
            for method, path in reqs:
                st = request(ports[svc], method, path)
                sent[(svc, st)] = sent.get((svc, st), 0) + 1
        total = {svc: sum(n for (s, _), n in sent.items() if s == svc) for svc in (ALPHA, BETA)}
        print("sent:", sent, flush=True)

        # Exports every second: wait for one that has every request.
        deadline = time.time() + 20
        counts = {}
        while time.time() < deadline:
            counts = {svc: sum(int(p["count"]) for p in latest_points(
                metric_records(recv, "http.server.request.duration", svc))) for svc in (ALPHA, BETA)}
            if counts == total:
                break
            time.sleep(0.5)
        print("otlp counts:", counts, flush=True)
        check(counts == total, "OTLP histogram counts %s, sent %s" % (counts, total))

        for svc in (ALPHA, BETA):
            recs = metric_records(recv, "http.server.request.duration", svc)
            if not recs:
                check(False, "no http.server.request.duration for " + svc)
                continue
            check(len({int(p["timeUnixNano"]) for r in recs for p in r["dataPoints"]}) >= 1, "exports")
            r0 = recs[-1]
            check(r0["type"] == "histogram" and r0["aggregationTemporality"] == 2 and r0["unit"] == "s",
                  "%s: type %s temporality %s unit %s" % (svc, r0["type"], r0["aggregationTemporality"], r0["unit"]))
            per_code = {}
            for p in latest_points(recs):
                check([float(b) for b in p["explicitBounds"]] == BOUNDS, "bounds %s" % p["explicitBounds"])
                check(sum(int(c) for c in p["bucketCounts"]) == int(p["count"]), "bucket counts %s vs count %s" % (p["bucketCounts"], p["count"]))
                check(0 < p["min"] <= p["max"] < 5, "min %s max %s" % (p["min"], p["max"]))
                code = p["attributes"].get("http.response.status_code")
                per_code[(svc, code)] = per_code.get((svc, code), 0) + int(p["count"])
                check(p["attributes"].get("http.request.method") in ("GET", "PUT"), "method %s" % p["attributes"])
            want = {k: v for k, v in sent.items() if k[0] == svc}
            check(per_code == want, "%s per status %s, sent %s" % (svc, per_code, want))
            # One cumulative series: the start time never moves across exports.
            starts = {(tuple(sorted(p["attributes"].items())), p["startTimeUnixNano"]) for r in recs for p in r["dataPoints"]}
            series = {k for k, _ in starts}
            check(len(starts) == len(series), "%s: start time changed between exports" % svc)
            check(all(int(p["startTimeUnixNano"]) < int(p["timeUnixNano"]) for r in recs for p in r["dataPoints"]),
                  "start time not before time")

            req = latest_points(metric_records(recv, "isotrace.http.requests", svc))
            rr = metric_records(recv, "isotrace.http.requests", svc)
            check(rr and rr[-1]["type"] == "sum" and rr[-1]["isMonotonic"] and rr[-1]["aggregationTemporality"] == 2,
                  "isotrace.http.requests is not a monotonic cumulative sum")
            classes = {p["attributes"].get("isotrace.status_class"): p["value"] for p in req
                       if p["attributes"].get("span.kind") == "server"}
            want_classes = {}
            for (s, code), n in sent.items():
                if s == svc:
                    want_classes["%dxx" % (code // 100)] = want_classes.get("%dxx" % (code // 100), 0) + n
            check(classes == want_classes, "%s status classes %s, want %s" % (svc, classes, want_classes))

            # The metrics' resource is the spans' resource without the per-process keys.
            # Spans go out on their own batch timer: wait for them as for the metrics.
            span_deadline = time.time() + 10
            while True:
                spans = [s for s in recv.records("span")
                         if s["resource"].get("service.name") == svc and s["spanKind"] == 2]
                if len(spans) >= total[svc] or time.time() > span_deadline:
                    break
                time.sleep(0.3)
            check(len(spans) == total[svc], "%s: %d SERVER spans received, %d requests sent" % (svc, len(spans), total[svc]))
            if spans:
                span_res = {k: v for k, v in spans[-1]["resource"].items() if k not in PER_PROCESS}
                check(r0["resource"] == span_res, "%s: metric resource %s != span resource %s" % (svc, r0["resource"], span_res))

        # The same numbers on the same daemon's Prometheus endpoint.
        prom = prometheus_counts(metrics_port)
        check({svc: prom.get(svc) for svc in (ALPHA, BETA)} == total,
              "Prometheus counts %s vs sent %s" % ({svc: prom.get(svc) for svc in (ALPHA, BETA)}, total))

        # SIGTERM: the final metrics export carries the exporter's final counters.
        rc = procs.stop(daemon, signal.SIGTERM)
        check(rc == 0, "isotraced exited %s:\n%s" % (rc, procs.log(daemon)[-2000:]))
        time.sleep(0.5)

        def final(name):
            recs = [r for r in recv.records("metric") if r["name"] == name and r["resource"].get("service.name") == "isotraced"]
            return latest_points(recs)
        accepted = sum(p["value"] for p in final("isotrace.export.spans.accepted"))
        sent_spans = sum(p["value"] for p in final("isotrace.export.spans.sent"))
        dropped = {p["attributes"].get("reason"): p["value"] for p in final("isotrace.export.spans.dropped")}
        print("final self-telemetry: accepted %s sent %s dropped %s" % (accepted, sent_spans, dropped))
        check(accepted > 0 and accepted == sent_spans + sum(dropped.values()),
              "accepted %s != sent %s + dropped %s" % (accepted, sent_spans, dropped))
        check("queue_full" in dropped and "shutdown" in dropped, "dropped reasons %s" % dropped)
        received = len(recv.records("span"))
        check(received >= sent_spans, "receiver has %d spans, exporter says %d sent" % (received, sent_spans))
        for name in ("isotrace.probe.events", "isotrace.probe.events.lost", "isotrace.export.queue.size",
                     "process.cpu.time", "process.memory.usage"):
            check(final(name), "no final %s" % name)
        probe = {p["attributes"].get("probe"): p["value"] for p in final("isotrace.probe.events")}
        check(probe.get("l7", 0) > 0, "probe events %s" % probe)
        if errors:
            h.fail("%d mismatches:\n  %s" % (len(errors), "\n  ".join(errors)))
        print("PASS")


if __name__ == "__main__":
    main()
