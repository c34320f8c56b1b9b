/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * edge: TCP packets at a sandbox's network edge (included by l7.bpf.c; ABI in l7.h,
 * "edge"). A TC (clsact) program on the host side of a sandbox's veth or tap, attached
 * by daemon/probes/edge_probe.cc to the devices of sandboxes it found (gVisor in its
 * netstack mode, microVMs); it runs on no other device.
 *
 * Per packet: parse Ethernet → IPv4/IPv6 → TCP, skip pure ACKs, and report the rest with
 * the TCP sequence number, the payload length, and (within the first EDGE_HEAD_WINDOW
 * bytes after the flow changed direction, where HTTP heads are) a payload prefix. The
 * sandbox's group accounting rides along. The program never drops or changes a packet:
 * it always returns TC_ACT_UNSPEC (the next filter, or the device's normal path).
 */
#ifndef ISOTRACE_BPF_EDGE_BPF_H_
#define ISOTRACE_BPF_EDGE_BPF_H_

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_HLEN 14
#define TC_ACT_UNSPEC (-1)
#define EDGE_IPV6_NEXTHDR_TCP 6

const volatile __u32 edge_capture_bytes = 512; /* ≤ EDGE_MAX_CAPTURE, set at load */
/* Past this much unread data the reader is woken (0: never, the reader's timer only). */
const volatile __u64 edge_wakeup_bytes = 0;

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 4 * 1024 * 1024);
} edge_events SEC(".maps");

/* The reader's position when a wake-up was last forced for edge_events (see
 * woken_at_cons in l7.bpf.c). */
__u64 edge_woken_at_cons = ~0ull;

static __always_inline __u64 edge_submit_flags(void) {
  if (!edge_wakeup_bytes || bpf_ringbuf_query(&edge_events, BPF_RB_AVAIL_DATA) < edge_wakeup_bytes)
    return BPF_RB_NO_WAKEUP;
  __u64 cons = bpf_ringbuf_query(&edge_events, BPF_RB_CONS_POS);
  if (cons == edge_woken_at_cons) return BPF_RB_NO_WAKEUP;
  edge_woken_at_cons = cons;
  count(L7_CNT_WAKEUPS);
  return BPF_RB_FORCE_WAKEUP;
}

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, EDGE_MAX_GROUPS);
  __type(key, __u32);
  __type(value, struct edge_iface);
} edge_ifaces SEC(".maps");

/* Per flow and direction: where the message in progress began (its first sequence
 * number after the other direction sent data), so only message heads carry payload.
 * Key: the packet's own 4-tuple with the device (each direction has its own entry). */
struct edge_flow_key {
  __u8 saddr[16], daddr[16];
  __u16 sport, dport;
  __u32 ifindex;
};
struct edge_flow {
  __u32 head_seq;   /* first sequence number of the current message in this direction */
  __u32 last_ack;   /* the ack this direction carried with its last data */
  __u8 have_head;
  __u8 pad[7];
};
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, struct edge_flow_key);
  __type(value, struct edge_flow);
} edge_flows SEC(".maps");

/* Whether this packet's payload should be captured, updating the flow's message start.
 * A new message in a direction starts when its data acknowledges bytes the other
 * direction sent since (the ack moved): request → response → next request on one
 * connection, each the first data after the peer's. Retransmits and reordering only move
 * the window a little; a head lost to that is counted in user space, never misread. */
static __always_inline bool edge_in_head(const struct edge_flow_key *k, __u32 seq, __u32 ack, __u8 syn) {
  struct edge_flow *f = bpf_map_lookup_elem(&edge_flows, k);
  if (!f) {
    struct edge_flow nf = {};
    nf.head_seq = syn ? seq + 1 : seq;
    nf.last_ack = ack;
    nf.have_head = 1;
    bpf_map_update_elem(&edge_flows, k, &nf, BPF_ANY);
    return true;
  }
  if (syn) {
    f->head_seq = seq + 1;
    f->last_ack = ack;
    return true;
  }
  if (ack != f->last_ack) {
    /* The peer sent data since our last data: a new message starts here (unless this is
     * an older segment coming late: seq behind the current head). */
    if ((__s32)(seq - f->head_seq) > 0) f->head_seq = seq;
    f->last_ack = ack;
  }
  __s32 off = (__s32)(seq - f->head_seq);
  return off >= 0 && off < EDGE_HEAD_WINDOW;
}

static __always_inline int edge_packet(struct __sk_buff *skb, __u8 dir) {
  __u32 ifindex = skb->ifindex;
  struct edge_iface *iface = bpf_map_lookup_elem(&edge_ifaces, &ifindex);
  if (!iface) return TC_ACT_UNSPEC;

  struct edge_flow_key k = {};
  __u8 family;
  __u32 l4;  /* offset of the TCP header */
  __u32 ip_end;
  __u16 proto = bpf_ntohs(skb->protocol);
  if (proto == ETH_P_IP) {
    struct iphdr ip;
    if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip))) goto malformed;
    if (ip.protocol != IPPROTO_TCP) return TC_ACT_UNSPEC;
    /* A fragment's payload is not a TCP stream (offset or more-fragments set). */
    if (ip.frag_off & bpf_htons(0x3fff)) return TC_ACT_UNSPEC;
    family = AF_INET;
    __builtin_memcpy(k.saddr, &ip.saddr, 4);
    __builtin_memcpy(k.daddr, &ip.daddr, 4);
    l4 = ETH_HLEN + ip.ihl * 4;
    ip_end = ETH_HLEN + bpf_ntohs(ip.tot_len);
  } else if (proto == ETH_P_IPV6) {
    struct ipv6hdr ip6;
    if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6))) goto malformed;
    /* Extension headers are not walked: TCP right after the fixed header only. */
    if (ip6.nexthdr != EDGE_IPV6_NEXTHDR_TCP) return TC_ACT_UNSPEC;
    family = AF_INET6;
    __builtin_memcpy(k.saddr, &ip6.saddr, 16);
    __builtin_memcpy(k.daddr, &ip6.daddr, 16);
    l4 = ETH_HLEN + sizeof(ip6);
    ip_end = l4 + bpf_ntohs(ip6.payload_len);
  } else {
    return TC_ACT_UNSPEC;
  }
  struct tcphdr th;
  if (bpf_skb_load_bytes(skb, l4, &th, sizeof(th))) goto malformed;
  __u32 data_off = l4 + th.doff * 4;
  /* A GSO packet's IP length field may be 0 (IPv4 BIG TCP): the skb's length then. */
  if (ip_end <= l4 || ip_end > skb->len) ip_end = skb->len;
  __u32 len = ip_end > data_off ? ip_end - data_off : 0;
  __u8 flags = ((__u8 *)&th)[13];
  if (!len && !(flags & (EDGE_TCP_SYN | EDGE_TCP_FIN | EDGE_TCP_RST))) return TC_ACT_UNSPEC;

  k.sport = bpf_ntohs(th.source);
  k.dport = bpf_ntohs(th.dest);
  k.ifindex = ifindex;
  __u32 seq = bpf_ntohl(th.seq);
  __u32 ack = bpf_ntohl(th.ack_seq);
  __u32 want = 0;
  if (len && edge_in_head(&k, seq, ack, flags & EDGE_TCP_SYN)) {
    want = len < edge_capture_bytes ? len : edge_capture_bytes;
  } else if (flags & EDGE_TCP_SYN) {
    edge_in_head(&k, seq, ack, 1);
  }

  /* Two fixed sizes (the helper takes a constant): most packets carry no payload. */
  struct edge_event *ev;
  if (want)
    ev = bpf_ringbuf_reserve(&edge_events, sizeof(*ev), 0);
  else
    ev = bpf_ringbuf_reserve(&edge_events, EDGE_EVENT_HEADER_SIZE, 0);
  if (!ev) {
    count(L7_CNT_EDGE_DROPS);
    return TC_ACT_UNSPEC;
  }
  ev->ts_ns = bpf_ktime_get_ns();
  ev->ifindex = ifindex;
  ev->tcp_seq = seq;
  ev->tcp_ack = ack;
  ev->len = len;
  ev->sport = k.sport;
  ev->dport = k.dport;
  ev->family = family;
  ev->dir = dir;
  ev->tcp_flags = flags;
  ev->pad = 0;
  __builtin_memcpy(ev->saddr, k.saddr, 16);
  __builtin_memcpy(ev->daddr, k.daddr, 16);
  __u32 gi = iface->group;
  struct edge_group_acct *g = bpf_map_lookup_elem(&edge_group_acct, &gi);
  if (g) {
    ev->acct.oncpu_ns = g->oncpu_ns;
    ev->acct.runq_ns = g->runq_ns;
    ev->acct.throttled_ns = g->throttled_ns;
    ev->acct.blkio_ns = g->blkio_ns;
    ev->acct.memstall_ns = g->memstall_ns;
    ev->acct.sleep_ns = g->sleep_ns;
    ev->acct.steal_ns = g->steal_ns;
    ev->acct.throttle_count = (__u32)g->throttle_count;
    ev->acct.valid = 1;
  } else {
    __builtin_memset(&ev->acct, 0, sizeof(ev->acct));
  }
  ev->captured = 0;
  if (want > 0) {
    /* In [1, EDGE_MAX_CAPTURE] by construction (the helper takes no zero size, and the
     * verifier follows the arithmetic where it loses a compare on a register copy). */
    __u64 k = ((__u64)(want - 1) & (EDGE_MAX_CAPTURE - 1)) + 1;
    barrier_var(k);
    if (!bpf_skb_load_bytes(skb, data_off, ev->data, k)) ev->captured = (__u32)k;
  }
  count(L7_CNT_EDGE_PACKETS);
  /* Never a wake-up per packet: the reader polls on its timer, and is woken once per
   * reader cycle when the ring fills past `edge_wakeup_bytes` (as for `events`). */
  bpf_ringbuf_submit(ev, edge_submit_flags());
  return TC_ACT_UNSPEC;
malformed:
  count(L7_CNT_EDGE_MALFORMED);
  return TC_ACT_UNSPEC;
}

/* Egress on the host-side device: the packet goes into the sandbox. */
SEC("tc")
int edge_egress(struct __sk_buff *skb) { return edge_packet(skb, EDGE_TO_SANDBOX); }

/* Ingress on the host-side device: the packet comes out of the sandbox. */
SEC("tc")
int edge_ingress(struct __sk_buff *skb) { return edge_packet(skb, EDGE_FROM_SANDBOX); }

#endif /* ISOTRACE_BPF_EDGE_BPF_H_ */
