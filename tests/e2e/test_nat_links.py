"""Calls to a NAT'd service address link caller and callee, through the kernel's conntrack.

A caller (Python's http.client) in its own network namespace calls a virtual address
(10.96.x.10:80) that nftables DNATs to a server (Python's http.server) in another
namespace, and SNATs the caller's source on the way, so neither end's 4-tuple mirrors
the other's. Two layouts:

- "caller": the rules are in the caller's own namespace (OUTPUT: dnat, POSTROUTING: snat
  to a second address of the caller). The conntrack entry lives there: the daemon must
  open its ctnetlink socket inside that namespace.
- "node": the Kubernetes layout. Caller and callee are "pods", each joined to the node's
  namespace by a veth with its default route there; the node forwards between them,
  DNATs the Service address in PREROUTING (as kube-proxy's rules do) and masquerades the
  caller. The entry lives in the node's namespace (the daemon's own here).

Each case: five requests on one keep-alive connection, then one on each of three fresh
connections, the caller exiting right after the last. A third case, "oneshot", is the
"caller" layout with a caller that makes one request and exits at once, the only process
its namespace ever had: the daemon must still ask in that namespace (found by the
socket's namespace inode among the named ones) after the process is gone. A fourth,
"zone", is the "caller" layout with the caller's connections tracked in conntrack zone 7
(`ct zone set` before conntrack, both ways), where a lookup in the default zone finds
nothing: the daemon, told the zone (correlate.conntrack_zones), must find it there.
Checked at the independent OTLP receiver: every SERVER span is the child of one of the
caller's CLIENT spans, in its trace, each CLIENT span claimed once; the SERVER spans name
the translated caller (client.address) and the CLIENT spans the virtual address
(server.address). The stats file counts the links made through conntrack."""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PORT = 18099

SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"""

CLIENT = r"""
import http.client, sys
host, port = sys.argv[1], int(sys.argv[2])
c = http.client.HTTPConnection(host, port, timeout=10)
for i in range(5):
    c.request("GET", "/svc?r=keep%d" % i)
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
c.close()
# Then three fresh connections, one request each, and the process exits at once.
for i in range(3):
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("GET", "/svc?r=fresh%d" % i)
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    c.close()
"""

# Five requests on one keep-alive connection, then one on each of three fresh ones.
REQUESTS = 8
CONNECTIONS = 4

# "oneshot": one request on one connection, and the process exits. Nothing else ever ran
# in its namespace: the daemon finds it by the socket's namespace inode among the named
# ones (/run/netns, where ip-netns and CNI plugins bind-mount them).
ONESHOT = r"""
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
c.request("GET", "/svc?r=oneshot")
r = c.getresponse(); r.read()
assert r.status == 200, r.status
"""


def sh(*args, **kw):
    subprocess.run(list(args), check=True, **kw)


def nft(ns, text):
    cmd = ["nft", "-f", "-"] if ns is None else ["ip", "netns", "exec", ns, "nft", "-f", "-"]
    subprocess.run(cmd, check=True, input=text.encode())


def setup_caller(suffix, made, cleanups):
    """Rules in the caller's namespace; returns (caller ns, server ns, VIP, caller as the
    server sees it)."""
    ns_c, ns_s = "inc" + suffix, "ins" + suffix
    h.veth_namespaces(ns_c, ns_s, "inv" + suffix, "inp" + suffix, "10.231.80.1/24", "10.231.80.2/24", made)
    sh("ip", "-n", ns_c, "addr", "add", "10.231.80.3/24", "dev", "inv" + suffix)
    sh("ip", "-n", ns_c, "route", "add", "10.96.80.10/32", "dev", "inv" + suffix)
    nft(ns_c, """table ip isotrace_nat {
 chain out { type nat hook output priority -100; ip daddr 10.96.80.10 tcp dport 80 dnat to 10.231.80.2:%d; }
 chain post { type nat hook postrouting priority 100; ip daddr 10.231.80.2 tcp dport %d snat to 10.231.80.3; }
}
""" % (PORT, PORT))
    return ns_c, ns_s, "10.96.80.10", "10.231.80.3"


def setup_zone(suffix, made, cleanups):
    """The caller layout, its connections tracked in conntrack zone 7."""
    r = setup_caller(suffix, made, cleanups)
    nft(r[0], """table ip isotrace_zone {
 chain out { type filter hook output priority -300; ct zone set 7; }
 chain pre { type filter hook prerouting priority -300; ct zone set 7; }
}
""")
    return r


def setup_node(suffix, made, cleanups):
    """kube-proxy's layout: the translation in the node's namespace."""
    ns_c, ns_s = "inc" + suffix, "ins" + suffix
    for ns in (ns_c, ns_s):
        sh("ip", "netns", "add", ns)
        made.append(ns)
    for ns, host_dev, pod_dev, net in ((ns_c, "ihc" + suffix, "ipc" + suffix, "10.231.81"),
                                       (ns_s, "ihs" + suffix, "ips" + suffix, "10.231.82")):
        sh("ip", "link", "add", host_dev, "type", "veth", "peer", "name", pod_dev, "netns", ns)
        cleanups.append(["ip", "link", "del", host_dev])
        sh("ip", "addr", "add", net + ".1/24", "dev", host_dev)
        sh("ip", "link", "set", host_dev, "up")
        sh("ip", "-n", ns, "addr", "add", net + ".2/24", "dev", pod_dev)
        sh("ip", "-n", ns, "link", "set", pod_dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", net + ".1")
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        old = f.read().strip()
    cleanups.append(["sh", "-c", "echo %s > /proc/sys/net/ipv4/ip_forward" % old])
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1")
    table = "isotrace_nat_" + suffix
    nft(None, """table ip %s {
 chain pre { type nat hook prerouting priority -100; ip daddr 10.96.81.10 tcp dport 80 dnat to 10.231.82.2:%d; }
 chain post { type nat hook postrouting priority 100; ip saddr 10.231.81.0/24 ip daddr 10.231.82.2 masquerade; }
}
""" % (table, PORT))
    cleanups.append(["nft", "delete", "table", "ip", table])
    return ns_c, ns_s, "10.96.81.10", "10.231.82.1"


def run(layout, errors):
    suffix = "%d%s" % (os.getpid(), layout[0])
    made, cleanups = [], []
    stats_path = "/tmp/isotrace-nat-stats-%s.json" % suffix
    try:
        with h.Procs() as procs:
            recv = h.Receiver(procs)
            cfg = os.path.join(procs.tmp, "isotrace.yaml")
            with open(cfg, "w") as f:
                f.write('log: {stats_file: "%s"}\n' % stats_path)
                if layout == "zone":
                    f.write('correlate: {conntrack_zones: [3, 7]}\n')
            daemon = h.start_daemon(procs, "--config", cfg, "--otlp-endpoint", recv.endpoint)
            setup = {"node": setup_node, "zone": setup_zone}.get(layout, setup_caller)
            ns_c, ns_s, vip, seen_as = setup(suffix, made, cleanups)
            srv = procs.start(["ip", "netns", "exec", ns_s, sys.executable, "-c", SERVER, str(PORT)], "server")
            if not h.wait_listening_in(ns_s, PORT):
                h.fail("the server did not listen: " + procs.log(srv))
            script = ONESHOT if layout == "oneshot" else CLIENT
            if layout == "oneshot":
                # The daemon is held still while the caller runs and exits: its records
                # wait in the ring buffer, and the daemon sees the connection only once the
                # process (and /proc/<pid>/ns/net) is gone.
                daemon.send_signal(signal.SIGSTOP)
            try:
                cli = procs.start(["ip", "netns", "exec", ns_c, sys.executable, "-c", script, vip, "80"], "client")
                rc = cli.wait(60)
            finally:
                daemon.send_signal(signal.SIGCONT)
            if rc != 0:
                h.fail("%s: client failed: %s" % (layout, procs.log(cli)))
            if layout == "oneshot" and os.path.exists("/proc/%d" % cli.pid):
                h.fail("oneshot: the caller's /proc entry outlived it")
            spans, dlog = h.stop_and_collect(procs, daemon, recv)
            server_pid, client_pid = srv.pid, cli.pid
    finally:
        for c in reversed(cleanups):
            subprocess.run(c)
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns])
    with open(stats_path) as f:
        tracker = json.load(f)["tracker"]
    os.unlink(stats_path)

    mine = [s for s in spans if h.span_attrs(s).get("url.path") == "/svc"]
    clients = {s["spanId"]: s for s in mine if s.get("spanKind") == 3 and h.pid_of(s) == client_pid}
    servers = [s for s in mine if s.get("spanKind") == 2 and h.pid_of(s) == server_pid]
    want, conns = (1, 1) if layout == "oneshot" else (REQUESTS, CONNECTIONS)
    print("%s: %d CLIENT, %d SERVER spans; tracker %s" % (layout, len(clients), len(servers), {
        k: v for k, v in tracker.items() if k.startswith(("nat", "links"))}))
    if len(clients) != want or len(servers) != want:
        errors.append("%s: %d CLIENT and %d SERVER spans, want %d of each" % (layout, len(clients), len(servers), want))
    claimed = set()
    for s in servers:
        a = h.span_attrs(s)
        q = a.get("url.query")
        parent = clients.get(s.get("parentSpanId"))
        if parent is None:
            errors.append("%s: SERVER %s is not the child of a caller's CLIENT span" % (layout, q))
            continue
        if parent["traceId"] != s["traceId"]:
            errors.append("%s: SERVER %s is in another trace than its parent" % (layout, q))
        if h.span_attrs(parent).get("url.query") != q:
            errors.append("%s: SERVER %s linked to the CLIENT span of %s" % (layout, q, h.span_attrs(parent).get("url.query")))
        if s.get("parentSpanId") in claimed:
            errors.append("%s: a CLIENT span is the parent of two SERVER spans" % layout)
        claimed.add(s.get("parentSpanId"))
        if a.get("client.address") != seen_as:
            errors.append("%s: SERVER %s client.address %s, want the translated caller %s" % (
                layout, q, a.get("client.address"), seen_as))
    for s in clients.values():
        if h.span_attrs(s).get("server.address") != vip:
            errors.append("%s: CLIENT server.address %s, want the service address %s" % (
                layout, h.span_attrs(s).get("server.address"), vip))
    if tracker.get("links_peer_nat", 0) < want:
        errors.append("%s: links_peer_nat = %s, want ≥ %d" % (layout, tracker.get("links_peer_nat"), want))
    # One lookup per caller connection, never per request; other processes' connections
    # on the node may be asked about too.
    if tracker.get("nat_translated", 0) < conns or tracker.get("nat_lookups", 0) > conns + 8:
        errors.append("%s: nat_translated %s, nat_lookups %s: want one per caller connection" % (
            layout, tracker.get("nat_translated"), tracker.get("nat_lookups")))
    if tracker.get("links_nat_ambiguous", 0):
        errors.append("%s: links_nat_ambiguous = %s, want 0" % (layout, tracker.get("links_nat_ambiguous")))
    return dlog


def main():
    for tool in ("nft", "ip"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode != 0:
            h.skip("%s missing: run scripts/install-deps.sh" % tool)
    errors = []
    dlog = ""
    for layout in ("caller", "node", "oneshot", "zone"):
        dlog = run(layout, errors)
    h.finish(errors, dlog)


if __name__ == "__main__":
    main()
