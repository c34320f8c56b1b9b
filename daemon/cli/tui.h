#pragma once
// The live `isotrace top` screen (ncurses): refreshes every second, keyboard-driven,
// restores the terminal on q, Ctrl-C, SIGTERM or an error.

#include <cstdint>

#include "daemon/cli/render.h"
#include "daemon/cli/source.h"

namespace isotrace::cli {

struct TopOptions {
  uint32_t window_s = 5;
  uint32_t refresh_ms = 1000;
  ViewState state;
};

// Returns the process exit code.
int RunTopScreen(Source& source, TopOptions options);

}  // namespace isotrace::cli
