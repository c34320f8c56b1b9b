// libFuzzer harness for the HTTP/1.x framer (bytes as the l7 probe captured them off
// the wire). Built in the sanitizer tree (scripts/asan-tree.sh); run as CTest fuzz.http1
// or longer with `make fuzz`. Only the Feed/Gap/Flush/Close/ExpectResponseTo calls touch
// the parser's API, so a change of signature is a change of those lines.
//
// The first 4 input bytes choose a segmentation (a seed for segment lengths) and a
// capture limit; the rest is the byte stream. Two properties are checked besides memory
// safety:
//  1. Fully captured and never flushed, the framer's output does not depend on where the
//     segment boundaries fall (it is a byte-level state machine).
//  2. With captures cut short, lost bytes (Gap) and Flush/ExpectResponseTo interleaved,
//     every message stays within its bounds and the bytes it claims add up to no more
//     than were fed.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "daemon/correlate/http1.h"

namespace {

using isotrace::correlate::Http1Limits;
using isotrace::correlate::Http1Parser;
using isotrace::correlate::HttpMessage;

void Check(bool ok) {
  if (!ok) std::abort();
}

// Small deterministic PRNG so the fuzzer controls segmentation through the header bytes.
struct Rng {
  uint32_t s;
  uint32_t Next() {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    return s;
  }
};

bool SameMessage(const HttpMessage& a, const HttpMessage& b) {
  if (a.is_request != b.is_request || a.method != b.method || a.target != b.target ||
      a.status != b.status || a.version != b.version || a.head_truncated != b.head_truncated ||
      a.wire_bytes != b.wire_bytes || a.body_bytes != b.body_bytes || a.framing != b.framing ||
      a.keep_alive != b.keep_alive || a.headers.size() != b.headers.size()) {
    return false;
  }
  for (size_t i = 0; i < a.headers.size(); ++i) {
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) {
      return false;
    }
  }
  return true;
}

void CheckBounds(const std::vector<HttpMessage>& out, const Http1Limits& limits, uint64_t fed_bytes,
                 uint64_t max_ts) {
  uint64_t claimed = 0;
  for (const HttpMessage& m : out) {
    Check(m.headers.size() <= limits.max_headers);
    for (const auto& h : m.headers) Check(h.value.size() <= limits.max_header_value_bytes);
    Check(m.method.size() <= 32);
    Check(m.first_ts_ns <= m.last_ts_ns && m.last_ts_ns <= max_ts);
    Check(m.body_bytes <= m.wire_bytes);
    claimed += m.wire_bytes;
  }
  Check(claimed <= fed_bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint32_t seed = data[0] | data[1] << 8 | uint32_t{data[2]} << 16;
  const uint8_t mode = data[3];
  const std::string_view stream(reinterpret_cast<const char*>(data) + 4, size - 4);

  Http1Limits limits;
  limits.max_head_bytes = 512 + (mode & 0x30) * 16;  // small limits reach the error paths
  limits.max_headers = 8;
  limits.max_header_value_bytes = 64;
  limits.max_chunk_line_bytes = 64;
  limits.max_resync_segments = 4;
  // Half the inputs store only some headers, as the connection tracker does: the scanner
  // then records only the lines its name filter wants, on its whole-line path.
  static constexpr std::string_view kStoreOnly[] = {"host", "traceparent", "content-type",
                                                    "x-a"};
  if (mode & 0x40) {
    limits.store_only = kStoreOnly;
    limits.store_response_headers = (mode & 0x80) != 0;
  }

  // Property 1: segmentation independence when everything is captured.
  {
    Http1Parser whole(limits);
    std::vector<HttpMessage> ref;
    const absl::Status whole_status = whole.Feed(stream, stream.size(), 1, &ref);

    Http1Parser split(limits);
    std::vector<HttpMessage> got;
    Rng rng{seed | 1};
    size_t pos = 0;
    absl::Status st;
    uint64_t ts = 1;
    while (pos < stream.size() && st.ok()) {
      const size_t n = std::min<size_t>(stream.size() - pos, 1 + rng.Next() % 48);
      st = split.Feed(stream.substr(pos, n), n, ts++, &got);
      pos += n;
    }
    Check(st.ok() == whole_status.ok());
    Check(got.size() == ref.size());
    for (size_t i = 0; i < got.size(); ++i) Check(SameMessage(got[i], ref[i]));
    CheckBounds(got, limits, stream.size(), ts);
  }

  // Property 2: truncated captures, uncaptured tails, Flush and pipelined methods.
  {
    Http1Parser parser(limits);
    std::vector<HttpMessage> out;
    Rng rng{seed ^ 0x9e3779b9u};
    const size_t capture = 1 + (mode & 0x0f) * 4;
    static constexpr std::string_view kMethods[] = {"GET", "HEAD", "CONNECT", "POST"};
    size_t pos = 0;
    uint64_t fed = 0;
    uint64_t ts = 1;
    while (pos < stream.size()) {
      const uint32_t r = rng.Next();
      if (r % 7 == 0) parser.Flush(&out);
      if (r % 5 == 0) parser.ExpectResponseTo(kMethods[(r >> 8) % 4]);
      if (r % 11 == 0) {
        // Records the probe lost: their byte count is known, their content is not.
        const uint64_t lost = 1 + (r >> 16) % 300;
        parser.Gap(lost, ts++, &out);
        fed += lost;
      }
      const size_t n = std::min<size_t>(stream.size() - pos, 1 + (r >> 12) % 64);
      const size_t cap = std::min(n, capture);
      // Sometimes the syscall moved more than the bytes present in the input.
      const uint64_t total = n + ((mode & 0x40) && (r & 0x10000) ? (r >> 20) : 0);
      const absl::Status st = parser.Feed(stream.substr(pos, cap), total, ts++, &out);
      fed += total;
      pos += n;
      if (!st.ok()) {
        Check(parser.failed());
        Check(!parser.Feed("GET / HTTP/1.1\r\n\r\n", 18, ts, &out).ok());
        break;
      }
    }
    if (mode & 0x80) {
      parser.Close(&out);
    } else {
      parser.Flush(&out);
    }
    CheckBounds(out, limits, fed, ts);
  }
  return 0;
}
