#pragma once
// What container runtimes and the kubelet leave on the node about a container, read on
// a cache miss and cached:
//   - OCI runtime state (runc family: <root>/<id>/state.json; crun: <root>/<id>/status):
//     the container id and cgroup of containers whose cgroup path names no runtime
//     (plain runc, containerd and cri-dockerd with the cgroupfs driver), and the bundle.
//   - The bundle's config.json annotations: CRI containerd (io.kubernetes.cri.*) and
//     CRI-O (io.kubernetes.*) name the pod, namespace and container; nerdctl its name.
//   - The kubelet's log tree: /var/log/containers/<pod>_<ns>_<container>-<id>.log and
//     /var/log/pods/<ns>_<pod>_<uid>/.
//   - Engine metadata: Docker's config.v2.json, Podman's containers.json (names).
// Every file is size-bounded and parsed without exceptions; a bad one is counted.

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace isotrace::layers {

using NowFn = std::function<uint64_t()>;
uint64_t MonotonicNs();

struct OciContainer {
  std::string runtime;               // name of the rule whose root holds the state
  std::string id;
  std::string bundle;
  uint32_t init_pid = 0;
  std::vector<std::string> cgroups;  // relative to their hierarchy's mount point
};

class OciStateIndex {
 public:
  // roots: (glob, runtime) pairs from the rule table; `prefix` is prepended to every
  // path read (tests); cgroup_mounts: mount points used to make state paths relative.
  // Rescans every `rescan_interval_ns`, and at once on a miss when a state directory
  // changed (a container created a moment ago is found at its first request).
  OciStateIndex(std::string prefix, std::vector<std::pair<std::string, std::string>> roots,
                std::vector<std::string> cgroup_mounts, uint64_t rescan_interval_ns = 2000000000ull,
                NowFn now = nullptr);

  // The container whose cgroup is one of `paths` or an ancestor of one (longest wins).
  std::optional<OciContainer> FindByCgroup(const std::vector<std::string>& paths);
  std::optional<OciContainer> FindById(const std::string& id);
  std::optional<OciContainer> FindByCgroupNoScan(const std::vector<std::string>& paths) const;
  uint64_t bad_files() const { return bad_files_; }
  size_t size() const { return containers_.size(); }

 private:
  void MaybeRescan(bool on_miss);
  std::vector<int64_t> RootMtimes() const;
  std::string prefix_;
  std::vector<std::pair<std::string, std::string>> roots_;
  std::vector<std::string> mounts_;
  uint64_t interval_ns_;
  NowFn now_;
  bool scanned_ = false;
  uint64_t last_scan_ns_ = 0;
  uint64_t bad_files_ = 0;
  std::vector<int64_t> root_mtimes_;  // of the state directories at the last scan
  struct Cached {
    int64_t mtime_ns = 0;
    std::optional<OciContainer> c;
  };
  std::map<std::string, Cached> files_;  // state file → parsed
  std::vector<OciContainer> containers_;
};

struct ContainerDetails {
  std::string name;            // container.name (engine metadata, nerdctl annotation)
  std::string pod_name;        // k8s.pod.name
  std::string pod_namespace;   // k8s.namespace.name
  std::string pod_uid;         // k8s.pod.uid
  std::string k8s_container;   // k8s.container.name
  bool conflict = false;       // sources disagreed: names dropped
};

class RuntimeMetadata {
 public:
  explicit RuntimeMetadata(std::string prefix = "", uint64_t rescan_interval_ns = 2000000000ull,
                           NowFn now = nullptr, size_t max_entries = 4096);

  // Details of one container; `bundle` (from OCI state) may be empty. Cached per id.
  ContainerDetails Lookup(const std::string& runtime, const std::string& id,
                          const std::string& pod_uid, const std::string& bundle);
  uint64_t bad_files() const { return bad_files_; }

 private:
  void FromAnnotations(const std::string& bundle, ContainerDetails* d);
  void FromEngine(const std::string& runtime, const std::string& id, ContainerDetails* d);
  void FromLogTree(const std::string& id, const std::string& pod_uid, ContainerDetails* d);
  void RefreshLogTree();

  std::string prefix_;
  uint64_t interval_ns_;
  NowFn now_;
  size_t max_entries_;
  uint64_t bad_files_ = 0;
  // /var/log/containers: container id → (pod, namespace, container).
  std::unordered_map<std::string, ContainerDetails> log_links_;
  // /var/log/pods: pod uid → (namespace, pod).
  std::unordered_map<std::string, std::pair<std::string, std::string>> pod_dirs_;
  bool log_scanned_ = false;
  uint64_t last_log_scan_ns_ = 0;
  struct Entry {
    ContainerDetails d;
    uint64_t at_ns;
    std::list<std::string>::iterator lru;
  };
  std::unordered_map<std::string, Entry> cache_;
  std::list<std::string> lru_;
};

// Parses a log-link name "<pod>_<namespace>_<container>-<64 hex id>.log".
std::optional<std::pair<std::string, ContainerDetails>> ParseLogLinkName(const std::string& name);
// Parses a pod log directory name "<namespace>_<pod>_<uid>" → (uid, (namespace, pod)).
std::optional<std::pair<std::string, std::pair<std::string, std::string>>> ParsePodDirName(
    const std::string& name);

}  // namespace isotrace::layers
