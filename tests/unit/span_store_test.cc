// The embedded span store: a bounded ring of the latest spans (oldest first from Recent,
// across the ring's wrap) and per-service windows for the summary line.

#include "daemon/pipeline/span_store.h"

#include <memory>
#include <string>

#include "daemon/correlate/resource.h"
#include "gtest/gtest.h"

namespace isotrace::pipeline {
namespace {

std::shared_ptr<const correlate::Resource> Service(const std::string& name) {
  auto r = std::make_shared<correlate::Resource>();
  r->attributes.push_back({"service.name", name});
  return r;
}

correlate::Span SpanAt(uint64_t start, uint64_t dur_ns, const std::string& error = "") {
  correlate::Span s;
  s.start_unix_ns = start;
  s.end_unix_ns = start + dur_ns;
  s.path = "/p" + std::to_string(start);
  s.error_type = error;
  return s;
}

TEST(SpanStoreTest, RecentIsOldestFirstAcrossTheRingsWrap) {
  SpanStore store(3);
  auto svc = Service("a");
  for (uint64_t i = 1; i <= 7; i++) store.Add(svc, SpanAt(i, 1000));
  EXPECT_EQ(store.total(), 7u);
  auto all = store.Recent(10);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].span->start_unix_ns, 5u);
  EXPECT_EQ(all[1].span->start_unix_ns, 6u);
  EXPECT_EQ(all[2].span->start_unix_ns, 7u);
  EXPECT_EQ(all[2].span->path, "/p7");
  EXPECT_EQ(correlate::ServiceName(*all[2].resource), "a");
  auto last = store.Recent(2);
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[0].span->start_unix_ns, 6u);
  EXPECT_EQ(last[1].span->start_unix_ns, 7u);
}

TEST(SpanStoreTest, BeforeTheRingFillsRecentKeepsArrivalOrder) {
  SpanStore store(8);
  auto svc = Service("a");
  for (uint64_t i = 1; i <= 3; i++) store.Add(svc, SpanAt(i, 1000));
  auto all = store.Recent(8);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].span->start_unix_ns, 1u);
  EXPECT_EQ(all[2].span->start_unix_ns, 3u);
}

TEST(SpanStoreTest, ZeroCapacityKeepsNoSpansButCountsThem) {
  SpanStore store(0);
  store.Add(Service("a"), SpanAt(1, 1000));
  EXPECT_TRUE(store.Recent(5).empty());
  EXPECT_EQ(store.total(), 1u);
  auto w = store.TakeWindow();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].requests, 1u);
}

TEST(SpanStoreTest, WindowsArePerServiceSortedByNameAndReset) {
  SpanStore store(16);
  auto a = Service("zeta"), b = Service("alpha");
  store.Add(a, SpanAt(1, 2'000'000));
  store.Add(a, SpanAt(2, 4'000'000, "500"));
  store.Add(b, SpanAt(3, 1'000'000));
  auto w = store.TakeWindow();
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].service, "alpha");
  EXPECT_EQ(w[0].requests, 1u);
  EXPECT_EQ(w[1].service, "zeta");
  EXPECT_EQ(w[1].requests, 2u);
  EXPECT_EQ(w[1].errors, 1u);
  EXPECT_DOUBLE_EQ(w[1].p99_ms, 4.0);
  EXPECT_TRUE(store.TakeWindow().empty());
}

}  // namespace
}  // namespace isotrace::pipeline
