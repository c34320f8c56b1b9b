#include "daemon/correlate/connection_tracker.h"

#include <algorithm>
#include <utility>

#include "daemon/correlate/traceparent.h"

namespace isotrace::correlate {

using probes::SocketEvent;

namespace {
enum class Role : uint8_t { kUnknown, kServer, kClient };

std::string_view FindHeader(const HttpMessage& m, std::string_view lower_name) {
  for (const auto& h : m.headers)
    if (h.name == lower_name) return h.value;
  return {};
}

// A method token followed by a space at the very start: the cheap test that decides
// whether a connection's first captured bytes begin a request.
bool LooksLikeRequestStart(std::string_view p) {
  size_t i = 0;
  while (i < p.size() && i < 32 && p[i] >= 'A' && p[i] <= 'Z') i++;
  return i >= 3 && i < p.size() && p[i] == ' ';
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
};

struct ConnectionTracker::Conn {
  Key key;
  uint64_t sock_id = 0;
  uint64_t proc_start_ns = 0;
  uint64_t cgroup_id = 0;
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
  uint32_t last_tid = 0;
};

ConnectionTracker::ConnectionTracker(const TrackerLimits& limits, util::Clock* clock, SpanSink sink)
    : limits_(limits), clock_(clock), sink_(std::move(sink)) {}

ConnectionTracker::~ConnectionTracker() = default;

ConnectionTracker::Conn* ConnectionTracker::Find(const SocketEvent& ev, bool create) {
  Key key{ev.tgid, ev.fd};
  auto it = conns_.find(key);
  if (it != conns_.end()) {
    Conn* c = it->second.get();
    if (c->sock_id == ev.sock_id && c->proc_start_ns == ev.proc_start_ns) {
      lru_.splice(lru_.begin(), lru_, c->lru_it);
      return c;
    }
    // The fd now names another socket (or the pid another process): we missed a close.
    Drop(key, /*finish=*/true);
  }
  if (!create) return nullptr;
  // The same socket through another fd of the same process (dup2: inetd-style servers;
  // busybox httpd reads fd 0 and writes fd 1, socat EXEC hands both to the child).
  if (ev.kind == SocketEvent::Kind::kData) {
    auto bs = by_sock_.find(ev.sock_id);
    if (bs != by_sock_.end() && bs->second.tgid == ev.tgid) {
      auto c2 = conns_.find(bs->second);
      if (c2 != conns_.end() && c2->second->proc_start_ns == ev.proc_start_ns) return c2->second.get();
    }
  }
  if (conns_.size() >= limits_.max_connections && !lru_.empty()) {
    Drop(lru_.back(), /*finish=*/true);
    stats_.connections_evicted++;
  }
  auto c = std::make_unique<Conn>();
  c->key = key;
  c->sock_id = ev.sock_id;
  c->proc_start_ns = ev.proc_start_ns;
  c->cgroup_id = ev.cgroup_id;
  c->family = ev.family;
  c->laddr = ev.laddr;
  c->raddr = ev.raddr;
  c->lport = ev.lport;
  c->rport = ev.rport;
  lru_.push_front(key);
  c->lru_it = lru_.begin();
  Conn* raw = c.get();
  by_sock_[ev.sock_id] = key;
  conns_.emplace(key, std::move(c));
  stats_.connections_opened++;
  return raw;
}

void ConnectionTracker::Drop(const Key& key, bool finish) {
  auto it = conns_.find(key);
  if (it == conns_.end()) return;
  if (finish) FinishConn(*it->second, it->second->last_active_mono);
  auto bs = by_sock_.find(it->second->sock_id);
  if (bs != by_sock_.end() && bs->second == key) by_sock_.erase(bs);
  lru_.erase(it->second->lru_it);
  conns_.erase(it);
}

void ConnectionTracker::OnEvent(const SocketEvent& ev) {
  stats_.events++;
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
      Conn* c = Find(ev, /*create=*/false);
      if (c) {
        FinishConn(*c, ev.ts_enter_ns);
        Drop(c->key, /*finish=*/false);
      }
      return;
    }
    case SocketEvent::Kind::kRetransmit:
    case SocketEvent::Kind::kResetReceived:
    case SocketEvent::Kind::kResetSent:
    case SocketEvent::Kind::kOomKill:
      OnIncident(ev);
      return;
    case SocketEvent::Kind::kData: {
      Conn* c = Find(ev, /*create=*/true);
      c->last_active_mono = ev.ts_exit_ns;
      c->last_tid = ev.tid;
      if (!c->disabled) OnData(*c, ev);
      return;
    }
  }
}

void ConnectionTracker::OnData(Conn& c, const SocketEvent& ev) {
  const bool ingress = ev.dir == SocketEvent::Direction::kIngress;
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

  // A message whose end cannot be framed (head cut by the capture, close-delimited)
  // ends where the other direction starts: flush the opposite parser first. Flush leaves
  // a message with a known end alone, so this is safe on every segment.
  Http1Parser& parser = is_request_dir ? *c.requests : *c.responses;
  Http1Parser& other = is_request_dir ? *c.responses : *c.requests;
  auto& snaps = is_request_dir ? c.req_snaps : c.resp_snaps;
  if (snaps.size() >= Conn::kMaxSnaps) snaps.pop_front();
  snaps.push_back({ts, ev.tid, ev.acct, ev.retransmits, ev.srtt_us});
  std::vector<HttpMessage> done;
  const auto dispatch = [&] {
    done.swap(scratch_);
    for (auto& m : done) {
      if (m.is_request)
        OnRequest(c, std::move(m));
      else
        OnResponse(c, std::move(m));
    }
    done.clear();
  };
  // Flushed messages of the other direction come first, and are handled before this
  // segment is parsed: a flushed (head-truncated) request must reach ExpectResponseTo
  // before its response head is framed, or a HEAD/CONNECT answer is framed with a body.
  scratch_.clear();
  other.Flush(&scratch_);
  dispatch();
  absl::Status st = parser.Feed(ev.payload, total, ts, &scratch_);
  dispatch();
  // 101 Switching Protocols / CONNECT 2xx: the rest of the connection is not HTTP/1.x.
  if (c.responses->tunneled() && !c.requests->tunneled()) c.requests->EnterTunnel();
  if (!st.ok()) {
    // Not (or no longer) HTTP/1.x: stop parsing this socket; what was pending ends now.
    c.disabled = true;
    stats_.connections_not_http++;
    FinishConn(c, ev.ts_exit_ns);
  }
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
  auto it = by_sock_.find(ev.sock_id);
  if (it == by_sock_.end()) return;
  auto cit = conns_.find(it->second);
  if (cit == conns_.end()) return;
  Conn& c = *cit->second;
  if (c.incidents.size() >= kMaxIncidents) c.incidents.pop_front();
  c.incidents.push_back({ev.ts_exit_ns, ev.kind});
  if (ev.kind != SocketEvent::Kind::kRetransmit) c.reset = true;
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
  c.pending.push_back({std::move(req), tid, start});
}

void ConnectionTracker::OnResponse(Conn& c, HttpMessage&& resp) {
  if (resp.is_request) return;
  if (c.pending.empty()) {
    stats_.responses_unmatched++;
    return;
  }
  Pending p = std::move(c.pending.front());
  c.pending.pop_front();
  auto end = FindSnap(c.resp_snaps, resp.last_ts_ns);
  Emit(c, p, &resp, end ? &*end : nullptr, resp.last_ts_ns, "");
}

void ConnectionTracker::FinishConn(Conn& c, uint64_t ts_mono) {
  if (c.requests) {
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
    Pending p = std::move(c.pending.front());
    c.pending.pop_front();
    Emit(c, p, nullptr, nullptr, std::max(ts_mono, p.req.last_ts_ns),
         c.reset ? "tcp_reset" : "connection_closed");
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
}

void ConnectionTracker::Emit(Conn& c, const Pending& p, const HttpMessage* resp, const Snap* end_snap,
                             uint64_t end_mono, std::string_view error_type) {
  const HttpMessage& req = p.req;
  const uint32_t tid = p.tid;
  Span s;
  s.kind = c.role == Role::kClient ? SpanKind::kClient : SpanKind::kServer;
  std::string_view tp = FindHeader(req, "traceparent");
  std::optional<TraceContext> ctx;
  if (!tp.empty()) {
    ctx = ParseTraceparent(tp);
    if (!ctx) stats_.traceparent_invalid++;
  }
  if (ctx) {
    s.trace_id = ctx->trace_id;
    s.parent_span_id = ctx->parent_id;
    s.trace_flags = ctx->flags;
    s.remote_parent = true;
    s.tracestate = std::string(FindHeader(req, "tracestate"));
  } else {
    do {
      for (auto& b : s.trace_id) b = absl::Uniform<uint8_t>(rng_);
    } while (std::all_of(s.trace_id.begin(), s.trace_id.end(), [](uint8_t b) { return !b; }));
    s.trace_flags = 1;
  }
  do {
    for (auto& b : s.span_id) b = absl::Uniform<uint8_t>(rng_);
  } while (std::all_of(s.span_id.begin(), s.span_id.end(), [](uint8_t b) { return !b; }));

  s.start_unix_ns = clock_->MonoToUnixNs(req.first_ts_ns);
  uint64_t end = std::max(end_mono, req.first_ts_ns);
  s.end_unix_ns = clock_->MonoToUnixNs(end);

  s.method = req.method;
  std::string_view target = req.target;
  if (size_t q = target.find('?'); q != std::string_view::npos) {
    s.path = std::string(target.substr(0, q));
    s.query = std::string(target.substr(q + 1));
  } else {
    s.path = std::string(target);
  }
  s.protocol_version = req.version;
  s.host_header = std::string(FindHeader(req, "host"));
  if (resp) s.status_code = resp->status;
  if (!error_type.empty()) {
    s.error_type = std::string(error_type);
  } else if (s.status_code >= 500 || (s.kind == SpanKind::kClient && s.status_code >= 400)) {
    s.error_type = std::to_string(s.status_code);
  }

  std::string local = probes::FormatAddress(c.family, c.laddr);
  std::string remote = probes::FormatAddress(c.family, c.raddr);
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
  AddBreakdown(c, p, end_snap, end, &s);
  stats_.spans++;
  sink_(std::move(s));
}

}  // namespace isotrace::correlate

namespace isotrace::correlate {

void ConnectionTracker::AddBreakdown(const Conn& c, const Pending& p, const Snap* end,
                                     uint64_t end_mono, Span* s) {
  // The window [start snapshot, end snapshot] is the span's own window (same segment
  // timestamps); the thread must be the same at both ends for a per-thread difference.
  if (p.start && end && p.start->tid == end->tid && p.start->acct.valid && end->acct.valid) {
    const auto& a = p.start->acct;
    const auto& b = end->acct;
    auto d = [](uint64_t x, uint64_t y) { return static_cast<int64_t>(y >= x ? y - x : 0); };
    auto& at = s->attributes;
    at.push_back({"isotrace.app.oncpu_ns", d(a.oncpu_ns, b.oncpu_ns)});
    at.push_back({"isotrace.kernel.runq_ns", d(a.runq_ns, b.runq_ns)});
    at.push_back({"isotrace.container.throttled_ns", d(a.throttled_ns, b.throttled_ns)});
    at.push_back({"isotrace.kernel.blkio_ns", d(a.blkio_ns, b.blkio_ns)});
    if (features_.memstall) at.push_back({"isotrace.kernel.memstall_ns", d(a.memstall_ns, b.memstall_ns)});
    if (features_.steal) at.push_back({"isotrace.vm.steal_ns", d(a.steal_ns, b.steal_ns)});
    at.push_back({"isotrace.offcpu_other_ns", d(a.sleep_ns, b.sleep_ns)});
    int64_t throttled = d(a.throttled_ns, b.throttled_ns);
    if (throttled > 0) {
      SpanEvent e;
      e.time_unix_ns = s->end_unix_ns;
      e.name = "throttling";
      e.attributes.push_back({"isotrace.verdict.layer", std::string("container")});
      e.attributes.push_back({"isotrace.container.throttled_ns", throttled});
      e.attributes.push_back({"isotrace.container.throttle_count",
                              static_cast<int64_t>(b.throttle_count - a.throttle_count)});
      s->events.push_back(std::move(e));
    }
  }
  if (features_.tcp_incidents && p.start && end) {
    s->attributes.push_back(
        {"isotrace.net.retransmits", static_cast<int64_t>(end->retransmits - p.start->retransmits)});
  }
  if (end && end->srtt_us) s->attributes.push_back({"isotrace.net.srtt_us", static_cast<int64_t>(end->srtt_us)});

  const uint64_t from = p.req.first_ts_ns;
  for (const auto& inc : c.incidents) {
    if (inc.ts < from || inc.ts > end_mono) continue;
    SpanEvent e;
    e.time_unix_ns = clock_->MonoToUnixNs(inc.ts);
    e.name = inc.kind == SocketEvent::Kind::kRetransmit ? "tcp_retransmit" : "tcp_reset";
    e.attributes.push_back({"isotrace.verdict.layer", std::string("network")});
    if (inc.kind != SocketEvent::Kind::kRetransmit)
      e.attributes.push_back({"isotrace.net.reset_by",
                              std::string(inc.kind == SocketEvent::Kind::kResetReceived ? "peer" : "local")});
    s->events.push_back(std::move(e));
  }
  for (const auto& oom : ooms_) {
    if (oom.ts < from || oom.ts > end_mono || oom.cgroup_id != c.cgroup_id) continue;
    SpanEvent e;
    e.time_unix_ns = clock_->MonoToUnixNs(oom.ts);
    e.name = "oom_kill";
    e.attributes.push_back({"isotrace.verdict.layer", std::string("container")});
    e.attributes.push_back({"process.pid", static_cast<int64_t>(oom.victim_tgid)});
    e.attributes.push_back({"process.executable.name", oom.comm});
    s->events.push_back(std::move(e));
  }
}

}  // namespace isotrace::correlate
