// probes::Conntrack against the kernel's own conntrack table (root: no BPF, but ctnetlink
// in a network namespace of the test's own). Entries are created through ctnetlink as
// `conntrack -I` does, with zones and reply tuples chosen here, so that each lookup has
// one right answer: a translation found only in the zone it was made in, one translation
// seen in two zones, and two zones that disagree (never a link).
#include "daemon/probes/conntrack.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <netinet/in.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace isotrace::probes {
namespace {

bool RequireBpf() {
  const char* v = std::getenv("ISOTRACE_REQUIRE_BPF");
  return v != nullptr && std::string(v) == "1";
}

FlowTuple V4(const char* src, uint16_t sport, const char* dst, uint16_t dport) {
  FlowTuple t;
  t.src = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  t.dst = t.src;
  inet_pton(AF_INET, src, t.src.data() + 12);
  inet_pton(AF_INET, dst, t.dst.data() + 12);
  t.sport = sport;
  t.dport = dport;
  return t;
}

uint32_t Addr(const std::array<uint8_t, 16>& a) {
  uint32_t v;
  std::memcpy(&v, a.data() + 12, 4);
  return v;
}

class ConntrackTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A namespace of our own: its table holds only what the tests put there. Done once,
    // before any thread exists (unshare applies to the calling thread).
    if (geteuid() != 0) return;
    if (unshare(CLONE_NEWNET) == 0) in_own_ns_ = true;
  }

  void SetUp() override {
    if (!in_own_ns_) {
      if (RequireBpf()) FAIL() << "needs root to create a network namespace and conntrack entries";
      GTEST_SKIP() << "needs root (a network namespace and ctnetlink)";
    }
    h_ = nfct_open(CONNTRACK, 0);
    ASSERT_NE(h_, nullptr) << "ctnetlink: " << std::strerror(errno);
    auto ct = Conntrack::Create();
    ASSERT_TRUE(ct.ok()) << ct.status();
    ct_ = std::move(*ct);
  }
  void TearDown() override {
    if (h_ != nullptr) {
      nfct_query(h_, NFCT_Q_FLUSH, &family_);
      nfct_close(h_);
    }
  }

  // An established TCP entry in `zone`: `orig` as the caller sent it, `reply` as the
  // callee answers.
  void Insert(const FlowTuple& orig, const FlowTuple& reply, uint16_t zone) {
    nf_conntrack* ct = nfct_new();
    nfct_set_attr_u8(ct, ATTR_L3PROTO, AF_INET);
    nfct_set_attr_u32(ct, ATTR_ORIG_IPV4_SRC, Addr(orig.src));
    nfct_set_attr_u32(ct, ATTR_ORIG_IPV4_DST, Addr(orig.dst));
    nfct_set_attr_u8(ct, ATTR_L4PROTO, IPPROTO_TCP);
    nfct_set_attr_u16(ct, ATTR_ORIG_PORT_SRC, htons(orig.sport));
    nfct_set_attr_u16(ct, ATTR_ORIG_PORT_DST, htons(orig.dport));
    nfct_set_attr_u8(ct, ATTR_REPL_L3PROTO, AF_INET);
    nfct_set_attr_u8(ct, ATTR_REPL_L4PROTO, IPPROTO_TCP);
    nfct_set_attr_u32(ct, ATTR_REPL_IPV4_SRC, Addr(reply.src));
    nfct_set_attr_u32(ct, ATTR_REPL_IPV4_DST, Addr(reply.dst));
    nfct_set_attr_u16(ct, ATTR_REPL_PORT_SRC, htons(reply.sport));
    nfct_set_attr_u16(ct, ATTR_REPL_PORT_DST, htons(reply.dport));
    nfct_set_attr_u8(ct, ATTR_TCP_STATE, TCP_CONNTRACK_ESTABLISHED);
    nfct_set_attr_u32(ct, ATTR_TIMEOUT, 120);
    if (zone != 0) nfct_set_attr_u16(ct, ATTR_ZONE, zone);
    const int r = nfct_query(h_, NFCT_Q_CREATE, ct);
    const int err = errno;
    nfct_destroy(ct);
    ASSERT_EQ(r, 0) << "creating a conntrack entry in zone " << zone << ": " << std::strerror(err);
  }

  NatResult Ask(const FlowTuple& orig, FlowTuple* reply) {
    return ct_->Reply(static_cast<uint32_t>(getpid()), 0, orig, reply);
  }

  static inline bool in_own_ns_ = false;
  uint32_t family_ = AF_INET;
  nfct_handle* h_ = nullptr;
  std::unique_ptr<Conntrack> ct_;
};

// The caller 10.251.0.2:40000 → a Service 10.96.0.10:80, DNAT'd to 10.251.1.2:8080 and
// SNAT'd to 10.251.0.3:40000 (the reply tuple: callee → translated caller).
const FlowTuple kOrig = V4("10.251.0.2", 40000, "10.96.0.10", 80);
const FlowTuple kReply = V4("10.251.1.2", 8080, "10.251.0.3", 40000);
const FlowTuple kOtherReply = V4("10.251.2.2", 8080, "10.251.0.3", 40000);

TEST_F(ConntrackTest, ATranslationInAZoneIsFoundOnlyWhenTheZoneIsAsked) {
  Insert(kOrig, kReply, 5);
  FlowTuple got;
  EXPECT_EQ(Ask(kOrig, &got), NatResult::kNoEntry) << "the default zone holds no entry";
  ct_->SetZones({3, 5});
  ASSERT_EQ(Ask(kOrig, &got), NatResult::kTranslated);
  EXPECT_EQ(got, kReply);
  EXPECT_EQ(ct_->stats().errors, 0u) << ct_->last_error();
}

TEST_F(ConntrackTest, TheSameTranslationInTwoZonesLinks) {
  Insert(kOrig, kReply, 0);
  Insert(kOrig, kReply, 9);
  ct_->SetZones({9});
  FlowTuple got;
  ASSERT_EQ(Ask(kOrig, &got), NatResult::kTranslated);
  EXPECT_EQ(got, kReply);
}

TEST_F(ConntrackTest, ZonesThatDisagreeAreAmbiguousNeverALink) {
  Insert(kOrig, kReply, 5);
  Insert(kOrig, kOtherReply, 9);
  FlowTuple got;
  ct_->SetZones({5});
  ASSERT_EQ(Ask(kOrig, &got), NatResult::kTranslated) << "zone 9 is not asked";
  EXPECT_EQ(got, kReply);
  ct_->SetZones({5, 9});
  EXPECT_EQ(Ask(kOrig, &got), NatResult::kAmbiguous);
}

TEST_F(ConntrackTest, AnUntranslatedEntryIsNoTranslation) {
  const FlowTuple mirror = V4("10.96.0.10", 80, "10.251.0.2", 40000);
  Insert(kOrig, mirror, 0);
  FlowTuple got;
  EXPECT_EQ(Ask(kOrig, &got), NatResult::kUntranslated);
}

}  // namespace
}  // namespace isotrace::probes
