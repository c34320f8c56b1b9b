// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * l7: socket syscalls on TCP sockets, with a bounded prefix of each payload.
 *
 * Hooks are the per-syscall tracepoints (syscalls/sys_{enter,exit}_*): stable ABI,
 * available where kprobes are not. Entry records the arguments per thread; exit reads
 * the result and the payload and emits one l7_event into the ring buffer. Everything
 * that is not an AF_INET/AF_INET6 SOCK_STREAM socket (files, pipes, ttys, unix sockets,
 * UDP) is filtered out at entry, in the kernel.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "l7.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Not in vmlinux.h: they are macros in the uapi headers. */
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define L7_MAX_IOV 4

/* barrier_var() (bpf_helpers.h) below keeps clang from reusing an unbounded copy of a
 * value the verifier has just bounded. */

/* Set by user space between open and load. */
const volatile __u32 self_tgid = 0;         /* never trace the daemon's own traffic */
const volatile __u32 target_tgid = 0;       /* 0: every process */
const volatile __u32 capture_bytes = 1024;  /* payload prefix, at most L7_MAX_CAPTURE */

/* Ring buffer of struct l7_event (variable length: header + captured bytes).
 * Written by every exit handler, read by daemon/probes. Size set at load. */
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps");

/* Per-CPU counters indexed by enum l7_counter. Written here, summed by user space;
 * live as long as the program. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, L7_CNT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

/* A socket syscall in flight: written at entry, deleted at exit.
 * Key: pid_tgid of the calling thread (one syscall per thread at a time).
 * LRU: a thread killed inside a syscall never reaches the exit hook; LRU evicts it. */
struct inflight {
  __u64 ts;
  __u64 buf;      /* user buffer, or user iovec array when is_vec */
  __u64 sk;       /* struct sock * */
  __s32 fd;
  __u32 iovcnt;
  __u8 syscall;
  __u8 dir;
  __u8 is_vec;
  __u8 pad[5];
};
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, __u64);
  __type(value, struct inflight);
} inflight_calls SEC(".maps");

/* Scratch space to build one event (too big for the 512-byte BPF stack). The extra
 * L7_MAX_CAPTURE bytes let iovec copies use a masked offset plus a bounded length. */
struct scratch {
  struct l7_event ev;
  __u8 overflow[L7_MAX_CAPTURE];
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct scratch);
} scratch_buf SEC(".maps");

static __always_inline void count(__u32 idx) {
  __u64 *v = bpf_map_lookup_elem(&counters, &idx);
  if (v) *v += 1;
}

#include "acct.bpf.h"

static __always_inline bool traced_process(__u32 tgid) {
  if (tgid == self_tgid) return false;
  if (target_tgid && tgid != target_tgid) return false;
  return true;
}

/* fd of the current task → its struct sock when the fd is a TCP (inet stream) socket. */
static __always_inline struct sock *tcp_sock_of_fd(int fd) {
  if (fd < 0) return NULL;
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
  if (!fdt) return NULL;
  unsigned int max_fds = BPF_CORE_READ(fdt, max_fds);
  if ((unsigned int)fd >= max_fds) return NULL;
  struct file **fds = BPF_CORE_READ(fdt, fd);
  struct file *file = NULL;
  if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file) return NULL;
  umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
  if ((mode & S_IFMT) != S_IFSOCK) return NULL;
  struct socket *sock = (struct socket *)BPF_CORE_READ(file, private_data);
  if (!sock) return NULL;
  struct sock *sk = BPF_CORE_READ(sock, sk);
  if (!sk) return NULL;
  __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
  if (family != AF_INET && family != AF_INET6) return NULL;
  __u16 type = BPF_CORE_READ(sk, sk_type);
  if (type != SOCK_STREAM) return NULL;
  return sk;
}

/* Socket identity and TCP state into an event. */
static __always_inline void fill_sock(struct l7_event *ev, const struct sock *sk) {
  ev->sock_id = (__u64)sk;
  __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
  ev->family = (__u8)family;
  ev->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
  ev->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
  __builtin_memset(ev->laddr, 0, sizeof(ev->laddr));
  __builtin_memset(ev->raddr, 0, sizeof(ev->raddr));
  if (family == AF_INET) {
    BPF_CORE_READ_INTO((__u32 *)ev->laddr, sk, __sk_common.skc_rcv_saddr);
    BPF_CORE_READ_INTO((__u32 *)ev->raddr, sk, __sk_common.skc_daddr);
  } else {
    BPF_CORE_READ_INTO(ev->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
    BPF_CORE_READ_INTO(ev->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
  }
  ev->srtt_us = BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) >> 3;
  __u64 key = (__u64)sk;
  __u32 *retrans = bpf_map_lookup_elem(&sock_retrans, &key);
  ev->retransmits = retrans ? *retrans : 0;
}

static __always_inline struct scratch *scratch_event(void) {
  __u32 zero = 0;
  return bpf_map_lookup_elem(&scratch_buf, &zero);
}

static __always_inline struct scratch *new_event(__u8 kind, __u8 dir, __u8 sys, int fd,
                                                 struct sock *sk, __u64 ts_enter, __s64 ret) {
  struct scratch *s = scratch_event();
  if (!s) return NULL;
  struct l7_event *ev = &s->ev;
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  __u64 pid_tgid = bpf_get_current_pid_tgid();

  ev->ts_enter_ns = ts_enter;
  ev->ts_exit_ns = bpf_ktime_get_ns();
  ev->proc_start_ns = BPF_CORE_READ(task, group_leader, start_time);
  ev->cgroup_id = bpf_get_current_cgroup_id();
  ev->ret = ret;
  ev->tgid = pid_tgid >> 32;
  ev->tid = (__u32)pid_tgid;
  ev->fd = fd;
  ev->captured = 0;
  ev->kind = kind;
  ev->dir = dir;
  ev->syscall = sys;
  bpf_get_current_comm(ev->comm, sizeof(ev->comm));
  fill_sock(ev, sk);
  acct_snapshot(&ev->acct, ev->ts_exit_ns);
  return s;
}

static __always_inline void submit(struct scratch *s) {
  __u32 len = s->ev.captured;
  if (len > L7_MAX_CAPTURE) len = L7_MAX_CAPTURE;
  if (bpf_ringbuf_output(&events, &s->ev, L7_EVENT_HEADER_SIZE + len, 0))
    count(L7_CNT_RINGBUF_DROPS);
  else
    count(L7_CNT_EVENTS);
}

/* ---- entry side ---------------------------------------------------------------- */

static __always_inline int enter_call(int fd, __u64 buf, __u32 iovcnt, __u8 sys, __u8 dir,
                                      __u8 is_vec, bool need_sock) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  if (!traced_process(pid_tgid >> 32)) return 0;
  struct sock *sk = NULL;
  if (need_sock) {
    sk = tcp_sock_of_fd(fd);
    if (!sk) return 0;
  }
  struct inflight call = {};
  call.ts = bpf_ktime_get_ns();
  call.buf = buf;
  call.sk = (__u64)sk;
  call.fd = fd;
  call.iovcnt = iovcnt;
  call.syscall = sys;
  call.dir = dir;
  call.is_vec = is_vec;
  if (bpf_map_update_elem(&inflight_calls, &pid_tgid, &call, BPF_ANY)) count(L7_CNT_ARGS_FULL);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_read")
int enter_read(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], ctx->args[1], 0, L7_SYS_READ, L7_DIR_INGRESS, 0, true);
}
SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], ctx->args[1], 0, L7_SYS_RECVFROM, L7_DIR_INGRESS, 0, true);
}
SEC("tracepoint/syscalls/sys_enter_readv")
int enter_readv(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], ctx->args[1], ctx->args[2], L7_SYS_READV, L7_DIR_INGRESS, 1, true);
}
SEC("tracepoint/syscalls/sys_enter_write")
int enter_write(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], ctx->args[1], 0, L7_SYS_WRITE, L7_DIR_EGRESS, 0, true);
}
SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], ctx->args[1], 0, L7_SYS_SENDTO, L7_DIR_EGRESS, 0, true);
}
SEC("tracepoint/syscalls/sys_enter_writev")
int enter_writev(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], ctx->args[1], ctx->args[2], L7_SYS_WRITEV, L7_DIR_EGRESS, 1, true);
}
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int enter_sendfile(struct trace_event_raw_sys_enter *ctx) {
  /* out_fd is the socket; the payload comes from a file and is not captured. */
  return enter_call(ctx->args[0], 0, 0, L7_SYS_SENDFILE, L7_DIR_EGRESS, 0, true);
}

/* recvmsg/sendmsg: the iovec array is behind the user's msghdr. */
static __always_inline int enter_msg(struct trace_event_raw_sys_enter *ctx, __u8 sys, __u8 dir) {
  struct user_msghdr msg = {};
  if (bpf_probe_read_user(&msg, sizeof(msg), (void *)ctx->args[1])) return 0;
  return enter_call(ctx->args[0], (__u64)msg.msg_iov, (__u32)msg.msg_iovlen, sys, dir, 1, true);
}
SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg(struct trace_event_raw_sys_enter *ctx) {
  return enter_msg(ctx, L7_SYS_RECVMSG, L7_DIR_INGRESS);
}
SEC("tracepoint/syscalls/sys_enter_sendmsg")
int enter_sendmsg(struct trace_event_raw_sys_enter *ctx) {
  return enter_msg(ctx, L7_SYS_SENDMSG, L7_DIR_EGRESS);
}

SEC("tracepoint/syscalls/sys_enter_accept")
int enter_accept(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], 0, 0, L7_SYS_ACCEPT, L7_DIR_NONE, 0, false);
}
SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], 0, 0, L7_SYS_ACCEPT4, L7_DIR_NONE, 0, false);
}
SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], 0, 0, L7_SYS_CONNECT, L7_DIR_NONE, 0, true);
}

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  if (!traced_process(pid_tgid >> 32)) return 0;
  int fd = ctx->args[0];
  struct sock *sk = tcp_sock_of_fd(fd);
  if (!sk) return 0;
  __u64 now = bpf_ktime_get_ns();
  struct scratch *s = new_event(L7_EV_CLOSE, L7_DIR_NONE, L7_SYS_CLOSE, fd, sk, now, 0);
  if (s) submit(s);
  return 0;
}

/* ---- exit side ----------------------------------------------------------------- */

static __always_inline void capture_flat(struct scratch *s, __u64 buf, __s64 ret) {
  __u64 n = ret;
  __u64 cap = capture_bytes;
  if (n > cap) n = cap;
  barrier_var(n);
  if (n > L7_MAX_CAPTURE) n = L7_MAX_CAPTURE;
  barrier_var(n);
  if (!buf || !n) return;
  if (bpf_probe_read_user(s->ev.data, n, (void *)buf)) {
    count(L7_CNT_READ_FAIL);
    return;
  }
  s->ev.captured = n;
}

static __always_inline void capture_iov(struct scratch *s, __u64 iov_ptr, __u32 iovcnt, __s64 ret) {
  __u32 cap = capture_bytes;
  if (cap > L7_MAX_CAPTURE) cap = L7_MAX_CAPTURE;
  __u64 left = ret;
  __u32 off = 0;
#pragma unroll
  for (int i = 0; i < L7_MAX_IOV; i++) {
    if (i >= iovcnt || left == 0 || off >= cap) break;
    struct iovec iov = {};
    if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(iov_ptr + i * sizeof(struct iovec)))) break;
    __u64 k = iov.iov_len;
    if (k > left) k = left;
    if (k > cap - off) k = cap - off;
    barrier_var(k);
    if (k > L7_MAX_CAPTURE) k = L7_MAX_CAPTURE;
    barrier_var(k);
    off &= (L7_MAX_CAPTURE - 1);
    barrier_var(off);
    if (k && bpf_probe_read_user(&s->ev.data[off], k, iov.iov_base)) {
      count(L7_CNT_READ_FAIL);
      break;
    }
    off += k;
    left -= k;
  }
  s->ev.captured = off;
}

static __always_inline int exit_call(struct trace_event_raw_sys_exit *ctx) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  struct inflight *call = bpf_map_lookup_elem(&inflight_calls, &pid_tgid);
  if (!call) return 0;
  struct inflight c = *call;
  bpf_map_delete_elem(&inflight_calls, &pid_tgid);
  __s64 ret = ctx->ret;

  struct scratch *s = NULL;
  switch (c.syscall) {
    case L7_SYS_ACCEPT:
    case L7_SYS_ACCEPT4: {
      if (ret < 0) return 0;
      struct sock *sk = tcp_sock_of_fd((int)ret);
      if (!sk) return 0;
      s = new_event(L7_EV_ACCEPT, L7_DIR_NONE, c.syscall, (int)ret, sk, c.ts, ret);
      break;
    }
    case L7_SYS_CONNECT:
      if (ret != 0 && ret != -EINPROGRESS) return 0;
      s = new_event(L7_EV_CONNECT, L7_DIR_NONE, c.syscall, c.fd, (struct sock *)c.sk, c.ts, ret);
      break;
    default:
      if (ret <= 0) return 0;
      s = new_event(L7_EV_DATA, c.dir, c.syscall, c.fd, (struct sock *)c.sk, c.ts, ret);
      if (!s) return 0;
      if (c.is_vec)
        capture_iov(s, c.buf, c.iovcnt, ret);
      else
        capture_flat(s, c.buf, ret);
      break;
  }
  if (s) submit(s);
  return 0;
}

SEC("tracepoint/syscalls/sys_exit_read")
int exit_read(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx); }
SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx); }
SEC("tracepoint/syscalls/sys_exit_readv")
int exit_readv(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx); }
SEC("tracepoint/syscalls/sys_exit_recvmsg")
int exit_recvmsg(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx); }
SEC("tracepoint/syscalls/sys_exit_write")
int exit_write(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx); }
SEC("tracepoint/syscalls/sys_exit_sendto")
int exit_sendto(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx); }
SEC("tracepoint/syscalls/sys_exit_writev")
int exit_writev(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx); }
SEC("tracepoint/syscalls/sys_exit_sendmsg")
int exit_sendmsg(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx); }
SEC("tracepoint/syscalls/sys_exit_sendfile64")
int exit_sendfile(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx); }
SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx); }
SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx); }
SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx); }

/* ---- kernel incidents ------------------------------------------------------------ */

static __always_inline void emit_incident(__u8 kind, const struct sock *sk) {
  struct scratch *s = scratch_event();
  if (!s) return;
  struct l7_event *ev = &s->ev;
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  __builtin_memset(&ev->acct, 0, sizeof(ev->acct));
  ev->ts_enter_ns = ev->ts_exit_ns = bpf_ktime_get_ns();
  ev->proc_start_ns = 0;
  ev->cgroup_id = 0;
  ev->ret = 0;
  ev->tgid = pid_tgid >> 32;
  ev->tid = (__u32)pid_tgid;
  ev->fd = -1;
  ev->captured = 0;
  ev->kind = kind;
  ev->dir = L7_DIR_NONE;
  ev->syscall = 0;
  __builtin_memset(ev->comm, 0, sizeof(ev->comm));
  fill_sock(ev, sk);
  submit(s);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit, const struct sock *sk) {
  __u64 key = (__u64)sk;
  __u32 *v = bpf_map_lookup_elem(&sock_retrans, &key);
  if (v) {
    __sync_fetch_and_add(v, 1);
  } else {
    __u32 one = 1;
    bpf_map_update_elem(&sock_retrans, &key, &one, BPF_NOEXIST);
  }
  emit_incident(L7_EV_RETRANSMIT, sk);
  return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tcp_receive_reset, struct sock *sk) {
  emit_incident(L7_EV_RESET_RECV, sk);
  return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcp_send_reset, const struct sock *sk) {
  if (sk) emit_incident(L7_EV_RESET_SENT, sk);
  return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(oom_mark_victim, struct task_struct *task) {
  struct scratch *s = scratch_event();
  if (!s) return 0;
  struct l7_event *ev = &s->ev;
  __builtin_memset(ev, 0, L7_EVENT_HEADER_SIZE);
  ev->ts_enter_ns = ev->ts_exit_ns = bpf_ktime_get_ns();
  ev->kind = L7_EV_OOM_KILL;
  ev->fd = -1;
  ev->tgid = BPF_CORE_READ(task, tgid);
  ev->tid = BPF_CORE_READ(task, pid);
  ev->ret = ev->tgid;
  ev->proc_start_ns = BPF_CORE_READ(task, group_leader, start_time);
  ev->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
  BPF_CORE_READ_STR_INTO(&ev->comm, task, comm);
  submit(s);
  return 0;
}
