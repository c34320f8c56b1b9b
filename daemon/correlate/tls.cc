#include "daemon/correlate/tls.h"

#include <cstddef>
#include <cstdint>

namespace isotrace::correlate {

namespace {

std::string_view VersionName(uint16_t v) {
  switch (v) {
    case 0x0304: return "1.3";
    case 0x0303: return "1.2";
    case 0x0302: return "1.1";
    case 0x0301: return "1.0";
    default: return {};
  }
}

// Bounds-checked big-endian reads over the captured bytes (hand-written: a dozen lines,
// and the TLS libraries on the node parse whole connections, not a captured prefix).
struct Reader {
  std::string_view b;
  size_t at = 0;
  bool Skip(size_t n) {
    if (b.size() - at < n) return false;
    at += n;
    return true;
  }
  bool U8(uint8_t* v) {
    if (b.size() - at < 1) return false;
    *v = static_cast<uint8_t>(b[at++]);
    return true;
  }
  bool U16(uint16_t* v) {
    if (b.size() - at < 2) return false;
    *v = static_cast<uint16_t>(static_cast<uint8_t>(b[at]) << 8 | static_cast<uint8_t>(b[at + 1]));
    at += 2;
    return true;
  }
};

}  // namespace

std::string_view TlsVersionFromServerHello(std::string_view bytes) {
  Reader r{bytes};
  uint8_t type = 0;
  if (!r.U8(&type)) return {};
  if (type == 0x16) {  // record header: type, version (2), length (2)
    if (!r.Skip(4) || !r.U8(&type)) return {};
  }
  if (type != 2) return {};  // ServerHello
  uint8_t l0 = 0;
  uint16_t l12 = 0;
  if (!r.U8(&l0) || !r.U16(&l12)) return {};
  const size_t msg_end = r.at + (static_cast<size_t>(l0) << 16 | l12);
  uint16_t legacy = 0;
  uint8_t sid_len = 0;
  uint16_t ext_len = 0;
  if (!r.U16(&legacy) || !r.Skip(32) || !r.U8(&sid_len) || !r.Skip(sid_len) ||
      !r.Skip(3))  // cipher suite (2), compression (1)
    return {};
  if (VersionName(legacy).empty()) return {};
  if (r.at == msg_end) return VersionName(legacy);  // no extensions at all: before 1.3
  if (!r.U16(&ext_len)) return {};                  // cut here: 1.2 or 1.3 undecided
  const size_t end = r.at + ext_len;
  while (r.at < end) {
    uint16_t ext = 0, len = 0;
    if (!r.U16(&ext) || !r.U16(&len)) return {};
    if (ext == 0x002b) {  // supported_versions: the selected version
      uint16_t v = 0;
      return len == 2 && r.U16(&v) ? VersionName(v) : std::string_view();
    }
    if (!r.Skip(len)) return {};
  }
  return VersionName(legacy);
}

}  // namespace isotrace::correlate
