#pragma once
// Normalised records out of daemon/probes. Raw BPF structs never travel past this module.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace isotrace::probes {

// The calling thread's cumulative time accounting at an event (kept by the kernel, see
// bpf/acct.bpf.h). oncpu+runq+throttled+blkio+memstall+sleep covers every nanosecond
// since the thread was first seen; steal is part of oncpu.
struct ThreadAcct {
  bool valid = false;  // false: accounting hooks not attached (attributes stay absent)
  uint64_t oncpu_ns = 0;
  uint64_t runq_ns = 0;
  uint64_t throttled_ns = 0;
  uint64_t blkio_ns = 0;
  uint64_t memstall_ns = 0;
  uint64_t sleep_ns = 0;
  uint64_t steal_ns = 0;
  uint32_t throttle_count = 0;
};

struct SocketEvent {
  enum class Kind : uint8_t {
    kData = 1,     // bytes moved: `ret` of them at offset `pos` of direction `dir`
    kAccept = 2,   // (synthetic tests only: the kernel side no longer sends these)
    kConnect = 3,  // (synthetic tests only)
    kClose = 4,    // the socket reached TCP_CLOSE
    // Kernel incidents: sock_id names the socket (kOomKill: tgid/cgroup_id the victim).
    kRetransmit = 5,
    kResetReceived = 6,
    kResetSent = 7,
    kOomKill = 8,
    kFin = 9,  // one direction ended: egress = our FIN, ingress = the reader saw EOF
    // TLS: `payload` is the start of the handshake record holding the ServerHello (with or
    // without its 5-byte record header), for the negotiated version. No position.
    kTlsHello = 10,
    kLocalDrop = 11,  // the node's netfilter dropped a packet this socket sent
    // This side connect()ed (before the first data): ts = conn_start_ns, acct = the
    // connecting thread then, retransmits = SYN retransmits so far.
    kConnected = 12,
    // A listener resent a SYN-ACK (the connection is not accepted yet): no connection
    // ids; the tuple is the listener's view (laddr/lport its side, raddr/rport the peer).
    kSynAckRetransmit = 13,
  };
  enum class Direction : uint8_t { kNone = 0, kIngress = 1, kEgress = 2 };

  Kind kind = Kind::kData;
  Direction dir = Direction::kNone;
  uint8_t syscall = 0;       // l7_syscall number, for tests and debugging
  uint64_t ts_enter_ns = 0;  // CLOCK_MONOTONIC
  uint64_t ts_exit_ns = 0;
  uint32_t tgid = 0;
  uint32_t tid = 0;
  uint64_t proc_start_ns = 0;
  int32_t fd = -1;           // where the hook knows it, else -1
  uint64_t conn_id = 0;      // the probe's connection id: unique, never reused
  uint64_t sock_id = 0;      // struct sock address: reused after the socket is freed
  uint64_t cgroup_id = 0;
  int64_t ret = 0;           // bytes moved (kData), new fd (kAccept), result (kConnect)
  // kData: offset of the segment's first byte in its direction; kFin: bytes moved in
  // that direction before the end. A jump past the bytes already seen = lost records.
  uint64_t pos = 0;
  uint32_t seq = 0;          // the connection's record number (a jump = lost records)
  bool msg_start = false;    // the kernel saw a message start here (direction change or
                             // a start line); later segments of a message carry no payload
  bool new_conn = false;     // the first record of this connection
  bool tls = false;          // a TLS connection: data records carry its plaintext
  // kData: `acct` was taken at ts_enter_ns (the start of a request's first write on a
  // connection this side opened), not at ts_exit_ns.
  bool acct_at_enter = false;
  // Seen at a sandbox's network edge (edge_reassembly.h), not at a socket: `acct` is the
  // sandbox's accounting summed over its threads, tid is the sandbox's tgid.
  bool edge = false;
  uint64_t conn_start_ns = 0;    // this side connect()ed at (0: accepted, or unknown)
  uint64_t established_ns = 0;   // its handshake completed at (0: not yet / unknown)
  uint8_t family = 0;        // AF_INET / AF_INET6
  std::array<uint8_t, 16> laddr{};
  std::array<uint8_t, 16> raddr{};
  uint16_t lport = 0;
  uint16_t rport = 0;
  std::string_view comm;     // valid during the sink callback only
  std::string_view payload;  // captured prefix; valid during the sink callback only
  ThreadAcct acct;
  uint32_t srtt_us = 0;      // TCP smoothed RTT of the socket at the event
  uint32_t retransmits = 0;  // cumulative retransmits on the socket
  uint32_t netns = 0;        // connect()ed sockets: network namespace inode (else 0)
};

// "1.2.3.4" / "::1"; IPv4-mapped IPv6 addresses are shown as IPv4.
std::string FormatAddress(uint8_t family, const std::array<uint8_t, 16>& addr);

}  // namespace isotrace::probes
