#include "daemon/pipeline/daemon.h"

#include <memory>

#include "daemon/pipeline/pipeline.h"
#include "daemon/util/fmt.h"
#include "daemon/probes/environment.h"
#include "exporters/otlp/exporter.h"
#include "spdlog/spdlog.h"

namespace isotrace::pipeline {

absl::StatusOr<otlp::ExporterOptions> TraceExporterOptions(const config::Config& cfg) {
  auto opts = otlp::OptionsFromEnv(otlp::ProcessEnv(), otlp::Signal::kTraces);
  if (!opts.ok()) return opts.status();
  if (!cfg.otlp_endpoint.empty()) {
    auto ep = otlp::ParseEndpoint(cfg.otlp_endpoint, /*insecure_without_scheme=*/true);
    if (!ep.ok()) return ep.status();
    opts->endpoint = *ep;
    opts->endpoint_configured = true;
  }
  if (!cfg.otlp_headers.empty()) {
    auto headers = otlp::ParseHeaders(cfg.otlp_headers);
    if (!headers.ok()) return headers.status();
    opts->headers = *headers;
  }
  opts->max_batch_size = cfg.export_batch_size;
  opts->max_queue_size = cfg.export_queue_size;
  opts->timeout = absl::Milliseconds(cfg.export_timeout_ms);
  opts->batch_timeout = absl::Milliseconds(cfg.export_interval_ms);
  return opts;
}

int RunDaemon(const config::Config& cfg, const std::atomic<bool>& stop) {
  probes::InstallLibbpfLogger(cfg.log_level == "debug" || cfg.log_level == "trace");
  auto opts = TraceExporterOptions(cfg);
  if (!opts.ok()) {
    spdlog::error("exporter configuration: {}", opts.status().message());
    return 2;
  }
  Pipeline pipeline(cfg);
  if (auto st = pipeline.Start(); !st.ok()) {
    spdlog::error("cannot start: {}", st.message());
    return 1;
  }
  std::unique_ptr<otlp::TraceExporter> exporter;
  if (opts->endpoint_configured) {
    auto ex = otlp::TraceExporter::Create(*opts);
    if (!ex.ok()) {
      spdlog::error("exporter: {}", ex.status().message());
      return 2;
    }
    exporter = std::move(*ex);
    auto* raw = exporter.get();
    pipeline.AddConsumer([raw](const std::shared_ptr<const correlate::Resource>& r,
                               const correlate::Span& s) { raw->Enqueue(r, s); });
    spdlog::info("exporting spans over OTLP/gRPC to {} ({})", opts->endpoint.target,
                 opts->endpoint.insecure ? "plaintext" : "TLS");
  } else {
    spdlog::info("embedded mode: no OTLP endpoint; keeping the last {} spans in memory",
                 cfg.embedded_spans);
  }

  absl::Status run = pipeline.Run(stop);
  if (!run.ok()) spdlog::error("poll loop: {}", run.message());

  int rc = run.ok() ? 0 : 1;
  const auto& ts = pipeline.tracker_stats();
  auto pc = pipeline.probe_counters();
  if (exporter) {
    absl::Status st = exporter->Shutdown(absl::Now() + absl::Seconds(5));
    auto es = exporter->Stats();
    spdlog::info("exporter: accepted {} sent {} dropped {}{}", es.accepted, es.sent,
                 es.dropped_total(), st.ok() ? "" : " (shutdown deadline passed)");
  }
  spdlog::info("stopped: {} spans, {} events, {} lost in the kernel, {} connections not HTTP",
               ts.spans, pc.received, pc.ringbuf_drops, ts.connections_not_http);
  return rc;
}

}  // namespace isotrace::pipeline
