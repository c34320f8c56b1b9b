#!/usr/bin/env bash
# Macro benchmark: what isotraced costs a real workload. wrk drives nginx (static file,
# keep-alive) on 127.0.0.1; the same load runs without and with the daemon, and a third
# run with kernel.bpf_stats_enabled=1 measures the BPF programs themselves.
#
#   bash bench/daemon_overhead.sh <builddir>
#
# Environment: DURATION (s per measured run, default 10), ROUNDS (without/with pairs,
# default 3), BPF_STATS_DURATION (default 5),
# CONNS (wrk connections, default 16), THREADS (wrk threads, default 1),
# FILE_BYTES (static file size, default 1024), DAEMON_ARGS (extra isotraced flags),
# FRESH=1 (one connection per request: wrk sends "Connection: close", so connection
# setup and teardown are on the measured path).
# Needs root (BPF, sysctl), nginx, wrk, bpftool, python3. Exits 2 when it cannot run.
# See bench/README.md for what each figure means.
set -euo pipefail

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
ISOTRACED="$BUILD/bin/isotraced"
DURATION=${DURATION:-10}
BPF_STATS_DURATION=${BPF_STATS_DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
THREADS=${THREADS:-1}
FILE_BYTES=${FILE_BYTES:-1024}

cannot() { echo "daemon_overhead: cannot run: $*" >&2; exit 2; }
[[ $(id -u) == 0 ]] || cannot "needs root (loads BPF programs, sets kernel.bpf_stats_enabled)"
[[ -x $ISOTRACED ]] || cannot "$ISOTRACED not built"
for tool in nginx wrk bpftool python3; do
  command -v "$tool" >/dev/null || cannot "$tool not installed (scripts/install-deps.sh)"
done

TMP=$(mktemp -d /tmp/isotrace-bench-XXXXXX)
chmod 755 "$TMP"
NGINX_PID=""
DAEMON_PID=""
OLD_BPF_STATS=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  # Only what this script started, by pid.
  [[ -n $DAEMON_PID ]] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
  [[ -n $NGINX_PID ]] && kill -TERM "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null || true
  sysctl -q -w kernel.bpf_stats_enabled="$OLD_BPF_STATS" >/dev/null 2>&1 || true
  [[ ${ISOTRACE_KEEP_TMP:-0} == 1 ]] || rm -rf "$TMP"
}
trap cleanup EXIT
source "$(cd "$(dirname "$0")" && pwd)/lib/measure.sh"

start_nginx "$TMP" "$FILE_BYTES"
URL="http://127.0.0.1:$PORT/index.html"

# run_wrk <seconds> <name>: wrk's output into $TMP/<name>.wrk
run_wrk() {
  local extra=()
  [ "${FRESH:-0}" = 1 ] && extra=(-H "Connection: close")
  wrk -t"$THREADS" -c"$CONNS" -d"$1"s --latency "${extra[@]}" "$URL" >"$TMP/$2.wrk" 2>&1 ||
    cannot "wrk failed: $(cat "$TMP/$2.wrk")"
}


start_daemon() {  # $1: log file
  # shellcheck disable=SC2086  # DAEMON_ARGS is a list of flags
  "$ISOTRACED" --summary-interval 0 ${DAEMON_ARGS:-} >"$1" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 600); do
    grep -q "probe attached" "$1" && return 0
    kill -0 "$DAEMON_PID" 2>/dev/null || cannot "isotraced exited: $(cat "$1")"
    sleep 0.1
  done
  cannot "isotraced did not attach in 60 s"
}
stop_daemon() {
  kill -TERM "$DAEMON_PID"
  wait "$DAEMON_PID" || true
  DAEMON_PID=""
}

echo "warm-up (2 s)..." >&2
run_wrk 2 warmup
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# Rounds alternate without/with so that drift in what else the shared machine does
# hits both sides alike.
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS: without the daemon (${DURATION} s)..." >&2
  run_wrk "$DURATION" "off$r"
  echo "round $r/$ROUNDS: with the daemon (${DURATION} s)..." >&2
  start_daemon "$TMP/isotraced$r.log"
  run_wrk 1 "warm$r"  # the traced path warms up (first events, resources), not measured
  cpu_sample "$DAEMON_PID" >"$TMP/cpu$r"
  run_wrk "$DURATION" "on$r"
  cpu_sample "$DAEMON_PID" >>"$TMP/cpu$r"
  if [[ $r == "$ROUNDS" ]]; then
    echo "with the daemon and kernel.bpf_stats_enabled=1 (${BPF_STATS_DURATION} s)..." >&2
    sysctl -q -w kernel.bpf_stats_enabled=1
    bpf_sample "$DAEMON_PID" >"$TMP/bpf0.jsonl"
    run_wrk "$BPF_STATS_DURATION" stats
    bpf_sample "$DAEMON_PID" >"$TMP/bpf1.jsonl"
    sysctl -q -w kernel.bpf_stats_enabled="$OLD_BPF_STATS"
  fi
  stop_daemon
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

SRC=$(cd "$(dirname "$0")/.." && pwd)
python3 - "$TMP" "$ROUNDS" "$(getconf CLK_TCK)" "$(nproc)" "$DURATION" "$BPF_STATS_DURATION" \
  "$THREADS" "$CONNS" "$FILE_BYTES" "$SRC" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY'
import glob, json, os, re, sys

tmp, rounds, clk_tck, ncpu, dur, sdur, threads, conns, fbytes, src, load0, load1 = sys.argv[1:]
rounds, clk_tck = int(rounds), int(clk_tck)

def wrk(name):
    text = open(f"{tmp}/{name}.wrk").read()
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
    errs = re.search(r"Socket errors: (.*)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if not m or not rps:
        sys.exit(f"cannot parse wrk output:\n{text}")
    return {"requests": int(m.group(1)), "rps": float(rps.group(1)),
            "p50": lat.get("50", "?"), "p99": lat.get("99", "?"),
            "errors": (errs.group(1) if errs else "") + (f" non-2xx {non2xx.group(1)}" if non2xx else "")}

print()
print(f"isotrace daemon overhead: nginx (1 worker, static {fbytes} B file, keep-alive) driven by "
      f"wrk -t{threads} -c{conns}")
print(f"{rounds} rounds of {dur} s without / {dur} s with the daemon (embedded mode); {ncpu} CPUs "
      f"shared with everything else; load average {load0} before, {load1} after")
print()
print(f"{'round':>5} {'req/s without':>14} {'req/s with':>11} {'with/without':>12}"
      f" {'p50 without':>12} {'p50 with':>9} {'p99 without':>12} {'p99 with':>9}"
      f" {'daemon CPU ms':>14} {'ms/1000 req':>12} {'spans/req':>10} {'events lost':>12}")
tot_off = tot_on = 0
tot_ticks = tot_ns = 0
tot_spans = tot_traced = tot_lost = 0
errors = []
for r in range(1, rounds + 1):
    off, on = wrk(f"off{r}"), wrk(f"on{r}")
    for name, w in (("without", off), ("with", on)):
        if w["errors"]:
            errors.append(f"round {r} {name}: {w['errors']}")
    (t0, n0), (t1, n1) = [map(int, l.split()) for l in open(f"{tmp}/cpu{r}")]
    ticks_ms = (t1 - t0) * 1000.0 / clk_tck
    tot_off += off["requests"]
    tot_on += on["requests"]
    tot_ticks += ticks_ms
    tot_ns += n1 - n0
    traced = on["requests"] + wrk(f"warm{r}")["requests"] + (wrk("stats")["requests"] if r == rounds else 0)
    m = re.search(r"stopped: (\d+) spans, (\d+) events, (\d+) lost", open(f"{tmp}/isotraced{r}.log").read())
    spans = int(m.group(1)) if m else 0
    tot_spans += spans
    tot_traced += traced
    lost = int(m.group(3)) if m else 0
    tot_lost += lost
    print(f"{r:>5} {off['rps']:>14.0f} {on['rps']:>11.0f} {on['rps'] / off['rps']:>12.3f}"
          f" {off['p50']:>12} {on['p50']:>9} {off['p99']:>12} {on['p99']:>9}"
          f" {ticks_ms:>14.0f} {ticks_ms / (on['requests'] / 1000):>12.3f}"
          f" {spans / max(traced, 1):>10.2f} {lost:>12}")
for e in errors:
    print(f"  wrk errors: {e}")
print()
print(f"throughput with/without the daemon (all rounds)     {tot_on / tot_off:8.3f}"
      f"   ({tot_on} vs {tot_off} requests)")
print(f"daemon CPU per 1000 requests, utime+stime            {tot_ticks / (tot_on / 1000):8.3f} ms"
      f"   ({tot_ticks:.0f} ms over {tot_on} requests, {1000 // clk_tck} ms ticks;"
      f" {100 * tot_ticks / 1000 / (float(dur) * rounds):.1f}% of one CPU)")
print(f"daemon CPU per 1000 requests, schedstat on-CPU       {tot_ns / 1e6 / (tot_on / 1000):8.3f} ms")
print(f"spans per wrk request                                {tot_spans / max(tot_traced, 1):8.3f}"
      f"   (nginx SERVER + wrk CLIENT = 2; more = other HTTP on the machine;"
      f" {tot_lost} events lost in the kernel)")

st = wrk("stats")
sys.stdout.flush()
os.execvp("python3", ["python3", f"{src}/bench/lib/bpf_table.py", f"{tmp}/bpf0.jsonl", f"{tmp}/bpf1.jsonl",
                      str(st["requests"]), f"{sdur} s run ({st['requests']} requests, {st['rps']:.0f} req/s)", src,
                      str(tot_ns / max(tot_on, 1))])
PY
