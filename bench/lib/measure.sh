# Shared by the macro benchmarks (daemon_overhead.sh, steady_rate.sh): CPU time and BPF
# program statistics of one daemon process. Source it; needs python3 and bpftool.

# CPU time of every thread of a process: utime+stime from /proc/<pid>/stat (clock ticks,
# as top/ps see it) and the sum of the threads' schedstat on-CPU ns (exact).
cpu_sample() {
  python3 - "$1" <<'PY'
import os, sys
pid = sys.argv[1]
with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
ns = 0
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            ns += int(f.read().split()[0])
    except OSError:
        pass
print(ticks, ns)
PY
}

# The daemon's BPF programs with their cumulative run_time_ns and run_cnt (JSON lines).
# Programs are matched by the prog ids behind the daemon's own file descriptors
# (/proc/<pid>/fdinfo): Debian's bpftool does not report owning pids.
bpf_sample() {
  bpftool prog show -j | python3 -c '
import json, os, sys
pid = sys.argv[1]
ids = set()
for fd in os.listdir(f"/proc/{pid}/fdinfo"):
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("prog_id:"):
                    ids.add(int(line.split()[1]))
    except OSError:
        pass
for p in json.load(sys.stdin):
    if p["id"] in ids:
        print(json.dumps({"id": p["id"], "name": p.get("name", "?"), "type": p.get("type", "?"),
                          "run_time_ns": p.get("run_time_ns", 0), "run_cnt": p.get("run_cnt", 0)}))
' "$1"
}

# start_nginx <dir> <file bytes>: the e2e harness's nginx (tests/e2e/harness.py
# start_nginx), one worker, serving a static file of that size from <dir>/www on a free
# loopback port. Sets PORT and NGINX_PID; calls `cannot` (the caller's) on failure.
start_nginx() {
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$1/www"
  head -c "$2" /dev/zero | tr '\0' 'x' >"$1/www/index.html"
  cat >"$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  sendfile on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$PORT;
    root $1/www;
  }
}
EOF
  run_nginx "$1" "$PORT"
}

# run_nginx <dir> <port>: starts nginx on <dir>/nginx.conf, waits until <port> accepts.
# Sets NGINX_PID; calls `cannot` (the caller's) on failure.
run_nginx() {
  nginx -c "$1/nginx.conf" -p "$1" >"$1/nginx.log" 2>&1 &
  NGINX_PID=$!
  for _ in $(seq 100); do
    (echo >/dev/tcp/127.0.0.1/"$2") 2>/dev/null && break
    sleep 0.1
  done
  (echo >/dev/tcp/127.0.0.1/"$2") 2>/dev/null || cannot "nginx did not listen: $(cat "$1/nginx.log")"
}
