#pragma once
// Daemon-side records → local API messages. The daemon and the CLI's embedded mode both
// answer with these, so `isotrace top` renders one message type whoever produced it.

#include <memory>
#include <string>
#include <vector>

#include "daemon/correlate/span.h"
#include "daemon/metrics/aggregator.h"
#include "isotrace/api/v1/api.pb.h"

namespace isotrace::api {

namespace v1 = ::isotrace::api::v1;

// The window `top` uses when the request says 0.
inline constexpr uint32_t kDefaultWindowS = 5;

void ToProto(const correlate::Attribute& a, v1::Attribute* out);
v1::TopResponse TopResponseFrom(const metrics::TopView& view, const std::string& host_name,
                                const std::string& mode);

struct SpanWithResource {
  std::shared_ptr<const correlate::Resource> resource;
  correlate::Span span;
};
v1::Span SpanToProto(const SpanWithResource& s);

// The spans of `trace_id` among `spans`, in their order.
v1::GetTraceResponse TraceResponseFrom(const std::vector<SpanWithResource>& spans,
                                       const correlate::TraceId& trace_id);

// "4bf92f3577b34da6a3ce929d0e0e4736" ↔ bytes; false on anything but 32 hex digits.
bool ParseTraceId(std::string_view hex, correlate::TraceId* out);
std::string HexId(std::string_view bytes);

}  // namespace isotrace::api
