#pragma once
// Spans → metrics, and the live per-workload view behind `isotrace top`.
//
// A workload is the spans' resource without its per-process keys (process.pid): the
// processes of one service (nginx workers, restarts, pods' replicas on one node sharing
// a container identity) add up in one row and one set of series, so a restart neither
// splits a service nor churns series. Every other resource attribute (service.name,
// host.name, container.*, k8s.*, isotrace.stack, OTEL_RESOURCE_ATTRIBUTES) is kept
// verbatim, so metrics join the spans on the keys the Collector and Grafana use.
//
// Two views of the same spans:
//  - cumulative series (Collect): the HTTP duration histograms with the semantic
//    conventions' buckets, request counts by status class, time per layer and cause,
//    kernel incidents, and isotrace's self-telemetry; exported as OTLP and Prometheus.
//  - a sliding window of whole seconds (Top): rates, error ratio, p50/p99, the vertical
//    shares and the latest verdict per workload, for the CLI.
//
// Bounded: at most max_workloads workloads (the least recently seen one is evicted,
// counted), max_series attribute sets per metric and workload (the rest fold into an
// otel.metric.overflow=true series, as the OTel SDK's cardinality limit does), and a
// fixed-size latency histogram per second of window.
//
// Thread-safety: every method may be called from any thread. Record runs on the poll
// thread for every span and takes one mutex briefly; it never blocks on I/O.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <tuple>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "daemon/correlate/span.h"
#include "daemon/metrics/model.h"

namespace isotrace::metrics {

// Metric names (the public contract: docs/metrics.md).
inline constexpr std::string_view kHttpServerDuration = "http.server.request.duration";
inline constexpr std::string_view kHttpClientDuration = "http.client.request.duration";
// RPC spans (gRPC), per the OpenTelemetry RPC conventions (seconds, like the HTTP ones).
inline constexpr std::string_view kRpcServerDuration = "rpc.server.call.duration";
inline constexpr std::string_view kRpcClientDuration = "rpc.client.call.duration";
inline constexpr std::string_view kHttpRequests = "isotrace.http.requests";
inline constexpr std::string_view kLayerTime = "isotrace.layer.time";
inline constexpr std::string_view kKernelIncidents = "isotrace.kernel.incidents";
inline constexpr std::string_view kProbeEvents = "isotrace.probe.events";
inline constexpr std::string_view kProbeEventsLost = "isotrace.probe.events.lost";
inline constexpr std::string_view kExportSpansAccepted = "isotrace.export.spans.accepted";
inline constexpr std::string_view kExportSpansSent = "isotrace.export.spans.sent";
inline constexpr std::string_view kExportSpansDropped = "isotrace.export.spans.dropped";
inline constexpr std::string_view kExportQueueSize = "isotrace.export.queue.size";
inline constexpr std::string_view kCorrelateSpans = "isotrace.correlate.spans";
inline constexpr std::string_view kCorrelateLost = "isotrace.correlate.lost";
inline constexpr std::string_view kCorrelateLinks = "isotrace.correlate.links";
inline constexpr std::string_view kCorrelateNatLookups = "isotrace.correlate.nat.lookups";
inline constexpr std::string_view kLocateTraces = "isotrace.locate.traces";
inline constexpr std::string_view kVerdicts = "isotrace.verdicts";
inline constexpr std::string_view kWorkloads = "isotrace.metrics.workloads";
inline constexpr std::string_view kWorkloadsEvicted = "isotrace.metrics.workloads.evicted";
inline constexpr std::string_view kProcessCpuTime = "process.cpu.time";
inline constexpr std::string_view kProcessMemoryUsage = "process.memory.usage";

// The HTTP semantic conventions' advisory buckets for request durations, in seconds.
inline constexpr std::array<double, 14> kHttpDurationBounds = {
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10};

// The vertical breakdown's causes (correlate::Breakdown), in display order.
enum class Cause : uint8_t { kCpu, kRunq, kThrottled, kBlkio, kMemstall, kSteal, kOther, kCount };
inline constexpr size_t kCauses = static_cast<size_t>(Cause::kCount);
// The six shares `top` shows (kOther is exported as layer time but not shown).
inline constexpr size_t kShownCauses = 6;
struct CauseInfo {
  std::optional<int64_t> correlate::Breakdown::*measure;  // the span's measure, ns
  std::string_view layer;   // isotrace.layer value on isotrace.layer.time
  std::string_view cause;   // isotrace.cause value
  std::string_view column;  // `top` column header
};
const std::array<CauseInfo, kCauses>& Causes();

// Kernel incidents counted per workload (isotrace.kernel.incidents{isotrace.incident}):
// the spans' typed incidents, named as their span events are.
using Incident = correlate::IncidentKind;
inline constexpr size_t kIncidents = static_cast<size_t>(Incident::kCount);
std::string_view IncidentName(Incident i);

// What the daemon knows about itself, pushed from the poll thread (the only thread that
// may read the probe and tracker counters) by UpdateSelf.
struct SelfStats {
  struct Probe {
    std::string name;
    uint64_t events = 0;  // read from the kernel
    uint64_t lost = 0;    // lost on the way: the sum of lost_by_reason
    // ringbuf_full, inflight_full, malformed, ...: the `reason` of the lost series.
    std::map<std::string, uint64_t> lost_by_reason;
  };
  std::vector<Probe> probes;
  uint64_t spans = 0;                         // spans the correlator produced
  std::map<std::string, uint64_t> correlate_lost;  // reason → requests/connections given up
  std::map<std::string, uint64_t> links;   // outcome → spans (thread, peer, *_ambiguous, ...)
  std::map<std::string, uint64_t> nat_lookups;  // outcome → CLIENT connections asked of conntrack
  std::map<std::string, uint64_t> locate;  // outcome → local traces (normal, slow, failed, ...)
  bool exporting = false;                     // a span exporter runs (else no export.*)
  uint64_t spans_accepted = 0;
  uint64_t spans_sent = 0;
  std::map<std::string, uint64_t> spans_dropped;  // reason → spans
  uint64_t queue_size = 0;
};

struct AggregatorOptions {
  size_t max_workloads = 1000;
  size_t max_series = 256;  // attribute sets per metric per workload
  // isotrace's own resource (self-telemetry); null: service.name=isotraced only.
  std::shared_ptr<const correlate::Resource> self_resource;
  // Injectable wall clock (tests); default the real one.
  std::function<uint64_t()> now_unix_ns;
  // Read this process's CPU time and RSS at Collect (off in tests: not deterministic).
  bool process_stats = true;
};

// One row of `isotrace top`.
struct TopRow {
  std::string workload;  // stable key of the workload
  std::string service;
  std::string namespace_name;  // k8s.namespace.name, empty when none
  std::string stack;           // isotrace.stack, empty when unknown
  std::string container_id;
  std::vector<uint32_t> pids;  // processes seen recently (at most a few)
  std::vector<correlate::Attribute> resource;
  // Over the window (whole seconds, SERVER spans):
  uint64_t requests = 0;
  uint64_t errors = 0;  // error.type set: 5xx, no response, reset
  double requests_per_s = 0;
  double error_ratio = 0;
  double p50_s = 0;
  double p99_s = 0;
  // Share of the window's request time per cause; absent when no span carried it.
  std::array<std::optional<double>, kShownCauses> shares{};
  std::optional<double> retransmits_per_s;
  correlate::TraceId slowest_trace_id{};
  double slowest_s = 0;
  // Latest verdict seen on a span of this workload (issue 5); empty when none.
  std::string verdict_service, verdict_layer, verdict_cause;
  std::optional<double> verdict_share;
  // Since the workload was first seen (cumulative, SERVER spans).
  uint64_t total_requests = 0;
  uint64_t total_errors = 0;
};

struct TopView {
  uint64_t time_unix_ns = 0;
  uint32_t window_s = 0;
  std::vector<TopRow> rows;  // sorted by service name; the CLI re-sorts
  uint64_t spans_total = 0;  // every span recorded since start
  SelfStats self;
};

class Aggregator {
 public:
  static constexpr uint32_t kMaxWindowS = 10;
  // A workload stays in `top` this long after its last request.
  static constexpr uint64_t kRowLingerNs = 60ull * 1000000000ull;

  explicit Aggregator(AggregatorOptions options = {});
  ~Aggregator();
  Aggregator(const Aggregator&) = delete;
  Aggregator& operator=(const Aggregator&) = delete;

  void Record(const std::shared_ptr<const correlate::Resource>& resource,
              const correlate::Span& span);
  void UpdateSelf(SelfStats stats);

  Snapshot Collect();
  // window_s is clamped to [1, kMaxWindowS].
  TopView Top(uint32_t window_s);

  size_t workloads() const;

 private:
  struct Workload;
  Workload* FindOrCreate(const std::shared_ptr<const correlate::Resource>& resource,
                         uint64_t now);  // requires mu_
  void CollectSelf(uint64_t now, Snapshot* out);  // requires mu_

  AggregatorOptions options_;
  uint64_t start_unix_ns_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<Workload>> workloads_;  // by key
  // Resource object → workload; the resolver hands the same object for every span of a
  // process, so the key is built once per process, not per span. weak_ptr: an address
  // reused by a new Resource must not hit a stale entry.
  struct CacheEntry {
    std::weak_ptr<const correlate::Resource> resource;
    Workload* workload;
  };
  std::unordered_map<const correlate::Resource*, CacheEntry> by_resource_;
  uint64_t evicted_ = 0;
  uint64_t spans_total_ = 0;
  SelfStats self_;
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> verdicts_;  // bounded
};

// The workload's identity: the resource's attributes without per-process keys, sorted.
std::vector<correlate::Attribute> WorkloadAttributes(const correlate::Resource& resource);

}  // namespace isotrace::metrics
