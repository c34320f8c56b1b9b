// The OTLP exporters against in-process gRPC fakes of the Collector's TraceService and
// LogsService: batching, counters, overflow, retries, partial success, shutdown, and the
// accounting invariant accepted == sent + dropped.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "exporters/otlp/exporter.h"
#include "opentelemetry/proto/collector/logs/v1/logs_service.grpc.pb.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace isotrace::otlp {
namespace {

using Clock = std::chrono::steady_clock;

// Behaviour knobs and a record of what arrived; shared by the trace and logs fakes.
struct FakeState {
  std::mutex mu;
  std::condition_variable cv;
  // Knobs.
  int fail_first = 0;  // fail this many calls with fail_code
  int fail_every = 0;  // then fail every Nth call (0 = never)
  grpc::StatusCode fail_code = grpc::StatusCode::UNAVAILABLE;
  int64_t reject_per_call = 0;  // partial_success rejections per successful call
  std::chrono::milliseconds delay{0};
  bool gate_closed = false;  // hold every call until opened
  // Record.
  int calls = 0;
  int ok_calls = 0;
  uint64_t items = 0;               // items in calls answered OK (accepted or rejected)
  std::vector<size_t> batch_sizes;  // per OK call
  std::vector<std::string> auth_headers;
  std::vector<std::string> service_names;  // resource service.name per ResourceX

  void OpenGate() {
    std::lock_guard<std::mutex> l(mu);
    gate_closed = false;
    cv.notify_all();
  }

  // Runs the shared part of a call; returns the status to answer and, when OK, how many
  // items to reject.
  grpc::Status Handle(grpc::ServerContext* ctx, size_t n, int64_t* reject) {
    std::unique_lock<std::mutex> l(mu);
    const int call = ++calls;
    auto md = ctx->client_metadata().find("authorization");
    auth_headers.emplace_back(md == ctx->client_metadata().end()
                                  ? std::string()
                                  : std::string(md->second.data(), md->second.size()));
    cv.wait(l, [&] { return !gate_closed || ctx->IsCancelled(); });
    if (delay.count() > 0) {
      l.unlock();
      std::this_thread::sleep_for(delay);
      l.lock();
    }
    if (call <= fail_first || (fail_every > 0 && call % fail_every == 0)) {
      return grpc::Status(fail_code, "injected failure");
    }
    ++ok_calls;
    items += n;
    batch_sizes.push_back(n);
    *reject = std::min<int64_t>(reject_per_call, static_cast<int64_t>(n));
    cv.notify_all();
    return grpc::Status::OK;
  }

  bool WaitItems(uint64_t n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, timeout, [&] { return items >= n; });
  }
};

class FakeTraceService final : public otlp_collector_trace::TraceService::Service {
 public:
  explicit FakeTraceService(FakeState* s) : s_(s) {}
  grpc::Status Export(grpc::ServerContext* ctx,
                      const otlp_collector_trace::ExportTraceServiceRequest* req,
                      otlp_collector_trace::ExportTraceServiceResponse* resp) override {
    size_t n = 0;
    std::vector<std::string> names;
    for (const auto& rs : req->resource_spans()) {
      for (const auto& kv : rs.resource().attributes()) {
        if (kv.key() == "service.name") names.push_back(kv.value().string_value());
      }
      for (const auto& ss : rs.scope_spans()) n += ss.spans_size();
    }
    int64_t reject = 0;
    auto st = s_->Handle(ctx, n, &reject);
    if (st.ok()) {
      std::lock_guard<std::mutex> l(s_->mu);
      s_->service_names.insert(s_->service_names.end(), names.begin(), names.end());
      if (reject > 0) {
        resp->mutable_partial_success()->set_rejected_spans(reject);
        resp->mutable_partial_success()->set_error_message("too old");
      }
    }
    return st;
  }

 private:
  FakeState* s_;
};

class FakeLogsService final : public otlp_collector_logs::LogsService::Service {
 public:
  explicit FakeLogsService(FakeState* s) : s_(s) {}
  grpc::Status Export(grpc::ServerContext* ctx,
                      const otlp_collector_logs::ExportLogsServiceRequest* req,
                      otlp_collector_logs::ExportLogsServiceResponse* resp) override {
    size_t n = 0;
    for (const auto& rl : req->resource_logs()) {
      for (const auto& sl : rl.scope_logs()) {
        n += sl.log_records_size();
        for (const auto& lr : sl.log_records()) {
          std::lock_guard<std::mutex> l(s_->mu);
          observed.push_back(lr.observed_time_unix_nano());
        }
      }
    }
    int64_t reject = 0;
    return s_->Handle(ctx, n, &reject);
  }
  std::vector<uint64_t> observed;

 private:
  FakeState* s_;
};

// A localhost gRPC server hosting both fakes.
class FakeCollector {
 public:
  FakeCollector() : traces_(&state), logs_(&state) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&traces_);
    b.RegisterService(&logs_);
    server_ = b.BuildAndStart();
  }
  ~FakeCollector() { Stop(); }
  void Stop() {
    if (!server_) return;
    state.OpenGate();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
    server_.reset();
  }
  int port() const { return port_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  FakeState state;
  FakeLogsService& logs() { return logs_; }

 private:
  FakeTraceService traces_;
  FakeLogsService logs_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

ExporterOptions TestOptions(const std::string& endpoint) {
  auto ep = ParseEndpoint(endpoint, true);
  EXPECT_TRUE(ep.ok()) << ep.status();
  ExporterOptions o;
  o.endpoint_configured = true;
  o.endpoint = *ep;
  o.max_queue_size = 100;
  o.max_batch_size = 10;
  o.batch_timeout = absl::Milliseconds(50);
  o.timeout = absl::Seconds(5);
  o.retry.max_attempts = 3;
  o.retry.initial_backoff = absl::Milliseconds(10);
  o.retry.max_backoff = absl::Milliseconds(40);
  return o;
}

correlate::Span MakeSpan(uint32_t i) {
  correlate::Span s;
  for (size_t k = 0; k < s.trace_id.size(); ++k) s.trace_id[k] = static_cast<uint8_t>(k + 1);
  s.span_id[0] = 1;
  s.span_id[4] = static_cast<uint8_t>(i);
  s.span_id[5] = static_cast<uint8_t>(i >> 8);
  s.span_id[6] = static_cast<uint8_t>(i >> 16);
  s.method = "GET";
  s.path = "/x";
  s.status_code = 200;
  s.start_unix_ns = 1'700'000'000'000'000'000ULL + i;
  s.end_unix_ns = s.start_unix_ns + 1000;
  return s;
}

std::shared_ptr<const correlate::Resource> Res(const std::string& name) {
  auto r = std::make_shared<correlate::Resource>();
  r->attributes = {{"service.name", name}};
  return r;
}

std::unique_ptr<TraceExporter> MakeExporter(const ExporterOptions& o) {
  auto e = TraceExporter::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

void ExpectBalanced(const ExportStats& s) {
  EXPECT_EQ(s.accepted, s.sent + s.dropped_total())
      << "sent=" << s.sent << " dropped=" << s.dropped_total();
  EXPECT_EQ(s.queue_size, 0u);
  EXPECT_EQ(s.in_flight, 0u);
}

absl::Time In(absl::Duration d) { return absl::Now() + d; }

TEST(OtlpExporter, BatchesArriveAndCountsAddUp) {
  FakeCollector fake;
  auto o = TestOptions(fake.endpoint());
  o.headers = {{"authorization", "Bearer t0k"}};
  auto exp = MakeExporter(o);
  auto web = Res("web");
  auto db = Res("db");
  for (uint32_t i = 0; i < 25; ++i) ASSERT_TRUE(exp->Enqueue(i % 5 == 0 ? db : web, MakeSpan(i)));
  ASSERT_TRUE(exp->Flush(In(absl::Seconds(10))));

  auto s = exp->Stats();
  EXPECT_EQ(s.accepted, 25u);
  EXPECT_EQ(s.sent, 25u);
  EXPECT_EQ(s.dropped_total(), 0u);
  EXPECT_EQ(s.dropped.size(), static_cast<size_t>(DropReason::kCount)) << "every reason listed";
  EXPECT_GE(s.batches_sent, 3u);
  ExpectBalanced(s);
  {
    std::lock_guard<std::mutex> l(fake.state.mu);
    EXPECT_EQ(fake.state.items, 25u);
    for (size_t n : fake.state.batch_sizes) EXPECT_LE(n, 10u);
    EXPECT_THAT(fake.state.auth_headers, ::testing::Each(std::string("Bearer t0k")));
    EXPECT_THAT(fake.state.service_names, ::testing::Contains("db"));
    EXPECT_THAT(fake.state.service_names, ::testing::Contains("web"));
  }
  EXPECT_TRUE(exp->Shutdown(In(absl::Seconds(5))).ok());
}

TEST(OtlpExporter, PartialBatchLeavesAfterTheBatchTimeout) {
  FakeCollector fake;
  auto o = TestOptions(fake.endpoint());
  o.batch_timeout = absl::Milliseconds(100);
  auto exp = MakeExporter(o);
  const auto t0 = Clock::now();
  for (uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(exp->Enqueue(Res("web"), MakeSpan(i)));
  ASSERT_TRUE(fake.state.WaitItems(3, std::chrono::seconds(5)));
  const auto waited = Clock::now() - t0;
  EXPECT_GE(waited, std::chrono::milliseconds(80)) << "sent before the batch timer";
  EXPECT_LT(waited, std::chrono::seconds(3));
  std::lock_guard<std::mutex> l(fake.state.mu);
  EXPECT_EQ(fake.state.batch_sizes, std::vector<size_t>{3});
}

TEST(OtlpExporter, FullBatchDoesNotWaitForTheTimer) {
  FakeCollector fake;
  auto o = TestOptions(fake.endpoint());
  o.batch_timeout = absl::Seconds(30);
  auto exp = MakeExporter(o);
  for (uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(exp->Enqueue(Res("web"), MakeSpan(i)));
  EXPECT_TRUE(fake.state.WaitItems(10, std::chrono::seconds(5)));
}

TEST(OtlpExporter, QueueOverflowIsCountedAndEnqueueNeverBlocks) {
  FakeCollector fake;
  fake.state.gate_closed = true;  // the collector hangs
  auto o = TestOptions(fake.endpoint());
  o.max_queue_size = 20;
  o.max_batch_size = 5;
  auto exp = MakeExporter(o);

  auto worst = std::chrono::nanoseconds(0);
  int taken = 0;
  for (uint32_t i = 0; i < 200; ++i) {
    const auto t = Clock::now();
    taken += exp->Enqueue(Res("web"), MakeSpan(i)) ? 1 : 0;
    worst = std::max(worst, Clock::now() - t);
    if (i == 10) std::this_thread::sleep_for(std::chrono::milliseconds(100));  // first batch leaves
  }
  EXPECT_LT(worst, std::chrono::milliseconds(50)) << "Enqueue blocked";
  EXPECT_LE(taken, 25);  // 20 queued + at most one 5-span batch in flight
  auto s = exp->Stats();
  EXPECT_EQ(s.accepted, 200u);
  EXPECT_EQ(s.dropped.at("queue_full"), 200u - taken);
  EXPECT_EQ(s.queue_size, 20u);

  fake.state.OpenGate();
  ASSERT_TRUE(exp->Flush(In(absl::Seconds(10))));
  s = exp->Stats();
  EXPECT_EQ(s.sent, static_cast<uint64_t>(taken));
  ExpectBalanced(s);
}

TEST(OtlpExporter, ShutdownFlushesWhatItHolds) {
  FakeCollector fake;
  auto o = TestOptions(fake.endpoint());
  o.batch_timeout = absl::Seconds(30);  // only Shutdown can make these leave
  auto exp = MakeExporter(o);
  for (uint32_t i = 0; i < 7; ++i) ASSERT_TRUE(exp->Enqueue(Res("web"), MakeSpan(i)));
  const auto t0 = Clock::now();
  EXPECT_TRUE(exp->Shutdown(In(absl::Seconds(5))).ok());
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
  auto s = exp->Stats();
  EXPECT_EQ(s.sent, 7u);
  ExpectBalanced(s);
  EXPECT_EQ(fake.state.items, 7u);

  // Closed for business afterwards, and still balanced.
  EXPECT_FALSE(exp->Enqueue(Res("web"), MakeSpan(99)));
  s = exp->Stats();
  EXPECT_EQ(s.dropped.at("shutdown"), 1u);
  ExpectBalanced(s);
  EXPECT_TRUE(exp->Shutdown(In(absl::Seconds(1))).ok()) << "idempotent";
}

TEST(OtlpExporter, ServerDownRetriesThenDrops) {
  int dead_port;
  {
    FakeCollector gone;
    dead_port = gone.port();
  }
  auto o = TestOptions("http://127.0.0.1:" + std::to_string(dead_port));
  auto exp = MakeExporter(o);
  const auto t0 = Clock::now();
  for (uint32_t i = 0; i < 4; ++i) ASSERT_TRUE(exp->Enqueue(Res("web"), MakeSpan(i)));
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(50));
  ASSERT_TRUE(exp->Flush(In(absl::Seconds(20))));
  auto s = exp->Stats();
  EXPECT_EQ(s.sent, 0u);
  EXPECT_EQ(s.dropped.at("retries_exhausted"), 4u);
  EXPECT_EQ(s.export_failures.at("UNAVAILABLE"), 3u) << "max_attempts = 3";
  EXPECT_EQ(s.retries, 2u);
  ExpectBalanced(s);
}

TEST(OtlpExporter, TransientFailuresAreRetriedToSuccess) {
  FakeCollector fake;
  fake.state.fail_first = 2;
  auto exp = MakeExporter(TestOptions(fake.endpoint()));
  for (uint32_t i = 0; i < 5; ++i) ASSERT_TRUE(exp->Enqueue(Res("web"), MakeSpan(i)));
  ASSERT_TRUE(exp->Flush(In(absl::Seconds(10))));
  auto s = exp->Stats();
  EXPECT_EQ(s.sent, 5u);
  EXPECT_EQ(s.export_failures.at("UNAVAILABLE"), 2u);
  EXPECT_EQ(s.retries, 2u);
  ExpectBalanced(s);
}

TEST(OtlpExporter, NonRetryableErrorDropsAtOnce) {
  FakeCollector fake;
  fake.state.fail_first = 1000;
  fake.state.fail_code = grpc::StatusCode::INVALID_ARGUMENT;
  auto exp = MakeExporter(TestOptions(fake.endpoint()));
  for (uint32_t i = 0; i < 5; ++i) ASSERT_TRUE(exp->Enqueue(Res("web"), MakeSpan(i)));
  ASSERT_TRUE(exp->Flush(In(absl::Seconds(10))));
  auto s = exp->Stats();
  EXPECT_EQ(s.dropped.at("non_retryable"), 5u);
  EXPECT_EQ(s.export_failures.at("INVALID_ARGUMENT"), 1u);
  EXPECT_EQ(s.retries, 0u);
  ExpectBalanced(s);
}

TEST(OtlpExporter, SlowReceiverHitsTheDeadline) {
  FakeCollector fake;
  fake.state.delay = std::chrono::milliseconds(400);
  auto o = TestOptions(fake.endpoint());
  o.timeout = absl::Milliseconds(100);
  o.retry.max_attempts = 2;
  auto exp = MakeExporter(o);
  ASSERT_TRUE(exp->Enqueue(Res("web"), MakeSpan(1)));
  ASSERT_TRUE(exp->Flush(In(absl::Seconds(10))));
  auto s = exp->Stats();
  EXPECT_EQ(s.export_failures.at("DEADLINE_EXCEEDED"), 2u);
  EXPECT_EQ(s.dropped.at("retries_exhausted"), 1u);
  ExpectBalanced(s);
}

TEST(OtlpExporter, PartialSuccessRejectionsAreDropped) {
  FakeCollector fake;
  fake.state.reject_per_call = 2;
  auto o = TestOptions(fake.endpoint());
  o.batch_timeout = absl::Seconds(30);
  auto exp = MakeExporter(o);
  for (uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(exp->Enqueue(Res("web"), MakeSpan(i)));
  ASSERT_TRUE(exp->Flush(In(absl::Seconds(10))));
  auto s = exp->Stats();
  EXPECT_EQ(s.sent, 8u);
  EXPECT_EQ(s.dropped.at("rejected"), 2u);
  ExpectBalanced(s);
}

TEST(OtlpExporter, ShutdownDeadlineCutsAHungExport) {
  FakeCollector fake;
  fake.state.gate_closed = true;
  auto o = TestOptions(fake.endpoint());
  o.timeout = absl::Seconds(60);
  auto exp = MakeExporter(o);
  for (uint32_t i = 0; i < 15; ++i) ASSERT_TRUE(exp->Enqueue(Res("web"), MakeSpan(i)));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // first batch is in flight
  const auto t0 = Clock::now();
  auto st = exp->Shutdown(In(absl::Milliseconds(300)));
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  auto s = exp->Stats();
  EXPECT_EQ(s.sent, 0u);
  EXPECT_EQ(s.dropped.at("shutdown"), 15u);
  ExpectBalanced(s);
}

TEST(OtlpExporter, InvalidSpansAreRejectedAtTheDoor) {
  FakeCollector fake;
  auto exp = MakeExporter(TestOptions(fake.endpoint()));
  auto bad = MakeSpan(1);
  bad.trace_id = {};
  EXPECT_FALSE(exp->Enqueue(Res("web"), bad));
  EXPECT_TRUE(exp->Enqueue(nullptr, MakeSpan(2))) << "a span without resource is still valid";
  ASSERT_TRUE(exp->Flush(In(absl::Seconds(10))));
  auto s = exp->Stats();
  EXPECT_EQ(s.dropped.at("invalid"), 1u);
  EXPECT_EQ(s.sent, 1u);
  ExpectBalanced(s);
}

// The accounting invariant under concurrency, overflow, flaky answers and rejections.
TEST(OtlpExporter, AcceptedEqualsSentPlusDroppedUnderLoad) {
  FakeCollector fake;
  fake.state.fail_every = 3;
  fake.state.reject_per_call = 1;
  auto o = TestOptions(fake.endpoint());
  o.max_queue_size = 64;
  o.max_batch_size = 16;
  o.batch_timeout = absl::Milliseconds(5);
  o.retry.max_attempts = 2;
  o.retry.initial_backoff = absl::Milliseconds(1);
  o.retry.max_backoff = absl::Milliseconds(2);
  auto exp = MakeExporter(o);
  auto res = Res("web");
  std::vector<std::thread> producers;
  for (int t = 0; t < 4; ++t) {
    producers.emplace_back([&, t] {
      for (uint32_t i = 0; i < 2500; ++i) {
        exp->Enqueue(res, MakeSpan(static_cast<uint32_t>(t) * 100000 + i));
        if (i % 100 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  for (auto& p : producers) p.join();
  ASSERT_TRUE(exp->Shutdown(In(absl::Seconds(20))).ok());
  auto s = exp->Stats();
  EXPECT_EQ(s.accepted, 10000u);
  ExpectBalanced(s);
  EXPECT_GT(s.sent, 0u);
  // What the collector took in is exactly what we count as sent plus what it rejected.
  EXPECT_EQ(fake.state.items, s.sent + s.dropped.at("rejected"));
}

TEST(OtlpLogsExporter, SharesTheMechanics) {
  FakeCollector fake;
  auto exp = LogsExporter::Create(TestOptions(fake.endpoint()));
  ASSERT_TRUE(exp.ok()) << exp.status();
  const uint64_t before = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  for (int i = 0; i < 3; ++i) {
    LogRecord r;
    r.body = "verdict " + std::to_string(i);
    r.trace_id[0] = 1;
    r.span_id[0] = 2;
    ASSERT_TRUE((*exp)->Enqueue(Res("web"), r));
  }
  ASSERT_TRUE((*exp)->Shutdown(In(absl::Seconds(5))).ok());
  auto s = (*exp)->Stats();
  EXPECT_EQ(s.sent, 3u);
  ExpectBalanced(s);
  std::lock_guard<std::mutex> l(fake.state.mu);
  ASSERT_EQ(fake.logs().observed.size(), 3u);
  EXPECT_GE(fake.logs().observed[0], before) << "observed time stamped at Enqueue";
}

TEST(OtlpExporter, RejectsBadOptions) {
  auto o = TestOptions("http://127.0.0.1:1");
  o.max_queue_size = 0;
  EXPECT_FALSE(TraceExporter::Create(o).ok());
  o = TestOptions("http://127.0.0.1:1");
  o.retry.max_attempts = 0;
  EXPECT_FALSE(TraceExporter::Create(o).ok());
}

}  // namespace
}  // namespace isotrace::otlp
