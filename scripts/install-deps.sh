#!/usr/bin/env bash
# Installs the Debian (and npm) packages isotrace needs, by profile. Idempotent: a second
# run installs nothing new.
#
#   install-deps.sh run    building and running (make run, make build)
#   install-deps.sh test   run + the tests' servers, runtimes, tools and test libraries
#                          (make test, make bench, make fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-test}
case "$profile" in
  run|test) ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac

pkgs=(
  # build
  build-essential cmake ninja-build pkg-config clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev libabsl-dev libyaml-cpp-dev libcli11-dev libncurses-dev
  # layers: RE2 (linear-time matching of untrusted cgroup paths), JSON runtime metadata
  libre2-dev nlohmann-json3-dev
  # metrics: the Prometheus /metrics endpoint (small, bounded HTTP server; docs/metrics.md)
  libmicrohttpd-dev
  # correlate: HPACK for HTTP/2 through nghttp2's inflater (its deflater and sessions
  # also make the unit tests' independent frames)
  libnghttp2-dev
  # probes: netlink (a sandbox's host-side veth, read from inside its network namespace)
  libmnl-dev
  # correlate: a NAT'd Service address's real callee, from the kernel's conntrack (netlink)
  libnetfilter-conntrack-dev
)
if [ "$profile" = test ]; then
  pkgs+=(
    # unit tests and micro-benchmarks
    libgtest-dev libgmock-dev libbenchmark-dev
    # the BPF test's in-process TLS client and server (OpenSSL, whose calls the uprobes see)
    libssl-dev
    # the sanitizer tree's libFuzzer and sanitizer runtimes for clang (only recommended by clang)
    libclang-rt-14-dev
    # tests: real servers, load, sandboxes, containers
    nginx-light wrk python3 curl socat stress-ng runc bubblewrap busybox-static
    iproute2 nftables tmux prometheus procps util-linux
    # deploy/collector/dashboards checks (test_deploy_artifacts.py): YAML parsing, unit files
    python3-yaml systemd
    # otlp_tls_test makes its CA, server and client certificates with the openssl CLI
    openssl
    # WASI modules for the wasm layer
    wasi-libc lld libclang-rt-14-dev-wasm32
    # kernel tests (scripts/kernels, docs/kernels.md): QEMU boots Debian's 6.1 kernel
    # (fetched with apt-get download, never installed); kmod indexes and loads its modules
    qemu-system-x86 kmod e2fsprogs
    # bench/steady_rate.sh: fixed-rate HTTP/1.1 load (h2load); HTTP/2 e2e: h2load, nghttp
    nghttp2-client
    # gRPC e2e: a real gRPC server and client (Debian's python3-grpcio, for /usr/bin/python3)
    python3-grpcio
    # h2c upgrade e2e (HTTP/1.1 Upgrade: h2c → 101) from a real server: Apache mod_http2
    apache2
    # sandbox fixtures (tests/e2e/sandboxes.py): requests inside gVisor pods are seen at
    # their host-side veth; runsc is Debian's gVisor (0.0~20221219). The microVM fixture
    # uses qemu-system-x86, kmod and busybox-static from above.
    runsc
  )
  # Node.js (for the npm OTLP receiver): the image may ship its own; take Debian's only
  # when there is none, since Debian's nodejs conflicts with a separately installed npm.
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Packages that start services must not start them at install (tests start their own).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
fi

# npm: the independent OTLP receiver used by the end-to-end tests (and the soak).
if [ "$profile" = test ] && [ -f tests/e2e/package.json ] &&
   { [ ! -d tests/e2e/node_modules/@opentelemetry/otlp-transformer ] || [ ! -d tests/e2e/node_modules/@grpc/grpc-js ]; }; then
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
