// Isolation-stack identity costs: what a span pays (a cache hit), what a new process
// pays (cgroup rule matching, a full /proc read), and what the proc probe's in-kernel
// .wasm filter adds to every openat on the node (needs root; skipped otherwise).
#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "benchmark/benchmark.h"
#include "daemon/layers/process_resolver.h"
#include "daemon/layers/rules.h"
#include "daemon/probes/environment.h"
#include "daemon/probes/proc_probe.h"

namespace {

using isotrace::layers::ProcessResolver;
using isotrace::layers::RuleSet;

const std::string kId = "4f3c2b1a09e8d7c6b5a4938271605f4e3d2c1b0a99887766554433221100ffee";

void BM_MatchCgroupKubernetes(benchmark::State& state) {
  auto rules = *RuleSet::Compile({}, true);
  std::vector<std::string> paths = {
      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c2a3b_4d5e_6f70_8192_"
      "a3b4c5d6e7f8.slice/cri-containerd-" + kId + ".scope"};
  for (auto _ : state) benchmark::DoNotOptimize(rules->MatchCgroup(paths));
}
BENCHMARK(BM_MatchCgroupKubernetes);

void BM_MatchCgroupNoMatch(benchmark::State& state) {
  // The common case on a host: every rule is tried and none matches.
  auto rules = *RuleSet::Compile({}, true);
  std::vector<std::string> paths = {"/user.slice/user-1000.slice/session-3.scope",
                                    "/process_api/a63216536f8f7a0ab5d8dc6a6f1e014c"};
  for (auto _ : state) benchmark::DoNotOptimize(rules->MatchCgroup(paths));
}
BENCHMARK(BM_MatchCgroupNoMatch);

void BM_ResolveCacheHit(benchmark::State& state) {
  // Per span: the resource of a process already resolved.
  ProcessResolver r;
  isotrace::correlate::ProcessKey key{static_cast<uint32_t>(getpid()), 1};
  r.Resolve(key, "layers_bench");
  for (auto _ : state) benchmark::DoNotOptimize(r.Resolve(key, "layers_bench"));
}
BENCHMARK(BM_ResolveCacheHit);

void BM_ResolveNewProcess(benchmark::State& state) {
  // Per new process: /proc reads, ancestry, namespaces, maps, rule matching (this
  // process stands in for the new one; each iteration is a new key).
  ProcessResolver r;
  uint64_t start = 1;
  for (auto _ : state)
    benchmark::DoNotOptimize(
        r.Resolve({static_cast<uint32_t>(getpid()), start++}, "layers_bench"));
}
BENCHMARK(BM_ResolveNewProcess)->Unit(benchmark::kMicrosecond);

void Openat(benchmark::State& state) {
  for (auto _ : state) {
    int fd = openat(AT_FDCWD, "/etc/hostname", O_RDONLY | O_CLOEXEC);
    benchmark::DoNotOptimize(fd);
    close(fd);
  }
}

void BM_OpenatWithoutProcProbe(benchmark::State& state) { Openat(state); }
BENCHMARK(BM_OpenatWithoutProcProbe);

void BM_OpenatWithProcProbe(benchmark::State& state) {
  // The same openat with the probe attached: entry reads the path and tests ".wasm";
  // nothing reaches user space.
  isotrace::probes::InstallLibbpfLogger(false);
  isotrace::probes::ProcProbeOptions opts;
  opts.self_tgid = 0xffffffffu;  // this process is the subject
  auto probe = isotrace::probes::ProcProbe::Create(opts, [](const isotrace::probes::ProcEvent&) {});
  if (!probe.ok()) {
    state.SkipWithError(("proc probe not loadable here (needs root): " +
                         std::string(probe.status().message()))
                            .c_str());
    return;
  }
  Openat(state);
  (*probe)->Consume();
}
BENCHMARK(BM_OpenatWithProcProbe);

}  // namespace

BENCHMARK_MAIN();
