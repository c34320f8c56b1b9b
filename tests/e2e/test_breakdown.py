"""Vertical breakdown with real faults (issue 3). Each scenario runs a single-threaded
server (fixtures/work_server.py) under one real fault and asserts that the attribute
that should dominate does, and that for every span
oncpu + runq + throttled + blkio + memstall + offcpu_other == duration (within 1 %).

Scenarios: alone (CPU work), CPU contention (pinned stress-ng hogs), CFS throttling
(cgroup v1 cpu quota, or v2 cpu.max), block I/O (fsync), memory pressure (page cache
under a memory cgroup limit), packet loss (nftables drop on a veth between two network
namespaces) → retransmits and tcp_retransmit span events."""
import http.client
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "work_server.py")
PARTS = ["isotrace.app.oncpu_ns", "isotrace.kernel.runq_ns", "isotrace.container.throttled_ns",
         "isotrace.kernel.blkio_ns", "isotrace.kernel.memstall_ns", "isotrace.offcpu_other_ns"]
SHORT = {p: p.split(".")[-1].replace("_ns", "") for p in PARTS}
errors = []



def wait_running(parent, n, timeout=10.0):
    """Waits until `parent` has n children in state R (stress-ng's workers spinning)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        running = 0
        for tid in os.listdir("/proc/%d/task" % parent) if os.path.isdir("/proc/%d" % parent) else []:
            try:
                with open("/proc/%d/task/%s/children" % (parent, tid)) as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            for k in kids:
                try:
                    with open("/proc/%d/stat" % k) as f:
                        running += f.read().rsplit(")", 1)[1].split()[0] == "R"
                except OSError:
                    pass
        if running >= n:
            time.sleep(0.2)
            return
        time.sleep(0.05)
    h.fail("stress-ng's %d workers did not start within %.0f s" % (n, timeout))

def check(cond, msg):
    if not cond:
        errors.append(msg)
        print("  MISMATCH: " + msg, flush=True)


def drive(port, tag, n, host="127.0.0.1", timeout=30, prefix=None):
    """n sequential keep-alive requests; returns the set of query keys sent."""
    keys = []
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    for i in range(n):
        key = "s=%s-%d" % (tag, i)
        conn.request("GET", "/w?" + key)
        r = conn.getresponse()
        r.read()
        keys.append(key)
    conn.close()
    return keys


def cgroup_v1(controller, name):
    path = "/sys/fs/cgroup/%s/isotrace-test-%s" % (controller, name)
    if not os.path.isdir("/sys/fs/cgroup/%s" % controller):
        return None
    os.makedirs(path, exist_ok=True)
    return path


def write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def rmdir_cgroup(path):
    if path and os.path.isdir(path):
        for _ in range(50):
            try:
                os.rmdir(path)
                return
            except OSError:
                time.sleep(0.1)


def main():
    for tool in ("stress-ng", "taskset", "nft", "ip"):
        if not shutil.which(tool):
            h.skip("%s not installed (scripts/install-deps.sh)" % tool)
    work_dir = "/var/tmp/isotrace-breakdown"
    os.makedirs(work_dir, exist_ok=True)
    with h.Procs() as procs:
        recv = h.Receiver(procs)
        stats_path = os.path.join(procs.tmp, "stats.json")
        daemon = h.start_daemon(procs, "--otlp-endpoint", recv.endpoint, "--summary-interval", "0",
                                "--stats-file", stats_path)
        env = dict(os.environ, WORK_DIR=work_dir)
        scen = {}  # name -> (pid, keys)
        cgroups = []
        netns = []
        try:
            def server(name, mode, arg=None, pre=(), popen_kw=None):
                port = h.free_port()
                args = list(pre) + [sys.executable, FIX, str(port), mode] + ([str(arg)] if arg else [])
                p = procs.start(args, "srv-" + name, env=env, **(popen_kw or {}))
                if not h.wait_port(port):
                    h.fail("server %s did not start: %s" % (name, procs.log(p)))
                return p, port

            # 1. alone: CPU work, pinned to CPU 1, nothing else there.
            p, port = server("alone", "cpu", 20, pre=["taskset", "-c", "1"])
            scen["alone"] = (p.pid, drive(port, "alone", 25))
            procs.stop(p)

            # 2. contention: same server pinned to CPU 1 with four pinned hogs (a fair share
            # of one fifth; the scheduler's wake-up credit gives a server that sleeps between
            # requests more than that, and three hogs that had not all started by the first
            # request once left it at half the CPU: oncpu ≈ runq). The load starts once the
            # hogs are all running.
            p, port = server("contention", "cpu", 20, pre=["taskset", "-c", "1"])
            hogs = procs.start(["stress-ng", "--cpu", "4", "--taskset", "1", "--timeout", "60s", "--quiet"], "hogs")
            wait_running(hogs.pid, 4)
            scen["contention"] = (p.pid, drive(port, "contention", 15))
            procs.stop(hogs)
            procs.stop(p)

            # 3. throttling: cgroup CPU quota of 10 ms per 100 ms period.
            cg = cgroup_v1("cpu", "throttle")
            if cg:
                cgroups.append(cg)
                write(cg + "/cpu.cfs_period_us", 100000)
                write(cg + "/cpu.cfs_quota_us", 10000)
            else:
                cg = "/sys/fs/cgroup/isotrace-test-throttle"
                os.makedirs(cg, exist_ok=True)
                cgroups.append(cg)
                write(cg + "/cpu.max", "10000 100000")
            p, port = server("throttle", "cpu", 30, pre=["taskset", "-c", "1"])
            write(cg + "/cgroup.procs", p.pid)
            scen["throttle"] = (p.pid, drive(port, "throttle", 12))
            procs.stop(p)

            # 4. block I/O: 16 rounds of 32 KiB written and fsync'd per request.
            p, port = server("blkio", "fsync", 512)
            scen["blkio"] = (p.pid, drive(port, "blkio", 15))
            procs.stop(p)

            # 5. memory: page cache of a 160 MiB file read under a 32 MiB memory limit.
            big = os.path.join(work_dir, "big.bin")
            with open(big, "wb") as f:
                for _ in range(160):
                    f.write(os.urandom(1 << 20))
                f.flush()
                os.fsync(f.fileno())
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            mcg = cgroup_v1("memory", "mem")
            if mcg:
                cgroups.append(mcg)
                write(mcg + "/memory.limit_in_bytes", 32 << 20)
            else:
                mcg = "/sys/fs/cgroup/isotrace-test-mem"
                os.makedirs(mcg, exist_ok=True)
                cgroups.append(mcg)
                write(mcg + "/memory.max", 32 << 20)
            p, port = server("memory", "memread", big)
            write(mcg + "/cgroup.procs", p.pid)
            scen["memory"] = (p.pid, drive(port, "memory", 6, timeout=60))
            procs.stop(p)
            os.unlink(big)

            # 6. network: client and server in two namespaces on a veth; 10 % of the
            # server's packets dropped by nftables on arrival → retransmits. Responses of
            # 8 MiB outgrow the send buffer, so the server's writes (its span) last until
            # the lossy transfer is nearly done.
            suffix = str(os.getpid())
            ns_c, ns_s = "itc" + suffix, "its" + suffix
            h.veth_namespaces(ns_c, ns_s, "itv" + suffix, "itp" + suffix, "10.231.77.1/24", "10.231.77.2/24", netns)
            # Dropped on the client's input: a local output drop is a failed transmit, not a
            # loss, and TCP resends it without a retransmit.
            subprocess.run(["ip", "netns", "exec", ns_c, "nft", "-f", "-"], check=True, input=(
                "table inet isotrace_loss {\n chain in {\n  type filter hook input priority 0;\n"
                "  tcp sport 18099 numgen random mod 100 < 10 drop\n }\n}\n").encode())
            p = procs.start(["ip", "netns", "exec", ns_s, sys.executable, FIX, "18099", "big", "8192"], "srv-net", env=env)
            client = (
                "import http.client,time,sys\n"
                "for _ in range(100):\n"
                "  try:\n"
                "    c=http.client.HTTPConnection('10.231.77.2',18099,timeout=2); c.connect(); break\n"
                "  except OSError: time.sleep(0.1)\n"
                "c=http.client.HTTPConnection('10.231.77.2',18099,timeout=60)\n"
                "for i in range(10):\n"
                "  c.request('GET','/w?s=net-%d'%i); c.getresponse().read()\n")
            subprocess.run(["ip", "netns", "exec", ns_c, sys.executable, "-c", client], check=True, timeout=300)
            # `ip netns exec` execs python in place: the server's pid is p.pid.
            scen["network"] = (p.pid, ["s=net-%d" % i for i in range(10)])
            procs.stop(p)

            time.sleep(2.0)
            rc = procs.stop(daemon)
            if rc != 0:
                h.fail("isotraced exited %s:\n%s" % (rc, procs.log(daemon)[-3000:]))
            time.sleep(1.0)
        finally:
            for cg in cgroups:
                rmdir_cgroup(cg)
            for ns in netns:
                subprocess.run(["ip", "netns", "del", ns])
            shutil.rmtree(work_dir, ignore_errors=True)

        spans = [s for s in recv.records("span") if s.get("spanKind") == 2]
        by_key = {}
        for s in spans:
            q = h.span_attrs(s).get("url.query")
            by_key.setdefault((int(h.res_attrs(s).get("process.pid", 0)), q), []).append(s)

        shares = {}
        sum_violations = []
        for name, (pid, keys) in scen.items():
            tot = {p: 0 for p in PARTS}
            dur_total = 0
            retrans = 0
            retrans_events = 0
            found = 0
            for k in keys:
                got = by_key.get((pid, k), [])
                if len(got) != 1:
                    check(False, "%s %s: %d spans" % (name, k, len(got)))
                    continue
                s = got[0]
                a = h.span_attrs(s)
                dur = int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])
                missing = [p for p in PARTS if p not in a]
                if missing:
                    check(False, "%s %s: missing %s" % (name, k, missing))
                    continue
                found += 1
                parts = {p: int(a[p]) for p in PARTS}
                ssum = sum(parts.values())
                if abs(ssum - dur) > max(dur // 100, 2000):
                    sum_violations.append("%s %s: parts sum %d != duration %d (%s)" % (name, k, ssum, dur, parts))
                for p in PARTS:
                    tot[p] += parts[p]
                dur_total += dur
                retrans += int(a.get("isotrace.net.retransmits", 0))
                retrans_events += sum(1 for e in s.get("events", []) if e.get("name") == "tcp_retransmit")
            if not found:
                check(False, "%s: no spans with a breakdown" % name)
                continue
            sh = {SHORT[p]: tot[p] / max(dur_total, 1) for p in PARTS}
            shares[name] = sh
            print("%-10s spans %2d  mean %7.1f ms  %s  retransmits %d (events %d)" % (
                name, found, dur_total / found / 1e6,
                " ".join("%s %4.0f%%" % (k, v * 100) for k, v in sh.items()), retrans, retrans_events), flush=True)
            if name == "network":
                check(retrans > 0, "network: no retransmits counted")
                check(retrans_events > 0, "network: no tcp_retransmit span events")

        def dominant(name):
            return max(shares[name], key=shares[name].get) if name in shares else None

        if "alone" in shares:
            a = shares["alone"]
            check(dominant("alone") == "oncpu", "alone: %s dominates, want oncpu" % dominant("alone"))
            check(a["runq"] < 0.2 and a["throttled"] < 0.05 and a["blkio"] < 0.05, "alone: %s" % a)
        if "contention" in shares and "alone" in shares:
            check(dominant("contention") == "runq", "contention: %s dominates, want runq" % dominant("contention"))
            check(shares["contention"]["runq"] > 5 * max(shares["alone"]["runq"], 0.01), "contention: runq not far above alone")
        if "throttle" in shares:
            check(dominant("throttle") == "throttled", "throttle: %s dominates, want throttled" % dominant("throttle"))
            check(shares["throttle"]["runq"] < shares["throttle"]["throttled"] / 3, "throttle: counted as runq")
        if "blkio" in shares:
            # Run-queue wait depends on whatever else the machine runs. The write+fsync
            # rounds also burn real CPU in the kernel (copying 32 KiB, the flush path): on
            # this VM's fast virtual disk 40-55 % of the span is honestly on-CPU, so oncpu
            # is not compared. Every off-CPU part must be block I/O: it is the largest of
            # them by far, and a quarter of the span at least (alone: none).
            b = {k: v for k, v in shares["blkio"].items() if k not in ("runq", "oncpu")}
            check(max(b, key=b.get) == "blkio", "blkio: %s dominates off-CPU time, want blkio (%s)" % (max(b, key=b.get), b))
            check(b["blkio"] >= 0.25, "blkio: share %.2f below 25 %%" % b["blkio"])
            check(b["blkio"] > 5 * max(v for k, v in b.items() if k != "blkio"), "blkio: not far above the other off-CPU parts (%s)" % b)
        if "memory" in shares:
            check(shares["memory"]["memstall"] > 0, "memory: memstall is 0")
        # The sum invariant holds by construction (bpf/acct.bpf.h books every nanosecond
        # of a thread in exactly one counter): every span must keep it. Spans of the first
        # phase used to come up 1-14 ms short now and then: on this Firecracker guest,
        # switches away from one of init's threads never reach sched_switch, so the thread
        # that runs next was seen switched out (a preemption) and never back in; the
        # accounting now notices a running thread it holds off CPU and rebooks it.
        total_spans = sum(len(keys) for _, keys in scen.values())
        # Threads found running whose switch-in sched_switch never saw (bpf/acct.bpf.h,
        # acct_resync): rebooked, counted, printed for the record.
        resyncs = "?"
        try:
            with open(stats_path) as f:
                resyncs = json.load(f)["probes"]["l7"]["acct_resyncs"]
        except (OSError, ValueError, KeyError):
            pass
        print("sum invariant: %d of %d spans off by more than 1 %% (accounting resyncs: %s)"
              % (len(sum_violations), total_spans, resyncs))
        for v in sum_violations:
            print("  " + v)
        check(not sum_violations, "%d spans break the sum invariant" % len(sum_violations))
        if errors:
            print("daemon log tail:\n" + procs.log(daemon)[-2000:])
            h.fail("%d mismatches" % len(errors))
        print("PASS")


if __name__ == "__main__":
    main()
