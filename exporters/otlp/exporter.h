#pragma once
// OTLP/gRPC exporters: a bounded queue, one worker thread, size- and time-based batches,
// a sync unary Export call per batch with a deadline, retries with backoff, and exact
// accounting (accepted == sent + dropped once idle). Traces and logs share all of it
// through the Exporter<Signal> template; only the encoding differs (the Signal traits).
//
// Thread-safety: Enqueue, Flush, Stats and Shutdown may be called from any thread.
// Enqueue never blocks on the network: it takes a mutex that the worker holds only to
// move items in or out of the queue. The queue is bounded twice, by items
// (max_queue_size) and by an estimate of their memory (max_queue_bytes), so a burst of
// unusually large spans (long URLs, many events) cannot grow the daemon past its limit.

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <type_traits>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/correlate/span.h"
#include "exporters/otlp/encode.h"
#include "exporters/otlp/options.h"
#include "exporters/otlp/retry.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "opentelemetry/proto/collector/logs/v1/logs_service.pb.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace isotrace::otlp {

// Why an item was dropped; the names are the `reason` label of
// isotrace.export.spans.dropped.
enum class DropReason : uint8_t {
  kQueueFull,         // "queue_full": Enqueue found the queue full (items or bytes)
  kInvalid,           // "invalid": rejected at Enqueue (e.g. all-zero ids)
  kEncodeError,       // "encode_error": the batch could not be encoded
  kNonRetryable,      // "non_retryable": the receiver answered with a final error
  kRetriesExhausted,  // "retries_exhausted": transient errors outlasted the retry policy
  kRejected,          // "rejected": the receiver's partial_success refused them
  kShutdown,          // "shutdown": still held when the Shutdown deadline passed
  kCount
};
std::string_view DropReasonName(DropReason r);

// A consistent-enough snapshot of an exporter's counters (each counter is exact; the set
// is read without stopping the worker, so compare sums only once the exporter is idle).
struct ExportStats {
  uint64_t accepted = 0;  // every item passed to Enqueue, including ones dropped there
  uint64_t sent = 0;      // acknowledged by the receiver
  std::map<std::string, uint64_t> dropped;          // reason → items; every reason listed
  std::map<std::string, uint64_t> export_failures;  // gRPC code → failed attempts
  uint64_t queue_size = 0;    // waiting in the queue now (not counting the batch in flight)
  uint64_t queue_bytes = 0;   // estimated memory of those items (ApproxRecordBytes)
  uint64_t in_flight = 0;     // in the batch being exported now
  uint64_t batches_sent = 0;  // Export calls that succeeded
  uint64_t retries = 0;       // attempts after the first, over all batches
  uint64_t server_delays = 0;     // retries that waited the delay the server asked (RetryInfo)
  uint64_t partial_successes = 0; // OK answers whose partial_success rejected items

  uint64_t dropped_total() const;
};

// What differs between signals. Each provides Record, Response, kMethod, kName,
// kItemNoun, Validate, Encode (a batch into the request's wire bytes: the exporter sends
// bytes through a generic stub, so no request message is built) and Rejected.
struct TraceSignal {
  using Record = std::shared_ptr<const correlate::Span>;  // shared with the span store
  using Response = otlp_collector_trace::ExportTraceServiceResponse;
  static constexpr const char* kMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
  static constexpr std::string_view kName = "traces";
  static constexpr std::string_view kItemNoun = "spans";
  static absl::Status Validate(const Record& r) {
    return r ? ValidateSpan(*r) : absl::InvalidArgumentError("otlp: no span");
  }
  static absl::Status Encode(absl::Span<const WithResource<Record>> batch, const Scope& scope,
                             std::string* wire) {
    return EncodeSpansWire(batch, scope, wire);
  }
  static int64_t Rejected(const Response& r) { return r.partial_success().rejected_spans(); }
  static const std::string& RejectMessage(const Response& r) {
    return r.partial_success().error_message();
  }
};

struct LogsSignal {
  using Record = LogRecord;
  using Response = otlp_collector_logs::ExportLogsServiceResponse;
  static constexpr const char* kMethod = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
  static constexpr std::string_view kName = "logs";
  static constexpr std::string_view kItemNoun = "log records";
  static absl::Status Validate(const Record&) { return absl::OkStatus(); }
  // One log record per verdict: the message path is cheap enough here.
  static absl::Status Encode(absl::Span<const WithResource<Record>> batch, const Scope& scope,
                             std::string* wire) {
    otlp_collector_logs::ExportLogsServiceRequest request;
    if (auto st = EncodeLogs(batch, scope, &request); !st.ok()) return st;
    if (!request.SerializeToString(wire)) return absl::InternalError("otlp: logs do not serialise");
    return absl::OkStatus();
  }
  static int64_t Rejected(const Response& r) { return r.partial_success().rejected_log_records(); }
  static const std::string& RejectMessage(const Response& r) {
    return r.partial_success().error_message();
  }
};

// Estimated heap + inline memory of one queued record: what max_queue_bytes bounds.
// An estimate (allocator slack is not counted), but it grows with every string and
// attribute, which is what makes one item cost more than another.
size_t ApproxRecordBytes(const correlate::Span& span);
// A shared span is counted whole: the queue keeps it alive.
inline size_t ApproxRecordBytes(const std::shared_ptr<const correlate::Span>& span) {
  return span ? ApproxRecordBytes(*span) : 0;
}
size_t ApproxRecordBytes(const LogRecord& record);
template <typename T>
size_t ApproxRecordBytes(const T&) {
  return sizeof(T);
}

// The gRPC channel the options describe (plaintext or TLS, reconnect backoff capped so a
// restarted Collector is found again within seconds). Never fails: gRPC connects lazily.
std::shared_ptr<grpc::Channel> MakeChannel(const ExporterOptions& options);

// Logs once per burst of failures instead of once per batch (no log floods when the
// Collector is down): the first failure, a reminder at most every `reminder` while it
// lasts, and the recovery. Not thread-safe; each exporter's worker owns one.
class FailureLog {
 public:
  explicit FailureLog(std::string what, absl::Duration reminder = absl::Minutes(1))
      : what_(std::move(what)), reminder_(reminder) {}
  void Failure(std::string_view code, std::string_view message, uint64_t dropped_items);
  void Success();
  bool failing() const { return failing_; }

 private:
  std::string what_;
  absl::Duration reminder_;
  bool failing_ = false;
  absl::Time since_;
  absl::Time last_log_;
  uint64_t failures_ = 0;
  uint64_t dropped_ = 0;
};

template <typename SignalT>
class Exporter {
 public:
  using Record = typename SignalT::Record;
  using Item = WithResource<Record>;

  // Connects (lazily) to options.endpoint and starts the worker thread.
  static absl::StatusOr<std::unique_ptr<Exporter>> Create(ExporterOptions options);
  // Same over a channel the caller made (tests: an in-process server).
  static absl::StatusOr<std::unique_ptr<Exporter>> CreateWithChannel(
      ExporterOptions options, std::shared_ptr<grpc::ChannelInterface> channel);

  Exporter(const Exporter&) = delete;
  Exporter& operator=(const Exporter&) = delete;
  // Shutdown(now) unless already shut down: whatever is still queued is dropped (counted).
  ~Exporter();

  // Never blocks. False when the item was not taken: queue full, exporter shut down, or
  // the record is invalid; each is counted as dropped under its reason.
  bool Enqueue(std::shared_ptr<const correlate::Resource> resource, Record record);
  // Traces: a span the caller does not keep (tests, tools) is moved into a shared one.
  template <typename S = SignalT>
    requires std::is_same_v<typename S::Record, std::shared_ptr<const correlate::Span>>
  bool Enqueue(std::shared_ptr<const correlate::Resource> resource, correlate::Span span) {
    return Enqueue(std::move(resource), std::make_shared<const correlate::Span>(std::move(span)));
  }

  // Exports everything queued now, without waiting for the batch timer; true when the
  // queue drained and nothing is in flight before `deadline`.
  bool Flush(absl::Time deadline);

  // Stops taking items, exports what it holds (retrying until `deadline` at most), cancels
  // an export still in flight at `deadline`, drops the rest as "shutdown", joins the
  // worker. OK when everything held was exported or dropped by the receiver's own
  // answer; DeadlineExceeded when items were dropped because time ran out. Idempotent.
  absl::Status Shutdown(absl::Time deadline);

  ExportStats Stats() const;
  const ExporterOptions& options() const { return options_; }

 private:
  Exporter(ExporterOptions options, std::shared_ptr<grpc::ChannelInterface> channel);

  void Run();
  void ExportBatch(std::vector<Item>& batch);
  // Sleeps until `until` or until the shutdown deadline passes / Shutdown aborts; false
  // when woken for shutdown with the deadline gone.
  bool SleepUntil(absl::Time until);
  bool PastShutdownDeadline() const;  // requires mu_
  void Drop(DropReason reason, uint64_t n);

  const ExporterOptions options_;
  grpc::GenericStub stub_;
  FailureLog failure_log_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // worker waits: items, flush, shutdown
  std::condition_variable idle_cv_;  // Flush/Shutdown wait: queue drained, worker done
  std::deque<Item> queue_;           // guarded by mu_
  size_t queue_bytes_ = 0;           // guarded by mu_: sum of ApproxRecordBytes over queue_
  size_t in_flight_ = 0;             // guarded by mu_
  bool flush_requested_ = false;     // guarded by mu_
  bool stopping_ = false;            // guarded by mu_: no more Enqueue
  bool abort_ = false;               // guarded by mu_: deadline passed, stop retrying
  bool worker_done_ = false;         // guarded by mu_
  bool overflow_burst_ = false;      // guarded by mu_: a queue_full drop was logged
  absl::Time shutdown_deadline_ = absl::InfiniteFuture();  // guarded by mu_
  grpc::ClientContext* active_call_ = nullptr;             // guarded by mu_
  std::thread worker_;
  std::once_flag shutdown_once_;
  absl::Status shutdown_status_;

  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> batches_sent_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> queue_size_{0};
  std::atomic<uint64_t> queue_bytes_gauge_{0};
  std::atomic<uint64_t> server_delays_{0};
  std::atomic<uint64_t> partial_successes_{0};
  std::atomic<uint64_t> in_flight_count_{0};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(DropReason::kCount)> dropped_{};
  std::array<std::atomic<uint64_t>, 17> failures_{};  // by grpc::StatusCode 0..16
};

extern template class Exporter<TraceSignal>;
extern template class Exporter<LogsSignal>;

using TraceExporter = Exporter<TraceSignal>;
using LogsExporter = Exporter<LogsSignal>;

}  // namespace isotrace::otlp
