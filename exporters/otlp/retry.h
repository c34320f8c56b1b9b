#pragma once
// When to try an OTLP export again, and after how long. Kept apart from the exporter so
// the policy can grow (honouring the server's google.rpc.RetryInfo, a retry budget)
// without touching the queue mechanics.

#include <optional>
#include <string_view>

#include "absl/time/time.h"
#include "grpcpp/support/status.h"

namespace isotrace::otlp {

struct RetryPolicy {
  int max_attempts = 5;  // including the first one; 1 = never retry
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Seconds(5);
  double multiplier = 2.0;
  double jitter = 0.2;  // each delay is scaled by a random factor in [1-jitter, 1+jitter]
  // The longest server-requested delay honoured. A receiver asking for more (or a
  // corrupted trailer) would park the worker while the queue overflows; past this cap the
  // batch is given up (retries_exhausted) instead of waiting.
  absl::Duration max_server_delay = absl::Seconds(30);

  // The OTLP/gRPC specification's list of transient failures. RESOURCE_EXHAUSTED is not in
  // it: it is retryable only when the server says when to come back (RetryInfo).
  static bool IsRetryable(grpc::StatusCode code);

  // Delay before the next attempt after `failed_attempts` (>= 1) attempts failed, the last
  // with `code`; nullopt when the policy gives up. `unit_random` is uniform in [0, 1),
  // injected so tests are deterministic. `server_delay` is the receiver's RetryInfo hint
  // (ServerRetryDelay); when present it replaces the computed backoff, makes
  // RESOURCE_EXHAUSTED retryable, and gives up when above max_server_delay.
  std::optional<absl::Duration> NextDelay(
      int failed_attempts, grpc::StatusCode code, double unit_random,
      std::optional<absl::Duration> server_delay = std::nullopt) const;
};

// The delay a receiver asked for in google.rpc.RetryInfo, read from the serialized
// google.rpc.Status of a failed call (grpc::Status::error_details(), the
// grpc-status-details-bin trailer). nullopt when there is no such detail, the bytes do
// not parse, or the delay is negative.
std::optional<absl::Duration> ServerRetryDelay(std::string_view status_details);

// "UNAVAILABLE", "DEADLINE_EXCEEDED", ... (the canonical names, used as metric labels).
std::string_view GrpcCodeName(grpc::StatusCode code);

}  // namespace isotrace::otlp
