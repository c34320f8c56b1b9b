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
 * Kernel differences (task-based throttling in 6.18, the steal clocks, PSI's
 * in_memstall, sched_switch's prev_state before 5.18) are all in core_fixes.bpf.h; this
 * file reads only fields every supported kernel has.
 */
#ifndef ISOTRACE_BPF_ACCT_BPF_H_
#define ISOTRACE_BPF_ACCT_BPF_H_

#include "core_fixes.bpf.h"

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
  __u16 group;      /* 1 + index into edge_group_acct: a sandbox's thread (0: none) */
  __u8 pad[4];
  __u64 sum_out;    /* the task's se.sum_exec_runtime at its last switch-out */
};

/* Task-local storage: a thread's accounting. Created by the l7 handlers (threads that do
 * socket I/O), updated by the scheduler and vmscan hooks, freed by the kernel with the
 * task. Task storage rather than a hash keyed by tid: sched_switch runs on every context
 * switch of the node, and for the many threads that never did socket I/O the lookup is
 * one pointer test instead of a hash walk. */
struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct acct_state);
} thread_acct SEC(".maps");


/* Sandboxes seen at their network edge (edge.bpf.h): each group sums the accounting of
 * one sandbox's threads (gVisor's Sentry and gofer, a VMM's vCPU threads). Threads join
 * a group through the edge_group_tasks iterator; only they pay the extra adds. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, EDGE_MAX_GROUPS);
  __type(key, __u32);
  __type(value, struct edge_group_acct);
} edge_group_acct SEC(".maps");

enum { GRP_ONCPU, GRP_RUNQ, GRP_THROTTLED, GRP_BLKIO, GRP_MEMSTALL, GRP_SLEEP, GRP_STEAL };

static __always_inline void group_add(const struct acct_state *s, int what, __u64 d) {
  if (!s->group || !d) return;
  __u32 idx = s->group - 1;
  struct edge_group_acct *g = bpf_map_lookup_elem(&edge_group_acct, &idx);
  if (!g) return;
  switch (what) {
    case GRP_ONCPU: __sync_fetch_and_add(&g->oncpu_ns, d); break;
    case GRP_RUNQ: __sync_fetch_and_add(&g->runq_ns, d); break;
    case GRP_THROTTLED: __sync_fetch_and_add(&g->throttled_ns, d); break;
    case GRP_BLKIO: __sync_fetch_and_add(&g->blkio_ns, d); break;
    case GRP_MEMSTALL: __sync_fetch_and_add(&g->memstall_ns, d); break;
    case GRP_SLEEP: __sync_fetch_and_add(&g->sleep_ns, d); break;
    default: __sync_fetch_and_add(&g->steal_ns, d); break;
  }
}

/* The steal clock of the CPU `p` is running on, when user space enabled steal. */
static __always_inline __u64 cpu_steal(struct task_struct *p) {
  if (!steal_enabled) return 0;
  return core_cpu_steal(p);
}

static __always_inline void acct_add(struct acct_state *s, __u32 kind, __u64 d) {
  switch (kind) {
    case ACCT_RUNQ: s->runq += d; group_add(s, GRP_RUNQ, d); break;
    case ACCT_THROTTLED: s->throttled += d; group_add(s, GRP_THROTTLED, d); break;
    case ACCT_BLKIO: s->blkio += d; group_add(s, GRP_BLKIO, d); break;
    case ACCT_MEMSTALL: s->memstall += d; group_add(s, GRP_MEMSTALL, d); break;
    default: s->sleep += d; group_add(s, GRP_SLEEP, d); break;
  }
}

/* Books the on-CPU interval up to `now` and starts a new one. */
static __always_inline void acct_close_on(struct acct_state *s, __u64 now, struct task_struct *p) {
  __u64 d = now - s->on_ts;
  if (s->stall_depth) {
    s->memstall += d;
    group_add(s, GRP_MEMSTALL, d);
  } else {
    s->oncpu += d;
    group_add(s, GRP_ONCPU, d);
  }
  s->on_ts = now;
  __u64 st = cpu_steal(p);
  if (st > s->steal_in) {
    s->steal += st - s->steal_in;
    group_add(s, GRP_STEAL, st - s->steal_in);
  }
  s->steal_in = st;
}

/* include/linux/sched.h: set for the whole of direct and memcg reclaim
 * (memalloc_noreclaim_save). A thread without it is not in reclaim, whatever our nesting
 * count says: a begin whose end we missed must not turn every later wait into a stall. */
#define ISOTRACE_PF_MEMALLOC 0x00000800

static __always_inline void acct_check_stall(struct acct_state *s, struct task_struct *p) {
  if (s->stall_depth && !(BPF_CORE_READ(p, flags) & ISOTRACE_PF_MEMALLOC)) s->stall_depth = 0;
}

/* `p` is running (it is current, or being switched out), yet its state says it is off
 * CPU: its switch-in never reached sched_switch. Seen on this project's Firecracker
 * guest: switches away from one of its init's threads never fire the tracepoint (tracefs
 * shows none either), so the task that runs next comes back unseen. The interval since
 * the switch-out is booked with the kernel's own count of the thread's CPU time in it
 * (se.sum_exec_runtime: exact at switch-out, at most a tick behind while the thread
 * runs) as on-CPU and the rest under the kind the switch-out decided, so every
 * nanosecond still lands in one counter; then the thread is running again. Counted. */
static __always_inline void acct_resync(struct acct_state *s, struct task_struct *p, __u64 now) {
  __u64 span = now - s->off_ts;
  __u64 sum = p->se.sum_exec_runtime;
  __u64 ran = sum > s->sum_out ? sum - s->sum_out : 0;
  if (ran > span) ran = span;
  acct_add(s, s->off_kind, span - ran);
  s->oncpu += ran;
  group_add(s, GRP_ONCPU, ran);
  s->running = 1;
  s->on_ts = now;
  s->steal_in = cpu_steal(p);
  count(L7_CNT_ACCT_RESYNC);
}

/* Books `p`'s time up to `now`: it is running, whatever its state says. */
static __always_inline void acct_bring_to(struct acct_state *s, struct task_struct *p, __u64 now) {
  if (!s->running)
    acct_resync(s, p, now);
  else
    acct_close_on(s, now, p);
}

/* The current thread's counters at `now` (creating its entry on first use). */
static __always_inline void acct_snapshot(struct l7_thread_acct *out, __u64 now) {
  struct task_struct *cur = bpf_get_current_task_btf();
  struct acct_state *s = bpf_task_storage_get(&thread_acct, cur, 0, 0);
  if (!s) {
    s = bpf_task_storage_get(&thread_acct, cur, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    __builtin_memset(out, 0, sizeof(*out));
    if (!s) return; /* valid = 0: no breakdown for this span */
    s->running = 1;
    s->on_ts = now;
    s->steal_in = cpu_steal(cur);
    out->valid = 1;
    return;
  }
  /* A syscall's exit is never inside reclaim. */
  s->stall_depth = 0;
  acct_bring_to(s, cur, now);
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

/* Raw context rather than BPF_PROG: the fourth argument (prev_state) exists only since
 * 5.18 and is read only where it does (core_switch_prev_state). */
SEC("tp_btf/sched_switch")
int acct_switch(__u64 *ctx) {
  bool preempt = (bool)ctx[0];
  struct task_struct *prev = (struct task_struct *)ctx[1];
  struct task_struct *next = (struct task_struct *)ctx[2];
  __u64 now = bpf_ktime_get_ns();
  struct acct_state *s = bpf_task_storage_get(&thread_acct, prev, 0, 0);
  if (s) {
    acct_check_stall(s, prev);
    acct_bring_to(s, prev, now); /* not running: it ran, its switch-in was missed */
    s->running = 0;
    s->off_ts = now;
    s->sum_out = prev->se.sum_exec_runtime;
    if (preempt || core_switch_prev_state(ctx, prev) == TASK_RUNNING) {
      if (core_task_throttled(prev)) {
        s->off_kind = ACCT_THROTTLED;
        s->throttle_count++;
        if (s->group) {
          __u32 gi = s->group - 1;
          struct edge_group_acct *g = bpf_map_lookup_elem(&edge_group_acct, &gi);
          if (g) __sync_fetch_and_add(&g->throttle_count, 1);
        }
      } else {
        s->off_kind = ACCT_RUNQ;
      }
    } else if (s->stall_depth || core_task_in_memstall(prev)) {
      s->off_kind = ACCT_MEMSTALL;
    } else if (BPF_CORE_READ_BITFIELD(prev, in_iowait)) {
      s->off_kind = ACCT_BLKIO;
    } else {
      s->off_kind = ACCT_SLEEP;
    }
  }
  s = bpf_task_storage_get(&thread_acct, next, 0, 0);
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
  struct acct_state *s = bpf_task_storage_get(&thread_acct, p, 0, 0);
  if (!s || s->running) return 0;
  if (s->off_kind == ACCT_RUNQ || s->off_kind == ACCT_THROTTLED) return 0;
  __u64 now = bpf_ktime_get_ns();
  acct_add(s, s->off_kind, now - s->off_ts);
  s->off_ts = now;
  s->off_kind = core_task_throttled(p) ? ACCT_THROTTLED : ACCT_RUNQ;
  return 0;
}

static __always_inline int acct_stall(int delta) {
  struct task_struct *cur = bpf_get_current_task_btf();
  struct acct_state *s = bpf_task_storage_get(&thread_acct, cur, 0, 0);
  if (!s) return 0;
  __u64 now = bpf_ktime_get_ns();
  acct_bring_to(s, cur, now);
  if (delta > 0 && s->stall_depth < 255) s->stall_depth++;
  if (delta < 0 && s->stall_depth > 0) s->stall_depth--;
  return 0;
}

/* Puts a sandbox's threads in its accounting group (edge.bpf.h): run by user space over
 * every task (a BPF task iterator) when it finds a sandbox and at each rescan, so the
 * scheduler hooks pay nothing for threads outside groups. key: tgid, value: 1 + group. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, EDGE_MAX_GROUPS * 4);
  __type(key, __u32);
  __type(value, __u32);
} edge_group_tgids SEC(".maps");

SEC("iter/task")
int edge_group_tasks(struct bpf_iter__task *ctx) {
  struct task_struct *t = ctx->task;
  if (!t) return 0;
  __u32 tgid = t->tgid;
  __u32 *grp = bpf_map_lookup_elem(&edge_group_tgids, &tgid);
  struct acct_state *s = bpf_task_storage_get(&thread_acct, t, 0, 0);
  if (!grp) {
    if (s && s->group) s->group = 0; /* the group was removed (sandbox gone, pid reused) */
    return 0;
  }
  if (!s) {
    s = bpf_task_storage_get(&thread_acct, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!s) return 0;
    /* A new entry starts now, in the state the task is in (the first interval may be
     * booked under a slightly wrong kind; every later one is exact). */
    __u64 now = bpf_ktime_get_ns();
    if (t->on_cpu) {
      s->running = 1;
      s->on_ts = now;
    } else {
      s->running = 0;
      s->off_ts = now;
      s->sum_out = t->se.sum_exec_runtime;
      s->off_kind = (bpf_core_field_exists(t->__state) && t->__state == TASK_RUNNING) ? ACCT_RUNQ : ACCT_SLEEP;
    }
  }
  s->group = (__u16)*grp;
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
