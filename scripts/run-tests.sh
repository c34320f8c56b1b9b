#!/usr/bin/env bash
# The whole suite: unit (no root), BPF (real probes), end-to-end (real servers and the
# independent OTLP receiver). BPF-labelled tests share the machine and run one at a time.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "run-tests: BPF and end-to-end tests need root (sudo make test)" >&2
fi
ctest --test-dir "$build" --output-on-failure -j 2 --timeout 900
