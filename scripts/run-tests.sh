#!/usr/bin/env bash
# The whole suite, in two trees:
#   <build>      unit (no root), BPF (real probes), end-to-end (real servers and the
#                independent OTLP receiver); BPF-labelled tests share the machine and
#                run one at a time.
#   build-asan/  the unit tests again under AddressSanitizer + UBSan, and every libFuzzer
#                target for ISOTRACE_FUZZ_SECONDS (label fuzz), built by scripts/asan-tree.sh.
# ISOTRACE_SKIP_ASAN=1 runs the first tree only.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "run-tests: BPF and end-to-end tests need root (sudo make test)" >&2
fi
status=0
ctest --test-dir "$build" --output-on-failure -j 2 --timeout 900 || status=1
if [ "${ISOTRACE_SKIP_ASAN:-0}" != 1 ]; then
  tree=$(bash scripts/asan-tree.sh)
  ctest --test-dir "$tree" --output-on-failure -j 2 -L 'unit|fuzz' --timeout 900 || status=1
fi
exit $status
