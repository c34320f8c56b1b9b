#pragma once
// Embedded mode's memory: the most recent spans (bounded ring) and per-service rolling
// counters for the periodic summary line and the local CLI.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "daemon/correlate/span.h"

namespace isotrace::pipeline {

struct StoredSpan {
  std::shared_ptr<const correlate::Resource> resource;
  std::shared_ptr<const correlate::Span> span;  // shared with the exporter's queue
};

struct ServiceSummary {
  std::string service;
  uint64_t requests = 0;
  uint64_t errors = 0;
  double p50_ms = 0;
  double p99_ms = 0;
};

class SpanStore {
 public:
  explicit SpanStore(size_t capacity = 4096) : capacity_(capacity) {}
  void Add(std::shared_ptr<const correlate::Resource> resource, std::shared_ptr<const correlate::Span> span);
  void Add(std::shared_ptr<const correlate::Resource> resource, correlate::Span&& span) {
    Add(std::move(resource), std::make_shared<const correlate::Span>(std::move(span)));
  }
  std::vector<StoredSpan> Recent(size_t max) const;
  // Per service, for the spans added since the previous call (and resets that window).
  std::vector<ServiceSummary> TakeWindow();
  uint64_t total() const;

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  // The last capacity_ spans; once full, ring_[next_] is the oldest and is overwritten
  // (move-assigned: no allocation or free per span for the ring itself).
  std::vector<StoredSpan> ring_;
  size_t next_ = 0;
  uint64_t total_ = 0;
  struct Window {
    uint64_t requests = 0, errors = 0;
    std::vector<uint64_t> durations_ns;  // bounded by kMaxSamples
  };
  absl::flat_hash_map<std::string, Window> window_;
};

}  // namespace isotrace::pipeline
