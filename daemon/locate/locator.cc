#include "daemon/locate/locator.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "exporters/otlp/semconv.h"
#include "daemon/correlate/resource.h"

namespace isotrace::locate {

using correlate::Span;
using correlate::SpanKind;

using correlate::ServiceName;

namespace {

bool HasAttr(const correlate::Resource& r, std::string_view key) {
  for (const auto& a : r.attributes)
    if (a.key == key) return true;
  return false;
}

// The measures judging needs, read off the span's typed breakdown (connection_tracker.cc
// writes it); an absent measure counts as 0 here, `acct` says whether the per-thread
// accounting was there at all.
struct Breakdown {
  bool acct = false;
  int64_t oncpu = 0, runq = 0, throttled = 0, blkio = 0, memstall = 0, steal = 0, other = 0;
  int64_t unseen = 0;
  int64_t retransmits = 0;
  int64_t drops = 0;  // packets the node's own firewall dropped on the way out
  int64_t listen_drops = 0;  // CLIENT: attempts the callee's listeners dropped meanwhile
  bool reset = false;
  bool oom = false;
};

Breakdown BreakdownOf(const Span& s) {
  const correlate::Breakdown& k = s.breakdown;
  Breakdown b;
  b.acct = k.thread_accounting();
  b.oncpu = k.oncpu_ns.value_or(0);
  b.runq = k.runq_ns.value_or(0);
  b.throttled = k.throttled_ns.value_or(0);
  b.blkio = k.blkio_ns.value_or(0);
  b.memstall = k.memstall_ns.value_or(0);
  b.steal = k.steal_ns.value_or(0);
  b.other = k.offcpu_other_ns.value_or(0);
  b.unseen = k.downstream_unseen_ns.value_or(0);
  b.retransmits = s.net.retransmits.value_or(0);
  b.listen_drops = s.net.listen_drops.value_or(0);
  for (const auto& e : s.incidents) {
    if (e.kind == correlate::IncidentKind::kTcpReset) b.reset = true;
    if (e.kind == correlate::IncidentKind::kOomKill) b.oom = true;
    if (e.kind == correlate::IncidentKind::kTcpRetransmit && b.retransmits == 0) b.retransmits = 1;
    if (e.kind == correlate::IncidentKind::kPacketDrop) b.drops++;
  }
  return b;
}

int64_t Dur(const Span& s) {
  return s.end_unix_ns > s.start_unix_ns ? static_cast<int64_t>(s.end_unix_ns - s.start_unix_ns) : 0;
}

using Intervals = absl::InlinedVector<std::pair<uint64_t, uint64_t>, 4>;

// Total length of the union of [start, end) intervals, clipped to [lo, hi) (sorts iv).
int64_t UnionLength(Intervals& iv, uint64_t lo, uint64_t hi) {
  std::sort(iv.begin(), iv.end());
  int64_t total = 0;
  uint64_t cur_s = 0, cur_e = 0;
  bool open = false;
  for (auto [s, e] : iv) {
    s = std::max(s, lo);
    e = std::min(e, hi);
    if (e <= s) continue;
    if (open && s <= cur_e) {
      cur_e = std::max(cur_e, e);
      continue;
    }
    if (open) total += static_cast<int64_t>(cur_e - cur_s);
    cur_s = s;
    cur_e = e;
    open = true;
  }
  if (open) total += static_cast<int64_t>(cur_e - cur_s);
  return total;
}

struct Label {
  std::string layer;
  std::string cause;
};

std::string Peer(const Span& s) {
  if (s.server_address.empty()) return "";
  return absl::StrCat(s.server_address, ":", s.server_port);
}

// A memory stall this far above usual makes the span's extra block I/O count as memory
// pressure (page cache re-read after eviction); below it, I/O stands on its own.
constexpr int64_t kMinMemExcessNs = 1'000'000;
// A hand-off gap before the callee's first read takes the cause the callee's own spans
// show only when that cause is itself abnormal (at least 1 ms over its usual) and large
// enough to account for the wait (at least an eighth of it): a throttled callee reads
// late because of the same throttling, a callee whose spans are normal was queueing.
constexpr int64_t kMinHandoffEvidenceNs = 1'000'000;
constexpr int64_t kHandoffEvidenceRatio = 8;

bool Failed(const Span& s) {
  // A non-zero grpc-status fails the call whatever the HTTP status (usually 200).
  if (s.rpc && s.rpc->grpc_status_code > 0) return true;
  return s.status_code >= 500 || s.error_type == "tcp_reset" || s.error_type == "connection_closed" ||
         s.error_type == "stream_reset";
}

}  // namespace

Locator::Locator(const LocateOptions& options, Release release, OnVerdict on_verdict)
    : opt_(options), release_(std::move(release)), on_verdict_(std::move(on_verdict)) {}

Locator::IdKey Locator::KeyOf(const correlate::SpanId& id) {
  IdKey k;
  std::memcpy(&k, id.data(), sizeof(k));
  return k;
}

void Locator::Add(std::shared_ptr<const correlate::Resource> resource, SpanPtr span, uint64_t now) {
  const IdKey id = KeyOf(span->span_id);
  const bool has_parent = std::any_of(span->local_parent.begin(), span->local_parent.end(),
                                      [](uint8_t b) { return b != 0; });
  const IdKey parent = has_parent ? KeyOf(span->local_parent) : 0;
  if (has_parent && Released(parent)) {
    // Its tree was judged already (an asynchronous child that outlived its parent).
    stats_.late_children++;
    RememberReleased(id);
    release_(resource, std::move(span));
    return;
  }
  if (held_.size() >= opt_.max_held_spans) {
    while (!by_arrival_.empty() && !held_.contains(by_arrival_.front().second)) by_arrival_.pop_front();
    if (!by_arrival_.empty()) {
      stats_.held_overflow++;
      stats_.released_unjudged++;
      ReleaseOne(by_arrival_.front().second);
      by_arrival_.pop_front();
    }
  }
  if (held_.contains(id)) {
    // Span ids are random 64-bit values; a repeat is not ours to judge.
    release_(resource, std::move(span));
    return;
  }
  uint32_t slot;
  if (free_slots_.empty()) {
    slot = static_cast<uint32_t>(pool_.size());
    pool_.emplace_back();
  } else {
    slot = free_slots_.back();
    free_slots_.pop_back();
  }
  Held& h = pool_[slot];
  h.resource = std::move(resource);
  h.span = std::move(span);
  h.arrival_ns = now;
  h.seq = seq_++;
  held_.emplace(id, slot);
  by_arrival_.push_back({now, id});
  if (has_parent)
    children_[parent].push_back(id);
  else
    roots_due_.push_back({now + uint64_t{opt_.hold_ms} * 1'000'000ull, id});
  stats_.held = held_.size();
  // Keep the arrival index from outgrowing what it indexes (entries of released spans).
  if (by_arrival_.size() > 4 * size_t{opt_.max_held_spans} + 1024) {
    std::deque<std::pair<uint64_t, IdKey>> kept;
    for (const auto& e : by_arrival_)
      if (held_.contains(e.second)) kept.push_back(e);
    by_arrival_.swap(kept);
  }
}

void Locator::Tick(uint64_t now) {
  while (!roots_due_.empty() && roots_due_.front().first <= now) {
    IdKey root = roots_due_.front().second;
    roots_due_.pop_front();
    if (held_.contains(root)) JudgeAndRelease(root, now);
  }
  const uint64_t max_wait = uint64_t{opt_.max_wait_ms} * 1'000'000ull;
  while (!by_arrival_.empty()) {
    auto [arrival, id] = by_arrival_.front();
    if (!held_.contains(id)) {
      by_arrival_.pop_front();
      continue;
    }
    if (arrival + max_wait > now) break;
    by_arrival_.pop_front();
    stats_.released_unjudged++;
    ReleaseOne(id);
  }
  stats_.held = held_.size();
}

void Locator::Drain(uint64_t now) {
  while (!roots_due_.empty()) {
    IdKey root = roots_due_.front().second;
    roots_due_.pop_front();
    if (held_.contains(root)) JudgeAndRelease(root, now);
  }
  std::vector<std::pair<uint64_t, IdKey>> rest;
  for (const auto& [id, slot] : held_) rest.push_back({pool_[slot].seq, id});
  std::sort(rest.begin(), rest.end());
  for (const auto& [seq, id] : rest) {
    stats_.released_unjudged++;
    ReleaseOne(id);
  }
  by_arrival_.clear();
  stats_.held = 0;
}

namespace {
size_t RememberSlot(uint64_t id, int bits) { return static_cast<size_t>((id * 0x9e3779b97f4a7c15ull) >> (64 - bits)); }
}  // namespace

void Locator::RememberReleased(IdKey id) { released_[RememberSlot(id, kRememberBits)] = id; }

bool Locator::Released(IdKey id) const { return id != 0 && released_[RememberSlot(id, kRememberBits)] == id; }

void Locator::ReleaseOne(IdKey id) {
  auto it = held_.find(id);
  if (it == held_.end()) return;
  const uint32_t slot = it->second;
  held_.erase(it);
  RememberReleased(id);
  Held& h = pool_[slot];
  release_(h.resource, std::move(h.span));
  h.resource.reset();
  free_slots_.push_back(slot);
}

uint64_t Locator::RouteKey(const Held& h) {
  const std::string_view name = correlate::ServiceNameView(*h.resource);
  const absl::string_view service(name.data(), name.size());  // Debian's Abseil has its own string_view
  const Span& s = *h.span;
  // Routes are the path without the query; a service with very many distinct paths
  // (ids in the path) shares one baseline beyond the first max_routes_per_service.
  // An RPC's route is its service/method (rpc.service, rpc.method).
  absl::string_view route(s.path.data(), s.path.size());
  if (s.rpc) {
    route_buf_.clear();
    absl::StrAppend(&route_buf_, s.rpc->service, "/", s.rpc->method);
    route = route_buf_;
  }
  auto rit = routes_.find(service);
  if (rit == routes_.end()) rit = routes_.emplace(std::string(service), absl::flat_hash_set<std::string>{}).first;
  auto& seen = rit->second;
  if (!seen.contains(route)) {
    if (seen.size() >= opt_.max_routes_per_service)
      route = "*";
    else
      seen.emplace(route);
  }
  if (routes_.size() > opt_.max_baselines) routes_.clear();  // bounded; relearnt as needed
  const bool client = s.kind == SpanKind::kClient;
  return absl::HashOf(service, client, absl::string_view(s.method.data(), s.method.size()), route,
                      client ? absl::string_view(s.server_address.data(), s.server_address.size())
                             : absl::string_view(),
                      client && !s.server_address.empty() ? s.server_port : 0);
}

Locator::Baseline* Locator::FindBaseline(uint64_t key) {
  auto it = baselines_.find(key);
  if (it == baselines_.end()) return nullptr;
  baseline_lru_.splice(baseline_lru_.begin(), baseline_lru_, it->second.lru);
  return &it->second;
}

Locator::Baseline& Locator::BaselineFor(uint64_t key) {
  if (Baseline* b = FindBaseline(key)) return *b;
  if (baselines_.size() >= opt_.max_baselines && !baseline_lru_.empty()) {
    baselines_.erase(baseline_lru_.back());
    baseline_lru_.pop_back();
    stats_.baselines_evicted++;
  }
  baseline_lru_.push_front(key);
  Baseline& b = baselines_[key];
  b.lru = baseline_lru_.begin();
  return b;
}

namespace {
// Recomputed every 16 samples: a median moves slowly, selecting on every span would not.
bool Stale(uint64_t at, uint64_t added) { return at == ~0ull || added >= at + 16; }
}  // namespace

const std::array<int64_t, kComponents>* Locator::Medians(Baseline* b) {
  if (!b || b->ring.size() < opt_.baseline_min_samples) return nullptr;
  if (Stale(b->duration_at, b->added)) {
    std::array<int64_t, 512> col_buf;  // the default 256 samples fit; more go to the heap
    std::vector<int64_t> col_heap;
    int64_t* col = col_buf.data();
    if (b->ring.size() > col_buf.size()) {
      col_heap.resize(b->ring.size());
      col = col_heap.data();
    }
    const size_t n = b->ring.size();
    for (size_t i = 0; i < n; i++) col[i] = b->ring[i][kDuration];
    std::nth_element(col, col + n / 2, col + n);
    b->medians[kDuration] = col[n / 2];
    b->duration_at = b->added;
  }
  return &b->medians;
}

void Locator::MediansOfAll(Baseline* b) {
  if (!Medians(b) || !Stale(b->components_at, b->added)) return;
  std::vector<int64_t> col(b->ring.size());
  for (int c = 0; c < kComponents; c++) {
    if (c == kDuration) continue;
    for (size_t i = 0; i < b->ring.size(); i++) col[i] = b->ring[i][c];
    auto mid = col.begin() + static_cast<long>(col.size() / 2);
    std::nth_element(col.begin(), mid, col.end());
    b->medians[c] = *mid;
  }
  b->components_at = b->added;
}

bool Locator::Repeats(Baseline& b, uint64_t hash) {
  bool seen = false;
  for (const auto& c : b.causes)
    if (c.hash == hash && c.root != 0 && b.roots - c.root < kCorroborateTrees) seen = true;
  b.causes[b.causes_next] = {hash, b.roots};
  b.causes_next = (b.causes_next + 1) % b.causes.size();
  return seen;
}

bool Locator::Shifted(Baseline& b, int64_t duration, int64_t usual, bool candidate) {
  b.recent[b.recent_n % kShiftWindow] = duration;
  b.recent_n++;
  if (b.recent_n < kShiftWindow) return false;
  if (candidate || b.recent_n % 8 == 0) {
    std::array<int64_t, kShiftWindow> w = b.recent;
    // The lower median: more than half of the window over the bar.
    constexpr size_t kMid = (kShiftWindow - 1) / 2;
    std::nth_element(w.begin(), w.begin() + kMid, w.end());
    b.shifted = static_cast<double>(w[kMid]) > opt_.shift_factor * static_cast<double>(usual);
  }
  return b.shifted;
}

void Locator::MarkMemoryPressure(const std::string& service, uint64_t at_unix_ns) {
  if (memory_pressure_.size() >= 4096 && !memory_pressure_.contains(service)) memory_pressure_.clear();
  uint64_t& t = memory_pressure_[service];
  t = std::max(t, at_unix_ns);
}

bool Locator::MemoryPressureNear(const std::string& service, uint64_t at_unix_ns) const {
  auto it = memory_pressure_.find(service);
  if (it == memory_pressure_.end()) return false;
  const uint64_t t = it->second;
  return t + kMemoryPressureNs >= at_unix_ns && at_unix_ns + kMemoryPressureNs >= t;
}

void Locator::Learn(Baseline* known, uint64_t key, const std::array<int64_t, kComponents>& sample,
                    bool slow) {
  if (slow) {
    // Abnormal spans stay out of the baseline, or a fault would soon look normal; one in
    // 16 still goes in, so a lasting change (a new release) is learnt over time.
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    if (rng_ % 16 != 0) return;
  }
  Baseline& b = known ? *known : BaselineFor(key);
  if (b.ring.size() < opt_.baseline_samples) {
    b.ring.push_back(sample);
  } else {
    b.ring[b.next] = sample;
    b.next = (b.next + 1) % b.ring.size();
  }
  b.added++;
}

void Locator::JudgeAndRelease(IdKey root_id, uint64_t now) {
  // The local tree under the root, breadth first.
  struct Node {
    IdKey id;
    Held* h;
    absl::InlinedVector<size_t, 4> kids;
    std::array<int64_t, kComponents> comp{};
    Breakdown bd;
    int64_t child_union = 0;
    uint64_t key = 0;
    Baseline* base = nullptr;
    const std::array<int64_t, kComponents>* med = nullptr;
    bool failed = false;
  };
  absl::InlinedVector<Node, 8> nodes;  // a tree of up to 8 spans stays on the stack
  nodes.push_back({root_id, &pool_[held_.at(root_id)], {}, {}, {}, 0, {}, nullptr, nullptr, false});
  for (size_t i = 0; i < nodes.size(); i++) {
    auto ch = children_.find(nodes[i].id);
    if (ch == children_.end()) continue;
    for (IdKey k : ch->second) {
      auto hit = held_.find(k);
      if (hit == held_.end()) continue;
      nodes[i].kids.push_back(nodes.size());
      nodes.push_back({k, &pool_[hit->second], {}, {}, {}, 0, {}, nullptr, nullptr, false});
    }
  }
  stats_.traces++;

  // Each span's measures once (a SERVER span's children are read again below).
  for (auto& n : nodes) {
    n.bd = BreakdownOf(*n.h->span);
    n.failed = Failed(*n.h->span);
  }
  // Each span's own time, split by component (children's time taken out).
  for (auto& n : nodes) {
    const Span& s = *n.h->span;
    Intervals iv;
    for (size_t k : n.kids) iv.push_back({nodes[k].h->span->start_unix_ns, nodes[k].h->span->end_unix_ns});
    n.child_union = UnionLength(iv, s.start_unix_ns, s.end_unix_ns);
    const int64_t dur = Dur(s);
    auto& c = n.comp;
    c[kDuration] = dur;
    if (!n.bd.acct) {
      // No per-thread accounting (a kernel without the hooks, or the request's ends on
      // different threads): own time is all we know.
      if (s.kind == SpanKind::kClient)
        c[kGap] = std::max<int64_t>(0, dur - n.child_union);
      else
        c[kWait] = std::max<int64_t>(0, dur - n.child_union);
      continue;
    }
    Breakdown own = n.bd;
    int64_t kids_untracked = 0;
    if (s.kind == SpanKind::kServer) {
      // Its CLIENT children ran on the same thread: their accounting is inside ours.
      for (size_t k : n.kids) {
        const Breakdown& kb = nodes[k].bd;
        if (!kb.acct) {
          kids_untracked += Dur(*nodes[k].h->span);
          continue;
        }
        own.oncpu -= kb.oncpu;
        own.steal -= kb.steal;
        own.runq -= kb.runq;
        own.throttled -= kb.throttled;
        own.blkio -= kb.blkio;
        own.memstall -= kb.memstall;
        own.other -= kb.other;
      }
    }
    auto pos = [](int64_t v) { return std::max<int64_t>(0, v); };
    c[kSteal] = pos(own.steal);
    c[kCpu] = pos(own.oncpu - own.steal);
    c[kRunq] = pos(own.runq);
    c[kThrottled] = pos(own.throttled);
    c[kBlkio] = pos(own.blkio);
    c[kMemstall] = pos(own.memstall);
    if (s.kind == SpanKind::kServer) {
      c[kUnseen] = pos(n.bd.unseen);
      c[kWait] = pos(own.other - kids_untracked - n.bd.unseen);
    } else {
      // A CLIENT span's thread sleeps while the call is out: what a local child does not
      // explain is the network, the peer's hand-off, or a service off this node.
      c[kGap] = pos(own.other - n.child_union);
    }
  }
  for (auto& n : nodes) {
    n.key = RouteKey(*n.h);
    n.base = FindBaseline(n.key);
    n.med = Medians(n.base);
  }

  // The critical path: from each span's end, backwards through the child that ended
  // last before the current point (children running in parallel fall off the path).
  absl::InlinedVector<size_t, 8> path;
  absl::InlinedVector<size_t, 8> stack{0};
  while (!stack.empty()) {
    size_t i = stack.back();
    stack.pop_back();
    path.push_back(i);
    const Span& s = *nodes[i].h->span;
    absl::InlinedVector<size_t, 4> kids = nodes[i].kids;
    std::sort(kids.begin(), kids.end(),
              [&](size_t a, size_t b) { return nodes[a].h->span->end_unix_ns > nodes[b].h->span->end_unix_ns; });
    uint64_t t = s.end_unix_ns;
    absl::InlinedVector<size_t, 4> on_path;
    for (size_t k : kids) {
      const Span& ks = *nodes[k].h->span;
      if (ks.start_unix_ns >= t) continue;
      on_path.push_back(k);
      t = std::min(t, ks.start_unix_ns);
      if (t <= s.start_unix_ns) break;
    }
    // Depth first, earliest child first, so the path reads root → leaves.
    for (size_t k : on_path) stack.push_back(k);
  }

  Node& root = nodes[0];
  const Span& rs = *root.h->span;
  const int64_t root_dur = Dur(rs);
  const bool failed = root.failed;
  bool slow = false, shift = false, shifted = false, over_shift = false, gross = false;
  if (root.med) {
    const int64_t usual = (*root.med)[kDuration];
    const bool over_min = root_dur - usual >= static_cast<int64_t>(opt_.slow_min_excess_ns);
    slow = static_cast<double>(root_dur) > opt_.slow_factor * static_cast<double>(usual) && over_min;
    gross = slow && !(static_cast<double>(root_dur) < opt_.lone_factor * static_cast<double>(usual));
    root.base->roots++;
    if (opt_.shift_factor > 0) {
      // A sustained shift (docs/locate.md §4): most of the route's recent trees slower
      // than usual, as under a fault that slows every request a little rather than some
      // a lot. Its slower trees are judged, and its trees are kept out of the baseline.
      over_shift = static_cast<double>(root_dur) > opt_.shift_factor * static_cast<double>(usual) && over_min;
      shifted = Shifted(*root.base, root_dur, usual, over_shift && !slow);
      shift = shifted && over_shift && !slow;
    }
  } else if (!failed) {
    stats_.learning++;
  }

  // Per-span downstream time (explained by child spans).
  for (auto& n : nodes)
    if (!n.kids.empty()) n.h->span->breakdown.downstream_ns = n.child_union;

  // Over shift_factor on a route not (yet) shifted: not judged, but its cause is recorded,
  // so that a shift's first verdicts find theirs repeated.
  const bool cause_only = over_shift && !slow && !shift && !failed;
  if (slow || shift || failed || cause_only) {
    if (!cause_only) stats_.abnormal++;
    // The evidence compares every component with its usual value.
    for (size_t i : path) MediansOfAll(nodes[i].base);
    struct Acc {
      int64_t value = 0, baseline = 0, excess = 0;
    };
    std::map<std::tuple<std::string, std::string, std::string>, Acc> acc;
    auto add = [&](const std::string& svc, const Label& l, int64_t value, int64_t base) {
      auto& a = acc[{svc, l.layer, l.cause}];
      a.value += value;
      a.baseline += base;
      a.excess += std::max<int64_t>(0, value - base);
    };
    // Hand-off gaps: a CLIENT span's wait that its local child does not cover, without
    // network evidence on the connection. Judged by where it lies (docs/locate.md §2):
    // before the callee's first read (the request queued at the callee) or after the
    // callee's last write (the answer on its way back).
    struct Handoff {
      size_t child;
      int64_t pre_value, pre_base, pre_excess;     // before the callee read the request
      int64_t post_value, post_base, post_excess;  // after the callee sent its answer
      std::string caller;
    };
    std::vector<Handoff> handoffs;
    // The gap split by wall time: before the first local child started, after the last
    // one ended (the caller's own time at either end is on-CPU time, not gap).
    auto split_handoff = [&](const Node& n, int64_t base_gap, const std::string& caller) {
      const Span& s = *n.h->span;
      uint64_t first = s.end_unix_ns, last = s.start_unix_ns;
      for (size_t k : n.kids) {
        first = std::min(first, nodes[k].h->span->start_unix_ns);
        last = std::max(last, nodes[k].h->span->end_unix_ns);
      }
      const int64_t pre_wall = first > s.start_unix_ns ? static_cast<int64_t>(first - s.start_unix_ns) : 0;
      const int64_t post_wall = s.end_unix_ns > last ? static_cast<int64_t>(s.end_unix_ns - last) : 0;
      const double pre_share =
          pre_wall + post_wall > 0 ? static_cast<double>(pre_wall) / static_cast<double>(pre_wall + post_wall) : 1.0;
      auto part = [&](int64_t v) { return static_cast<int64_t>(static_cast<double>(v) * pre_share); };
      const int64_t gap = n.comp[kGap], excess = gap - base_gap;
      Handoff ho{n.kids.front(), part(gap), part(base_gap), part(excess), 0, 0, 0, caller};
      ho.post_value = gap - ho.pre_value;
      ho.post_base = base_gap - ho.pre_base;
      ho.post_excess = excess - ho.pre_excess;
      return ho;
    };
    for (size_t i : path) {
      Node& n = nodes[i];
      const std::string svc = ServiceName(*n.h->resource);
      const bool in_container = HasAttr(*n.h->resource, otlp::semconv::kContainerId);
      auto base = [&](int c) { return n.med ? (*n.med)[c] : 0; };
      // A span seen at a sandbox's edge has the sandbox's threads' time, not a serving
      // thread's: whatever its threads were doing (on CPU, waiting for a CPU, throttled,
      // stalled) is the sandbox layer's (docs/layers.md).
      const bool sb = n.h->span->breakdown.sandbox_scope;
      add(svc, {sb ? "sandbox" : "app", "cpu"}, n.comp[kCpu], base(kCpu));
      add(svc, {"vm", "steal"}, n.comp[kSteal], base(kSteal));
      add(svc, {sb ? "sandbox" : "kernel", "runqueue"}, n.comp[kRunq], base(kRunq));
      add(svc, {sb ? "sandbox" : "container", "throttling"}, n.comp[kThrottled], base(kThrottled));
      const Label memory{sb ? "sandbox" : in_container ? "container" : "kernel", "memory"};
      const int64_t mem_excess = n.comp[kMemstall] - base(kMemstall);
      const int64_t io_excess = n.comp[kBlkio] - base(kBlkio);
      const bool stalled = mem_excess >= kMinMemExcessNs && io_excess > 0 && mem_excess * 5 >= io_excess;
      if (stalled) MarkMemoryPressure(svc, n.h->span->end_unix_ns);
      if (stalled || (io_excess > 0 && MemoryPressureNear(svc, n.h->span->start_unix_ns))) {
        // Memory pressure shows twice: as reclaim stalls and as the re-reads of page
        // cache it just evicted (only refaults of pages the kernel saw as working set are
        // flagged as memory stalls; the rest is plain block I/O). Extra I/O in a span that
        // also stalled on memory is that pressure's, and so is extra I/O of a service
        // whose spans showed that pattern within kMemoryPressureNs (its reads are
        // refaults too, of pages the kernel did not flag); I/O without a memory stall is
        // the device's.
        add(svc, memory, n.comp[kMemstall] + n.comp[kBlkio], base(kMemstall) + base(kBlkio));
      } else {
        add(svc, {sb ? "sandbox" : "kernel", "block_io"}, n.comp[kBlkio], base(kBlkio));
        add(svc, memory, n.comp[kMemstall], base(kMemstall));
      }
      add(svc, {"downstream", "downstream"}, n.comp[kUnseen], base(kUnseen));
      add(svc, {"app", "wait"}, n.comp[kWait], base(kWait));
      if (n.h->span->kind == SpanKind::kClient) {
        if (n.bd.reset)
          add(svc, {"network", "tcp_reset"}, n.comp[kGap], base(kGap));
        else if (n.bd.retransmits > 0 && n.bd.listen_drops > 0)
          // The retransmits answer drops at the callee's listeners, not on the wire: its
          // accept queue was full (docs/locate.md §2). The connect and the wait after it
          // are the callee's queue.
          add(n.kids.empty() ? svc : ServiceName(*nodes[n.kids.front()].h->resource), {"downstream", "queue"},
              n.comp[kGap], base(kGap));
        else if (n.bd.retransmits > 0)
          add(svc, {"network", "tcp_retransmit"}, n.comp[kGap], base(kGap));
        else if (n.bd.drops > 0)
          add(svc, {"network", "packet_drop"}, n.comp[kGap], base(kGap));
        else if (n.kids.empty())
          add(svc, {"downstream", "downstream"}, n.comp[kGap], base(kGap));
        else
          handoffs.push_back(split_handoff(n, base(kGap), svc));
      }
    }
    for (const Handoff& ho : handoffs) {
      // Before the callee's first read: the request waited at the callee (its accept
      // queue, its socket while every thread was busy). When the callee's own spans are
      // abnormal enough to account for that wait (a throttled or starved callee reads
      // late for the same reason it serves slowly), it has the cause they show;
      // otherwise it is the callee's queue, never its largest component inflated by time
      // outside its span.
      if (ho.pre_excess > 0) {
        const std::string csvc = ServiceName(*nodes[ho.child].h->resource);
        std::tuple<std::string, std::string, std::string> best;
        int64_t best_ex = 0;
        for (auto& [k, a] : acc)
          if (std::get<0>(k) == csvc && a.excess > best_ex) {
            best_ex = a.excess;
            best = k;
          }
        if (best_ex >= kMinHandoffEvidenceNs && best_ex * kHandoffEvidenceRatio >= ho.pre_excess) {
          acc[best].excess += ho.pre_excess;
          acc[best].value += ho.pre_value;
        } else {
          auto& a = acc[{csvc, "downstream", "queue"}];
          a.value += ho.pre_value;
          a.baseline += ho.pre_base;
          a.excess += ho.pre_excess;
        }
      }
      // After the callee's last write, with no retransmit, drop or reset on the
      // connection: the answer was late on its way back for a reason no probe saw.
      if (ho.post_excess > 0) {
        auto& a = acc[{ho.caller, "network", "unknown"}];
        a.value += ho.post_value;
        a.baseline += ho.post_base;
        a.excess += ho.post_excess;
      }
    }

    Verdict v;
    v.trace_id = rs.trace_id;
    v.span_id = rs.span_id;
    v.start_unix_ns = rs.start_unix_ns;
    v.end_unix_ns = rs.end_unix_ns;
    v.decided_unix_ns = now;
    v.reason = failed ? "failed" : slow ? "slow" : "shift";
    v.root_service = ServiceName(*root.h->resource);
    v.method = rs.method;
    v.path = rs.path;
    v.status_code = rs.status_code;
    v.error_type = rs.error_type;
    v.duration_ns = root_dur;
    v.baseline_ns = root.med ? (*root.med)[kDuration] : 0;
    v.spans = static_cast<uint32_t>(nodes.size());
    for (auto& [k, a] : acc) {
      if (a.value <= 0 && a.excess <= 0) continue;
      v.evidence.push_back({std::get<0>(k), std::get<1>(k), std::get<2>(k), a.value, a.baseline, a.excess});
    }
    std::sort(v.evidence.begin(), v.evidence.end(), [](const Evidence& a, const Evidence& b) {
      return a.excess_ns != b.excess_ns ? a.excess_ns > b.excess_ns : a.value_ns > b.value_ns;
    });
    if (v.evidence.size() > 8) v.evidence.resize(8);

    std::string svc, layer, cause;
    int64_t value = 0;
    if (failed) {
      // The deepest failing span on the path names where the failure came from.
      size_t deepest = 0;
      for (size_t i : path)
        if (nodes[i].failed || nodes[i].bd.reset || nodes[i].bd.oom) deepest = i;
      Node& d = nodes[deepest];
      svc = ServiceName(*d.h->resource);
      if (d.bd.oom) {
        layer = "container";
        cause = "oom_kill";
      } else if (d.bd.reset || d.h->span->error_type == "tcp_reset") {
        layer = "network";
        cause = "tcp_reset";
      } else {
        layer = "app";
        cause = "error";
      }
      value = Dur(*d.h->span);
    } else if (!v.evidence.empty()) {
      // Largest excess over the baseline; with nothing above baseline (routes still
      // learning), the largest time.
      const Evidence* e = &v.evidence.front();
      if (e->excess_ns <= 0)
        for (const auto& x : v.evidence)
          if (x.value_ns > e->value_ns) e = &x;
      svc = e->service;
      layer = e->layer;
      cause = e->cause;
      value = e->value_ns;
    }
    // Failed traces and gross slow ones are judged alone; the rest only when their cause
    // repeats on the route (a lone outlier is the node's noise, not a fault's mark).
    bool judge = failed;
    if (!failed && !svc.empty() && root.base != nullptr) {
      const bool repeats = Repeats(*root.base, absl::HashOf(svc, layer, cause));
      judge = !cause_only && (gross || repeats);
      if ((slow || shift) && !judge) stats_.lone++;
    }
    if (judge && slow && !failed) stats_.slow++;
    if (judge && shift && !failed) stats_.shift++;
    if (failed) stats_.failed++;
    if (judge) {
      v.service = svc;
      v.layer = layer;
      v.cause = cause;
      v.share = root_dur > 0 ? std::clamp(static_cast<double>(value) / static_cast<double>(root_dur), 0.0, 1.0)
                             : 0.0;
      for (size_t i : path) {
        const Span& s = *nodes[i].h->span;
        v.path_hops.push_back({ServiceName(*nodes[i].h->resource), s.kind, s.span_id, s.method, s.path,
                               s.kind == SpanKind::kClient ? Peer(s) : "", Dur(s),
                               nodes[i].med ? (*nodes[i].med)[kDuration] : 0});
      }
      root.h->span->verdict = correlate::SpanVerdict{v.service, v.layer, v.cause, v.share, v.reason};
      stats_.verdicts++;
      on_verdict_(v, root.h->resource);
    }
  }

  // Learn from this tree (after judging it against what was known before it). A node's
  // baseline found above is learnt into directly, unless a new route's baseline evicted
  // one since (the least recently used: only with fewer max_baselines than routes here).
  const uint64_t evicted_before = stats_.baselines_evicted;
  for (auto& n : nodes) {
    if (stats_.baselines_evicted != evicted_before) {
      n.base = FindBaseline(n.key);
      n.med = Medians(n.base);
    }
    bool abnormal = failed || n.failed || shifted;
    if (n.med) {
      const int64_t usual = (*n.med)[kDuration];
      const int64_t d = n.comp[kDuration];
      abnormal = abnormal || (static_cast<double>(d) > opt_.slow_factor * static_cast<double>(usual) &&
                              d - usual >= static_cast<int64_t>(opt_.slow_min_excess_ns));
    }
    Learn(n.base, n.key, n.comp, abnormal);
  }

  // Release in arrival order.
  absl::InlinedVector<std::pair<uint64_t, IdKey>, 4> order;
  for (auto& n : nodes) order.push_back({n.h->seq, n.id});
  std::sort(order.begin(), order.end());
  for (auto& n : nodes) children_.erase(n.id);
  for (const auto& [seq, id] : order) ReleaseOne(id);
  stats_.held = held_.size();
}

}  // namespace isotrace::locate
