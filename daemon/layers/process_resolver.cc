#include "daemon/layers/process_resolver.h"

#include <unistd.h>

#include <climits>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace isotrace::layers {

namespace {
constexpr size_t kMaxEnviron = 1 << 20;
constexpr size_t kMaxCmdline = 4096;

std::string ReadFileBounded(const std::string& path, size_t max) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::string out(max, '\0');
  in.read(out.data(), static_cast<std::streamsize>(max));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

std::string Basename(std::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = HexDigit(s[i + 1]);
      int lo = HexDigit(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}
}  // namespace

std::vector<correlate::Attribute> ParseResourceAttributes(std::string_view value) {
  std::vector<correlate::Attribute> out;
  // Debian's abseil keeps its own absl::string_view (not std::string_view).
  absl::string_view input(value.data(), value.size());
  for (absl::string_view part : absl::StrSplit(input, ',', absl::SkipWhitespace())) {
    size_t eq = part.find('=');
    if (eq == absl::string_view::npos) continue;
    std::string key(absl::StripAsciiWhitespace(part.substr(0, eq)));
    absl::string_view raw = absl::StripAsciiWhitespace(part.substr(eq + 1));
    std::string val = PercentDecode(std::string_view(raw.data(), raw.size()));
    if (key.empty()) continue;
    out.push_back({key, val});
  }
  return out;
}

ProcessResolver::ProcessResolver(std::string proc_root, size_t max_entries)
    : proc_root_(std::move(proc_root)), max_entries_(max_entries) {
  char host[HOST_NAME_MAX + 1] = {};
  if (const char* node = getenv("NODE_NAME"); node && *node) {
    host_name_ = node;  // Kubernetes: the node, not the daemon pod's hostname
  } else if (gethostname(host, sizeof(host)) == 0) {
    host_name_ = host;
  }
}

ProcessInfo ProcessResolver::ReadProcess(uint32_t pid, std::string_view comm) const {
  ProcessInfo info;
  info.pid = pid;
  info.comm = std::string(comm);
  std::string base = absl::StrCat(proc_root_, "/", pid);
  char exe[PATH_MAX] = {};
  ssize_t n = readlink(absl::StrCat(base, "/exe").c_str(), exe, sizeof(exe) - 1);
  if (n > 0) {
    info.executable_path.assign(exe, static_cast<size_t>(n));
    // A binary replaced on disk shows " (deleted)".
    if (absl::EndsWith(info.executable_path, " (deleted)"))
      info.executable_path.resize(info.executable_path.size() - 10);
    info.executable_name = Basename(info.executable_path);
  }
  std::string cmdline = ReadFileBounded(absl::StrCat(base, "/cmdline"), kMaxCmdline);
  if (cmdline.empty() && n <= 0) info.exited = true;
  for (char& ch : cmdline)
    if (ch == '\0') ch = ' ';
  info.command_line = std::string(absl::StripTrailingAsciiWhitespace(cmdline));
  if (info.executable_name.empty()) info.executable_name = info.comm;

  std::string environ = ReadFileBounded(absl::StrCat(base, "/environ"), kMaxEnviron);
  for (absl::string_view var : absl::StrSplit(environ, '\0')) {
    if (absl::ConsumePrefix(&var, "OTEL_SERVICE_NAME=") && !var.empty()) {
      info.service_name = std::string(var);
      break;
    }
  }
  if (info.service_name.empty()) info.service_name = info.executable_name;
  return info;
}

std::shared_ptr<const correlate::Resource> ProcessResolver::Resolve(const correlate::ProcessKey& key,
                                                                    std::string_view comm) {
  uint64_t h = Hash(key);
  auto it = cache_.find(h);
  if (it != cache_.end() && it->second.key == key && it->second.comm == comm) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second.resource;
  }
  if (it != cache_.end()) {
    lru_.erase(it->second.lru);
    cache_.erase(it);
  }
  while (cache_.size() >= max_entries_ && !lru_.empty()) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  ProcessInfo info = ReadProcess(key.tgid, comm);
  auto res = std::make_shared<correlate::Resource>();
  auto& a = res->attributes;
  a.push_back({"service.name", info.service_name});
  a.push_back({"host.name", host_name_});
  a.push_back({"process.pid", static_cast<int64_t>(key.tgid)});
  a.push_back({"process.executable.name", info.executable_name});
  if (!info.executable_path.empty()) a.push_back({"process.executable.path", info.executable_path});
  if (!info.command_line.empty()) a.push_back({"process.command_line", info.command_line});
  for (const auto& c : common_) {
    bool overridden = false;
    for (const auto& existing : a) overridden |= existing.key == c.key && c.key != "service.name";
    if (!overridden && c.key != "service.name") a.push_back(c);
  }
  lru_.push_front(h);
  cache_[h] = Entry{key, std::string(comm), res, lru_.begin()};
  return res;
}

}  // namespace isotrace::layers
