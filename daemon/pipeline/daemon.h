#pragma once
// The daemon's life, assembled in one place: the pipeline (probes → correlate → layers
// → locate), the OTLP span and log exporters when an endpoint is configured, and the
// local services (metrics aggregator, CLI socket, /metrics, OTLP metrics). isotraced
// (RunDaemon) and the CLI's embedded mode (daemon/cli/source.cc) build the same Node;
// the CLI only leaves the network-facing parts off.

#include <atomic>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "daemon/api/services.h"
#include "daemon/config/config.h"
#include "daemon/pipeline/pipeline.h"
#include "exporters/otlp/exporter.h"
#include "exporters/otlp/options.h"

namespace isotrace::pipeline {

// Exporter options for one signal, from the merged configuration (defaults < YAML file <
// OTEL_EXPORTER_OTLP_* / OTEL_BSP_* < flags, parsed once by config::ApplyEnvironment);
// the process's signal-specific variables (OTEL_EXPORTER_OTLP_<SIGNAL>_*) win over it,
// except that the traces endpoint is cfg.otlp_endpoint itself (it already took
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, and --otlp-endpoint beats it).
absl::StatusOr<otlp::ExporterOptions> ExporterOptionsFor(const config::Config& cfg,
                                                         otlp::Signal signal);
absl::StatusOr<otlp::ExporterOptions> TraceExporterOptions(const config::Config& cfg);

struct NodeOptions {
  // Export over OTLP (when an endpoint is configured), serve the CLI's socket and
  // /metrics, write the stats file. The CLI's embedded pipeline turns it off: it reads
  // the aggregator, the span store and the verdicts in-process.
  bool serve = true;
};

class Node {
 public:
  explicit Node(const config::Config& cfg, NodeOptions options = {});
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Checks the exporter configuration, loads the probes, then starts the exporters and
  // the services. On failure the status says what to change and *exit_code (when given)
  // is isotraced's: 2 for bad configuration, 1 when the probes could not start.
  absl::Status Start(int* exit_code = nullptr);
  // Polls on the calling thread until `stop` becomes true (Pipeline::Run).
  absl::Status Run(const std::atomic<bool>& stop);
  // Flushes the exporters (until export.shutdown_timeout_ms), hands the last counters to
  // the metrics, writes the stats file and logs the totals. Idempotent; the destructor
  // calls it.
  void Stop();

  Pipeline& pipeline() { return pipeline_; }
  metrics::Aggregator& aggregator() { return services_->aggregator(); }

 private:
  // Self-telemetry now (poll thread only: the probe and tracker counters are not atomic).
  metrics::SelfStats SelfStats(const otlp::ExportStats* export_stats) const;

  config::Config cfg_;
  NodeOptions options_;
  Pipeline pipeline_;
  std::unique_ptr<otlp::TraceExporter> traces_;
  std::unique_ptr<otlp::LogsExporter> logs_;
  std::unique_ptr<api::LocalServices> services_;
  bool started_ = false;
  bool stopped_ = false;
};

// isotraced: Node::Start, Run until `stop`, Stop. Returns the process exit code: 0 after
// a clean stop, 1 when the probes could not start or the poll loop failed, 2 for bad
// configuration.
int RunDaemon(const config::Config& cfg, const std::atomic<bool>& stop);

}  // namespace isotrace::pipeline
