#include "daemon/layers/cgroup.h"

#include <dirent.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace isotrace::layers {

absl::StatusOr<std::vector<CgroupLine>> ParseProcCgroup(std::string_view text) {
  std::vector<CgroupLine> out;
  std::set<uint32_t> seen;
  absl::string_view all(text.data(), text.size());
  for (absl::string_view line : absl::StrSplit(all, '\n')) {
    if (line.empty()) continue;
    // "<hierarchy>:<controllers>:<path>"; the path may itself contain ':'.
    size_t c1 = line.find(':');
    size_t c2 = c1 == absl::string_view::npos ? c1 : line.find(':', c1 + 1);
    uint32_t h = 0;
    if (c2 == absl::string_view::npos || !absl::SimpleAtoi(line.substr(0, c1), &h) ||
        line.size() == c2 + 1 || line[c2 + 1] != '/')
      return absl::InvalidArgumentError(
          absl::StrCat("unparsable cgroup line '", line.substr(0, 200), "'"));
    if (!seen.insert(h).second)
      return absl::InvalidArgumentError(absl::StrCat("hierarchy ", h, " listed twice"));
    CgroupLine l;
    l.hierarchy = h;
    l.controllers = std::string(line.substr(c1 + 1, c2 - c1 - 1));
    l.path = std::string(line.substr(c2 + 1));
    if (h == 0 && !l.controllers.empty())
      return absl::InvalidArgumentError("hierarchy 0 with controllers");
    out.push_back(std::move(l));
  }
  return out;
}

std::vector<std::string> CandidatePaths(const std::vector<CgroupLine>& lines) {
  auto rank = [](const CgroupLine& l) {
    if (l.hierarchy == 0) return 0;
    absl::string_view c = l.controllers;
    for (absl::string_view part : absl::StrSplit(c, ',')) {
      if (part == "name=systemd") return 1;
      if (part == "cpu") return 2;
      if (part == "memory") return 3;
      if (part == "pids") return 4;
    }
    return 5;
  };
  std::vector<const CgroupLine*> sorted;
  for (const auto& l : lines) sorted.push_back(&l);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [&](const CgroupLine* a, const CgroupLine* b) { return rank(*a) < rank(*b); });
  std::vector<std::string> out;
  for (const auto* l : sorted) {
    if (l->path == "/" || l->path.empty()) continue;
    if (std::find(out.begin(), out.end(), l->path) == out.end()) out.push_back(l->path);
  }
  return out;
}

namespace {
// mountinfo escapes ' ', '\t', '\n' and '\\' as \ooo.
std::string Unescape(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      bool ok = true;
      int v = 0;
      for (int k = 1; k <= 3 && ok; k++) {
        char c = s[i + k];
        ok = c >= '0' && c <= '7';
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}
}  // namespace

std::vector<CgroupMount> ParseMountinfo(std::string_view text) {
  std::vector<CgroupMount> out;
  absl::string_view all(text.data(), text.size());
  for (absl::string_view line : absl::StrSplit(all, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    // id parent maj:min root mount_point options [optional...] - fstype source superopts
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 7 || dash == f.end() || f.end() - dash < 4) continue;
    absl::string_view fstype = *(dash + 1);
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    CgroupMount m;
    m.mount_point = Unescape(f[4]);
    m.v2 = fstype == "cgroup2";
    if (!m.v2) {
      for (absl::string_view opt : absl::StrSplit(*(dash + 3), ',')) {
        bool option = opt.empty() || opt == "rw" || opt == "ro" || opt == "xattr" ||
                      opt == "noprefix" || opt == "clone_children" || opt == "cpuset_v2_mode" ||
                      (opt.find('=') != absl::string_view::npos && !absl::StartsWith(opt, "name="));
        if (option) continue;
        m.controllers.emplace_back(opt);
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::string V2MountPoint(const std::vector<CgroupMount>& mounts) {
  std::string best;
  for (const auto& m : mounts)
    if (m.v2 && (best.empty() || m.mount_point == "/sys/fs/cgroup" ||
                 (best != "/sys/fs/cgroup" && m.mount_point == "/sys/fs/cgroup/unified")))
      best = m.mount_point;
  return best;
}

CgroupIdIndex::CgroupIdIndex(std::string v2_mount, size_t max_entries, uint64_t rescan_interval_ns,
                             NowFn now, uint64_t negative_ttl_ns)
    : mount_(std::move(v2_mount)),
      max_entries_(max_entries),
      interval_ns_(rescan_interval_ns),
      negative_ttl_ns_(negative_ttl_ns),
      now_(std::move(now)) {
  if (!now_)
    now_ = [] {
      timespec ts{};
      clock_gettime(CLOCK_MONOTONIC, &ts);
      return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
    };
}

std::optional<std::string> CgroupIdIndex::PathOf(uint64_t id) {
  if (mount_.empty() || id == 0) return std::nullopt;
  auto it = by_id_.find(id);
  if (it != by_id_.end()) return it->second;
  uint64_t now = now_();
  if (auto m = missing_.find(id); m != missing_.end()) {
    if (now - m->second < negative_ttl_ns_) return std::nullopt;
    missing_.erase(m);
  }
  if (scanned_ && now - last_scan_ns_ < interval_ns_) return std::nullopt;
  last_scan_ns_ = now;
  scanned_ = true;
  Rescan();
  it = by_id_.find(id);
  if (it != by_id_.end()) return it->second;
  if (missing_.size() >= 4096) missing_.clear();
  missing_[id] = now;
  return std::nullopt;
}

void CgroupIdIndex::Rescan() {
  scans_++;
  by_id_.clear();
  truncated_ = false;
  // Iterative walk (no recursion: depth is chosen by whoever creates cgroups).
  std::vector<std::string> stack = {""};
  while (!stack.empty()) {
    std::string rel = std::move(stack.back());
    stack.pop_back();
    std::string abs = mount_ + rel;
    struct stat st {};
    if (stat(abs.empty() ? "/" : abs.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    if (by_id_.size() >= max_entries_) {
      truncated_ = true;
      break;
    }
    by_id_[st.st_ino] = rel.empty() ? "/" : rel;
    DIR* d = opendir(abs.c_str());
    if (!d) continue;
    while (dirent* e = readdir(d)) {
      if (e->d_type != DT_DIR) continue;
      std::string_view n = e->d_name;
      if (n == "." || n == "..") continue;
      stack.push_back(absl::StrCat(rel, "/", e->d_name));
    }
    closedir(d);
  }
}

}  // namespace isotrace::layers
