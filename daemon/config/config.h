#pragma once
// Daemon configuration. Precedence, lowest to highest: built-in defaults → YAML file
// (--config) → OTEL_* environment variables → command-line flags. Every key is listed
// in docs/configuration.md; unknown keys are rejected with the key's path.

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace isotrace::config {

struct Config {
  // OTLP export; empty endpoint = embedded mode.
  std::string otlp_endpoint;
  std::string otlp_headers;           // "k=v,k2=v2"
  std::string resource_attributes;    // OTEL_RESOURCE_ATTRIBUTES syntax
  uint32_t export_batch_size = 512;
  uint32_t export_queue_size = 8192;
  uint32_t export_timeout_ms = 10000;
  uint32_t export_interval_ms = 1000;

  // Probes.
  uint32_t capture_bytes = 1024;
  uint32_t ringbuf_bytes = 8u << 20;
  uint32_t target_pid = 0;            // 0 = every process

  // Correlation limits.
  uint32_t max_connections = 65536;
  uint32_t max_pending_requests = 64;
  uint32_t idle_timeout_s = 300;

  // Embedded mode and logs.
  uint32_t embedded_spans = 4096;
  uint32_t summary_interval_s = 10;
  std::string log_level = "info";

  // Local API (the CLI's unix socket) and metrics (docs/metrics.md).
  std::string api_socket = "/run/isotrace/isotrace.sock";  // empty: no local API
  std::string api_socket_group;                // empty: root only (0600); else 0660 + group
  std::string prometheus_listen = "127.0.0.1:9464";  // empty: no /metrics endpoint
  uint32_t metrics_export_interval_ms = 60000;  // OTLP metrics (OTEL_METRIC_EXPORT_INTERVAL)
  uint32_t metrics_max_workloads = 1000;        // workloads with live series; LRU beyond
};

// Reads and validates a YAML file into *cfg (keys it names override the defaults).
absl::Status LoadYamlFile(const std::string& path, Config* cfg);
absl::Status LoadYamlString(const std::string& text, Config* cfg);
// Applies the OTEL_* variables from env (injectable for tests).
void ApplyEnvironment(const std::map<std::string, std::string>& env, Config* cfg);
std::map<std::string, std::string> ProcessEnvironment();
absl::Status Validate(const Config& cfg);

}  // namespace isotrace::config
