#!/usr/bin/env bash
# `make run`: the live per-workload view. `isotrace top` talks to a running isotraced when
# there is one, and otherwise runs the pipeline embedded in its own process (no collector,
# nothing to configure). Without a terminal it prints a table every second instead.
# q or Ctrl-C exits and restores the terminal.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
exec "$build/bin/isotrace" top "${@:2}"
