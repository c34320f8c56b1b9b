// Connection attempts the listeners of a network namespace dropped: the kernel's
// TcpExt ListenDrops counter (/proc/<pid>/net/netstat), which a full accept queue raises
// (with ListenOverflows) along with every other drop of a SYN or handshake ACK at a
// listener. Such a drop is silent on the wire and in the kernel's tracepoints (the SYN
// is consumed, not freed with a drop reason): the caller only sees its SYN go
// unanswered and retransmits it, exactly as if the network had lost it. This counter is
// what tells the two apart (docs/locate.md, "A callee's full accept queue").
//
// Sampled per namespace of a callee on this node: when it is first watched, at every
// housekeeping round, and on demand when a CLIENT span asks about a window whose end no
// sample follows yet. A reading is one small procfs file.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace isotrace::probes {

struct ListenDropsStats {
  uint64_t samples = 0;      // netstat files read
  uint64_t read_errors = 0;  // unreadable or without the counter (the process went away)
  uint64_t namespaces = 0;   // watched now
};

class ListenDrops {
 public:
  explicit ListenDrops(std::string proc_root = "/proc");

  // `tgid` serves connections from a caller on this node: its namespace is sampled from
  // now on (a first sample is taken now when the namespace is new).
  void Watch(uint32_t tgid, uint64_t now_mono_ns);
  // One sample of every watched namespace; namespaces idle for `idle_ns` are forgotten.
  void Sample(uint64_t now_mono_ns, uint64_t idle_ns = 300'000'000'000ull);
  // Drops in the namespace of `tgid` from before `from` to after `to` (CLOCK_MONOTONIC):
  // the difference between the last sample at or before `from` and the first at or after
  // `to` (taken now if there is none yet). Unknown (nullopt) when `tgid` is not watched or
  // no sample precedes `from`.
  std::optional<uint64_t> Between(uint32_t tgid, uint64_t from, uint64_t to, uint64_t now_mono_ns);

  const ListenDropsStats& stats() const { return stats_; }

 private:
  struct Reading {
    uint64_t ts = 0;
    uint64_t drops = 0;
  };
  struct Ns {
    std::vector<uint32_t> tgids;  // processes it is read through (any that still lives)
    std::deque<Reading> readings;  // oldest first, bounded
    uint64_t last_used_ns = 0;
  };
  std::optional<uint64_t> ReadDrops(uint32_t tgid);
  bool SampleNs(Ns& ns, uint64_t now_mono_ns);
  std::optional<uint64_t> NsOf(uint32_t tgid);

  std::string proc_root_;
  std::unordered_map<uint64_t, Ns> by_ns_;      // namespace inode → its readings
  std::unordered_map<uint32_t, uint64_t> ns_of_;  // tgid → namespace inode
  ListenDropsStats stats_;
};

// The counter out of a netstat file's text: the "TcpExt:" header line names the columns
// and the next "TcpExt:" line holds the values. Nullopt when it is not there.
std::optional<uint64_t> ParseListenDrops(std::string_view netstat);

}  // namespace isotrace::probes
