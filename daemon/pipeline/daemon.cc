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
#include "exporters/otlp/semconv.h"
#include "spdlog/spdlog.h"

namespace isotrace::pipeline {

absl::StatusOr<otlp::ExporterOptions> ExporterOptionsFor(const config::Config& cfg,
                                                         otlp::Signal signal) {
  // cfg holds the generic settings already merged (file < OTEL_* < flag); only what the
  // OTel spec puts on top of them, the signal-specific variables, is read here.
  otlp::ExporterOptions o;
  if (!cfg.otlp_endpoint.empty()) {
    // As in the OTel spec, a scheme-less endpoint means TLS unless insecure is set;
    // http:// is always plaintext (Exporter::Create says so in the log).
    auto ep = otlp::ParseEndpoint(cfg.otlp_endpoint, cfg.otlp_insecure);
    if (!ep.ok())
      return absl::InvalidArgumentError(absl::StrCat(
          "exporter.otlp.endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, --otlp-endpoint): ",
          ep.status().message()));
    o.endpoint = *ep;
    o.endpoint_configured = true;
  }
  if (!cfg.otlp_headers.empty()) {
    auto h = otlp::ParseHeaders(cfg.otlp_headers);
    if (!h.ok())
      return absl::InvalidArgumentError(absl::StrCat(
          "exporter.otlp.headers (OTEL_EXPORTER_OTLP_HEADERS): ", h.status().message()));
    o.headers = *std::move(h);
  }
  o.gzip = cfg.otlp_compression == "gzip";
  o.timeout = absl::Milliseconds(cfg.export_timeout_ms);
  struct Pem {
    const std::string& path;
    std::string* out;
    const char* setting;
  };
  for (const Pem& p : {Pem{cfg.otlp_certificate, &o.root_certs_pem, "exporter.otlp.certificate"},
                       Pem{cfg.otlp_client_certificate, &o.client_cert_pem,
                           "exporter.otlp.client_certificate"},
                       Pem{cfg.otlp_client_key, &o.client_key_pem, "exporter.otlp.client_key"}}) {
    if (p.path.empty()) continue;
    auto pem = otlp::ReadPemFile(p.setting, p.path);
    if (!pem.ok()) return pem.status();
    *p.out = *std::move(pem);
  }
  o.batch_timeout = absl::Milliseconds(cfg.export_interval_ms);
  o.max_queue_size = cfg.export_queue_size;
  o.max_batch_size = cfg.export_batch_size;
  // --otlp-endpoint (already in cfg) beats every variable, the traces-specific one too.
  if (auto st = otlp::ApplySignalEnv(otlp::ProcessEnv(), signal,
                                     /*read_endpoint=*/signal != otlp::Signal::kTraces,
                                     cfg.otlp_insecure, &o);
      !st.ok())
    return st;
  // The spec: a batch larger than the queue is clamped to the queue.
  o.max_batch_size = std::min(o.max_batch_size, o.max_queue_size);
  o.max_queue_bytes = cfg.export_queue_bytes;
  o.retry.max_attempts = static_cast<int>(cfg.retry_max_attempts);
  o.retry.initial_backoff = absl::Milliseconds(cfg.retry_initial_backoff_ms);
  o.retry.max_backoff = absl::Milliseconds(cfg.retry_max_backoff_ms);
  o.retry.max_server_delay = absl::Milliseconds(cfg.retry_max_server_delay_ms);
  return o;
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
  namespace sc = otlp::semconv;
  auto& a = r.attributes;
  auto put = [&a](std::string_view key, correlate::AttrValue v) { a.push_back({std::string(key), std::move(v)}); };
  put(sc::kEventName, std::string(sc::kEventNameVerdict));
  put(sc::kVerdictService, v.service);
  put(sc::kVerdictLayer, v.layer);
  put(sc::kVerdictCause, v.cause);
  put(sc::kVerdictShare, v.share);
  put(sc::kVerdictReason, v.reason);
  put(sc::kVerdictRootService, v.root_service);
  put(sc::kVerdictDurationNs, v.duration_ns);
  put(sc::kVerdictBaselineNs, v.baseline_ns);
  put(sc::kHttpRequestMethod, v.method);
  put(sc::kUrlPath, v.path);
  if (v.status_code) put(sc::kHttpResponseStatusCode, static_cast<int64_t>(v.status_code));
  if (!v.error_type.empty()) put(sc::kErrorType, v.error_type);
  if (!v.evidence.empty()) {
    put(sc::kVerdictValueNs, v.evidence.front().value_ns);
    put(sc::kVerdictExcessNs, v.evidence.front().excess_ns);
  }
  put(sc::kVerdictEvidence, locate::EvidenceText(v));
  put(sc::kVerdictPath, locate::PathText(v));
  put(sc::kVerdictSpans, static_cast<int64_t>(v.spans));
  return r;
}

// The counters a test or an operator reads after the daemon exited (log.stats_file /
// --stats-file): the same numbers as the final log lines, machine-readable.
void WriteStatsFile(const std::string& path, const otlp::ExportStats* es, bool exporter_ok,
                    const probes::L7Counters& pc, const std::optional<probes::ProcCounters>& proc,
                    const correlate::TrackerStats& ts, const probes::ListenDropsStats& ld) {
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
      ", \"tls_targets\": ", pc.tls_targets, ", \"tls_untied\": ", pc.tls_untied,
      ", \"tls_ciphertext\": ", pc.tls_ciphertext, ", \"synack_limited\": ", pc.synack_limited,
      ", \"acct_resyncs\": ", pc.acct_resyncs, "}",
      ", \"edge\": {\"devices\": ", pc.edge_devices, ", \"packets\": ", pc.edge_packets,
      ", \"ringbuf_drops\": ", pc.edge_drops, ", \"malformed\": ", pc.edge_malformed,
      ", \"attach_failures\": ", pc.edge_attach_failures, ", \"retransmits\": ", pc.edge.retransmits,
      ", \"reordered\": ", pc.edge.reordered, ", \"holes\": ", pc.edge.holes,
      ", \"hole_bytes\": ", pc.edge.hole_bytes, ", \"flows_evicted\": ", pc.edge.flows_evicted, "}",
      proc ? absl::StrCat(", \"proc\": {\"received\": ", proc->received, ", \"malformed\": ",
                          proc->malformed, ", \"ringbuf_drops\": ", proc->ringbuf_drops,
                          ", \"path_too_long\": ", proc->path_too_long,
                          ", \"inflight_full\": ", proc->inflight_full, "}")
           : "",
      "},\n \"tracker\": {\"spans\": ", ts.spans,
      ", \"connections_not_http\": ", ts.connections_not_http,
      ", \"connections_http2\": ", ts.connections_http2,
      ", \"connections_http2_undecodable\": ", ts.connections_http2_undecodable,
      ", \"http2_streams_dropped\": ", ts.http2_streams_dropped,
      ", \"links_process\": ", ts.links_process, ", \"links_peer\": ", ts.links_peer,
      ", \"links_peer_unmatched\": ", ts.links_peer_unmatched, ", \"links_peer_held\": ", ts.links_peer_held,
      ", \"links_peer_held_expired\": ", ts.links_peer_held_expired,
      ", \"synack_retransmits\": ", ts.synack_retransmits, ", \"synack_on_spans\": ", ts.synack_on_spans,
      ", \"links_peer_nat\": ", ts.links_peer_nat, ", \"links_nat_ambiguous\": ", ts.links_nat_ambiguous,
      ", \"nat_lookups\": ", ts.nat_lookups, ", \"nat_translated\": ", ts.nat_translated,
      ", \"nat_no_entry\": ", ts.nat_no_entry, ", \"nat_errors\": ", ts.nat_errors, ", \"nat_ambiguous\": ", ts.nat_ambiguous,
      ", \"nat_asks_dropped\": ", ts.nat_asks_dropped, ", \"listen_samples\": ", ld.samples,
      ", \"listen_read_errors\": ", ld.read_errors, ", \"listen_namespaces\": ", ld.namespaces, "}}\n");
  // Write then rename, so a reader never sees half a file.
  const std::string tmp = path + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    const bool ok = std::fwrite(json.data(), 1, json.size(), f) == json.size();
    if (std::fclose(f) == 0 && ok && std::rename(tmp.c_str(), path.c_str()) == 0) return;
  }
  spdlog::warn("cannot write the stats file {}: {}", path, std::strerror(errno));
}

}  // namespace

Node::Node(const config::Config& cfg, NodeOptions options)
    : cfg_(cfg), options_(options), pipeline_(cfg) {}

Node::~Node() { Stop(); }

metrics::SelfStats Node::SelfStats(const otlp::ExportStats* export_stats) const {
  const auto ls = pipeline_.locate_stats();
  const auto proc = pipeline_.proc_counters();
  return api::SelfStatsFrom(pipeline_.probe_counters(), proc ? &*proc : nullptr,
                            pipeline_.tracker_stats(), export_stats, &ls);
}

absl::Status Node::Start(int* exit_code) {
  int ignored = 0;
  int& rc = exit_code ? *exit_code : ignored;
  auto config_error = [&](const char* what, const absl::Status& st) {
    rc = 2;
    return absl::Status(st.code(), absl::StrCat(what, st.message()));
  };
  // Every exporter's configuration before anything loads: a mistake costs no probe load.
  std::optional<otlp::ExporterOptions> trace_opts, metrics_opts, logs_opts;
  if (options_.serve) {
    auto t = TraceExporterOptions(cfg_);
    if (!t.ok()) return config_error("exporter configuration: ", t.status());
    auto m = ExporterOptionsFor(cfg_, otlp::Signal::kMetrics);
    if (!m.ok()) return config_error("metrics exporter configuration: ", m.status());
    auto l = ExporterOptionsFor(cfg_, otlp::Signal::kLogs);
    if (!l.ok()) return config_error("logs exporter configuration: ", l.status());
    trace_opts = *std::move(t);
    metrics_opts = *std::move(m);
    logs_opts = *std::move(l);
  }
  if (auto st = pipeline_.Start(); !st.ok()) {
    rc = 1;
    return absl::Status(st.code(), absl::StrCat("cannot start: ", st.message()));
  }
  started_ = true;
  if (trace_opts && trace_opts->endpoint_configured) {
    auto ex = otlp::TraceExporter::Create(*trace_opts);
    if (!ex.ok()) return config_error("exporter: ", ex.status());
    traces_ = std::move(*ex);
    auto* raw = traces_.get();
    pipeline_.AddSharedConsumer([raw](const std::shared_ptr<const correlate::Resource>& r,
                                      const std::shared_ptr<const correlate::Span>& s) {
      raw->Enqueue(r, s);
    });
    spdlog::info("exporting spans over OTLP/gRPC to {} ({})", trace_opts->endpoint.target,
                 trace_opts->endpoint.insecure ? "plaintext" : "TLS");
  } else if (options_.serve) {
    spdlog::info("embedded mode: no OTLP endpoint; keeping the last {} spans in memory",
                 cfg_.embedded_spans);
  }
  // Metrics (OTLP and /metrics) and the CLI's local API, fed by every span; without
  // `serve` the aggregator alone (no socket, no port, no OTLP).
  config::Config services_cfg = cfg_;
  if (!options_.serve) {
    services_cfg.api_socket.clear();
    services_cfg.prometheus_listen.clear();
  }
  auto services = api::LocalServices::Start(
      services_cfg, metrics_opts ? &*metrics_opts : nullptr, pipeline_.resolver().host_name(),
      [this] {
        std::vector<api::SpanWithResource> out;
        for (auto& s : pipeline_.store().Recent(cfg_.embedded_spans))
          out.push_back({std::move(s.resource), *s.span});
        return out;
      },
      [this](const api::VerdictQuery& q) { return api::ReadVerdicts(pipeline_.verdicts(), q); });
  if (!services.ok()) return config_error("", services.status());
  services_ = std::move(*services);
  api::LocalServices* svc = services_.get();
  // After the local API and /metrics are up (readiness follows the probes closely).
  // Verdicts: a log line each (rate-limited), and an OTLP log record when exporting.
  if (traces_ && logs_opts && logs_opts->endpoint_configured) {
    auto lx = otlp::LogsExporter::Create(*logs_opts);
    if (!lx.ok()) return config_error("logs exporter: ", lx.status());
    logs_ = std::move(*lx);
  }
  {
    otlp::LogsExporter* raw_logs = logs_.get();
    auto last_log = std::make_shared<uint64_t>(0);
    auto suppressed = std::make_shared<uint64_t>(0);
    pipeline_.AddVerdictConsumer([raw_logs, last_log, suppressed](
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
  pipeline_.AddConsumer([svc](const std::shared_ptr<const correlate::Resource>& r,
                              const correlate::Span& s) { svc->Record(r, s); });
  // Self-telemetry, read on the poll thread once a second (daemon/api/services.h).
  pipeline_.AddTicker([this, svc] {
    std::optional<otlp::ExportStats> now;
    if (traces_) now = traces_->Stats();
    svc->UpdateSelf(SelfStats(now ? &*now : nullptr));
  });
  rc = 0;
  return absl::OkStatus();
}

absl::Status Node::Run(const std::atomic<bool>& stop) { return pipeline_.Run(stop); }

void Node::Stop() {
  if (stopped_ || !started_) return;
  stopped_ = true;
  const auto& ts = pipeline_.tracker_stats();
  auto pc = pipeline_.probe_counters();
  std::optional<otlp::ExportStats> es;
  bool exporter_ok = true;
  const auto deadline = [&] { return absl::Now() + absl::Milliseconds(cfg_.export_shutdown_timeout_ms); };
  if (traces_) {
    absl::Status st = traces_->Shutdown(deadline());
    exporter_ok = st.ok();
    es = traces_->Stats();
    std::vector<std::string> reasons;
    for (const auto& [reason, n] : es->dropped)
      if (n > 0) reasons.push_back(absl::StrCat(reason, "=", n));
    spdlog::info("exporter: accepted {} sent {} dropped {}{}{}{}", es->accepted, es->sent,
                 es->dropped_total(), reasons.empty() ? "" : " (",
                 absl::StrJoin(reasons, " "), reasons.empty() ? "" : ")");
    if (!st.ok()) spdlog::warn("exporter: shutdown deadline passed");
  }
  if (logs_) {
    absl::Status st = logs_->Shutdown(deadline());
    auto ls = logs_->Stats();
    spdlog::info("logs exporter: accepted {} sent {} dropped {}", ls.accepted, ls.sent, ls.dropped_total());
    if (!st.ok()) spdlog::warn("logs exporter: shutdown deadline passed");
  }
  if (services_) {
    // Final counters, then the last OTLP metrics export.
    services_->UpdateSelf(SelfStats(es ? &*es : nullptr));
    services_->Shutdown(deadline());
  }
  if (options_.serve && !cfg_.stats_file.empty())
    WriteStatsFile(cfg_.stats_file, es ? &*es : nullptr, exporter_ok, pc, pipeline_.proc_counters(), ts,
                   pipeline_.listen_drops_stats());
  spdlog::info("stopped: {} spans, {} events, {} lost in the kernel, {} connections not HTTP",
               ts.spans, pc.received, pc.ringbuf_drops, ts.connections_not_http);
}

int RunDaemon(const config::Config& cfg, const std::atomic<bool>& stop) {
  probes::InstallLibbpfLogger(cfg.log_level == "debug" || cfg.log_level == "trace");
  Node node(cfg);
  int rc = 0;
  if (auto st = node.Start(&rc); !st.ok()) {
    spdlog::error("{}", st.message());
    return rc;
  }
  absl::Status run = node.Run(stop);
  if (!run.ok()) spdlog::error("poll loop: {}", run.message());
  node.Stop();
  return run.ok() ? 0 : 1;
}

}  // namespace isotrace::pipeline
