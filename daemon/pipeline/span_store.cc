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

std::string ServiceOf(const correlate::Resource& r) { return std::string(correlate::ServiceNameOf(&r)); }

void SpanStore::Add(std::shared_ptr<const correlate::Resource> resource, correlate::Span&& span) {
  std::lock_guard<std::mutex> lock(mu_);
  Window& w = window_[correlate::ServiceName(*resource)];
  w.requests++;
  if (!span.error_type.empty()) w.errors++;
  if (w.durations_ns.size() < kMaxSamples) w.durations_ns.push_back(span.end_unix_ns - span.start_unix_ns);
  ring_.push_back({std::move(resource), std::move(span)});
  if (ring_.size() > capacity_) ring_.pop_front();
  total_++;
}

std::vector<StoredSpan> SpanStore::Recent(size_t max) const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = std::min(max, ring_.size());
  return std::vector<StoredSpan>(ring_.end() - static_cast<long>(n), ring_.end());
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
  return out;
}

uint64_t SpanStore::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_;
}

}  // namespace isotrace::pipeline
