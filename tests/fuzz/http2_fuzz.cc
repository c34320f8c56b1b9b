// libFuzzer harness for the HTTP/2 connection decoder (frames by hand, HPACK through
// nghttp2's inflater). Built in the sanitizer tree (scripts/asan-tree.sh); run as CTest
// fuzz.http2 from the seeds in tests/fuzz/corpus/http2/, or longer with `make fuzz`.
//
// Input: byte 0 chooses the mode (bit 0: start with a valid preface and SETTINGS on both
// sides so the fuzzer reaches streams and HPACK at once; bits 1-3: capture limit; bit 4:
// uncaptured tails and gaps; bit 5: Close at the end), byte 1 seeds the segmentation.
// The rest is a list of records [side+length byte][bytes]: bit 7 of the first byte is the
// side (server when set), the low 7 bits the record's length.
// Checked besides memory safety:
//  1. Fully captured, the events do not depend on where the segment boundaries fall.
//  2. Whatever the input: values within their bounds, open streams within the limit,
//     every kDone preceded by its kRequest, timestamps in order.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/correlate/http2.h"

namespace {

using isotrace::correlate::Http2Connection;
using isotrace::correlate::Http2Event;
using isotrace::correlate::Http2Exchange;
using isotrace::correlate::Http2Limits;
using isotrace::correlate::kHttp2Preface;

void Check(bool ok) {
  if (!ok) std::abort();
}

struct Record {
  bool server;
  std::string bytes;
};

std::string Key(const Http2Event& e) {
  const Http2Exchange& x = e.exchange;
  return std::to_string(int(e.kind)) + "|" + std::to_string(x.stream_id) + "|" + x.method + "|" + x.path + "|" +
         x.authority + "|" + std::to_string(x.status) + "|" + std::to_string(x.grpc_status) + "|" +
         std::to_string(int(x.end)) + "|" + std::to_string(x.request_bytes) + "|" + std::to_string(x.response_bytes);
}

void CheckEvents(const std::vector<Http2Event>& ev, const Http2Limits& limits) {
  std::set<uint32_t> requested;
  for (const auto& e : ev) {
    const Http2Exchange& x = e.exchange;
    for (const std::string* s : {&x.method, &x.path, &x.authority, &x.scheme, &x.content_type, &x.traceparent,
                                 &x.tracestate, &x.grpc_message})
      Check(s->size() <= limits.max_value_bytes);
    Check(x.stream_id % 2 == 1);
    if (e.kind == Http2Event::Kind::kRequest) {
      Check(requested.insert(x.stream_id).second);
      Check(x.end == Http2Exchange::End::kOpen);
    } else {
      Check(requested.count(x.stream_id) == 1);
      Check(x.end != Http2Exchange::End::kOpen);
      if (x.response_first_ts_ns) Check(x.response_first_ts_ns >= x.request_first_ts_ns);
      if (x.response_last_ts_ns) Check(x.response_last_ts_ns >= x.response_first_ts_ns);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const uint32_t seed = data[1] | 0x100u;
  std::vector<Record> records;
  if (mode & 1) {
    std::string client(kHttp2Preface);
    client += std::string("\0\0\0\x04\0\0\0\0\0", 9);
    records.push_back({false, client});
    records.push_back({true, std::string("\0\0\0\x04\0\0\0\0\0", 9)});
    records.push_back({false, std::string("\0\0\0\x04\x01\0\0\0\0", 9)});  // ACKs
    records.push_back({true, std::string("\0\0\0\x04\x01\0\0\0\0", 9)});
  }
  for (size_t i = 2; i < size;) {
    const bool server = data[i] & 0x80;
    const size_t n = std::min<size_t>(data[i] & 0x7f, size - i - 1);
    records.push_back({server, std::string(reinterpret_cast<const char*>(data) + i + 1, n)});
    i += 1 + n;
  }

  Http2Limits limits;
  limits.max_streams = 8;
  limits.max_value_bytes = 32;
  limits.max_header_block_bytes = 4096;
  limits.max_header_table_size = 4096;
  using Side = Http2Connection::Side;

  // Property 1: segmentation independence.
  {
    Http2Connection whole(limits), split(limits);
    std::vector<Http2Event> a, b;
    std::minstd_rand rng(seed);
    uint64_t ts = 1;
    for (const auto& r : records) {
      const Side side = r.server ? Side::kServer : Side::kClient;
      whole.Feed(side, r.bytes, r.bytes.size(), ts, &a);
      size_t pos = 0;
      while (pos < r.bytes.size()) {
        const size_t n = std::min<size_t>(r.bytes.size() - pos, 1 + uint32_t(rng()) % 11);
        split.Feed(side, std::string_view(r.bytes).substr(pos, n), n, ts, &b);
        pos += n;
      }
      ts++;
    }
    Check(whole.failed() == split.failed());
    Check(a.size() == b.size());
    for (size_t i = 0; i < a.size(); i++) Check(Key(a[i]) == Key(b[i]));
    CheckEvents(a, limits);
    Check(whole.open_streams() <= limits.max_streams);
  }

  // Property 2: captures cut short, tails and gaps.
  {
    Http2Connection c(limits);
    std::vector<Http2Event> ev;
    std::minstd_rand rng(seed ^ 0x9e3779b9u);
    const size_t capture = 1 + ((mode >> 1) & 7) * 9;
    uint64_t ts = 1;
    for (const auto& r : records) {
      const Side side = r.server ? Side::kServer : Side::kClient;
      const uint32_t x = uint32_t(rng());
      if ((mode & 0x10) && x % 5 == 0) {
        c.Gap(side, x >> 20, ts, &ev);
      } else {
        const size_t cap = (mode & 0x10) ? std::min(r.bytes.size(), capture) : r.bytes.size();
        c.Feed(side, std::string_view(r.bytes).substr(0, cap), r.bytes.size(), ts, &ev);
      }
      ts++;
      Check(c.open_streams() <= limits.max_streams);
    }
    if (mode & 0x20) {
      c.Close(&ev);
      Check(c.open_streams() == 0);
    }
    CheckEvents(ev, limits);
  }
  return 0;
}
