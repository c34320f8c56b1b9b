#include "daemon/config/config.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <functional>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "exporters/otlp/options.h"
#include "yaml-cpp/yaml.h"
#include "re2/re2.h"

extern char** environ;

namespace isotrace::config {

namespace {

// One table maps each YAML key to its field: validation, docs and the unknown-key check
// all read it, so a key cannot exist in one place and not another.
struct Key {
  const char* path;  // "section.key"
  std::function<absl::Status(const YAML::Node&, Config*)> set;
};

std::string Shown(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  if (n.IsMap()) return "<a mapping>";
  if (n.IsSequence()) return "<a list>";
  return "<empty>";
}

// "config key 'k': value 'v' is not valid; write <want>": every bad value says what to write.
absl::Status BadValue(const char* key, const YAML::Node& n, const char* want) {
  return absl::InvalidArgumentError(
      absl::StrCat("config key '", key, "': value '", Shown(n), "' is not valid; write ", want));
}

// A factor that 0 turns off: 0, or a number from 1.0 to 1000.
Key OffOrFactorKey(const char* path, const char* zero_means, const char* factor_means, double Config::*field) {
  return Key{path, [=](const YAML::Node& n, Config* c) {
               const std::string want = absl::StrCat(zero_means, " or a number ≥ 1.0 (", factor_means, ")");
               auto bad = BadValue(path, n, want.c_str());
               if (!n.IsScalar()) return bad;
               try {
                 double v = n.as<double>();
                 if (!(v == 0.0 || v >= 1.0) || v > 1000.0) return bad;
                 c->*field = v;
                 return absl::OkStatus();
               } catch (const YAML::Exception&) {
                 return bad;
               }
             }};
}

template <typename T>
absl::Status ReadScalar(const YAML::Node& n, const char* path, T* out) {
  // yaml-cpp would turn "-1" into 4294967295 for an unsigned field on some versions and a
  // mapping into an exception with no key; check the shape first so the message names
  // the key, the value and what to write instead.
  const char* want = std::is_same_v<T, std::string> ? "a string"
                     : std::is_same_v<T, bool>      ? "true or false"
                                                    : "a non-negative integer (at most 4294967295)";
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("config key '", path, "': value '", Shown(n), "' is not valid; write ", want));
  };
  if (!n.IsScalar()) return bad();
  if constexpr (std::is_unsigned_v<T> && !std::is_same_v<T, bool>) {
    const std::string& v = n.Scalar();
    if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) return bad();
  }
  try {
    *out = n.as<T>();
    return absl::OkStatus();
  } catch (const YAML::Exception&) {
    return bad();
  }
}

// exporter.otlp.compression: the OTel vocabulary.
absl::Status ReadCompression(const YAML::Node& n, Config* c) {
  std::string v;
  if (auto st = ReadScalar(n, "exporter.otlp.compression", &v); !st.ok()) return st;
  if (v != "gzip" && v != "none")
    return absl::InvalidArgumentError(absl::StrCat("config key 'exporter.otlp.compression': value '", v,
                                                   "' is not valid; write gzip or none"));
  c->otlp_compression = v;
  return absl::OkStatus();
}

// Endpoint and headers are parsed by the exporter's own parser now, so the file's
// mistakes are reported under the file's key names.
absl::Status ReadEndpoint(const YAML::Node& n, Config* c) {
  std::string v;
  if (auto st = ReadScalar(n, "exporter.otlp.endpoint", &v); !st.ok()) return st;
  if (!v.empty()) {
    if (auto ep = otlp::ParseEndpoint(v, true); !ep.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("config key 'exporter.otlp.endpoint': ", ep.status().message(),
                       " (e.g. http://otel-collector:4317)"));
  }
  c->otlp_endpoint = v;
  return absl::OkStatus();
}

absl::Status ReadHeaders(const YAML::Node& n, Config* c) {
  std::string v;
  if (n.IsMap()) {
    // The natural YAML form: a mapping of header → value.
    std::vector<std::string> parts;
    for (const auto& kv : n) {
      if (!kv.second.IsScalar())
        return absl::InvalidArgumentError(absl::StrCat(
            "config key 'exporter.otlp.headers.", Shown(kv.first), "' must be a string value"));
      // The joined form is percent-decoded later: escape what would split or decode.
      std::string value;
      for (char ch : kv.second.Scalar()) {
        if (ch == '%') value += "%25";
        else if (ch == ',') value += "%2C";
        else value += ch;
      }
      if (!kv.first.IsScalar())
        return absl::InvalidArgumentError("config key 'exporter.otlp.headers': a header name is not a plain name");
      parts.push_back(absl::StrCat(kv.first.Scalar(), "=", value));
    }
    v = absl::StrJoin(parts, ",");
  } else if (auto st = ReadScalar(n, "exporter.otlp.headers", &v); !st.ok()) {
    return st;
  }
  if (auto h = otlp::ParseHeaders(v); !h.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("config key 'exporter.otlp.headers': ", h.status().message(),
                     " (write a mapping, or \"key1=value1,key2=value2\")"));
  c->otlp_headers = v;
  return absl::OkStatus();
}

// TLS material: checked readable now, so a typo fails at start-up and not at the first
// export minutes later.
absl::Status CheckReadableFile(const char* key, const std::string& path) {
  if (path.empty()) return absl::OkStatus();
  if (access(path.c_str(), R_OK) != 0)
    return absl::InvalidArgumentError(absl::StrCat("config key '", key, "': file '", path,
                                                   "' cannot be read (", std::strerror(errno),
                                                   "); give the path of a PEM file"));
  return absl::OkStatus();
}

template <std::string Config::*field>
absl::Status ReadPemPath(const YAML::Node& n, const char* key, Config* c) {
  std::string v;
  if (auto st = ReadScalar(n, key, &v); !st.ok()) return st;
  if (auto st = CheckReadableFile(key, v); !st.ok()) return st;
  c->*field = v;
  return absl::OkStatus();
}

// Levenshtein distance, to suggest the key someone meant (hand-written: ten lines, and
// nothing in the dependency set offers it).
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The candidate nearest to `key` by edit distance (the first of equals): one suggestion,
// not the whole vocabulary, so the message stays one readable line.
template <typename Range>
std::string Nearest(std::string_view key, const Range& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    const std::string_view cv(c);
    if (size_t d = EditDistance(key, cv); d < best_d) best_d = d, best = std::string(cv);
  }
  return best;
}

// layers.rules: a sequence of mappings (config::LayerRule). Checked here, field by field,
// so a bad rule fails at start-up naming its index and field.
absl::Status ReadLayerRules(const YAML::Node& n, Config* c) {
  if (!n.IsSequence())
    return absl::InvalidArgumentError("config key 'layers.rules' must be a list of rules");
  static const char* kFields[] = {"layer", "name", "cgroup", "oci_state", "executable", "ancestor",
                                  "library", "wasm_import", "wasm_opened", "namespaces"};
  static const char* kNamespaces[] = {"mnt", "pid", "net", "user", "ipc", "uts", "cgroup"};
  std::vector<LayerRule> rules;
  for (size_t i = 0; i < n.size(); i++) {
    const YAML::Node& r = n[i];
    std::string at = absl::StrCat("layers.rules[", i, "]");
    if (!r.IsMap()) return absl::InvalidArgumentError(absl::StrCat("config: ", at, " must be a mapping"));
    LayerRule rule;
    for (const auto& kv : r) {
      if (!kv.first.IsScalar())
        return absl::InvalidArgumentError(absl::StrCat("config: a key of ", at, " is not a plain name"));
      std::string f = kv.first.Scalar();
      bool known = false;
      for (const char* k : kFields) known |= f == k;
      if (!known)
        return absl::InvalidArgumentError(absl::StrCat("config: unknown key '", at, ".", f,
                                                       "'; did you mean '", Nearest(f, kFields),
                                                       "'? (docs/layers.md lists a rule's keys)"));
      std::string fpath = absl::StrCat(at, ".", f);
      if (f == "namespaces") {
        if (!kv.second.IsSequence())
          return absl::InvalidArgumentError(absl::StrCat("config: ", fpath, " must be a list"));
        for (const auto& ns : kv.second) {
          std::string v;
          if (auto st = ReadScalar(ns, fpath.c_str(), &v); !st.ok()) return st;
          bool ok = false;
          for (const char* k : kNamespaces) ok |= v == k;
          if (!ok)
            return absl::InvalidArgumentError(absl::StrCat("config: ", fpath, ": '", v, "' is not one of ",
                                                           absl::StrJoin(kNamespaces, ", ")));
          rule.namespaces.push_back(v);
        }
        continue;
      }
      if (f == "wasm_opened") {
        try {
          rule.wasm_opened = kv.second.as<bool>();
        } catch (const YAML::Exception&) {
          return absl::InvalidArgumentError(absl::StrCat("config: ", fpath, " must be true or false"));
        }
        continue;
      }
      std::string v;
      if (auto st = ReadScalar(kv.second, fpath.c_str(), &v); !st.ok()) return st;
      if (f == "layer") rule.layer = v;
      else if (f == "name") rule.name = v;
      else if (f == "cgroup") rule.cgroup = v;
      else if (f == "oci_state") rule.oci_state = v;
      else if (f == "executable") rule.executable = v;
      else if (f == "ancestor") rule.ancestor = v;
      else if (f == "library") rule.library = v;
      else if (f == "wasm_import") rule.wasm_import = v;
      if (f == "cgroup" || f == "executable" || f == "ancestor" || f == "library") {
        RE2 re(v, RE2::Quiet);
        if (!re.ok())
          return absl::InvalidArgumentError(
              absl::StrCat("config: ", fpath, ": bad regular expression '", v, "': ", re.error()));
      }
    }
    if (auto st = CheckLayerRule(rule); !st.ok())
      return absl::InvalidArgumentError(absl::StrCat("config: ", at, ": ", st.message()));
    rules.push_back(std::move(rule));
  }
  c->layer_rules = std::move(rules);
  return absl::OkStatus();
}

#define ISOTRACE_KEY(path, field)                                                  \
  Key {                                                                            \
    path, [](const YAML::Node& n, Config* c) { return ReadScalar(n, path, &c->field); } \
  }

const std::vector<Key>& Keys() {
  static const std::vector<Key> kKeys = {
      Key{"exporter.otlp.endpoint", ReadEndpoint},
      Key{"exporter.otlp.headers", ReadHeaders},
      ISOTRACE_KEY("exporter.otlp.insecure", otlp_insecure),
      Key{"exporter.otlp.compression", ReadCompression},
      Key{"exporter.otlp.certificate",
          [](const YAML::Node& n, Config* c) {
            return ReadPemPath<&Config::otlp_certificate>(n, "exporter.otlp.certificate", c);
          }},
      Key{"exporter.otlp.client_certificate",
          [](const YAML::Node& n, Config* c) {
            return ReadPemPath<&Config::otlp_client_certificate>(n, "exporter.otlp.client_certificate", c);
          }},
      Key{"exporter.otlp.client_key",
          [](const YAML::Node& n, Config* c) {
            return ReadPemPath<&Config::otlp_client_key>(n, "exporter.otlp.client_key", c);
          }},
      ISOTRACE_KEY("exporter.batch_size", export_batch_size),
      ISOTRACE_KEY("exporter.queue_size", export_queue_size),
      ISOTRACE_KEY("exporter.queue_bytes", export_queue_bytes),
      ISOTRACE_KEY("exporter.timeout_ms", export_timeout_ms),
      ISOTRACE_KEY("exporter.interval_ms", export_interval_ms),
      ISOTRACE_KEY("exporter.shutdown_timeout_ms", export_shutdown_timeout_ms),
      ISOTRACE_KEY("exporter.retry.max_attempts", retry_max_attempts),
      ISOTRACE_KEY("exporter.retry.initial_backoff_ms", retry_initial_backoff_ms),
      ISOTRACE_KEY("exporter.retry.max_backoff_ms", retry_max_backoff_ms),
      ISOTRACE_KEY("exporter.retry.max_server_delay_ms", retry_max_server_delay_ms),
      ISOTRACE_KEY("resource.attributes", resource_attributes),
      ISOTRACE_KEY("probes.capture_bytes", capture_bytes),
      ISOTRACE_KEY("probes.ringbuf_bytes", ringbuf_bytes),
      ISOTRACE_KEY("probes.target_pid", target_pid),
      Key{"probes.client_write_start",
          [](const YAML::Node& n, Config* c) {
            return ReadScalar(n, "probes.client_write_start", &c->client_write_start);
          }},
      ISOTRACE_KEY("correlate.max_connections", max_connections),
      ISOTRACE_KEY("correlate.max_pending_requests", max_pending_requests),
      ISOTRACE_KEY("correlate.idle_timeout_s", idle_timeout_s),
      Key{"correlate.conntrack",
          [](const YAML::Node& n, Config* c) { return ReadScalar(n, "correlate.conntrack", &c->conntrack); }},
      Key{"correlate.conntrack_zones",
          [](const YAML::Node& n, Config* c) {
            auto bad = BadValue("correlate.conntrack_zones", n,
                                "a list of at most 16 conntrack zone ids from 1 to 65535, e.g. [7, 12] "
                                "(the default zone 0 is always asked)");
            if (!n.IsSequence() || n.size() > 16) return bad;
            std::vector<uint16_t> zones;
            for (const auto& z : n) {
              if (!z.IsScalar()) return bad;
              try {
                const int64_t v = z.as<int64_t>();
                if (v < 1 || v > 65535) return bad;
                if (std::find(zones.begin(), zones.end(), v) == zones.end()) zones.push_back(static_cast<uint16_t>(v));
              } catch (const YAML::Exception&) {
                return bad;
              }
            }
            c->conntrack_zones = std::move(zones);
            return absl::OkStatus();
          }},
      ISOTRACE_KEY("embedded.spans", embedded_spans),
      ISOTRACE_KEY("embedded.summary_interval_s", summary_interval_s),
      ISOTRACE_KEY("log.level", log_level),
      ISOTRACE_KEY("api.socket", api_socket),
      ISOTRACE_KEY("api.socket_group", api_socket_group),
      ISOTRACE_KEY("metrics.prometheus_listen", prometheus_listen),
      ISOTRACE_KEY("metrics.export_interval_ms", metrics_export_interval_ms),
      ISOTRACE_KEY("metrics.max_workloads", metrics_max_workloads),
      ISOTRACE_KEY("log.stats_file", stats_file),
      Key{"layers.rules", ReadLayerRules},
      Key{"layers.builtin_rules",
          [](const YAML::Node& n, Config* c) {
            try {
              c->layer_builtin_rules = n.as<bool>();
              return absl::OkStatus();
            } catch (const YAML::Exception&) {
              return absl::InvalidArgumentError("config key 'layers.builtin_rules' must be true or false");
            }
          }},
      ISOTRACE_KEY("layers.cache_entries", layer_cache_entries),
      Key{"locate.enabled",
          [](const YAML::Node& n, Config* c) { return ReadScalar(n, "locate.enabled", &c->locate_enabled); }},
      Key{"locate.slow_factor",
          [](const YAML::Node& n, Config* c) {
            auto bad = absl::InvalidArgumentError(absl::StrCat(
                "config key 'locate.slow_factor': value '", Shown(n),
                "' is not valid; write a number ≥ 1.0 (a trace is slow above factor × its usual duration)"));
            if (!n.IsScalar()) return bad;
            try {
              double v = n.as<double>();
              if (!(v >= 1.0) || v > 1000.0) return bad;
              c->locate_slow_factor = v;
              return absl::OkStatus();
            } catch (const YAML::Exception&) {
              return bad;
            }
          }},
      OffOrFactorKey("locate.shift_factor", "0 (off)",
                     "a route is shifted when its recent median is above factor × its usual duration",
                     &Config::locate_shift_factor),
      OffOrFactorKey("locate.lone_factor", "0 (judge every slow trace)",
                     "a slow trace under factor × its usual duration is judged only when its cause "
                     "repeats on its route",
                     &Config::locate_lone_factor),
      ISOTRACE_KEY("locate.slow_min_ms", locate_slow_min_ms),
      ISOTRACE_KEY("locate.baseline_samples", locate_baseline_samples),
      ISOTRACE_KEY("locate.baseline_min_samples", locate_baseline_min_samples),
      ISOTRACE_KEY("locate.hold_ms", locate_hold_ms),
      ISOTRACE_KEY("locate.max_wait_ms", locate_max_wait_ms),
      ISOTRACE_KEY("locate.max_held_spans", locate_max_held_spans),
      ISOTRACE_KEY("locate.max_baselines", locate_max_baselines),
      ISOTRACE_KEY("locate.verdicts", locate_verdicts),
  };
  return kKeys;
}
#undef ISOTRACE_KEY

absl::Status Walk(const YAML::Node& node, const std::string& prefix, Config* cfg) {
  if (!node.IsMap())
    return absl::InvalidArgumentError(absl::StrCat("config: '", prefix.empty() ? "<top level>" : prefix,
                                                   "' must be a mapping of keys, got '", Shown(node),
                                                   "'"));
  std::vector<std::string> seen;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar())
      return absl::InvalidArgumentError(absl::StrCat("config: a key under '", prefix.empty() ? "<top level>" : prefix,
                                                     "' is not a plain name"));
    std::string key = kv.first.as<std::string>();
    std::string path = prefix.empty() ? key : absl::StrCat(prefix, ".", key);
    // YAML lets a later duplicate silently win; in a config file that is almost always a
    // merge mistake, so name it.
    if (std::find(seen.begin(), seen.end(), key) != seen.end())
      return absl::InvalidArgumentError(
          absl::StrCat("config: key '", path, "' appears twice; keep one"));
    seen.push_back(key);
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
      // Suggest the one nearest known name: a key, or a section ("exportr" → "exporter").
      std::vector<std::string> names;
      for (const auto& k : Keys()) {
        std::string_view kp(k.path);
        for (size_t dot = kp.find('.'); dot != std::string_view::npos; dot = kp.find('.', dot + 1))
          names.push_back(std::string(kp.substr(0, dot)));
        names.push_back(std::string(kp));
      }
      return absl::InvalidArgumentError(absl::StrCat("config: unknown key '", path, "'; did you mean '",
                                                     Nearest(path, names),
                                                     "'? (docs/configuration.md lists every key)"));
    }
  }
  return absl::OkStatus();
}

// Every reader above checks a node's shape before converting it; this catch is the
// backstop, so a shape nobody thought of is still a message and never a crash.
absl::Status WalkRoot(const YAML::Node& root, Config* cfg) {
  try {
    return Walk(root, "", cfg);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: unexpected structure: ", e.what()));
  }
}

}  // namespace

absl::Status CheckLayerRule(const LayerRule& r) {
  bool container = r.layer == "container", sandbox = r.layer == "sandbox", wasm = r.layer == "wasm";
  if (!container && !sandbox && !wasm)
    return absl::InvalidArgumentError(
        absl::StrCat("layer '", r.layer, "' is not one of container, sandbox, wasm"));
  bool process_cond = !r.executable.empty() || !r.ancestor.empty();
  if (container) {
    if (!r.library.empty() || !r.wasm_import.empty() || r.wasm_opened || !r.namespaces.empty())
      return absl::InvalidArgumentError(
          "a container rule takes only cgroup, oci_state, executable and ancestor");
    int kinds = !r.cgroup.empty() + !r.oci_state.empty() + process_cond;
    if (kinds != 1)
      return absl::InvalidArgumentError(
          "a container rule needs exactly one of: cgroup, oci_state, executable/ancestor");
    if (r.name.empty() && r.cgroup.empty())
      return absl::InvalidArgumentError("a container rule without a cgroup pattern needs a name");
    if (!r.oci_state.empty() && r.oci_state[0] != '/')
      return absl::InvalidArgumentError("oci_state must be an absolute path (glob)");
    return absl::OkStatus();
  }
  if (r.name.empty()) return absl::InvalidArgumentError("the rule needs a name");
  if (!r.cgroup.empty() || !r.oci_state.empty())
    return absl::InvalidArgumentError("cgroup and oci_state are for container rules");
  if (sandbox) {
    if (!r.library.empty() || !r.wasm_import.empty() || r.wasm_opened)
      return absl::InvalidArgumentError("a sandbox rule takes executable, ancestor and namespaces");
    if (!process_cond)
      return absl::InvalidArgumentError("a sandbox rule needs an executable or an ancestor");
    return absl::OkStatus();
  }
  if (!r.namespaces.empty()) return absl::InvalidArgumentError("namespaces is for sandbox rules");
  if (!process_cond && r.library.empty() && r.wasm_import.empty() && !r.wasm_opened)
    return absl::InvalidArgumentError(
        "a wasm rule needs at least one of executable, ancestor, library, wasm_import, wasm_opened");
  return absl::OkStatus();
}

absl::Status LoadYamlString(const std::string& text, Config* cfg) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: YAML syntax error: ", e.what()));
  }
  if (root.IsNull()) return absl::OkStatus();
  return WalkRoot(root, cfg);
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
  return WalkRoot(root, cfg);
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

absl::Status ApplyEnvironment(const std::map<std::string, std::string>& env, Config* cfg) {
  auto get = [&](const char* k) -> const std::string* {
    auto it = env.find(k);
    return it == env.end() || it->second.empty() ? nullptr : &it->second;
  };
  auto bad = [](const char* var, const std::string& v, const char* want) {
    return absl::InvalidArgumentError(
        absl::StrCat("environment ", var, "='", v, "' is not valid; ", want));
  };
  auto number = [&](const char* var, uint32_t* out) -> absl::Status {
    const std::string* v = get(var);
    if (!v) return absl::OkStatus();
    if (v->find_first_not_of("0123456789") != std::string::npos || v->size() > 10 ||
        std::stoull(*v) > UINT32_MAX)
      return bad(var, *v, "write a non-negative integer");
    *out = static_cast<uint32_t>(std::stoull(*v));
    return absl::OkStatus();
  };
  auto pem = [&](const char* var, std::string* out) -> absl::Status {
    const std::string* v = get(var);
    if (!v) return absl::OkStatus();
    if (access(v->c_str(), R_OK) != 0)
      return bad(var, *v, "the file cannot be read; give the path of a PEM file");
    *out = *v;
    return absl::OkStatus();
  };
  if (auto* v = get("OTEL_EXPORTER_OTLP_PROTOCOL"); v && *v != "grpc")
    return bad("OTEL_EXPORTER_OTLP_PROTOCOL", *v,
               "isotrace exports OTLP over gRPC only; set it to grpc or unset it");
  // The traces-specific endpoint wins; both are checked here, under the variable's name,
  // so a value that is no endpoint fails --validate-config and the start, not the first
  // export.
  bool endpoint_set = false;
  for (const char* var : {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"}) {
    const std::string* v = get(var);
    if (!v) continue;
    if (auto ep = otlp::ParseEndpoint(*v, true); !ep.ok())
      return absl::InvalidArgumentError(absl::StrCat("environment ", var, ": ", ep.status().message()));
    if (!endpoint_set) cfg->otlp_endpoint = *v;
    endpoint_set = true;
  }
  if (auto* v = get("OTEL_EXPORTER_OTLP_HEADERS")) cfg->otlp_headers = *v;
  if (auto* v = get("OTEL_RESOURCE_ATTRIBUTES")) cfg->resource_attributes = *v;
  if (auto* v = get("OTEL_EXPORTER_OTLP_INSECURE")) {
    if (absl::EqualsIgnoreCase(*v, "true")) cfg->otlp_insecure = true;
    else if (absl::EqualsIgnoreCase(*v, "false")) cfg->otlp_insecure = false;
    else return bad("OTEL_EXPORTER_OTLP_INSECURE", *v, "write true or false");
  }
  if (auto* v = get("OTEL_EXPORTER_OTLP_COMPRESSION")) {
    if (*v != "gzip" && *v != "none") return bad("OTEL_EXPORTER_OTLP_COMPRESSION", *v, "write gzip or none");
    cfg->otlp_compression = *v;
  }
  for (auto st : {number("OTEL_EXPORTER_OTLP_TIMEOUT", &cfg->export_timeout_ms),
                  number("OTEL_BSP_SCHEDULE_DELAY", &cfg->export_interval_ms),
                  number("OTEL_BSP_MAX_QUEUE_SIZE", &cfg->export_queue_size),
                  number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &cfg->export_batch_size),
                  number("OTEL_METRIC_EXPORT_INTERVAL", &cfg->metrics_export_interval_ms),
                  pem("OTEL_EXPORTER_OTLP_CERTIFICATE", &cfg->otlp_certificate),
                  pem("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &cfg->otlp_client_certificate),
                  pem("OTEL_EXPORTER_OTLP_CLIENT_KEY", &cfg->otlp_client_key)}) {
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

std::vector<std::string> KnownKeys() {
  std::vector<std::string> out;
  for (const auto& k : Keys()) out.push_back(k.path);
  return out;
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
  if (cfg.export_queue_bytes < 65536)
    return absl::InvalidArgumentError(absl::StrCat(
        "exporter.queue_bytes = ", cfg.export_queue_bytes,
        " is too small to hold a batch; use at least 65536 (default 33554432)"));
  if (cfg.export_timeout_ms == 0)
    return absl::InvalidArgumentError(
        "exporter.timeout_ms (OTEL_EXPORTER_OTLP_TIMEOUT) = 0: the per-call deadline must be > 0 "
        "ms (default 10000)");
  if (cfg.export_interval_ms == 0)
    return absl::InvalidArgumentError(
        "exporter.interval_ms (OTEL_BSP_SCHEDULE_DELAY) = 0: a batch needs a delay > 0 ms "
        "(default 1000)");
  if (cfg.retry_max_attempts == 0)
    return absl::InvalidArgumentError(
        "exporter.retry.max_attempts = 0: counts the first attempt too; use 1 for no retries");
  if (cfg.retry_initial_backoff_ms == 0 || cfg.retry_max_backoff_ms < cfg.retry_initial_backoff_ms)
    return absl::InvalidArgumentError(absl::StrCat(
        "exporter.retry.initial_backoff_ms (", cfg.retry_initial_backoff_ms,
        ") must be > 0 and ≤ exporter.retry.max_backoff_ms (", cfg.retry_max_backoff_ms, ")"));
  if (cfg.otlp_client_certificate.empty() != cfg.otlp_client_key.empty())
    return absl::InvalidArgumentError(
        "exporter.otlp.client_certificate and exporter.otlp.client_key (or "
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE/_CLIENT_KEY) must be set together for mTLS");
  if (cfg.locate_baseline_samples == 0 || cfg.locate_baseline_min_samples == 0 ||
      cfg.locate_baseline_min_samples > cfg.locate_baseline_samples)
    return absl::InvalidArgumentError(absl::StrCat(
        "locate.baseline_min_samples (", cfg.locate_baseline_min_samples,
        ") must be > 0 and ≤ locate.baseline_samples (", cfg.locate_baseline_samples, ")"));
  if (cfg.locate_hold_ms > 2000)
    return absl::InvalidArgumentError(absl::StrCat(
        "locate.hold_ms = ", cfg.locate_hold_ms,
        " would delay every verdict past 2 s; use at most 2000 (default 150)"));
  if (cfg.locate_max_held_spans == 0 || cfg.locate_max_baselines == 0 || cfg.locate_verdicts == 0)
    return absl::InvalidArgumentError(
        "locate.max_held_spans, locate.max_baselines and locate.verdicts must be > 0");
  if (cfg.locate_max_wait_ms < cfg.locate_hold_ms)
    return absl::InvalidArgumentError(absl::StrCat("locate.max_wait_ms (", cfg.locate_max_wait_ms,
                                                   ") must be ≥ locate.hold_ms (", cfg.locate_hold_ms, ")"));
  if (cfg.embedded_spans == 0)
    return absl::InvalidArgumentError("embedded.spans = 0: keep at least 1 span (default 4096)");
  if (cfg.layer_cache_entries == 0)
    return absl::InvalidArgumentError("layers.cache_entries must be > 0");
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
