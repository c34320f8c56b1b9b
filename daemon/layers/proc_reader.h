#pragma once
// Reads what the identity rules look at from /proc (the root is injectable: tests build
// fixture trees): executable, command line, OTEL_SERVICE_NAME, cgroups, ancestry,
// namespaces, mapped libraries, open .wasm files. Every read is bounded; a process that
// vanished mid-read yields what was read before.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/layers/cgroup.h"
#include "daemon/layers/rules.h"

namespace isotrace::layers {

struct ProcSnapshot {
  bool alive = false;  // /proc/<pid> was there
  bool zombie = false; // exited, not reaped yet: no exe, no namespaces any more
  bool ns_unreadable = false;  // a namespace a rule needs could not be read
  uint32_t ppid = 0;           // from /proc/<pid>/stat (0: unknown)
  std::string executable_path;
  std::string command_line;
  std::string otel_service_name;  // OTEL_SERVICE_NAME from the environment
  absl::StatusOr<std::vector<CgroupLine>> cgroups = absl::NotFoundError("not read");
  ProcessFacts facts;             // executable (basename), ancestors, libraries, namespaces
  std::vector<std::string> open_wasm;  // absolute paths of *.wasm files open right now
};

class ProcReader {
 public:
  explicit ProcReader(std::string proc_root = "/proc");

  ProcSnapshot Read(uint32_t pid, std::string_view comm, const RuleSet& rules);
  // The daemon's own mount namespace inode (from <root>/self/ns/mnt), 0 if unknown.
  uint32_t SelfMountNamespace() const;
  // Where the daemon can open a path that process `pid` sees (through its root, so
  // container mount namespaces work).
  std::string HostPath(uint32_t pid, const std::string& absolute) const;
  // 0 when unknown; *state: the one-letter state (R, S, Z, ...).
  uint32_t ParentOf(uint32_t pid, std::string* comm = nullptr, char* state = nullptr) const;
  const std::string& root() const { return root_; }

 private:
  std::string ExecutableBasename(uint32_t pid) const;
  const std::string& InitNamespace(uint32_t bit);
  std::string root_;
  std::string init_ns_[7];
  uint32_t init_ns_read_ = 0;
};

std::string Basename(std::string_view path);

}  // namespace isotrace::layers
