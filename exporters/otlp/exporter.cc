#include "exporters/otlp/exporter.h"

#include <algorithm>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/random/random.h"
#include "exporters/otlp/str_util.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "spdlog/spdlog.h"

namespace isotrace::otlp {

std::string_view DropReasonName(DropReason r) {
  switch (r) {
    case DropReason::kQueueFull:
      return "queue_full";
    case DropReason::kInvalid:
      return "invalid";
    case DropReason::kEncodeError:
      return "encode_error";
    case DropReason::kNonRetryable:
      return "non_retryable";
    case DropReason::kRetriesExhausted:
      return "retries_exhausted";
    case DropReason::kRejected:
      return "rejected";
    case DropReason::kShutdown:
      return "shutdown";
    case DropReason::kCount:
      break;
  }
  return "unknown";
}

namespace {
// One unary call through the generic stub, waited for: the worker sends one batch at a
// time (its accounting and shutdown rely on it), the bytes are the encoder's own. The
// call runs on a completion queue of its own that this thread waits on, so gRPC does the
// call's I/O here while it waits. The callback form (GenericStub::UnaryCall) handed each
// call to gRPC's callback thread and back through a condition variable: two more thread
// hops per export, on a guest where every wake-up is a dear system call.
grpc::Status CallUnary(grpc::GenericStub& stub, const char* method, grpc::ClientContext* ctx,
                       const grpc::ByteBuffer& request, grpc::ByteBuffer* response) {
  grpc::CompletionQueue cq;
  grpc::Status result;
  auto call = stub.PrepareUnaryCall(ctx, method, request, &cq);
  if (call == nullptr) return grpc::Status(grpc::StatusCode::INTERNAL, "otlp: the call could not be set up");
  call->StartCall();
  void* const finished = &result;
  call->Finish(response, &result, finished);
  void* tag = nullptr;
  bool ok = false;
  // Finish's tag is the call's only event; it always comes (a deadline or TryCancel ends
  // the call with a status).
  while (cq.Next(&tag, &ok) && tag != finished) {
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return result;
}

size_t AttributesBytes(const std::vector<correlate::Attribute>& attrs) {
  size_t n = attrs.capacity() * sizeof(correlate::Attribute);
  for (const auto& a : attrs) {
    n += a.key.capacity();
    if (const auto* str = std::get_if<std::string>(&a.value)) n += str->capacity();
  }
  return n;
}
}  // namespace

size_t ApproxRecordBytes(const correlate::Span& span) {
  size_t n = sizeof(span) + span.tracestate.capacity() + span.method.capacity() +
             span.path.capacity() + span.query.capacity() + span.protocol_version.capacity() +
             span.host_header.capacity() + span.client_address.capacity() +
             span.server_address.capacity() + span.error_type.capacity() +
             span.incidents.capacity() * sizeof(correlate::Incident);
  for (const auto& e : span.incidents) n += e.victim_comm.capacity();
  if (const auto& v = span.verdict)
    n += v->service.capacity() + v->layer.capacity() + v->cause.capacity() + v->reason.capacity();
  return n;
}

size_t ApproxRecordBytes(const LogRecord& record) {
  return sizeof(record) + record.severity_text.capacity() + record.body.capacity() +
         AttributesBytes(record.attributes);
}

uint64_t ExportStats::dropped_total() const {
  uint64_t total = 0;
  for (const auto& [reason, n] : dropped) total += n;
  return total;
}

std::shared_ptr<grpc::Channel> MakeChannel(const ExporterOptions& options) {
  grpc::ChannelArguments args;
  args.SetUserAgentPrefix(str::Cat("isotrace/", options.scope.version));
  // gRPC's default reconnect backoff grows to 120 s; a Collector restart should be
  // picked up within seconds, and our own retry policy already spaces attempts.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 500);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.endpoint.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.root_certs_pem;
    ssl.pem_cert_chain = options.client_cert_pem;
    ssl.pem_private_key = options.client_key_pem;
    creds = grpc::SslCredentials(ssl);
  }
  return grpc::CreateCustomChannel(options.endpoint.target, creds, args);
}

void FailureLog::Failure(std::string_view code, std::string_view message, uint64_t dropped_items) {
  const absl::Time now = absl::Now();
  ++failures_;
  dropped_ += dropped_items;
  if (!failing_) {
    failing_ = true;
    since_ = now;
    last_log_ = now;
    spdlog::warn(
        "otlp {}: export failing: {} {} (further failures are summarised, not logged "
        "one by one)",
        what_, code, message);
    return;
  }
  if (now - last_log_ >= reminder_) {
    last_log_ = now;
    spdlog::warn(
        "otlp {}: export still failing after {}: {} failed attempts, {} items dropped; "
        "last error {} {}",
        what_, absl::FormatDuration(absl::Trunc(now - since_, absl::Milliseconds(1))), failures_,
        dropped_, code, message);
  }
}

void FailureLog::Success() {
  if (!failing_) return;
  spdlog::info("otlp {}: export recovered after {} ({} failed attempts, {} items dropped)", what_,
               absl::FormatDuration(absl::Trunc(absl::Now() - since_, absl::Milliseconds(1))),
               failures_, dropped_);
  failing_ = false;
  failures_ = 0;
  dropped_ = 0;
}

template <typename S>
absl::StatusOr<std::unique_ptr<Exporter<S>>> Exporter<S>::Create(ExporterOptions options) {
  if (options.endpoint.scheme.empty() && !options.endpoint.insecure) {
    // The OTel default for a scheme-less endpoint is TLS, which surprises people pointing
    // at a local plaintext Collector; say so once instead of leaving only handshake errors.
    spdlog::info(
        "otlp {}: endpoint {} has no scheme, so TLS is used; write http://{} or set "
        "OTEL_EXPORTER_OTLP_INSECURE=true for plaintext",
        S::kName, options.endpoint.target, options.endpoint.target);
  }
  auto channel = MakeChannel(options);
  return CreateWithChannel(std::move(options), std::move(channel));
}

template <typename S>
absl::StatusOr<std::unique_ptr<Exporter<S>>> Exporter<S>::CreateWithChannel(
    ExporterOptions options, std::shared_ptr<grpc::ChannelInterface> channel) {
  if (channel == nullptr) return absl::InvalidArgumentError("otlp: no gRPC channel");
  if (options.max_queue_size == 0 || options.max_batch_size == 0 ||
      options.max_queue_bytes == 0) {
    return absl::InvalidArgumentError(
        "otlp: max_queue_size, max_queue_bytes and max_batch_size must be > 0");
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("otlp: the export timeout must be > 0");
  }
  if (options.retry.max_attempts < 1) {
    return absl::InvalidArgumentError("otlp: retry.max_attempts must be >= 1");
  }
  options.max_batch_size = std::min(options.max_batch_size, options.max_queue_size);
  return std::unique_ptr<Exporter>(new Exporter(std::move(options), std::move(channel)));
}

template <typename S>
Exporter<S>::Exporter(ExporterOptions options, std::shared_ptr<grpc::ChannelInterface> channel)
    : options_(std::move(options)),
      stub_(std::move(channel)),
      failure_log_(str::Cat(S::kName, " → ", options_.endpoint.target)) {
  worker_ = std::thread([this] { Run(); });
}

template <typename S>
Exporter<S>::~Exporter() {
  Shutdown(absl::Now()).IgnoreError();
}

template <typename S>
void Exporter<S>::Drop(DropReason reason, uint64_t n) {
  if (n == 0) return;
  dropped_[static_cast<size_t>(reason)].fetch_add(n, std::memory_order_relaxed);
}

template <typename S>
bool Exporter<S>::Enqueue(std::shared_ptr<const correlate::Resource> resource, Record record) {
  accepted_.fetch_add(1, std::memory_order_relaxed);
  if (!S::Validate(record).ok()) {
    Drop(DropReason::kInvalid, 1);
    return false;
  }
  if constexpr (std::is_same_v<Record, LogRecord>) {
    if (record.observed_time_unix_ns == 0) {
      record.observed_time_unix_ns = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
    }
  }
  // Sized outside the lock: the poll thread calls this for every span.
  const size_t bytes = ApproxRecordBytes(record);
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      Drop(DropReason::kShutdown, 1);
      return false;
    }
    const bool items_full = queue_.size() >= options_.max_queue_size;
    // One item larger than the whole byte budget is still taken into an empty queue, so
    // an oversized record is exported rather than refused for ever.
    const bool bytes_full = !queue_.empty() && queue_bytes_ + bytes > options_.max_queue_bytes;
    if (items_full || bytes_full) {
      Drop(DropReason::kQueueFull, 1);
      if (!overflow_burst_) {
        overflow_burst_ = true;
        spdlog::warn("otlp {}: queue full ({} of {} {}, {} of {} bytes), dropping until it drains",
                     S::kName, queue_.size(), options_.max_queue_size, S::kItemNoun, queue_bytes_,
                     options_.max_queue_bytes);
      }
      return false;
    }
    queue_.push_back(Item{std::move(resource), std::move(record)});
    queue_bytes_ += bytes;
    queue_size_.store(queue_.size(), std::memory_order_relaxed);
    queue_bytes_gauge_.store(queue_bytes_, std::memory_order_relaxed);
    // The worker needs waking to start its batch timer (first item) or to send a full
    // batch early; in between it is either busy or already timing.
    wake = queue_.size() == 1 || queue_.size() == options_.max_batch_size;
  }
  if (wake) work_cv_.notify_one();
  return true;
}

template <typename S>
bool Exporter<S>::Flush(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (worker_done_) return queue_.empty();
  flush_requested_ = true;
  work_cv_.notify_one();
  const auto until = absl::ToChronoTime(deadline);
  return idle_cv_.wait_until(
             lock, until, [this] { return (queue_.empty() && in_flight_ == 0) || worker_done_; }) &&
         queue_.empty() && in_flight_ == 0;
}

template <typename S>
absl::Status Exporter<S>::Shutdown(absl::Time deadline) {
  std::call_once(shutdown_once_, [&] {
    const uint64_t shutdown_drops_before =
        dropped_[static_cast<size_t>(DropReason::kShutdown)].load();
    {
      std::unique_lock<std::mutex> lock(mu_);
      stopping_ = true;
      shutdown_deadline_ = deadline;
      work_cv_.notify_all();
      const bool done =
          idle_cv_.wait_until(lock, absl::ToChronoTime(deadline), [this] { return worker_done_; });
      if (!done) {
        // Out of time: stop retrying and cut the call in flight; the worker then drops
        // everything left as "shutdown" and exits.
        abort_ = true;
        if (active_call_ != nullptr) active_call_->TryCancel();
        work_cv_.notify_all();
      }
    }
    if (worker_.joinable()) worker_.join();
    const uint64_t lost =
        dropped_[static_cast<size_t>(DropReason::kShutdown)].load() - shutdown_drops_before;
    if (lost > 0) {
      spdlog::warn("otlp {}: shutdown deadline passed, {} {} dropped", S::kName, lost,
                   S::kItemNoun);
      shutdown_status_ =
          absl::DeadlineExceededError(str::Cat("otlp ", S::kName, ": ", lost, " ", S::kItemNoun,
                                               " not exported before the shutdown deadline"));
    }
  });
  return shutdown_status_;
}

template <typename S>
ExportStats Exporter<S>::Stats() const {
  ExportStats s;
  // Read the outcome counters before `accepted` so a concurrent Enqueue can only make
  // accepted look larger, never sent + dropped.
  s.sent = sent_.load();
  for (size_t i = 0; i < dropped_.size(); ++i) {
    s.dropped[std::string(DropReasonName(static_cast<DropReason>(i)))] = dropped_[i].load();
  }
  for (size_t i = 0; i < failures_.size(); ++i) {
    if (uint64_t n = failures_[i].load(); n > 0) {
      s.export_failures[std::string(GrpcCodeName(static_cast<grpc::StatusCode>(i)))] += n;
    }
  }
  s.queue_size = queue_size_.load();
  s.queue_bytes = queue_bytes_gauge_.load();
  s.server_delays = server_delays_.load();
  s.partial_successes = partial_successes_.load();
  s.in_flight = in_flight_count_.load();
  s.batches_sent = batches_sent_.load();
  s.retries = retries_.load();
  s.accepted = accepted_.load();
  return s;
}

template <typename S>
bool Exporter<S>::PastShutdownDeadline() const {
  return abort_ || (stopping_ && absl::Now() >= shutdown_deadline_);
}

template <typename S>
bool Exporter<S>::SleepUntil(absl::Time until) {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (PastShutdownDeadline()) return false;
    const absl::Time wake = stopping_ ? std::min(until, shutdown_deadline_) : until;
    if (absl::Now() >= wake) return !PastShutdownDeadline();
    // Woken early by Enqueue/Shutdown: loop to re-read the shutdown deadline.
    work_cv_.wait_until(lock, absl::ToChronoTime(wake));
  }
}

template <typename S>
void Exporter<S>::Run() {
  std::vector<Item> batch;
  batch.reserve(options_.max_batch_size);
  const auto batch_timeout = absl::ToChronoMilliseconds(options_.batch_timeout);
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [this] { return stopping_ || flush_requested_ || !queue_.empty(); });
      if (!stopping_ && !flush_requested_ && queue_.size() < options_.max_batch_size) {
        work_cv_.wait_for(lock, batch_timeout, [this] {
          return stopping_ || flush_requested_ || queue_.size() >= options_.max_batch_size;
        });
      }
      if (queue_.empty()) {
        flush_requested_ = false;
        idle_cv_.notify_all();
        if (stopping_) break;
        continue;
      }
      const size_t n = std::min(queue_.size(), options_.max_batch_size);
      for (size_t i = 0; i < n; ++i) {
        const size_t bytes = ApproxRecordBytes(queue_.front().record);
        queue_bytes_ -= std::min(queue_bytes_, bytes);
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      if (queue_.empty()) queue_bytes_ = 0;  // an estimate must not drift
      queue_bytes_gauge_.store(queue_bytes_, std::memory_order_relaxed);
      in_flight_ = n;
      in_flight_count_.store(n, std::memory_order_relaxed);
      queue_size_.store(queue_.size(), std::memory_order_relaxed);
      if (queue_.empty() && overflow_burst_) {
        overflow_burst_ = false;
        spdlog::info("otlp {}: queue drained; {} {} dropped as queue_full so far", S::kName,
                     dropped_[static_cast<size_t>(DropReason::kQueueFull)].load(), S::kItemNoun);
      }
    }

    ExportBatch(batch);
    batch.clear();

    {
      std::lock_guard<std::mutex> lock(mu_);
      in_flight_ = 0;
      in_flight_count_.store(0, std::memory_order_relaxed);
      if (queue_.empty()) {
        flush_requested_ = false;
        idle_cv_.notify_all();
      }
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  worker_done_ = true;
  idle_cv_.notify_all();
}

template <typename S>
void Exporter<S>::ExportBatch(std::vector<Item>& batch) {
  const uint64_t n = batch.size();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (PastShutdownDeadline()) {
      Drop(DropReason::kShutdown, n);
      return;
    }
  }

  grpc::ByteBuffer request;
  {
    // The encoder writes into a heap string whose ownership the slice takes: the bytes are
    // never copied on their way to gRPC.
    auto* wire = new std::string;
    const absl::Status st = S::Encode(batch, options_.scope, wire);
    if (!st.ok()) {
      delete wire;
    // Validation at Enqueue should make this unreachable; count it rather than lose it.
      spdlog::error("otlp {}: dropping a batch of {} {} that failed to encode: {}", S::kName, n,
                    S::kItemNoun, str::Std(st.message()));
      Drop(DropReason::kEncodeError, n);
      return;
    }
    grpc::Slice slice(wire->data(), wire->size(), [](void* p) { delete static_cast<std::string*>(p); },
                      wire);
    request = grpc::ByteBuffer(&slice, 1);
  }
  batch.clear();  // the request holds the bytes now; free the records early

  absl::BitGen rng;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext ctx;
    grpc::ByteBuffer response_bytes;
    typename S::Response response;
    absl::Time deadline = absl::Now() + options_.timeout;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (PastShutdownDeadline()) {
        Drop(DropReason::kShutdown, n);
        return;
      }
      if (stopping_) deadline = std::min(deadline, shutdown_deadline_);
      active_call_ = &ctx;
    }
    ctx.set_deadline(absl::ToChronoTime(deadline));
    for (const auto& [key, value] : options_.headers) ctx.AddMetadata(key, value);
    if (options_.gzip) ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);

    grpc::Status status = CallUnary(stub_, S::kMethod, &ctx, request, &response_bytes);
    if (status.ok()) {
      grpc::Slice whole;
      if (!response_bytes.TrySingleSlice(&whole).ok()) response_bytes.DumpToSingleSlice(&whole);
      if (response_bytes.Length() > 0 &&
          !response.ParseFromArray(whole.begin(), static_cast<int>(whole.size()))) {
        // Same as the generated stub: an unreadable answer is an error, not a success.
        status = grpc::Status(grpc::StatusCode::INTERNAL, "otlp: cannot parse the export response");
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      active_call_ = nullptr;
    }

    if (status.ok()) {
      const uint64_t rejected =
          std::min<uint64_t>(n, static_cast<uint64_t>(std::max<int64_t>(0, S::Rejected(response))));
      sent_.fetch_add(n - rejected, std::memory_order_relaxed);
      batches_sent_.fetch_add(1, std::memory_order_relaxed);
      if (rejected > 0) {
        // The receiver took the request and refused these items for good: retrying
        // would send the same items to the same verdict (OTLP spec: do not retry).
        partial_successes_.fetch_add(1, std::memory_order_relaxed);
        Drop(DropReason::kRejected, rejected);
        failure_log_.Failure("partial_success",
                             str::Cat(rejected, " of ", n, " ", S::kItemNoun,
                                      " rejected: ", S::RejectMessage(response)),
                             rejected);
      } else {
        failure_log_.Success();
      }
      return;
    }

    const auto code = status.error_code();
    const auto code_index = static_cast<size_t>(code);
    if (code_index < failures_.size()) failures_[code_index].fetch_add(1);

    bool aborted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      aborted = PastShutdownDeadline();
    }
    if (aborted) {
      failure_log_.Failure(GrpcCodeName(code), status.error_message(), n);
      Drop(DropReason::kShutdown, n);
      return;
    }
    // A throttling receiver says when to come back in google.rpc.RetryInfo (the
    // grpc-status-details-bin trailer); that makes RESOURCE_EXHAUSTED retryable and
    // replaces our own backoff for any retryable code.
    const std::optional<absl::Duration> server_delay = ServerRetryDelay(status.error_details());
    const auto delay = options_.retry.NextDelay(attempt, code, absl::Uniform<double>(rng, 0.0, 1.0),
                                                server_delay);
    if (delay && server_delay) server_delays_.fetch_add(1, std::memory_order_relaxed);
    if (!delay) {
      const bool retryable = RetryPolicy::IsRetryable(code) || server_delay.has_value();
      failure_log_.Failure(GrpcCodeName(code), status.error_message(), n);
      Drop(retryable ? DropReason::kRetriesExhausted : DropReason::kNonRetryable, n);
      return;
    }
    failure_log_.Failure(GrpcCodeName(code), status.error_message(), 0);
    if (!SleepUntil(absl::Now() + *delay)) {
      Drop(DropReason::kShutdown, n);
      return;
    }
    retries_.fetch_add(1, std::memory_order_relaxed);
  }
}

template class Exporter<TraceSignal>;
template class Exporter<LogsSignal>;

}  // namespace isotrace::otlp
