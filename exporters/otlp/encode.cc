#include "exporters/otlp/encode.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "exporters/otlp/semconv.h"
#include "exporters/otlp/span_attributes.h"
#include "exporters/otlp/str_util.h"
#include "exporters/otlp/wire.h"

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

bool IsError(const correlate::Span& s) {
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
    return error;
  }
  if (s.kind == correlate::SpanKind::kClient) {
    error = s.status_code >= 400 || !s.error_type.empty();
  } else {
    error = s.status_code >= 500 || (s.status_code == 0 && !s.error_type.empty());
  }
  return error;
}

// Groups items by resource pointer, first-seen order, without reordering within a group.
// A batch holds few distinct resources (processes), so a linear scan of the groups beats
// hashing.
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
  // Almost every string is ASCII: skip it 8 bytes at a time.
  while (i + 8 <= n) {
    uint64_t chunk;
    std::memcpy(&chunk, s.data() + i, 8);
    if (chunk & 0x8080808080808080ull) break;
    i += 8;
  }
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

namespace {

using wire::VarintSize;
using wire::Writer;

// Field numbers of the OTLP messages written below (opentelemetry/proto/*.proto).
namespace f {
constexpr uint32_t kRequestResourceSpans = 1;
constexpr uint32_t kResourceSpansResource = 1, kResourceSpansScopeSpans = 2;
constexpr uint32_t kResourceAttributes = 1;
constexpr uint32_t kScopeSpansScope = 1, kScopeSpansSpans = 2, kScopeSpansSchemaUrl = 3;
constexpr uint32_t kScopeName = 1, kScopeVersion = 2;
constexpr uint32_t kSpanTraceId = 1, kSpanSpanId = 2, kSpanTraceState = 3, kSpanParentSpanId = 4,
                   kSpanName = 5, kSpanKind = 6, kSpanStart = 7, kSpanEnd = 8, kSpanAttributes = 9,
                   kSpanEvents = 11, kSpanStatus = 15, kSpanFlags = 16;
constexpr uint32_t kEventTime = 1, kEventName = 2, kEventAttributes = 3;
constexpr uint32_t kStatusCode = 3;
constexpr uint32_t kKvKey = 1, kKvValue = 2;
constexpr uint32_t kAnyString = 1, kAnyBool = 2, kAnyInt = 3, kAnyDouble = 4;
}  // namespace f

constexpr int kStatusCodeError = 2;  // Status.StatusCode STATUS_CODE_ERROR

// Per-batch scratch: strings that must be built or repaired before they are written.
struct Scratch {
  std::string utf8;  // a value that was not valid UTF-8, repaired
  std::string text;  // url.full, authority
};

// The value as proto3 requires it (UTF-8), repaired into `scratch` only when it is not.
std::string_view Utf8View(std::string_view v, std::string* scratch) {
  if (IsValidUtf8(v)) return v;
  *scratch = SanitizeUtf8(v);
  return *scratch;
}

// A KeyValue as field `field` of the enclosing message, up to its AnyValue's content
// (`any` bytes, written by the caller); the lengths are known, so no placeholder is
// needed. The key is one of semconv's (valid UTF-8) or already checked.
void KvHead(Writer& w, uint32_t field, std::string_view key, size_t any) {
  const size_t kv = 1 + VarintSize(key.size()) + key.size() + 1 + VarintSize(any) + any;
  // Tag and length of the KeyValue, the key, then the value's tag and length: one run.
  char* p = w.Cursor(40 + key.size());
  p = Writer::PutTag(p, field, wire::kLen);
  p = Writer::PutVarint(p, kv);
  p = Writer::PutTag(p, f::kKvKey, wire::kLen);
  p = Writer::PutVarint(p, key.size());
  p = Writer::PutBytes(p, key);
  p = Writer::PutTag(p, f::kKvValue, wire::kLen);
  w.Commit(Writer::PutVarint(p, any));
}
void KvString(Writer& w, uint32_t field, std::string_view key, std::string_view value) {
  KvHead(w, field, key, 1 + VarintSize(value.size()) + value.size());
  w.Bytes(f::kAnyString, value);
}
void KvInt(Writer& w, uint32_t field, std::string_view key, int64_t value) {
  KvHead(w, field, key, 1 + VarintSize(static_cast<uint64_t>(value)));
  w.Int(f::kAnyInt, value);
}
void KvDouble(Writer& w, uint32_t field, std::string_view key, double value) {
  KvHead(w, field, key, 9);
  w.Double(f::kAnyDouble, value);
}
void KvBool(Writer& w, uint32_t field, std::string_view key, bool value) {
  KvHead(w, field, key, 2);
  w.Int(f::kAnyBool, value ? 1 : 0);
}

// Generic attributes (resources): keys and string values from outside, both checked.
void KvAttr(Writer& w, uint32_t field, const correlate::Attribute& a, Scratch* sc) {
  std::string key_fixed;
  std::string_view key = IsValidUtf8(a.key) ? std::string_view(a.key) : (key_fixed = SanitizeUtf8(a.key));
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          const std::string_view value = Utf8View(v, &sc->utf8);
          w.Reserve(32 + 2 * key.size() + value.size());
          KvString(w, field, key, value);
        } else {
          w.Reserve(32 + 2 * key.size());
          if constexpr (std::is_same_v<T, int64_t>) KvInt(w, field, key, v);
          if constexpr (std::is_same_v<T, double>) KvDouble(w, field, key, v);
          if constexpr (std::is_same_v<T, bool>) KvBool(w, field, key, v);
        }
      },
      a.value);
}

// An upper bound of one span's encoding: fixed fields and keys, plus every string it may
// write (url.full repeats host, path and query; a repaired string grows up to 3x).
size_t SpanBound(const correlate::Span& s) {
  size_t strings = s.tracestate.size() + s.method.size() + s.path.size() + s.query.size() +
                   s.protocol_version.size() + s.host_header.size() + s.client_address.size() +
                   s.server_address.size() + s.error_type.size() +
                   (s.rpc ? 2 * (s.rpc->service.size() + s.rpc->method.size()) + 64 : 0);
  size_t n = 1024 + 8 * strings;
  if (s.verdict) n += 256 + 3 * (s.verdict->service.size() + s.verdict->layer.size() +
                                 s.verdict->cause.size() + s.verdict->reason.size());
  for (const auto& e : s.incidents) n += 256 + 3 * e.victim_comm.size();
  return n;
}

void WriteSpan(Writer& w, const correlate::Span& s, Scratch* sc) {
  w.Reserve(SpanBound(s) + 16);
  const size_t body = w.Begin(f::kScopeSpansSpans);
  auto id = [](const auto& a) {
    return std::string_view(reinterpret_cast<const char*>(a.data()), a.size());
  };
  w.Bytes(f::kSpanTraceId, id(s.trace_id));
  w.Bytes(f::kSpanSpanId, id(s.span_id));
  if (!s.tracestate.empty()) w.Bytes(f::kSpanTraceState, Utf8View(s.tracestate, &sc->utf8));
  if (!AllZero(s.parent_span_id)) w.Bytes(f::kSpanParentSpanId, id(s.parent_span_id));
  const bool known_method = IsKnownMethod(s.method);
  if (s.rpc) {
    // RPC conventions: "{rpc.service}/{rpc.method}" (low cardinality by construction).
    sc->utf8.assign(s.rpc->service);
    sc->utf8 += '/';
    sc->utf8 += s.rpc->method;
    w.Bytes(f::kSpanName, sc->utf8);
  } else {
    w.Bytes(f::kSpanName, known_method ? std::string_view(s.method) : semconv::kSpanNameUnknownMethod);
  }
  w.Int(f::kSpanKind, s.kind == correlate::SpanKind::kClient ? 3 : 2);
  if (s.start_unix_ns != 0) w.Fixed64(f::kSpanStart, s.start_unix_ns);
  if (const uint64_t end = std::max(s.end_unix_ns, s.start_unix_ns); end != 0)
    w.Fixed64(f::kSpanEnd, end);

  // Attributes: HTTP semantic conventions first, then isotrace's own.
  constexpr uint32_t kA = f::kSpanAttributes;
  auto str = [&](std::string_view key, std::string_view value) {
    KvString(w, kA, key, Utf8View(value, &sc->utf8));
  };
  if (known_method) {
    KvString(w, kA, semconv::kHttpRequestMethod, s.method);
  } else {
    KvString(w, kA, semconv::kHttpRequestMethod, semconv::kMethodOther);
    if (!s.method.empty()) str(semconv::kHttpRequestMethodOriginal, s.method);
  }
  if (!s.path.empty()) str(semconv::kUrlPath, s.path);
  if (!s.query.empty()) str(semconv::kUrlQuery, s.query);
  const std::string_view scheme = s.tls ? semconv::kSchemeHttps : semconv::kSchemeHttp;
  KvString(w, kA, semconv::kUrlScheme, scheme);
  if (s.status_code > 0) KvInt(w, kA, semconv::kHttpResponseStatusCode, s.status_code);
  KvString(w, kA, semconv::kNetworkProtocolName, semconv::kProtocolHttp);
  if (!s.protocol_version.empty()) str(semconv::kNetworkProtocolVersion, s.protocol_version);
  if (!s.tls_version.empty()) KvString(w, kA, semconv::kTlsProtocolVersion, s.tls_version);

  const auto [host_header_host, host_header_port] = SplitAuthority(s.host_header);
  if (s.kind == correlate::SpanKind::kClient) {
    // The server as the client addressed it: the Host header's name when it sent one.
    std::string_view address =
        !host_header_host.empty() ? host_header_host : std::string_view(s.server_address);
    uint16_t port = s.server_port != 0 ? s.server_port : host_header_port;
    if (!address.empty()) str(semconv::kServerAddress, address);
    if (port != 0) KvInt(w, kA, semconv::kServerPort, port);
    if (!address.empty()) {
      // url.full is required on CLIENT spans; the authority is the one the client used.
      std::string& full = sc->text;
      full.assign(scheme);
      full += "://";
      if (!s.host_header.empty()) {
        full += s.host_header;
      } else {
        const bool v6 = address.find(':') != std::string_view::npos;
        if (v6) full += '[';
        full += address;
        if (v6) full += ']';
        if (port != 0 && port != 80) {
          full += ':';
          full += std::to_string(port);
        }
      }
      full += s.path.empty() ? std::string_view("/") : std::string_view(s.path);
      if (!s.query.empty()) {
        full += '?';
        full += s.query;
      }
      std::string repaired;
      str(semconv::kUrlFull, IsValidUtf8(full) ? std::string_view(full) : (repaired = SanitizeUtf8(full)));
    }
  } else {
    std::string_view address =
        !s.server_address.empty() ? std::string_view(s.server_address) : host_header_host;
    uint16_t port = s.server_port != 0 ? s.server_port : host_header_port;
    if (!address.empty()) str(semconv::kServerAddress, address);
    if (port != 0) KvInt(w, kA, semconv::kServerPort, port);
    if (!s.client_address.empty()) str(semconv::kClientAddress, s.client_address);
    if (s.client_port != 0) KvInt(w, kA, semconv::kClientPort, s.client_port);
  }
  if (!s.error_type.empty()) str(semconv::kErrorType, s.error_type);
  if (s.rpc) {
    str(semconv::kRpcSystem, s.rpc->system);
    if (!s.rpc->service.empty()) str(semconv::kRpcService, s.rpc->service);
    if (!s.rpc->method.empty()) str(semconv::kRpcMethod, s.rpc->method);
    if (s.rpc->grpc_status_code >= 0) KvInt(w, kA, semconv::kRpcGrpcStatusCode, s.rpc->grpc_status_code);
  }
  auto typed = [&](uint32_t field) {
    return [&w, sc, field](std::string_view key, auto value) {
      using T = decltype(value);
      if constexpr (std::is_same_v<T, int64_t>) KvInt(w, field, key, value);
      if constexpr (std::is_same_v<T, double>) KvDouble(w, field, key, value);
      if constexpr (std::is_same_v<T, std::string_view>) KvString(w, field, key, Utf8View(value, &sc->utf8));
    };
  };
  ForEachIsotraceAttribute(s, typed(kA));

  for (const auto& e : s.incidents) {
    const size_t ev = w.Begin(f::kSpanEvents);
    if (e.time_unix_ns != 0) w.Fixed64(f::kEventTime, e.time_unix_ns);
    w.Bytes(f::kEventName, IncidentEventName(e.kind));
    ForEachIncidentAttribute(e, typed(f::kEventAttributes));
    w.End(ev);
  }
  if (IsError(s)) {
    const size_t st = w.Begin(f::kSpanStatus);
    w.Int(f::kStatusCode, kStatusCodeError);
    w.End(st);
  }
  w.Fixed32(f::kSpanFlags, static_cast<uint32_t>(s.trace_flags) | kFlagHasIsRemote |
                               (s.remote_parent ? kFlagIsRemote : 0));
  w.End(body);
}

void WriteResource(Writer& w, const correlate::Resource* r, Scratch* sc) {
  w.Reserve(16);
  const size_t body = w.Begin(f::kResourceSpansResource);
  if (r != nullptr)
    for (const auto& a : r->attributes) KvAttr(w, f::kResourceAttributes, a, sc);
  w.End(body);
}

void WriteScope(Writer& w, const Scope& scope, Scratch* sc) {
  const std::string_view name = Utf8View(scope.name, &sc->utf8);
  std::string version_fixed;
  const std::string_view version =
      IsValidUtf8(scope.version) ? std::string_view(scope.version) : (version_fixed = SanitizeUtf8(scope.version));
  w.Reserve(32 + name.size() + version.size());
  const size_t body = w.Begin(f::kScopeSpansScope);
  if (!name.empty()) w.Bytes(f::kScopeName, name);
  if (!version.empty()) w.Bytes(f::kScopeVersion, version);
  w.End(body);
}

}  // namespace

void EncodeSpan(const correlate::Span& s, otlp_trace::Span* out) {
  std::string bytes;
  {
    Writer w(&bytes);
    Scratch sc;
    WriteSpan(w, s, &sc);
  }
  // WriteSpan wrote the span as field 2 of ScopeSpans: parse it back through one.
  otlp_trace::ScopeSpans ss;
  ss.ParseFromString(bytes);
  if (ss.spans_size() == 1) out->Swap(ss.mutable_spans(0));
}

namespace {
const correlate::Span& SpanOf(const correlate::Span& s) { return s; }
const correlate::Span& SpanOf(const std::shared_ptr<const correlate::Span>& s) { return *s; }
bool Missing(const correlate::Span&) { return false; }
bool Missing(const std::shared_ptr<const correlate::Span>& s) { return s == nullptr; }

template <typename Item>
absl::Status EncodeSpansWireOf(absl::Span<const Item> batch, const Scope& scope, std::string* out) {
  for (const auto& item : batch) {
    if (Missing(item.record)) return absl::InvalidArgumentError("otlp: no span");
    if (auto st = ValidateSpan(SpanOf(item.record)); !st.ok()) return st;
  }
  Writer w(out);
  Scratch sc;
  for (const auto& [resource, items] : GroupByResource(batch)) {
    w.Reserve(16);
    const size_t rs = w.Begin(f::kRequestResourceSpans);
    WriteResource(w, resource, &sc);
    w.Reserve(16);
    const size_t ss = w.Begin(f::kResourceSpansScopeSpans);
    WriteScope(w, scope, &sc);
    for (const Item* item : items) WriteSpan(w, SpanOf(item->record), &sc);
    w.Reserve(16 + semconv::kSchemaUrl.size());
    w.Bytes(f::kScopeSpansSchemaUrl, semconv::kSchemaUrl);
    w.End(ss);
    w.End(rs);
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status EncodeSpansWire(absl::Span<const SpanItem> batch, const Scope& scope, std::string* out) {
  return EncodeSpansWireOf(batch, scope, out);
}
absl::Status EncodeSpansWire(absl::Span<const SharedSpanItem> batch, const Scope& scope, std::string* out) {
  return EncodeSpansWireOf(batch, scope, out);
}

absl::Status EncodeSpans(absl::Span<const SpanItem> batch, const Scope& scope,
                         otlp_collector_trace::ExportTraceServiceRequest* out) {
  std::string bytes;
  if (auto st = EncodeSpansWire(batch, scope, &bytes); !st.ok()) return st;
  otlp_collector_trace::ExportTraceServiceRequest parsed;
  if (!parsed.ParseFromString(bytes)) return absl::InternalError("otlp: encoded spans do not parse");
  out->MergeFrom(parsed);
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
