#!/usr/bin/env bash
# Configures and builds the sanitizer tree: clang with AddressSanitizer + UBSan (and
# libFuzzer coverage), only the unit tests, their libraries and the fuzzers
# (-DISOTRACE_SANITIZE=ON; see CMakeLists.txt). Prints the tree's directory.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=${ASAN_BUILD:-build-asan}
jobs=${JOBS:-$(nproc)}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [ ! -f "$tree/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$tree" "${gen[@]}" -DISOTRACE_SANITIZE=ON \
    -DISOTRACE_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
fi
cmake --build "$tree" -j "$jobs" >&2
echo "$tree"
