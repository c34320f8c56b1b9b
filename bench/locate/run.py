#!/usr/bin/env python3
"""Localization accuracy of isotrace's verdicts (bench/README.md, "locate").

    sudo python3 bench/locate/run.py [--faults a,b] [--reps N] [--json PATH] [builddir]

A chain of real services on this node (chain.py), none propagating trace context, under
steady load; isotraced exports to the npm OTLP receiver. After a clean warm-up (the daemon
learns its baselines), each fault (injectors.py) is injected REPS times: onset recorded,
fault applied until a few verdicts arrived (at most --fault-max s), removed, a recovery
pause. A verdict (an OTLP log record with isotrace.verdict.*) counts for an injection when
its trace started between that injection's onset and removal. Prints per fault the
verdicts seen and the spans' per-hop breakdown against the clean warm-up, the confusion
matrix (truth vs. the majority verdict of each injection), top-1 accuracy over injections
and over single verdicts, time from onset to the first correct verdict (median, max), and
false positives in the clean warm-up tail. Exit 0 unless the set-up itself failed (2 when
it cannot run here: not root, a tool missing).
"""
import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import analyze as A  # noqa: E402
import chain as C  # noqa: E402
import injectors as I  # noqa: E402

h = C.h


# Clean-load verdicts for traces this many times their route's usual duration or more
# are counted apart (clean_tail["gross"]): real stalls of the node, not false alarms.
GROSS_FACTOR = 4.0


def log(msg):
    print(msg, flush=True)


def pin(pid, cpu="0"):
    subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(pid)], capture_output=True, timeout=10)


class Bench:
    """One run: receiver, daemon, chain, warm-up, injections. Used by run.py and by
    tests/e2e/test_locate.py."""

    def __init__(self, procs, rate=35.0, warmup=25.0, clean_tail=20.0, fault_max=8.0, fault_min=2.0,
                 stop_after=5, recover=4.0, pin_daemon=False, out=log, db_poll=False):
        self.procs = procs
        self.rate, self.warmup_s, self.clean_tail = rate, warmup, clean_tail
        self.fault_max, self.fault_min, self.stop_after, self.recover = fault_max, fault_min, stop_after, recover
        self.pin_daemon = pin_daemon
        self.db_poll = db_poll
        self.out = out
        self.injections = []
        self.windows = {}
        self.chain = None
        self.tail = None
        self.daemon = None

    def setup(self):
        self.recv = h.Receiver(self.procs)
        self.daemon = C.start_daemon(self.procs, self.recv.endpoint)
        if self.pin_daemon:
            pin(self.daemon.pid)
            pin(self.recv.proc.pid)
        self.tail = C.Tail(self.recv.out)
        self.tail.start()
        self.chain = C.Chain(self.procs, rate=self.rate, log=self.out, db_poll=self.db_poll)
        self.tail.needle = "req=%s-" % self.chain.prefix
        self.chain.start()
        self.chain.start_load()

    def warmup(self):
        t0 = time.time()
        self.out("warm-up: %.0f s of clean load at %.0f req/s (baselines are learnt)" % (self.warmup_s, self.rate))
        time.sleep(self.warmup_s)
        t1 = time.time()
        self.windows["clean"] = (t0, t1)
        self.windows["clean_tail"] = (max(t0, t1 - self.clean_tail), t1)

    def inject(self, fault_cls, rep):
        f = fault_cls(self.chain, self.procs)
        onset = time.time()
        try:
            f.apply()
            while True:
                time.sleep(0.1)
                el = time.time() - onset
                if el >= self.fault_max:
                    break
                if el >= self.fault_min and len(self.tail.chain_verdicts_since(onset)) >= self.stop_after:
                    break
        finally:
            removal = time.time()
            f.remove()
        self.injections.append({"fault": f.name, "rep": rep, "truth": list(f.truth), "note": f.note,
                                "onset": onset, "removal": removal})
        self.out("  %-16s rep %d: %.1f s" % (f.name, rep, removal - onset))
        time.sleep(self.recover)

    def finish(self):
        self.chain.stop_load()
        time.sleep(1.5)  # the last spans and verdicts of the load
        rc = self.procs.stop(self.daemon, timeout=30)
        time.sleep(0.5)
        self.tail.stop()
        return rc

    def close(self):
        errs = []
        if self.chain is not None:
            errs = self.chain.close()
        if self.tail is not None and self.tail.is_alive():
            self.tail.stop()
        return errs

    # ---- results ----------------------------------------------------------------------

    def results(self):
        spans, logs = self.tail.snapshot()
        index = A.Index(spans, self.chain.prefix)
        load = self.chain.load_records()
        ours = [(rec["_arrival"], rec, A.trace_start(index, rec)) for rec in logs if A.ours(index, rec)]
        res = {"rate": self.rate, "requests": len(load), "errors": sum(1 for r in load if r["st"] != 200),
               "spans": len(spans), "verdict_logs": len(logs), "verdict_logs_ours": len(ours),
               "injections": [], "windows": self.windows}
        c0, c1 = self.windows["clean"]
        ref = A.hop_breakdown(index, load, c0 + 5, c1)
        res["clean_breakdown"] = ref
        t0, t1 = self.windows["clean_tail"]
        fp = [(a, rec, st) for a, rec, st in ours if st is not None and t0 <= st < t1]
        tail_requests = sum(1 for r in load if t0 <= r["t0"] < t1)

        def times_usual(r):
            a = r.get("attributes", {})
            d, b = int(a.get("isotrace.verdict.duration_ns", 0) or 0), int(a.get("isotrace.verdict.baseline_ns", 0) or 0)
            return d / b if b > 0 else 0.0
        # A trace GROSS_FACTOR times its usual or more is abnormal whatever made it so (on
        # this VM: fdatasync stalls of 50-180 ms on a 9 ms chain): its verdict is no false
        # alarm. The rest are the marginal ones a too eager rule would multiply.
        gross = sum(1 for _, r, _ in fp if times_usual(r) >= GROSS_FACTOR)
        res["clean_tail"] = {"seconds": t1 - t0, "verdicts": len(fp), "requests": tail_requests,
                             "ratio": len(fp) / max(tail_requests, 1),
                             "gross": gross, "ratio_marginal": (len(fp) - gross) / max(tail_requests, 1),
                             "per_10s": len(fp) / max(t1 - t0, 1e-9) * 10,
                             "seen": ["%s (%.1f ms, usual %.1f ms)" % (
                                 A.fmt_triple(A.verdict_of(r)),
                                 int(r.get("attributes", {}).get("isotrace.verdict.duration_ns", 0) or 0) / 1e6,
                                 int(r.get("attributes", {}).get("isotrace.verdict.baseline_ns", 0) or 0) / 1e6)
                                 for _, r, _ in fp]}
        wc0, wc1 = self.windows["clean"]
        wc = [(a, rec, st) for a, rec, st in ours if st is not None and wc0 + 5 <= st < wc1]
        res["clean_all"] = {"seconds": wc1 - wc0 - 5, "verdicts": len(wc)}
        for inj in self.injections:
            vs = sorted([(a, rec, st) for a, rec, st in ours if st is not None and inj["onset"] <= st < inj["removal"]],
                        key=lambda x: x[0])
            triples = [A.verdict_of(rec) for _, rec, _ in vs]
            truth = tuple(inj["truth"])
            correct = [a for (a, rec, _), t in zip(vs, triples) if t == truth]
            maj = A.majority(triples)
            d = dict(inj)
            d.update({
                "verdicts": [verdict_row(rec, t, a, st, inj["onset"]) for (a, rec, st), t in zip(vs, triples)],
                "majority": list(maj) if maj else None,
                "correct": maj == truth,
                "n_verdicts": len(vs), "n_correct": len(correct),
                "first_correct_s": round(min(correct) - inj["onset"], 3) if correct else None,
                "breakdown": A.hop_breakdown(index, load, inj["onset"], inj["removal"]),
            })
            d["largest_excess"] = A.largest_excess(d["breakdown"], ref)
            res["injections"].append(d)
        # Memory stalls outside the memory injections (and their recovery): a thread whose
        # off-CPU waits keep counting as memory stall would show up here.
        mem_w = [(i["onset"], i["removal"] + self.recover) for i in self.injections if i["fault"] == "memory"]
        stray = collections.Counter()
        for sp in spans:
            a = sp.get("attributes", {})
            m = int(a.get("isotrace.kernel.memstall_ns", 0) or 0)
            if m < 1000000 or not (a.get("url.query") or "").startswith("req=%s-" % self.chain.prefix):
                continue
            t = A.start_s(sp)
            if any(w0 <= t < w1 for w0, w1 in mem_w) or t < self.windows["clean"][0]:
                continue
            # per connection: svc-b and svc-c serve each connection with one thread
            stray["%s conn from port %s" % (A.svc(sp), a.get("client.port", "?"))] += 1
        res["memstall_outside_memory_faults"] = dict(stray.most_common(10))
        inj = res["injections"]
        n_v = sum(i["n_verdicts"] for i in inj)
        lat = [i["first_correct_s"] for i in inj if i["first_correct_s"] is not None]
        res["summary"] = {
            "injections": len(inj),
            "top1_injections": sum(1 for i in inj if i["correct"]) / len(inj) if inj else None,
            "top1_verdicts": sum(i["n_correct"] for i in inj) / n_v if n_v else None,
            "verdicts": n_v,
            "first_correct_median_s": A.median(lat),
            "first_correct_max_s": max(lat) if lat else None,
            "injections_without_correct_verdict": sum(1 for i in inj if i["first_correct_s"] is None),
        }
        self.index = index
        self.load = load
        return res


def verdict_row(rec, triple, arrival, start, onset):
    a = rec.get("attributes", {})
    return {"verdict": list(triple), "arrival_s": round(arrival - onset, 3), "trace_start_s": round(start - onset, 3),
            "share": a.get("isotrace.verdict.share"), "reason": a.get("isotrace.verdict.reason"),
            "duration_ms": int(a.get("isotrace.verdict.duration_ns", 0) or 0) / 1e6,
            "baseline_ms": int(a.get("isotrace.verdict.baseline_ns", 0) or 0) / 1e6,
            "traceId": rec.get("traceId"), "spanId": rec.get("spanId")}


def report(res, out=log):
    out("")
    out("clean load (requests sent ≥ 5 s into the warm-up), per hop, mean ms:")
    out(A.format_breakdown(res["clean_breakdown"]))
    by_fault = collections.OrderedDict()
    for i in res["injections"]:
        by_fault.setdefault(i["fault"], []).append(i)
    for name, injs in by_fault.items():
        out("")
        out("== %s  truth %s  (%s)" % (name, A.fmt_triple(tuple(injs[0]["truth"])), injs[0]["note"]))
        for i in injs:
            seen = collections.Counter(A.fmt_triple(tuple(v["verdict"])) for v in i["verdicts"])
            out("  rep %d: %.1f s, %d verdicts: %s; majority %s %s; first correct %s" % (
                i["rep"], i["removal"] - i["onset"], i["n_verdicts"],
                ", ".join("%s ×%d" % kv for kv in seen.most_common()) or "-",
                A.fmt_triple(tuple(i["majority"]) if i["majority"] else None), "✓" if i["correct"] else "✗",
                "%.2f s" % i["first_correct_s"] if i["first_correct_s"] is not None else "never"))
        # the spans' view of this fault, all reps together: per-hop means against clean
        b = injs[-1]["breakdown"]
        out("  spans of the last rep, per hop, mean ms (change vs clean):")
        out(A.format_breakdown(b, res["clean_breakdown"]))
        le = injs[-1]["largest_excess"]
        if le:
            out("  largest excess of a hop's own time (children taken out): %s %s %+.1f ms"
            % (A.HOP_NAMES[le[0]], le[1], le[2]))
    out("")
    out("confusion matrix (rows: injected truth; columns: majority verdict of the injection):")
    out(A.format_confusion(res["injections"]))
    s = res["summary"]
    out("")
    pct = lambda x: "n/a" if x is None else "%.0f %%" % (100 * x)  # noqa: E731
    out("top-1 accuracy over injections: %s (%d injections)" % (pct(s["top1_injections"]), s["injections"]))
    out("top-1 accuracy over verdicts:   %s (%d verdicts)" % (pct(s["top1_verdicts"]), s["verdicts"]))
    f = lambda x: "n/a" if x is None else "%.2f s" % x  # noqa: E731
    out("time to first correct verdict:  median %s, max %s (%d injections never had one)" % (
        f(s["first_correct_median_s"]), f(s["first_correct_max_s"]), s["injections_without_correct_verdict"]))
    ct = res["clean_tail"]
    out("verdicts in the clean warm-up tail: %d in %.0f s (%.1f per 10 s) for %d requests (%.2f %%; %d of them "
        "for traces ≥ %.0f × usual, %.2f %% without those)%s" % (
            ct["verdicts"], ct["seconds"], ct["per_10s"], ct["requests"], 100 * ct["ratio"], ct["gross"], GROSS_FACTOR,
            100 * ct["ratio_marginal"], (": " + ", ".join(ct["seen"])) if ct["seen"] else ""))
    if res.get("memstall_outside_memory_faults"):
        out("spans with ≥ 1 ms memory stall outside the memory injections: %s"
            % res["memstall_outside_memory_faults"])
    ca = res.get("clean_all")
    if ca:
        out("verdicts over the whole clean warm-up after its first 5 s: %d in %.0f s" % (ca["verdicts"], ca["seconds"]))
    out("load: %d requests, %d errors; spans received %d; verdict logs %d (%d for the chain)" % (
        res["requests"], res["errors"], res["spans"], res["verdict_logs"], res["verdict_logs_ours"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", nargs="?", default=os.environ.get("ISOTRACE_BUILD_DIR", os.path.join(C.SRC, "build")))
    ap.add_argument("--faults", default=os.environ.get("LOCATE_FAULTS", ",".join(f.name for f in I.ALL)))
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", "5")))
    ap.add_argument("--json")
    ap.add_argument("--rate", type=float, default=35.0)
    ap.add_argument("--warmup", type=float, default=25.0)
    ap.add_argument("--clean-tail", type=float, default=20.0,
                    help="last seconds of the warm-up whose verdicts count as false positives")
    ap.add_argument("--fault-max", type=float, default=8.0)
    ap.add_argument("--recover", type=float, default=4.0)
    ap.add_argument("--stop-after", type=int, default=5, help="verdicts after which a fault is removed early")
    ap.add_argument("--pin-daemon", action="store_true",
                    help="pin isotraced and the receiver to CPU 0 with the chain (default: unpinned; pinned, "
                         "their bursts roughly tripled the false positives here)")
    ap.add_argument("--db-poll", action="store_true",
                    help="svc-c waits for db in poll() before each recv (a socket timeout, as libpq does)")
    a = ap.parse_args()
    names = [x for x in a.faults.split(",") if x]  # none: a clean run (false positives only)
    bad = [x for x in names if x not in I.BY_NAME]
    if bad:
        log("unknown fault(s) %s; known: %s" % (bad, ", ".join(I.BY_NAME)))
        return 2
    if os.geteuid() != 0:
        log("locate: needs root (BPF, runc, netns)")
        return 2
    missing = C.need_tools()
    if missing:
        log("locate: missing %s (scripts/install-deps.sh)" % ", ".join(missing))
        return 2
    h.BUILD = os.path.abspath(a.build)
    h.ISOTRACED = os.path.join(h.BUILD, "bin", "isotraced")
    if not os.access(h.ISOTRACED, os.X_OK):
        log("locate: no isotraced at %s (build first)" % h.ISOTRACED)
        return 2
    # SIGTERM unwinds like Ctrl-C, so the finally clauses remove the container, netns, hogs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log("locate: faults %s × %d reps, %s" % (",".join(names), a.reps, h.ISOTRACED))
    with h.Procs() as procs:
        b = Bench(procs, rate=a.rate, warmup=a.warmup, clean_tail=a.clean_tail, fault_max=a.fault_max,
                  recover=a.recover,
                  stop_after=a.stop_after, db_poll=a.db_poll, pin_daemon=a.pin_daemon)
        try:
            b.setup()
            b.warmup()
            for rep in range(1, a.reps + 1):
                for n in names:
                    b.inject(I.BY_NAME[n], rep)
            rc = b.finish()
            if rc != 0:
                log("isotraced exited %s:\n%s" % (rc, procs.log(b.daemon)[-2000:]))
        finally:
            errs = b.close()
            if errs:
                log("clean-up problems: %s" % errs)
        res = b.results()
        res["faults"] = names
        res["reps"] = a.reps
        res["blockio_mode"] = I.BlockIO.MODE
        report(res)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1, default=str)
            log("results: %s" % a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
