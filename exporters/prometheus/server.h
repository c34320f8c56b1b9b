#pragma once
// The /metrics endpoint. libmicrohttpd serves it: a small, long-maintained C HTTP server
// in Debian, with its own polling thread and hard limits on connections and idle time,
// so a misbehaving scraper costs a bounded amount and never touches the poll loop.
//
// Only loopback by default (127.0.0.1:9464): metrics name every service on the node. A
// non-loopback address is served only when configured explicitly, and logged.

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

struct MHD_Daemon;
struct MHD_Connection;

namespace isotrace::prometheus {

struct ListenAddress {
  std::string host;  // as written, without brackets
  uint16_t port = 0;
  bool loopback = false;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string ToString() const;  // "127.0.0.1:9464", "[::1]:9464"
};

// "127.0.0.1:9464", "localhost:9464", "[::1]:9464", "0.0.0.0:9464", "[::]:9464",
// ":9464" (every IPv4 address). IP literals only besides "localhost": a host name
// resolving to several addresses would make the bound address a surprise.
absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view value);

class MetricsServer {
 public:
  // Renders the body of one scrape (called on the server's thread).
  using Render = std::function<std::string()>;

  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const ListenAddress& address,
                                                              Render render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  uint16_t port() const { return port_; }  // the bound port (useful with port 0)
  uint64_t scrapes() const { return scrapes_.load(); }
  // One scrape's body (the server thread calls it; public for the C callback).
  std::string Scrape();

 private:
  explicit MetricsServer(Render render) : render_(std::move(render)) {}

  Render render_;
  MHD_Daemon* daemon_ = nullptr;
  uint16_t port_ = 0;
  std::atomic<uint64_t> scrapes_{0};
};

}  // namespace isotrace::prometheus
