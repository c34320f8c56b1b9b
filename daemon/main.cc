// isotraced: the node daemon.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <optional>
#include <thread>

#include "CLI/CLI.hpp"
#include "daemon/config/config.h"
#include "daemon/pipeline/daemon.h"
#include "spdlog/spdlog.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"isotraced — per-request, per-layer latency attribution from eBPF"};
  std::string config_path, endpoint, log_level, stats_file;
  uint32_t capture_bytes = 0, target_pid = 0, summary_s = 0;
  double duration_s = 0;
  app.add_option("--config", config_path, "YAML configuration file");
  app.add_option("--otlp-endpoint", endpoint,
                 "OTLP/gRPC endpoint (overrides OTEL_EXPORTER_OTLP_ENDPOINT); none = embedded mode");
  app.add_option("--capture-bytes", capture_bytes, "bytes copied from the start of each message (≤ 4096)");
  app.add_option("--pid", target_pid, "trace only this process (default: every process)");
  app.add_option("--summary-interval", summary_s, "seconds between summary log lines (0 = off)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off");
  bool validate_only = false;
  app.add_flag("--validate-config", validate_only,
               "check the configuration (file, environment, flags) and exit: 0 valid, 2 not");
  app.add_option("--stats-file", stats_file,
                 "write exporter and probe counters as JSON to this file at exit");
  app.add_option("--duration", duration_s, "exit after this many seconds (0 = run until signalled)");
  std::optional<std::string> api_socket, prometheus_listen;
  app.add_option("--api-socket", api_socket, "the CLI's unix socket (api.socket; \"\" = none)");
  app.add_option("--prometheus-listen", prometheus_listen,
                 "host:port of /metrics (metrics.prometheus_listen; \"\" = none)");
  CLI11_PARSE(app, argc, argv);

  isotrace::config::Config cfg;
  if (!config_path.empty()) {
    if (auto st = isotrace::config::LoadYamlFile(config_path, &cfg); !st.ok()) {
      std::fprintf(stderr, "isotraced: %s\n", std::string(st.message()).c_str());
      return 2;
    }
  }
  if (auto st = isotrace::config::ApplyEnvironment(isotrace::config::ProcessEnvironment(), &cfg);
      !st.ok()) {
    std::fprintf(stderr, "isotraced: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  if (!endpoint.empty()) cfg.otlp_endpoint = endpoint;
  if (capture_bytes) cfg.capture_bytes = capture_bytes;
  if (target_pid) cfg.target_pid = target_pid;
  if (app.count("--summary-interval")) cfg.summary_interval_s = summary_s;
  if (!log_level.empty()) cfg.log_level = log_level;
  if (api_socket) cfg.api_socket = *api_socket;
  if (prometheus_listen) cfg.prometheus_listen = *prometheus_listen;
  if (!stats_file.empty()) cfg.stats_file = stats_file;
  if (auto st = isotrace::config::Validate(cfg); !st.ok()) {
    std::fprintf(stderr, "isotraced: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  if (validate_only) {
    // The exporter's own parse too (endpoint, headers, certificates as it will read them),
    // so a config that passes here does not fail at start-up.
    for (auto signal : {isotrace::otlp::Signal::kTraces, isotrace::otlp::Signal::kMetrics,
                        isotrace::otlp::Signal::kLogs}) {
      if (auto opts = isotrace::pipeline::ExporterOptionsFor(cfg, signal); !opts.ok()) {
        std::fprintf(stderr, "isotraced: %s\n", std::string(opts.status().message()).c_str());
        return 2;
      }
    }
    std::printf("isotraced: configuration is valid%s%s\n", config_path.empty() ? "" : ": ",
                config_path.c_str());
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::thread timer;
  if (duration_s > 0) {
    timer = std::thread([duration_s] {
      auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(duration_s);
      while (!g_stop.load() && std::chrono::steady_clock::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      g_stop.store(true);
    });
  }
  int rc = isotrace::pipeline::RunDaemon(cfg, g_stop);
  g_stop.store(true);
  if (timer.joinable()) timer.join();
  return rc;
}
