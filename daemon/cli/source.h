#pragma once
// Where `isotrace top`, `trace` and `locate` get their data: the running daemon over its
// local API socket, or, when no daemon runs, a pipeline embedded in the CLI itself (needs
// root). Both answer with the same API messages (daemon/api/convert.h).

#include <memory>
#include <optional>
#include <string>
#include <string_view>

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
  // Verdicts of slow or failed traces that ended in the last `since_s` seconds (0: the
  // server's default), only `trace_id`'s when given, at most `max` (0: default), newest
  // first.
  virtual absl::StatusOr<v1::LocateResponse> Locate(
      const std::optional<correlate::TraceId>& trace_id, uint32_t since_s, uint32_t max) = 0;
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
// Logging goes to an in-memory ring (LastLog), not to the terminal. `command` names the
// subcommand in the message that asks for root.
absl::StatusOr<std::unique_ptr<Source>> StartEmbedded(const config::Config& cfg,
                                                      std::string_view command = "top");

}  // namespace isotrace::cli
