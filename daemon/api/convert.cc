#include "daemon/api/convert.h"

#include <algorithm>
#include <variant>

#include "daemon/correlate/resource.h"
#include "exporters/otlp/span_attributes.h"

namespace isotrace::api {

namespace {
std::string Bytes(const uint8_t* p, size_t n) { return std::string(reinterpret_cast<const char*>(p), n); }

std::string ServiceName(const correlate::Resource* r) { return std::string(correlate::ServiceNameOf(r)); }

// One typed measure as an API attribute (names from otlp/span_attributes.h, as OTLP has them).
struct AddAttr {
  google::protobuf::RepeatedPtrField<v1::Attribute>* out;
  void operator()(std::string_view key, int64_t v) const { Add(key)->set_int_value(v); }
  void operator()(std::string_view key, double v) const { Add(key)->set_double_value(v); }
  void operator()(std::string_view key, std::string_view v) const {
    Add(key)->set_string_value(std::string(v));
  }
  v1::Attribute* Add(std::string_view key) const {
    auto* a = out->Add();
    a->set_key(std::string(key));
    return a;
  }
};
}  // namespace

void ToProto(const correlate::Attribute& a, v1::Attribute* out) {
  out->set_key(a.key);
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) out->set_string_value(x);
        else if constexpr (std::is_same_v<T, int64_t>) out->set_int_value(x);
        else if constexpr (std::is_same_v<T, double>) out->set_double_value(x);
        else out->set_bool_value(x);
      },
      a.value);
}

v1::TopResponse TopResponseFrom(const metrics::TopView& view, const std::string& host_name,
                                const std::string& mode) {
  v1::TopResponse out;
  out.set_time_unix_nano(view.time_unix_ns);
  out.set_window_seconds(view.window_s);
  out.set_host_name(host_name);
  out.set_mode(mode);
  out.set_spans_total(view.spans_total);
  for (const auto& p : view.self.probes) {
    auto* ps = out.add_probes();
    ps->set_probe(p.name);
    ps->set_events(p.events);
    ps->set_lost(p.lost);
  }
  out.set_exporting(view.self.exporting);
  out.set_spans_sent(view.self.spans_sent);
  uint64_t dropped = 0;
  for (const auto& [reason, n] : view.self.spans_dropped) dropped += n;
  out.set_spans_dropped(dropped);
  out.set_export_queue_size(view.self.queue_size);
  for (const auto& r : view.rows) {
    auto* w = out.add_workloads();
    w->set_key(r.workload);
    w->set_service(r.service);
    w->set_namespace_(r.namespace_name);
    w->set_stack(r.stack);
    w->set_container_id(r.container_id);
    for (uint32_t pid : r.pids) w->add_pids(pid);
    for (const auto& a : r.resource) ToProto(a, w->add_resource());
    w->set_requests(r.requests);
    w->set_errors(r.errors);
    w->set_requests_per_second(r.requests_per_s);
    w->set_error_ratio(r.error_ratio);
    w->set_p50_seconds(r.p50_s);
    w->set_p99_seconds(r.p99_s);
    for (size_t c = 0; c < metrics::kShownCauses; ++c) {
      if (!r.shares[c]) continue;
      auto* s = w->add_shares();
      s->set_cause(std::string(metrics::Causes()[c].cause));
      s->set_column(std::string(metrics::Causes()[c].column));
      s->set_ratio(*r.shares[c]);
    }
    if (r.retransmits_per_s) w->set_retransmits_per_second(*r.retransmits_per_s);
    if (r.requests > 0) {
      w->set_slowest_trace_id(Bytes(r.slowest_trace_id.data(), r.slowest_trace_id.size()));
      w->set_slowest_seconds(r.slowest_s);
    }
    w->set_verdict_service(r.verdict_service);
    w->set_verdict_layer(r.verdict_layer);
    w->set_verdict_cause(r.verdict_cause);
    if (r.verdict_share) w->set_verdict_share(*r.verdict_share);
    w->set_total_requests(r.total_requests);
    w->set_total_errors(r.total_errors);
  }
  return out;
}

v1::Span SpanToProto(const SpanWithResource& sw) {
  const correlate::Span& s = sw.span;
  v1::Span out;
  out.set_trace_id(Bytes(s.trace_id.data(), s.trace_id.size()));
  out.set_span_id(Bytes(s.span_id.data(), s.span_id.size()));
  bool has_parent = false;
  for (uint8_t b : s.parent_span_id) has_parent |= b != 0;
  if (has_parent) out.set_parent_span_id(Bytes(s.parent_span_id.data(), s.parent_span_id.size()));
  out.set_service(sw.resource ? correlate::ServiceName(*sw.resource) : "unknown");
  out.set_pid(s.process.tgid);
  out.set_kind(static_cast<int32_t>(s.kind));
  out.set_name(s.method.empty() ? "HTTP" : s.method);
  out.set_start_time_unix_nano(s.start_unix_ns);
  out.set_end_time_unix_nano(s.end_unix_ns);
  out.set_method(s.method);
  out.set_path(s.path);
  out.set_status_code(s.status_code);
  out.set_error_type(s.error_type);
  out.set_server_address(s.server_address);
  out.set_server_port(s.server_port);
  otlp::ForEachIsotraceAttribute(s, AddAttr{out.mutable_attributes()});
  if (sw.resource)
    for (const auto& a : sw.resource->attributes) ToProto(a, out.add_resource());
  for (const auto& e : s.incidents) {
    auto* ev = out.add_events();
    ev->set_time_unix_nano(e.time_unix_ns);
    ev->set_name(std::string(otlp::IncidentEventName(e.kind)));
    otlp::ForEachIncidentAttribute(e, AddAttr{ev->mutable_attributes()});
  }
  return out;
}

v1::GetTraceResponse TraceResponseFrom(const std::vector<SpanWithResource>& spans,
                                       const correlate::TraceId& trace_id) {
  v1::GetTraceResponse out;
  out.set_spans_held(spans.size());
  for (const auto& s : spans)
    if (s.span.trace_id == trace_id) *out.add_spans() = SpanToProto(s);
  return out;
}

VerdictQuery VerdictQueryFrom(const v1::LocateRequest& req, uint64_t now_unix_ns) {
  VerdictQuery q;
  const uint64_t since_ns =
      uint64_t{req.since_seconds() == 0 ? kDefaultLocateSinceS : req.since_seconds()} *
      1000000000ull;
  q.since_unix_ns = now_unix_ns > since_ns ? now_unix_ns - since_ns : 0;
  if (req.trace_id().size() == 16) {
    correlate::TraceId id{};
    std::copy(req.trace_id().begin(), req.trace_id().end(), id.begin());
    q.trace_id = id;
  }
  q.max = req.max() == 0 ? kDefaultLocateMax : req.max();
  return q;
}

VerdictSnapshot ReadVerdicts(const locate::VerdictStore& store, const VerdictQuery& q) {
  VerdictSnapshot out;
  out.verdicts = store.Recent(q.since_unix_ns, q.trace_id, q.max);
  out.total = store.total();
  return out;
}

v1::Verdict VerdictToProto(const locate::Verdict& v) {
  v1::Verdict out;
  out.set_trace_id(Bytes(v.trace_id.data(), v.trace_id.size()));
  out.set_span_id(Bytes(v.span_id.data(), v.span_id.size()));
  out.set_start_time_unix_nano(v.start_unix_ns);
  out.set_end_time_unix_nano(v.end_unix_ns);
  out.set_decided_time_unix_nano(v.decided_unix_ns);
  out.set_reason(v.reason);
  out.set_root_service(v.root_service);
  out.set_method(v.method);
  out.set_path(v.path);
  out.set_status_code(v.status_code);
  out.set_error_type(v.error_type);
  out.set_duration_ns(v.duration_ns);
  out.set_baseline_ns(v.baseline_ns);
  out.set_service(v.service);
  out.set_layer(v.layer);
  out.set_cause(v.cause);
  out.set_share(v.share);
  for (const auto& e : v.evidence) {
    auto* pe = out.add_evidence();
    pe->set_service(e.service);
    pe->set_layer(e.layer);
    pe->set_cause(e.cause);
    pe->set_value_ns(e.value_ns);
    pe->set_baseline_ns(e.baseline_ns);
    pe->set_excess_ns(e.excess_ns);
  }
  for (const auto& h : v.path_hops) {
    auto* ph = out.add_critical_path();
    ph->set_service(h.service);
    ph->set_kind(static_cast<int32_t>(h.kind));
    ph->set_span_id(Bytes(h.span_id.data(), h.span_id.size()));
    ph->set_method(h.method);
    ph->set_path(h.path);
    ph->set_peer(h.peer);
    ph->set_duration_ns(h.duration_ns);
    ph->set_baseline_ns(h.baseline_ns);
  }
  out.set_spans(v.spans);
  return out;
}

v1::LocateResponse LocateResponseFrom(const VerdictSnapshot& snapshot, const std::string& mode,
                                      uint64_t now_unix_ns) {
  v1::LocateResponse out;
  for (const auto& v : snapshot.verdicts) *out.add_verdicts() = VerdictToProto(v);
  out.set_mode(mode);
  out.set_verdicts_total(snapshot.total);
  out.set_time_unix_nano(now_unix_ns);
  return out;
}

bool ParseTraceId(std::string_view hex, correlate::TraceId* out) {
  if (hex.size() != 32) return false;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < 16; ++i) {
    int hi = nib(hex[2 * i]), lo = nib(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

std::string HexId(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

}  // namespace isotrace::api
