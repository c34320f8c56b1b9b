"""Loss in the request direction, both kinds.

A caller in one network namespace POSTs 256 KiB bodies to a server (Python's
http.server) in another, over a veth pair; nftables drops 15 % of the caller's data
packets (numgen random), in one of two places:

- "network": on the server's input, as a lossy link would. The caller's socket
  retransmits its request segments. Every retransmit is the caller's (the server's
  packets are never dropped). Checked: the CLIENT spans count them
  (isotrace.net.retransmits, tcp_retransmit events on the caller's own socket) and the
  SERVER spans, whose request bytes they delayed, carry them as the peer's
  (isotrace.net.side=peer).
- "local": on the caller's own output, as a node firewall (or a kube-proxy rule) would.
  TCP then sees a failed transmit, not a loss: it resends without counting or tracing a
  retransmission, which is why such loss used to leave no trace on any span
  (isotrace.net.retransmits = 0). Checked: packet_drop events (kfree_skb with reason
  NETFILTER_DROP) on the caller's CLIENT spans, and as the peer's on the SERVER spans.

Two more lose the handshake instead, each run with three requests on one connection:
- "syn": the caller's first SYN is lost on the link; the kernel resends it after 1 s.
- "synack": the server's first SYN-ACK is lost on its way out; the handshake completes
  about 1 s later. The listener's resend (tcp_retransmit_synack: the connection has no
  socket state yet) must land on the caller's first CLIENT span as the peer's
  tcp_retransmit.
Each: the first CLIENT span covers the connect (isotrace.net.connect_ns ≥ 0.9 s).

All: every request is one CLIENT span of the caller and one SERVER span of the server,
linked, at the independent OTLP receiver."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PARTS = ["isotrace.app.oncpu_ns", "isotrace.kernel.runq_ns", "isotrace.container.throttled_ns",
         "isotrace.kernel.blkio_ns", "isotrace.kernel.memstall_ns", "isotrace.offcpu_other_ns"]
REQUESTS = 12
BODY = 256 * 1024
PORT = 18097

SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        while n > 0:
            b = self.rfile.read(min(n, 65536))
            if not b:
                break
            n -= len(b)
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
import http.client, sys, time
host, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for _ in range(100 if sys.argv[5:] != ["noprobe"] else 0):
    try:
        c = http.client.HTTPConnection(host, port, timeout=2); c.connect(); c.close(); break
    except OSError:
        time.sleep(0.1)
c = http.client.HTTPConnection(host, port, timeout=60)
body = b"x" * size
for i in range(n):
    c.request("POST", "/upload?r=%d" % i, body=body, headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
"""


def events(spans, name, peer):
    return sum(1 for s in spans for e in s.get("events", [])
               if e.get("name") == name and ((e.get("attributes") or {}).get("isotrace.net.side") == "peer") == peer)


def wait_listening(ns):
    for _ in range(100):
        out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn", "sport = :%d" % PORT],
                             capture_output=True, text=True).stdout
        if out.strip():
            return True
        time.sleep(0.1)
    return False


def check_connect(clients, servers, errors, tag="syn"):
    """syn/synack: the first request's CLIENT span covers the connect, whose SYN (or
    SYN-ACK) was lost once (the kernel resends it after 1 s): the setup time, the
    retransmit, a breakdown that still sums to the span; later requests on the
    connection start at their write."""
    clients = sorted(clients, key=lambda s: int(s["startTimeUnixNano"]))
    if len(clients) != 3:
        return
    first = clients[0]
    a = h.span_attrs(first)
    dur = int(first["endTimeUnixNano"]) - int(first["startTimeUnixNano"])
    connect = int(a.get("isotrace.net.connect_ns", 0))
    print(tag + ": first CLIENT span %.3f s, connect_ns %d, retransmits %s; later: %s" % (
        dur / 1e9, connect, a.get("isotrace.net.retransmits"),
        [(int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"]), h.span_attrs(s).get("isotrace.net.connect_ns"))
         for s in clients[1:]]))
    if connect < 900_000_000:
        errors.append(tag + ": isotrace.net.connect_ns = %d, want the ≥ 1 s a lost SYN costs" % connect)
    if dur < connect:
        errors.append(tag + ": the CLIENT span (%d ns) does not cover its connect (%d ns)" % (dur, connect))
    if int(a.get("isotrace.net.retransmits", 0)) < 1:
        errors.append(tag + ": the SYN retransmit is not counted on the CLIENT span")
    parts = [p for p in PARTS if p in a]
    if len(parts) == len(PARTS):
        total = sum(int(a[p]) for p in PARTS)
        if abs(total - dur) > max(dur // 100, 2000):
            errors.append(tag + ": breakdown sums to %d, duration %d" % (total, dur))
    else:
        errors.append(tag + ": breakdown missing on the first CLIENT span")
    for s in clients[1:]:
        if "isotrace.net.connect_ns" in h.span_attrs(s):
            errors.append(tag + ": a later request on the connection claims its connect")
    first_server = min(servers, key=lambda s: int(s["startTimeUnixNano"])) if servers else None
    if first_server and int(first_server["startTimeUnixNano"]) - int(first["startTimeUnixNano"]) < 900_000_000:
        errors.append(tag + ": the first CLIENT span starts less than 1 s before its SERVER span")


def run(loss_at, errors):
    suffix = "%d%s" % (os.getpid(), {"network": "n", "local": "l", "syn": "s", "synack": "a"}[loss_at])
    ns_c, ns_s = "irc" + suffix, "irs" + suffix
    made = []
    try:
        with h.Procs() as procs:
            recv = h.Receiver(procs)
            daemon = h.start_daemon(procs, "--otlp-endpoint", recv.endpoint, "--summary-interval", "2")
            h.veth_namespaces(ns_c, ns_s, "irv" + suffix, "irp" + suffix, "10.231.78.1/24", "10.231.78.2/24", made)
            # The caller's data only (not its SYN: the connection must come up), dropped on
            # the server's input (network) or on the caller's output (local).
            ns_rule, hook = {"local": (ns_c, "output"), "synack": (ns_s, "output")}.get(loss_at, (ns_s, "input"))
            rule = {
                # The connection's first SYN is lost on the link (the counter starts at 0).
                "syn": "tcp dport %d tcp flags & (syn|ack) == syn numgen inc mod 2 == 0 drop" % PORT,
                # The server's first SYN-ACK is lost on its way out.
                "synack": "tcp sport %d tcp flags & (syn|ack) == syn|ack numgen inc mod 2 == 0 drop" % PORT,
            }.get(loss_at, "tcp dport %d tcp flags & (syn) == 0 meta length > 200 numgen random mod 100 < 15 drop"
                  % PORT)
            srv = procs.start(["ip", "netns", "exec", ns_s, sys.executable, "-c", SERVER, str(PORT)], "server")
            if not wait_listening(ns_s):
                h.fail("the server did not listen: " + procs.log(srv))
            subprocess.run(["ip", "netns", "exec", ns_rule, "nft", "-f", "-"], check=True, input=(
                "table inet isotrace_reqloss {\n chain c {\n  type filter hook %s priority 0;\n  %s\n }\n}\n"
                % (hook, rule)).encode())
            n, size = (REQUESTS, BODY) if loss_at not in ("syn", "synack") else (3, 1024)
            cli = procs.start(["ip", "netns", "exec", ns_c, sys.executable, "-c", CLIENT, "10.231.78.2", str(PORT),
                               str(n), str(size), "noprobe"], "client")
            if cli.wait(240) != 0:
                h.fail("client failed: " + procs.log(cli))
            spans, dlog = h.stop_and_collect(procs, daemon, recv)
            # `ip netns exec` execs python in place: the pids are the Popen pids.
            server_pid, client_pid = srv.pid, cli.pid
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns])

    by_id = {s["spanId"]: s for s in spans}
    mine = [s for s in spans if (h.span_attrs(s).get("url.path") == "/upload")]
    clients = [s for s in mine if s.get("spanKind") == 3 and h.pid_of(s) == client_pid]
    servers = [s for s in mine if s.get("spanKind") == 2 and h.pid_of(s) == server_pid]
    want_n = REQUESTS if loss_at not in ("syn", "synack") else 3
    if len(clients) != want_n or len(servers) != want_n:
        errors.append("%s: %d CLIENT and %d SERVER spans, want %d of each" % (loss_at, len(clients), len(servers), want_n))
    for s in servers:
        parent = by_id.get(s.get("parentSpanId"))
        if parent is None or h.pid_of(parent) != client_pid or parent.get("spanKind") != 3:
            errors.append("%s: SERVER %s: parent is not the caller's CLIENT span" % (loss_at, h.span_attrs(s).get("url.query")))
    client_retrans = sum(int(h.span_attrs(s).get("isotrace.net.retransmits", 0)) for s in clients)
    got = {(kind, name, peer): events(spans_of, name, peer)
           for kind, spans_of in (("CLIENT", clients), ("SERVER", servers))
           for name in ("tcp_retransmit", "packet_drop") for peer in (False, True)}
    print("%s: %d CLIENT, %d SERVER spans; CLIENT isotrace.net.retransmits %d; events %s" % (
        loss_at, len(clients), len(servers), client_retrans,
        ", ".join("%s %s%s %d" % (k, n, " (peer)" if p else "", v) for (k, n, p), v in sorted(got.items()))))
    if loss_at in ("syn", "synack"):
        check_connect(clients, servers, errors, loss_at)
        if loss_at == "synack" and clients:
            first = min(clients, key=lambda s: int(s["startTimeUnixNano"]))
            if events([first], "tcp_retransmit", True) == 0:
                errors.append("synack: the listener's SYN-ACK resend is not on the caller's first CLIENT span "
                              "as the peer's tcp_retransmit")
        return dlog
    if loss_at == "network":
        want = [("CLIENT", "tcp_retransmit", False), ("SERVER", "tcp_retransmit", True)]
        if client_retrans == 0:
            errors.append("network: the caller's request retransmits are not counted on its CLIENT spans")
    else:
        want = [("CLIENT", "packet_drop", False), ("SERVER", "packet_drop", True)]
    for k in want:
        if got[k] == 0:
            errors.append("%s: no %s event%s on the %s spans" % (loss_at, k[1], " (peer)" if k[2] else "", k[0]))
    # No rule drops anything the server sends, so no drop is its own. (Its own
    # retransmits can be real: a response whose ACK rode on a dropped request segment.)
    if got[("SERVER", "packet_drop", False)]:
        errors.append("%s: a packet_drop blamed on the server's own socket, which no rule drops" % loss_at)
    return dlog


def main():
    for tool in ("nft", "ip"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode != 0:
            h.skip("%s missing: run scripts/install-deps.sh" % tool)
    errors = []
    dlog = ""
    for loss_at in ("network", "local", "syn", "synack"):
        dlog = run(loss_at, errors)
    h.finish(errors, dlog)


if __name__ == "__main__":
    main()
