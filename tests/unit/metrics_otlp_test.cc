// OTLP metrics: the encoding of a snapshot (temporality, monotonicity, int vs double,
// histogram buckets, resource and start times), and the periodic exporter against an
// in-process MetricsService: ticks, ForceFlush, the final export at Shutdown, retries,
// and an outage that costs no counts (cumulative points).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "exporters/otlp/metrics_exporter.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace isotrace::otlp {
namespace {

using ::testing::HasSubstr;

metrics::Snapshot SampleSnapshot(double requests) {
  metrics::Snapshot snap;
  snap.time_unix_ns = 2000;
  metrics::ResourceMetrics rm;
  auto r = std::make_shared<correlate::Resource>();
  r->attributes = {{"service.name", std::string("api")}, {"host.name", std::string("n1")}};
  rm.resource = r;
  rm.start_unix_ns = 1000;
  metrics::Metric c;
  c.name = "isotrace.http.requests";
  c.unit = "{request}";
  c.type = metrics::MetricType::kCounter;
  metrics::Point cp;
  cp.value = requests;
  cp.attributes = {{"isotrace.status_class", std::string("2xx")}};
  c.points.push_back(cp);
  rm.metrics.push_back(c);
  metrics::Metric d;
  d.name = "isotrace.layer.time";
  d.unit = "s";
  d.type = metrics::MetricType::kCounter;
  d.integer = false;
  metrics::Point dp;
  dp.value = 0.25;
  d.points.push_back(dp);
  rm.metrics.push_back(d);
  metrics::Metric g;
  g.name = "isotrace.export.queue.size";
  g.type = metrics::MetricType::kGauge;
  metrics::Point gp;
  gp.value = 7;
  g.points.push_back(gp);
  rm.metrics.push_back(g);
  metrics::Metric h;
  h.name = "http.server.request.duration";
  h.unit = "s";
  h.type = metrics::MetricType::kHistogram;
  metrics::Point hp;
  hp.histogram.bounds = {0.005, 0.01};
  hp.histogram.counts = {1, 2, 0};
  hp.histogram.count = 3;
  hp.histogram.sum = 0.02;
  hp.histogram.min = 0.004;
  hp.histogram.max = 0.009;
  h.points.push_back(hp);
  rm.metrics.push_back(h);
  snap.resources.push_back(rm);
  return snap;
}

TEST(MetricsEncode, CumulativeSumsGaugesAndHistograms) {
  otlp_collector_metrics::ExportMetricsServiceRequest req;
  ASSERT_TRUE(EncodeMetrics(SampleSnapshot(42), Scope{}, &req).ok());
  ASSERT_EQ(req.resource_metrics_size(), 1);
  const auto& rm = req.resource_metrics(0);
  ASSERT_EQ(rm.resource().attributes_size(), 2);
  EXPECT_EQ(rm.resource().attributes(0).key(), "service.name");
  EXPECT_EQ(rm.resource().attributes(0).value().string_value(), "api");
  ASSERT_EQ(rm.scope_metrics_size(), 1);
  EXPECT_EQ(rm.scope_metrics(0).scope().name(), "isotrace");
  const auto& ms = rm.scope_metrics(0).metrics();
  ASSERT_EQ(ms.size(), 4);

  EXPECT_EQ(ms[0].name(), "isotrace.http.requests");
  EXPECT_EQ(ms[0].unit(), "{request}");
  ASSERT_TRUE(ms[0].has_sum());
  EXPECT_TRUE(ms[0].sum().is_monotonic());
  EXPECT_EQ(ms[0].sum().aggregation_temporality(), otlp_metrics::AGGREGATION_TEMPORALITY_CUMULATIVE);
  const auto& p0 = ms[0].sum().data_points(0);
  EXPECT_EQ(p0.value_case(), otlp_metrics::NumberDataPoint::kAsInt);
  EXPECT_EQ(p0.as_int(), 42);
  EXPECT_EQ(p0.start_time_unix_nano(), 1000u);
  EXPECT_EQ(p0.time_unix_nano(), 2000u);
  EXPECT_EQ(p0.attributes(0).key(), "isotrace.status_class");

  EXPECT_EQ(ms[1].sum().data_points(0).value_case(), otlp_metrics::NumberDataPoint::kAsDouble);
  EXPECT_DOUBLE_EQ(ms[1].sum().data_points(0).as_double(), 0.25);

  ASSERT_TRUE(ms[2].has_gauge());
  EXPECT_EQ(ms[2].gauge().data_points(0).as_int(), 7);
  EXPECT_EQ(ms[2].gauge().data_points(0).start_time_unix_nano(), 0u);  // gauges have none

  ASSERT_TRUE(ms[3].has_histogram());
  EXPECT_EQ(ms[3].histogram().aggregation_temporality(), otlp_metrics::AGGREGATION_TEMPORALITY_CUMULATIVE);
  const auto& hp = ms[3].histogram().data_points(0);
  EXPECT_EQ(hp.count(), 3u);
  EXPECT_DOUBLE_EQ(hp.sum(), 0.02);
  EXPECT_THAT(std::vector<uint64_t>(hp.bucket_counts().begin(), hp.bucket_counts().end()),
              ::testing::ElementsAre(1u, 2u, 0u));
  EXPECT_THAT(std::vector<double>(hp.explicit_bounds().begin(), hp.explicit_bounds().end()),
              ::testing::ElementsAre(0.005, 0.01));
  EXPECT_DOUBLE_EQ(hp.min(), 0.004);
  EXPECT_DOUBLE_EQ(hp.max(), 0.009);
  EXPECT_EQ(CountDataPoints(req), 4);
}

TEST(MetricsEncode, RejectsAnInconsistentHistogram) {
  auto snap = SampleSnapshot(1);
  snap.resources[0].metrics[3].points[0].histogram.count = 4;  // buckets sum to 3
  otlp_collector_metrics::ExportMetricsServiceRequest req;
  auto st = EncodeMetrics(snap, Scope{}, &req);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("http.server.request.duration"));
  EXPECT_EQ(req.resource_metrics_size(), 0);
}

class FakeMetricsService final : public otlp_collector_metrics::MetricsService::Service {
 public:
  grpc::Status Export(grpc::ServerContext*, const otlp_collector_metrics::ExportMetricsServiceRequest* req,
                      otlp_collector_metrics::ExportMetricsServiceResponse*) override {
    std::lock_guard<std::mutex> l(mu);
    ++calls;
    if (calls <= fail_first) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "injected");
    ++ok_calls;
    last_requests = req->resource_metrics(0).scope_metrics(0).metrics(0).sum().data_points(0).as_int();
    cv.notify_all();
    return grpc::Status::OK;
  }
  bool WaitOk(int n, std::chrono::milliseconds t) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, t, [&] { return ok_calls >= n; });
  }
  std::mutex mu;
  std::condition_variable cv;
  int fail_first = 0;
  int calls = 0;
  int ok_calls = 0;
  int64_t last_requests = -1;
};

struct FakeServer {
  FakeServer() {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&svc);
    server = b.BuildAndStart();
  }
  ~FakeServer() {
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server->Wait();
  }
  ExporterOptions Options() const {
    ExporterOptions o;
    o.endpoint_configured = true;
    o.endpoint = *ParseEndpoint("http://127.0.0.1:" + std::to_string(port), true);
    o.timeout = absl::Seconds(2);
    o.retry.max_attempts = 5;
    o.retry.initial_backoff = absl::Milliseconds(10);
    o.retry.max_backoff = absl::Milliseconds(20);
    return o;
  }
  FakeMetricsService svc;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

TEST(MetricsExporter, ExportsEveryIntervalAndOnceMoreAtShutdown) {
  FakeServer fake;
  std::atomic<int> requests{0};
  auto ex = MetricsExporter::Create(fake.Options(), absl::Milliseconds(100),
                                    [&] { return SampleSnapshot(++requests); });
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_TRUE(fake.svc.WaitOk(3, std::chrono::seconds(5)));
  ASSERT_TRUE((*ex)->Shutdown(absl::Now() + absl::Seconds(2)).ok());
  std::lock_guard<std::mutex> l(fake.svc.mu);
  // The final export carries the last collection.
  EXPECT_EQ(fake.svc.last_requests, requests.load());
  auto st = (*ex)->Stats();
  EXPECT_EQ(st.exports, static_cast<uint64_t>(fake.svc.ok_calls));
  EXPECT_EQ(st.points_sent, 4u * st.exports);
  EXPECT_EQ(st.exports_failed, 0u);
}

TEST(MetricsExporter, ForceFlushExportsNowAndRetriesTransientErrors) {
  FakeServer fake;
  fake.svc.fail_first = 2;
  auto ex = MetricsExporter::Create(fake.Options(), absl::Hours(1),
                                    [] { return SampleSnapshot(5); });
  ASSERT_TRUE(ex.ok());
  EXPECT_TRUE((*ex)->ForceFlush(absl::Now() + absl::Seconds(5)));
  auto st = (*ex)->Stats();
  EXPECT_EQ(st.exports, 1u);
  EXPECT_EQ(st.retries, 2u);
  EXPECT_EQ(st.export_failures["UNAVAILABLE"], 2u);
  EXPECT_EQ(fake.svc.last_requests, 5);
}

TEST(MetricsExporter, AnOutageLosesNoCountsBecausePointsAreCumulative) {
  FakeServer fake;
  fake.svc.fail_first = 1 << 30;  // down until told otherwise
  std::atomic<int> n{0};
  auto o = fake.Options();
  o.retry.max_attempts = 2;
  auto ex = MetricsExporter::Create(o, absl::Milliseconds(100), [&] { return SampleSnapshot(++n); });
  ASSERT_TRUE(ex.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(450));
  const int during_outage = n.load();
  EXPECT_GE(during_outage, 3);
  EXPECT_GT((*ex)->Stats().exports_failed, 0u);
  EXPECT_EQ((*ex)->Stats().exports, 0u);
  {
    std::lock_guard<std::mutex> l(fake.svc.mu);
    fake.svc.fail_first = 0;
  }
  ASSERT_TRUE(fake.svc.WaitOk(1, std::chrono::seconds(5)));
  {
    // The first export after the outage carries the running total, outage included.
    std::lock_guard<std::mutex> l(fake.svc.mu);
    EXPECT_GT(fake.svc.last_requests, during_outage);
  }
  ASSERT_TRUE((*ex)->Shutdown(absl::Now() + absl::Seconds(2)).ok());
}

TEST(MetricsExporter, ShutdownKeepsItsDeadlineWithNobodyListening) {
  int port;
  {
    FakeServer gone;
    port = gone.port;
  }
  ExporterOptions o;
  o.endpoint_configured = true;
  o.endpoint = *ParseEndpoint("http://127.0.0.1:" + std::to_string(port), true);
  o.timeout = absl::Seconds(10);
  auto ex = MetricsExporter::Create(o, absl::Hours(1), [] { return SampleSnapshot(1); });
  ASSERT_TRUE(ex.ok());
  auto t0 = absl::Now();
  (*ex)->Shutdown(absl::Now() + absl::Milliseconds(300)).IgnoreError();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(2));
  EXPECT_EQ((*ex)->Stats().exports, 0u);
}

}  // namespace
}  // namespace isotrace::otlp
