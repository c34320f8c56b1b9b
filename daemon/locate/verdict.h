#pragma once
// Per-trace verdicts (horizontal × vertical): what daemon/locate concludes for a slow or
// failed trace, and the bounded store the local API (`isotrace locate`) reads.
// Vocabulary (DESIGN.md): layer ∈ app, wasm, sandbox, container, kernel, network, vm,
// downstream; cause ∈ cpu, runqueue, throttling, block_io, memory, steal, wait,
// tcp_retransmit, tcp_reset, packet_drop, unknown, downstream, queue, error, oom_kill.

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "daemon/correlate/span.h"

namespace isotrace::locate {

// One (service, layer, cause) on the trace's critical path and how far it was from the
// workload's baseline.
struct Evidence {
  std::string service;
  std::string layer;
  std::string cause;
  int64_t value_ns = 0;     // time this cause took on the critical path
  int64_t baseline_ns = 0;  // what it usually takes there (sum of the spans' medians)
  // Σ over the path's spans of max(0, span's time - its own usual): one span's spike is
  // not hidden by another span of the same service running below its usual, so it can
  // exceed value_ns - baseline_ns.
  int64_t excess_ns = 0;
};

// One span of the critical path, root first.
struct Hop {
  std::string service;
  correlate::SpanKind kind = correlate::SpanKind::kServer;
  correlate::SpanId span_id{};
  std::string method;
  std::string path;
  std::string peer;  // server.address:port for CLIENT spans
  int64_t duration_ns = 0;
  int64_t baseline_ns = 0;  // the span's usual duration (0: not learnt yet)
};

struct Verdict {
  correlate::TraceId trace_id{};
  correlate::SpanId span_id{};  // the trace's root-most span on this node
  uint64_t start_unix_ns = 0;   // of that span
  uint64_t end_unix_ns = 0;
  uint64_t decided_unix_ns = 0;  // when the daemon wrote the verdict

  std::string reason;  // "slow", "shift" or "failed"
  std::string root_service;
  std::string method;
  std::string path;
  int status_code = 0;
  std::string error_type;
  int64_t duration_ns = 0;
  int64_t baseline_ns = 0;  // the root span's usual duration

  std::string service;  // isotrace.verdict.service
  std::string layer;    // isotrace.verdict.layer
  std::string cause;    // isotrace.verdict.cause
  double share = 0;     // isotrace.verdict.share: fraction of the trace's duration

  std::vector<Evidence> evidence;  // largest excess first (the verdict's is first)
  std::vector<Hop> path_hops;      // the critical path, root first
  uint32_t spans = 0;              // spans of the trace seen on this node
};

// The most recent verdicts, bounded; thread-safe (the poll thread adds, the API reads).
class VerdictStore {
 public:
  explicit VerdictStore(size_t capacity = 1024) : capacity_(capacity) {}
  void Add(const Verdict& v) {
    std::lock_guard<std::mutex> lock(mu_);
    ring_.push_back(v);
    if (ring_.size() > capacity_) ring_.pop_front();
    total_++;
  }
  // Newest first: verdicts whose trace ended at or after `since_unix_ns`, only those of
  // `trace_id` when given, at most `max`.
  std::vector<Verdict> Recent(uint64_t since_unix_ns, const std::optional<correlate::TraceId>& trace_id,
                              size_t max) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Verdict> out;
    for (auto it = ring_.rbegin(); it != ring_.rend() && out.size() < max; ++it) {
      if (it->end_unix_ns < since_unix_ns) continue;
      if (trace_id && it->trace_id != *trace_id) continue;
      out.push_back(*it);
    }
    return out;
  }
  uint64_t total() const {
    std::lock_guard<std::mutex> lock(mu_);
    return total_;
  }

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  std::deque<Verdict> ring_;
  uint64_t total_ = 0;
};

}  // namespace isotrace::locate
