#pragma once
// metrics::Snapshot → OTLP ExportMetricsServiceRequest. Pure, no I/O (like encode.h):
// one ResourceMetrics per resource of the snapshot, one ScopeMetrics ("isotrace"),
// counters as monotonic cumulative sums, gauges as gauges, histograms as cumulative
// explicit-bucket histograms with min/max.

#include "absl/status/status.h"
#include "daemon/metrics/model.h"
#include "exporters/otlp/encode.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb.h"

namespace isotrace::otlp {

namespace otlp_metrics = ::opentelemetry::proto::metrics::v1;
namespace otlp_collector_metrics = ::opentelemetry::proto::collector::metrics::v1;

// Fails with InvalidArgument (leaving `out` untouched) when a histogram point is
// inconsistent (bucket counts not bounds + 1, or not summing to its count): receivers
// reject such points, and they would hide a bug in the aggregator.
absl::Status EncodeMetrics(const metrics::Snapshot& snapshot, const Scope& scope,
                           otlp_collector_metrics::ExportMetricsServiceRequest* out);

// Data points in a request (what partial_success.rejected_data_points counts against).
int64_t CountDataPoints(const otlp_collector_metrics::ExportMetricsServiceRequest& request);

}  // namespace isotrace::otlp
