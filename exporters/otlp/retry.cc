#include "exporters/otlp/retry.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "isotrace/rpc/status.pb.h"

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
  if (server_delay) {
    if (*server_delay > max_server_delay) return std::nullopt;
    return std::max(*server_delay, absl::ZeroDuration());
  }

  const int exponent = std::clamp(failed_attempts - 1, 0, 62);
  absl::Duration d = initial_backoff * std::pow(std::max(multiplier, 1.0), exponent);
  d = std::min(d, max_backoff);
  const double j = std::clamp(jitter, 0.0, 1.0);
  const double u = std::clamp(unit_random, 0.0, 1.0);
  d = d * (1.0 - j + 2.0 * j * u);
  return std::max(d, absl::ZeroDuration());
}

std::optional<absl::Duration> ServerRetryDelay(std::string_view status_details) {
  if (status_details.empty()) return std::nullopt;
  isotrace::rpc::Status status;
  if (!status.ParseFromArray(status_details.data(), static_cast<int>(status_details.size()))) {
    return std::nullopt;
  }
  for (const auto& any : status.details()) {
    // Match on the message name after the last '/', as google.protobuf.Any::Is does; the
    // prefix (type.googleapis.com/) is not significant.
    std::string_view url = any.type_url();
    if (size_t slash = url.rfind('/'); slash != std::string_view::npos) url.remove_prefix(slash + 1);
    if (url != "google.rpc.RetryInfo") continue;
    isotrace::rpc::RetryInfo info;
    if (!info.ParseFromString(any.value()) || !info.has_retry_delay()) return std::nullopt;
    const auto& d = info.retry_delay();
    if (d.seconds() < 0 || d.nanos() < 0) return std::nullopt;
    return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
  }
  return std::nullopt;
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
