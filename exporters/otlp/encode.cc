#include "exporters/otlp/encode.h"

#include <algorithm>
#include <array>
#include <string>
#include <type_traits>
#include <utility>

#include "exporters/otlp/semconv.h"
#include "exporters/otlp/str_util.h"

namespace isotrace::otlp {
namespace {

using google::protobuf::RepeatedPtrField;

#ifdef ISOTRACE_OTLP_VERSION
constexpr std::string_view kVersion = ISOTRACE_OTLP_VERSION;
#else
constexpr std::string_view kVersion = "0.1.0";
#endif

// Span.flags bits 8-9 (SpanFlags in trace.proto): "parent remoteness is known" and "parent
// is remote". isotrace always knows: the parent came from an incoming traceparent or not.
constexpr uint32_t kFlagHasIsRemote = 0x100;
constexpr uint32_t kFlagIsRemote = 0x200;

template <size_t N>
bool AllZero(const std::array<uint8_t, N>& id) {
  return std::all_of(id.begin(), id.end(), [](uint8_t b) { return b == 0; });
}

template <size_t N>
std::string Bytes(const std::array<uint8_t, N>& id) {
  return std::string(reinterpret_cast<const char*>(id.data()), N);
}

// Moves `s` into a proto string field, repairing it only when it is not UTF-8.
std::string Utf8(std::string_view s) { return IsValidUtf8(s) ? std::string(s) : SanitizeUtf8(s); }

// The registered HTTP methods (RFC 9110 plus PATCH); anything else is "_OTHER".
bool IsKnownMethod(std::string_view m) {
  static constexpr std::array<std::string_view, 9> kMethods = {
      "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  return std::find(kMethods.begin(), kMethods.end(), m) != kMethods.end();
}

// Splits an authority ("host", "host:port", "[v6]:port", "[v6]") into host and port
// (0 when absent or not a number).
std::pair<std::string_view, uint16_t> SplitAuthority(std::string_view authority) {
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return {authority, 0};
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') {
      port = authority.substr(close + 2);
    }
  } else if (size_t colon = authority.rfind(':');
             colon != std::string_view::npos && authority.find(':') == colon) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (auto p = str::ParseInt<uint16_t>(port)) return {host, *p};
  return {host, 0};
}

void AddString(std::string_view key, std::string_view value,
               RepeatedPtrField<otlp_common::KeyValue>* out) {
  auto* kv = out->Add();
  kv->set_key(std::string(key));
  kv->mutable_value()->set_string_value(Utf8(value));
}

void AddInt(std::string_view key, int64_t value, RepeatedPtrField<otlp_common::KeyValue>* out) {
  auto* kv = out->Add();
  kv->set_key(std::string(key));
  kv->mutable_value()->set_int_value(value);
}

otlp_trace::Status::StatusCode StatusFor(const correlate::Span& s) {
  // HTTP conventions: a server answering 4xx did its job (the client erred), so only 5xx
  // marks a SERVER span; for a CLIENT span any 4xx/5xx is an error. A request that ended
  // without a response (reset, timeout) carries error.type and is an error for both.
  bool error = false;
  if (s.rpc && s.rpc->grpc_status_code >= 0) {
    // RPC conventions for gRPC: a CLIENT span errs on any status but OK; a SERVER span
    // only on the codes that mean the server failed (UNKNOWN, DEADLINE_EXCEEDED,
    // UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS), not the caller's mistakes.
    const int c = s.rpc->grpc_status_code;
    error = s.kind == correlate::SpanKind::kClient ? c != 0
                                                   : (c == 2 || c == 4 || c == 12 || c == 13 || c == 14 || c == 15);
    return error ? otlp_trace::Status::STATUS_CODE_ERROR : otlp_trace::Status::STATUS_CODE_UNSET;
  }
  if (s.kind == correlate::SpanKind::kClient) {
    error = s.status_code >= 400 || !s.error_type.empty();
  } else {
    error = s.status_code >= 500 || (s.status_code == 0 && !s.error_type.empty());
  }
  return error ? otlp_trace::Status::STATUS_CODE_ERROR : otlp_trace::Status::STATUS_CODE_UNSET;
}

// Groups items by resource pointer, first-seen order, without reordering within a group.
template <typename Item>
std::vector<std::pair<const correlate::Resource*, std::vector<const Item*>>> GroupByResource(
    absl::Span<const Item> batch) {
  std::vector<std::pair<const correlate::Resource*, std::vector<const Item*>>> groups;
  for (const Item& item : batch) {
    const correlate::Resource* r = item.resource.get();
    auto it =
        std::find_if(groups.begin(), groups.end(), [r](const auto& g) { return g.first == r; });
    if (it == groups.end()) {
      groups.emplace_back(r, std::vector<const Item*>{});
      it = std::prev(groups.end());
    }
    it->second.push_back(&item);
  }
  return groups;
}

void EncodeResource(const correlate::Resource* r,
                    opentelemetry::proto::resource::v1::Resource* out) {
  if (r != nullptr) AddAttributes(r->attributes, out->mutable_attributes());
}

void EncodeScope(const Scope& scope, otlp_common::InstrumentationScope* out) {
  out->set_name(Utf8(scope.name));
  out->set_version(Utf8(scope.version));
}

}  // namespace

std::string_view Version() { return kVersion; }

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // no overlong forms
      if (c == 0xED) hi = 0x9F;  // no UTF-16 surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;  // <= U+10FFFF
    } else {
      return false;
    }
    if (i + len > n) return false;
    const auto c1 = static_cast<unsigned char>(s[i + 1]);
    if (c1 < lo || c1 > hi) return false;
    for (size_t k = 2; k < len; ++k) {
      const auto ck = static_cast<unsigned char>(s[i + k]);
      if (ck < 0x80 || ck > 0xBF) return false;
    }
    i += len;
  }
  return true;
}

std::string SanitizeUtf8(std::string_view s) {
  if (IsValidUtf8(s)) return std::string(s);
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    // Find the longest valid sequence starting at i: 1..4 bytes.
    size_t len = 0;
    for (size_t l = 1; l <= 4 && i + l <= s.size(); ++l) {
      if (IsValidUtf8(s.substr(i, l))) {
        len = l;
        break;
      }
    }
    if (len == 0) {
      out.append(kReplacement);
      ++i;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

void SetAnyValue(const correlate::AttrValue& value, otlp_common::AnyValue* out) {
  std::visit(
      [out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          out->set_string_value(Utf8(v));
        } else if constexpr (std::is_same_v<T, int64_t>) {
          out->set_int_value(v);
        } else if constexpr (std::is_same_v<T, double>) {
          out->set_double_value(v);
        } else if constexpr (std::is_same_v<T, bool>) {
          out->set_bool_value(v);
        }
      },
      value);
}

void AddAttribute(std::string_view key, const correlate::AttrValue& value,
                  RepeatedPtrField<otlp_common::KeyValue>* out) {
  auto* kv = out->Add();
  kv->set_key(Utf8(key));
  SetAnyValue(value, kv->mutable_value());
}

void AddAttributes(absl::Span<const correlate::Attribute> attrs,
                   RepeatedPtrField<otlp_common::KeyValue>* out) {
  out->Reserve(out->size() + static_cast<int>(attrs.size()));
  for (const auto& a : attrs) AddAttribute(a.key, a.value, out);
}

absl::Status ValidateSpan(const correlate::Span& span) {
  if (AllZero(span.trace_id)) return absl::InvalidArgumentError("span has an all-zero trace id");
  if (AllZero(span.span_id)) return absl::InvalidArgumentError("span has an all-zero span id");
  return absl::OkStatus();
}

std::string SpanName(const correlate::Span& span) {
  // RPC conventions: "{rpc.service}/{rpc.method}" (low cardinality by construction).
  if (span.rpc) return str::Cat(span.rpc->service, "/", span.rpc->method);
  // Without http.route (isotrace never knows the route template) the conventions name
  // the span by the method alone: the path would make names high-cardinality.
  if (IsKnownMethod(span.method)) return span.method;
  return std::string(semconv::kSpanNameUnknownMethod);
}

void EncodeSpan(const correlate::Span& s, otlp_trace::Span* out) {
  out->set_trace_id(Bytes(s.trace_id));
  out->set_span_id(Bytes(s.span_id));
  if (!AllZero(s.parent_span_id)) out->set_parent_span_id(Bytes(s.parent_span_id));
  if (!s.tracestate.empty()) out->set_trace_state(Utf8(s.tracestate));
  out->set_flags(static_cast<uint32_t>(s.trace_flags) | kFlagHasIsRemote |
                 (s.remote_parent ? kFlagIsRemote : 0));
  out->set_name(SpanName(s));
  out->set_kind(s.kind == correlate::SpanKind::kClient ? otlp_trace::Span::SPAN_KIND_CLIENT
                                                       : otlp_trace::Span::SPAN_KIND_SERVER);
  out->set_start_time_unix_nano(s.start_unix_ns);
  out->set_end_time_unix_nano(std::max(s.end_unix_ns, s.start_unix_ns));

  auto* attrs = out->mutable_attributes();
  attrs->Reserve(16 + static_cast<int>(s.attributes.size()));
  if (IsKnownMethod(s.method)) {
    AddString(semconv::kHttpRequestMethod, s.method, attrs);
  } else {
    AddString(semconv::kHttpRequestMethod, semconv::kMethodOther, attrs);
    if (!s.method.empty()) AddString(semconv::kHttpRequestMethodOriginal, s.method, attrs);
  }
  if (!s.path.empty()) AddString(semconv::kUrlPath, s.path, attrs);
  if (!s.query.empty()) AddString(semconv::kUrlQuery, s.query, attrs);
  AddString(semconv::kUrlScheme, semconv::kSchemeHttp, attrs);
  if (s.status_code > 0) AddInt(semconv::kHttpResponseStatusCode, s.status_code, attrs);
  AddString(semconv::kNetworkProtocolName, semconv::kProtocolHttp, attrs);
  if (!s.protocol_version.empty()) {
    AddString(semconv::kNetworkProtocolVersion, s.protocol_version, attrs);
  }

  const auto [host_header_host, host_header_port] = SplitAuthority(s.host_header);
  if (s.kind == correlate::SpanKind::kClient) {
    // The server as the client addressed it: the Host header's name when it sent one.
    std::string_view address =
        !host_header_host.empty() ? host_header_host : std::string_view(s.server_address);
    uint16_t port = s.server_port != 0 ? s.server_port : host_header_port;
    if (!address.empty()) AddString(semconv::kServerAddress, address, attrs);
    if (port != 0) AddInt(semconv::kServerPort, port, attrs);
    if (!address.empty()) {
      // url.full is required on CLIENT spans; the authority is the one the client used.
      std::string authority;
      if (!s.host_header.empty()) {
        authority = s.host_header;
      } else {
        const bool v6 = address.find(':') != std::string_view::npos;
        authority = v6 ? str::Cat("[", address, "]") : std::string(address);
        if (port != 0 && port != 80) authority += str::Cat(":", port);
      }
      std::string full =
          str::Cat(semconv::kSchemeHttp, "://", authority, s.path.empty() ? "/" : s.path);
      if (!s.query.empty()) full += str::Cat("?", s.query);
      AddString(semconv::kUrlFull, full, attrs);
    }
  } else {
    std::string_view address =
        !s.server_address.empty() ? std::string_view(s.server_address) : host_header_host;
    uint16_t port = s.server_port != 0 ? s.server_port : host_header_port;
    if (!address.empty()) AddString(semconv::kServerAddress, address, attrs);
    if (port != 0) AddInt(semconv::kServerPort, port, attrs);
    if (!s.client_address.empty()) AddString(semconv::kClientAddress, s.client_address, attrs);
    if (s.client_port != 0) AddInt(semconv::kClientPort, s.client_port, attrs);
  }
  if (!s.error_type.empty()) AddString(semconv::kErrorType, s.error_type, attrs);
  if (s.rpc) {
    AddString(semconv::kRpcSystem, s.rpc->system, attrs);
    if (!s.rpc->service.empty()) AddString(semconv::kRpcService, s.rpc->service, attrs);
    if (!s.rpc->method.empty()) AddString(semconv::kRpcMethod, s.rpc->method, attrs);
    if (s.rpc->grpc_status_code >= 0) AddInt(semconv::kRpcGrpcStatusCode, s.rpc->grpc_status_code, attrs);
  }
  AddAttributes(s.attributes, attrs);

  out->mutable_events()->Reserve(static_cast<int>(s.events.size()));
  for (const auto& e : s.events) {
    auto* ev = out->add_events();
    ev->set_time_unix_nano(e.time_unix_ns);
    ev->set_name(Utf8(e.name));
    AddAttributes(e.attributes, ev->mutable_attributes());
  }

  const auto code = StatusFor(s);
  if (code != otlp_trace::Status::STATUS_CODE_UNSET) out->mutable_status()->set_code(code);
}

absl::Status EncodeSpans(absl::Span<const SpanItem> batch, const Scope& scope,
                         otlp_collector_trace::ExportTraceServiceRequest* out) {
  for (const auto& item : batch) {
    if (auto st = ValidateSpan(item.record); !st.ok()) return st;
  }
  for (const auto& [resource, items] : GroupByResource(batch)) {
    auto* rs = out->add_resource_spans();
    EncodeResource(resource, rs->mutable_resource());
    auto* ss = rs->add_scope_spans();
    EncodeScope(scope, ss->mutable_scope());
    ss->set_schema_url(std::string(semconv::kSchemaUrl));
    ss->mutable_spans()->Reserve(static_cast<int>(items.size()));
    for (const SpanItem* item : items) EncodeSpan(item->record, ss->add_spans());
  }
  return absl::OkStatus();
}

absl::Status EncodeLogs(absl::Span<const LogItem> batch, const Scope& scope,
                        otlp_collector_logs::ExportLogsServiceRequest* out) {
  for (const auto& item : batch) {
    const LogRecord& r = item.record;
    if (r.severity_number < 0 || r.severity_number > 24) {
      return absl::InvalidArgumentError(
          str::Cat("log record severity_number ", r.severity_number, " is outside 0..24"));
    }
  }
  for (const auto& [resource, items] : GroupByResource(batch)) {
    auto* rl = out->add_resource_logs();
    EncodeResource(resource, rl->mutable_resource());
    auto* sl = rl->add_scope_logs();
    EncodeScope(scope, sl->mutable_scope());
    sl->set_schema_url(std::string(semconv::kSchemaUrl));
    sl->mutable_log_records()->Reserve(static_cast<int>(items.size()));
    for (const LogItem* item : items) {
      const LogRecord& r = item->record;
      auto* lr = sl->add_log_records();
      lr->set_time_unix_nano(r.time_unix_ns);
      lr->set_observed_time_unix_nano(r.observed_time_unix_ns);
      lr->set_severity_number(static_cast<otlp_logs::SeverityNumber>(r.severity_number));
      if (!r.severity_text.empty()) lr->set_severity_text(Utf8(r.severity_text));
      if (!r.body.empty()) lr->mutable_body()->set_string_value(Utf8(r.body));
      AddAttributes(r.attributes, lr->mutable_attributes());
      lr->set_flags(r.trace_flags);
      if (!AllZero(r.trace_id)) lr->set_trace_id(Bytes(r.trace_id));
      if (!AllZero(r.span_id)) lr->set_span_id(Bytes(r.span_id));
    }
  }
  return absl::OkStatus();
}

}  // namespace isotrace::otlp
