#pragma once
// Sandboxes whose requests never reach the host's sockets, and the host-side device
// where their packets can be seen (docs/layers.md, "Sandboxes seen at their edge"):
// - gVisor in its netstack mode: the Sentry (`runsc ... boot ...`) in a network
//   namespace other than ours; the device is the host side of that namespace's veth
//   (its IFLA_LINK, read over netlink from inside the namespace). In host-network mode
//   (`--network=host`) the Sentry makes host socket syscalls and is seen there instead.
// - microVMs: a VMM (qemu-system-*, firecracker, cloud-hypervisor) holding a tap fd
//   (/proc/<pid>/fdinfo says `iff: <name>`) whose tap is in our namespace.
// Scanning is /proc reads plus one netlink dump per new gVisor namespace; done every
// few seconds off the event path.

#include <cstdint>
#include <string>
#include <vector>

#include <sys/types.h>

#include "absl/container/flat_hash_map.h"

namespace isotrace::probes {

struct EdgeTarget {
  enum class Kind : uint8_t { kGvisor, kMicroVm };
  Kind kind = Kind::kGvisor;
  uint32_t pid = 0;          // the Sentry / the VMM
  uint64_t start_ticks = 0;  // /proc/<pid>/stat starttime: (pid, start) names the process
  uint32_t ifindex = 0;      // host-side device
  std::string ifname;
  std::string comm;
  uint64_t cgroup_id = 0;    // cgroup v2 id of the process (0: unknown)
  std::vector<uint32_t> tgids;  // processes whose threads are the sandbox's (group)
};

// Processes a scan found not to be sandboxes (their executable is neither runsc nor a
// VMM), by pid, with the inode number of their /proc entry (procfs gives a new process
// a new one, even under a reused pid): later scans skip them without reading their
// executable's link. An exec keeps both the pid and the inode, so the cache is sound
// only while every exec is reported to Forget (the proc probe's exec events).
struct EdgeScanCache {
  absl::flat_hash_map<uint32_t, ino_t> not_sandbox;
  void Forget(uint32_t pid) { not_sandbox.erase(pid); }
};

// What one scan found (the full set: a target missing from it is gone). With `cache`,
// processes it names are skipped, and the processes found not to be sandboxes fill it
// (entries of processes gone are dropped).
std::vector<EdgeTarget> FindEdgeTargets(const std::string& proc_root = "/proc", EdgeScanCache* cache = nullptr);

// The host-side peer ifindex of each veth in the network namespace `netns_path`
// (/proc/<pid>/ns/net), read over netlink from a thread that enters it. Empty on error.
std::vector<uint32_t> VethPeersIn(const std::string& netns_path);

const char* EdgeKindName(EdgeTarget::Kind k);

}  // namespace isotrace::probes
