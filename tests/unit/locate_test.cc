// daemon/locate on synthetic spans: local trees are held until their root-most span
// ended, judged against learnt baselines along the critical path, and released whole.

#include "daemon/locate/locator.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/locate/verdict_text.h"

namespace isotrace::locate {
namespace {

using correlate::Span;
using correlate::SpanKind;

constexpr uint64_t kMs = 1'000'000;

std::shared_ptr<const correlate::Resource> Res(const std::string& service, bool container = false) {
  auto r = std::make_shared<correlate::Resource>();
  r->attributes.push_back({"service.name", service});
  if (container) r->attributes.push_back({"container.id", std::string("abc")});
  return r;
}

// The vertical breakdown as the tracker writes it (ns); `other` is off-CPU sleep.
struct Acct {
  int64_t oncpu = 0, runq = 0, throttled = 0, blkio = 0, memstall = 0, steal = 0, other = 0, unseen = 0;
  int64_t retransmits = 0;
  std::optional<int64_t> listen_drops;  // CLIENT: the callee's listen drops in the span
};

class LocateTest : public ::testing::Test {
 protected:
  LocateTest() { Make(LocateOptions{}); }

  void Make(LocateOptions o) {
    o.baseline_min_samples = 10;
    locator_ = std::make_unique<Locator>(
        o,
        [this](const std::shared_ptr<const correlate::Resource>& r, std::shared_ptr<const Span> s) {
          released_.push_back({r, *s});
        },
        [this](const Verdict& v, const std::shared_ptr<const correlate::Resource>&) { verdicts_.push_back(v); });
  }

  // Single slow traces under 4 × usual judged at once (no repeat of their cause needed).
  void MakeJudgingEveryTrace() {
    LocateOptions o;
    o.lone_factor = 0;
    Make(o);
  }

  Span MakeSpan(SpanKind kind, uint64_t id, uint64_t parent, uint64_t start, uint64_t end, const Acct& a,
                const std::string& path = "/p") {
    Span s;
    s.kind = kind;
    s.trace_id[0] = 1;
    for (int i = 0; i < 8; i++) s.span_id[i] = static_cast<uint8_t>(id >> (8 * i));
    for (int i = 0; i < 8; i++) s.local_parent[i] = static_cast<uint8_t>(parent >> (8 * i));
    s.parent_span_id = s.local_parent;
    s.start_unix_ns = start;
    s.end_unix_ns = end;
    s.method = "GET";
    s.path = path;
    s.status_code = 200;
    if (kind == SpanKind::kClient) {
      s.server_address = "10.0.0.2";
      s.server_port = 9090;
    }
    auto& bd = s.breakdown;
    bd.oncpu_ns = a.oncpu;
    bd.runq_ns = a.runq;
    bd.throttled_ns = a.throttled;
    bd.blkio_ns = a.blkio;
    bd.memstall_ns = a.memstall;
    bd.steal_ns = a.steal;
    bd.offcpu_other_ns = a.other;
    if (kind == SpanKind::kServer) bd.downstream_unseen_ns = a.unseen;
    else s.net.retransmits = a.retransmits;
    s.net.listen_drops = a.listen_drops;
    return s;
  }

  // A: SERVER (front) → CLIENT → B: SERVER (back, in a container), synchronous. The
  // back end's own time is `b`; the front spends 1 ms of CPU around the call. Spans
  // arrive as the tracker emits them: innermost first.
  // `pre_part` of the gap lies before the back end's first read, the rest after its
  // answer left.
  void Chain(uint64_t t0, const Acct& b, int64_t net_gap = 200'000, int64_t retransmits = 0, int status = 200,
             int drops = 0, double pre_part = 0.5, std::optional<int64_t> listen_drops = std::nullopt) {
    const int64_t b_dur = b.oncpu + b.runq + b.throttled + b.blkio + b.memstall + b.other;
    const uint64_t id = ++trace_;
    const uint64_t a_srv = id * 10 + 1, a_cli = id * 10 + 2, b_srv = id * 10 + 3;
    const uint64_t a_start = t0, cli_start = t0 + 500'000;
    const int64_t pre_gap = static_cast<int64_t>(static_cast<double>(net_gap) * pre_part);
    const uint64_t b_start = cli_start + pre_gap, b_end = b_start + b_dur;
    const uint64_t cli_end = b_end + (net_gap - pre_gap), a_end = cli_end + 500'000;
    Span bs = MakeSpan(SpanKind::kServer, b_srv, a_cli, b_start, b_end, b);
    bs.status_code = status;
    if (status >= 500) bs.error_type = std::to_string(status);
    Acct ca;
    ca.oncpu = 20'000;
    ca.other = static_cast<int64_t>(cli_end - cli_start) - 20'000;
    ca.retransmits = retransmits;
    ca.listen_drops = listen_drops;
    Span cs = MakeSpan(SpanKind::kClient, a_cli, a_srv, cli_start, cli_end, ca);
    for (int i = 0; i < drops; i++) {
      correlate::Incident e;
      e.kind = correlate::IncidentKind::kPacketDrop;
      e.time_unix_ns = cli_start + 1000;
      cs.incidents.push_back(e);
    }
    Acct aa;
    aa.oncpu = 1'000'000 + ca.oncpu;
    aa.other = static_cast<int64_t>(a_end - a_start) - aa.oncpu;
    Span as = MakeSpan(SpanKind::kServer, a_srv, 0, a_start, a_end, aa);
    as.status_code = status;
    if (status >= 500) as.error_type = std::to_string(status);
    locator_->Add(back_res_, std::move(bs), a_end);
    locator_->Add(front_res_, std::move(cs), a_end);
    locator_->Add(front_res_, std::move(as), a_end);
    now_ = a_end + 200 * kMs;
    locator_->Tick(now_);
  }

  // Exactly one verdict, naming this (service, layer, cause).
  void ExpectOneVerdict(const std::string& service, const std::string& layer, const std::string& cause) {
    ASSERT_EQ(verdicts_.size(), 1u);
    EXPECT_EQ(verdicts_[0].service, service);
    EXPECT_EQ(verdicts_[0].layer, layer);
    EXPECT_EQ(verdicts_[0].cause, cause) << EvidenceText(verdicts_[0], 8);
  }

  void Warm(int n, const Acct& usual) {
    for (int i = 0; i < n; i++) Chain(now_ + kMs, usual);
    ASSERT_TRUE(verdicts_.empty()) << Summary(verdicts_.front());
  }

  std::shared_ptr<const correlate::Resource> front_res_ = Res("front");
  std::shared_ptr<const correlate::Resource> back_res_ = Res("back", /*container=*/true);
  std::unique_ptr<Locator> locator_;
  std::vector<std::pair<std::shared_ptr<const correlate::Resource>, Span>> released_;
  std::vector<Verdict> verdicts_;
  uint64_t trace_ = 0;
  uint64_t now_ = 1'000'000'000'000ull;
};

Acct Usual() {
  Acct a;
  a.oncpu = 8 * kMs;  // a CPU-bound back end: on-CPU is normally its largest share
  a.runq = 200'000;
  a.other = 300'000;
  return a;
}

// The verdict's fields as the span carries them ("" when the span has no verdict).
std::string VerdictField(const Span& s, std::string correlate::SpanVerdict::*field) {
  return s.verdict ? (*s.verdict).*field : "";
}

TEST_F(LocateTest, HoldsATreeUntilItsRootEndedAndReleasesItWholeInArrivalOrder) {
  Acct b = Usual();
  Chain(now_, b);
  ASSERT_EQ(released_.size(), 3u);
  EXPECT_EQ(released_[0].second.kind, SpanKind::kServer);
  EXPECT_EQ(released_[1].second.kind, SpanKind::kClient);
  EXPECT_EQ(released_[2].first, front_res_);
  // Downstream time (explained by children) on the spans that have local children.
  EXPECT_TRUE(released_[1].second.breakdown.downstream_ns.has_value());
  EXPECT_FALSE(released_[0].second.breakdown.downstream_ns.has_value()) << "a leaf has no downstream time";
  EXPECT_EQ(locator_->stats().held, 0u);
  EXPECT_EQ(locator_->stats().traces, 1u);
  EXPECT_EQ(locator_->stats().learning, 1u);
}

TEST_F(LocateTest, ASpanIsNotReleasedBeforeTheGraceAfterItsRoot) {
  Span root = MakeSpan(SpanKind::kServer, 7, 0, now_, now_ + kMs, Usual());
  locator_->Add(front_res_, std::move(root), now_ + kMs);
  locator_->Tick(now_ + kMs + 10 * kMs);
  EXPECT_TRUE(released_.empty()) << "within hold_ms (150 ms): a child may still be in the ring";
  locator_->Tick(now_ + kMs + 151 * kMs);
  EXPECT_EQ(released_.size(), 1u);
}

TEST_F(LocateTest, NamesWhatIsAbnormalNotWhatIsLargest) {
  Warm(30, Usual());
  Acct b = Usual();
  b.throttled = 40 * kMs;  // the container's quota, while on-CPU stays the usual 8 ms
  released_.clear();
  Chain(now_ + kMs, b);
  ASSERT_EQ(verdicts_.size(), 1u);
  const Verdict& v = verdicts_[0];
  EXPECT_EQ(v.service, "back");
  EXPECT_EQ(v.layer, "container");
  EXPECT_EQ(v.cause, "throttling");
  EXPECT_EQ(v.reason, "slow");
  EXPECT_NEAR(v.share, 40.0 / (v.duration_ns / 1e6), 0.01);
  EXPECT_EQ(v.root_service, "front");
  ASSERT_EQ(v.path_hops.size(), 3u);
  EXPECT_EQ(v.path_hops[0].service, "front");
  EXPECT_EQ(v.path_hops[2].service, "back");
  EXPECT_EQ(v.evidence.front().excess_ns, 40 * kMs);
  // Written on the root-most span before it is released.
  ASSERT_EQ(released_.size(), 3u);
  const Span& root = released_[2].second;
  EXPECT_EQ(root.span_id, v.span_id);
  EXPECT_EQ(VerdictField(root, &correlate::SpanVerdict::service), "back");
  EXPECT_EQ(VerdictField(root, &correlate::SpanVerdict::layer), "container");
  EXPECT_EQ(VerdictField(root, &correlate::SpanVerdict::cause), "throttling");
  EXPECT_EQ(VerdictField(root, &correlate::SpanVerdict::reason), "slow");
  EXPECT_FALSE(released_[0].second.verdict.has_value()) << "only on the root-most span";
}

TEST_F(LocateTest, EachCauseMapsToItsLayer) {
  struct Case {
    const char* name;
    void (*inject)(Acct*);
    const char* layer;
    const char* cause;
  };
  const std::vector<Case> cases = {
      {"runq", [](Acct* a) { a->runq += 30 * kMs; }, "kernel", "runqueue"},
      {"cpu", [](Acct* a) { a->oncpu += 30 * kMs; }, "app", "cpu"},
      {"blkio", [](Acct* a) { a->blkio += 30 * kMs; }, "kernel", "block_io"},
      {"memory in a container", [](Acct* a) { a->memstall += 30 * kMs; }, "container", "memory"},
      // Evicted page cache read back: more I/O than stall, both from the memory limit.
      {"memory with read-back I/O",
       [](Acct* a) {
         a->memstall += 6 * kMs;
         a->blkio += 20 * kMs;
       },
       "container", "memory"},
      {"I/O with a trace of memory stall",
       [](Acct* a) {
         a->memstall += 500'000;
         a->blkio += 20 * kMs;
       },
       "kernel", "block_io"},
      {"steal", [](Acct* a) { a->oncpu += 30 * kMs; a->steal += 30 * kMs; }, "vm", "steal"},
      {"unseen", [](Acct* a) { a->other += 30 * kMs; a->unseen += 30 * kMs; }, "downstream", "downstream"},
      {"own wait", [](Acct* a) { a->other += 30 * kMs; }, "app", "wait"},
  };
  for (const auto& c : cases) {
    MakeJudgingEveryTrace();
    verdicts_.clear();
    Warm(15, Usual());
    Acct b = Usual();
    c.inject(&b);
    Chain(now_ + kMs, b);
    ASSERT_EQ(verdicts_.size(), 1u) << c.name;
    EXPECT_EQ(verdicts_[0].service, "back") << c.name;
    EXPECT_EQ(verdicts_[0].layer, c.layer) << c.name;
    EXPECT_EQ(verdicts_[0].cause, c.cause) << c.name;
  }
}

// Under a memory limit every read is a refault, but the kernel flags only some as stalls:
// a span of the same service with the re-reads' I/O and no stall of its own, right after
// one that stalled, is the same pressure; long after it, I/O is the device's again.
TEST_F(LocateTest, BlockIOOfAServiceUnderMemoryPressureIsThatPressure) {
  MakeJudgingEveryTrace();
  Warm(15, Usual());
  Acct stalled = Usual();
  stalled.memstall += 6 * kMs;
  stalled.blkio += 20 * kMs;
  Acct io_only = Usual();
  io_only.blkio += 20 * kMs;
  Chain(now_ + kMs, stalled);
  Chain(now_ + kMs, io_only);
  ASSERT_EQ(verdicts_.size(), 2u);
  EXPECT_EQ(verdicts_[0].cause, "memory");
  EXPECT_EQ(verdicts_[1].layer, "container");
  EXPECT_EQ(verdicts_[1].cause, "memory") << EvidenceText(verdicts_[1], 8);
  Chain(now_ + 3000 * kMs, io_only);  // more than 2 s after the last stall
  ASSERT_EQ(verdicts_.size(), 3u);
  EXPECT_EQ(verdicts_[2].layer, "kernel");
  EXPECT_EQ(verdicts_[2].cause, "block_io") << EvidenceText(verdicts_[2], 8);
  // A trace of memory stall with much more I/O does not mark the service either.
  Acct trace_of_stall = Usual();
  trace_of_stall.memstall += 1500'000;
  trace_of_stall.blkio += 20 * kMs;
  Chain(now_ + 3000 * kMs, trace_of_stall);
  Chain(now_ + kMs, io_only);
  ASSERT_EQ(verdicts_.size(), 5u);
  EXPECT_EQ(verdicts_[3].cause, "block_io");
  EXPECT_EQ(verdicts_[4].cause, "block_io");
}

// Packets the caller's own firewall dropped on the way out: TCP resends them without a
// retransmission (retransmits stay 0), and the packet_drop events are the only evidence.
TEST_F(LocateTest, LocallyDroppedPacketsBlameTheNetworkWithoutRetransmits) {
  Warm(15, Usual());
  Chain(now_ + kMs, Usual(), /*net_gap=*/200 * kMs, /*retransmits=*/0, 200, /*drops=*/3);
  ASSERT_EQ(verdicts_.size(), 1u);
  EXPECT_EQ(verdicts_[0].service, "front");
  EXPECT_EQ(verdicts_[0].layer, "network");
  EXPECT_EQ(verdicts_[0].cause, "packet_drop");
}

TEST_F(LocateTest, LostPacketsBlameTheCallersNetworkAndAPlainGapIsNotTheNetwork) {
  Warm(15, Usual());
  Chain(now_ + kMs, Usual(), /*net_gap=*/200 * kMs, /*retransmits=*/2);
  ASSERT_EQ(verdicts_.size(), 1u);
  EXPECT_EQ(verdicts_[0].service, "front");
  EXPECT_EQ(verdicts_[0].layer, "network");
  EXPECT_EQ(verdicts_[0].cause, "tcp_retransmit");
  // The same gap with a run-queue spike in the back end and no retransmit: the
  // hand-off is judged with the back end (queueing before its first read).
  verdicts_.clear();
  Acct b = Usual();
  b.runq += 5 * kMs;
  Chain(now_ + kMs, b, /*net_gap=*/30 * kMs, /*retransmits=*/0);
  ASSERT_EQ(verdicts_.size(), 1u);
  EXPECT_EQ(verdicts_[0].service, "back");
  EXPECT_EQ(verdicts_[0].cause, "runqueue");
}

// A SYN resent after 1 s: lost on the wire, or dropped by the callee's full accept queue.
// The retransmit alone reads as the caller's network; with the callee's listeners
// dropping attempts meanwhile it is the callee's queue, connect and wait together.
TEST_F(LocateTest, ARetransmittedConnectIsTheCalleesQueueWhenItsListenersDroppedAttempts) {
  Warm(15, Usual());
  Chain(now_ + kMs, Usual(), /*net_gap=*/1100 * kMs, /*retransmits=*/1, 200, 0, /*pre_part=*/1.0,
        /*listen_drops=*/4);
  ExpectOneVerdict("back", "downstream", "queue");
  verdicts_.clear();
  Chain(now_ + kMs, Usual(), /*net_gap=*/1100 * kMs, /*retransmits=*/1, 200, 0, /*pre_part=*/1.0,
        /*listen_drops=*/0);
  ExpectOneVerdict("front", "network", "tcp_retransmit");
  verdicts_.clear();
  Chain(now_ + kMs, Usual(), /*net_gap=*/1100 * kMs, /*retransmits=*/1, 200, 0, /*pre_part=*/1.0);
  ExpectOneVerdict("front", "network", "tcp_retransmit");  // not known: as before
}

// The case: a 1.4 s wait before a normal callee read its request (no retransmit,
// drop or reset on the connection). It is the callee's queue, and the callee's largest
// component (on-CPU, normal) is not inflated by time outside its span.
TEST_F(LocateTest, AWaitBeforeANormalCalleeReadIsItsQueueNotItsLargestComponent) {
  Warm(15, Usual());
  Chain(now_ + kMs, Usual(), /*net_gap=*/1400 * kMs, 0, 200, 0, /*pre_part=*/1.0);
  ExpectOneVerdict("back", "downstream", "queue");
  EXPECT_GT(verdicts_[0].share, 0.9);
  for (const auto& e : verdicts_[0].evidence) {
    if (e.cause == "queue") continue;
    EXPECT_LT(e.excess_ns, static_cast<int64_t>(kMs)) << EvidenceText(verdicts_[0], 8);
  }
}

// A callee that itself ran abnormally (5 ms more run-queue wait) and read late: the wait
// before its read has the cause its span shows, when that cause is large enough to
// account for it (here 5 ms against a 30 ms wait) — and is its queue when it is not
// (5 ms against a 400 ms wait).
TEST_F(LocateTest, AWaitBeforeAnAbnormalCalleeReadTakesItsCauseOnlyWhenItCanAccountForIt) {
  Warm(15, Usual());
  Acct b = Usual();
  b.runq += 5 * kMs;
  Chain(now_ + kMs, b, /*net_gap=*/30 * kMs, 0, 200, 0, /*pre_part=*/1.0);
  ExpectOneVerdict("back", "kernel", "runqueue");
  verdicts_.clear();
  Chain(now_ + kMs, b, /*net_gap=*/400 * kMs, 0, 200, 0, /*pre_part=*/1.0);
  ExpectOneVerdict("back", "downstream", "queue");
}

// The answer left the callee and reached the caller 300 ms later, with no retransmit,
// drop or reset seen: the network, cause unknown, on the caller's hop.
TEST_F(LocateTest, AWaitAfterTheCalleesAnswerWithoutEvidenceIsTheNetworkUnknown) {
  Warm(15, Usual());
  Chain(now_ + kMs, Usual(), /*net_gap=*/300 * kMs, 0, 200, 0, /*pre_part=*/0.0);
  ExpectOneVerdict("front", "network", "unknown");
  ASSERT_FALSE(verdicts_[0].path_hops.empty());
  EXPECT_EQ(verdicts_[0].path_hops.back().service, "back");
}

TEST_F(LocateTest, FailedTracesBlameTheDeepestFailingSpan) {
  Warm(15, Usual());
  Chain(now_ + kMs, Usual(), 200'000, 0, /*status=*/503);
  ASSERT_EQ(verdicts_.size(), 1u);
  EXPECT_EQ(verdicts_[0].reason, "failed");
  EXPECT_EQ(verdicts_[0].service, "back");
  EXPECT_EQ(verdicts_[0].layer, "app");
  EXPECT_EQ(verdicts_[0].cause, "error");
  EXPECT_EQ(verdicts_[0].status_code, 503);
}

TEST_F(LocateTest, NormalAndLearningTracesGetNoVerdict) {
  Chain(now_, Usual());  // nothing learnt yet: never "slow"
  Acct b = Usual();
  b.runq += 100 * kMs;
  Chain(now_ + kMs, b);
  EXPECT_TRUE(verdicts_.empty());
  EXPECT_EQ(locator_->stats().learning, 2u);
}

TEST_F(LocateTest, AFaultDoesNotBecomeTheBaseline) {
  Warm(15, Usual());
  Acct b = Usual();
  b.throttled = 40 * kMs;
  for (int i = 0; i < 40; i++) Chain(now_ + kMs, b);
  // Slow spans stay out of the baseline (one in 16 goes in): still judged slow.
  EXPECT_GE(verdicts_.size(), 38u);
  EXPECT_EQ(verdicts_.back().cause, "throttling");
}

// The back end waits 6 ms more for a CPU on every request: the front's root lasts about
// 1.6 × its usual 10.2 ms, under slow_factor 2.
Acct Shifted() {
  Acct b = Usual();
  b.runq += 6 * kMs;
  return b;
}

TEST_F(LocateTest, ASustainedShiftIsJudgedThoughNoTraceIsTwiceAsSlow) {
  Warm(40, Usual());
  int first = -1;
  for (int i = 0; i < 40; i++) {
    Chain(now_ + kMs, Shifted());
    if (first < 0 && !verdicts_.empty()) first = i;
  }
  // The window of the route's last 32 trees has a shifted median after 17 of them.
  ASSERT_GE(first, 0) << "a route 1.6 x slower on every request got no verdict";
  EXPECT_EQ(first, 16) << "judged before most of the window was slower, or late";
  EXPECT_EQ(verdicts_.size(), 40u - 16u);
  EXPECT_EQ(locator_->stats().shift, 24u);
  EXPECT_EQ(locator_->stats().slow, 0u);
  for (const Verdict& v : verdicts_) {
    EXPECT_EQ(v.reason, "shift");
    EXPECT_EQ(v.service, "back");
    EXPECT_EQ(v.layer, "kernel");
    EXPECT_EQ(v.cause, "runqueue") << EvidenceText(v, 8);
  }
  // Back to usual: the window's median follows within half a window, and the baseline
  // did not learn the shift.
  verdicts_.clear();
  for (int i = 0; i < 40; i++) Chain(now_ + kMs, Usual());
  EXPECT_TRUE(verdicts_.empty());
  Chain(now_ + kMs, Shifted());
  EXPECT_TRUE(verdicts_.empty()) << "one slower trace on a route back to usual is not a shift";
}

TEST_F(LocateTest, AShiftedRouteIsNotLearntAsUsual) {
  Warm(40, Usual());
  // More shifted trees than the baseline holds (256): were they learnt as normal ones,
  // the route's median would be the shifted duration and the verdicts would stop.
  for (int i = 0; i < 400; i++) Chain(now_ + kMs, Shifted());
  ASSERT_GE(verdicts_.size(), 380u);
  EXPECT_EQ(verdicts_.back().reason, "shift");
  EXPECT_EQ(verdicts_.back().cause, "runqueue");
}

TEST_F(LocateTest, SlowerTracesAmongUsualOnesAreNoShift) {
  Warm(40, Usual());
  // One tree in three 1.6 × slower: the window's median stays usual.
  for (int i = 0; i < 90; i++) Chain(now_ + kMs, i % 3 == 0 ? Shifted() : Usual());
  EXPECT_TRUE(verdicts_.empty()) << Summary(verdicts_.front());
  EXPECT_EQ(locator_->stats().shift, 0u);
}

TEST_F(LocateTest, ShiftFactorZeroJudgesOnlySlowTraces) {
  LocateOptions o;
  o.shift_factor = 0;
  Make(o);
  Warm(40, Usual());
  for (int i = 0; i < 60; i++) Chain(now_ + kMs, Shifted());
  EXPECT_TRUE(verdicts_.empty());
}

// A slow trace under lone_factor (4) × usual whose cause no other of its route's last 16
// trees had is the node's noise: counted, not judged. Its cause repeating, a gross trace,
// and lone_factor 0 are judged.
TEST_F(LocateTest, ALoneOutlierIsCountedAndJudgedOnlyWhenItsCauseRepeats) {
  Warm(30, Usual());  // the root's usual: about 10.2 ms
  Acct runq = Usual();
  runq.runq += 20 * kMs;  // about 3 × usual
  Acct io = Usual();
  io.blkio += 20 * kMs;
  released_.clear();
  Chain(now_ + kMs, runq);
  EXPECT_TRUE(verdicts_.empty()) << Summary(verdicts_.front());
  EXPECT_EQ(locator_->stats().lone, 1u);
  EXPECT_EQ(locator_->stats().slow, 0u);
  ASSERT_EQ(released_.size(), 3u);
  EXPECT_FALSE(released_[2].second.verdict.has_value());
  // A different cause next: alone with its cause too.
  Chain(now_ + kMs, io);
  EXPECT_TRUE(verdicts_.empty()) << Summary(verdicts_.front());
  EXPECT_EQ(locator_->stats().lone, 2u);
  // The first cause again within 16 trees: judged, with the verdict on its span.
  for (int i = 0; i < 10; i++) Chain(now_ + kMs, Usual());
  Chain(now_ + kMs, runq);
  ASSERT_EQ(verdicts_.size(), 1u);
  EXPECT_EQ(verdicts_[0].cause, "runqueue");
  EXPECT_EQ(verdicts_[0].reason, "slow");
  EXPECT_EQ(locator_->stats().slow, 1u);
  // 16 trees later the cause no longer repeats.
  for (int i = 0; i < 16; i++) Chain(now_ + kMs, Usual());
  Chain(now_ + kMs, runq);
  EXPECT_EQ(verdicts_.size(), 1u);
  EXPECT_EQ(locator_->stats().lone, 3u);
  // A gross trace (over 4 × usual) is judged alone.
  for (int i = 0; i < 16; i++) Chain(now_ + kMs, Usual());
  Acct gross = Usual();
  gross.blkio += 40 * kMs;
  Chain(now_ + kMs, gross);
  ASSERT_EQ(verdicts_.size(), 2u);
  EXPECT_EQ(verdicts_[1].cause, "block_io");
  EXPECT_EQ(locator_->stats().lone, 3u);
  // Off: the lone one is judged at once.
  MakeJudgingEveryTrace();
  verdicts_.clear();
  Warm(30, Usual());
  Chain(now_ + kMs, runq);
  ASSERT_EQ(verdicts_.size(), 1u);
  EXPECT_EQ(verdicts_[0].cause, "runqueue");
  EXPECT_EQ(locator_->stats().lone, 0u);
}

// On a shifted route, a trace slowed by something other than the shift's cause is no
// verdict of the shift.
TEST_F(LocateTest, AShiftedRoutesTraceWithAnotherCauseIsALoneOutlier) {
  Warm(40, Usual());
  for (int i = 0; i < 30; i++) Chain(now_ + kMs, Shifted());
  const size_t before = verdicts_.size();
  ASSERT_GE(before, 10u);
  Acct io = Usual();
  io.blkio += 7 * kMs;  // 1.7 × usual, shifted-route territory, but block I/O
  Chain(now_ + kMs, io);
  EXPECT_EQ(verdicts_.size(), before) << Summary(verdicts_.back());
  EXPECT_EQ(locator_->stats().lone, 1u);
  Chain(now_ + kMs, Shifted());
  ASSERT_EQ(verdicts_.size(), before + 1);
  EXPECT_EQ(verdicts_.back().cause, "runqueue");
}

TEST_F(LocateTest, ParallelChildrenOffTheCriticalPathAreNotBlamed) {
  LocateOptions o;
  Make(o);
  // root SERVER [0, 100 ms] with two CLIENT children on... a fan-out: one of 90 ms (the
  // critical one) and one of 20 ms in parallel; their servers carry the time.
  auto tree = [&](uint64_t t0, int64_t slow_runq) {
    const uint64_t id = ++trace_ * 100;
    Acct fast = Usual();
    fast.runq += slow_runq;  // the short branch gets slower, but stays shorter
    Acct crit = Usual();
    crit.other += 80 * kMs;
    const int64_t crit_dur = crit.oncpu + crit.runq + crit.other;
    const int64_t fast_dur = fast.oncpu + fast.runq + fast.other;
    Span s1 = MakeSpan(SpanKind::kServer, id + 3, id + 1, t0 + 1 * kMs, t0 + 1 * kMs + crit_dur, crit);
    Span s2 = MakeSpan(SpanKind::kServer, id + 4, id + 2, t0 + 1 * kMs, t0 + 1 * kMs + fast_dur, fast);
    Acct ca;
    ca.other = crit_dur + 2 * kMs;
    Span c1 = MakeSpan(SpanKind::kClient, id + 1, id, t0 + 500'000, t0 + 1 * kMs + crit_dur + 500'000, ca, "/a");
    Acct cb;
    cb.other = fast_dur + 1 * kMs;
    Span c2 = MakeSpan(SpanKind::kClient, id + 2, id, t0 + 500'000, t0 + 1 * kMs + fast_dur + 500'000, cb, "/b");
    Acct ra;
    ra.oncpu = kMs;
    ra.other = crit_dur + 3 * kMs;
    Span r = MakeSpan(SpanKind::kServer, id, 0, t0, t0 + crit_dur + 4 * kMs, ra);
    auto back2 = Res("back2");
    locator_->Add(back_res_, std::move(s1), t0);
    locator_->Add(back2, std::move(s2), t0);
    locator_->Add(front_res_, std::move(c1), t0);
    locator_->Add(front_res_, std::move(c2), t0);
    locator_->Add(front_res_, std::move(r), t0);
    now_ = t0 + 500 * kMs;
    locator_->Tick(now_);
  };
  for (int i = 0; i < 15; i++) tree(now_, 0);
  ASSERT_TRUE(verdicts_.empty());
  tree(now_, 30 * kMs);  // back2's branch: 30 ms slower, still off the critical path
  EXPECT_TRUE(verdicts_.empty()) << "the trace is not slower: back2 is off the critical path";
}

TEST_F(LocateTest, OrphansAreReleasedAfterMaxWaitAndLateChildrenAtOnce) {
  LocateOptions o;
  o.max_wait_ms = 1000;
  Make(o);
  Span orphan = MakeSpan(SpanKind::kServer, 555, 999, now_, now_ + kMs, Usual());
  locator_->Add(back_res_, std::move(orphan), now_);
  locator_->Tick(now_ + 500 * kMs);
  EXPECT_TRUE(released_.empty());
  locator_->Tick(now_ + 1001 * kMs);
  ASSERT_EQ(released_.size(), 1u);
  EXPECT_EQ(locator_->stats().released_unjudged, 1u);
  // A child arriving after its tree was judged (an asynchronous call) goes straight on.
  Chain(now_ + 2000 * kMs, Usual());
  const auto root_id = released_.back().second.span_id;
  uint64_t root = 0;
  for (int i = 0; i < 8; i++) root |= uint64_t{root_id[i]} << (8 * i);
  size_t before = released_.size();
  locator_->Add(front_res_, MakeSpan(SpanKind::kClient, 4242, root, now_, now_ + kMs, Usual()), now_);
  EXPECT_EQ(released_.size(), before + 1);
  EXPECT_EQ(locator_->stats().late_children, 1u);
}

TEST_F(LocateTest, HeldSpansAreBoundedAndDrainReleasesEverything) {
  LocateOptions o;
  o.max_held_spans = 4;
  Make(o);
  for (uint64_t i = 1; i <= 6; i++)
    locator_->Add(back_res_, MakeSpan(SpanKind::kServer, i, 1000 + i, now_, now_ + kMs, Usual()), now_);
  EXPECT_EQ(locator_->stats().held_overflow, 2u);
  EXPECT_EQ(released_.size(), 2u);
  locator_->Drain(now_);
  EXPECT_EQ(released_.size(), 6u) << "every accepted span leaves";
  EXPECT_EQ(locator_->stats().held, 0u);
}

TEST_F(LocateTest, BaselinesEvictedWhileATreeIsLearntStaySound) {
  // Three routes per tree (front SERVER, front CLIENT, back SERVER) and room for two: each
  // tree's learning evicts a baseline another of its nodes found while being judged. Run
  // under the sanitizers this is where a stale baseline pointer would show.
  LocateOptions o;
  o.max_baselines = 2;
  Make(o);
  for (int i = 0; i < 40; i++) Chain(now_ + kMs, Usual());
  EXPECT_EQ(released_.size(), 120u) << "every span released";
  EXPECT_GT(locator_->stats().baselines_evicted, 40u);
  EXPECT_EQ(locator_->stats().traces, 40u);
  // With room for all three routes the same traffic learns, and a fault is then judged.
  o.max_baselines = 3;
  Make(o);
  verdicts_.clear();
  Warm(30, Usual());
  Acct b = Usual();
  b.throttled = 40 * kMs;
  Chain(now_ + kMs, b);
  ExpectOneVerdict("back", "container", "throttling");
  EXPECT_EQ(locator_->stats().baselines_evicted, 0u);
}

TEST(VerdictText, SummaryEvidenceAndPath) {
  Verdict v;
  v.reason = "slow";
  v.service = "svc-b";
  v.layer = "kernel";
  v.cause = "runqueue";
  v.share = 0.74;
  v.duration_ns = 120'300'000;
  v.baseline_ns = 20'100'000;
  v.evidence.push_back({"svc-b", "kernel", "runqueue", 95'000'000, 14'900'000, 80'100'000});
  v.path_hops.push_back({"nginx", SpanKind::kServer, {}, "GET", "/", "", 120'300'000, 0});
  v.path_hops.push_back({"nginx", SpanKind::kClient, {}, "GET", "/", "127.0.0.1:8080", 118'000'000, 0});
  EXPECT_EQ(Summary(v), "slow: svc-b kernel/runqueue explains 74% of 120.3 ms (usual 20.1 ms)");
  EXPECT_EQ(EvidenceText(v), "svc-b/kernel/runqueue +80.1 ms (95.0 ms vs 14.9 ms)");
  EXPECT_EQ(PathText(v), "nginx SERVER 120.3 ms → nginx CLIENT 118.0 ms");
}

}  // namespace
}  // namespace isotrace::locate

namespace isotrace::locate {
namespace {
// A span seen at a sandbox's edge (gVisor netstack, a microVM) carries its sandbox's
// threads' time: throttling, run-queue and CPU there are the sandbox layer's.
TEST_F(LocateTest, SandboxLevelBreakdownsBlameTheSandboxLayer) {
  auto res = Res("gvisor-app", /*container=*/true);
  uint64_t id = 1;
  auto one = [&](int64_t throttled) {
    Acct a;
    a.oncpu = 2 * kMs;
    a.throttled = throttled;
    a.other = kMs;
    const uint64_t start = now_ + kMs;
    const uint64_t end = start + static_cast<uint64_t>(a.oncpu + a.throttled + a.other);
    Span s = MakeSpan(SpanKind::kServer, id++, 0, start, end, a);
    s.trace_id[1] = static_cast<uint8_t>(id);
    s.trace_id[2] = static_cast<uint8_t>(id >> 8);
    s.edge = true;
    s.breakdown.sandbox_scope = true;
    locator_->Add(res, std::move(s), end);
    now_ = end + 200 * kMs;
    locator_->Tick(now_);
  };
  for (int i = 0; i < 15; i++) one(0);
  ASSERT_TRUE(verdicts_.empty());
  one(40 * kMs);
  ASSERT_EQ(verdicts_.size(), 1u);
  EXPECT_EQ(verdicts_[0].service, "gvisor-app");
  EXPECT_EQ(verdicts_[0].layer, "sandbox");
  EXPECT_EQ(verdicts_[0].cause, "throttling");
}
}  // namespace
}  // namespace isotrace::locate
