#pragma once
// Daemon-side records → local API messages. The daemon and the CLI's embedded mode both
// answer with these, so `isotrace top` renders one message type whoever produced it.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/correlate/span.h"
#include "daemon/locate/verdict.h"
#include "daemon/metrics/aggregator.h"
#include "isotrace/api/v1/api.pb.h"

namespace isotrace::api {

// (v1 is the generated namespace isotrace::api::v1 itself: no alias needed here, and
// clang refuses one that redefines it.)

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

// `isotrace locate`: what a LocateRequest asks of the verdict store. The defaults apply
// when the request says 0 (proto3 cannot tell 0 from unset).
inline constexpr uint32_t kDefaultLocateSinceS = 300;
inline constexpr uint32_t kDefaultLocateMax = 100;
struct VerdictQuery {
  uint64_t since_unix_ns = 0;  // traces that ended at or after this
  std::optional<correlate::TraceId> trace_id;
  size_t max = kDefaultLocateMax;
};
// The request's trace_id must be empty or 16 bytes (ApiServer answers INVALID_ARGUMENT
// before calling this); `now_unix_ns` anchors since_seconds.
VerdictQuery VerdictQueryFrom(const v1::LocateRequest& req, uint64_t now_unix_ns);

// What a verdict source answers: the matching verdicts (newest first) and how many the
// node has decided since it started (the store keeps only the last ones).
struct VerdictSnapshot {
  std::vector<locate::Verdict> verdicts;
  uint64_t total = 0;
};
VerdictSnapshot ReadVerdicts(const locate::VerdictStore& store, const VerdictQuery& q);

v1::Verdict VerdictToProto(const locate::Verdict& v);
v1::LocateResponse LocateResponseFrom(const VerdictSnapshot& snapshot, const std::string& mode,
                                      uint64_t now_unix_ns);

// "4bf92f3577b34da6a3ce929d0e0e4736" ↔ bytes; false on anything but 32 hex digits.
bool ParseTraceId(std::string_view hex, correlate::TraceId* out);
std::string HexId(std::string_view bytes);

}  // namespace isotrace::api
