// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * l7: bytes moved on TCP sockets, the first bytes of each message, per-connection byte
 * positions, connection ends and TCP incidents. The event design is in l7.h.
 *
 * Hooks, chosen for cost (every program here runs inside the workloads' syscalls):
 * - Data: `tp_btf/sock_send_length` and `tp_btf/sock_recv_length` (Linux 6.3+). They
 *   fire only for sockets, after the protocol moved the bytes, with the struct sock in
 *   hand: no fd → file → inode → sock walk, and no syscall tracepoint at all, so the
 *   node's other syscalls (files, pipes, epoll) pay nothing. The syscall's own arguments
 *   (fd, user buffer) come from the task's saved registers (bpf_task_pt_regs).
 * - Data on kernels without those tracepoints: the per-syscall tracepoints
 *   (syscalls/sys_{enter,exit}_*), entry walking the fd table to the socket as before.
 *   Exactly one of the two sets is loaded (daemon/probes decides from BTF).
 * - Connection ends: `tp_btf/inet_sock_set_state` (connect start, handshake done, our
 *   FIN, TCP_CLOSE) and a read returning 0 (the peer's FIN, in the reader's order).
 * - Incidents: tcp_retransmit_skb, tcp_receive_reset, tcp_send_reset, only for sockets
 *   this probe tracks; mark_victim (OOM kills).
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
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define MSG_PEEK 2
#define PF_KTHREAD 0x00200000
/* iovecs copied from one segment (until capture_bytes are copied) by the unrolled loop;
 * with bpf_loop (5.17+, `use_bpf_loop`) up to L7_MAX_IOV_LOOP. HTTP/2 writers put frame
 * headers, header blocks and payloads in iovecs of their own, several frames per write,
 * and gRPC's HPACK writes a slice per field (a unary call's HEADERS + DATA: 20+). */
#define L7_MAX_IOV 16
#define L7_MAX_IOV_LOOP 256
/* include/net/tcp_states.h */
#define ISO_TCP_ESTABLISHED 1
#define ISO_TCP_SYN_SENT 2
#define ISO_TCP_FIN_WAIT1 4
#define ISO_TCP_CLOSE 7
#define ISO_TCP_LAST_ACK 9

/* barrier_var() (bpf_helpers.h) below keeps clang from reusing an unbounded copy of a
 * value the verifier has just bounded. */

/* Set by user space between open and load. */
const volatile __u32 self_tgid = 0;         /* never trace the daemon's own traffic */
const volatile __u32 target_tgid = 0;       /* 0: every process */
const volatile __u32 capture_bytes = 1024;  /* per message, at most L7_MAX_CAPTURE */
const volatile __u64 wakeup_bytes = 0;      /* force a wake-up past this; 0: every record */
const volatile __u8 use_bpf_loop = 0;       /* the kernel has bpf_loop: copy many iovecs */
/* 1 when every hook that touches connection state gets a trusted struct sock (the
 * socket tracepoints are loaded): state then lives in socket-local storage. */
const volatile __u8 use_sk_storage = 0;
/* A CLIENT span's first write is timed from its start (send_begin, or enter_call with the
 * per-syscall hooks): failed sends clear its mark; without it they look nothing up. */
const volatile __u8 use_send_begin = 0;
/* The same for TLS, from SSL_write's entry (the uprobes): any kernel. */
const volatile __u8 tls_send_begin = 0;

/* Ring buffer of struct l7_event (variable length: header + captured bytes).
 * Written by every handler, read by daemon/probes. Size set at load. */
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

/* Per-connection state: what makes one record per segment cheap and gaps visible.
 * Key: struct sock address. Created at the first segment of a traced process on a TCP
 * socket (or at its connect), deleted at TCP_CLOSE; LRU evicts what a missed close
 * leaves behind (a re-created entry gets a new id, so user space never mixes the two). */
enum conn_flags {
  CS_CAPTURE_ALL = 1 << 0, /* HTTP/2 prior knowledge: every segment opens frames */
  CS_CONNECTED = 1 << 1,   /* this side connect()ed */
  CS_REPORTED = 1 << 2,    /* at least one record sent */
  CS_EOF_IN = 1 << 3,      /* the reader saw end of stream (FIN reported) */
  CS_FIN_OUT = 1 << 4,     /* our FIN reported */
  CS_TLS = 1 << 5,         /* TLS: the plaintext (tls_conns) is reported, not these bytes */
  CS_CONNECT_SENT = 1 << 6, /* the L7_EV_CONNECT record went out (or was lost) */
  CS_SEND_BEGIN = 1 << 7,  /* a request's first write began: send_begin_ns, connect_acct */
};
struct conn_state {
  __u64 id;
  __u64 pos[2];        /* bytes moved so far, [0] ingress, [1] egress */
  __u64 msg_start[2];  /* pos where the message in progress began */
  __u64 conn_start_ns; /* SYN_SENT */
  __u64 established_ns;
  __u64 send_begin_ns; /* CS_SEND_BEGIN: when the send in progress began */
  __u64 proc_start_ns; /* owner: the last process that moved bytes */
  __u64 cgroup_id;
  __u32 tgid;
  __u32 seq;           /* next record number */
  __u32 retransmits;
  __u16 lport, rport;
  __u8 family;
  __u8 last_dir;       /* enum l7_direction of the last segment */
  __u8 msg_http[2];    /* the message in progress opened like HTTP */
  __u8 flags;          /* enum conn_flags */
  __u8 pad[3];
  __u32 tls_tgid;      /* CS_TLS: the tls_conns key of the plaintext stream */
  __u64 tls_ssl;
  __u32 netns;         /* CS_CONNECTED: network namespace inode (else 0) */
  __u32 pad2;
  __u8 laddr[16], raddr[16];
  char comm[16];
  /* CS_CONNECTED: the connecting thread at SYN_SENT, until the connect record went out;
   * then, with CS_SEND_BEGIN, the sending thread when the send in progress began. */
  struct l7_thread_acct connect_acct;
};
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 32768);
  __type(key, __u64);
  __type(value, struct conn_state);
} conns SEC(".maps");

/* The same state as socket-local storage, where the hooks allow it (use_sk_storage):
 * found through the socket itself rather than a hash walk, freed with the socket, never
 * evicted. Written by the same hooks as `conns`. */
struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct conn_state);
} conn_store SEC(".maps");

/* Connection ids: a boot-unique counter, bumped once per new connection. */
__u64 next_conn_id = 1;

/* Syscall fallback only: a socket syscall in flight, written at entry, deleted at exit.
 * Key: pid_tgid of the calling thread (one syscall per thread at a time). LRU: a thread
 * killed inside a syscall never reaches the exit hook. */
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

/* Scratch space for records whose payload comes from an iovec array (the copy needs a
 * masked offset plus a bounded length, hence the overflow room); flat buffers are read
 * straight into the ring buffer. Per CPU, one record at a time. */
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

/* No wake-up per record: the reader polls on a short timer. Past `wakeup_bytes` of
 * unread data the reader is woken so the ring does not fill. */
/* The reader's position when a wake-up was last forced: until the reader moves, it has
 * been woken already, and forcing again would only cost another interrupt (an IPI, a VM
 * exit on a guest) per record. */
__u64 woken_at_cons = ~0ull;

static __always_inline __u64 submit_flags(void) {
  if (!wakeup_bytes) return 0; /* tests: the kernel's own policy (wake when caught up) */
  if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) < wakeup_bytes) return BPF_RB_NO_WAKEUP;
  __u64 cons = bpf_ringbuf_query(&events, BPF_RB_CONS_POS);
  if (cons == woken_at_cons) return BPF_RB_NO_WAKEUP;
  woken_at_cons = cons;
  count(L7_CNT_WAKEUPS);
  return BPF_RB_FORCE_WAKEUP;
}

/* ---- connection state ------------------------------------------------------------ */

static __always_inline bool is_tcp_sock(const struct sock *sk) {
  if (!sk) return false;
  __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
  if (family != AF_INET && family != AF_INET6) return false;
  if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM) return false;
  return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP;
}

/* The 4-tuple of a socket, or of a request socket (a connection still in a listener's
 * queue): both begin with a struct sock_common. Ports in host order. */
static __always_inline void read_tuple(const struct sock_common *c, __u8 *family, __u16 *lport, __u16 *rport,
                                       __u8 *laddr, __u8 *raddr) {
  __u16 f = BPF_CORE_READ(c, skc_family);
  *family = (__u8)f;
  *lport = BPF_CORE_READ(c, skc_num);
  *rport = bpf_ntohs(BPF_CORE_READ(c, skc_dport));
  if (f == AF_INET) {
    BPF_CORE_READ_INTO((__u32 *)laddr, c, skc_rcv_saddr);
    BPF_CORE_READ_INTO((__u32 *)raddr, c, skc_daddr);
  } else {
    BPF_CORE_READ_INTO(laddr, c, skc_v6_rcv_saddr.in6_u.u6_addr8);
    BPF_CORE_READ_INTO(raddr, c, skc_v6_daddr.in6_u.u6_addr8);
  }
}

static __always_inline void read_addrs(struct conn_state *cs, const struct sock *sk) {
  read_tuple(&sk->__sk_common, &cs->family, &cs->lport, &cs->rport, cs->laddr, cs->raddr);
}

static __always_inline void set_owner(struct conn_state *cs, __u32 tgid) {
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  cs->tgid = tgid;
  cs->proc_start_ns = BPF_CORE_READ(task, group_leader, start_time);
  cs->cgroup_id = bpf_get_current_cgroup_id();
  bpf_get_current_comm(cs->comm, sizeof(cs->comm));
}

/* Connection state of `sk`, or NULL when it is not tracked. With use_sk_storage the
 * verifier sees `sk` as the tracepoint's trusted socket; the other branch is dead code
 * it removes (use_sk_storage is a load-time constant). */
static __always_inline struct conn_state *conn_get(const struct sock *sk) {
  if (use_sk_storage) return bpf_sk_storage_get(&conn_store, (struct sock *)sk, 0, 0);
  __u64 key = (__u64)sk;
  return bpf_map_lookup_elem(&conns, &key);
}

static __always_inline void conn_del(const struct sock *sk) {
  if (use_sk_storage) {
    bpf_sk_storage_delete(&conn_store, (struct sock *)sk);
    return;
  }
  __u64 key = (__u64)sk;
  bpf_map_delete_elem(&conns, &key);
}

static __always_inline struct conn_state *new_conn(const struct sock *sk, __u32 tgid) {
  struct conn_state *cs;
  if (use_sk_storage) {
    cs = bpf_sk_storage_get(&conn_store, (struct sock *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (!cs) return NULL;
  } else {
    struct conn_state init = {};
    __u64 key = (__u64)sk;
    bpf_map_update_elem(&conns, &key, &init, BPF_NOEXIST);
    cs = bpf_map_lookup_elem(&conns, &key);
    if (!cs) return NULL;
  }
  cs->id = __sync_fetch_and_add(&next_conn_id, 1);
  read_addrs(cs, sk);
  set_owner(cs, tgid);
  return cs;
}

/* Header of a record of connection `cs`. */
/* `trusted_sk`: `sk` is the hook's own BTF socket (tracepoints), not an address kept
 * from one (uprobes), so it may be read directly. */
static __always_inline void fill_header(struct l7_event *ev, struct conn_state *cs, const struct sock *sk,
                                        __u8 kind, __u8 dir, __u64 now, bool trusted_sk) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  ev->ts_ns = now;
  ev->ts_enter_ns = now;
  ev->conn_id = cs->id;
  ev->sock_id = (__u64)sk;
  ev->proc_start_ns = cs->proc_start_ns;
  ev->cgroup_id = cs->cgroup_id;
  ev->pos = 0;
  ev->len = 0;
  ev->conn_start_ns = cs->conn_start_ns;
  ev->established_ns = cs->established_ns;
  ev->seq = cs->seq++;
  ev->tgid = cs->tgid;
  ev->tid = (__u32)pid_tgid;
  ev->fd = -1;
  ev->captured = 0;
  ev->lport = cs->lport;
  ev->rport = cs->rport;
  ev->kind = kind;
  ev->dir = dir;
  ev->family = cs->family;
  ev->syscall = 0;
  ev->flags = 0;
  if (!(cs->flags & CS_REPORTED)) ev->flags |= L7_F_NEW_CONN;
  if (cs->flags & CS_CONNECTED) ev->flags |= L7_F_CONNECTED;
  if (cs->flags & CS_TLS) ev->flags |= L7_F_TLS;
  cs->flags |= CS_REPORTED;
  __builtin_memcpy(ev->laddr, cs->laddr, 16);
  __builtin_memcpy(ev->raddr, cs->raddr, 16);
  __builtin_memcpy(ev->comm, cs->comm, 16);
  if (use_sk_storage && trusted_sk) {
    /* A trusted socket: a direct load instead of a probe read. */
    struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
    ev->srtt_us = tp ? tp->srtt_us >> 3 : 0;
  } else {
    ev->srtt_us = BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) >> 3;
  }
  ev->retransmits = cs->retransmits;
  ev->netns = cs->netns;
  ev->pad2 = 0;
}

/* A record with no payload (lifecycle, incidents, uncaptured segments). */
static __always_inline struct l7_event *reserve_small(void) {
  struct l7_event *ev = bpf_ringbuf_reserve(&events, L7_EVENT_HEADER_SIZE, 0);
  if (!ev) count(L7_CNT_RINGBUF_DROPS);
  return ev;
}

static __always_inline void emit_simple_sk(struct conn_state *cs, const struct sock *sk, __u8 kind, __u8 dir,
                                           bool with_acct, bool trusted_sk) {
  __u64 flags = submit_flags();
  struct l7_event *ev = reserve_small();
  if (!ev) {
    cs->seq++; /* the loss shows as a gap */
    return;
  }
  __u64 now = bpf_ktime_get_ns();
  fill_header(ev, cs, sk, kind, dir, now, trusted_sk);
  if (kind == L7_EV_DATA || kind == L7_EV_FIN) {
    __u32 di = dir == L7_DIR_EGRESS ? 1 : 0;
    ev->pos = cs->pos[di & 1];
  }
  if (with_acct)
    acct_snapshot(&ev->acct, now);
  else
    __builtin_memset(&ev->acct, 0, sizeof(ev->acct));
  bpf_ringbuf_submit(ev, flags);
  count(L7_CNT_EVENTS);
}

static __always_inline void emit_simple(struct conn_state *cs, const struct sock *sk, __u8 kind, __u8 dir,
                                        bool with_acct) {
  emit_simple_sk(cs, sk, kind, dir, with_acct, true);
}

/* ---- message starts ---------------------------------------------------------------- */

/* The first bytes of a segment open like an HTTP/1.x start line (a method token and a
 * space, or "HTTP/1."), or like the HTTP/2 connection preface ("PRI * HTTP/2.0"), or —
 * at the very start of a direction (`first`) — like a SETTINGS frame, the server's
 * preface, which many servers (gRPC among them) send before they read the client's. The
 * cheap test that decides what is copied; user space does the real framing. */
enum start_kind { START_NONE = 0, START_HTTP1 = 1, START_H2 = 2 };
static __always_inline int start_kind(const __u8 b[8], bool first) {
  if (b[0] == 'P' && b[1] == 'R' && b[2] == 'I' && b[3] == ' ' && b[4] == '*') return START_H2;
  /* length < 64 KiB, type SETTINGS (4), no flags (not an ACK), stream 0 */
  if (first && b[0] == 0 && b[3] == 4 && b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 0) return START_H2;
  if (b[0] == 'H' && b[1] == 'T' && b[2] == 'T' && b[3] == 'P' && b[4] == '/') return START_HTTP1;
  /* A method token of 3 to 7 capitals, then a space. Written out: an indexed read
   * b[n] compiles to pointer arithmetic the verifier refuses on the stack. */
#define UP(c) ((c) >= 'A' && (c) <= 'Z')
  if (!UP(b[0]) || !UP(b[1]) || !UP(b[2])) return START_NONE;
  if (b[3] == ' ') return START_HTTP1;
  if (!UP(b[3])) return START_NONE;
  if (b[4] == ' ') return START_HTTP1;
  if (!UP(b[4])) return START_NONE;
  if (b[5] == ' ') return START_HTTP1;
  if (!UP(b[5])) return START_NONE;
  if (b[6] == ' ') return START_HTTP1;
  if (!UP(b[6])) return START_NONE;
  return b[7] == ' ' ? START_HTTP1 : START_NONE;
#undef UP
}

/* The user bytes of a segment: a flat buffer, or up to L7_MAX_IOV iovecs. */
struct seg_buf {
  __u64 buf;
  __u32 iovcnt;
  __u8 is_vec;
  __u8 sys;
};

static __always_inline bool peek8(const struct seg_buf *b, __u8 out[8]) {
  __u64 p = b->buf;
  if (!p) return false;
  if (b->is_vec) {
    struct iovec iov = {};
    if (!b->iovcnt || bpf_probe_read_user(&iov, sizeof(iov), (void *)p)) return false;
    if (iov.iov_len < 8) return false;
    p = (__u64)iov.iov_base;
  }
  return bpf_probe_read_user(out, 8, (void *)p) == 0;
}

/* bpf_loop callback: copies iovec `i` into the per-CPU scratch event (looked up here, so
 * no pointer has to travel through the context). Returns 1 to stop. */
struct iov_copy {
  __u64 iov_ptr;
  __u64 left;
  __u32 iovcnt;
  __u32 off;
};
static long copy_one_iov(__u64 i, void *data) {
  struct iov_copy *c = data;
  if (i >= c->iovcnt || c->left == 0) return 1;
  __u32 zero = 0;
  struct scratch *s = bpf_map_lookup_elem(&scratch_buf, &zero);
  if (!s) return 1;
  struct iovec iov = {};
  if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(c->iov_ptr + i * sizeof(struct iovec)))) return 1;
  __u64 k = iov.iov_len;
  if (k > c->left) k = c->left;
  barrier_var(k);
  if (k > L7_MAX_CAPTURE) k = L7_MAX_CAPTURE;
  barrier_var(k);
  __u32 off = c->off & (L7_MAX_CAPTURE - 1);
  barrier_var(off);
  if (k && bpf_probe_read_user(&s->ev.data[off], k, iov.iov_base)) {
    count(L7_CNT_READ_FAIL);
    return 1;
  }
  c->off = off + k;
  c->left -= k;
  return 0;
}

/* `ev` is the per-CPU scratch event when is_vec (on_segment). */
static __always_inline __u32 capture_iov(struct l7_event *ev, __u64 iov_ptr, __u32 iovcnt, __u64 want) {
  if (use_bpf_loop) {
    struct iov_copy c = {.iov_ptr = iov_ptr, .left = want, .iovcnt = iovcnt, .off = 0};
    bpf_loop(L7_MAX_IOV_LOOP, copy_one_iov, &c, 0);
    return c.off;
  }
  __u64 left = want;
  __u32 off = 0;
#pragma unroll
  for (int i = 0; i < L7_MAX_IOV; i++) {
    if (i >= iovcnt || left == 0) break;
    struct iovec iov = {};
    if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(iov_ptr + i * sizeof(struct iovec)))) break;
    __u64 k = iov.iov_len;
    if (k > left) k = left;
    barrier_var(k);
    if (k > L7_MAX_CAPTURE) k = L7_MAX_CAPTURE;
    barrier_var(k);
    off &= (L7_MAX_CAPTURE - 1);
    barrier_var(off);
    if (k && bpf_probe_read_user(&ev->data[off], k, iov.iov_base)) {
      count(L7_CNT_READ_FAIL);
      break;
    }
    off += k;
    left -= k;
  }
  return off;
}

/* ---- segments ---------------------------------------------------------------------- */

/* `ret` bytes moved on the byte stream `cs` of socket `sk`: the socket's own bytes, or a
 * TLS connection's plaintext (then `sk` is not trusted: see fill_header). */
/* The connect record (L7_EV_CONNECT) of a connection this side opened, before its first
 * data record. */
static __always_inline void emit_connect(struct conn_state *cs, const struct sock *sk, int fd, bool trusted_sk) {
  __u64 flags = submit_flags();
  cs->flags |= CS_CONNECT_SENT;
  struct l7_event *ev = reserve_small();
  if (!ev) {
    cs->seq++;
    return;
  }
  fill_header(ev, cs, sk, L7_EV_CONNECT, L7_DIR_NONE, cs->conn_start_ns, trusted_sk);
  ev->fd = fd;
  __builtin_memcpy(&ev->acct, &cs->connect_acct, sizeof(ev->acct));
  bpf_ringbuf_submit(ev, flags);
  count(L7_CNT_EVENTS);
}

static __always_inline void on_stream(struct conn_state *cs, const struct sock *sk, __u8 dir, __s64 ret,
                                      const struct seg_buf *b, int fd, __u64 ts_enter, bool trusted_sk) {
  /* Not CS_REPORTED: a SYN retransmit's incident record may have gone out before. */
  if ((cs->flags & (CS_CONNECTED | CS_CONNECT_SENT)) == CS_CONNECTED && cs->conn_start_ns)
    emit_connect(cs, sk, fd, trusted_sk);
  const __u32 di = dir == L7_DIR_EGRESS ? 1 : 0;
  const __u64 pos = cs->pos[di & 1];
  cs->pos[di & 1] = pos + (__u64)ret;

  /* Is this the start of a message, and what of it is copied? Reads of user memory are
   * the dearest part of this handler, so the bytes are read once: where the segment is
   * likely to be copied (the message in progress is an HTTP head, or the last message in
   * this direction was HTTP) they are read straight into the record and the start-line
   * test looks at them there; elsewhere (opaque protocols, long bodies) 8 bytes are
   * peeked first and the rest read only if they open a message. */
  const bool flip = cs->last_dir != dir;
  const __u64 in_msg = pos - cs->msg_start[di & 1];
  const bool capture_all = cs->flags & CS_CAPTURE_ALL;
  const bool head_goes_on = !flip && !capture_all && cs->msg_http[di & 1] && in_msg < capture_bytes;
  bool start = flip;
  __u64 want = 0;      /* bytes to copy */
  bool test = false;   /* the copied bytes still need the start-line test */
  if (head_goes_on) {
    want = capture_bytes - in_msg;
  } else if (capture_all || (flip && (cs->msg_http[di & 1] || pos == 0))) {
    want = capture_bytes;
    test = true;
  } else {
    __u8 peek[8] = {};
    int k = peek8(b, peek) ? start_kind(peek, pos == 0) : START_NONE;
    if (k == START_H2) cs->flags |= CS_CAPTURE_ALL;
    if (k != START_NONE) {
      start = true;
      want = capture_bytes;
    }
    if (start) {
      cs->msg_start[di & 1] = pos;
      cs->msg_http[di & 1] = k != START_NONE;
    }
  }
  cs->last_dir = dir;
  if (!b->buf) want = 0;
  if (want > (__u64)ret) want = ret;
  if (!want && test) {
    /* Nothing to read (sendfile): a new message of unknown kind. */
    cs->msg_start[di & 1] = pos;
    cs->msg_http[di & 1] = 0;
  }

  __u64 flags = submit_flags();
  __u64 now = bpf_ktime_get_ns();
  /* A record with payload is built in per-CPU scratch and copied out at its exact
   * length: a reservation must have a constant size, and reserving the full capture for
   * a 40-byte request head would fill the ring (and wake the reader) many times sooner. */
  struct l7_event *ev;
  struct scratch *s = NULL;
  if (!want) {
    ev = reserve_small();
  } else {
    __u32 zero = 0;
    s = bpf_map_lookup_elem(&scratch_buf, &zero);
    ev = s ? &s->ev : NULL;
  }
  if (!ev) {
    cs->seq++; /* the loss shows as a gap */
    return;
  }
  __u32 n = 0;
  if (s) {
    if (b->is_vec) {
      n = capture_iov(ev, b->buf, b->iovcnt, want);
    } else {
      __u64 k = want;
      if (k > capture_bytes) k = capture_bytes;
      barrier_var(k);
      if (k > L7_MAX_CAPTURE) k = L7_MAX_CAPTURE;
      barrier_var(k);
      if (k && bpf_probe_read_user(ev->data, k, (void *)b->buf) == 0)
        n = k;
      else
        count(L7_CNT_READ_FAIL);
    }
    if (test) {
      int k = n >= 8 ? start_kind(ev->data, pos == 0) : START_NONE;
      if (k == START_H2) cs->flags |= CS_CAPTURE_ALL;
      if (k != START_NONE) start = true;
      if (start) {
        cs->msg_start[di & 1] = pos;
        cs->msg_http[di & 1] = k != START_NONE;
      }
      if (k == START_NONE && !(cs->flags & CS_CAPTURE_ALL)) n = 0; /* not HTTP: counted only */
    }
  }
  fill_header(ev, cs, sk, L7_EV_DATA, dir, now, trusted_sk);
  ev->ts_enter_ns = ts_enter ? ts_enter : now;
  ev->pos = pos;
  ev->len = ret;
  ev->fd = fd;
  ev->syscall = b->sys;
  if (start) ev->flags |= L7_F_MSG_START;
  if (dir == L7_DIR_EGRESS && (cs->flags & CS_SEND_BEGIN)) {
    /* A request's first write, timed from the start of its send (send_begin). */
    ev->ts_enter_ns = cs->send_begin_ns;
    __builtin_memcpy(&ev->acct, &cs->connect_acct, sizeof(ev->acct));
    ev->flags |= L7_F_ACCT_AT_ENTER;
  } else {
    acct_snapshot(&ev->acct, now);
  }
  if (dir == L7_DIR_EGRESS) cs->flags &= ~CS_SEND_BEGIN;
  if (s) {
    if (n > L7_MAX_CAPTURE) n = L7_MAX_CAPTURE;
    barrier_var(n);
    /* A no-op for n <= 4096 that the verifier sees on the register the size is read from
     * (the clamp above compiles to a select on a copy). */
    n &= (2 * L7_MAX_CAPTURE - 1);
    ev->captured = n;
    if (bpf_ringbuf_output(&events, ev, L7_EVENT_HEADER_SIZE + n, flags)) {
      count(L7_CNT_RINGBUF_DROPS);
      return;
    }
    count(L7_CNT_EVENTS);
    return;
  }
  bpf_ringbuf_submit(ev, flags);
  count(L7_CNT_EVENTS);
}

/* ---- TLS: OpenSSL's plaintext through uprobes ---------------------------------------- */

/* Set by user space (it is in .bss) once the TLS uprobes are attached to some library or
 * binary: until then no socket segment pays for the lookup below. */
__u8 tls_hooked = 0;

enum tls_op { TLS_OP_READ = 1, TLS_OP_WRITE = 2, TLS_OP_HANDSHAKE = 3 };

/* The OpenSSL call the thread is in, from the uprobe at its entry to the one at its
 * return. Written by the ssl_* programs, read by the socket hooks. */
struct tls_call {
  __u64 ssl;     /* SSL *; 0: not in a call */
  __u64 buf;     /* the plaintext buffer */
  __u64 len_out; /* SSL_*_ex: where the call writes the byte count; 0: the return value */
  __u64 ts;      /* entry */
  __u64 num;     /* bytes asked for */
  __u8 op;       /* enum tls_op */
  __u8 depth;    /* calls nested inside this one (SSL_connect → SSL_do_handshake) */
  __u8 emitted;  /* a write's plaintext was reported at its first socket segment */
  __u8 pad[5];
};
struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct tls_call);
} tls_calls SEC(".maps");

/* The plaintext stream of a TLS connection, keyed by its SSL object in its process. The
 * socket's identity is copied from its conn_state when a socket segment first ties the two;
 * positions and message state are the plaintext's own. LRU: SSL objects freed unseen. */
struct tls_key {
  __u64 ssl;
  __u32 tgid;
  __u32 pad;
};
struct tls_conn {
  struct conn_state cs;
  __u64 sk;     /* struct sock * (an address: the uprobes cannot hold the socket) */
  __s32 fd;
  __u8 hello;   /* the ServerHello went out (L7_EV_TLS_HELLO) */
  __u8 hdr;     /* the last socket read was a lone 5-byte handshake record header */
  /* A write reported at its first segment returned without completing (WANT_WRITE):
   * OpenSSL's retry sends the same bytes, which are not reported again. */
  __u8 unconfirmed;
  __u8 pad;
};
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, struct tls_key);
  __type(value, struct tls_conn);
} tls_conns SEC(".maps");

/* The record holding the ServerHello, once per connection, for the version. */
static __always_inline void tls_hello(struct tls_conn *tc, const struct sock *sk, __u8 dir, __s64 ret,
                                      const struct seg_buf *b) {
  __u32 zero = 0;
  struct scratch *s = bpf_map_lookup_elem(&scratch_buf, &zero);
  if (!s) return;
  struct l7_event *ev = &s->ev;
  __u64 k = ret;
  if (k > 512) k = 512; /* the version is in the first ~100 bytes */
  barrier_var(k);
  __u32 n = 0;
  if (k && bpf_probe_read_user(ev->data, k, (void *)b->buf) == 0) n = k;
  __u64 flags = submit_flags();
  __u64 now = bpf_ktime_get_ns();
  fill_header(ev, &tc->cs, sk, L7_EV_TLS_HELLO, dir, now, true);
  ev->fd = tc->fd;
  ev->len = ret;
  __builtin_memset(&ev->acct, 0, sizeof(ev->acct));
  n &= 1023;
  ev->captured = n;
  if (bpf_ringbuf_output(&events, ev, L7_EVENT_HEADER_SIZE + n, flags)) {
    count(L7_CNT_RINGBUF_DROPS);
    return;
  }
  count(L7_CNT_EVENTS);
}

/* A socket segment of connection `cs`. True when it is TLS ciphertext, which is not
 * reported: the thread is inside an OpenSSL call (this ties the call's SSL object to the
 * socket), or the connection was tied before (alerts, close_notify outside the calls). */
static __always_inline bool tls_segment(struct conn_state *cs, const struct sock *sk, __u8 dir, __s64 ret,
                                        const struct seg_buf *b, int fd) {
  if (!tls_hooked) return false;
  struct tls_call *t = bpf_task_storage_get(&tls_calls, bpf_get_current_task_btf(), 0, 0);
  if (!t || !t->ssl) {
    if (!(cs->flags & CS_TLS)) return false;
    count(L7_CNT_TLS_CIPHER);
    return true;
  }
  struct tls_key k = {.ssl = t->ssl, .tgid = bpf_get_current_pid_tgid() >> 32};
  struct tls_conn *tc = bpf_map_lookup_elem(&tls_conns, &k);
  if (!tc || tc->cs.id != cs->id) {
    /* A new plaintext stream (or the SSL object was freed and its address reused). The
     * scratch record only gives the update a value to copy: every field is set below. */
    __u32 zero = 0;
    struct scratch *s = bpf_map_lookup_elem(&scratch_buf, &zero);
    if (!s) return true;
    bpf_map_update_elem(&tls_conns, &k, &s->ev, BPF_ANY);
    tc = bpf_map_lookup_elem(&tls_conns, &k);
    if (!tc) return true;
    __builtin_memcpy(&tc->cs, cs, sizeof(*cs));
    tc->cs.pos[0] = tc->cs.pos[1] = 0;
    tc->cs.msg_start[0] = tc->cs.msg_start[1] = 0;
    tc->cs.msg_http[0] = tc->cs.msg_http[1] = 0;
    tc->cs.seq = 0;
    tc->cs.last_dir = 0;
    tc->cs.flags = (cs->flags & CS_CONNECTED) | CS_TLS;
    tc->hello = 0;
    tc->hdr = 0;
    tc->unconfirmed = 0;
    cs->tls_ssl = k.ssl;
    cs->tls_tgid = k.tgid;
  }
  cs->flags |= CS_TLS;
  tc->sk = (__u64)sk;
  tc->fd = fd;
  tc->cs.retransmits = cs->retransmits;
  tc->cs.established_ns = cs->established_ns;
  count(L7_CNT_TLS_CIPHER);
  if (t->op == TLS_OP_WRITE && dir == L7_DIR_EGRESS && !t->emitted) {
    /* The plaintext is reported as its first ciphertext leaves, not at SSL_write's
     * return: the peer may read, answer and be reported before the writer returns, and
     * the request must come first for the two ends to link. */
    t->emitted = 1;
    if (!tc->unconfirmed) {
      struct seg_buf pb = {.buf = t->buf, .sys = L7_SYS_SSL_WRITE};
      on_stream(&tc->cs, sk, L7_DIR_EGRESS, t->num, &pb, fd, 0, true);
    }
    tc->unconfirmed = 0;
    return true;
  }
  if (!tc->hello && b->buf && !b->is_vec) {
    /* A handshake record (0x16) holding a ServerHello (type 2); a reader without
     * read-ahead takes the 5-byte record header and the body in two reads. */
    __u8 h[8] = {};
    if (bpf_probe_read_user(h, 8, (void *)b->buf) == 0) {
      bool full = h[0] == 0x16 && h[1] == 3 && h[5] == 2 && ret > 5;
      bool body = tc->hdr && h[0] == 2;
      tc->hdr = ret == 5 && h[0] == 0x16 && h[1] == 3;
      if (full || body) {
        tc->hello = 1;
        tls_hello(tc, sk, dir, ret, b);
      }
    }
  }
  return true;
}

/* One send/recv call moved `ret` bytes on TCP socket `sk`. */
static __always_inline void on_segment(const struct sock *sk, __u8 dir, __s64 ret, const struct seg_buf *b,
                                       int fd, __u64 ts_enter) {
  __u32 tgid = bpf_get_current_pid_tgid() >> 32;
  if (!traced_process(tgid)) return;
  struct conn_state *cs = conn_get(sk);
  if (!cs) {
    if (!is_tcp_sock(sk)) return;
    cs = new_conn(sk, tgid);
    if (!cs) return;
  } else if (cs->tgid != tgid) {
    set_owner(cs, tgid);
  }
  if (tls_segment(cs, sk, dir, ret, b, fd)) return;
  on_stream(cs, sk, dir, ret, b, fd, ts_enter, true);
}

/* The reader got end of stream (read returned 0): the peer's FIN, in the reader's own
 * order, after every byte before it. */
static __always_inline void on_eof(const struct sock *sk) {
  __u32 tgid = bpf_get_current_pid_tgid() >> 32;
  if (!traced_process(tgid)) return;
  struct conn_state *cs = conn_get(sk);
  if (!cs || (cs->flags & CS_EOF_IN)) return;
  cs->flags |= CS_EOF_IN;
  emit_simple(cs, sk, L7_EV_FIN, L7_DIR_INGRESS, true);
}

/* ---- the start of a send ------------------------------------------------------------
 *
 * The data hooks see a write when its bytes have moved (its end). A CLIENT span starts
 * at its request's first write, so without this the write's own time (copying, waiting
 * for send-buffer room) would fall outside the span and its breakdown. The first write
 * on a connection this side opened, after its connect record went out and after the last
 * segment went the other way (a request follows an answer), marks its start and
 * snapshots the thread's accounting; the write's data record then carries both
 * (L7_F_ACCT_AT_ENTER). Two places see that start: tcp_sendmsg_locked (6.12+, each pass
 * of the send loop) with the socket tracepoints, and the syscall's entry with the
 * per-syscall hooks (kernels before 6.3, enter_call). Every other send costs one
 * connection-state lookup. */
/* `now`: the send's start, or 0 for the clock now (read only once the send qualifies:
 * this runs on every TCP send of the node). */
static __always_inline void mark_send_begin(const struct sock *sk, __u64 now) {
  struct conn_state *cs = conn_get(sk);
  if (!cs) return;
  if ((cs->flags & (CS_CONNECTED | CS_CONNECT_SENT | CS_SEND_BEGIN | CS_TLS)) != (CS_CONNECTED | CS_CONNECT_SENT))
    return;
  if (cs->last_dir == L7_DIR_EGRESS) return; /* a later write of the same message */
  if (!now) now = bpf_ktime_get_ns();
  cs->send_begin_ns = now;
  acct_snapshot(&cs->connect_acct, now);
  cs->flags |= CS_SEND_BEGIN;
}

SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(send_begin, const struct sock *sk, const struct msghdr *msg, const struct sk_buff *skb,
             int size_goal) {
  mark_send_begin(sk, 0);
  return 0;
}

/* A send that moved nothing (an error, EAGAIN): the next one starts afresh. */
static __always_inline void send_failed(const struct sock *sk) {
  if (!use_send_begin) return;
  struct conn_state *cs = conn_get(sk);
  if (cs) cs->flags &= ~CS_SEND_BEGIN;
}

/* ---- data hooks: socket tracepoints (6.3+) ----------------------------------------- */

/* Syscall numbers and argument registers, per architecture (the saved user registers
 * of the syscall the task is in). */
#if defined(__TARGET_ARCH_x86)
#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDFILE 40
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define REG_NR(r) ((r)->orig_ax)
#define REG_ARG0(r) ((r)->di)
#define REG_ARG1(r) ((r)->si)
#define REG_ARG2(r) ((r)->dx)
#elif defined(__TARGET_ARCH_arm64)
#define NR_READ 63
#define NR_WRITE 64
#define NR_READV 65
#define NR_WRITEV 66
#define NR_SENDFILE 71
#define NR_SENDTO 206
#define NR_RECVFROM 207
#define NR_SENDMSG 211
#define NR_RECVMSG 212
#define REG_NR(r) ((r)->syscallno)
#define REG_ARG0(r) ((r)->orig_x0)
#define REG_ARG1(r) ((r)->regs[1])
#define REG_ARG2(r) ((r)->regs[2])
#else
#error "l7.bpf.c: add this architecture's syscall numbers and argument registers"
#endif

/* What the current syscall says about the segment's user bytes; fd -1 and no buffer
 * when the bytes did not come from one of these syscalls (io_uring, splice, kernel). */
static __always_inline int syscall_buf(bool egress, struct seg_buf *b) {
  struct task_struct *task = bpf_get_current_task_btf();
  b->buf = 0;
  b->iovcnt = 0;
  b->is_vec = 0;
  b->sys = 0;
  struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
  if (!regs) return -1;
  long nr = REG_NR(regs);
  __u64 a0 = REG_ARG0(regs);
  __u64 a1 = REG_ARG1(regs);
  if (egress) {
    switch (nr) {
      case NR_WRITE: b->sys = L7_SYS_WRITE; b->buf = a1; break;
      case NR_SENDTO: b->sys = L7_SYS_SENDTO; b->buf = a1; break;
      case NR_WRITEV: b->sys = L7_SYS_WRITEV; b->buf = a1; b->is_vec = 1; b->iovcnt = REG_ARG2(regs); break;
      case NR_SENDFILE: b->sys = L7_SYS_SENDFILE; break; /* bytes from a file: counted only */
      case NR_SENDMSG: b->sys = L7_SYS_SENDMSG; break;
      default: return -1;
    }
  } else {
    switch (nr) {
      case NR_READ: b->sys = L7_SYS_READ; b->buf = a1; break;
      case NR_RECVFROM: b->sys = L7_SYS_RECVFROM; b->buf = a1; break;
      case NR_READV: b->sys = L7_SYS_READV; b->buf = a1; b->is_vec = 1; b->iovcnt = REG_ARG2(regs); break;
      case NR_RECVMSG: b->sys = L7_SYS_RECVMSG; break;
      default: return -1;
    }
  }
  if (b->sys == L7_SYS_SENDMSG || b->sys == L7_SYS_RECVMSG) {
    /* The iovec array is behind the user's msghdr. */
    struct user_msghdr msg = {};
    if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a1) == 0) {
      b->buf = (__u64)msg.msg_iov;
      b->iovcnt = (__u32)msg.msg_iovlen;
      b->is_vec = 1;
    }
  }
  return (int)a0;
}

static __always_inline bool kernel_task(void) {
  struct task_struct *task = bpf_get_current_task_btf();
  return task->flags & PF_KTHREAD;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send, struct sock *sk, int ret, int flags) {
  if (ret <= 0) {
    send_failed(sk);
    return 0;
  }
  if (kernel_task()) return 0;
  struct seg_buf b = {};
  int fd = syscall_buf(true, &b);
  on_segment(sk, L7_DIR_EGRESS, ret, &b, fd, 0);
  return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv, struct sock *sk, int ret, int flags) {
  if (ret < 0 || (flags & MSG_PEEK) || kernel_task()) return 0;
  if (ret == 0) {
    on_eof(sk);
    return 0;
  }
  struct seg_buf b = {};
  int fd = syscall_buf(false, &b);
  on_segment(sk, L7_DIR_INGRESS, ret, &b, fd, 0);
  return 0;
}

/* ---- data hooks: syscall tracepoints (kernels before 6.3) ----------------------------- */

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
  return is_tcp_sock(sk) ? sk : NULL;
}

static __always_inline int enter_call(int fd, __u64 buf, __u32 iovcnt, __u8 sys, __u8 dir, __u8 is_vec) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  if (!traced_process(pid_tgid >> 32)) return 0;
  struct sock *sk = tcp_sock_of_fd(fd);
  if (!sk) return 0;
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
  /* Before 6.3 (these hooks) there is no tcp_sendmsg_locked either: the syscall's entry
   * is the start of the send. */
  if (dir == L7_DIR_EGRESS && use_send_begin) mark_send_begin(sk, call.ts);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_read")
int enter_read(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], ctx->args[1], 0, L7_SYS_READ, L7_DIR_INGRESS, 0);
}
SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct trace_event_raw_sys_enter *ctx) {
  /* A peek moves no bytes (nginx peeks at a TLS port's first byte): as sock_recv. */
  if (ctx->args[3] & MSG_PEEK) return 0;
  return enter_call(ctx->args[0], ctx->args[1], 0, L7_SYS_RECVFROM, L7_DIR_INGRESS, 0);
}
SEC("tracepoint/syscalls/sys_enter_readv")
int enter_readv(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], ctx->args[1], ctx->args[2], L7_SYS_READV, L7_DIR_INGRESS, 1);
}
SEC("tracepoint/syscalls/sys_enter_write")
int enter_write(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], ctx->args[1], 0, L7_SYS_WRITE, L7_DIR_EGRESS, 0);
}
SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], ctx->args[1], 0, L7_SYS_SENDTO, L7_DIR_EGRESS, 0);
}
SEC("tracepoint/syscalls/sys_enter_writev")
int enter_writev(struct trace_event_raw_sys_enter *ctx) {
  return enter_call(ctx->args[0], ctx->args[1], ctx->args[2], L7_SYS_WRITEV, L7_DIR_EGRESS, 1);
}
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int enter_sendfile(struct trace_event_raw_sys_enter *ctx) {
  /* out_fd is the socket; the payload comes from a file and is not captured. */
  return enter_call(ctx->args[0], 0, 0, L7_SYS_SENDFILE, L7_DIR_EGRESS, 0);
}

/* recvmsg/sendmsg: the iovec array is behind the user's msghdr. */
static __always_inline int enter_msg(struct trace_event_raw_sys_enter *ctx, __u8 sys, __u8 dir) {
  struct user_msghdr msg = {};
  if (bpf_probe_read_user(&msg, sizeof(msg), (void *)ctx->args[1])) return 0;
  return enter_call(ctx->args[0], (__u64)msg.msg_iov, (__u32)msg.msg_iovlen, sys, dir, 1);
}
SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg(struct trace_event_raw_sys_enter *ctx) {
  if (ctx->args[2] & MSG_PEEK) return 0;
  return enter_msg(ctx, L7_SYS_RECVMSG, L7_DIR_INGRESS);
}
SEC("tracepoint/syscalls/sys_enter_sendmsg")
int enter_sendmsg(struct trace_event_raw_sys_enter *ctx) {
  return enter_msg(ctx, L7_SYS_SENDMSG, L7_DIR_EGRESS);
}

static __always_inline int exit_call(struct trace_event_raw_sys_exit *ctx) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  struct inflight *call = bpf_map_lookup_elem(&inflight_calls, &pid_tgid);
  if (!call) return 0;
  struct inflight c = *call;
  bpf_map_delete_elem(&inflight_calls, &pid_tgid);
  __s64 ret = ctx->ret;
  const struct sock *sk = (const struct sock *)c.sk;
  if (ret == 0 && c.dir == L7_DIR_INGRESS) {
    on_eof(sk);
    return 0;
  }
  if (ret <= 0) {
    if (c.dir == L7_DIR_EGRESS) send_failed(sk);
    return 0;
  }
  struct seg_buf b = {.buf = c.buf, .iovcnt = c.iovcnt, .is_vec = c.is_vec, .sys = c.syscall};
  on_segment(sk, c.dir, ret, &b, c.fd, c.ts);
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

/* ---- connection lifecycle ------------------------------------------------------------ */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(sock_state, const struct sock *sk, int oldstate, int newstate) {
  if (sk->sk_protocol != IPPROTO_TCP) return 0;
  struct conn_state *cs = conn_get(sk);
  if (newstate == ISO_TCP_SYN_SENT) {
    /* connect(): in the connecting task. Track it from here so connection setup and
     * SYN retransmits are seen. A stale entry at this address is replaced. */
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!traced_process(tgid)) return 0;
    if (cs) conn_del(sk);
    cs = new_conn(sk, tgid);
    if (!cs) return 0;
    cs->flags |= CS_CONNECTED;
    /* The caller's namespace, for the daemon's conntrack lookup (NAT'd callees): only
     * connections this side opened need it. A direct load from the hook's own socket. */
    cs->netns = sk->__sk_common.skc_net.net->ns.inum;
    cs->conn_start_ns = bpf_ktime_get_ns();
    acct_snapshot(&cs->connect_acct, cs->conn_start_ns);
    return 0;
  }
  if (!cs) return 0;
  if (newstate == ISO_TCP_ESTABLISHED && oldstate == ISO_TCP_SYN_SENT) {
    cs->established_ns = bpf_ktime_get_ns();
    read_addrs(cs, sk); /* the local address and port are bound now */
    return 0;
  }
  if ((newstate == ISO_TCP_FIN_WAIT1 || newstate == ISO_TCP_LAST_ACK) && !(cs->flags & CS_FIN_OUT)) {
    /* close() or shutdown(SHUT_WR), in the closing task, after its last write. */
    cs->flags |= CS_FIN_OUT;
    emit_simple(cs, sk, L7_EV_FIN, L7_DIR_EGRESS, false);
    return 0;
  }
  if (newstate == ISO_TCP_CLOSE) {
    if (cs->flags & (CS_REPORTED | CS_TLS)) emit_simple(cs, sk, L7_EV_CLOSE, L7_DIR_NONE, false);
    if (cs->flags & CS_TLS) {
      struct tls_key k = {.ssl = cs->tls_ssl, .tgid = cs->tls_tgid};
      bpf_map_delete_elem(&tls_conns, &k);
    }
    conn_del(sk);
  }
  return 0;
}

/* ---- kernel incidents ------------------------------------------------------------ */

static __always_inline void incident(const struct sock *sk, __u8 kind) {
  struct conn_state *cs = conn_get(sk);
  if (!cs) return; /* not a connection we track */
  if (kind == L7_EV_RETRANSMIT) __sync_fetch_and_add(&cs->retransmits, 1);
  emit_simple(cs, sk, kind, L7_DIR_NONE, false);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit, const struct sock *sk) {
  incident(sk, L7_EV_RETRANSMIT);
  return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tcp_receive_reset, struct sock *sk) {
  incident(sk, L7_EV_RESET_RECV);
  return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcp_send_reset, const struct sock *sk) {
  if (sk) incident(sk, L7_EV_RESET_SENT);
  return 0;
}

/* A SYN-ACK resent for a connection still in the listener's queue: the handshake a
 * caller on this node may be waiting in. There is no socket state to count it in (the
 * connection is not accepted), so it goes out with its tuple and user space ties it to
 * the caller's socket. A SYN flood makes many: at most SYNACK_BUDGET records per CPU per
 * SYNACK_WINDOW_NS, the rest only counted. */
#define SYNACK_BUDGET 64
#define SYNACK_WINDOW_NS 100000000ull
struct synack_window {
  __u64 start;
  __u32 sent;
  __u32 pad;
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct synack_window);
} synack_rate SEC(".maps");

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(tcp_retransmit_synack, const struct sock *sk, const struct request_sock *req) {
  if (!req) return 0;
  __u32 zero = 0;
  struct synack_window *w = bpf_map_lookup_elem(&synack_rate, &zero);
  if (!w) return 0;
  __u64 now = bpf_ktime_get_ns();
  if (now - w->start > SYNACK_WINDOW_NS) {
    w->start = now;
    w->sent = 0;
  }
  if (w->sent >= SYNACK_BUDGET) {
    count(L7_CNT_SYNACK_LIMITED);
    return 0;
  }
  struct l7_event *ev = reserve_small(); /* counts its own failure */
  if (!ev) return 0;
  w->sent++;
  __builtin_memset(ev, 0, L7_EVENT_HEADER_SIZE);
  ev->ts_ns = ev->ts_enter_ns = now;
  ev->kind = L7_EV_SYNACK_RETRANSMIT;
  ev->fd = -1;
  read_tuple(&req->__req_common, &ev->family, &ev->lport, &ev->rport, ev->laddr, ev->raddr);
  bpf_ringbuf_submit(ev, submit_flags());
  count(L7_CNT_EVENTS);
  return 0;
}

/* A packet of a tracked socket dropped by netfilter on its way out. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(skb_drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason) {
  if (reason != bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NETFILTER_DROP)) return 0;
  /* Outgoing only: a received packet has its input interface set, and early demux may
   * have set its socket too (the receiver's) before the input hook dropped it; that loss
   * is the sender's, and shows as its retransmission. */
  if (skb->skb_iif) return 0;
  struct sock *sk = skb->sk;
  if (!sk || sk->sk_protocol != IPPROTO_TCP) return 0;
  struct conn_state *cs = conn_get(sk);
  if (!cs) return 0;
  /* skb->sk is an RCU pointer, not the hook's own socket: read through probe reads. */
  emit_simple_sk(cs, sk, L7_EV_LOCAL_DROP, L7_DIR_NONE, false, false);
  return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(oom_mark_victim, struct task_struct *task) {
  __u64 flags = submit_flags();
  struct l7_event *ev = reserve_small();
  if (!ev) return 0;
  __builtin_memset(ev, 0, L7_EVENT_HEADER_SIZE);
  ev->ts_ns = ev->ts_enter_ns = bpf_ktime_get_ns();
  ev->kind = L7_EV_OOM_KILL;
  ev->fd = -1;
  ev->tgid = BPF_CORE_READ(task, tgid);
  ev->tid = BPF_CORE_READ(task, pid);
  ev->proc_start_ns = BPF_CORE_READ(task, group_leader, start_time);
  ev->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
  BPF_CORE_READ_STR_INTO(&ev->comm, task, comm);
  bpf_ringbuf_submit(ev, flags);
  count(L7_CNT_EVENTS);
  return 0;
}

/* ---- TLS: the OpenSSL calls ------------------------------------------------------------ */

static __always_inline int tls_enter(__u64 ssl, __u64 buf, __u64 num, __u64 len_out, __u8 op) {
  if (!traced_process(bpf_get_current_pid_tgid() >> 32)) return 0;
  struct tls_call *t =
      bpf_task_storage_get(&tls_calls, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (!t) return 0;
  if (t->ssl == ssl && t->depth < 255) {
    /* A call inside a call on the same object (SSL_connect → SSL_do_handshake). */
    t->depth++;
    return 0;
  }
  /* Otherwise a new call. A different SSL object while one is marked means the previous
   * call's return was never seen (a missed uretprobe): forget it rather than tie this
   * thread's sockets to a stale object. */
  t->ssl = ssl;
  t->buf = buf;
  t->len_out = len_out;
  t->num = num;
  t->op = op;
  t->emitted = 0;
  t->depth = 0;
  t->ts = bpf_ktime_get_ns();
  if (op == TLS_OP_WRITE && tls_send_begin) {
    /* A request's first write on a TLS connection this side opened starts here, before
     * OpenSSL encrypts it (send_begin's rule, on the plaintext stream). */
    struct tls_key k = {.ssl = ssl, .tgid = bpf_get_current_pid_tgid() >> 32};
    struct tls_conn *tc = bpf_map_lookup_elem(&tls_conns, &k);
    if (tc && (tc->cs.flags & (CS_CONNECTED | CS_CONNECT_SENT | CS_SEND_BEGIN)) == (CS_CONNECTED | CS_CONNECT_SENT) &&
        tc->cs.last_dir != L7_DIR_EGRESS) {
      tc->cs.send_begin_ns = t->ts;
      acct_snapshot(&tc->cs.connect_acct, t->ts);
      tc->cs.flags |= CS_SEND_BEGIN;
    }
  }
  return 0;
}

/* The call returns: what it read or wrote is the connection's next plaintext segment. */
static __always_inline int tls_exit(long ret) {
  struct tls_call *t = bpf_task_storage_get(&tls_calls, bpf_get_current_task_btf(), 0, 0);
  if (!t || !t->ssl) return 0;
  if (t->depth) {
    t->depth--;
    return 0;
  }
  struct tls_call c = *t;
  t->ssl = 0;
  if (c.op == TLS_OP_HANDSHAKE) return 0;
  __s64 n = (int)ret;
  if (c.len_out) {
    n = 0;
    __u64 v = 0;
    if ((int)ret == 1 && bpf_probe_read_user(&v, sizeof(v), (void *)c.len_out) == 0) n = (__s64)v;
  }
  struct tls_key k = {.ssl = c.ssl, .tgid = bpf_get_current_pid_tgid() >> 32};
  struct tls_conn *tc = bpf_map_lookup_elem(&tls_conns, &k);
  if (c.emitted) {
    /* Reported at its first segment (tls_segment): settle what the call really wrote. */
    if (!tc) return 0;
    if (n <= 0) {
      tc->unconfirmed = 1;
    } else if ((__u64)n < c.num) {
      tc->cs.pos[1] -= c.num - (__u64)n; /* a partial write: the rest comes again */
    }
    return 0;
  }
  if (n <= 0) {
    if (tc && c.op == TLS_OP_WRITE) tc->cs.flags &= ~CS_SEND_BEGIN; /* the next one starts afresh */
    return 0;
  }
  if (!tc) {
    count(L7_CNT_TLS_UNTIED);
    return 0;
  }
  const bool read = c.op == TLS_OP_READ;
  struct seg_buf b = {.buf = c.buf, .sys = read ? L7_SYS_SSL_READ : L7_SYS_SSL_WRITE};
  on_stream(&tc->cs, (const struct sock *)tc->sk, read ? L7_DIR_INGRESS : L7_DIR_EGRESS, n, &b, tc->fd,
            read ? c.ts : 0, false);
  return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_enter, void *ssl, const void *buf, int num) {
  return tls_enter((__u64)ssl, (__u64)buf, num > 0 ? num : 0, 0, TLS_OP_WRITE);
}
SEC("uprobe")
int BPF_KPROBE(ssl_read_enter, void *ssl, void *buf, int num) {
  return tls_enter((__u64)ssl, (__u64)buf, num > 0 ? num : 0, 0, TLS_OP_READ);
}
SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_enter, void *ssl, const void *buf, __u64 num, __u64 *written) {
  return tls_enter((__u64)ssl, (__u64)buf, num, (__u64)written, TLS_OP_WRITE);
}
SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_enter, void *ssl, void *buf, __u64 num, __u64 *readbytes) {
  return tls_enter((__u64)ssl, (__u64)buf, num, (__u64)readbytes, TLS_OP_READ);
}
SEC("uprobe")
int BPF_KPROBE(ssl_handshake_enter, void *ssl) {
  return tls_enter((__u64)ssl, 0, 0, 0, TLS_OP_HANDSHAKE);
}
/* One return program for all five: the thread's tls_call says which call returns. */
SEC("uretprobe")
int BPF_KRETPROBE(ssl_exit, long ret) {
  return tls_exit(ret);
}

/* ---- edge: packets at sandboxes' network edges ------------------------------------ */
#include "edge.bpf.h"
