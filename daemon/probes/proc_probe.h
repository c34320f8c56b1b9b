#pragma once
// The proc source: loads bpf/proc.bpf.c (exec, exit, *.wasm opens) and hands each record
// to a sink as a ProcEvent. Same lifecycle as every source: Create (init) → Poll/Consume
// → destructor (detach). Optional for the daemon: without it the identity cache falls
// back to comm changes and misses run-time .wasm loads.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct proc_bpf;
struct ring_buffer;

namespace isotrace::probes {

struct ProcEvent {
  enum class Kind : uint8_t { kExec = 1, kExit = 2, kWasmOpen = 3 };
  Kind kind = Kind::kExec;
  uint64_t ts_ns = 0;
  uint64_t proc_start_ns = 0;
  uint32_t tgid = 0;
  uint32_t tid = 0;
  uint32_t ppid = 0;          // the parent when the event fired
  uint64_t parent_start_ns = 0;
  int32_t fd = -1;            // kWasmOpen
  std::string_view comm;
  // kWasmOpen: the opened file's absolute path in the process's mount namespace when
  // path_resolved, else the file's name alone (its path deeper than the kernel's walk).
  std::string_view path;
  bool path_resolved = false;
  uint32_t mnt_ns = 0;        // kWasmOpen: the process's mount namespace inode
};

struct ProcProbeOptions {
  uint32_t ringbuf_bytes = 256u << 10;  // power of two, ≥ 4096 (and ≥ one .wasm record)
  uint32_t target_tgid = 0;             // 0: every process
  uint32_t self_tgid = 0;               // 0: this process
};

struct ProcCounters {
  uint64_t received = 0;
  uint64_t malformed = 0;
  uint64_t ringbuf_drops = 0;   // kernel: ring buffer full
  // Losses of the former entry-side suffix test (a path ≥ PATH_MAX, a full in-flight
  // table): the exit-side test loses neither, so both stay 0; kept for their series.
  uint64_t path_too_long = 0;
  uint64_t inflight_full = 0;
};

class ProcProbe {
 public:
  using Sink = std::function<void(const ProcEvent&)>;

  static absl::StatusOr<std::unique_ptr<ProcProbe>> Create(const ProcProbeOptions& options,
                                                           Sink sink);
  ~ProcProbe();
  ProcProbe(const ProcProbe&) = delete;
  ProcProbe& operator=(const ProcProbe&) = delete;

  absl::StatusOr<int> Poll(int timeout_ms);
  // Hands over whatever is queued, without waiting (cheap when empty).
  int Consume();
  ProcCounters counters() const;
  // Tracepoints attached ("group/name").
  const std::vector<std::string>& attached() const { return attached_; }

 private:
  explicit ProcProbe(Sink sink) : sink_(std::move(sink)) {}
  static int OnRecord(void* ctx, void* data, size_t size);

  Sink sink_;
  proc_bpf* skel_ = nullptr;
  ring_buffer* rb_ = nullptr;
  uint64_t received_ = 0;
  uint64_t malformed_ = 0;
  std::vector<std::string> attached_;
};

}  // namespace isotrace::probes
