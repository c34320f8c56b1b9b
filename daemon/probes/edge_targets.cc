#include "daemon/probes/edge_targets.h"

#include <dirent.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace isotrace::probes {

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string Basename(const std::string& p) {
  size_t s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

std::string ExeName(const std::string& proc, const std::string& pid) {
  char buf[4096];
  ssize_t n = readlink((proc + "/" + pid + "/exe").c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  std::string p(buf, static_cast<size_t>(n));
  if (absl::EndsWith(p, " (deleted)")) p.resize(p.size() - 10);
  return Basename(p);
}

std::vector<std::string> Argv(const std::string& proc, const std::string& pid) {
  std::string raw = ReadFile(proc + "/" + pid + "/cmdline");
  std::vector<std::string> out;
  for (absl::string_view a : absl::StrSplit(raw, '\0', absl::SkipEmpty())) out.emplace_back(a);
  return out;
}

// starttime (field 22) and comm (field 2) of /proc/<pid>/stat.
bool StatOf(const std::string& proc, const std::string& pid, uint64_t* start, std::string* comm) {
  std::string s = ReadFile(proc + "/" + pid + "/stat");
  size_t l = s.find('('), r = s.rfind(')');
  if (l == std::string::npos || r == std::string::npos || r < l) return false;
  *comm = s.substr(l + 1, r - l - 1);
  std::vector<absl::string_view> f = absl::StrSplit(absl::string_view(s).substr(r + 2), ' ');
  // After "pid (comm) ", field 3 (state) is f[0]: starttime (22) is f[19].
  return f.size() > 19 && absl::SimpleAtoi(f[19], start);
}

uint64_t CgroupIdOf(const std::string& proc, const std::string& pid) {
  std::string cg = ReadFile(proc + "/" + pid + "/cgroup");
  for (absl::string_view line : absl::StrSplit(cg, '\n')) {
    if (!absl::StartsWith(line, "0::")) continue;
    std::string rel(line.substr(3));
    for (const char* root : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
      struct stat st;
      std::string dir = std::string(root) + rel;
      // The v2 hierarchy's root: cgroup.controllers exists only there (hybrid layouts
      // mount v1 controllers at /sys/fs/cgroup).
      if (stat((std::string(root) + "/cgroup.controllers").c_str(), &st) != 0 &&
          stat((std::string(root) + "/cgroup.procs").c_str(), &st) != 0)
        continue;
      if (std::string(root) == "/sys/fs/cgroup" && access("/sys/fs/cgroup/unified", F_OK) == 0) continue;
      if (stat(dir.c_str(), &st) == 0) return st.st_ino;
    }
  }
  return 0;
}

struct DumpCtx {
  std::vector<uint32_t> peers;
};

int OnLinkAttr(const nlattr* a, void* data) {
  auto** tb = static_cast<const nlattr**>(data);
  int type = mnl_attr_get_type(a);
  if (type <= IFLA_MAX && mnl_attr_type_valid(a, IFLA_MAX) >= 0) tb[type] = a;
  return MNL_CB_OK;
}

int OnInfoAttr(const nlattr* a, void* data) {
  auto** tb = static_cast<const nlattr**>(data);
  int type = mnl_attr_get_type(a);
  if (type <= IFLA_INFO_MAX && mnl_attr_type_valid(a, IFLA_INFO_MAX) >= 0) tb[type] = a;
  return MNL_CB_OK;
}

int OnLink(const nlmsghdr* nlh, void* data) {
  auto* ctx = static_cast<DumpCtx*>(data);
  const nlattr* tb[IFLA_MAX + 1] = {};
  mnl_attr_parse(nlh, sizeof(ifinfomsg), OnLinkAttr, tb);
  if (!tb[IFLA_LINK] || !tb[IFLA_LINKINFO]) return MNL_CB_OK;
  const nlattr* info[IFLA_INFO_MAX + 1] = {};
  mnl_attr_parse_nested(tb[IFLA_LINKINFO], OnInfoAttr, info);
  if (!info[IFLA_INFO_KIND] || std::strcmp(mnl_attr_get_str(info[IFLA_INFO_KIND]), "veth") != 0)
    return MNL_CB_OK;
  // The peer is in another namespace (ours, for a CNI-style pair) only with a netnsid.
  if (!tb[IFLA_LINK_NETNSID]) return MNL_CB_OK;
  ctx->peers.push_back(mnl_attr_get_u32(tb[IFLA_LINK]));
  return MNL_CB_OK;
}

std::vector<uint32_t> DumpVethPeers() {
  DumpCtx ctx;
  mnl_socket* nl = mnl_socket_open(NETLINK_ROUTE);
  if (!nl) return {};
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    mnl_socket_close(nl);
    return {};
  }
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_GETLINK;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  const uint32_t seq = static_cast<uint32_t>(time(nullptr));
  nlh->nlmsg_seq = seq;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  const unsigned portid = mnl_socket_get_portid(nl);
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) >= 0) {
    for (;;) {
      ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
      if (n <= 0) break;
      int r = mnl_cb_run(buf, static_cast<size_t>(n), seq, portid, OnLink, &ctx);
      if (r <= MNL_CB_STOP) break;
    }
  }
  mnl_socket_close(nl);
  return ctx.peers;
}

// Children of every thread of `pid` (gVisor's ptrace stubs run the sandboxed threads).
std::vector<uint32_t> ChildrenOf(const std::string& proc, const std::string& pid) {
  std::vector<uint32_t> out;
  const std::string tdir = proc + "/" + pid + "/task";
  DIR* d = opendir(tdir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string c = ReadFile(tdir + "/" + e->d_name + "/children");
    for (absl::string_view t : absl::StrSplit(c, ' ', absl::SkipEmpty())) {
      uint32_t v;
      if (absl::SimpleAtoi(t, &v) && out.size() < 4096) out.push_back(v);
    }
  }
  closedir(d);
  return out;
}

uint32_t PpidOf(const std::string& proc, const std::string& pid) {
  std::string s = ReadFile(proc + "/" + pid + "/stat");
  size_t r = s.rfind(')');
  if (r == std::string::npos) return 0;
  std::vector<absl::string_view> f = absl::StrSplit(absl::string_view(s).substr(r + 2), ' ');
  uint32_t pp = 0;
  return f.size() > 1 && absl::SimpleAtoi(f[1], &pp) ? pp : 0;
}

std::string NetnsOf(const std::string& path) {
  char buf[64];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

}  // namespace

const char* EdgeKindName(EdgeTarget::Kind k) { return k == EdgeTarget::Kind::kGvisor ? "gvisor" : "microvm"; }

std::vector<uint32_t> VethPeersIn(const std::string& netns_path) {
  int fd = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::vector<uint32_t> out;
  // A thread of its own enters the namespace: the netlink socket it opens there belongs
  // to that namespace, and the daemon's other threads never leave ours.
  std::thread t([&] {
    if (setns(fd, CLONE_NEWNET) == 0) out = DumpVethPeers();
  });
  t.join();
  close(fd);
  return out;
}

std::vector<EdgeTarget> FindEdgeTargets(const std::string& proc_root, EdgeScanCache* cache) {
  std::vector<EdgeTarget> out;
  absl::flat_hash_map<uint32_t, ino_t> not_sandbox;  // this scan's, for the cache
  const std::string own_ns = NetnsOf(proc_root + "/self/ns/net");
  DIR* d = opendir(proc_root.c_str());
  if (!d) return out;
  std::map<std::string, std::vector<uint32_t>> peers_by_ns;  // one dump per namespace
  std::vector<std::pair<uint32_t, uint32_t>> gofers;         // (pid, ppid)
  std::map<uint32_t, uint32_t> sentry_ppid;
  while (dirent* e = readdir(d)) {
    uint32_t pid;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    // procfs gives each /proc/<pid> inode a fresh number; 1 means it could not make one.
    const bool cacheable = cache != nullptr && e->d_ino > 1;
    if (cacheable) {
      auto it = cache->not_sandbox.find(pid);
      if (it != cache->not_sandbox.end() && it->second == e->d_ino) {
        not_sandbox.emplace(pid, e->d_ino);
        continue;
      }
    }
    const std::string p = e->d_name;
    const std::string exe = ExeName(proc_root, p);  // empty: a kernel thread, or exiting
    const bool vmm = absl::StartsWith(exe, "qemu-system-") || exe == "qemu-kvm" || exe == "firecracker" ||
                     exe == "cloud-hypervisor";
    if (exe != "runsc" && !vmm) {
      if (cacheable) not_sandbox.emplace(pid, e->d_ino);
      continue;
    }
    EdgeTarget t;
    if (!StatOf(proc_root, p, &t.start_ticks, &t.comm)) continue;
    t.pid = pid;
    t.tgids = {pid};
    if (exe == "runsc") {
      // The Sentry is `runsc [flags] boot [flags] <id>`; the gofer and the CLI are not.
      bool boot = false, gofer = false;
      for (const auto& a : Argv(proc_root, p)) {
        boot |= a == "boot";
        gofer |= a == "gofer";
      }
      if (gofer) gofers.emplace_back(pid, PpidOf(proc_root, p));
      if (!boot) continue;
      for (uint32_t c : ChildrenOf(proc_root, p)) t.tgids.push_back(c);
      sentry_ppid[pid] = PpidOf(proc_root, p);
      const std::string ns_path = proc_root + "/" + p + "/ns/net";
      const std::string ns = NetnsOf(ns_path);
      if (ns.empty() || ns == own_ns) continue;  // host network: its sockets are ours to see
      auto it = peers_by_ns.find(ns);
      if (it == peers_by_ns.end()) it = peers_by_ns.emplace(ns, VethPeersIn(ns_path)).first;
      t.kind = EdgeTarget::Kind::kGvisor;
      t.cgroup_id = CgroupIdOf(proc_root, p);
      for (uint32_t ifx : it->second) {
        char name[IF_NAMESIZE] = {};
        if (!if_indextoname(ifx, name)) continue;  // not in our namespace
        EdgeTarget x = t;
        x.ifindex = ifx;
        x.ifname = name;
        out.push_back(std::move(x));
      }
      continue;
    }
    // A VMM: its tap fds name their device in fdinfo ("iff:\t<name>").
    t.kind = EdgeTarget::Kind::kMicroVm;
    t.cgroup_id = CgroupIdOf(proc_root, p);
    const std::string fddir = proc_root + "/" + p + "/fdinfo";
    DIR* fds = opendir(fddir.c_str());
    if (!fds) continue;
    std::vector<std::string> taps;
    while (dirent* fe = readdir(fds)) {
      if (fe->d_name[0] == '.') continue;
      std::string info = ReadFile(fddir + "/" + fe->d_name);
      size_t at = info.find("iff:");
      if (at == std::string::npos) continue;
      size_t b = info.find_first_not_of(" \t", at + 4), nl = info.find('\n', at);
      if (b == std::string::npos) continue;
      std::string name = info.substr(b, nl == std::string::npos ? std::string::npos : nl - b);
      bool dup = false;
      for (const auto& x : taps) dup |= x == name;
      if (!dup) taps.push_back(name);
    }
    closedir(fds);
    for (const auto& name : taps) {
      unsigned ifx = if_nametoindex(name.c_str());
      if (!ifx) continue;  // the tap is in another namespace (a jailer's): not reachable here
      EdgeTarget x = t;
      x.ifindex = ifx;
      x.ifname = name;
      out.push_back(std::move(x));
    }
  }
  closedir(d);
  if (cache) cache->not_sandbox = std::move(not_sandbox);
  // A sandbox's gofer (its file server) is the Sentry's sibling: its threads are the
  // sandbox's too.
  for (auto& t : out) {
    if (t.kind != EdgeTarget::Kind::kGvisor) continue;
    for (const auto& [g, gp] : gofers)
      if (gp && gp == sentry_ppid[t.pid]) t.tgids.push_back(g);
  }
  return out;
}

}  // namespace isotrace::probes
