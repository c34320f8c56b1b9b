#include "daemon/layers/wasm_module.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace isotrace::layers {

namespace {

class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  bool U8(uint8_t* v) {
    if (pos_ >= b_.size()) return false;
    *v = static_cast<uint8_t>(b_[pos_++]);
    return true;
  }
  // Unsigned LEB128, at most `bits` wide (32 or 64): at most ceil(bits / 7) bytes, and
  // the last one may carry only the bits that fit (the spec's rule; the fuzzer found
  // a 64-bit value read past shift 63, which is undefined behaviour).
  bool Leb(uint64_t* v, int bits = 32) {
    uint64_t result = 0;
    const int max_bytes = (bits + 6) / 7;
    for (int i = 0; i < max_bytes; ++i) {
      uint8_t byte;
      if (!U8(&byte)) return false;
      const int shift = 7 * i;
      const uint64_t payload = byte & 0x7f;
      if (shift + 7 > bits && (payload >> (bits - shift)) != 0) return false;  // overflow
      result |= payload << shift;
      if (!(byte & 0x80)) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  bool Bytes(uint64_t n, std::string_view* out) {
    if (n > b_.size() - pos_) return false;
    *out = b_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool Skip(uint64_t n) {
    std::string_view unused;
    return Bytes(n, &unused);
  }
  size_t pos() const { return pos_; }
  bool done() const { return pos_ >= b_.size(); }

 private:
  std::string_view b_;
  size_t pos_ = 0;
};

bool SkipLimits(Reader& r) {
  uint8_t flags;
  uint64_t v;
  if (!r.U8(&flags) || flags > 7) return false;
  int bits = (flags & 4) ? 64 : 32;  // memory64
  if (!r.Leb(&v, bits)) return false;
  if ((flags & 1) && !r.Leb(&v, bits)) return false;
  return true;
}

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed wasm module: ", std::string(what)));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> WasmImportModules(std::string_view bytes) {
  static constexpr char kMagic[] = {'\0', 'a', 's', 'm', 1, 0, 0, 0};
  if (bytes.size() < 8 || bytes.substr(0, 8) != std::string_view(kMagic, 8))
    return absl::InvalidArgumentError("not a WebAssembly binary (magic/version)");
  Reader r(bytes.substr(8));
  std::vector<std::string> out;
  while (!r.done()) {
    uint8_t id;
    uint64_t size;
    if (!r.U8(&id) || !r.Leb(&size)) return Malformed("section header");
    std::string_view body;
    if (!r.Bytes(size, &body)) {
      // The file was read only up to a bound: a section cut short before the import
      // section means the imports are unknown; after it, nothing more is needed.
      return Malformed("section runs past the end");
    }
    if (id != 2) {
      // Sections come in order; past the import section there are no imports.
      if (id != 0 && id != 1) return out;
      continue;
    }
    Reader s(body);
    uint64_t count;
    if (!s.Leb(&count)) return Malformed("import count");
    for (uint64_t i = 0; i < count; i++) {
      uint64_t n;
      std::string_view module, field;
      if (!s.Leb(&n) || !s.Bytes(n, &module) || !s.Leb(&n) || !s.Bytes(n, &field))
        return Malformed("import name");
      uint8_t kind;
      uint64_t v;
      if (!s.U8(&kind)) return Malformed("import kind");
      bool ok = true;
      switch (kind) {
        case 0x00: ok = s.Leb(&v); break;                           // function: type index
        case 0x01: ok = s.U8(&kind) && SkipLimits(s); break;        // table: reftype, limits
        case 0x02: ok = SkipLimits(s); break;                       // memory: limits
        case 0x03: ok = s.U8(&kind) && s.U8(&kind); break;          // global: valtype, mut
        case 0x04: ok = s.U8(&kind) && s.Leb(&v); break;            // tag: attribute, type
        default: ok = false;
      }
      if (!ok) return Malformed("import descriptor");
      if (module.size() > 256) return Malformed("import module name too long");
      std::string m(module);
      if (std::find(out.begin(), out.end(), m) == out.end()) {
        if (out.size() >= 64) return out;  // bounded; WASI modules import from 1-2 modules
        out.push_back(std::move(m));
      }
    }
    return out;
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> WasmModuleCache::Imports(const std::string& path) {
  // O_NONBLOCK: a FIFO named *.wasm must not stall the daemon (fstat rejects it next).
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
  }
  Key key{uint64_t(st.st_dev), uint64_t(st.st_ino), uint64_t(st.st_size),
          int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
  if (auto it = cache_.find(key); it != cache_.end()) {
    close(fd);
    lru_.splice(lru_.begin(), lru_, it->second.second);
    return it->second.first;
  }
  // The import section precedes code and data; a bounded prefix holds it.
  std::string buf(std::min<uint64_t>(uint64_t(st.st_size), max_bytes_), '\0');
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t n = read(fd, buf.data() + got, buf.size() - got);
    if (n <= 0) break;
    got += size_t(n);
  }
  close(fd);
  reads_++;
  buf.resize(got);
  auto result = WasmImportModules(buf);
  while (cache_.size() >= max_entries_ && !lru_.empty()) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  cache_.emplace(key, std::make_pair(result, lru_.begin()));
  return result;
}

}  // namespace isotrace::layers
