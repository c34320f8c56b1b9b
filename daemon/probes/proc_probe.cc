#include "daemon/probes/proc_probe.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/probes/environment.h"
#include "daemon/util/errno.h"
#include "proc.h"
#include "proc.skel.h"

namespace isotrace::probes {

static_assert(sizeof(proc_fact) == PROC_EVENT_HEADER_SIZE);
static_assert(offsetof(proc_fact, proc_start_ns) == 8);
static_assert(offsetof(proc_fact, tgid) == 16);
static_assert(offsetof(proc_fact, ret) == 24);
static_assert(offsetof(proc_fact, path_len) == 28);
static_assert(offsetof(proc_fact, kind) == 30);
static_assert(offsetof(proc_fact, comm) == 32);
static_assert(offsetof(proc_fact, parent_start_ns) == 48);
static_assert(offsetof(proc_fact, path_resolved) == 31);
static_assert(offsetof(proc_fact, ppid) == 56);
static_assert(offsetof(proc_fact, mnt_ns) == 60);
static_assert(offsetof(proc_fact, path) == 64);

namespace {
using util::Errno;
}  // namespace

absl::StatusOr<std::unique_ptr<ProcProbe>> ProcProbe::Create(const ProcProbeOptions& options,
                                                             Sink sink) {
  if (options.ringbuf_bytes < 2 * (PROC_EVENT_HEADER_SIZE + PROC_MAX_PATH) ||
      (options.ringbuf_bytes & (options.ringbuf_bytes - 1)))
    return absl::InvalidArgumentError(absl::StrCat(
        "proc ring buffer size ", options.ringbuf_bytes, " must be a power of two ≥ 16384"));
  std::string tracefs;
  if (auto st = EnsureTracefs(&tracefs); !st.ok()) return st;
  auto has = [&](const std::string& tp) {
    return access(absl::StrCat(tracefs, "/events/", tp).c_str(), F_OK) == 0;
  };
  std::vector<std::string> missing;
  for (const char* tp : {"sched/sched_process_exec", "sched/sched_process_exit", "syscalls/sys_exit_openat"})
    if (!has(tp)) missing.push_back(tp);
  if (!missing.empty())
    return absl::FailedPreconditionError(
        absl::StrCat("proc probe: tracepoints missing: ", absl::StrJoin(missing, ", ")));

  std::unique_ptr<ProcProbe> probe(new ProcProbe(std::move(sink)));
  probe->skel_ = proc_bpf__open();
  if (!probe->skel_) return Errno(errno, "opening the proc BPF object");
  auto* rodata = probe->skel_->rodata;
  rodata->self_tgid = options.self_tgid ? options.self_tgid : static_cast<uint32_t>(getpid());
  rodata->target_tgid = options.target_tgid;
  bpf_map__set_max_entries(probe->skel_->maps.events, options.ringbuf_bytes);
  // openat2 (5.6+) and open (not on arm64) are extras: attach what the kernel has.
  struct Optional {
    const char* tp;
    bpf_program* prog;
  } optional[] = {
      {"syscalls/sys_exit_openat2", probe->skel_->progs.exit_openat2},
      {"syscalls/sys_exit_open", probe->skel_->progs.exit_open_legacy},
  };
  for (const auto& o : optional)
    if (!has(o.tp)) bpf_program__set_autoload(o.prog, false);

  if (int err = proc_bpf__load(probe->skel_)) return Errno(err, "loading the proc BPF programs");
  if (int err = proc_bpf__attach(probe->skel_)) return Errno(err, "attaching the proc tracepoints");
  probe->attached_ = {"sched/sched_process_exec", "sched/sched_process_exit", "syscalls/sys_exit_openat"};
  for (const auto& o : optional)
    if (has(o.tp)) probe->attached_.push_back(o.tp);

  probe->rb_ = ring_buffer__new(bpf_map__fd(probe->skel_->maps.events), &ProcProbe::OnRecord,
                                probe.get(), nullptr);
  if (!probe->rb_) return Errno(errno, "creating the proc ring buffer reader");
  return probe;
}

ProcProbe::~ProcProbe() {
  if (rb_) ring_buffer__free(rb_);
  if (skel_) proc_bpf__destroy(skel_);
}

int ProcProbe::OnRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<ProcProbe*>(ctx);
  if (size < PROC_EVENT_HEADER_SIZE) {
    self->malformed_++;
    return 0;
  }
  const auto* raw = static_cast<const proc_fact*>(data);
  ProcEvent ev;
  ev.kind = static_cast<ProcEvent::Kind>(raw->kind);
  if (raw->kind < PROC_EXEC || raw->kind > PROC_WASM_OPEN) {
    self->malformed_++;
    return 0;
  }
  if (raw->kind == PROC_WASM_OPEN) {
    if (size < PROC_EVENT_HEADER_SIZE + PROC_MAX_PATH || raw->path_len >= PROC_MAX_PATH ||
        raw->path_len == 0) {
      self->malformed_++;
      return 0;
    }
    ev.path = std::string_view(raw->path, raw->path_len);
    ev.fd = raw->ret;
    ev.path_resolved = raw->path_resolved != 0;
    ev.mnt_ns = raw->mnt_ns;
  }
  self->received_++;
  ev.ts_ns = raw->ts_ns;
  ev.proc_start_ns = raw->proc_start_ns;
  ev.tgid = raw->tgid;
  ev.tid = raw->tid;
  ev.ppid = raw->ppid;
  ev.parent_start_ns = raw->parent_start_ns;
  ev.comm = std::string_view(raw->comm, strnlen(raw->comm, sizeof(raw->comm)));
  self->sink_(ev);  // our code; never throws out of the libbpf callback
  return 0;
}

absl::StatusOr<int> ProcProbe::Poll(int timeout_ms) {
  int n = ring_buffer__poll(rb_, timeout_ms);
  if (n == -EINTR) return 0;
  if (n < 0) return Errno(n, "polling the proc ring buffer");
  return n;
}

int ProcProbe::Consume() {
  int n = ring_buffer__consume(rb_);
  return n < 0 ? 0 : n;
}

ProcCounters ProcProbe::counters() const {
  ProcCounters c;
  c.received = received_;
  c.malformed = malformed_;
  const std::vector<uint64_t> totals = SumPerCpuCounters(bpf_map__fd(skel_->maps.counters), PROC_CNT_MAX);
  auto sum = [&](uint32_t idx) { return totals[idx]; };
  c.ringbuf_drops = sum(PROC_CNT_RINGBUF_DROPS);
  c.path_too_long = sum(PROC_CNT_PATH_TOO_LONG);
  c.inflight_full = sum(PROC_CNT_INFLIGHT_FULL);
  return c;
}

}  // namespace isotrace::probes
