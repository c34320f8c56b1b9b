// isotrace: the command-line tool. It talks only to the daemon's local API (unix socket);
// `top` and `locate` run the pipeline themselves when no daemon is running.
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/api/convert.h"
#include "daemon/cli/render.h"
#include "daemon/cli/source.h"
#include "daemon/cli/tui.h"
#include "daemon/config/config.h"
#include "daemon/probes/environment.h"

namespace {

// SIGINT/SIGTERM set the returned flag (loops that print until interrupted).
const std::atomic<bool>& StopOnSignal() {
  static std::atomic<bool> stop{false};
  struct sigaction sa {};
  sa.sa_handler = [](int) { stop.store(true); };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  return stop;
}


using isotrace::cli::Source;

int TerminalWidth(int fallback) {
  winsize ws{};
  if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return fallback;
}

std::string DefaultSocket() {
  if (const char* s = std::getenv("ISOTRACE_SOCKET"); s != nullptr && *s != 0) return s;
  return isotrace::config::Config().api_socket;
}

void Fail(const std::string& msg) { std::fprintf(stderr, "isotrace: %s\n", msg.c_str()); }

struct Common {
  std::string socket = DefaultSocket();
  std::string config_path;
  int width = 0;
};

bool LoadConfig(const Common& c, isotrace::config::Config* cfg) {
  if (!c.config_path.empty()) {
    if (auto st = isotrace::config::LoadYamlFile(c.config_path, cfg); !st.ok()) {
      Fail(std::string(st.message()));
      return false;
    }
  }
  if (auto st = isotrace::config::ApplyEnvironment(isotrace::config::ProcessEnvironment(), cfg); !st.ok()) {
    Fail(std::string(st.message()));
    return false;
  }
  cfg->summary_interval_s = 0;  // the table is the summary
  return true;
}

int RunTop(const Common& common, const std::string& mode, bool once, bool json, bool batch, uint32_t window,
           const std::string& sort, bool ascending, const std::string& filter, uint32_t refresh_ms) {
  isotrace::cli::ViewState state;
  if (!sort.empty() && !isotrace::cli::ParseColumnKey(sort, &state.sort)) {
    Fail("--sort " + sort + ": use one of service stack rps err p50 p99 cpu runq throt io stall steal retx verdict");
    return 2;
  }
  state.descending = !ascending && state.sort != isotrace::cli::Column::kService &&
                     state.sort != isotrace::cli::Column::kStack;
  if (ascending) state.descending = false;
  state.filter = filter;
  if (window < 1 || window > 10) {
    Fail("--window must be 1..10 seconds");
    return 2;
  }

  std::unique_ptr<Source> source;
  bool embedded = false;
  if (mode != "embedded") {
    auto remote = isotrace::cli::ConnectDaemon(common.socket);
    if (remote.ok()) {
      source = std::move(*remote);
    } else if (mode == "daemon" || remote.status().code() != absl::StatusCode::kNotFound) {
      Fail(std::string(remote.status().message()));
      return 1;
    }
  }
  if (!source) {
    isotrace::config::Config cfg;
    if (!LoadConfig(common, &cfg)) return 2;
    if (once || json)
      std::fprintf(stderr, "isotrace: no daemon at %s; sampling %u s with an embedded pipeline\n",
                   common.socket.c_str(), window);
    auto emb = isotrace::cli::StartEmbedded(cfg);
    if (!emb.ok()) {
      Fail(std::string(emb.status().message()));
      return 1;
    }
    source = std::move(*emb);
    embedded = true;
  }

  if (once || json) {
    // An embedded pipeline has seen nothing yet: let one whole window pass first.
    if (embedded) std::this_thread::sleep_for(std::chrono::milliseconds(window * 1000 + 1100));
    auto top = source->Top(window);
    if (!top.ok()) {
      Fail(std::string(top.status().message()));
      return 1;
    }
    if (json) {
      std::printf("%s\n", isotrace::cli::TopJson(*top, state).c_str());
    } else {
      std::printf("%s\n", isotrace::cli::StatusLine(*top, state).c_str());
      for (auto line : isotrace::cli::RenderTable(*top, state, common.width > 0 ? common.width : TerminalWidth(80))) {
        while (!line.empty() && line.back() == ' ') line.pop_back();
        std::printf("%s\n", line.c_str());
      }
    }
    return 0;
  }
  if (batch || !isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
    // No terminal to draw on (a pipe, CI, `make run` under a logger): print a table per
    // refresh instead, like `top -b`, until interrupted.
    const std::atomic<bool>& stop = StopOnSignal();
    const int width = common.width > 0 ? common.width : TerminalWidth(100);
    while (!stop.load()) {
      for (uint32_t waited = 0; waited < refresh_ms && !stop.load(); waited += 50)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (stop.load()) break;
      auto top = source->Top(window);
      if (!top.ok()) {
        Fail(std::string(top.status().message()));
        return 1;
      }
      std::printf("\n%s\n", isotrace::cli::StatusLine(*top, state).c_str());
      for (auto line : isotrace::cli::RenderTable(*top, state, width)) {
        while (!line.empty() && line.back() == ' ') line.pop_back();
        std::printf("%s\n", line.c_str());
      }
      if (std::string log = source->LastLog(); !log.empty()) std::printf("last log: %s\n", log.c_str());
      std::fflush(stdout);
    }
    return 0;
  }
  isotrace::cli::TopOptions opts;
  opts.window_s = window;
  opts.refresh_ms = refresh_ms;
  opts.state = state;
  return isotrace::cli::RunTopScreen(*source, opts);
}

int RunTrace(const Common& common, const std::string& id_hex) {
  isotrace::correlate::TraceId id{};
  if (!isotrace::api::ParseTraceId(id_hex, &id)) {
    Fail("trace id '" + id_hex + "' is not 32 hex digits");
    return 2;
  }
  auto remote = isotrace::cli::ConnectDaemon(common.socket);
  if (!remote.ok()) {
    Fail(std::string(remote.status().message()) +
         (remote.status().code() == absl::StatusCode::kNotFound
              ? "; `isotrace trace` reads the spans a running daemon keeps in memory"
              : ""));
    return 1;
  }
  auto tr = (*remote)->GetTrace(id);
  if (!tr.ok()) {
    Fail(std::string(tr.status().message()));
    return 1;
  }
  if (tr->spans_size() == 0) {
    Fail("no span of trace " + id_hex + " on this node (it keeps the last " +
         std::to_string(tr->spans_held()) + " spans)");
    return 1;
  }
  for (const auto& line : isotrace::cli::RenderTrace(*tr, id_hex, common.width > 0 ? common.width : TerminalWidth(100)))
    std::printf("%s\n", line.c_str());
  return 0;
}

struct LocateArgs {
  std::string mode = "auto";
  std::string trace_id;  // empty: any trace
  std::string since = "5m";
  std::string watch = "10s";
  uint32_t max = isotrace::api::kDefaultLocateMax;
  bool json = false;
};

int RunLocate(const Common& common, const LocateArgs& args) {
  // Every argument is checked before a daemon is asked or probes are loaded.
  std::optional<isotrace::correlate::TraceId> id;
  if (!args.trace_id.empty()) {
    isotrace::correlate::TraceId parsed{};
    if (!isotrace::api::ParseTraceId(args.trace_id, &parsed)) {
      Fail("--trace-id '" + args.trace_id +
           "': expected 32 hex digits (16 bytes, as printed: 4bf92f3577b34da6a3ce929d0e0e4736)");
      return 2;
    }
    id = parsed;
  }
  auto since = isotrace::cli::ParseDurationFlag(args.since);
  if (!since.ok()) {
    Fail("--since " + std::string(since.status().message()));
    return 2;
  }
  auto watch = isotrace::cli::ParseDurationFlag(args.watch);
  if (!watch.ok()) {
    Fail("--watch " + std::string(watch.status().message()));
    return 2;
  }
  if (args.max == 0) {
    Fail("--max must be at least 1");
    return 2;
  }

  std::unique_ptr<Source> source;
  if (args.mode != "embedded") {
    auto remote = isotrace::cli::ConnectDaemon(common.socket);
    if (remote.ok()) {
      source = std::move(*remote);
    } else if (args.mode == "daemon" || remote.status().code() != absl::StatusCode::kNotFound) {
      Fail(std::string(remote.status().message()));
      return 1;
    }
  }
  absl::Duration window = *since;
  if (!source) {
    // The CLI's own pipeline starts with no history: watch live for the window, capped so
    // `locate` returns in seconds, and report what it decided meanwhile.
    isotrace::config::Config cfg;
    if (!LoadConfig(common, &cfg)) return 2;
    window = std::min(*since, *watch);
    auto emb = isotrace::cli::StartEmbedded(cfg, "locate");
    if (!emb.ok()) {
      Fail(std::string(emb.status().message()));
      return 1;
    }
    source = std::move(*emb);
    std::fprintf(stderr, "isotrace: %s: watching for %s with an embedded pipeline\n",
                 args.mode == "embedded" ? "--mode embedded" : "no isotraced running",
                 isotrace::cli::FormatDurationFlag(window).c_str());
    // Ctrl-C ends the watch early; what was decided so far is still printed.
    const std::atomic<bool>& stop = StopOnSignal();
    const absl::Time until = absl::Now() + window;
    while (!stop.load() && absl::Now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    // A trace that ended just before the deadline is judged after the next poll (within
    // a second) and the locate hold: give it that.
    if (!stop.load())
      std::this_thread::sleep_for(std::chrono::milliseconds(1000 + cfg.locate_hold_ms));
  }

  auto resp = source->Locate(id, static_cast<uint32_t>(absl::ToInt64Seconds(*since)), args.max);
  if (!resp.ok()) {
    Fail(std::string(resp.status().message()));
    return resp.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  if (std::string log = source->LastLog(); !log.empty())
    std::fprintf(stderr, "isotrace: last log: %s\n", log.c_str());
  if (args.json) {
    std::printf("%s\n", isotrace::cli::LocateJson(*resp).c_str());
    return 0;
  }
  for (const auto& line : isotrace::cli::RenderLocate(*resp, window, absl::LocalTimeZone()))
    std::printf("%s\n", line.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"isotrace — where did a slow or failed request lose its time"};
  app.require_subcommand(1);
  auto* version = app.add_subcommand("version", "print the version");
  auto* check = app.add_subcommand("check", "check that this kernel and these privileges can run the probes");

  Common common;
  auto* top = app.add_subcommand("top", "live per-workload view (embedded pipeline when no daemon runs)");
  bool once = false, json = false, batch = false, ascending = false;
  uint32_t window = 5, refresh_ms = 1000;
  std::string mode = "auto", sort, filter;
  top->add_flag("--once", once, "print one snapshot as a table and exit");
  top->add_flag("--json", json, "print one snapshot as JSON and exit");
  top->add_flag("--batch", batch, "print a table every refresh instead of the live screen (default without a terminal)");
  top->add_option("--window", window, "seconds the rates and percentiles cover (1-10)")->capture_default_str();
  top->add_option("--sort", sort, "service stack rps err p50 p99 cpu runq throt io stall steal retx verdict");
  top->add_flag("--asc", ascending, "ascending sort");
  top->add_option("--filter", filter, "text matching service, namespace or stack; ns:/stack:/svc: for one");
  top->add_option("--mode", mode, "auto (daemon if running, else embedded), daemon, embedded")
      ->check(CLI::IsMember({"auto", "daemon", "embedded"}))
      ->capture_default_str();
  top->add_option("--refresh-ms", refresh_ms, "refresh period of the live view")->capture_default_str();
  top->add_option("--socket", common.socket, "the daemon's API socket (ISOTRACE_SOCKET)")->capture_default_str();
  top->add_option("--config", common.config_path, "YAML configuration for the embedded pipeline");
  top->add_option("--width", common.width, "columns for --once (default: the terminal's, else 80)");

  auto* trace = app.add_subcommand("trace", "a trace's spans on this node as a tree with their breakdown");
  std::string trace_id;
  trace->add_option("trace-id", trace_id, "32 hex digits")->required();
  trace->add_option("--socket", common.socket, "the daemon's API socket (ISOTRACE_SOCKET)")->capture_default_str();
  trace->add_option("--width", common.width, "line width (default: the terminal's, else 100)");

  auto* locate = app.add_subcommand(
      "locate", "recent slow or failed traces: which service, layer and cause, with the evidence");
  LocateArgs locate_args;
  locate->add_option("--trace-id", locate_args.trace_id, "only this trace (32 hex digits)");
  locate
      ->add_option("--since", locate_args.since,
                   "traces that ended this long ago or later (30s, 5m, 1h30m)")
      ->capture_default_str();
  locate->add_option("--max", locate_args.max, "at most this many verdicts, newest first")
      ->capture_default_str();
  locate->add_flag("--json", locate_args.json, "print one JSON document");
  locate
      ->add_option(
          "--watch", locate_args.watch,
          "without a daemon: watch live with an embedded pipeline for --since, at most this long")
      ->capture_default_str();
  locate
      ->add_option("--mode", locate_args.mode,
                   "auto (daemon if running, else embedded), daemon, embedded")
      ->check(CLI::IsMember({"auto", "daemon", "embedded"}))
      ->capture_default_str();
  locate->add_option("--socket", common.socket, "the daemon's API socket (ISOTRACE_SOCKET)")
      ->capture_default_str();
  locate->add_option("--config", common.config_path,
                     "YAML configuration for the embedded pipeline");

  CLI11_PARSE(app, argc, argv);

  if (*version) {
    std::printf("isotrace %s\n", ISOTRACE_VERSION);
    return 0;
  }
  if (*check) {
    isotrace::probes::InstallLibbpfLogger(false);
    auto st = isotrace::probes::CheckBpfEnvironment(isotrace::probes::L7Tracepoints());
    if (!st.ok()) {
      std::fprintf(stderr, "not ready: %s\n", std::string(st.message()).c_str());
      return 1;
    }
    std::printf("ok: BTF, ring buffer, tracefs and %zu tracepoints available\n",
                isotrace::probes::L7Tracepoints().size());
    return 0;
  }
  if (*top) return RunTop(common, mode, once, json, batch, window, sort, ascending, filter, refresh_ms);
  if (*trace) return RunTrace(common, trace_id);
  if (*locate) return RunLocate(common, locate_args);
  return 0;
}
