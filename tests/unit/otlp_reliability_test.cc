// The trace exporter's failure handling per the OTLP/gRPC specification, against an
// in-process fake Collector: which codes are retried, RESOURCE_EXHAUSTED with and without
// google.rpc.RetryInfo (the grpc-status-details-bin trailer), partial success never
// retried, the queue bounded by bytes as well as items, and accepted == sent + dropped.

#include <algorithm>
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
#include "exporters/otlp/retry.h"
#include "google/protobuf/duration.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "isotrace/rpc/status.pb.h"

namespace isotrace::otlp {
namespace {

using Clock = std::chrono::steady_clock;

// Serialized google.rpc.Status carrying a RetryInfo of `delay` (and, first, an unrelated
// detail, which the parser must skip).
std::string StatusDetailsWithRetryInfo(absl::Duration delay, int code = 8) {
  isotrace::rpc::RetryInfo info;
  const int64_t ns = absl::ToInt64Nanoseconds(delay);
  info.mutable_retry_delay()->set_seconds(ns / 1000000000);
  info.mutable_retry_delay()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  isotrace::rpc::Status st;
  st.set_code(code);
  st.set_message("slow down");
  auto* other = st.add_details();
  other->set_type_url("type.googleapis.com/google.rpc.DebugInfo");
  other->set_value("\x0a\x03xyz");
  auto* any = st.add_details();
  any->set_type_url("type.googleapis.com/google.rpc.RetryInfo");
  any->set_value(info.SerializeAsString());
  return st.SerializeAsString();
}

struct Fake {
  std::mutex mu;
  // Answers, in order; after the list runs out every call succeeds.
  std::vector<grpc::Status> script;
  int64_t reject = 0;
  bool hold = false;  // block calls until released
  std::condition_variable cv;
  // Record.
  std::vector<Clock::time_point> call_times;
  uint64_t items_ok = 0;
};

class FakeTraces final : public otlp_collector_trace::TraceService::Service {
 public:
  explicit FakeTraces(Fake* f) : f_(f) {}
  grpc::Status Export(grpc::ServerContext* ctx,
                      const otlp_collector_trace::ExportTraceServiceRequest* req,
                      otlp_collector_trace::ExportTraceServiceResponse* resp) override {
    uint64_t n = 0;
    for (const auto& rs : req->resource_spans())
      for (const auto& ss : rs.scope_spans()) n += ss.spans_size();
    std::unique_lock<std::mutex> l(f_->mu);
    f_->cv.wait(l, [&] { return !f_->hold || ctx->IsCancelled(); });
    const size_t call = f_->call_times.size();
    f_->call_times.push_back(Clock::now());
    if (call < f_->script.size()) return f_->script[call];
    f_->items_ok += n;
    if (f_->reject > 0) {
      resp->mutable_partial_success()->set_rejected_spans(std::min<int64_t>(f_->reject, n));
      resp->mutable_partial_success()->set_error_message("too old");
    }
    return grpc::Status::OK;
  }

 private:
  Fake* f_;
};

class Server {
 public:
  Server() : svc_(&fake) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&svc_);
    server_ = b.BuildAndStart();
  }
  ~Server() {
    {
      std::lock_guard<std::mutex> l(fake.mu);
      fake.hold = false;
      fake.cv.notify_all();
    }
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  size_t calls() {
    std::lock_guard<std::mutex> l(fake.mu);
    return fake.call_times.size();
  }
  Fake fake;

 private:
  FakeTraces svc_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

ExporterOptions Options(const std::string& endpoint) {
  ExporterOptions o;
  o.endpoint_configured = true;
  o.endpoint = *ParseEndpoint(endpoint, true);
  o.max_queue_size = 100;
  o.max_batch_size = 10;
  o.batch_timeout = absl::Milliseconds(20);
  o.timeout = absl::Seconds(5);
  o.retry.max_attempts = 3;
  o.retry.initial_backoff = absl::Milliseconds(5);
  o.retry.max_backoff = absl::Milliseconds(20);
  return o;
}

correlate::Span MakeSpan(uint32_t i, size_t path_bytes = 2) {
  correlate::Span s;
  for (size_t k = 0; k < s.trace_id.size(); ++k) s.trace_id[k] = static_cast<uint8_t>(k + 1);
  s.span_id[0] = 1;
  s.span_id[4] = static_cast<uint8_t>(i);
  s.span_id[5] = static_cast<uint8_t>(i >> 8);
  s.method = "GET";
  s.path = "/" + std::string(path_bytes, 'p');
  s.status_code = 200;
  s.start_unix_ns = 1'700'000'000'000'000'000ULL + i;
  s.end_unix_ns = s.start_unix_ns + 1000;
  return s;
}

std::shared_ptr<const correlate::Resource> Res() {
  auto r = std::make_shared<correlate::Resource>();
  r->attributes = {{"service.name", std::string("web")}};
  return r;
}

void ExpectBalanced(const ExportStats& s) {
  EXPECT_EQ(s.accepted, s.sent + s.dropped_total())
      << "sent=" << s.sent << " dropped=" << s.dropped_total();
}

// ---- the policy -----------------------------------------------------------------------

TEST(ServerRetryDelay, ReadsRetryInfoAmongOtherDetails) {
  auto d = ServerRetryDelay(StatusDetailsWithRetryInfo(absl::Milliseconds(1500)));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(*d, absl::Milliseconds(1500));
}

TEST(ServerRetryDelay, AbsentGarbageOrNegativeIsNoHint) {
  EXPECT_FALSE(ServerRetryDelay("").has_value());
  EXPECT_FALSE(ServerRetryDelay("\xff\xff\xff garbage").has_value());
  isotrace::rpc::Status no_retry_info;
  no_retry_info.set_code(8);
  EXPECT_FALSE(ServerRetryDelay(no_retry_info.SerializeAsString()).has_value());
  EXPECT_FALSE(ServerRetryDelay(StatusDetailsWithRetryInfo(absl::Seconds(-3))).has_value());
}

TEST(RetryPolicy, ResourceExhaustedOnlyWithAServerDelayAndUnderTheCap) {
  RetryPolicy p;
  p.max_server_delay = absl::Seconds(10);
  EXPECT_FALSE(p.NextDelay(1, grpc::StatusCode::RESOURCE_EXHAUSTED, 0.5).has_value());
  auto d = p.NextDelay(1, grpc::StatusCode::RESOURCE_EXHAUSTED, 0.5, absl::Seconds(3));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(*d, absl::Seconds(3)) << "the server's delay is honoured exactly";
  EXPECT_FALSE(p.NextDelay(1, grpc::StatusCode::RESOURCE_EXHAUSTED, 0.5, absl::Seconds(11)))
      << "a delay above max_server_delay gives up instead of parking the worker";
  // A server delay on an ordinary retryable code replaces the backoff too.
  EXPECT_EQ(*p.NextDelay(1, grpc::StatusCode::UNAVAILABLE, 0.0, absl::Milliseconds(700)),
            absl::Milliseconds(700));
  // But never makes a final code retryable.
  EXPECT_FALSE(p.NextDelay(1, grpc::StatusCode::INVALID_ARGUMENT, 0.5, absl::Seconds(1)));
  EXPECT_FALSE(p.NextDelay(p.max_attempts, grpc::StatusCode::RESOURCE_EXHAUSTED, 0.5,
                           absl::Seconds(1)))
      << "max_attempts still bounds throttled retries";
}

TEST(RetryPolicy, BackoffGrowsWithJitterInsideItsBand) {
  RetryPolicy p;
  p.initial_backoff = absl::Milliseconds(100);
  p.max_backoff = absl::Milliseconds(350);
  p.multiplier = 2;
  p.jitter = 0.2;
  p.max_attempts = 10;
  EXPECT_EQ(*p.NextDelay(1, grpc::StatusCode::UNAVAILABLE, 0.5), absl::Milliseconds(100));
  EXPECT_EQ(*p.NextDelay(2, grpc::StatusCode::UNAVAILABLE, 0.5), absl::Milliseconds(200));
  EXPECT_EQ(*p.NextDelay(3, grpc::StatusCode::UNAVAILABLE, 0.5), absl::Milliseconds(350));
  EXPECT_EQ(*p.NextDelay(2, grpc::StatusCode::UNAVAILABLE, 0.0), absl::Milliseconds(160));
  EXPECT_EQ(*p.NextDelay(2, grpc::StatusCode::UNAVAILABLE, 1.0), absl::Milliseconds(240));
}

// ---- the exporter against a server ------------------------------------------------------

// Every gRPC code in turn: the retryable ones are tried again and then delivered, the
// others are dropped after one call as non_retryable. Sums balance in every case.
TEST(OtlpReliability, EachStatusCodeIsRetriedOrDroppedPerTheSpec) {
  const std::vector<grpc::StatusCode> retryable = {
      grpc::StatusCode::CANCELLED,    grpc::StatusCode::DEADLINE_EXCEEDED,
      grpc::StatusCode::ABORTED,      grpc::StatusCode::OUT_OF_RANGE,
      grpc::StatusCode::UNAVAILABLE,  grpc::StatusCode::DATA_LOSS};
  for (int c = 1; c <= 16; ++c) {
    const auto code = static_cast<grpc::StatusCode>(c);
    const bool should_retry =
        std::find(retryable.begin(), retryable.end(), code) != retryable.end();
    SCOPED_TRACE(std::string(GrpcCodeName(code)));
    Server server;
    server.fake.script = {grpc::Status(code, "injected")};
    auto exp = *TraceExporter::Create(Options(server.endpoint()));
    for (uint32_t i = 0; i < 4; ++i) exp->Enqueue(Res(), MakeSpan(i));
    exp->Flush(absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(exp->Shutdown(absl::Now() + absl::Seconds(5)).ok());
    auto s = exp->Stats();
    ExpectBalanced(s);
    EXPECT_EQ(s.export_failures[std::string(GrpcCodeName(code))], 1u);
    if (should_retry) {
      EXPECT_EQ(server.calls(), 2u);
      EXPECT_EQ(s.sent, 4u);
      EXPECT_EQ(s.retries, 1u);
    } else {
      EXPECT_EQ(server.calls(), 1u) << "a final error must not be retried";
      EXPECT_EQ(s.sent, 0u);
      EXPECT_EQ(s.dropped.at("non_retryable"), 4u);
    }
  }
}

TEST(OtlpReliability, ResourceExhaustedWithRetryInfoWaitsTheServersDelay) {
  Server server;
  const auto delay = absl::Milliseconds(400);
  server.fake.script = {grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "throttled",
                                     StatusDetailsWithRetryInfo(delay))};
  auto o = Options(server.endpoint());
  o.retry.initial_backoff = absl::Milliseconds(1);  // our own backoff would be ~1 ms
  auto exp = *TraceExporter::Create(o);
  for (uint32_t i = 0; i < 3; ++i) exp->Enqueue(Res(), MakeSpan(i));
  ASSERT_TRUE(exp->Flush(absl::Now() + absl::Seconds(10)));
  auto s = exp->Stats();
  EXPECT_EQ(s.sent, 3u);
  EXPECT_EQ(s.server_delays, 1u);
  EXPECT_EQ(s.retries, 1u);
  ExpectBalanced(s);
  std::lock_guard<std::mutex> l(server.fake.mu);
  ASSERT_EQ(server.fake.call_times.size(), 2u);
  const auto gap = server.fake.call_times[1] - server.fake.call_times[0];
  EXPECT_GE(gap, std::chrono::milliseconds(380)) << "retried before the server's delay";
  EXPECT_LT(gap, std::chrono::milliseconds(2000));
}

TEST(OtlpReliability, ResourceExhaustedWithoutRetryInfoIsFinal) {
  Server server;
  server.fake.script = {grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "quota")};
  auto exp = *TraceExporter::Create(Options(server.endpoint()));
  for (uint32_t i = 0; i < 3; ++i) exp->Enqueue(Res(), MakeSpan(i));
  exp->Flush(absl::Now() + absl::Seconds(10));
  auto s = exp->Stats();
  EXPECT_EQ(server.calls(), 1u);
  EXPECT_EQ(s.dropped.at("non_retryable"), 3u);
  EXPECT_EQ(s.server_delays, 0u);
  ExpectBalanced(s);
}

TEST(OtlpReliability, ServerDelayAboveTheCapGivesUpAsRetriesExhausted) {
  Server server;
  server.fake.script = {grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "come back tomorrow",
                                     StatusDetailsWithRetryInfo(absl::Hours(24)))};
  auto o = Options(server.endpoint());
  o.retry.max_server_delay = absl::Seconds(1);
  auto exp = *TraceExporter::Create(o);
  exp->Enqueue(Res(), MakeSpan(1));
  const auto t0 = Clock::now();
  exp->Flush(absl::Now() + absl::Seconds(10));
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
  auto s = exp->Stats();
  EXPECT_EQ(s.dropped.at("retries_exhausted"), 1u);
  ExpectBalanced(s);
}

TEST(OtlpReliability, PartialSuccessIsCountedAndNeverRetried) {
  Server server;
  server.fake.reject = 2;
  auto exp = *TraceExporter::Create(Options(server.endpoint()));
  for (uint32_t i = 0; i < 5; ++i) exp->Enqueue(Res(), MakeSpan(i));
  ASSERT_TRUE(exp->Flush(absl::Now() + absl::Seconds(10)));
  auto s = exp->Stats();
  EXPECT_EQ(server.calls(), 1u);
  EXPECT_EQ(s.sent, 3u);
  EXPECT_EQ(s.dropped.at("rejected"), 2u);
  EXPECT_EQ(s.partial_successes, 1u);
  EXPECT_EQ(s.retries, 0u);
  ExpectBalanced(s);
}

// Big spans fill the byte budget long before the item limit: the queue must stop there.
TEST(OtlpReliability, QueueIsBoundedByBytesToo) {
  Server server;
  server.fake.hold = true;  // nothing leaves
  auto o = Options(server.endpoint());
  o.max_queue_size = 10000;
  o.max_batch_size = 1;
  o.max_queue_bytes = 64 * 1024;
  auto exp = *TraceExporter::Create(o);
  const auto one = ApproxRecordBytes(MakeSpan(0, 4000));
  ASSERT_GT(one, 4000u);
  int taken = 0;
  for (uint32_t i = 0; i < 200; ++i) taken += exp->Enqueue(Res(), MakeSpan(i, 4000)) ? 1 : 0;
  auto s = exp->Stats();
  EXPECT_LE(s.queue_bytes, o.max_queue_bytes);
  // What fits in the byte budget, plus at most the one-span batch already in flight.
  const size_t fit = o.max_queue_bytes / one;
  EXPECT_LE(static_cast<size_t>(taken), fit + 1);
  EXPECT_GE(static_cast<size_t>(taken), fit);
  EXPECT_EQ(s.dropped.at("queue_full"), 200u - taken);
  {
    std::lock_guard<std::mutex> l(server.fake.mu);
    server.fake.hold = false;
    server.fake.cv.notify_all();
  }
  ASSERT_TRUE(exp->Flush(absl::Now() + absl::Seconds(20)));
  s = exp->Stats();
  EXPECT_EQ(s.sent, static_cast<uint64_t>(taken));
  EXPECT_EQ(s.queue_bytes, 0u);
  ExpectBalanced(s);
}

TEST(OtlpReliability, AnOversizedItemStillGoesThroughAnEmptyQueue) {
  Server server;
  auto o = Options(server.endpoint());
  o.max_queue_bytes = 1024;
  auto exp = *TraceExporter::Create(o);
  EXPECT_TRUE(exp->Enqueue(Res(), MakeSpan(1, 8000)));
  ASSERT_TRUE(exp->Flush(absl::Now() + absl::Seconds(10)));
  EXPECT_EQ(exp->Stats().sent, 1u);
}

// The receiver is down at start, then comes up on the same port: delivery resumes and
// the items that waited are not lost (they were retried, not dropped).
TEST(OtlpReliability, ReceiverDownAtStartThenUp) {
  int port = 0;
  {
    // Reserve a free port, then free it.
    grpc::ServerBuilder b;
    Fake f;
    FakeTraces svc(&f);
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&svc);
    auto s = b.BuildAndStart();
    s->Shutdown();
    s->Wait();
  }
  const std::string ep = "http://127.0.0.1:" + std::to_string(port);
  auto o = Options(ep);
  o.retry.max_attempts = 20;
  o.retry.initial_backoff = absl::Milliseconds(100);
  o.retry.max_backoff = absl::Milliseconds(300);
  o.timeout = absl::Milliseconds(500);
  auto exp = *TraceExporter::Create(o);
  for (uint32_t i = 0; i < 5; ++i) exp->Enqueue(Res(), MakeSpan(i));
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(exp->Stats().sent, 0u);
  EXPECT_GT(exp->Stats().retries, 0u);

  Fake f;
  FakeTraces svc(&f);
  grpc::ServerBuilder b;
  int bound = 0;
  b.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(), &bound);
  b.RegisterService(&svc);
  auto server = b.BuildAndStart();
  ASSERT_EQ(bound, port);
  ASSERT_TRUE(exp->Flush(absl::Now() + absl::Seconds(15)));
  auto s = exp->Stats();
  EXPECT_EQ(s.sent, 5u);
  EXPECT_EQ(s.dropped_total(), 0u);
  EXPECT_GT(s.export_failures["UNAVAILABLE"], 0u);
  ExpectBalanced(s);
  exp->Shutdown(absl::Now() + absl::Seconds(2)).IgnoreError();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server->Wait();
}

}  // namespace
}  // namespace isotrace::otlp
