#pragma once
// The span record: what correlate produces and every exporter consumes. Plain data, no
// behaviour; the one type shared downstream of daemon/correlate.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
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

struct SpanEvent {  // OTLP span event: kernel incidents during the span
  uint64_t time_unix_ns = 0;
  std::string name;
  std::vector<Attribute> attributes;
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

  // The span on this node that this one runs under, whatever the exported parent says:
  // the SERVER span the same thread was serving (for a CLIENT span), or the caller's
  // CLIENT span matched by connection (for a SERVER span). All zero: a root-most local
  // span. Never exported; daemon/locate builds each trace's local tree from it.
  SpanId local_parent{};

  // isotrace.* attributes (vertical breakdown, verdict), in export order.
  std::vector<Attribute> attributes;
  std::vector<SpanEvent> events;
};

// Resource attributes for one process (service.name, process.pid, ...), built by
// daemon/layers and attached by the exporter to every span of that process.
struct Resource {
  std::vector<Attribute> attributes;
};

}  // namespace isotrace::correlate
