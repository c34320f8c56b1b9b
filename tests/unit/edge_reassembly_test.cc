// The edge reassembler (daemon/probes/edge_reassembly.h): TCP segments in any order, with
// retransmits, overlaps, holes and wrapping sequence numbers, become one in-order byte
// stream per direction; and, through the real ConnectionTracker, HTTP spans.
#include "daemon/probes/edge_reassembly.h"

#include <string>
#include <vector>

#include "daemon/correlate/connection_tracker.h"
#include "gtest/gtest.h"

namespace isotrace::probes {
namespace {

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
constexpr uint32_t kIf = 7;

struct Out {
  SocketEvent ev;
  std::string payload;
};

class EdgeReassemblyTest : public ::testing::Test {
 protected:
  EdgeReassemblyTest() {
    r_.SetOwner(kIf, EdgeOwner{4242, 99, 5, "runsc-sandbox"});
  }

  // A packet of the client (10.0.0.1:40000) → sandbox (10.0.0.2:80) flow or back.
  EdgePacket Pkt(bool to_sandbox, uint32_t seq, std::string_view payload, uint8_t flags = kAck,
                 uint64_t ts = 0, uint32_t len = UINT32_MAX) {
    EdgePacket p;
    p.ts_ns = ts ? ts : (now_ += 1000);
    p.ifindex = kIf;
    p.dir = to_sandbox ? EdgePacket::Dir::kToSandbox : EdgePacket::Dir::kFromSandbox;
    std::array<uint8_t, 16> c{10, 0, 0, 1}, s{10, 0, 0, 2};
    p.saddr = to_sandbox ? c : s;
    p.daddr = to_sandbox ? s : c;
    p.sport = to_sandbox ? 40000 : 80;
    p.dport = to_sandbox ? 80 : 40000;
    p.seq = seq;
    p.flags = flags;
    p.len = len == UINT32_MAX ? static_cast<uint32_t>(payload.size()) : len;
    p.payload = payload;
    return p;
  }

  std::string Stream(SocketEvent::Direction d) const {
    std::string s;
    for (const auto& o : out_)
      if (o.ev.kind == SocketEvent::Kind::kData && o.ev.dir == d) {
        EXPECT_EQ(o.ev.pos, s.size()) << "positions must be contiguous here";
        s += o.payload;
      }
    return s;
  }
  size_t Count(SocketEvent::Kind k) const {
    size_t n = 0;
    for (const auto& o : out_) n += o.ev.kind == k;
    return n;
  }

  uint64_t now_ = 1'000'000'000;
  std::vector<Out> out_;
  EdgeReassembler r_{EdgeReassembler::Limits{}, [this](const SocketEvent& ev) {
                       out_.push_back({ev, std::string(ev.payload)});
                     }};
};

TEST_F(EdgeReassemblyTest, InOrderSegmentsKeepPositionsAndTheSandboxIsTheProcess) {
  r_.OnPacket(Pkt(true, 1000, "", kSyn));
  r_.OnPacket(Pkt(false, 5000, "", kSyn | kAck));
  r_.OnPacket(Pkt(true, 1001, "GET / HTTP/1.1\r\n"));
  r_.OnPacket(Pkt(true, 1017, "Host: a\r\n\r\n"));
  r_.OnPacket(Pkt(false, 5001, "HTTP/1.1 200 OK\r\n\r\n"));
  EXPECT_EQ(Stream(SocketEvent::Direction::kIngress), "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(Stream(SocketEvent::Direction::kEgress), "HTTP/1.1 200 OK\r\n\r\n");
  ASSERT_FALSE(out_.empty());
  const SocketEvent& e = out_.front().ev;
  EXPECT_TRUE(e.edge);
  EXPECT_TRUE(e.new_conn);
  EXPECT_EQ(e.tgid, 4242u);
  EXPECT_EQ(e.proc_start_ns, 99u);
  EXPECT_EQ(e.cgroup_id, 5u);
  EXPECT_EQ(e.lport, 80);  // the sandbox's side is local
  EXPECT_EQ(e.rport, 40000);
  EXPECT_EQ(e.laddr[3], 2);
  EXPECT_GE(e.conn_id, 1ull << 62);  // never a kernel connection id
}

TEST_F(EdgeReassemblyTest, ReorderedSegmentsAreHeldUntilTheHoleFills) {
  r_.OnPacket(Pkt(true, 1000, "", kSyn));
  r_.OnPacket(Pkt(true, 1011, "CCCC"));
  r_.OnPacket(Pkt(true, 1006, "BBBBB"));
  EXPECT_EQ(Count(SocketEvent::Kind::kData), 0u);
  r_.OnPacket(Pkt(true, 1001, "AAAAA"));
  EXPECT_EQ(Stream(SocketEvent::Direction::kIngress), "AAAAABBBBBCCCC");
  EXPECT_EQ(r_.stats().reordered, 2u);
  EXPECT_EQ(r_.stats().holes, 0u);
}

TEST_F(EdgeReassemblyTest, RetransmitsAreDroppedAndOverlapsTrimmed) {
  r_.OnPacket(Pkt(true, 1000, "", kSyn));
  r_.OnPacket(Pkt(true, 1001, "AAAAA"));
  r_.OnPacket(Pkt(true, 1001, "AAAAA"));       // retransmit
  r_.OnPacket(Pkt(true, 1004, "AABBB"));       // overlaps 2 bytes
  EXPECT_EQ(Stream(SocketEvent::Direction::kIngress), "AAAAABBB");
  EXPECT_EQ(r_.stats().retransmits, 1u);
  EXPECT_EQ(r_.stats().trimmed, 1u);
  EXPECT_EQ(Count(SocketEvent::Kind::kRetransmit), 1u);
}

TEST_F(EdgeReassemblyTest, AHoleThatNeverFillsBecomesAPositionJump) {
  EdgeReassembler::Limits l;
  l.max_held = 2;
  EdgeReassembler r(l, [this](const SocketEvent& ev) { out_.push_back({ev, std::string(ev.payload)}); });
  r.SetOwner(kIf, EdgeOwner{1, 1, 0, "x"});
  r.OnPacket(Pkt(true, 1000, "", kSyn));
  r.OnPacket(Pkt(true, 1001, "AAAA"));
  r.OnPacket(Pkt(true, 1009, "CCCC"));  // bytes 4..8 lost
  r.OnPacket(Pkt(true, 1013, "DDDD"));
  r.OnPacket(Pkt(true, 1017, "EEEE"));  // third held: the hole is given up
  std::vector<uint64_t> pos;
  for (const auto& o : out_)
    if (o.ev.kind == SocketEvent::Kind::kData) pos.push_back(o.ev.pos);
  EXPECT_EQ(pos, (std::vector<uint64_t>{0, 8, 12, 16}));
  EXPECT_EQ(r.stats().holes, 1u);
  EXPECT_EQ(r.stats().hole_bytes, 4u);
}

TEST_F(EdgeReassemblyTest, AHoleOlderThanTheReorderWindowIsGivenUpAtTick) {
  r_.OnPacket(Pkt(true, 1000, "", kSyn));
  r_.OnPacket(Pkt(true, 1001, "AAAA"));
  r_.OnPacket(Pkt(true, 1009, "CCCC", kAck, now_ + 10));
  EXPECT_EQ(Count(SocketEvent::Kind::kData), 1u);
  r_.Tick(now_ + 500'000'000);
  EXPECT_EQ(Count(SocketEvent::Kind::kData), 2u);
  EXPECT_EQ(r_.stats().holes, 1u);
}

TEST_F(EdgeReassemblyTest, SequenceNumbersWrap) {
  r_.OnPacket(Pkt(true, 0xfffffffdu, "", kSyn));
  r_.OnPacket(Pkt(true, 0xfffffffeu, "AAAA"));  // crosses 2^32
  r_.OnPacket(Pkt(true, 0x00000002u, "BBBB"));
  EXPECT_EQ(Stream(SocketEvent::Direction::kIngress), "AAAABBBB");
}

TEST_F(EdgeReassemblyTest, UncapturedBytesCountWithoutPayload) {
  r_.OnPacket(Pkt(true, 1000, "", kSyn));
  r_.OnPacket(Pkt(true, 1001, "HEAD", kAck, 0, 1400));  // 4 of 1400 bytes captured
  r_.OnPacket(Pkt(true, 2401, "", kAck, 0, 1400));
  ASSERT_EQ(Count(SocketEvent::Kind::kData), 2u);
  EXPECT_EQ(out_[0].ev.ret, 1400);
  EXPECT_EQ(out_[0].payload, "HEAD");
  EXPECT_EQ(out_[1].ev.pos, 1400u);
  EXPECT_EQ(out_[1].ev.ret, 1400);
}

TEST_F(EdgeReassemblyTest, FinsEndDirectionsAndBothCloseTheFlow) {
  r_.OnPacket(Pkt(true, 1000, "", kSyn));
  r_.OnPacket(Pkt(false, 5000, "", kSyn | kAck));
  r_.OnPacket(Pkt(true, 1001, "GET / HTTP/1.0\r\n\r\n"));
  r_.OnPacket(Pkt(false, 5001, "HTTP/1.0 200 OK\r\n\r\n", kAck | kFin));
  r_.OnPacket(Pkt(true, 1019, "", kAck | kFin));
  EXPECT_EQ(Count(SocketEvent::Kind::kFin), 2u);
  EXPECT_EQ(Count(SocketEvent::Kind::kClose), 1u);
  EXPECT_EQ(r_.flows(), 0u);
}

TEST_F(EdgeReassemblyTest, AResetEndsTheFlowAsAnIncident) {
  r_.OnPacket(Pkt(true, 1000, "", kSyn));
  r_.OnPacket(Pkt(true, 1001, "GET / HTTP/1.1\r\n\r\n"));
  r_.OnPacket(Pkt(false, 5001, "", kRst));
  EXPECT_EQ(Count(SocketEvent::Kind::kResetSent), 1u);  // the sandbox reset it
  EXPECT_EQ(Count(SocketEvent::Kind::kClose), 1u);
  EXPECT_EQ(r_.flows(), 0u);
}

TEST_F(EdgeReassemblyTest, PacketsOfAnUnknownDeviceAreCountedAndDropped) {
  EdgePacket p = Pkt(true, 1, "GET / HTTP/1.1\r\n\r\n");
  p.ifindex = 99;
  r_.OnPacket(p);
  EXPECT_TRUE(out_.empty());
  EXPECT_EQ(r_.stats().unowned, 1u);
}

TEST_F(EdgeReassemblyTest, FlowsAreBoundedLeastRecentlyActiveFirst) {
  EdgeReassembler::Limits l;
  l.max_flows = 2;
  EdgeReassembler r(l, [this](const SocketEvent& ev) { out_.push_back({ev, std::string(ev.payload)}); });
  r.SetOwner(kIf, EdgeOwner{1, 1, 0, "x"});
  for (uint16_t port : {1, 2, 3}) {
    EdgePacket p = Pkt(true, 100, "GET / HTTP/1.1\r\n\r\n");
    p.sport = port;
    r.OnPacket(p);
  }
  EXPECT_EQ(r.flows(), 2u);
  EXPECT_EQ(r.stats().flows_evicted, 1u);
  EXPECT_EQ(Count(SocketEvent::Kind::kClose), 1u);
}

TEST_F(EdgeReassemblyTest, ReorderedRequestBecomesOneServerSpanWithSandboxScope) {
  util::Clock clock;
  std::vector<correlate::Span> spans;
  correlate::ConnectionTracker t(correlate::TrackerLimits{}, &clock,
                                 [&](correlate::Span&& s) { spans.push_back(std::move(s)); });
  EdgeReassembler r(EdgeReassembler::Limits{}, [&](const SocketEvent& ev) { t.OnEvent(ev); });
  r.SetOwner(kIf, EdgeOwner{4242, 99, 5, "runsc-sandbox"});
  ThreadAcct a0;
  a0.valid = true;
  a0.oncpu_ns = 1'000'000;
  a0.throttled_ns = 0;
  ThreadAcct a1 = a0;
  a1.oncpu_ns += 3'000'000;    // 3 ms on CPU over the sandbox's threads
  a1.throttled_ns += 9'000'000;  // 9 ms throttled: 12 ms busy in a 4 ms span
  auto P = [&](bool in, uint32_t seq, std::string_view pl, uint8_t fl, uint64_t ts, const ThreadAcct& a) {
    EdgePacket p = Pkt(in, seq, pl, fl, ts);
    p.acct = a;
    return p;
  };
  const uint64_t t0 = 5'000'000'000;
  r.OnPacket(P(true, 1000, "", kSyn, t0, a0));
  r.OnPacket(P(true, 1018, "Host: a\r\n\r\n", kAck, t0 + 2, a0));  // second half first
  r.OnPacket(P(true, 1001, "GET /x HTTP/1.1\r\n", kAck, t0 + 1, a0));
  r.OnPacket(P(false, 9001, "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", kAck, t0 + 4'000'000, a1));
  ASSERT_EQ(spans.size(), 1u);
  const auto& s = spans[0];
  EXPECT_EQ(s.kind, correlate::SpanKind::kServer);
  EXPECT_EQ(s.method, "GET");
  EXPECT_EQ(s.path, "/x");
  EXPECT_EQ(s.status_code, 503);
  EXPECT_TRUE(s.edge);
  ASSERT_TRUE(s.breakdown.sandbox_scope);
  const int64_t dur = static_cast<int64_t>(s.end_unix_ns - s.start_unix_ns);
  // Scaled to the duration, proportions kept (1:3).
  EXPECT_NEAR(static_cast<double>(*s.breakdown.throttled_ns), dur * 0.75, dur * 0.01);
  EXPECT_NEAR(static_cast<double>(*s.breakdown.oncpu_ns), dur * 0.25, dur * 0.01);
  EXPECT_LE(*s.breakdown.offcpu_other_ns, dur / 100);
}

}  // namespace
}  // namespace isotrace::probes

namespace isotrace::probes {
namespace {
// A call the sandbox makes (its request leaves it first) is a CLIENT span of the sandbox.
TEST(EdgeReassemblyClient, RequestsTheSandboxSendsAreClientSpans) {
  util::Clock clock;
  std::vector<correlate::Span> spans;
  correlate::ConnectionTracker t(correlate::TrackerLimits{}, &clock,
                                 [&](correlate::Span&& s) { spans.push_back(std::move(s)); });
  EdgeReassembler r(EdgeReassembler::Limits{}, [&](const SocketEvent& ev) { t.OnEvent(ev); });
  r.SetOwner(3, EdgeOwner{77, 1, 0, "qemu-system-x86"});
  auto P = [](EdgePacket::Dir d, uint32_t seq, std::string_view pl, uint8_t flags, uint64_t ts) {
    EdgePacket p;
    p.ifindex = 3;
    p.dir = d;
    std::array<uint8_t, 16> guest{10, 232, 1, 2}, remote{93, 184, 216, 34};
    const bool out = d == EdgePacket::Dir::kFromSandbox;
    p.saddr = out ? guest : remote;
    p.daddr = out ? remote : guest;
    p.sport = out ? 51000 : 80;
    p.dport = out ? 80 : 51000;
    p.seq = seq;
    p.flags = flags;
    p.len = static_cast<uint32_t>(pl.size());
    p.payload = pl;
    p.ts_ns = ts;
    return p;
  };
  const auto out = EdgePacket::Dir::kFromSandbox, in = EdgePacket::Dir::kToSandbox;
  r.OnPacket(P(out, 100, "", kSyn, 1'000'000));
  r.OnPacket(P(in, 900, "", kSyn | kAck, 1'100'000));
  r.OnPacket(P(out, 101, "GET /api HTTP/1.1\r\nHost: example\r\n\r\n", kAck, 1'200'000));
  r.OnPacket(P(in, 901, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", kAck, 9'200'000));
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].kind, correlate::SpanKind::kClient);
  EXPECT_EQ(spans[0].path, "/api");
  EXPECT_EQ(spans[0].status_code, 200);
  EXPECT_EQ(spans[0].server_address, "93.184.216.34");
  EXPECT_EQ(spans[0].client_address, "10.232.1.2");
  EXPECT_EQ(spans[0].process.tgid, 77u);
  EXPECT_TRUE(spans[0].edge);
}
}  // namespace
}  // namespace isotrace::probes
