// Micro benchmark of the daemon's user-space hot path on one core:
//   probe record (SocketEvent) → HTTP/1.x framing + correlation (ConnectionTracker)
//   → OTLP encoding in batches of 512 (EncodeSpansWire: the request's protobuf wire bytes,
//   what the exporter hands to gRPC).
// The traffic is synthetic but shaped like the e2e tests' nginx traffic: keep-alive
// connections from a few client processes, each request a GET with 8 ordinary headers
// (half also carry a W3C traceparent + tracestate), each response a 200 with a
// Content-Length body of which only the capture limit's worth of bytes was copied.
// Figures: items_per_second = spans/s. Every benchmark checks that the tracker produced
// exactly one span per request, so a broken correlator cannot post a fast number.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "daemon/correlate/connection_tracker.h"
#include "daemon/correlate/traceparent.h"
#include "daemon/util/clock.h"
#include "exporters/otlp/encode.h"

namespace isotrace::bench {
namespace {

using correlate::ConnectionTracker;
using correlate::Span;
using probes::SocketEvent;

constexpr int kConnections = 64;          // concurrent keep-alive connections
constexpr int kRequestsPerConnection = 64;  // per round; rounds repeat on the same conns
constexpr int kProcesses = 4;             // serving processes (distinct OTLP resources)
constexpr size_t kCaptureBytes = 1024;    // the daemon's default probes.capture_bytes
constexpr size_t kBodyBytes = 4096;       // response body, mostly uncaptured
constexpr size_t kBatch = 512;            // exporter.batch_size default

// One round of traffic: every connection serves kRequestsPerConnection requests,
// interleaved across connections the way a busy server's syscalls are.
struct Traffic {
  std::vector<std::string> storage;  // payload bytes; events point into it
  std::vector<SocketEvent> accepts;  // once, before the first round
  std::vector<SocketEvent> events;   // one round
  size_t requests_per_round = 0;
};

uint64_t Mix(uint64_t x) {  // splitmix64: deterministic, distinct ids without a RNG
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string Hex(uint64_t v, int digits) {
  static const char* kDigits = "0123456789abcdef";
  std::string s(digits, '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) s[i] = kDigits[v & 15];
  return s;
}

SocketEvent BaseEvent(int conn) {
  SocketEvent ev;
  ev.tgid = 10000 + static_cast<uint32_t>(conn % kProcesses);
  ev.tid = ev.tgid;
  ev.proc_start_ns = 123456789 + ev.tgid;
  ev.fd = 100 + conn;
  ev.sock_id = 0xffff888000000000ull + static_cast<uint64_t>(conn) * 4096;
  ev.conn_id = static_cast<uint64_t>(conn) + 1;
  ev.cgroup_id = 4242;
  ev.family = 2;  // AF_INET
  ev.laddr = {127, 0, 0, 1};
  ev.raddr = {127, 0, 0, 1};
  ev.lport = 8080;
  ev.rport = static_cast<uint16_t>(40000 + conn);
  ev.comm = "nginx";
  return ev;
}

Traffic MakeTraffic() {
  Traffic t;
  const size_t total = static_cast<size_t>(kConnections) * kRequestsPerConnection;
  t.storage.reserve(total * 2);
  for (int c = 0; c < kConnections; ++c) {
    SocketEvent ev = BaseEvent(c);
    ev.kind = SocketEvent::Kind::kAccept;
    ev.ret = ev.fd;
    t.accepts.push_back(ev);
  }
  for (int r = 0; r < kRequestsPerConnection; ++r) {
    for (int c = 0; c < kConnections; ++c) {
      const uint64_t n = static_cast<uint64_t>(r) * kConnections + c;
      std::string req = "GET /api/v1/items/" + std::to_string(n % 997) + "?page=" +
                        std::to_string(r) + "&sort=desc HTTP/1.1\r\n" +
                        "Host: shop.internal:8080\r\n"
                        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench/1.0\r\n"
                        "Accept: application/json, text/plain, */*\r\n"
                        "Accept-Encoding: gzip, deflate, br\r\n"
                        "Accept-Language: en-US,en;q=0.9\r\n"
                        "Connection: keep-alive\r\n"
                        "Cookie: session=" + Hex(Mix(n), 16) + Hex(Mix(n + 1), 16) + "\r\n"
                        "X-Request-Id: " + Hex(Mix(n + 2), 16) + "\r\n";
      if (n % 2 == 0) {
        req += "traceparent: 00-" + Hex(Mix(n + 3), 16) + Hex(Mix(n + 4), 16) + "-" +
               Hex(Mix(n + 5), 16) + "-01\r\n" + "tracestate: vendor=" + Hex(Mix(n + 6), 8) +
               "\r\n";
      }
      req += "\r\n";
      std::string resp =
          "HTTP/1.1 200 OK\r\n"
          "Server: nginx/1.22.1\r\n"
          "Date: Mon, 06 Jan 2025 10:00:00 GMT\r\n"
          "Content-Type: application/json\r\n"
          "Content-Length: " + std::to_string(kBodyBytes) + "\r\n"
          "Last-Modified: Mon, 06 Jan 2025 09:00:00 GMT\r\n"
          "Connection: keep-alive\r\n"
          "ETag: \"" + Hex(Mix(n + 7), 12) + "\"\r\n"
          "Accept-Ranges: bytes\r\n\r\n";
      const int64_t resp_total = static_cast<int64_t>(resp.size() + kBodyBytes);
      // The probe copies at most kCaptureBytes of the write: head + start of the body.
      resp.append(kCaptureBytes - resp.size(), '{');

      t.storage.push_back(std::move(req));
      SocketEvent in = BaseEvent(c);
      in.kind = SocketEvent::Kind::kData;
      in.dir = SocketEvent::Direction::kIngress;
      in.payload = t.storage.back();
      in.ret = static_cast<int64_t>(in.payload.size());
      t.events.push_back(in);

      t.storage.push_back(std::move(resp));
      SocketEvent out = BaseEvent(c);
      out.kind = SocketEvent::Kind::kData;
      out.dir = SocketEvent::Direction::kEgress;
      out.payload = t.storage.back();
      out.ret = resp_total;
      t.events.push_back(out);
    }
  }
  t.requests_per_round = total;
  return t;
}

const Traffic& GetTraffic() {
  static const Traffic t = MakeTraffic();
  return t;
}

// One OTLP resource per serving process, as daemon/layers would build it.
std::vector<std::shared_ptr<const correlate::Resource>> MakeResources() {
  std::vector<std::shared_ptr<const correlate::Resource>> out;
  for (int p = 0; p < kProcesses; ++p) {
    auto r = std::make_shared<correlate::Resource>();
    r->attributes = {{"service.name", std::string("shop-") + std::to_string(p)},
                     {"host.name", std::string("node-1")},
                     {"process.pid", int64_t{10000 + p}},
                     {"process.executable.name", std::string("nginx")}};
    out.push_back(std::move(r));
  }
  return out;
}

// Feeds one round with fresh, increasing timestamps (1 µs per syscall, 2 µs syscalls).
void FeedRound(ConnectionTracker& tracker, const Traffic& t, uint64_t* clock_ns) {
  for (SocketEvent ev : t.events) {  // a copy: stamping must not touch the shared set
    ev.ts_enter_ns = *clock_ns;
    ev.ts_exit_ns = *clock_ns + 2000;
    *clock_ns += 1000;
    tracker.OnEvent(ev);
  }
}

util::Clock& BenchClock() {
  static util::Clock clock([] { return uint64_t{1'000'000'000}; },
                           [] { return uint64_t{1'736'000'000'000'000'000}; });
  return clock;
}

bool CheckSpans(benchmark::State& state, uint64_t spans, uint64_t rounds, const Traffic& t) {
  if (spans != rounds * t.requests_per_round) {
    state.SkipWithError(("tracker produced " + std::to_string(spans) + " spans for " +
                         std::to_string(rounds * t.requests_per_round) + " requests")
                            .c_str());
    return false;
  }
  return true;
}

// parse → correlate: SocketEvents in, Spans out (sink keeps nothing).
void BM_ParseCorrelate(benchmark::State& state) {
  const Traffic& t = GetTraffic();
  uint64_t spans = 0;
  ConnectionTracker tracker({}, &BenchClock(), [&](Span&& s) {
    benchmark::DoNotOptimize(s.span_id);
    ++spans;
  });
  for (const auto& ev : t.accepts) tracker.OnEvent(ev);
  uint64_t clock_ns = 2'000'000'000;
  uint64_t rounds = 0;
  for (auto _ : state) {
    FeedRound(tracker, t, &clock_ns);
    ++rounds;
  }
  if (!CheckSpans(state, spans, rounds, t)) return;
  state.SetItemsProcessed(static_cast<int64_t>(spans));
  state.counters["events_per_span"] =
      static_cast<double>(t.events.size()) / static_cast<double>(t.requests_per_round);
  state.counters["ns_per_span"] = benchmark::Counter(
      static_cast<double>(spans), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ParseCorrelate)->Unit(benchmark::kMillisecond);

// encode: 512 spans → ExportTraceServiceRequest wire bytes.
void BM_EncodeBatch512(benchmark::State& state) {
  const Traffic& t = GetTraffic();
  auto resources = MakeResources();
  std::vector<otlp::SpanItem> batch;
  ConnectionTracker tracker({}, &BenchClock(), [&](Span&& s) {
    if (batch.size() < kBatch) {
      auto& res = resources[s.process.tgid % kProcesses];
      batch.push_back({res, std::move(s)});
    }
  });
  for (const auto& ev : t.accepts) tracker.OnEvent(ev);
  uint64_t clock_ns = 2'000'000'000;
  FeedRound(tracker, t, &clock_ns);
  if (batch.size() != kBatch) {
    state.SkipWithError("not enough spans for one batch");
    return;
  }
  const otlp::Scope scope;
  std::string wire;
  uint64_t bytes = 0;
  for (auto _ : state) {
    wire.clear();
    if (auto st = otlp::EncodeSpansWire(batch, scope, &wire); !st.ok()) {
      state.SkipWithError(std::string(st.message()).c_str());
      return;
    }
    bytes += wire.size();
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["wire_bytes_per_span"] =
      static_cast<double>(wire.size()) / static_cast<double>(kBatch);
}
BENCHMARK(BM_EncodeBatch512)->Unit(benchmark::kMicrosecond);

// The whole path: events → tracker → batches of 512 → encoded and serialised.
void BM_ParseCorrelateEncode(benchmark::State& state) {
  const Traffic& t = GetTraffic();
  auto resources = MakeResources();
  const otlp::Scope scope;
  std::vector<otlp::SpanItem> batch;
  batch.reserve(kBatch);
  std::string wire;
  uint64_t spans = 0, bytes = 0, batches = 0;
  bool encode_ok = true;
  ConnectionTracker tracker({}, &BenchClock(), [&](Span&& s) {
    ++spans;
    batch.push_back({resources[s.process.tgid % kProcesses], std::move(s)});
    if (batch.size() < kBatch) return;
    wire.clear();
    encode_ok &= otlp::EncodeSpansWire(batch, scope, &wire).ok();
    bytes += wire.size();
    ++batches;
    batch.clear();
  });
  for (const auto& ev : t.accepts) tracker.OnEvent(ev);
  uint64_t clock_ns = 2'000'000'000;
  uint64_t rounds = 0;
  for (auto _ : state) {
    FeedRound(tracker, t, &clock_ns);
    ++rounds;
  }
  if (!encode_ok) {
    state.SkipWithError("EncodeSpansWire failed");
    return;
  }
  if (!CheckSpans(state, spans, rounds, t)) return;
  state.SetItemsProcessed(static_cast<int64_t>(spans));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["batches"] = static_cast<double>(batches);
  state.counters["ns_per_span"] = benchmark::Counter(
      static_cast<double>(spans), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ParseCorrelateEncode)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace isotrace::bench

BENCHMARK_MAIN();
