#!/usr/bin/env bash
# `make fuzz`: every libFuzzer target of the sanitizer tree for FUZZ_SECONDS (default
# 300) each, starting from the committed seeds (tests/fuzz/corpus/<name>/, not written)
# and the corpus earlier runs grew (build-asan/tests/fuzz-corpus/<name>/). A crash stops
# with the reproducer's path; rerun it with `build-asan/bin/<name>_fuzz <file>`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-300}
tree=$(bash scripts/asan-tree.sh)
status=0
for bin in "$tree"/bin/*_fuzz; do
  name=$(basename "$bin" _fuzz)
  work="$tree/tests/fuzz-corpus/$name"
  mkdir -p "$work" "$tree/fuzz-artifacts"
  echo "== fuzz $name: ${seconds}s"
  if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$tree/fuzz-artifacts/$name-" "$work" "tests/fuzz/corpus/$name"; then
    echo "fuzz $name FAILED (reproducer under $tree/fuzz-artifacts/)" >&2
    status=1
  fi
done
exit $status
