/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Per-thread time accounting for the vertical breakdown (included by l7.bpf.c; its
 * snapshot travels in struct l7_thread_acct, l7.h).
 *
 * A thread is tracked from its first socket syscall on (l7 exit handlers create its
 * entry); the scheduler hooks only update threads already in the table, so a context
 * switch of any other thread costs one failed hash lookup. The state machine:
 *
 *   running ──switch-out──► off-CPU, kind decided at switch-out:
 *                             preempted/runnable → RUNQ, or THROTTLED when its CFS
 *                             bandwidth is exhausted; asleep → MEMSTALL (in reclaim or a
 *                             PSI memstall), BLKIO (in_iowait), else SLEEP
 *   asleep ──wakeup──► the sleep so far is booked, the rest of the wait is RUNQ/THROTTLED
 *   off-CPU ──switch-in──► the wait is booked under its kind, running again
 *
 * so every nanosecond lands in exactly one counter (the sum-to-duration invariant).
 * Direct and memcg reclaim (vmscan tracepoints) turn on-CPU time into MEMSTALL.
 * Steal: the runqueue's paravirt steal clock (rq.prev_steal_time_rq, updated at every
 * rq clock update; rq.prev_steal_time, updated at ticks, where the former stays 0) is
 * read at switch-in and switch-out; the difference is steal while this thread held the
 * CPU (part of its on-CPU time). The per-CPU kernel_cpustat would be simpler but needs a
 * kallsyms address that kernels without CONFIG_KALLSYMS_ALL (this build machine's) lack.
 *
 * Kernel differences, each guarded by CO-RE existence checks:
 * - task_struct.throttled (task-based CFS throttling, 6.18+): set on a task dequeued
 *   for throttling. Before it, a throttled hierarchy shows as cfs_rq.throttle_count > 0.
 * - rq.prev_steal_time{,_rq} exist with CONFIG_PARAVIRT_TIME_ACCOUNTING, cfs_rq.rq with
 *   CONFIG_FAIR_GROUP_SCHED; without them (or with steal_enabled = 0) steal is not
 *   measured and user space leaves the attribute out.
 */
#ifndef ISOTRACE_BPF_ACCT_BPF_H_
#define ISOTRACE_BPF_ACCT_BPF_H_

#define TASK_RUNNING 0

enum acct_kind {
  ACCT_RUNQ = 1,
  ACCT_THROTTLED = 2,
  ACCT_BLKIO = 3,
  ACCT_MEMSTALL = 4,
  ACCT_SLEEP = 5,
};

const volatile __u8 steal_enabled = 0; /* set by user space when the kernel has rq steal */

struct acct_state {
  __u64 oncpu, runq, throttled, blkio, memstall, sleep, steal;
  __u64 on_ts;     /* start of the current on-CPU interval (running) */
  __u64 off_ts;    /* start of the current off-CPU interval (!running) */
  __u64 steal_in;  /* the CPU's steal counter when this interval began */
  __u32 off_kind;  /* enum acct_kind of the current off-CPU interval */
  __u32 throttle_count;
  __u8 running;
  __u8 stall_depth; /* inside reclaim (nesting counted) */
  __u8 pad[6];
};

/* Key: thread id. Value: its accounting. Created by the l7 exit handlers (threads that
 * do socket I/O), updated by the scheduler and vmscan hooks, evicted LRU (threads that
 * exited are never deleted explicitly). */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 32768);
  __type(key, __u32);
  __type(value, struct acct_state);
} thread_acct SEC(".maps");

/* Key: struct sock address. Value: retransmits on that socket. Written by the tcp
 * tracepoint, read into every l7 event of the socket; LRU (sockets are not tracked to
 * their destruction). */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, __u32);
} sock_retrans SEC(".maps");

/* The steal clock of the CPU `p` is running on (p is current or being switched). */
static __always_inline __u64 cpu_steal(struct task_struct *p) {
  if (!steal_enabled) return 0;
  if (!bpf_core_field_exists(struct rq, prev_steal_time_rq) || !bpf_core_field_exists(struct cfs_rq, rq))
    return 0;
  struct rq *rq = BPF_CORE_READ(p, se.cfs_rq, rq);
  if (!rq) return 0;
  __u64 v = BPF_CORE_READ(rq, prev_steal_time_rq);
  if (!v) v = BPF_CORE_READ(rq, prev_steal_time);
  return v;
}

static __always_inline void acct_add(struct acct_state *s, __u32 kind, __u64 d) {
  switch (kind) {
    case ACCT_RUNQ: s->runq += d; break;
    case ACCT_THROTTLED: s->throttled += d; break;
    case ACCT_BLKIO: s->blkio += d; break;
    case ACCT_MEMSTALL: s->memstall += d; break;
    default: s->sleep += d; break;
  }
}

/* Books the on-CPU interval up to `now` and starts a new one. */
static __always_inline void acct_close_on(struct acct_state *s, __u64 now, struct task_struct *p) {
  __u64 d = now - s->on_ts;
  if (s->stall_depth)
    s->memstall += d;
  else
    s->oncpu += d;
  s->on_ts = now;
  __u64 st = cpu_steal(p);
  if (st > s->steal_in) s->steal += st - s->steal_in;
  s->steal_in = st;
}

/* include/linux/sched.h: set for the whole of direct and memcg reclaim
 * (memalloc_noreclaim_save). A thread without it is not in reclaim, whatever our nesting
 * count says: a begin whose end we missed must not turn every later wait into a stall. */
#define ISOTRACE_PF_MEMALLOC 0x00000800

static __always_inline void acct_check_stall(struct acct_state *s, struct task_struct *p) {
  if (s->stall_depth && !(BPF_CORE_READ(p, flags) & ISOTRACE_PF_MEMALLOC)) s->stall_depth = 0;
}

static __always_inline bool task_throttled(struct task_struct *p) {
  if (bpf_core_field_exists(p->throttled) && BPF_CORE_READ(p, throttled)) return true;
  struct cfs_rq *cfs = BPF_CORE_READ(p, se.cfs_rq);
  return cfs && BPF_CORE_READ(cfs, throttle_count) > 0;
}

/* The current thread's counters at `now` (creating its entry on first use). */
static __always_inline void acct_snapshot(struct l7_thread_acct *out, __u64 now) {
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct task_struct *cur = (struct task_struct *)bpf_get_current_task();
  struct acct_state *s = bpf_map_lookup_elem(&thread_acct, &tid);
  if (!s) {
    struct acct_state init = {};
    init.running = 1;
    init.on_ts = now;
    init.steal_in = cpu_steal(cur);
    bpf_map_update_elem(&thread_acct, &tid, &init, BPF_NOEXIST);
    __builtin_memset(out, 0, sizeof(*out));
    out->valid = 1;
    return;
  }
  /* A syscall's exit is never inside reclaim. */
  s->stall_depth = 0;
  if (s->running) acct_close_on(s, now, cur);
  out->oncpu_ns = s->oncpu;
  out->runq_ns = s->runq;
  out->throttled_ns = s->throttled;
  out->blkio_ns = s->blkio;
  out->memstall_ns = s->memstall;
  out->sleep_ns = s->sleep;
  out->steal_ns = s->steal;
  out->throttle_count = s->throttle_count;
  out->valid = 1;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(acct_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
             unsigned int prev_state) {
  __u64 now = bpf_ktime_get_ns();
  __u32 ptid = prev->pid;
  struct acct_state *s = bpf_map_lookup_elem(&thread_acct, &ptid);
  if (s && s->running) {
    acct_check_stall(s, prev);
    acct_close_on(s, now, prev);
    s->running = 0;
    s->off_ts = now;
    if (preempt || prev_state == TASK_RUNNING) {
      if (task_throttled(prev)) {
        s->off_kind = ACCT_THROTTLED;
        s->throttle_count++;
      } else {
        s->off_kind = ACCT_RUNQ;
      }
    } else if (s->stall_depth || BPF_CORE_READ_BITFIELD(prev, in_memstall)) {
      s->off_kind = ACCT_MEMSTALL;
    } else if (BPF_CORE_READ_BITFIELD(prev, in_iowait)) {
      s->off_kind = ACCT_BLKIO;
    } else {
      s->off_kind = ACCT_SLEEP;
    }
  }
  __u32 ntid = next->pid;
  s = bpf_map_lookup_elem(&thread_acct, &ntid);
  if (s && !s->running) {
    acct_add(s, s->off_kind, now - s->off_ts);
    s->running = 1;
    s->on_ts = now;
    s->steal_in = cpu_steal(next);
  }
  return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(acct_wakeup, struct task_struct *p) {
  __u32 tid = p->pid;
  struct acct_state *s = bpf_map_lookup_elem(&thread_acct, &tid);
  if (!s || s->running) return 0;
  if (s->off_kind == ACCT_RUNQ || s->off_kind == ACCT_THROTTLED) return 0;
  __u64 now = bpf_ktime_get_ns();
  acct_add(s, s->off_kind, now - s->off_ts);
  s->off_ts = now;
  s->off_kind = task_throttled(p) ? ACCT_THROTTLED : ACCT_RUNQ;
  return 0;
}

static __always_inline int acct_stall(int delta) {
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct acct_state *s = bpf_map_lookup_elem(&thread_acct, &tid);
  if (!s || !s->running) return 0;
  acct_close_on(s, bpf_ktime_get_ns(), (struct task_struct *)bpf_get_current_task());
  if (delta > 0 && s->stall_depth < 255) s->stall_depth++;
  if (delta < 0 && s->stall_depth > 0) s->stall_depth--;
  return 0;
}

SEC("tp_btf/mm_vmscan_direct_reclaim_begin")
int BPF_PROG(acct_reclaim_begin) { return acct_stall(1); }
SEC("tp_btf/mm_vmscan_direct_reclaim_end")
int BPF_PROG(acct_reclaim_end) { return acct_stall(-1); }
SEC("tp_btf/mm_vmscan_memcg_reclaim_begin")
int BPF_PROG(acct_memcg_reclaim_begin) { return acct_stall(1); }
SEC("tp_btf/mm_vmscan_memcg_reclaim_end")
int BPF_PROG(acct_memcg_reclaim_end) { return acct_stall(-1); }

#endif /* ISOTRACE_BPF_ACCT_BPF_H_ */
