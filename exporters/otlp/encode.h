#pragma once
// correlate::Span / LogRecord batches → OTLP export requests. Pure functions, no I/O:
// the exporter calls them on its own thread, tests call them directly.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "daemon/correlate/span.h"
#include "opentelemetry/proto/collector/logs/v1/logs_service.pb.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "opentelemetry/proto/common/v1/common.pb.h"

namespace isotrace::otlp {

namespace otlp_common = ::opentelemetry::proto::common::v1;
namespace otlp_trace = ::opentelemetry::proto::trace::v1;
namespace otlp_logs = ::opentelemetry::proto::logs::v1;
namespace otlp_collector_trace = ::opentelemetry::proto::collector::trace::v1;
namespace otlp_collector_logs = ::opentelemetry::proto::collector::logs::v1;

// isotrace's version as written into InstrumentationScope.version.
std::string_view Version();

// The instrumentation scope written on every ScopeSpans / ScopeLogs.
struct Scope {
  std::string name = "isotrace";
  std::string version = std::string(Version());
};

// One record plus the resource (process) it belongs to. Records of one process share the
// same Resource object; the encoder groups by that pointer (a null resource is a group
// of its own, encoded with an empty Resource).
template <typename T>
struct WithResource {
  std::shared_ptr<const correlate::Resource> resource;
  T record;
};

// An OTLP log record as isotrace emits it (one per trace verdict, later more).
struct LogRecord {
  uint64_t time_unix_ns = 0;           // when it happened; 0 = unknown
  uint64_t observed_time_unix_ns = 0;  // when isotrace saw it; 0 = filled at Enqueue
  int severity_number = 9;             // OTLP SeverityNumber (9 = INFO)
  std::string severity_text;           // e.g. "INFO"; empty = not written
  std::string body;                    // string body; empty = not written
  std::vector<correlate::Attribute> attributes;
  correlate::TraceId trace_id{};  // all zero: not tied to a trace
  correlate::SpanId span_id{};    // all zero: not tied to a span
  uint8_t trace_flags = 0;
};

using SpanItem = WithResource<correlate::Span>;
// The exporter's queue item: the span shared with the daemon's span store, not copied.
using SharedSpanItem = WithResource<std::shared_ptr<const correlate::Span>>;
using LogItem = WithResource<LogRecord>;

// A span OTLP receivers accept: non-zero trace and span ids.
absl::Status ValidateSpan(const correlate::Span& span);

// The exporter's path: appends the ExportTraceServiceRequest wire bytes of `batch` to
// `out`, one ResourceSpans per distinct resource (first-seen order; each resource's
// attributes encoded once per batch), each with one ScopeSpans for `scope`. Written
// directly in the protobuf wire format (wire.h), no message objects. Fails with
// InvalidArgument (leaving `out` untouched) when a span does not pass ValidateSpan.
absl::Status EncodeSpansWire(absl::Span<const SpanItem> batch, const Scope& scope, std::string* out);
absl::Status EncodeSpansWire(absl::Span<const SharedSpanItem> batch, const Scope& scope, std::string* out);

// The same request as a message (tests, tools): EncodeSpansWire parsed back, merged
// into `out`.
absl::Status EncodeSpans(absl::Span<const SpanItem> batch, const Scope& scope,
                         otlp_collector_trace::ExportTraceServiceRequest* out);

// Same grouping for log records.
absl::Status EncodeLogs(absl::Span<const LogItem> batch, const Scope& scope,
                        otlp_collector_logs::ExportLogsServiceRequest* out);

// Building blocks, public for tests and for the metrics encoder.

// One span into an OTLP Span (HTTP semantic conventions, isotrace's attributes from
// span_attributes.h; see docs/otlp.md), through the same wire encoder.
void EncodeSpan(const correlate::Span& span, otlp_trace::Span* out);

// Span name per the HTTP conventions: "{method}" (no http.route is known to isotrace),
// "HTTP" when the method is not one of the registered HTTP methods.
std::string SpanName(const correlate::Span& span);

void SetAnyValue(const correlate::AttrValue& value, otlp_common::AnyValue* out);
void AddAttribute(std::string_view key, const correlate::AttrValue& value,
                  google::protobuf::RepeatedPtrField<otlp_common::KeyValue>* out);
void AddAttributes(absl::Span<const correlate::Attribute> attrs,
                   google::protobuf::RepeatedPtrField<otlp_common::KeyValue>* out);

// proto3 strings must be UTF-8 and receivers (the Collector among them) reject a whole
// request that has one bad string; bytes seen on the wire are not guaranteed to be, so
// every string goes through this: valid input comes back unchanged, each invalid byte
// becomes U+FFFD.
bool IsValidUtf8(std::string_view s);
std::string SanitizeUtf8(std::string_view s);

}  // namespace isotrace::otlp
