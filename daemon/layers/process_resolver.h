#pragma once
// pid → isolation-stack identity → OTLP resource: service.name, process.*, host.name,
// container/pod, sandbox, Wasm, vm and isotrace.stack (docs/layers.md).
//
// Cached by (tgid, start time): a span costs one hash lookup; /proc and runtime metadata
// are read once per process. The proc probe's events keep the cache honest: exec marks
// an entry stale (same key, new program), exit schedules it for eviction after a grace
// period (spans of a process that just exited are still being finished), and a .wasm
// open re-matches the Wasm layer without touching /proc again. Bounded (LRU).

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "daemon/config/config.h"
#include "daemon/correlate/span.h"
#include "daemon/layers/cgroup.h"
#include "daemon/layers/identity.h"
#include "daemon/layers/proc_reader.h"
#include "daemon/layers/rules.h"
#include "daemon/layers/runtime_meta.h"
#include "daemon/layers/vm.h"
#include "daemon/layers/wasm_module.h"

namespace isotrace::layers {

struct ResolverOptions {
  std::string proc_root = "/proc";
  std::string host_prefix;           // prefixed to /run and /var/log|lib reads (tests)
  size_t max_entries = 8192;
  std::optional<VmInfo> vm;          // injected; else detected from this machine
  std::optional<std::string> cgroup_v2_mount;        // else from <proc_root>/self/mountinfo
  std::optional<std::vector<std::string>> cgroup_mounts;
  uint64_t exit_grace_ns = 30000000000ull;  // keep an exited process this long
  uint64_t rescan_interval_ns = 2000000000ull;  // OCI state / kubelet log tree
  uint64_t cgroup_rescan_interval_ns = 50000000ull;  // cgroup id index, on a miss
  NowFn now;                          // monotonic ns (tests)
};

struct ResolverStats {
  uint64_t resolved = 0;           // /proc reads (cache misses and stale entries)
  uint64_t exited_at_resolve = 0;  // /proc gone: identity from comm, cgroup id and probe facts
  uint64_t inherited_from_parent = 0;  // gone processes that took their parent's sandbox
  uint64_t exec_invalidations = 0;
  uint64_t exits = 0;
  uint64_t evicted = 0;
  uint64_t wasm_opens = 0;
  uint64_t wasm_bad_modules = 0;   // opened *.wasm that is not a readable Wasm binary
  uint64_t cgroup_untrusted = 0;   // /proc/<pid>/cgroup malformed or forged
  uint64_t cgroup_id_unknown = 0;  // BPF's cgroup id not found under the v2 mount
  uint64_t ids_rejected = 0;       // captured ids/uids/names that failed validation
  uint64_t paths_too_long = 0;
  uint64_t metadata_bad_files = 0; // runtime state/metadata files malformed or too big
};

class ProcessResolver {
 public:
  explicit ProcessResolver(std::string proc_root = "/proc", size_t max_entries = 8192);
  explicit ProcessResolver(ResolverOptions options);
  ~ProcessResolver();

  // Replaces the rule table (user rules first, then the built-ins unless disabled).
  // Clears the cache. Fails with a message naming the bad rule.
  absl::Status SetRules(const std::vector<config::LayerRule>& user, bool builtin);
  void SetMaxEntries(size_t n) { max_entries_ = n ? n : 1; }
  // Hands over queued proc-probe events (they call OnExec/OnExit/OnWasmOpen). Called when
  // a process vanished mid-read: its exit event, which names the parent, was queued
  // before /proc/<pid> went away. Must not call Resolve.
  void SetFactsDrain(std::function<void()> drain) { drain_ = std::move(drain); }

  // The resource of a process. cgroup_id: the v2 cgroup id BPF saw with the event (0 if
  // unknown); used for the container layer, and alone when /proc is gone.
  std::shared_ptr<const correlate::Resource> Resolve(const correlate::ProcessKey& key,
                                                     std::string_view comm,
                                                     uint64_t cgroup_id = 0);
  // Proc probe facts.
  void OnExec(const correlate::ProcessKey& key);
  // parent: the process's parent when it exited ({0,0} unknown). A process gone before
  // its /proc was read inherits the sandbox of that parent: namespaces and ancestry pass
  // to children, and no child leaves a sandbox by forking.
  void OnExit(const correlate::ProcessKey& key, const correlate::ProcessKey& parent = {});
  // path: absolute in the process's mount namespace when `resolved` (the kernel rebuilt
  // it from the opened file), else as passed to open. mnt_ns: the process's mount
  // namespace inode (0 unknown); the same as the daemon's means the module can be read
  // directly even after the process is gone.
  void OnWasmOpen(const correlate::ProcessKey& key, const std::string& path, bool resolved = true,
                  uint32_t mnt_ns = 0);

  const std::string& host_name() const { return host_name_; }
  const VmInfo& vm() const { return vm_; }
  size_t size() const { return cache_.size(); }
  ResolverStats stats() const;
  // Extra resource attributes on every resource (OTEL_RESOURCE_ATTRIBUTES).
  void SetCommonAttributes(std::vector<correlate::Attribute> attrs);

 private:
  struct KeyHash {
    size_t operator()(const correlate::ProcessKey& k) const {
      return std::hash<uint64_t>()((uint64_t{k.tgid} << 40) ^ k.start_ns);
    }
  };
  struct Entry {
    std::string comm;
    Identity identity;
    std::shared_ptr<const correlate::Resource> resource;
    bool stale = false;
    bool exited = false;
    std::list<correlate::ProcessKey>::iterator lru;
  };

  Entry* ResolveEntry(const correlate::ProcessKey& key, std::string_view comm, uint64_t cgroup_id,
                      int depth);
  Identity Identify(const correlate::ProcessKey& key, std::string_view comm, uint64_t cgroup_id,
                    std::vector<WasmModuleFact> modules, int depth);
  void IdentifyContainer(const std::vector<std::string>& paths, Identity* id);
  void MatchWasm(Identity* id);
  void GvisorContainer(Identity* id);
  std::optional<WasmModuleFact> ReadModule(uint32_t pid, const std::string& path, bool resolved,
                                           uint32_t mnt_ns);
  void Rebuild(Entry* e);
  void Evict(const correlate::ProcessKey& key);
  void ExpireExited();

  ResolverOptions opts_;
  std::function<void()> drain_;
  size_t max_entries_;
  std::string host_name_;
  VmInfo vm_;
  std::vector<correlate::Attribute> common_;
  std::shared_ptr<const RuleSet> rules_;
  ProcReader reader_;
  CgroupIdIndex cgroup_index_;
  std::unique_ptr<OciStateIndex> oci_;
  RuntimeMetadata meta_;
  WasmModuleCache wasm_cache_;
  std::vector<std::string> cgroup_mounts_;
  uint32_t self_mnt_ns_ = 0;
  MatchRejects rejects_;
  ResolverStats stats_;

  std::unordered_map<correlate::ProcessKey, Entry, KeyHash> cache_;
  std::list<correlate::ProcessKey> lru_;
  // .wasm opens of processes not resolved yet (bounded); consumed by the first Resolve.
  std::unordered_map<correlate::ProcessKey, std::vector<WasmModuleFact>, KeyHash> early_wasm_;
  std::deque<std::pair<uint64_t, correlate::ProcessKey>> exited_;  // (exit time, key)
  // Parents of exited processes (bounded; dropped with the exit grace period).
  std::unordered_map<correlate::ProcessKey, correlate::ProcessKey, KeyHash> parents_;
};

// Parses OTEL_RESOURCE_ATTRIBUTES ("k1=v1,k2=v2", values percent-decoded).
std::vector<correlate::Attribute> ParseResourceAttributes(std::string_view value);

}  // namespace isotrace::layers
