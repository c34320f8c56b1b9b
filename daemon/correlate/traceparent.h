#pragma once
// W3C Trace Context `traceparent` (https://www.w3.org/TR/trace-context/), version 00.
//
// Parsing is deliberately stricter than the spec's forward-compatibility rule (which
// asks a parser to accept a higher version by reading its version-00 prefix): isotrace
// only observes the header, it never forwards or rewrites it, so a context it does not
// fully understand buys nothing, while a mis-read one silently grafts spans onto a wrong
// trace. Rejecting makes the span start a new trace, which is always safe.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "daemon/correlate/span.h"

namespace isotrace::correlate {

struct TraceContext {
  TraceId trace_id{};
  SpanId parent_id{};
  uint8_t flags = 0;  // trace-flags; bit 0 = sampled, other bits kept as received
};

// Accepts exactly "00-<32 hex>-<16 hex>-<2 hex>" (lowercase hex, 55 characters) with
// optional surrounding SP/HTAB (header OWS). Rejects any other version (ff included),
// all-zero trace or parent ids, uppercase hex and anything else.
std::optional<TraceContext> ParseTraceparent(std::string_view value);

// The version-00 header value for the given ids and flags.
std::string FormatTraceparent(const TraceId& trace_id, const SpanId& span_id, uint8_t flags);

// Lowercase hex, two characters per byte.
std::string HexEncode(std::span<const uint8_t> bytes);

}  // namespace isotrace::correlate
