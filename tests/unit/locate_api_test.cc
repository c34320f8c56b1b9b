// `isotrace locate` end to end without root: the verdict store's look-back, the
// locate::Verdict → API conversion, the Locate RPC through LocalServices on a real unix
// socket (its validation included), and what the CLI makes of the answer (flags' duration
// form, the text blocks, the JSON document).

#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "daemon/api/convert.h"
#include "daemon/api/services.h"
#include "daemon/cli/render.h"
#include "daemon/cli/source.h"
#include "daemon/config/config.h"
#include "daemon/locate/verdict.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "isotrace/api/v1/api.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace isotrace {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr uint64_t kSec = 1000000000ull;
constexpr uint64_t kMs = 1000000ull;
constexpr uint64_t kT0 = 1'700'000'000ull * kSec;  // 2023-11-14 22:13:20 UTC

correlate::TraceId Tid(uint8_t b) {
  correlate::TraceId id;
  id.fill(b);
  return id;
}

// A slow checkout: frontend → pricing, pricing's block I/O explains 62 %.
locate::Verdict SampleVerdict(uint8_t trace, uint64_t end_unix_ns) {
  locate::Verdict v;
  v.trace_id = Tid(trace);
  v.span_id = {0, 0, 0, 0, 0, 0, 0, 1};
  v.end_unix_ns = end_unix_ns;
  v.start_unix_ns = end_unix_ns - 120 * kMs;
  v.decided_unix_ns = end_unix_ns + 5 * kMs;
  v.reason = "slow";
  v.root_service = "frontend";
  v.method = "GET";
  v.path = "/checkout";
  v.status_code = 200;
  v.duration_ns = 120 * kMs;
  v.baseline_ns = 20 * kMs;
  v.service = "pricing";
  v.layer = "kernel";
  v.cause = "block_io";
  v.share = 0.62;
  v.evidence = {{"pricing", "kernel", "block_io", 80 * kMs, 5 * kMs, 75 * kMs},
                {"pricing", "app", "cpu", 15 * kMs, 10 * kMs, 5 * kMs},
                {"frontend", "kernel", "runqueue", 3 * kMs, 1 * kMs, 2 * kMs},
                {"frontend", "app", "cpu", 2 * kMs, 0, 2 * kMs}};
  locate::Hop root;
  root.service = "frontend";
  root.kind = correlate::SpanKind::kServer;
  root.span_id = v.span_id;
  root.method = "GET";
  root.path = "/checkout";
  root.duration_ns = 120 * kMs;
  root.baseline_ns = 20 * kMs;
  locate::Hop client = root;
  client.kind = correlate::SpanKind::kClient;
  client.span_id[7] = 2;
  client.path = "/price";
  client.peer = "pricing:8080";
  client.duration_ns = 110 * kMs;
  locate::Hop server = client;
  server.service = "pricing";
  server.kind = correlate::SpanKind::kServer;
  server.span_id[7] = 3;
  server.peer = "";
  server.duration_ns = 100 * kMs;
  server.baseline_ns = 0;
  v.path_hops = {root, client, server};
  v.spans = 3;
  return v;
}

std::string Bytes(const correlate::TraceId& id) {
  return std::string(reinterpret_cast<const char*>(id.data()), id.size());
}

// ---- the store ------------------------------------------------------------------------

TEST(VerdictStore, RecentIsNewestFirstAndFilters) {
  locate::VerdictStore store(16);
  for (uint8_t i = 1; i <= 5; ++i) store.Add(SampleVerdict(i, kT0 + i * kSec));
  store.Add(SampleVerdict(2, kT0 + 6 * kSec));  // trace 2 again, later

  auto all = store.Recent(0, std::nullopt, 100);
  ASSERT_EQ(all.size(), 6u);
  for (size_t i = 1; i < all.size(); ++i) EXPECT_GE(all[i - 1].end_unix_ns, all[i].end_unix_ns);
  EXPECT_EQ(all[0].trace_id, Tid(2));

  // since: inclusive of a trace that ended exactly then.
  auto since = store.Recent(kT0 + 4 * kSec, std::nullopt, 100);
  ASSERT_EQ(since.size(), 3u);
  EXPECT_EQ(since[0].end_unix_ns, kT0 + 6 * kSec);
  EXPECT_EQ(since[2].end_unix_ns, kT0 + 4 * kSec);

  auto by_id = store.Recent(0, Tid(2), 100);
  ASSERT_EQ(by_id.size(), 2u);
  EXPECT_EQ(by_id[0].end_unix_ns, kT0 + 6 * kSec);
  EXPECT_EQ(by_id[1].end_unix_ns, kT0 + 2 * kSec);
  EXPECT_TRUE(store.Recent(0, Tid(9), 100).empty());
  EXPECT_TRUE(store.Recent(kT0 + 7 * kSec, std::nullopt, 100).empty());

  auto two = store.Recent(0, std::nullopt, 2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1].trace_id, Tid(5));
  EXPECT_EQ(store.total(), 6u);
}

TEST(VerdictStore, KeepsOnlyTheLastCapacityVerdicts) {
  locate::VerdictStore store(3);
  for (uint8_t i = 1; i <= 10; ++i) store.Add(SampleVerdict(i, kT0 + i * kSec));
  auto all = store.Recent(0, std::nullopt, 100);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].trace_id, Tid(10));
  EXPECT_EQ(all[2].trace_id, Tid(8));
  EXPECT_EQ(store.total(), 10u);  // counts every verdict, not only those kept
}

// ---- conversion -----------------------------------------------------------------------

TEST(LocateConvert, VerdictToProtoCarriesEveryField) {
  const locate::Verdict v = SampleVerdict(0xab, kT0);
  const api::v1::Verdict p = api::VerdictToProto(v);
  EXPECT_EQ(p.trace_id(), Bytes(Tid(0xab)));
  EXPECT_EQ(api::HexId(p.span_id()), "0000000000000001");
  EXPECT_EQ(p.start_time_unix_nano(), kT0 - 120 * kMs);
  EXPECT_EQ(p.end_time_unix_nano(), kT0);
  EXPECT_EQ(p.decided_time_unix_nano(), kT0 + 5 * kMs);
  EXPECT_EQ(p.reason(), "slow");
  EXPECT_EQ(p.root_service(), "frontend");
  EXPECT_EQ(p.method(), "GET");
  EXPECT_EQ(p.path(), "/checkout");
  EXPECT_EQ(p.status_code(), 200);
  EXPECT_EQ(p.error_type(), "");
  EXPECT_EQ(p.duration_ns(), int64_t(120 * kMs));
  EXPECT_EQ(p.baseline_ns(), int64_t(20 * kMs));
  EXPECT_EQ(p.service(), "pricing");
  EXPECT_EQ(p.layer(), "kernel");
  EXPECT_EQ(p.cause(), "block_io");
  EXPECT_DOUBLE_EQ(p.share(), 0.62);
  EXPECT_EQ(p.spans(), 3u);
  ASSERT_EQ(p.evidence_size(), 4);
  EXPECT_EQ(p.evidence(0).service(), "pricing");
  EXPECT_EQ(p.evidence(0).layer(), "kernel");
  EXPECT_EQ(p.evidence(0).cause(), "block_io");
  EXPECT_EQ(p.evidence(0).value_ns(), int64_t(80 * kMs));
  EXPECT_EQ(p.evidence(0).baseline_ns(), int64_t(5 * kMs));
  EXPECT_EQ(p.evidence(0).excess_ns(), int64_t(75 * kMs));
  ASSERT_EQ(p.critical_path_size(), 3);
  EXPECT_EQ(p.critical_path(0).kind(), 2);
  EXPECT_EQ(p.critical_path(1).kind(), 3);
  EXPECT_EQ(p.critical_path(1).service(), "frontend");
  EXPECT_EQ(api::HexId(p.critical_path(1).span_id()), "0000000000000002");
  EXPECT_EQ(p.critical_path(1).method(), "GET");
  EXPECT_EQ(p.critical_path(1).path(), "/price");
  EXPECT_EQ(p.critical_path(1).peer(), "pricing:8080");
  EXPECT_EQ(p.critical_path(1).duration_ns(), int64_t(110 * kMs));
  EXPECT_EQ(p.critical_path(1).baseline_ns(), int64_t(20 * kMs));
  EXPECT_EQ(p.critical_path(2).service(), "pricing");
  EXPECT_EQ(p.critical_path(2).baseline_ns(), 0);
}

TEST(LocateConvert, RequestDefaultsAndTraceId) {
  api::v1::LocateRequest req;
  auto q = api::VerdictQueryFrom(req, kT0);
  EXPECT_EQ(q.since_unix_ns, kT0 - 300 * kSec);
  EXPECT_EQ(q.max, 100u);
  EXPECT_FALSE(q.trace_id.has_value());

  req.set_since_seconds(30);
  req.set_max(7);
  req.set_trace_id(Bytes(Tid(0x42)));
  q = api::VerdictQueryFrom(req, kT0);
  EXPECT_EQ(q.since_unix_ns, kT0 - 30 * kSec);
  EXPECT_EQ(q.max, 7u);
  ASSERT_TRUE(q.trace_id.has_value());
  EXPECT_EQ(*q.trace_id, Tid(0x42));

  // A look-back longer than the clock: everything, not a wrapped-around future time.
  req.set_since_seconds(UINT32_MAX);
  EXPECT_EQ(api::VerdictQueryFrom(req, 10 * kSec).since_unix_ns, 0u);

  locate::VerdictStore store;
  store.Add(SampleVerdict(3, kT0 - 40 * kSec));  // decided in the order the traces ended
  store.Add(SampleVerdict(0x42, kT0 - 20 * kSec));
  store.Add(SampleVerdict(1, kT0 - 10 * kSec));
  req.set_since_seconds(30);
  req.clear_trace_id();
  auto resp = api::LocateResponseFrom(api::ReadVerdicts(store, api::VerdictQueryFrom(req, kT0)),
                                      "daemon", kT0);
  EXPECT_EQ(resp.mode(), "daemon");
  EXPECT_EQ(resp.time_unix_nano(), kT0);
  EXPECT_EQ(resp.verdicts_total(), 3u);
  ASSERT_EQ(resp.verdicts_size(), 2);
  EXPECT_EQ(resp.verdicts(0).trace_id(), Bytes(Tid(1)));
  EXPECT_EQ(resp.verdicts(1).trace_id(), Bytes(Tid(0x42)));
}

// ---- the RPC --------------------------------------------------------------------------

class LocateRpc : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isotrace-locate-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/isotrace.sock";
    now_ = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
    store_.Add(SampleVerdict(1, now_ - 200 * kSec));
    store_.Add(SampleVerdict(2, now_ - 20 * kSec));
    store_.Add(SampleVerdict(3, now_ - 2 * kSec));
    config::Config cfg;
    cfg.api_socket = path_;
    cfg.prometheus_listen = "";  // the API alone
    auto svc = api::LocalServices::Start(cfg, nullptr, "node-1", nullptr,
                                         [this](const api::VerdictQuery& q) {
                                           queries_.push_back(q);
                                           return api::ReadVerdicts(store_, q);
                                         });
    ASSERT_TRUE(svc.ok()) << svc.status();
    ASSERT_TRUE((*svc)->api_serving());
    services_ = std::move(*svc);
  }
  void TearDown() override {
    services_.reset();
    rmdir(dir_.c_str());
  }

  std::string dir_, path_;
  uint64_t now_ = 0;
  locate::VerdictStore store_;
  std::vector<api::VerdictQuery> queries_;  // only the server's one thread appends
  std::unique_ptr<api::LocalServices> services_;
};

TEST_F(LocateRpc, ServesTheStoreThroughTheCliSource) {
  auto client = cli::ConnectDaemon(path_);
  ASSERT_TRUE(client.ok()) << client.status();

  auto all = (*client)->Locate(std::nullopt, 0, 0);  // server defaults: 300 s, 100
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->mode(), "daemon");
  EXPECT_EQ(all->verdicts_total(), 3u);
  EXPECT_GE(all->time_unix_nano(), now_);
  ASSERT_EQ(all->verdicts_size(), 3);
  EXPECT_EQ(all->verdicts(0).trace_id(), Bytes(Tid(3)));  // newest first
  EXPECT_EQ(all->verdicts(2).trace_id(), Bytes(Tid(1)));
  ASSERT_EQ(queries_.size(), 1u);
  EXPECT_EQ(queries_[0].max, 100u);
  EXPECT_NEAR(static_cast<double>(all->time_unix_nano() - queries_[0].since_unix_ns), 300.0 * kSec,
              1.0);

  auto recent = (*client)->Locate(std::nullopt, 60, 0);
  ASSERT_TRUE(recent.ok()) << recent.status();
  ASSERT_EQ(recent->verdicts_size(), 2);

  auto one = (*client)->Locate(std::nullopt, 600, 1);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->verdicts_size(), 1);
  EXPECT_EQ(one->verdicts(0).trace_id(), Bytes(Tid(3)));

  auto by_id = (*client)->Locate(Tid(2), 600, 0);
  ASSERT_TRUE(by_id.ok()) << by_id.status();
  ASSERT_EQ(by_id->verdicts_size(), 1);
  EXPECT_EQ(by_id->verdicts(0).trace_id(), Bytes(Tid(2)));
  EXPECT_EQ(by_id->verdicts(0).critical_path_size(), 3);

  auto none = (*client)->Locate(Tid(9), 600, 0);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->verdicts_size(), 0);
}

TEST_F(LocateRpc, RejectsATraceIdThatIsNot16Bytes) {
  auto stub = api::v1::Isotrace::NewStub(
      grpc::CreateChannel("unix:" + path_, grpc::InsecureChannelCredentials()));
  for (const std::string& bad :
       {std::string("abc"), std::string(32, 'a'), std::string(15, '\x01')}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    api::v1::LocateRequest req;
    req.set_trace_id(bad);
    api::v1::LocateResponse resp;
    auto st = stub->Locate(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad.size();
    EXPECT_THAT(st.error_message(), HasSubstr("16 bytes"));
    EXPECT_THAT(st.error_message(), HasSubstr("got " + std::to_string(bad.size()) + " bytes"));
  }
  EXPECT_TRUE(queries_.empty());  // never reached the store
}

TEST(LocateRpcNoSource, AnswersEmptyWithoutAVerdictSource) {
  char tmpl[] = "/tmp/isotrace-locate-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/isotrace.sock";
  config::Config cfg;
  cfg.api_socket = path;
  cfg.prometheus_listen = "";
  auto svc = api::LocalServices::Start(cfg, nullptr, "node-1", nullptr, nullptr);
  ASSERT_TRUE(svc.ok()) << svc.status();
  auto client = cli::ConnectDaemon(path);
  ASSERT_TRUE(client.ok()) << client.status();
  auto resp = (*client)->Locate(std::nullopt, 0, 0);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->verdicts_size(), 0);
  EXPECT_EQ(resp->verdicts_total(), 0u);
  svc->reset();
  rmdir(tmpl);
}

// ---- the CLI --------------------------------------------------------------------------

TEST(LocateCli, ParsesGoStyleDurations) {
  struct Good {
    const char* text;
    absl::Duration want;
  };
  for (const Good& g :
       {Good{"30s", absl::Seconds(30)}, Good{"5m", absl::Minutes(5)}, Good{"1h", absl::Hours(1)},
        Good{"1h30m", absl::Minutes(90)}, Good{"1.5h", absl::Minutes(90)},
        Good{"2m30s", absl::Seconds(150)}, Good{"1500ms", absl::Seconds(2)},  // rounds up
        Good{"1ns", absl::Seconds(1)}}) {
    auto d = cli::ParseDurationFlag(g.text);
    ASSERT_TRUE(d.ok()) << g.text << ": " << d.status();
    EXPECT_EQ(*d, g.want) << g.text;
  }
  for (const char* bad : {"", "5", "5x", "m", "1d", "-5m", "0", "0s", "inf", "5 m", "1h 30m", "abc",
                          "10000000000s"}) {
    auto d = cli::ParseDurationFlag(bad);
    EXPECT_FALSE(d.ok()) << "'" << bad << "' parsed as "
                         << (d.ok() ? absl::FormatDuration(*d) : "");
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(std::string(cli::ParseDurationFlag("5").status().message()),
              HasSubstr("expected a duration like 30s, 5m, 1h or 1h30m"));
  EXPECT_THAT(std::string(cli::ParseDurationFlag("0s").status().message()),
              HasSubstr("longer than 0"));
  EXPECT_EQ(cli::FormatDurationFlag(absl::Minutes(5)), "5m");
  EXPECT_EQ(cli::FormatDurationFlag(absl::Minutes(90)), "1h30m");
  EXPECT_EQ(cli::FormatDurationFlag(absl::Seconds(10)), "10s");
}

TEST(LocateCli, FormatsMilliseconds) {
  EXPECT_EQ(cli::FormatMillis(420000), "0.42ms");
  EXPECT_EQ(cli::FormatMillis(12300000), "12.3ms");
  EXPECT_EQ(cli::FormatMillis(120000000), "120.0ms");
  EXPECT_EQ(cli::FormatMillis(1234000000), "1234ms");
  EXPECT_EQ(cli::FormatMillis(-5), "0.00ms");
}

api::v1::LocateResponse SampleResponse() {
  locate::VerdictStore store;
  locate::Verdict failed = SampleVerdict(0x22, kT0 - 3 * kSec);
  failed.reason = "failed";
  failed.status_code = 0;
  failed.error_type = "connection_reset";
  failed.baseline_ns = 0;
  failed.service = "pricing";
  failed.layer = "network";
  failed.cause = "tcp_reset";
  failed.share = 1.0;
  failed.evidence = {{"pricing", "network", "tcp_reset", 30 * kMs, 0, 30 * kMs}};
  failed.path_hops.clear();
  store.Add(failed);
  store.Add(SampleVerdict(0x11, kT0 - 1 * kSec));
  return api::LocateResponseFrom(api::ReadVerdicts(store, {0, std::nullopt, 100}), "daemon", kT0);
}

TEST(LocateCli, RendersOneBlockPerVerdictNewestFirst) {
  auto lines = cli::RenderLocate(SampleResponse(), absl::Minutes(5), absl::UTCTimeZone());
  ASSERT_EQ(lines.size(), 10u);
  EXPECT_EQ(lines[0],
            "22:13:19 11111111111111111111111111111111 frontend GET /checkout 200 120.0ms (usual "
            "20.0ms) slow");
  EXPECT_EQ(lines[1], "  verdict: pricing / kernel / block_io  62%");
  EXPECT_EQ(lines[2], "  evidence: pricing kernel block_io +75.0ms (80.0ms vs usual 5.0ms)");
  EXPECT_EQ(lines[3], "  evidence: pricing app cpu +5.0ms (15.0ms vs usual 10.0ms)");
  EXPECT_EQ(lines[4],
            "  evidence: frontend kernel runqueue +2.0ms (3.0ms vs usual 1.0ms)");  // top 3 only
  EXPECT_EQ(lines[5],
            "  path: frontend SERVER 120.0ms \u2192 frontend CLIENT 110.0ms \u2192 pricing SERVER "
            "100.0ms");
  EXPECT_EQ(lines[6], "");
  EXPECT_EQ(lines[7],
            "22:13:17 22222222222222222222222222222222 frontend GET /checkout connection_reset "
            "120.0ms (no baseline yet) failed");
  EXPECT_EQ(lines[8], "  verdict: pricing / network / tcp_reset  100%");
  EXPECT_EQ(lines[9], "  evidence: pricing network tcp_reset +30.0ms (30.0ms, no baseline yet)");
  // No path line: the verdict had no critical path.
}

TEST(LocateCli, RendersTheDateForAnotherDayAndSanitises) {
  auto resp = SampleResponse();
  resp.set_time_unix_nano(kT0 + 86400 * kSec);
  resp.mutable_verdicts(0)->set_root_service("front\x1b[2Jend");
  auto lines = cli::RenderLocate(resp, absl::Minutes(5), absl::UTCTimeZone());
  EXPECT_THAT(lines[0], StartsWith("2023-11-14 22:13:19 1111"));
  EXPECT_THAT(lines[0], HasSubstr(" front?[2Jend GET "));
}

TEST(LocateCli, SaysSoWhenThereAreNone) {
  api::v1::LocateResponse empty;
  empty.set_mode("daemon");
  EXPECT_THAT(cli::RenderLocate(empty, absl::Minutes(5), absl::UTCTimeZone()),
              ElementsAre("no slow or failed traces in the last 5m"));
  EXPECT_THAT(cli::RenderLocate(empty, absl::Minutes(90), absl::UTCTimeZone()),
              ElementsAre("no slow or failed traces in the last 1h30m"));
  auto j = nlohmann::json::parse(cli::LocateJson(empty));
  EXPECT_EQ(j["mode"], "daemon");
  EXPECT_TRUE(j["verdicts"].is_array());
  EXPECT_TRUE(j["verdicts"].empty());
}

TEST(LocateCli, JsonHasEveryFieldWithHexIds) {
  auto j = nlohmann::json::parse(cli::LocateJson(SampleResponse()));
  EXPECT_EQ(j["mode"], "daemon");
  EXPECT_EQ(j["time_unix_nano"].get<uint64_t>(), kT0);
  EXPECT_EQ(j["verdicts_total"], 2);
  ASSERT_EQ(j["verdicts"].size(), 2u);
  const auto& v = j["verdicts"][0];
  EXPECT_EQ(v["trace_id"], "11111111111111111111111111111111");
  EXPECT_EQ(v["span_id"], "0000000000000001");
  EXPECT_EQ(v["start_time_unix_nano"].get<uint64_t>(), kT0 - 1 * kSec - 120 * kMs);
  EXPECT_EQ(v["end_time_unix_nano"].get<uint64_t>(), kT0 - 1 * kSec);
  EXPECT_EQ(v["decided_time_unix_nano"].get<uint64_t>(), kT0 - 1 * kSec + 5 * kMs);
  EXPECT_EQ(v["reason"], "slow");
  EXPECT_EQ(v["root_service"], "frontend");
  EXPECT_EQ(v["method"], "GET");
  EXPECT_EQ(v["path"], "/checkout");
  EXPECT_EQ(v["status_code"], 200);
  EXPECT_EQ(v["error_type"], "");
  EXPECT_EQ(v["duration_ns"], 120 * kMs);
  EXPECT_EQ(v["baseline_ns"], 20 * kMs);
  EXPECT_EQ(v["service"], "pricing");
  EXPECT_EQ(v["layer"], "kernel");
  EXPECT_EQ(v["cause"], "block_io");
  EXPECT_DOUBLE_EQ(v["share"].get<double>(), 0.62);
  EXPECT_EQ(v["spans"], 3);
  ASSERT_EQ(v["evidence"].size(), 4u);  // all of it, not only the top 3 the text shows
  EXPECT_EQ(v["evidence"][0], (nlohmann::json{{"service", "pricing"},
                                              {"layer", "kernel"},
                                              {"cause", "block_io"},
                                              {"value_ns", 80 * kMs},
                                              {"baseline_ns", 5 * kMs},
                                              {"excess_ns", 75 * kMs}}));
  ASSERT_EQ(v["critical_path"].size(), 3u);
  EXPECT_EQ(v["critical_path"][1], (nlohmann::json{{"service", "frontend"},
                                                   {"kind", "CLIENT"},
                                                   {"span_id", "0000000000000002"},
                                                   {"method", "GET"},
                                                   {"path", "/price"},
                                                   {"peer", "pricing:8080"},
                                                   {"duration_ns", 110 * kMs},
                                                   {"baseline_ns", 20 * kMs}}));
  EXPECT_EQ(v["critical_path"][0]["kind"], "SERVER");
  const auto& f = j["verdicts"][1];
  EXPECT_EQ(f["reason"], "failed");
  EXPECT_EQ(f["status_code"], 0);
  EXPECT_EQ(f["error_type"], "connection_reset");
  EXPECT_TRUE(f["critical_path"].empty());
}

}  // namespace
}  // namespace isotrace
