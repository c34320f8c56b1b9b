#pragma once
// Daemon configuration. Precedence, lowest to highest: built-in defaults → YAML file
// (--config) → OTEL_* environment variables → command-line flags. Every key is listed
// in docs/configuration.md; unknown keys are rejected with the key's path.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace isotrace::config {

// One rule of the isolation-stack identity table (`layers.rules`, docs/layers.md). Plain
// data: daemon/layers compiles and applies it. Every condition that is set must hold.
struct LayerRule {
  std::string layer;         // container | sandbox | wasm
  std::string name;          // runtime / sandbox kind / wasm runtime it names
  std::string cgroup;        // container: RE2 searched in a cgroup path; named groups id,
                             // pod_uid, qos, name, unit
  std::string oci_state;     // container: glob of directories holding <id>/state.json (runc
                             // family) or <id>/status (crun)
  std::string executable;    // RE2, full match on the process's executable basename
  std::string ancestor;      // RE2, full match on an ancestor's executable basename
  std::string library;       // RE2, full match on the basename of a file the process maps
  std::string wasm_import;   // a .wasm module the process opened imports from this module
  bool wasm_opened = false;  // the process opened a .wasm module
  std::vector<std::string> namespaces;  // these namespaces differ from the host's
};

struct Config {
  // OTLP export; empty endpoint = embedded mode. After ApplyEnvironment these hold the
  // merged value (file < generic OTEL_* variable); otlp_endpoint also takes
  // OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, and --otlp-endpoint overwrites it last.
  std::string otlp_endpoint;
  std::string otlp_headers;           // "k=v,k2=v2"
  std::string resource_attributes;    // OTEL_RESOURCE_ATTRIBUTES syntax
  bool otlp_insecure = false;         // plaintext for a scheme-less endpoint
  std::string otlp_compression = "none";  // gzip | none
  std::string otlp_certificate;         // PEM file: CA roots (TLS)
  std::string otlp_client_certificate;  // PEM file: client certificate (mTLS)
  std::string otlp_client_key;          // PEM file: client private key (mTLS)
  uint32_t export_batch_size = 512;
  uint32_t export_queue_size = 8192;
  uint32_t export_queue_bytes = 32u << 20;  // estimated memory the queue may hold
  uint32_t export_timeout_ms = 10000;
  uint32_t export_interval_ms = 1000;
  uint32_t export_shutdown_timeout_ms = 5000;  // flush budget on SIGTERM
  uint32_t retry_max_attempts = 5;
  uint32_t retry_initial_backoff_ms = 1000;
  uint32_t retry_max_backoff_ms = 5000;
  uint32_t retry_max_server_delay_ms = 30000;  // cap on a receiver's RetryInfo delay
  std::string stats_file;  // JSON written at exit: exporter and probe counters (--stats-file)

  // Probes.
  uint32_t capture_bytes = 1024;
  uint32_t ringbuf_bytes = 8u << 20;
  uint32_t target_pid = 0;            // 0 = every process
  // Time a CLIENT span from the start of its request's first write (tcp_sendmsg_locked,
  // Linux 6.12+), at one more BPF program run per TCP send on the node.
  bool client_write_start = true;

  // Correlation limits.
  uint32_t max_connections = 65536;
  uint32_t max_pending_requests = 64;
  uint32_t idle_timeout_s = 300;
  // Link NAT'd connections (Service addresses) through the kernel's conntrack.
  bool conntrack = true;
  // Conntrack zones asked after the default one (translations made in a zone).
  std::vector<uint16_t> conntrack_zones;

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

  // Localization (daemon/locate, docs/locate.md): per-trace verdicts for slow or failed
  // traces, judged against per-workload route baselines.
  bool locate_enabled = true;
  double locate_slow_factor = 2.0;      // slow: duration > factor × the route's usual
  uint32_t locate_slow_min_ms = 5;      // ... and longer than usual by at least this
  double locate_shift_factor = 1.3;     // a route's recent median above factor × usual: shifted; 0 off
  double locate_lone_factor = 4.0;      // slow traces under factor × usual are judged when their cause repeats; 0 off
  uint32_t locate_baseline_samples = 256;
  uint32_t locate_baseline_min_samples = 20;
  uint32_t locate_hold_ms = 150;        // grace after a trace's root-most span ends
  uint32_t locate_max_wait_ms = 30000;  // a span whose local parent never comes
  uint32_t locate_max_held_spans = 65536;
  uint32_t locate_max_baselines = 8192;
  uint32_t locate_verdicts = 1024;      // recent verdicts kept for `isotrace locate`

  // Isolation-stack identity (daemon/layers): user rules run before the built-in table.
  std::vector<LayerRule> layer_rules;
  bool layer_builtin_rules = true;
  uint32_t layer_cache_entries = 8192;
};

// Reads and validates a YAML file into *cfg (keys it names override the defaults).
absl::Status LoadYamlFile(const std::string& path, Config* cfg);
absl::Status LoadYamlString(const std::string& text, Config* cfg);
// Applies the OTEL_* variables from env (injectable for tests) over what the file set:
// OTEL_EXPORTER_OTLP_{ENDPOINT,HEADERS,INSECURE,COMPRESSION,TIMEOUT,CERTIFICATE,
// CLIENT_CERTIFICATE,CLIENT_KEY}, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_BSP_{
// SCHEDULE_DELAY,MAX_QUEUE_SIZE,MAX_EXPORT_BATCH_SIZE}, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_METRIC_EXPORT_INTERVAL. Empty
// means unset (OTel spec). A malformed value fails naming the variable, the value and
// what it accepts.
absl::Status ApplyEnvironment(const std::map<std::string, std::string>& env, Config* cfg);
std::map<std::string, std::string> ProcessEnvironment();
absl::Status Validate(const Config& cfg);

// Every key the YAML file accepts, in documentation order (docs/configuration.md lists
// the same set; a unit test keeps them in step).
std::vector<std::string> KnownKeys();
// Checks one layers.rules entry: a known layer and a condition set that layer accepts.
absl::Status CheckLayerRule(const LayerRule& rule);

}  // namespace isotrace::config
