// The metrics path's costs (issue 6): Aggregator::Record runs on the poll thread for every
// span, so it must stay a small constant; Collect + RenderText run per scrape/export and
// Top per CLI refresh, so they scale with workloads, not with traffic.
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "daemon/metrics/aggregator.h"
#include "exporters/prometheus/text.h"

namespace {

using isotrace::correlate::Resource;
using isotrace::correlate::Span;

std::shared_ptr<const Resource> Res(int i) {
  auto r = std::make_shared<Resource>();
  r->attributes = {{"service.name", "svc-" + std::to_string(i)},
                   {"host.name", std::string("node-1")},
                   {"process.pid", int64_t{1000 + i}},
                   {"process.executable.name", std::string("python3")},
                   {"isotrace.stack", std::string("vm:kvm/container:runc")}};
  return r;
}

Span MakeSpan(uint64_t i) {
  Span s;
  s.trace_id[0] = static_cast<uint8_t>(i);
  s.span_id[0] = 1;
  s.method = "GET";
  s.path = "/";
  s.status_code = (i % 50 == 0) ? 503 : 200;
  if (s.status_code >= 500) s.error_type = "503";
  s.start_unix_ns = 1'700'000'000'000'000'000ull;
  s.end_unix_ns = s.start_unix_ns + 200000 + (i % 97) * 10000;
  s.process.tgid = 42;
  s.breakdown.oncpu_ns = 100000;
  s.breakdown.runq_ns = 20000;
  s.breakdown.throttled_ns = 0;
  s.breakdown.blkio_ns = 0;
  s.breakdown.offcpu_other_ns = 80000;
  s.net.retransmits = 0;
  s.net.srtt_us = 40;
  return s;
}

isotrace::metrics::AggregatorOptions Options() {
  isotrace::metrics::AggregatorOptions o;
  o.process_stats = false;
  return o;
}

// One span into the aggregator: the per-request cost on the poll thread.
void BM_Record(benchmark::State& state) {
  isotrace::metrics::Aggregator agg(Options());
  const int workloads = static_cast<int>(state.range(0));
  std::vector<std::shared_ptr<const Resource>> res;
  for (int i = 0; i < workloads; ++i) res.push_back(Res(i));
  std::vector<Span> spans;
  for (uint64_t i = 0; i < 256; ++i) spans.push_back(MakeSpan(i));
  uint64_t i = 0;
  for (auto _ : state) {
    agg.Record(res[i % res.size()], spans[i & 255]);
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Record)->Arg(1)->Arg(100)->Arg(1000);

isotrace::metrics::Aggregator* Filled(int workloads) {
  auto* agg = new isotrace::metrics::Aggregator(Options());
  for (int w = 0; w < workloads; ++w) {
    auto r = Res(w);
    for (uint64_t i = 0; i < 200; ++i) agg->Record(r, MakeSpan(i));
  }
  return agg;
}

// A Prometheus scrape: snapshot + text, per number of workloads.
void BM_ScrapeText(benchmark::State& state) {
  std::unique_ptr<isotrace::metrics::Aggregator> agg(Filled(static_cast<int>(state.range(0))));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = isotrace::prometheus::RenderText(agg->Collect());
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_ScrapeText)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

// One `isotrace top` refresh (the window view), per number of workloads.
void BM_Top(benchmark::State& state) {
  std::unique_ptr<isotrace::metrics::Aggregator> agg(Filled(static_cast<int>(state.range(0))));
  for (auto _ : state) benchmark::DoNotOptimize(agg->Top(5));
}
BENCHMARK(BM_Top)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
