#pragma once
// The l7 source: loads bpf/l7.bpf.c, attaches its syscall tracepoints and turns ring
// buffer records into SocketEvents. Lifecycle as every source: Create (init) → Poll → Stop
// (destructor detaches everything).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/probes/socket_event.h"

struct l7_bpf;
struct ring_buffer;

namespace isotrace::probes {

struct L7ProbeOptions {
  uint32_t capture_bytes = 1024;        // payload prefix per syscall (≤ 4096)
  uint32_t ringbuf_bytes = 8u << 20;    // power of two, ≥ 4096
  uint32_t inflight_entries = 16384;    // concurrent socket syscalls (syscall fallback only)
  uint32_t conn_entries = 32768;        // TCP connections tracked in the kernel at once
  bool wakeup_every_record = false;     // tests: wake the reader on every record
  bool force_syscall_hooks = false;     // tests/benchmarks: the pre-6.3 data hooks
  uint32_t target_tgid = 0;             // 0: every process
  uint32_t self_tgid = 0;               // 0: this process
  // The node is a VM guest (layers::DetectVm decides, once, for the vm layer too): steal
  // is measured only there, on bare metal there is none.
  bool vm_guest = false;
};

// What the running kernel let the probe measure (decided at load, logged once).
struct L7Features {
  bool sock_tracepoints = false;  // data via sock_{send,recv}_length (else syscall hooks)
  bool thread_acct = false;  // sched_switch/sched_wakeup accounting (the vertical breakdown)
  bool steal = false;        // per-thread hypervisor steal
  bool memstall = false;     // reclaim tracepoints
  bool tcp_incidents = false;  // retransmit/reset tracepoints
  bool oom = false;          // mark_victim tracepoint
};

struct L7Counters {
  uint64_t received = 0;       // events read from the ring buffer
  uint64_t malformed = 0;      // records shorter than the ABI header
  uint64_t ringbuf_drops = 0;  // kernel: ring buffer full (summed over CPUs)
  uint64_t inflight_full = 0;  // kernel: in-flight table full
  uint64_t read_failures = 0;  // kernel: payload not readable
  uint64_t segments = 0;       // data records read (one per send/recv call)
  uint64_t captured = 0;       // of which carried payload (message starts)
  uint64_t wakeups = 0;        // kernel: records that forced a reader wake-up
};

class L7Probe {
 public:
  using Sink = std::function<void(const SocketEvent&)>;

  static absl::StatusOr<std::unique_ptr<L7Probe>> Create(const L7ProbeOptions& options, Sink sink);
  ~L7Probe();
  L7Probe(const L7Probe&) = delete;
  L7Probe& operator=(const L7Probe&) = delete;

  // Waits up to timeout_ms (or until the ring fills past its wake-up mark), then hands
  // every record to the sink. Returns how many.
  absl::StatusOr<int> Poll(int timeout_ms);
  L7Counters counters() const;
  const L7Features& features() const { return features_; }

 private:
  L7Probe(Sink sink) : sink_(std::move(sink)) {}
  static int OnRecord(void* ctx, void* data, size_t size);

  Sink sink_;
  l7_bpf* skel_ = nullptr;
  ring_buffer* rb_ = nullptr;
  uint64_t received_ = 0;
  uint64_t malformed_ = 0;
  uint64_t segments_ = 0;
  uint64_t captured_ = 0;
  L7Features features_;
};

}  // namespace isotrace::probes
