// TLS and mTLS export, configured the way users do it (OTEL_EXPORTER_OTLP_CERTIFICATE,
// _CLIENT_CERTIFICATE, _CLIENT_KEY through OptionsFromEnv), against an in-process gRPC
// server with real certificates made by the openssl CLI for this test: a CA, a server
// certificate for 127.0.0.1, a client certificate. The server requires and verifies the
// client certificate, so a missing or wrong one must fail (and be counted), not pass.

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "exporters/otlp/exporter.h"
#include "opentelemetry/proto/collector/logs/v1/logs_service.grpc.pb.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/server_credentials.h"
#include "gtest/gtest.h"

namespace isotrace::otlp {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Pki {
 public:
  Pki() {
    char tmpl[] = "/tmp/isotrace-tls-XXXXXX";
    dir_ = mkdtemp(tmpl);
    // One shell script, so a failure shows openssl's own message in the test log.
    const std::string script = "set -e; cd '" + dir_ + "'; " +
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
        "-subj /CN=isotrace-test-ca 2>/dev/null; "
        "printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext; "
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 "
        "2>/dev/null; "
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem "
        "-days 2 -extfile san.ext 2>/dev/null; "
        "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=isotraced "
        "2>/dev/null; "
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem "
        "-days 2 2>/dev/null; "
        // A second CA whose client certificate the server must refuse.
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.pem -days 2 "
        "-subj /CN=rogue 2>/dev/null";
    ok_ = std::system(("bash -c \"" + script + "\"").c_str()) == 0;
  }
  ~Pki() { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  bool ok() const { return ok_; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
  bool ok_ = false;
};

class Sink final : public otlp_collector_trace::TraceService::Service {
 public:
  grpc::Status Export(grpc::ServerContext*, const otlp_collector_trace::ExportTraceServiceRequest*,
                      otlp_collector_trace::ExportTraceServiceResponse*) override {
    ++calls;
    return grpc::Status::OK;
  }
  std::atomic<int> calls{0};
};

correlate::Span MakeSpan() {
  correlate::Span s;
  s.trace_id[0] = 1;
  s.span_id[0] = 1;
  s.method = "GET";
  s.path = "/";
  s.start_unix_ns = 1'700'000'000'000'000'000ULL;
  s.end_unix_ns = s.start_unix_ns + 1000;
  return s;
}

class OtlpTls : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!pki_.ok()) GTEST_SKIP() << "openssl could not make test certificates";
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = Read(pki_.path("ca.pem"));
    ssl.pem_key_cert_pairs.push_back({Read(pki_.path("server.key")), Read(pki_.path("server.pem"))});
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl), &port_);
    b.RegisterService(&sink_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }

  // Exports one span with the options these variables give; returns the final stats.
  ExportStats ExportOne(EnvMap env) {
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "https://127.0.0.1:" + std::to_string(port_);
    auto o = OptionsFromEnv(env, Signal::kTraces);
    EXPECT_TRUE(o.ok()) << o.status();
    if (!o.ok()) return {};
    o->retry.max_attempts = 2;
    o->retry.initial_backoff = absl::Milliseconds(10);
    o->timeout = absl::Seconds(3);
    o->batch_timeout = absl::Milliseconds(10);
    auto exp = *TraceExporter::Create(*o);
    exp->Enqueue(std::make_shared<correlate::Resource>(), MakeSpan());
    exp->Flush(absl::Now() + absl::Seconds(10));
    exp->Shutdown(absl::Now() + absl::Seconds(2)).IgnoreError();
    auto s = exp->Stats();
    EXPECT_EQ(s.accepted, s.sent + s.dropped_total());
    return s;
  }

  Pki pki_;
  Sink sink_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(OtlpTls, MutualTlsWithTheRightCertificatesDelivers) {
  auto s = ExportOne({{"OTEL_EXPORTER_OTLP_CERTIFICATE", pki_.path("ca.pem")},
                      {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", pki_.path("client.pem")},
                      {"OTEL_EXPORTER_OTLP_CLIENT_KEY", pki_.path("client.key")},
                      {"OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"}});
  EXPECT_EQ(s.sent, 1u);
  EXPECT_EQ(sink_.calls.load(), 1);
}

TEST_F(OtlpTls, NoClientCertificateIsRefusedAndCounted) {
  auto s = ExportOne({{"OTEL_EXPORTER_OTLP_CERTIFICATE", pki_.path("ca.pem")}});
  EXPECT_EQ(s.sent, 0u);
  EXPECT_EQ(s.dropped_total(), 1u);
  EXPECT_EQ(sink_.calls.load(), 0);
}

TEST_F(OtlpTls, AnUntrustedServerIsRefused) {
  // Trusting only the rogue CA: the real server's certificate must not verify.
  auto s = ExportOne({{"OTEL_EXPORTER_OTLP_CERTIFICATE", pki_.path("rogue.pem")},
                      {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", pki_.path("client.pem")},
                      {"OTEL_EXPORTER_OTLP_CLIENT_KEY", pki_.path("client.key")}});
  EXPECT_EQ(s.sent, 0u);
  EXPECT_EQ(sink_.calls.load(), 0);
}

TEST_F(OtlpTls, PlaintextToATlsServerFails) {
  EnvMap env{{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:" + std::to_string(port_)}};
  auto o = OptionsFromEnv(env, Signal::kTraces);
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->endpoint.insecure);
  o->retry.max_attempts = 1;
  o->timeout = absl::Seconds(2);
  auto exp = *TraceExporter::Create(*o);
  exp->Enqueue(std::make_shared<correlate::Resource>(), MakeSpan());
  exp->Flush(absl::Now() + absl::Seconds(10));
  EXPECT_EQ(exp->Stats().sent, 0u);
  EXPECT_EQ(sink_.calls.load(), 0);
}

}  // namespace
}  // namespace isotrace::otlp
