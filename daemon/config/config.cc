#include "daemon/config/config.h"

#include <unistd.h>

#include <functional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "yaml-cpp/yaml.h"

extern char** environ;

namespace isotrace::config {

namespace {

// One table maps each YAML key to its field: validation, docs and the unknown-key check
// all read it, so a key cannot exist in one place and not another.
struct Key {
  const char* path;  // "section.key"
  std::function<absl::Status(const YAML::Node&, Config*)> set;
};

template <typename T>
absl::Status ReadScalar(const YAML::Node& n, const char* path, T* out) {
  try {
    *out = n.as<T>();
    return absl::OkStatus();
  } catch (const YAML::Exception&) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key '", path, "': value '", n.IsScalar() ? n.Scalar() : "<not a scalar>",
                     "' is not a valid ", std::is_same_v<T, std::string> ? "string" : "non-negative integer"));
  }
}

#define ISOTRACE_KEY(path, field)                                                  \
  Key {                                                                            \
    path, [](const YAML::Node& n, Config* c) { return ReadScalar(n, path, &c->field); } \
  }

const std::vector<Key>& Keys() {
  static const std::vector<Key> kKeys = {
      ISOTRACE_KEY("exporter.otlp.endpoint", otlp_endpoint),
      ISOTRACE_KEY("exporter.otlp.headers", otlp_headers),
      ISOTRACE_KEY("exporter.batch_size", export_batch_size),
      ISOTRACE_KEY("exporter.queue_size", export_queue_size),
      ISOTRACE_KEY("exporter.timeout_ms", export_timeout_ms),
      ISOTRACE_KEY("exporter.interval_ms", export_interval_ms),
      ISOTRACE_KEY("resource.attributes", resource_attributes),
      ISOTRACE_KEY("probes.capture_bytes", capture_bytes),
      ISOTRACE_KEY("probes.ringbuf_bytes", ringbuf_bytes),
      ISOTRACE_KEY("probes.target_pid", target_pid),
      ISOTRACE_KEY("correlate.max_connections", max_connections),
      ISOTRACE_KEY("correlate.max_pending_requests", max_pending_requests),
      ISOTRACE_KEY("correlate.idle_timeout_s", idle_timeout_s),
      ISOTRACE_KEY("embedded.spans", embedded_spans),
      ISOTRACE_KEY("embedded.summary_interval_s", summary_interval_s),
      ISOTRACE_KEY("log.level", log_level),
      ISOTRACE_KEY("api.socket", api_socket),
      ISOTRACE_KEY("api.socket_group", api_socket_group),
      ISOTRACE_KEY("metrics.prometheus_listen", prometheus_listen),
      ISOTRACE_KEY("metrics.export_interval_ms", metrics_export_interval_ms),
      ISOTRACE_KEY("metrics.max_workloads", metrics_max_workloads),
  };
  return kKeys;
}
#undef ISOTRACE_KEY

absl::Status Walk(const YAML::Node& node, const std::string& prefix, Config* cfg) {
  if (!node.IsMap())
    return absl::InvalidArgumentError(absl::StrCat("config: '", prefix.empty() ? "<top level>" : prefix,
                                                   "' must be a mapping"));
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>();
    std::string path = prefix.empty() ? key : absl::StrCat(prefix, ".", key);
    const Key* match = nullptr;
    bool is_section = false;
    for (const auto& k : Keys()) {
      if (path == k.path) match = &k;
      if (std::string_view(k.path).rfind(path + ".", 0) == 0) is_section = true;
    }
    if (match) {
      if (auto st = match->set(kv.second, cfg); !st.ok()) return st;
    } else if (is_section) {
      if (auto st = Walk(kv.second, path, cfg); !st.ok()) return st;
    } else {
      std::vector<std::string> known;
      for (const auto& k : Keys()) known.push_back(k.path);
      return absl::InvalidArgumentError(absl::StrCat("config: unknown key '", path,
                                                     "'; known keys: ", absl::StrJoin(known, ", ")));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LoadYamlString(const std::string& text, Config* cfg) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: YAML syntax error: ", e.what()));
  }
  if (root.IsNull()) return absl::OkStatus();
  return Walk(root, "", cfg);
}

absl::Status LoadYamlFile(const std::string& path, Config* cfg) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(absl::StrCat("config: cannot read '", path, "'"));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", path, ": ", e.what()));
  }
  if (root.IsNull()) return absl::OkStatus();
  return Walk(root, "", cfg);
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; e++) {
    std::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string_view::npos && kv.rfind("OTEL_", 0) == 0)
      env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

void ApplyEnvironment(const std::map<std::string, std::string>& env, Config* cfg) {
  auto get = [&](const char* k) -> const std::string* {
    auto it = env.find(k);
    return it == env.end() || it->second.empty() ? nullptr : &it->second;
  };
  if (auto* v = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) cfg->otlp_endpoint = *v;
  else if (auto* v2 = get("OTEL_EXPORTER_OTLP_ENDPOINT")) cfg->otlp_endpoint = *v2;
  if (auto* v = get("OTEL_EXPORTER_OTLP_HEADERS")) cfg->otlp_headers = *v;
  if (auto* v = get("OTEL_RESOURCE_ATTRIBUTES")) cfg->resource_attributes = *v;
}

absl::Status Validate(const Config& cfg) {
  if (cfg.capture_bytes > 4096)
    return absl::InvalidArgumentError(absl::StrCat(
        "probes.capture_bytes = ", cfg.capture_bytes, " is above the maximum 4096; lower it"));
  if (cfg.ringbuf_bytes < 4096 || (cfg.ringbuf_bytes & (cfg.ringbuf_bytes - 1)))
    return absl::InvalidArgumentError(absl::StrCat(
        "probes.ringbuf_bytes = ", cfg.ringbuf_bytes, " must be a power of two ≥ 4096 (e.g. 8388608)"));
  if (cfg.export_batch_size == 0 || cfg.export_queue_size < cfg.export_batch_size)
    return absl::InvalidArgumentError(absl::StrCat(
        "exporter.queue_size (", cfg.export_queue_size, ") must be ≥ exporter.batch_size (",
        cfg.export_batch_size, ") and both > 0"));
  if (cfg.max_connections == 0 || cfg.max_pending_requests == 0)
    return absl::InvalidArgumentError(
        "correlate.max_connections and correlate.max_pending_requests must be > 0");
  if (cfg.metrics_export_interval_ms == 0)
    return absl::InvalidArgumentError(
        "metrics.export_interval_ms (OTEL_METRIC_EXPORT_INTERVAL) = 0: use an interval > 0 ms "
        "(default 60000)");
  if (cfg.metrics_max_workloads == 0)
    return absl::InvalidArgumentError("metrics.max_workloads must be > 0 (default 1000)");
  static const char* kLevels[] = {"trace", "debug", "info", "warn", "error", "off"};
  bool ok_level = false;
  for (const char* l : kLevels) ok_level |= cfg.log_level == l;
  if (!ok_level)
    return absl::InvalidArgumentError(absl::StrCat("log.level = '", cfg.log_level,
                                                   "': use one of trace, debug, info, warn, error, off"));
  return absl::OkStatus();
}

}  // namespace isotrace::config
