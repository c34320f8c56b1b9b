/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * ABI of the l7 probe family: socket syscalls (accept/connect/read/write/close and
 * their variants) on TCP sockets, with a bounded prefix of each payload.
 *
 * The only thing shared between kernel and user space for this family. Fixed-width
 * fields only; daemon/probes checks the layout with static_asserts.
 */
#ifndef ISOTRACE_BPF_L7_H_
#define ISOTRACE_BPF_L7_H_

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Largest payload prefix one event can carry (a power of two). The prefix actually
 * captured is set at load time (l7_bpf rodata `capture_bytes`, at most this). */
#define L7_MAX_CAPTURE 4096

enum l7_event_kind {
  L7_EV_DATA = 1,     /* bytes moved on a socket; `ret` = byte count */
  L7_EV_ACCEPT = 2,   /* a connection accepted; `fd` = the new socket */
  L7_EV_CONNECT = 3,  /* connect() returned 0 or -EINPROGRESS */
  L7_EV_CLOSE = 4,    /* close() of a TCP socket fd */
};

enum l7_direction {
  L7_DIR_NONE = 0,
  L7_DIR_INGRESS = 1, /* the process received (read/recv*) */
  L7_DIR_EGRESS = 2,  /* the process sent (write/send*, sendfile) */
};

enum l7_syscall {
  L7_SYS_READ = 1,
  L7_SYS_RECVFROM = 2,
  L7_SYS_RECVMSG = 3,
  L7_SYS_READV = 4,
  L7_SYS_WRITE = 5,
  L7_SYS_SENDTO = 6,
  L7_SYS_SENDMSG = 7,
  L7_SYS_WRITEV = 8,
  L7_SYS_SENDFILE = 9,
  L7_SYS_ACCEPT = 10,
  L7_SYS_ACCEPT4 = 11,
  L7_SYS_CONNECT = 12,
  L7_SYS_CLOSE = 13,
};

/* Snapshot of the calling thread's own scheduler accounting, read from its
 * task_struct at the syscall's exit. A span's breakdown is the difference of two
 * snapshots (DESIGN.md: account in the kernel, snapshot at request boundaries). */
struct l7_thread_acct {
  __u64 oncpu_ns;   /* se.sum_exec_runtime + the running slice since se.exec_start */
  __u64 runq_ns;    /* sched_info.run_delay: runnable, waiting for a CPU */
  __u64 pcount;     /* sched_info.pcount: times run on a CPU */
  __u64 reserved[5];/* filled by later accounting (throttled, blkio, stall, steal) */
};

struct l7_event {
  __u64 ts_enter_ns;   /* bpf_ktime_get_ns() at syscall entry (CLOCK_MONOTONIC) */
  __u64 ts_exit_ns;    /* at syscall exit (== ts_enter_ns for close) */
  __u64 proc_start_ns; /* group leader's start_time: (tgid, start) names a process */
  __u64 sock_id;       /* kernel struct sock address: an opaque per-socket id */
  __u64 cgroup_id;     /* cgroup v2 id of the calling task */
  __s64 ret;           /* syscall return value */
  __u32 tgid;
  __u32 tid;
  __s32 fd;
  __u32 captured;      /* valid bytes in data[] */
  __u16 lport;         /* local port, host order */
  __u16 rport;         /* remote port, host order */
  __u8 kind;           /* enum l7_event_kind */
  __u8 dir;            /* enum l7_direction */
  __u8 family;         /* AF_INET or AF_INET6 */
  __u8 syscall;        /* enum l7_syscall */
  __u8 laddr[16];      /* local address (IPv4 in the first 4 bytes) */
  __u8 raddr[16];      /* remote address */
  char comm[16];
  struct l7_thread_acct acct;
  __u8 data[L7_MAX_CAPTURE];
};

#define L7_EVENT_HEADER_SIZE (sizeof(struct l7_event) - L7_MAX_CAPTURE)

/* Index into the per-CPU `counters` array map. */
enum l7_counter {
  L7_CNT_RINGBUF_DROPS = 0, /* bpf_ringbuf_output failed: ring buffer full */
  L7_CNT_ARGS_FULL = 1,     /* in-flight syscall table full: event not captured */
  L7_CNT_READ_FAIL = 2,     /* payload could not be read from user memory */
  L7_CNT_EVENTS = 3,        /* events handed to the ring buffer */
  L7_CNT_MAX = 4,
};

#endif /* ISOTRACE_BPF_L7_H_ */
