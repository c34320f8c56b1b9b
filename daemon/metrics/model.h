#pragma once
// The metrics data model: what the aggregator collects and every metrics exporter
// (OTLP, Prometheus text) encodes. Plain data, no behaviour, like correlate/span.h: one
// model, two encoders, so both outputs carry the same numbers by construction.
//
// Every sum and histogram is cumulative since its resource's start time (Prometheus
// needs cumulative; OTLP receivers take it as is, and a lost export loses nothing
// because the next one carries the running totals).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "daemon/correlate/span.h"

namespace isotrace::metrics {

enum class MetricType : uint8_t {
  kCounter,   // monotonic cumulative sum (Prometheus: counter, name gets _total)
  kGauge,     // last value (Prometheus: gauge)
  kHistogram  // explicit-bucket cumulative histogram
};

struct HistogramValue {
  std::vector<double> bounds;    // upper bounds, ascending; buckets = bounds.size() + 1
  std::vector<uint64_t> counts;  // per bucket (not cumulative), size bounds.size() + 1
  uint64_t count = 0;
  double sum = 0;
  double min = 0;  // meaningful when count > 0
  double max = 0;
};

struct Point {
  std::vector<correlate::Attribute> attributes;
  double value = 0;          // counters and gauges
  HistogramValue histogram;  // histograms
};

struct Metric {
  std::string name;  // OTel name ("http.server.request.duration")
  std::string description;
  std::string unit;     // UCUM ("s", "By", "{request}")
  MetricType type = MetricType::kCounter;
  bool integer = true;  // counters/gauges: encode as int (OTLP as_int) rather than double
  std::vector<Point> points;
};

// The metrics of one resource: a workload (the spans' resource, see aggregator.h) or
// isotrace itself (self-telemetry).
struct ResourceMetrics {
  std::shared_ptr<const correlate::Resource> resource;
  uint64_t start_unix_ns = 0;  // start of every cumulative series of this resource
  std::vector<Metric> metrics;
};

struct Snapshot {
  uint64_t time_unix_ns = 0;
  std::vector<ResourceMetrics> resources;
};

}  // namespace isotrace::metrics
