"""Reading what the receiver got: the chain's spans per request, linking checks, per-hop
breakdown of a time window, and the verdict logs of each injection (confusion matrix,
accuracy, time to the first correct verdict)."""
import collections
import statistics

HOPS = [("L", "loadgen", 3), ("NS", "nginx", 2), ("NC", "nginx", 3), ("BS", "svc-b", 2), ("BC", "svc-b", 3),
        ("CS", "svc-c", 2)]
HOP_NAMES = {"L": "loadgen CLIENT", "NS": "nginx SERVER", "NC": "nginx CLIENT", "BS": "svc-b SERVER",
             "BC": "svc-b CLIENT", "CS": "svc-c SERVER"}
PARTS = ["isotrace.app.oncpu_ns", "isotrace.kernel.runq_ns", "isotrace.container.throttled_ns",
         "isotrace.kernel.blkio_ns", "isotrace.kernel.memstall_ns", "isotrace.vm.steal_ns",
         "isotrace.offcpu_other_ns"]
SHORT = {"isotrace.app.oncpu_ns": "cpu", "isotrace.kernel.runq_ns": "runq",
         "isotrace.container.throttled_ns": "throt", "isotrace.kernel.blkio_ns": "blkio",
         "isotrace.kernel.memstall_ns": "mem", "isotrace.vm.steal_ns": "steal",
         "isotrace.offcpu_other_ns": "other"}
VERDICT_KEYS = ("isotrace.verdict.service", "isotrace.verdict.layer", "isotrace.verdict.cause")


def svc(span):
    return span.get("resource", {}).get("service.name", "")


def dur_ns(span):
    return int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])


def start_s(span):
    return int(span["startTimeUnixNano"]) / 1e9


class Index:
    """The chain's spans by request key (url.query), and every span by (trace, span) id."""

    def __init__(self, spans, prefix):
        self.by_key = collections.defaultdict(dict)   # key -> hop -> [spans]
        self.by_id = {}
        self.trace_keys = collections.defaultdict(set)
        needle = "req=%s-" % prefix
        hop_of = {(s, k): n for n, s, k in HOPS}
        for s in spans:
            self.by_id[(s.get("traceId"), s.get("spanId"))] = s
            q = s.get("attributes", {}).get("url.query") or ""
            if not q.startswith(needle):
                continue
            hop = hop_of.get((svc(s), s.get("spanKind")))
            if hop is None:
                continue
            self.by_key[q].setdefault(hop, []).append(s)
            self.trace_keys[s.get("traceId")].add(q)

    def chain(self, key):
        """hop -> span, for hops seen exactly once."""
        return {hop: v[0] for hop, v in self.by_key.get(key, {}).items() if len(v) == 1}


def check_linking(index, load_recs, sample=None):
    """For each request (or a sample): all six spans present, one trace id, each parent is
    the span before it, a sent traceparent's trace id kept. Returns (checked, problems,
    counts), problems a list of strings."""
    recs = [r for r in load_recs if r.get("st") == 200]
    if sample is not None and len(recs) > sample:
        step = len(recs) / sample
        recs = [recs[int(i * step)] for i in range(sample)]
    problems = []
    counts = collections.Counter()
    for r in recs:
        key = r["k"]
        got = index.by_key.get(key, {})
        ok = True
        for hop, _, _ in HOPS:
            n = len(got.get(hop, []))
            if n != 1:
                problems.append("%s: %d %s spans" % (key, n, HOP_NAMES[hop]))
                counts["missing_or_dup:" + hop] += 1
                ok = False
        if not ok:
            continue
        ch = index.chain(key)
        tids = {ch[h_]["traceId"] for h_, _, _ in HOPS}
        if len(tids) != 1:
            problems.append("%s: %d trace ids: %s" % (key, len(tids), {h_: ch[h_]["traceId"][:8] for h_, _, _ in HOPS}))
            counts["trace_split"] += 1
            ok = False
        if r.get("tid"):
            # The app's own context (docs/locate.md, "app context wins"): the loadgen CLIENT
            # span is the child of the sent parent; nginx's SERVER span is then the child of
            # the loadgen CLIENT span, or of the sent parent (a sibling, as the W3C header
            # says): both are accepted and counted.
            if ch["L"].get("parentSpanId") != r.get("pid"):
                problems.append("%s (traceparent): loadgen CLIENT parent %s, sent parent %s" % (
                    key, ch["L"].get("parentSpanId") or "-", r.get("pid")))
                counts["tp_client_parent"] += 1
                ok = False
            nsp = ch["NS"].get("parentSpanId")
            if nsp == r.get("pid"):
                counts["tp_nginx_parent_is_sent_parent"] += 1
            elif nsp == ch["L"].get("spanId"):
                counts["tp_nginx_parent_is_client_span"] += 1
        for (prev, _, _), (cur, _, _) in zip(HOPS, HOPS[1:]):
            if r.get("tid") and cur == "NS" and ch[cur].get("parentSpanId") == r.get("pid"):
                continue
            if ch[cur].get("parentSpanId") != ch[prev].get("spanId"):
                problems.append("%s%s: parent of %s is %s, want %s's span %s" % (
                    key, " (traceparent)" if r.get("tid") else "", HOP_NAMES[cur], ch[cur].get("parentSpanId") or "-",
                    HOP_NAMES[prev], ch[prev].get("spanId")))
                counts["parent:" + cur + ("/tp" if r.get("tid") else "")] += 1
                ok = False
        if r.get("tid") and ch["L"]["traceId"] != r["tid"]:
            problems.append("%s: sent trace id %s, spans have %s" % (key, r["tid"], ch["L"]["traceId"]))
            counts["traceparent_lost"] += 1
            ok = False
        counts["ok" if ok else "bad"] += 1
    return len(recs), problems, counts


def hop_breakdown(index, load_recs, t0, t1):
    """Means per hop (ms) of duration and each breakdown part, and total retransmits, over
    the requests sent in [t0, t1)."""
    acc = {hop: collections.defaultdict(list) for hop, _, _ in HOPS}
    n = 0
    for r in load_recs:
        if not (t0 <= r["t0"] < t1) or r.get("st") != 200:
            continue
        ch = index.chain(r["k"])
        if not ch:
            continue
        n += 1
        for hop, s in ch.items():
            a = s.get("attributes", {})
            acc[hop]["dur"].append(dur_ns(s) / 1e6)
            for p in PARTS:
                if p in a:
                    acc[hop][SHORT[p]].append(int(a[p]) / 1e6)
            acc[hop]["retx"].append(int(a.get("isotrace.net.retransmits", 0) or 0))
    out = {"requests": n}
    for hop, d in acc.items():
        out[hop] = {k: (sum(v) if k == "retx" else statistics.mean(v)) for k, v in d.items() if v}
        out[hop]["n"] = len(d.get("dur", []))
    return out


def format_breakdown(b, ref=None):
    lines = []
    for hop, _, _ in HOPS:
        d = b.get(hop) or {}
        if not d.get("n"):
            lines.append("    %-15s (no spans)" % HOP_NAMES[hop])
            continue
        cols = ["dur", "cpu", "runq", "throt", "blkio", "mem", "steal", "other"]
        txt = []
        for c in cols:
            if c not in d:
                continue
            v = d[c]
            if ref and hop in ref and c in ref[hop]:
                txt.append("%s %.1f(%+.1f)" % (c, v, v - ref[hop][c]))
            else:
                txt.append("%s %.1f" % (c, v))
        txt.append("retx %d" % d.get("retx", 0))
        lines.append("    %-15s n=%-4d %s" % (HOP_NAMES[hop], d["n"], "  ".join(txt)))
    return "\n".join(lines)


CHILD = {"NS": "NC", "NC": "BS", "BS": "BC", "BC": "CS"}


def own(b, hop):
    """A hop's breakdown with its child span's duration taken out of its off-CPU "other"
    (what the child explains); for svc-b CLIENT what is left is the gap around svc-c's
    SERVER span (network, accept queue)."""
    d = dict(b.get(hop) or {})
    ch = (b.get(CHILD.get(hop)) or {}).get("dur")
    if ch is not None and "other" in d:
        d["other"] = d["other"] - ch
    return d


def largest_excess(b, ref):
    """(hop, part, excess ms) of the largest increase of a hop's own time (children taken
    out) over the reference window."""
    best = None
    for hop in ("NS", "NC", "BS", "BC", "CS"):
        d, r = own(b, hop), own(ref or {}, hop)
        for c in ("cpu", "runq", "throt", "blkio", "mem", "steal", "other"):
            if c in d and c in r:
                x = d[c] - r[c]
                if best is None or x > best[2]:
                    best = (hop, c, x)
    return best


def verdict_of(rec):
    a = rec.get("attributes", {})
    return tuple(str(a.get(k, "")) for k in VERDICT_KEYS)


def trace_start(index, log):
    """Wall-clock start (s) of the trace a verdict log names: its root span, else the
    earliest chain span of that trace, else the log's time minus the verdict's duration."""
    s = index.by_id.get((log.get("traceId"), log.get("spanId")))
    if s is not None:
        return start_s(s)
    starts = []
    for key in index.trace_keys.get(log.get("traceId"), ()):
        for spans in index.by_key[key].values():
            starts.extend(start_s(x) for x in spans if x.get("traceId") == log.get("traceId"))
    if starts:
        return min(starts)
    a = log.get("attributes", {})
    t = int(log.get("timeUnixNano") or 0) or int(log.get("observedTimeUnixNano") or 0)
    return (t - int(a.get("isotrace.verdict.duration_ns", 0) or 0)) / 1e9 if t else None


def ours(index, log):
    return log.get("traceId") in index.trace_keys


def majority(triples):
    if not triples:
        return None
    c = collections.Counter(triples)
    top = max(c.values())
    # ties: the one seen first
    for t in triples:
        if c[t] == top:
            return t


def fmt_triple(t):
    return "none" if t is None else "%s/%s/%s" % t


def confusion(injections):
    """rows: truth; columns: predicted majority. Returns (rows, cols, counts)."""
    rows, cols = [], []
    counts = collections.Counter()
    for inj in injections:
        tr, pr = fmt_triple(tuple(inj["truth"])), fmt_triple(tuple(inj["majority"]) if inj["majority"] else None)
        if tr not in rows:
            rows.append(tr)
        if pr not in cols:
            cols.append(pr)
        counts[(tr, pr)] += 1
    # the truths first among the columns, in row order, then the rest
    cols = [r for r in rows if r in cols] + [c for c in cols if c not in rows]
    return rows, cols, counts


def format_confusion(injections):
    rows, cols, counts = confusion(injections)
    if not rows:
        return "(no injections)"
    w0 = max(len(r) for r in rows) + 2
    ws = [max(len(c), 4) + 2 for c in cols]
    lines = ["truth \\ predicted (majority per injection)".ljust(w0) + "".join(c.rjust(w) for c, w in zip(cols, ws))]
    for r in rows:
        lines.append(r.ljust(w0) + "".join(str(counts.get((r, c), 0) or ".").rjust(w) for c, w in zip(cols, ws)))
    return "\n".join(lines)


def median(xs):
    return statistics.median(xs) if xs else None
