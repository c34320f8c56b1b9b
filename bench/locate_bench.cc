// Micro benchmark of daemon/locate on the poll thread: every span is held, its trace's
// local tree judged when the root-most span ends, baselines learnt, spans released.
// Trees are three-service chains shaped like bench/locate's (root SERVER → CLIENT →
// SERVER → CLIENT → SERVER, five spans). Figures: items_per_second = spans/s.
//   BM_LocateNormal: every trace normal (the common case: judge + learn + release).
//   BM_LocateSlow:   one trace in four slow (a verdict each: critical path, evidence).
// Each checks that every span was released and (Slow) that every trace got its verdict.

#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "daemon/locate/locator.h"

namespace isotrace::bench {
namespace {

using correlate::Span;
using correlate::SpanKind;

std::shared_ptr<const correlate::Resource> Res(const std::string& s) {
  auto r = std::make_shared<correlate::Resource>();
  r->attributes.push_back({"service.name", s});
  r->attributes.push_back({"process.pid", int64_t{1234}});
  return r;
}

Span MakeSpan(SpanKind kind, uint64_t id, uint64_t parent, uint64_t start, uint64_t end, int64_t runq) {
  Span s;
  s.kind = kind;
  s.trace_id[0] = 1;
  for (int i = 0; i < 8; i++) s.span_id[i] = static_cast<uint8_t>(id >> (8 * i));
  for (int i = 0; i < 8; i++) s.local_parent[i] = static_cast<uint8_t>(parent >> (8 * i));
  s.start_unix_ns = start;
  s.end_unix_ns = end;
  s.method = "GET";
  s.path = "/api/orders";
  s.status_code = 200;
  s.server_address = "127.0.0.1";
  s.server_port = 8080;
  const int64_t d = static_cast<int64_t>(end - start);
  auto& b = s.breakdown;
  b.oncpu_ns = d / 4;
  b.runq_ns = runq;
  b.throttled_ns = 0;
  b.blkio_ns = 0;
  b.memstall_ns = 0;
  b.steal_ns = 0;
  b.offcpu_other_ns = d - d / 4 - runq;
  return s;
}

void Run(benchmark::State& state, bool slow) {
  uint64_t released = 0, verdicts = 0, traces = 0;
  // Arg: locate.shift_factor ×10 (13: the default 1.3; 0: the shift rule off), so the
  // rule's cost shows side by side in one run.
  locate::LocateOptions opt;
  opt.shift_factor = static_cast<double>(state.range(0)) / 10.0;
  locate::Locator loc(
      opt,
      [&](const std::shared_ptr<const correlate::Resource>&, std::shared_ptr<const Span>) { released++; },
      [&](const locate::Verdict&, const std::shared_ptr<const correlate::Resource>&) { verdicts++; });
  auto a = Res("front"), b = Res("svc-b"), c = Res("svc-c");
  uint64_t now = 1'000'000'000'000ull, id = 1;
  auto trace = [&](bool fault) {
    const int64_t runq = fault ? 60'000'000 : 100'000;
    const uint64_t t = now;
    const uint64_t s1 = id++, c1 = id++, s2 = id++, c2 = id++, s3 = id++;
    loc.Add(c, MakeSpan(SpanKind::kServer, s3, c2, t + 3'000'000, t + 6'000'000 + runq, runq), now);
    loc.Add(b, MakeSpan(SpanKind::kClient, c2, s2, t + 2'500'000, t + 6'500'000 + runq, 0), now);
    loc.Add(b, MakeSpan(SpanKind::kServer, s2, c1, t + 2'000'000, t + 7'000'000 + runq, 0), now);
    loc.Add(a, MakeSpan(SpanKind::kClient, c1, s1, t + 1'000'000, t + 8'000'000 + runq, 0), now);
    loc.Add(a, MakeSpan(SpanKind::kServer, s1, 0, t, t + 9'000'000 + runq, 0), now);
    now += 10'000'000;
    loc.Tick(now);  // past the previous root's hold: judged now
    traces++;
  };
  for (int i = 0; i < 300; i++) trace(false);  // baselines learnt
  now += 1'000'000'000;
  loc.Tick(now);  // the warm-up's last trees judged and released
  released = verdicts = traces = 0;
  uint64_t faults = 0;
  for (auto _ : state) {
    const bool fault = slow && traces % 4 == 0;
    faults += fault;
    trace(fault);
  }
  loc.Drain(now + 1'000'000'000);
  state.SetItemsProcessed(static_cast<int64_t>(traces) * 5);
  if (released != traces * 5) state.SkipWithError("a span was not released");
  if (verdicts != faults) state.SkipWithError("verdicts differ from slow traces");
  state.counters["verdicts"] = static_cast<double>(verdicts);
}

void BM_LocateNormal(benchmark::State& state) { Run(state, false); }
void BM_LocateSlow(benchmark::State& state) { Run(state, true); }
BENCHMARK(BM_LocateNormal)->Arg(13)->Arg(0)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LocateSlow)->Arg(13)->Arg(0)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace isotrace::bench

BENCHMARK_MAIN();
