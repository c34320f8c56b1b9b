#include "daemon/pipeline/pipeline.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/probes/environment.h"
#include "spdlog/spdlog.h"

namespace isotrace::pipeline {

namespace {
correlate::TrackerLimits LimitsFrom(const config::Config& cfg) {
  correlate::TrackerLimits l;
  l.max_connections = cfg.max_connections;
  l.max_pending_per_connection = cfg.max_pending_requests;
  l.idle_timeout_ns = uint64_t{cfg.idle_timeout_s} * 1000000000ull;
  return l;
}
constexpr uint64_t kHousekeepEveryNs = 1000000000ull;
}  // namespace

Pipeline::Pipeline(const config::Config& cfg)
    : cfg_(cfg),
      store_(cfg.embedded_spans),
      tracker_(LimitsFrom(cfg), &clock_, [this](correlate::Span&& s) { OnSpan(std::move(s)); }) {
  resolver_.SetCommonAttributes(layers::ParseResourceAttributes(cfg.resource_attributes));
}

Pipeline::~Pipeline() = default;

absl::Status Pipeline::Start() {
  if (auto st = probes::CheckBpfEnvironment(probes::L7Tracepoints()); !st.ok()) return st;
  probes::L7ProbeOptions opts;
  opts.capture_bytes = cfg_.capture_bytes;
  opts.ringbuf_bytes = cfg_.ringbuf_bytes;
  opts.target_tgid = cfg_.target_pid;
  auto probe = probes::L7Probe::Create(opts, [this](const probes::SocketEvent& ev) {
    if (ev.kind == probes::SocketEvent::Kind::kData || ev.kind == probes::SocketEvent::Kind::kAccept) {
      auto it = comm_by_tgid_.find(ev.tgid);
      if (it == comm_by_tgid_.end() || it->second != ev.comm) {
        if (comm_by_tgid_.size() > 65536) comm_by_tgid_.clear();
        comm_by_tgid_[ev.tgid] = std::string(ev.comm);
        // Resolve while the process is surely alive (short-lived clients exit fast).
        resolver_.Resolve({ev.tgid, ev.proc_start_ns}, ev.comm);
      }
    }
    tracker_.OnEvent(ev);
  });
  if (!probe.ok()) return probe.status();
  probe_ = std::move(*probe);
  spdlog::info("l7 probe attached: {} tracepoints, capture {} bytes/syscall, ring buffer {} KiB",
               probes::L7Tracepoints().size(), cfg_.capture_bytes, cfg_.ringbuf_bytes / 1024);
  last_summary_ns_ = clock_.MonotonicNowNs();
  return absl::OkStatus();
}

probes::L7Counters Pipeline::probe_counters() const {
  return probe_ ? probe_->counters() : probes::L7Counters{};
}

void Pipeline::OnSpan(correlate::Span&& span) {
  auto comm_it = comm_by_tgid_.find(span.process.tgid);
  std::string_view comm = comm_it == comm_by_tgid_.end() ? std::string_view() : comm_it->second;
  auto resource = resolver_.Resolve(span.process, comm);
  for (auto& c : consumers_) c(resource, span);
  store_.Add(std::move(resource), span);
}

absl::Status Pipeline::PollOnce(int timeout_ms) {
  auto n = probe_->Poll(timeout_ms);
  if (!n.ok()) return n.status();
  MaybeHousekeep();
  return absl::OkStatus();
}

void Pipeline::MaybeHousekeep() {
  uint64_t now = clock_.MonotonicNowNs();
  if (now - last_housekeep_ns_ < kHousekeepEveryNs) return;
  last_housekeep_ns_ = now;
  tracker_.Expire(now);
  for (auto& t : tickers_) t();
  if (cfg_.summary_interval_s == 0 || now - last_summary_ns_ < cfg_.summary_interval_s * 1000000000ull)
    return;
  last_summary_ns_ = now;
  auto window = store_.TakeWindow();
  auto pc = probe_counters();
  std::vector<std::string> parts;
  for (const auto& s : window)
    parts.push_back(absl::StrCat(s.service, " ", s.requests, " req ", s.errors, " err p50 ",
                                 absl::SixDigits(s.p50_ms), "ms p99 ", absl::SixDigits(s.p99_ms), "ms"));
  spdlog::info("last {}s: {} spans [{}] events {} lost {} conns {} not-http {}", cfg_.summary_interval_s,
               [&] { uint64_t t = 0; for (auto& s : window) t += s.requests; return t; }(),
               absl::StrJoin(parts, "; "), pc.received, pc.ringbuf_drops, tracker_.connections(),
               tracker_.stats().connections_not_http);
}

absl::Status Pipeline::Run(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) {
    if (auto st = PollOnce(100); !st.ok()) return st;
  }
  // Drain what the kernel already queued, then finish nothing else: open connections
  // keep their pending requests (they have no response yet).
  return probe_->Poll(0).status();
}

}  // namespace isotrace::pipeline
