#pragma once
// The span record: what correlate produces and every exporter consumes. Plain data, no
// behaviour; the one type shared downstream of daemon/correlate.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>


namespace isotrace::correlate {

using TraceId = std::array<uint8_t, 16>;
using SpanId = std::array<uint8_t, 8>;

using AttrValue = std::variant<std::string, int64_t, double, bool>;
struct Attribute {
  std::string key;
  AttrValue value;
};

enum class SpanKind : uint8_t { kServer = 2, kClient = 3 };  // OTLP SpanKind numbers

// A process is identified by (tgid, start time), never pid alone.
struct ProcessKey {
  uint32_t tgid = 0;
  uint64_t start_ns = 0;  // task start_time (CLOCK_MONOTONIC ns)
  bool operator==(const ProcessKey&) const = default;
};

// The vertical breakdown of a span's own window, nanoseconds (DESIGN.md, "isotrace's
// own attributes"). std::nullopt is "absent": a measure the kernel cannot provide (no
// hook on this kernel, the request's ends on different threads) is left out, never 0.
struct Breakdown {
  // Per-thread accounting: all of the first four are there or none (thread_accounting());
  // memstall and steal also need their kernel hooks.
  std::optional<int64_t> oncpu_ns;         // serving thread on CPU
  std::optional<int64_t> runq_ns;          // runnable, waiting for a CPU
  std::optional<int64_t> throttled_ns;     // runnable, held back by the cgroup's CPU quota
  std::optional<int64_t> blkio_ns;         // blocked on block I/O
  std::optional<int64_t> memstall_ns;      // direct reclaim and major-fault stalls
  std::optional<int64_t> steal_ns;         // hypervisor steal while on CPU
  std::optional<int64_t> offcpu_other_ns;  // off CPU for any other reason
  std::optional<int64_t> downstream_unseen_ns;  // SERVER: waits on non-HTTP sockets
  std::optional<int64_t> downstream_ns;    // time in local child spans (set by locate)
  std::optional<int64_t> connect_ns;       // CLIENT: connection setup inside the span
  // The thread parts are the sandbox's, not the request's: a span seen at a sandbox's
  // network edge (gVisor netstack, a microVM) has no serving thread on the host, so its
  // parts are the sandbox's threads' time in the span's window, scaled to the duration
  // where they add up to more (isotrace.breakdown.scope = "sandbox").
  bool sandbox_scope = false;

  bool thread_accounting() const { return oncpu_ns.has_value(); }
};

// The span's connection as TCP saw it.
struct Net {
  std::optional<int64_t> retransmits;  // on the connection (and its local peer) in the span
  std::optional<int64_t> srtt_us;      // smoothed RTT at the span's end
  // CLIENT span on a connection it opened, with retransmits: connection attempts the
  // listeners of the callee's network namespace dropped in the span (a full accept
  // queue: probes/listen_drops.h). Absent: not asked (no retransmit, callee not on this
  // node) or not known (no sample before the connect).
  std::optional<int64_t> listen_drops;
};

// Kernel incidents that touched the request (span events); the names are the verdict
// vocabulary, written at OTLP encoding.
// kPacketDrop: the node's own netfilter dropped a packet of the span's connection on its
// way out (TCP resends it without a retransmission).
enum class IncidentKind : uint8_t { kTcpRetransmit, kTcpReset, kOomKill, kThrottling, kPacketDrop, kCount };

struct Incident {
  enum class ResetBy : uint8_t { kUnknown, kPeer, kLocal };
  IncidentKind kind = IncidentKind::kTcpRetransmit;
  uint64_t time_unix_ns = 0;
  // tcp_*: seen on the other end of the connection on this node (a CLIENT span's server).
  bool peer_side = false;
  ResetBy reset_by = ResetBy::kUnknown;  // tcp_reset on the span's own socket
  int64_t throttled_ns = 0;              // throttling: quota-throttled time in the span
  int64_t throttle_count = 0;            // throttling: periods throttled
  uint32_t victim_pid = 0;               // oom_kill
  std::string victim_comm;               // oom_kill
};

// The trace verdict, on the trace's root-most span on this node (daemon/locate).
struct SpanVerdict {
  std::string service;  // the service.name blamed
  std::string layer;    // app, wasm, sandbox, container, kernel, network, vm, downstream
  std::string cause;    // cpu, runqueue, throttling, block_io, memory, steal, ...
  double share = 0;     // fraction of the span's duration the cause explains
  std::string reason;   // "slow", "shift" or "failed"
};

struct Span {
  TraceId trace_id{};
  SpanId span_id{};
  SpanId parent_span_id{};  // all zero: no parent
  uint8_t trace_flags = 0;  // W3C flags of the incoming traceparent (sampled bit)
  std::string tracestate;   // W3C tracestate, passed through verbatim
  bool remote_parent = false;

  SpanKind kind = SpanKind::kServer;
  uint64_t start_unix_ns = 0;
  uint64_t end_unix_ns = 0;

  // HTTP semantic conventions.
  std::string method;      // http.request.method
  std::string path;        // url.path
  std::string query;       // url.query (without '?'), empty when none
  int status_code = 0;     // http.response.status_code; 0 = no response seen
  std::string protocol_version;  // network.protocol.version ("1.0", "1.1")
  std::string host_header;       // Host header as sent, for server.address on CLIENT spans
  std::string client_address;    // peer of a SERVER span / local end of a CLIENT span
  uint16_t client_port = 0;
  std::string server_address;
  uint16_t server_port = 0;
  std::string error_type;        // error.type (e.g. "500", "connection_reset"), empty when fine
  bool tls = false;              // decoded from TLS plaintext (url.scheme "https")
  std::string_view tls_version;  // tls.protocol.version ("1.2", "1.3"); empty: unknown.
                                 // Points at a constant (correlate/tls.h), never freed.

  // RPC semantic conventions (gRPC over HTTP/2); absent when the span is not an RPC.
  struct Rpc {
    std::string system;         // rpc.system ("grpc")
    std::string service;        // rpc.service ("helloworld.Greeter")
    std::string method;         // rpc.method ("SayHello")
    int grpc_status_code = -1;  // rpc.grpc.status_code; -1 when no grpc-status was seen
  };
  std::optional<Rpc> rpc;

  // Who served/sent it.
  ProcessKey process;
  uint32_t tid = 0;
  uint64_t cgroup_id = 0;
  uint64_t sock_id = 0;  // opaque per-socket id from the kernel (never exported)
  bool edge = false;     // seen at a sandbox's network edge, not at the process's sockets

  // The span on this node that this one runs under, whatever the exported parent says:
  // the SERVER span the same thread was serving (for a CLIENT span), or the caller's
  // CLIENT span matched by connection (for a SERVER span). All zero: a root-most local
  // span. Never exported; daemon/locate builds each trace's local tree from it.
  SpanId local_parent{};

  // isotrace's own measures, typed: correlate writes them, locate and metrics read them,
  // and only the encoders (OTLP, the local API) turn them into named attributes.
  Breakdown breakdown;
  Net net;
  std::vector<Incident> incidents;
  std::optional<SpanVerdict> verdict;
};

// Resource attributes for one process (service.name, process.pid, ...), built by
// daemon/layers and attached by the exporter to every span of that process.
struct Resource {
  std::vector<Attribute> attributes;
};

}  // namespace isotrace::correlate
