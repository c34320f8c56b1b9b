#pragma once
// NAT'd connections: the address the callee really sees, from the kernel's conntrack
// (docs/locate.md, "Service addresses").
//
// A caller that connects to a Service address (a Kubernetes ClusterIP, DNAT'd by
// kube-proxy's iptables/nftables rules) has a socket whose 4-tuple names the virtual
// address; the callee's socket names its own address and, after SNAT/masquerade, a
// translated caller. Conntrack holds both sides of that translation: the original tuple
// (what the caller sent) and the reply tuple (what the callee answers to). The tracker
// asks for the reply tuple of a caller's connection and links the two ends by it.
//
// The entry lives in the network namespace where the translation happened: the caller's
// own namespace (rules in its OUTPUT chain) or the node's (kube-proxy translating a pod's
// packets as they cross the host). Both are asked, the caller's first. The query is one
// netlink request on a ctnetlink socket opened inside that namespace (a short-lived thread
// enters it, so the daemon's threads never leave their own); sockets are kept per
// namespace, bounded, and closed when unused.
//
// libnetfilter_conntrack builds and parses the ctnetlink messages; only the namespace
// handling and the cache are ours.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"

struct nfct_handle;

namespace isotrace::probes {

// One direction of a TCP connection. Addresses in IPv6 form (IPv4 as ::ffff:a.b.c.d, as
// the tracker keys connections); ports in host byte order.
struct FlowTuple {
  std::array<uint8_t, 16> src{}, dst{};
  uint16_t sport = 0, dport = 0;
  bool operator==(const FlowTuple&) const = default;
};

enum class NatResult : uint8_t {
  kTranslated,    // an entry whose reply tuple is not the original's mirror: NAT'd
  kUntranslated,  // an entry, no translation (the callee sees the caller's own tuple)
  kNoEntry,       // no entry in any namespace asked (or conntrack not in use there)
  kError,         // the namespace or the socket could not be reached (counted)
  kAmbiguous,     // entries in several conntrack zones with different translations
};

// The seam the tracker uses (a unit test's fake replaces the kernel).
class NatLookup {
 public:
  virtual ~NatLookup() = default;
  // Called when a process's CLIENT connection is first seen: keeps a reference to the
  // connection's network namespace (`netns`: its inode from the probe, 0 unknown), so that
  // a later Reply can ask there after the process exited (a one-shot caller). Found
  // among the namespaces already held, else through the process while it lives, else
  // among the named ones (ip-netns and CNI bind mounts). Returns Reply's token (0: none).
  virtual uint64_t Pin(uint32_t /*tgid*/, uint32_t /*netns*/) { return 0; }
  // The reply tuple of the TCP connection `orig` that process `tgid` opened (`ns`: what
  // Pin returned for it, or 0); `reply` is set on kTranslated only (src: the callee as it
  // answers, dst: the caller as it sees it).
  virtual NatResult Reply(uint32_t tgid, uint64_t ns, const FlowTuple& orig, FlowTuple* reply) = 0;
};

struct ConntrackStats {
  uint64_t queries = 0;       // netlink GETs sent
  uint64_t query_ns = 0;      // time spent in them (wall clock, one thread)
  uint64_t sockets_opened = 0;
  uint64_t errors = 0;        // a namespace not entered, a socket not opened, a query failing
                              // other than "no such entry"
};

class Conntrack final : public NatLookup {
 public:
  // Fails when ctnetlink cannot be reached from the daemon's own namespace (no
  // CAP_NET_ADMIN, or netlink refused): the caller then links without NAT.
  // `netns_dirs`: where named network namespaces are bind-mounted (ip-netns, CNI).
  static absl::StatusOr<std::unique_ptr<Conntrack>> Create(
      const std::string& proc_root = "/proc",
      std::vector<std::string> netns_dirs = {"/run/netns", "/var/run/netns"});
  ~Conntrack() override;

  // Conntrack zones asked after the default one (0), in each namespace: a translation
  // made in a zone (rules that `ct zone set`, OVS/OVN datapaths) is found only there. One
  // more netlink round trip per zone and lookup. Several different translations of one
  // connection across the zones asked are kAmbiguous, never a link.
  void SetZones(std::vector<uint16_t> zones) { zones_ = std::move(zones); }

  uint64_t Pin(uint32_t tgid, uint32_t netns) override;
  NatResult Reply(uint32_t tgid, uint64_t ns, const FlowTuple& orig, FlowTuple* reply) override;
  // Closes sockets and pins of namespaces not used since `idle_ns` (both keep their
  // namespace alive).
  void Expire(uint64_t idle_ns = 60'000'000'000ull);
  const ConntrackStats& stats() const { return stats_; }
  // The last error, for a log line (empty: none).
  const std::string& last_error() const { return last_error_; }

 private:
  // A namespace in use: its ctnetlink socket once asked, and until then the descriptor
  // Pin opened (either keeps the namespace alive).
  struct Ns {
    nfct_handle* h = nullptr;
    int fd = -1;
    uint64_t last_used_ns = 0;
  };
  Conntrack(std::string proc_root, std::vector<std::string> netns_dirs)
      : proc_root_(std::move(proc_root)), netns_dirs_(std::move(netns_dirs)) {}
  // A named namespace with inode `ino` (netns_dirs_), scanned at most once per inode per
  // kRescanNs; null when none.
  Ns* NamedNs(uint64_t ino);
  // The entry for the namespace `ns_path` names (its descriptor opened on first use);
  // null when it cannot be reached. Sets *ns_ino (0: the process is gone).
  Ns* NsFor(const std::string& ns_path, uint64_t* ns_ino);
  // The socket of a known namespace (opened inside it on first use); null on error.
  nfct_handle* HandleOf(uint64_t ino, Ns& ns);
  void Release(Ns& ns);
  NatResult Query(nfct_handle* h, const FlowTuple& orig, FlowTuple* reply, uint16_t zone);
  // Query in the default zone, then in each of zones_.
  NatResult QueryZones(nfct_handle* h, const FlowTuple& orig, FlowTuple* reply);

  std::string proc_root_;
  std::vector<std::string> netns_dirs_;
  std::vector<uint16_t> zones_;  // besides the default zone 0
  std::unordered_map<uint64_t, uint64_t> unnamed_;  // inode → when a scan missed it
  uint64_t own_ino_ = 0;   // the daemon's namespace
  uint64_t host_ino_ = 0;  // the node's (pid 1's), where kube-proxy translates
  std::unordered_map<uint64_t, Ns> by_ino_;
  ConntrackStats stats_;
  std::string last_error_;
};

}  // namespace isotrace::probes
