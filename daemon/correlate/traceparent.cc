#include "daemon/correlate/traceparent.h"

#include <algorithm>
#include <array>

namespace isotrace::correlate {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr size_t kTraceparentSize = 55;  // 2 + 1 + 32 + 1 + 16 + 1 + 2

// Lowercase only: the spec's grammar is HEXDIGLC, and a producer emitting uppercase is
// broken in ways we would rather not trust.
// Lowercase hex digit → value, anything else → 0x10. A table: ids are random digits,
// and a branch per digit mispredicted half the time (bench/pipeline_bench).
constexpr std::array<uint8_t, 256> MakeLowerHexTable() {
  std::array<uint8_t, 256> t{};
  for (auto& v : t) v = 0x10;
  for (int c = '0'; c <= '9'; ++c) t[c] = static_cast<uint8_t>(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) t[c] = static_cast<uint8_t>(c - 'a' + 10);
  return t;
}
constexpr std::array<uint8_t, 256> kLowerHex = MakeLowerHexTable();

// Decodes exactly out.size() bytes from 2 * out.size() lowercase hex characters.
bool DecodeHex(std::string_view hex, std::span<uint8_t> out) {
  if (hex.size() != out.size() * 2) return false;
  uint8_t bad = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const uint8_t hi = kLowerHex[static_cast<unsigned char>(hex[2 * i])];
    const uint8_t lo = kLowerHex[static_cast<unsigned char>(hex[2 * i + 1])];
    bad |= hi | lo;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return (bad & 0x10) == 0;
}

bool AllZero(std::span<const uint8_t> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

std::optional<TraceContext> ParseTraceparent(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.size() != kTraceparentSize) return std::nullopt;
  if (value.substr(0, 2) != "00") return std::nullopt;  // also rejects the invalid "ff"
  if (value[2] != '-' || value[35] != '-' || value[52] != '-') return std::nullopt;

  TraceContext ctx;
  uint8_t flags[1];
  if (!DecodeHex(value.substr(3, 32), ctx.trace_id) ||
      !DecodeHex(value.substr(36, 16), ctx.parent_id) || !DecodeHex(value.substr(53, 2), flags)) {
    return std::nullopt;
  }
  if (AllZero(ctx.trace_id) || AllZero(ctx.parent_id)) return std::nullopt;
  ctx.flags = flags[0];
  return ctx;
}

std::string HexEncode(std::span<const uint8_t> bytes) {
  std::string out;
  out.resize(bytes.size() * 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kHexDigits[bytes[i] >> 4];
    out[2 * i + 1] = kHexDigits[bytes[i] & 0xf];
  }
  return out;
}

std::string FormatTraceparent(const TraceId& trace_id, const SpanId& span_id, uint8_t flags) {
  std::string out;
  out.reserve(kTraceparentSize);
  out += "00-";
  out += HexEncode(trace_id);
  out += '-';
  out += HexEncode(span_id);
  out += '-';
  const uint8_t f[1] = {flags};
  out += HexEncode(f);
  return out;
}

}  // namespace isotrace::correlate
