// The metrics aggregator on synthetic spans with an injected clock: exact histogram
// buckets and counts, workloads merged across processes, the vertical breakdown and
// incidents, the `top` window (rates, percentiles, shares, verdict), and the bounds
// (workload eviction, series overflow).

#include <cmath>
#include <map>
#include <memory>
#include <string>

#include "daemon/metrics/aggregator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace isotrace::metrics {
namespace {

constexpr uint64_t kSec = 1000000000ull;
constexpr uint64_t kT0 = 1'700'000'000ull * kSec;  // a whole second

struct Fixture {
  uint64_t now = kT0 + kSec / 2;
  Aggregator agg;
  explicit Fixture(AggregatorOptions o = {})
      : agg([&] {
          o.now_unix_ns = [this] { return now; };
          o.process_stats = false;
          return o;
        }()) {}
};

std::shared_ptr<const correlate::Resource> Res(const std::string& service, int64_t pid,
                                               const std::string& stack = "") {
  auto r = std::make_shared<correlate::Resource>();
  r->attributes = {{"service.name", service},
                   {"host.name", std::string("node-1")},
                   {"process.pid", pid},
                   {"process.executable.name", std::string("python3")}};
  if (!stack.empty()) r->attributes.push_back({"isotrace.stack", stack});
  return r;
}

correlate::Span MakeSpan(uint64_t dur_ns, int status = 200, uint32_t tgid = 10) {
  correlate::Span s;
  s.trace_id[0] = 0xab;
  s.trace_id[15] = static_cast<uint8_t>(dur_ns & 0xff);
  s.span_id[0] = 1;
  s.kind = correlate::SpanKind::kServer;
  s.method = "GET";
  s.path = "/";
  s.status_code = status;
  if (status >= 500) s.error_type = std::to_string(status);
  s.start_unix_ns = kT0;
  s.end_unix_ns = kT0 + dur_ns;
  s.process.tgid = tgid;
  return s;
}

const ResourceMetrics* FindResource(const Snapshot& snap, const std::string& service) {
  for (const auto& rm : snap.resources)
    for (const auto& a : rm.resource->attributes)
      if (a.key == "service.name" && std::get<std::string>(a.value) == service) return &rm;
  return nullptr;
}

const Metric* FindMetric(const ResourceMetrics& rm, std::string_view name) {
  for (const auto& m : rm.metrics)
    if (m.name == name) return &m;
  return nullptr;
}

std::string AttrString(const Point& p, const std::string& key) {
  for (const auto& a : p.attributes)
    if (a.key == key) {
      if (auto* s = std::get_if<std::string>(&a.value)) return *s;
      if (auto* i = std::get_if<int64_t>(&a.value)) return std::to_string(*i);
    }
  return "";
}

TEST(Aggregator, HistogramBucketsFollowSemconvBoundsExactly) {
  Fixture f;
  auto r = Res("api", 1);
  // 3 ms → (0, 0.005]; 5 ms exactly → same bucket (upper bound inclusive); 20 ms →
  // (0.01, 0.025]; 12 s → above the last bound.
  for (uint64_t ms : {3, 5, 20, 12000}) f.agg.Record(r, MakeSpan(ms * 1000000));
  f.agg.Record(r, MakeSpan(30000000, 404));
  Snapshot snap = f.agg.Collect();
  const auto* rm = FindResource(snap, "api");
  ASSERT_NE(rm, nullptr);
  const auto* h = FindMetric(*rm, kHttpServerDuration);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->unit, "s");
  EXPECT_EQ(h->type, MetricType::kHistogram);
  ASSERT_EQ(h->points.size(), 2u);  // (GET, 200) and (GET, 404)
  const Point* ok = nullptr;
  for (const auto& p : h->points)
    if (AttrString(p, "http.response.status_code") == "200") ok = &p;
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(AttrString(*ok, "http.request.method"), "GET");
  const auto& hv = ok->histogram;
  ASSERT_EQ(hv.bounds.size(), kHttpDurationBounds.size());
  ASSERT_EQ(hv.counts.size(), kHttpDurationBounds.size() + 1);
  EXPECT_EQ(hv.counts[0], 2u);   // 3 ms, 5 ms
  EXPECT_EQ(hv.counts[2], 1u);   // 20 ms
  EXPECT_EQ(hv.counts[14], 1u);  // 12 s
  EXPECT_EQ(hv.count, 4u);
  EXPECT_NEAR(hv.sum, 0.003 + 0.005 + 0.020 + 12.0, 1e-9);
  EXPECT_DOUBLE_EQ(hv.min, 0.003);
  EXPECT_DOUBLE_EQ(hv.max, 12.0);
  EXPECT_EQ(rm->start_unix_ns, f.now);

  const auto* req = FindMetric(*rm, kHttpRequests);
  ASSERT_NE(req, nullptr);
  std::map<std::string, double> by_class;
  for (const auto& p : req->points) by_class[AttrString(p, "isotrace.status_class")] += p.value;
  EXPECT_EQ(by_class["2xx"], 4);
  EXPECT_EQ(by_class["4xx"], 1);
  EXPECT_EQ(by_class.size(), 2u);
}

TEST(Aggregator, ProcessesOfOneServiceAreOneWorkloadWithoutPid) {
  Fixture f;
  f.agg.Record(Res("web", 100), MakeSpan(1000000, 200, 100));
  f.agg.Record(Res("web", 101), MakeSpan(1000000, 200, 101));
  f.agg.Record(Res("db", 200), MakeSpan(1000000, 200, 200));
  EXPECT_EQ(f.agg.workloads(), 2u);
  Snapshot snap = f.agg.Collect();
  const auto* web = FindResource(snap, "web");
  ASSERT_NE(web, nullptr);
  for (const auto& a : web->resource->attributes) EXPECT_NE(a.key, "process.pid");
  // Everything else of the spans' resource is kept, for joins.
  bool host = false, exe = false;
  for (const auto& a : web->resource->attributes) {
    host |= a.key == "host.name";
    exe |= a.key == "process.executable.name";
  }
  EXPECT_TRUE(host && exe);
  EXPECT_EQ(FindMetric(*web, kHttpServerDuration)->points[0].histogram.count, 2u);
  f.now += 3 * kSec;
  TopView top = f.agg.Top(5);
  ASSERT_EQ(top.rows.size(), 2u);
  EXPECT_EQ(top.rows[1].service, "web");
  EXPECT_THAT(top.rows[1].pids, ::testing::ElementsAre(101u, 100u));
}

TEST(Aggregator, LayerTimeAndIncidentsFromTheSpansBreakdownAndIncidents) {
  Fixture f;
  auto s = MakeSpan(10000000);
  s.breakdown.oncpu_ns = 4000000;
  s.breakdown.runq_ns = 3000000;
  s.breakdown.throttled_ns = 1000000;
  s.net.retransmits = 2;
  // The retransmit incidents repeat what the count holds; the reset and OOM do not.
  auto incident = [](correlate::IncidentKind k) {
    correlate::Incident e;
    e.kind = k;
    e.time_unix_ns = kT0;
    return e;
  };
  s.incidents.push_back(incident(correlate::IncidentKind::kTcpRetransmit));
  s.incidents.push_back(incident(correlate::IncidentKind::kTcpReset));
  s.incidents.push_back(incident(correlate::IncidentKind::kOomKill));
  f.agg.Record(Res("api", 1), s);
  Snapshot snap = f.agg.Collect();
  const auto* rm = FindResource(snap, "api");
  ASSERT_NE(rm, nullptr);
  const auto* lt = FindMetric(*rm, kLayerTime);
  ASSERT_NE(lt, nullptr);
  EXPECT_FALSE(lt->integer);
  std::map<std::string, double> by_cause;
  for (const auto& p : lt->points)
    by_cause[AttrString(p, "isotrace.layer") + "/" + AttrString(p, "isotrace.cause")] = p.value;
  EXPECT_DOUBLE_EQ(by_cause["app/cpu"], 0.004);
  EXPECT_DOUBLE_EQ(by_cause["kernel/runqueue"], 0.003);
  EXPECT_DOUBLE_EQ(by_cause["container/throttling"], 0.001);
  EXPECT_EQ(by_cause.count("vm/steal"), 0u);  // never carried: no series
  const auto* inc = FindMetric(*rm, kKernelIncidents);
  ASSERT_NE(inc, nullptr);
  std::map<std::string, double> by_incident;
  for (const auto& p : inc->points) by_incident[AttrString(p, "isotrace.incident")] = p.value;
  EXPECT_EQ(by_incident["tcp_retransmit"], 2);
  EXPECT_EQ(by_incident["tcp_reset"], 1);
  EXPECT_EQ(by_incident["oom_kill"], 1);
  EXPECT_EQ(by_incident["throttling"], 0);
}

TEST(Aggregator, TopWindowRatesPercentilesSharesAndVerdict) {
  Fixture f;
  auto r = Res("api", 1, "vm:kvm/container:runc");
  f.now = kT0 + 100 * kSec + kSec / 2;  // inside second 100
  // 98 fast requests (1 ms), 2 slow ones (100 ms, one a 503), all in second 100.
  for (int i = 0; i < 98; ++i) f.agg.Record(r, MakeSpan(1000000));
  auto slow = MakeSpan(100000000);
  slow.trace_id[1] = 0x77;
  slow.breakdown.oncpu_ns = 20000000;
  slow.breakdown.runq_ns = 60000000;
  slow.verdict = correlate::SpanVerdict{"", "kernel", "runqueue", 0.6, "slow"};
  f.agg.Record(r, slow);
  f.agg.Record(r, MakeSpan(100000000, 503));

  // Still inside second 100: the window holds whole seconds only.
  TopView early = f.agg.Top(5);
  ASSERT_EQ(early.rows.size(), 1u);
  EXPECT_EQ(early.rows[0].requests, 0u);

  f.now = kT0 + 105 * kSec + kSec / 4;  // the window is seconds 100..104
  TopView top = f.agg.Top(5);
  ASSERT_EQ(top.rows.size(), 1u);
  const TopRow& row = top.rows[0];
  EXPECT_EQ(row.service, "api");
  EXPECT_EQ(row.stack, "vm:kvm/container:runc");
  EXPECT_EQ(row.requests, 100u);
  EXPECT_EQ(row.errors, 1u);
  EXPECT_DOUBLE_EQ(row.requests_per_s, 20.0);
  EXPECT_DOUBLE_EQ(row.error_ratio, 0.01);
  EXPECT_NEAR(row.p50_s, 0.001, 0.001 * 0.07);  // within the bucket's resolution
  EXPECT_NEAR(row.p99_s, 0.100, 0.100 * 0.07);
  // Shares: only the slow span carried a breakdown: 20 of its 100 ms on CPU, 60 queued.
  ASSERT_TRUE(row.shares[0].has_value());
  EXPECT_DOUBLE_EQ(*row.shares[0], 0.2);
  ASSERT_TRUE(row.shares[1].has_value());
  EXPECT_DOUBLE_EQ(*row.shares[1], 0.6);
  EXPECT_FALSE(row.shares[2].has_value());  // THROT never measured: "-", not 0
  EXPECT_FALSE(row.retransmits_per_s.has_value());
  EXPECT_EQ(row.verdict_layer, "kernel");
  EXPECT_EQ(row.verdict_cause, "runqueue");
  ASSERT_TRUE(row.verdict_share.has_value());
  EXPECT_DOUBLE_EQ(*row.verdict_share, 0.6);
  EXPECT_DOUBLE_EQ(row.slowest_s, 0.1);
  EXPECT_EQ(row.total_requests, 100u);
  EXPECT_EQ(row.total_errors, 1u);

  // A 1 s window ending before second 100's data sees nothing; the totals stay.
  f.now = kT0 + 107 * kSec;
  TopView later = f.agg.Top(1);
  ASSERT_EQ(later.rows.size(), 1u);
  EXPECT_EQ(later.rows[0].requests, 0u);
  EXPECT_EQ(later.rows[0].total_requests, 100u);

  // A minute after its last request, the workload leaves the table (not the metrics).
  f.now = kT0 + 200 * kSec;
  EXPECT_TRUE(f.agg.Top(5).rows.empty());
  EXPECT_NE(FindResource(f.agg.Collect(), "api"), nullptr);
}

TEST(Aggregator, ClientSpansAreMetricsButNotTopRows) {
  Fixture f;
  auto s = MakeSpan(2000000);
  s.kind = correlate::SpanKind::kClient;
  f.agg.Record(Res("caller", 1), s);
  Snapshot snap = f.agg.Collect();
  const auto* rm = FindResource(snap, "caller");
  ASSERT_NE(rm, nullptr);
  EXPECT_EQ(FindMetric(*rm, kHttpServerDuration), nullptr);
  ASSERT_NE(FindMetric(*rm, kHttpClientDuration), nullptr);
  f.now += 2 * kSec;
  EXPECT_TRUE(f.agg.Top(5).rows.empty());
}

TEST(Aggregator, EvictsTheLeastRecentlySeenWorkload) {
  AggregatorOptions o;
  o.max_workloads = 2;
  Fixture f(o);
  f.agg.Record(Res("a", 1), MakeSpan(1000));
  f.now += kSec;
  f.agg.Record(Res("b", 2), MakeSpan(1000));
  f.now += kSec;
  f.agg.Record(Res("a", 1), MakeSpan(1000));  // a is now the most recent
  f.now += kSec;
  f.agg.Record(Res("c", 3), MakeSpan(1000));  // evicts b
  EXPECT_EQ(f.agg.workloads(), 2u);
  Snapshot snap = f.agg.Collect();
  EXPECT_NE(FindResource(snap, "a"), nullptr);
  EXPECT_EQ(FindResource(snap, "b"), nullptr);
  EXPECT_NE(FindResource(snap, "c"), nullptr);
  const auto* self = FindResource(snap, "isotraced");
  ASSERT_NE(self, nullptr);
  const auto* ev = FindMetric(*self, kWorkloadsEvicted);
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->points[0].value, 1);
}

TEST(Aggregator, AttributeSetsPastTheLimitFoldIntoOverflow) {
  AggregatorOptions o;
  o.max_series = 4;
  Fixture f(o);
  auto r = Res("api", 1);
  for (int status = 200; status < 210; ++status) f.agg.Record(r, MakeSpan(1000, status));
  Snapshot snap = f.agg.Collect();
  const auto* h = FindMetric(*FindResource(snap, "api"), kHttpServerDuration);
  ASSERT_NE(h, nullptr);
  ASSERT_EQ(h->points.size(), 4u);  // 3 real sets + the overflow set
  uint64_t total = 0;
  bool overflow = false;
  for (const auto& p : h->points) {
    total += p.histogram.count;
    for (const auto& a : p.attributes) overflow |= a.key == "otel.metric.overflow";
  }
  EXPECT_TRUE(overflow);
  EXPECT_EQ(total, 10u);  // nothing lost, only folded
}

TEST(Aggregator, SelfTelemetryFollowsTheContractNames) {
  Fixture f;
  SelfStats s;
  s.probes.push_back({"l7", 1000, 7, {{"ringbuf_full", 5}, {"inflight_full", 2}}});
  s.spans = 90;
  s.exporting = true;
  s.spans_accepted = 90;
  s.spans_sent = 85;
  s.spans_dropped = {{"queue_full", 5}, {"shutdown", 0}};
  s.queue_size = 3;
  f.agg.UpdateSelf(s);
  Snapshot snap = f.agg.Collect();
  const auto* self = FindResource(snap, "isotraced");
  ASSERT_NE(self, nullptr);
  auto value = [&](std::string_view name, const std::string& key = "", const std::string& v = "") {
    const auto* m = FindMetric(*self, name);
    EXPECT_NE(m, nullptr) << name;
    if (m == nullptr) return -1.0;
    for (const auto& p : m->points)
      if (key.empty() || AttrString(p, key) == v) return p.value;
    return -1.0;
  };
  EXPECT_EQ(value(kProbeEvents, "probe", "l7"), 1000);
  EXPECT_EQ(value(kProbeEventsLost, "reason", "ringbuf_full"), 5);
  EXPECT_EQ(value(kProbeEventsLost, "reason", "inflight_full"), 2);
  for (const auto& p : FindMetric(*self, kProbeEventsLost)->points) EXPECT_EQ(AttrString(p, "probe"), "l7");
  EXPECT_EQ(value(kExportSpansSent), 85);
  EXPECT_EQ(value(kExportSpansDropped, "reason", "queue_full"), 5);
  EXPECT_EQ(value(kExportSpansAccepted), 90);
  EXPECT_EQ(value(kExportQueueSize), 3);
  EXPECT_EQ(FindMetric(*self, kExportQueueSize)->type, MetricType::kGauge);
}

TEST(Aggregator, IncidentVocabulary) {
  EXPECT_EQ(IncidentName(Incident::kTcpRetransmit), "tcp_retransmit");
  EXPECT_EQ(IncidentName(Incident::kTcpReset), "tcp_reset");
  EXPECT_EQ(IncidentName(Incident::kOomKill), "oom_kill");
  EXPECT_EQ(IncidentName(Incident::kThrottling), "throttling");
}

}  // namespace
}  // namespace isotrace::metrics
