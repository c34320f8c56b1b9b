#include "daemon/api/services.h"
#include "exporters/otlp/semconv.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "daemon/layers/process_resolver.h"
#include "daemon/util/ascii.h"
#include "daemon/util/fmt.h"
#include "exporters/otlp/encode.h"
#include "exporters/prometheus/text.h"
#include "spdlog/spdlog.h"

namespace isotrace::api {

absl::StatusOr<MetricsExporters> ParseMetricsExporters(const std::string& value) {
  MetricsExporters out{false, false};
  std::string_view rest = value;
  while (true) {
    size_t comma = rest.find(',');
    std::string_view item = util::Trim(rest.substr(0, comma));
    if (item == "otlp") out.otlp = true;
    else if (item == "prometheus") out.prometheus = true;
    else if (item != "none" && !item.empty())
      return absl::InvalidArgumentError(absl::StrCat(
          "OTEL_METRICS_EXPORTER='", value, "': '", std::string(item),
          "' is not supported; use otlp, prometheus, none or a comma-separated list"));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

std::shared_ptr<const correlate::Resource> SelfResource(const config::Config& cfg,
                                                        const std::string& host_name) {
  auto r = std::make_shared<correlate::Resource>();
  namespace semconv = otlp::semconv;
  r->attributes = {{std::string(semconv::kServiceName), std::string("isotraced")},
                   {std::string(semconv::kServiceVersion), std::string(otlp::Version())},
                   {std::string(semconv::kHostName), host_name},
                   {std::string(semconv::kProcessPid), int64_t{getpid()}},
                   {std::string(semconv::kProcessExecutableName), std::string("isotraced")}};
  for (auto& a : layers::ParseResourceAttributes(cfg.resource_attributes)) {
    if (a.key == semconv::kServiceName) continue;  // the node's attributes, not isotrace's name
    r->attributes.push_back(std::move(a));
  }
  return r;
}

metrics::SelfStats SelfStatsFrom(const probes::L7Counters& probe, const probes::ProcCounters* proc,
                                 const correlate::TrackerStats& tracker,
                                 const otlp::ExportStats* es, const locate::LocateStats* ls) {
  metrics::SelfStats s;
  s.links = {{"thread", tracker.links_thread},
             {"thread_ambiguous", tracker.links_thread_ambiguous},
             {"peer", tracker.links_peer},
             {"peer_ambiguous", tracker.links_peer_ambiguous},
             {"peer_unmatched", tracker.links_peer_unmatched},
             {"peer_held", tracker.links_peer_held},
             {"peer_held_expired", tracker.links_peer_held_expired},
             {"peer_nat", tracker.links_peer_nat},
             {"nat_ambiguous", tracker.links_nat_ambiguous},
             {"app_traceparent", tracker.app_traceparents},
             {"process", tracker.links_process},
             {"process_ambiguous", tracker.links_process_ambiguous}};
  s.nat_lookups = {{"translated", tracker.nat_translated},
                   {"untranslated", tracker.nat_lookups - tracker.nat_translated - tracker.nat_no_entry -
                                        tracker.nat_errors - tracker.nat_ambiguous},
                   {"no_entry", tracker.nat_no_entry},
                   {"error", tracker.nat_errors},
                   {"ambiguous", tracker.nat_ambiguous},
                   {"dropped", tracker.nat_asks_dropped}};
  if (ls != nullptr)
    s.locate = {{"normal", ls->traces - ls->abnormal},
                {"slow", ls->slow},
                {"shift", ls->shift},
                {"lone", ls->lone},
                {"failed", ls->failed},
                {"learning", ls->learning},
                {"released_unjudged", ls->released_unjudged},
                {"late_children", ls->late_children}};
  metrics::SelfStats::Probe l7;
  l7.name = "l7";
  l7.events = probe.received;
  l7.lost_by_reason = {{"ringbuf_full", probe.ringbuf_drops},
                       {"inflight_full", probe.inflight_full},
                       {"malformed", probe.malformed},
                       {"tls_untied", probe.tls_untied},
                       {"synack_rate_limited", probe.synack_limited}};
  l7.lost = probe.ringbuf_drops + probe.inflight_full + probe.malformed + probe.tls_untied + probe.synack_limited;
  s.probes.push_back(std::move(l7));
  {
    // Sandbox edges (docs/layers.md): packets the ring could not take, and the bytes
    // reassembly had to give up (holes that never filled).
    metrics::SelfStats::Probe e;
    e.name = "edge";
    e.events = probe.edge_packets;
    e.lost_by_reason = {{"ringbuf_full", probe.edge_drops},
                        {"malformed", probe.edge_malformed},
                        {"reassembly_hole", probe.edge.holes}};
    e.lost = probe.edge_drops + probe.edge_malformed + probe.edge.holes;
    s.probes.push_back(std::move(e));
  }
  if (proc != nullptr) {
    // Process facts lost here make identity fall back to comm changes and miss .wasm
    // loads: as visible as the l7 losses.
    metrics::SelfStats::Probe p;
    p.name = "proc";
    p.events = proc->received;
    p.lost_by_reason = {{"ringbuf_full", proc->ringbuf_drops},
                        {"inflight_full", proc->inflight_full},
                        {"path_too_long", proc->path_too_long},
                        {"malformed", proc->malformed}};
    p.lost = proc->ringbuf_drops + proc->inflight_full + proc->path_too_long + proc->malformed;
    s.probes.push_back(std::move(p));
  }
  s.spans = tracker.spans;
  s.correlate_lost = {{"connections_evicted", tracker.connections_evicted},
                      {"requests_overflow", tracker.requests_overflow},
                      {"requests_unanswered", tracker.requests_unanswered},
                      {"responses_unmatched", tracker.responses_unmatched},
                      {"stream_gaps", tracker.stream_gaps},
                      {"requests_lost_in_gap", tracker.requests_lost_in_gap},
                      {"http2_connections_undecodable", tracker.connections_http2_undecodable},
                      {"http2_streams_dropped", tracker.http2_streams_dropped}};
  if (es != nullptr) {
    s.exporting = true;
    s.spans_accepted = es->accepted;
    s.spans_sent = es->sent;
    s.spans_dropped = es->dropped;
    s.queue_size = es->queue_size;
  }
  return s;
}

absl::StatusOr<std::unique_ptr<LocalServices>> LocalServices::Start(
    const config::Config& cfg, const otlp::ExporterOptions* otlp_metrics,
    const std::string& host_name, SpanSource spans, VerdictSource verdicts) {
  MetricsExporters which;
  auto env = otlp::ProcessEnv();
  if (auto it = env.find("OTEL_METRICS_EXPORTER"); it != env.end() && !it->second.empty()) {
    auto parsed = ParseMetricsExporters(it->second);
    if (!parsed.ok()) return parsed.status();
    which = *parsed;
  }
  std::optional<prometheus::ListenAddress> listen;
  if (which.prometheus && !cfg.prometheus_listen.empty()) {
    auto addr = prometheus::ParseListenAddress(cfg.prometheus_listen);
    if (!addr.ok())
      return absl::InvalidArgumentError(absl::StrCat("metrics.prometheus_listen: ", addr.status().message()));
    listen = *addr;
  }
  if (cfg.metrics_export_interval_ms == 0)
    return absl::InvalidArgumentError(
        "metrics.export_interval_ms (OTEL_METRIC_EXPORT_INTERVAL) = 0: use an interval > 0 ms "
        "(default 60000)");

  std::optional<otlp::ExporterOptions> metrics_options;
  if (which.otlp && otlp_metrics != nullptr && otlp_metrics->endpoint_configured)
    metrics_options = *otlp_metrics;

  std::unique_ptr<LocalServices> s(new LocalServices());
  s->host_name_ = host_name;
  s->spans_ = std::move(spans);
  s->verdicts_ = std::move(verdicts);
  metrics::AggregatorOptions ao;
  ao.max_workloads = cfg.metrics_max_workloads;
  ao.self_resource = SelfResource(cfg, host_name);
  s->aggregator_ = std::make_unique<metrics::Aggregator>(std::move(ao));
  auto* self = s.get();

  if (!cfg.api_socket.empty()) {
    ApiHandlers h;
    h.top = [self](const v1::TopRequest& req) {
      uint32_t w = req.window_seconds() == 0 ? kDefaultWindowS : req.window_seconds();
      return TopResponseFrom(self->aggregator_->Top(w), self->host_name_, "daemon");
    };
    h.get_trace = [self](const v1::GetTraceRequest& req) {
      correlate::TraceId id{};
      std::copy(req.trace_id().begin(), req.trace_id().end(), id.begin());
      return TraceResponseFrom(self->spans_ ? self->spans_() : std::vector<SpanWithResource>{}, id);
    };
    h.locate = [self](const v1::LocateRequest& req) {
      const uint64_t now = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
      VerdictQuery q = VerdictQueryFrom(req, now);
      return LocateResponseFrom(self->verdicts_ ? self->verdicts_(q) : VerdictSnapshot{}, "daemon",
                                now);
    };
    auto api = ApiServer::Start({cfg.api_socket, cfg.api_socket_group}, std::move(h));
    if (api.ok()) {
      s->api_ = std::move(*api);
      spdlog::info("local API on {} ({})", cfg.api_socket,
                   cfg.api_socket_group.empty() ? "root only" : "group " + cfg.api_socket_group);
    } else if (api.status().code() == absl::StatusCode::kInvalidArgument) {
      return api.status();
    } else {
      spdlog::warn("local API off: {}", api.status().message());
    }
  }

  if (listen) {
    if (!listen->loopback)
      spdlog::warn("serving /metrics on {}, a non-loopback address: anyone who reaches it reads "
                   "every service's metrics",
                   listen->ToString());
    auto srv = prometheus::MetricsServer::Start(
        *listen, [self] { return prometheus::RenderText(self->aggregator_->Collect()); });
    if (srv.ok()) {
      s->prometheus_ = std::move(*srv);
      spdlog::info("prometheus metrics on http://{}:{}/metrics",
                   listen->addr.ss_family == AF_INET6 ? "[" + listen->host + "]" : listen->host,
                   s->prometheus_->port());
    } else {
      spdlog::warn("prometheus endpoint off: {}", srv.status().message());
    }
  }

  if (metrics_options) {
    auto ex = otlp::MetricsExporter::Create(*metrics_options,
                                            absl::Milliseconds(cfg.metrics_export_interval_ms),
                                            [self] { return self->aggregator_->Collect(); });
    if (!ex.ok()) return ex.status();
    s->otlp_metrics_ = std::move(*ex);
    spdlog::info("exporting metrics over OTLP/gRPC to {} every {} ms", metrics_options->endpoint.target,
                 cfg.metrics_export_interval_ms);
  }
  return s;
}

void LocalServices::Shutdown(absl::Time deadline) {
  if (shut_down_) return;
  shut_down_ = true;
  if (api_) api_->Shutdown();
  prometheus_.reset();
  if (otlp_metrics_) {
    if (auto st = otlp_metrics_->Shutdown(deadline); !st.ok()) spdlog::warn("{}", st.message());
    auto ms = otlp_metrics_->Stats();
    spdlog::info("metrics exporter: {} exports, {} data points sent, {} collections failed",
                 ms.exports, ms.points_sent, ms.exports_failed);
  }
}

LocalServices::~LocalServices() { Shutdown(absl::Now()); }

}  // namespace isotrace::api
