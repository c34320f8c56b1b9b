#pragma once
// The daemon's data path, wired once: l7 probe → connection tracker → process resources
// → consumers (embedded store, OTLP exporter). One thread polls and correlates; the
// exporter runs its own thread behind a bounded queue, so the poll loop never blocks on
// the network.

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "daemon/config/config.h"
#include "daemon/correlate/connection_tracker.h"
#include "daemon/layers/process_resolver.h"
#include "daemon/locate/locator.h"
#include "daemon/locate/verdict.h"
#include "daemon/pipeline/span_store.h"
#include "daemon/probes/l7_probe.h"
#include "daemon/probes/proc_probe.h"
#include "daemon/util/clock.h"

namespace isotrace::pipeline {

// A consumer of finished spans. Must not block (it runs on the poll thread).
using SpanConsumer =
    std::function<void(const std::shared_ptr<const correlate::Resource>&, const correlate::Span&)>;
// One that keeps the span (the exporter's queue): it shares it instead of copying it.
using SharedSpanConsumer = std::function<void(const std::shared_ptr<const correlate::Resource>&,
                                              const std::shared_ptr<const correlate::Span>&)>;

class Pipeline {
 public:
  explicit Pipeline(const config::Config& cfg);
  ~Pipeline();

  // Checks the kernel, loads and attaches the probes. Fails with a message that says
  // what to change.
  absl::Status Start();
  // Polls until `stop` becomes true. Returns after draining what the ring buffer holds.
  absl::Status Run(const std::atomic<bool>& stop);
  // One poll step (tests drive the pipeline with it).
  absl::Status PollOnce(int timeout_ms);

  void AddConsumer(SpanConsumer c) { consumers_.push_back(std::move(c)); }
  void AddSharedConsumer(SharedSpanConsumer c) { shared_consumers_.push_back(std::move(c)); }
  // Called on the poll thread for every verdict (after it is in verdicts()); must not
  // block. The OTLP log exporter is one.
  using VerdictConsumer =
      std::function<void(const locate::Verdict&, const std::shared_ptr<const correlate::Resource>&)>;
  void AddVerdictConsumer(VerdictConsumer c) { verdict_consumers_.push_back(std::move(c)); }
  locate::VerdictStore& verdicts() { return verdicts_; }
  // Poll thread only (not atomic), like tracker_stats().
  locate::LocateStats locate_stats() const { return locator_ ? locator_->stats() : locate::LocateStats{}; }
  // Runs once a second on the poll thread, the only thread that may read
  // probe_counters() and tracker_stats() (they are not atomic): self-telemetry hooks.
  void AddTicker(std::function<void()> t) { tickers_.push_back(std::move(t)); }
  SpanStore& store() { return store_; }
  const correlate::TrackerStats& tracker_stats() const { return tracker_.stats(); }
  const probes::ListenDropsStats& listen_drops_stats() const { return listen_drops_.stats(); }
  probes::L7Counters probe_counters() const;
  // The proc probe's (exec/exit/.wasm opens); nullopt when it could not load.
  std::optional<probes::ProcCounters> proc_counters() const;
  layers::ProcessResolver& resolver() { return resolver_; }

 private:
  void OnSpan(correlate::Span&& span);
  void Release(const std::shared_ptr<const correlate::Resource>& resource,
               std::shared_ptr<const correlate::Span> span);
  void StartProcProbe();  // optional source: exec/exit/.wasm opens for daemon/layers
  void MaybeHousekeep();

  config::Config cfg_;
  util::Clock clock_;
  layers::ProcessResolver resolver_;
  SpanStore store_;
  locate::VerdictStore verdicts_;
  std::unique_ptr<locate::Locator> locator_;  // null: locate.enabled = false
  std::vector<VerdictConsumer> verdict_consumers_;
  std::unique_ptr<probes::Conntrack> conntrack_;  // null: correlate.conntrack off, or unreachable
  probes::ListenDrops listen_drops_;  // callees' namespaces (a full accept queue), housekeeping
  correlate::ConnectionTracker tracker_;
  std::unique_ptr<probes::L7Probe> probe_;
  std::unique_ptr<probes::ProcProbe> proc_probe_;
  std::vector<SpanConsumer> consumers_;
  std::vector<SharedSpanConsumer> shared_consumers_;
  int last_poll_records_ = 0;  // records the last PollOnce consumed
  std::vector<std::function<void()>> tickers_;
  std::unordered_map<uint32_t, std::string> comm_by_tgid_;  // last comm seen per process
  uint64_t conntrack_errors_logged_ = 0;
  uint64_t last_housekeep_ns_ = 0;
  uint64_t last_summary_ns_ = 0;
};

}  // namespace isotrace::pipeline
