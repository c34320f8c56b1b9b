#!/usr/bin/env bash
# Macro benchmark: what isotraced costs on a node with no traffic for it, node-wide
# (no --pid), embedded mode (no export). Each build given is run ROUNDS times,
# interleaved, for DURATION seconds after a settle of SETTLE seconds; per run it prints
# the daemon's CPU in ms per second (schedstat of all its threads), its poll thread's
# share, and the poll thread's wake-ups per second (voluntary context switches).
#
#   bash bench/idle_cost.sh <builddir> [<other builddir> ...]
#
# Environment: DURATION (s, default 30), SETTLE (s, default 8), ROUNDS (default 2).
# Needs root. The node is not quiet on its own: whatever else runs (other processes'
# execs, sockets) is what an idle daemon sees too; interleaving the builds shares it.
set -euo pipefail

DURATION=${DURATION:-30}
SETTLE=${SETTLE:-8}
ROUNDS=${ROUNDS:-2}
[[ $# -ge 1 ]] || { echo "usage: $0 <builddir> [<builddir> ...]" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "idle_cost: cannot run: needs root (loads BPF programs)" >&2; exit 2; }

sample() {  # pid → "total_ns poll_ns poll_voluntary_switches"
  local pid=$1 total=0 poll=0 sw=0 t
  for t in /proc/"$pid"/task/*; do
    local ns
    ns=$(awk '{print $1}' "$t/schedstat" 2>/dev/null || echo 0)
    total=$((total + ns))
    if [[ ${t##*/} == "$pid" ]]; then
      poll=$ns
      sw=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status")
    fi
  done
  echo "$total $poll $sw"
}

printf '%-40s %5s %12s %14s %16s\n' build round "cpu ms/s" "poll ms/s" "poll wakeups/s"
for round in $(seq "$ROUNDS"); do
  for b in "$@"; do
    bin=$(cd "$b" && pwd)/bin/isotraced
    [[ -x $bin ]] || { echo "idle_cost: $bin not built" >&2; exit 2; }
    log=$(mktemp /tmp/isotrace-idle-XXXXXX.log)
    "$bin" --summary-interval 0 >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do grep -q "probe attached" "$log" && break; sleep 0.1; done
    sleep "$SETTLE"
    read -r t0 p0 s0 < <(sample "$pid")
    sleep "$DURATION"
    read -r t1 p1 s1 < <(sample "$pid")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    rm -f "$log"
    awk -v b="$b" -v r="$round" -v d="$DURATION" -v t="$((t1 - t0))" -v p="$((p1 - p0))" -v s="$((s1 - s0))" \
      'BEGIN { printf "%-40s %5d %12.2f %14.2f %16.1f\n", b, r, t / d / 1e6, p / d / 1e6, s / d }'
  done
done
