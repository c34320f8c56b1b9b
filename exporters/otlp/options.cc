#include "exporters/otlp/options.h"

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

#include "exporters/otlp/str_util.h"

extern char** environ;

namespace isotrace::otlp {
namespace {

constexpr int kDefaultPort = 4317;
constexpr int kDefaultTlsPort = 443;

std::optional<std::string_view> Get(const EnvMap& env, const std::string& name) {
  auto it = env.find(name);
  if (it == env.end()) return std::nullopt;
  std::string_view v = str::Trim(it->second);
  if (v.empty()) return std::nullopt;  // the spec treats empty as unset
  return v;
}

// The signal-specific variable when set, else the generic one; `used` names the winner
// for error messages.
// With `specific_only`, the generic one is not looked at (its value is already in the
// options the caller passes).
std::optional<std::string_view> GetOtlp(const EnvMap& env, Signal signal, std::string_view suffix,
                                        std::string* used, bool specific_only = false) {
  std::string specific =
      str::Cat("OTEL_EXPORTER_OTLP_", str::ToUpper(SignalName(signal)), "_", suffix);
  if (auto v = Get(env, specific)) {
    *used = specific;
    return v;
  }
  if (specific_only) return std::nullopt;
  std::string generic = str::Cat("OTEL_EXPORTER_OTLP_", suffix);
  *used = generic;
  return Get(env, generic);
}

absl::Status Bad(std::string_view var, std::string_view value, std::string_view what) {
  return absl::InvalidArgumentError(str::Cat(var, "=\"", value, "\" is not valid: ", what));
}

absl::StatusOr<bool> ParseBool(std::string_view var, std::string_view v) {
  if (str::EqualsIgnoreCase(v, "true")) return true;
  if (str::EqualsIgnoreCase(v, "false")) return false;
  return Bad(var, v, "expected true or false");
}

absl::StatusOr<int64_t> ParseNonNegative(std::string_view var, std::string_view v) {
  auto n = str::ParseInt<int64_t>(v);
  if (!n || *n < 0) return Bad(var, v, "expected a non-negative integer");
  return *n;
}

}  // namespace

absl::StatusOr<std::string> ReadPemFile(std::string_view var, std::string_view path) {
  std::ifstream in{std::string(path), std::ios::binary};
  if (!in) return Bad(var, path, "cannot open the file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) return Bad(var, path, "cannot read the file");
  return ss.str();
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = HexValue(s[i + 1]), lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

bool ValidHeaderKey(std::string_view k) {
  // gRPC metadata keys: lower-case letters, digits, '-', '_', '.'; not starting with ':'
  // and not "grpc-" (reserved for the library).
  if (k.empty() || k.starts_with("grpc-")) return false;
  for (char c : k) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

bool ValidHeaderValue(std::string_view v) {
  // Printable ASCII only (binary values need "-bin" keys, which we do not offer).
  for (char c : v) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

std::string_view SignalName(Signal s) {
  switch (s) {
    case Signal::kTraces:
      return "traces";
    case Signal::kLogs:
      return "logs";
    case Signal::kMetrics:
      return "metrics";
  }
  return "traces";
}

absl::StatusOr<Endpoint> ParseEndpoint(std::string_view value, bool insecure_without_scheme) {
  std::string_view v = str::Trim(value);
  if (v.empty()) return absl::InvalidArgumentError("OTLP endpoint is empty");

  if (v.starts_with("unix:")) {
    // gRPC understands "unix:/path" and "unix:///path" itself.
    if (v.size() <= 5) return absl::InvalidArgumentError("OTLP endpoint \"unix:\" has no path");
    return Endpoint{std::string(v), true, "unix"};
  }

  Endpoint ep;
  int default_port = kDefaultPort;
  std::string_view rest = v;
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
    ep.insecure = true;
    ep.scheme = "http";
  } else if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
    ep.insecure = false;
    ep.scheme = "https";
    default_port = kDefaultTlsPort;
  } else if (size_t p = rest.find("://"); p != std::string_view::npos) {
    return absl::InvalidArgumentError(str::Cat("OTLP endpoint \"", v, "\" has scheme \"",
                                               rest.substr(0, p),
                                               "\"; use http:// (plaintext) or https:// (TLS)"));
  } else {
    ep.insecure = insecure_without_scheme;
  }

  // authority[/path]
  std::string_view authority = rest;
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    authority = rest.substr(0, slash);
    std::string_view path = rest.substr(slash);
    if (path != "/") {
      return absl::InvalidArgumentError(
          str::Cat("OTLP endpoint \"", v, "\" has path \"", path,
                   "\"; OTLP/gRPC takes only scheme://host:port (a /v1/traces path is OTLP/HTTP)"));
    }
  }
  if (authority.find('@') != std::string_view::npos) {
    return absl::InvalidArgumentError(str::Cat("OTLP endpoint \"", v,
                                               "\" carries user info; pass credentials in "
                                               "OTEL_EXPORTER_OTLP_HEADERS instead"));
  }
  if (authority.empty()) {
    return absl::InvalidArgumentError(str::Cat("OTLP endpoint \"", v, "\" has no host"));
  }

  std::string_view host = authority;
  std::string_view port;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(
          str::Cat("OTLP endpoint \"", v, "\" has an unterminated IPv6 address"));
    }
    host = authority.substr(0, close + 1);  // keep the brackets: gRPC wants them
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return absl::InvalidArgumentError(
            str::Cat("OTLP endpoint \"", v, "\" has junk after the IPv6 address"));
      }
      port = after.substr(1);
    }
  } else if (size_t colon = authority.find(':'); colon != std::string_view::npos) {
    if (authority.find(':', colon + 1) != std::string_view::npos) {
      return absl::InvalidArgumentError(str::Cat(
          "OTLP endpoint \"", v, "\" looks like a bare IPv6 address; write it as [addr]:port"));
    }
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty() || host == "[]") {
    return absl::InvalidArgumentError(str::Cat("OTLP endpoint \"", v, "\" has no host"));
  }
  // A host name (letters, digits, '-', '.', and '_' as container names use it), an IPv4
  // address, or a bracketed IPv6 address (hex, ':', '.', a %zone). Anything else (a
  // space, a comma, a quote) is a value that is not an endpoint at all, e.g. "not a url",
  // which gRPC would only reject at the first export.
  const bool bracketed = host.front() == '[';
  for (char c : bracketed ? host.substr(1, host.size() - 2) : host) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    const bool ok = alnum || c == '.' || (bracketed ? (c == ':' || c == '%') : (c == '-' || c == '_'));
    if (!ok) {
      return absl::InvalidArgumentError(str::Cat(
          "OTLP endpoint \"", v, "\" is not an endpoint: host \"", host,
          "\" is not a host name or IP address; write scheme://host:port, e.g. "
          "http://otel-collector:4317"));
    }
  }
  int port_num = default_port;
  if (!port.empty() || authority.back() == ':') {
    auto parsed = str::ParseInt<int>(port);
    if (parsed) port_num = *parsed;
    if (!parsed || port_num <= 0 || port_num > 65535) {
      return absl::InvalidArgumentError(
          str::Cat("OTLP endpoint \"", v, "\" has an invalid port \"", port, "\""));
    }
  }
  ep.target = str::Cat(host, ":", port_num);
  return ep;
}

absl::StatusOr<Headers> ParseHeaders(std::string_view value) {
  Headers out;
  std::string_view rest = value;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = str::Trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (item.empty()) continue;  // tolerate "a=b," and ",,"
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return absl::InvalidArgumentError(
          str::Cat("OTLP header \"", item, "\" has no '='; expected key=value"));
    }
    std::string key = str::ToLower(str::Trim(item.substr(0, eq)));
    auto decoded = PercentDecode(str::Trim(item.substr(eq + 1)));
    if (!decoded) {
      return absl::InvalidArgumentError(
          str::Cat("OTLP header \"", key, "\" has a malformed %-escape in its value"));
    }
    if (!ValidHeaderKey(key)) {
      return absl::InvalidArgumentError(str::Cat("OTLP header key \"", key,
                                                 "\" is not a valid gRPC metadata key "
                                                 "(letters, digits, '-', '_', '.'; not grpc-*)"));
    }
    if (!ValidHeaderValue(*decoded)) {
      return absl::InvalidArgumentError(
          str::Cat("OTLP header \"", key, "\" has a value with non-printable characters"));
    }
    out.emplace_back(std::move(key), std::move(*decoded));
  }
  return out;
}

EnvMap ProcessEnv() {
  EnvMap env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    if (!kv.starts_with("OTEL_")) continue;
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

namespace {

// The OTLP variables of one signal onto `o`: the signal-specific ones, and with
// `specific_only` false the generic ones under them. `insecure` is what a scheme-less
// endpoint means when no INSECURE variable says otherwise.
absl::Status ApplyOtlpVars(const EnvMap& env, Signal signal, bool specific_only,
                           bool read_endpoint, bool insecure, ExporterOptions* out) {
  ExporterOptions& o = *out;
  std::string var;
  if (!specific_only) {
    if (auto v = Get(env, "OTEL_EXPORTER_OTLP_PROTOCOL"); v && *v != "grpc") {
      return Bad("OTEL_EXPORTER_OTLP_PROTOCOL", *v,
                 "isotrace exports OTLP over gRPC only; "
                 "set it to grpc or unset it");
    }
  }
  std::string proto_var =
      str::Cat("OTEL_EXPORTER_OTLP_", str::ToUpper(SignalName(signal)), "_PROTOCOL");
  if (auto v = Get(env, proto_var); v && *v != "grpc") {
    return Bad(proto_var, *v, "isotrace exports OTLP over gRPC only; set it to grpc or unset it");
  }

  if (auto v = GetOtlp(env, signal, "INSECURE", &var, specific_only)) {
    auto b = ParseBool(var, *v);
    if (!b.ok()) return b.status();
    insecure = *b;
  }
  if (auto v = read_endpoint ? GetOtlp(env, signal, "ENDPOINT", &var, specific_only) : std::nullopt) {
    auto ep = ParseEndpoint(*v, insecure);
    if (!ep.ok()) return absl::InvalidArgumentError(str::Cat(var, ": ", ep.status().message()));
    o.endpoint = *ep;
    o.endpoint_configured = true;
  }

  if (auto v = GetOtlp(env, signal, "HEADERS", &var, specific_only)) {
    auto h = ParseHeaders(*v);
    if (!h.ok()) return absl::InvalidArgumentError(str::Cat(var, ": ", h.status().message()));
    o.headers = *std::move(h);
  }
  if (auto v = GetOtlp(env, signal, "TIMEOUT", &var, specific_only)) {
    auto ms = ParseNonNegative(var, *v);
    if (!ms.ok()) return ms.status();
    if (*ms == 0) return Bad(var, *v, "the export timeout must be > 0 ms");
    o.timeout = absl::Milliseconds(*ms);
  }
  if (auto v = GetOtlp(env, signal, "COMPRESSION", &var, specific_only)) {
    if (*v == "gzip") {
      o.gzip = true;
    } else if (*v != "none") {
      return Bad(var, *v, "expected gzip or none");
    }
  }
  if (auto v = GetOtlp(env, signal, "CERTIFICATE", &var, specific_only)) {
    auto pem = ReadPemFile(var, *v);
    if (!pem.ok()) return pem.status();
    o.root_certs_pem = *std::move(pem);
  }
  if (auto v = GetOtlp(env, signal, "CLIENT_CERTIFICATE", &var, specific_only)) {
    auto pem = ReadPemFile(var, *v);
    if (!pem.ok()) return pem.status();
    o.client_cert_pem = *std::move(pem);
  }
  if (auto v = GetOtlp(env, signal, "CLIENT_KEY", &var, specific_only)) {
    auto pem = ReadPemFile(var, *v);
    if (!pem.ok()) return pem.status();
    o.client_key_pem = *std::move(pem);
  }
  if (o.client_cert_pem.empty() != o.client_key_pem.empty()) {
    return absl::InvalidArgumentError(
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY must be set "
        "together");
  }

  return absl::OkStatus();
}

}  // namespace

absl::Status ApplySignalEnv(const EnvMap& env, Signal signal, bool read_endpoint,
                            bool insecure_without_scheme, ExporterOptions* o) {
  return ApplyOtlpVars(env, signal, /*specific_only=*/true, read_endpoint,
                       insecure_without_scheme, o);
}

absl::StatusOr<ExporterOptions> OptionsFromEnv(const EnvMap& env, Signal signal) {
  ExporterOptions o;
  if (auto st = ApplyOtlpVars(env, signal, /*specific_only=*/false, /*read_endpoint=*/true,
                              /*insecure=*/false, &o);
      !st.ok())
    return st;
  // Batching: the batch span processor's variables for traces, the batch log record
  // processor's for logs.
  const char* prefix = signal == Signal::kLogs ? "OTEL_BLRP_" : "OTEL_BSP_";
  auto batch_var = [&](std::string_view name) -> absl::StatusOr<std::optional<int64_t>> {
    std::string full = str::Cat(prefix, name);
    auto v = Get(env, full);
    if (!v) return std::optional<int64_t>();
    auto n = ParseNonNegative(full, *v);
    if (!n.ok()) return n.status();
    return std::optional<int64_t>(*n);
  };
  auto delay = batch_var("SCHEDULE_DELAY");
  if (!delay.ok()) return delay.status();
  if (*delay) o.batch_timeout = absl::Milliseconds(**delay);
  auto queue = batch_var("MAX_QUEUE_SIZE");
  if (!queue.ok()) return queue.status();
  if (*queue) {
    if (**queue == 0) return Bad(str::Cat(prefix, "MAX_QUEUE_SIZE"), "0", "must be > 0");
    o.max_queue_size = static_cast<size_t>(**queue);
  }
  auto batch = batch_var("MAX_EXPORT_BATCH_SIZE");
  if (!batch.ok()) return batch.status();
  if (*batch) {
    if (**batch == 0) {
      return Bad(str::Cat(prefix, "MAX_EXPORT_BATCH_SIZE"), "0", "must be > 0");
    }
    o.max_batch_size = static_cast<size_t>(**batch);
  }
  // The spec: a batch larger than the queue is clamped to the queue.
  o.max_batch_size = std::min(o.max_batch_size, o.max_queue_size);
  return o;
}

}  // namespace isotrace::otlp
