#!/usr/bin/env bash
# Macro benchmark: what isotraced costs per request at a fixed request rate, exporting
# every span over OTLP/gRPC to the independent npm receiver (tests/e2e/otlp_receiver.mjs).
# h2load (Debian's nghttp2-client) drives nginx over HTTP/1.1 keep-alive at RATES req/s
# for DURATION seconds each; kernel.bpf_stats_enabled=1 throughout.
#
#   bash bench/steady_rate.sh <builddir>
#
# Environment: RATES (space-separated req/s, default "8000 1000"), DURATION (s, default
# 20), CLIENTS (h2load connections, default 16), FILE_BYTES (default 1024), DAEMON_ARGS,
# PERF=1 (samples the daemon with perf during each rate and prints its top symbols and
# threads; PERF_KEEP=<dir> keeps the perf.data files there).
# Prints per rate: requests done, spans the receiver decoded (2 per request: nginx's
# SERVER span and h2load's CLIENT span), spans dropped by the exporter and records lost
# in the kernel, BPF ns per request, daemon CPU ns per request, their sum, and the
# daemon's peak RSS. Needs root, nginx, h2load, node (+ tests/e2e/node_modules), bpftool.
set -euo pipefail

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
ISOTRACED="$BUILD/bin/isotraced"
RATES=${RATES:-"8000 1000"}
DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-16}
FILE_BYTES=${FILE_BYTES:-1024}
SRC=$(cd "$(dirname "$0")/.." && pwd)

cannot() { echo "steady_rate: cannot run: $*" >&2; exit 2; }
[[ $(id -u) == 0 ]] || cannot "needs root (loads BPF programs, sets kernel.bpf_stats_enabled)"
[[ -x $ISOTRACED ]] || cannot "$ISOTRACED not built"
for tool in nginx h2load node bpftool python3; do
  command -v "$tool" >/dev/null || cannot "$tool not installed (scripts/install-deps.sh)"
done
[[ -d $SRC/tests/e2e/node_modules/@grpc/grpc-js ]] || cannot "npm packages missing (scripts/install-deps.sh)"

TMP=$(mktemp -d /tmp/isotrace-steady-XXXXXX)
chmod 755 "$TMP"
NGINX_PID="" DAEMON_PID="" RECV_PID=""
OLD_BPF_STATS=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  for p in $DAEMON_PID $NGINX_PID $RECV_PID; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  sysctl -q -w kernel.bpf_stats_enabled="$OLD_BPF_STATS" >/dev/null 2>&1 || true
  [[ ${ISOTRACE_KEEP_TMP:-0} == 1 ]] || rm -rf "$TMP"
}
trap cleanup EXIT
source "$SRC/bench/lib/measure.sh"

start_nginx "$TMP" "$FILE_BYTES"
URL="http://127.0.0.1:$PORT/index.html"

sysctl -q -w kernel.bpf_stats_enabled=1
results=()
for rate in $RATES; do
  per_client=$(( (rate + CLIENTS - 1) / CLIENTS ))
  echo "rate $rate req/s ($CLIENTS clients x $per_client), $DURATION s..." >&2
  node "$SRC/tests/e2e/otlp_receiver.mjs" --port 0 --out /dev/null >"$TMP/recv$rate.out" 2>"$TMP/recv$rate.err" &
  RECV_PID=$!
  for _ in $(seq 100); do grep -q LISTENING "$TMP/recv$rate.out" && break; sleep 0.1; done
  RPORT=$(awk '/LISTENING/ {print $2}' "$TMP/recv$rate.out")
  [[ -n $RPORT ]] || cannot "the OTLP receiver did not start: $(cat "$TMP/recv$rate.err")"
  # shellcheck disable=SC2086
  "$ISOTRACED" --summary-interval 0 --otlp-endpoint "http://127.0.0.1:$RPORT" \
    --stats-file "$TMP/stats$rate.json" ${DAEMON_ARGS:-} >"$TMP/isotraced$rate.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 600); do
    grep -q "probe attached" "$TMP/isotraced$rate.log" && break
    kill -0 "$DAEMON_PID" 2>/dev/null || cannot "isotraced exited: $(cat "$TMP/isotraced$rate.log")"
    sleep 0.1
  done
  cpu_sample "$DAEMON_PID" >"$TMP/cpu$rate"
  bpf_sample "$DAEMON_PID" >"$TMP/bpf0-$rate.jsonl"
  PERF_PID=""
  if [[ ${PERF:-0} == 1 ]]; then
    perf record -q -F 2000 -p "$DAEMON_PID" -o "$TMP/perf$rate.data" >/dev/null 2>&1 &
    PERF_PID=$!
  fi
  h2load --h1 -c "$CLIENTS" -m 1 --rps "$per_client" -D "$DURATION" "$URL" >"$TMP/h2load$rate.out" 2>&1 ||
    cannot "h2load failed: $(tail -5 "$TMP/h2load$rate.out")"
  [[ -n $PERF_PID ]] && { kill -INT "$PERF_PID"; wait "$PERF_PID" || true; }
  bpf_sample "$DAEMON_PID" >"$TMP/bpf1-$rate.jsonl"
  cpu_sample "$DAEMON_PID" >>"$TMP/cpu$rate"
  grep VmHWM "/proc/$DAEMON_PID/status" | awk '{print $2}' >"$TMP/rss$rate"
  cp "/proc/$DAEMON_PID/smaps" "$TMP/smaps$rate"
  kill -TERM "$DAEMON_PID"
  wait "$DAEMON_PID" || true
  DAEMON_PID=""
  sleep 1  # the receiver writes what the shutdown flush sent
  kill -TERM "$RECV_PID"
  wait "$RECV_PID" || true
  RECV_PID=""
  results+=("$rate")
done

python3 - "$TMP" "$DURATION" "$CLIENTS" "$FILE_BYTES" "$SRC" "${results[@]}" <<'PY'
import json, re, subprocess, sys
tmp, dur, clients, fbytes, src, *rates = sys.argv[1:]
print()
print(f"isotrace at a fixed rate: nginx (1 worker, static {fbytes} B file) driven by h2load --h1 "
      f"-c {clients} for {dur} s per rate, exporting OTLP/gRPC to the npm receiver")
print(f"{'rate':>6} {'requests':>9} {'spans recv':>11} {'spans/req':>10} {'dropped':>8} {'kernel lost':>12}"
      f" {'BPF ns/req':>11} {'daemon ns/req':>14} {'total us/req':>13} {'RSS MiB':>8}")
for rate in rates:
    out = open(f"{tmp}/h2load{rate}.out").read()
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", out)
    done = int(m.group(3)) if m else 0
    recv = sum(int(x) for x in re.findall(r"CALL traces items=(\d+) status=0", open(f"{tmp}/recv{rate}.err").read()))
    st = json.load(open(f"{tmp}/stats{rate}.json"))
    exp = st.get("exporter") or {}
    dropped = exp.get("dropped_total", 0)
    lost = st["probes"]["l7"]["ringbuf_drops"]
    (t0, n0), (t1, n1) = [map(int, l.split()) for l in open(f"{tmp}/cpu{rate}")]
    daemon_ns = (n1 - n0) / max(done, 1)
    table = subprocess.run(["python3", f"{src}/bench/lib/bpf_table.py", f"{tmp}/bpf0-{rate}.jsonl",
                            f"{tmp}/bpf1-{rate}.jsonl", str(done), f"{rate} req/s", src],
                           capture_output=True, text=True).stdout
    bpf = re.search(r"all programs\s+(\d+)\s+ns of BPF per request", table)
    bpf_ns = float(bpf.group(1)) if bpf else float("nan")
    rss = int(open(f"{tmp}/rss{rate}").read().strip() or 0) / 1024
    print(f"{rate:>6} {done:>9} {recv:>11} {recv / max(done, 1):>10.3f} {dropped:>8} {lost:>12}"
          f" {bpf_ns:>11.0f} {daemon_ns:>14.0f} {(bpf_ns + daemon_ns) / 1000:>13.2f} {rss:>8.1f}")
    open(f"{tmp}/table{rate}.txt", "w").write(table)


def rss_by_kind(path):
    """Resident KiB at the end of the run, by what maps it (ring buffers are mapped twice
    by libbpf's consumer, so each counts double)."""
    kinds, name = {}, None
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and "-" in f[0] and not f[0].endswith(":"):
            path_ = f[5] if len(f) > 5 else ""
            name = ("bpf ring buffers" if "ringbuf" in line or "bpf-map" in line else
                    "heap" if path_ == "[heap]" else
                    "stacks" if path_.startswith("[stack") else
                    "isotraced" if path_.endswith("/isotraced") else
                    "libraries" if ".so" in path_ else
                    "anonymous" if not path_ else "other")
        elif f and f[0] == "Rss:":
            kinds[name] = kinds.get(name, 0) + int(f[1])
    return kinds


for rate in rates:
    k = rss_by_kind(f"{tmp}/smaps{rate}")
    print(f"RSS at the end of {rate} req/s, MiB: " + ", ".join(
        f"{n} {v / 1024:.1f}" for n, v in sorted(k.items(), key=lambda x: -x[1])) +
          f" (total {sum(k.values()) / 1024:.1f})")
for rate in rates:
    print(open(f"{tmp}/table{rate}.txt").read().rstrip())
PY
if [[ ${PERF:-0} == 1 ]]; then
  for rate in "${results[@]}"; do
    [[ -f $TMP/perf$rate.data ]] || continue
    echo; echo "perf, daemon at $rate req/s (self %, by thread and symbol, top 30):"
    perf report -q -i "$TMP/perf$rate.data" --no-children --sort comm,dso,symbol --percent-limit 0.7 2>/dev/null |
      cut -c1-150 | grep -v '^$' | head -30
    echo "by thread:"
    perf report -q -i "$TMP/perf$rate.data" --no-children --sort comm 2>/dev/null | grep -v '^$' | head -10
    [[ -n ${PERF_KEEP:-} ]] && cp "$TMP/perf$rate.data" "$PERF_KEEP/perf$rate.data"
  done
fi
