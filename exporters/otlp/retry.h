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

  // The OTLP/gRPC specification's list of transient failures. RESOURCE_EXHAUSTED is
  // retryable only when the server says when to come back (RetryInfo), which we do not
  // read yet, so it is treated as final.
  static bool IsRetryable(grpc::StatusCode code);

  // Delay before the next attempt after `failed_attempts` (>= 1) attempts failed, the last
  // with `code`; nullopt when the policy gives up. `unit_random` is uniform in [0, 1),
  // injected so tests are deterministic. `server_delay` is the receiver's own hint (from
  // RetryInfo, once read); when present it replaces the computed backoff.
  std::optional<absl::Duration> NextDelay(
      int failed_attempts, grpc::StatusCode code, double unit_random,
      std::optional<absl::Duration> server_delay = std::nullopt) const;
};

// "UNAVAILABLE", "DEADLINE_EXCEEDED", ... (the canonical names, used as metric labels).
std::string_view GrpcCodeName(grpc::StatusCode code);

}  // namespace isotrace::otlp
