// HTTP/2 decoder throughput: exchanges (one per stream, i.e. spans) per second on one
// core, on byte streams made by libnghttp2's client and server sessions beforehand
// (not timed). gRPC unary calls over one connection, as a channel carries them.
//
//   build/bin/http2_bench --benchmark_filter=Http2 --benchmark_min_time=1
//
// Each iteration decodes a whole connection: preface, SETTINGS, `range(0)` calls
// (HEADERS + DATA up, HEADERS + DATA + trailers down), `range(1)` of them in flight at
// once. items_per_second is streams (spans) per second.

#include <benchmark/benchmark.h>

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

}  // namespace
}  // namespace isotrace::correlate

BENCHMARK_MAIN();
