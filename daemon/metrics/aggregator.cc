#include "daemon/metrics/aggregator.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <variant>

#include "absl/strings/str_cat.h"
#include "daemon/correlate/resource.h"
#include "daemon/util/clock.h"
#include "exporters/otlp/semconv.h"
#include "exporters/otlp/span_attributes.h"

namespace isotrace::metrics {

namespace {

namespace semconv = otlp::semconv;
using correlate::Attribute;
using correlate::AttrValue;

constexpr uint64_t kNs = 1000000000ull;
constexpr size_t kSlots = Aggregator::kMaxWindowS + 1;
constexpr size_t kPidsKept = 8;

// Latency histogram for the window: log-linear, 8 sub-buckets per power of two from
// 1 µs to 2^37 ns (137 s). Every bucket is 1/8 of its octave wide, so a percentile read
// at a bucket's midpoint is within ~6% of the true value, at a fixed 226 counters per
// second of window whatever the request rate (a sample of durations would need memory
// in proportion to the rate, or bias toward the first requests of each second).
constexpr int kMinOctave = 10;  // 2^10 ns ≈ 1 µs
constexpr int kMaxOctave = 37;
constexpr size_t kLatBins = 1 + (kMaxOctave - kMinOctave + 1) * 8 + 1;

size_t LatencyBin(uint64_t ns) {
  if (ns < (1ull << kMinOctave)) return 0;
  int o = 63 - __builtin_clzll(ns);
  if (o > kMaxOctave) return kLatBins - 1;
  return 1 + static_cast<size_t>(o - kMinOctave) * 8 + ((ns >> (o - 3)) & 7);
}

double LatencyBinMidNs(size_t bin) {
  if (bin == 0) return 512;
  if (bin >= kLatBins - 1) return static_cast<double>(1ull << (kMaxOctave + 1));
  int o = static_cast<int>((bin - 1) / 8) + kMinOctave;
  uint64_t sub = (bin - 1) % 8;
  double lo = static_cast<double>((8 + sub) << (o - 3));
  double hi = static_cast<double>((9 + sub) << (o - 3));
  return (lo + hi) / 2;
}

constexpr std::array<std::string_view, 9> kKnownMethods = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};

// Same normalisation as the span encoder: a method outside the registered set would be
// unbounded label cardinality, so it is "_OTHER".
std::string_view MethodLabel(std::string_view m) {
  for (auto k : kKnownMethods)
    if (m == k) return k;
  return "_OTHER";
}

std::string_view StatusClass(int status) {
  static constexpr std::array<std::string_view, 6> kClasses = {"none", "1xx", "2xx",
                                                               "3xx", "4xx", "5xx"};
  if (status >= 100 && status <= 599) return kClasses[static_cast<size_t>(status / 100)];
  return kClasses[0];
}
size_t StatusClassIndex(int status) {
  return status >= 100 && status <= 599 ? static_cast<size_t>(status / 100) : 0;
}

std::string ValueText(const AttrValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) return x;
        else if constexpr (std::is_same_v<T, bool>) return x ? "true" : "false";
        else return absl::StrCat(x);
      },
      v);
}

using correlate::StringAttr;

// Keys that differ per process of one workload.
bool PerProcessKey(std::string_view k) {
  return k == semconv::kProcessPid || k == semconv::kProcessParentPid ||
         k == semconv::kProcessCommandLine || k == semconv::kProcessCommand ||
         k == semconv::kProcessCommandArgs || k == semconv::kProcessCreationTime;
}

struct HistSeries {
  std::vector<Attribute> attributes;
  std::array<uint64_t, kHttpDurationBounds.size() + 1> counts{};
  uint64_t count = 0;
  double sum = 0, min = 0, max = 0;
};

// Attribute sets of one histogram metric, bounded; the overflow set catches the rest.
struct HistMap {
  std::unordered_map<std::string, size_t> index;
  std::vector<HistSeries> series;
  bool empty() const { return series.empty(); }
};

}  // namespace

const std::array<CauseInfo, kCauses>& Causes() {
  static const std::array<CauseInfo, kCauses> kInfo = {{
      {&correlate::Breakdown::oncpu_ns, "app", "cpu", "CPU"},
      {&correlate::Breakdown::runq_ns, "kernel", "runqueue", "RUNQ"},
      {&correlate::Breakdown::throttled_ns, "container", "throttling", "THROT"},
      {&correlate::Breakdown::blkio_ns, "kernel", "block_io", "IO"},
      {&correlate::Breakdown::memstall_ns, "kernel", "memory", "STALL"},
      {&correlate::Breakdown::steal_ns, "vm", "steal", "STEAL"},
      {&correlate::Breakdown::offcpu_other_ns, "other", "offcpu_other", "OTHER"},
  }};
  return kInfo;
}

std::string_view IncidentName(Incident i) { return otlp::IncidentEventName(i); }

std::vector<Attribute> WorkloadAttributes(const correlate::Resource& resource) {
  std::vector<Attribute> out;
  for (const auto& a : resource.attributes)
    if (!PerProcessKey(a.key)) out.push_back(a);
  std::stable_sort(out.begin(), out.end(),
                   [](const Attribute& x, const Attribute& y) { return x.key < y.key; });
  return out;
}

struct Aggregator::Workload {
  // One second of the `top` window.
  struct Slot {
    uint64_t second = UINT64_MAX;
    uint64_t requests = 0, errors = 0;
    std::array<uint64_t, kCauses> cause_ns{};
    std::array<uint64_t, kCauses> cause_span_ns{};  // duration of the spans carrying it
    uint64_t retransmits = 0;
    bool has_retransmits = false;
    std::vector<uint32_t> latency;  // kLatBins, allocated on first use
    uint64_t min_ns = UINT64_MAX, max_ns = 0;
    uint64_t slowest_ns = 0;
    correlate::TraceId slowest{};
    void Reset(uint64_t s) {
      std::vector<uint32_t> lat = std::move(latency);  // reuse the allocation
      *this = Slot();
      second = s;
      std::fill(lat.begin(), lat.end(), 0);
      latency = std::move(lat);
    }
  };

  std::string key;
  std::shared_ptr<const correlate::Resource> resource;
  std::string service, namespace_name, stack, container_id;
  uint64_t start_unix_ns = 0;
  uint64_t last_seen_ns = 0;
  uint64_t last_server_ns = 0;
  HistMap server, client;
  HistMap rpc_server, rpc_client;  // RPC spans (gRPC) go here instead of server/client
  std::array<std::array<uint64_t, 6>, 2> requests{};  // [server, client][status class]
  std::array<uint64_t, kCauses> cause_ns{};
  std::array<bool, kCauses> has_cause{};
  std::array<uint64_t, kIncidents> incidents{};
  uint64_t total_requests = 0, total_errors = 0;
  std::array<Slot, kSlots> slots;
  std::vector<uint32_t> pids;  // most recent first
  std::string verdict_service, verdict_layer, verdict_cause;
  std::optional<double> verdict_share;
  size_t max_series = 256;

  Slot& SlotFor(uint64_t second) {
    Slot& s = slots[second % kSlots];
    if (s.second != second) s.Reset(second);
    return s;
  }

  std::string key_scratch;  // the lookup key, reused: no allocation per span

  // The series of `m` keyed `k` (its attributes made by `attrs` when new), bounded.
  template <typename MakeAttrs>
  HistSeries& Series(HistMap& m, const std::string& k, MakeAttrs attrs) {
    auto it = m.index.find(k);
    size_t idx;
    if (it != m.index.end()) {
      idx = it->second;
    } else if (m.series.size() + 1 < max_series) {
      idx = m.series.size();
      HistSeries s;
      attrs(&s.attributes);
      m.series.push_back(std::move(s));
      m.index.emplace(k, idx);
    } else {
      // The OTel SDK's cardinality limit: one series stands for every set past the limit.
      auto ov = m.index.find("overflow");
      if (ov == m.index.end()) {
        HistSeries s;
        s.attributes.push_back({std::string(semconv::kMetricOverflow), true});
        m.series.push_back(std::move(s));
        ov = m.index.emplace("overflow", m.series.size() - 1).first;
      }
      idx = ov->second;
    }
    return m.series[idx];
  }

  static void Observe(HistSeries& s, double seconds) {
    size_t b = static_cast<size_t>(
        std::lower_bound(kHttpDurationBounds.begin(), kHttpDurationBounds.end(), seconds) -
        kHttpDurationBounds.begin());
    s.counts[b]++;
    if (s.count == 0 || seconds < s.min) s.min = seconds;
    if (s.count == 0 || seconds > s.max) s.max = seconds;
    s.count++;
    s.sum += seconds;
  }

  void RecordDuration(HistMap& m, std::string_view method, int status,
                      const std::string& error_type, double seconds) {
    std::string& k = key_scratch;
    k.assign(method);
    k += '|';
    absl::StrAppend(&k, status);
    k += '|';
    k += error_type;
    Observe(Series(m, k,
                   [&](std::vector<Attribute>* a) {
                     a->push_back({std::string(semconv::kHttpRequestMethod), std::string(method)});
                     if (status > 0) a->push_back({std::string(semconv::kHttpResponseStatusCode), int64_t{status}});
                     if (!error_type.empty()) a->push_back({std::string(semconv::kErrorType), error_type});
                   }),
            seconds);
  }

  // RPC conventions: rpc.system, rpc.service, rpc.method, rpc.grpc.status_code.
  void RecordRpc(HistMap& m, const correlate::Span::Rpc& rpc, double seconds) {
    std::string& k = key_scratch;
    k.assign(rpc.system);
    k += '|';
    k += rpc.service;
    k += '|';
    k += rpc.method;
    k += '|';
    absl::StrAppend(&k, rpc.grpc_status_code);
    Observe(Series(m, k,
                   [&](std::vector<Attribute>* a) {
                     a->push_back({std::string(semconv::kRpcSystem), rpc.system});
                     a->push_back({std::string(semconv::kRpcService), rpc.service});
                     a->push_back({std::string(semconv::kRpcMethod), rpc.method});
                     if (rpc.grpc_status_code >= 0)
                       a->push_back({std::string(semconv::kRpcGrpcStatusCode), int64_t{rpc.grpc_status_code}});
                   }),
            seconds);
  }
};

Aggregator::Aggregator(AggregatorOptions options) : options_(std::move(options)) {
  if (!options_.now_unix_ns) options_.now_unix_ns = [] { return util::RealtimeNowNs(); };
  if (options_.max_workloads == 0) options_.max_workloads = 1;
  if (options_.max_series < 2) options_.max_series = 2;
  start_unix_ns_ = options_.now_unix_ns();
}

Aggregator::~Aggregator() = default;

size_t Aggregator::workloads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return workloads_.size();
}

Aggregator::Workload* Aggregator::FindOrCreate(
    const std::shared_ptr<const correlate::Resource>& resource, uint64_t now) {
  static const auto* kEmpty = new std::shared_ptr<const correlate::Resource>(
      std::make_shared<correlate::Resource>());
  const auto& res = resource ? resource : *kEmpty;
  if (auto it = by_resource_.find(res.get()); it != by_resource_.end()) {
    if (it->second.resource.lock() == res) return it->second.workload;
    by_resource_.erase(it);
  }
  std::vector<Attribute> attrs = WorkloadAttributes(*res);
  std::string key;
  for (const auto& a : attrs) absl::StrAppend(&key, a.key, "=", ValueText(a.value), "\x1f");
  Workload* w;
  if (auto it = workloads_.find(key); it != workloads_.end()) {
    w = it->second.get();
  } else {
    if (workloads_.size() >= options_.max_workloads) {
      // Evict the least recently seen workload: its series restart from zero if it comes
      // back (a counter reset both OTLP start times and Prometheus rate() understand).
      auto victim = std::min_element(workloads_.begin(), workloads_.end(), [](auto& a, auto& b) {
        return a.second->last_seen_ns < b.second->last_seen_ns;
      });
      Workload* gone = victim->second.get();
      for (auto c = by_resource_.begin(); c != by_resource_.end();)
        c = c->second.workload == gone ? by_resource_.erase(c) : std::next(c);
      workloads_.erase(victim);
      evicted_++;
    }
    auto owned = std::make_unique<Workload>();
    w = owned.get();
    w->key = key;
    w->max_series = options_.max_series;
    auto r = std::make_shared<correlate::Resource>();
    r->attributes = attrs;
    w->resource = std::move(r);
    w->service = correlate::ServiceName(*w->resource);
    if (const auto* ns = StringAttr(attrs, semconv::kK8sNamespaceName)) w->namespace_name = *ns;
    if (const auto* st = StringAttr(attrs, semconv::kStack)) w->stack = *st;
    if (const auto* c = StringAttr(attrs, semconv::kContainerId)) w->container_id = *c;
    w->start_unix_ns = now;
    workloads_.emplace(key, std::move(owned));
  }
  if (by_resource_.size() > 4 * options_.max_workloads + 1024) by_resource_.clear();
  by_resource_[res.get()] = CacheEntry{res, w};
  return w;
}

void Aggregator::Record(const std::shared_ptr<const correlate::Resource>& resource,
                        const correlate::Span& span) {
  const uint64_t now = options_.now_unix_ns();
  const uint64_t dur_ns = span.end_unix_ns > span.start_unix_ns ? span.end_unix_ns - span.start_unix_ns : 0;
  const double seconds = static_cast<double>(dur_ns) / 1e9;
  const bool server = span.kind == correlate::SpanKind::kServer;
  const std::string_view method = MethodLabel(span.method);

  std::lock_guard<std::mutex> lock(mu_);
  spans_total_++;
  Workload* w = FindOrCreate(resource, now);
  w->last_seen_ns = now;
  if (span.rpc)
    w->RecordRpc(server ? w->rpc_server : w->rpc_client, *span.rpc, seconds);
  else
    w->RecordDuration(server ? w->server : w->client, method, span.status_code, span.error_type,
                      seconds);
  w->requests[server ? 0 : 1][StatusClassIndex(span.status_code)]++;

  std::array<int64_t, kCauses> cause{};
  std::array<bool, kCauses> has{};
  for (size_t c = 0; c < kCauses; ++c) {
    if (const auto& v = span.breakdown.*Causes()[c].measure; v && *v >= 0) {
      cause[c] = *v;
      has[c] = true;
    }
  }
  const bool has_retx = span.net.retransmits && *span.net.retransmits >= 0;
  const int64_t retx = has_retx ? *span.net.retransmits : 0;
  if (const auto& v = span.verdict) {
    w->verdict_service = v->service;
    w->verdict_layer = v->layer;
    w->verdict_cause = v->cause;
    w->verdict_share = v->share;
    // Bounded like every series set: beyond it, new (service, layer, cause) triples are
    // folded into one "other" series rather than dropped.
    std::tuple<std::string, std::string, std::string> k{v->service, v->layer, v->cause};
    if (!verdicts_.count(k) && verdicts_.size() >= options_.max_series) k = {"other", "other", "other"};
    verdicts_[k]++;
  }
  for (size_t c = 0; c < kCauses; ++c) {
    if (!has[c]) continue;
    w->cause_ns[c] += static_cast<uint64_t>(cause[c]);
    w->has_cause[c] = true;
  }
  if (has_retx) w->incidents[static_cast<size_t>(Incident::kTcpRetransmit)] += static_cast<uint64_t>(retx);
  for (const auto& e : span.incidents) {
    // The retransmit count already holds every retransmit of the span.
    if (has_retx && e.kind == Incident::kTcpRetransmit) continue;
    w->incidents[static_cast<size_t>(e.kind)]++;
  }

  if (span.process.tgid != 0) {
    auto& p = w->pids;
    if (p.empty() || p.front() != span.process.tgid) {
      auto it = std::find(p.begin(), p.end(), span.process.tgid);
      if (it != p.end()) p.erase(it);
      p.insert(p.begin(), span.process.tgid);
      if (p.size() > kPidsKept) p.pop_back();
    }
  }

  if (!server) return;
  const bool error = !span.error_type.empty();
  w->last_server_ns = now;
  w->total_requests++;
  if (error) w->total_errors++;
  auto& slot = w->SlotFor(now / kNs);
  slot.requests++;
  if (error) slot.errors++;
  if (slot.latency.empty()) slot.latency.assign(kLatBins, 0);
  slot.latency[LatencyBin(dur_ns)]++;
  slot.min_ns = std::min(slot.min_ns, dur_ns);
  slot.max_ns = std::max(slot.max_ns, dur_ns);
  if (dur_ns >= slot.slowest_ns) {
    slot.slowest_ns = dur_ns;
    slot.slowest = span.trace_id;
  }
  for (size_t c = 0; c < kCauses; ++c) {
    if (!has[c]) continue;
    slot.cause_ns[c] += static_cast<uint64_t>(cause[c]);
    slot.cause_span_ns[c] += dur_ns;
  }
  if (has_retx) {
    slot.retransmits += static_cast<uint64_t>(retx);
    slot.has_retransmits = true;
  }
}

void Aggregator::UpdateSelf(SelfStats stats) {
  std::lock_guard<std::mutex> lock(mu_);
  self_ = std::move(stats);
}

namespace {

Metric Counter(std::string_view name, std::string_view unit, std::string_view description,
               bool integer = true) {
  Metric m;
  m.name = std::string(name);
  m.unit = std::string(unit);
  m.description = std::string(description);
  m.type = MetricType::kCounter;
  m.integer = integer;
  return m;
}

Metric Gauge(std::string_view name, std::string_view unit, std::string_view description,
             bool integer = true) {
  Metric m = Counter(name, unit, description, integer);
  m.type = MetricType::kGauge;
  return m;
}

void AddPoint(Metric& m, double value, std::vector<Attribute> attrs = {}) {
  Point p;
  p.value = value;
  p.attributes = std::move(attrs);
  m.points.push_back(std::move(p));
}

Metric HistogramMetric(std::string_view name, std::string_view description, const HistMap& map) {
  Metric m;
  m.name = std::string(name);
  m.unit = "s";
  m.description = std::string(description);
  m.type = MetricType::kHistogram;
  m.integer = false;
  for (const auto& s : map.series) {
    Point p;
    p.attributes = s.attributes;
    p.histogram.bounds.assign(kHttpDurationBounds.begin(), kHttpDurationBounds.end());
    p.histogram.counts.assign(s.counts.begin(), s.counts.end());
    p.histogram.count = s.count;
    p.histogram.sum = s.sum;
    p.histogram.min = s.min;
    p.histogram.max = s.max;
    m.points.push_back(std::move(p));
  }
  return m;
}

struct ProcessStats {
  bool ok = false;
  double user_s = 0, system_s = 0;
  uint64_t rss_bytes = 0;
};

ProcessStats ReadProcessStats() {
  ProcessStats out;
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return out;
  out.user_s = static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) / 1e6;
  out.system_s = static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) / 1e6;
  // ru_maxrss is the peak; the current resident set is in statm (pages).
  std::ifstream statm("/proc/self/statm");
  uint64_t size_pages = 0, rss_pages = 0;
  if (statm >> size_pages >> rss_pages)
    out.rss_bytes = rss_pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  out.ok = true;
  return out;
}

}  // namespace

void Aggregator::CollectSelf(uint64_t now, Snapshot* out) {
  ResourceMetrics rm;
  rm.resource = options_.self_resource;
  if (!rm.resource) {
    auto r = std::make_shared<correlate::Resource>();
    r->attributes.push_back({std::string(semconv::kServiceName), std::string("isotraced")});
    rm.resource = std::move(r);
  }
  rm.start_unix_ns = start_unix_ns_;

  Metric events = Counter(kProbeEvents, "{event}", "Events read from each probe's ring buffer.");
  Metric lost = Counter(kProbeEventsLost, "{event}",
                        "Events a probe lost, by reason (ring buffer full, in-flight table full, malformed, path too long).");
  for (const auto& p : self_.probes) {
    AddPoint(events, static_cast<double>(p.events), {{std::string(semconv::kProbe), p.name}});
    if (p.lost_by_reason.empty()) {
      AddPoint(lost, static_cast<double>(p.lost), {{std::string(semconv::kProbe), p.name}});
      continue;
    }
    for (const auto& [reason, n] : p.lost_by_reason)
      AddPoint(lost, static_cast<double>(n), {{std::string(semconv::kProbe), p.name}, {std::string(semconv::kReason), reason}});
  }
  if (!events.points.empty()) {
    rm.metrics.push_back(std::move(events));
    rm.metrics.push_back(std::move(lost));
  }

  Metric spans = Counter(kCorrelateSpans, "{span}", "Spans the correlator produced.");
  AddPoint(spans, static_cast<double>(self_.spans));
  rm.metrics.push_back(std::move(spans));
  if (!self_.correlate_lost.empty()) {
    Metric cl = Counter(kCorrelateLost, "{item}",
                        "Requests or connections the correlator gave up on, by reason.");
    for (const auto& [reason, n] : self_.correlate_lost)
      AddPoint(cl, static_cast<double>(n), {{std::string(semconv::kReason), reason}});
    rm.metrics.push_back(std::move(cl));
  }

  if (self_.exporting) {
    Metric acc = Counter(kExportSpansAccepted, "{span}",
                         "Spans handed to the OTLP exporter (= sent + dropped once idle).");
    AddPoint(acc, static_cast<double>(self_.spans_accepted));
    rm.metrics.push_back(std::move(acc));
    Metric sent = Counter(kExportSpansSent, "{span}", "Spans the OTLP receiver acknowledged.");
    AddPoint(sent, static_cast<double>(self_.spans_sent));
    rm.metrics.push_back(std::move(sent));
    Metric dropped = Counter(kExportSpansDropped, "{span}", "Spans the exporter dropped, by reason.");
    for (const auto& [reason, n] : self_.spans_dropped)
      AddPoint(dropped, static_cast<double>(n), {{std::string(semconv::kReason), reason}});
    rm.metrics.push_back(std::move(dropped));
    Metric q = Gauge(kExportQueueSize, "{span}", "Spans waiting in the export queue.");
    AddPoint(q, static_cast<double>(self_.queue_size));
    rm.metrics.push_back(std::move(q));
  }

  if (!self_.links.empty()) {
    Metric m = Counter(kCorrelateLinks, "{span}",
                       "Span links decided by the correlator, by outcome (docs/locate.md).");
    for (const auto& [outcome, n] : self_.links) AddPoint(m, static_cast<double>(n), {{std::string(semconv::kOutcome), outcome}});
    rm.metrics.push_back(std::move(m));
  }
  if (!self_.nat_lookups.empty()) {
    Metric m = Counter(kCorrelateNatLookups, "{connection}",
                       "CLIENT connections looked up in conntrack for a NAT'd callee, by outcome.");
    for (const auto& [outcome, n] : self_.nat_lookups)
      AddPoint(m, static_cast<double>(n), {{std::string(semconv::kOutcome), outcome}});
    rm.metrics.push_back(std::move(m));
  }
  if (!self_.locate.empty()) {
    Metric m = Counter(kLocateTraces, "{trace}",
                       "Local traces daemon/locate judged or released unjudged, by outcome.");
    for (const auto& [outcome, n] : self_.locate) AddPoint(m, static_cast<double>(n), {{std::string(semconv::kOutcome), outcome}});
    rm.metrics.push_back(std::move(m));
  }
  {
    Metric m = Counter(kVerdicts, "{trace}",
                       "Verdicts for slow or failed traces, by the (service, layer, cause) they blame.");
    for (const auto& [k, n] : verdicts_)
      AddPoint(m, static_cast<double>(n),
               {{std::string(semconv::kVerdictService), std::get<0>(k)},
                {std::string(semconv::kVerdictLayer), std::get<1>(k)},
                {std::string(semconv::kVerdictCause), std::get<2>(k)}});
    if (!m.points.empty()) rm.metrics.push_back(std::move(m));
  }

  Metric wl = Gauge(kWorkloads, "{workload}", "Workloads with live metric series.");
  AddPoint(wl, static_cast<double>(workloads_.size()));
  rm.metrics.push_back(std::move(wl));
  Metric ev = Counter(kWorkloadsEvicted, "{workload}",
                      "Workloads evicted to stay within metrics.max_workloads.");
  AddPoint(ev, static_cast<double>(evicted_));
  rm.metrics.push_back(std::move(ev));

  if (options_.process_stats) {
    ProcessStats ps = ReadProcessStats();
    if (ps.ok) {
      Metric cpu = Counter(kProcessCpuTime, "s", "CPU time isotrace used, by mode.", false);
      AddPoint(cpu, ps.user_s, {{std::string(semconv::kCpuMode), std::string("user")}});
      AddPoint(cpu, ps.system_s, {{std::string(semconv::kCpuMode), std::string("system")}});
      rm.metrics.push_back(std::move(cpu));
      Metric mem = Gauge(kProcessMemoryUsage, "By", "isotrace's resident memory (RSS).");
      AddPoint(mem, static_cast<double>(ps.rss_bytes));
      rm.metrics.push_back(std::move(mem));
    }
  }
  (void)now;
  out->resources.push_back(std::move(rm));
}

Snapshot Aggregator::Collect() {
  Snapshot out;
  const uint64_t now = options_.now_unix_ns();
  out.time_unix_ns = now;
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<const Workload*> ws;
  ws.reserve(workloads_.size());
  for (const auto& [k, w] : workloads_) ws.push_back(w.get());
  std::sort(ws.begin(), ws.end(), [](auto* a, auto* b) { return a->key < b->key; });
  for (const Workload* w : ws) {
    ResourceMetrics rm;
    rm.resource = w->resource;
    rm.start_unix_ns = w->start_unix_ns;
    if (!w->server.empty())
      rm.metrics.push_back(HistogramMetric(kHttpServerDuration,
                                           "Duration of HTTP server requests.", w->server));
    if (!w->client.empty())
      rm.metrics.push_back(HistogramMetric(kHttpClientDuration,
                                           "Duration of HTTP client requests.", w->client));
    if (!w->rpc_server.empty())
      rm.metrics.push_back(HistogramMetric(kRpcServerDuration, "Duration of RPCs served.", w->rpc_server));
    if (!w->rpc_client.empty())
      rm.metrics.push_back(HistogramMetric(kRpcClientDuration, "Duration of RPCs made.", w->rpc_client));
    Metric req = Counter(kHttpRequests, "{request}", "HTTP requests by span kind and status class.");
    for (size_t k = 0; k < 2; ++k)
      for (size_t c = 0; c < 6; ++c)
        if (w->requests[k][c] > 0)
          AddPoint(req, static_cast<double>(w->requests[k][c]),
                   {{std::string(semconv::kSpanKind), std::string(k == 0 ? "server" : "client")},
                    {std::string(semconv::kStatusClass), std::string(StatusClass(c == 0 ? 0 : static_cast<int>(c) * 100))}});
    rm.metrics.push_back(std::move(req));
    Metric lt = Counter(kLayerTime, "s",
                        "Request time by isolation layer and cause (the vertical breakdown).", false);
    for (size_t c = 0; c < kCauses; ++c)
      if (w->has_cause[c])
        AddPoint(lt, static_cast<double>(w->cause_ns[c]) / 1e9,
                 {{std::string(semconv::kLayer), std::string(Causes()[c].layer)},
                  {std::string(semconv::kCause), std::string(Causes()[c].cause)}});
    if (!lt.points.empty()) rm.metrics.push_back(std::move(lt));
    Metric inc = Counter(kKernelIncidents, "{incident}",
                         "Kernel incidents that touched this workload's requests.");
    for (size_t i = 0; i < kIncidents; ++i)
      AddPoint(inc, static_cast<double>(w->incidents[i]),
               {{std::string(semconv::kIncident), std::string(IncidentName(static_cast<Incident>(i)))}});
    rm.metrics.push_back(std::move(inc));
    out.resources.push_back(std::move(rm));
  }
  CollectSelf(now, &out);
  return out;
}

TopView Aggregator::Top(uint32_t window_s) {
  window_s = std::clamp<uint32_t>(window_s, 1, kMaxWindowS);
  TopView view;
  const uint64_t now = options_.now_unix_ns();
  view.time_unix_ns = now;
  view.window_s = window_s;
  const uint64_t cur = now / kNs;
  // Whole seconds only (the current one is still filling); early in the daemon's life
  // the window is what it has seen.
  uint64_t covered_ns = std::min<uint64_t>(uint64_t{window_s} * kNs,
                                           cur * kNs > start_unix_ns_ ? cur * kNs - start_unix_ns_ : 0);
  const double elapsed_s = std::max<double>(static_cast<double>(covered_ns) / 1e9, 1.0);

  std::lock_guard<std::mutex> lock(mu_);
  view.spans_total = spans_total_;
  view.self = self_;
  for (const auto& [key, wp] : workloads_) {
    const Workload& w = *wp;
    if (w.last_server_ns == 0 || now - std::min(now, w.last_server_ns) > kRowLingerNs) continue;
    TopRow row;
    row.workload = w.key;
    row.service = w.service;
    row.namespace_name = w.namespace_name;
    row.stack = w.stack;
    row.container_id = w.container_id;
    row.pids = w.pids;
    row.resource = w.resource->attributes;
    row.total_requests = w.total_requests;
    row.total_errors = w.total_errors;
    row.verdict_service = w.verdict_service;
    row.verdict_layer = w.verdict_layer;
    row.verdict_cause = w.verdict_cause;
    row.verdict_share = w.verdict_share;

    std::vector<uint64_t> lat(kLatBins, 0);
    std::array<uint64_t, kCauses> cause_ns{}, cause_span_ns{};
    uint64_t retx = 0, min_ns = UINT64_MAX, max_ns = 0;
    bool has_retx = false;
    for (uint64_t s = cur >= window_s ? cur - window_s : 0; s < cur; ++s) {
      const auto& slot = w.slots[s % kSlots];
      if (slot.second != s) continue;
      row.requests += slot.requests;
      row.errors += slot.errors;
      for (size_t i = 0; i < slot.latency.size(); ++i) lat[i] += slot.latency[i];
      for (size_t c = 0; c < kCauses; ++c) {
        cause_ns[c] += slot.cause_ns[c];
        cause_span_ns[c] += slot.cause_span_ns[c];
      }
      retx += slot.retransmits;
      has_retx |= slot.has_retransmits;
      min_ns = std::min(min_ns, slot.min_ns);
      max_ns = std::max(max_ns, slot.max_ns);
      if (slot.requests > 0 && static_cast<double>(slot.slowest_ns) / 1e9 >= row.slowest_s) {
        row.slowest_s = static_cast<double>(slot.slowest_ns) / 1e9;
        row.slowest_trace_id = slot.slowest;
      }
    }
    row.requests_per_s = static_cast<double>(row.requests) / elapsed_s;
    row.error_ratio = row.requests ? static_cast<double>(row.errors) / static_cast<double>(row.requests) : 0;
    auto percentile = [&](double q) -> double {
      if (row.requests == 0) return 0;
      // The rank of the q-th request, 1-based, as the nearest-rank definition has it.
      uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(row.requests)));
      rank = std::max<uint64_t>(rank, 1);
      uint64_t seen = 0;
      for (size_t i = 0; i < kLatBins; ++i) {
        seen += lat[i];
        if (seen >= rank) {
          double v = std::clamp(LatencyBinMidNs(i), static_cast<double>(min_ns),
                                static_cast<double>(max_ns));
          return v / 1e9;
        }
      }
      return static_cast<double>(max_ns) / 1e9;
    };
    row.p50_s = percentile(0.50);
    row.p99_s = percentile(0.99);
    for (size_t c = 0; c < kShownCauses; ++c) {
      if (cause_span_ns[c] == 0) continue;
      row.shares[c] = std::clamp(
          static_cast<double>(cause_ns[c]) / static_cast<double>(cause_span_ns[c]), 0.0, 1.0);
    }
    if (has_retx) row.retransmits_per_s = static_cast<double>(retx) / elapsed_s;
    view.rows.push_back(std::move(row));
  }
  std::sort(view.rows.begin(), view.rows.end(), [](const TopRow& a, const TopRow& b) {
    return a.service != b.service ? a.service < b.service : a.workload < b.workload;
  });
  return view;
}

}  // namespace isotrace::metrics
