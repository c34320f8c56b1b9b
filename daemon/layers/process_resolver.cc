#include "daemon/layers/process_resolver.h"

#include <unistd.h>

#include <climits>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "daemon/util/fmt.h"
#include "spdlog/spdlog.h"

namespace isotrace::layers {

namespace {
constexpr size_t kMaxModulesPerProcess = 16;
constexpr size_t kMaxEarlyProcesses = 4096;
constexpr size_t kMaxExitedQueue = 65536;

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = HexDigit(s[i + 1]);
      int lo = HexDigit(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string ReadAll(const std::string& path, size_t max) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::string out(max, '\0');
  in.read(out.data(), static_cast<std::streamsize>(max));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

bool AddModule(std::vector<WasmModuleFact>* mods, WasmModuleFact m) {
  for (const auto& existing : *mods)
    if (existing.path == m.path) return false;
  if (mods->size() >= kMaxModulesPerProcess) return false;
  mods->push_back(std::move(m));
  return true;
}
}  // namespace

std::vector<correlate::Attribute> ParseResourceAttributes(std::string_view value) {
  std::vector<correlate::Attribute> out;
  // Debian's abseil keeps its own absl::string_view (not std::string_view).
  absl::string_view input(value.data(), value.size());
  for (absl::string_view part : absl::StrSplit(input, ',', absl::SkipWhitespace())) {
    size_t eq = part.find('=');
    if (eq == absl::string_view::npos) continue;
    std::string key(absl::StripAsciiWhitespace(part.substr(0, eq)));
    absl::string_view raw = absl::StripAsciiWhitespace(part.substr(eq + 1));
    std::string val = PercentDecode(std::string_view(raw.data(), raw.size()));
    if (key.empty()) continue;
    out.push_back({key, val});
  }
  return out;
}

ProcessResolver::ProcessResolver(std::string proc_root, size_t max_entries)
    : ProcessResolver([&] {
        ResolverOptions o;
        o.proc_root = std::move(proc_root);
        o.max_entries = max_entries;
        return o;
      }()) {}

ProcessResolver::ProcessResolver(ResolverOptions options)
    : opts_(std::move(options)),
      max_entries_(opts_.max_entries ? opts_.max_entries : 1),
      reader_(opts_.proc_root),
      cgroup_index_("", 0),
      meta_(opts_.host_prefix, opts_.rescan_interval_ns, opts_.now) {
  if (!opts_.now) opts_.now = MonotonicNs;
  char host[HOST_NAME_MAX + 1] = {};
  if (const char* node = getenv("NODE_NAME"); node && *node) {
    host_name_ = node;  // Kubernetes: the node, not the daemon pod's hostname
  } else if (gethostname(host, sizeof(host)) == 0) {
    host_name_ = host;
  }
  vm_ = opts_.vm ? *opts_.vm : DetectVm(ReadVmInput());
  self_mnt_ns_ = reader_.SelfMountNamespace();

  std::string v2;
  if (opts_.cgroup_mounts && opts_.cgroup_v2_mount) {
    cgroup_mounts_ = *opts_.cgroup_mounts;
    v2 = *opts_.cgroup_v2_mount;
  } else {
    auto mounts = ParseMountinfo(ReadAll(opts_.proc_root + "/self/mountinfo", 1 << 20));
    for (const auto& m : mounts) cgroup_mounts_.push_back(m.mount_point);
    v2 = V2MountPoint(mounts);
    if (opts_.cgroup_mounts) cgroup_mounts_ = *opts_.cgroup_mounts;
    if (opts_.cgroup_v2_mount) v2 = *opts_.cgroup_v2_mount;
  }
  cgroup_index_ = CgroupIdIndex(v2, 65536, opts_.cgroup_rescan_interval_ns, opts_.now);
  if (auto st = SetRules({}, true); !st.ok())
    spdlog::error("layers: built-in rules do not compile: {}", st.message());
}

ProcessResolver::~ProcessResolver() = default;

absl::Status ProcessResolver::SetRules(const std::vector<config::LayerRule>& user, bool builtin) {
  auto compiled = RuleSet::Compile(user, builtin);
  if (!compiled.ok()) return compiled.status();
  rules_ = *compiled;
  oci_ = std::make_unique<OciStateIndex>(opts_.host_prefix, rules_->OciStateRoots(), cgroup_mounts_,
                                         opts_.rescan_interval_ns, opts_.now);
  cache_.clear();
  lru_.clear();
  return absl::OkStatus();
}

void ProcessResolver::SetCommonAttributes(std::vector<correlate::Attribute> attrs) {
  common_ = std::move(attrs);
  for (auto& [key, e] : cache_) Rebuild(&e);
}

ResolverStats ProcessResolver::stats() const {
  ResolverStats s = stats_;
  s.ids_rejected = rejects_.bad_id;
  s.paths_too_long = rejects_.too_long;
  s.metadata_bad_files = meta_.bad_files() + (oci_ ? oci_->bad_files() : 0);
  return s;
}

std::optional<WasmModuleFact> ProcessResolver::ReadModule(uint32_t pid, const std::string& path,
                                                          bool resolved, uint32_t mnt_ns) {
  WasmModuleFact m;
  m.path = path;
  // Relative to a cwd or dirfd the kernel could not resolve: a module, its file unknown.
  if (!resolved && (path.empty() || path[0] != '/')) return m;
  // In the daemon's own mount namespace the path is the same file here, alive or not;
  // elsewhere it is reachable through the process's root while the process lives.
  std::string source =
      mnt_ns != 0 && mnt_ns == self_mnt_ns_ ? path : reader_.HostPath(pid, path);
  auto imports = wasm_cache_.Imports(source);
  if (imports.ok()) {
    m.imports = std::move(*imports);
  } else if (absl::IsInvalidArgument(imports.status())) {
    // Opened under a .wasm name but not a Wasm binary: not a module.
    stats_.wasm_bad_modules++;
    if (stats_.wasm_bad_modules == 1 || stats_.wasm_bad_modules % 1000 == 0)
      spdlog::warn("layers: pid {} opened {}: {} ({} such files so far)", pid, m.path,
                   imports.status().message(), stats_.wasm_bad_modules);
    return std::nullopt;
  }
  // Unreadable (the process and its mount namespace are gone): a module, imports unknown.
  return m;
}

void ProcessResolver::IdentifyContainer(const std::vector<std::string>& paths, Identity* id) {
  auto m = rules_->MatchCgroup(paths, &rejects_);
  std::string runtime, cid, bundle, name, unit;
  if (m && !m->id.empty()) {
    runtime = m->runtime;
    cid = m->id;
    if (auto oc = oci_->FindById(cid)) {
      bundle = oc->bundle;
      if (runtime.empty()) runtime = oc->runtime;
    }
    if (runtime.empty())
      if (auto r = rules_->MatchContainerRuntime(id->facts)) runtime = *r;
  } else if (auto oc = oci_->FindByCgroup(paths)) {
    // The path names no runtime (plain runc, cgroupfs drivers): its OCI state does.
    runtime = oc->runtime;
    cid = oc->id;
    bundle = oc->bundle;
  } else if (m) {
    runtime = m->runtime;
    name = m->name;
    unit = m->unit;
  }
  id->container_kind = runtime;
  id->container_id = cid;
  id->container_name = name;
  id->systemd_unit = unit;
  if (!cid.empty() || !name.empty()) id->container_runtime = runtime;
  if (m) {
    id->pod_uid = m->pod_uid;
    id->qos = m->qos;
  }
  if (cid.empty()) return;
  ContainerDetails d = meta_.Lookup(runtime, cid, id->pod_uid, bundle);
  if (id->container_name.empty()) id->container_name = d.name;
  if (id->pod_uid.empty()) id->pod_uid = d.pod_uid;
  id->pod_name = d.pod_name;
  id->pod_namespace = d.pod_namespace;
  id->k8s_container = d.k8s_container;
}

// gVisor's Sentry is `runsc-sandbox [flags] boot [flags] <container id>`: where its cgroup
// names no container (a cgroupsPath of the user's choosing, cgroup v2 root on hybrid
// machines), its own command line does. Spans of a host-network sandbox then name the
// container, not the runsc binary.
void ProcessResolver::GvisorContainer(Identity* id) {
  std::vector<absl::string_view> argv = absl::StrSplit(id->command_line, ' ', absl::SkipEmpty());
  bool boot = false;
  for (auto a : argv) boot |= a == "boot";
  if (!boot || argv.empty()) return;
  const absl::string_view cid = argv.back();
  if (cid == "boot" || absl::StartsWith(cid, "-") || !ValidContainerId(std::string_view(cid.data(), cid.size()))) return;
  id->container_kind = "runsc";
  id->container_runtime = "runsc";
  id->container_id = std::string(cid);
  if (id->container_name.empty()) id->container_name = std::string(cid);
}

void ProcessResolver::MatchWasm(Identity* id) {
  id->wasm_runtime.clear();
  id->wasm_module.clear();
  id->wasm_modules = 0;
  if (auto w = rules_->MatchWasm(id->facts)) {
    id->wasm_runtime = w->runtime;
    id->wasm_module = w->module;
    id->wasm_modules = w->modules;
  }
}

Identity ProcessResolver::Identify(const correlate::ProcessKey& key, std::string_view comm,
                                   uint64_t cgroup_id, std::vector<WasmModuleFact> modules,
                                   int depth) {
  Identity id;
  id.pid = key.tgid;
  id.comm = std::string(comm);
  ProcSnapshot s = reader_.Read(key.tgid, comm, *rules_);
  stats_.resolved++;
  // A zombie has lost its exe and namespaces: as good as gone.
  id.exited = !s.alive || s.zombie;
  if (id.exited) stats_.exited_at_resolve++;
  bool facts_partial = id.exited || s.ns_unreadable;
  id.executable_path = s.executable_path;
  id.executable_name = s.executable_path.empty() ? std::string(comm) : Basename(s.executable_path);
  id.command_line = std::move(s.command_line);
  id.otel_service_name = std::move(s.otel_service_name);
  id.facts = std::move(s.facts);
  for (const auto& path : s.open_wasm)
    if (auto m = ReadModule(key.tgid, path, true, 0)) AddModule(&modules, std::move(*m));
  id.facts.wasm_modules = std::move(modules);

  std::vector<std::string> paths;
  if (cgroup_id) {
    // The id BPF read is the kernel's own word on the serving thread's v2 cgroup.
    if (auto p = cgroup_index_.PathOf(cgroup_id)) {
      if (*p != "/") paths.push_back(*p);
    } else {
      stats_.cgroup_id_unknown++;
    }
  }
  if (s.cgroups.ok()) {
    for (auto& p : CandidatePaths(*s.cgroups))
      if (std::find(paths.begin(), paths.end(), p) == paths.end()) paths.push_back(std::move(p));
  } else if (s.alive && absl::IsInvalidArgument(s.cgroups.status())) {
    stats_.cgroup_untrusted++;
    if (stats_.cgroup_untrusted == 1 || stats_.cgroup_untrusted % 1000 == 0)
      spdlog::warn("layers: /proc/{}/cgroup not trusted ({}); using the cgroup id BPF reported "
                   "({} such files so far)",
                   key.tgid, s.cgroups.status().message(), stats_.cgroup_untrusted);
  }
  IdentifyContainer(paths, &id);
  if (auto sb = rules_->MatchSandbox(id.facts)) id.sandbox = *sb;
  if (id.sandbox == "gvisor" && !id.has_container()) GvisorContainer(&id);
  MatchWasm(&id);
  // Gone (or a zombie) before /proc could be read — a fork-per-connection child,
  // typically: its parent, named by the exit event, is usually alive and shares its
  // sandbox.
  constexpr int kMaxParentDepth = 4;
  if (facts_partial && id.sandbox.empty() && depth < kMaxParentDepth) {
    if (s.ppid == 0 && !parents_.count(key) && drain_) drain_();
    auto p = parents_.find(key);
    if (p != parents_.end() && p->second.tgid > 1) {
      correlate::ProcessKey parent = p->second;
      if (Entry* pe = ResolveEntry(parent, "", 0, depth + 1); pe && !pe->identity.sandbox.empty()) {
        id.sandbox = pe->identity.sandbox;
        stats_.inherited_from_parent++;
      }
    } else if (s.ppid > 1) {
      // Caught mid-exit (its exit event not out yet): stat still named the parent.
      ProcSnapshot ps = reader_.Read(s.ppid, "", *rules_);
      if (ps.alive && !ps.zombie && !ps.ns_unreadable) {
        if (auto sb = rules_->MatchSandbox(ps.facts)) {
          id.sandbox = *sb;
          stats_.inherited_from_parent++;
        }
      }
    }
  }
  return id;
}

void ProcessResolver::Rebuild(Entry* e) {
  ResourceContext ctx{host_name_, &vm_, &common_};
  e->resource = BuildResource(e->identity, ctx);
}

void ProcessResolver::Evict(const correlate::ProcessKey& key) {
  auto it = cache_.find(key);
  if (it == cache_.end()) return;
  lru_.erase(it->second.lru);
  cache_.erase(it);
  stats_.evicted++;
}

void ProcessResolver::ExpireExited() {
  if (exited_.empty()) return;
  uint64_t now = opts_.now();
  while (!exited_.empty() && now - exited_.front().first >= opts_.exit_grace_ns) {
    auto key = exited_.front().second;
    exited_.pop_front();
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.exited) Evict(key);
    early_wasm_.erase(key);
    parents_.erase(key);
  }
}

std::shared_ptr<const correlate::Resource> ProcessResolver::Resolve(const correlate::ProcessKey& key,
                                                                    std::string_view comm,
                                                                    uint64_t cgroup_id) {
  ExpireExited();
  return ResolveEntry(key, comm, cgroup_id, 0)->resource;
}

ProcessResolver::Entry* ProcessResolver::ResolveEntry(const correlate::ProcessKey& key,
                                                      std::string_view comm, uint64_t cgroup_id,
                                                      int depth) {
  if (auto it = cache_.find(key); it != cache_.end()) {
    Entry& e = it->second;
    // comm changes on exec (and prctl); an unknown comm or a process that already exited
    // cannot tell more than the cached entry.
    if (!e.stale && (comm.empty() || e.comm == comm || e.exited)) {
      lru_.splice(lru_.begin(), lru_, e.lru);
      return &e;
    }
  }
  std::vector<WasmModuleFact> modules;
  if (auto early = early_wasm_.find(key); early != early_wasm_.end()) {
    modules = std::move(early->second);
    early_wasm_.erase(early);
  }
  Identity id = Identify(key, comm, cgroup_id, std::move(modules), depth);
  // Identify may have resolved the parent (and evicted entries): look up again.
  if (auto it = cache_.find(key); it != cache_.end()) {
    Entry& e = it->second;
    // Gone before the re-read: the cached identity of the same program stays truer.
    if (!(id.exited && !e.stale)) {
      e.identity = std::move(id);
      e.comm = std::string(comm);
      e.stale = false;
      Rebuild(&e);
    }
    lru_.splice(lru_.begin(), lru_, e.lru);
    return &e;
  }
  while (cache_.size() >= max_entries_ && !lru_.empty()) Evict(lru_.back());
  lru_.push_front(key);
  Entry e;
  e.comm = std::string(comm);
  e.identity = std::move(id);
  e.exited = e.identity.exited;
  e.lru = lru_.begin();
  Rebuild(&e);
  return &cache_.emplace(key, std::move(e)).first->second;
}

void ProcessResolver::OnExec(const correlate::ProcessKey& key) {
  stats_.exec_invalidations++;
  if (auto it = cache_.find(key); it != cache_.end()) it->second.stale = true;
  // Modules opened before the exec belonged to the previous program.
  early_wasm_.erase(key);
}

void ProcessResolver::OnExit(const correlate::ProcessKey& key, const correlate::ProcessKey& parent) {
  stats_.exits++;
  if (parent.tgid != 0) {
    if (parents_.size() >= kMaxExitedQueue) parents_.clear();
    parents_[key] = parent;
  }
  if (auto it = cache_.find(key); it != cache_.end()) it->second.exited = true;
  if (exited_.size() >= kMaxExitedQueue) {
    auto old = exited_.front().second;
    exited_.pop_front();
    if (auto it = cache_.find(old); it != cache_.end() && it->second.exited) Evict(old);
    early_wasm_.erase(old);
  }
  exited_.emplace_back(opts_.now(), key);
}

void ProcessResolver::OnWasmOpen(const correlate::ProcessKey& key, const std::string& path,
                                 bool resolved, uint32_t mnt_ns) {
  stats_.wasm_opens++;
  auto mod = ReadModule(key.tgid, path, resolved, mnt_ns);
  if (!mod) return;
  auto it = cache_.find(key);
  if (it != cache_.end() && !it->second.stale) {
    Entry& e = it->second;
    if (AddModule(&e.identity.facts.wasm_modules, std::move(*mod))) {
      MatchWasm(&e.identity);
      Rebuild(&e);
    }
    return;
  }
  if (early_wasm_.size() >= kMaxEarlyProcesses && !early_wasm_.count(key)) early_wasm_.clear();
  AddModule(&early_wasm_[key], std::move(*mod));
}

}  // namespace isotrace::layers
