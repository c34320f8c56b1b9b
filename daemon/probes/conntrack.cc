#include "daemon/probes/conntrack.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <thread>

#include "absl/strings/str_cat.h"

namespace isotrace::probes {
namespace {

constexpr size_t kMaxNamespaces = 256;

uint64_t MonoNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

bool IsV4Mapped(const std::array<uint8_t, 16>& a) {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a.data(), kPrefix, sizeof(kPrefix)) == 0;
}

uint64_t InodeOf(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0 ? uint64_t(st.st_ino) : 0;
}

struct Found {
  bool got = false;
  FlowTuple orig, reply;
};

void ReadTuple(const nf_conntrack* ct, bool reply_dir, FlowTuple* t) {
  if (nfct_get_attr_u8(ct, ATTR_L3PROTO) == AF_INET) {
    t->src = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    t->dst = t->src;
    const uint32_t s = nfct_get_attr_u32(ct, reply_dir ? ATTR_REPL_IPV4_SRC : ATTR_ORIG_IPV4_SRC);
    const uint32_t d = nfct_get_attr_u32(ct, reply_dir ? ATTR_REPL_IPV4_DST : ATTR_ORIG_IPV4_DST);
    std::memcpy(t->src.data() + 12, &s, 4);
    std::memcpy(t->dst.data() + 12, &d, 4);
  } else {
    std::memcpy(t->src.data(), nfct_get_attr(ct, reply_dir ? ATTR_REPL_IPV6_SRC : ATTR_ORIG_IPV6_SRC), 16);
    std::memcpy(t->dst.data(), nfct_get_attr(ct, reply_dir ? ATTR_REPL_IPV6_DST : ATTR_ORIG_IPV6_DST), 16);
  }
  t->sport = ntohs(nfct_get_attr_u16(ct, reply_dir ? ATTR_REPL_PORT_SRC : ATTR_ORIG_PORT_SRC));
  t->dport = ntohs(nfct_get_attr_u16(ct, reply_dir ? ATTR_REPL_PORT_DST : ATTR_ORIG_PORT_DST));
}

int OnEntry(enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) {
  auto* f = static_cast<Found*>(data);
  f->got = true;
  ReadTuple(ct, /*reply_dir=*/false, &f->orig);
  ReadTuple(ct, /*reply_dir=*/true, &f->reply);
  // Not NFCT_CB_STOP: that returns before the kernel's acknowledgement is read, and the
  // next query on the socket would take that stale ack for its answer (no entry), and
  // the one after it this entry.
  return NFCT_CB_CONTINUE;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Conntrack>> Conntrack::Create(const std::string& proc_root,
                                                             std::vector<std::string> netns_dirs) {
  std::unique_ptr<Conntrack> c(new Conntrack(proc_root, std::move(netns_dirs)));
  c->own_ino_ = InodeOf(proc_root + "/self/ns/net");
  c->host_ino_ = InodeOf(proc_root + "/1/ns/net");
  nfct_handle* h = nfct_open(CONNTRACK, 0);
  if (h == nullptr) return absl::UnavailableError(absl::StrCat("ctnetlink: ", std::strerror(errno)));
  c->stats_.sockets_opened++;
  c->by_ino_[c->own_ino_] = Ns{.h = h, .fd = -1, .last_used_ns = MonoNs()};
  return c;
}

Conntrack::~Conntrack() {
  for (auto& [ino, ns] : by_ino_) Release(ns);
}

void Conntrack::Release(Ns& ns) {
  if (ns.h != nullptr) nfct_close(ns.h);
  if (ns.fd >= 0) close(ns.fd);
  ns.h = nullptr;
  ns.fd = -1;
}

Conntrack::Ns* Conntrack::NsFor(const std::string& ns_path, uint64_t* ns_ino) {
  const uint64_t ino = InodeOf(ns_path);
  *ns_ino = ino;
  if (ino == 0) return nullptr;  // the process is gone (or /proc hides it)
  if (auto it = by_ino_.find(ino); it != by_ino_.end()) {
    it->second.last_used_ns = MonoNs();
    return &it->second;
  }
  if (by_ino_.size() >= kMaxNamespaces) {
    // The least recently used one other than our own goes.
    auto victim = by_ino_.end();
    for (auto it = by_ino_.begin(); it != by_ino_.end(); ++it)
      if (it->first != own_ino_ && (victim == by_ino_.end() || it->second.last_used_ns < victim->second.last_used_ns))
        victim = it;
    if (victim != by_ino_.end()) {
      Release(victim->second);
      by_ino_.erase(victim);
    }
  }
  const int fd = open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    stats_.errors++;
    last_error_ = absl::StrCat("open ", ns_path, ": ", std::strerror(errno));
    return nullptr;
  }
  // The process may have moved to another namespace between stat and open.
  struct stat st{};
  if (fstat(fd, &st) != 0 || uint64_t(st.st_ino) != ino) {
    close(fd);
    return nullptr;
  }
  Ns& ns = by_ino_[ino];
  ns.fd = fd;
  ns.last_used_ns = MonoNs();
  return &ns;
}

nfct_handle* Conntrack::HandleOf(uint64_t ino, Ns& ns) {
  ns.last_used_ns = MonoNs();
  if (ns.h != nullptr || ns.fd < 0) return ns.h;
  // A thread of its own enters the namespace; the netlink socket it opens there stays in
  // that namespace after the thread is gone.
  nfct_handle* h = nullptr;
  int err = 0;
  std::thread t([&] {
    if (setns(ns.fd, CLONE_NEWNET) != 0) {
      err = errno;
      return;
    }
    h = nfct_open(CONNTRACK, 0);
    if (h == nullptr) err = errno;
  });
  t.join();
  if (h == nullptr) {
    // Not retried (a missing capability stays missing): the entry answers null until it
    // expires unused.
    close(ns.fd);
    ns.fd = -1;
    stats_.errors++;
    last_error_ = absl::StrCat("ctnetlink in network namespace ", ino, ": ", std::strerror(err),
                               err == EPERM ? " (entering another network namespace needs CAP_SYS_ADMIN)" : "");
    return nullptr;
  }
  stats_.sockets_opened++;
  close(ns.fd);  // the socket holds the namespace from now on
  ns.fd = -1;
  ns.h = h;
  return h;
}

uint64_t Conntrack::Pin(uint32_t tgid, uint32_t netns) {
  if (netns != 0) {
    if (auto it = by_ino_.find(netns); it != by_ino_.end()) {
      it->second.last_used_ns = MonoNs();
      return netns;
    }
  }
  uint64_t ino = 0;
  if (NsFor(absl::StrCat(proc_root_, "/", tgid, "/ns/net"), &ino) != nullptr && (netns == 0 || ino == netns))
    return ino;
  // The process is gone (or moved on to another namespace): a named namespace, if any.
  return netns != 0 && NamedNs(netns) != nullptr ? netns : 0;
}

Conntrack::Ns* Conntrack::NamedNs(uint64_t ino) {
  constexpr uint64_t kRescanNs = 10'000'000'000ull;
  const uint64_t now = MonoNs();
  if (auto u = unnamed_.find(ino); u != unnamed_.end() && now < u->second + kRescanNs) return nullptr;
  for (const auto& dir : netns_dirs_) {
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) continue;
    std::string found;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const std::string path = absl::StrCat(dir, "/", e->d_name);
      if (InodeOf(path) == ino) {
        found = path;
        break;
      }
    }
    closedir(d);
    if (!found.empty()) {
      uint64_t got = 0;
      Ns* ns = NsFor(found, &got);
      if (ns != nullptr && got == ino) {
        unnamed_.erase(ino);
        return ns;
      }
    }
  }
  if (unnamed_.size() >= kMaxNamespaces) unnamed_.clear();
  unnamed_[ino] = now;
  return nullptr;
}

NatResult Conntrack::Query(nfct_handle* h, const FlowTuple& orig, FlowTuple* reply, uint16_t zone) {
  nf_conntrack* ct = nfct_new();
  if (ct == nullptr) return NatResult::kError;
  const bool v4 = IsV4Mapped(orig.src) && IsV4Mapped(orig.dst);
  if (v4) {
    uint32_t s, d;
    std::memcpy(&s, orig.src.data() + 12, 4);
    std::memcpy(&d, orig.dst.data() + 12, 4);
    nfct_set_attr_u8(ct, ATTR_L3PROTO, AF_INET);
    nfct_set_attr_u32(ct, ATTR_IPV4_SRC, s);
    nfct_set_attr_u32(ct, ATTR_IPV4_DST, d);
  } else {
    nfct_set_attr_u8(ct, ATTR_L3PROTO, AF_INET6);
    nfct_set_attr(ct, ATTR_IPV6_SRC, orig.src.data());
    nfct_set_attr(ct, ATTR_IPV6_DST, orig.dst.data());
  }
  nfct_set_attr_u8(ct, ATTR_L4PROTO, IPPROTO_TCP);
  nfct_set_attr_u16(ct, ATTR_PORT_SRC, htons(orig.sport));
  nfct_set_attr_u16(ct, ATTR_PORT_DST, htons(orig.dport));
  // The tuple's zone (CTA_ZONE): without it the kernel looks in the default zone only.
  if (zone != 0) nfct_set_attr_u16(ct, ATTR_ZONE, zone);
  Found found;
  nfct_callback_register(h, NFCT_T_ALL, OnEntry, &found);
  const uint64_t t0 = MonoNs();
  const int r = nfct_query(h, NFCT_Q_GET, ct);
  const int err = errno;
  stats_.query_ns += MonoNs() - t0;
  stats_.queries++;
  nfct_callback_unregister(h);
  nfct_destroy(ct);
  if (r < 0 || !found.got) {
    if (r < 0 && err != ENOENT) {
      stats_.errors++;
      last_error_ = absl::StrCat("conntrack get: ", std::strerror(err));
      return NatResult::kError;
    }
    return NatResult::kNoEntry;
  }
  // An answer for another connection would link the wrong caller: never taken.
  if (!(found.orig == orig)) {
    stats_.errors++;
    last_error_ = "conntrack get: the answer names another connection";
    return NatResult::kError;
  }
  // No translation: the reply is the original mirrored.
  if (found.reply.src == orig.dst && found.reply.dst == orig.src && found.reply.sport == orig.dport &&
      found.reply.dport == orig.sport)
    return NatResult::kUntranslated;
  *reply = found.reply;
  return NatResult::kTranslated;
}

NatResult Conntrack::QueryZones(nfct_handle* h, const FlowTuple& orig, FlowTuple* reply) {
  NatResult r = Query(h, orig, reply, 0);
  if (zones_.empty() || r == NatResult::kError) return r;
  bool translated = r == NatResult::kTranslated;
  FlowTuple first = *reply;
  for (uint16_t zone : zones_) {
    FlowTuple z;
    const NatResult q = Query(h, orig, &z, zone);
    if (q == NatResult::kTranslated) {
      if (translated && !(z == first)) return NatResult::kAmbiguous;
      if (!translated) first = z;
      translated = true;
    } else if (q == NatResult::kUntranslated && r == NatResult::kNoEntry) {
      r = q;  // a zone that tracks the connection untranslated: nothing to link by
    } else if (q == NatResult::kError && r == NatResult::kNoEntry) {
      r = q;
    }
  }
  if (!translated) return r;
  *reply = first;
  return NatResult::kTranslated;
}

NatResult Conntrack::Reply(uint32_t tgid, uint64_t pinned, const FlowTuple& orig, FlowTuple* reply) {
  // The caller's namespace first (its OUTPUT rules), then the daemon's own (a DaemonSet on
  // the host network: the node's, where kube-proxy translates pods' packets), then pid 1's
  // when it is another one and readable.
  uint64_t caller_ino = 0;
  NatResult best = NatResult::kNoEntry;
  // True when `r` is the answer (a translation, or translations that disagree); else
  // kept as the best of the misses.
  const auto final = [&](NatResult r) {
    if (r == NatResult::kTranslated || r == NatResult::kAmbiguous) return true;
    if (r == NatResult::kUntranslated || (r == NatResult::kError && best == NatResult::kNoEntry)) best = r;
    return false;
  };
  Ns* caller = nullptr;
  if (auto it = pinned != 0 ? by_ino_.find(pinned) : by_ino_.end(); it != by_ino_.end()) {
    caller_ino = pinned;
    caller = &it->second;
  } else {
    caller = NsFor(absl::StrCat(proc_root_, "/", tgid, "/ns/net"), &caller_ino);
  }
  if (nfct_handle* h = caller != nullptr ? HandleOf(caller_ino, *caller) : nullptr; h != nullptr) {
    if (NatResult r = QueryZones(h, orig, reply); final(r)) return r;
  } else if (caller_ino != 0) {
    final(NatResult::kError);  // a process gone unpinned is not an error: its entry may be in ours
  }
  if (own_ino_ != caller_ino) {
    if (NatResult r = QueryZones(by_ino_[own_ino_].h, orig, reply); final(r)) return r;
  }
  if (host_ino_ != 0 && host_ino_ != caller_ino && host_ino_ != own_ino_) {
    uint64_t ino = 0;
    Ns* host = NsFor(absl::StrCat(proc_root_, "/1/ns/net"), &ino);
    if (nfct_handle* hh = host != nullptr ? HandleOf(ino, *host) : nullptr; hh != nullptr) {
      if (NatResult r = QueryZones(hh, orig, reply); final(r)) return r;
    }
  }
  return best;
}

void Conntrack::Expire(uint64_t idle_ns) {
  const uint64_t now_mono_ns = MonoNs();
  for (auto it = by_ino_.begin(); it != by_ino_.end();) {
    if (it->first != own_ino_ && now_mono_ns > it->second.last_used_ns + idle_ns) {
      Release(it->second);
      it = by_ino_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace isotrace::probes
