#include "daemon/cli/render.h"

#include "daemon/api/convert.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "absl/time/time.h"
#include "daemon/layers/identity.h"
#include "daemon/util/ascii.h"
#include "exporters/otlp/semconv.h"
#include "nlohmann/json.hpp"

namespace isotrace::cli {

namespace {

struct ColumnDef {
  Column column;
  std::string_view title;
  std::string_view key;
  int width;  // at 80 columns
  bool left;
};

// 68 characters of cells + 12 separators = 80.
constexpr ColumnDef kColumns[] = {
    {Column::kService, "SERVICE", "service", 12, true},
    {Column::kStack, "STACK", "stack", 7, true},
    {Column::kRate, "REQ/S", "rps", 5, false},
    {Column::kErrors, "ERR%", "err", 4, false},
    {Column::kP50, "P50", "p50", 5, false},
    {Column::kP99, "P99", "p99", 5, false},
    {Column::kCpu, "CPU", "cpu", 3, false},
    {Column::kRunq, "RUNQ", "runq", 4, false},
    {Column::kThrottled, "THROT", "throt", 5, false},
    {Column::kBlkio, "IO", "io", 3, false},
    {Column::kMemstall, "STALL", "stall", 5, false},
    {Column::kSteal, "STEAL", "steal", 5, false},
    {Column::kRetransmits, "RTX/s", "retx", 5, false},
    {Column::kVerdict, "VERDICT", "verdict", 0, true},
};

const ColumnDef& Def(Column c) { return kColumns[static_cast<size_t>(c)]; }

using util::ToLower;

bool Contains(std::string_view hay, std::string_view needle) {
  return ToLower(hay).find(ToLower(needle)) != std::string::npos;
}

// Terminal cells take printable ASCII only: a service name is whatever a process set in
// its environment, and a control character would move the cursor.
std::string Printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  return out;
}

std::string Fit(std::string_view s, int width, bool left) {
  std::string p = Printable(s);
  if (width <= 0) return "";
  if (static_cast<int>(p.size()) > width) {
    p = p.substr(0, static_cast<size_t>(width - 1)) + "~";
  }
  std::string pad(static_cast<size_t>(width) - p.size(), ' ');
  return left ? p + pad : pad + p;
}

std::string Printf(const char* fmt, double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

// The share column values as the API names them (Share.column).
std::string_view ShareColumn(Column c) {
  switch (c) {
    case Column::kCpu: return "CPU";
    case Column::kRunq: return "RUNQ";
    case Column::kThrottled: return "THROT";
    case Column::kBlkio: return "IO";
    case Column::kMemstall: return "STALL";
    case Column::kSteal: return "STEAL";
    default: return "";
  }
}

double ShareValue(const v1::Workload& w, std::string_view column) {
  for (const auto& s : w.shares())
    if (s.column() == column) return s.ratio();
  return -1;
}

// Sort value for numeric columns (absent = -1 so it sorts last when descending).
double SortValue(const v1::Workload& w, Column c) {
  switch (c) {
    case Column::kRate: return w.requests_per_second();
    case Column::kErrors: return w.error_ratio();
    case Column::kP50: return w.p50_seconds();
    case Column::kP99: return w.p99_seconds();
    case Column::kRetransmits:
      return w.has_retransmits_per_second() ? w.retransmits_per_second() : -1;
    case Column::kVerdict: return w.has_verdict_share() ? w.verdict_share() : -1;
    default: {
      std::string_view col = ShareColumn(c);
      return col.empty() ? 0 : ShareValue(w, col);
    }
  }
}

std::string Cell(const v1::Workload& w, Column c) {
  switch (c) {
    case Column::kService: return w.service();
    case Column::kStack: return w.stack().empty() ? "-" : layers::AbbreviateStack(w.stack());
    case Column::kRate: return FormatRate(w.requests_per_second());
    case Column::kErrors: return w.requests() ? FormatPercent(w.error_ratio()) : "-";
    case Column::kP50: return w.requests() ? FormatSeconds(w.p50_seconds()) : "-";
    case Column::kP99: return w.requests() ? FormatSeconds(w.p99_seconds()) : "-";
    case Column::kRetransmits:
      return w.has_retransmits_per_second() ? FormatRate(w.retransmits_per_second()) : "-";
    case Column::kVerdict: return VerdictText(w);
    default: return ShareCell(w, ShareColumn(c));
  }
}

}  // namespace

std::string_view ColumnTitle(Column c) { return Def(c).title; }
std::string_view ColumnKey(Column c) { return Def(c).key; }

bool ParseColumnKey(std::string_view key, Column* out) {
  std::string k = ToLower(key);
  for (const auto& d : kColumns) {
    if (k == d.key || k == ToLower(d.title)) {
      *out = d.column;
      return true;
    }
  }
  return false;
}

bool MatchesFilter(const v1::Workload& w, std::string_view filter) {
  filter = util::Trim(filter);
  if (filter.empty()) return true;
  auto field = [&](std::string_view prefix) -> std::optional<std::string_view> {
    if (filter.size() > prefix.size() && ToLower(filter.substr(0, prefix.size())) == prefix)
      return filter.substr(prefix.size());
    return std::nullopt;
  };
  if (auto v = field("ns:")) return Contains(w.namespace_(), *v);
  if (auto v = field("namespace:")) return Contains(w.namespace_(), *v);
  if (auto v = field("stack:")) return Contains(w.stack(), *v);
  if (auto v = field("svc:")) return Contains(w.service(), *v);
  if (auto v = field("service:")) return Contains(w.service(), *v);
  return Contains(w.service(), filter) || Contains(w.namespace_(), filter) ||
         Contains(w.stack(), filter);
}

std::vector<const v1::Workload*> VisibleRows(const v1::TopResponse& top, const ViewState& state) {
  std::vector<const v1::Workload*> rows;
  for (const auto& w : top.workloads())
    if (MatchesFilter(w, state.filter)) rows.push_back(&w);
  auto tie = [](const v1::Workload* a, const v1::Workload* b) {
    return a->service() != b->service() ? a->service() < b->service() : a->key() < b->key();
  };
  std::stable_sort(rows.begin(), rows.end(), [&](const v1::Workload* a, const v1::Workload* b) {
    if (state.sort == Column::kService || state.sort == Column::kStack) {
      const std::string& x = state.sort == Column::kService ? a->service() : a->stack();
      const std::string& y = state.sort == Column::kService ? b->service() : b->stack();
      if (x != y) return state.descending ? x > y : x < y;
      return tie(a, b);
    }
    double x = SortValue(*a, state.sort), y = SortValue(*b, state.sort);
    if (x != y) return state.descending ? x > y : x < y;
    return tie(a, b);
  });
  return rows;
}

std::vector<ColumnSpan> Layout(int width) {
  std::map<Column, int> w;
  for (const auto& d : kColumns) w[d.column] = d.width;
  int extra = width - 80;
  if (extra < 0) {
    // Narrower than 80: give up SERVICE/STACK characters first (min 6 and 3).
    int cut = -extra;
    int from_service = std::min(cut, w[Column::kService] - 6);
    w[Column::kService] -= from_service;
    cut -= from_service;
    w[Column::kStack] -= std::min(cut, w[Column::kStack] - 3);
    extra = 0;
  }
  bool verdict = extra >= 11;
  if (verdict) {
    int v = std::min(extra - 1, 24);
    w[Column::kVerdict] = v;
    extra -= v + 1;
  }
  int to_service = std::min(extra / 2 + extra % 2, 28);
  w[Column::kService] += to_service;
  extra -= to_service;
  int to_stack = std::min(extra, 28);
  w[Column::kStack] += to_stack;
  extra -= to_stack;
  if (verdict) w[Column::kVerdict] += std::min(extra, 40);

  std::vector<ColumnSpan> out;
  int x = 0;
  for (const auto& d : kColumns) {
    if (d.column == Column::kVerdict && !verdict) continue;
    out.push_back({d.column, x, w[d.column]});
    x += w[d.column] + 1;
  }
  return out;
}

std::string HeaderLine(const std::vector<ColumnSpan>& layout) {
  std::string line;
  for (const auto& c : layout) {
    if (!line.empty()) line += ' ';
    line += Fit(Def(c.column).title, c.width, Def(c.column).left);
  }
  return line;
}

std::string RowLine(const v1::Workload& w, const std::vector<ColumnSpan>& layout) {
  std::string line;
  for (const auto& c : layout) {
    if (!line.empty()) line += ' ';
    line += Fit(Cell(w, c.column), c.width, Def(c.column).left);
  }
  return line;
}

std::vector<std::string> RenderTable(const v1::TopResponse& top, const ViewState& state, int width) {
  auto layout = Layout(width);
  std::vector<std::string> lines;
  lines.push_back(HeaderLine(layout));
  for (const auto* w : VisibleRows(top, state)) lines.push_back(RowLine(*w, layout));
  return lines;
}

std::string StatusLine(const v1::TopResponse& top, const ViewState& state) {
  size_t shown = VisibleRows(top, state).size();
  std::string s = "isotrace top - " + Printable(top.host_name()) + " - " + top.mode() + " - " +
                  std::to_string(top.window_seconds()) + "s window - " + std::to_string(shown);
  if (shown != static_cast<size_t>(top.workloads_size()))
    s += "/" + std::to_string(top.workloads_size());
  s += " workload" + std::string(shown == 1 ? "" : "s") + " - sort " +
       std::string(ColumnTitle(state.sort)) + (state.descending ? " desc" : " asc");
  if (!state.filter.empty()) s += " - filter '" + Printable(state.filter) + "'";
  uint64_t lost = 0;
  for (const auto& p : top.probes()) lost += p.lost();
  if (lost > 0) s += " - " + std::to_string(lost) + " events lost";
  return s;
}

std::string DetailLine(const v1::Workload& w) {
  std::string s = Printable(w.service());
  if (!w.namespace_().empty()) s += " ns=" + Printable(w.namespace_());
  s += " stack=" + (w.stack().empty() ? std::string("-") : Printable(w.stack()));
  if (w.pids_size() > 0) {
    s += " pids=";
    for (int i = 0; i < w.pids_size(); ++i) s += (i ? "," : "") + std::to_string(w.pids(i));
  }
  s += " total=" + std::to_string(w.total_requests()) + "req/" + std::to_string(w.total_errors()) +
       "err";
  if (!w.slowest_trace_id().empty()) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (unsigned char c : w.slowest_trace_id()) {
      hex += kHex[c >> 4];
      hex += kHex[c & 15];
    }
    s += " slowest=" + FormatSeconds(w.slowest_seconds()) + " trace " + hex;
  }
  if (!w.verdict_layer().empty()) s += " verdict=" + VerdictText(w);
  return s;
}

std::string FormatSeconds(double s) {
  if (s < 0) s = 0;
  if (s < 0.001) return Printf("%.0fus", s * 1e6);
  if (s < 0.00995) return Printf("%.1fms", s * 1e3);
  if (s < 0.9995) return Printf("%.0fms", s * 1e3);
  if (s < 9.995) return Printf("%.2fs", s);
  if (s < 99.95) return Printf("%.1fs", s);
  if (s < 9999.5) return Printf("%.0fs", s);
  return ">2h";
}

std::string FormatRate(double v) {
  if (v < 0) v = 0;
  if (v < 99.95) return Printf("%.1f", v);
  if (v < 9999.5) return Printf("%.0f", v);
  if (v < 99950) return Printf("%.1fk", v / 1e3);
  if (v < 999500) return Printf("%.0fk", v / 1e3);
  return Printf("%.1fM", v / 1e6);
}

std::string FormatPercent(double ratio) {
  double p = std::clamp(ratio, 0.0, 1.0) * 100;
  return p < 9.95 ? Printf("%.1f", p) : Printf("%.0f", p);
}

std::string ShareCell(const v1::Workload& w, std::string_view column) {
  double v = ShareValue(w, column);
  if (v < 0) return "-";
  return Printf("%.0f", std::clamp(v, 0.0, 1.0) * 100);
}

std::string VerdictText(const v1::Workload& w) {
  if (w.verdict_layer().empty() && w.verdict_cause().empty()) return "-";
  std::string s = w.verdict_layer();
  if (!w.verdict_cause().empty()) s += (s.empty() ? "" : "/") + w.verdict_cause();
  if (w.has_verdict_share()) s += " " + Printf("%.0f", std::clamp(w.verdict_share(), 0.0, 1.0) * 100) + "%";
  if (!w.verdict_service().empty() && w.verdict_service() != w.service())
    s += " @" + w.verdict_service();
  return Printable(s);
}

std::string TopJson(const v1::TopResponse& top, const ViewState& state) {
  using nlohmann::json;
  auto hex = [](const std::string& bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
    return out;
  };
  auto attr = [](const v1::Attribute& a) -> json {
    switch (a.value_case()) {
      case v1::Attribute::kStringValue: return a.string_value();
      case v1::Attribute::kIntValue: return a.int_value();
      case v1::Attribute::kDoubleValue: return a.double_value();
      case v1::Attribute::kBoolValue: return a.bool_value();
      default: return nullptr;
    }
  };
  json j;
  j["time_unix_nano"] = top.time_unix_nano();
  j["host"] = top.host_name();
  j["mode"] = top.mode();
  j["window_seconds"] = top.window_seconds();
  j["spans_total"] = top.spans_total();
  json probes = json::object();
  for (const auto& p : top.probes()) probes[p.probe()] = {{"events", p.events()}, {"lost", p.lost()}};
  j["probes"] = probes;
  if (top.exporting())
    j["export"] = {{"spans_sent", top.spans_sent()},
                   {"spans_dropped", top.spans_dropped()},
                   {"queue_size", top.export_queue_size()}};
  else
    j["export"] = nullptr;
  json rows = json::array();
  for (const auto* w : VisibleRows(top, state)) {
    json r;
    r["service"] = w->service();
    r["namespace"] = w->namespace_();
    r["stack"] = w->stack();
    r["container_id"] = w->container_id();
    r["pids"] = json(std::vector<uint32_t>(w->pids().begin(), w->pids().end()));
    r["requests"] = w->requests();
    r["errors"] = w->errors();
    r["requests_per_second"] = w->requests_per_second();
    r["error_ratio"] = w->error_ratio();
    r["p50_seconds"] = w->p50_seconds();
    r["p99_seconds"] = w->p99_seconds();
    json shares = json::object();
    for (const auto& s : w->shares()) shares[s.cause()] = s.ratio();
    r["shares"] = shares;
    r["retransmits_per_second"] =
        w->has_retransmits_per_second() ? json(w->retransmits_per_second()) : json(nullptr);
    if (w->verdict_layer().empty() && w->verdict_cause().empty()) {
      r["verdict"] = nullptr;
    } else {
      r["verdict"] = {{"service", w->verdict_service()},
                      {"layer", w->verdict_layer()},
                      {"cause", w->verdict_cause()},
                      {"share", w->has_verdict_share() ? json(w->verdict_share()) : json(nullptr)}};
    }
    r["total_requests"] = w->total_requests();
    r["total_errors"] = w->total_errors();
    r["slowest_trace_id"] = hex(w->slowest_trace_id());
    r["slowest_seconds"] = w->slowest_seconds();
    json res = json::object();
    for (const auto& a : w->resource()) res[a.key()] = attr(a);
    r["resource"] = res;
    rows.push_back(std::move(r));
  }
  j["workloads"] = rows;
  // Replace invalid UTF-8 (resource strings come from process environments) rather than
  // throwing mid-output.
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

namespace {

struct BreakdownPart {
  std::string_view attribute;
  char mark;
  std::string_view legend;
};
constexpr BreakdownPart kParts[] = {
    {otlp::semconv::kAppOncpuNs, 'C', "cpu"},
    {otlp::semconv::kKernelRunqNs, 'R', "run queue"},
    {otlp::semconv::kContainerThrottledNs, 'T', "throttled"},
    {otlp::semconv::kKernelBlkioNs, 'I', "block I/O"},
    {otlp::semconv::kKernelMemstallNs, 'M', "memory stall"},
    {otlp::semconv::kVmStealNs, 'S', "steal"},
    {otlp::semconv::kOffcpuOtherNs, 'o', "other off-CPU"},
};

std::optional<double> NumberAttr(const v1::Span& s, std::string_view key) {
  for (const auto& a : s.attributes()) {
    if (a.key() != key) continue;
    if (a.value_case() == v1::Attribute::kIntValue) return static_cast<double>(a.int_value());
    if (a.value_case() == v1::Attribute::kDoubleValue) return a.double_value();
  }
  return std::nullopt;
}

std::string StringAttr(const v1::Span& s, std::string_view key) {
  for (const auto& a : s.attributes())
    if (a.key() == key && a.value_case() == v1::Attribute::kStringValue) return a.string_value();
  return "";
}

std::string Bar(const v1::Span& s, int width) {
  double dur = static_cast<double>(s.end_time_unix_nano() - std::min(s.end_time_unix_nano(), s.start_time_unix_nano()));
  std::string bar;
  bool any = false;
  for (const auto& p : kParts) {
    auto v = NumberAttr(s, p.attribute);
    if (!v) continue;
    any = true;
    if (dur <= 0) continue;
    int n = static_cast<int>(std::lround(std::clamp(*v / dur, 0.0, 1.0) * width));
    n = std::min(n, width - static_cast<int>(bar.size()));
    bar.append(static_cast<size_t>(std::max(n, 0)), p.mark);
  }
  if (!any) return Fit("no breakdown", width, true);
  bar.append(static_cast<size_t>(width - static_cast<int>(bar.size())), '.');
  return bar;
}

}  // namespace

std::vector<std::string> RenderTrace(const v1::GetTraceResponse& trace, std::string_view trace_id_hex,
                                     int width) {
  std::vector<std::string> out;
  const auto& spans = trace.spans();
  out.push_back("trace " + std::string(trace_id_hex) + ": " + std::to_string(spans.size()) +
                " span" + (spans.size() == 1 ? "" : "s") + " on this node");
  if (spans.empty()) return out;

  std::map<std::string, int> by_id;
  for (int i = 0; i < spans.size(); ++i) by_id.emplace(spans[i].span_id(), i);
  std::map<int, std::vector<int>> children;
  std::vector<int> roots;
  uint64_t t0 = UINT64_MAX;
  for (int i = 0; i < spans.size(); ++i) {
    t0 = std::min<uint64_t>(t0, spans[i].start_time_unix_nano());
    const std::string& parent = spans[i].parent_span_id();
    auto it = parent.empty() ? by_id.end() : by_id.find(parent);
    if (it == by_id.end() || it->second == i) roots.push_back(i);
    else children[it->second].push_back(i);
  }
  auto by_start = [&](int a, int b) {
    return spans[a].start_time_unix_nano() < spans[b].start_time_unix_nano();
  };
  std::sort(roots.begin(), roots.end(), by_start);
  for (auto& [k, v] : children) std::sort(v.begin(), v.end(), by_start);

  constexpr int kBar = 20;
  // Right part: " +offset duration |bar|" = 1 + 8 + 1 + 6 + 2 + kBar + 1.
  const int right = 1 + 8 + 1 + 6 + 2 + kBar + 1;
  const int left = std::max(20, width - right);
  out.push_back(Fit("SPAN", left, true) + " " + Fit("START", 8, false) + " " + Fit("TIME", 6, false) +
                "  " + Fit("BREAKDOWN", kBar, true));
  std::set<int> seen;
  std::function<void(int, int)> walk = [&](int i, int depth) {
    if (!seen.insert(i).second) return;  // a malformed parent loop
    const v1::Span& s = spans[i];
    std::string indent(static_cast<size_t>(std::min(depth, 12) * 2), ' ');
    std::string what = s.method().empty() ? s.name() : s.method();
    if (!s.path().empty()) what += " " + s.path();
    if (s.status_code() > 0) what += " " + std::to_string(s.status_code());
    else if (!s.error_type().empty()) what += " " + s.error_type();
    std::string who = s.service() + "[" + std::to_string(s.pid()) + "]" +
                      (s.kind() == 3 ? " client" : "");
    double start = static_cast<double>(s.start_time_unix_nano() - std::min<uint64_t>(t0, s.start_time_unix_nano())) / 1e9;
    double dur = static_cast<double>(s.end_time_unix_nano() - std::min(s.end_time_unix_nano(), s.start_time_unix_nano())) / 1e9;
    out.push_back(Fit(indent + what + "  " + who, left, true) + " " + Fit("+" + FormatSeconds(start), 8, false) +
                  " " + Fit(FormatSeconds(dur), 6, false) + " |" + Bar(s, kBar) + "|");
    std::string verdict_layer = StringAttr(s, otlp::semconv::kVerdictLayer);
    if (!verdict_layer.empty()) {
      std::string v = indent + "  verdict: " + verdict_layer;
      std::string cause = StringAttr(s, otlp::semconv::kVerdictCause);
      if (!cause.empty()) v += "/" + cause;
      if (auto share = NumberAttr(s, otlp::semconv::kVerdictShare))
        v += " " + Printf("%.0f", std::clamp(*share, 0.0, 1.0) * 100) + "%";
      std::string svc = StringAttr(s, otlp::semconv::kVerdictService);
      if (!svc.empty()) v += " in " + svc;
      out.push_back(Fit(v, width, true));
    }
    for (const auto& e : s.events())
      out.push_back(Fit(indent + "  ! " + e.name(), width, true));
    if (auto it = children.find(i); it != children.end())
      for (int c : it->second) walk(c, depth + 1);
  };
  for (int r : roots) walk(r, 0);
  for (int i = 0; i < spans.size(); ++i) walk(i, 0);  // anything a cycle hid

  std::string legend = "bar:";
  for (const auto& p : kParts) legend += std::string(" ") + p.mark + "=" + std::string(p.legend);
  legend += " .=unaccounted";
  out.push_back(Fit(legend, width, true));
  return out;
}

absl::StatusOr<absl::Duration> ParseDurationFlag(std::string_view text) {
  const std::string form = "expected a duration like 30s, 5m, 1h or 1h30m";
  absl::Duration d;
  // absl's grammar is Go's time.ParseDuration; it also takes "inf" and signs, which a
  // look-back window cannot be.
  if (text.empty() || !absl::ParseDuration(absl::string_view(text.data(), text.size()), &d) ||
      d == absl::InfiniteDuration() || d == -absl::InfiniteDuration())
    return absl::InvalidArgumentError("'" + std::string(text) + "': " + form);
  if (d <= absl::ZeroDuration())
    return absl::InvalidArgumentError("'" + std::string(text) + "': must be longer than 0 (" +
                                      form + ")");
  const absl::Duration whole = absl::Ceil(d, absl::Seconds(1));
  if (whole > absl::Seconds(UINT32_MAX))
    return absl::InvalidArgumentError("'" + std::string(text) + "': too long (at most " +
                                      std::to_string(UINT32_MAX) + "s)");
  return whole;
}

std::string FormatDurationFlag(absl::Duration d) { return absl::FormatDuration(d); }

std::string FormatMillis(int64_t ns) {
  const double ms = static_cast<double>(std::max<int64_t>(ns, 0)) / 1e6;
  if (ms < 1) return Printf("%.2fms", ms);
  if (ms < 999.95) return Printf("%.1fms", ms);
  return Printf("%.0fms", ms);
}

namespace {


std::string_view KindName(int32_t kind) {
  switch (kind) {
    case 2:
      return "SERVER";
    case 3:
      return "CLIENT";
    default:
      return "SPAN";
  }
}

// Untrusted strings (service names, paths) stay on one printable line; empty shows as "-".
std::string Text(std::string_view s) { return s.empty() ? "-" : Printable(s); }

}  // namespace

std::vector<std::string> RenderLocate(const v1::LocateResponse& resp, absl::Duration since,
                                      absl::TimeZone tz) {
  std::vector<std::string> out;
  if (resp.verdicts_size() == 0) {
    out.push_back("no slow or failed traces in the last " + FormatDurationFlag(since));
    return out;
  }
  const absl::Time now = absl::FromUnixNanos(static_cast<int64_t>(resp.time_unix_nano()));
  for (const auto& v : resp.verdicts()) {
    if (!out.empty()) out.push_back("");
    // Time of day; with the date once the trace ended on another day than "now".
    const absl::Time end = absl::FromUnixNanos(static_cast<int64_t>(v.end_time_unix_nano()));
    std::string when = absl::FormatTime("%H:%M:%S", end, tz);
    if (absl::FormatTime("%Y-%m-%d", end, tz) != absl::FormatTime("%Y-%m-%d", now, tz))
      when = absl::FormatTime("%Y-%m-%d ", end, tz) + when;
    std::string what =
        v.method().empty() && v.path().empty()
            ? "-"
            : Printable(v.method()) + (v.path().empty() ? "" : " " + Printable(v.path()));
    std::string status =
        v.status_code() > 0 ? std::to_string(v.status_code()) : Text(v.error_type());
    std::string usual =
        v.baseline_ns() > 0 ? "(usual " + FormatMillis(v.baseline_ns()) + ")" : "(no baseline yet)";
    out.push_back(when + " " + api::HexId(v.trace_id()) + " " + Text(v.root_service()) + " " + what +
                  " " + status + " " + FormatMillis(v.duration_ns()) + " " + usual + " " +
                  Text(v.reason()));
    out.push_back("  verdict: " + Text(v.service()) + " / " + Text(v.layer()) + " / " +
                  Text(v.cause()) + "  " + FormatPercent(v.share()) + "%");
    for (int i = 0; i < std::min(v.evidence_size(), 3); ++i) {
      const auto& e = v.evidence(i);
      std::string line = "  evidence: " + Text(e.service()) + " " + Text(e.layer()) + " " +
                         Text(e.cause()) + " +" + FormatMillis(e.excess_ns()) + " (" +
                         FormatMillis(e.value_ns());
      line += e.baseline_ns() > 0 ? " vs usual " + FormatMillis(e.baseline_ns()) + ")"
                                  : ", no baseline yet)";
      out.push_back(std::move(line));
    }
    if (v.critical_path_size() > 0) {
      std::string chain = "  path: ";
      for (int i = 0; i < v.critical_path_size(); ++i) {
        const auto& h = v.critical_path(i);
        if (i > 0) chain += " \u2192 ";
        chain += Text(h.service()) + " " + std::string(KindName(h.kind())) + " " +
                 FormatMillis(h.duration_ns());
      }
      out.push_back(std::move(chain));
    }
  }
  return out;
}

std::string LocateJson(const v1::LocateResponse& resp) {
  // Insertion order: the document reads in the order docs/cli.md shows it.
  using json = nlohmann::ordered_json;
  json j;
  j["mode"] = resp.mode();
  j["time_unix_nano"] = resp.time_unix_nano();
  j["verdicts_total"] = resp.verdicts_total();
  json verdicts = json::array();
  for (const auto& v : resp.verdicts()) {
    json r;
    r["trace_id"] = api::HexId(v.trace_id());
    r["span_id"] = api::HexId(v.span_id());
    r["start_time_unix_nano"] = v.start_time_unix_nano();
    r["end_time_unix_nano"] = v.end_time_unix_nano();
    r["decided_time_unix_nano"] = v.decided_time_unix_nano();
    r["reason"] = v.reason();
    r["root_service"] = v.root_service();
    r["method"] = v.method();
    r["path"] = v.path();
    r["status_code"] = v.status_code();
    r["error_type"] = v.error_type();
    r["duration_ns"] = v.duration_ns();
    r["baseline_ns"] = v.baseline_ns();
    r["service"] = v.service();
    r["layer"] = v.layer();
    r["cause"] = v.cause();
    r["share"] = v.share();
    json evidence = json::array();
    for (const auto& e : v.evidence())
      evidence.push_back({{"service", e.service()},
                          {"layer", e.layer()},
                          {"cause", e.cause()},
                          {"value_ns", e.value_ns()},
                          {"baseline_ns", e.baseline_ns()},
                          {"excess_ns", e.excess_ns()}});
    r["evidence"] = std::move(evidence);
    json hops = json::array();
    for (const auto& h : v.critical_path())
      hops.push_back({{"service", h.service()},
                      {"kind", std::string(KindName(h.kind()))},
                      {"span_id", api::HexId(h.span_id())},
                      {"method", h.method()},
                      {"path", h.path()},
                      {"peer", h.peer()},
                      {"duration_ns", h.duration_ns()},
                      {"baseline_ns", h.baseline_ns()}});
    r["critical_path"] = std::move(hops);
    r["spans"] = v.spans();
    verdicts.push_back(std::move(r));
  }
  j["verdicts"] = std::move(verdicts);
  // Service names and paths come from observed traffic: replace invalid UTF-8 rather
  // than throwing mid-output.
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

}  // namespace isotrace::cli
