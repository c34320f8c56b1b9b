#!/usr/bin/env bash
# Runs every benchmark and prints its figures (`make bench` calls this).
#   bash bench/run.sh <builddir>
# Micro benchmarks: every <builddir>/bin/*_bench (Google Benchmark), pinned to one CPU.
# Macro benchmarks: bench/daemon_overhead.sh (needs root; says so and moves on without).
# Localization accuracy: bench/locate/run.py, LOCATE_REPS injections of each fault (default
# 2; needs root, runc, nftables, stress-ng; says so and moves on without).
# BENCH_ARGS is passed to the micro benchmarks (e.g. --benchmark_filter=Encode).
# Exit status: 1 when a benchmark failed, 0 otherwise (one that cannot run here is
# reported, not failed).
set -uo pipefail

BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
[[ -d $BUILD/bin ]] || { echo "bench/run.sh: no $BUILD/bin; build first (make build)" >&2; exit 1; }

failed=0
cpu=$(($(nproc) - 1))
shopt -s nullglob
micro=("$BUILD"/bin/*_bench)
[[ ${#micro[@]} -gt 0 ]] || { echo "bench/run.sh: no *_bench binaries in $BUILD/bin" >&2; failed=1; }
for b in "${micro[@]}"; do
  echo "=== $(basename "$b") (pinned to CPU $cpu) ==="
  # shellcheck disable=SC2086
  taskset -c "$cpu" "$b" --benchmark_min_time=1 ${BENCH_ARGS:-} || { echo "FAILED: $b"; failed=1; }
  echo
done

echo "=== daemon_overhead.sh ==="
bash "$HERE/daemon_overhead.sh" "$BUILD"
case $? in
  0) ;;
  2) echo "(daemon_overhead.sh could not run here; see the message above)" ;;
  *) echo "FAILED: daemon_overhead.sh"; failed=1 ;;
esac
echo
echo "=== ctxswitch.sh (context switches/s without and with the daemon) ==="
bash "$HERE/ctxswitch.sh" "$BUILD" || { echo "FAILED: ctxswitch.sh"; failed=1; }
echo
echo "=== daemon_footprint.py (isotraced's own CPU and RSS; sizes deploy/) ==="
python3 "$HERE/daemon_footprint.py" "$BUILD"
case $? in
  0) ;;
  2) echo "(daemon_footprint.py could not run here; see the message above)" ;;
  *) echo "FAILED: daemon_footprint.py"; failed=1 ;;
esac
echo
echo "=== locate/run.py (localization accuracy: faults injected into a service chain; LOCATE_REPS=${LOCATE_REPS:-2}) ==="
python3 "$HERE/locate/run.py" "$BUILD" --reps "${LOCATE_REPS:-2}"
case $? in
  0) ;;
  2) echo "(locate/run.py could not run here; see the message above)" ;;
  *) echo "FAILED: locate/run.py"; failed=1 ;;
esac
exit $failed
