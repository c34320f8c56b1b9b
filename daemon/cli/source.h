#pragma once
// Where `isotrace top` and `isotrace trace` get their data: the running daemon over its
// local API socket, or, when no daemon runs, a pipeline embedded in the CLI itself (needs
// root). Both answer with the same API messages (daemon/api/convert.h).

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "daemon/config/config.h"
#include "daemon/correlate/span.h"
#include "isotrace/api/v1/api.pb.h"

namespace isotrace::cli {

namespace v1 = ::isotrace::api::v1;

class Source {
 public:
  virtual ~Source() = default;
  virtual absl::StatusOr<v1::TopResponse> Top(uint32_t window_s) = 0;
  virtual absl::StatusOr<v1::GetTraceResponse> GetTrace(const correlate::TraceId& id) = 0;
  // The last warning or error the embedded pipeline logged (it cannot write to the
  // terminal the table owns); empty for the daemon.
  virtual std::string LastLog() { return ""; }
};

enum class SocketState {
  kAbsent,  // no such file: no daemon
  kStale,   // a socket file nobody listens on (a daemon that crashed)
  kDenied,  // a daemon listens but this user may not connect
  kAlive,
};
SocketState ProbeSocket(const std::string& path);

absl::StatusOr<std::unique_ptr<Source>> ConnectDaemon(const std::string& socket_path);
// Loads the probes in this process (root) and starts polling on a thread of its own.
// Logging goes to an in-memory ring (LastLog), not to the terminal.
absl::StatusOr<std::unique_ptr<Source>> StartEmbedded(const config::Config& cfg);

}  // namespace isotrace::cli
