#include "daemon/layers/rules.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "re2/re2.h"

namespace isotrace::layers {

namespace {

using config::LayerRule;

LayerRule Cgroup(std::string name, std::string pattern) {
  LayerRule r;
  r.layer = "container";
  r.name = std::move(name);
  r.cgroup = std::move(pattern);
  return r;
}
LayerRule OciState(std::string name, std::string glob) {
  LayerRule r;
  r.layer = "container";
  r.name = std::move(name);
  r.oci_state = std::move(glob);
  return r;
}
LayerRule Proc(std::string layer, std::string name, std::string exe, std::string ancestor,
               std::vector<std::string> ns = {}) {
  LayerRule r;
  r.layer = std::move(layer);
  r.name = std::move(name);
  r.executable = std::move(exe);
  r.ancestor = std::move(ancestor);
  r.namespaces = std::move(ns);
  return r;
}
LayerRule Wasm(std::string name, std::string exe, std::string library, std::string import,
               bool opened) {
  LayerRule r;
  r.layer = "wasm";
  r.name = std::move(name);
  r.executable = std::move(exe);
  r.library = std::move(library);
  r.wasm_import = std::move(import);
  r.wasm_opened = opened;
  return r;
}

// Component boundaries: a pattern only matches whole path components, so
// "/evil-docker-<id>.scope" is not a docker scope.
#define B "(?:^|/)"
#define E "(?:/|$)"
#define HEX64 "[0-9a-f]{64}"
// Kubernetes pod cgroups. systemd driver: kubepods[-<qos>]-pod<uid with _>.slice;
// cgroupfs driver: kubepods/[<qos>/]pod<uid>.
#define POD_SYSTEMD "kubepods(?:-(?P<qos>burstable|besteffort))?-pod(?P<pod_uid>[0-9a-f_]{36})\\.slice/"
#define POD_CGROUPFS "kubepods/(?:(?P<qos>burstable|besteffort)/)?pod(?P<pod_uid>[0-9a-f-]{36})/"

std::vector<LayerRule> MakeBuiltins() {
  std::vector<LayerRule> t = {
      // Kubernetes, systemd cgroup driver: the container scope names the CRI runtime.
      Cgroup("containerd", B POD_SYSTEMD "cri-containerd-(?P<id>" HEX64 ")\\.scope" E),
      Cgroup("cri-o", B POD_SYSTEMD "crio-(?P<id>" HEX64 ")\\.scope" E),
      Cgroup("docker", B POD_SYSTEMD "docker-(?P<id>" HEX64 ")\\.scope" E),
      // Kubernetes, cgroupfs driver: CRI-O prefixes the id; containerd and cri-dockerd do
      // not, so their runtime comes from OCI state or the shim (rules below).
      Cgroup("cri-o", B POD_CGROUPFS "crio-(?P<id>" HEX64 ")" E),
      Cgroup("", B POD_CGROUPFS "(?P<id>" HEX64 ")" E),
      // Docker (systemd and cgroupfs drivers).
      Cgroup("docker", B "docker-(?P<id>" HEX64 ")\\.scope" E),
      Cgroup("docker", B "docker/(?P<id>" HEX64 ")" E),
      // Podman/libpod (systemd: machine.slice or the user's slice; cgroupfs: libpod_parent).
      Cgroup("podman", B "libpod-(?P<id>" HEX64 ")\\.scope" E),
      Cgroup("podman", B "libpod_parent/libpod-(?P<id>" HEX64 ")" E),
      // CRI-O and containerd outside Kubernetes pod slices; nerdctl is containerd's CLI.
      Cgroup("cri-o", B "crio-(?P<id>" HEX64 ")\\.scope" E),
      Cgroup("containerd", B "cri-containerd-(?P<id>" HEX64 ")\\.scope" E),
      Cgroup("containerd", B "nerdctl-(?P<id>" HEX64 ")\\.scope" E),
      // runc and crun with their systemd driver ("<slice>:runc:<id>" → runc-<id>.scope).
      Cgroup("runc", B "runc-(?P<id>[A-Za-z0-9][A-Za-z0-9_.+-]*)\\.scope" E),
      Cgroup("crun", B "crun-(?P<id>[A-Za-z0-9][A-Za-z0-9_.+-]*)\\.scope" E),
      // LXC 4+ and systemd-nspawn name their containers in the path.
      Cgroup("lxc", B "lxc\\.payload\\.(?P<name>[^/]+)" E),
      Cgroup("systemd-nspawn", B "machine\\.slice/systemd-nspawn@(?P<name>[^/]+)\\.service" E),
      // OCI runtime state: a container whose cgroup path says nothing (plain runc,
      // containerd or cri-dockerd with cgroupfs) is found by its cgroup in the state.
      OciState("docker", "/run/docker/runtime-runc/*"),
      OciState("containerd", "/run/containerd/runc/*"),
      OciState("runc", "/run/runc"),
      OciState("crun", "/run/crun"),
      // A systemd service: a cgroup with its own limits, not a container (no container.id).
      Cgroup("systemd", B "(?P<unit>[^/]+\\.service)$"),
      // No built-in executable/ancestor container rules: shims daemonize (their parent is
      // init) and containerd-shim-runc-v2 serves docker and containerd alike, so an
      // ancestor cannot name the engine for sure. Users can add such rules.

      // Sandboxes, most specific first: Kata's VMM (which may be firecracker) is Kata.
      Proc("sandbox", "kata", "containerd-shim-kata-v2", ""),
      Proc("sandbox", "kata", "", "containerd-shim-kata-v2"),
      Proc("sandbox", "gvisor", "runsc(?:-sandbox|-gofer)?", "", {"mnt"}),
      Proc("sandbox", "gvisor", "", "runsc(?:-sandbox)?|containerd-shim-runsc-v1"),
      // microVMs: the VMM is the workload the host sees; its guest's requests are seen at
      // its tap (probes/edge_targets.h). Firecracker, cloud-hypervisor and QEMU alike.
      Proc("sandbox", "microvm", "firecracker|jailer|cloud-hypervisor|qemu-system-[A-Za-z0-9_]+|qemu-kvm", ""),
      Proc("sandbox", "bwrap", "", "bwrap", {"mnt"}),
      Proc("sandbox", "firejail", "", "firejail", {"mnt"}),

      // Wasm: crun's handlers load the runtime library into crun itself.
      Wasm("crun-wasmedge", "crun", "libwasmedge\\.so(?:\\.[0-9.]+)?", "", false),
      Wasm("crun-wasmtime", "crun", "libwasmtime\\.so(?:\\.[0-9.]+)?", "", false),
      Wasm("crun-wasmer", "crun", "libwasmer\\.so(?:\\.[0-9.]+)?", "", false),
      Wasm("crun-wamr", "crun", "libiwasm\\.so(?:\\.[0-9.]+)?", "", false),
      // runwasi shims run the module in the shim process.
      Wasm("runwasi-wasmedge", "containerd-shim-wasmedge-v[0-9]+", "", "", false),
      Wasm("runwasi-wasmtime", "containerd-shim-wasmtime-v[0-9]+", "", "", false),
      Wasm("spin", "containerd-shim-spin-v[0-9]+", "", "", false),
      // Runtimes by executable, then by library (embedders).
      Wasm("wasmedge", "wasmedge", "", "", false),
      Wasm("wasmtime", "wasmtime", "", "", false),
      Wasm("wasmer", "wasmer", "", "", false),
      Wasm("spin", "spin", "", "", false),
      Wasm("wamr", "iwasm", "", "", false),
      Wasm("wasmedge", "", "libwasmedge\\.so(?:\\.[0-9.]+)?", "", false),
      Wasm("wasmtime", "", "libwasmtime\\.so(?:\\.[0-9.]+)?", "", false),
      Wasm("wasmer", "", "libwasmer\\.so(?:\\.[0-9.]+)?", "", false),
      Wasm("wamr", "", "libiwasm\\.so(?:\\.[0-9.]+)?", "", false),
      // Embedding hosts, seen when they open a module: Node.js node:wasi (a WASI module),
      // plain WebAssembly in Node.js, and any other host by its executable name.
      Wasm("node-wasi", "node(?:js)?", "", "wasi_snapshot_preview1", false),
      Wasm("node-wasi", "node(?:js)?", "", "wasi_unstable", false),
      Wasm("node", "node(?:js)?", "", "", true),
      Wasm("${executable}", "", "", "", true),
  };
  return t;
}
#undef B
#undef E
#undef HEX64
#undef POD_SYSTEMD
#undef POD_CGROUPFS

bool FullMatch(const re2::RE2* re, const std::string& s) { return RE2::FullMatch(s, *re); }

std::unique_ptr<re2::RE2> CompileOrNull(const std::string& pattern, absl::Status* st,
                                        std::string_view what, size_t index) {
  if (pattern.empty()) return nullptr;
  RE2::Options opts;
  opts.set_log_errors(false);
  auto re = std::make_unique<re2::RE2>(pattern, opts);
  if (!re->ok() && st->ok())
    *st = absl::InvalidArgumentError(absl::StrCat("layers rule ", index, " ", std::string(what),
                                                  ": bad regular expression '", pattern,
                                                  "': ", re->error()));
  return re;
}

}  // namespace

CompiledRule::CompiledRule() = default;
CompiledRule::~CompiledRule() = default;
CompiledRule::CompiledRule(CompiledRule&&) noexcept = default;
CompiledRule& CompiledRule::operator=(CompiledRule&&) noexcept = default;

uint32_t NamespaceBitFromName(std::string_view name) {
  static const std::pair<std::string_view, uint32_t> kNames[] = {
      {"mnt", kNsMnt}, {"pid", kNsPid}, {"net", kNsNet},       {"user", kNsUser},
      {"ipc", kNsIpc}, {"uts", kNsUts}, {"cgroup", kNsCgroup}};
  for (const auto& [n, b] : kNames)
    if (n == name) return b;
  return 0;
}

const char* NamespaceFileName(uint32_t bit) {
  switch (bit) {
    case kNsMnt: return "mnt";
    case kNsPid: return "pid";
    case kNsNet: return "net";
    case kNsUser: return "user";
    case kNsIpc: return "ipc";
    case kNsUts: return "uts";
    case kNsCgroup: return "cgroup";
  }
  return "";
}

const std::vector<config::LayerRule>& BuiltinRules() {
  static const std::vector<config::LayerRule> kRules = MakeBuiltins();
  return kRules;
}

bool ValidContainerId(std::string_view id) {
  // runc accepts ^[\w+-\.]+$; engines use 64 hex digits. Bounded so a hostile name
  // cannot become a megabyte-long attribute.
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '+' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return id != "." && id != "..";
}

bool ValidPodUid(std::string_view uid) {
  if (uid.size() != 36) return false;
  for (size_t i = 0; i < uid.size(); i++) {
    char c = uid[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f || c == '/') return false;
  return true;
}

absl::StatusOr<std::shared_ptr<const RuleSet>> RuleSet::Compile(
    const std::vector<config::LayerRule>& user, bool builtin) {
  auto set = std::make_shared<RuleSet>();
  absl::Status st;
  auto add = [&](const config::LayerRule& r, bool is_builtin, size_t index) {
    if (auto check = config::CheckLayerRule(r); !check.ok()) {
      if (st.ok())
        st = absl::InvalidArgumentError(absl::StrCat("layers rule ", index, ": ", check.message()));
      return;
    }
    CompiledRule c;
    c.layer = r.layer == "container" ? Layer::kContainer
              : r.layer == "sandbox" ? Layer::kSandbox
                                     : Layer::kWasm;
    c.name = r.name;
    c.builtin = is_builtin;
    c.cgroup = CompileOrNull(r.cgroup, &st, "cgroup", index);
    c.executable = CompileOrNull(r.executable, &st, "executable", index);
    c.ancestor = CompileOrNull(r.ancestor, &st, "ancestor", index);
    c.library = CompileOrNull(r.library, &st, "library", index);
    c.oci_state = r.oci_state;
    c.wasm_import = r.wasm_import;
    c.wasm_opened = r.wasm_opened;
    for (const auto& ns : r.namespaces) c.namespaces |= NamespaceBitFromName(ns);
    set->namespaces_needed_ |= c.namespaces;
    set->needs_libraries_ |= c.library != nullptr;
    set->needs_ancestors_ |= c.ancestor != nullptr;
    set->rules_.push_back(std::move(c));
  };
  for (size_t i = 0; i < user.size(); i++) add(user[i], false, i);
  if (builtin)
    for (size_t i = 0; i < BuiltinRules().size(); i++) add(BuiltinRules()[i], true, i);
  if (!st.ok()) return st;
  return std::shared_ptr<const RuleSet>(std::move(set));
}

std::optional<CgroupMatch> RuleSet::MatchCgroup(const std::vector<std::string>& paths,
                                                MatchRejects* rejects) const {
  MatchRejects scratch;
  if (!rejects) rejects = &scratch;
  std::vector<const std::string*> usable;
  for (const auto& path : paths) {
    if (path.size() > kMaxCgroupPath) rejects->too_long++;
    else usable.push_back(&path);
  }
  for (const auto& rule : rules_) {
    if (rule.layer != Layer::kContainer || !rule.cgroup) continue;
    const re2::RE2& re = *rule.cgroup;
    int ngroups = re.NumberOfCapturingGroups();
    std::vector<re2::StringPiece> groups(ngroups + 1);
    for (const std::string* pp : usable) {
      const std::string& path = *pp;
      if (!re.Match(path, 0, path.size(), RE2::UNANCHORED, groups.data(), ngroups + 1)) continue;
      CgroupMatch m;
      m.runtime = rule.name;
      m.path = path;
      for (const auto& [gname, idx] : re.NamedCapturingGroups()) {
        std::string v = groups[idx].as_string();
        if (gname == "id") m.id = v;
        else if (gname == "pod_uid") m.pod_uid = absl::StrReplaceAll(v, {{"_", "-"}});
        else if (gname == "qos") m.qos = v;
        else if (gname == "name") m.name = v;
        else if (gname == "unit") m.unit = v;
      }
      bool ok = (m.id.empty() || ValidContainerId(m.id)) &&
                (m.pod_uid.empty() || ValidPodUid(m.pod_uid)) &&
                (m.name.empty() || ValidName(m.name)) && (m.unit.empty() || ValidName(m.unit));
      if (!ok) {
        rejects->bad_id++;
        continue;
      }
      // The pod slice of a Guaranteed pod sits directly under kubepods: no QoS level.
      if (!m.pod_uid.empty() && m.qos.empty()) m.qos = "guaranteed";
      return m;
    }
  }
  return std::nullopt;
}

bool RuleSet::MatchProcess(const CompiledRule& r, const ProcessFacts& f) const {
  if (r.executable && !FullMatch(r.executable.get(), f.executable)) return false;
  if (r.ancestor) {
    bool any = false;
    for (const auto& a : f.ancestors)
      if ((any = FullMatch(r.ancestor.get(), a))) break;
    if (!any) return false;
  }
  if (r.library) {
    bool any = false;
    for (const auto& l : f.libraries)
      if ((any = FullMatch(r.library.get(), l))) break;
    if (!any) return false;
  }
  if (!r.wasm_import.empty()) {
    bool any = false;
    for (const auto& m : f.wasm_modules)
      any |= std::find(m.imports.begin(), m.imports.end(), r.wasm_import) != m.imports.end();
    if (!any) return false;
  }
  if (r.wasm_opened && f.wasm_modules.empty()) return false;
  if ((f.ns_differs & r.namespaces) != r.namespaces) return false;
  return true;
}

std::optional<std::string> RuleSet::MatchContainerRuntime(const ProcessFacts& facts) const {
  for (const auto& r : rules_)
    if (r.layer == Layer::kContainer && (r.executable || r.ancestor) && MatchProcess(r, facts))
      return r.name;
  return std::nullopt;
}

std::optional<std::string> RuleSet::MatchSandbox(const ProcessFacts& facts) const {
  for (const auto& r : rules_)
    if (r.layer == Layer::kSandbox && MatchProcess(r, facts)) return r.name;
  return std::nullopt;
}

std::optional<WasmMatch> RuleSet::MatchWasm(const ProcessFacts& facts) const {
  for (const auto& r : rules_) {
    if (r.layer != Layer::kWasm || !MatchProcess(r, facts)) continue;
    WasmMatch m;
    m.runtime = absl::StrReplaceAll(r.name, {{"${executable}", facts.executable}});
    if (m.runtime.empty()) continue;
    std::vector<std::string> distinct;
    for (const auto& mod : facts.wasm_modules)
      if (std::find(distinct.begin(), distinct.end(), mod.path) == distinct.end())
        distinct.push_back(mod.path);
    m.modules = distinct.size();
    // Several modules in one process: which one served a request is not known.
    if (distinct.size() == 1) m.module = distinct[0];
    return m;
  }
  return std::nullopt;
}

std::vector<std::pair<std::string, std::string>> RuleSet::OciStateRoots() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : rules_)
    if (r.layer == Layer::kContainer && !r.oci_state.empty()) out.emplace_back(r.oci_state, r.name);
  return out;
}

}  // namespace isotrace::layers
