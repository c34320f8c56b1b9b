#include "daemon/util/clock.h"

#include <time.h>

namespace isotrace::util {

namespace {
uint64_t ReadClock(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}
constexpr uint64_t kRefreshEveryNs = 1000000000ull;
}  // namespace

uint64_t MonotonicNowNs() { return ReadClock(CLOCK_MONOTONIC); }
uint64_t RealtimeNowNs() { return ReadClock(CLOCK_REALTIME); }

Clock::Clock() : Clock(&util::MonotonicNowNs, &util::RealtimeNowNs) {}
Clock::Clock(NowFn monotonic_ns, NowFn realtime_ns)
    : monotonic_(std::move(monotonic_ns)), realtime_(std::move(realtime_ns)) {}

void Clock::Refresh() {
  // Read monotonic on both sides of realtime and take the midpoint: the offset error
  // stays below the few hundred ns the three reads take.
  uint64_t m1 = monotonic_();
  uint64_t r = realtime_();
  uint64_t m2 = monotonic_();
  uint64_t m = m1 + (m2 - m1) / 2;
  offset_ns_ = static_cast<int64_t>(r) - static_cast<int64_t>(m);
  refreshed_at_mono_ = m;
  init_ = true;
}

uint64_t Clock::MonoToUnixNs(uint64_t mono_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!init_ || mono_ns > refreshed_at_mono_ + kRefreshEveryNs) Refresh();
  return static_cast<uint64_t>(static_cast<int64_t>(mono_ns) + offset_ns_);
}

}  // namespace isotrace::util
