#pragma once
// L7 sessions → spans. One entry per (process, fd); each holds the two HTTP/1.x framers
// (request side and response side) and the requests still waiting for a response.
//
// Role: a connection whose first captured request arrives (ingress) is served by this
// process → SERVER spans; one whose first request leaves (egress) is a CLIENT.
// Timestamps: a SERVER span starts when the request's first byte reached the process
// (the read that returned it) and ends when the response's last byte was handed to the
// kernel (that write). A CLIENT span starts at the write that sent the request's first
// byte (its entry where the probe sees syscall entries, i.e. on kernels before 6.3; the
// moment TCP took the bytes on newer ones) and ends at the read that returned the
// response's last byte.
//
// Byte positions (bpf/l7.h): every record says where its bytes sit in their direction.
// A position past the bytes already seen means records were lost: the parser skips
// exactly that many bytes (a Content-Length body stays in frame), and where messages may
// have begun in them it resyncs on the next start line; a response seen after such a
// gap answers the newest pending request (HTTP/1.1 clients do not pipeline) and the
// older ones are dropped and counted. Everything is counted (TrackerStats).
//
// Links (docs/locate.md has the rules and why each is safe):
// - A CLIENT request is parented to the SERVER request its thread is serving (from the
//   request's read until its response's write). When the thread serves several at once
//   (an event loop), only the one with the same method and target that has no client
//   child yet qualifies; otherwise the CLIENT span starts its own trace (counted).
// - A SERVER request whose connection's other end is a CLIENT connection on this node
//   (mirrored 4-tuple) joins that client's trace as its child: the oldest request on the
//   client side not yet claimed, and only when its request line is the same; anything
//   else stays unlinked and is counted. A wrong link is worse than none.
// - Through NAT (a Service address): a SERVER request whose mirrored 4-tuple names no
//   connection here asks conntrack (probes/conntrack.h) for the reply tuples of the
//   CLIENT connections opened since the last such miss; a caller whose reply tuple is the
//   callee's socket is its other end, and the peer rule applies to it. Two callers
//   translated to the same callee tuple are ambiguous: neither links (counted).
// - A valid traceparent the app itself sent wins for the exported trace and parent. One
//   that merely repeats the incoming request's header (a proxy forwarding headers) is
//   not the app's and does not override the local link.

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/random/random.h"
#include "daemon/correlate/http1.h"
#include "daemon/correlate/http2.h"
#include "daemon/correlate/span.h"
#include "daemon/probes/conntrack.h"
#include "daemon/probes/listen_drops.h"
#include "daemon/probes/socket_event.h"
#include "daemon/util/clock.h"

namespace isotrace::correlate {

struct TrackerLimits {
  size_t max_connections = 65536;       // beyond: least recently used is dropped
  size_t max_pending_per_connection = 64;  // pipelined requests awaiting a response
  uint64_t idle_timeout_ns = 300'000'000'000ull;  // no activity → forgotten
  Http1Parser::Limits parser;
  Http2Limits http2;
};

struct TrackerStats {
  uint64_t events = 0;
  uint64_t connections_opened = 0;
  uint64_t connections_evicted = 0;      // over max_connections
  uint64_t connections_expired = 0;      // idle timeout
  uint64_t connections_not_http = 0;     // stopped tracking: not HTTP/1.x
  uint64_t requests_overflow = 0;        // over max_pending_per_connection
  uint64_t responses_unmatched = 0;      // a response with no request seen
  uint64_t requests_unanswered = 0;      // connection closed before a response
  uint64_t spans = 0;
  uint64_t traceparent_invalid = 0;      // present but rejected → new trace
  uint64_t incidents = 0;                // kernel incidents matched to a tracked connection
  uint64_t synack_retransmits = 0;       // SYN-ACKs resent by a listener (kept by 4-tuple)
  uint64_t synack_on_spans = 0;          // of which counted on a caller's CLIENT span
  // Links (see the header comment).
  uint64_t links_thread = 0;             // CLIENT parented to the SERVER its thread serves
  uint64_t links_thread_ambiguous = 0;   // several SERVER requests could own it: unlinked
  uint64_t links_peer = 0;               // SERVER joined to the caller's CLIENT on this node
  uint64_t links_peer_ambiguous = 0;     // the caller's next request differs: unlinked
  uint64_t links_peer_unmatched = 0;     // caller's connection seen, no request to match
  // SERVER spans that ended before their caller's request record came in (the caller's
  // write returns after the callee answered: one ring buffer, two CPUs), held until it
  // did, and those of them whose caller's record never came within kHoldForCallerNs.
  uint64_t links_peer_held = 0;
  uint64_t links_peer_held_expired = 0;
  // NAT (a Service address, DNAT and SNAT): the other end found through conntrack.
  uint64_t links_peer_nat = 0;           // of links_peer: through a conntrack translation
  uint64_t links_nat_ambiguous = 0;      // two callers translated to one callee tuple
  uint64_t nat_lookups = 0;              // CLIENT connections asked about
  uint64_t nat_translated = 0;           // of which NAT'd (a link candidate)
  uint64_t nat_no_entry = 0;             // no conntrack entry (conntrack unused there)
  uint64_t nat_errors = 0;               // namespace or ctnetlink not reachable
  uint64_t nat_ambiguous = 0;            // different translations in the zones asked
  uint64_t nat_asks_dropped = 0;         // over the queue's bound before a miss asked (and
                                         // not linked without NAT meanwhile)
  uint64_t app_traceparents = 0;         // CLIENT requests carrying the app's own context
  // CLIENT on an HTTP/2 connection (or under an HTTP/2 SERVER request) parented to the one
  // SERVER request its process is serving (gRPC hands requests to thread pools).
  uint64_t links_process = 0;
  uint64_t links_process_ambiguous = 0;  // several SERVER requests in flight: unlinked
  // HTTP/2 (docs/protocols.md).
  uint64_t connections_http2 = 0;              // decoded from their start (preface or upgrade)
  uint64_t connections_http2_undecodable = 0;  // start missed, bytes lost, or broken framing
  uint64_t http2_streams_dropped = 0;          // exchanges given up (undecodable, limits, GOAWAY)
  // Requests isotrace itself sent (its OTLP exports, user-agent isotrace/...) as their
  // receiver got them: never spans, or every export would make the next one.
  uint64_t requests_self = 0;
  // Byte positions (bpf/l7.h): records the probe lost show up as jumps.
  uint64_t stream_gaps = 0;              // jumps seen
  uint64_t stream_gap_bytes = 0;         // bytes skipped over them
  uint64_t gap_resyncs = 0;              // gaps the framer could not absorb: resynced
  uint64_t requests_lost_in_gap = 0;     // pending requests whose response fell in a gap
};

// Which measures the kernel provides (probes::L7Features); a measure it cannot provide is
// left out of the span, never reported as zero.
struct TrackerFeatures {
  bool memstall = true;
  bool steal = true;
  bool tcp_incidents = true;
};

class ConnectionTracker {
 public:
  using SpanSink = std::function<void(Span&&)>;

  ConnectionTracker(const TrackerLimits& limits, util::Clock* clock, SpanSink sink);
  ~ConnectionTracker();

  void OnEvent(const probes::SocketEvent& ev);
  // Forgets connections idle for longer than the limit (processes that exited close
  // their sockets without a close() syscall).
  void Expire(uint64_t now_mono_ns);

  const TrackerStats& stats() const { return stats_; }
  void SetFeatures(const TrackerFeatures& f) { features_ = f; }
  // Where NAT'd connections' other ends are looked up (null: not looked up). Not owned.
  void SetNat(probes::NatLookup* nat) { nat_ = nat; }
  // Where the listen drops of callees' namespaces are read (null: not read). Not owned.
  void SetListenDrops(probes::ListenDrops* l) { listen_ = l; }
  size_t connections() const { return conns_.size(); }

 private:
  struct Conn;
  // A connection as one process sees it: the probe's connection id (one per socket,
  // never reused; dup'ed fds share it) in that process.
  struct Key {
    uint32_t tgid;
    uint64_t conn_id;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<uint64_t>()(k.conn_id * 0x9e3779b97f4a7c15ull ^ k.tgid);
    }
  };
  using LruList = std::list<Key>;

  Conn* Find(const probes::SocketEvent& ev, bool create);
  // By value: callers pass keys stored in the maps Drop erases from (by_fd_, lru_), and
  // a reference would dangle half-way (ASan, in the sanitizer tree's unit tests).
  void Drop(Key key, bool finish);
  void StartPlaintext(Conn& c);
  void OnData(Conn& c, const probes::SocketEvent& ev);
  // Bytes of one direction that the probe lost (a jump in the byte position): the parser
  // skips exactly that many; where it cannot stay in frame it resyncs.
  void OnGap(Conn& c, bool is_request_dir, uint64_t bytes, uint64_t ts);
  void OnFin(Conn& c, const probes::SocketEvent& ev);
  // Moves the direction's expected byte position past `ev`; the bytes lost before it.
  uint64_t AdvancePosition(Conn& c, const probes::SocketEvent& ev);
  Conn* FindByConnId(uint64_t conn_id);
  void Dispatch(Conn& c);
  void OnRequest(Conn& c, HttpMessage&& req);
  void OnResponse(Conn& c, HttpMessage&& resp);
  // HTTP/2 (connection_tracker.cc, last section): the dispatch point and what follows it.
  enum class H2Start : uint8_t { kNo, kYes, kUndecodable };
  H2Start StartHttp2(Conn& c, const probes::SocketEvent& ev);
  void OnHttp2Data(Conn& c, const probes::SocketEvent& ev);
  void FeedHttp2(Conn& c, bool from_client, std::string_view bytes, uint64_t total, uint64_t ts);
  void UpgradeToHttp2(Conn& c, const probes::SocketEvent& ev, bool response_dir, uint64_t ts);
  void OnHttp2Request(Conn& c, Http2Exchange&& x);
  void OnHttp2Done(Conn& c, Http2Exchange&& x, uint64_t ts);
  void CloseHttp2(Conn& c, uint64_t ts_mono);
  void FinishConn(Conn& c, uint64_t ts_mono);
  struct Snap;
  struct Pending;
  uint64_t UseConnect(Conn& c, uint64_t* first_ts, std::optional<Snap>* start);
  struct ClientCtx;
  // The 4-tuple of a connection, addresses in IPv6 form (IPv4 as ::ffff:a.b.c.d, so an
  // AF_INET client and an AF_INET6 server on the same loopback connection meet).
  struct Tuple {
    std::array<uint8_t, 16> laddr{}, raddr{};
    uint16_t lport = 0, rport = 0;
    bool operator==(const Tuple&) const = default;
  };
  struct TupleHash {
    size_t operator()(const Tuple& t) const;
  };
  static Tuple MakeTuple(uint8_t family, const std::array<uint8_t, 16>& laddr, const std::array<uint8_t, 16>& raddr,
                         uint16_t lport, uint16_t rport);
  static Tuple TupleOf(const Conn& c, bool mirrored);
  static uint64_t ThreadKey(uint32_t tgid, uint32_t tid) { return (uint64_t{tgid} << 32) | tid; }
  void StartContext(Conn& c, Pending& p);
  // `in_pending`: p is still in c.pending, whose earlier requests claim first; a held
  // request (Conn::held) is earlier than any of them.
  void ResolveServer(Conn& c, Pending& p, bool in_pending = true);
  void ResolveClient(Conn& c, Pending& p);
  // The SERVER request the thread serves that a CLIENT request runs under, or null.
  Pending* FindEnclosing(const Conn& c, const Pending& client);
  // The caller's CLIENT request a SERVER request answers, claimed; null when unlinked.
  std::optional<ClientCtx> ClaimPeer(const Conn& c, const Pending& server);
  std::optional<ClientCtx> ClaimPeerAt(const Conn& c, const Pending& server, const Tuple& mirrored);
  void RetireActive(const Conn& c, const Pending& p);
  // A SERVER request that ended (answered, reset or closed) while its caller on this node
  // has no request record in yet: the record is on its way, the span waits for it
  // (Conn::held) instead of going out unlinked.
  bool CallerRecordMayFollow(const Conn& c, const Pending& p) const;
  bool HoldForCaller(const Conn& c, const Pending& p) const;
  void Hold(Conn& c, Pending&& p, HttpMessage* resp, std::optional<Snap> end, uint64_t end_mono,
            std::string_view error);
  // Emits c's held spans from the oldest while their caller's record is in (or they are
  // due at `now`, or `force`); the rest keep waiting.
  void ReleaseHeld(Conn& c, uint64_t now, bool force);
  void ReleaseHeldOf(Key key, uint64_t now, bool force);  // also a dropped (lingering) one
  void WakeHeldFor(const Conn& caller);                    // its request or close came in
  void ReleaseDue(uint64_t now);
  struct Oom {
    uint64_t ts;
    uint64_t cgroup_id;
    uint32_t victim_tgid;
    std::string comm;
  };
  void OnIncident(const probes::SocketEvent& ev);
  void Emit(Conn& c, Pending& p, const HttpMessage* resp, const Snap* end_snap,
            uint64_t end_mono, std::string_view error_type);
  void AddBreakdown(const Conn& c, const Pending& p, const Snap* end, uint64_t end_mono, Span* s);
  void AddPeerIncidents(const Conn& c, uint64_t from, uint64_t to, Span* s);
  // The 4-tuple of c's other end's socket (mirrored, or through NAT where translated).
  Tuple PeerTuple(const Conn& c) const;
  // A CLIENT span on a fresh connection that retransmitted: its callee's listen drops.
  void AddListenDrops(const Conn& c, uint64_t from, uint64_t to, Span* s);
  probes::ListenDrops* listen_ = nullptr;

  TrackerLimits limits_;
  util::Clock* clock_;
  SpanSink sink_;
  absl::BitGen rng_;
  std::unordered_map<Key, std::unique_ptr<Conn>, KeyHash> conns_;
  std::unordered_map<uint64_t, Key> by_conn_;  // conn_id → connection, for incidents and ends
  // (tgid, fd) → connection: a new socket on an fd ends the one the fd named before (its
  // close was not seen).
  std::unordered_map<uint64_t, Key> by_fd_;
  std::unordered_map<Tuple, Key, TupleHash> by_tuple_;  // 4-tuple → connection, for links
  // CLIENT connections closed with answered requests nobody claimed yet, by 4-tuple: the
  // other end's records may come later (a sandbox's edge packets arrive through their own
  // ring buffer, after the caller's close). Bounded (kMaxClosedClients, oldest first).
  struct ClosedClient;
  std::unordered_map<Tuple, std::unique_ptr<ClosedClient>, TupleHash> closed_clients_;
  std::deque<Tuple> closed_order_;
  // Held SERVER spans (Hold): connections closed with spans still held (off every index:
  // nothing else reaches them), the caller's tuple each waits for, and when each is due.
  std::unordered_map<Key, std::unique_ptr<Conn>, KeyHash> lingering_;
  std::unordered_map<Tuple, Key, TupleHash> awaiting_caller_;
  std::deque<std::pair<uint64_t, Key>> held_due_;
  // SYN-ACKs a listener on this node resent, by the listener's 4-tuple, before the
  // connection had any state here: the caller's CLIENT span (whose connect they delayed)
  // takes them as its peer's retransmits. Bounded (oldest tuples go first).
  std::unordered_map<Tuple, std::vector<uint64_t>, TupleHash> synacks_;
  std::deque<Tuple> synack_order_;
  void OnSynAckRetransmit(const probes::SocketEvent& ev);
  // NAT (the header comment): CLIENT connections not asked about yet, oldest first.
  probes::NatLookup* nat_ = nullptr;
  struct NatAsk {
    uint32_t tgid;
    uint64_t ns;  // NatLookup::Pin's token for the caller's namespace
    Tuple orig;
  };
  std::deque<NatAsk> nat_ask_;
  // The callee's socket tuple, mirrored (what its SERVER requests look up) → the caller's
  // tuple; nat_ambiguous_ instead when two callers claim it. And the caller's tuple → the
  // callee's socket tuple (what the caller's spans look up for the peer's incidents).
  std::unordered_map<Tuple, Tuple, TupleHash> nat_rev_, nat_fwd_;
  std::deque<Tuple> nat_order_;  // callers' tuples, oldest first (bounded)
  void NoteClient(Conn& c);
  void AskNat();
  bool NatAskPending(const NatAsk& a) const;  // would AskNat still ask about it?
  void ForgetNat(const Tuple& caller);
  // The caller's tuple a SERVER connection's other end has behind NAT, or null.
  const Tuple* NatCaller(const Tuple& mirrored);
  struct Active {
    Key conn;
    uint64_t pending_id;
  };
  // (tgid, tid) → SERVER requests that thread is serving now (bounded per thread).
  std::unordered_map<uint64_t, std::vector<Active>> active_;
  // (tgid, tid) → time the thread spent in reads of sockets that carry no HTTP/1.x
  // (databases, TLS): downstream waits no span explains.
  std::unordered_map<uint64_t, uint64_t> unseen_wait_;
  uint64_t next_pending_id_ = 1;
  std::deque<Oom> ooms_;                       // recent OOM kills (bounded)
  TrackerFeatures features_;
  LruList lru_;  // front: most recently active
  TrackerStats stats_;
  std::vector<HttpMessage> scratch_;
  std::vector<Http2Event> h2_scratch_;
};

}  // namespace isotrace::correlate
