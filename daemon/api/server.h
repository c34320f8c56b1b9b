#pragma once
// The local API server: gRPC over a unix socket (daemon/api/proto), for the CLI only.
//
// Access control is the socket file: mode 0600 (root only) by default, 0660 with a
// configured group (api.socket_group) so its members can run `isotrace top` without
// root. The directory is created 0755 when missing (connecting needs write permission
// on the socket itself, not on the directory). A live daemon on the same path is left
// alone (Start fails with AlreadyExists); a stale socket file left by a crash is
// replaced. The server takes few threads: a busy CLI must not cost the node.

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "isotrace/api/v1/api.grpc.pb.h"

namespace grpc {
class Server;
}

namespace isotrace::api {

struct ApiHandlers {
  std::function<v1::TopResponse(const v1::TopRequest&)> top;
  std::function<v1::GetTraceResponse(const v1::GetTraceRequest&)> get_trace;
  // Called only with a valid request (trace_id empty or 16 bytes).
  std::function<v1::LocateResponse(const v1::LocateRequest&)> locate;
};

struct ApiServerOptions {
  std::string socket_path = "/run/isotrace/isotrace.sock";
  std::string group;  // empty: root only (0600)
};

class ApiServer {
 public:
  static absl::StatusOr<std::unique_ptr<ApiServer>> Start(const ApiServerOptions& options,
                                                          ApiHandlers handlers);
  ~ApiServer();  // Shutdown(now)
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Stops accepting, gives calls in flight a second to finish, removes the socket file
  // (if it is still ours). Idempotent.
  void Shutdown();
  const std::string& socket_path() const { return path_; }

 private:
  ApiServer() = default;
  class Service;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// Whether something accepts connections on the unix socket `path` (a live daemon).
bool SocketAlive(const std::string& path);

}  // namespace isotrace::api
