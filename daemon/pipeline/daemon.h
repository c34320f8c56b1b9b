#pragma once
// The daemon's life: start the pipeline, attach the exporter (when an endpoint is
// configured; embedded mode otherwise), poll until stopped, flush, report.

#include <atomic>

#include "absl/status/statusor.h"
#include "daemon/config/config.h"
#include "exporters/otlp/options.h"

namespace isotrace::pipeline {

// Exporter options from the OTEL_* environment, then the config (file and flags), which
// win where they set something.
absl::StatusOr<otlp::ExporterOptions> TraceExporterOptions(const config::Config& cfg);

// Returns the process exit code: 0 after a clean stop, 1 when the probes could not start,
// 2 for bad configuration.
int RunDaemon(const config::Config& cfg, const std::atomic<bool>& stop);

}  // namespace isotrace::pipeline
