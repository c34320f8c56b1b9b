#include "daemon/pipeline/span_store.h"

#include <algorithm>

#include "daemon/correlate/resource.h"

namespace isotrace::pipeline {

namespace {
constexpr size_t kMaxSamples = 10000;

double PercentileMs(std::vector<uint64_t>& v, double q) {
  if (v.empty()) return 0;
  size_t idx = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<long>(idx), v.end());
  return static_cast<double>(v[idx]) / 1e6;
}
}  // namespace

void SpanStore::Add(std::shared_ptr<const correlate::Resource> resource,
                    std::shared_ptr<const correlate::Span> span) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string_view name = correlate::ServiceNameView(*resource);
  const absl::string_view service(name.data(), name.size());  // Debian's Abseil has its own string_view
  auto wit = window_.find(service);
  if (wit == window_.end()) wit = window_.emplace(std::string(service), Window{}).first;
  Window& w = wit->second;
  w.requests++;
  if (!span->error_type.empty()) w.errors++;
  if (w.durations_ns.size() < kMaxSamples) w.durations_ns.push_back(span->end_unix_ns - span->start_unix_ns);
  if (ring_.size() < capacity_) {
    ring_.push_back({std::move(resource), std::move(span)});
  } else if (capacity_ > 0) {
    ring_[next_].resource = std::move(resource);
    ring_[next_].span = std::move(span);
    next_ = (next_ + 1) % capacity_;
  }
  total_++;
}

std::vector<StoredSpan> SpanStore::Recent(size_t max) const {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t n = std::min(max, ring_.size());
  std::vector<StoredSpan> out;
  out.reserve(n);
  // Oldest first: ring_[next_] is the oldest once the ring is full (next_ is 0 before).
  for (size_t i = ring_.size() - n; i < ring_.size(); i++) out.push_back(ring_[(next_ + i) % ring_.size()]);
  return out;
}

std::vector<ServiceSummary> SpanStore::TakeWindow() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ServiceSummary> out;
  for (auto& [name, w] : window_) {
    ServiceSummary s;
    s.service = name;
    s.requests = w.requests;
    s.errors = w.errors;
    s.p50_ms = PercentileMs(w.durations_ns, 0.50);
    s.p99_ms = PercentileMs(w.durations_ns, 0.99);
    out.push_back(std::move(s));
  }
  window_.clear();
  std::sort(out.begin(), out.end(), [](const ServiceSummary& a, const ServiceSummary& b) { return a.service < b.service; });
  return out;
}

uint64_t SpanStore::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_;
}

}  // namespace isotrace::pipeline
