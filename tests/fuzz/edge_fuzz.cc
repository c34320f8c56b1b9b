// libFuzzer target: the edge reassembler (daemon/probes/edge_reassembly.h) on arbitrary
// packet sequences (a hostile peer chooses every sequence number, flag and length), with
// the real ConnectionTracker behind it. Invariants: per flow and direction the data
// records it hands on never overlap and never go backwards, no payload is longer than
// its byte count, and the held state stays bounded.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string_view>
#include <utility>

#include "daemon/correlate/connection_tracker.h"
#include "daemon/probes/edge_reassembly.h"

using isotrace::probes::EdgePacket;
using isotrace::probes::EdgeReassembler;
using isotrace::probes::SocketEvent;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  isotrace::util::Clock clock;
  isotrace::correlate::ConnectionTracker tracker(isotrace::correlate::TrackerLimits{}, &clock,
                                                 [](isotrace::correlate::Span&&) {});
  std::map<std::pair<uint64_t, int>, uint64_t> next;  // (conn, dir) → first position not yet seen
  EdgeReassembler::Limits lim;
  lim.max_flows = 8;
  lim.max_held = 4;
  EdgeReassembler r(lim, [&](const SocketEvent& ev) {
    if (ev.kind == SocketEvent::Kind::kData) {
      if (ev.payload.size() > static_cast<uint64_t>(ev.ret)) std::abort();
      auto& n = next[{ev.conn_id, static_cast<int>(ev.dir)}];
      if (ev.pos < n) std::abort();  // overlap or backwards
      n = ev.pos + static_cast<uint64_t>(ev.ret);
    }
    tracker.OnEvent(ev);
  });
  r.SetOwner(1, {100, 1, 0, "fuzz"});
  // Each packet: 12 header bytes (dir|flags, port selector, seq, len, payload size) then
  // that many payload bytes.
  uint64_t ts = 1'000'000'000;
  while (size >= 12) {
    EdgePacket p;
    p.ifindex = (data[0] & 0x80) ? 2 : 1;  // 2: an unknown device
    p.dir = (data[0] & 1) ? EdgePacket::Dir::kFromSandbox : EdgePacket::Dir::kToSandbox;
    p.flags = data[1];
    const bool in = p.dir == EdgePacket::Dir::kToSandbox;
    std::array<uint8_t, 16> c{10, 0, 0, 1}, s{10, 0, 0, 2};
    p.saddr = in ? c : s;
    p.daddr = in ? s : c;
    const uint16_t cport = 40000 + (data[2] & 3);
    p.sport = in ? cport : 80;
    p.dport = in ? 80 : cport;
    std::memcpy(&p.seq, data + 3, 4);
    uint32_t len16 = data[7] | (uint32_t{data[8]} << 8);
    const size_t pl = std::min<size_t>(data[9], size - 12);
    p.len = std::max<uint32_t>(len16, static_cast<uint32_t>(pl));
    ts += data[10] * 1'000'000ull;
    p.ts_ns = ts;
    p.payload = std::string_view(reinterpret_cast<const char*>(data + 12), pl);
    r.OnPacket(p);
    if (data[11] == 0xff) r.Tick(ts + 1'000'000'000ull);
    data += 12 + pl;
    size -= 12 + pl;
  }
  r.Tick(ts + 400'000'000'000ull);
  if (r.flows() != 0) std::abort();  // everything idle expires
  return 0;
}
