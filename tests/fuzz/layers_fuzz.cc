// libFuzzer target: the layers parsers that read text a workload controls — its
// /proc/<pid>/cgroup (cgroup names may hold '\n'), mountinfo, kubelet log names,
// OTEL_RESOURCE_ATTRIBUTES — and the built-in rule table matching the paths that come
// out. The first byte picks the parser, the rest is its input.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "daemon/layers/cgroup.h"
#include "daemon/layers/process_resolver.h"
#include "daemon/layers/rules.h"
#include "daemon/layers/runtime_meta.h"

namespace {
using namespace isotrace::layers;

const RuleSet& Builtin() {
  static const std::shared_ptr<const RuleSet> rules = [] {
    auto r = RuleSet::Compile({}, true);
    if (!r.ok()) std::abort();
    return *r;
  }();
  return *rules;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0: {
      auto lines = ParseProcCgroup(in);
      if (!lines.ok()) return 0;
      auto paths = CandidatePaths(*lines);
      MatchRejects rejects;
      if (auto m = Builtin().MatchCgroup(paths, &rejects)) {
        // A match carries only captures that passed their validators: a hostile cgroup
        // name must not become a container id or pod uid.
        if (!m->id.empty() && !ValidContainerId(m->id)) std::abort();
        if (!m->pod_uid.empty() && !ValidPodUid(m->pod_uid)) std::abort();
        if (!m->name.empty() && !ValidName(m->name)) std::abort();
      }
      break;
    }
    case 1: {
      auto mounts = ParseMountinfo(in);
      std::string v2 = V2MountPoint(mounts);
      (void)v2;
      break;
    }
    case 2: {
      (void)ParseLogLinkName(std::string(in));
      break;
    }
    case 3:
      (void)ParsePodDirName(std::string(in));
      break;
    case 4:
      (void)ParseResourceAttributes(in);
      break;
  }
  return 0;
}
