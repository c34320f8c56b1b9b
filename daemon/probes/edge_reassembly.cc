#include "daemon/probes/edge_reassembly.h"

#include <algorithm>

namespace isotrace::probes {

namespace {
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04;
// Edge connection ids live apart from the kernel's (a boot-unique counter from 1).
constexpr uint64_t kEdgeConnIdBase = 1ull << 62;
// A segment further behind the expected position than this is not a retransmit of this
// stream (a reused 4-tuple, garbage): dropped and counted.
constexpr uint64_t kMaxBehind = 1ull << 30;
}  // namespace

size_t EdgeReassembler::FlowKeyHash::operator()(const FlowKey& k) const {
  uint64_t h = k.ifindex * 0x9e3779b97f4a7c15ull ^ (uint64_t{k.lport} << 16 | k.rport);
  for (size_t i = 0; i < 16; i += 8) {
    uint64_t a, b;
    __builtin_memcpy(&a, k.laddr.data() + i, 8);
    __builtin_memcpy(&b, k.raddr.data() + i, 8);
    h = (h ^ a) * 0x100000001b3ull;
    h = (h ^ b) * 0x100000001b3ull;
  }
  return static_cast<size_t>(h ^ (h >> 29));
}

EdgeReassembler::EdgeReassembler(const Limits& limits, Sink sink)
    : limits_(limits), sink_(std::move(sink)) {
  if (limits_.max_held == 0) limits_.max_held = 1;
  if (limits_.max_flows == 0) limits_.max_flows = 1;
}

void EdgeReassembler::SetOwner(uint32_t ifindex, const EdgeOwner& owner) { owners_[ifindex] = owner; }

void EdgeReassembler::RemoveOwner(uint32_t ifindex, uint64_t now_ns) {
  auto o = owners_.find(ifindex);
  if (o == owners_.end()) return;
  std::vector<FlowKey> gone;
  for (auto& [k, f] : flows_)
    if (k.ifindex == ifindex) gone.push_back(k);
  for (const auto& k : gone) {
    Close(flows_.at(k), o->second, now_ns);
    Erase(k);
  }
  owners_.erase(o);
}

SocketEvent EdgeReassembler::Base(Flow& f, const EdgeOwner& o, SocketEvent::Kind kind, int di,
                                  uint64_t ts) {
  SocketEvent ev;
  ev.kind = kind;
  ev.dir = di == 0 ? SocketEvent::Direction::kIngress : SocketEvent::Direction::kEgress;
  ev.ts_enter_ns = ev.ts_exit_ns = ts;
  ev.tgid = o.tgid;
  ev.tid = o.tgid;  // one "thread": the sandbox's accounting is its group's (edge events)
  ev.proc_start_ns = o.proc_start_ns;
  ev.cgroup_id = o.cgroup_id;
  ev.conn_id = f.conn_id;
  ev.sock_id = f.conn_id;
  ev.family = f.family;
  ev.laddr = f.key.laddr;
  ev.raddr = f.key.raddr;
  ev.lport = f.key.lport;
  ev.rport = f.key.rport;
  ev.comm = o.comm;
  ev.edge = true;
  return ev;
}

void EdgeReassembler::EmitData(Flow& f, const EdgeOwner& o, int di, uint64_t pos, uint32_t len,
                               uint64_t ts, std::string_view payload, const ThreadAcct& acct) {
  SocketEvent ev = Base(f, o, SocketEvent::Kind::kData, di, ts);
  ev.pos = pos;
  ev.ret = len;
  ev.seq = f.seq++;
  ev.payload = payload;
  ev.msg_start = !payload.empty();
  ev.new_conn = !f.started;
  ev.acct = acct;
  f.started = true;
  f.half[di].next = pos + len;
  sink_(ev);
}

void EdgeReassembler::MaybeFin(Flow& f, const EdgeOwner& o, int di, uint64_t ts) {
  Half& h = f.half[di];
  if (!h.fin || h.fin_sent || h.next < h.fin_pos || !h.held.empty()) return;
  h.fin_sent = true;
  if (!f.started) return;  // nothing of this flow was reported: nothing to end
  SocketEvent ev = Base(f, o, SocketEvent::Kind::kFin, di, ts);
  ev.pos = h.fin_pos;
  sink_(ev);
  if (f.half[0].fin_sent && f.half[1].fin_sent) Close(f, o, ts);
}

void EdgeReassembler::Drain(Flow& f, const EdgeOwner& o, int di) {
  Half& h = f.half[di];
  while (!h.held.empty()) {
    Held& x = h.held.front();
    if (x.pos > h.next) break;
    const uint64_t end = x.pos + x.len;
    if (end > h.next) {
      const uint64_t skip = h.next - x.pos;
      std::string_view pl(x.payload);
      pl = skip < pl.size() ? pl.substr(skip) : std::string_view();
      EmitData(f, o, di, h.next, static_cast<uint32_t>(end - h.next), x.ts, pl, x.acct);
    } else {
      stats_.retransmits++;
    }
    h.held.erase(h.held.begin());
  }
  h.hole_since = h.held.empty() ? 0 : h.held.front().ts;
}

void EdgeReassembler::GiveUpHole(Flow& f, const EdgeOwner& o, int di) {
  Half& h = f.half[di];
  if (h.held.empty()) return;
  stats_.holes++;
  stats_.hole_bytes += h.held.front().pos - h.next;
  // The tracker sees the jump in position and skips the lost bytes by count.
  h.next = h.held.front().pos;
  Drain(f, o, di);
}

void EdgeReassembler::Close(Flow& f, const EdgeOwner& o, uint64_t ts) {
  if (f.closed) return;
  f.closed = true;
  if (!f.started) return;
  SocketEvent ev = Base(f, o, SocketEvent::Kind::kClose, 0, ts);
  ev.dir = SocketEvent::Direction::kNone;
  sink_(ev);
}

void EdgeReassembler::Erase(const FlowKey& k) {
  auto it = flows_.find(k);
  if (it == flows_.end()) return;
  lru_.erase(it->second.lru);
  flows_.erase(it);
}

void EdgeReassembler::OnPacket(const EdgePacket& p) {
  stats_.packets++;
  auto oit = owners_.find(p.ifindex);
  if (oit == owners_.end()) {
    stats_.unowned++;
    return;
  }
  const EdgeOwner& o = oit->second;
  const bool in = p.dir == EdgePacket::Dir::kToSandbox;
  const int di = in ? 0 : 1;
  FlowKey key{};
  key.ifindex = p.ifindex;
  key.laddr = in ? p.daddr : p.saddr;
  key.raddr = in ? p.saddr : p.daddr;
  key.lport = in ? p.dport : p.sport;
  key.rport = in ? p.sport : p.dport;

  auto it = flows_.find(key);
  if (it != flows_.end() && (p.flags & kSyn) && !(p.flags & 0x10) && it->second.half[di].have_base &&
      static_cast<uint32_t>(p.seq + 1) != it->second.half[di].base) {
    // A new connection on the same 4-tuple (a SYN that is not a retransmit of the first).
    Close(it->second, o, p.ts_ns);
    Erase(key);
    it = flows_.end();
  }
  if (it == flows_.end()) {
    if (p.flags & kRst) return;  // a reset of a flow we never saw: nothing to end
    if (flows_.size() >= limits_.max_flows && !lru_.empty()) {
      FlowKey victim = lru_.back();
      auto& vf = flows_.at(victim);
      auto vo = owners_.find(victim.ifindex);
      if (vo != owners_.end()) Close(vf, vo->second, p.ts_ns);
      Erase(victim);
      stats_.flows_evicted++;
    }
    Flow f;
    f.key = key;
    f.family = p.family;
    f.conn_id = kEdgeConnIdBase + next_conn_id_++;
    lru_.push_front(key);
    f.lru = lru_.begin();
    it = flows_.emplace(key, std::move(f)).first;
    stats_.flows_opened++;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Flow& f = it->second;
  f.last_ts = p.ts_ns;
  if (f.closed) return;
  Half& h = f.half[di];

  if (p.flags & kSyn) {
    if (!h.have_base) {
      h.have_base = true;
      h.base = p.seq + 1;
      h.next = 0;
    }
    return;  // SYN carries no data here (TCP Fast Open's is not decoded)
  }
  if (!h.have_base) {
    // Joined mid-flow: this segment is position 0.
    h.have_base = true;
    h.base = p.seq;
    h.next = 0;
  }
  // Unwrap the 32-bit sequence number around the expected position.
  const uint32_t expected32 = static_cast<uint32_t>(h.base + h.next);
  const int32_t delta = static_cast<int32_t>(p.seq - expected32);
  if (delta < 0 && static_cast<uint64_t>(-static_cast<int64_t>(delta)) > std::min(h.next, kMaxBehind)) {
    stats_.stale++;
    return;
  }
  const uint64_t pos = static_cast<uint64_t>(static_cast<int64_t>(h.next) + delta);

  if (p.flags & kRst) {
    // Bytes after a reset are never delivered; the connection ends here.
    if (f.started) {
      SocketEvent ev = Base(f, o, in ? SocketEvent::Kind::kResetReceived : SocketEvent::Kind::kResetSent,
                            di, p.ts_ns);
      sink_(ev);
    }
    Close(f, o, p.ts_ns);
    Erase(key);
    return;
  }
  if (p.len > 0) {
    std::string_view payload = p.payload.substr(0, std::min<size_t>(p.payload.size(), p.len));
    if (pos + p.len <= h.next) {
      // Every byte seen before: a retransmit (the edge saw the segment twice).
      stats_.retransmits++;
      if (f.started) {
        SocketEvent ev = Base(f, o, SocketEvent::Kind::kRetransmit, di, p.ts_ns);
        sink_(ev);
      }
    } else if (pos <= h.next) {
      const uint64_t skip = h.next - pos;
      if (skip) stats_.trimmed++;
      std::string_view pl = skip < payload.size() ? payload.substr(skip) : std::string_view();
      EmitData(f, o, di, h.next, static_cast<uint32_t>(pos + p.len - h.next), p.ts_ns, pl, p.acct);
      Drain(f, o, di);
    } else {
      // A hole before this segment: hold it (sorted, no two at one position).
      stats_.reordered++;
      auto at = std::lower_bound(h.held.begin(), h.held.end(), pos,
                                 [](const Held& x, uint64_t v) { return x.pos < v; });
      if (at == h.held.end() || at->pos != pos) {
        h.held.insert(at, Held{pos, p.len, p.ts_ns, std::string(payload), p.acct});
        if (!h.hole_since || p.ts_ns < h.hole_since) h.hole_since = p.ts_ns;
      }
      if (h.held.size() > limits_.max_held) GiveUpHole(f, o, di);
    }
  }
  if (p.flags & kFin) {
    if (!h.fin) {
      h.fin = true;
      h.fin_pos = pos + p.len;
    }
  }
  MaybeFin(f, o, di, p.ts_ns);
  // This packet's ACK may be what the other direction's FIN was waiting behind.
  if (!f.closed) MaybeFin(f, o, 1 - di, p.ts_ns);
  if (f.closed) Erase(key);
}

void EdgeReassembler::Tick(uint64_t now_ns) {
  std::vector<FlowKey> gone;
  for (auto& [k, f] : flows_) {
    auto o = owners_.find(k.ifindex);
    if (o == owners_.end()) {
      gone.push_back(k);
      continue;
    }
    for (int di = 0; di < 2; di++) {
      Half& h = f.half[di];
      if (!h.held.empty() && h.hole_since && now_ns > h.hole_since + limits_.reorder_window_ns) {
        GiveUpHole(f, o->second, di);
        MaybeFin(f, o->second, di, now_ns);
      }
    }
    if (!f.closed && now_ns > f.last_ts + limits_.idle_timeout_ns) {
      Close(f, o->second, now_ns);
      stats_.flows_expired++;
    }
    if (f.closed) gone.push_back(k);
  }
  for (const auto& k : gone) Erase(k);
}

}  // namespace isotrace::probes
