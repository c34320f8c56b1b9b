#include "daemon/probes/tls_targets.h"

#include <dirent.h>
#include <fcntl.h>
#include <gelf.h>
#include <glob.h>
#include <libelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace isotrace::probes {

std::vector<std::string> SslLibrariesInMaps(std::string_view maps) {
  std::vector<std::string> out;
  while (!maps.empty()) {
    size_t nl = maps.find('\n');
    std::string_view line = maps.substr(0, nl);
    maps = nl == std::string_view::npos ? std::string_view() : maps.substr(nl + 1);
    // "start-end perms offset dev inode   path": the path is what follows the first '/'
    // after the five fields; anonymous and special mappings have none.
    size_t slash = line.find('/');
    if (slash == std::string_view::npos) continue;
    std::string_view path = line.substr(slash);
    if (path.size() > 10 && path.substr(path.size() - 10) == " (deleted)") continue;
    size_t base = path.rfind('/');
    std::string_view name = path.substr(base + 1);
    if (name.rfind("libssl.so", 0) != 0) continue;
    bool dup = false;
    for (const auto& p : out) dup |= p == path;
    if (!dup) out.emplace_back(path);
  }
  return out;
}

bool ElfDefinesFunction(const std::string& path, const char* name) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool found = false;
  if (elf_version(EV_CURRENT) != EV_NONE) {
    if (Elf* e = elf_begin(fd, ELF_C_READ_MMAP, nullptr)) {
      Elf_Scn* scn = nullptr;
      while (!found && (scn = elf_nextscn(e, scn)) != nullptr) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) ||
            sh.sh_entsize == 0)
          continue;
        Elf_Data* data = elf_getdata(scn, nullptr);
        if (!data) continue;
        const size_t n = sh.sh_size / sh.sh_entsize;
        for (size_t i = 0; i < n && !found; i++) {
          GElf_Sym sym;
          if (!gelf_getsym(data, static_cast<int>(i), &sym)) break;
          if (GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF || sym.st_value == 0) continue;
          const char* s = elf_strptr(e, sh.sh_link, sym.st_name);
          found = s && std::strcmp(s, name) == 0;
        }
      }
      elf_end(e);
    }
  }
  close(fd);
  return found;
}

namespace {

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Field 22 of /proc/<pid>/stat (start time in ticks), after the parenthesised comm.
uint64_t StartTime(const std::string& stat) {
  size_t p = stat.rfind(')');
  if (p == std::string::npos) return 0;
  std::istringstream in(stat.substr(p + 2));
  std::string f;
  for (int i = 3; i <= 22 && in >> f; i++)
    if (i == 22) {
      uint64_t v = 0;
      return absl::SimpleAtoi(f, &v) ? v : 0;
    }
  return 0;
}

}  // namespace

bool TlsTargetFinder::FirstTime(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  return files_.insert({st.st_dev, st.st_ino}).second;
}

std::vector<TlsTarget> TlsTargetFinder::Scan() {
  std::vector<TlsTarget> found;
  if (!scanned_once_) {
    // The host's own libssl, mapped by a process or not yet: programs started later
    // (the first curl after a quiet minute) are then covered from their first call.
    scanned_once_ = true;
    glob_t g{};
    if (glob("{/usr/lib,/usr/lib64,/lib,/lib64}{,/*}/libssl.so.[0-9]*", GLOB_BRACE | GLOB_NOSORT, nullptr, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; i++)
        if (FirstTime(g.gl_pathv[i])) found.push_back({g.gl_pathv[i], true});
    globfree(&g);
  }
  absl::flat_hash_map<int, Seen> now;
  now.reserve(seen_.size());
  DIR* d = opendir(proc_.c_str());
  if (!d) return found;
  while (dirent* de = readdir(d)) {
    int pid = 0;
    if (!absl::SimpleAtoi(de->d_name, &pid) || pid <= 0) continue;
    auto was = seen_.find(pid);
    // procfs gives each /proc/<pid> inode a fresh number; 1 means it could not make one.
    if (was != seen_.end() && de->d_ino == was->second.ino && de->d_ino > 1) {
      now.emplace(pid, was->second);
      continue;
    }
    const std::string dir = absl::StrCat(proc_, "/", pid);
    const uint64_t start = StartTime(ReadSmallFile(dir + "/stat"));
    now.emplace(pid, Seen{de->d_ino, start});
    // The same process under a new inode (its dentry was evicted and made again).
    if (was != seen_.end() && was->second.start == start) continue;
    // Its libssl, through its own root: a container's image has its own file.
    for (const std::string& lib : SslLibrariesInMaps(ReadSmallFile(dir + "/maps"))) {
      std::string path = absl::StrCat(dir, "/root", lib);
      if (FirstTime(path)) found.push_back({path, true});
    }
    // A static binary that carries OpenSSL: its executable defines SSL_write.
    const std::string exe = dir + "/exe";
    if (FirstTime(exe) && ElfDefinesFunction(exe, "SSL_write")) {
      // /proc/<pid>/exe stops resolving when the process exits; the file's own path in
      // its root lasts as long as the file.
      char target[4096];
      ssize_t n = readlink(exe.c_str(), target, sizeof(target) - 1);
      std::string path = exe;
      if (n > 0) {
        target[n] = 0;
        std::string rooted = absl::StrCat(dir, "/root", target);
        if (access(rooted.c_str(), R_OK) == 0) path = rooted;
      }
      found.push_back({path, false});
    }
  }
  closedir(d);
  seen_ = std::move(now);
  return found;
}

}  // namespace isotrace::probes
