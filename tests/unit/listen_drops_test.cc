// The listen-drops sampler (probes/listen_drops.h) on a fake /proc: the netstat text as
// the kernel writes it, namespaces named by their ns/net link, readings and windows.

#include "daemon/probes/listen_drops.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace isotrace::probes {
namespace {

namespace fs = std::filesystem;

// Two lines per group as /proc/net/netstat has them (trimmed to a few columns).
std::string Netstat(uint64_t overflows, uint64_t drops) {
  return "TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops TCPHPHits\n"
         "TcpExt: 0 0 " + std::to_string(overflows) + " " + std::to_string(drops) + " 77\n"
         "IpExt: InNoRoutes InTruncatedPkts\n"
         "IpExt: 0 0\n";
}

TEST(ListenDropsParse, ReadsTheColumnTheHeaderNames) {
  EXPECT_EQ(ParseListenDrops(Netstat(3, 5)), std::optional<uint64_t>(5));
  EXPECT_EQ(ParseListenDrops("IpExt: A B\nIpExt: 1 2\n"), std::nullopt);
  EXPECT_EQ(ParseListenDrops("TcpExt: ListenDrops\n"), std::nullopt) << "a header without values";
  EXPECT_EQ(ParseListenDrops("TcpExt: ListenDrops\nTcpExt: x\n"), std::nullopt) << "not a number";
  EXPECT_EQ(ParseListenDrops("TcpExt: A ListenDrops\nTcpExt: 1\n"), std::nullopt) << "a short value line";
  EXPECT_EQ(ParseListenDrops(""), std::nullopt);
}

class ListenDropsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isotrace-listen-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }
  // Process `tgid` in namespace `ns` with the counter at `drops`.
  void Proc(uint32_t tgid, uint64_t ns, uint64_t drops) {
    const fs::path p = fs::path(root_) / std::to_string(tgid);
    fs::create_directories(p / "ns");
    fs::create_directories(p / "net");
    const fs::path link = p / "ns" / "net";
    if (!fs::is_symlink(link)) fs::create_symlink("net:[" + std::to_string(ns) + "]", link);
    std::ofstream(p / "net" / "netstat") << Netstat(drops, drops);
  }
  void Gone(uint32_t tgid) { fs::remove_all(fs::path(root_) / std::to_string(tgid)); }
  std::string root_;
};

TEST_F(ListenDropsTest, ADropBetweenTheSamplesAroundAWindowIsCounted) {
  ListenDrops l(root_);
  Proc(10, 4026532001, 100);
  l.Watch(10, 1'000);  // first sample: 100
  Proc(10, 4026532001, 103);
  l.Sample(2'000);  // 103
  Proc(10, 4026532001, 110);
  l.Sample(3'000);  // 110
  EXPECT_EQ(l.Between(10, 1'500, 2'500, 3'500), std::optional<uint64_t>(10)) << "1 000 → 3 000";
  EXPECT_EQ(l.Between(10, 2'000, 2'000, 3'500), std::optional<uint64_t>(0)) << "one reading on both ends";
  EXPECT_EQ(l.Between(10, 500, 2'500, 3'500), std::nullopt) << "nothing read before the window";
  EXPECT_EQ(l.Between(11, 1'500, 2'500, 3'500), std::nullopt) << "not watched";
  // No reading after the window's end yet: one is taken now.
  Proc(10, 4026532001, 111);
  EXPECT_EQ(l.Between(10, 3'000, 3'200, 4'000), std::optional<uint64_t>(1));
  EXPECT_EQ(l.stats().samples, 4u);
  EXPECT_EQ(l.stats().namespaces, 1u);
}

TEST_F(ListenDropsTest, ANamespaceIsReadThroughAnyOfItsProcessesAndForgottenWithTheLast) {
  ListenDrops l(root_);
  Proc(20, 4026532002, 7);
  Proc(21, 4026532002, 7);
  l.Watch(20, 1'000);
  l.Watch(21, 1'100);  // the same namespace: no second first-sample
  EXPECT_EQ(l.stats().samples, 1u);
  Gone(20);
  Proc(21, 4026532002, 9);
  l.Sample(2'000);
  EXPECT_EQ(l.Between(21, 1'000, 1'500, 2'500), std::optional<uint64_t>(2));
  EXPECT_EQ(l.stats().read_errors, 1u) << "the process that went away";
  Gone(21);
  l.Sample(3'000);
  EXPECT_EQ(l.stats().namespaces, 0u);
  EXPECT_EQ(l.Between(21, 1'000, 1'500, 3'500), std::nullopt);
}

TEST_F(ListenDropsTest, IdleNamespacesAreForgotten) {
  ListenDrops l(root_);
  Proc(30, 4026532003, 1);
  l.Watch(30, 1'000);
  l.Sample(2'000, /*idle_ns=*/500);
  EXPECT_EQ(l.stats().namespaces, 0u);
}

}  // namespace
}  // namespace isotrace::probes
