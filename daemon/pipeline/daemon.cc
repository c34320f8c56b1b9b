#include "daemon/pipeline/daemon.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "daemon/api/services.h"
#include "daemon/locate/verdict_text.h"
#include "daemon/correlate/traceparent.h"
#include "daemon/pipeline/pipeline.h"
#include "daemon/util/fmt.h"
#include "daemon/probes/environment.h"
#include "exporters/otlp/exporter.h"
#include "spdlog/spdlog.h"

namespace isotrace::pipeline {

absl::StatusOr<otlp::ExporterOptions> ExporterOptionsFor(const config::Config& cfg,
                                                         otlp::Signal signal) {
  // One parser for every layer: cfg already holds file < generic OTEL_* < flag, so it is
  // written back as the generic variables, and the process's signal-specific ones
  // (OTEL_EXPORTER_OTLP_<SIGNAL>_*) stay on top, as the OTel spec orders them.
  otlp::EnvMap env = otlp::ProcessEnv();
  auto put = [&](const char* var, const std::string& v) {
    if (v.empty()) env.erase(var);
    else env[var] = v;
  };
  put("OTEL_EXPORTER_OTLP_ENDPOINT", cfg.otlp_endpoint);
  // --otlp-endpoint (already in cfg) beats every variable, the traces-specific one too.
  if (signal == otlp::Signal::kTraces) put("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", cfg.otlp_endpoint);
  put("OTEL_EXPORTER_OTLP_HEADERS", cfg.otlp_headers);
  // As in the OTel spec, a scheme-less endpoint means TLS unless insecure is set;
  // http:// is always plaintext (Exporter::Create says so in the log).
  put("OTEL_EXPORTER_OTLP_INSECURE", cfg.otlp_insecure ? "true" : "false");
  put("OTEL_EXPORTER_OTLP_COMPRESSION", cfg.otlp_compression);
  put("OTEL_EXPORTER_OTLP_TIMEOUT", std::to_string(cfg.export_timeout_ms));
  put("OTEL_EXPORTER_OTLP_CERTIFICATE", cfg.otlp_certificate);
  put("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cfg.otlp_client_certificate);
  put("OTEL_EXPORTER_OTLP_CLIENT_KEY", cfg.otlp_client_key);
  put("OTEL_BSP_SCHEDULE_DELAY", std::to_string(cfg.export_interval_ms));
  put("OTEL_BSP_MAX_QUEUE_SIZE", std::to_string(cfg.export_queue_size));
  put("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", std::to_string(cfg.export_batch_size));
  put("OTEL_BLRP_SCHEDULE_DELAY", std::to_string(cfg.export_interval_ms));
  put("OTEL_BLRP_MAX_QUEUE_SIZE", std::to_string(cfg.export_queue_size));
  put("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", std::to_string(cfg.export_batch_size));
  auto opts = otlp::OptionsFromEnv(env, signal);
  if (!opts.ok()) return opts.status();
  opts->max_queue_bytes = cfg.export_queue_bytes;
  opts->retry.max_attempts = static_cast<int>(cfg.retry_max_attempts);
  opts->retry.initial_backoff = absl::Milliseconds(cfg.retry_initial_backoff_ms);
  opts->retry.max_backoff = absl::Milliseconds(cfg.retry_max_backoff_ms);
  opts->retry.max_server_delay = absl::Milliseconds(cfg.retry_max_server_delay_ms);
  return opts;
}

absl::StatusOr<otlp::ExporterOptions> TraceExporterOptions(const config::Config& cfg) {
  return ExporterOptionsFor(cfg, otlp::Signal::kTraces);
}

namespace {

// A verdict as an OTLP log record tied to the trace's root-most span on this node.
otlp::LogRecord VerdictLogRecord(const locate::Verdict& v) {
  otlp::LogRecord r;
  r.time_unix_ns = v.end_unix_ns;
  r.observed_time_unix_ns = v.decided_unix_ns;
  r.severity_number = 13;  // WARN: a slow or failed request is worth a look, not an error of ours
  r.severity_text = "WARN";
  r.body = locate::Summary(v);
  r.trace_id = v.trace_id;
  r.span_id = v.span_id;
  r.trace_flags = 1;
  auto& a = r.attributes;
  a.push_back({"event.name", std::string("isotrace.verdict")});
  a.push_back({"isotrace.verdict.service", v.service});
  a.push_back({"isotrace.verdict.layer", v.layer});
  a.push_back({"isotrace.verdict.cause", v.cause});
  a.push_back({"isotrace.verdict.share", v.share});
  a.push_back({"isotrace.verdict.reason", v.reason});
  a.push_back({"isotrace.verdict.root_service", v.root_service});
  a.push_back({"isotrace.verdict.duration_ns", v.duration_ns});
  a.push_back({"isotrace.verdict.baseline_ns", v.baseline_ns});
  a.push_back({"http.request.method", v.method});
  a.push_back({"url.path", v.path});
  if (v.status_code) a.push_back({"http.response.status_code", static_cast<int64_t>(v.status_code)});
  if (!v.error_type.empty()) a.push_back({"error.type", v.error_type});
  if (!v.evidence.empty()) {
    a.push_back({"isotrace.verdict.value_ns", v.evidence.front().value_ns});
    a.push_back({"isotrace.verdict.excess_ns", v.evidence.front().excess_ns});
  }
  a.push_back({"isotrace.verdict.evidence", locate::EvidenceText(v)});
  a.push_back({"isotrace.verdict.path", locate::PathText(v)});
  a.push_back({"isotrace.verdict.spans", static_cast<int64_t>(v.spans)});
  return r;
}

// The counters a test or an operator reads after the daemon exited (log.stats_file /
// --stats-file): the same numbers as the final log lines, machine-readable.
void WriteStatsFile(const std::string& path, const otlp::ExportStats* es, bool exporter_ok,
                    const probes::L7Counters& pc, const correlate::TrackerStats& ts) {
  std::string dropped = "{}";
  std::string failures = "{}";
  if (es != nullptr) {
    std::vector<std::string> d, f;
    for (const auto& [reason, n] : es->dropped) d.push_back(absl::StrCat("\"", reason, "\": ", n));
    for (const auto& [code, n] : es->export_failures) f.push_back(absl::StrCat("\"", code, "\": ", n));
    dropped = absl::StrCat("{", absl::StrJoin(d, ", "), "}");
    failures = absl::StrCat("{", absl::StrJoin(f, ", "), "}");
  }
  std::string exporter =
      es == nullptr
          ? "null"
          : absl::StrCat("{\"accepted\": ", es->accepted, ", \"sent\": ", es->sent,
                         ", \"dropped_total\": ", es->dropped_total(), ", \"dropped\": ", dropped,
                         ", \"export_failures\": ", failures, ", \"retries\": ", es->retries,
                         ", \"server_delays\": ", es->server_delays,
                         ", \"partial_successes\": ", es->partial_successes,
                         ", \"batches_sent\": ", es->batches_sent,
                         ", \"queue_size\": ", es->queue_size,
                         ", \"shutdown_ok\": ", exporter_ok ? "true" : "false", "}");
  std::string json = absl::StrCat(
      "{\"exporter\": ", exporter, ",\n \"probes\": {\"l7\": {\"received\": ", pc.received,
      ", \"malformed\": ", pc.malformed, ", \"ringbuf_drops\": ", pc.ringbuf_drops,
      ", \"inflight_full\": ", pc.inflight_full, ", \"read_failures\": ", pc.read_failures,
      "}},\n \"tracker\": {\"spans\": ", ts.spans,
      ", \"connections_not_http\": ", ts.connections_not_http,
      ", \"connections_http2\": ", ts.connections_http2,
      ", \"connections_http2_undecodable\": ", ts.connections_http2_undecodable,
      ", \"http2_streams_dropped\": ", ts.http2_streams_dropped,
      ", \"links_process\": ", ts.links_process, ", \"links_peer\": ", ts.links_peer, "}}\n");
  // Write then rename, so a reader never sees half a file.
  const std::string tmp = path + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    const bool ok = std::fwrite(json.data(), 1, json.size(), f) == json.size();
    if (std::fclose(f) == 0 && ok && std::rename(tmp.c_str(), path.c_str()) == 0) return;
  }
  spdlog::warn("cannot write the stats file {}: {}", path, std::strerror(errno));
}

}  // namespace

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
  // Metrics (OTLP and /metrics) and the CLI's local API, fed by every span; self-telemetry
  // is read on the poll thread once a second (daemon/api/services.h).
  auto metrics_opts = ExporterOptionsFor(cfg, otlp::Signal::kMetrics);
  if (!metrics_opts.ok()) {
    spdlog::error("metrics exporter configuration: {}", metrics_opts.status().message());
    return 2;
  }
  auto services = api::LocalServices::Start(
      cfg, &*metrics_opts, pipeline.resolver().host_name(), [&pipeline, &cfg] {
        std::vector<api::SpanWithResource> out;
        for (auto& s : pipeline.store().Recent(cfg.embedded_spans))
          out.push_back({std::move(s.resource), std::move(s.span)});
        return out;
      },
      [&pipeline](const api::VerdictQuery& q) {
        return api::ReadVerdicts(pipeline.verdicts(), q);
      });
  if (!services.ok()) {
    spdlog::error("{}", services.status().message());
    return 2;
  }
  api::LocalServices* svc = services->get();
  // After the local API and /metrics are up (readiness follows the probes closely).
  // Verdicts: a log line each (rate-limited), and an OTLP log record when exporting.
  std::unique_ptr<otlp::LogsExporter> logs;
  if (exporter) {
    auto lopts = ExporterOptionsFor(cfg, otlp::Signal::kLogs);
    if (!lopts.ok()) {
      spdlog::error("logs exporter configuration: {}", lopts.status().message());
      return 2;
    }
    if (lopts->endpoint_configured) {
      auto lx = otlp::LogsExporter::Create(*lopts);
      if (!lx.ok()) {
        spdlog::error("logs exporter: {}", lx.status().message());
        return 2;
      }
      logs = std::move(*lx);
    }
  }
  {
    otlp::LogsExporter* raw_logs = logs.get();
    auto last_log = std::make_shared<uint64_t>(0);
    auto suppressed = std::make_shared<uint64_t>(0);
    pipeline.AddVerdictConsumer([raw_logs, last_log, suppressed](
                                    const locate::Verdict& v, const std::shared_ptr<const correlate::Resource>& r) {
      if (raw_logs) raw_logs->Enqueue(r, VerdictLogRecord(v));
      // At most one line a second in the daemon's own log; the rest are counted.
      if (v.decided_unix_ns >= *last_log + 1000000000ull) {
        *last_log = v.decided_unix_ns;
        spdlog::info("verdict trace {}: {} — {}{}", correlate::HexEncode(v.trace_id), locate::Summary(v),
                     locate::EvidenceText(v, 3),
                     *suppressed ? absl::StrCat(" (+", *suppressed, " more verdicts)") : "");
        *suppressed = 0;
      } else {
        ++*suppressed;
      }
    });
  }

  pipeline.AddConsumer([svc](const std::shared_ptr<const correlate::Resource>& r,
                             const correlate::Span& s) { svc->Record(r, s); });
  otlp::TraceExporter* traces = exporter.get();
  pipeline.AddTicker([svc, traces, &pipeline] {
    std::optional<otlp::ExportStats> now;
    if (traces) now = traces->Stats();
    auto ls = pipeline.locate_stats();
    svc->UpdateSelf(api::SelfStatsFrom(pipeline.probe_counters(), pipeline.tracker_stats(),
                                       now ? &*now : nullptr, &ls));
  });

  absl::Status run = pipeline.Run(stop);
  if (!run.ok()) spdlog::error("poll loop: {}", run.message());

  int rc = run.ok() ? 0 : 1;
  const auto& ts = pipeline.tracker_stats();
  auto pc = pipeline.probe_counters();
  std::optional<otlp::ExportStats> es;
  bool exporter_ok = true;
  if (exporter) {
    absl::Status st =
        exporter->Shutdown(absl::Now() + absl::Milliseconds(cfg.export_shutdown_timeout_ms));
    exporter_ok = st.ok();
    es = exporter->Stats();
    std::vector<std::string> reasons;
    for (const auto& [reason, n] : es->dropped)
      if (n > 0) reasons.push_back(absl::StrCat(reason, "=", n));
    spdlog::info("exporter: accepted {} sent {} dropped {}{}{}{}", es->accepted, es->sent,
                 es->dropped_total(), reasons.empty() ? "" : " (",
                 absl::StrJoin(reasons, " "), reasons.empty() ? "" : ")");
    if (!st.ok()) spdlog::warn("exporter: shutdown deadline passed");
  }
  if (logs) {
    absl::Status st = logs->Shutdown(absl::Now() + absl::Milliseconds(cfg.export_shutdown_timeout_ms));
    auto ls = logs->Stats();
    spdlog::info("logs exporter: accepted {} sent {} dropped {}", ls.accepted, ls.sent, ls.dropped_total());
    if (!st.ok()) spdlog::warn("logs exporter: shutdown deadline passed");
  }
  // Final counters, then the last OTLP metrics export.
  const auto final_locate = pipeline.locate_stats();
  svc->UpdateSelf(api::SelfStatsFrom(pc, ts, es ? &*es : nullptr, &final_locate));
  svc->Shutdown(absl::Now() + absl::Milliseconds(cfg.export_shutdown_timeout_ms));
  if (!cfg.stats_file.empty())
    WriteStatsFile(cfg.stats_file, es ? &*es : nullptr, exporter_ok, pc, ts);
  spdlog::info("stopped: {} spans, {} events, {} lost in the kernel, {} connections not HTTP",
               ts.spans, pc.received, pc.ringbuf_drops, ts.connections_not_http);
  return rc;
}

}  // namespace isotrace::pipeline
