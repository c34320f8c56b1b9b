"""The sandbox fixtures of tests/e2e/sandboxes.py, on their own (no daemon): a gVisor
sandbox on its netstack behind a veth, one on the host's network (runsc
--network=host), and a QEMU microVM behind a tap each serve 20 HTTP GETs from here
with the right bodies; the traffic crosses the fixture's own host-side device (its
counters grow) or, with host networking, a socket the Sentry owns; a CPU quota on the
gVisor pod throttles (cpu.stat nr_throttled grows under a CPU loop inside); and after
each stop nothing is left: no netns, veth, tap, runsc container, cgroup or process.

ISOTRACE_MICROVM_ACCEL=tcg|kvm forces the microVM's accelerator (default: KVM where it
can boot Debian's kernel, TCG otherwise)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import sandboxes as sb  # noqa: E402

GETS = 20


def dev_packets(dev):
    out = 0
    for k in ("rx_packets", "tx_packets"):
        with open("/sys/class/net/%s/statistics/%s" % (dev, k)) as f:
            out += int(f.read())
    return out


def gets(name, fixture, paths, errors):
    """GETS fresh-connection GETs cycling through paths ({path: expected body});
    returns the seconds each took."""
    took = []
    items = list(paths.items())
    for i in range(GETS):
        path, want = items[i % len(items)]
        t = time.perf_counter()
        try:
            status, body = sb.http_get(fixture.url(path), timeout=10)
        except OSError as e:
            errors.append("%s GET %s #%d: %s" % (name, path, i, e))
            continue
        took.append(time.perf_counter() - t)
        if status != 200 or body != want:
            errors.append("%s GET %s #%d: status %d, %d bytes (want %d)" % (name, path, i, status, len(body), len(want)))
    return took


def listening_owner(port):
    """Pids holding the TCP socket listening on 127.0.0.1:port."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[1].upper() == "0100007F:%04X" % port:
                inodes.add(parts[9])
    pids = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % p):
                link = os.readlink("/proc/%s/fd/%s" % (p, fd))
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    pids.add(int(p))
                    break
        except OSError:
            pass
    return pids


def alive(pids):
    return sorted(p for p in pids if sb.running(p))


def check_gvisor_gone(g, pids, errors):
    name = "gvisor-" + g.network
    r = sb.run(["runsc", "--root", sb.RUNSC_ROOT, "list", "-quiet"], check=False)
    if g.cid in r.stdout.split():
        errors.append("%s: runsc still lists %s" % (name, g.cid))
    if alive(pids):
        errors.append("%s: processes left: %s" % (name, alive(pids)))
    left = sb.cgroup_dirs(g.cgroup)
    if left:
        errors.append("%s: cgroup dirs left: %s" % (name, sorted(left.values())))
    if g.network == "sandbox":
        if sb.netns_exists("itg-%d" % g.n):
            errors.append("%s: netns itg-%d left" % (name, g.n))
        if sb.link_exists("itgv%d" % g.n):
            errors.append("%s: veth itgv%d left" % (name, g.n))


def gvisor(procs, network, errors, timings):
    name = "gvisor-" + network
    files = {"hello.txt": b"hello from the gvisor %s fixture\n" % network.encode(),
             "index.html": b"<html>" + b"x" * 3000 + b"</html>\n"}
    g = sb.GvisorSandbox(procs, network=network, files=files,
                         cpu_quota_us=50000 if network == "sandbox" else None)
    with g:
        pids = g.pids()
        print("%s: cid %s ready in %.2f s at %s; sentry %d, gofer %s, pids %s; cgroup %s (v2 %s); "
              "veth %s ifindex %s; /proc/sys workaround %s"
              % (name, g.cid, g.ready_s, g.url(), g.sentry_pid, g.gofer_pids, sorted(pids), g.cgroup,
                 g.cgroup_v2, g.veth, g.veth_ifindex, g.procsys_workaround), flush=True)
        timings[name] = g.ready_s
        if g.sentry_pid not in pids or not g.gofer_pids or not set(g.gofer_pids) <= pids:
            errors.append("%s: sentry %s / gofers %s not among the sandbox's pids %s"
                          % (name, g.sentry_pid, g.gofer_pids, sorted(pids)))
        if "cpu" not in g.cgroup_dirs and "" not in g.cgroup_dirs:
            errors.append("%s: no cpu cgroup dir: %s" % (name, g.cgroup_dirs))
        before = dev_packets(g.veth) if g.veth else 0
        took = gets(name, g, {"/hello.txt": files["hello.txt"], "/index.html": files["index.html"]}, errors)
        if g.veth:
            crossed = dev_packets(g.veth) - before
            if crossed < GETS * 4:
                errors.append("%s: only %d packets crossed %s for %d GETs" % (name, crossed, g.veth, GETS))
        else:
            owners = listening_owner(g.port)
            if not owners or not owners <= g.pids():
                errors.append("%s: 127.0.0.1:%d is held by %s, not by the sandbox %s"
                              % (name, g.port, sorted(owners), sorted(g.pids())))
        if took:
            print("%s: %d GETs, median %.1f ms" % (name, len(took), 1000 * sorted(took)[len(took) // 2]))
        if network == "sandbox":
            # The quota: 50 ms / 100 ms from the spec, then squeezed to 20 ms at run time.
            kind, d = g._cpu_dir()
            if kind == "v1":
                with open(os.path.join(d, "cpu.cfs_quota_us")) as f:
                    if f.read().strip() != "50000":
                        errors.append("%s: spec quota not in %s/cpu.cfs_quota_us" % (name, d))
            g.set_cpu_quota(20000)
            s0 = g.cpu_stat()
            r = g.exec_([sb.PYTHON, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass\n"])
            s1 = g.cpu_stat()
            g.set_cpu_quota(None)
            grew = s1["nr_throttled"] - s0["nr_throttled"]
            print("%s: quota 20 ms/100 ms, 1.5 s CPU loop inside: nr_throttled %d -> %d (%s cpu cgroup %s)"
                  % (name, s0["nr_throttled"], s1["nr_throttled"], kind, d))
            if r.returncode != 0:
                errors.append("%s: runsc exec failed: %s" % (name, r.stderr[-500:]))
            elif grew < 3:
                errors.append("%s: the quota did not throttle (nr_throttled +%d)" % (name, grew))
        pids = g.pids() | pids
    check_gvisor_gone(g, pids, errors)


def microvm(procs, errors, timings):
    vm = sb.MicroVM(procs)
    with vm:
        vcpus = vm.vcpu_tids()
        print("microvm: %s accel %s%s, kernel %s: qemu start to guest ready %.1f s, first HTTP answer "
              "%.1f s after start(); pid %d, vCPU threads %s, tap %s ifindex %s, %s"
              % (vm.name, vm.accel, " (KVM not used: %s)" % vm.kvm_skipped if vm.kvm_skipped else "",
                 vm.kernel_release, vm.boot_s, vm.ready_s, vm.pid, vcpus, vm.tap, vm.tap_ifindex, vm.url()),
              flush=True)
        timings["microvm-" + vm.accel] = vm.boot_s
        want = "/KVM" if vm.accel == "kvm" else "/TCG"
        if not vcpus or not all(c.endswith(want) for c in vcpus.values()):
            errors.append("microvm: vCPU threads %s, want CPU n%s" % (vcpus, want))
        before = dev_packets(vm.tap)
        took = gets("microvm", vm, {"/hello.txt": vm.files["hello.txt"], "/index.html": vm.files["index.html"],
                                    "/big.bin": vm.files["big.bin"]}, errors)
        crossed = dev_packets(vm.tap) - before
        if crossed < GETS * 4:
            errors.append("microvm: only %d packets crossed %s for %d GETs" % (crossed, vm.tap, GETS))
        t = time.perf_counter()
        status, body = sb.http_get(vm.url("/cgi-bin/sleep?0.3"), timeout=20)
        slow = time.perf_counter() - t
        if status != 200 or body != b"slept 0.3\n" or slow < 0.3:
            errors.append("microvm: /cgi-bin/sleep?0.3: %d %r after %.2f s" % (status, body, slow))
        if took:
            print("microvm: %d GETs, median %.1f ms; /cgi-bin/sleep?0.3 took %.2f s"
                  % (len(took), 1000 * sorted(took)[len(took) // 2], slow))
        pid, tap = vm.pid, vm.tap
    if os.path.exists("/proc/%d" % pid):
        errors.append("microvm: qemu %d still running" % pid)
    if sb.link_exists(tap):
        errors.append("microvm: tap %s left" % tap)


def main():
    if os.geteuid() != 0:
        h.skip("needs root (netns, veth, tap, cgroups)")
    stale = sb.cleanup_stale()
    if stale:
        print("removed leftovers of an earlier run: %s" % stale)
    errors, timings = [], {}
    t0 = time.time()
    with h.Procs() as procs:
        gvisor(procs, "sandbox", errors, timings)
        gvisor(procs, "host", errors, timings)
        microvm(procs, errors, timings)
    print("timings (s): %s; total %.1f s" % (", ".join("%s %.2f" % kv for kv in timings.items()), time.time() - t0))
    if errors:
        print("\n".join(errors[:40]))
        h.fail("%d problems" % len(errors))
    print("PASS")


if __name__ == "__main__":
    main()
