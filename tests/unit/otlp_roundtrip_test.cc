// Proof that an independent OTLP implementation decodes our bytes: starts
// tests/e2e/otlp_receiver.mjs (grpc-js + the OpenTelemetry JS project's protobufjs code
// generated from the upstream protos), exports spans and log records to it with our
// exporters, and checks the JSON lines it wrote. Skips, saying why, when node or
// tests/e2e/node_modules (npm install) is missing.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "exporters/otlp/exporter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace isotrace::otlp {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

fs::path SourceRoot() {
  if (const char* env = std::getenv("ISOTRACE_SOURCE_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return fs::path(__FILE__).parent_path().parent_path().parent_path();  // tests/unit/x.cc
}

std::string FindNode() {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    fs::path candidate = fs::path(dirs.substr(start, end - start)) / "node";
    if (!candidate.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

// The receiver as a child process; SIGTERM and reaped on destruction.
class NodeReceiver {
 public:
  NodeReceiver(const std::string& node, const fs::path& script, const fs::path& out,
               std::vector<std::string> extra) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    std::vector<std::string> args = {node, script.string(), "--port", "0", "--out", out.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, node.c_str(), &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    out_fd_ = fds[0];
  }
  ~NodeReceiver() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
  }

  // Waits for "LISTENING <port>"; 0 on timeout or early exit.
  int WaitListening(std::chrono::milliseconds timeout) {
    if (pid_ <= 0 || out_fd_ < 0) return 0;
    std::string buf;
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      pollfd p{out_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char chunk[256];
      ssize_t n = ::read(out_fd_, chunk, sizeof(chunk));
      if (n <= 0) return 0;
      buf.append(chunk, static_cast<size_t>(n));
      if (size_t pos = buf.find("LISTENING "); pos != std::string::npos) {
        size_t eol = buf.find('\n', pos);
        if (eol != std::string::npos) return std::atoi(buf.c_str() + pos + 10);
      }
    }
    return 0;
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
};

class OtlpRoundTrip : public ::testing::Test {
 protected:
  void SetUp() override {
    e2e_ = SourceRoot() / "tests" / "e2e";
    node_ = FindNode();
    if (node_.empty()) GTEST_SKIP() << "node is not installed; the npm receiver cannot run";
    if (!fs::exists(e2e_ / "node_modules" / "@opentelemetry" / "otlp-transformer" / "build" /
                    "src" / "generated" / "root.js") ||
        !fs::exists(e2e_ / "node_modules" / "@grpc" / "grpc-js")) {
      GTEST_SKIP() << "tests/e2e/node_modules is missing: run `npm ci` (or `npm install`) in "
                   << e2e_.string() << " to enable the independent-receiver round trip";
    }
    out_ = fs::path(::testing::TempDir()) /
           ("otlp_roundtrip_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".jsonl");
    fs::remove(out_);
  }
  void TearDown() override {
    if (!out_.empty()) fs::remove(out_);
  }

  std::unique_ptr<NodeReceiver> Start(std::vector<std::string> extra, int* port) {
    auto rx =
        std::make_unique<NodeReceiver>(node_, e2e_ / "otlp_receiver.mjs", out_, std::move(extra));
    *port = rx->WaitListening(std::chrono::seconds(20));
    return rx;
  }

  std::vector<std::string> Lines() const {
    std::vector<std::string> lines;
    std::ifstream in(out_);
    for (std::string l; std::getline(in, l);) {
      if (!l.empty()) lines.push_back(l);
    }
    return lines;
  }

  ExporterOptions Options(int port) const {
    ExporterOptions o;
    o.endpoint_configured = true;
    o.endpoint = {"127.0.0.1:" + std::to_string(port), true, "http"};
    o.batch_timeout = absl::Milliseconds(20);
    o.timeout = absl::Seconds(5);
    o.retry.initial_backoff = absl::Milliseconds(20);
    return o;
  }

  fs::path e2e_;
  fs::path out_;
  std::string node_;
};

correlate::Span Span(uint8_t n) {
  correlate::Span s;
  for (uint8_t i = 0; i < 16; ++i) s.trace_id[i] = static_cast<uint8_t>(i + 1);
  for (uint8_t i = 0; i < 8; ++i) s.span_id[i] = static_cast<uint8_t>(0xa0 + i);
  s.span_id[7] = n;
  s.kind = correlate::SpanKind::kServer;
  s.start_unix_ns = 1'700'000'000'000'000'000ULL + n;  // above 2^53: precision matters
  s.end_unix_ns = s.start_unix_ns + 5'000'000;
  s.method = "GET";
  s.path = "/api/v1/items";
  s.status_code = 200;
  s.protocol_version = "1.1";
  s.client_address = "127.0.0.1";
  s.client_port = 40000;
  s.server_address = "127.0.0.1";
  s.server_port = 8080;
  s.breakdown.runq_ns = 123456789012;
  s.breakdown.downstream_ns = 9007199254740993;  // above 2^53: a string in the JSON
  s.verdict = correlate::SpanVerdict{"api", "kernel", "runqueue", 0.25, "slow"};
  return s;
}

TEST_F(OtlpRoundTrip, NodeReceiverDecodesOurSpansAndLogs) {
  int port = 0;
  auto rx = Start({}, &port);
  ASSERT_GT(port, 0) << "otlp_receiver.mjs did not print LISTENING";

  auto web = std::make_shared<correlate::Resource>();
  web->attributes = {{"service.name", std::string("web")}, {"process.pid", int64_t{4242}}};
  auto api = std::make_shared<correlate::Resource>();
  api->attributes = {{"service.name", std::string("api")}};

  auto traces = TraceExporter::Create(Options(port));
  ASSERT_TRUE(traces.ok()) << traces.status();
  auto root = Span(1);
  root.tracestate = "k=v";
  auto child = Span(2);
  child.kind = correlate::SpanKind::kClient;
  child.parent_span_id = root.span_id;
  child.host_header = "api.local:9000";
  child.server_address = "127.0.0.2";
  child.server_port = 9000;
  child.status_code = 503;
  child.error_type = "503";
  child.query = "q=1";
  child.verdict.reset();
  correlate::Incident retransmit;
  retransmit.kind = correlate::IncidentKind::kTcpRetransmit;
  retransmit.time_unix_ns = 1'700'000'000'000'000'010ULL;
  child.incidents = {retransmit};
  auto third = Span(3);
  third.status_code = 500;
  third.error_type = "500";
  ASSERT_TRUE((*traces)->Enqueue(web, root));
  ASSERT_TRUE((*traces)->Enqueue(web, child));
  ASSERT_TRUE((*traces)->Enqueue(api, third));
  ASSERT_TRUE((*traces)->Shutdown(absl::Now() + absl::Seconds(20)).ok());
  EXPECT_EQ((*traces)->Stats().sent, 3u);

  auto logs = LogsExporter::Create(Options(port));
  ASSERT_TRUE(logs.ok()) << logs.status();
  LogRecord verdict;
  verdict.time_unix_ns = 1'700'000'000'000'000'123ULL;
  verdict.severity_number = 13;
  verdict.severity_text = "WARN";
  verdict.body = "kernel runqueue explains 62%";
  verdict.attributes = {{"isotrace.verdict.layer", std::string("kernel")}};
  verdict.trace_id = root.trace_id;
  verdict.span_id = root.span_id;
  verdict.trace_flags = 1;
  ASSERT_TRUE((*logs)->Enqueue(web, verdict));
  ASSERT_TRUE((*logs)->Shutdown(absl::Now() + absl::Seconds(20)).ok());
  EXPECT_EQ((*logs)->Stats().sent, 1u);

  const auto lines = Lines();
  ASSERT_EQ(lines.size(), 4u) << "receiver wrote: " << ::testing::PrintToString(lines);
  std::vector<std::string> spans, records;
  for (const auto& l : lines) {
    if (l.find(R"("kind":"span")") != std::string::npos) spans.push_back(l);
    if (l.find(R"("kind":"log")") != std::string::npos) records.push_back(l);
  }
  ASSERT_EQ(spans.size(), 3u);
  ASSERT_EQ(records.size(), 1u);
  // Spans of one request arrive in order within their resource; find each by span id.
  auto find = [&](const char* span_id) -> std::string {
    for (const auto& s : spans) {
      if (s.find(std::string(R"("spanId":")") + span_id + "\"") != std::string::npos) return s;
    }
    return "";
  };
  const std::string r = find("a0a1a2a3a4a5a601");
  const std::string c = find("a0a1a2a3a4a5a602");
  const std::string t = find("a0a1a2a3a4a5a603");
  ASSERT_FALSE(r.empty());
  ASSERT_FALSE(c.empty());
  ASSERT_FALSE(t.empty());

  EXPECT_THAT(r, HasSubstr(R"("resource":{"service.name":"web","process.pid":4242})"));
  EXPECT_THAT(r, HasSubstr(R"("scope":{"name":"isotrace","version":")" + std::string(Version())));
  EXPECT_THAT(r, HasSubstr(R"("traceId":"0102030405060708090a0b0c0d0e0f10")"));
  EXPECT_THAT(r, HasSubstr(R"("parentSpanId":"")"));
  EXPECT_THAT(r, HasSubstr(R"("traceState":"k=v")"));
  EXPECT_THAT(r, HasSubstr(R"("name":"GET","spanKind":2)"));
  EXPECT_THAT(r, HasSubstr(R"("startTimeUnixNano":"1700000000000000001")"));
  EXPECT_THAT(r, HasSubstr(R"("endTimeUnixNano":"1700000000005000001")"));
  EXPECT_THAT(r, HasSubstr(R"("http.request.method":"GET")"));
  EXPECT_THAT(r, HasSubstr(R"("url.path":"/api/v1/items")"));
  EXPECT_THAT(r, HasSubstr(R"("http.response.status_code":200)"));
  EXPECT_THAT(r, HasSubstr(R"("network.protocol.version":"1.1")"));
  EXPECT_THAT(r, HasSubstr(R"("server.port":8080)"));
  EXPECT_THAT(r, HasSubstr(R"("client.address":"127.0.0.1","client.port":40000)"));
  EXPECT_THAT(r, HasSubstr(R"("isotrace.kernel.runq_ns":123456789012)"));
  EXPECT_THAT(r, HasSubstr(R"("isotrace.verdict.share":0.25)"));
  EXPECT_THAT(r, HasSubstr(R"("isotrace.downstream_ns":"9007199254740993")"));
  EXPECT_THAT(r, HasSubstr(R"("isotrace.verdict.service":"api","isotrace.verdict.layer":"kernel",)"
                           R"("isotrace.verdict.cause":"runqueue","isotrace.verdict.share":0.25,)"
                           R"("isotrace.verdict.reason":"slow")"));
  EXPECT_THAT(r, HasSubstr(R"("isotrace.kernel.runq_ns":"int")"));
  EXPECT_THAT(r, HasSubstr(R"("isotrace.verdict.share":"double")"));
  EXPECT_THAT(r, HasSubstr(R"("status":{"code":0,"message":""})"));

  EXPECT_THAT(c, HasSubstr(R"("parentSpanId":"a0a1a2a3a4a5a601")"));
  EXPECT_THAT(c, HasSubstr(R"("spanKind":3)"));
  EXPECT_THAT(c, HasSubstr(R"("server.address":"api.local","server.port":9000)"));
  EXPECT_THAT(c, HasSubstr(R"("url.full":"http://api.local:9000/api/v1/items?q=1")"));
  EXPECT_THAT(c, HasSubstr(R"("error.type":"503")"));
  EXPECT_THAT(c, Not(HasSubstr("client.address")));
  EXPECT_THAT(
      c,
      HasSubstr(
          R"("events":[{"name":"tcp_retransmit","timeUnixNano":"1700000000000000010","attributes":{"isotrace.verdict.layer":"network"}}])"));
  EXPECT_THAT(c, Not(HasSubstr("isotrace.verdict.share")));
  EXPECT_THAT(c, HasSubstr(R"("status":{"code":2,"message":""})"));

  EXPECT_THAT(t, HasSubstr(R"("resource":{"service.name":"api"})"));
  EXPECT_THAT(t, HasSubstr(R"("status":{"code":2,"message":""})"));

  const std::string& l = records[0];
  EXPECT_THAT(l, HasSubstr(R"("timeUnixNano":"1700000000000000123")"));
  EXPECT_THAT(l, HasSubstr(R"("severityNumber":13,"severityText":"WARN")"));
  EXPECT_THAT(l, HasSubstr(R"("body":"kernel runqueue explains 62%")"));
  EXPECT_THAT(l, HasSubstr(R"("attributes":{"isotrace.verdict.layer":"kernel"})"));
  EXPECT_THAT(
      l,
      HasSubstr(
          R"("traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"a0a1a2a3a4a5a601","flags":1)"));
}

TEST_F(OtlpRoundTrip, OurClientUnderstandsTheReceiversPartialSuccess) {
  int port = 0;
  auto rx = Start({"--partial-rejected", "1"}, &port);
  ASSERT_GT(port, 0);
  auto o = Options(port);
  o.batch_timeout = absl::Seconds(30);  // one batch, sent by Shutdown
  auto traces = TraceExporter::Create(o);
  ASSERT_TRUE(traces.ok());
  for (uint8_t i = 1; i <= 3; ++i) ASSERT_TRUE((*traces)->Enqueue(nullptr, Span(i)));
  ASSERT_TRUE((*traces)->Shutdown(absl::Now() + absl::Seconds(20)).ok());
  const auto s = (*traces)->Stats();
  EXPECT_EQ(s.sent, 2u);
  EXPECT_EQ(s.dropped.at("rejected"), 1u);
  EXPECT_EQ(s.accepted, s.sent + s.dropped_total());
  EXPECT_EQ(Lines().size(), 2u);
}

TEST_F(OtlpRoundTrip, RetriesThroughTheReceiversInjectedUnavailable) {
  int port = 0;
  auto rx = Start({"--fail-code", "14", "--fail-first", "2"}, &port);
  ASSERT_GT(port, 0);
  auto traces = TraceExporter::Create(Options(port));
  ASSERT_TRUE(traces.ok());
  ASSERT_TRUE((*traces)->Enqueue(nullptr, Span(1)));
  ASSERT_TRUE((*traces)->Shutdown(absl::Now() + absl::Seconds(20)).ok());
  const auto s = (*traces)->Stats();
  EXPECT_EQ(s.sent, 1u);
  EXPECT_EQ(s.export_failures.at("UNAVAILABLE"), 2u);
  EXPECT_EQ(Lines().size(), 1u);
}

}  // namespace
}  // namespace isotrace::otlp
