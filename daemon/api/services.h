#pragma once
// What the daemon serves besides its spans: the metrics aggregator fed by every span,
// the local API for the CLI, the Prometheus /metrics endpoint and the OTLP metrics
// exporter. RunDaemon owns one; the CLI's embedded mode uses the aggregator alone.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/api/convert.h"
#include "daemon/api/server.h"
#include "daemon/config/config.h"
#include "daemon/correlate/connection_tracker.h"
#include "daemon/locate/locator.h"
#include "daemon/metrics/aggregator.h"
#include "daemon/probes/l7_probe.h"
#include "daemon/probes/proc_probe.h"
#include "exporters/otlp/exporter.h"
#include "exporters/otlp/metrics_exporter.h"
#include "exporters/prometheus/server.h"

namespace isotrace::api {

// The spans the node still holds (the embedded span store), for GetTrace.
using SpanSource = std::function<std::vector<SpanWithResource>()>;
// The verdicts the node decided (the pipeline's locate::VerdictStore; ReadVerdicts), for
// Locate.
using VerdictSource = std::function<VerdictSnapshot(const VerdictQuery&)>;

// Which metrics exporters OTEL_METRICS_EXPORTER asks for ("otlp", "prometheus", "none",
// comma-separated); unset: both (OTLP only when an endpoint is configured).
struct MetricsExporters {
  bool otlp = true;
  bool prometheus = true;
};
absl::StatusOr<MetricsExporters> ParseMetricsExporters(const std::string& value);

class LocalServices {
 public:
  // Checks the configuration (InvalidArgument: the caller exits 2), then starts what it
  // asks for. An endpoint the environment refuses (another daemon holds the socket, the
  // port is taken) is logged and left off: tracing goes on without it.
  // `otlp_metrics`: where OTLP metrics go (the caller resolves the spans' endpoint and
  // OTEL_EXPORTER_OTLP_METRICS_*); null or without an endpoint: no OTLP metrics.
  static absl::StatusOr<std::unique_ptr<LocalServices>> Start(
      const config::Config& cfg, const otlp::ExporterOptions* otlp_metrics,
      const std::string& host_name, SpanSource spans, VerdictSource verdicts);
  ~LocalServices();

  void Record(const std::shared_ptr<const correlate::Resource>& resource,
              const correlate::Span& span) {
    aggregator_->Record(resource, span);
  }
  void UpdateSelf(metrics::SelfStats stats) { aggregator_->UpdateSelf(std::move(stats)); }
  metrics::Aggregator& aggregator() { return *aggregator_; }

  // Stops the API and /metrics, then exports OTLP metrics a last time (until `deadline`).
  void Shutdown(absl::Time deadline);

  uint16_t prometheus_port() const { return prometheus_ ? prometheus_->port() : 0; }
  bool api_serving() const { return api_ != nullptr; }

 private:
  LocalServices() = default;
  std::unique_ptr<metrics::Aggregator> aggregator_;
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<prometheus::MetricsServer> prometheus_;
  std::unique_ptr<otlp::MetricsExporter> otlp_metrics_;
  std::string host_name_;
  SpanSource spans_;
  VerdictSource verdicts_;
  bool shut_down_ = false;
};

// isotrace's own resource: service.name=isotraced, host.name, process.pid,
// process.executable.name, service.version, plus OTEL_RESOURCE_ATTRIBUTES.
std::shared_ptr<const correlate::Resource> SelfResource(const config::Config& cfg,
                                                        const std::string& host_name);

// The self-telemetry the poll thread hands the aggregator (export_stats null: embedded;
// proc null: the proc probe did not load).
metrics::SelfStats SelfStatsFrom(const probes::L7Counters& probe, const probes::ProcCounters* proc,
                                 const correlate::TrackerStats& tracker,
                                 const otlp::ExportStats* export_stats,
                                 const locate::LocateStats* locate_stats = nullptr);

}  // namespace isotrace::api
