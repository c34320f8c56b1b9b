#include "exporters/prometheus/text.h"

#include <charconv>
#include <cmath>
#include <map>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "exporters/otlp/encode.h"

namespace isotrace::prometheus {

namespace {

bool NameChar(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

std::string Sanitize(std::string_view in, bool allow_colon) {
  std::string out;
  out.reserve(in.size() + 1);
  for (char c : in) {
    bool ok = NameChar(c, false) && (allow_colon || c != ':');
    char w = ok ? c : '_';
    if (w == '_' && !out.empty() && out.back() == '_') continue;
    out += w;
  }
  return out;
}

std::string AttrText(const correlate::AttrValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        // Label values must be UTF-8 or Prometheus rejects the whole scrape; service names
        // and paths come from process environments. Same repair as the OTLP encoder.
        if constexpr (std::is_same_v<T, std::string>) return otlp::SanitizeUtf8(x);
        else if constexpr (std::is_same_v<T, bool>) return x ? "true" : "false";
        else if constexpr (std::is_same_v<T, double>) return FormatDouble(x);
        else return absl::StrCat(x);
      },
      v);
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

using Labels = std::vector<std::pair<std::string, std::string>>;

// Resource labels first, then the point's; a point label replaces a resource label of
// the same name. Sorted by name, so a series reads the same on every scrape.
Labels MergeLabels(const Labels& resource, const std::vector<correlate::Attribute>& attrs) {
  std::map<std::string, std::string> m;
  for (const auto& [k, v] : resource) m.emplace(k, v);
  for (const auto& a : attrs) m[SanitizeLabel(a.key)] = AttrText(a.value);
  return Labels(m.begin(), m.end());
}

void AppendSeries(std::string* out, std::string_view name, const Labels& labels,
                  const std::pair<std::string, std::string>* extra, std::string_view value) {
  out->append(name);
  if (!labels.empty() || extra != nullptr) {
    out->push_back('{');
    bool first = true;
    auto put = [&](const std::string& k, const std::string& v) {
      if (!first) out->push_back(',');
      first = false;
      absl::StrAppend(out, k, "=\"", EscapeLabelValue(v), "\"");
    };
    for (const auto& [k, v] : labels) put(k, v);
    if (extra) put(extra->first, extra->second);
    out->push_back('}');
  }
  out->push_back(' ');
  out->append(value);
  out->push_back('\n');
}

}  // namespace

std::string SanitizeName(std::string_view name) {
  std::string out = Sanitize(name, /*allow_colon=*/true);
  if (out.empty()) return "_";
  if (out[0] >= '0' && out[0] <= '9') out.insert(out.begin(), '_');
  return out;
}

std::string SanitizeLabel(std::string_view key) {
  std::string out = Sanitize(key, /*allow_colon=*/false);
  if (out.empty()) return "_";
  if (out[0] >= '0' && out[0] <= '9') out.insert(0, "key_");
  // "le" and "quantile" are the bucket and summary labels: an attribute named so would
  // give a series the label twice. (Prometheus' reserved "__" prefix cannot occur: runs
  // of '_' collapse above.)
  if (out == "le" || out == "quantile") out.insert(0, "key");
  return out;
}

std::string UnitSuffix(std::string_view unit) {
  // Annotations ("{request}") carry no unit; strip them wherever they are.
  std::string u;
  int depth = 0;
  for (char c : unit) {
    if (c == '{') depth++;
    else if (c == '}') depth = depth > 0 ? depth - 1 : 0;
    else if (depth == 0) u += c;
  }
  if (u.empty()) return "";
  static const std::map<std::string_view, std::string_view> kUnits = {
      {"d", "days"},        {"h", "hours"},        {"min", "minutes"},  {"s", "seconds"},
      {"ms", "milliseconds"}, {"us", "microseconds"}, {"ns", "nanoseconds"},
      {"By", "bytes"},      {"KiBy", "kibibytes"}, {"MiBy", "mebibytes"}, {"GiBy", "gibibytes"},
      {"TiBy", "tibibytes"}, {"KBy", "kilobytes"}, {"MBy", "megabytes"}, {"GBy", "gigabytes"},
      {"TBy", "terabytes"}, {"m", "meters"},      {"V", "volts"},      {"A", "amperes"},
      {"J", "joules"},      {"W", "watts"},        {"g", "grams"},      {"Cel", "celsius"},
      {"Hz", "hertz"},      {"%", "percent"},      {"1", "ratio"}};
  auto one = [&](std::string_view part) -> std::string {
    auto it = kUnits.find(part);
    return it != kUnits.end() ? std::string(it->second) : SanitizeLabel(part);
  };
  if (size_t slash = u.find('/'); slash != std::string::npos) {
    static const std::map<std::string_view, std::string_view> kPer = {
        {"s", "second"}, {"m", "minute"}, {"h", "hour"}, {"d", "day"},
        {"w", "week"},   {"mo", "month"}, {"y", "year"}};
    std::string_view den = std::string_view(u).substr(slash + 1);
    auto it = kPer.find(den);
    std::string d = it != kPer.end() ? std::string(it->second) : SanitizeLabel(den);
    std::string n = one(std::string_view(u).substr(0, slash));
    return n.empty() ? absl::StrCat("per_", d) : absl::StrCat(n, "_per_", d);
  }
  return one(u);
}

std::string FamilyName(const metrics::Metric& metric) {
  std::string name = SanitizeName(metric.name);
  std::string unit = UnitSuffix(metric.unit);
  // "1" is a ratio only for gauges (the spec); a dimensionless counter gets no suffix.
  if (unit == "ratio" && metric.type != metrics::MetricType::kGauge) unit.clear();
  if (!unit.empty() && !name.ends_with("_" + unit)) absl::StrAppend(&name, "_", unit);
  if (metric.type == metrics::MetricType::kCounter && !name.ends_with("_total"))
    name += "_total";
  return name;
}

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string FormatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return absl::StrCat(v);
  return std::string(buf, end);
}

std::string RenderText(const metrics::Snapshot& snapshot) {
  // A family must appear once, with every series under its HELP/TYPE, even when its
  // series come from many resources: gather per family first.
  struct Family {
    std::string help;
    const char* type;
    std::string body;
  };
  std::vector<std::string> order;
  std::map<std::string, Family> families;

  for (const auto& rm : snapshot.resources) {
    Labels resource_labels;
    if (rm.resource) {
      std::map<std::string, std::string> m;
      for (const auto& a : rm.resource->attributes) m.emplace(SanitizeLabel(a.key), AttrText(a.value));
      resource_labels.assign(m.begin(), m.end());
    }
    for (const auto& metric : rm.metrics) {
      std::string name = FamilyName(metric);
      auto [it, inserted] = families.try_emplace(name);
      Family& fam = it->second;
      if (inserted) {
        order.push_back(name);
        fam.help = metric.description;
        fam.type = metric.type == metrics::MetricType::kCounter   ? "counter"
                   : metric.type == metrics::MetricType::kGauge   ? "gauge"
                                                                  : "histogram";
      }
      for (const auto& p : metric.points) {
        Labels labels = MergeLabels(resource_labels, p.attributes);
        if (metric.type != metrics::MetricType::kHistogram) {
          std::string value = metric.integer ? absl::StrCat(static_cast<int64_t>(std::llround(p.value)))
                                             : FormatDouble(p.value);
          AppendSeries(&fam.body, name, labels, nullptr, value);
          continue;
        }
        const auto& h = p.histogram;
        uint64_t cumulative = 0;
        for (size_t i = 0; i < h.bounds.size() && i < h.counts.size(); ++i) {
          cumulative += h.counts[i];
          std::pair<std::string, std::string> le{"le", FormatDouble(h.bounds[i])};
          AppendSeries(&fam.body, name + "_bucket", labels, &le, absl::StrCat(cumulative));
        }
        std::pair<std::string, std::string> inf{"le", "+Inf"};
        AppendSeries(&fam.body, name + "_bucket", labels, &inf, absl::StrCat(h.count));
        AppendSeries(&fam.body, name + "_sum", labels, nullptr, FormatDouble(h.sum));
        AppendSeries(&fam.body, name + "_count", labels, nullptr, absl::StrCat(h.count));
      }
    }
  }

  std::string out;
  for (const auto& name : order) {
    const Family& fam = families[name];
    if (!fam.help.empty()) absl::StrAppend(&out, "# HELP ", name, " ", EscapeHelp(fam.help), "\n");
    absl::StrAppend(&out, "# TYPE ", name, " ", fam.type, "\n");
    out += fam.body;
  }
  return out;
}

}  // namespace isotrace::prometheus
