// RPC spans in the metrics: gRPC spans land in rpc.{server,client}.call.duration with the
// RPC conventions' attributes, not in the HTTP histograms, and count in `top` like any
// request (a non-zero grpc-status is an error there).

#include <memory>
#include <string>

#include "daemon/metrics/aggregator.h"
#include "gtest/gtest.h"

namespace isotrace::metrics {
namespace {

constexpr uint64_t kT0 = 1'700'000'000'000'000'000ull;

correlate::Span Rpc(correlate::SpanKind kind, const std::string& method, int grpc_status, uint64_t dur_ns) {
  correlate::Span s;
  s.trace_id[0] = 1;
  s.span_id[0] = 2;
  s.kind = kind;
  s.method = "POST";
  s.path = "/shop.Cart/" + method;
  s.status_code = 200;
  s.protocol_version = "2";
  s.rpc = correlate::Span::Rpc{"grpc", "shop.Cart", method, grpc_status};
  if (grpc_status > 0) s.error_type = "NOT_FOUND";
  s.start_unix_ns = kT0;
  s.end_unix_ns = kT0 + dur_ns;
  s.process.tgid = 10;
  return s;
}

const Metric* Find(const Snapshot& snap, std::string_view name) {
  for (const auto& rm : snap.resources)
    for (const auto& m : rm.metrics)
      if (m.name == name) return &m;
  return nullptr;
}

std::string Attr(const Point& p, std::string_view key) {
  for (const auto& a : p.attributes)
    if (a.key == key) {
      if (const auto* s = std::get_if<std::string>(&a.value)) return *s;
      if (const auto* i = std::get_if<int64_t>(&a.value)) return std::to_string(*i);
    }
  return "<none>";
}

TEST(MetricsRpcTest, GrpcSpansUseTheRpcHistograms) {
  uint64_t now = kT0 + 500'000'000;
  AggregatorOptions o;
  o.now_unix_ns = [&] { return now; };
  o.process_stats = false;
  Aggregator agg(o);
  auto res = std::make_shared<correlate::Resource>();
  res->attributes = {{"service.name", std::string("cart")}, {"process.pid", int64_t{10}}};
  agg.Record(res, Rpc(correlate::SpanKind::kServer, "Add", 0, 3'000'000));
  agg.Record(res, Rpc(correlate::SpanKind::kServer, "Add", 0, 4'000'000));
  agg.Record(res, Rpc(correlate::SpanKind::kServer, "Get", 5, 1'000'000));
  agg.Record(res, Rpc(correlate::SpanKind::kClient, "Get", 0, 2'000'000));
  Snapshot snap = agg.Collect();

  const Metric* server = Find(snap, kRpcServerDuration);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->unit, "s");
  ASSERT_EQ(server->points.size(), 2u);
  for (const auto& p : server->points) {
    EXPECT_EQ(Attr(p, "rpc.system"), "grpc");
    EXPECT_EQ(Attr(p, "rpc.service"), "shop.Cart");
    if (Attr(p, "rpc.method") == "Add") {
      EXPECT_EQ(p.histogram.count, 2u);
      EXPECT_EQ(Attr(p, "rpc.grpc.status_code"), "0");
      EXPECT_DOUBLE_EQ(p.histogram.sum, 0.007);
    } else {
      EXPECT_EQ(Attr(p, "rpc.method"), "Get");
      EXPECT_EQ(Attr(p, "rpc.grpc.status_code"), "5");
      EXPECT_EQ(p.histogram.count, 1u);
    }
  }
  const Metric* client = Find(snap, kRpcClientDuration);
  ASSERT_NE(client, nullptr);
  ASSERT_EQ(client->points.size(), 1u);
  EXPECT_EQ(Find(snap, kHttpServerDuration), nullptr);  // not counted twice
  EXPECT_EQ(Find(snap, kHttpClientDuration), nullptr);

  // `top`: three SERVER requests, one failed (grpc-status 5 under HTTP 200).
  TopView top = agg.Top(5);
  ASSERT_EQ(top.rows.size(), 1u);
  EXPECT_EQ(top.rows[0].service, "cart");
  EXPECT_EQ(top.rows[0].total_requests, 3u);
  EXPECT_EQ(top.rows[0].total_errors, 1u);
}

}  // namespace
}  // namespace isotrace::metrics
