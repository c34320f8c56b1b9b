#pragma once
// The daemon's life: start the pipeline, attach the exporter (when an endpoint is
// configured; embedded mode otherwise), poll until stopped, flush, report.

#include <atomic>

#include "absl/status/statusor.h"
#include "daemon/config/config.h"
#include "exporters/otlp/options.h"

namespace isotrace::pipeline {

// Exporter options for one signal. `cfg` holds the merged generic settings (defaults <
// YAML file < OTEL_EXPORTER_OTLP_* / OTEL_BSP_* < flags, see config.h); the process's
// signal-specific variables (OTEL_EXPORTER_OTLP_<SIGNAL>_*) win over them, except that
// the traces endpoint is cfg.otlp_endpoint itself (it already took
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, and --otlp-endpoint beats it).
absl::StatusOr<otlp::ExporterOptions> ExporterOptionsFor(const config::Config& cfg,
                                                         otlp::Signal signal);
absl::StatusOr<otlp::ExporterOptions> TraceExporterOptions(const config::Config& cfg);

// Returns the process exit code: 0 after a clean stop, 1 when the probes could not start,
// 2 for bad configuration.
int RunDaemon(const config::Config& cfg, const std::atomic<bool>& stop);

}  // namespace isotrace::pipeline
