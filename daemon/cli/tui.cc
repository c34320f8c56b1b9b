#include "daemon/cli/tui.h"

#include <curses.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "daemon/api/convert.h"

namespace isotrace::cli {

namespace {

std::atomic<bool> g_quit{false};
void OnQuitSignal(int) { g_quit.store(true); }

constexpr const char* kHelp[] = {
    "isotrace top - keys",
    "",
    "  q, Ctrl-C      quit",
    "  s / S          sort by the next / previous column",
    "  r              reverse the sort order",
    "  /              filter: text matches service, namespace or stack;",
    "                 ns:<text>, stack:<text>, svc:<text> match one field",
    "  Esc            clear the filter",
    "  Up/Down, j/k   select a row (its details show on the bottom line)",
    "  Enter, t       the slowest recent trace of the selected row, as a tree",
    "  + / -          widen / narrow the window (1-10 s)",
    "  p              pause / resume refreshing",
    "  h, ?           this help",
    "",
    "Columns: REQ/S, ERR% (5xx, resets), P50/P99 over the window; CPU RUNQ THROT IO",
    "STALL STEAL: % of request time on CPU, waiting for a CPU, held by the cgroup quota,",
    "in block I/O, in memory stalls, stolen by the hypervisor ('-': not measured);",
    "RTX/s: TCP retransmits; VERDICT (wide terminals): the latest verdict.",
    "",
    "Press any key to go back.",
};

// Restores the terminal however RunTopScreen leaves (return, exception in a callee).
struct Screen {
  Screen() {
    initscr();
    cbreak();  // keys without Enter; Ctrl-C still raises SIGINT, handled below
    set_escdelay(25);  // Esc clears the filter at once, not after ncurses' default 1 s
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    if (has_colors()) {
      start_color();
      use_default_colors();
      init_pair(1, COLOR_RED, -1);
    }
  }
  ~Screen() {
    curs_set(1);
    endwin();
  }
};

void Put(int y, int x, const std::string& s, int width, attr_t attr = A_NORMAL) {
  if (y < 0 || y >= LINES || width <= 0) return;
  std::string line = s.size() > static_cast<size_t>(width) ? s.substr(0, static_cast<size_t>(width)) : s;
  attron(attr);
  mvaddnstr(y, x, line.c_str(), width);
  attroff(attr);
}

std::string HexOf(const std::string& bytes) {
  return api::HexId(bytes);
}

}  // namespace

int RunTopScreen(Source& source, TopOptions opt) {
  struct sigaction sa {};
  sa.sa_handler = OnQuitSignal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  g_quit.store(false);

  Screen screen;
  timeout(100);  // getch waits at most 100 ms: signals and refreshes stay prompt

  ViewState& state = opt.state;
  v1::TopResponse top;
  bool have = false;
  std::string error;
  int selected = 0, offset = 0;
  bool help = false, paused = false, editing = false;
  std::string edit;
  std::vector<std::string> trace_lines;  // non-empty: the trace view is up
  int trace_offset = 0;
  auto last_fetch = std::chrono::steady_clock::now() - std::chrono::hours(1);
  std::string selected_key;

  auto fetch = [&] {
    auto r = source.Top(opt.window_s);
    if (r.ok()) {
      top = std::move(*r);
      have = true;
      error.clear();
    } else {
      error = std::string(r.status().message());
    }
    last_fetch = std::chrono::steady_clock::now();
  };

  while (!g_quit.load()) {
    if (!paused && std::chrono::steady_clock::now() - last_fetch >= std::chrono::milliseconds(opt.refresh_ms))
      fetch();

    // Draw.
    erase();
    const int width = COLS;
    std::vector<const v1::Workload*> rows;
    if (have) rows = VisibleRows(top, state);
    // Keep the same workload selected across refreshes and re-sorts.
    if (!selected_key.empty())
      for (size_t i = 0; i < rows.size(); ++i)
        if (rows[i]->key() == selected_key) selected = static_cast<int>(i);
    selected = std::clamp(selected, 0, std::max(0, static_cast<int>(rows.size()) - 1));
    if (!rows.empty()) selected_key = rows[static_cast<size_t>(selected)]->key();

    if (help) {
      int y = 0;
      for (const char* l : kHelp) Put(y++, 0, l, width);
    } else if (!trace_lines.empty()) {
      int body = std::max(1, LINES - 1);
      trace_offset = std::clamp(trace_offset, 0, std::max(0, static_cast<int>(trace_lines.size()) - body));
      for (int i = 0; i < body && trace_offset + i < static_cast<int>(trace_lines.size()); ++i)
        Put(i, 0, trace_lines[static_cast<size_t>(trace_offset + i)], width);
      Put(LINES - 1, 0, "q/Esc: back   Up/Down: scroll", width, A_REVERSE);
    } else {
      std::string status = have ? StatusLine(top, state) : "isotrace top - connecting...";
      if (paused) status += " - PAUSED";
      Put(0, 0, status + " - h: help", width, A_BOLD);
      auto layout = Layout(width);
      std::string header = HeaderLine(layout);
      header.resize(static_cast<size_t>(std::max(width, 0)), ' ');
      Put(1, 0, header, width, A_REVERSE);
      for (const auto& c : layout)
        if (c.column == state.sort) Put(1, c.x, header.substr(static_cast<size_t>(c.x), static_cast<size_t>(c.width)), c.width, A_REVERSE | A_BOLD | A_UNDERLINE);
      const int body = std::max(0, LINES - 3);
      if (selected < offset) offset = selected;
      if (selected >= offset + body) offset = selected - body + 1;
      offset = std::clamp(offset, 0, std::max(0, static_cast<int>(rows.size()) - body));
      for (int i = 0; i < body && offset + i < static_cast<int>(rows.size()); ++i) {
        const auto* w = rows[static_cast<size_t>(offset + i)];
        Put(2 + i, 0, RowLine(*w, layout), width, offset + i == selected ? A_STANDOUT : A_NORMAL);
      }
      if (have && rows.empty())
        Put(2, 0, state.filter.empty() ? "(no HTTP requests seen in the last minute)"
                                       : "(no workload matches the filter; Esc clears it)", width);
      std::string bottom;
      attr_t battr = A_NORMAL;
      std::string log = source.LastLog();
      if (editing) {
        bottom = "filter: " + edit + "_   (Enter apply, Esc cancel)";
        battr = A_BOLD;
      } else if (!error.empty()) {
        bottom = "error: " + error;
        battr = has_colors() ? COLOR_PAIR(1) : A_BOLD;
      } else if (!rows.empty()) {
        bottom = DetailLine(*rows[static_cast<size_t>(selected)]);
      } else if (!log.empty()) {
        bottom = log;
      }
      Put(LINES - 1, 0, bottom, width, battr);
    }
    refresh();

    int ch = getch();
    if (ch == ERR) continue;
    if (ch == KEY_RESIZE) continue;  // ncurses updated LINES/COLS; the next draw uses them
    if (help) {
      help = false;
      continue;
    }
    if (!trace_lines.empty()) {
      if (ch == 'q' || ch == 27 || ch == KEY_BACKSPACE) trace_lines.clear();
      else if (ch == KEY_DOWN || ch == 'j') trace_offset++;
      else if (ch == KEY_UP || ch == 'k') trace_offset--;
      else if (ch == KEY_NPAGE || ch == ' ') trace_offset += LINES - 2;
      else if (ch == KEY_PPAGE) trace_offset -= LINES - 2;
      continue;
    }
    if (editing) {
      if (ch == '\n' || ch == KEY_ENTER) {
        state.filter = edit;
        editing = false;
        selected = 0;
      } else if (ch == 27) {
        editing = false;
      } else if (ch == KEY_BACKSPACE || ch == 127 || ch == 8) {
        if (!edit.empty()) edit.pop_back();
      } else if (ch >= 0x20 && ch < 0x7f && edit.size() < 64) {
        edit += static_cast<char>(ch);
      }
      continue;
    }
    const int n_columns = static_cast<int>(Column::kCount);
    switch (ch) {
      case 'q':
      case 'Q':
        g_quit.store(true);
        break;
      case 's':
      case 'S': {
        int c = (static_cast<int>(state.sort) + (ch == 's' ? 1 : n_columns - 1)) % n_columns;
        state.sort = static_cast<Column>(c);
        // Names read best A→Z; numbers biggest first.
        state.descending = !(state.sort == Column::kService || state.sort == Column::kStack);
        break;
      }
      case 'r':
      case 'R':
        state.descending = !state.descending;
        break;
      case '/':
        editing = true;
        edit = state.filter;
        break;
      case 27:
        state.filter.clear();
        break;
      case KEY_DOWN:
      case 'j':
        selected++;
        selected_key.clear();
        break;
      case KEY_UP:
      case 'k':
        selected = std::max(0, selected - 1);
        selected_key.clear();
        break;
      case '+':
        opt.window_s = std::min<uint32_t>(opt.window_s + 1, 10);
        fetch();
        break;
      case '-':
        opt.window_s = std::max<uint32_t>(opt.window_s - 1, 1);
        fetch();
        break;
      case 'p':
      case 'P':
        paused = !paused;
        break;
      case 'h':
      case 'H':
      case '?':
        help = true;
        break;
      case '\n':
      case KEY_ENTER:
      case 't':
      case 'T': {
        if (rows.empty()) break;
        const auto* w = rows[static_cast<size_t>(selected)];
        correlate::TraceId id{};
        if (w->slowest_trace_id().size() != id.size()) {
          error = "no request in the window to show";
          break;
        }
        std::copy(w->slowest_trace_id().begin(), w->slowest_trace_id().end(), id.begin());
        auto tr = source.GetTrace(id);
        if (!tr.ok()) {
          error = std::string(tr.status().message());
          break;
        }
        trace_lines = RenderTrace(*tr, HexOf(w->slowest_trace_id()), COLS);
        trace_offset = 0;
        break;
      }
      default:
        break;
    }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return 0;
}

}  // namespace isotrace::cli
