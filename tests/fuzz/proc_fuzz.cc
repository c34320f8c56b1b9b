// libFuzzer target: everything daemon/layers reads about a process from the host, as a
// fixture tree built from the input — /proc/<pid>/{stat,cmdline,cgroup,environ,maps},
// the exe and fd links, the parent chain, and the runc state.json plus the bundle's
// config.json that name a container — then resolved into a resource the way the daemon
// does it. The files are what a workload (or a runtime it controls) writes.
//
// The tree lives under one temporary directory per fuzzing process (tmpfs when there
// is one), its files rewritten for every input.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "daemon/layers/process_resolver.h"
#include "fuzzer/FuzzedDataProvider.h"

namespace {

namespace fs = std::filesystem;
using namespace isotrace::layers;

// A container id the runc state directory is named by (its state.json is fuzzed).
constexpr const char* kId = "4f3c2b1a09e8d7c6b5a4938271605f4e3d2c1b0a99887766554433221100ffee";

const std::string& Root() {
  // Never destroyed: the atexit clean-up below runs after static destructors would.
  static const std::string* root = [] {
    // tmpfs when there is one: every input rewrites a dozen files.
    const std::string base = fs::is_directory("/dev/shm") ? "/dev/shm" : fs::temp_directory_path().string();
    auto* r = new std::string(base + "/isotrace-proc-fuzz-" + std::to_string(getpid()));
    fs::remove_all(*r);
    fs::create_directories(*r);
    std::atexit([] { std::error_code ec; fs::remove_all(Root(), ec); });
    return r;
  }();
  return *root;
}

void Write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

void Link(const std::string& target, const std::string& path) {
  fs::create_directories(fs::path(path).parent_path());
  std::error_code ec;
  fs::remove(path, ec);
  if (!target.empty()) fs::create_symlink(target, path, ec);  // NUL in target: no link
}

std::string Piece(FuzzedDataProvider& in, size_t max) { return in.ConsumeRandomLengthString(max); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  // The same files every time, each rewritten (no tree removal: that was most of the
  // time per input).
  const std::string proc = Root() + "/proc", host = Root() + "/host";
  Link("mnt:[4026531840]", proc + "/1/ns/mnt");
  Link("mnt:[4026531840]", proc + "/self/ns/mnt");
  Write(proc + "/1/stat", "1 (init) S 0 1 1 0\n");

  // The process (pid 300) and two ancestors whose stat lines are fuzzed too (a cycle, a
  // bad comm with ") S 1 (" in it, a missing field).
  for (uint32_t pid : {300u, 200u, 100u}) {
    const std::string d = proc + "/" + std::to_string(pid);
    Write(d + "/stat", Piece(in, 256));
    Link(Piece(in, 128), d + "/exe");
    if (pid != 300) continue;
    Write(d + "/cmdline", Piece(in, 256));
    Write(d + "/cgroup", Piece(in, 512));
    Write(d + "/environ", Piece(in, 256));
    Write(d + "/maps", Piece(in, 512));
    Link(Piece(in, 64), d + "/ns/mnt");
    Link(Piece(in, 128), d + "/fd/3");
    Link(Piece(in, 128), d + "/fd/4");
  }
  // runc's state and the bundle's OCI config (annotations name pods and containers).
  Write(host + "/run/runc/" + kId + "/state.json", Piece(in, 1024));
  Write(host + "/bundle/config.json", in.ConsumeBytesAsString(in.remaining_bytes()));

  // One resolver for the fuzzing process (compiling the rule table per input would be
  // most of the time); a new process start time per input misses its cache, and the
  // clock moves on so every metadata index rescans the new files.
  static uint64_t now = 1;
  static ProcessResolver* resolver = [&] {
    ResolverOptions o;
    o.proc_root = proc;
    o.host_prefix = host;
    o.max_entries = 8;
    o.vm = VmInfo{};
    o.cgroup_v2_mount = Root() + "/cg";
    o.cgroup_mounts = std::vector<std::string>{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory"};
    o.now = [] { return now; };
    o.rescan_interval_ns = 1;
    o.cgroup_rescan_interval_ns = 1;
    return new ProcessResolver(o);
  }();
  now += 1000000000ull;
  auto r = resolver->Resolve({300, now}, "srv", 0);
  if (!r) std::abort();  // always a resource, however bad the files
  bool has_name = false;
  for (const auto& a : r->attributes) has_name |= a.key == "service.name";
  if (!has_name) std::abort();
  return 0;
}
