#pragma once
// Where OpenSSL lives on the node: the files the TLS uprobes attach to (bpf/l7.bpf.c,
// "TLS"). A uprobe is set on a file (an inode), so one attachment covers every process
// that maps it, those started later included; what has to be found is each distinct file:
// the host's libssl, a container image's own libssl (seen through /proc/<pid>/root), and
// statically linked binaries that define the functions themselves.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace isotrace::probes {

// The functions hooked, in the order the probe attaches them.
inline constexpr const char* kTlsFunctions[] = {"SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex",
                                                "SSL_do_handshake"};

// Paths of the libssl files mapped in a /proc/<pid>/maps text ("…/libssl.so.3"), each
// once, as the process sees them (its own mount namespace).
std::vector<std::string> SslLibrariesInMaps(std::string_view maps);

// True when the ELF file at `path` defines (not imports) a function named `name`, in its
// symbol table or its dynamic symbol table. Read with libelf; false on any error.
bool ElfDefinesFunction(const std::string& path, const char* name);

// A file found to hold OpenSSL's functions, to attach to once.
struct TlsTarget {
  std::string path;   // openable by the daemon (under /proc/<pid>/root for containers)
  bool library = true;  // libssl (else a static binary defining SSL_write)
};

// Finds new TLS targets by walking /proc: each process's libssl mappings and, for
// processes whose executable was not looked at before, whether it defines SSL_write.
// Files are told apart by (device, inode), so a library shared by a thousand processes is
// one target, and a file is returned once per finder.
class TlsTargetFinder {
 public:
  explicit TlsTargetFinder(std::string proc_root = "/proc") : proc_(std::move(proc_root)) {}

  // Processes not seen in the previous scan are looked at (the first scan also takes the
  // host's libssl files from the usual library directories); returns the new files. A
  // process already seen is told by its /proc entry's inode number (a new process under
  // a reused pid gets a new one), so a scan reads nothing of it.
  std::vector<TlsTarget> Scan();
  // The process exec'd a new image: the next scan looks at it again.
  void Forget(int pid) { seen_.erase(pid); }

  size_t files_seen() const { return files_.size(); }

 private:
  // Returns true the first time (dev, ino) of `path` is seen.
  bool FirstTime(const std::string& path);

  std::string proc_;
  std::set<std::pair<dev_t, ino_t>> files_;     // every file looked at (targets or not)
  struct Seen {
    ino_t ino = 0;       // of /proc/<pid> when it was looked at
    uint64_t start = 0;  // start time in ticks
  };
  absl::flat_hash_map<int, Seen> seen_;  // processes looked at, as of the last scan
  bool scanned_once_ = false;
};

}  // namespace isotrace::probes
