#pragma once
// Exporter configuration and how it is read from the OpenTelemetry environment variables
// (OTEL_EXPORTER_OTLP_*, OTEL_BSP_*, OTEL_BLRP_*). The environment is passed in as a map
// so tests, the YAML config and --otlp-endpoint can all feed the same parser.

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "exporters/otlp/encode.h"
#include "exporters/otlp/retry.h"

namespace isotrace::otlp {

enum class Signal { kTraces, kLogs, kMetrics };
std::string_view SignalName(Signal s);  // "traces", "logs", "metrics"

// Where to send, as gRPC understands it.
struct Endpoint {
  std::string target;     // gRPC target: "host:port", "[v6]:port", "unix:/path"
  bool insecure = false;  // plaintext instead of TLS
  std::string scheme;     // "http", "https", "unix", or "" when the value had none
};

// OTEL_EXPORTER_OTLP_ENDPOINT forms:
//   http://host[:port][/]   plaintext        https://host[:port][/]   TLS
//   host[:port]             TLS unless `insecure_without_scheme` (OTEL_EXPORTER_OTLP_INSECURE)
//   unix:/path, unix:///path  plaintext over a unix socket
// A missing port is 4317 (443 for https). A path other than "/" is rejected: OTLP/gRPC
// has no path prefix, and a value like ".../v1/traces" is an OTLP/HTTP URL by mistake.
absl::StatusOr<Endpoint> ParseEndpoint(std::string_view value, bool insecure_without_scheme);

// OTEL_EXPORTER_OTLP_HEADERS: "k1=v1,k2=v2"; whitespace around keys and values is
// trimmed, values are percent-decoded, keys are lower-cased (gRPC metadata keys must be).
using Headers = std::vector<std::pair<std::string, std::string>>;
absl::StatusOr<Headers> ParseHeaders(std::string_view value);

struct ExporterOptions {
  // Whether an endpoint was configured at all; without one the daemon runs embedded
  // (DESIGN.md) and creates no exporter. The defaults below are OTel's.
  bool endpoint_configured = false;
  Endpoint endpoint{"localhost:4317", true, "http"};

  // TLS material (PEM contents, not paths); empty = system roots / no client cert.
  std::string root_certs_pem;
  std::string client_cert_pem;
  std::string client_key_pem;

  Headers headers;                             // sent as gRPC metadata on every export
  bool gzip = false;                           // OTEL_EXPORTER_OTLP_COMPRESSION=gzip
  absl::Duration timeout = absl::Seconds(10);  // per export RPC (one attempt)

  size_t max_queue_size = 2048;                     // items held before Enqueue drops
  size_t max_queue_bytes = 16u << 20;               // and their estimated memory, bytes
  size_t max_batch_size = 512;                      // items per export request
  absl::Duration batch_timeout = absl::Seconds(1);  // longest an item waits for a batch
  RetryPolicy retry;

  Scope scope;
};

// Every OTEL_* variable of this process (the injectable environment for OptionsFromEnv).
using EnvMap = std::map<std::string, std::string, std::less<>>;
EnvMap ProcessEnv();

// Reads the options for one signal. Signal-specific variables
// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, ..._LOGS_HEADERS, ...) win over the generic ones;
// batching comes from OTEL_BSP_* (traces) or OTEL_BLRP_* (logs). Bad values fail with
// InvalidArgument naming the variable. Also reads the certificate files named by
// OTEL_EXPORTER_OTLP_CERTIFICATE / _CLIENT_CERTIFICATE / _CLIENT_KEY.
absl::StatusOr<ExporterOptions> OptionsFromEnv(const EnvMap& env, Signal signal);

// Only the signal-specific variables (OTEL_EXPORTER_OTLP_<SIGNAL>_*), applied over `o`,
// which already holds the generic settings from wherever they came (the daemon's merged
// configuration: file < OTEL_* < flags). `read_endpoint` false leaves the endpoint as it
// is; `insecure_without_scheme` is what a scheme-less signal endpoint means unless
// OTEL_EXPORTER_OTLP_<SIGNAL>_INSECURE says.
absl::Status ApplySignalEnv(const EnvMap& env, Signal signal, bool read_endpoint,
                            bool insecure_without_scheme, ExporterOptions* o);

// The PEM file a certificate setting names; errors name `setting` and the path.
absl::StatusOr<std::string> ReadPemFile(std::string_view setting, std::string_view path);

}  // namespace isotrace::otlp
