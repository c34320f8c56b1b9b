#!/usr/bin/env bash
# The BPF objects also build with -DISOTRACE_VMLINUX_FROM_HOST=ON (vmlinux.h generated
# from this host's BTF instead of the vendored one): configures a scratch tree and builds
# the two skeletons only. Exit 77 (skip) without host BTF.
# usage: check-vmlinux-from-host.sh <source dir> <cmake generator>
set -euo pipefail
src=$1 gen=$2
[ -r /sys/kernel/btf/vmlinux ] || { echo "SKIP: no /sys/kernel/btf/vmlinux"; exit 77; }
out=$(mktemp -d /tmp/isotrace-vmlinux-host.XXXXXX)
trap 'rm -rf "$out"' EXIT
cmake -S "$src" -B "$out" -G "$gen" -DISOTRACE_VMLINUX_FROM_HOST=ON > "$out/configure.log" 2>&1 \
  || { cat "$out/configure.log"; exit 1; }
cmake --build "$out" --target bpf_l7_skel bpf_proc_skel
[ -s "$out/bpf/vmlinux/vmlinux.h" ] || { echo "FAIL: vmlinux.h was not generated from the host"; exit 1; }
for o in l7 proc; do [ -s "$out/bpf/$o.skel.h" ] || { echo "FAIL: no $o.skel.h"; exit 1; }; done
echo "PASS: BPF objects built against the host's BTF ($(uname -r))"
