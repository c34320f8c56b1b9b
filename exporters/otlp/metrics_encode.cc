#include "exporters/otlp/metrics_encode.h"

#include <cmath>

#include "exporters/otlp/semconv.h"
#include "exporters/otlp/str_util.h"

namespace isotrace::otlp {

namespace {

absl::Status CheckHistogram(const metrics::Metric& m, const metrics::HistogramValue& h) {
  uint64_t total = 0;
  for (uint64_t c : h.counts) total += c;
  if (h.counts.size() != h.bounds.size() + 1 || total != h.count) {
    return absl::InvalidArgumentError(str::Cat("metric ", m.name, ": histogram with ",
                                               h.bounds.size(), " bounds has ", h.counts.size(),
                                               " buckets summing to ", total, " for count ",
                                               h.count));
  }
  return absl::OkStatus();
}

void SetNumber(const metrics::Metric& m, const metrics::Point& p, uint64_t start, uint64_t now,
               otlp_metrics::NumberDataPoint* out) {
  AddAttributes(p.attributes, out->mutable_attributes());
  if (m.type == metrics::MetricType::kCounter) out->set_start_time_unix_nano(start);
  out->set_time_unix_nano(now);
  if (m.integer) out->set_as_int(static_cast<int64_t>(std::llround(p.value)));
  else out->set_as_double(p.value);
}

}  // namespace

absl::Status EncodeMetrics(const metrics::Snapshot& snapshot, const Scope& scope,
                           otlp_collector_metrics::ExportMetricsServiceRequest* out) {
  for (const auto& rm : snapshot.resources)
    for (const auto& m : rm.metrics)
      if (m.type == metrics::MetricType::kHistogram)
        for (const auto& p : m.points)
          if (auto st = CheckHistogram(m, p.histogram); !st.ok()) return st;

  for (const auto& rm : snapshot.resources) {
    if (rm.metrics.empty()) continue;
    auto* orm = out->add_resource_metrics();
    if (rm.resource) AddAttributes(rm.resource->attributes, orm->mutable_resource()->mutable_attributes());
    auto* sm = orm->add_scope_metrics();
    sm->mutable_scope()->set_name(scope.name);
    sm->mutable_scope()->set_version(scope.version);
    sm->set_schema_url(std::string(semconv::kSchemaUrl));
    const uint64_t start = rm.start_unix_ns;
    const uint64_t now = snapshot.time_unix_ns;
    for (const auto& m : rm.metrics) {
      auto* om = sm->add_metrics();
      om->set_name(m.name);
      om->set_description(m.description);
      om->set_unit(m.unit);
      switch (m.type) {
        case metrics::MetricType::kCounter: {
          auto* sum = om->mutable_sum();
          sum->set_aggregation_temporality(otlp_metrics::AGGREGATION_TEMPORALITY_CUMULATIVE);
          sum->set_is_monotonic(true);
          for (const auto& p : m.points) SetNumber(m, p, start, now, sum->add_data_points());
          break;
        }
        case metrics::MetricType::kGauge: {
          auto* g = om->mutable_gauge();
          for (const auto& p : m.points) SetNumber(m, p, start, now, g->add_data_points());
          break;
        }
        case metrics::MetricType::kHistogram: {
          auto* h = om->mutable_histogram();
          h->set_aggregation_temporality(otlp_metrics::AGGREGATION_TEMPORALITY_CUMULATIVE);
          for (const auto& p : m.points) {
            auto* dp = h->add_data_points();
            AddAttributes(p.attributes, dp->mutable_attributes());
            dp->set_start_time_unix_nano(start);
            dp->set_time_unix_nano(now);
            dp->set_count(p.histogram.count);
            dp->set_sum(p.histogram.sum);
            for (uint64_t c : p.histogram.counts) dp->add_bucket_counts(c);
            for (double b : p.histogram.bounds) dp->add_explicit_bounds(b);
            if (p.histogram.count > 0) {
              dp->set_min(p.histogram.min);
              dp->set_max(p.histogram.max);
            }
          }
          break;
        }
      }
    }
  }
  return absl::OkStatus();
}

int64_t CountDataPoints(const otlp_collector_metrics::ExportMetricsServiceRequest& request) {
  int64_t n = 0;
  for (const auto& rm : request.resource_metrics())
    for (const auto& sm : rm.scope_metrics())
      for (const auto& m : sm.metrics()) {
        if (m.has_sum()) n += m.sum().data_points_size();
        else if (m.has_gauge()) n += m.gauge().data_points_size();
        else if (m.has_histogram()) n += m.histogram().data_points_size();
      }
  return n;
}

}  // namespace isotrace::otlp
