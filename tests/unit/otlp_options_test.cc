// OTEL_EXPORTER_OTLP_* parsing (endpoint forms, headers, per-signal overrides, batching
// variables) and the retry policy.

#include <cstdio>
#include <fstream>
#include <string>

#include "exporters/otlp/options.h"
#include "exporters/otlp/retry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace isotrace::otlp {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

Endpoint Ep(std::string_view v, bool insecure_without_scheme = false) {
  auto ep = ParseEndpoint(v, insecure_without_scheme);
  EXPECT_TRUE(ep.ok()) << v << ": " << ep.status();
  return ep.ok() ? *ep : Endpoint{};
}

TEST(OtlpEndpoint, SchemesPickTransport) {
  auto ep = Ep("http://collector:4317");
  EXPECT_EQ(ep.target, "collector:4317");
  EXPECT_TRUE(ep.insecure);
  EXPECT_EQ(ep.scheme, "http");
  ep = Ep("https://collector.example.com:4318/");
  EXPECT_EQ(ep.target, "collector.example.com:4318");
  EXPECT_FALSE(ep.insecure);
  EXPECT_EQ(ep.scheme, "https");
  EXPECT_EQ(Ep("https://collector.example.com").target, "collector.example.com:443");
  EXPECT_EQ(Ep("http://127.0.0.1").target, "127.0.0.1:4317");
  EXPECT_EQ(Ep("http://[::1]:9999").target, "[::1]:9999");
  EXPECT_EQ(Ep("http://[::1]").target, "[::1]:4317");
  EXPECT_EQ(Ep("  http://localhost:4317  ").target, "localhost:4317");
}

TEST(OtlpEndpoint, NoSchemeFollowsInsecureSetting) {
  auto ep = Ep("collector:4317");
  EXPECT_EQ(ep.target, "collector:4317");
  EXPECT_FALSE(ep.insecure) << "the OTel spec: TLS unless OTEL_EXPORTER_OTLP_INSECURE=true";
  EXPECT_EQ(ep.scheme, "");
  EXPECT_TRUE(Ep("collector:4317", true).insecure);
  EXPECT_EQ(Ep("collector", true).target, "collector:4317");
}

TEST(OtlpEndpoint, UnixSockets) {
  auto ep = Ep("unix:///run/otel/otlp.sock");
  EXPECT_EQ(ep.target, "unix:///run/otel/otlp.sock");
  EXPECT_TRUE(ep.insecure);
}

TEST(OtlpEndpoint, RejectsWhatGrpcCannotUse) {
  for (const char* bad : {"", "ftp://x:1", "http://host:4318/v1/traces", "http://:4317",
                          "http://host:0", "http://host:70000", "http://host:abc",
                          "http://user:pw@host:4317", "::1:4317", "http://[::1", "unix:"}) {
    auto ep = ParseEndpoint(bad, true);
    EXPECT_FALSE(ep.ok()) << "accepted \"" << bad << "\" as " << ep->target;
    if (!ep.ok()) {
      EXPECT_EQ(ep.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  EXPECT_THAT(std::string(ParseEndpoint("http://h:4318/v1/traces", false).status().message()),
              HasSubstr("OTLP/HTTP"));
}

TEST(OtlpHeaders, ParsesDecodesAndLowercases) {
  auto h = ParseHeaders(" Authorization = Bearer%20abc%3D ,x-tenant=team-a,, ");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_THAT(*h, ElementsAre(Pair("authorization", "Bearer abc="), Pair("x-tenant", "team-a")));
  EXPECT_TRUE(ParseHeaders("").ok());
  EXPECT_TRUE(ParseHeaders("k=").ok());  // empty value is allowed
  EXPECT_FALSE(ParseHeaders("novalue").ok());
  EXPECT_FALSE(ParseHeaders("k=%zz").ok());
  EXPECT_FALSE(ParseHeaders("k=%4").ok());
  EXPECT_FALSE(ParseHeaders("bad key=v").ok());
  EXPECT_FALSE(ParseHeaders("grpc-timeout=1").ok());
  EXPECT_FALSE(ParseHeaders("k=a%0Ab").ok());
}

TEST(OtlpOptions, DefaultsWithoutEnvironment) {
  auto o = OptionsFromEnv({}, Signal::kTraces);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->endpoint_configured);
  EXPECT_EQ(o->endpoint.target, "localhost:4317");
  EXPECT_TRUE(o->endpoint.insecure);
  EXPECT_EQ(o->timeout, absl::Seconds(10));
  EXPECT_EQ(o->max_batch_size, 512u);
  EXPECT_EQ(o->max_queue_size, 2048u);
  EXPECT_EQ(o->batch_timeout, absl::Seconds(1));
  EXPECT_FALSE(o->gzip);
}

TEST(OtlpOptions, GenericAndSignalSpecificVariables) {
  EnvMap env = {
      {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://gateway:4317"},
      {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "https://logs.example.com"},
      {"OTEL_EXPORTER_OTLP_HEADERS", "api-key=secret"},
      {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-scope=traces"},
      {"OTEL_EXPORTER_OTLP_TIMEOUT", "2500"},
      {"OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"},
      {"OTEL_BSP_SCHEDULE_DELAY", "200"},
      {"OTEL_BSP_MAX_QUEUE_SIZE", "100"},
      {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1000"},
      {"OTEL_BLRP_MAX_QUEUE_SIZE", "64"},
  };
  auto t = OptionsFromEnv(env, Signal::kTraces);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->endpoint_configured);
  EXPECT_EQ(t->endpoint.target, "gateway:4317");
  EXPECT_TRUE(t->endpoint.insecure);
  EXPECT_THAT(t->headers, ElementsAre(Pair("x-scope", "traces")));
  EXPECT_EQ(t->timeout, absl::Milliseconds(2500));
  EXPECT_TRUE(t->gzip);
  EXPECT_EQ(t->batch_timeout, absl::Milliseconds(200));
  EXPECT_EQ(t->max_queue_size, 100u);
  EXPECT_EQ(t->max_batch_size, 100u) << "batch is clamped to the queue";

  auto l = OptionsFromEnv(env, Signal::kLogs);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->endpoint.target, "logs.example.com:443");
  EXPECT_FALSE(l->endpoint.insecure);
  EXPECT_THAT(l->headers, ElementsAre(Pair("api-key", "secret")));
  EXPECT_EQ(l->max_queue_size, 64u);
  EXPECT_EQ(l->batch_timeout, absl::Seconds(1));
}

TEST(OtlpOptions, InsecureAppliesToSchemelessEndpoint) {
  auto o = OptionsFromEnv(
      {{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"}, {"OTEL_EXPORTER_OTLP_INSECURE", "true"}},
      Signal::kTraces);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->endpoint.insecure);
}

TEST(OtlpOptions, BadValuesNameTheVariable) {
  struct Case {
    EnvMap env;
    std::string expect;
  };
  const Case cases[] = {
      {{{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:1/v1/traces"}}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
      {{{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://h"}}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
      {{{"OTEL_EXPORTER_OTLP_HEADERS", "oops"}}, "OTEL_EXPORTER_OTLP_HEADERS"},
      {{{"OTEL_EXPORTER_OTLP_TIMEOUT", "-1"}}, "OTEL_EXPORTER_OTLP_TIMEOUT"},
      {{{"OTEL_EXPORTER_OTLP_TIMEOUT", "0"}}, "OTEL_EXPORTER_OTLP_TIMEOUT"},
      {{{"OTEL_EXPORTER_OTLP_INSECURE", "yes"}}, "OTEL_EXPORTER_OTLP_INSECURE"},
      {{{"OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"}}, "OTEL_EXPORTER_OTLP_COMPRESSION"},
      {{{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"}}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
      {{{"OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"}}, "/nonexistent/ca.pem"},
      {{{"OTEL_BSP_MAX_QUEUE_SIZE", "0"}}, "OTEL_BSP_MAX_QUEUE_SIZE"},
      {{{"OTEL_BSP_SCHEDULE_DELAY", "soon"}}, "OTEL_BSP_SCHEDULE_DELAY"},
  };
  for (const auto& c : cases) {
    auto o = OptionsFromEnv(c.env, Signal::kTraces);
    ASSERT_FALSE(o.ok()) << c.expect;
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(o.status().message()), HasSubstr(c.expect));
  }
  // Empty means unset.
  EXPECT_TRUE(OptionsFromEnv({{"OTEL_EXPORTER_OTLP_ENDPOINT", ""}}, Signal::kTraces).ok());
}

TEST(OtlpOptions, ReadsCertificateFiles) {
  const std::string path = ::testing::TempDir() + "/otlp_ca.pem";
  { std::ofstream(path) << "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"; }
  auto o = OptionsFromEnv(
      {{"OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4317"}, {"OTEL_EXPORTER_OTLP_CERTIFICATE", path}},
      Signal::kTraces);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->root_certs_pem, HasSubstr("BEGIN CERTIFICATE"));
  auto half = OptionsFromEnv({{"OTEL_EXPORTER_OTLP_CLIENT_KEY", path}}, Signal::kTraces);
  EXPECT_FALSE(half.ok());
  std::remove(path.c_str());
}

TEST(OtlpRetry, RetryableCodesFollowTheOtlpSpec) {
  for (auto c : {grpc::StatusCode::CANCELLED, grpc::StatusCode::DEADLINE_EXCEEDED,
                 grpc::StatusCode::ABORTED, grpc::StatusCode::OUT_OF_RANGE,
                 grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::DATA_LOSS}) {
    EXPECT_TRUE(RetryPolicy::IsRetryable(c)) << GrpcCodeName(c);
  }
  for (auto c : {grpc::StatusCode::INVALID_ARGUMENT, grpc::StatusCode::UNAUTHENTICATED,
                 grpc::StatusCode::PERMISSION_DENIED, grpc::StatusCode::UNIMPLEMENTED,
                 grpc::StatusCode::RESOURCE_EXHAUSTED, grpc::StatusCode::INTERNAL}) {
    EXPECT_FALSE(RetryPolicy::IsRetryable(c)) << GrpcCodeName(c);
  }
}

TEST(OtlpRetry, ExponentialBackoffWithJitterAndCap) {
  RetryPolicy p;
  p.max_attempts = 5;
  p.initial_backoff = absl::Milliseconds(100);
  p.max_backoff = absl::Milliseconds(350);
  p.multiplier = 2.0;
  p.jitter = 0.2;
  const auto u = grpc::StatusCode::UNAVAILABLE;
  EXPECT_EQ(p.NextDelay(1, u, 0.5), absl::Milliseconds(100));
  EXPECT_EQ(p.NextDelay(2, u, 0.5), absl::Milliseconds(200));
  EXPECT_EQ(p.NextDelay(3, u, 0.5), absl::Milliseconds(350));  // capped
  EXPECT_EQ(p.NextDelay(1, u, 0.0), absl::Milliseconds(80));
  EXPECT_EQ(p.NextDelay(1, u, 1.0), absl::Milliseconds(120));
  EXPECT_EQ(p.NextDelay(5, u, 0.5), std::nullopt) << "attempts exhausted";
  EXPECT_EQ(p.NextDelay(1, grpc::StatusCode::INVALID_ARGUMENT, 0.5), std::nullopt);
  // RESOURCE_EXHAUSTED only with the server's own delay (RetryInfo).
  EXPECT_EQ(p.NextDelay(1, grpc::StatusCode::RESOURCE_EXHAUSTED, 0.5), std::nullopt);
  EXPECT_EQ(p.NextDelay(1, grpc::StatusCode::RESOURCE_EXHAUSTED, 0.5, absl::Seconds(3)),
            absl::Seconds(3));
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
}

}  // namespace
}  // namespace isotrace::otlp
