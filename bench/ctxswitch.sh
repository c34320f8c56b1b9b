#!/usr/bin/env bash
# Context switches per second a switch-heavy load sustains without and with isotraced,
# side by side in one run (issue 3: the sched_switch program must earn its cost).
#  - stress-ng --switch: threads that never touch a socket (the cheap miss path).
#  - a TCP ping-pong between two processes over loopback: every message is a socket
#    syscall and a context switch, and both threads are tracked (the full path).
# Also prints the accounting programs' own cost from bpf_stats (ns per call).
set -euo pipefail
build=${1:-build}
secs=${SECS:-5}
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }

pingpong() {
  python3 - "$secs" <<'PY'
import os, socket, sys, time
secs = float(sys.argv[1])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = srv.getsockname()[1]
pid = os.fork()
if pid == 0:
    c, _ = srv.accept()
    while True:
        d = c.recv(1)
        if not d or d == b"q":
            os._exit(0)
        c.send(d)
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
n = 0
end = time.time() + secs
while time.time() < end:
    s.send(b"x"); s.recv(1); n += 1
s.send(b"q"); os.waitpid(pid, 0)
print(int(n / secs))
PY
}

switches() {
  stress-ng --switch 2 --timeout "${secs}s" --metrics-brief 2>&1 | awk '/switch/ && $5 ~ /^[0-9.]+$/ {print int($5)}' | tail -1
}

run_round() {
  echo "$(switches) $(pingpong)"
}

read -r base_sw base_pp < <(run_round)
sysctl -qw kernel.bpf_stats_enabled=1
"$build/bin/isotraced" --summary-interval 0 --prometheus-listen 127.0.0.1:0 --api-socket /tmp/isotrace-bench-ctx.sock >/tmp/isotrace-bench-ctx.log 2>&1 &
dpid=$!
trap 'kill $dpid 2>/dev/null || true; sysctl -qw kernel.bpf_stats_enabled=0' EXIT
for _ in $(seq 50); do grep -q "probe attached" /tmp/isotrace-bench-ctx.log && break; sleep 0.2; done
read -r with_sw with_pp < <(run_round)
stats=$(bpftool prog show name acct_switch 2>/dev/null | grep -o 'run_time_ns [0-9]* run_cnt [0-9]*' | head -1 || true)
kill $dpid; wait $dpid 2>/dev/null || true
read -r after_sw after_pp < <(run_round)

printf '%-34s %14s %14s %14s %8s\n' "load" "without" "with daemon" "without again" "ratio"
awk -v a="$base_sw" -v b="$with_sw" -v c="$after_sw" 'BEGIN{printf "%-34s %14d %14d %14d %8.3f\n","stress-ng --switch (bogo ops/s)",a,b,c,b/((a+c)/2)}'
awk -v a="$base_pp" -v b="$with_pp" -v c="$after_pp" 'BEGIN{printf "%-34s %14d %14d %14d %8.3f\n","TCP ping-pong round trips/s",a,b,c,b/((a+c)/2)}'
if [ -n "$stats" ]; then
  set -- $stats
  echo "acct_switch: $4 calls, $(( $2 / ($4 > 0 ? $4 : 1) )) ns per call"
fi
