#pragma once
// OTLP/gRPC metrics: the periodic-collection variant of exporter.h. Spans are pushed
// into a queue one by one; metrics are pulled: every `interval` one worker thread asks
// the aggregator for a snapshot, encodes it and calls MetricsService/Export. It reuses
// exporter.h's channel (MakeChannel), retry policy (RetryPolicy, ServerRetryDelay) and
// failure log (FailureLog), so a Collector outage reads the same in the log for every
// signal.
//
// Every point is cumulative, so retrying a failed export is bounded by the next tick:
// the next collection carries everything the failed one had, and an outage costs
// resolution, never counts. Shutdown collects and exports one last time.
//
// Thread-safety: ForceFlush, Stats and Shutdown may be called from any thread.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/metrics/model.h"
#include "exporters/otlp/exporter.h"
#include "exporters/otlp/metrics_encode.h"
#include "exporters/otlp/options.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.grpc.pb.h"

namespace isotrace::otlp {

struct MetricsExportStats {
  uint64_t exports = 0;          // Export calls that succeeded
  uint64_t exports_failed = 0;   // collections given up (retries outlasted, final error)
  uint64_t points_sent = 0;      // data points acknowledged
  uint64_t points_rejected = 0;  // refused in partial_success
  uint64_t retries = 0;
  std::map<std::string, uint64_t> export_failures;  // gRPC code → failed attempts
};

class MetricsExporter {
 public:
  using Collect = std::function<metrics::Snapshot()>;

  static absl::StatusOr<std::unique_ptr<MetricsExporter>> Create(ExporterOptions options,
                                                                 absl::Duration interval,
                                                                 Collect collect);
  static absl::StatusOr<std::unique_ptr<MetricsExporter>> CreateWithChannel(
      ExporterOptions options, absl::Duration interval, Collect collect,
      std::shared_ptr<grpc::ChannelInterface> channel);

  MetricsExporter(const MetricsExporter&) = delete;
  MetricsExporter& operator=(const MetricsExporter&) = delete;
  ~MetricsExporter();  // Shutdown(now) unless already shut down

  // Collects and exports now, outside the timer; true when that export succeeded before
  // `deadline`.
  bool ForceFlush(absl::Time deadline);
  // Stops the timer, collects and exports a last time (retrying until `deadline`),
  // cancels a call still in flight at `deadline`, joins the worker. Idempotent.
  absl::Status Shutdown(absl::Time deadline);

  MetricsExportStats Stats() const;

 private:
  MetricsExporter(ExporterOptions options, absl::Duration interval, Collect collect,
                  std::shared_ptr<grpc::ChannelInterface> channel);
  void Run();
  // One collection, exported with retries until `give_up`; true on success.
  bool ExportOnce(absl::Time give_up);
  bool Aborted() const;  // requires mu_

  const ExporterOptions options_;
  const absl::Duration interval_;
  Collect collect_;
  std::unique_ptr<otlp_collector_metrics::MetricsService::Stub> stub_;
  FailureLog failure_log_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                                  // guarded by mu_
  bool abort_ = false;                                     // guarded by mu_
  bool worker_done_ = false;                               // guarded by mu_
  absl::Time shutdown_deadline_ = absl::InfiniteFuture();  // guarded by mu_
  uint64_t flush_requested_ = 0;                           // guarded by mu_
  uint64_t flush_done_ = 0;                                // guarded by mu_
  bool last_flush_ok_ = false;                             // guarded by mu_
  grpc::ClientContext* active_call_ = nullptr;             // guarded by mu_
  std::thread worker_;
  std::once_flag shutdown_once_;
  absl::Status shutdown_status_;

  std::atomic<uint64_t> exports_{0};
  std::atomic<uint64_t> exports_failed_{0};
  std::atomic<uint64_t> points_sent_{0};
  std::atomic<uint64_t> points_rejected_{0};
  std::atomic<uint64_t> retries_{0};
  std::array<std::atomic<uint64_t>, 17> failures_{};  // by grpc::StatusCode 0..16
};

}  // namespace isotrace::otlp
