#include "daemon/probes/listen_drops.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <string_view>


namespace isotrace::probes {

namespace {
constexpr size_t kMaxReadings = 32;     // a sample a second: a connect's whole SYN backoff
constexpr size_t kMaxNamespaces = 1024;
constexpr size_t kMaxTgidsPerNs = 4;
constexpr size_t kMaxTgids = 16384;
constexpr size_t kMaxNetstat = 64 << 10;

std::string ReadSmall(const std::string& path) {
  std::string out;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  std::array<char, 4096> buf;
  while (out.size() < kMaxNetstat) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n <= 0) break;
    out.append(buf.data(), static_cast<size_t>(n));
  }
  close(fd);
  return out;
}
}  // namespace

namespace {
std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') i++;
    size_t j = i;
    while (j < line.size() && line[j] != ' ') j++;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}
bool ToU64(std::string_view s, uint64_t* v) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}
}  // namespace

// Hand-written: procfs's netstat layout (a header line of names, then a line of values,
// per protocol group) has no parser in the libraries the daemon links.
std::optional<uint64_t> ParseListenDrops(std::string_view netstat) {
  std::string_view header;
  while (!netstat.empty()) {
    const size_t nl = netstat.find('\n');
    const std::string_view line = netstat.substr(0, nl);
    netstat = nl == std::string_view::npos ? std::string_view() : netstat.substr(nl + 1);
    if (!line.starts_with("TcpExt:")) continue;
    if (header.empty()) {
      header = line;
      continue;
    }
    const auto names = Fields(header), values = Fields(line);
    for (size_t i = 1; i < names.size() && i < values.size(); i++) {
      if (names[i] != "ListenDrops") continue;
      uint64_t v = 0;
      if (!ToU64(values[i], &v)) return std::nullopt;
      return v;
    }
    return std::nullopt;
  }
  return std::nullopt;
}

ListenDrops::ListenDrops(std::string proc_root) : proc_root_(std::move(proc_root)) {}

std::optional<uint64_t> ListenDrops::NsOf(uint32_t tgid) {
  if (auto it = ns_of_.find(tgid); it != ns_of_.end()) return it->second;
  std::array<char, 64> link{};
  const std::string path = proc_root_ + "/" + std::to_string(tgid) + "/ns/net";
  ssize_t n = readlink(path.c_str(), link.data(), link.size() - 1);
  if (n <= 0) return std::nullopt;
  // "net:[4026531840]"
  std::string_view s(link.data(), static_cast<size_t>(n));
  const size_t open = s.find('['), close_at = s.find(']');
  uint64_t ino = 0;
  if (open == std::string_view::npos || close_at == std::string_view::npos || close_at <= open ||
      !ToU64(s.substr(open + 1, close_at - open - 1), &ino))
    return std::nullopt;
  if (ns_of_.size() >= kMaxTgids) ns_of_.clear();  // pids come and go: start over
  ns_of_.emplace(tgid, ino);
  return ino;
}

std::optional<uint64_t> ListenDrops::ReadDrops(uint32_t tgid) {
  stats_.samples++;
  auto v = ParseListenDrops(ReadSmall(proc_root_ + "/" + std::to_string(tgid) + "/net/netstat"));
  if (!v) stats_.read_errors++;
  return v;
}

bool ListenDrops::SampleNs(Ns& ns, uint64_t now) {
  // Any process of the namespace reads the same counter; the ones gone are dropped.
  while (!ns.tgids.empty()) {
    if (auto v = ReadDrops(ns.tgids.front())) {
      if (ns.readings.size() >= kMaxReadings) ns.readings.pop_front();
      ns.readings.push_back({now, *v});
      return true;
    }
    ns_of_.erase(ns.tgids.front());
    ns.tgids.erase(ns.tgids.begin());
  }
  return false;
}

void ListenDrops::Watch(uint32_t tgid, uint64_t now) {
  auto ino = NsOf(tgid);
  if (!ino) return;
  auto [it, fresh] = by_ns_.try_emplace(*ino);
  Ns& ns = it->second;
  ns.last_used_ns = now;
  if (std::find(ns.tgids.begin(), ns.tgids.end(), tgid) == ns.tgids.end() && ns.tgids.size() < kMaxTgidsPerNs)
    ns.tgids.push_back(tgid);
  if (fresh) {
    if (by_ns_.size() > kMaxNamespaces) {
      by_ns_.erase(it);
      return;
    }
    SampleNs(ns, now);
  }
  stats_.namespaces = by_ns_.size();
}

void ListenDrops::Sample(uint64_t now, uint64_t idle_ns) {
  for (auto it = by_ns_.begin(); it != by_ns_.end();) {
    if (now - it->second.last_used_ns > idle_ns || !SampleNs(it->second, now))
      it = by_ns_.erase(it);
    else
      ++it;
  }
  stats_.namespaces = by_ns_.size();
}

std::optional<uint64_t> ListenDrops::Between(uint32_t tgid, uint64_t from, uint64_t to, uint64_t now) {
  auto t = ns_of_.find(tgid);
  if (t == ns_of_.end()) return std::nullopt;
  auto it = by_ns_.find(t->second);
  if (it == by_ns_.end()) return std::nullopt;
  Ns& ns = it->second;
  ns.last_used_ns = now;
  const Reading* before = nullptr;
  for (const auto& r : ns.readings)
    if (r.ts <= from) before = &r;
  if (!before) return std::nullopt;
  const uint64_t base = before->drops;
  const Reading* after = nullptr;
  for (const auto& r : ns.readings)
    if (r.ts >= to) {
      after = &r;
      break;
    }
  if (!after) {
    if (now < to || !SampleNs(ns, now)) return std::nullopt;
    after = &ns.readings.back();
  }
  return after->drops >= base ? after->drops - base : 0;
}

}  // namespace isotrace::probes
