#pragma once
// The one mapping from a span's typed measures (correlate::Span's breakdown, net,
// incidents, verdict) to attribute names. The OTLP wire encoder and the local API's
// conversion both walk it, so the two outputs carry the same names, values and
// presence rules by construction: an absent measure (std::nullopt) yields no attribute.
//
// f(std::string_view key, V value) is called once per attribute in export order, V being
// int64_t, double or std::string_view.

#include <cstdint>
#include <string_view>

#include "daemon/correlate/span.h"
#include "exporters/otlp/semconv.h"

namespace isotrace::otlp {

template <typename F>
void ForEachIsotraceAttribute(const correlate::Span& s, F&& f) {
  const correlate::Breakdown& b = s.breakdown;
  auto put = [&f](std::string_view key, const std::optional<int64_t>& v) {
    if (v) f(key, int64_t{*v});
  };
  put(semconv::kDownstreamUnseenNs, b.downstream_unseen_ns);
  put(semconv::kAppOncpuNs, b.oncpu_ns);
  put(semconv::kKernelRunqNs, b.runq_ns);
  put(semconv::kContainerThrottledNs, b.throttled_ns);
  put(semconv::kKernelBlkioNs, b.blkio_ns);
  put(semconv::kKernelMemstallNs, b.memstall_ns);
  put(semconv::kVmStealNs, b.steal_ns);
  put(semconv::kOffcpuOtherNs, b.offcpu_other_ns);
  put(semconv::kNetRetransmits, s.net.retransmits);
  put(semconv::kNetSrttUs, s.net.srtt_us);
  put(semconv::kNetConnectNs, b.connect_ns);
  put(semconv::kNetListenDrops, s.net.listen_drops);
  put(semconv::kDownstreamNs, b.downstream_ns);
  if (s.edge) f(semconv::kObservedAt, std::string_view("sandbox_edge"));
  if (b.sandbox_scope) f(semconv::kBreakdownScope, std::string_view("sandbox"));
  if (const auto& v = s.verdict) {
    f(semconv::kVerdictService, std::string_view(v->service));
    f(semconv::kVerdictLayer, std::string_view(v->layer));
    f(semconv::kVerdictCause, std::string_view(v->cause));
    f(semconv::kVerdictShare, double{v->share});
    f(semconv::kVerdictReason, std::string_view(v->reason));
  }
}

inline std::string_view IncidentEventName(correlate::IncidentKind k) {
  switch (k) {
    case correlate::IncidentKind::kTcpRetransmit: return semconv::kEventTcpRetransmit;
    case correlate::IncidentKind::kTcpReset: return semconv::kEventTcpReset;
    case correlate::IncidentKind::kOomKill: return semconv::kEventOomKill;
    case correlate::IncidentKind::kThrottling: return semconv::kEventThrottling;
    case correlate::IncidentKind::kPacketDrop: return semconv::kEventPacketDrop;
    case correlate::IncidentKind::kCount: break;
  }
  return "unknown";
}

// The layer an incident belongs to (isotrace.verdict.layer on the event).
inline std::string_view IncidentLayer(correlate::IncidentKind k) {
  return k == correlate::IncidentKind::kTcpRetransmit || k == correlate::IncidentKind::kTcpReset ||
                 k == correlate::IncidentKind::kPacketDrop
             ? std::string_view("network")
             : std::string_view("container");
}

// The attributes of one incident's span event, in export order (same f as above).
template <typename F>
void ForEachIncidentAttribute(const correlate::Incident& e, F&& f) {
  using K = correlate::IncidentKind;
  f(semconv::kVerdictLayer, IncidentLayer(e.kind));
  switch (e.kind) {
    case K::kTcpRetransmit:
    case K::kTcpReset:
    case K::kPacketDrop:
      if (e.peer_side) {
        f(semconv::kNetSide, std::string_view("peer"));
      } else if (e.kind == K::kTcpReset && e.reset_by != correlate::Incident::ResetBy::kUnknown) {
        f(semconv::kNetResetBy,
          std::string_view(e.reset_by == correlate::Incident::ResetBy::kPeer ? "peer" : "local"));
      }
      break;
    case K::kThrottling:
      f(semconv::kContainerThrottledNs, int64_t{e.throttled_ns});
      f(semconv::kContainerThrottleCount, int64_t{e.throttle_count});
      break;
    case K::kOomKill:
      f(semconv::kProcessPid, static_cast<int64_t>(e.victim_pid));
      f(semconv::kProcessExecutableName, std::string_view(e.victim_comm));
      break;
    case K::kCount:
      break;
  }
}

}  // namespace isotrace::otlp
