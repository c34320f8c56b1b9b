#!/usr/bin/env bash
# Macro benchmark: what TLS and HTTP/2 decoding cost, next to plaintext HTTP/1.1, in one
# run. One nginx (1 worker) serves the same file over HTTP/1.1 on a plaintext port, over
# HTTP/1.1 on a TLS 1.3 port (certificate made here with the openssl CLI) and over h2c
# (HTTP/2, prior knowledge); h2load drives each at a fixed rate (one stream in flight
# per connection), first without isotraced, then with it.
#
#   bash bench/tls_overhead.sh <builddir>
#
# Environment: RATE (req/s, default 2000), DURATION (s, default 10), CLIENTS (default 8),
# FILE_BYTES (default 1024), DAEMON_ARGS, SCHEMES (default "http https h2c"), ROUNDS (each
# scheme's pair of runs repeated, interleaved, default 1: side-by-side figures on a noisy
# machine), PERF=1 (records the daemon with perf during each run and prints its top
# symbols; the daemon then pays for perf too: its cost figures are not comparable).
# Prints per scheme: requests, spans (2 per request: nginx's SERVER span and h2load's
# CLIENT span; h2load is an OpenSSL client too), spans per second, nginx's worker CPU µs per request without and with the daemon
# (the uprobes' own price, their traps, lands there and is not in the BPF figures), BPF ns
# per request and the daemon's CPU ns per request; then the per-program table (ns per
# call of the ssl_* uprobes). kernel.bpf_stats_enabled=1 throughout.
set -euo pipefail

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
ISOTRACED="$BUILD/bin/isotraced"
RATE=${RATE:-2000}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-8}
FILE_BYTES=${FILE_BYTES:-1024}
SCHEMES=${SCHEMES:-http https h2c}
ROUNDS=${ROUNDS:-1}
PERF=${PERF:-0}
SRC=$(cd "$(dirname "$0")/.." && pwd)

cannot() { echo "tls_overhead: cannot run: $*" >&2; exit 2; }
[[ $(id -u) == 0 ]] || cannot "needs root (loads BPF programs, sets kernel.bpf_stats_enabled)"
[[ -x $ISOTRACED ]] || cannot "$ISOTRACED not built"
for tool in nginx h2load openssl bpftool python3; do
  command -v "$tool" >/dev/null || cannot "$tool not installed (scripts/install-deps.sh)"
done

TMP=$(mktemp -d /tmp/isotrace-tls-XXXXXX)
chmod 755 "$TMP"
NGINX_PID="" DAEMON_PID=""
OLD_BPF_STATS=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  for p in $DAEMON_PID $NGINX_PID; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  sysctl -q -w kernel.bpf_stats_enabled="$OLD_BPF_STATS" >/dev/null 2>&1 || true
  [[ ${ISOTRACE_KEEP_TMP:-0} == 1 ]] || rm -rf "$TMP"
}
trap cleanup EXIT
source "$SRC/bench/lib/measure.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
TLS_PORT=$(free_port)
H2_PORT=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TMP/key.pem" \
  -out "$TMP/cert.pem" -days 1 -subj /CN=localhost >/dev/null 2>&1 || cannot "openssl req failed"
mkdir -p "$TMP/www"
head -c "$FILE_BYTES" /dev/zero | tr '\0' 'x' >"$TMP/www/index.html"
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $TMP/body;
  proxy_temp_path $TMP/proxy;
  fastcgi_temp_path $TMP/fastcgi;
  uwsgi_temp_path $TMP/uwsgi;
  scgi_temp_path $TMP/scgi;
  sendfile on;
  keepalive_requests 1000000;
  ssl_certificate $TMP/cert.pem;
  ssl_certificate_key $TMP/key.pem;
  ssl_protocols TLSv1.3;
  server { listen 127.0.0.1:$PORT; root $TMP/www; }
  server { listen 127.0.0.1:$TLS_PORT ssl; root $TMP/www; }
  # sendfile off: with it, nginx sends an HTTP/2 response's DATA after its HEADERS only once
  # the client's delayed ACK arrives (40 ms per request here).
  server { listen 127.0.0.1:$H2_PORT http2; root $TMP/www; sendfile off; }
}
EOF
run_nginx "$TMP" "$TLS_PORT"
WORKER=$(pgrep -P "$NGINX_PID" | head -1)
[[ -n $WORKER ]] || cannot "no nginx worker"

sysctl -q -w kernel.bpf_stats_enabled=1
per_client=$(( (RATE + CLIENTS - 1) / CLIENTS ))
run_load() {  # <tag> <url> [h2load protocol flag]
  cpu_sample "$WORKER" >"$TMP/worker-$1"
  h2load ${3:---h1} -c "$CLIENTS" -m 1 --rps "$per_client" -D "$DURATION" "$2" >"$TMP/h2load-$1.out" 2>&1 ||
    cannot "h2load failed: $(tail -5 "$TMP/h2load-$1.out")"
  cpu_sample "$WORKER" >>"$TMP/worker-$1"
}
TAGS=()
for round in $(seq "$ROUNDS"); do
for scheme in $SCHEMES; do
  tag=$scheme
  (( ROUNDS > 1 )) && tag=$scheme.$round
  TAGS+=("$tag")
  proto=--h1
  case $scheme in
    http) url="http://127.0.0.1:$PORT/index.html" ;;
    https) url="https://127.0.0.1:$TLS_PORT/index.html" ;;
    h2c) url="http://127.0.0.1:$H2_PORT/index.html"; proto=--no-tls-proto=h2c ;;
    *) cannot "unknown scheme $scheme (http, https, h2c)" ;;
  esac
  echo "$scheme: $RATE req/s for $DURATION s without the daemon..." >&2
  run_load "$tag-off" "$url" "$proto"
  echo "$scheme: with the daemon..." >&2
  # shellcheck disable=SC2086
  "$ISOTRACED" --summary-interval 0 --stats-file "$TMP/stats-$tag.json" ${DAEMON_ARGS:-} \
    >"$TMP/isotraced-$tag.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 600); do
    grep -q "probe attached" "$TMP/isotraced-$tag.log" && break
    kill -0 "$DAEMON_PID" 2>/dev/null || cannot "isotraced exited: $(cat "$TMP/isotraced-$tag.log")"
    sleep 0.1
  done
  sleep 1
  cpu_sample "$DAEMON_PID" >"$TMP/cpu-$tag"
  bpf_sample "$DAEMON_PID" >"$TMP/bpf0-$tag.jsonl"
  PERF_PID=""
  if [[ $PERF == 1 ]]; then
    perf record -q --call-graph dwarf,16384 -F 2000 -p "$DAEMON_PID" -o "$TMP/perf-$tag.data" >/dev/null 2>&1 &
    PERF_PID=$!
  fi
  run_load "$tag-on" "$url" "$proto"
  [[ -n $PERF_PID ]] && { kill -INT "$PERF_PID"; wait "$PERF_PID" || true; }
  bpf_sample "$DAEMON_PID" >"$TMP/bpf1-$tag.jsonl"
  cpu_sample "$DAEMON_PID" >>"$TMP/cpu-$tag"
  kill -TERM "$DAEMON_PID"
  wait "$DAEMON_PID" || true
  DAEMON_PID=""
done
done

python3 - "$TMP" "$RATE" "$DURATION" "$CLIENTS" "$FILE_BYTES" "$SRC" "${TAGS[@]}" <<'PY'
import json, re, subprocess, sys
tmp, rate, dur, clients, fbytes, src = sys.argv[1:7]
tags = sys.argv[7:]
def done(tag):
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", open(f"{tmp}/h2load-{tag}.out").read())
    return int(m.group(4)) if m else 0
def cpu_ns(path):
    (t0, n0), (t1, n1) = [map(int, l.split()) for l in open(path)]
    return n1 - n0
print()
print(f"TLS next to plaintext: nginx (1 worker, {fbytes} B file, HTTP/1.1 keep-alive) at {rate} req/s "
      f"from h2load -c {clients}, {dur} s per run")
print(f"{'scheme':>8} {'requests':>9} {'spans':>7} {'spans/s':>8} {'nginx us/req off':>17} {'on':>6}"
      f" {'BPF ns/req':>11} {'daemon ns/req':>14}")
tables = []
for scheme in tags:
    n_off, n_on = done(f"{scheme}-off"), done(f"{scheme}-on")
    w_off = cpu_ns(f"{tmp}/worker-{scheme}-off") / max(n_off, 1) / 1000
    w_on = cpu_ns(f"{tmp}/worker-{scheme}-on") / max(n_on, 1) / 1000
    st = json.load(open(f"{tmp}/stats-{scheme}.json"))
    spans = st["tracker"]["spans"]
    daemon_ns = cpu_ns(f"{tmp}/cpu-{scheme}") / max(n_on, 1)
    table = subprocess.run(["python3", f"{src}/bench/lib/bpf_table.py", f"{tmp}/bpf0-{scheme}.jsonl",
                            f"{tmp}/bpf1-{scheme}.jsonl", str(n_on), f"{scheme} at {rate} req/s", src],
                           capture_output=True, text=True).stdout
    bpf = re.search(r"all programs\s+(\d+)\s+ns of BPF per request", table)
    bpf_ns = float(bpf.group(1)) if bpf else float("nan")
    l7 = st["probes"]["l7"]
    print(f"{scheme:>8} {n_on:>9} {spans:>7} {spans / float(dur):>8.0f} {w_off:>17.1f} {w_on:>6.1f}"
          f" {bpf_ns:>11.0f} {daemon_ns:>14.0f}   (tls_ciphertext {l7.get('tls_ciphertext', 0)},"
          f" tls_untied {l7.get('tls_untied', 0)}, kernel lost {l7['ringbuf_drops']})")
    tables.append(table)
for t in tables:
    print(t.rstrip())
PY
if [[ $PERF == 1 ]]; then
  for tag in "${TAGS[@]}"; do
    [[ -f $TMP/perf-$tag.data ]] || continue
    echo; echo "perf, daemon during $tag (self %, top 25):"
    perf report -q -i "$TMP/perf-$tag.data" --no-children -g none --sort symbol --percent-limit 0.8 2>/dev/null | cut -c1-120 |
      grep -v '^$' | grep -v '^ *|' | grep -v -- '---' | head -25
  done
fi
