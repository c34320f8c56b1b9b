#pragma once
// The identity table: which cgroup paths, executables, ancestors, mapped libraries and
// opened .wasm modules name a container runtime, a sandbox or a Wasm runtime. Rules are
// data (config::LayerRule): a built-in table plus the user's `layers.rules`, user rules
// first. Matching is pure (no I/O) so the corpus tests drive it directly.
//
// Patterns are RE2: linear time, no backtracking, no recursion — the inputs (cgroup
// names, executable names) are chosen by the workloads, some of them hostile.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/config/config.h"

namespace re2 {
class RE2;
}

namespace isotrace::layers {

enum class Layer : uint8_t { kContainer, kSandbox, kWasm };

// Namespace types a sandbox rule can require to differ from the host's (the initial
// namespaces: kthreadd's, else PID 1's).
enum NamespaceBit : uint32_t {
  kNsMnt = 1u << 0,
  kNsPid = 1u << 1,
  kNsNet = 1u << 2,
  kNsUser = 1u << 3,
  kNsIpc = 1u << 4,
  kNsUts = 1u << 5,
  kNsCgroup = 1u << 6,
};
// "mnt" → kNsMnt ...; 0 for an unknown name.
uint32_t NamespaceBitFromName(std::string_view name);
// The /proc/<pid>/ns/<name> file of a bit.
const char* NamespaceFileName(uint32_t bit);
inline constexpr uint32_t kAllNamespaces = 0x7f;

// What the matcher knows about one process (read by ProcReader, or built by tests).
struct WasmModuleFact {
  std::string path;                  // as opened, made absolute when the cwd was known
  std::vector<std::string> imports;  // import module names (e.g. wasi_snapshot_preview1)
};
struct ProcessFacts {
  std::string executable;               // basename of /proc/<pid>/exe (else comm)
  std::vector<std::string> ancestors;   // executable basenames of ancestors, parent first
  std::vector<std::string> libraries;   // basenames of mapped files, deduplicated
  uint32_t ns_differs = 0;              // NamespaceBit set where it differs from the host's
  std::vector<WasmModuleFact> wasm_modules;  // distinct modules opened since the last exec
};

// A cgroup rule's match: the rule's name (runtime, may be empty) and its named groups.
struct CgroupMatch {
  std::string runtime;  // rule name; empty: a container whose runtime must be found elsewhere
  std::string id;
  std::string pod_uid;  // normalised to the dashed form
  std::string qos;      // burstable, besteffort, guaranteed (k8s QoS class)
  std::string name;     // container name (lxc, systemd-nspawn)
  std::string unit;     // systemd unit
  std::string path;     // the cgroup path it matched
};

struct WasmMatch {
  std::string runtime;
  std::string module;  // set only when exactly one distinct module is known
  size_t modules = 0;
};

struct CompiledRule {
  Layer layer = Layer::kContainer;
  std::string name;
  bool builtin = false;
  std::unique_ptr<re2::RE2> cgroup, executable, ancestor, library;
  std::string oci_state;
  std::string wasm_import;
  bool wasm_opened = false;
  uint32_t namespaces = 0;
  CompiledRule();
  ~CompiledRule();
  CompiledRule(CompiledRule&&) noexcept;
  CompiledRule& operator=(CompiledRule&&) noexcept;
};

// Counters of input the matcher refused (hostile or malformed); never fatal.
struct MatchRejects {
  uint64_t bad_id = 0;       // a captured id/uid/name failed validation
  uint64_t too_long = 0;     // a cgroup path longer than kMaxCgroupPath
};

inline constexpr size_t kMaxCgroupPath = 4096;

class RuleSet {
 public:
  // Compiles the user's rules followed (unless builtin is false) by the built-in table.
  static absl::StatusOr<std::shared_ptr<const RuleSet>> Compile(
      const std::vector<config::LayerRule>& user, bool builtin);

  const std::vector<CompiledRule>& rules() const { return rules_; }
  // Union of the namespace bits any sandbox rule needs (what the reader must look at).
  uint32_t namespaces_needed() const { return namespaces_needed_; }
  bool needs_libraries() const { return needs_libraries_; }
  bool needs_ancestors() const { return needs_ancestors_; }

  // The first cgroup rule (table order) that matches one of `paths` (best path first
  // within a rule's turn). Captured values are validated; a rule whose captures are
  // invalid does not match (counted in *rejects).
  std::optional<CgroupMatch> MatchCgroup(const std::vector<std::string>& paths,
                                         MatchRejects* rejects = nullptr) const;
  // Container runtime named by an executable/ancestor container rule (used only to name
  // the runtime of a container whose id is already known).
  std::optional<std::string> MatchContainerRuntime(const ProcessFacts& facts) const;
  std::optional<std::string> MatchSandbox(const ProcessFacts& facts) const;
  std::optional<WasmMatch> MatchWasm(const ProcessFacts& facts) const;
  // oci_state globs of container rules, in table order, with the runtime each names.
  std::vector<std::pair<std::string, std::string>> OciStateRoots() const;

 private:
  bool MatchProcess(const CompiledRule& r, const ProcessFacts& f) const;
  std::vector<CompiledRule> rules_;
  uint32_t namespaces_needed_ = 0;
  bool needs_libraries_ = false;
  bool needs_ancestors_ = false;
};

// The built-in table (docs/layers.md lists it).
const std::vector<config::LayerRule>& BuiltinRules();

// Validators for captured values: what a real runtime can produce and nothing else.
bool ValidContainerId(std::string_view id);
bool ValidPodUid(std::string_view uid);  // 8-4-4-4-12 lowercase hex
bool ValidName(std::string_view name);   // printable, no '/', bounded

}  // namespace isotrace::layers
