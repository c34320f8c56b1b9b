// Loads the real l7 probe, performs real socket syscalls, and asserts each captured
// event field by field (Falco-style). A file write and a pipe write must produce nothing.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "daemon/probes/environment.h"
#include "daemon/probes/l7_probe.h"
#include "gtest/gtest.h"
#include "l7.h"

namespace isotrace::probes {
namespace {

struct Captured {
  SocketEvent ev;
  std::string payload;
  std::string comm;
};

bool RequireBpf() {
  const char* v = getenv("ISOTRACE_REQUIRE_BPF");
  return v && std::string(v) == "1";
}

class L7ProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InstallLibbpfLogger(false);
    if (auto st = CheckBpfEnvironment(L7Tracepoints()); !st.ok()) {
      if (RequireBpf()) FAIL() << "BPF environment: " << st;
      GTEST_SKIP() << "BPF unavailable: " << st;
    }
    L7ProbeOptions opts;
    opts.target_tgid = static_cast<uint32_t>(getpid());
    opts.self_tgid = 0xffffffffu;  // trace this test process itself
    opts.capture_bytes = 256;
    auto p = L7Probe::Create(opts, [this](const SocketEvent& ev) {
      events_.push_back({ev, std::string(ev.payload), std::string(ev.comm)});
    });
    if (!p.ok()) {
      if (RequireBpf()) FAIL() << "loading the l7 probe: " << p.status();
      GTEST_SKIP() << "cannot load the l7 probe: " << p.status();
    }
    probe_ = std::move(*p);
    tid_ = static_cast<uint32_t>(syscall(SYS_gettid));
  }

  // Polls until `want` events arrived or 3 s passed.
  void Drain(size_t want) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (events_.size() < want && std::chrono::steady_clock::now() < deadline) {
      ASSERT_TRUE(probe_->Poll(50).ok());
    }
    ASSERT_TRUE(probe_->Poll(50).ok());  // and anything beyond `want`
  }

  // A connected loopback pair: listener, client, accepted server fd.
  void MakePair(int* listener, int* client, int* server, uint16_t* port) {
    *listener = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(*listener, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(*listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(listen(*listener, 4), 0);
    socklen_t len = sizeof(addr);
    ASSERT_EQ(getsockname(*listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    *port = ntohs(addr.sin_port);
    *client = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(connect(*client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    *server = accept4(*listener, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(*server, 0);
  }

  std::vector<const Captured*> Of(int fd, SocketEvent::Kind kind) {
    std::vector<const Captured*> out;
    for (const auto& c : events_)
      if (c.ev.fd == fd && c.ev.kind == kind) out.push_back(&c);
    return out;
  }

  std::unique_ptr<L7Probe> probe_;
  std::vector<Captured> events_;
  uint32_t tid_ = 0;
};

TEST_F(L7ProbeTest, AcceptConnectReadWriteCloseFieldByField) {
  int listener, client, server;
  uint16_t port;
  MakePair(&listener, &client, &server, &port);
  const std::string req = "GET /probe-test HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(write(client, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  char buf[512];
  ASSERT_EQ(read(server, buf, sizeof(buf)), static_cast<ssize_t>(req.size()));
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  ASSERT_EQ(send(server, resp.data(), resp.size(), 0), static_cast<ssize_t>(resp.size()));
  ASSERT_EQ(recv(client, buf, sizeof(buf), 0), static_cast<ssize_t>(resp.size()));
  close(client);
  close(server);
  close(listener);
  Drain(7);

  const uint32_t pid = static_cast<uint32_t>(getpid());
  auto connects = Of(client, SocketEvent::Kind::kConnect);
  ASSERT_EQ(connects.size(), 1u);
  EXPECT_EQ(connects[0]->ev.tgid, pid);
  EXPECT_EQ(connects[0]->ev.tid, tid_);
  EXPECT_EQ(connects[0]->ev.ret, 0);
  EXPECT_EQ(connects[0]->ev.rport, port);
  EXPECT_EQ(connects[0]->ev.family, AF_INET);
  EXPECT_EQ(FormatAddress(AF_INET, connects[0]->ev.raddr), "127.0.0.1");

  auto accepts = Of(server, SocketEvent::Kind::kAccept);
  ASSERT_EQ(accepts.size(), 1u);
  EXPECT_EQ(accepts[0]->ev.syscall, L7_SYS_ACCEPT4);
  EXPECT_EQ(accepts[0]->ev.ret, server);
  EXPECT_EQ(accepts[0]->ev.lport, port);
  EXPECT_EQ(accepts[0]->ev.rport, connects[0]->ev.lport);
  EXPECT_NE(accepts[0]->ev.sock_id, 0u);
  EXPECT_NE(accepts[0]->ev.proc_start_ns, 0u);

  auto cdata = Of(client, SocketEvent::Kind::kData);
  ASSERT_EQ(cdata.size(), 2u);
  EXPECT_EQ(cdata[0]->ev.dir, SocketEvent::Direction::kEgress);
  EXPECT_EQ(cdata[0]->ev.syscall, L7_SYS_WRITE);
  EXPECT_EQ(cdata[0]->ev.ret, static_cast<int64_t>(req.size()));
  EXPECT_EQ(cdata[0]->payload, req);
  EXPECT_EQ(cdata[1]->ev.dir, SocketEvent::Direction::kIngress);
  EXPECT_EQ(cdata[1]->ev.syscall, L7_SYS_RECVFROM);  // recv() is recvfrom on x86-64
  EXPECT_EQ(cdata[1]->payload, resp);
  EXPECT_LE(cdata[0]->ev.ts_enter_ns, cdata[0]->ev.ts_exit_ns);

  auto sdata = Of(server, SocketEvent::Kind::kData);
  ASSERT_EQ(sdata.size(), 2u);
  EXPECT_EQ(sdata[0]->ev.dir, SocketEvent::Direction::kIngress);
  EXPECT_EQ(sdata[0]->ev.syscall, L7_SYS_READ);
  EXPECT_EQ(sdata[0]->ev.tid, tid_);
  EXPECT_EQ(sdata[0]->ev.ret, static_cast<int64_t>(req.size()));
  EXPECT_EQ(sdata[0]->payload, req);
  EXPECT_EQ(sdata[0]->ev.sock_id, accepts[0]->ev.sock_id);
  EXPECT_EQ(sdata[1]->ev.dir, SocketEvent::Direction::kEgress);
  EXPECT_EQ(sdata[1]->ev.syscall, L7_SYS_SENDTO);
  EXPECT_EQ(sdata[1]->payload, resp);
  EXPECT_GT(sdata[1]->ev.acct.oncpu_ns, 0u);
  EXPECT_GE(sdata[1]->ev.acct.oncpu_ns, sdata[0]->ev.acct.oncpu_ns);
  EXPECT_EQ(sdata[0]->comm, std::string(program_invocation_short_name).substr(0, 15));

  EXPECT_EQ(Of(client, SocketEvent::Kind::kClose).size(), 1u);
  EXPECT_EQ(Of(server, SocketEvent::Kind::kClose).size(), 1u);
  EXPECT_EQ(Of(listener, SocketEvent::Kind::kClose).size(), 1u);
}

TEST_F(L7ProbeTest, VectoredAndMsgSyscallsCaptureAcrossIovecs) {
  int listener, client, server;
  uint16_t port;
  MakePair(&listener, &client, &server, &port);
  std::string a = "POST /v HTTP/1.1\r\n", b = "Content-Length: 3\r\n\r\nabc";
  iovec iov[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
  ASSERT_EQ(writev(client, iov, 2), static_cast<ssize_t>(a.size() + b.size()));
  // Exactly as many bytes as were sent: MSG_WAITALL waits for the whole iovec.
  char r1[8], r2[64];
  iovec riov[2] = {{r1, sizeof(r1)}, {r2, a.size() + b.size() - sizeof(r1)}};
  msghdr msg{};
  msg.msg_iov = riov;
  msg.msg_iovlen = 2;
  ssize_t got = recvmsg(server, &msg, MSG_WAITALL);
  ASSERT_EQ(got, static_cast<ssize_t>(a.size() + b.size()));
  std::string resp = "HTTP/1.1 204 No Content\r\n\r\n";
  iovec siov[1] = {{resp.data(), resp.size()}};
  msghdr smsg{};
  smsg.msg_iov = siov;
  smsg.msg_iovlen = 1;
  ASSERT_EQ(sendmsg(server, &smsg, 0), static_cast<ssize_t>(resp.size()));
  riov[1].iov_len = sizeof(r2);
  ASSERT_EQ(readv(client, riov, 2), static_cast<ssize_t>(resp.size()));
  Drain(6);

  auto cdata = Of(client, SocketEvent::Kind::kData);
  ASSERT_EQ(cdata.size(), 2u);
  EXPECT_EQ(cdata[0]->ev.syscall, L7_SYS_WRITEV);
  EXPECT_EQ(cdata[0]->payload, a + b);
  EXPECT_EQ(cdata[1]->ev.syscall, L7_SYS_READV);
  EXPECT_EQ(cdata[1]->payload, resp);
  auto sdata = Of(server, SocketEvent::Kind::kData);
  ASSERT_EQ(sdata.size(), 2u);
  EXPECT_EQ(sdata[0]->ev.syscall, L7_SYS_RECVMSG);
  EXPECT_EQ(sdata[0]->payload, a + b);
  EXPECT_EQ(sdata[1]->ev.syscall, L7_SYS_SENDMSG);
  EXPECT_EQ(sdata[1]->payload, resp);
  close(client);
  close(server);
  close(listener);
}

TEST_F(L7ProbeTest, CaptureIsBoundedButByteCountIsExactAndSendfileCounts) {
  int listener, client, server;
  uint16_t port;
  MakePair(&listener, &client, &server, &port);
  std::string big(3000, 'x');
  ASSERT_EQ(write(server, big.data(), big.size()), 3000);
  char path[] = "/tmp/isotrace-sendfile-XXXXXX";
  int file = mkstemp(path);
  ASSERT_GE(file, 0);
  ASSERT_EQ(write(file, big.data(), 1000), 1000);  // a file write: no event
  off_t off = 0;
  ASSERT_EQ(sendfile(server, file, &off, 1000), 1000);
  std::string sink(4000, '\0');
  size_t total = 0;
  while (total < 4000) {
    ssize_t n = read(client, sink.data() + total, 4000 - total);
    ASSERT_GT(n, 0);
    total += static_cast<size_t>(n);
  }
  Drain(3);
  close(file);
  unlink(path);

  auto sdata = Of(server, SocketEvent::Kind::kData);
  ASSERT_EQ(sdata.size(), 2u);
  EXPECT_EQ(sdata[0]->ev.ret, 3000);
  EXPECT_EQ(sdata[0]->payload.size(), 256u);  // capture_bytes
  EXPECT_EQ(sdata[0]->payload, big.substr(0, 256));
  EXPECT_EQ(sdata[1]->ev.syscall, L7_SYS_SENDFILE);
  EXPECT_EQ(sdata[1]->ev.ret, 1000);
  EXPECT_EQ(sdata[1]->payload.size(), 0u);
  EXPECT_TRUE(Of(file, SocketEvent::Kind::kData).empty());
  close(client);
  close(server);
  close(listener);
}

TEST_F(L7ProbeTest, FilesPipesAndUnixSocketsProduceNothing) {
  char path[] = "/tmp/isotrace-file-XXXXXX";
  int file = mkstemp(path);
  ASSERT_GE(file, 0);
  ASSERT_EQ(write(file, "GET / HTTP/1.1\r\n\r\n", 18), 18);
  lseek(file, 0, SEEK_SET);
  char buf[64];
  ASSERT_EQ(read(file, buf, sizeof(buf)), 18);
  close(file);
  unlink(path);
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ASSERT_EQ(write(p[1], "GET / HTTP/1.1\r\n\r\n", 18), 18);
  ASSERT_EQ(read(p[0], buf, sizeof(buf)), 18);
  close(p[0]);
  close(p[1]);
  int u[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, u), 0);
  ASSERT_EQ(write(u[0], "GET / HTTP/1.1\r\n\r\n", 18), 18);
  ASSERT_EQ(read(u[1], buf, sizeof(buf)), 18);
  close(u[0]);
  close(u[1]);
  // A marker TCP exchange proves the probe was live while the above ran.
  int listener, client, server;
  uint16_t port;
  MakePair(&listener, &client, &server, &port);
  ASSERT_EQ(write(client, "m", 1), 1);
  ASSERT_EQ(read(server, buf, 1), 1);
  Drain(4);
  for (const auto& c : events_) {
    EXPECT_TRUE(c.ev.fd == client || c.ev.fd == server || c.ev.fd == listener)
        << "unexpected event on fd " << c.ev.fd << " kind " << int(c.ev.kind);
    EXPECT_EQ(c.ev.family, AF_INET);
  }
  EXPECT_EQ(Of(server, SocketEvent::Kind::kData).size(), 1u);
  close(client);
  close(server);
  close(listener);
}

}  // namespace
}  // namespace isotrace::probes
