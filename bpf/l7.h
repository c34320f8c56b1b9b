/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ABI of the l7 probe family: bytes moved on TCP sockets, with the first bytes of each
 * message, per-connection byte positions, connection lifecycle and kernel incidents.
 *
 * The only thing shared between kernel and user space for this family. Fixed-width
 * fields only; daemon/probes checks the layout with static_asserts.
 *
 * Event design (why, in short: cost is per record, so records must be cheap):
 * - One record per segment (one send/recv call on a socket), but only a message's first
 *   `capture_bytes` bytes are copied. A message starts at the first segment after the
 *   other direction moved, or at a segment that opens like an HTTP start line; later
 *   segments of the message carry only their byte count (captured = 0).
 * - Every data record carries `pos`, the byte offset of its first byte in its direction
 *   of the connection, and `seq`, the connection's record number. A record lost in the
 *   ring buffer therefore shows up as a jump in `seq` and in `pos`: the framers skip the
 *   exact number of bytes, resync where they must, and count the gap.
 * - Records are submitted without waking the reader (BPF_RB_NO_WAKEUP); user space polls
 *   on a short timer (50 ms while records flow, up to 200 ms when a wait brought none)
 *   and the kernel forces a wake-up only when the ring fills past `wakeup_bytes`.
 * - TLS (OpenSSL, uprobes on SSL_read/SSL_write/_ex/SSL_do_handshake): a socket segment
 *   moved while the thread is inside one of those calls ties the SSL object to the
 *   socket and marks the connection TLS. From then on its ciphertext is only counted, and
 *   the plaintext each call returned or accepted becomes the connection's data records
 *   (same conn_id, 4-tuple and lifecycle records; positions count plaintext bytes; a
 *   plaintext series of `seq` of its own).
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
  L7_EV_DATA = 1,     /* bytes moved on a socket; `len` = byte count, `pos` its offset */
  L7_EV_CLOSE = 4,    /* the socket reached TCP_CLOSE (both directions are over) */
  /* Kernel incidents (no payload, not tied to a syscall): `sock_id` names the socket;
   * tgid/proc_start/cgroup are the connection's owner (the last process that moved
   * bytes on it). Only for connections the probe tracks. */
  L7_EV_RETRANSMIT = 5, /* tcp_retransmit_skb (SYN retransmits included) */
  L7_EV_RESET_RECV = 6, /* tcp_receive_reset: the peer reset the connection */
  L7_EV_RESET_SENT = 7, /* tcp_send_reset */
  L7_EV_OOM_KILL = 8,   /* mark_victim: `tgid` = victim, `cgroup_id` = victim's cgroup */
  L7_EV_FIN = 9,        /* a FIN ended one direction: `dir` = which (egress: we sent it) */
  /* TLS: the first bytes of the handshake record that carries the ServerHello, as it
   * crossed the socket (`dir`: this side received or sent it), so user space can read the
   * negotiated version. Once per TLS connection; no position. */
  L7_EV_TLS_HELLO = 10,
  /* kfree_skb with reason NETFILTER_DROP of a packet a tracked socket sent: the node's
   * own firewall dropped it on the way out. TCP then resends without counting (or
   * tracing) a retransmission, so this is the only trace of that loss. */
  L7_EV_LOCAL_DROP = 11,
  /* This side connect()ed: sent once, just before the connection's first data record.
   * `ts_ns` = conn_start_ns (SYN_SENT), `acct` = the connecting thread's accounting at
   * that moment, `retransmits` = SYN retransmits until the first data. */
  L7_EV_CONNECT = 12,
  /* tcp_retransmit_synack: a listener resent the SYN-ACK of a connection not yet
   * accepted. No connection state exists yet: conn_id/sock_id are 0 and the tuple is the
   * server's view (laddr/lport the listening side, raddr/rport the connecting peer).
   * Rate-limited per CPU (L7_CNT_SYNACK_LIMITED counts what was not sent). */
  L7_EV_SYNACK_RETRANSMIT = 13,
};

enum l7_direction {
  L7_DIR_NONE = 0,
  L7_DIR_INGRESS = 1, /* the process received (read/recv*) */
  L7_DIR_EGRESS = 2,  /* the process sent (write/send*, sendfile) */
};

/* The syscall that moved a segment, where known (0 otherwise: io_uring, splice, ...). */
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
  /* TLS plaintext, from OpenSSL's calls (uprobes): the record's bytes and positions are
   * the plaintext stream of the connection; its ciphertext produces no data records. */
  L7_SYS_SSL_READ = 10,  /* SSL_read, SSL_read_ex */
  L7_SYS_SSL_WRITE = 11, /* SSL_write, SSL_write_ex */
};

/* Bits of l7_event.flags. */
enum l7_event_flags {
  L7_F_MSG_START = 1 << 0, /* the segment starts a message (see the event design) */
  L7_F_NEW_CONN = 1 << 1,  /* first record of this connection */
  L7_F_CONNECTED = 1 << 2, /* this side connect()ed: conn_start/established are set */
  L7_F_TLS = 1 << 3,       /* the connection is TLS: data records carry the plaintext */
  /* acct was taken at ts_enter_ns, not at ts_ns: the first write of a request on a
   * connection this side opened, timed from the start of the send (tcp_sendmsg_locked) */
  L7_F_ACCT_AT_ENTER = 1 << 4,
};

/* Cumulative accounting of the calling thread at the event, kept in the kernel by the
 * scheduler hooks (acct.bpf.h). A span's breakdown is the difference of two snapshots
 * (account in the kernel, snapshot at request boundaries). Every nanosecond since the
 * thread's first socket I/O falls in exactly one of the first six counters; steal is a
 * part of oncpu. All zero when `valid` is 0. */
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
  __u64 ts_ns;         /* bpf_ktime_get_ns() when the bytes moved (CLOCK_MONOTONIC) */
  __u64 ts_enter_ns;   /* the syscall's entry where the hook sees it (or, with
                        * L7_F_ACCT_AT_ENTER, the start of the send), else == ts_ns */
  __u64 conn_id;       /* the probe's id of the connection: unique, never reused */
  __u64 sock_id;       /* kernel struct sock address: opaque, reused after close */
  __u64 proc_start_ns; /* group leader's start_time: (tgid, start) names a process */
  __u64 cgroup_id;     /* cgroup v2 id of the task */
  __u64 pos;           /* DATA: offset of the segment's first byte in its direction */
  __u64 len;           /* DATA: bytes the segment moved */
  __u64 conn_start_ns; /* L7_F_CONNECTED: connect() began (SYN_SENT) */
  __u64 established_ns;/* L7_F_CONNECTED: the handshake completed (0: not yet) */
  __u32 seq;           /* the connection's record number, from 0; a jump = lost records */
  __u32 tgid;
  __u32 tid;
  __s32 fd;            /* the socket's fd where the hook knows it, else -1 */
  __u32 captured;      /* valid bytes in data[] */
  __u16 lport;         /* local port, host order */
  __u16 rport;         /* remote port, host order */
  __u8 kind;           /* enum l7_event_kind */
  __u8 dir;            /* enum l7_direction */
  __u8 family;         /* AF_INET or AF_INET6 */
  __u8 syscall;        /* enum l7_syscall */
  __u8 flags;          /* enum l7_event_flags */
  __u8 pad[3];
  __u8 laddr[16];      /* local address (IPv4 in the first 4 bytes) */
  __u8 raddr[16];      /* remote address */
  char comm[16];
  struct l7_thread_acct acct;
  __u32 srtt_us;       /* TCP smoothed RTT of the socket (µs) at the event */
  __u32 retransmits;   /* retransmits on the socket since the probe first saw it */
  __u32 netns;         /* connections this side connect()ed: the socket's network
                        * namespace (inode number, as of /proc/<pid>/ns/net), for the
                        * daemon's conntrack lookup; 0 otherwise */
  __u32 pad2;
  __u8 data[L7_MAX_CAPTURE];
};

#define L7_EVENT_HEADER_SIZE (sizeof(struct l7_event) - L7_MAX_CAPTURE)

/* ---- edge: packets at a sandbox's network edge (edge.bpf.h) ------------------------
 *
 * Workloads whose sockets never reach the host kernel (gVisor's netstack, a microVM's
 * guest kernel) are seen where their packets cross into the host: a TC (clsact)
 * program on the host side of their veth or tap. One record per TCP packet that carries
 * data or SYN/FIN/RST (pure ACKs are not reported); the first EDGE_HEAD_WINDOW bytes of
 * each message (after a change of direction) carry up to `edge_capture_bytes` of
 * payload, later packets only their length. Sequence numbers travel raw: user space
 * (daemon/probes/edge_reassembly) puts segments in order, drops retransmits and turns
 * holes into gaps. Records go to their own ring buffer, `edge_events`. */
#define EDGE_MAX_CAPTURE 1024
#define EDGE_HEAD_WINDOW 4096
#define EDGE_MAX_GROUPS 256

enum edge_dir {
  EDGE_TO_SANDBOX = 1,   /* left the host for the sandbox: egress on the host-side device */
  EDGE_FROM_SANDBOX = 2, /* came out of the sandbox: ingress on the host-side device */
};

/* TCP header flag bits as on the wire (byte 13). */
enum edge_tcp_flags {
  EDGE_TCP_FIN = 0x01,
  EDGE_TCP_SYN = 0x02,
  EDGE_TCP_RST = 0x04,
  EDGE_TCP_ACK = 0x10,
};

/* A device the edge program watches (key: ifindex), written by user space. */
struct edge_iface {
  __u32 group; /* index into edge_group_acct (the sandbox's threads), < EDGE_MAX_GROUPS */
  __u32 flags; /* reserved */
};

/* Time accounting summed over a sandbox's threads (acct.bpf.h books it for every thread
 * whose task storage names the group): the sandbox-level breakdown of its edge spans. */
struct edge_group_acct {
  __u64 oncpu_ns, runq_ns, throttled_ns, blkio_ns, memstall_ns, sleep_ns, steal_ns;
  __u64 throttle_count;
};

struct edge_event {
  __u64 ts_ns;        /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
  __u32 ifindex;      /* the host-side device */
  __u32 tcp_seq;      /* host order */
  __u32 tcp_ack;
  __u32 len;          /* TCP payload bytes in the packet (a GSO packet: all of them) */
  __u32 captured;     /* valid bytes in data[] */
  __u16 sport, dport; /* host order */
  __u8 family;        /* AF_INET / AF_INET6 */
  __u8 dir;           /* enum edge_dir */
  __u8 tcp_flags;     /* enum edge_tcp_flags */
  __u8 pad;
  __u8 saddr[16], daddr[16];
  struct l7_thread_acct acct; /* the device's group, summed over its threads (valid = 1) */
  __u8 data[EDGE_MAX_CAPTURE];
};
#define EDGE_EVENT_HEADER_SIZE (sizeof(struct edge_event) - EDGE_MAX_CAPTURE)

/* Index into the per-CPU `counters` array map. */
enum l7_counter {
  L7_CNT_RINGBUF_DROPS = 0, /* ring buffer full: record lost (shows as a seq/pos gap) */
  L7_CNT_ARGS_FULL = 1,     /* syscall fallback: in-flight syscall table full */
  L7_CNT_READ_FAIL = 2,     /* payload could not be read from user memory */
  L7_CNT_EVENTS = 3,        /* records handed to the ring buffer */
  L7_CNT_WAKEUPS = 4,       /* records submitted with a forced wake-up */
  L7_CNT_TLS_UNTIED = 5,    /* TLS plaintext whose socket was never seen (not reported) */
  L7_CNT_TLS_CIPHER = 6,    /* ciphertext segments of TLS connections (not reported) */
  L7_CNT_EDGE_PACKETS = 7,  /* edge: TCP packets reported */
  L7_CNT_EDGE_DROPS = 8,    /* edge: edge_events ring buffer full (the packet is lost to us) */
  L7_CNT_EDGE_MALFORMED = 9,/* edge: packet headers that could not be read */
  L7_CNT_SYNACK_LIMITED = 10, /* SYN-ACK retransmits over the per-CPU rate (a SYN flood) */
  L7_CNT_ACCT_RESYNC = 11,  /* a thread seen running whose switch-in the accounting missed */
  L7_CNT_MAX = 12,
};

#endif /* ISOTRACE_BPF_L7_H_ */
