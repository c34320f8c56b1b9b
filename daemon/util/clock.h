#pragma once
// Kernel timestamps (bpf_ktime_get_ns: CLOCK_MONOTONIC) become wall-clock time in exactly
// one place, with an injectable source so tests control both clocks.

#include <cstdint>
#include <functional>
#include <mutex>

namespace isotrace::util {

class Clock {
 public:
  using NowFn = std::function<uint64_t()>;
  // Real clocks.
  Clock();
  // Injected clocks (tests).
  Clock(NowFn monotonic_ns, NowFn realtime_ns);

  // CLOCK_MONOTONIC ns → Unix epoch ns. The offset is re-read at most once a second so
  // wall-clock steps (NTP) are followed without a syscall per event.
  uint64_t MonoToUnixNs(uint64_t mono_ns);
  uint64_t MonotonicNowNs() const { return monotonic_(); }
  uint64_t RealtimeNowNs() const { return realtime_(); }

 private:
  void Refresh();
  NowFn monotonic_;
  NowFn realtime_;
  std::mutex mu_;
  int64_t offset_ns_ = 0;
  uint64_t refreshed_at_mono_ = 0;
  bool init_ = false;
};

uint64_t MonotonicNowNs();
uint64_t RealtimeNowNs();

}  // namespace isotrace::util
