#include "daemon/pipeline/pipeline.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/probes/environment.h"
#include "daemon/util/fmt.h"
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
// The kernel side submits records without waking the reader (bpf/l7.h), so this is how
// long a record may wait: between 50 and 200 ms. The wait doubles after a wake-up that
// brought fewer than kFewRecords records (none: an idle node costs 5 wake-ups a second
// instead of 20; a few: a lightly loaded node handles its records in larger batches,
// which at 1 k req/s took the daemon's CPU per request from 28 to 24 µs on average,
// bench/steady_rate.sh) and drops back to 50 ms after one that brought more than
// kManyRecords. The rings' forced wake-up at a quarter full does not depend on it.
constexpr int kPollIntervalMs = 50;
constexpr int kIdlePollIntervalMs = 200;
constexpr int kFewRecords = 512;
constexpr int kManyRecords = 2048;

locate::LocateOptions LocateOptionsFrom(const config::Config& cfg) {
  locate::LocateOptions o;
  o.slow_factor = cfg.locate_slow_factor;
  o.shift_factor = cfg.locate_shift_factor;
  o.lone_factor = cfg.locate_lone_factor;
  o.slow_min_excess_ns = uint64_t{cfg.locate_slow_min_ms} * 1000000ull;
  o.baseline_samples = cfg.locate_baseline_samples;
  o.baseline_min_samples = cfg.locate_baseline_min_samples;
  o.hold_ms = cfg.locate_hold_ms;
  o.max_wait_ms = cfg.locate_max_wait_ms;
  o.max_held_spans = cfg.locate_max_held_spans;
  o.max_baselines = cfg.locate_max_baselines;
  return o;
}
}  // namespace

Pipeline::Pipeline(const config::Config& cfg)
    : cfg_(cfg),
      store_(cfg.embedded_spans),
      verdicts_(cfg.locate_verdicts),
      tracker_(LimitsFrom(cfg), &clock_, [this](correlate::Span&& s) { OnSpan(std::move(s)); }) {
  resolver_.SetCommonAttributes(layers::ParseResourceAttributes(cfg.resource_attributes));
  if (cfg.locate_enabled) {
    locator_ = std::make_unique<locate::Locator>(
        LocateOptionsFrom(cfg),
        [this](const std::shared_ptr<const correlate::Resource>& r, std::shared_ptr<const correlate::Span> s) {
          Release(r, std::move(s));
        },
        [this](const locate::Verdict& v, const std::shared_ptr<const correlate::Resource>& r) {
          verdicts_.Add(v);
          for (auto& c : verdict_consumers_) c(v, r);
        });
  }
}

Pipeline::~Pipeline() = default;

absl::Status Pipeline::Start() {
  if (auto st = probes::CheckBpfEnvironment(probes::L7Tracepoints()); !st.ok()) return st;
  if (auto st = resolver_.SetRules(cfg_.layer_rules, cfg_.layer_builtin_rules); !st.ok()) return st;
  resolver_.SetMaxEntries(cfg_.layer_cache_entries);
  StartProcProbe();
  probes::L7ProbeOptions opts;
  opts.capture_bytes = cfg_.capture_bytes;
  opts.client_write_start = cfg_.client_write_start;
  opts.ringbuf_bytes = cfg_.ringbuf_bytes;
  opts.target_tgid = cfg_.target_pid;
  opts.vm_guest = resolver_.vm().guest;
  auto probe = probes::L7Probe::Create(opts, [this](const probes::SocketEvent& ev) {
    // A process's identity is looked at where a connection or a message begins, not on
    // every segment (exec and exit reach the resolver through the proc probe).
    if (ev.kind == probes::SocketEvent::Kind::kData && (ev.new_conn || ev.msg_start)) {
      auto it = comm_by_tgid_.find(ev.tgid);
      if (it == comm_by_tgid_.end() || it->second != ev.comm) {
        if (comm_by_tgid_.size() > 65536) comm_by_tgid_.clear();
        comm_by_tgid_[ev.tgid] = std::string(ev.comm);
        // Resolve while the process is surely alive (short-lived clients exit fast).
        if (proc_probe_) proc_probe_->Consume();  // an exec or .wasm open that came first
        resolver_.Resolve({ev.tgid, ev.proc_start_ns}, ev.comm, ev.cgroup_id);
      }
    }
    tracker_.OnEvent(ev);
  });
  if (!probe.ok()) return probe.status();
  probe_ = std::move(*probe);
  const auto& f = probe_->features();
  tracker_.SetFeatures({f.memstall, f.steal, f.tcp_incidents});
  tracker_.SetListenDrops(&listen_drops_);
  if (cfg_.conntrack) {
    auto ct = probes::Conntrack::Create();
    if (ct.ok()) {
      conntrack_ = std::move(*ct);
      conntrack_->SetZones(cfg_.conntrack_zones);
      tracker_.SetNat(conntrack_.get());
    } else {
      // Optional: connections through NAT (Service addresses) then stay unlinked.
      spdlog::warn("conntrack unavailable ({}): calls to NAT'd service addresses are not linked",
                   ct.status().message());
    }
  }
  spdlog::info("l7 probe attached: data from {}, capture {} bytes per message, ring buffer {} KiB",
               f.sock_tracepoints ? "sock_send_length/sock_recv_length" : "syscall tracepoints",
               cfg_.capture_bytes, cfg_.ringbuf_bytes / 1024);
  last_summary_ns_ = clock_.MonotonicNowNs();
  return absl::OkStatus();
}

void Pipeline::StartProcProbe() {
  const auto& vm = resolver_.vm();
  std::string what = !vm.guest             ? "not a VM guest"
                     : vm.Kind().empty()     ? "a VM guest (hypervisor not named)"
                                             : absl::StrCat("a VM guest: ", vm.Kind());
  spdlog::info("node is {} ({})", what, absl::StrJoin(vm.evidence, "; "));
  probes::ProcProbeOptions popts;
  popts.target_tgid = cfg_.target_pid;
  auto proc = probes::ProcProbe::Create(popts, [this](const probes::ProcEvent& ev) {
    correlate::ProcessKey key{ev.tgid, ev.proc_start_ns};
    switch (ev.kind) {
      case probes::ProcEvent::Kind::kExec:
        resolver_.OnExec(key);
        // Every exec on the node (not one target's): the l7 probe's /proc scans may
        // then skip processes they already looked at.
        if (probe_ && cfg_.target_pid == 0) probe_->OnExec(ev.tgid);
        break;
      case probes::ProcEvent::Kind::kExit:
        resolver_.OnExit(key, {ev.ppid, ev.parent_start_ns});
        break;
      case probes::ProcEvent::Kind::kWasmOpen:
        resolver_.OnWasmOpen(key, std::string(ev.path), ev.path_resolved, ev.mnt_ns);
        break;
    }
  });
  if (!proc.ok()) {
    // Optional: identity still works, re-resolving on comm changes only and without
    // seeing .wasm modules loaded at run time.
    spdlog::warn("proc probe unavailable ({}): exec/exit cache invalidation falls back to comm "
                 "changes and run-time .wasm loads are not seen", proc.status().message());
    return;
  }
  proc_probe_ = std::move(*proc);
  resolver_.SetFactsDrain([this] { proc_probe_->Consume(); });
  // Worded so it never reads "probe attached": tests wait for that line of the l7 probe.
  spdlog::info("process facts (exec, exit, .wasm opens) from: {}",
               absl::StrJoin(proc_probe_->attached(), ", "));
}

probes::L7Counters Pipeline::probe_counters() const {
  return probe_ ? probe_->counters() : probes::L7Counters{};
}

std::optional<probes::ProcCounters> Pipeline::proc_counters() const {
  if (!proc_probe_) return std::nullopt;
  return proc_probe_->counters();
}

void Pipeline::OnSpan(correlate::Span&& span) {
  auto comm_it = comm_by_tgid_.find(span.process.tgid);
  std::string_view comm = comm_it == comm_by_tgid_.end() ? std::string_view() : comm_it->second;
  // Process facts (exec, exit, .wasm opens) sit in their own ring buffer; what the
  // process did before this span's last syscall is already there.
  if (proc_probe_) proc_probe_->Consume();
  auto resource = resolver_.Resolve(span.process, comm, span.cgroup_id);
  if (locator_) {
    // Held until its trace's root-most local span ended: the verdict goes on that span
    // before anything is exported.
    locator_->Add(std::move(resource), std::make_shared<correlate::Span>(std::move(span)),
                  clock_.RealtimeNowNs());
    return;
  }
  Release(resource, std::make_shared<const correlate::Span>(std::move(span)));
}

void Pipeline::Release(const std::shared_ptr<const correlate::Resource>& resource,
                       std::shared_ptr<const correlate::Span> span) {
  for (auto& c : consumers_) c(resource, *span);
  for (auto& c : shared_consumers_) c(resource, span);
  store_.Add(resource, std::move(span));  // the last user: the pointer moves
}

absl::Status Pipeline::PollOnce(int timeout_ms) {
  if (proc_probe_) proc_probe_->Consume();
  auto n = probe_->Poll(timeout_ms);
  if (!n.ok()) return n.status();
  last_poll_records_ = *n;
  if (locator_) locator_->Tick(clock_.RealtimeNowNs());
  MaybeHousekeep();
  return absl::OkStatus();
}

void Pipeline::MaybeHousekeep() {
  uint64_t now = clock_.MonotonicNowNs();
  if (now - last_housekeep_ns_ < kHousekeepEveryNs) return;
  last_housekeep_ns_ = now;
  tracker_.Expire(now);
  listen_drops_.Sample(now);
  if (conntrack_) {
    conntrack_->Expire();
    if (const auto& cs = conntrack_->stats(); cs.errors != conntrack_errors_logged_) {
      // One line per housekeeping round at most, with the latest reason.
      spdlog::warn("conntrack: {} lookup error(s) so far, latest: {}", cs.errors, conntrack_->last_error());
      conntrack_errors_logged_ = cs.errors;
    }
  }
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
  int timeout_ms = kPollIntervalMs;
  while (!stop.load(std::memory_order_relaxed)) {
    if (auto st = PollOnce(timeout_ms); !st.ok()) return st;
    if (last_poll_records_ < kFewRecords) {
      timeout_ms = std::min(2 * timeout_ms, kIdlePollIntervalMs);
    } else if (last_poll_records_ > kManyRecords) {
      timeout_ms = kPollIntervalMs;  // at once: a longer wait's burst can fill the exporter's queue
    }
  }
  // Drain what the kernel already queued, then finish nothing else: open connections
  // keep their pending requests (they have no response yet).
  if (proc_probe_) proc_probe_->Consume();
  auto drained = probe_->Poll(0).status();
  if (locator_) {
    // Judge what is complete, release the rest: every accepted span reaches the exporter.
    locator_->Drain(clock_.RealtimeNowNs());
    const auto& ls = locator_->stats();
    spdlog::info("locate: {} traces judged, {} slow, {} slower on a shifted route, {} lone outliers "
                 "(their cause did not repeat), {} failed, {} verdicts, {} released unjudged ({} held-span "
                 "overflow), {} late children",
                 ls.traces, ls.slow, ls.shift, ls.lone, ls.failed, ls.verdicts, ls.released_unjudged,
                 ls.held_overflow, ls.late_children);
  }
  auto ls = resolver_.stats();
  spdlog::info("layers: {} processes resolved ({} already gone, {} took their parent's sandbox), "
               "{} exec invalidations, {} exits, {} .wasm opens ({} not Wasm), rejected: {} "
               "untrusted cgroup files, {} ids, {} metadata files",
               ls.resolved, ls.exited_at_resolve, ls.inherited_from_parent, ls.exec_invalidations,
               ls.exits, ls.wasm_opens,
               ls.wasm_bad_modules, ls.cgroup_untrusted, ls.ids_rejected, ls.metadata_bad_files);
  return drained;
}

}  // namespace isotrace::pipeline
