/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
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
  /* Kernel incidents (no payload, not tied to a syscall): `sock_id` names the socket;
   * tgid/tid/comm are whatever task the kernel ran the hook in. */
  L7_EV_RETRANSMIT = 5, /* tcp_retransmit_skb */
  L7_EV_RESET_RECV = 6, /* tcp_receive_reset: the peer reset the connection */
  L7_EV_RESET_SENT = 7, /* tcp_send_reset */
  L7_EV_OOM_KILL = 8,   /* mark_victim: `ret` = victim tgid, `cgroup_id` = victim's cgroup */
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

/* Cumulative accounting of the calling thread at the syscall's exit, kept in the kernel
 * by the scheduler hooks (acct.bpf.h). A span's breakdown is the difference of two
 * snapshots (DESIGN.md: account in the kernel, snapshot at request boundaries).
 * Every nanosecond since the thread's first socket syscall falls in exactly one of the
 * first six counters; steal is a part of oncpu. All zero when `valid` is 0. */
struct l7_thread_acct {
  __u64 oncpu_ns;     /* on a CPU (outside memory stalls) */
  __u64 runq_ns;      /* runnable, waiting for a CPU */
  __u64 throttled_ns; /* runnable, held back by CFS bandwidth (cgroup CPU quota) */
  __u64 blkio_ns;     /* asleep in I/O wait (in_iowait) */
  __u64 memstall_ns;  /* in direct/memcg reclaim, or asleep in a PSI memory stall */
  __u64 sleep_ns;     /* asleep for any other reason (network, locks, timers) */
  __u64 steal_ns;     /* hypervisor steal on the CPU while this thread was on it */
  __u32 throttle_count; /* times switched out throttled */
  __u32 valid;        /* 1: the accounting hooks are attached */
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
  __u32 srtt_us;       /* TCP smoothed RTT of the socket (µs) at the event */
  __u32 retransmits;   /* retransmits seen on the socket so far (tcp_retransmit_skb) */
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
