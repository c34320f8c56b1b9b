// The local API and what the CLI makes of it: the unix-socket server (mode, stale
// sockets, a second daemon, clean removal), a real client call through it, and the
// rendering of `top` (80 columns, filters, sorting, JSON) and `trace` (tree and bars).

#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "daemon/api/convert.h"
#include "daemon/api/server.h"
#include "daemon/cli/render.h"
#include "daemon/cli/source.h"
#include "daemon/metrics/aggregator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace isotrace {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr uint64_t kSec = 1000000000ull;
constexpr uint64_t kT0 = 1'700'000'000ull * kSec;

std::string TempDir() {
  char tmpl[] = "/tmp/isotrace-api-test-XXXXXX";
  char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d;
}

std::shared_ptr<const correlate::Resource> Res(const std::string& svc, const std::string& ns,
                                               const std::string& stack) {
  auto r = std::make_shared<correlate::Resource>();
  r->attributes = {{"service.name", svc}, {"process.pid", int64_t{42}}};
  if (!ns.empty()) r->attributes.push_back({"k8s.namespace.name", ns});
  if (!stack.empty()) r->attributes.push_back({"isotrace.stack", stack});
  return r;
}

correlate::Span Span(uint8_t id, uint8_t parent, uint64_t start_off_ns, uint64_t dur_ns, int status = 200) {
  correlate::Span s;
  s.trace_id.fill(0x11);
  s.span_id[7] = id;
  if (parent) s.parent_span_id[7] = parent;
  s.kind = correlate::SpanKind::kServer;
  s.method = "GET";
  s.path = "/p" + std::to_string(id);
  s.status_code = status;
  if (status >= 500) s.error_type = std::to_string(status);
  s.start_unix_ns = kT0 + start_off_ns;
  s.end_unix_ns = s.start_unix_ns + dur_ns;
  s.process.tgid = 42;
  return s;
}

// A TopResponse from a real aggregator: "checkout" (fast, one 500) and "db" (slow).
api::v1::TopResponse SampleTop() {
  uint64_t now = kT0 + kSec / 2;
  metrics::AggregatorOptions o;
  o.now_unix_ns = [&now] { return now; };
  o.process_stats = false;
  metrics::Aggregator agg(o);
  auto checkout = Res("checkout", "shop", "vm:kvm/container:runc");
  auto db = Res("db", "data", "vm:kvm/container:crun");
  for (int i = 0; i < 9; ++i) agg.Record(checkout, Span(1, 0, 0, 2000000));
  agg.Record(checkout, Span(2, 0, 0, 2000000, 500));
  auto slow = Span(3, 0, 0, 50000000);
  slow.breakdown.oncpu_ns = 10000000;
  slow.breakdown.blkio_ns = 30000000;
  slow.verdict = correlate::SpanVerdict{"", "kernel", "block_io", 0.6, "slow"};
  agg.Record(db, slow);
  now += 2 * kSec;
  return api::TopResponseFrom(agg.Top(5), "node-1", "daemon");
}

TEST(ApiServer, ServesTopAndTraceOverARootOnlySocket) {
  const std::string dir = TempDir();
  const std::string path = dir + "/sub/isotrace.sock";  // the directory is created
  api::ApiHandlers h;
  h.top = [](const api::v1::TopRequest& req) {
    auto r = SampleTop();
    r.set_window_seconds(req.window_seconds());
    return r;
  };
  std::vector<api::SpanWithResource> held = {{Res("a", "", ""), Span(1, 0, 0, 1000)},
                                             {Res("b", "", ""), Span(2, 1, 10, 100)}};
  h.get_trace = [&](const api::v1::GetTraceRequest& req) {
    correlate::TraceId id{};
    std::copy(req.trace_id().begin(), req.trace_id().end(), id.begin());
    return api::TraceResponseFrom(held, id);
  };
  auto srv = api::ApiServer::Start({path, ""}, h);
  ASSERT_TRUE(srv.ok()) << srv.status();
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(cli::ProbeSocket(path), cli::SocketState::kAlive);

  auto client = cli::ConnectDaemon(path);
  ASSERT_TRUE(client.ok()) << client.status();
  auto top = (*client)->Top(3);
  ASSERT_TRUE(top.ok()) << top.status();
  EXPECT_EQ(top->window_seconds(), 3u);
  ASSERT_EQ(top->workloads_size(), 2);

  correlate::TraceId id;
  id.fill(0x11);
  auto tr = (*client)->GetTrace(id);
  ASSERT_TRUE(tr.ok()) << tr.status();
  EXPECT_EQ(tr->spans_size(), 2);
  EXPECT_EQ(tr->spans(1).service(), "b");
  id.fill(0x22);
  EXPECT_EQ((*client)->GetTrace(id)->spans_size(), 0);

  // A second daemon on the same path is refused and leaves the first one alone.
  auto second = api::ApiServer::Start({path, ""}, h);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE((*client)->Top(1).ok());

  (*srv)->Shutdown();
  EXPECT_NE(stat(path.c_str(), &st), 0) << "socket file left behind";
  EXPECT_EQ(cli::ProbeSocket(path), cli::SocketState::kAbsent);
  auto none = cli::ConnectDaemon(path);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
}

TEST(ApiServer, ReplacesAStaleSocketAndRefusesBadPaths) {
  const std::string dir = TempDir();
  const std::string path = dir + "/stale.sock";
  // A socket file nobody listens on, as a crashed daemon leaves it.
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strcpy(sa.sun_path, path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  close(fd);
  EXPECT_EQ(cli::ProbeSocket(path), cli::SocketState::kStale);
  auto srv = api::ApiServer::Start({path, ""}, {});
  ASSERT_TRUE(srv.ok()) << srv.status();
  EXPECT_EQ(cli::ProbeSocket(path), cli::SocketState::kAlive);

  EXPECT_EQ(api::ApiServer::Start({"relative.sock", ""}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(api::ApiServer::Start({dir + "/x.sock", "no-such-group-isotrace"}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::string not_socket = dir + "/file";
  close(creat(not_socket.c_str(), 0600));
  EXPECT_EQ(api::ApiServer::Start({not_socket, ""}, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(TopRender, FitsEightyColumnsAndWidensWithTheTerminal) {
  auto top = SampleTop();
  cli::ViewState state;
  auto lines = cli::RenderTable(top, state, 80);
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& l : lines) EXPECT_EQ(l.size(), 80u) << l;
  EXPECT_EQ(lines[0],
            "SERVICE      STACK   REQ/S ERR%   P50   P99 CPU RUNQ THROT  IO STALL STEAL RTX/s");
  EXPECT_THAT(lines[0], ::testing::Not(HasSubstr("VERDICT")));
  // Sorted by REQ/S, highest first: checkout (10 req) before db (1). The aggregator has
  // run 1.5 s, so the rates divide by that, not by the 5 s window.
  EXPECT_EQ(lines[1], "checkout     kvm/ru~   6.7   10 2.0ms 2.0ms   -    -     -   -     -     -     -");
  EXPECT_EQ(lines[2], "db           kvm/cr~   0.7  0.0  50ms  50ms  20    -     -  60     -     -     -");

  auto wide = cli::RenderTable(top, state, 132);
  for (const auto& l : wide) EXPECT_EQ(l.size(), 132u) << l;
  EXPECT_THAT(wide[0], HasSubstr("VERDICT"));
  EXPECT_THAT(wide[2], HasSubstr("kvm/crun"));
  EXPECT_THAT(wide[2], HasSubstr("kernel/block_io 60%"));

  auto narrow = cli::Layout(60);
  EXPECT_EQ(narrow.front().width, 6);
}

TEST(TopRender, FiltersAndSorts) {
  auto top = SampleTop();
  cli::ViewState state;
  state.filter = "ns:shop";
  auto rows = cli::VisibleRows(top, state);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]->service(), "checkout");
  state.filter = "stack:CRUN";
  ASSERT_EQ(cli::VisibleRows(top, state).size(), 1u);
  EXPECT_EQ(cli::VisibleRows(top, state)[0]->service(), "db");
  state.filter = "data";  // plain text: namespace matches
  EXPECT_EQ(cli::VisibleRows(top, state).size(), 1u);
  state.filter = "svc:nothing";
  EXPECT_TRUE(cli::VisibleRows(top, state).empty());
  state.filter.clear();
  state.sort = cli::Column::kP99;
  EXPECT_EQ(cli::VisibleRows(top, state)[0]->service(), "db");
  state.descending = false;
  EXPECT_EQ(cli::VisibleRows(top, state)[0]->service(), "checkout");
  cli::Column c;
  EXPECT_TRUE(cli::ParseColumnKey("p99", &c));
  EXPECT_EQ(c, cli::Column::kP99);
  EXPECT_TRUE(cli::ParseColumnKey("THROT", &c));
  EXPECT_FALSE(cli::ParseColumnKey("bogus", &c));
}

TEST(TopRender, CompactNumbers) {
  EXPECT_EQ(cli::FormatSeconds(0.00085), "850us");
  EXPECT_EQ(cli::FormatSeconds(0.0012), "1.2ms");
  EXPECT_EQ(cli::FormatSeconds(0.123), "123ms");
  EXPECT_EQ(cli::FormatSeconds(1.234), "1.23s");
  EXPECT_EQ(cli::FormatSeconds(12.34), "12.3s");
  EXPECT_EQ(cli::FormatRate(0.25), "0.2");
  EXPECT_EQ(cli::FormatRate(1234), "1234");
  EXPECT_EQ(cli::FormatRate(23700), "23.7k");
  EXPECT_EQ(cli::FormatPercent(0.1), "10");
  EXPECT_EQ(cli::FormatPercent(0.012), "1.2");
  for (double v : {0.0, 0.00099, 0.0099, 0.99, 9.99, 99.9, 5000.0})
    EXPECT_LE(cli::FormatSeconds(v).size(), 5u) << v;
  for (double v : {0.0, 99.9, 9999.0, 99999.0, 1e7}) EXPECT_LE(cli::FormatRate(v).size(), 5u) << v;
}

TEST(TopRender, JsonCarriesTheSameNumbers) {
  auto top = SampleTop();
  auto j = nlohmann::json::parse(cli::TopJson(top, cli::ViewState{}));
  EXPECT_EQ(j["host"], "node-1");
  EXPECT_EQ(j["mode"], "daemon");
  ASSERT_EQ(j["workloads"].size(), 2u);
  const auto& c = j["workloads"][0];
  EXPECT_EQ(c["service"], "checkout");
  EXPECT_EQ(c["namespace"], "shop");
  EXPECT_EQ(c["requests"], 10);
  EXPECT_EQ(c["errors"], 1);
  EXPECT_EQ(c["total_requests"], 10);
  EXPECT_DOUBLE_EQ(c["requests_per_second"].get<double>(), 10 / 1.5);
  EXPECT_TRUE(c["shares"].empty());
  EXPECT_TRUE(c["verdict"].is_null());
  EXPECT_TRUE(c["retransmits_per_second"].is_null());
  EXPECT_EQ(c["pids"][0], 42);
  const auto& d = j["workloads"][1];
  EXPECT_DOUBLE_EQ(d["shares"]["block_io"].get<double>(), 0.6);
  EXPECT_EQ(d["verdict"]["cause"], "block_io");
  EXPECT_EQ(d["resource"]["isotrace.stack"], "vm:kvm/container:crun");
  EXPECT_EQ(d["slowest_trace_id"].get<std::string>().size(), 32u);
}

TEST(TraceRender, IndentedTreeWithBreakdownBars) {
  std::vector<api::SpanWithResource> spans;
  auto root = Span(1, 0, 0, 100000000);
  root.breakdown.oncpu_ns = 50000000;
  root.breakdown.runq_ns = 25000000;
  root.verdict = correlate::SpanVerdict{"frontend", "app", "cpu", 0.5, "slow"};
  auto child = Span(2, 1, 10000000, 40000000);
  child.kind = correlate::SpanKind::kClient;
  auto grandchild = Span(3, 2, 12000000, 30000000);
  correlate::Incident retransmit;
  retransmit.kind = correlate::IncidentKind::kTcpRetransmit;
  retransmit.time_unix_ns = kT0;
  grandchild.incidents.push_back(retransmit);
  spans.push_back({Res("frontend", "", ""), grandchild});  // order of arrival: leaves first
  spans.push_back({Res("frontend", "", ""), child});
  spans.push_back({Res("frontend", "", ""), root});
  correlate::TraceId id;
  id.fill(0x11);
  auto resp = api::TraceResponseFrom(spans, id);
  auto lines = cli::RenderTrace(resp, api::HexId(std::string(16, '\x11')), 100);
  ASSERT_GE(lines.size(), 7u);
  EXPECT_EQ(lines[0], "trace 11111111111111111111111111111111: 3 spans on this node");
  EXPECT_THAT(lines[2], StartsWith("GET /p1 200  frontend[42]"));
  EXPECT_THAT(lines[2], HasSubstr("100ms |CCCCCCCCCCRRRRR.....|"));
  EXPECT_THAT(lines[3], StartsWith("  verdict: app/cpu"));
  EXPECT_THAT(lines[4], StartsWith("  GET /p2 200  frontend[42] client"));
  EXPECT_THAT(lines[4], HasSubstr("+10ms"));
  EXPECT_THAT(lines[4], HasSubstr("|no breakdown        |"));
  EXPECT_THAT(lines[5], StartsWith("    GET /p3 200"));
  EXPECT_THAT(lines[6], StartsWith("      ! tcp_retransmit"));
  for (const auto& l : lines) EXPECT_LE(l.size(), 100u) << l;
}

}  // namespace
}  // namespace isotrace
