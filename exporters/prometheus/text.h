#pragma once
// metrics::Snapshot → Prometheus text exposition format (0.0.4), following the
// OpenTelemetry ↔ Prometheus compatibility specification:
//  - names: every character outside [a-zA-Z0-9_:] becomes '_' (dots → underscores),
//    runs of '_' collapse, a leading digit gets a '_' prefix;
//  - the unit becomes a suffix ("s" → _seconds, "By" → _bytes, "{request}" → nothing);
//  - counters (monotonic sums) get _total; histograms _bucket{le}, _sum and _count;
//  - attribute keys become label names the same way (a leading digit gets "key_").
// One endpoint serves many workloads, so each series carries its resource's attributes
// as labels (service_name, host_name, container_id, k8s_*, ...), as the Collector's
// Prometheus exporter does with resource_to_telemetry_conversion; a point attribute
// wins over a resource attribute of the same label name.

#include <string>
#include <string_view>

#include "daemon/metrics/model.h"

namespace isotrace::prometheus {

std::string SanitizeName(std::string_view name);
std::string SanitizeLabel(std::string_view key);
// "s" → "seconds", "By" → "bytes", "{request}" → "", "1" → "ratio", "By/s" → "bytes_per_second".
std::string UnitSuffix(std::string_view ucum_unit);
// The family name of a metric: sanitized name + unit suffix (+ "_total" for counters).
std::string FamilyName(const metrics::Metric& metric);
// Label value / HELP escaping per the exposition format.
std::string EscapeLabelValue(std::string_view v);
// Shortest decimal that reads back as the same double; "+Inf", "-Inf", "NaN".
std::string FormatDouble(double v);

std::string RenderText(const metrics::Snapshot& snapshot);

}  // namespace isotrace::prometheus
