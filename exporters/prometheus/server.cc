#include "exporters/prometheus/server.h"

#include <arpa/inet.h>
#include <microhttpd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace isotrace::prometheus {

namespace {

constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr const char* kIndex =
    "isotrace: Prometheus metrics are at /metrics (text format 0.0.4)\n";
// A scraper needs one connection; a few more cover overlapping scrapes and curl. The
// limits keep a connection flood from growing the daemon.
constexpr unsigned kMaxConnections = 16;
constexpr unsigned kConnectionTimeoutS = 10;

void LogFromMhd(void*, const char* fmt, va_list ap) {
  char buf[512];
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  size_t n = std::strlen(buf);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
  spdlog::warn("prometheus endpoint: {}", buf);
}

MHD_Result Reply(MHD_Connection* c, unsigned status, const std::string& body,
                 const char* content_type, bool head) {
  MHD_Response* r = MHD_create_response_from_buffer(head ? 0 : body.size(),
                                                    const_cast<char*>(body.data()),
                                                    MHD_RESPMEM_MUST_COPY);
  if (r == nullptr) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

MHD_Result Handle(void* cls, MHD_Connection* connection, const char* url, const char* method,
                  const char*, const char*, size_t* upload_data_size, void**) {
  auto* self = static_cast<MetricsServer*>(cls);
  const bool head = std::strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
  if (std::strcmp(method, MHD_HTTP_METHOD_GET) != 0 && !head) {
    if (*upload_data_size != 0) {
      *upload_data_size = 0;  // discard a body; answer once it is read
      return MHD_YES;
    }
    return Reply(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n", "text/plain", false);
  }
  std::string_view path(url);
  if (path == "/metrics") return Reply(connection, MHD_HTTP_OK, self->Scrape(), kContentType, head);
  if (path == "/") return Reply(connection, MHD_HTTP_OK, kIndex, "text/plain; charset=utf-8", head);
  // Liveness/readiness for the DaemonSet (deploy/): this server starts only after the
  // probes attached, so answering at all means the daemon is up and tracing.
  if (path == "/healthz") return Reply(connection, MHD_HTTP_OK, "ok\n", "text/plain", head);
  return Reply(connection, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n", "text/plain", head);
}

bool IsLoopback(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
  }
  return false;
}

}  // namespace

std::string ListenAddress::ToString() const {
  bool v6 = addr.ss_family == AF_INET6;
  return absl::StrCat(v6 ? "[" : "", host, v6 ? "]" : "", ":", port);
}

absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view value) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prometheus listen address '", std::string(value), "': ", std::string(why),
        " (write host:port, e.g. 127.0.0.1:9464 or [::1]:9464; an empty value turns it off)"));
  };
  std::string_view host, port;
  if (value.starts_with("[")) {
    size_t close = value.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 address");
    host = value.substr(1, close - 1);
    if (close + 1 >= value.size() || value[close + 1] != ':') return bad("no port");
    port = value.substr(close + 2);
  } else {
    size_t colon = value.rfind(':');
    if (colon == std::string_view::npos) return bad("no port");
    host = value.substr(0, colon);
    port = value.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("write an IPv6 address in brackets");
  }
  uint32_t port_num = 0;
  if (!absl::SimpleAtoi(absl::string_view(port.data(), port.size()), &port_num) || port_num > 65535)
    return bad("bad port");
  ListenAddress out;
  out.port = static_cast<uint16_t>(port_num);
  if (host.empty()) host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";
  out.host = std::string(host);
  auto* in = reinterpret_cast<sockaddr_in*>(&out.addr);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.addr);
  if (inet_pton(AF_INET, out.host.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(out.port);
    out.addr_len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, out.host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(out.port);
    out.addr_len = sizeof(sockaddr_in6);
  } else {
    return bad("the host is not an IP address (or localhost)");
  }
  out.loopback = IsLoopback(out.addr);
  return out;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const ListenAddress& address,
                                                                    Render render) {
  std::unique_ptr<MetricsServer> s(new MetricsServer(std::move(render)));
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
  if (address.addr.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  errno = 0;
  s->daemon_ = MHD_start_daemon(
      flags, address.port, nullptr, nullptr, &Handle, s.get(),
      // The logger first: options parsed before it would log to stderr.
      MHD_OPTION_EXTERNAL_LOGGER, &LogFromMhd, nullptr, MHD_OPTION_SOCK_ADDR,
      reinterpret_cast<const sockaddr*>(&address.addr), MHD_OPTION_CONNECTION_LIMIT,
      kMaxConnections, MHD_OPTION_CONNECTION_TIMEOUT, kConnectionTimeoutS, MHD_OPTION_END);
  if (s->daemon_ == nullptr) {
    int err = errno;
    return absl::UnavailableError(absl::StrCat("cannot serve /metrics on ", address.ToString(), ": ",
                                               err ? std::strerror(err) : "libmicrohttpd refused",
                                               err == EADDRINUSE ? " (another process has the port; "
                                                                   "set metrics.prometheus_listen)"
                                                                 : ""));
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(s->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  s->port_ = info != nullptr && info->port != 0 ? info->port : address.port;
  return s;
}

MetricsServer::~MetricsServer() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

std::string MetricsServer::Scrape() {
  scrapes_.fetch_add(1, std::memory_order_relaxed);
  return render_();
}

}  // namespace isotrace::prometheus
