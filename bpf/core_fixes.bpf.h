/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every kernel difference the probes care about, in one place (the libbpf-tools
 * core_fixes.bpf.h pattern). The rest of bpf/ reads kernel memory only through fields
 * that every supported kernel (5.8+, BTF, ring buffer) has, or through a helper here.
 *
 * The vendored bpf/vmlinux/<arch>/vmlinux.h is generated from Debian 12's 6.1 kernel,
 * the oldest kernel isotrace is tested on (docs/kernels.md). A field that newer kernels
 * added is therefore not in vmlinux.h at all: code can reach it only through a
 * `<type>___<flavour>` struct below (libbpf strips the suffix and relocates against the
 * running kernel's BTF), guarded by bpf_core_field_exists(). Using such a field anywhere
 * else does not compile, so no newer-kernel dependency can slip in unguarded. (With a
 * newest-kernel base the compiler would accept any new field silently and only a load on
 * an old kernel would catch it.) Fields that depend on the kernel's configuration, not its
 * version, are guarded the same way.
 *
 * Each helper cites the kernel change it papers over. When one of them cannot give a
 * right answer on a kernel, user space (daemon/probes, deciding from the same BTF) leaves
 * the attribute out and logs it: never a wrong value.
 *
 * Requires vmlinux.h, bpf_core_read.h and bpf_helpers.h to be included first.
 */
#ifndef ISOTRACE_BPF_CORE_FIXES_BPF_H_
#define ISOTRACE_BPF_CORE_FIXES_BPF_H_

/* ---- CFS bandwidth throttling ---------------------------------------------------- */

/* Linux 6.18, "sched/fair: Task based throttle model" series (Aaron Lu, Valentin
 * Schneider; e.g. "sched/fair: Implement throttle task work and related helpers"): a
 * task of a throttled hierarchy is dequeued on its own, at return to user, and carries
 * task_struct.throttled (CONFIG_CFS_BANDWIDTH). */
struct task_struct___task_throttle {
  bool throttled;
} __attribute__((preserve_access_index));

/* Before 6.18 a throttled hierarchy is dequeued as a whole and its runqueue counts the
 * throttled levels above it in cfs_rq.throttle_count (CONFIG_CFS_BANDWIDTH); a task's
 * cfs_rq is se.cfs_rq (CONFIG_FAIR_GROUP_SCHED). Without either option nothing can be
 * throttled, so false is the right answer there. */
static __always_inline bool core_task_throttled(struct task_struct *p) {
  struct task_struct___task_throttle *t = (void *)p;
  if (bpf_core_field_exists(t->throttled) && BPF_CORE_READ(t, throttled)) return true;
  if (!bpf_core_field_exists(p->se.cfs_rq) || !bpf_core_field_exists(struct cfs_rq, throttle_count))
    return false;
  struct cfs_rq *cfs = BPF_CORE_READ(p, se.cfs_rq);
  return cfs && BPF_CORE_READ(cfs, throttle_count) > 0;
}

/* ---- steal time ------------------------------------------------------------------ */

/* The runqueue's paravirt steal clocks (kernel/sched/core.c, cputime.c):
 *  - rq.prev_steal_time_rq, advanced at every rq clock update; exists only with
 *    CONFIG_PARAVIRT_TIME_ACCOUNTING (off in Debian's 6.1, on in this project's 6.18
 *    host, where it stays 0 unless the hypervisor enables steal-rq accounting);
 *  - rq.prev_steal_time, advanced at ticks (steal_account_process_time); exists with
 *    CONFIG_PARAVIRT.
 * Both are absent from some kernels' BTF, hence the flavour struct. */
struct rq___steal {
  u64 prev_steal_time_rq;
  u64 prev_steal_time;
} __attribute__((preserve_access_index));

/* True when this kernel has a steal clock core_cpu_steal() can read. User space makes
 * the same decision from BTF (daemon/probes/l7_probe.cc) to set steal_enabled. */
static __always_inline bool core_has_steal_clock(void) {
  return bpf_core_field_exists(struct cfs_rq, rq) &&
         (bpf_core_field_exists(struct rq___steal, prev_steal_time_rq) ||
          bpf_core_field_exists(struct rq___steal, prev_steal_time));
}

/* The steal clock of the CPU `p` is on (p is current or being switched), 0 if none. */
static __always_inline u64 core_cpu_steal(struct task_struct *p) {
  if (!core_has_steal_clock() || !bpf_core_field_exists(p->se.cfs_rq)) return 0;
  struct rq___steal *rq = (void *)BPF_CORE_READ(p, se.cfs_rq, rq);
  if (!rq) return 0;
  u64 v = 0;
  if (bpf_core_field_exists(rq->prev_steal_time_rq)) v = BPF_CORE_READ(rq, prev_steal_time_rq);
  if (!v && bpf_core_field_exists(rq->prev_steal_time)) v = BPF_CORE_READ(rq, prev_steal_time);
  return v;
}

/* ---- memory stalls --------------------------------------------------------------- */

/* task_struct.in_memstall: Linux 5.7, "psi: Move PF_MEMSTALL out of task->flags"
 * (before it, PF_MEMSTALL in task->flags; below isotrace's 5.8 floor). Exists only with
 * CONFIG_PSI; without PSI a stall inside reclaim is still seen through the vmscan hooks. */
static __always_inline bool core_task_in_memstall(struct task_struct *p) {
  if (!bpf_core_field_exists(p->in_memstall)) return false;
  return BPF_CORE_READ_BITFIELD_PROBED(p, in_memstall);
}

/* ---- sched_switch's prev_state --------------------------------------------------- */

/* Set by user space from the BTF of btf_trace_sched_switch: 1 when the tracepoint passes
 * prev_state (Linux 5.18, "sched/tracing: Don't re-read p->state when emitting
 * sched_switch event"; it also fixed the race that re-reading the state has). Before
 * 5.18 the tracepoint has three arguments: reading a fourth is rejected by the verifier,
 * so the read below sits behind this constant (dead code to the verifier there). */
const volatile __u8 switch_has_prev_state = 1;

/* task_struct.state became __state in Linux 5.14, "sched: Change task_struct::state". */
struct task_struct___pre514 {
  long state;
} __attribute__((preserve_access_index));

/* The switched-out task's state: the tracepoint's own argument when it has one, else the
 * task's state field (the pre-5.18 race: a concurrent wakeup can make a sleeping task
 * look runnable, i.e. RUNQ instead of SLEEP for that one interval). ctx is the raw
 * tp_btf context: {preempt, prev, next[, prev_state]}. */
static __always_inline unsigned int core_switch_prev_state(__u64 *ctx, struct task_struct *prev) {
  if (switch_has_prev_state) return (unsigned int)ctx[3];
  if (bpf_core_field_exists(prev->__state)) return BPF_CORE_READ(prev, __state);
  struct task_struct___pre514 *old = (void *)prev;
  return (unsigned int)BPF_CORE_READ(old, state);
}

/* ---- tracepoints whose arguments changed (decided in user space) ----------------- */
/*
 * - oom:mark_victim: (struct task_struct *task, uid_t uid) since "mm, oom: add more
 *   information to mark_victim tracepoint" (Linux 6.8, backported to 6.1.y: Debian's
 *   6.1.192 has it); before, (int pid). daemon/probes/l7_probe.cc loads the program only
 *   when the first argument is a task_struct pointer, else OOM kills are not reported
 *   (logged), never reported with a pid read as a pointer.
 * - tcp:tcp_send_reset gained `reason` (Linux 6.10, "net: introduce rstreason to detect
 *   why the RST is sent") and tcp:tcp_retransmit_skb an `err` argument (Linux 6.16?):
 *   only the first argument (sk) is read, which every version has.
 * - cgroup ids: kernfs_node.id is a u64 since Linux 5.5, "kernfs: convert
 *   kernfs_node->id from union kernfs_node_id to u64" (below the 5.8 floor).
 */

#endif /* ISOTRACE_BPF_CORE_FIXES_BPF_H_ */
