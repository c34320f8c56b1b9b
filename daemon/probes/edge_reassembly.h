#pragma once
// Packets seen at a sandbox's network edge (bpf/edge.bpf.h) → the same SocketEvents the
// socket hooks make, so one ConnectionTracker frames HTTP, links and times both.
//
// Why reassembly: a socket hook sees a byte stream in order; a packet hook sees TCP
// segments, with retransmits, reordering and holes. Per flow and direction this puts
// segments in sequence order and hands on each byte once:
// - a segment wholly before the expected position is a retransmit: dropped, and its
//   connection gets a retransmit incident (the edge saw the same bytes twice);
// - a segment overlapping the expected position is trimmed to its new bytes;
// - a segment past it is held (bounded: kMaxHeld segments per direction, each with at
//   most its captured prefix) until the hole fills; when the hold is full, or the hole
//   is older than the reorder window, the held segments go out in order and the hole
//   becomes a position jump, which the tracker skips by count (the bytes are lost to us,
//   never guessed).
// Positions count from the SYN (or the first segment seen, for a flow that began before
// the probe); 32-bit sequence numbers are unwrapped against the expected position.
//
// The sandbox is the "process" of these events: a packet into the sandbox is its
// ingress, one out of it its egress; the local address is the sandbox's side.
//
// Bounded: at most max_flows flows (least recently active dropped, counted); idle flows
// expire. Hand-written: no Debian library reassembles TCP for user space at this size
// (libnids is unmaintained and wants raw sockets of its own).

#include <array>
#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "daemon/probes/socket_event.h"

namespace isotrace::probes {

// One TCP packet at the edge, as the probe read it (or a test built it).
struct EdgePacket {
  enum class Dir : uint8_t { kToSandbox = 1, kFromSandbox = 2 };
  uint64_t ts_ns = 0;  // CLOCK_MONOTONIC
  uint32_t ifindex = 0;
  Dir dir = Dir::kToSandbox;
  uint8_t family = 2;  // AF_INET / AF_INET6
  std::array<uint8_t, 16> saddr{}, daddr{};
  uint16_t sport = 0, dport = 0;
  uint32_t seq = 0, ack = 0;
  uint32_t len = 0;        // payload bytes in the packet
  uint8_t flags = 0;       // TCP flags (bpf/l7.h enum edge_tcp_flags)
  std::string_view payload;  // captured prefix (≤ len)
  ThreadAcct acct;           // the sandbox's group accounting at the packet
};

// Who the packets of one device belong to: the sandbox's process (its Sentry, its VMM).
struct EdgeOwner {
  uint32_t tgid = 0;
  uint64_t proc_start_ns = 0;
  uint64_t cgroup_id = 0;
  std::string comm;
};

struct EdgeStats {
  uint64_t packets = 0;
  uint64_t flows_opened = 0;
  uint64_t flows_evicted = 0;     // over max_flows
  uint64_t flows_expired = 0;     // idle
  uint64_t retransmits = 0;       // segments wholly seen before (dropped)
  uint64_t trimmed = 0;           // segments overlapping what was seen (trimmed)
  uint64_t reordered = 0;         // segments held until an earlier hole filled
  uint64_t holes = 0;             // holes given up on (bytes lost, skipped by count)
  uint64_t hole_bytes = 0;
  uint64_t unowned = 0;           // packets of a device with no owner (sandbox gone)
  uint64_t stale = 0;             // segments far behind the stream (dropped)
};

class EdgeReassembler {
 public:
  using Sink = std::function<void(const SocketEvent&)>;
  struct Limits {
    size_t max_flows = 16384;
    size_t max_held = 16;                    // out-of-order segments held per direction
    uint64_t reorder_window_ns = 200'000'000;  // a hole older than this is given up
    uint64_t idle_timeout_ns = 300'000'000'000ull;
  };

  EdgeReassembler(const Limits& limits, Sink sink);

  // The owner of a device's packets; an unknown ifindex's packets are counted, dropped.
  void SetOwner(uint32_t ifindex, const EdgeOwner& owner);
  // The device is gone: its flows end (kClose) now.
  void RemoveOwner(uint32_t ifindex, uint64_t now_ns);

  void OnPacket(const EdgePacket& p);
  // Gives up holes older than the reorder window and forgets idle flows (kClose).
  void Tick(uint64_t now_ns);

  const EdgeStats& stats() const { return stats_; }
  size_t flows() const { return flows_.size(); }

 private:
  struct Held {
    uint64_t pos;
    uint32_t len;
    uint64_t ts;
    std::string payload;
    ThreadAcct acct;
  };
  struct Half {
    bool have_base = false;
    uint32_t base = 0;       // sequence number of position 0
    uint64_t next = 0;       // next position expected
    bool fin = false;        // FIN seen at fin_pos
    uint64_t fin_pos = 0;
    bool fin_sent = false;
    std::vector<Held> held;  // sorted by pos
    uint64_t hole_since = 0; // ts of the oldest held segment
  };
  struct FlowKey {
    uint32_t ifindex;
    std::array<uint8_t, 16> laddr, raddr;
    uint16_t lport, rport;
    bool operator==(const FlowKey&) const = default;
  };
  struct FlowKeyHash {
    size_t operator()(const FlowKey& k) const;
  };
  struct Flow {
    FlowKey key;
    uint8_t family = 2;
    uint64_t conn_id = 0;
    uint32_t seq = 0;     // records sent
    bool started = false; // first record went out
    bool closed = false;
    uint64_t last_ts = 0;
    Half half[2];         // [0] into the sandbox (its ingress), [1] out of it
    std::list<FlowKey>::iterator lru;
  };

  SocketEvent Base(Flow& f, const EdgeOwner& o, SocketEvent::Kind kind, int di, uint64_t ts);
  void EmitData(Flow& f, const EdgeOwner& o, int di, uint64_t pos, uint32_t len, uint64_t ts,
                std::string_view payload, const ThreadAcct& acct);
  // Segments now in order (after `next` moved), then a FIN that became due.
  void Drain(Flow& f, const EdgeOwner& o, int di);
  void GiveUpHole(Flow& f, const EdgeOwner& o, int di);
  void MaybeFin(Flow& f, const EdgeOwner& o, int di, uint64_t ts);
  void Close(Flow& f, const EdgeOwner& o, uint64_t ts);
  void Erase(const FlowKey& k);

  Limits limits_;
  Sink sink_;
  std::unordered_map<uint32_t, EdgeOwner> owners_;
  std::unordered_map<FlowKey, Flow, FlowKeyHash> flows_;
  std::list<FlowKey> lru_;  // front: most recently active
  uint64_t next_conn_id_ = 1;
  EdgeStats stats_;
};

}  // namespace isotrace::probes
