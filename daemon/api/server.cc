#include "daemon/api/server.h"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/resource_quota.h"
#include "spdlog/spdlog.h"

namespace isotrace::api {

namespace {
// Sync server threads: enough for a CLI and a script at once, few enough to not matter.
constexpr int kMaxThreads = 4;
constexpr int kMaxMessageBytes = 64 << 20;  // a trace of the whole span store fits
}  // namespace

class ApiServer::Service final : public v1::Isotrace::Service {
 public:
  explicit Service(ApiHandlers h) : h_(std::move(h)) {}
  grpc::Status Top(grpc::ServerContext*, const v1::TopRequest* req, v1::TopResponse* resp) override {
    if (!h_.top) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no top view");
    *resp = h_.top(*req);
    return grpc::Status::OK;
  }
  grpc::Status GetTrace(grpc::ServerContext*, const v1::GetTraceRequest* req,
                        v1::GetTraceResponse* resp) override {
    if (req->trace_id().size() != 16)
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "trace_id must be 16 bytes");
    if (!h_.get_trace) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no span store");
    *resp = h_.get_trace(*req);
    return grpc::Status::OK;
  }
  grpc::Status Locate(grpc::ServerContext*, const v1::LocateRequest* req,
                      v1::LocateResponse* resp) override {
    // Empty means any trace; a truncated or hex-encoded id must not silently match none.
    if (!req->trace_id().empty() && req->trace_id().size() != 16)
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("trace_id must be empty (any trace) or 16 bytes, got ",
                                       req->trace_id().size(), " bytes"));
    if (!h_.locate) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no verdict store");
    *resp = h_.locate(*req);
    return grpc::Status::OK;
  }

 private:
  ApiHandlers h_;
};

bool SocketAlive(const std::string& path) {
  sockaddr_un sa{};
  if (path.size() >= sizeof(sa.sun_path)) return false;
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool alive = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
  // EACCES: someone holds it and we may not talk to it: alive as well.
  if (!alive && errno == EACCES) alive = true;
  close(fd);
  return alive;
}

absl::StatusOr<std::unique_ptr<ApiServer>> ApiServer::Start(const ApiServerOptions& options,
                                                            ApiHandlers handlers) {
  const std::string& path = options.socket_path;
  if (path.empty() || path[0] != '/')
    return absl::InvalidArgumentError(
        absl::StrCat("api.socket '", path, "' must be an absolute path"));
  if (path.size() >= sizeof(sockaddr_un{}.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("api.socket '", path, "' is longer than ",
                                                   sizeof(sockaddr_un{}.sun_path) - 1,
                                                   " bytes, the unix socket limit"));
  gid_t gid = 0;
  if (!options.group.empty()) {
    group gr{}, *res = nullptr;
    std::vector<char> buf(16384);
    if (getgrnam_r(options.group.c_str(), &gr, buf.data(), buf.size(), &res) != 0 || res == nullptr)
      return absl::InvalidArgumentError(
          absl::StrCat("api.socket_group '", options.group, "' is not a group on this node"));
    gid = gr.gr_gid;
  }

  // The parent directory: created when missing (the /run/isotrace default).
  std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty()) {
    struct stat st {};
    if (stat(dir.c_str(), &st) != 0) {
      if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
        return absl::UnavailableError(
            absl::StrCat("cannot create ", dir, " for the API socket: ", std::strerror(errno)));
    }
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return absl::FailedPreconditionError(
          absl::StrCat(path, " exists and is not a socket; remove it or set api.socket"));
    if (SocketAlive(path))
      return absl::AlreadyExistsError(absl::StrCat(
          "another process serves ", path, " (another isotraced?); set api.socket to run both"));
    unlink(path.c_str());  // stale: left by a daemon that did not exit cleanly
  }

  std::unique_ptr<ApiServer> s(new ApiServer());
  s->service_ = std::make_unique<Service>(std::move(handlers));
  grpc::ServerBuilder builder;
  grpc::ResourceQuota quota("isotrace-api");
  quota.SetMaxThreads(kMaxThreads);
  builder.SetResourceQuota(quota);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 1);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.AddListeningPort("unix:" + path, grpc::InsecureServerCredentials());
  builder.RegisterService(s->service_.get());
  // gRPC creates the socket with the process umask: narrow it for the bind so the file
  // is never more open than 0700 before the chmod below sets the final mode.
  mode_t old_mask = umask(0077);
  s->server_ = builder.BuildAndStart();
  umask(old_mask);
  if (!s->server_)
    return absl::UnavailableError(absl::StrCat("cannot serve the local API on ", path));
  const mode_t mode = options.group.empty() ? 0600 : 0660;
  if (chmod(path.c_str(), mode) != 0 || (!options.group.empty() && chown(path.c_str(), -1, gid) != 0)) {
    std::string err = std::strerror(errno);
    s->server_->Shutdown();
    unlink(path.c_str());
    return absl::PermissionDeniedError(absl::StrCat("cannot set the mode/group of ", path, ": ", err));
  }
  if (lstat(path.c_str(), &st) == 0) {
    s->dev_ = st.st_dev;
    s->ino_ = st.st_ino;
  }
  s->path_ = path;
  return s;
}

void ApiServer::Shutdown() {
  if (!server_) return;
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
  server_.reset();
  // Only our own file: a second daemon may have replaced a stale one meanwhile.
  struct stat st {};
  if (lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
    unlink(path_.c_str());
}

ApiServer::~ApiServer() { Shutdown(); }

}  // namespace isotrace::api
