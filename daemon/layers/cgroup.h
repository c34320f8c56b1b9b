#pragma once
// Cgroup facts of a process: /proc/<pid>/cgroup (v1, hybrid and v2 lines), the cgroup
// mounts (/proc/self/mountinfo), and the v2 id → path index that turns the cgroup id BPF
// reports with every span (bpf_get_current_cgroup_id) into a path.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"

namespace isotrace::layers {

struct CgroupLine {
  uint32_t hierarchy = 0;    // 0: the v2 hierarchy
  std::string controllers;   // "cpu,cpuacct", "name=systemd", "" for v2
  std::string path;          // "/docker/<id>"
};

// Parses /proc/<pid>/cgroup. A cgroup name may contain '\n' (the kernel prints paths
// unescaped), so a workload can forge extra lines: a repeated hierarchy id or a line
// that does not parse makes the whole file untrustworthy → error (callers then rely on
// the cgroup id BPF reported instead).
absl::StatusOr<std::vector<CgroupLine>> ParseProcCgroup(std::string_view text);

// Paths worth matching, best first: v2, then name=systemd, cpu, memory, pids, the rest;
// duplicates and the root "/" dropped.
std::vector<std::string> CandidatePaths(const std::vector<CgroupLine>& lines);

struct CgroupMount {
  std::string mount_point;               // "/sys/fs/cgroup/unified"
  bool v2 = false;
  std::vector<std::string> controllers;  // v1: "memory", "name=systemd", ...
};
// Cgroup mounts from a mountinfo text (octal escapes in mount points decoded).
std::vector<CgroupMount> ParseMountinfo(std::string_view text);
// The v2 mount point: "/sys/fs/cgroup" (pure v2), "/sys/fs/cgroup/unified" (hybrid), or "".
std::string V2MountPoint(const std::vector<CgroupMount>& mounts);

// Cgroup v2 id → path relative to the v2 mount. The id is the cgroup directory's inode
// number (kernfs node id). Built by walking the hierarchy; a miss rescans (a container
// created a moment ago must be found at its first request), at most every
// `rescan_interval_ns`, and an id still missing after a fresh walk is not looked for
// again for `negative_ttl_ns` (a deleted cgroup must not trigger a walk per span).
class CgroupIdIndex {
 public:
  using NowFn = std::function<uint64_t()>;  // monotonic ns (injectable for tests)
  CgroupIdIndex(std::string v2_mount, size_t max_entries = 65536,
                uint64_t rescan_interval_ns = 50000000ull, NowFn now = nullptr,
                uint64_t negative_ttl_ns = 10000000000ull);

  std::optional<std::string> PathOf(uint64_t id);
  size_t size() const { return by_id_.size(); }
  uint64_t scans() const { return scans_; }
  bool truncated() const { return truncated_; }  // the last walk hit max_entries

 private:
  void Rescan();
  std::string mount_;
  size_t max_entries_;
  uint64_t interval_ns_;
  uint64_t negative_ttl_ns_;
  NowFn now_;
  uint64_t last_scan_ns_ = 0;
  bool scanned_ = false;
  bool truncated_ = false;
  uint64_t scans_ = 0;
  std::unordered_map<uint64_t, std::string> by_id_;
  std::unordered_map<uint64_t, uint64_t> missing_;  // id → when a fresh walk missed it
};

}  // namespace isotrace::layers
