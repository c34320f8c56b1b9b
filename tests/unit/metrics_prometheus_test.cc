// The Prometheus side: OTel → Prometheus names and units, the exact text of a small
// snapshot (cumulative buckets, families grouped across resources, escaping), listen
// addresses, and the /metrics HTTP endpoint over a real loopback socket.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "exporters/prometheus/server.h"
#include "exporters/prometheus/text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace isotrace::prometheus {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

metrics::Metric M(std::string name, std::string unit, metrics::MetricType type) {
  metrics::Metric m;
  m.name = std::move(name);
  m.unit = std::move(unit);
  m.type = type;
  return m;
}

TEST(PrometheusNames, FollowTheCompatibilitySpec) {
  using metrics::MetricType;
  EXPECT_EQ(FamilyName(M("http.server.request.duration", "s", MetricType::kHistogram)),
            "http_server_request_duration_seconds");
  EXPECT_EQ(FamilyName(M("isotrace.probe.events", "{event}", MetricType::kCounter)),
            "isotrace_probe_events_total");
  EXPECT_EQ(FamilyName(M("isotrace.export.spans.dropped", "{span}", MetricType::kCounter)),
            "isotrace_export_spans_dropped_total");
  EXPECT_EQ(FamilyName(M("isotrace.export.queue.size", "{span}", MetricType::kGauge)),
            "isotrace_export_queue_size");
  EXPECT_EQ(FamilyName(M("isotrace.layer.time", "s", MetricType::kCounter)),
            "isotrace_layer_time_seconds_total");
  EXPECT_EQ(FamilyName(M("process.memory.usage", "By", MetricType::kGauge)),
            "process_memory_usage_bytes");
  EXPECT_EQ(FamilyName(M("cpu.utilization", "1", MetricType::kGauge)), "cpu_utilization_ratio");
  EXPECT_EQ(FamilyName(M("net.io", "By/s", MetricType::kGauge)), "net_io_bytes_per_second");
  // A unit already in the name is not repeated; neither is _total.
  EXPECT_EQ(FamilyName(M("x.seconds", "s", MetricType::kCounter)), "x_seconds_total");
  EXPECT_EQ(FamilyName(M("x.total", "", MetricType::kCounter)), "x_total");
  EXPECT_EQ(SanitizeName("9lives..a-b"), "_9lives_a_b");
  EXPECT_EQ(SanitizeLabel("service.name"), "service_name");
  EXPECT_EQ(SanitizeLabel("1st"), "key_1st");
  EXPECT_EQ(SanitizeLabel("a:b"), "a_b");
  EXPECT_EQ(SanitizeLabel("le"), "keyle");
  EXPECT_EQ(SanitizeLabel("__name__"), "_name_");  // runs of _ collapse: never reserved
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(FormatDouble(0.005), "0.005");
  EXPECT_EQ(FormatDouble(10), "10");
  EXPECT_EQ(FormatDouble(1.0 / 0.0), "+Inf");
}

TEST(PrometheusText, RendersASnapshotExactly) {
  metrics::Snapshot snap;
  for (const char* svc : {"a", "b"}) {
    metrics::ResourceMetrics rm;
    auto r = std::make_shared<correlate::Resource>();
    r->attributes = {{"service.name", std::string(svc)}, {"k8s.namespace.name", std::string("ns\"1")}};
    rm.resource = r;
    metrics::Metric h = M("http.server.request.duration", "s", metrics::MetricType::kHistogram);
    h.description = "Duration of HTTP server requests.";
    h.integer = false;
    metrics::Point p;
    p.attributes = {{"http.request.method", std::string("GET")},
                    {"http.response.status_code", int64_t{200}}};
    p.histogram.bounds = {0.005, 0.01};
    p.histogram.counts = {2, 0, 1};
    p.histogram.count = 3;
    p.histogram.sum = 1.5;
    h.points.push_back(p);
    rm.metrics.push_back(h);
    metrics::Metric c = M("isotrace.http.requests", "{request}", metrics::MetricType::kCounter);
    c.description = "Requests.";
    metrics::Point cp;
    cp.value = 3;
    // A point attribute named like a resource label replaces it.
    cp.attributes = {{"service.name", std::string("override")}};
    c.points.push_back(cp);
    rm.metrics.push_back(c);
    snap.resources.push_back(rm);
  }
  const std::string text = RenderText(snap);
  const std::string expected =
      "# HELP http_server_request_duration_seconds Duration of HTTP server requests.\n"
      "# TYPE http_server_request_duration_seconds histogram\n"
      "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_status_code=\"200\",k8s_namespace_name=\"ns\\\"1\",service_name=\"a\",le=\"0.005\"} 2\n"
      "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_status_code=\"200\",k8s_namespace_name=\"ns\\\"1\",service_name=\"a\",le=\"0.01\"} 2\n"
      "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_status_code=\"200\",k8s_namespace_name=\"ns\\\"1\",service_name=\"a\",le=\"+Inf\"} 3\n"
      "http_server_request_duration_seconds_sum{http_request_method=\"GET\",http_response_status_code=\"200\",k8s_namespace_name=\"ns\\\"1\",service_name=\"a\"} 1.5\n"
      "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",k8s_namespace_name=\"ns\\\"1\",service_name=\"a\"} 3\n"
      "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_status_code=\"200\",k8s_namespace_name=\"ns\\\"1\",service_name=\"b\",le=\"0.005\"} 2\n"
      "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_status_code=\"200\",k8s_namespace_name=\"ns\\\"1\",service_name=\"b\",le=\"0.01\"} 2\n"
      "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_status_code=\"200\",k8s_namespace_name=\"ns\\\"1\",service_name=\"b\",le=\"+Inf\"} 3\n"
      "http_server_request_duration_seconds_sum{http_request_method=\"GET\",http_response_status_code=\"200\",k8s_namespace_name=\"ns\\\"1\",service_name=\"b\"} 1.5\n"
      "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",k8s_namespace_name=\"ns\\\"1\",service_name=\"b\"} 3\n"
      "# HELP isotrace_http_requests_total Requests.\n"
      "# TYPE isotrace_http_requests_total counter\n"
      "isotrace_http_requests_total{k8s_namespace_name=\"ns\\\"1\",service_name=\"override\"} 3\n"
      "isotrace_http_requests_total{k8s_namespace_name=\"ns\\\"1\",service_name=\"override\"} 3\n";
  EXPECT_EQ(text, expected);
}

TEST(PrometheusText, BadBytesAndReservedLabelsCannotBreakAScrape) {
  metrics::Snapshot snap;
  metrics::ResourceMetrics rm;
  auto r = std::make_shared<correlate::Resource>();
  r->attributes = {{"service.name", std::string("caf\xe9")}, {"le", std::string("x")}};
  rm.resource = r;
  metrics::Metric h = M("d", "s", metrics::MetricType::kHistogram);
  metrics::Point p;
  p.histogram.bounds = {1};
  p.histogram.counts = {1, 0};
  p.histogram.count = 1;
  h.points.push_back(p);
  rm.metrics.push_back(h);
  snap.resources.push_back(rm);
  const std::string text = RenderText(snap);
  EXPECT_THAT(text, HasSubstr("d_seconds_bucket{keyle=\"x\",service_name=\"caf\xef\xbf\xbd\",le=\"1\"} 1\n"));
}

TEST(PrometheusListen, ParsesAddressesAndKnowsLoopback) {
  auto a = ParseListenAddress("127.0.0.1:9464");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->loopback);
  EXPECT_EQ(a->port, 9464);
  EXPECT_EQ(a->ToString(), "127.0.0.1:9464");
  auto v6 = ParseListenAddress("[::1]:9000");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_TRUE(v6->loopback);
  EXPECT_EQ(v6->ToString(), "[::1]:9000");
  auto any = ParseListenAddress(":9464");
  ASSERT_TRUE(any.ok());
  EXPECT_FALSE(any->loopback);
  EXPECT_EQ(any->host, "0.0.0.0");
  EXPECT_TRUE(ParseListenAddress("localhost:1")->loopback);
  EXPECT_TRUE(ParseListenAddress("127.9.9.9:1")->loopback);
  for (const char* bad : {"127.0.0.1", "127.0.0.1:99999", "example.com:80", "::1:80", "[::1", "1.2.3.4:x"}) {
    auto st = ParseListenAddress(bad);
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_THAT(std::string(st.status().message()), HasSubstr("host:port")) << bad;
  }
}

// One HTTP/1.0 exchange over a fresh loopback connection.
std::string Http(uint16_t port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    close(fd);
    return "";
  }
  (void)!write(fd, request.data(), request.size());
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

TEST(PrometheusServer, ServesMetricsOnLoopback) {
  auto addr = ParseListenAddress("127.0.0.1:0");
  ASSERT_TRUE(addr.ok());
  int renders = 0;
  auto srv = MetricsServer::Start(*addr, [&] {
    ++renders;
    return std::string("# TYPE up gauge\nup 1\n");
  });
  ASSERT_TRUE(srv.ok()) << srv.status();
  uint16_t port = (*srv)->port();
  ASSERT_NE(port, 0);

  std::string ok = Http(port, "GET /metrics HTTP/1.0\r\n\r\n");
  EXPECT_THAT(ok, HasSubstr(" 200 OK\r\n"));
  EXPECT_THAT(ok, HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(ok, HasSubstr("\r\n\r\n# TYPE up gauge\nup 1\n"));
  EXPECT_EQ(renders, 1);
  EXPECT_EQ((*srv)->scrapes(), 1u);

  EXPECT_THAT(Http(port, "GET /nope HTTP/1.0\r\n\r\n"), HasSubstr(" 404 "));
  EXPECT_THAT(Http(port, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n"), HasSubstr(" 405 "));
  std::string head = Http(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_THAT(head, HasSubstr(" 200 "));
  EXPECT_THAT(head, Not(HasSubstr("up 1")));

  // A second server on the same port fails with a message that says what to change.
  ListenAddress same = *addr;
  same.port = port;
  reinterpret_cast<sockaddr_in*>(&same.addr)->sin_port = htons(port);
  auto clash = MetricsServer::Start(same, [] { return std::string(); });
  ASSERT_FALSE(clash.ok());
  EXPECT_THAT(std::string(clash.status().message()), HasSubstr("127.0.0.1:"));
}

}  // namespace
}  // namespace isotrace::prometheus
