#include "exporters/otlp/metrics_exporter.h"

#include <algorithm>

#include "absl/random/random.h"
#include "exporters/otlp/str_util.h"
#include "spdlog/spdlog.h"

namespace isotrace::otlp {

absl::StatusOr<std::unique_ptr<MetricsExporter>> MetricsExporter::Create(ExporterOptions options,
                                                                         absl::Duration interval,
                                                                         Collect collect) {
  auto channel = MakeChannel(options);
  return CreateWithChannel(std::move(options), interval, std::move(collect), std::move(channel));
}

absl::StatusOr<std::unique_ptr<MetricsExporter>> MetricsExporter::CreateWithChannel(
    ExporterOptions options, absl::Duration interval, Collect collect,
    std::shared_ptr<grpc::ChannelInterface> channel) {
  if (channel == nullptr) return absl::InvalidArgumentError("otlp metrics: no gRPC channel");
  if (!collect) return absl::InvalidArgumentError("otlp metrics: no collect function");
  if (interval <= absl::ZeroDuration())
    return absl::InvalidArgumentError("otlp metrics: the export interval must be > 0");
  if (options.timeout <= absl::ZeroDuration())
    return absl::InvalidArgumentError("otlp metrics: the export timeout must be > 0");
  if (options.retry.max_attempts < 1)
    return absl::InvalidArgumentError("otlp metrics: retry.max_attempts must be >= 1");
  return std::unique_ptr<MetricsExporter>(
      new MetricsExporter(std::move(options), interval, std::move(collect), std::move(channel)));
}

MetricsExporter::MetricsExporter(ExporterOptions options, absl::Duration interval,
                                 Collect collect, std::shared_ptr<grpc::ChannelInterface> channel)
    : options_(std::move(options)),
      interval_(interval),
      collect_(std::move(collect)),
      stub_(otlp_collector_metrics::MetricsService::NewStub(std::move(channel))),
      failure_log_(str::Cat("metrics → ", options_.endpoint.target)) {
  worker_ = std::thread([this] { Run(); });
}

MetricsExporter::~MetricsExporter() { Shutdown(absl::Now()).IgnoreError(); }

bool MetricsExporter::Aborted() const {
  return abort_ || (stopping_ && absl::Now() >= shutdown_deadline_);
}

void MetricsExporter::Run() {
  absl::Time next = absl::Now() + interval_;
  while (true) {
    bool flush = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_until(lock, absl::ToChronoTime(next),
                     [this] { return stopping_ || flush_requested_ > flush_done_; });
      if (stopping_) break;
      flush = flush_requested_ > flush_done_;
    }
    const absl::Time now = absl::Now();
    if (!flush || now >= next) {
      // Retry no later than the next tick: that collection supersedes this one.
      while (next <= now) next += interval_;
    }
    uint64_t flush_target = 0;
    if (flush) {
      std::lock_guard<std::mutex> lock(mu_);
      flush_target = flush_requested_;
    }
    bool ok = ExportOnce(flush ? now + options_.timeout : next);
    if (flush) {
      std::lock_guard<std::mutex> lock(mu_);
      flush_done_ = flush_target;
      last_flush_ok_ = ok;
      cv_.notify_all();
    }
  }
  // The final collection: what happened since the last tick would otherwise be lost.
  absl::Time deadline;
  {
    std::lock_guard<std::mutex> lock(mu_);
    deadline = shutdown_deadline_;
  }
  if (absl::Now() < deadline) ExportOnce(deadline);
  std::lock_guard<std::mutex> lock(mu_);
  worker_done_ = true;
  flush_done_ = flush_requested_;
  cv_.notify_all();
}

bool MetricsExporter::ExportOnce(absl::Time give_up) {
  metrics::Snapshot snapshot = collect_();
  otlp_collector_metrics::ExportMetricsServiceRequest request;
  if (auto st = EncodeMetrics(snapshot, options_.scope, &request); !st.ok()) {
    spdlog::error("otlp metrics: a collection failed to encode: {}", str::Std(st.message()));
    exports_failed_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const int64_t points = CountDataPoints(request);
  if (points == 0) return true;

  absl::BitGen rng;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext ctx;
    otlp_collector_metrics::ExportMetricsServiceResponse response;
    absl::Time deadline = std::min(absl::Now() + options_.timeout, give_up);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (abort_) {
        exports_failed_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      if (stopping_) deadline = std::min(deadline, shutdown_deadline_);
      active_call_ = &ctx;
    }
    ctx.set_deadline(absl::ToChronoTime(deadline));
    for (const auto& [key, value] : options_.headers) ctx.AddMetadata(key, value);
    if (options_.gzip) ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);
    const grpc::Status status = stub_->Export(&ctx, request, &response);
    {
      std::lock_guard<std::mutex> lock(mu_);
      active_call_ = nullptr;
    }
    if (status.ok()) {
      const int64_t rejected =
          std::clamp<int64_t>(response.partial_success().rejected_data_points(), 0, points);
      exports_.fetch_add(1, std::memory_order_relaxed);
      points_sent_.fetch_add(static_cast<uint64_t>(points - rejected), std::memory_order_relaxed);
      if (rejected > 0) {
        points_rejected_.fetch_add(static_cast<uint64_t>(rejected), std::memory_order_relaxed);
        failure_log_.Failure("partial_success",
                             str::Cat(rejected, " of ", points, " data points rejected: ",
                                      response.partial_success().error_message()),
                             static_cast<uint64_t>(rejected));
      } else {
        failure_log_.Success();
      }
      return true;
    }
    const auto code = status.error_code();
    if (static_cast<size_t>(code) < failures_.size()) failures_[static_cast<size_t>(code)].fetch_add(1);
    const std::optional<absl::Duration> server_delay = ServerRetryDelay(status.error_details());
    const auto delay = options_.retry.NextDelay(attempt, code, absl::Uniform<double>(rng, 0.0, 1.0),
                                                server_delay);
    if (!delay || absl::Now() + *delay >= give_up) {
      failure_log_.Failure(GrpcCodeName(code), status.error_message(), static_cast<uint64_t>(points));
      exports_failed_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    failure_log_.Failure(GrpcCodeName(code), status.error_message(), 0);
    {
      std::unique_lock<std::mutex> lock(mu_);
      const absl::Time wake = absl::Now() + *delay;
      cv_.wait_until(lock, absl::ToChronoTime(wake), [this] { return Aborted(); });
      if (Aborted()) {
        exports_failed_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
    }
    retries_.fetch_add(1, std::memory_order_relaxed);
  }
}

bool MetricsExporter::ForceFlush(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (worker_done_ || stopping_) return false;
  const uint64_t target = ++flush_requested_;
  cv_.notify_all();
  if (!cv_.wait_until(lock, absl::ToChronoTime(deadline),
                      [&] { return flush_done_ >= target || worker_done_; }))
    return false;
  return flush_done_ >= target && last_flush_ok_ && !worker_done_;
}

absl::Status MetricsExporter::Shutdown(absl::Time deadline) {
  std::call_once(shutdown_once_, [&] {
    {
      std::unique_lock<std::mutex> lock(mu_);
      stopping_ = true;
      shutdown_deadline_ = deadline;
      cv_.notify_all();
      if (!cv_.wait_until(lock, absl::ToChronoTime(deadline), [this] { return worker_done_; })) {
        abort_ = true;
        if (active_call_ != nullptr) active_call_->TryCancel();
        cv_.notify_all();
        shutdown_status_ = absl::DeadlineExceededError(
            "otlp metrics: the final export did not finish before the shutdown deadline");
      }
    }
    if (worker_.joinable()) worker_.join();
  });
  return shutdown_status_;
}

MetricsExportStats MetricsExporter::Stats() const {
  MetricsExportStats s;
  s.exports = exports_.load();
  s.exports_failed = exports_failed_.load();
  s.points_sent = points_sent_.load();
  s.points_rejected = points_rejected_.load();
  s.retries = retries_.load();
  for (size_t i = 0; i < failures_.size(); ++i)
    if (uint64_t n = failures_[i].load(); n > 0)
      s.export_failures[std::string(GrpcCodeName(static_cast<grpc::StatusCode>(i)))] += n;
  return s;
}

}  // namespace isotrace::otlp
