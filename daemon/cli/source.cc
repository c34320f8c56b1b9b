#include "daemon/cli/source.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/api/convert.h"
#include "daemon/api/services.h"
#include "daemon/pipeline/daemon.h"
#include "daemon/probes/environment.h"
#include "daemon/util/fmt.h"
#include "grpcpp/grpcpp.h"
#include "isotrace/api/v1/api.grpc.pb.h"
#include "spdlog/sinks/ringbuffer_sink.h"
#include "spdlog/spdlog.h"

namespace isotrace::cli {

namespace {

constexpr auto kCallTimeout = std::chrono::seconds(3);

v1::LocateRequest MakeLocateRequest(const std::optional<correlate::TraceId>& trace_id, uint32_t since_s,
                                    uint32_t max) {
  v1::LocateRequest req;
  if (trace_id)
    req.set_trace_id(std::string(reinterpret_cast<const char*>(trace_id->data()), trace_id->size()));
  req.set_since_seconds(since_s);
  req.set_max(max);
  return req;
}

absl::Status FromGrpc(const grpc::Status& st, const std::string& what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", st.error_message(), " (",
                                             static_cast<int>(st.error_code()), ")"));
}

class RemoteSource final : public Source {
 public:
  explicit RemoteSource(const std::string& path)
      : path_(path),
        stub_(v1::Isotrace::NewStub(
            grpc::CreateChannel("unix:" + path, grpc::InsecureChannelCredentials()))) {}

  absl::StatusOr<v1::TopResponse> Top(uint32_t window_s) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    v1::TopRequest req;
    req.set_window_seconds(window_s);
    v1::TopResponse resp;
    auto st = stub_->Top(&ctx, req, &resp);
    if (!st.ok()) return FromGrpc(st, "isotraced at " + path_);
    return resp;
  }

  absl::StatusOr<v1::GetTraceResponse> GetTrace(const correlate::TraceId& id) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    v1::GetTraceRequest req;
    req.set_trace_id(std::string(reinterpret_cast<const char*>(id.data()), id.size()));
    v1::GetTraceResponse resp;
    auto st = stub_->GetTrace(&ctx, req, &resp);
    if (!st.ok()) return FromGrpc(st, "isotraced at " + path_);
    return resp;
  }

  absl::StatusOr<v1::LocateResponse> Locate(const std::optional<correlate::TraceId>& trace_id,
                                            uint32_t since_s, uint32_t max) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    v1::LocateRequest req = MakeLocateRequest(trace_id, since_s, max);
    v1::LocateResponse resp;
    auto st = stub_->Locate(&ctx, req, &resp);
    if (st.error_code() == grpc::StatusCode::UNIMPLEMENTED)
      return absl::UnimplementedError(
          absl::StrCat("isotraced at ", path_, " does not serve Locate (", st.error_message(),
                       "); an older daemon? upgrade it or restart it with this version"));
    if (!st.ok()) {
      // Keep the code (gRPC and absl share the numbering): INVALID_ARGUMENT is the
      // caller's mistake, not an unreachable daemon.
      return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                          absl::StrCat("isotraced at ", path_, ": ", st.error_message()));
    }
    return resp;
  }

 private:
  std::string path_;
  std::unique_ptr<v1::Isotrace::Stub> stub_;
};

// The daemon's own composition (pipeline::Node) without its network-facing parts, read
// in-process: the same pipeline, aggregator, span store and verdicts as isotraced.
class EmbeddedSource final : public Source {
 public:
  EmbeddedSource(const config::Config& cfg, std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> ring)
      : cfg_(cfg), node_(cfg, pipeline::NodeOptions{.serve = false}), ring_(std::move(ring)) {}

  ~EmbeddedSource() override {
    stop_.store(true);
    if (poller_.joinable()) poller_.join();
  }

  absl::Status Start() {
    if (auto st = node_.Start(); !st.ok()) return st;
    host_ = node_.pipeline().resolver().host_name();
    poller_ = std::thread([this] {
      if (auto st = node_.Run(stop_); !st.ok()) spdlog::error("poll loop: {}", st.message());
    });
    return absl::OkStatus();
  }

  absl::StatusOr<v1::TopResponse> Top(uint32_t window_s) override {
    return api::TopResponseFrom(node_.aggregator().Top(window_s == 0 ? api::kDefaultWindowS : window_s),
                                host_, "embedded");
  }

  absl::StatusOr<v1::GetTraceResponse> GetTrace(const correlate::TraceId& id) override {
    std::vector<api::SpanWithResource> spans;
    for (auto& s : node_.pipeline().store().Recent(cfg_.embedded_spans))
      spans.push_back({std::move(s.resource), *s.span});
    return api::TraceResponseFrom(spans, id);
  }

  absl::StatusOr<v1::LocateResponse> Locate(const std::optional<correlate::TraceId>& trace_id,
                                            uint32_t since_s, uint32_t max) override {
    // The same request → query → response path the daemon's handler takes.
    v1::LocateRequest req = MakeLocateRequest(trace_id, since_s, max);
    const uint64_t now = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
    return api::LocateResponseFrom(
        api::ReadVerdicts(node_.pipeline().verdicts(), api::VerdictQueryFrom(req, now)), "embedded", now);
  }

  std::string LastLog() override {
    if (!ring_) return "";
    auto lines = ring_->last_formatted(1);
    if (lines.empty()) return "";
    std::string l = lines.back();
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
    return l;
  }

 private:
  config::Config cfg_;
  pipeline::Node node_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> ring_;
  std::string host_;
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

}  // namespace

SocketState ProbeSocket(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return SocketState::kAbsent;
  sockaddr_un sa{};
  if (path.size() >= sizeof(sa.sun_path)) return SocketState::kAbsent;
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return SocketState::kAbsent;
  SocketState out = SocketState::kAlive;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0)
    out = errno == EACCES || errno == EPERM ? SocketState::kDenied : SocketState::kStale;
  close(fd);
  return out;
}

absl::StatusOr<std::unique_ptr<Source>> ConnectDaemon(const std::string& socket_path) {
  switch (ProbeSocket(socket_path)) {
    case SocketState::kAlive:
      return std::unique_ptr<Source>(new RemoteSource(socket_path));
    case SocketState::kDenied:
      return absl::PermissionDeniedError(absl::StrCat(
          "isotraced runs, but this user may not use ", socket_path,
          " (root only by default; run with sudo, or set api.socket_group and join that group)"));
    case SocketState::kStale:
    case SocketState::kAbsent:
      break;
  }
  return absl::NotFoundError(absl::StrCat("no isotraced serves ", socket_path));
}

absl::StatusOr<std::unique_ptr<Source>> StartEmbedded(const config::Config& cfg,
                                                      std::string_view command) {
  if (geteuid() != 0)
    return absl::PermissionDeniedError(
        "no isotraced is running and the embedded pipeline loads eBPF probes, which needs root: "
        "run `sudo isotrace " +
        std::string(command) + "`, or start isotraced");
  // The table owns the terminal: the pipeline's log lines go to a ring the status line
  // shows (warnings and errors only).
  auto ring = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  ring->set_pattern("%l: %v");
  auto logger = std::make_shared<spdlog::logger>("isotrace", ring);
  logger->set_level(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  probes::InstallLibbpfLogger(false);
  auto src = std::make_unique<EmbeddedSource>(cfg, ring);
  if (auto st = src->Start(); !st.ok()) return st;
  return std::unique_ptr<Source>(std::move(src));
}

}  // namespace isotrace::cli
