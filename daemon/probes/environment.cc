#include "daemon/probes/environment.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"

namespace isotrace::probes {

namespace {
bool g_verbose = false;

int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG && !g_verbose) return 0;
  // A verifier log arrives as one message of up to tens of KiB: a fixed buffer would cut
  // off the very line that says why a program was rejected.
  char small[1024];
  va_list again;
  va_copy(again, args);
  int n = vsnprintf(small, sizeof(small), fmt, args);
  std::string big;
  const char* buf = small;
  if (n >= static_cast<int>(sizeof(small))) {
    big.resize(static_cast<size_t>(n) + 1);
    vsnprintf(big.data(), big.size(), fmt, again);
    buf = big.data();
  }
  va_end(again);
  std::string_view line(buf, n > 0 ? static_cast<size_t>(n) : 0);
  while (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (level == LIBBPF_WARN)
    spdlog::warn("libbpf: {}", line);
  else if (level == LIBBPF_INFO)
    spdlog::debug("libbpf: {}", line);
  else
    spdlog::trace("libbpf: {}", line);
  return 0;
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }
}  // namespace

void InstallLibbpfLogger(bool verbose) {
  g_verbose = verbose;
  libbpf_set_print(LibbpfPrint);
}

std::vector<uint64_t> SumPerCpuCounters(int map_fd, uint32_t entries) {
  std::vector<uint64_t> totals(entries, 0);
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return totals;
  std::vector<uint64_t> values(static_cast<size_t>(ncpu));
  for (uint32_t idx = 0; idx < entries; idx++)
    if (bpf_map_lookup_elem(map_fd, &idx, values.data()) == 0)
      for (uint64_t v : values) totals[idx] += v;
  return totals;
}

const std::vector<std::string>& L7Tracepoints() {
  static const std::vector<std::string> kTracepoints = [] {
    std::vector<std::string> v;
    for (const char* sc : {"read", "recvfrom", "readv", "recvmsg", "write", "sendto", "writev",
                           "sendmsg", "sendfile64"}) {
      v.push_back(absl::StrCat("syscalls/sys_enter_", sc));
      v.push_back(absl::StrCat("syscalls/sys_exit_", sc));
    }
    return v;
  }();
  return kTracepoints;
}

absl::Status EnsureTracefs(std::string* path) {
  for (const char* p : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}) {
    if (Exists(absl::StrCat(p, "/events"))) {
      *path = p;
      return absl::OkStatus();
    }
  }
  if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nullptr) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tracefs is not mounted and mounting it at /sys/kernel/tracing failed (",
        std::string(std::strerror(errno)),
        "): mount it (mount -t tracefs tracefs /sys/kernel/tracing) or, in a container, "
        "mount the host's /sys/kernel/tracing"));
  }
  spdlog::info("mounted tracefs at /sys/kernel/tracing");
  *path = "/sys/kernel/tracing";
  return absl::OkStatus();
}

absl::Status CheckBpfEnvironment(const std::vector<std::string>& tracepoints) {
  if (!Exists("/sys/kernel/btf/vmlinux"))
    return absl::FailedPreconditionError(
        "no kernel BTF at /sys/kernel/btf/vmlinux: isotrace needs a kernel built with "
        "CONFIG_DEBUG_INFO_BTF=y (CO-RE relocations read it)");
  int rb = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr);
  if (rb == -EPERM || rb == -EACCES)
    return absl::PermissionDeniedError(
        "not allowed to use BPF: run isotraced as root, or grant CAP_BPF and CAP_PERFMON "
        "(plus CAP_SYS_RESOURCE on kernels before 5.11)");
  if (rb == 0)
    return absl::FailedPreconditionError(
        "this kernel has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8+)");
  if (rb < 0)
    return absl::FailedPreconditionError(
        absl::StrCat("probing BPF ring buffer support failed: ", std::string(std::strerror(-rb))));
  std::string tracefs;
  if (auto st = EnsureTracefs(&tracefs); !st.ok()) return st;
  std::vector<std::string> missing;
  for (const auto& tp : tracepoints)
    if (!Exists(absl::StrCat(tracefs, "/events/", tp))) missing.push_back(tp);
  if (!missing.empty())
    return absl::FailedPreconditionError(absl::StrCat(
        "required tracepoints are missing from ", tracefs, "/events: ", absl::StrJoin(missing, ", "),
        " — the kernel needs CONFIG_FTRACE_SYSCALLS=y"));
  return absl::OkStatus();
}

}  // namespace isotrace::probes
