#pragma once
// Horizontal × vertical localization (docs/locate.md). Spans pass through here between
// correlate/layers and every consumer: each is held until its trace's root-most span on
// this node has ended (plus a short grace for spans still in the ring buffer), then the
// trace's local tree is judged against per-workload baselines, the verdict is written on
// the root-most span, and all of the tree's spans are released in arrival order.
//
// Bounded: held spans (max_held_spans; beyond, the oldest is released unjudged, counted),
// baselines (max_baselines keys, least recently used evicted), how long a span waits for
// its local parent (max_wait_ms). Single-threaded: the poll thread calls everything.

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/container/node_hash_map.h"
#include "daemon/correlate/span.h"
#include "daemon/locate/verdict.h"

namespace isotrace::locate {

struct LocateOptions {
  double slow_factor = 2.0;             // slow: duration > factor × the usual duration
  uint64_t slow_min_excess_ns = 5'000'000;  // ... and longer than usual by at least this
  // A route whose last kShiftWindow root traces have a median duration above
  // shift_factor × usual is shifted: its traces above shift_factor × usual (and
  // slow_min_excess_ns over) are judged too, and its trees stay out of the baselines as
  // abnormal ones do. 0 turns it off.
  double shift_factor = 1.3;
  // A slow trace under lone_factor × usual, or a shifted route's trace, is judged only when
  // its cause (service, layer, cause) repeats: another of its route's last
  // kCorroborateTrees root trees was slow or over shift_factor with the same cause. A
  // trace alone with its cause is a lone outlier: counted, its span keeps its breakdown,
  // no verdict. 0 judges every slow trace at once (shifted ones still need the repeat).
  double lone_factor = 4.0;
  uint32_t baseline_samples = 256;      // per workload route: the last N normal spans
  uint32_t baseline_min_samples = 20;   // fewer: the route is still learning, no "slow"
  uint32_t hold_ms = 150;               // grace after a root-most span ends
  uint32_t max_wait_ms = 30000;         // a span whose local parent never came is released
  uint32_t max_held_spans = 65536;
  uint32_t max_baselines = 8192;
  uint32_t max_routes_per_service = 64;  // more distinct paths share the route "*"
};

struct LocateStats {
  uint64_t traces = 0;            // local trees judged
  uint64_t slow = 0;              // ... judged slow (over slow_factor × usual)
  uint64_t shift = 0;             // ... judged slower than usual while their route is shifted
  uint64_t lone = 0;              // slow or shift traces not judged: their cause did not repeat
  uint64_t failed = 0;            // ... found failed
  uint64_t abnormal = 0;          // ... found slow, failed or both
  uint64_t verdicts = 0;
  uint64_t learning = 0;          // not judged slow: the root's baseline was still learning
  uint64_t released_unjudged = 0; // waited max_wait_ms for a parent, or held-span overflow
  uint64_t held_overflow = 0;
  uint64_t late_children = 0;     // arrived after their tree was judged
  uint64_t baselines_evicted = 0;
  uint64_t held = 0;              // spans held now
};

// The components of a span's own time (children excluded), in nanoseconds. Index with
// Component; the same vector is a baseline sample.
enum Component : int {
  kCpu,        // on CPU, minus steal                 → app / cpu
  kSteal,      // steal while on CPU                  → vm / steal
  kRunq,       // runnable, waiting for a CPU         → kernel / runqueue
  kThrottled,  // held back by the CPU quota          → container / throttling
  kBlkio,      // block I/O                           → kernel / block_io
  kMemstall,   // reclaim / memory stalls             → container or kernel / memory
  kUnseen,     // waiting on a non-HTTP socket's answer → downstream / downstream
  kWait,       // other own off-CPU time              → app / wait
  kGap,        // CLIENT: waiting for the answer, not explained by a local child
  kDuration,   // the span's whole duration (baseline only)
  kComponents
};

class Locator {
 public:
  // Spans travel by pointer from here on: a span is ~1 KiB, and moving it into a held
  // slot, then into the exporter's queue and the span store, touched cold memory each
  // time (Locator::Add and the span copy were a tenth of the daemon's CPU).
  using SpanPtr = std::shared_ptr<correlate::Span>;
  using Release = std::function<void(const std::shared_ptr<const correlate::Resource>&,
                                     std::shared_ptr<const correlate::Span>)>;
  using OnVerdict =
      std::function<void(const Verdict&, const std::shared_ptr<const correlate::Resource>&)>;

  Locator(const LocateOptions& options, Release release, OnVerdict on_verdict);

  void Add(std::shared_ptr<const correlate::Resource> resource, SpanPtr span, uint64_t now_unix_ns);
  void Add(std::shared_ptr<const correlate::Resource> resource, correlate::Span&& span,
           uint64_t now_unix_ns) {
    Add(std::move(resource), std::make_shared<correlate::Span>(std::move(span)), now_unix_ns);
  }
  // Judges and releases the trees that are due, and spans that waited too long.
  void Tick(uint64_t now_unix_ns);
  // Judges what is complete and releases everything (shutdown).
  void Drain(uint64_t now_unix_ns);

  const LocateStats& stats() const { return stats_; }

 private:
  struct Held {
    std::shared_ptr<const correlate::Resource> resource;
    SpanPtr span;
    uint64_t arrival_ns = 0;
    uint64_t seq = 0;  // arrival order
  };
  using IdKey = uint64_t;  // span ids as integers
  static IdKey KeyOf(const correlate::SpanId& id);

  static constexpr uint32_t kShiftWindow = 32;
  struct Baseline {
    std::vector<std::array<int64_t, kComponents>> ring;
    size_t next = 0;
    uint64_t added = 0;
    // `added` when medians[kDuration] (every judged tree needs it) and when the other
    // components (only abnormal trees' evidence needs them) were computed.
    uint64_t duration_at = ~0ull;
    uint64_t components_at = ~0ull;
    std::array<int64_t, kComponents> medians{};
    std::list<uint64_t>::iterator lru;
    // The durations of the route's last kShiftWindow trees judged with it as their root
    // (abnormal ones too): a sustained shift shows in their median.
    std::array<int64_t, kShiftWindow> recent{};
    uint64_t recent_n = 0;
    bool shifted = false;  // the window's median over shift_factor × usual, when last computed
    // The causes of the route's recent slow or over-shift trees (hash of service, layer,
    // cause) with the number of the root tree that had it: a repeat corroborates.
    uint64_t roots = 0;  // root trees judged with this route
    struct Cause {
      uint64_t hash = 0;
      uint64_t root = 0;
    };
    std::array<Cause, 8> causes{};
    size_t causes_next = 0;
  };
  // How far back (in the route's root trees) a cause counts as a repeat.
  static constexpr uint64_t kCorroborateTrees = 16;
  // True when the route had `hash` among its last kCorroborateTrees trees; records it.
  static bool Repeats(Baseline& b, uint64_t hash);

  void JudgeAndRelease(IdKey root, uint64_t now_unix_ns);
  void ReleaseOne(IdKey id);
  // The span's baseline: a 64-bit hash of (service, kind, method, route, and for a CLIENT
  // span its peer address), computed without building a string (a string key and its
  // concatenation were a fifth of locate's instructions). Two routes share a baseline
  // only if their hashes collide: about max_baselines² / 2^65, 3e-10 at 100 k.
  uint64_t RouteKey(const Held& h);
  std::string route_buf_;  // an RPC's "service/method", reused
  Baseline* FindBaseline(uint64_t key);
  Baseline& BaselineFor(uint64_t key);
  // The baseline's medians with [kDuration] up to date (nullptr: still learning);
  // MediansOfAll brings every component up to date too.
  const std::array<int64_t, kComponents>* Medians(Baseline* b);
  void MediansOfAll(Baseline* b);
  // Records a root tree's duration in its route's window; true when the route is shifted
  // (computed when `candidate`, else every 8 trees).
  bool Shifted(Baseline& b, int64_t duration, int64_t usual, bool candidate);
  // Into `known` when the caller found the key's baseline already, else BaselineFor(key).
  void Learn(Baseline* known, uint64_t key, const std::array<int64_t, kComponents>& sample, bool slow);
  void RememberReleased(IdKey id);
  // When a service's span last showed memory pressure (a memory stall with the block I/O
  // of its re-reads); the service's block I/O within kMemoryPressureNs of it is that
  // pressure's too. Bounded: cleared beyond 4096 services.
  static constexpr uint64_t kMemoryPressureNs = 2'000'000'000;
  void MarkMemoryPressure(const std::string& service, uint64_t at_unix_ns);
  bool MemoryPressureNear(const std::string& service, uint64_t at_unix_ns) const;
  absl::flat_hash_map<std::string, uint64_t> memory_pressure_;

  LocateOptions opt_;
  Release release_;
  OnVerdict on_verdict_;
  LocateStats stats_;
  uint64_t seq_ = 0;
  uint64_t rng_ = 0x9e3779b97f4a7c15ull;

  // Held spans live in a pool whose slots are reused (a deque: references stay valid as
  // it grows), indexed by span id: no allocation per span once the pool has grown to the
  // number held at once.
  std::deque<Held> pool_;
  std::vector<uint32_t> free_slots_;
  absl::flat_hash_map<IdKey, uint32_t> held_;
  absl::flat_hash_map<IdKey, absl::InlinedVector<IdKey, 2>> children_;  // local parent → held children
  std::deque<std::pair<uint64_t, IdKey>> roots_due_;        // (due time, root)
  std::deque<std::pair<uint64_t, IdKey>> by_arrival_;       // (arrival, span) for max_wait
  // Recently released span ids: a late child of one of them is released at once.
  // Direct-mapped by a hash of the id (span ids are random): remembering is one store,
  // asking one load, and an id is forgotten when a later one takes its slot (after about
  // kRemember releases on average). A forgotten parent makes a late child wait as a root
  // for its own hold, never a wrong tree: the whole id is compared.
  static constexpr int kRememberBits = 16;
  std::vector<IdKey> released_ = std::vector<IdKey>(size_t{1} << kRememberBits, 0);
  bool Released(IdKey id) const;

  absl::node_hash_map<uint64_t, Baseline> baselines_;  // by RouteKey; node-based: Baseline* stay valid
  std::list<uint64_t> baseline_lru_;  // front: most recently used
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> routes_;  // service → paths
};

}  // namespace isotrace::locate
