"""Requests inside sandboxes whose sockets the host never sees (issue 15), with real
runtimes (tests/e2e/sandboxes.py):

(a) gVisor, netstack mode: a real `runsc run` in its own netns + veth serves HTTP; the
    daemon finds the Sentry, puts its TC program on the host-side veth, and every request
    the test sends is exactly one SERVER span with method, path, status, server address,
    `isotrace.observed_at`=sandbox_edge, a sandbox-level breakdown, stack sandbox:gvisor,
    container.id the container's, process.pid the Sentry's; the test's own CLIENT span
    is its parent (same-node link across the edge).
(b) The pod's CPU quota squeezed (cpu.cfs_quota_us of the sandbox's cgroup): the traces
    during the squeeze get verdicts, and their majority names the sandbox layer.
(c) gVisor, host network: the Sentry's own host syscalls; one span per request (no edge
    span besides), naming the container and sandbox:gvisor, not the runsc binary.
(d) A QEMU microVM (Debian's kernel, busybox httpd) on a tap: one SERVER span per
    request seen at the tap, stack sandbox:microvm, the VMM as the process.
"""
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import sandboxes  # noqa: E402


def get(url, timeout=20):
    t0 = time.perf_counter_ns()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        e.read()
        status = e.code
    return status, time.perf_counter_ns() - t0


def wait_log(procs, daemon, needle, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if needle in procs.log(daemon):
            return True
        time.sleep(0.2)
    return False


def by_query(spans, kind):
    out = {}
    for s in spans:
        if s.get("spanKind") == kind:
            out.setdefault(h.span_attrs(s).get("url.query"), []).append(s)
    return out


def check_server(errors, tag, sent, spans, want):
    servers = by_query(spans, 2)
    clients = by_query(spans, 3)
    for key, exp in sent.items():
        got = servers.get(key, [])
        if len(got) != 1:
            errors.append("%s %s: %d SERVER spans, want 1" % (tag, key, len(got)))
            continue
        s = got[0]
        a, r = h.span_attrs(s), h.res_attrs(s)
        if a.get("http.request.method") != "GET" or a.get("url.path") != exp["path"]:
            errors.append("%s %s: %r %r" % (tag, key, a.get("http.request.method"), a.get("url.path")))
        if int(a.get("http.response.status_code", 0)) != exp["status"]:
            errors.append("%s %s: status %r, want %d" % (tag, key, a.get("http.response.status_code"), exp["status"]))
        for k, v in want["attrs"].items():
            if a.get(k) != v:
                errors.append("%s %s: %s = %r, want %r" % (tag, key, k, a.get(k), v))
        for k in want.get("absent", ()):
            if k in a:
                errors.append("%s %s: %s = %r, want none" % (tag, key, k, a.get(k)))
        for k, v in want["res"].items():
            if str(r.get(k)) != str(v):
                errors.append("%s %s: resource %s = %r, want %r" % (tag, key, k, r.get(k), v))
        if want["stack"] not in str(r.get("isotrace.stack", "")):
            errors.append("%s %s: isotrace.stack %r lacks %s" % (tag, key, r.get("isotrace.stack"), want["stack"]))
        dur = int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])
        if not (0 < dur <= exp["dur"]):
            errors.append("%s %s: span %d ns, client measured %d ns" % (tag, key, dur, exp["dur"]))
        if want.get("breakdown"):
            parts = [int(a.get(k, 0)) for k in ("isotrace.app.oncpu_ns", "isotrace.kernel.runq_ns",
                                                "isotrace.container.throttled_ns", "isotrace.kernel.blkio_ns",
                                                "isotrace.kernel.memstall_ns", "isotrace.offcpu_other_ns")]
            if "isotrace.app.oncpu_ns" not in a:
                errors.append("%s %s: no breakdown" % (tag, key))
            elif abs(sum(parts) - dur) > dur * 0.02 + 10000:
                errors.append("%s %s: breakdown sums to %d, duration %d" % (tag, key, sum(parts), dur))
        if want.get("linked"):
            mine = [c for c in clients.get(key, []) if int(h.res_attrs(c).get("process.pid", 0)) == os.getpid()]
            if len(mine) != 1:
                errors.append("%s %s: %d CLIENT spans from the test process" % (tag, key, len(mine)))
            elif s.get("parentSpanId") != mine[0].get("spanId") or s.get("traceId") != mine[0].get("traceId"):
                errors.append("%s %s: not the child of the test's CLIENT span" % (tag, key))


def drive(url_of, sent, tag, n, missing_every=5):
    for i in range(n):
        path = "/nope.txt" if i % missing_every == missing_every - 1 else "/hello.txt"
        key = "%s=%d" % (tag, i)
        status, dur = get(url_of(path) + "?" + key)
        want = 404 if path == "/nope.txt" else 200
        if status != want:
            h.fail("%s %s: status %d, want %d" % (tag, path, status, want))
        sent[key] = {"path": path, "status": want, "dur": dur}


def main():
    if not os.path.exists("/usr/bin/runsc"):
        h.skip("runsc (gVisor) not installed: run scripts/install-deps.sh")
    sandboxes.cleanup_stale()
    errors = []
    with h.Procs() as procs:
        recv = h.Receiver(procs)
        gv = sandboxes.GvisorSandbox(procs, network="sandbox")
        gv.start()
        try:
            daemon = h.start_daemon(procs, "--otlp-endpoint", recv.endpoint, "--summary-interval", "0")
            if not wait_log(procs, daemon, "edge: watching %s" % gv.veth):
                h.fail("the daemon never watched %s:\n%s" % (gv.veth, procs.log(daemon)[-3000:]))
            # (a) netstack: spans at the edge.
            sent_a = {}
            drive(gv.url, sent_a, "gva", 40)
            # (b) the quota squeezed: requests slow down on throttling.
            sent_b = {}
            gv.set_cpu_quota(3000, 100000)
            t_squeeze = time.time_ns()
            drive(gv.url, sent_b, "gvb", 8, missing_every=100)
            gv.set_cpu_quota(-1)
            stat = gv.cpu_stat()
            print("gVisor cpu.stat after the squeeze: %s" % stat)
        finally:
            gv.stop()

        # (c) host network: the Sentry's own syscalls.
        gh = sandboxes.GvisorSandbox(procs, network="host")
        gh.start()
        try:
            sent_c = {}
            drive(gh.url, sent_c, "gvc", 20)
        finally:
            gh.stop()

        # (d) a microVM on a tap.
        vm = sandboxes.MicroVM(procs)
        vm.start()
        try:
            if not wait_log(procs, daemon, "edge: watching %s" % vm.tap):
                h.fail("the daemon never watched %s:\n%s" % (vm.tap, procs.log(daemon)[-3000:]))
            sent_d = {}
            drive(vm.url, sent_d, "vm", 20)
            vm_pid = vm.pid
        finally:
            vm.stop()

        spans, dlog = h.stop_and_collect(procs, daemon, recv)
        edge = {"isotrace.observed_at": "sandbox_edge", "isotrace.breakdown.scope": "sandbox"}
        check_server(errors, "gvisor/netstack", sent_a, spans,
                     {"attrs": dict(edge, **{"server.address": gv.ip}), "breakdown": True, "linked": True,
                      "res": {"process.pid": gv.sentry_pid, "container.id": gv.cid}, "stack": "sandbox:gvisor"})
        check_server(errors, "gvisor/host", sent_c, spans,
                     {"attrs": {}, "absent": ("isotrace.observed_at",),
                      "res": {"process.pid": gh.sentry_pid, "container.id": gh.cid, "service.name": gh.cid},
                      "stack": "sandbox:gvisor"})
        check_server(errors, "microvm", sent_d, spans,
                     {"attrs": dict(edge, **{"server.address": vm.ip}), "breakdown": True,
                      "res": {"process.pid": vm_pid}, "stack": "sandbox:microvm"})
        # (b) verdicts of the squeezed requests' traces (their root: the test's CLIENT span).
        squeezed = by_query(spans, 3)
        verdicts = []
        for key in sent_b:
            for s in squeezed.get(key, []) + by_query(spans, 2).get(key, []):
                a = h.span_attrs(s)
                if "isotrace.verdict.layer" in a:
                    verdicts.append((a["isotrace.verdict.layer"], a.get("isotrace.verdict.cause")))
        durs = sorted(e["dur"] // 1000000 for e in sent_b.values())
        base = sorted(e["dur"] // 1000000 for e in sent_a.values())
        print("netstack request ms: median %d clean, %s squeezed; verdicts %s" % (base[len(base) // 2], durs, verdicts))
        if not verdicts:
            errors.append("no verdict for the squeezed requests")
        else:
            top = max(set(verdicts), key=verdicts.count)
            if top[0] != "sandbox":
                errors.append("squeeze: majority verdict %s/%s, want the sandbox layer" % top)
        for needle in ("edge: watching %s" % gv.veth, "edge: watching %s" % vm.tap):
            if needle not in dlog:
                errors.append("daemon log lacks %r" % needle)
        h.finish(errors, dlog)


if __name__ == "__main__":
    main()
