"""A real Prometheus (Debian's) scrapes isotraced's /metrics every second while two named
services (Python http.server, OTEL_SERVICE_NAME) serve known numbers of requests. PromQL
over Prometheus' HTTP API must return the request-duration series of both services
with exactly the counts the test sent (per status code too), a plausible median from
histogram_quantile, and isotrace's self-telemetry under the contract's names."""
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

TAG = "%06x" % random.getrandbits(24)
ALPHA = "e2e-prom-alpha-" + TAG
BETA = "e2e-prom-beta-" + TAG
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


def query(prom_port, promql):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (prom_port, urllib.parse.urlencode({"query": promql}))
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        h.fail("PromQL %s: %s" % (promql, body))
    return body["data"]["result"]


def by_label(result, label):
    return {s["metric"].get(label): float(s["value"][1]) for s in result}


def main():
    prom = shutil.which("prometheus")
    if prom is None:
        h.skip("prometheus not installed (scripts/install-deps.sh)")
    with h.Procs() as procs:
        metrics_port = h.free_port()
        daemon = h.start_daemon(procs, "--prometheus-listen", "127.0.0.1:%d" % metrics_port,
                                "--api-socket", os.path.join(procs.tmp, "api.sock"),
                                "--summary-interval", "0")
        if not h.wait_port(metrics_port):
            h.fail("no /metrics on %d:\n%s" % (metrics_port, procs.log(daemon)))

        # Prometheus with its own config and storage, scraping every second.
        prom_port = h.free_port()
        cfg = os.path.join(procs.tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: isotrace
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs:
      - targets: ['127.0.0.1:%d']
""" % metrics_port)
        promp = procs.start([prom, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(procs.tmp, "tsdb"),
                             "--web.listen-address=127.0.0.1:%d" % prom_port, "--log.level=warn"], "prometheus")
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % prom_port, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if promp.poll() is not None:
                h.fail("prometheus exited:\n" + procs.log(promp))
            time.sleep(0.2)
        else:
            h.fail("prometheus not ready:\n" + procs.log(promp))

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

        sent = {}  # (service, status) -> n
        plan = {ALPHA: [("GET", "/index.html")] * 60,
                BETA: [("GET", "/index.html")] * 20 + [("GET", "/missing")] * 7}
        for svc, reqs in plan.items():
            for method, path in reqs:
                st = request(ports[svc], method, path)
                sent[(svc, st)] = sent.get((svc, st), 0) + 1
        print("sent:", sent, flush=True)

        # Wait until a scrape has the final counts (spans end with the response).
        want = {ALPHA: 60, BETA: 27}
        q_count = 'sum by (service_name) (http_server_request_duration_seconds_count{service_name=~"e2e-prom-.*-%s"})' % TAG
        deadline = time.time() + 20
        got = {}
        while time.time() < deadline:
            got = by_label(query(prom_port, q_count), "service_name")
            if got == {k: float(v) for k, v in want.items()}:
                break
            time.sleep(0.5)
        print("prometheus counts:", got, flush=True)
        check(got == {k: float(v) for k, v in want.items()}, "request counts %s, want %s" % (got, want))

        # Per status code: exact.
        codes = query(prom_port, 'sum by (service_name, http_response_status_code) '
                                 '(http_server_request_duration_seconds_count{service_name=~"e2e-prom-.*-%s"})' % TAG)
        per_code = {(s["metric"]["service_name"], int(s["metric"]["http_response_status_code"])): float(s["value"][1])
                    for s in codes}
        check(per_code == {k: float(v) for k, v in sent.items()}, "per status %s, sent %s" % (per_code, sent))

        # Buckets are cumulative and end at the count; the median is plausible for a local
        # static file (well under the 5 ms first bucket... but never negative or absurd).
        buckets = query(prom_port, 'http_server_request_duration_seconds_bucket{service_name="%s",le="+Inf"}' % ALPHA)
        check(len(buckets) == 1 and float(buckets[0]["value"][1]) == 60, "+Inf bucket %s" % buckets)
        les = query(prom_port, 'http_server_request_duration_seconds_bucket{service_name="%s"}' % ALPHA)
        le_values = sorted((float(s["metric"]["le"]), float(s["value"][1])) for s in les)
        check([le for le, _ in le_values][:14] == [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
              "bucket bounds %s" % [le for le, _ in le_values])
        check(all(a[1] <= b[1] for a, b in zip(le_values, le_values[1:])), "buckets not cumulative: %s" % le_values)
        p50 = query(prom_port, 'histogram_quantile(0.5, sum by (le) (http_server_request_duration_seconds_bucket{service_name="%s"}))' % ALPHA)
        p50v = float(p50[0]["value"][1]) if p50 else -1
        print("p50 of %s from Prometheus: %.4f s" % (ALPHA, p50v))
        check(0 < p50v < 0.5, "median %s s is not plausible for a local static file" % p50v)

        # Status classes, resource labels matching the spans' resource, self-telemetry.
        classes = by_label(query(prom_port, 'isotrace_http_requests_total{service_name="%s",span_kind="server"}' % BETA),
                           "isotrace_status_class")
        check(classes == {"2xx": 20.0, "4xx": 7.0}, "status classes %s" % classes)
        series = query(prom_port, 'http_server_request_duration_seconds_count{service_name="%s"}' % ALPHA)
        labels = series[0]["metric"] if series else {}
        check(labels.get("host_name") and labels.get("process_executable_name", "").startswith("python"),
              "resource labels on the series: %s" % labels)
        check("process_pid" not in labels, "process.pid would split a workload's series: %s" % labels)
        for name in ("isotrace_probe_events_total", "isotrace_probe_events_lost_total", "process_cpu_time_seconds_total",
                     "process_memory_usage_bytes", "isotrace_correlate_spans_total"):
            r = query(prom_port, '%s{service_name="isotraced"}' % name)
            check(len(r) > 0, "no %s series" % name)
        events = by_label(query(prom_port, 'isotrace_probe_events_total{service_name="isotraced"}'), "probe")
        check(events.get("l7", 0) > 0, "probe events %s" % events)
        up = query(prom_port, 'up{job="isotrace"}')
        check(len(up) == 1 and up[0]["value"][1] == "1", "up %s" % up)

        # The text itself: TYPE lines and the content type Prometheus expects.
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port, timeout=5) as r:
            ctype = r.headers.get("Content-Type", "")
            text = r.read().decode()
        check(ctype.startswith("text/plain; version=0.0.4"), "content type %r" % ctype)
        for line in ("# TYPE http_server_request_duration_seconds histogram",
                     "# TYPE isotrace_probe_events_total counter",
                     "# TYPE isotrace_layer_time_seconds_total counter",
                     "# TYPE process_memory_usage_bytes gauge"):
            check(line in text, "missing %r" % line)

        rc = procs.stop(daemon)
        check(rc == 0, "isotraced exited %s" % rc)
        if errors:
            h.fail("%d mismatches:\n  %s" % (len(errors), "\n  ".join(errors)))
        print("PASS")


if __name__ == "__main__":
    main()
