// HTTP/2 decoder throughput: exchanges (one per stream, i.e. spans) per second on one
// core, on byte streams made by libnghttp2's client and server sessions beforehand
// (not timed). gRPC unary calls over one connection, as a channel carries them.
//
//   build/bin/http2_bench --benchmark_filter=Http2 --benchmark_min_time=1
//
// Each iteration decodes a whole connection: preface, SETTINGS, `range(0)` calls
// (HEADERS + DATA up, HEADERS + DATA + trailers down), `range(1)` of them in flight at
// once. items_per_second is streams (spans) per second.
//
// BM_Http2DecodeNginx: a real nginx h2c connection (bench/data/nginx-h2c.bin, recorded by
// bench/lib/record_h2c.py: 300 GETs of a 64-byte file). nginx encodes its response
// headers as literals with incremental indexing and never refers to its own entries, so
// every response inserts five entries into the decoder's table and evicts as many: the
// dearest pattern for an HPACK decoder, and the commonest server on the web. `range(0)`
// such connections are decoded interleaved, segment by segment, as a busy node's daemon
// meets them (their tables compete for the cache).

#include <benchmark/benchmark.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "daemon/correlate/http2.h"
#include "tests/unit/http2_wire.h"

namespace isotrace::correlate {
namespace {

std::vector<testing_h2::Segment> GrpcConnection(int calls, int concurrent) {
  testing_h2::Wire w;
  const std::string msg("\0\0\0\0\x10" "0123456789abcdef", 21);
  for (int done = 0; done < calls;) {
    std::vector<int32_t> ids;
    for (int i = 0; i < concurrent && done + i < calls; i++) {
      ids.push_back(w.Request({{":method", "POST"},
                               {":scheme", "http"},
                               {":authority", "checkout.default.svc:50051"},
                               {":path", "/shop.v1.Checkout/PlaceOrder"},
                               {"content-type", "application/grpc"},
                               {"te", "trailers"},
                               {"grpc-timeout", "1S"},
                               {"user-agent", "grpc-python/1.51.1 grpc-c/29.0.0 (linux; chttp2)"},
                               {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
                              msg));
    }
    w.Pump();
    for (int32_t id : ids)
      w.Respond(id, {{":status", "200"}, {"content-type", "application/grpc"}}, msg, {{"grpc-status", "0"}});
    w.Pump();
    done += int(ids.size());
  }
  return std::move(w.segments);
}

void BM_Http2DecodeGrpc(benchmark::State& state) {
  const auto segs = GrpcConnection(int(state.range(0)), int(state.range(1)));
  uint64_t bytes = 0;
  for (const auto& s : segs) bytes += s.bytes.size();
  std::vector<Http2Event> out;
  out.reserve(2 * size_t(state.range(0)));
  size_t spans = 0;
  for (auto _ : state) {
    Http2Connection c;
    out.clear();
    uint64_t ts = 1;
    for (const auto& s : segs)
      c.Feed(s.from_client ? Http2Connection::Side::kClient : Http2Connection::Side::kServer, s.bytes,
             s.bytes.size(), ts++, &out);
    spans = 0;
    for (const auto& e : out) spans += e.kind == Http2Event::Kind::kDone;
    if (c.failed() || spans != size_t(state.range(0))) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * state.range(0));
  state.SetBytesProcessed(int64_t(state.iterations() * bytes));
  state.counters["segments_per_span"] = double(segs.size()) / double(state.range(0));
}
BENCHMARK(BM_Http2DecodeGrpc)->Args({1000, 1})->Args({1000, 16})->Unit(benchmark::kMicrosecond);

std::vector<testing_h2::Segment> Recorded(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  const std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<testing_h2::Segment> segs;
  for (size_t i = 0; i + 5 <= data.size();) {
    const auto* h = reinterpret_cast<const uint8_t*>(data.data() + i);
    const size_t n = size_t{h[1]} << 24 | size_t{h[2]} << 16 | size_t{h[3]} << 8 | h[4];
    if (i + 5 + n > data.size()) break;
    segs.push_back({h[0] == 1, data.substr(i + 5, n)});
    i += 5 + n;
  }
  return segs;
}

void BM_Http2DecodeNginx(benchmark::State& state) {
  const auto segs = Recorded(std::string(ISOTRACE_BENCH_DATA) + "/nginx-h2c.bin");
  if (segs.empty()) {
    state.SkipWithError("bench/data/nginx-h2c.bin missing");
    return;
  }
  const int conns = int(state.range(0));
  std::vector<Http2Event> out;
  out.reserve(1024);
  size_t spans = 0, expected = 0;
  for (auto _ : state) {
    std::vector<std::unique_ptr<Http2Connection>> cs;
    for (int i = 0; i < conns; i++) cs.push_back(std::make_unique<Http2Connection>());
    spans = 0;
    uint64_t ts = 1;
    for (const auto& s : segs) {
      for (auto& c : cs) {
        out.clear();
        c->Feed(s.from_client ? Http2Connection::Side::kClient : Http2Connection::Side::kServer, s.bytes,
                s.bytes.size(), ts, &out);
        for (const auto& e : out) spans += e.kind == Http2Event::Kind::kDone && e.exchange.status == 200;
      }
      ts++;
    }
    for (auto& c : cs)
      if (c->failed()) state.SkipWithError("decode failed");
    expected = spans;
  }
  state.SetItemsProcessed(int64_t(state.iterations() * expected));
  state.counters["spans_per_connection"] = double(expected) / conns;
}
BENCHMARK(BM_Http2DecodeNginx)->Arg(1)->Arg(16)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace isotrace::correlate

BENCHMARK_MAIN();
