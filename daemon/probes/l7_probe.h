#pragma once
// The l7 source: loads bpf/l7.bpf.c, attaches its syscall tracepoints and turns ring
// buffer records into SocketEvents. Lifecycle as every source: Create (init) → Poll → Stop
// (destructor detaches everything).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/probes/edge_reassembly.h"
#include "daemon/probes/edge_targets.h"
#include "daemon/probes/socket_event.h"
#include "daemon/probes/tls_targets.h"

struct l7_bpf;
struct ring_buffer;
struct bpf_link;

namespace isotrace::probes {

struct L7ProbeOptions {
  uint32_t capture_bytes = 1024;        // payload prefix per syscall (≤ 4096)
  uint32_t ringbuf_bytes = 8u << 20;    // power of two, ≥ 4096
  uint32_t inflight_entries = 16384;    // concurrent socket syscalls (syscall fallback only)
  uint32_t conn_entries = 32768;        // TCP connections tracked in the kernel at once
  bool wakeup_every_record = false;     // tests: wake the reader on every record
  bool force_syscall_hooks = false;     // tests/benchmarks: the pre-6.3 data hooks
  bool client_write_start = true;       // probes.client_write_start (docs/configuration.md)
  uint32_t target_tgid = 0;             // 0: every process
  uint32_t self_tgid = 0;               // 0: this process
  // The node is a VM guest (layers::DetectVm decides, once, for the vm layer too): steal
  // is measured only there, on bare metal there is none.
  bool vm_guest = false;
  // TLS: OpenSSL's plaintext through uprobes on every libssl and static OpenSSL binary
  // found under /proc (rescanned every tls_scan_ms for new processes and images).
  bool tls = true;
  uint32_t tls_scan_ms = 2000;
  // Sandboxes whose sockets the host never sees (gVisor netstack, microVMs): TC programs
  // on their host-side devices, found by a /proc scan every edge_scan_ms.
  bool edge = true;
  uint32_t edge_scan_ms = 2000;
  uint32_t edge_capture_bytes = 512;   // payload prefix per message head (≤ 1024)
  uint32_t edge_ringbuf_bytes = 4u << 20;
};

// What the running kernel let the probe measure (decided at load, logged once).
struct L7Features {
  bool sock_tracepoints = false;  // data via sock_{send,recv}_length (else syscall hooks)
  bool thread_acct = false;  // sched_switch/sched_wakeup accounting (the vertical breakdown)
  bool steal = false;        // per-thread hypervisor steal
  bool memstall = false;     // reclaim tracepoints
  bool tcp_incidents = false;  // retransmit/reset tracepoints
  bool oom = false;          // mark_victim tracepoint
  bool send_begin = false;   // a request's first write timed from its start (tcp_sendmsg_locked, or the syscall entry before 6.3)
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
  uint64_t tls_untied = 0;     // kernel: TLS plaintext whose socket was never seen (lost)
  uint64_t tls_ciphertext = 0; // kernel: ciphertext segments, not reported (by design)
  uint64_t synack_limited = 0; // kernel: SYN-ACK retransmits over the per-CPU rate, not sent
  uint64_t acct_resyncs = 0;   // kernel: running threads whose switch-in sched_switch missed
                               // (their interval rebooked from se.sum_exec_runtime)
  uint64_t tls_targets = 0;    // files (libssl, static binaries) the TLS uprobes are on
  // Sandbox edges (bpf/edge.bpf.h, edge_reassembly.h).
  uint64_t edge_devices = 0;   // host-side devices the edge program is on now
  uint64_t edge_packets = 0;   // kernel: packets reported
  uint64_t edge_drops = 0;     // kernel: edge ring buffer full (packet lost to us)
  uint64_t edge_malformed = 0; // kernel: packet headers unreadable
  uint64_t edge_attach_failures = 0;
  EdgeStats edge;              // reassembly
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
  // A process exec'd (the proc probe's exec event): the TLS and sandbox-edge scans look
  // at it again. From the first call on, the edge scan skips processes it already found
  // not to be sandboxes (EdgeScanCache), which is sound only while execs are reported.
  void OnExec(uint32_t tgid);
  L7Counters counters() const;
  const L7Features& features() const { return features_; }

  // Attaches the TLS uprobes to one file (a libssl, or a binary that defines OpenSSL's
  // functions). Every function the file defines is hooked, entry and return together.
  // Exposed for tests; Create and Poll find the node's files themselves.
  absl::Status AttachTls(const std::string& path);
  // Puts the edge program on a host-side device for the sandbox `owner` (exposed for
  // tests; Create and Poll find sandboxes themselves). tgids: the sandbox's processes,
  // whose threads' time becomes the edge spans' sandbox-level breakdown.
  absl::Status AttachEdge(uint32_t ifindex, const EdgeOwner& owner, const std::vector<uint32_t>& tgids);
  void DetachEdge(uint32_t ifindex);

 private:
  L7Probe(Sink sink) : sink_(std::move(sink)) {}
  static int OnRecord(void* ctx, void* data, size_t size);
  static int OnEdgeRecord(void* ctx, void* data, size_t size);
  void ScanTls();
  void ScanEdges();
  void RefreshEdgeGroups();
  struct EdgeDevice {
    uint32_t group = 0;
    uint32_t owner_tgid = 0;
    uint64_t owner_start = 0;
    std::string name;
  };

  Sink sink_;
  l7_bpf* skel_ = nullptr;
  ring_buffer* rb_ = nullptr;
  uint64_t received_ = 0;
  uint64_t malformed_ = 0;
  uint64_t segments_ = 0;
  uint64_t captured_ = 0;
  L7Features features_;
  std::unique_ptr<TlsTargetFinder> tls_finder_;
  std::vector<bpf_link*> tls_links_;
  uint64_t tls_targets_ = 0;
  uint32_t tls_scan_ms_ = 0;
  uint64_t tls_last_scan_ms_ = 0;
  std::unique_ptr<EdgeReassembler> edge_;
  std::unordered_map<uint32_t, EdgeDevice> edge_devices_;  // by ifindex
  std::vector<uint32_t> edge_group_tgids_[256];           // by group (EDGE_MAX_GROUPS)
  bool edge_scan_ = false;
  uint32_t edge_scan_ms_ = 0;
  uint64_t edge_last_scan_ms_ = 0;
  uint64_t edge_attach_failures_ = 0;
  bool edge_ring_read_ = false;  // edge_events added to rb_ (at the first AttachEdge)
  // Set by the first OnExec. Emptied every kEdgeCacheScans scans all the same: an exec
  // whose event was lost (a full proc ring) is then missed for a bounded time.
  std::optional<EdgeScanCache> edge_cache_;
  uint32_t edge_scans_ = 0;
  static constexpr uint32_t kEdgeCacheScans = 15;
};

}  // namespace isotrace::probes
