#pragma once
// Start-up checks of what the probes need from the kernel. Each failing check says what
// to change; nothing is decided by kernel version.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace isotrace::probes {

// Routes libbpf's own messages into our log (warnings and errors only unless verbose).
void InstallLibbpfLogger(bool verbose);

// Privileges (root or CAP_BPF+CAP_PERFMON), kernel BTF, tracefs (mounted when missing),
// ring buffer support, and every tracepoint in `tracepoints` ("group/name").
absl::Status CheckBpfEnvironment(const std::vector<std::string>& tracepoints);

// Where tracefs is (mounting it at /sys/kernel/tracing when it is not mounted anywhere).
absl::Status EnsureTracefs(std::string* path);

// Reads a BPF_MAP_TYPE_PERCPU_ARRAY of u64 counters and sums each index over the CPUs.
// Every probe family counts its kernel-side losses this way.
std::vector<uint64_t> SumPerCpuCounters(int map_fd, uint32_t entries);

// Tracepoints the l7 probe attaches.
const std::vector<std::string>& L7Tracepoints();

}  // namespace isotrace::probes
