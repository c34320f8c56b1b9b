#include "daemon/layers/proc_reader.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace isotrace::layers {

namespace {
constexpr size_t kMaxEnviron = 1 << 20;
constexpr size_t kMaxCmdline = 4096;
constexpr size_t kMaxCgroupFile = 64 << 10;
constexpr size_t kMaxMaps = 4 << 20;
constexpr size_t kMaxLibraries = 2048;
constexpr size_t kMaxAncestors = 32;
constexpr size_t kMaxFds = 1024;

// Reads up to `max` bytes, growing the buffer as data comes (a 4 MiB bound must not
// cost a 4 MiB allocation for a 2 KiB file: this runs for every new process).
std::string ReadFileBounded(const std::string& path, size_t max) {
  std::string out;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  size_t chunk = 4096;
  while (out.size() < max) {
    size_t want = std::min(chunk, max - out.size());
    size_t old = out.size();
    out.resize(old + want);
    ssize_t n = read(fd, out.data() + old, want);
    if (n <= 0) {
      out.resize(old);
      break;
    }
    out.resize(old + static_cast<size_t>(n));
    chunk = std::min<size_t>(chunk * 2, 1 << 20);
  }
  close(fd);
  return out;
}

std::string ReadLink(const std::string& path) {
  char buf[PATH_MAX] = {};
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return {};
  std::string out(buf, static_cast<size_t>(n));
  // A file replaced or removed on disk shows " (deleted)".
  if (absl::EndsWith(out, " (deleted)")) out.resize(out.size() - 10);
  return out;
}
}  // namespace

std::string Basename(std::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

ProcReader::ProcReader(std::string proc_root) : root_(std::move(proc_root)) {}

std::string ProcReader::ExecutableBasename(uint32_t pid) const {
  return Basename(ReadLink(absl::StrCat(root_, "/", pid, "/exe")));
}

uint32_t ProcReader::ParentOf(uint32_t pid, std::string* comm, char* state) const {
  std::string stat = ReadFileBounded(absl::StrCat(root_, "/", pid, "/stat"), 1024);
  // "pid (comm) state ppid ...": comm may hold spaces and ')', so split at the last ')'.
  size_t open = stat.find('(');
  size_t close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return 0;
  if (comm) *comm = stat.substr(open + 1, close - open - 1);
  std::vector<absl::string_view> f =
      absl::StrSplit(absl::string_view(stat).substr(close + 1), ' ', absl::SkipEmpty());
  uint32_t ppid = 0;
  if (state && !f.empty() && !f[0].empty()) *state = f[0][0];
  if (f.size() < 2 || !absl::SimpleAtoi(f[1], &ppid)) return 0;
  return ppid;
}

const std::string& ProcReader::InitNamespace(uint32_t bit) {
  int idx = __builtin_ctz(bit);
  if (!(init_ns_read_ & bit)) {
    // The host's namespaces: kthreadd's (kernel threads live in the initial namespaces,
    // and their links stay readable where PID 1's are not — this build machine's init
    // refuses even root), else PID 1's, else the daemon's own.
    std::string comm2 = ReadFileBounded(absl::StrCat(root_, "/2/comm"), 64);
    std::vector<std::string> refs;
    if (absl::StartsWith(comm2, "kthreadd")) refs.push_back("2");
    refs.push_back("1");
    refs.push_back("self");
    for (const auto& ref : refs) {
      init_ns_[idx] = ReadLink(absl::StrCat(root_, "/", ref, "/ns/", NamespaceFileName(bit)));
      if (!init_ns_[idx].empty()) break;
    }
    init_ns_read_ |= bit;
  }
  return init_ns_[idx];
}

uint32_t ProcReader::SelfMountNamespace() const {
  std::string link = ReadLink(root_ + "/self/ns/mnt");  // "mnt:[4026531840]"
  absl::string_view v = link;
  uint32_t inum = 0;
  if (absl::ConsumePrefix(&v, "mnt:[") && absl::ConsumeSuffix(&v, "]") && absl::SimpleAtoi(v, &inum))
    return inum;
  return 0;
}

std::string ProcReader::HostPath(uint32_t pid, const std::string& absolute) const {
  return absl::StrCat(root_, "/", pid, "/root", absolute);
}

ProcSnapshot ProcReader::Read(uint32_t pid, std::string_view comm, const RuleSet& rules) {
  ProcSnapshot s;
  std::string base = absl::StrCat(root_, "/", pid);
  // stat first: a process caught exiting still names its parent, which is what an
  // identity built from partial facts falls back on.
  char state = 0;
  s.ppid = ParentOf(pid, nullptr, &state);
  s.zombie = state == 'Z' || state == 'X';
  s.executable_path = ReadLink(base + "/exe");
  std::string cmdline = ReadFileBounded(base + "/cmdline", kMaxCmdline);
  std::string cgroup = ReadFileBounded(base + "/cgroup", kMaxCgroupFile);
  s.alive = !s.executable_path.empty() || !cmdline.empty() || !cgroup.empty();
  for (char& ch : cmdline)
    if (ch == '\0') ch = ' ';
  s.command_line = std::string(absl::StripTrailingAsciiWhitespace(cmdline));
  s.facts.executable = s.executable_path.empty() ? std::string(comm) : Basename(s.executable_path);

  std::string environ = ReadFileBounded(base + "/environ", kMaxEnviron);
  for (absl::string_view var : absl::StrSplit(environ, '\0')) {
    if (absl::ConsumePrefix(&var, "OTEL_SERVICE_NAME=") && !var.empty()) {
      s.otel_service_name = std::string(var);
      break;
    }
  }
  if (!cgroup.empty()) s.cgroups = ParseProcCgroup(cgroup);

  if (rules.needs_ancestors()) {
    uint32_t cur = pid;
    std::vector<uint32_t> seen = {pid};
    for (size_t depth = 0; depth < kMaxAncestors; depth++) {
      std::string pcomm;
      uint32_t ppid = depth == 0 ? s.ppid : ParentOf(cur, nullptr);
      if (ppid == 0 || std::find(seen.begin(), seen.end(), ppid) != seen.end()) break;
      std::string exe = ExecutableBasename(ppid);
      if (exe.empty()) ParentOf(ppid, &pcomm);  // kernel threads and exited parents: comm
      s.facts.ancestors.push_back(exe.empty() ? pcomm : exe);
      seen.push_back(ppid);
      cur = ppid;
      if (ppid == 1) break;
    }
  }

  for (uint32_t bit = 1; bit <= kNsCgroup; bit <<= 1) {
    if (!(rules.namespaces_needed() & bit)) continue;
    std::string mine = ReadLink(absl::StrCat(base, "/ns/", NamespaceFileName(bit)));
    const std::string& init = InitNamespace(bit);
    if (mine.empty()) s.ns_unreadable = true;
    if (!mine.empty() && !init.empty() && mine != init) s.facts.ns_differs |= bit;
  }

  if (rules.needs_libraries()) {
    std::string maps = ReadFileBounded(base + "/maps", kMaxMaps);
    for (absl::string_view line : absl::StrSplit(maps, '\n')) {
      // "addr perms offset dev inode   pathname"; the path starts at the first '/'.
      size_t slash = line.find('/');
      if (slash == absl::string_view::npos) continue;
      absl::string_view p = line.substr(slash);
      absl::ConsumeSuffix(&p, " (deleted)");
      std::string b = Basename(std::string_view(p.data(), p.size()));
      if (b.empty() || std::find(s.facts.libraries.begin(), s.facts.libraries.end(), b) !=
                           s.facts.libraries.end())
        continue;
      if (s.facts.libraries.size() >= kMaxLibraries) break;
      s.facts.libraries.push_back(std::move(b));
    }
  }

  // Modules opened before the daemon started (or before its probe attached) and still
  // open: the .wasm opens the proc probe reports cover the rest.
  if (DIR* d = opendir((base + "/fd").c_str())) {
    size_t n = 0;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      if (++n > kMaxFds) break;
      std::string target = ReadLink(absl::StrCat(base, "/fd/", e->d_name));
      if (absl::EndsWith(target, ".wasm") && target[0] == '/' &&
          std::find(s.open_wasm.begin(), s.open_wasm.end(), target) == s.open_wasm.end())
        s.open_wasm.push_back(target);
    }
    closedir(d);
  }
  return s;
}

}  // namespace isotrace::layers
