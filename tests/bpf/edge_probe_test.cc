// Loads the real probe, puts its edge program (TC, bpf/edge.bpf.h) on the host side of a
// real veth whose other end is in a network namespace of its own, where a real HTTP
// server (Debian's python3 http.server) runs: the sandbox stand-in. The test process's
// own requests cross the veth; what the probe reports, after reassembly and the real
// ConnectionTracker, must be one SERVER span per request with the sandbox's side as
// the server, method, path and status right, and the breakdown flagged sandbox-level.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon/correlate/connection_tracker.h"
#include "daemon/probes/environment.h"
#include "daemon/probes/l7_probe.h"
#include "gtest/gtest.h"

namespace isotrace::probes {
namespace {

bool RequireBpf() {
  const char* v = getenv("ISOTRACE_REQUIRE_BPF");
  return v && std::string(v) == "1";
}

int Sh(const std::string& cmd) { return system((cmd + " >/dev/null 2>&1").c_str()); }

class EdgeProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InstallLibbpfLogger(false);
    if (auto st = CheckBpfEnvironment(L7Tracepoints()); !st.ok()) {
      if (RequireBpf()) FAIL() << "BPF environment: " << st;
      GTEST_SKIP() << "BPF unavailable: " << st;
    }
    if (geteuid() != 0) {
      if (RequireBpf()) FAIL() << "needs root";
      GTEST_SKIP() << "needs root";
    }
    const std::string id = std::to_string(getpid() % 100000);
    ns_ = "ited" + id;
    host_ = "itedh" + id;
    Sh("ip netns del " + ns_);
    ASSERT_EQ(Sh("ip netns add " + ns_), 0);
    ASSERT_EQ(Sh("ip link add " + host_ + " type veth peer name eth0 netns " + ns_), 0);
    ASSERT_EQ(Sh("ip addr add 10.239.7.1/24 dev " + host_ + " && ip link set " + host_ + " up"), 0);
    ASSERT_EQ(Sh("ip -n " + ns_ + " addr add 10.239.7.2/24 dev eth0 && ip -n " + ns_ +
                 " link set eth0 up && ip -n " + ns_ + " link set lo up"),
              0);
    server_ = fork();
    ASSERT_GE(server_, 0);
    if (server_ == 0) {
      execlp("ip", "ip", "netns", "exec", ns_.c_str(), "/usr/bin/python3", "-m", "http.server", "8080",
             "--bind", "10.239.7.2", "--directory", "/usr/share/doc", nullptr);
      _exit(127);
    }
    bool up = false;
    for (int i = 0; i < 100 && !up; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      up = Request("/", nullptr);
    }
    ASSERT_TRUE(up) << "the server in the namespace did not answer";

    L7ProbeOptions opts;
    opts.target_tgid = 0x7ffffffe;  // no process's sockets: only the edge
    opts.edge = false;              // no scan: this test attaches its device itself
    auto p = L7Probe::Create(opts, [this](const SocketEvent& ev) {
      if (ev.edge) {
        events_.push_back(ev);
        payloads_.emplace_back(ev.payload);
        tracker_.OnEvent(ev);
      }
    });
    if (!p.ok()) {
      if (RequireBpf()) FAIL() << "loading the probe: " << p.status();
      GTEST_SKIP() << "cannot load the probe: " << p.status();
    }
    probe_ = std::move(*p);
  }

  void TearDown() override {
    probe_.reset();  // detaches its filters
    if (server_ > 0) {
      kill(server_, SIGTERM);
      waitpid(server_, nullptr, 0);
    }
    Sh("pkill -f 'http.server 8080 --bind 10.239.7.2'");
    Sh("ip link del " + host_);
    Sh("ip netns del " + ns_);
  }

  // One HTTP/1.1 GET over a new connection; the answer's status line into *status.
  bool Request(const std::string& path, std::string* status) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(8080);
    inet_pton(AF_INET, "10.239.7.2", &a.sin_addr);
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      close(fd);
      return false;
    }
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n";
    if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
      close(fd);
      return false;
    }
    std::string resp;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) resp.append(buf, static_cast<size_t>(n));
    close(fd);
    if (status) *status = resp.substr(0, resp.find("\r\n"));
    return resp.rfind("HTTP/1.", 0) == 0;
  }

  std::string ns_, host_;
  pid_t server_ = -1;
  std::unique_ptr<L7Probe> probe_;
  std::vector<SocketEvent> events_;
  std::vector<std::string> payloads_;
  util::Clock clock_;
  std::vector<correlate::Span> spans_;
  correlate::ConnectionTracker tracker_{correlate::TrackerLimits{}, &clock_,
                                        [this](correlate::Span&& s) { spans_.push_back(std::move(s)); }};
};

TEST_F(EdgeProbeTest, RequestsIntoANamespaceBecomeServerSpansAtTheVeth) {
  const unsigned ifindex = if_nametoindex(host_.c_str());
  ASSERT_NE(ifindex, 0u);
  EdgeOwner owner{static_cast<uint32_t>(server_), 12345, 0, "sandbox"};
  ASSERT_TRUE(probe_->AttachEdge(ifindex, owner, {static_cast<uint32_t>(server_)}).ok());

  std::string st1, st2, st3;
  ASSERT_TRUE(Request("/", &st1));
  ASSERT_TRUE(Request("/missing-file?q=1", &st2));
  ASSERT_TRUE(Request("/", &st3));
  for (int i = 0; i < 20 && spans_.size() < 3; i++) ASSERT_TRUE(probe_->Poll(100).ok());

  ASSERT_EQ(spans_.size(), 3u) << events_.size() << " edge events";
  EXPECT_EQ(spans_[1].method, "GET");
  EXPECT_EQ(spans_[1].path, "/missing-file");
  EXPECT_EQ(spans_[1].query, "q=1");
  EXPECT_EQ(spans_[1].status_code, 404) << st2;
  for (const auto& s : spans_) {
    EXPECT_EQ(s.kind, correlate::SpanKind::kServer);
    EXPECT_EQ(s.server_address, "10.239.7.2");
    EXPECT_EQ(s.server_port, 8080);
    EXPECT_EQ(s.client_address, "10.239.7.1");
    EXPECT_EQ(s.process.tgid, static_cast<uint32_t>(server_));
    EXPECT_TRUE(s.edge);
    EXPECT_GT(s.end_unix_ns, s.start_unix_ns);
  }
  EXPECT_EQ(spans_[0].status_code, 200) << st1;
  // Every data record is in order per direction with no gap (a clean veth).
  const auto c = probe_->counters();
  EXPECT_EQ(c.edge_devices, 1u);
  EXPECT_GT(c.edge_packets, 0u);
  EXPECT_EQ(c.edge.holes, 0u);
  bool saw_fin = false, saw_close = false;
  for (const auto& e : events_) {
    saw_fin |= e.kind == SocketEvent::Kind::kFin;
    saw_close |= e.kind == SocketEvent::Kind::kClose;
  }
  EXPECT_TRUE(saw_fin);
  EXPECT_TRUE(saw_close);

  // Detached: nothing more is reported.
  probe_->DetachEdge(ifindex);
  const size_t before = events_.size();
  ASSERT_TRUE(Request("/", nullptr));
  ASSERT_TRUE(probe_->Poll(200).ok());
  EXPECT_EQ(events_.size(), before);
}

TEST_F(EdgeProbeTest, SandboxThreadsTimeRidesOnEdgePackets) {
  const unsigned ifindex = if_nametoindex(host_.c_str());
  ASSERT_NE(ifindex, 0u);
  EdgeOwner owner{static_cast<uint32_t>(server_), 12345, 0, "sandbox"};
  // The server process (python under `ip netns exec`, which exec()s it: same pid).
  ASSERT_TRUE(probe_->AttachEdge(ifindex, owner, {static_cast<uint32_t>(server_)}).ok());
  for (int i = 0; i < 5; i++) ASSERT_TRUE(Request("/", nullptr));
  for (int i = 0; i < 20 && spans_.size() < 5; i++) ASSERT_TRUE(probe_->Poll(100).ok());
  ASSERT_EQ(spans_.size(), 5u);
  uint64_t last_oncpu = 0;
  bool grew = false;
  for (const auto& e : events_) {
    if (e.kind != SocketEvent::Kind::kData) continue;
    ASSERT_TRUE(e.acct.valid) << "an edge record without the group's accounting";
    grew |= last_oncpu && e.acct.oncpu_ns > last_oncpu;
    last_oncpu = e.acct.oncpu_ns;
  }
  EXPECT_TRUE(grew) << "the server's threads' on-CPU time never moved across 5 requests";
  for (const auto& s : spans_) {
    ASSERT_TRUE(s.breakdown.thread_accounting());
    EXPECT_TRUE(s.breakdown.sandbox_scope);
    const int64_t dur = static_cast<int64_t>(s.end_unix_ns - s.start_unix_ns);
    const int64_t sum = *s.breakdown.oncpu_ns + *s.breakdown.runq_ns + *s.breakdown.throttled_ns +
                        *s.breakdown.blkio_ns + s.breakdown.memstall_ns.value_or(0) +
                        *s.breakdown.offcpu_other_ns;
    EXPECT_NEAR(static_cast<double>(sum), static_cast<double>(dur), dur * 0.01 + 1000);
  }
}

// This process's mappings of BPF maps (ring buffers) exactly `bytes` long.
int BpfMappingsOfSize(size_t bytes) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(maps, line)) {
    if (line.find("bpf-map") == std::string::npos) continue;
    unsigned long lo = 0, hi = 0;
    if (sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2 && hi - lo == bytes) n++;
  }
  return n;
}

// Edge records are submitted without a wake-up, and the reader waits up to 200 ms when
// idle: a burst into a sandbox must not fill the ring meanwhile. Past a quarter of the
// ring the kernel wakes the reader, once per reader cycle, long before its timer.
TEST_F(EdgeProbeTest, AFillingEdgeRingWakesTheReaderBeforeItsTimer) {
  probe_.reset();
  L7ProbeOptions opts;
  opts.target_tgid = 0x7ffffffe;
  opts.edge = false;
  opts.edge_ringbuf_bytes = 128u << 10;  // woken past 32 KiB unread
  auto p = L7Probe::Create(opts, [this](const SocketEvent& ev) {
    if (ev.edge) events_.push_back(ev);
  });
  ASSERT_TRUE(p.ok()) << p.status();
  probe_ = std::move(*p);
  // The edge ring is mapped (its data pages twice, plus the producer page) only once an
  // edge is attached: no RSS for it on a node without sandboxes.
  const size_t edge_map_bytes = 4096 + 2 * (128u << 10);
  EXPECT_EQ(BpfMappingsOfSize(edge_map_bytes), 0);
  const unsigned ifindex = if_nametoindex(host_.c_str());
  ASSERT_NE(ifindex, 0u);
  EdgeOwner owner{static_cast<uint32_t>(server_), 12345, 0, "sandbox"};
  ASSERT_TRUE(probe_->AttachEdge(ifindex, owner, {static_cast<uint32_t>(server_)}).ok());
  EXPECT_EQ(BpfMappingsOfSize(edge_map_bytes), 1);
  // Nothing unread, and the reader's readiness settled (a level-triggered ring stays on
  // epoll's ready list until a wait finds it empty).
  ASSERT_TRUE(probe_->Poll(0).ok());
  ASSERT_TRUE(probe_->Poll(0).ok());
  const uint64_t wakeups_before = probe_->counters().wakeups;
  events_.clear();

  // A burst, nobody reading: about 4 KiB of records a request (10 packets, the ones
  // with payload 1.1 KiB records), about 64 KiB in all.
  for (int i = 0; i < 16; i++) ASSERT_TRUE(Request("/", nullptr));
  const auto t0 = std::chrono::steady_clock::now();
  auto n = probe_->Poll(3000);
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(n.ok());
  EXPECT_GT(*n, 0);
  EXPECT_LT(waited, std::chrono::milliseconds(1500)) << "the reader slept to its timer with "
                                                      << events_.size() << " records unread";
  EXPECT_GT(probe_->counters().wakeups, wakeups_before);
}

}  // namespace
}  // namespace isotrace::probes
