#include "daemon/correlate/connection_tracker.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/hash/hash.h"
#include "daemon/correlate/traceparent.h"
#include "daemon/correlate/tls.h"
#include "spdlog/spdlog.h"

namespace isotrace::correlate {

using probes::SocketEvent;

namespace {
enum class Role : uint8_t { kUnknown, kServer, kClient };

std::string_view FindHeader(const HttpMessage& m, std::string_view lower_name) {
  for (const auto& h : m.headers)
    if (h.name == lower_name) return h.value;
  return {};
}

// An Upgrade header value that offers h2c ("h2c", "websocket, h2c"), any case.
bool IsH2cUpgrade(std::string_view v) {
  for (size_t i = 0; i + 3 <= v.size(); i++)
    if ((v[i] | 0x20) == 'h' && v[i + 1] == '2' && (v[i + 2] | 0x20) == 'c') return true;
  return false;
}

// A method token followed by a space at the very start: the cheap test that decides
// whether a connection's first captured bytes begin a request.
bool LooksLikeRequestStart(std::string_view p) {
  size_t i = 0;
  while (i < p.size() && i < 32 && p[i] >= 'A' && p[i] <= 'Z') i++;
  return i >= 3 && i < p.size() && p[i] == ' ';
}

// The segment's accounting as of `ts`, the edge the tracker times it by. The probe takes
// a request's first write's snapshot at its start (acct_at_enter): on a connection whose
// side the probe guessed wrong (it connect()ed, yet serves), that write is timed by its
// end, and a snapshot of another instant would break the breakdown's sum: none then.
probes::ThreadAcct AcctAt(const probes::SocketEvent& ev, uint64_t ts) {
  if (!ev.acct_at_enter || ts == ev.ts_enter_ns) return ev.acct;
  probes::ThreadAcct none = ev.acct;
  none.valid = false;
  return none;
}
}  // namespace

// Accounting at a segment, kept for the few most recent segments of each direction so
// a message can find the snapshot of the segment holding its first (request) or last
// (response) byte by timestamp.
// Accounting at one segment. A connection keeps the last few of each direction so a
// message finds the snapshot of the segment that held its first (request) or last
// (response) byte, by timestamp.
struct ConnectionTracker::Snap {
  uint64_t ts = 0;
  uint32_t tid = 0;
  probes::ThreadAcct acct;
  uint32_t retransmits = 0;
  uint32_t srtt_us = 0;
};
struct ConnectionTracker::Pending {
  HttpMessage req;
  uint32_t tid = 0;
  std::optional<Snap> start;
  uint64_t connect_ns = 0;  // the span covers its connection's setup, which took this long
  uint64_t id = 0;
  // Trace context: decided when the request is seen (CLIENT) or first needed (SERVER:
  // its first client child, else its response), so the caller's request is surely in.
  bool resolved = false;
  TraceId trace_id{};
  SpanId span_id{};  // chosen when the request is seen
  SpanId parent{};
  SpanId local_parent{};
  uint8_t flags = 0;
  std::string tracestate;
  bool remote_parent = false;
  // SERVER, linked to a caller on this node: when the caller began sending the request
  // (its own first write, monotonic). The caller's socket incidents from then on
  // delayed this request, even those before this end's first read (AddPeerIncidents).
  uint64_t caller_start_ns = 0;
  std::optional<TraceContext> header;  // the request's valid traceparent
  bool app_propagated = false;         // CLIENT: the header is the app's own context
  bool claimed = false;                // CLIENT: a SERVER request on this node answers it
  uint32_t client_children = 0;        // SERVER: CLIENT requests parented to it
  uint64_t unseen_start = 0;           // SERVER: the thread's unseen_wait_ at the start
  std::optional<uint64_t> unseen_end;  // SERVER, held (Hold): unseen_wait_ when it ended
  // HTTP/2: the stream, and the RPC it carries (gRPC) with its grpc-status once known.
  bool h2 = false;
  uint32_t stream_id = 0;
  std::optional<Span::Rpc> rpc;
};

// What a SERVER request on this node needs of its caller's CLIENT request, kept a little
// after the client's response (the response's read can reach us before the server's
// write: two CPUs, one ring buffer).
struct ConnectionTracker::ClientCtx {
  uint64_t pending_id = 0;
  TraceId trace_id{};
  SpanId span_id{};
  uint8_t flags = 0;
  std::string tracestate;
  bool app_propagated = false;
  std::optional<TraceContext> header;
  std::string method;
  std::string target;
  bool claimed = false;
  uint32_t stream_id = 0;  // HTTP/2: the stream (the same id on both ends)
  uint64_t start_ns = 0;   // the request's first write (monotonic)
};

struct ConnectionTracker::ClosedClient {
  std::deque<ClientCtx> recent;
};
constexpr size_t kMaxClosedClients = 1024;
// Listener 4-tuples with resent SYN-ACKs kept for their callers' spans, and resends kept
// per tuple (a handshake gives up after net.ipv4.tcp_synack_retries, 5 by default).
constexpr size_t kMaxSynAckTuples = 4096;
constexpr size_t kMaxSynAcksPerTuple = 8;
// CLIENT connections waiting to be asked about NAT, and translations kept.
constexpr size_t kMaxNatAsks = 4096;
constexpr size_t kMaxNatLinks = 16384;
// How long a SERVER span waits for its caller's request record (Hold): the caller's
// write returns after the callee read it, and that write's record follows within a
// scheduling delay of the caller's thread. Bounded in number too (held spans, and
// connections closed with some held).
constexpr uint64_t kHoldForCallerNs = 100'000'000;
constexpr size_t kMaxHeldPerConn = 64;
constexpr size_t kMaxLingering = 4096;

struct ConnectionTracker::Conn {
  Key key;
  uint64_t sock_id = 0;
  uint64_t proc_start_ns = 0;
  uint64_t cgroup_id = 0;
  uint32_t netns = 0;  // network namespace inode (0: unknown)
  Role role = Role::kUnknown;
  bool disabled = false;  // not HTTP/1.x: ignore until the socket changes
  uint8_t family = 0;
  std::array<uint8_t, 16> laddr{}, raddr{};
  uint16_t lport = 0, rport = 0;
  uint64_t last_active_mono = 0;
  LruList::iterator lru_it;
  std::unique_ptr<Http1Parser> requests;   // request direction
  std::unique_ptr<Http1Parser> responses;  // response direction
  static constexpr size_t kMaxSnaps = 8;
  std::deque<Snap> req_snaps, resp_snaps;
  struct Incident {
    uint64_t ts = 0;
    SocketEvent::Kind kind;
  };
  std::deque<Incident> incidents;  // bounded: kMaxIncidents
  bool reset = false;
  std::deque<Pending> pending;
  static constexpr size_t kMaxRecentClients = 8;
  std::deque<ClientCtx> recent_clients;  // answered CLIENT requests, newest last
  uint32_t last_tid = 0;
  uint64_t opaque_sent_ts = 0;  // not HTTP: exit of the last write not yet answered
  // HTTP/2: the connection's decoder once it speaks HTTP/2 (prior knowledge, or after an
  // answered Upgrade: h2c, when `upgrading` is set by the 101).
  std::unique_ptr<Http2Connection> h2;
  bool upgrading = false;
  // This side connect()ed: the connecting thread at SYN_SENT, to start the connection's
  // first CLIENT span there (OpenTelemetry client spans cover connection setup).
  std::optional<Snap> connect_snap;
  uint64_t connect_ns = 0;  // established − connect start (0: unknown)
  bool tls = false;              // its data records are TLS plaintext
  std::string_view tls_version;  // from its ServerHello (a constant), empty: unknown
  bool h2_failed = false;  // counted as undecodable
  bool nat_noted = false;  // queued for a conntrack lookup (CLIENT connections, once)
  bool listen_watched = false;  // SERVER: its process's listen drops are sampled
  uint32_t callee_tgid = 0;     // CLIENT: the process on this node that claimed its requests
  std::deque<uint32_t> self_streams;  // streams of isotrace's own exports (bounded)
  int32_t fd = -1;
  bool edge = false;  // seen at a sandbox's network edge (SocketEvent::edge)
  // Per direction ([0] ingress, [1] egress): the byte position the next record should
  // start at (bpf/l7.h), once one record was seen.
  std::array<uint64_t, 2> next_pos{};
  std::array<bool, 2> have_pos{};
  // Responses began in lost bytes: the next response seen answers the newest request.
  bool resp_resync = false;
  // The addresses as text, formatted once per address rather than once per span.
  struct AddressText {
    uint8_t family = 0;
    std::array<uint8_t, 16> addr{};
    std::string text;
    const std::string& Of(uint8_t f, const std::array<uint8_t, 16>& a) {
      if (text.empty() || f != family || a != addr) {
        family = f;
        addr = a;
        text = probes::FormatAddress(f, a);
      }
      return text;
    }
  };
  AddressText local_text, remote_text;
  // SERVER requests that ended before their caller's record came in, oldest first
  // (ConnectionTracker::Hold). Later ones of this connection wait behind them: claims
  // follow request order.
  struct Held {
    Pending p;
    std::optional<HttpMessage> resp;
    std::optional<Snap> end;
    uint64_t end_mono = 0;
    std::string_view error;  // a literal (Emit's error types)
    uint64_t due = 0;
  };
  std::deque<Held> held;
};

namespace {
// The only headers the tracker reads (FindHeader), all of them request headers: the
// parsers store no others, and nothing of a response.
// upgrade, http2-settings and content-type: an h2c upgrade (UpgradeToHttp2).
constexpr std::string_view kHeadersRead[] = {"host",    "traceparent",    "tracestate",
                                             "upgrade", "http2-settings", "content-type"};
}  // namespace

ConnectionTracker::ConnectionTracker(const TrackerLimits& limits, util::Clock* clock, SpanSink sink)
    : limits_(limits), clock_(clock), sink_(std::move(sink)) {
  limits_.parser.store_only = kHeadersRead;
  limits_.parser.store_response_headers = false;
}

ConnectionTracker::~ConnectionTracker() = default;

namespace {
uint64_t FdKey(uint32_t tgid, int32_t fd) { return (uint64_t{tgid} << 32) | static_cast<uint32_t>(fd); }
}  // namespace

ConnectionTracker::Conn* ConnectionTracker::FindByConnId(uint64_t conn_id) {
  auto bc = by_conn_.find(conn_id);
  if (bc == by_conn_.end()) return nullptr;
  auto it = conns_.find(bc->second);
  return it == conns_.end() ? nullptr : it->second.get();
}

ConnectionTracker::Conn* ConnectionTracker::Find(const SocketEvent& ev, bool create) {
  Key key{ev.tgid, ev.conn_id};
  auto it = conns_.find(key);
  if (it != conns_.end()) {
    Conn* c = it->second.get();
    if (c->proc_start_ns == ev.proc_start_ns) {
      lru_.splice(lru_.begin(), lru_, c->lru_it);
      return c;
    }
    // The pid now names another process.
    Drop(key, /*finish=*/true);
  }
  if (!create) return nullptr;
  if (ev.fd >= 0) {
    // The fd named another socket of this process before: that one was closed unseen.
    auto bf = by_fd_.find(FdKey(ev.tgid, ev.fd));
    if (bf != by_fd_.end() && !(bf->second == key)) {
      auto old = conns_.find(bf->second);
      if (old != conns_.end() && old->second->fd == ev.fd) Drop(bf->second, /*finish=*/true);
    }
  }
  if (conns_.size() >= limits_.max_connections && !lru_.empty()) {
    Drop(lru_.back(), /*finish=*/true);
    stats_.connections_evicted++;
  }
  auto c = std::make_unique<Conn>();
  c->key = key;
  c->fd = ev.fd;
  c->edge = ev.edge;
  c->sock_id = ev.sock_id;
  c->proc_start_ns = ev.proc_start_ns;
  c->cgroup_id = ev.cgroup_id;
  c->netns = ev.netns;
  c->family = ev.family;
  c->laddr = ev.laddr;
  c->raddr = ev.raddr;
  c->lport = ev.lport;
  c->rport = ev.rport;
  lru_.push_front(key);
  c->lru_it = lru_.begin();
  Conn* raw = c.get();
  by_conn_[ev.conn_id] = key;
  if (ev.fd >= 0) by_fd_[FdKey(ev.tgid, ev.fd)] = key;
  const Tuple own = TupleOf(*raw, /*mirrored=*/false);
  by_tuple_[own] = key;
  // A translation kept for an earlier connection with this tuple is not this one's.
  if (!nat_fwd_.empty()) ForgetNat(own);
  conns_.emplace(key, std::move(c));
  stats_.connections_opened++;
  return raw;
}

void ConnectionTracker::Drop(Key key, bool finish) {
  auto it = conns_.find(key);
  if (it == conns_.end()) return;
  if (finish) FinishConn(*it->second, it->second->last_active_mono);
  auto bc = by_conn_.find(key.conn_id);
  if (bc != by_conn_.end() && bc->second == key) by_conn_.erase(bc);
  if (it->second->fd >= 0) {
    auto bf = by_fd_.find(FdKey(key.tgid, it->second->fd));
    if (bf != by_fd_.end() && bf->second == key) by_fd_.erase(bf);
  }
  const Tuple tuple = TupleOf(*it->second, /*mirrored=*/false);
  auto bt = by_tuple_.find(tuple);
  if (bt != by_tuple_.end() && bt->second == key) by_tuple_.erase(bt);
  Conn& gone = *it->second;
  if (gone.role == Role::kClient &&
      std::any_of(gone.recent_clients.begin(), gone.recent_clients.end(), [](const ClientCtx& r) { return !r.claimed; })) {
    auto cc = std::make_unique<ClosedClient>();
    cc->recent = std::move(gone.recent_clients);
    if (closed_clients_.insert_or_assign(tuple, std::move(cc)).second) closed_order_.push_back(tuple);
    while (closed_order_.size() > kMaxClosedClients) {
      closed_clients_.erase(closed_order_.front());
      closed_order_.pop_front();
    }
  }
  lru_.erase(it->second->lru_it);
  const bool caller = gone.role == Role::kClient;
  if (!gone.held.empty()) {
    // Off every index, kept for its held spans (ReleaseHeldOf).
    lingering_.emplace(key, std::move(it->second));
    conns_.erase(it);
    while (lingering_.size() > kMaxLingering && !held_due_.empty()) {
      const Key k = held_due_.front().second;
      held_due_.pop_front();
      ReleaseHeldOf(k, 0, /*force=*/true);
    }
    return;
  }
  // A caller's close comes after its request records: a SERVER span held for one of
  // them claims from closed_clients_ now, or goes out unlinked.
  if (caller && !awaiting_caller_.empty()) {
    auto w = awaiting_caller_.find(tuple);
    conns_.erase(it);
    if (w != awaiting_caller_.end()) {
      const Key k = w->second;
      awaiting_caller_.erase(w);
      ReleaseHeldOf(k, 0, /*force=*/true);
    }
    return;
  }
  conns_.erase(it);
}

void ConnectionTracker::OnEvent(const SocketEvent& ev) {
  stats_.events++;
  if (!held_due_.empty() && held_due_.front().first <= ev.ts_exit_ns) ReleaseDue(ev.ts_exit_ns);
  switch (ev.kind) {
    case SocketEvent::Kind::kAccept:
    case SocketEvent::Kind::kConnect: {
      // A fresh socket on this fd: forget whatever the fd named before.
      Conn* c = Find(ev, /*create=*/true);
      if (c->role == Role::kUnknown)
        c->role = ev.kind == SocketEvent::Kind::kAccept ? Role::kServer : Role::kClient;
      c->last_active_mono = ev.ts_exit_ns;
      return;
    }
    case SocketEvent::Kind::kClose: {
      Conn* c = FindByConnId(ev.conn_id);
      if (c) {
        FinishConn(*c, ev.ts_enter_ns);
        Drop(c->key, /*finish=*/false);
      }
      return;
    }
    case SocketEvent::Kind::kFin: {
      if (Conn* c = FindByConnId(ev.conn_id); c && !c->disabled && c->requests) OnFin(*c, ev);
      return;
    }
    case SocketEvent::Kind::kRetransmit:
    case SocketEvent::Kind::kResetReceived:
    case SocketEvent::Kind::kResetSent:
    case SocketEvent::Kind::kOomKill:
    case SocketEvent::Kind::kLocalDrop:
      OnIncident(ev);
      return;
    case SocketEvent::Kind::kSynAckRetransmit:
      OnSynAckRetransmit(ev);
      return;
    case SocketEvent::Kind::kConnected: {
      Conn* c = Find(ev, /*create=*/true);
      if (ev.conn_start_ns) {
        // The socket is tracked from SYN_SENT: none of its retransmits (SYN ones, counted
        // in ev.retransmits) had happened at connect().
        c->connect_snap = Snap{ev.conn_start_ns, ev.tid, ev.acct, 0, ev.srtt_us};
        c->connect_ns = ev.established_ns > ev.conn_start_ns ? ev.established_ns - ev.conn_start_ns : 0;
      }
      return;
    }
    case SocketEvent::Kind::kTlsHello: {
      Conn* c = Find(ev, /*create=*/true);
      c->tls_version = TlsVersionFromServerHello(ev.payload);
      return;
    }
    case SocketEvent::Kind::kData: {
      Conn* c = Find(ev, /*create=*/true);
      if (ev.tls && !c->tls) StartPlaintext(*c);
      c->last_active_mono = ev.ts_exit_ns;
      c->last_tid = ev.tid;
      if (!c->disabled) OnData(*c, ev);
      // A socket that carries no HTTP/1.x (a database, TLS): the time from a write on it
      // to the read that returns the answer is a downstream wait no span explains. Timed
      // from write to read rather than inside the read, so clients that wait in
      // poll/epoll before reading (most of them) are covered too.
      if (c->disabled && ev.ret > 0) {
        if (ev.dir == SocketEvent::Direction::kEgress) {
          c->opaque_sent_ts = ev.ts_exit_ns;
        } else if (ev.dir == SocketEvent::Direction::kIngress && c->opaque_sent_ts &&
                   ev.ts_exit_ns > c->opaque_sent_ts) {
          if (unseen_wait_.size() > 65536) unseen_wait_.clear();  // diffs clamp at 0
          unseen_wait_[ThreadKey(ev.tgid, ev.tid)] += ev.ts_exit_ns - c->opaque_sent_ts;
          c->opaque_sent_ts = 0;
        }
      }
      return;
    }
  }
}

uint64_t ConnectionTracker::UseConnect(Conn& c, uint64_t* first_ts, std::optional<Snap>* start) {
  // The first request this side sends on a connection it opened: as OpenTelemetry client
  // spans do, the span starts at connect() and its breakdown covers the setup (a lost
  // SYN's retransmit lands in its retransmits). Later requests start at their first write.
  if (!c.connect_snap || c.role != Role::kClient) return 0;
  const Snap snap = *c.connect_snap;
  c.connect_snap.reset();
  if (snap.ts == 0 || snap.ts >= *first_ts) return 0;
  *first_ts = snap.ts;
  *start = snap;
  return c.connect_ns;
}

void ConnectionTracker::StartPlaintext(Conn& c) {
  // The connection's records are TLS plaintext from here on. Whatever came before was
  // its ciphertext (the daemon joined mid-connection, or a peek at the first byte) and
  // may have judged it not HTTP: decoding starts afresh on the plaintext stream, whose
  // positions count from 0.
  c.tls = true;
  c.disabled = false;
  c.requests.reset();
  c.responses.reset();
  c.h2.reset();
  c.h2_failed = false;
  c.upgrading = false;
  c.have_pos = {};
  c.next_pos = {};
  c.resp_resync = false;
  c.opaque_sent_ts = 0;
}

void ConnectionTracker::OnData(Conn& c, const SocketEvent& ev) {
  const bool ingress = ev.dir == SocketEvent::Direction::kIngress;
  // HTTP/2 (prior knowledge, or an h2c upgrade done): the one dispatch point.
  if (c.h2 || (!c.requests && StartHttp2(c, ev) == H2Start::kYes)) {
    OnHttp2Data(c, ev);
    return;
  }
  if (c.disabled) return;  // an HTTP/2 connection we cannot decode (counted)
  if (!c.requests) {
    // The first bytes we see decide the role; a connection we joined mid-response
    // waits for the next request start.
    if (!LooksLikeRequestStart(ev.payload)) {
      if (ev.payload.rfind("HTTP/", 0) == 0) return;  // a response to a request we missed
      c.disabled = true;
      stats_.connections_not_http++;
      return;
    }
    Role seen = ingress ? Role::kServer : Role::kClient;
    c.role = seen;
    c.requests = std::make_unique<Http1Parser>(limits_.parser);
    c.responses = std::make_unique<Http1Parser>(limits_.parser);
  }
  const bool is_request_dir = (c.role == Role::kServer) == ingress;
  // Which syscall edge counts as "the byte moved" (see the header comment).
  const uint64_t ts = (c.role == Role::kClient && !ingress) ? ev.ts_enter_ns : ev.ts_exit_ns;
  const uint64_t total = ev.ret > 0 ? static_cast<uint64_t>(ev.ret) : 0;
  if (is_request_dir) c.last_tid = ev.tid;
  if (uint64_t lost = AdvancePosition(c, ev)) OnGap(c, is_request_dir, lost, ts);

  // A message whose end cannot be framed (head cut by the capture, close-delimited)
  // ends where the other direction starts: flush the opposite parser first. Flush leaves
  // a message with a known end alone, so this is safe on every segment.
  Http1Parser& parser = is_request_dir ? *c.requests : *c.responses;
  Http1Parser& other = is_request_dir ? *c.responses : *c.requests;
  auto& snaps = is_request_dir ? c.req_snaps : c.resp_snaps;
  if (snaps.size() >= Conn::kMaxSnaps) snaps.pop_front();
  snaps.push_back({ts, ev.tid, AcctAt(ev, ts), ev.retransmits, ev.srtt_us});
  // Flushed messages of the other direction come first, and are handled before this
  // segment is parsed: a flushed (head-truncated) request must reach ExpectResponseTo
  // before its response head is framed, or a HEAD/CONNECT answer is framed with a body.
  scratch_.clear();
  other.Flush(&scratch_);
  Dispatch(c);
  absl::Status st = parser.Feed(ev.payload, total, ts, &scratch_);
  Dispatch(c);
  // 101 Switching Protocols / CONNECT 2xx: the rest of the connection is not HTTP/1.x.
  if (c.responses->tunneled() && !c.requests->tunneled()) c.requests->EnterTunnel();
  if (c.upgrading && c.responses->tunneled()) {
    UpgradeToHttp2(c, ev, !is_request_dir, ts);
    return;
  }
  if (!st.ok()) {
    // Not (or no longer) HTTP/1.x: stop parsing this socket; what was pending ends now.
    c.disabled = true;
    stats_.connections_not_http++;
    FinishConn(c, ev.ts_exit_ns);
  }
}

uint64_t ConnectionTracker::AdvancePosition(Conn& c, const SocketEvent& ev) {
  // Byte positions: a jump means records were lost in between; their bytes are skipped
  // by count. A position behind the expected one (synthetic input, a socket two
  // processes write) is taken as the new start.
  const size_t di = ev.dir == SocketEvent::Direction::kIngress ? 0 : 1;
  const uint64_t lost = c.have_pos[di] && ev.pos > c.next_pos[di] ? ev.pos - c.next_pos[di] : 0;
  c.have_pos[di] = true;
  c.next_pos[di] = ev.pos + (ev.ret > 0 ? static_cast<uint64_t>(ev.ret) : 0);
  return lost;
}

void ConnectionTracker::Dispatch(Conn& c) {
  std::vector<HttpMessage> done;
  done.swap(scratch_);
  for (auto& m : done) {
    if (m.is_request)
      OnRequest(c, std::move(m));
    else
      OnResponse(c, std::move(m));
  }
  done.clear();
  if (scratch_.empty()) scratch_.swap(done);  // keep the capacity
}

void ConnectionTracker::OnGap(Conn& c, bool is_request_dir, uint64_t bytes, uint64_t ts) {
  stats_.stream_gaps++;
  stats_.stream_gap_bytes += bytes;
  Http1Parser& parser = is_request_dir ? *c.requests : *c.responses;
  scratch_.clear();
  const bool in_frame = parser.Gap(bytes, ts, &scratch_);
  Dispatch(c);
  if (in_frame) return;
  stats_.gap_resyncs++;
  // Responses began in the lost bytes. The next response head seen answers the newest
  // request (a server answers only what it has read, and HTTP/1.1 clients do not
  // pipeline); the older pending requests were answered in the lost bytes (OnResponse).
  if (!is_request_dir) c.resp_resync = true;
}

void ConnectionTracker::OnFin(Conn& c, const SocketEvent& ev) {
  // A FIN ends one direction: a message framed "until close" in it is complete.
  const bool ingress = ev.dir == SocketEvent::Direction::kIngress;
  const bool is_request_dir = (c.role == Role::kServer) == ingress;
  Http1Parser& parser = is_request_dir ? *c.requests : *c.responses;
  c.last_active_mono = ev.ts_exit_ns;
  scratch_.clear();
  parser.Flush(&scratch_);
  Dispatch(c);
}

namespace {
constexpr size_t kMaxIncidents = 16;
constexpr size_t kMaxOoms = 64;

template <typename Snaps>
auto FindSnap(const Snaps& snaps, uint64_t ts) -> std::optional<typename Snaps::value_type> {
  for (auto it = snaps.rbegin(); it != snaps.rend(); ++it)
    if (it->ts == ts) return *it;
  return std::nullopt;
}
}  // namespace

void ConnectionTracker::OnIncident(const SocketEvent& ev) {
  if (ev.kind == SocketEvent::Kind::kOomKill) {
    if (ooms_.size() >= kMaxOoms) ooms_.pop_front();
    ooms_.push_back({ev.ts_exit_ns, ev.cgroup_id, ev.tgid, std::string(ev.comm)});
    return;
  }
  Conn* cp = FindByConnId(ev.conn_id);
  if (!cp) return;
  Conn& c = *cp;
  if (c.incidents.size() >= kMaxIncidents) c.incidents.pop_front();
  c.incidents.push_back({ev.ts_exit_ns, ev.kind});
  if (ev.kind == SocketEvent::Kind::kResetReceived || ev.kind == SocketEvent::Kind::kResetSent) c.reset = true;
  stats_.incidents++;
}

void ConnectionTracker::OnRequest(Conn& c, HttpMessage&& req) {
  if (!req.is_request) return;
  if (c.pending.size() >= limits_.max_pending_per_connection) {
    stats_.requests_overflow++;
    return;
  }
  c.responses->ExpectResponseTo(req.method);
  auto start = FindSnap(c.req_snaps, req.first_ts_ns);
  uint32_t tid = start ? start->tid : c.last_tid;
  const uint64_t connect_ns = UseConnect(c, &req.first_ts_ns, &start);
  Pending& p = c.pending.emplace_back();
  p.req = std::move(req);
  p.tid = tid;
  p.start = start;
  p.connect_ns = connect_ns;
  StartContext(c, p);
  if (c.role == Role::kClient && !awaiting_caller_.empty()) WakeHeldFor(c);
}

void ConnectionTracker::OnResponse(Conn& c, HttpMessage&& resp) {
  if (resp.is_request) return;
  if (c.pending.empty()) {
    stats_.responses_unmatched++;
    return;
  }
  // An answered Upgrade: h2c. The request becomes HTTP/2 stream 1, whose response is
  // still to come over HTTP/2 (UpgradeToHttp2, once the parser entered the tunnel).
  if (resp.status == 101 && c.pending.size() == 1 &&
      IsH2cUpgrade(FindHeader(c.pending.front().req, "upgrade"))) {
    c.upgrading = true;
    return;
  }
  if (c.resp_resync) {
    c.resp_resync = false;
    while (c.pending.size() > 1) {
      stats_.requests_lost_in_gap++;
      if (c.role != Role::kClient) RetireActive(c, c.pending.front());
      c.pending.pop_front();
    }
  }
  // Decide the context while the request is still in `pending` (ResolveServer resolves
  // the connection's earlier requests first, in order).
  const bool hold = c.role != Role::kClient && HoldForCaller(c, c.pending.front());
  if (c.role != Role::kClient && !hold) ResolveServer(c, c.pending.front());
  Pending p = std::move(c.pending.front());
  c.pending.pop_front();
  auto end = FindSnap(c.resp_snaps, resp.last_ts_ns);
  if (hold) {
    Hold(c, std::move(p), &resp, end, resp.last_ts_ns, "");
    return;
  }
  Emit(c, p, &resp, end ? &*end : nullptr, resp.last_ts_ns, "");
}

void ConnectionTracker::FinishConn(Conn& c, uint64_t ts_mono) {
  if (c.h2) CloseHttp2(c, ts_mono);
  if (c.requests && !c.h2) {
    // Close() also reports messages cut short (aborted); a request cut short has no
    // response and is not worth a span.
    std::vector<HttpMessage> flushed;
    c.requests->Close(&flushed);
    c.responses->Close(&flushed);
    for (auto& m : flushed) {
      if (m.is_request && !m.aborted)
        OnRequest(c, std::move(m));
      else if (!m.is_request)
        OnResponse(c, std::move(m));
    }
  }
  while (!c.pending.empty()) {
    stats_.requests_unanswered++;
    const bool hold = c.role != Role::kClient && HoldForCaller(c, c.pending.front());
    if (c.role != Role::kClient && !hold) ResolveServer(c, c.pending.front());
    Pending p = std::move(c.pending.front());
    c.pending.pop_front();
    const uint64_t end = std::max(ts_mono, p.req.last_ts_ns);
    const std::string_view error = c.reset ? "tcp_reset" : "connection_closed";
    if (hold)
      Hold(c, std::move(p), nullptr, std::nullopt, end, error);
    else
      Emit(c, p, nullptr, nullptr, end, error);
  }
}

void ConnectionTracker::Expire(uint64_t now_mono_ns) {
  while (!lru_.empty()) {
    auto it = conns_.find(lru_.back());
    if (it == conns_.end()) {
      lru_.pop_back();
      continue;
    }
    if (it->second->last_active_mono + limits_.idle_timeout_ns > now_mono_ns) break;
    stats_.connections_expired++;
    Drop(it->first, /*finish=*/true);
  }
  ReleaseDue(now_mono_ns);
  // Threads whose SERVER requests all ended (or whose connections went away).
  for (auto it = active_.begin(); it != active_.end();) {
    auto& v = it->second;
    std::erase_if(v, [this](const Active& a) {
      auto c = conns_.find(a.conn);
      if (c == conns_.end()) return true;
      for (const auto& p : c->second->pending)
        if (p.id == a.pending_id) return false;
      return true;
    });
    it = v.empty() ? active_.erase(it) : std::next(it);
  }
}

void ConnectionTracker::Emit(Conn& c, Pending& p, const HttpMessage* resp, const Snap* end_snap,
                             uint64_t end_mono, std::string_view error_type) {
  // The request's strings move into the span: p is done with once the span is out.
  HttpMessage& req = p.req;
  const uint32_t tid = p.tid;
  Span s;
  s.kind = c.role == Role::kClient ? SpanKind::kClient : SpanKind::kServer;
  if (!p.resolved) {
    if (s.kind == SpanKind::kServer)
      ResolveServer(c, p);
    else
      ResolveClient(c, p);
  }
  s.trace_id = p.trace_id;
  s.span_id = p.span_id;
  s.parent_span_id = p.parent;
  s.local_parent = p.local_parent;
  s.trace_flags = p.flags;
  s.remote_parent = p.remote_parent;
  if (s.kind == SpanKind::kServer) {
    RetireActive(c, p);
    auto u = unseen_wait_.find(ThreadKey(c.key.tgid, tid));
    uint64_t now_unseen = p.unseen_end ? *p.unseen_end : u == unseen_wait_.end() ? 0 : u->second;
    s.breakdown.downstream_unseen_ns =
        static_cast<int64_t>(now_unseen > p.unseen_start ? now_unseen - p.unseen_start : 0);
  } else if (!p.claimed) {
    // A SERVER request on this node may still come to claim it (see ClientCtx).
    if (c.recent_clients.size() >= Conn::kMaxRecentClients) c.recent_clients.pop_front();
    c.recent_clients.push_back({p.id, p.trace_id, p.span_id, p.flags, p.tracestate, p.app_propagated,
                                p.header, req.method, req.target, false, p.stream_id, req.first_ts_ns});
  }

  s.tracestate = std::move(p.tracestate);  // after recent_clients took its copy
  s.start_unix_ns = clock_->MonoToUnixNs(req.first_ts_ns);
  uint64_t end = std::max(end_mono, req.first_ts_ns);
  s.end_unix_ns = clock_->MonoToUnixNs(end);

  s.method = std::move(req.method);
  s.path = std::move(req.target);
  if (size_t q = s.path.find('?'); q != std::string::npos) {
    s.query = s.path.substr(q + 1);
    s.path.resize(q);
  }
  s.protocol_version = std::move(req.version);
  s.tls = c.tls;
  s.tls_version = c.tls_version;
  if (p.connect_ns) s.breakdown.connect_ns = static_cast<int64_t>(p.connect_ns);
  for (auto& h : req.headers)
    if (h.name == "host") {
      s.host_header = std::move(h.value);
      break;
    }
  if (resp) s.status_code = resp->status;
  s.rpc = p.rpc;
  if (!error_type.empty()) {
    s.error_type = std::string(error_type);
  } else if (s.rpc && s.rpc->grpc_status_code > 0) {
    // gRPC reports failures in grpc-status, usually under HTTP 200.
    s.error_type = std::string(GrpcStatusName(s.rpc->grpc_status_code));
  } else if (s.status_code >= 500 || (s.kind == SpanKind::kClient && s.status_code >= 400)) {
    s.error_type = std::to_string(s.status_code);
  }

  const std::string& local = c.local_text.Of(c.family, c.laddr);
  const std::string& remote = c.remote_text.Of(c.family, c.raddr);
  if (s.kind == SpanKind::kServer) {
    s.client_address = remote;
    s.client_port = c.rport;
    s.server_address = local;
    s.server_port = c.lport;
  } else {
    s.client_address = local;
    s.client_port = c.lport;
    s.server_address = remote;
    s.server_port = c.rport;
  }
  s.process = ProcessKey{c.key.tgid, c.proc_start_ns};
  s.tid = tid;
  s.cgroup_id = c.cgroup_id;
  s.sock_id = c.sock_id;
  s.edge = c.edge;
  AddBreakdown(c, p, end_snap, end, &s);
  // A SERVER span's window for its caller's incidents opens when the caller began to
  // send: a segment the caller's node dropped before this end's first read still had
  // to be resent before the request was whole (a fast link can fill the socket buffer
  // before the server thread wakes).
  const uint64_t peer_from = s.kind == SpanKind::kServer && p.caller_start_ns != 0
                                 ? std::min(req.first_ts_ns, p.caller_start_ns)
                                 : req.first_ts_ns;
  AddPeerIncidents(c, peer_from, end, &s);
  if (listen_ && s.kind == SpanKind::kClient && p.connect_ns && s.net.retransmits.value_or(0) > 0)
    AddListenDrops(c, req.first_ts_ns, end, &s);
  stats_.spans++;
  sink_(std::move(s));
}

}  // namespace isotrace::correlate

namespace isotrace::correlate {

namespace {
// An edge span's parts are summed over the sandbox's threads (several may run, wait or
// sleep at once): the busy parts keep their proportions and are scaled down to the
// span's duration where they exceed it; the rest of the duration is "other off-CPU".
// Idle threads' sleep is not the request's, so it never counts.
void ScaleToSandbox(Span* s) {
  Breakdown& bd = s->breakdown;
  bd.sandbox_scope = true;
  const int64_t dur = s->end_unix_ns > s->start_unix_ns ? static_cast<int64_t>(s->end_unix_ns - s->start_unix_ns) : 0;
  std::optional<int64_t>* parts[] = {&bd.oncpu_ns, &bd.runq_ns, &bd.throttled_ns, &bd.blkio_ns, &bd.memstall_ns};
  int64_t busy = 0;
  for (auto* x : parts)
    if (x->has_value()) busy += **x;
  if (busy > dur && busy > 0) {
    const double f = static_cast<double>(dur) / static_cast<double>(busy);
    busy = 0;
    for (auto* x : parts)
      if (x->has_value()) {
        **x = static_cast<int64_t>(static_cast<double>(**x) * f);
        busy += **x;
      }
  }
  if (bd.steal_ns && bd.oncpu_ns) bd.steal_ns = std::min(*bd.steal_ns, *bd.oncpu_ns);
  bd.offcpu_other_ns = std::max<int64_t>(0, dur - busy);
}
}  // namespace

void ConnectionTracker::AddBreakdown(const Conn& c, const Pending& p, const Snap* end,
                                     uint64_t end_mono, Span* s) {
  // The window [start snapshot, end snapshot] is the span's own window (same segment
  // timestamps); the thread must be the same at both ends for a per-thread difference.
  if (p.start && end && p.start->tid == end->tid && p.start->acct.valid && end->acct.valid) {
    const auto& a = p.start->acct;
    const auto& b = end->acct;
    auto d = [](uint64_t x, uint64_t y) { return static_cast<int64_t>(y >= x ? y - x : 0); };
    Breakdown& bd = s->breakdown;
    bd.oncpu_ns = d(a.oncpu_ns, b.oncpu_ns);
    bd.runq_ns = d(a.runq_ns, b.runq_ns);
    bd.throttled_ns = d(a.throttled_ns, b.throttled_ns);
    bd.blkio_ns = d(a.blkio_ns, b.blkio_ns);
    if (features_.memstall) bd.memstall_ns = d(a.memstall_ns, b.memstall_ns);
    if (features_.steal) bd.steal_ns = d(a.steal_ns, b.steal_ns);
    bd.offcpu_other_ns = d(a.sleep_ns, b.sleep_ns);
    if (c.edge) ScaleToSandbox(s);
    if (*bd.throttled_ns > 0) {
      Incident e;
      e.kind = IncidentKind::kThrottling;
      e.time_unix_ns = s->end_unix_ns;
      e.throttled_ns = *bd.throttled_ns;
      e.throttle_count = static_cast<int64_t>(b.throttle_count - a.throttle_count);
      s->incidents.push_back(std::move(e));
    }
  }
  if (features_.tcp_incidents && p.start && end)
    s->net.retransmits = static_cast<int64_t>(end->retransmits - p.start->retransmits);
  if (end && end->srtt_us) s->net.srtt_us = static_cast<int64_t>(end->srtt_us);

  const uint64_t from = p.req.first_ts_ns;
  for (const auto& inc : c.incidents) {
    if (inc.ts < from || inc.ts > end_mono) continue;
    Incident e;
    e.time_unix_ns = clock_->MonoToUnixNs(inc.ts);
    if (inc.kind == SocketEvent::Kind::kRetransmit) {
      e.kind = IncidentKind::kTcpRetransmit;
    } else if (inc.kind == SocketEvent::Kind::kLocalDrop) {
      e.kind = IncidentKind::kPacketDrop;
    } else {
      e.kind = IncidentKind::kTcpReset;
      e.reset_by = inc.kind == SocketEvent::Kind::kResetReceived ? Incident::ResetBy::kPeer
                                                                  : Incident::ResetBy::kLocal;
    }
    s->incidents.push_back(std::move(e));
  }
  for (const auto& oom : ooms_) {
    if (oom.ts < from || oom.ts > end_mono || oom.cgroup_id != c.cgroup_id) continue;
    Incident e;
    e.kind = IncidentKind::kOomKill;
    e.time_unix_ns = clock_->MonoToUnixNs(oom.ts);
    e.victim_pid = oom.victim_tgid;
    e.victim_comm = oom.comm;
    s->incidents.push_back(std::move(e));
  }
}

}  // namespace isotrace::correlate

namespace isotrace::correlate {

namespace {
template <size_t N>
void RandomNonZero(absl::BitGen& rng, std::array<uint8_t, N>* id) {
  static_assert(N % 8 == 0);
  do {
    for (size_t i = 0; i < N; i += 8) {  // 64 bits a draw, not a draw per byte
      const uint64_t v = rng();
      std::memcpy(id->data() + i, &v, 8);
    }
  } while (std::all_of(id->begin(), id->end(), [](uint8_t b) { return !b; }));
}

std::array<uint8_t, 16> AsV6(uint8_t family, const std::array<uint8_t, 16>& a) {
  if (family != 2 /* AF_INET */) return a;
  std::array<uint8_t, 16> out{};
  out[10] = out[11] = 0xff;
  std::copy(a.begin(), a.begin() + 4, out.begin() + 12);
  return out;
}
constexpr size_t kMaxActivePerThread = 64;
}  // namespace

size_t ConnectionTracker::TupleHash::operator()(const Tuple& t) const {
  return absl::HashOf(t.laddr, t.raddr, t.lport, t.rport);
}

ConnectionTracker::Tuple ConnectionTracker::MakeTuple(uint8_t family, const std::array<uint8_t, 16>& laddr,
                                                      const std::array<uint8_t, 16>& raddr, uint16_t lport,
                                                      uint16_t rport) {
  Tuple t;
  t.laddr = AsV6(family, laddr);
  t.raddr = AsV6(family, raddr);
  t.lport = lport;
  t.rport = rport;
  return t;
}

ConnectionTracker::Tuple ConnectionTracker::TupleOf(const Conn& c, bool mirrored) {
  return mirrored ? MakeTuple(c.family, c.raddr, c.laddr, c.rport, c.lport)
                  : MakeTuple(c.family, c.laddr, c.raddr, c.lport, c.rport);
}

void ConnectionTracker::OnSynAckRetransmit(const SocketEvent& ev) {
  stats_.synack_retransmits++;
  const Tuple t = MakeTuple(ev.family, ev.laddr, ev.raddr, ev.lport, ev.rport);
  auto [it, fresh] = synacks_.try_emplace(t);
  if (it->second.size() < kMaxSynAcksPerTuple) it->second.push_back(ev.ts_exit_ns);
  if (!fresh) return;
  // Entries are never erased but here, oldest first, so the order holds each tuple once.
  synack_order_.push_back(t);
  if (synack_order_.size() > kMaxSynAckTuples) {
    synacks_.erase(synack_order_.front());
    synack_order_.pop_front();
  }
}

void ConnectionTracker::StartContext(Conn& c, Pending& p) {
  p.id = next_pending_id_++;
  RandomNonZero(rng_, &p.span_id);
  if (std::string_view tp = FindHeader(p.req, "traceparent"); !tp.empty()) {
    p.header = ParseTraceparent(tp);
    if (!p.header) stats_.traceparent_invalid++;
  }
  if (c.role == Role::kClient) {
    ResolveClient(c, p);
    return;
  }
  auto& list = active_[ThreadKey(c.key.tgid, p.tid)];
  if (list.size() >= kMaxActivePerThread) list.erase(list.begin());
  list.push_back({c.key, p.id});
  auto u = unseen_wait_.find(ThreadKey(c.key.tgid, p.tid));
  p.unseen_start = u == unseen_wait_.end() ? 0 : u->second;
}

void ConnectionTracker::RetireActive(const Conn& c, const Pending& p) {
  auto it = active_.find(ThreadKey(c.key.tgid, p.tid));
  if (it == active_.end()) return;
  // An emptied list stays (Expire removes it): the thread's next request reuses it
  // instead of allocating a map node and a vector again.
  std::erase_if(it->second, [&](const Active& a) { return a.pending_id == p.id; });
}

ConnectionTracker::Pending* ConnectionTracker::FindEnclosing(const Conn& c, const Pending& client) {
  struct Cand {
    Conn* conn;
    Pending* p;
  };
  // The SERVER requests a thread's list names that are still in flight and began before
  // the client request.
  const auto collect = [&](const std::vector<Active>& list, std::vector<Cand>* live) {
    for (const auto& a : list) {
      auto ci = conns_.find(a.conn);
      if (ci == conns_.end()) continue;
      for (auto& p : ci->second->pending)
        if (p.id == a.pending_id && p.req.first_ts_ns <= client.req.first_ts_ns)
          live->push_back({ci->second.get(), &p});
    }
  };
  std::vector<Cand> live;
  if (auto it = active_.find(ThreadKey(c.key.tgid, client.tid)); it != active_.end()) collect(it->second, &live);
  if (live.empty()) {
    // gRPC servers read requests on a poller thread and run handlers on a pool, so the
    // thread rule cannot see a gRPC handler's calls. For HTTP/2 on either side, the
    // process's one SERVER request in flight owns the call; several: unlinked, counted.
    std::vector<Cand> proc;
    for (const auto& [key, list] : active_)
      if (key >> 32 == c.key.tgid) collect(list, &proc);
    if (proc.empty() || !(client.h2 || std::any_of(proc.begin(), proc.end(), [](const Cand& x) { return x.p->h2; })))
      return nullptr;
    if (proc.size() > 1) {
      stats_.links_process_ambiguous++;
      return nullptr;
    }
    stats_.links_process++;
    ResolveServer(*proc[0].conn, *proc[0].p);
    proc[0].p->client_children++;
    return proc[0].p;
  }
  Cand pick{nullptr, nullptr};
  if (live.size() == 1) {
    pick = live[0];
  } else if (live.size() > 1) {
    // An event loop serving several requests: only a proxy-like match is safe, the one
    // request with the same method and target that has no client child yet.
    std::vector<Cand> same;
    for (const auto& cand : live)
      if (cand.p->req.method == client.req.method && cand.p->req.target == client.req.target &&
          cand.p->client_children == 0)
        same.push_back(cand);
    if (same.size() != 1) {
      stats_.links_thread_ambiguous++;
      return nullptr;
    }
    pick = same[0];
  }
  if (!pick.p) return nullptr;
  stats_.links_thread++;
  ResolveServer(*pick.conn, *pick.p);
  pick.p->client_children++;
  return pick.p;
}

void ConnectionTracker::ResolveClient(Conn& c, Pending& p) {
  if (p.resolved) return;
  p.resolved = true;
  if (!c.nat_noted) NoteClient(c);
  Pending* enc = FindEnclosing(c, p);
  // A traceparent equal to the enclosing request's own header was forwarded, not made
  // by the app for this call (proxies pass request headers through).
  const bool passthrough = p.header && enc && enc->header && p.header->trace_id == enc->header->trace_id &&
                           p.header->parent_id == enc->header->parent_id;
  if (enc) p.local_parent = enc->span_id;  // counted by FindEnclosing (thread or process)
  if (p.header && !passthrough) {
    p.app_propagated = true;
    stats_.app_traceparents++;
    p.trace_id = p.header->trace_id;
    p.parent = p.header->parent_id;
    p.flags = p.header->flags;
    p.tracestate = std::string(FindHeader(p.req, "tracestate"));
    p.remote_parent = !enc || p.header->parent_id != enc->span_id;
  } else if (enc) {
    p.trace_id = enc->trace_id;
    p.parent = enc->span_id;
    p.flags = enc->flags;
    p.tracestate = enc->tracestate;
  } else {
    RandomNonZero(rng_, &p.trace_id);
    p.flags = 1;
  }
}

void ConnectionTracker::NoteClient(Conn& c) {
  c.nat_noted = true;
  if (nat_ == nullptr || c.edge) return;
  if (nat_ask_.size() >= kMaxNatAsks) {
    // Only a connection the lookup would still have asked about is a loss: on a node
    // whose calls all mirror, the queue fills with connections linked without NAT.
    if (NatAskPending(nat_ask_.front())) stats_.nat_asks_dropped++;
    nat_ask_.pop_front();
  }
  // Pinned now: a one-shot caller may have exited (its namespace with it) by the time a
  // miss asks.
  nat_ask_.push_back({c.key.tgid, nat_->Pin(c.key.tgid, c.netns), TupleOf(c, /*mirrored=*/false)});
}

void ConnectionTracker::ForgetNat(const Tuple& caller) {
  auto f = nat_fwd_.find(caller);
  if (f == nat_fwd_.end()) return;
  const Tuple callee_mirror = MakeTuple(10 /* AF_INET6 */, f->second.raddr, f->second.laddr, f->second.rport,
                                        f->second.lport);
  if (auto r = nat_rev_.find(callee_mirror); r != nat_rev_.end() && r->second == caller) nat_rev_.erase(r);
  nat_fwd_.erase(f);
}

bool ConnectionTracker::NatAskPending(const NatAsk& a) const {
  // Not when its other end is here as it addressed it, when a SERVER request already
  // claimed one of its requests (linked, with or without NAT), or when it is gone.
  const Tuple mirror = MakeTuple(10 /* AF_INET6 */, a.orig.raddr, a.orig.laddr, a.orig.rport, a.orig.lport);
  if (by_tuple_.count(mirror)) return false;
  const auto any_claimed = [](const auto& list) {
    return std::any_of(list.begin(), list.end(), [](const auto& r) { return r.claimed; });
  };
  if (auto bt = by_tuple_.find(a.orig); bt != by_tuple_.end()) {
    auto ci = conns_.find(bt->second);
    return ci != conns_.end() && !any_claimed(ci->second->recent_clients) && !any_claimed(ci->second->pending);
  }
  auto cc = closed_clients_.find(a.orig);
  return cc != closed_clients_.end() && !any_claimed(cc->second->recent);
}

void ConnectionTracker::AskNat() {
  // The callers a miss could be waiting for: every CLIENT connection since the last miss.
  // Each is asked once; a lookup costs a netlink round trip (bench figures: docs/locate.md).
  while (!nat_ask_.empty()) {
    const NatAsk a = nat_ask_.front();
    nat_ask_.pop_front();
    if (!NatAskPending(a)) continue;
    probes::FlowTuple orig{a.orig.laddr, a.orig.raddr, a.orig.lport, a.orig.rport}, reply;
    stats_.nat_lookups++;
    switch (nat_->Reply(a.tgid, a.ns, orig, &reply)) {
      case probes::NatResult::kTranslated: stats_.nat_translated++; break;
      case probes::NatResult::kUntranslated: continue;
      case probes::NatResult::kNoEntry: stats_.nat_no_entry++; continue;
      case probes::NatResult::kError: stats_.nat_errors++; continue;
      case probes::NatResult::kAmbiguous: stats_.nat_ambiguous++; continue;
    }
    // The callee's socket: its address as it answers (reply source), the caller as it
    // sees it (reply destination, after SNAT).
    const Tuple callee = MakeTuple(10 /* AF_INET6 */, reply.src, reply.dst, reply.sport, reply.dport);
    const Tuple callee_mirror = MakeTuple(10 /* AF_INET6 */, reply.dst, reply.src, reply.dport, reply.sport);
    ForgetNat(a.orig);
    auto [r, fresh] = nat_rev_.try_emplace(callee_mirror, a.orig);
    if (!fresh && !(r->second == a.orig)) {
      // Another caller is translated to the same callee tuple (overlapping addresses in
      // two namespaces): which one the callee serves is unknowable. Neither links.
      stats_.links_nat_ambiguous++;
      r->second = Tuple{};  // the all-zero tuple names no connection
    }
    nat_fwd_[a.orig] = callee;
    nat_order_.push_back(a.orig);
    if (nat_order_.size() > kMaxNatLinks) {
      ForgetNat(nat_order_.front());
      nat_order_.pop_front();
    }
  }
}

const ConnectionTracker::Tuple* ConnectionTracker::NatCaller(const Tuple& mirrored) {
  if (nat_ == nullptr) return nullptr;
  if (!nat_ask_.empty()) AskNat();
  auto r = nat_rev_.find(mirrored);
  return r == nat_rev_.end() ? nullptr : &r->second;
}

std::optional<ConnectionTracker::ClientCtx> ConnectionTracker::ClaimPeer(const Conn& c, const Pending& server) {
  Tuple mirrored = TupleOf(c, /*mirrored=*/true);
  bool via_nat = false;
  if (nat_ != nullptr && !c.edge && !by_tuple_.count(mirrored) && !closed_clients_.count(mirrored)) {
    if (const Tuple* caller = NatCaller(mirrored)) {
      if (*caller == Tuple{}) return std::nullopt;  // ambiguous (counted when found)
      mirrored = *caller;
      via_nat = true;
    }
  }
  auto r = ClaimPeerAt(c, server, mirrored);
  if (r && via_nat) stats_.links_peer_nat++;
  return r;
}

std::optional<ConnectionTracker::ClientCtx> ConnectionTracker::ClaimPeerAt(const Conn& c, const Pending& server,
                                                                           const Tuple& mirrored) {
  auto bt = by_tuple_.find(mirrored);
  if (bt == by_tuple_.end()) {
    // The caller's connection may have closed before this end's records came in.
    auto cc = closed_clients_.find(mirrored);
    if (cc == closed_clients_.end()) return std::nullopt;  // the caller is not on this node
    for (auto& r : cc->second->recent) {
      if (r.claimed || server.h2) continue;
      if (r.method != server.req.method || r.target != server.req.target) {
        stats_.links_peer_ambiguous++;
        return std::nullopt;
      }
      r.claimed = true;
      stats_.links_peer++;
      return r;
    }
    stats_.links_peer_unmatched++;
    return std::nullopt;
  }
  auto ci = conns_.find(bt->second);
  if (ci == conns_.end() || ci->second.get() == &c || ci->second->role != Role::kClient) return std::nullopt;
  Conn& peer = *ci->second;
  // HTTP/1: request order on the connection, the oldest client request nobody claimed
  // yet, answered ones (recent_clients) before pending ones. HTTP/2: streams run
  // concurrently, but both ends number them alike: the caller's request on the same stream.
  // An h2c upgrade's request is stream 1 on the server as soon as it answered 101, while
  // the caller's side may not have read that 101 yet (still HTTP/1, stream 0).
  const auto mine = [&](uint32_t stream, bool claimed) {
    return !claimed && (!server.h2 || stream == server.stream_id || (server.stream_id == 1 && stream == 0));
  };
  ClientCtx* oldest_recent = nullptr;
  for (auto& r : peer.recent_clients)
    if (mine(r.stream_id, r.claimed)) {
      oldest_recent = &r;
      break;
    }
  Pending* oldest_pending = nullptr;
  if (!oldest_recent)
    for (auto& q : peer.pending)
      if (mine(q.stream_id, q.claimed)) {
        oldest_pending = &q;
        break;
      }
  if (!oldest_recent && !oldest_pending) {
    stats_.links_peer_unmatched++;
    return std::nullopt;
  }
  const std::string& method = oldest_recent ? oldest_recent->method : oldest_pending->req.method;
  const std::string& target = oldest_recent ? oldest_recent->target : oldest_pending->req.target;
  // The same bytes crossed the connection: a different request line means we lost
  // track of the order (a request missed on one side). Do not guess.
  if (method != server.req.method || target != server.req.target) {
    stats_.links_peer_ambiguous++;
    return std::nullopt;
  }
  stats_.links_peer++;
  peer.callee_tgid = c.key.tgid;
  if (oldest_recent) {
    oldest_recent->claimed = true;
    return *oldest_recent;
  }
  Pending& q = *oldest_pending;
  if (!q.resolved) ResolveClient(peer, q);
  q.claimed = true;
  return ClientCtx{q.id, q.trace_id, q.span_id, q.flags, q.tracestate, q.app_propagated, q.header,
                   q.req.method, q.req.target, true, q.stream_id, q.req.first_ts_ns};
}

bool ConnectionTracker::CallerRecordMayFollow(const Conn& c, const Pending& p) const {
  if (c.edge) return false;
  auto bt = by_tuple_.find(TupleOf(c, /*mirrored=*/true));
  if (bt == by_tuple_.end()) return false;  // no caller on this node (or one behind NAT)
  auto ci = conns_.find(bt->second);
  if (ci == conns_.end() || ci->second.get() == &c) return false;
  const Conn& peer = *ci->second;
  if (peer.role != Role::kClient || peer.disabled) return false;
  // As ClaimPeerAt chooses: any request it could claim (or find ambiguous) is in.
  const auto mine = [&](uint32_t stream, bool claimed) {
    return !claimed && (!p.h2 || stream == p.stream_id || (p.stream_id == 1 && stream == 0));
  };
  for (const auto& r : peer.recent_clients)
    if (mine(r.stream_id, r.claimed)) return false;
  for (const auto& q : peer.pending)
    if (mine(q.stream_id, q.claimed)) return false;
  return true;
}

bool ConnectionTracker::HoldForCaller(const Conn& c, const Pending& p) const {
  if (p.resolved) return false;  // a client child needed its context: decided already
  if (!c.held.empty()) return true;  // behind an earlier one: claims follow request order
  return CallerRecordMayFollow(c, p);
}

void ConnectionTracker::Hold(Conn& c, Pending&& p, HttpMessage* resp, std::optional<Snap> end,
                             uint64_t end_mono, std::string_view error) {
  if (c.held.size() >= kMaxHeldPerConn) ReleaseHeld(c, 0, /*force=*/true);
  RetireActive(c, p);
  auto u = unseen_wait_.find(ThreadKey(c.key.tgid, p.tid));
  p.unseen_end = u == unseen_wait_.end() ? 0 : u->second;
  const uint64_t due = end_mono + kHoldForCallerNs;
  auto& h = c.held.emplace_back();
  h.p = std::move(p);
  if (resp) h.resp = std::move(*resp);  // the caller is done with it
  h.end = std::move(end);
  h.end_mono = end_mono;
  h.error = error;
  h.due = due;
  held_due_.emplace_back(due, c.key);
  awaiting_caller_[TupleOf(c, /*mirrored=*/true)] = c.key;
  stats_.links_peer_held++;
}

void ConnectionTracker::ReleaseHeld(Conn& c, uint64_t now, bool force) {
  while (!c.held.empty()) {
    auto& front = c.held.front();
    const bool due = force || front.due <= now;
    if (!due && CallerRecordMayFollow(c, front.p)) break;
    Conn::Held h = std::move(front);
    c.held.pop_front();
    const uint64_t unmatched = stats_.links_peer_unmatched;
    ResolveServer(c, h.p, /*in_pending=*/false);
    if (due && stats_.links_peer_unmatched != unmatched) stats_.links_peer_held_expired++;
    Emit(c, h.p, h.resp ? &*h.resp : nullptr, h.end ? &*h.end : nullptr, h.end_mono, h.error);
  }
  if (c.held.empty()) {
    auto w = awaiting_caller_.find(TupleOf(c, /*mirrored=*/true));
    if (w != awaiting_caller_.end() && w->second == c.key) awaiting_caller_.erase(w);
  }
}

void ConnectionTracker::ReleaseHeldOf(Key key, uint64_t now, bool force) {
  if (auto it = conns_.find(key); it != conns_.end()) {
    ReleaseHeld(*it->second, now, force);
    return;
  }
  auto it = lingering_.find(key);
  if (it == lingering_.end()) return;
  ReleaseHeld(*it->second, now, force);
  if (it->second->held.empty()) lingering_.erase(it);
}

void ConnectionTracker::WakeHeldFor(const Conn& caller) {
  auto w = awaiting_caller_.find(TupleOf(caller, /*mirrored=*/false));
  if (w == awaiting_caller_.end()) return;
  ReleaseHeldOf(w->second, 0, /*force=*/false);
}

void ConnectionTracker::ReleaseDue(uint64_t now) {
  while (!held_due_.empty() && held_due_.front().first <= now) {
    const Key k = held_due_.front().second;
    held_due_.pop_front();
    ReleaseHeldOf(k, now, /*force=*/false);
  }
}

void ConnectionTracker::ResolveServer(Conn& c, Pending& p, bool in_pending) {
  if (p.resolved) return;
  // Claims follow request order: the connection's earlier requests claim first, held
  // ones (which ended already) before those still in flight.
  if (in_pending) {
    if (!c.held.empty()) ReleaseHeld(c, 0, /*force=*/true);
    for (auto& q : c.pending) {
      if (&q == &p) break;
      if (!q.resolved) ResolveServer(c, q);
    }
  }
  p.resolved = true;
  auto peer = ClaimPeer(c, p);
  if (peer && listen_ && !c.listen_watched) {
    // A callee with a caller on this node: its listen drops tell a full accept queue
    // from a lost SYN on that caller's spans (AddListenDrops).
    c.listen_watched = true;
    listen_->Watch(c.key.tgid, clock_->MonotonicNowNs());
  }
  if (peer) {
    p.local_parent = peer->span_id;
    p.remote_parent = true;  // the parent lives in another process
    p.caller_start_ns = peer->start_ns;
    if (peer->app_propagated && p.header) {
      // The caller's app propagated its own context: that wins.
      p.trace_id = p.header->trace_id;
      p.parent = p.header->parent_id;
      p.flags = p.header->flags;
      p.tracestate = std::string(FindHeader(p.req, "tracestate"));
    } else {
      p.trace_id = peer->trace_id;
      p.parent = peer->span_id;
      p.flags = peer->flags;
      p.tracestate = peer->tracestate;
    }
    return;
  }
  if (p.header) {
    p.trace_id = p.header->trace_id;
    p.parent = p.header->parent_id;
    p.flags = p.header->flags;
    p.tracestate = std::string(FindHeader(p.req, "tracestate"));
    p.remote_parent = true;
    return;
  }
  RandomNonZero(rng_, &p.trace_id);
  p.flags = 1;
}

ConnectionTracker::Tuple ConnectionTracker::PeerTuple(const Conn& c) const {
  Tuple peer = TupleOf(c, /*mirrored=*/true);
  if (!nat_fwd_.empty() || !nat_rev_.empty()) {
    // Behind NAT the other end's socket has another tuple (AskNat).
    if (c.role == Role::kClient) {
      if (auto f = nat_fwd_.find(TupleOf(c, /*mirrored=*/false)); f != nat_fwd_.end()) peer = f->second;
    } else if (auto r = nat_rev_.find(peer); r != nat_rev_.end() && !by_tuple_.count(peer)) {
      peer = r->second;
    }
  }
  return peer;
}

void ConnectionTracker::AddListenDrops(const Conn& c, uint64_t from, uint64_t to, Span* s) {
  // The callee: the process that claimed this connection's requests, else the one at its
  // other end now (the CLIENT span can go out before its callee's span claimed it).
  uint32_t callee = c.callee_tgid;
  if (callee == 0)
    if (auto bt = by_tuple_.find(PeerTuple(c)); bt != by_tuple_.end()) callee = bt->second.tgid;
  if (callee == 0 || callee == c.key.tgid) return;
  if (auto d = listen_->Between(callee, from, to, clock_->MonotonicNowNs()))
    s->net.listen_drops = static_cast<int64_t>(*d);
}

void ConnectionTracker::AddPeerIncidents(const Conn& c, uint64_t from, uint64_t to, Span* s) {
  // The connection's other end on this node: its retransmits and resets are this call's
  // too, both ways: a CLIENT span's lost responses retransmit from the server's socket,
  // a SERVER span's lost request segments from the caller's.
  const Tuple peer = PeerTuple(c);
  if (c.role == Role::kClient && !synacks_.empty()) {
    // SYN-ACKs the callee's listener resent while this side waited in connect().
    if (auto sa = synacks_.find(peer); sa != synacks_.end()) {
      int64_t n = 0;
      for (uint64_t ts : sa->second) {
        if (ts < from || ts > to) continue;
        Incident e;
        e.kind = IncidentKind::kTcpRetransmit;
        e.time_unix_ns = clock_->MonoToUnixNs(ts);
        e.peer_side = true;
        s->incidents.push_back(std::move(e));
        n++;
      }
      // Only the connect span's window holds them: later spans on the connection (or a
      // reuse of the tuple) start after the handshake and count none.
      if (n > 0) {
        s->net.retransmits = s->net.retransmits.value_or(0) + n;
        stats_.synack_on_spans += static_cast<uint64_t>(n);
      }
    }
  }
  auto bt = by_tuple_.find(peer);
  if (bt == by_tuple_.end()) return;
  auto ci = conns_.find(bt->second);
  if (ci == conns_.end() || ci->second.get() == &c) return;
  int64_t retrans = 0;
  for (const auto& inc : ci->second->incidents) {
    if (inc.ts < from || inc.ts > to) continue;
    Incident e;
    e.kind = inc.kind == SocketEvent::Kind::kRetransmit  ? IncidentKind::kTcpRetransmit
             : inc.kind == SocketEvent::Kind::kLocalDrop ? IncidentKind::kPacketDrop
                                                         : IncidentKind::kTcpReset;
    e.time_unix_ns = clock_->MonoToUnixNs(inc.ts);
    e.peer_side = true;
    if (inc.kind == SocketEvent::Kind::kRetransmit) retrans++;
    s->incidents.push_back(std::move(e));
  }
  if (retrans > 0) s->net.retransmits = s->net.retransmits.value_or(0) + retrans;
}

}  // namespace isotrace::correlate

// HTTP/2 and gRPC (docs/protocols.md): detection, the decoder's events → the same
// Pending/Emit path as HTTP/1, one request per stream.
namespace isotrace::correlate {

ConnectionTracker::H2Start ConnectionTracker::StartHttp2(Conn& c, const SocketEvent& ev) {
  const bool ingress = ev.dir == SocketEvent::Direction::kIngress;
  std::string_view p = ev.payload;
  if (Http2Connection::LooksLikePreface(p)) {
    c.role = ingress ? Role::kServer : Role::kClient;  // the preface is the client's
  } else if (Http2Connection::LooksLikeSettings(p)) {
    // The server's SETTINGS first (gRPC servers write it before they read the client's
    // preface), so the sender is the server; the preface must follow from the other side.
    c.role = ingress ? Role::kClient : Role::kServer;
  } else if (!LooksLikeRequestStart(p) && Http2Connection::LooksLikeFrames(p)) {
    // HTTP/2 whose start we missed (the connection predates the daemon): a fresh HPACK
    // table cannot decode it. Counted, then treated like any opaque socket.
    c.disabled = true;
    c.h2_failed = true;
    stats_.connections_http2_undecodable++;
    spdlog::debug("http2: pid {} connection {} began before the daemon saw it: not decoded", c.key.tgid,
                  c.key.conn_id);
    return H2Start::kUndecodable;
  } else {
    return H2Start::kNo;
  }
  c.h2 = std::make_unique<Http2Connection>(limits_.http2);
  stats_.connections_http2++;
  spdlog::debug("http2: pid {} connection {} is HTTP/2 ({})", c.key.tgid, c.key.conn_id,
                c.role == Role::kServer ? "server" : "client");
  return H2Start::kYes;
}

void ConnectionTracker::OnHttp2Data(Conn& c, const SocketEvent& ev) {
  const bool ingress = ev.dir == SocketEvent::Direction::kIngress;
  const bool from_client = (c.role == Role::kServer) == ingress;
  // The same syscall edges as HTTP/1 (header comment).
  const uint64_t ts = (c.role == Role::kClient && !ingress) ? ev.ts_enter_ns : ev.ts_exit_ns;
  const uint64_t total = ev.ret > 0 ? static_cast<uint64_t>(ev.ret) : 0;
  if (from_client) c.last_tid = ev.tid;
  auto& snaps = from_client ? c.req_snaps : c.resp_snaps;
  if (snaps.size() >= Conn::kMaxSnaps) snaps.pop_front();
  snaps.push_back({ts, ev.tid, AcctAt(ev, ts), ev.retransmits, ev.srtt_us});
  if (uint64_t lost = AdvancePosition(c, ev)) {
    // Records the probe lost: the decoder skips their bytes where it can prove the frame
    // boundaries (inside DATA), else the connection becomes undecodable.
    stats_.stream_gaps++;
    stats_.stream_gap_bytes += lost;
    FeedHttp2(c, from_client, {}, lost, ts);
    if (c.disabled) return;
  }
  FeedHttp2(c, from_client, ev.payload, total, ts);
}

void ConnectionTracker::FeedHttp2(Conn& c, bool from_client, std::string_view bytes, uint64_t total,
                                  uint64_t ts) {
  h2_scratch_.clear();
  c.h2->Feed(from_client ? Http2Connection::Side::kClient : Http2Connection::Side::kServer, bytes, total, ts,
             &h2_scratch_);
  std::vector<Http2Event> events;
  events.swap(h2_scratch_);
  for (auto& e : events) {
    if (e.kind == Http2Event::Kind::kRequest)
      OnHttp2Request(c, std::move(e.exchange));
    else
      OnHttp2Done(c, std::move(e.exchange), ts);
  }
  events.clear();
  h2_scratch_.swap(events);  // keep the capacity
  if (c.h2->failed() && !c.h2_failed) {
    // Undecodable from here on: the streams in flight are dropped, never guessed (the
    // decoder counted them); the socket is opaque from now on (unseen downstream waits).
    c.h2_failed = true;
    c.disabled = true;
    stats_.connections_http2_undecodable++;
    spdlog::debug("http2: pid {} connection {} undecodable ({}: {}), {} streams dropped", c.key.tgid,
                  c.key.conn_id, Http2Connection::FailureName(c.h2->failure()), c.h2->failure_detail(),
                  c.h2->streams_dropped());
    for (const auto& p : c.pending)
      if (c.role != Role::kClient) RetireActive(c, p);
    c.pending.clear();
  }
}

void ConnectionTracker::UpgradeToHttp2(Conn& c, const SocketEvent& ev, bool response_dir, uint64_t ts) {
  c.upgrading = false;
  c.h2 = std::make_unique<Http2Connection>(limits_.http2);
  stats_.connections_http2++;
  Pending& p = c.pending.front();
  Http2Exchange req;
  req.method = p.req.method;
  req.path = p.req.target;
  req.authority = std::string(FindHeader(p.req, "host"));
  req.content_type = std::string(FindHeader(p.req, "content-type"));
  req.request_first_ts_ns = p.req.first_ts_ns;
  req.request_last_ts_ns = p.req.last_ts_ns;
  c.h2->StartAfterUpgrade(std::move(req), FindHeader(p.req, "http2-settings"));
  p.h2 = true;
  p.stream_id = 1;
  p.req.version = "2";  // answered over HTTP/2
  if (!response_dir) return;
  // The server's first frames may share the 101's segment: they start after its head.
  std::string_view seg = ev.payload;
  size_t status = seg.find("HTTP/1.1 101");
  size_t end = seg.find("\r\n\r\n", status == std::string_view::npos ? 0 : status);
  const uint64_t total = ev.ret > 0 ? static_cast<uint64_t>(ev.ret) : 0;
  if (end == std::string_view::npos || end + 4 > total) {
    FeedHttp2(c, /*from_client=*/false, {}, total, ts);  // where HTTP/2 starts is unknown: a gap
    return;
  }
  end += 4;
  FeedHttp2(c, /*from_client=*/false, seg.substr(end), total - end, ts);
}

void ConnectionTracker::OnHttp2Request(Conn& c, Http2Exchange&& x) {
  if (x.user_agent.rfind("isotrace/", 0) == 0) {
    stats_.requests_self++;
    if (c.self_streams.size() >= limits_.max_pending_per_connection) c.self_streams.pop_front();
    c.self_streams.push_back(x.stream_id);
    return;
  }
  if (c.pending.size() >= limits_.max_pending_per_connection) {
    stats_.requests_overflow++;
    return;
  }
  // The request as HTTP/1 requests are kept, so links, contexts and Emit apply as they are.
  HttpMessage req;
  req.is_request = true;
  req.method = std::move(x.method);
  req.target = std::move(x.path);
  req.version = "2";
  req.headers.reserve(3);
  if (!x.authority.empty()) req.headers.push_back({"host", std::move(x.authority)});
  if (!x.traceparent.empty()) req.headers.push_back({"traceparent", std::move(x.traceparent)});
  if (!x.tracestate.empty()) req.headers.push_back({"tracestate", std::move(x.tracestate)});
  req.first_ts_ns = x.request_first_ts_ns;
  req.last_ts_ns = x.request_last_ts_ns ? x.request_last_ts_ns : x.request_first_ts_ns;
  auto start = FindSnap(c.req_snaps, req.first_ts_ns);
  const uint32_t tid = start ? start->tid : c.last_tid;
  const uint64_t connect_ns = UseConnect(c, &req.first_ts_ns, &start);
  Pending& p = c.pending.emplace_back();
  p.tid = tid;
  p.start = start;
  p.connect_ns = connect_ns;
  p.h2 = true;
  p.stream_id = x.stream_id;
  x.path = req.target;  // RpcService/RpcMethod read the path
  if (x.grpc && !x.RpcService().empty())
    p.rpc = Span::Rpc{"grpc", std::string(x.RpcService()), std::string(x.RpcMethod()), -1};
  p.req = std::move(req);
  StartContext(c, p);
  if (c.role == Role::kClient && !awaiting_caller_.empty()) WakeHeldFor(c);
}

void ConnectionTracker::OnHttp2Done(Conn& c, Http2Exchange&& x, uint64_t ts) {
  auto it = std::find_if(c.pending.begin(), c.pending.end(),
                         [&](const Pending& p) { return p.h2 && p.stream_id == x.stream_id; });
  if (it == c.pending.end()) {
    auto self = std::find(c.self_streams.begin(), c.self_streams.end(), x.stream_id);
    if (self != c.self_streams.end())
      c.self_streams.erase(self);
    else
      stats_.responses_unmatched++;  // its request was over the pending limit
    return;
  }
  const bool hold = c.role != Role::kClient && HoldForCaller(c, *it);
  if (c.role != Role::kClient && !hold) ResolveServer(c, *it);
  Pending p = std::move(*it);
  c.pending.erase(it);
  if (p.rpc) p.rpc->grpc_status_code = x.grpc_status;
  HttpMessage resp;
  resp.status = x.status;
  resp.last_ts_ns = x.response_last_ts_ns;
  std::string_view error;
  uint64_t end_mono = x.response_last_ts_ns;
  if (x.end != Http2Exchange::End::kComplete) {
    // Reset (a gRPC cancel or deadline, a refused stream) or the connection went away.
    end_mono = ts;
    error = x.end == Http2Exchange::End::kReset ? "stream_reset" : (c.reset ? "tcp_reset" : "connection_closed");
    stats_.requests_unanswered++;
  }
  auto end = FindSnap(c.resp_snaps, end_mono);
  if (hold) {
    Hold(c, std::move(p), x.status ? &resp : nullptr, end, end_mono, error);
    return;
  }
  Emit(c, p, x.status ? &resp : nullptr, end ? &*end : nullptr, end_mono, error);
}

void ConnectionTracker::CloseHttp2(Conn& c, uint64_t ts_mono) {
  h2_scratch_.clear();
  c.h2->Close(&h2_scratch_);
  std::vector<Http2Event> events;
  events.swap(h2_scratch_);
  for (auto& e : events)
    if (e.kind == Http2Event::Kind::kDone) OnHttp2Done(c, std::move(e.exchange), ts_mono);
  stats_.http2_streams_dropped += c.h2->streams_dropped();
  c.h2.reset();  // FinishConn may run once more (Drop after close): count once
}

}  // namespace isotrace::correlate
