#pragma once
// What `isotrace top`, `trace` and `locate` print, as pure functions of the local API's
// messages: the ncurses view, `--once` and the unit tests all go through these, so the
// terminal and a script see the same numbers.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "isotrace/api/v1/api.pb.h"

namespace isotrace::cli {

namespace v1 = ::isotrace::api::v1;

enum class Column {
  kService,
  kStack,
  kRate,
  kErrors,
  kP50,
  kP99,
  kCpu,
  kRunq,
  kThrottled,
  kBlkio,
  kMemstall,
  kSteal,
  kRetransmits,
  kVerdict,
  kCount
};
std::string_view ColumnTitle(Column c);
// The --sort names: service stack rps err p50 p99 cpu runq throt io stall steal retx verdict.
std::string_view ColumnKey(Column c);
bool ParseColumnKey(std::string_view key, Column* out);

struct ViewState {
  Column sort = Column::kRate;
  bool descending = true;
  // "ns:<text>", "stack:<text>", "svc:<text>" match that field; plain text matches any
  // of service, namespace and stack. Case-insensitive substring.
  std::string filter;
};

bool MatchesFilter(const v1::Workload& w, std::string_view filter);
// Filtered and sorted (ties by service, then key, so the order is stable).
std::vector<const v1::Workload*> VisibleRows(const v1::TopResponse& top, const ViewState& state);

struct ColumnSpan {
  Column column;
  int x = 0;      // first character
  int width = 0;  // characters
};
// Column positions for a terminal `width` characters wide. Everything but VERDICT fits
// in 80 columns; VERDICT appears from 91 on, and wider terminals widen SERVICE, STACK and
// VERDICT.
std::vector<ColumnSpan> Layout(int width);

std::string HeaderLine(const std::vector<ColumnSpan>& layout);
std::string RowLine(const v1::Workload& w, const std::vector<ColumnSpan>& layout);
// Header + rows, for --once.
std::vector<std::string> RenderTable(const v1::TopResponse& top, const ViewState& state, int width);
// The one-line summary above the table.
std::string StatusLine(const v1::TopResponse& top, const ViewState& state);
// What the table cannot show for one row (full stack, pids, totals, verdict, slowest trace).
std::string DetailLine(const v1::Workload& w);

// Compact numbers for fixed-width cells.
std::string FormatSeconds(double s);  // "850us" "1.2ms" "123ms" "1.23s" "12.3s"
std::string FormatRate(double per_s);  // "0.5" "12.3" "1234" "12.3k"
std::string FormatPercent(double ratio);  // "0.0" "12.3" "100" (no % sign)
std::string ShareCell(const v1::Workload& w, std::string_view column);  // "42", "-"
std::string VerdictText(const v1::Workload& w);  // "kernel/runqueue 62%" or "-"

// The snapshot as JSON (one object; see docs/cli.md for the schema).
std::string TopJson(const v1::TopResponse& top, const ViewState& state);

// `isotrace trace`: an indented tree of the spans with their durations and a bar per span
// showing its vertical breakdown. `width` bounds each line.
std::vector<std::string> RenderTrace(const v1::GetTraceResponse& trace, std::string_view trace_id_hex,
                                     int width);

// `isotrace locate --since/--watch`: a Go-style duration, decimal numbers each with a
// unit (ns us ms s m h): "30s", "5m", "1h30m", "1.5h". The API counts whole seconds, so
// a fraction rounds up; at least 1s, at most 2^32-1 s. InvalidArgument says the form.
absl::StatusOr<absl::Duration> ParseDurationFlag(std::string_view text);
// The same form back, "5m", "1h30m", "10s".
std::string FormatDurationFlag(absl::Duration d);
// Nanoseconds as milliseconds: "0.42ms" "12.3ms" "120.0ms" "1234ms".
std::string FormatMillis(int64_t ns);

// `isotrace locate`: one block per verdict (newest first, as the response has them),
// blank lines between blocks; times in `tz`. No verdicts: the one line
// "no slow or failed traces in the last <since>".
//   14:03:07 4bf9…4736 frontend GET /checkout 200 120.0ms (usual 20.0ms) slow
//     verdict: pricing / kernel / block_io  62%
//     evidence: pricing kernel block_io +75.0ms (80.0ms vs usual 5.0ms)
//     path: frontend SERVER 120.0ms → frontend CLIENT 110.0ms → pricing SERVER 100.0ms
std::vector<std::string> RenderLocate(const v1::LocateResponse& resp, absl::Duration since,
                                      absl::TimeZone tz);
// The response as one JSON document: {"mode", "time_unix_nano", "verdicts_total",
// "verdicts": [...]}, ids in hex, span kinds as "SERVER"/"CLIENT" (docs/cli.md).
std::string LocateJson(const v1::LocateResponse& resp);

}  // namespace isotrace::cli
