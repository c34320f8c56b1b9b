#!/usr/bin/env bash
# Starts the daemon in its embedded default (no collector): spans are kept in memory and
# summarised in the log. Ctrl-C stops it cleanly.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
exec "$build/bin/isotraced" --summary-interval 5 "${@:2}"
