#include "daemon/layers/runtime_meta.h"

#include <dirent.h>
#include <glob.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/layers/rules.h"
#include "nlohmann/json.hpp"

namespace isotrace::layers {

using nlohmann::json;

uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

namespace {

constexpr size_t kMaxStateFile = 1u << 20;
constexpr size_t kMaxConfigFile = 4u << 20;
constexpr size_t kMaxPodmanDb = 16u << 20;
constexpr size_t kMaxStates = 8192;
constexpr size_t kMaxLogEntries = 65536;

// Reads a JSON file of at most `max` bytes; nullopt when missing, too big or malformed
// (*bad counts the last two).
std::optional<json> ReadJson(const std::string& path, size_t max, uint64_t* bad) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  // Read in chunks rather than into a zeroed max-sized buffer: state files are a few
  // KiB and are re-read on every rescan, while `max` is up to 16 MiB (the proc fuzzer's
  // profile showed the memset of that buffer as most of a resolve).
  std::string text;
  char chunk[64 * 1024];
  while (text.size() <= max && in.read(chunk, sizeof(chunk)).gcount() > 0)
    text.append(chunk, static_cast<size_t>(in.gcount()));
  if (text.size() > max) {
    (*bad)++;
    return std::nullopt;
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || (!j.is_object() && !j.is_array())) {
    (*bad)++;
    return std::nullopt;
  }
  return j;
}

std::string Str(const json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t MtimeNs(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return -1;
  return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

std::vector<std::string> Glob(const std::string& pattern, size_t max) {
  std::vector<std::string> out;
  glob_t g{};
  if (glob(pattern.c_str(), GLOB_NOSORT | GLOB_ONLYDIR, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc && out.size() < max; i++) out.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  return out;
}

std::vector<std::string> ListDir(const std::string& dir, size_t max) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    if (out.size() >= max) break;
    out.emplace_back(n);
  }
  closedir(d);
  return out;
}

bool IsHex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

void SetIfValid(std::string* field, const std::string& v) {
  if (field->empty() && ValidName(v)) *field = v;
}

// Kubernetes names from labels/annotations (CRI containerd and CRI-O / cri-dockerd keys).
void FromKubernetesKeys(const json& m, ContainerDetails* d) {
  if (!m.is_object()) return;
  std::string cname = Str(m, "io.kubernetes.cri.container-name");
  if (cname.empty()) cname = Str(m, "io.kubernetes.container.name");
  if (cname != "POD") SetIfValid(&d->k8s_container, cname);  // CRI-O's pause container
  std::string pod = Str(m, "io.kubernetes.cri.sandbox-name");
  if (pod.empty()) pod = Str(m, "io.kubernetes.pod.name");
  SetIfValid(&d->pod_name, pod);
  std::string ns = Str(m, "io.kubernetes.cri.sandbox-namespace");
  if (ns.empty()) ns = Str(m, "io.kubernetes.pod.namespace");
  SetIfValid(&d->pod_namespace, ns);
  std::string uid = Str(m, "io.kubernetes.cri.sandbox-uid");
  if (uid.empty()) uid = Str(m, "io.kubernetes.pod.uid");
  if (ValidPodUid(uid)) {
    if (d->pod_uid.empty()) d->pod_uid = uid;
    else if (d->pod_uid != uid) d->conflict = true;
  }
  SetIfValid(&d->name, Str(m, "nerdctl/name"));
}

}  // namespace

OciStateIndex::OciStateIndex(std::string prefix, std::vector<std::pair<std::string, std::string>> roots,
                             std::vector<std::string> cgroup_mounts, uint64_t rescan_interval_ns,
                             NowFn now)
    : prefix_(std::move(prefix)),
      roots_(std::move(roots)),
      mounts_(std::move(cgroup_mounts)),
      interval_ns_(rescan_interval_ns),
      now_(now ? std::move(now) : NowFn(MonotonicNs)) {
  // Longest mount first: /sys/fs/cgroup/unified before /sys/fs/cgroup.
  std::sort(mounts_.begin(), mounts_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
}

std::vector<int64_t> OciStateIndex::RootMtimes() const {
  std::vector<int64_t> out;
  for (const auto& [pattern, runtime] : roots_)
    for (const auto& dir : Glob(prefix_ + pattern, 256)) out.push_back(MtimeNs(dir));
  return out;
}

void OciStateIndex::MaybeRescan(bool on_miss) {
  uint64_t now = now_();
  if (scanned_ && now - last_scan_ns_ < interval_ns_) {
    // Creating <root>/<id> changes the root's mtime: cheap to check, and it means the
    // missing container may be there now.
    if (!on_miss) return;
    std::vector<int64_t> mtimes = RootMtimes();
    if (mtimes == root_mtimes_) return;
  }
  scanned_ = true;
  last_scan_ns_ = now;
  root_mtimes_ = RootMtimes();
  std::map<std::string, Cached> files;
  auto relative = [&](const std::string& p) -> std::string {
    for (const auto& m : mounts_) {
      if (p == m) return "/";
      if (absl::StartsWith(p, m + "/")) return p.substr(m.size());
    }
    // crun may record the path relative to the v2 mount already.
    return absl::StartsWith(p, "/sys/") ? std::string() : (p.empty() || p[0] != '/' ? "/" + p : p);
  };
  for (const auto& [pattern, runtime] : roots_) {
    for (const auto& dir : Glob(prefix_ + pattern, 256)) {
      for (const auto& id : ListDir(dir, kMaxStates)) {
        if (files.size() >= kMaxStates) break;
        for (const char* fname : {"state.json", "status"}) {
          std::string path = absl::StrCat(dir, "/", id, "/", fname);
          int64_t mtime = MtimeNs(path);
          if (mtime < 0) continue;
          auto old = files_.find(path);
          if (old != files_.end() && old->second.mtime_ns == mtime) {
            files[path] = old->second;
            break;
          }
          Cached c;
          c.mtime_ns = mtime;
          auto j = ReadJson(path, kMaxStateFile, &bad_files_);
          if (j && j->is_object() && ValidContainerId(id)) {
            OciContainer oc;
            oc.runtime = runtime;
            oc.id = id;
            if (auto it = j->find("init_process_pid"); it != j->end() && it->is_number_unsigned())
              oc.init_pid = it->get<uint32_t>();
            if (auto it = j->find("pid"); it != j->end() && it->is_number_unsigned())
              oc.init_pid = it->get<uint32_t>();
            if (auto it = j->find("cgroup_paths"); it != j->end() && it->is_object()) {
              for (const auto& [k, v] : it->items())
                if (v.is_string()) {
                  std::string rel = relative(v.get<std::string>());
                  if (!rel.empty() && std::find(oc.cgroups.begin(), oc.cgroups.end(), rel) ==
                                          oc.cgroups.end())
                    oc.cgroups.push_back(rel);
                }
            }
            if (std::string cp = Str(*j, "cgroup-path"); !cp.empty()) {
              std::string rel = relative(cp);
              if (!rel.empty()) oc.cgroups.push_back(rel);
            }
            oc.bundle = Str(*j, "bundle");
            if (auto cfg = j->find("config"); cfg != j->end() && cfg->is_object()) {
              if (auto labels = cfg->find("labels"); labels != cfg->end() && labels->is_array())
                for (const auto& l : *labels)
                  if (l.is_string() && absl::StartsWith(l.get<std::string>(), "bundle="))
                    oc.bundle = l.get<std::string>().substr(7);
            }
            c.c = std::move(oc);
          }
          files[path] = std::move(c);
          break;
        }
      }
    }
  }
  files_ = std::move(files);
  containers_.clear();
  for (const auto& [path, c] : files_)
    if (c.c) containers_.push_back(*c.c);
}

std::optional<OciContainer> OciStateIndex::FindByCgroup(const std::vector<std::string>& paths) {
  MaybeRescan(false);
  auto found = FindByCgroupNoScan(paths);
  if (found) return found;
  MaybeRescan(true);
  return FindByCgroupNoScan(paths);
}

std::optional<OciContainer> OciStateIndex::FindByCgroupNoScan(
    const std::vector<std::string>& paths) const {
  const OciContainer* best = nullptr;
  size_t best_len = 0;
  for (const auto& c : containers_) {
    for (const auto& cg : c.cgroups) {
      if (cg == "/" || cg.size() <= best_len) continue;
      for (const auto& p : paths) {
        if (p == cg || (absl::StartsWith(p, cg) && p[cg.size()] == '/')) {
          best = &c;
          best_len = cg.size();
          break;
        }
      }
    }
  }
  if (!best) return std::nullopt;
  return *best;
}

std::optional<OciContainer> OciStateIndex::FindById(const std::string& id) {
  MaybeRescan(false);
  for (int pass = 0; pass < 2; pass++) {
    for (const auto& c : containers_)
      if (c.id == id) return c;
    MaybeRescan(true);
  }
  return std::nullopt;
}

std::optional<std::pair<std::string, ContainerDetails>> ParseLogLinkName(const std::string& name) {
  // <pod>_<namespace>_<container>-<id>.log; none of pod, namespace and container (DNS
  // names) can hold '_', and the id is the last 64 hex digits.
  if (!absl::EndsWith(name, ".log") || name.size() < 4 + 65 + 5) return std::nullopt;
  std::string stem = name.substr(0, name.size() - 4);
  std::string id = stem.substr(stem.size() - 64);
  if (!IsHex64(id) || stem[stem.size() - 65] != '-') return std::nullopt;
  std::vector<std::string> parts = absl::StrSplit(stem.substr(0, stem.size() - 65), '_');
  if (parts.size() != 3) return std::nullopt;
  ContainerDetails d;
  if (!ValidName(parts[0]) || !ValidName(parts[1]) || !ValidName(parts[2])) return std::nullopt;
  d.pod_name = parts[0];
  d.pod_namespace = parts[1];
  d.k8s_container = parts[2];
  return std::make_pair(id, d);
}

std::optional<std::pair<std::string, std::pair<std::string, std::string>>> ParsePodDirName(
    const std::string& name) {
  std::vector<std::string> parts = absl::StrSplit(name, '_');
  if (parts.size() != 3 || !ValidPodUid(parts[2]) || !ValidName(parts[0]) || !ValidName(parts[1]))
    return std::nullopt;
  return std::make_pair(parts[2], std::make_pair(parts[0], parts[1]));
}

RuntimeMetadata::RuntimeMetadata(std::string prefix, uint64_t rescan_interval_ns, NowFn now,
                                 size_t max_entries)
    : prefix_(std::move(prefix)),
      interval_ns_(rescan_interval_ns),
      now_(now ? std::move(now) : NowFn(MonotonicNs)),
      max_entries_(max_entries) {}

void RuntimeMetadata::RefreshLogTree() {
  uint64_t now = now_();
  if (log_scanned_ && now - last_log_scan_ns_ < interval_ns_) return;
  log_scanned_ = true;
  last_log_scan_ns_ = now;
  log_links_.clear();
  pod_dirs_.clear();
  for (const auto& n : ListDir(prefix_ + "/var/log/containers", kMaxLogEntries))
    if (auto p = ParseLogLinkName(n)) log_links_[p->first] = p->second;
  for (const auto& n : ListDir(prefix_ + "/var/log/pods", kMaxLogEntries))
    if (auto p = ParsePodDirName(n)) pod_dirs_[p->first] = p->second;
}

void RuntimeMetadata::FromLogTree(const std::string& id, const std::string& pod_uid,
                                  ContainerDetails* d) {
  auto apply = [&]() {
    bool found = false;
    if (auto it = log_links_.find(id); it != log_links_.end()) {
      SetIfValid(&d->pod_name, it->second.pod_name);
      SetIfValid(&d->pod_namespace, it->second.pod_namespace);
      SetIfValid(&d->k8s_container, it->second.k8s_container);
      found = true;
    }
    if (auto it = pod_dirs_.find(pod_uid); !pod_uid.empty() && it != pod_dirs_.end()) {
      // The link and the directory must agree.
      if ((!d->pod_namespace.empty() && d->pod_namespace != it->second.first) ||
          (!d->pod_name.empty() && d->pod_name != it->second.second))
        d->conflict = true;
      SetIfValid(&d->pod_namespace, it->second.first);
      SetIfValid(&d->pod_name, it->second.second);
      found = true;
    }
    return found;
  };
  if (!log_scanned_) RefreshLogTree();
  if (!apply()) {
    RefreshLogTree();  // rate-limited
    apply();
  }
}

void RuntimeMetadata::FromAnnotations(const std::string& bundle, ContainerDetails* d) {
  if (bundle.empty() || bundle[0] != '/') return;
  auto j = ReadJson(prefix_ + bundle + "/config.json", kMaxConfigFile, &bad_files_);
  if (!j || !j->is_object()) return;
  if (auto a = j->find("annotations"); a != j->end()) FromKubernetesKeys(*a, d);
}

void RuntimeMetadata::FromEngine(const std::string& runtime, const std::string& id,
                                 ContainerDetails* d) {
  if (runtime == "docker" && IsHex64(id)) {
    auto j = ReadJson(prefix_ + "/var/lib/docker/containers/" + id + "/config.v2.json",
                      kMaxConfigFile, &bad_files_);
    if (!j || !j->is_object()) return;
    std::string name = Str(*j, "Name");
    if (absl::StartsWith(name, "/")) name = name.substr(1);
    // Kubernetes (cri-dockerd) names its containers k8s_<container>_<pod>_...: the
    // pod labels below are the names users know.
    SetIfValid(&d->name, name);
    if (auto cfg = j->find("Config"); cfg != j->end() && cfg->is_object())
      if (auto labels = cfg->find("Labels"); labels != cfg->end()) FromKubernetesKeys(*labels, d);
  } else if (runtime == "podman" && IsHex64(id)) {
    auto j = ReadJson(prefix_ + "/var/lib/containers/storage/overlay-containers/containers.json",
                      kMaxPodmanDb, &bad_files_);
    if (!j || !j->is_array()) return;
    for (const auto& c : *j) {
      if (Str(c, "id") != id) continue;
      if (auto names = c.find("names"); names != c.end() && names->is_array() && !names->empty() &&
                                        (*names)[0].is_string())
        SetIfValid(&d->name, (*names)[0].get<std::string>());
      break;
    }
  }
}

ContainerDetails RuntimeMetadata::Lookup(const std::string& runtime, const std::string& id,
                                         const std::string& pod_uid, const std::string& bundle) {
  std::string key = absl::StrCat(runtime, "/", id, "/", pod_uid);
  uint64_t now = now_();
  if (auto it = cache_.find(key); it != cache_.end()) {
    const auto& d = it->second.d;
    // Complete entries are final; a pod whose names were not there yet (the kubelet
    // writes its log tree after the container starts) is looked up again later.
    bool complete = pod_uid.empty() || (!d.k8s_container.empty() && !d.pod_name.empty());
    if (complete || now - it->second.at_ns < interval_ns_) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      return d;
    }
    lru_.erase(it->second.lru);
    cache_.erase(it);
  }
  ContainerDetails d;
  d.pod_uid = pod_uid;
  FromAnnotations(bundle, &d);
  FromEngine(runtime, id, &d);
  if (!d.pod_uid.empty() || IsHex64(id)) FromLogTree(id, d.pod_uid, &d);
  // Sources that disagree (a pod uid in the cgroup path against another in the
  // annotations, a log link against a pod directory) name nothing: a wrong pod is worse
  // than none. The cgroup path's uid stays.
  if (d.conflict) {
    d = ContainerDetails{};
    d.pod_uid = pod_uid;
    d.conflict = true;
  }
  while (cache_.size() >= max_entries_ && !lru_.empty()) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  cache_[key] = Entry{d, now, lru_.begin()};
  return d;
}

}  // namespace isotrace::layers
