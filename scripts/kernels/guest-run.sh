#!/bin/bash
# PID 1 of the kernel-test guest (scripts/kernels/qemu_guest.py), after switch_root into
# the host's / (9p, read-only) under a tmpfs overlay. Mounts what isotrace needs, runs
# the tests with ctest and prints one result line on the console, then powers off.
# usage: guest-run.sh <build dir> <ctest -R regex> <accel> <PATH>
build=$1 tests=$2 accel=$3
export PATH=${4:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin} HOME=/root LANG=C.UTF-8
export ISOTRACE_REQUIRE_BPF=1   # a probe that cannot load on this kernel is a failure
say() { echo "isotrace-guest: $*"; }
finish() {
  echo "ISOTRACE-GUEST-$1"
  sync
  busybox poweroff -f
  sleep 10
}
trap 'finish "FAIL guest-run.sh exited early"' EXIT

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run           # hides the host's sockets and pid files
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# Controllers for the tests' own cgroups (cpu.max, memory.max).
echo "+cpu +memory +io +pids" > /sys/fs/cgroup/cgroup.subtree_control
# The scratch disk: a real block device (fsync reaches it) and reclaimable page cache.
modprobe virtio_blk && modprobe ext4
for _ in $(seq 50); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -t ext4 /dev/vda /var/tmp || { finish "FAIL no scratch disk"; }
ip link set lo up
hostname isotrace-guest
ulimit -l unlimited

say "kernel $(uname -r), $(nproc) CPUs, accel $accel"
[ -r /sys/kernel/btf/vmlinux ] || finish "FAIL no /sys/kernel/btf/vmlinux"
say "ready after $(cut -d' ' -f1 /proc/uptime) s of guest uptime"

# What the daemon decides from this kernel's BTF (the host checks the line).
timeout 120 "$build/bin/isotraced" --duration 2 --summary-interval 0 > /tmp/isotraced.log 2>&1
# Its log lines, and of a rejected program's verifier log only the end (where the reason is).
{ grep -v '^[0-9]*: \|^; \|^\s*$' /tmp/isotraced.log | head -40
  grep -B40 'END PROG LOAD LOG' /tmp/isotraced.log | head -80; } | sed 's/^/isotrace-guest: isotraced: /'

start=$(date +%s.%N)
# Everything labelled requires_bpf that the host chose, except this very test.
ctest --test-dir "$build" -L requires_bpf -R "$tests" -E '^kernels\.' --output-on-failure \
  --timeout 600 --no-tests=error
rc=$?
say "tests took $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
trap - EXIT
finish "RESULT $rc"
