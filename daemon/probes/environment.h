#pragma once
// Start-up checks of what the probes need from the kernel. Each failing check says what
// to change; nothing is decided by kernel version.

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

// Tracepoints the l7 probe attaches.
const std::vector<std::string>& L7Tracepoints();

}  // namespace isotrace::probes
