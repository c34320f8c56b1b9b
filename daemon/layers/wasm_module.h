#pragma once
// Reads the import section of a WebAssembly binary: which host modules it imports from
// (wasi_snapshot_preview1 makes it a WASI module). Hand-written because no Debian
// library parses Wasm binaries and only the section framing and import names are needed;
// every length is bounds-checked, the input is whatever file a workload opened.

#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"

namespace isotrace::layers {

// Distinct import module names, in first-seen order. Errors on a file that is not a
// Wasm binary (bad magic/version) or whose import section is malformed.
absl::StatusOr<std::vector<std::string>> WasmImportModules(std::string_view bytes);

// WasmImportModules of a file, cached by (device, inode, size, mtime); bounded.
class WasmModuleCache {
 public:
  explicit WasmModuleCache(size_t max_entries = 256, size_t max_file_bytes = 16u << 20)
      : max_entries_(max_entries), max_bytes_(max_file_bytes) {}
  absl::StatusOr<std::vector<std::string>> Imports(const std::string& path);
  uint64_t reads() const { return reads_; }

 private:
  struct Key {
    uint64_t dev, ino, size;
    int64_t mtime_ns;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return k.ino * 31 + k.dev * 17 + k.size + k.mtime_ns; }
  };
  size_t max_entries_, max_bytes_;
  uint64_t reads_ = 0;
  std::list<Key> lru_;
  std::unordered_map<Key, std::pair<absl::StatusOr<std::vector<std::string>>, std::list<Key>::iterator>,
                     KeyHash>
      cache_;
};

}  // namespace isotrace::layers
