// isotrace: the command-line tool.
#include <unistd.h>

#include <cstdio>

#include "CLI/CLI.hpp"
#include "daemon/probes/environment.h"

int main(int argc, char** argv) {
  CLI::App app{"isotrace — where did a slow or failed request lose its time"};
  app.require_subcommand(1);
  auto* version = app.add_subcommand("version", "print the version");
  auto* check = app.add_subcommand("check", "check that this kernel and these privileges can run the probes");
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
  return 0;
}
