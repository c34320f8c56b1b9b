#include "daemon/locate/verdict_text.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace isotrace::locate {

namespace {
std::string Ms(int64_t ns) { return absl::StrFormat("%.1f ms", static_cast<double>(ns) / 1e6); }
}  // namespace

std::string Summary(const Verdict& v) {
  std::string s = absl::StrCat(v.reason, ": ", v.service, " ", v.layer, "/", v.cause, " explains ",
                               absl::StrFormat("%.0f%%", v.share * 100), " of ", Ms(v.duration_ns));
  if (v.baseline_ns > 0) absl::StrAppend(&s, " (usual ", Ms(v.baseline_ns), ")");
  if (!v.error_type.empty()) absl::StrAppend(&s, " error ", v.error_type);
  return s;
}

std::string EvidenceText(const Verdict& v, size_t max) {
  std::string out;
  for (size_t i = 0; i < v.evidence.size() && i < max; i++) {
    const Evidence& e = v.evidence[i];
    if (!out.empty()) out += "; ";
    absl::StrAppend(&out, e.service, "/", e.layer, "/", e.cause, " +", Ms(e.excess_ns), " (", Ms(e.value_ns),
                    " vs ", Ms(e.baseline_ns), ")");
  }
  return out;
}

std::string PathText(const Verdict& v) {
  std::string out;
  for (const auto& h : v.path_hops) {
    if (!out.empty()) out += " → ";
    absl::StrAppend(&out, h.service, h.kind == correlate::SpanKind::kClient ? " CLIENT " : " SERVER ",
                    Ms(h.duration_ns));
  }
  return out;
}

}  // namespace isotrace::locate
