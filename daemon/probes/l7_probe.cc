#include "daemon/probes/l7_probe.h"
#include "daemon/probes/environment.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <time.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <string_view>
#include <cstring>
#include <vector>

#include <bpf/btf.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "daemon/probes/tls_targets.h"
#include "daemon/util/errno.h"
#include "l7.h"
#include "l7.skel.h"
#include "spdlog/spdlog.h"

namespace isotrace::probes {

// Layout checks: the ABI header is the contract with the kernel side.
static_assert(sizeof(l7_thread_acct) == 64);
static_assert(offsetof(l7_thread_acct, throttle_count) == 56);
static_assert(offsetof(l7_event, ts_ns) == 0);
static_assert(offsetof(l7_event, conn_id) == 16);
static_assert(offsetof(l7_event, pos) == 48);
static_assert(offsetof(l7_event, seq) == 80);
static_assert(offsetof(l7_event, captured) == 96);
static_assert(offsetof(l7_event, kind) == 104);
static_assert(offsetof(l7_event, flags) == 108);
static_assert(offsetof(l7_event, laddr) == 112);
static_assert(offsetof(l7_event, comm) == 144);
static_assert(offsetof(l7_event, acct) == 160);
static_assert(offsetof(l7_event, srtt_us) == 224);
static_assert(offsetof(l7_event, netns) == 232);
static_assert(offsetof(l7_event, data) == 240);
static_assert(L7_EVENT_HEADER_SIZE == 240);
static_assert((L7_MAX_CAPTURE & (L7_MAX_CAPTURE - 1)) == 0);

std::string FormatAddress(uint8_t family, const std::array<uint8_t, 16>& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == AF_INET) {
    inet_ntop(AF_INET, addr.data(), buf, sizeof(buf));
    return buf;
  }
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(addr.data(), kMapped, sizeof(kMapped)) == 0) {
    inet_ntop(AF_INET, addr.data() + 12, buf, sizeof(buf));
    return buf;
  }
  inet_ntop(AF_INET6, addr.data(), buf, sizeof(buf));
  return buf;
}

namespace {
using util::Errno;
}  // namespace

namespace {
// Hooks the breakdown can live without: each needs a tracepoint's BTF typedef; when the
// kernel lacks it the program is not loaded and the measure it feeds stays absent.
struct OptionalHook {
  const char* btf_typedef;
  const char* what;
};

bool HasTypedef(const btf* vmlinux, const char* name) {
  return vmlinux && btf__find_by_name_kind(vmlinux, name, BTF_KIND_TYPEDEF) > 0;
}

bool StructHasMember(const btf* vmlinux, const char* type, const char* member) {
  if (!vmlinux) return false;
  int id = btf__find_by_name_kind(vmlinux, type, BTF_KIND_STRUCT);
  if (id <= 0) return false;
  const btf_type* t = btf__type_by_id(vmlinux, id);
  const btf_member* m = btf_members(t);
  for (int i = 0; i < btf_vlen(t); i++, m++)
    if (std::string_view(btf__name_by_offset(vmlinux, m->name_off)) == member) return true;
  return false;
}

// True when enum `type` has an enumerator `name` (CO-RE enum value relocations fail the
// load otherwise).
bool EnumHasValue(const btf* vmlinux, const char* type, const char* name) {
  if (!vmlinux) return false;
  int id = btf__find_by_name_kind(vmlinux, type, BTF_KIND_ENUM);
  if (id <= 0) return false;
  const btf_type* t = btf__type_by_id(vmlinux, id);
  const struct btf_enum* e = btf_enum(t);
  for (int i = 0; i < btf_vlen(t); i++, e++)
    if (std::string_view(btf__name_by_offset(vmlinux, e->name_off)) == name) return true;
  return false;
}

// The parameters of tracepoint `tp`'s BTF prototype (btf_trace_<tp>: a typedef of a
// pointer to a FUNC_PROTO whose first parameter is the tracing context), or nullptr.
const btf_param* TracepointParams(const btf* vmlinux, const char* tp, int* count) {
  *count = 0;
  if (!vmlinux) return nullptr;
  int id = btf__find_by_name_kind(vmlinux, absl::StrCat("btf_trace_", tp).c_str(), BTF_KIND_TYPEDEF);
  if (id <= 0) return nullptr;
  const btf_type* t = btf__type_by_id(vmlinux, btf__resolve_type(vmlinux, id));
  if (!t || !btf_is_ptr(t)) return nullptr;
  t = btf__type_by_id(vmlinux, t->type);
  if (!t || !btf_is_func_proto(t)) return nullptr;
  *count = btf_vlen(t) - 1;
  return btf_params(t) + 1;
}

// True when argument `index` of tracepoint `tp` is a pointer to struct `type`.
bool TracepointArgIsStructPtr(const btf* vmlinux, const char* tp, int index, const char* type) {
  int n = 0;
  const btf_param* params = TracepointParams(vmlinux, tp, &n);
  if (!params || index >= n) return false;
  const btf_type* t = btf__type_by_id(vmlinux, btf__resolve_type(vmlinux, params[index].type));
  if (!t || !btf_is_ptr(t)) return false;
  t = btf__type_by_id(vmlinux, btf__resolve_type(vmlinux, t->type));
  return t && btf_is_struct(t) && std::string_view(btf__name_by_offset(vmlinux, t->name_off)) == type;
}

}  // namespace

absl::StatusOr<std::unique_ptr<L7Probe>> L7Probe::Create(const L7ProbeOptions& options, Sink sink) {
  if (options.capture_bytes > L7_MAX_CAPTURE)
    return absl::InvalidArgumentError(absl::StrCat("capture_bytes ", options.capture_bytes,
                                                   " exceeds the maximum of ", L7_MAX_CAPTURE));
  if (options.ringbuf_bytes < 4096 || (options.ringbuf_bytes & (options.ringbuf_bytes - 1)))
    return absl::InvalidArgumentError(absl::StrCat(
        "ring buffer size ", options.ringbuf_bytes, " must be a power of two of at least 4096"));

  std::unique_ptr<L7Probe> probe(new L7Probe(std::move(sink)));
  probe->skel_ = l7_bpf__open();
  if (!probe->skel_) return Errno(errno, "opening the l7 BPF object");
  auto* rodata = probe->skel_->rodata;
  rodata->self_tgid = options.self_tgid ? options.self_tgid : static_cast<uint32_t>(getpid());
  rodata->target_tgid = options.target_tgid;
  rodata->capture_bytes = options.capture_bytes;
  // bpf_loop (5.17+) copies the many iovecs HTTP/2 writers use; without it, 16.
  rodata->use_bpf_loop = libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_loop, nullptr) == 1;
  bpf_map__set_max_entries(probe->skel_->maps.events, options.ringbuf_bytes);
  bpf_map__set_max_entries(probe->skel_->maps.inflight_calls, options.inflight_entries);
  bpf_map__set_max_entries(probe->skel_->maps.conns, options.conn_entries);
  // No wake-up per record: the reader polls on a short timer; past a quarter of the ring
  // the kernel wakes it early (once per reader cycle) so a burst cannot fill the ring
  // between two polls.
  rodata->wakeup_bytes = options.wakeup_every_record ? 0 : options.ringbuf_bytes / 4;
  rodata->edge_wakeup_bytes = options.wakeup_every_record ? 0 : options.edge_ringbuf_bytes / 4;

  // Decide, from the kernel's own BTF, which optional hooks can load. Never by version.
  btf* vmlinux = btf__load_vmlinux_btf();
  if (libbpf_get_error(vmlinux)) vmlinux = nullptr;
  L7Features& f = probe->features_;
  auto* sk = probe->skel_;
  // Data hooks: the socket tracepoints where the kernel has them (6.3+), else the
  // per-syscall tracepoints. Exactly one set is loaded.
  // ISOTRACE_FORCE_SYSCALL_HOOKS=1: the pre-6.3 data hooks on a newer kernel, so the
  // fallback can be tried end to end on the development machine (docs/kernels.md).
  const char* force_env = getenv("ISOTRACE_FORCE_SYSCALL_HOOKS");
  const bool force = options.force_syscall_hooks || (force_env && std::string_view(force_env) == "1");
  f.sock_tracepoints = !force && HasTypedef(vmlinux, "btf_trace_sock_send_length") &&
                       HasTypedef(vmlinux, "btf_trace_sock_recv_length");
  for (bpf_program* p : {sk->progs.sock_send, sk->progs.sock_recv})
    bpf_program__set_autoload(p, f.sock_tracepoints);
  for (bpf_program* p :
       {sk->progs.enter_read, sk->progs.enter_recvfrom, sk->progs.enter_readv, sk->progs.enter_write,
        sk->progs.enter_sendto, sk->progs.enter_writev, sk->progs.enter_sendfile, sk->progs.enter_recvmsg,
        sk->progs.enter_sendmsg, sk->progs.exit_read, sk->progs.exit_recvfrom, sk->progs.exit_readv,
        sk->progs.exit_recvmsg, sk->progs.exit_write, sk->progs.exit_sendto, sk->progs.exit_writev,
        sk->progs.exit_sendmsg, sk->progs.exit_sendfile})
    bpf_program__set_autoload(p, !f.sock_tracepoints);
  // Socket-local storage needs every connection-state hook to hold a trusted socket,
  // which the syscall tracepoints do not; the hash map is then the only store.
  rodata->use_sk_storage = f.sock_tracepoints ? 1 : 0;
  if (f.sock_tracepoints) bpf_map__set_max_entries(sk->maps.conns, 64);  // unused
  if (!f.sock_tracepoints)
    spdlog::info("no sock_send_length/sock_recv_length tracepoints (Linux < 6.3): socket data "
                 "through the per-syscall tracepoints, which cost every syscall on the node more");
  if (!HasTypedef(vmlinux, "btf_trace_inet_sock_set_state"))
    return absl::FailedPreconditionError(
        "the kernel has no inet_sock_set_state tracepoint in its BTF: isotrace needs it to see "
        "connections end (Linux 4.16+ with CONFIG_DEBUG_INFO_BTF)");
  f.thread_acct = HasTypedef(vmlinux, "btf_trace_sched_switch") && HasTypedef(vmlinux, "btf_trace_sched_wakeup");
  // sched_switch passes prev_state since 5.18 (bpf/core_fixes.bpf.h); before, the probe
  // reads the task's state instead.
  int switch_args = 0;
  TracepointParams(vmlinux, "sched_switch", &switch_args);
  rodata->switch_has_prev_state = switch_args >= 4 ? 1 : 0;
  if (f.thread_acct && switch_args < 4)
    spdlog::info("sched_switch has no prev_state argument (kernel before 5.18): the switched-out "
                 "task's state is read from the task");
  if (!f.thread_acct) {
    bpf_program__set_autoload(sk->progs.acct_switch, false);
    bpf_program__set_autoload(sk->progs.acct_wakeup, false);
    spdlog::warn("no sched_switch/sched_wakeup BTF tracepoints: spans carry no vertical breakdown");
  }
  f.memstall = f.thread_acct && HasTypedef(vmlinux, "btf_trace_mm_vmscan_direct_reclaim_begin") &&
               HasTypedef(vmlinux, "btf_trace_mm_vmscan_memcg_reclaim_begin");
  if (!f.memstall) {
    for (bpf_program* p : {sk->progs.acct_reclaim_begin, sk->progs.acct_reclaim_end,
                           sk->progs.acct_memcg_reclaim_begin, sk->progs.acct_memcg_reclaim_end})
      bpf_program__set_autoload(p, false);
    if (f.thread_acct)
      spdlog::warn("no vmscan reclaim tracepoints: isotrace.kernel.memstall_ns is left out");
  }
  f.tcp_incidents = HasTypedef(vmlinux, "btf_trace_tcp_retransmit_skb") &&
                    HasTypedef(vmlinux, "btf_trace_tcp_receive_reset") &&
                    HasTypedef(vmlinux, "btf_trace_tcp_send_reset");
  if (!f.tcp_incidents) {
    for (bpf_program* p : {sk->progs.tcp_retransmit, sk->progs.tcp_receive_reset, sk->progs.tcp_send_reset})
      bpf_program__set_autoload(p, false);
    spdlog::warn("no tcp retransmit/reset tracepoints: isotrace.net.retransmits is left out");
  }
  if (!f.tcp_incidents || !HasTypedef(vmlinux, "btf_trace_tcp_retransmit_synack")) {
    bpf_program__set_autoload(sk->progs.tcp_retransmit_synack, false);
    if (f.tcp_incidents)
      spdlog::info("no tcp_retransmit_synack tracepoint: resent SYN-ACKs are not counted on callers' spans");
  }
  // The start of a send: a CLIENT span's first write is timed from there. With the socket
  // tracepoints (6.3+) that is tcp_sendmsg_locked (6.12+); with the per-syscall hooks
  // (before 6.3) the syscall's entry, which those hooks see anyway. 6.3 to 6.11 have
  // neither without a hook on every write of the node.
  const bool has_send_start = HasTypedef(vmlinux, "btf_trace_tcp_sendmsg_locked");
  const bool send_start_hook = f.sock_tracepoints && has_send_start;
  f.send_begin = options.client_write_start && (send_start_hook || !f.sock_tracepoints);
  rodata->use_send_begin = f.send_begin ? 1 : 0;
  rodata->tls_send_begin = options.client_write_start ? 1 : 0;
  if (!f.send_begin || !send_start_hook) bpf_program__set_autoload(sk->progs.send_begin, false);
  if (!f.send_begin) {
    if (options.client_write_start)
      spdlog::info("no tcp_sendmsg_locked tracepoint (Linux 6.3 to 6.11): a CLIENT span starts when "
                   "its request's first write has moved its bytes, without that write's own time");
    else
      spdlog::info("probes.client_write_start is off: a CLIENT span starts when its request's "
                   "first write has moved its bytes, without that write's own time");
  }
  // Packets the node's own netfilter drops on their way out (kfree_skb's drop reason,
  // 5.17+): the only trace of a loss TCP does not count as a retransmission.
  int kfree_args = 0;
  const bool local_drops = f.tcp_incidents && TracepointParams(vmlinux, "kfree_skb", &kfree_args) &&
                           kfree_args >= 3 &&
                           EnumHasValue(vmlinux, "skb_drop_reason", "SKB_DROP_REASON_NETFILTER_DROP");
  if (!local_drops) {
    bpf_program__set_autoload(sk->progs.skb_drop, false);
    spdlog::info("no kfree_skb drop reasons (Linux < 5.17): packets dropped by this node's "
                 "firewall on their way out are not span events");
  }
  // mark_victim passed only an int pid before "mm, oom: add more information to
  // mark_victim tracepoint" (bpf/core_fixes.bpf.h): the program reads a task_struct.
  f.oom = TracepointArgIsStructPtr(vmlinux, "mark_victim", 0, "task_struct");
  if (!f.oom) {
    bpf_program__set_autoload(sk->progs.oom_mark_victim, false);
    spdlog::warn(HasTypedef(vmlinux, "btf_trace_mark_victim")
                     ? "oom:mark_victim passes no task_struct on this kernel: OOM kills do not "
                       "become span events"
                     : "no oom:mark_victim tracepoint: OOM kills do not become span events");
  }
  // Steal needs one of the runqueue's paravirt steal clocks (prev_steal_time_rq with
  // CONFIG_PARAVIRT_TIME_ACCOUNTING, prev_steal_time with CONFIG_PARAVIRT: the same test
  // as core_has_steal_clock() in bpf/core_fixes.bpf.h) and a hypervisor that feeds it;
  // on bare metal there is no steal to measure.
  f.steal = f.thread_acct &&
            (StructHasMember(vmlinux, "rq", "prev_steal_time_rq") ||
             StructHasMember(vmlinux, "rq", "prev_steal_time")) &&
            StructHasMember(vmlinux, "cfs_rq", "rq") && options.vm_guest;
  rodata->steal_enabled = f.steal ? 1 : 0;
  if (f.thread_acct && !f.steal)
    spdlog::info("steal time not measurable here (bare metal, or no paravirt steal clock): "
                 "isotrace.vm.steal_ns is left out");
  // One line that says what this kernel gives (tests on other kernels check it:
  // scripts/kernels/qemu_guest.py). Throttling is seen per task since 6.18, per
  // throttled hierarchy before (bpf/core_fixes.bpf.h).
  const char* throttling = StructHasMember(vmlinux, "task_struct", "throttled") ? "task"
                           : StructHasMember(vmlinux, "cfs_rq", "throttle_count") ? "hierarchy"
                                                                                  : "none";
  spdlog::info("kernel features (BTF): data={} breakdown={} memstall={} tcp_incidents={} oom={} "
               "steal={} throttling={} sched_switch_prev_state={} send_begin={}",
               f.sock_tracepoints ? "sock_tracepoints" : "syscall_tracepoints", f.thread_acct,
               f.memstall, f.tcp_incidents, f.oom, f.steal, throttling, switch_args >= 4, f.send_begin);
  btf__free(vmlinux);

  rodata->edge_capture_bytes = std::min<uint32_t>(options.edge_capture_bytes, EDGE_MAX_CAPTURE);
  bpf_map__set_max_entries(sk->maps.edge_events, options.edge_ringbuf_bytes);
  // The iterator runs on demand (RefreshEdgeGroups), never as an attached link.
  bpf_program__set_autoattach(sk->progs.edge_group_tasks, false);

  if (int err = l7_bpf__load(probe->skel_)) return Errno(err, "loading the l7 BPF programs");
  if (int err = l7_bpf__attach(probe->skel_)) return Errno(err, "attaching the l7 tracepoints");

  probe->rb_ = ring_buffer__new(bpf_map__fd(probe->skel_->maps.events), &L7Probe::OnRecord,
                                probe.get(), nullptr);
  if (!probe->rb_) return Errno(errno, "creating the l7 ring buffer reader");
  // The edge ring joins the reader at the first sandbox edge (AttachEdge).
  {
    L7Probe* self = probe.get();
    probe->edge_ = std::make_unique<EdgeReassembler>(EdgeReassembler::Limits{},
                                                     [self](const SocketEvent& ev) { self->sink_(ev); });
  }
  if (options.edge) {
    probe->edge_scan_ = true;
    probe->edge_scan_ms_ = options.edge_scan_ms ? options.edge_scan_ms : 2000;
    probe->ScanEdges();
  }
  if (options.tls) {
    probe->tls_finder_ = std::make_unique<TlsTargetFinder>();
    probe->tls_scan_ms_ = options.tls_scan_ms ? options.tls_scan_ms : 2000;
    probe->ScanTls();
  }
  return probe;
}

namespace {
uint64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}
}  // namespace

absl::Status L7Probe::AttachTls(const std::string& path) {
  bpf_program* enters[] = {skel_->progs.ssl_write_enter, skel_->progs.ssl_read_enter,
                           skel_->progs.ssl_write_ex_enter, skel_->progs.ssl_read_ex_enter,
                           skel_->progs.ssl_handshake_enter};
  static_assert(std::size(kTlsFunctions) == 5);
  int hooked = 0;
  for (size_t i = 0; i < std::size(kTlsFunctions); i++) {
    // Only functions the file defines: libbpf would log a failure for each one missing.
    if (!ElfDefinesFunction(path, kTlsFunctions[i])) continue;
    // The return probe first: a call entered between the two attachments then has a
    // return without an entry (ignored), never an entry without a return (which would
    // leave the thread marked inside OpenSSL).
    LIBBPF_OPTS(bpf_uprobe_opts, ret_opts, .retprobe = true, .func_name = kTlsFunctions[i]);
    bpf_link* ret = bpf_program__attach_uprobe_opts(skel_->progs.ssl_exit, -1, path.c_str(), 0, &ret_opts);
    if (!ret) continue;
    LIBBPF_OPTS(bpf_uprobe_opts, enter_opts, .retprobe = false, .func_name = kTlsFunctions[i]);
    bpf_link* enter = bpf_program__attach_uprobe_opts(enters[i], -1, path.c_str(), 0, &enter_opts);
    if (!enter) {
      bpf_link__destroy(ret);
      continue;
    }
    tls_links_.push_back(ret);
    tls_links_.push_back(enter);
    hooked++;
  }
  if (hooked == 0)
    return absl::NotFoundError(absl::StrCat("no OpenSSL function could be hooked in ", path));
  skel_->bss->tls_hooked = 1;
  tls_targets_++;
  spdlog::info("TLS: OpenSSL uprobes on {} ({} of {} functions)", path, hooked, std::size(kTlsFunctions));
  return absl::OkStatus();
}

void L7Probe::OnExec(uint32_t tgid) {
  if (tls_finder_) tls_finder_->Forget(static_cast<int>(tgid));
  if (!edge_scan_) return;
  if (!edge_cache_) edge_cache_.emplace();
  edge_cache_->Forget(tgid);
}

void L7Probe::ScanTls() {
  tls_last_scan_ms_ = MonotonicMs();
  for (const TlsTarget& t : tls_finder_->Scan()) {
    if (auto st = AttachTls(t.path); !st.ok()) spdlog::warn("TLS: {}", std::string(st.message()));
  }
}

// ---- sandbox edges ------------------------------------------------------------------

namespace {
// The edge filters' place in each device's clsact qdisc (replaced, not duplicated, when
// a restarted daemon attaches again).
constexpr uint32_t kEdgeTcHandle = 0x150;
constexpr uint32_t kEdgeTcPriority = 0x150;

ThreadAcct AcctOf(const l7_thread_acct& a) {
  ThreadAcct t;
  t.valid = a.valid != 0;
  t.oncpu_ns = a.oncpu_ns;
  t.runq_ns = a.runq_ns;
  t.throttled_ns = a.throttled_ns;
  t.blkio_ns = a.blkio_ns;
  t.memstall_ns = a.memstall_ns;
  t.sleep_ns = a.sleep_ns;
  t.steal_ns = a.steal_ns;
  t.throttle_count = a.throttle_count;
  return t;
}

uint64_t ClockTicksToNs(uint64_t ticks) {
  static const long hz = sysconf(_SC_CLK_TCK);
  return hz > 0 ? ticks * (1000000000ull / static_cast<uint64_t>(hz)) : 0;
}
}  // namespace

absl::Status L7Probe::AttachEdge(uint32_t ifindex, const EdgeOwner& owner, const std::vector<uint32_t>& tgids) {
  if (edge_devices_.count(ifindex)) return absl::OkStatus();
  if (!edge_ring_read_) {
    // Read (mapped into this process) only from the first edge on: libbpf maps a ring's
    // pages twice, so the 4 MiB ring would count as 8 MiB of RSS on every node, sandboxes
    // or not. Until a program is attached to a device nothing writes to it.
    if (int err = ring_buffer__add(rb_, bpf_map__fd(skel_->maps.edge_events), &L7Probe::OnEdgeRecord, this))
      return Errno(err, "adding the edge ring buffer to the reader");
    edge_ring_read_ = true;
  }
  // One accounting group per sandbox process, shared by all its devices.
  uint32_t group = UINT32_MAX;
  for (const auto& [ifx, d] : edge_devices_)
    if (d.owner_tgid == owner.tgid && d.owner_start == owner.proc_start_ns) group = d.group;
  if (group == UINT32_MAX) {
    for (uint32_t g = 0; g < EDGE_MAX_GROUPS && group == UINT32_MAX; g++) {
      bool used = false;
      for (const auto& [ifx, d] : edge_devices_) used |= d.group == g;
      if (!used) group = g;
    }
    if (group == UINT32_MAX)
      return absl::ResourceExhaustedError(absl::StrCat("more than ", EDGE_MAX_GROUPS, " sandboxes on this node"));
    edge_group_acct zero{};
    bpf_map_update_elem(bpf_map__fd(skel_->maps.edge_group_acct), &group, &zero, BPF_ANY);
    for (uint32_t t : edge_group_tgids_[group]) bpf_map_delete_elem(bpf_map__fd(skel_->maps.edge_group_tgids), &t);
    edge_group_tgids_[group] = tgids;
    const uint32_t value = group + 1;
    for (uint32_t t : tgids) bpf_map_update_elem(bpf_map__fd(skel_->maps.edge_group_tgids), &t, &value, BPF_ANY);
  }
  edge_iface iface{group, 0};
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.edge_ifaces), &ifindex, &iface, BPF_ANY))
    return Errno(errno, "registering the edge device");
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex),
              .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int err = bpf_tc_hook_create(&hook);
  if (err && err != -EEXIST) {
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.edge_ifaces), &ifindex);
    return Errno(err, absl::StrCat("creating the clsact qdisc on ifindex ", ifindex));
  }
  for (auto [point, prog] : {std::pair{BPF_TC_INGRESS, skel_->progs.edge_ingress},
                             std::pair{BPF_TC_EGRESS, skel_->progs.edge_egress}}) {
    LIBBPF_OPTS(bpf_tc_hook, h, .ifindex = static_cast<int>(ifindex), .attach_point = point);
    LIBBPF_OPTS(bpf_tc_opts, o, .prog_fd = bpf_program__fd(prog), .flags = BPF_TC_F_REPLACE,
                .handle = kEdgeTcHandle, .priority = kEdgeTcPriority);
    if (int e = bpf_tc_attach(&h, &o)) {
      DetachEdge(ifindex);
      bpf_map_delete_elem(bpf_map__fd(skel_->maps.edge_ifaces), &ifindex);
      return Errno(e, absl::StrCat("attaching the edge program to ifindex ", ifindex));
    }
  }
  edge_->SetOwner(ifindex, owner);
  edge_devices_[ifindex] = EdgeDevice{group, owner.tgid, owner.proc_start_ns, ""};
  RefreshEdgeGroups();
  return absl::OkStatus();
}

void L7Probe::DetachEdge(uint32_t ifindex) {
  for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
    LIBBPF_OPTS(bpf_tc_hook, h, .ifindex = static_cast<int>(ifindex), .attach_point = point);
    LIBBPF_OPTS(bpf_tc_opts, o, .handle = kEdgeTcHandle, .priority = kEdgeTcPriority);
    bpf_tc_detach(&h, &o);  // the device may be gone already (its filters with it)
  }
  bpf_map_delete_elem(bpf_map__fd(skel_->maps.edge_ifaces), &ifindex);
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  edge_->RemoveOwner(ifindex, static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec);
  auto it = edge_devices_.find(ifindex);
  if (it == edge_devices_.end()) return;
  const uint32_t group = it->second.group;
  edge_devices_.erase(it);
  for (const auto& [ifx, d] : edge_devices_)
    if (d.group == group) return;
  for (uint32_t t : edge_group_tgids_[group]) bpf_map_delete_elem(bpf_map__fd(skel_->maps.edge_group_tgids), &t);
  edge_group_tgids_[group].clear();
}

void L7Probe::RefreshEdgeGroups() {
  // One pass of the task iterator puts every thread of the groups' processes in its
  // group (and takes threads of removed groups out).
  bpf_link* link = bpf_program__attach_iter(skel_->progs.edge_group_tasks, nullptr);
  if (!link) {
    spdlog::warn("edge: the task iterator did not attach ({}): sandbox breakdowns are incomplete",
                 strerror(errno));
    return;
  }
  int fd = bpf_iter_create(bpf_link__fd(link));
  if (fd >= 0) {
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    close(fd);
  }
  bpf_link__destroy(link);
}

void L7Probe::ScanEdges() {
  edge_last_scan_ms_ = MonotonicMs();
  if (edge_cache_ && ++edge_scans_ % kEdgeCacheScans == 0) edge_cache_->not_sandbox.clear();
  std::vector<EdgeTarget> found = FindEdgeTargets("/proc", edge_cache_ ? &*edge_cache_ : nullptr);
  std::vector<uint32_t> gone;
  for (const auto& [ifx, d] : edge_devices_) {
    bool still = false;
    for (const auto& t : found)
      still |= t.ifindex == ifx && t.pid == d.owner_tgid && ClockTicksToNs(t.start_ticks) == d.owner_start;
    if (!still) gone.push_back(ifx);
  }
  for (uint32_t ifx : gone) {
    spdlog::info("edge: {} (ifindex {}) is gone or changed hands: detached", edge_devices_[ifx].name, ifx);
    DetachEdge(ifx);
  }
  bool added = false;
  for (const auto& t : found) {
    if (edge_devices_.count(t.ifindex)) continue;
    EdgeOwner o{t.pid, ClockTicksToNs(t.start_ticks), t.cgroup_id, t.comm};
    if (auto st = AttachEdge(t.ifindex, o, t.tgids); !st.ok()) {
      edge_attach_failures_++;
      spdlog::warn("edge: cannot watch {} of {} pid {}: {}", t.ifname, EdgeKindName(t.kind), t.pid,
                   std::string(st.message()));
      continue;
    }
    edge_devices_[t.ifindex].name = t.ifname;
    added = true;
    spdlog::info("edge: watching {} (ifindex {}), the network edge of {} pid {} ({})", t.ifname, t.ifindex,
                 EdgeKindName(t.kind), t.pid, t.comm);
  }
  // New threads of known sandboxes join their groups at each scan.
  if (!added && !edge_devices_.empty()) RefreshEdgeGroups();
}

int L7Probe::OnEdgeRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<L7Probe*>(ctx);
  if (size < EDGE_EVENT_HEADER_SIZE) {
    self->malformed_++;
    return 0;
  }
  const auto* raw = static_cast<const edge_event*>(data);
  if (raw->captured > EDGE_MAX_CAPTURE || EDGE_EVENT_HEADER_SIZE + raw->captured > size) {
    self->malformed_++;
    return 0;
  }
  self->received_++;
  EdgePacket p;
  p.ts_ns = raw->ts_ns;
  p.ifindex = raw->ifindex;
  p.dir = raw->dir == EDGE_TO_SANDBOX ? EdgePacket::Dir::kToSandbox : EdgePacket::Dir::kFromSandbox;
  p.family = raw->family;
  std::memcpy(p.saddr.data(), raw->saddr, 16);
  std::memcpy(p.daddr.data(), raw->daddr, 16);
  p.sport = raw->sport;
  p.dport = raw->dport;
  p.seq = raw->tcp_seq;
  p.ack = raw->tcp_ack;
  p.len = raw->len;
  p.flags = raw->tcp_flags;
  p.payload = std::string_view(reinterpret_cast<const char*>(raw->data), raw->captured);
  p.acct = AcctOf(raw->acct);
  self->edge_->OnPacket(p);
  return 0;
}

L7Probe::~L7Probe() {
  std::vector<uint32_t> devs;
  for (const auto& [ifx, d] : edge_devices_) devs.push_back(ifx);
  for (uint32_t ifx : devs) DetachEdge(ifx);
  for (bpf_link* l : tls_links_) bpf_link__destroy(l);
  if (rb_) ring_buffer__free(rb_);
  if (skel_) l7_bpf__destroy(skel_);
}

int L7Probe::OnRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<L7Probe*>(ctx);
  if (size < L7_EVENT_HEADER_SIZE) {
    self->malformed_++;
    return 0;
  }
  const auto* raw = static_cast<const l7_event*>(data);
  uint32_t captured = raw->captured;
  if (captured > L7_MAX_CAPTURE || L7_EVENT_HEADER_SIZE + captured > size) {
    self->malformed_++;
    return 0;
  }
  self->received_++;
  if (raw->kind == L7_EV_DATA) {
    self->segments_++;
    if (captured) self->captured_++;
  }
  // Built on the stack from the record in place: no allocation per event.
  SocketEvent ev;
  ev.kind = static_cast<SocketEvent::Kind>(raw->kind);
  ev.dir = static_cast<SocketEvent::Direction>(raw->dir);
  ev.syscall = raw->syscall;
  ev.ts_enter_ns = raw->ts_enter_ns;
  ev.ts_exit_ns = raw->ts_ns;
  ev.tgid = raw->tgid;
  ev.tid = raw->tid;
  ev.proc_start_ns = raw->proc_start_ns;
  ev.fd = raw->fd;
  ev.conn_id = raw->conn_id;
  ev.sock_id = raw->sock_id;
  ev.cgroup_id = raw->cgroup_id;
  ev.ret = static_cast<int64_t>(raw->len);
  ev.pos = raw->pos;
  ev.seq = raw->seq;
  ev.msg_start = raw->flags & L7_F_MSG_START;
  ev.new_conn = raw->flags & L7_F_NEW_CONN;
  if (raw->flags & L7_F_CONNECTED) {
    ev.conn_start_ns = raw->conn_start_ns;
    ev.established_ns = raw->established_ns;
  }
  ev.family = raw->family;
  std::memcpy(ev.laddr.data(), raw->laddr, 16);
  std::memcpy(ev.raddr.data(), raw->raddr, 16);
  ev.lport = raw->lport;
  ev.rport = raw->rport;
  ev.comm = std::string_view(raw->comm, strnlen(raw->comm, sizeof(raw->comm)));
  ev.payload = std::string_view(reinterpret_cast<const char*>(raw->data), captured);
  ev.acct = AcctOf(raw->acct);
  ev.srtt_us = raw->srtt_us;
  ev.tls = raw->flags & L7_F_TLS;
  ev.acct_at_enter = raw->flags & L7_F_ACCT_AT_ENTER;
  ev.retransmits = raw->retransmits;
  ev.netns = raw->netns;
  // The sink must not throw (no exceptions out of libbpf callbacks); it is our code.
  self->sink_(ev);
  return 0;
}

absl::StatusOr<int> L7Probe::Poll(int timeout_ms) {
  // Records are submitted without a wake-up (l7.h): the wait ends at the timeout or at a
  // forced wake-up when the ring fills, and whatever is there is consumed either way.
  int n = ring_buffer__poll(rb_, timeout_ms);
  if (n == -EINTR) n = 0;
  if (n < 0) return Errno(n, "polling the l7 ring buffer");
  int m = ring_buffer__consume(rb_);
  if (m < 0 && m != -EINTR) return Errno(m, "reading the l7 ring buffer");
  if (tls_finder_ && MonotonicMs() - tls_last_scan_ms_ >= tls_scan_ms_) ScanTls();
  if (edge_) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    edge_->Tick(static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec);
  }
  if (edge_scan_ && MonotonicMs() - edge_last_scan_ms_ >= edge_scan_ms_) ScanEdges();
  return n + (m > 0 ? m : 0);
}

L7Counters L7Probe::counters() const {
  L7Counters c;
  c.received = received_;
  c.malformed = malformed_;
  const std::vector<uint64_t> totals = SumPerCpuCounters(bpf_map__fd(skel_->maps.counters), L7_CNT_MAX);
  auto sum = [&](uint32_t idx) { return totals[idx]; };
  c.ringbuf_drops = sum(L7_CNT_RINGBUF_DROPS);
  c.inflight_full = sum(L7_CNT_ARGS_FULL);
  c.read_failures = sum(L7_CNT_READ_FAIL);
  c.segments = segments_;
  c.captured = captured_;
  c.wakeups = sum(L7_CNT_WAKEUPS);
  c.tls_untied = sum(L7_CNT_TLS_UNTIED);
  c.tls_ciphertext = sum(L7_CNT_TLS_CIPHER);
  c.synack_limited = sum(L7_CNT_SYNACK_LIMITED);
  c.acct_resyncs = sum(L7_CNT_ACCT_RESYNC);
  c.tls_targets = tls_targets_;
  c.edge_devices = edge_devices_.size();
  c.edge_packets = sum(L7_CNT_EDGE_PACKETS);
  c.edge_drops = sum(L7_CNT_EDGE_DROPS);
  c.edge_malformed = sum(L7_CNT_EDGE_MALFORMED);
  c.edge_attach_failures = edge_attach_failures_;
  if (edge_) c.edge = edge_->stats();
  return c;
}

}  // namespace isotrace::probes
