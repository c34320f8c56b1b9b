#include "exporters/otlp/retry.h"

#include <algorithm>
#include <cmath>

namespace isotrace::otlp {

bool RetryPolicy::IsRetryable(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DATA_LOSS:
      return true;
    default:
      return false;
  }
}

std::optional<absl::Duration> RetryPolicy::NextDelay(
    int failed_attempts, grpc::StatusCode code, double unit_random,
    std::optional<absl::Duration> server_delay) const {
  if (failed_attempts >= max_attempts) return std::nullopt;
  const bool throttled = code == grpc::StatusCode::RESOURCE_EXHAUSTED && server_delay;
  if (!IsRetryable(code) && !throttled) return std::nullopt;
  if (server_delay) return std::max(*server_delay, absl::ZeroDuration());

  const int exponent = std::clamp(failed_attempts - 1, 0, 62);
  absl::Duration d = initial_backoff * std::pow(std::max(multiplier, 1.0), exponent);
  d = std::min(d, max_backoff);
  const double j = std::clamp(jitter, 0.0, 1.0);
  const double u = std::clamp(unit_random, 0.0, 1.0);
  d = d * (1.0 - j + 2.0 * j * u);
  return std::max(d, absl::ZeroDuration());
}

std::string_view GrpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

}  // namespace isotrace::otlp
