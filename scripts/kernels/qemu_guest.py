#!/usr/bin/env python3
"""Runs isotrace's BPF and probe-level end-to-end tests on another kernel, in a QEMU
guest started here: today Debian 12's own kernel (6.1, `linux-image-amd64`).

How (docs/kernels.md):
  1. The kernel package is fetched with `apt-get download` into a cache directory and
     unpacked with `dpkg-deb -x` (never installed: the host's boot configuration is not
     touched); `depmod -b` indexes its modules there.
  2. A small initramfs (busybox-static, the virtio/9p/overlay modules, /init) mounts
     the host's / read-only over virtio-9p with a tmpfs overlay on top, so the guest
     runs the host's own binaries and libraries, and writes nothing back.
  3. A scratch ext4 disk (virtio-blk, a sparse file here) is the guest's /var/tmp: the
     block I/O and memory pressure scenarios need a real block device and reclaimable
     page cache (tmpfs has neither).
  4. /init switch_roots into the overlay and runs scripts/kernels/guest-run.sh, which
     mounts what isotrace needs (tracefs, bpf, cgroup2), runs the tests with ctest and
     prints a result line on the serial console; this script parses it.

KVM when /dev/kvm opens, TCG otherwise (or with --accel tcg). TCG is ~10-30x slower:
it runs the BPF probe tests and the e2e tests that do not time real workloads.

usage: qemu_guest.py --build DIR [--kernel debian-6.1] [--accel auto|kvm|tcg]
                     [--tests REGEX] [--timeout S]
exit 0: every test passed in the guest; 1: a test failed or the guest did not finish;
77: cannot run here (no qemu, no kernel package reachable) unless ISOTRACE_REQUIRE_BPF=1,
where that is a failure too.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import queue
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import debian_kernel  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))

# Kernels this script knows how to fetch: the Debian metapackage (its Depends names the
# versioned image of the day, e.g. linux-image-6.1.0-57-amd64) and the feature line
# isotraced must log there (daemon/probes/l7_probe.cc, docs/kernels.md): what this
# kernel is expected to lack is spelled out, so a silent loss or gain fails the test.
KERNELS = {
    "debian-6.1": {
        "meta": "linux-image-amd64",
        # No sock_{send,recv}_length (6.3): socket data from the syscall tracepoints.
        # Before 6.18 throttling is seen per throttled hierarchy (no task_struct.throttled);
        # Debian's 6.1 has no CONFIG_PARAVIRT_TIME_ACCOUNTING: steal from the tick clock.
        # No tcp_sendmsg_locked (6.12): a CLIENT span's first write is timed from the
        # syscall's entry, which the per-syscall hooks see.
        # Passed to the tests as ISOTRACE_KERNEL_LACKS: their checks of these become
        # "absent, as expected" (and presence a failure).
        "lacks": "sock_tracepoints",
        "features": "data=syscall_tracepoints breakdown=true memstall=true tcp_incidents=true oom=true steal=true "
                    "throttling=hierarchy sched_switch_prev_state=true send_begin=true",
    },
}

# Modules the initramfs loads before it can mount the host's /. The rest (virtio_blk,
# ext4, veth, nf_tables, ...) come from the unpacked package after switch_root, by
# modprobe or the kernel's own request_module.
INITRD_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "overlay"]

# Tests run in the guest. The e2e ones exercise the probes and the breakdown (every
# kernel-dependent attribute); the others (CLI, exporters, deploy files) do not depend
# on the kernel and stay on the host. Under TCG the e2e tests' timing checks fail for
# emulation's sake, not the kernel's (measured: "alone" shows 25 % runq, fsync is
# CPU-bound, client/server spans race the linking window), while the kernel-dependent
# parts work (throttled 90 % via cfs_rq.throttle_count, memstall, retransmits): so TCG
# runs the BPF tests, the feature line and the e2e tests that check what the probes
# decode rather than how long things took: HTTP/1 spans (field by field, links,
# non-HTTP traffic), gRPC over HTTP/2, and TLS through the OpenSSL uprobes (on 6.1 the
# syscall-tracepoint data path ties OpenSSL's calls to their sockets). test_h2c_spans
# stays out: under TCG a server's write can return after its client already read the
# answer, and its SERVER-within-CLIENT timing check then fails for emulation's sake.
KVM_TESTS = r"^(bpf\.|e2e\.test_(http_spans|grpc_spans|tls_spans|breakdown)$)"
TCG_TESTS = r"^(bpf\.|e2e\.test_(http_spans|grpc_spans|tls_spans)$)"

EXIT_SKIP = 77


def log(msg):
    print("[kernels] " + msg, flush=True)


def cannot_run(msg):
    if os.environ.get("ISOTRACE_REQUIRE_BPF") == "1":
        log("FAIL: cannot run: " + msg)
        sys.exit(1)
    log("SKIP: " + msg)
    sys.exit(EXIT_SKIP)


def run(args, **kw):
    return subprocess.run(args, check=True, **kw)


def fetch_kernel(name):
    """Downloads and unpacks the kernel package; returns (release, vmlinuz, root dir)."""
    try:
        root, release, vmlinuz = debian_kernel.unpack(debian_kernel.fetch(KERNELS[name]["meta"]))
    except debian_kernel.Unavailable as e:
        cannot_run(str(e))
    return release, vmlinuz, root


def module_chain(root, release, module):
    """The .ko files `module` needs, dependencies first (modprobe --show-depends)."""
    out = subprocess.run(["modprobe", "-d", root, "-S", release, "--show-depends", module],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[1] for line in out.splitlines() if line.startswith("insmod ")]


INIT = r"""#!/bin/busybox sh
# isotrace kernel-test initramfs: host / (9p, read-only) + tmpfs overlay, then the tests.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /host /rw /newroot
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "isotrace-guest: initramfs up after $(cut -d' ' -f1 /proc/uptime) s"
for ko in $(cat /modules.list); do insmod "$ko" || echo "isotrace-guest: insmod $ko failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /host || {
  echo "ISOTRACE-GUEST-FAIL mount of the host root failed"; poweroff -f; }
mount -t tmpfs -o size=75% tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot || {
  echo "ISOTRACE-GUEST-FAIL overlay mount failed"; poweroff -f; }
mkdir -p /newroot/lib/modules/@RELEASE@
mount --bind /host@MODDIR@ /newroot/lib/modules/@RELEASE@
umount /proc /sys /dev
exec switch_root /newroot /bin/bash @SRC@/scripts/kernels/guest-run.sh @ARGS@
"""


def build_initramfs(work, root, release, guest_args):
    tree = os.path.join(work, "initramfs")
    for d in ("bin", "modules"):
        os.makedirs(os.path.join(tree, d), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(tree, "bin", "busybox"))
    kos = []
    for m in INITRD_MODULES:
        for ko in module_chain(root, release, m):
            dst = "/modules/" + os.path.basename(ko)
            if dst not in kos:
                shutil.copy(ko, tree + dst)
                kos.append(dst)
    with open(os.path.join(tree, "modules.list"), "w") as f:
        f.write("\n".join(kos) + "\n")
    init = (INIT.replace("@RELEASE@", release)
            .replace("@MODDIR@", os.path.join(root, "lib", "modules", release))
            .replace("@SRC@", SRC)
            .replace("@ARGS@", " ".join("'%s'" % a for a in guest_args)))
    with open(os.path.join(tree, "init"), "w") as f:
        f.write(init)
    os.chmod(os.path.join(tree, "init"), 0o755)
    out = os.path.join(work, "initramfs.cpio")
    files = subprocess.run(["find", "."], cwd=tree, capture_output=True, text=True,
                           check=True).stdout
    with open(out, "wb") as f:
        run(["busybox", "cpio", "-o", "-H", "newc", "-R", "0:0"], cwd=tree, input=files.encode(),
            stdout=f, stderr=subprocess.DEVNULL)
    return out


def kvm_usable():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="the build tree (binaries and CTest files)")
    ap.add_argument("--kernel", default="debian-6.1", choices=sorted(KERNELS))
    ap.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"])
    ap.add_argument("--tests", help="CTest -R regex run in the guest (default: by accel)")
    ap.add_argument("--timeout", type=float, help="seconds for the whole guest run")
    ap.add_argument("--memory", default="3G")
    ap.add_argument("--cpus", type=int, default=2)
    # arch-capabilities off: nested under some hypervisors (Firecracker) KVM refuses to
    # set that MSR for the guest and QEMU aborts.
    ap.add_argument("--cpu", help="QEMU -cpu model (default host,-arch-capabilities with KVM, max with TCG)")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    if not os.path.exists(os.path.join(build, "CTestTestfile.cmake")):
        sys.exit("no build tree at %s" % build)
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        cannot_run("qemu-system-x86_64 not installed (scripts/install-deps.sh)")
    for tool in ("busybox", "dpkg-deb", "depmod", "modprobe", "mkfs.ext4"):
        if not shutil.which(tool):
            cannot_run("%s not installed (scripts/install-deps.sh)" % tool)
    t0 = time.time()
    release, vmlinuz, root = fetch_kernel(a.kernel)
    accel = a.accel
    if accel == "auto":
        accel = "kvm" if kvm_usable() else "tcg"
    run_ = boot(a, qemu, build, release, vmlinuz, root, accel)
    if run_ is None and a.accel == "auto":
        # /dev/kvm opened but the guest never reached its initramfs: nested KVM under a
        # hypervisor that does not support it (Firecracker) hangs right after the
        # kernel's decompressor. Emulate instead.
        log("KVM is present but the guest did not start: falling back to TCG")
        accel = "tcg"
        run_ = boot(a, qemu, build, release, vmlinuz, root, accel)
    if run_ is None:
        log("FAIL: the guest did not start (accel %s)" % accel)
        return 1
    result, features, boot_s, tests_s = run_
    if boot_s is not None:
        log("guest boot (qemu start to tests starting): %.1f s (%s)" % (boot_s, accel))
    if tests_s is not None:
        log("guest tests: %.1f s" % tests_s)
    log("total %.1f s" % (time.time() - t0))
    want = KERNELS[a.kernel]["features"]
    if features != want:
        log("FAIL: isotraced's kernel features on %s are\n    %s\n  expected\n    %s"
            % (a.kernel, features, want))
        return 1
    log("kernel features as expected: %s" % features)
    if not result:
        log("FAIL: the guest printed no result line")
        return 1
    if result.startswith("ISOTRACE-GUEST-RESULT 0"):
        log("PASS: %s" % result)
        return 0
    log("FAIL: %s" % result)
    return 1


# Seconds for the guest to reach its initramfs: a KVM guest gets there in seconds,
# a TCG one in 4-10 s on this 2-core machine (more when it is busy).
START_TIMEOUT = {"kvm": 30, "tcg": 300}


def boot(a, qemu, build, release, vmlinuz, root, accel):
    """Boots the guest and runs the tests in it. Returns (result line, feature line,
    boot seconds, test seconds), or None when the guest never reached its initramfs."""
    tests = a.tests or (KVM_TESTS if accel == "kvm" else TCG_TESTS)
    timeout = a.timeout or (900 if accel == "kvm" else 1500)
    log("kernel %s (%s), accel %s, tests %s" % (release, a.kernel, accel, tests))
    with tempfile.TemporaryDirectory(prefix="isotrace-kernels-") as work:
        t0 = time.time()
        initrd = build_initramfs(work, root, release, [build, tests, accel, os.environ.get("PATH", ""), KERNELS[a.kernel]["lacks"]])
        disk = os.path.join(work, "scratch.ext4")
        with open(disk, "wb") as f:
            f.truncate(2 << 30)
        run(["mkfs.ext4", "-q", "-F", "-L", "isotrace-scratch", disk])
        log("initramfs and scratch disk in %.1f s" % (time.time() - t0))
        cmd = [qemu, "-accel", accel, "-m", a.memory, "-smp", str(a.cpus),
               "-cpu", a.cpu or ("host,-arch-capabilities" if accel == "kvm" else "max"),
               "-kernel", vmlinuz, "-initrd", initrd,
               "-append", "console=ttyS0 panic=-1 quiet loglevel=4 nokaslr",
               "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
               "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
               "-drive", "file=%s,if=virtio,format=raw" % disk]
        start = time.time()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        lines = queue.Queue()

        def reader():
            for raw in p.stdout:
                lines.put(raw.decode(errors="replace").rstrip("\r\n"))
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        result = features = boot_s = tests_s = None
        started = False
        try:
            while True:
                limit = start + (timeout if started else START_TIMEOUT[accel])
                try:
                    line = lines.get(timeout=max(0.1, limit - time.time()))
                except queue.Empty:
                    if not started:
                        return None
                    log("FAIL: guest run exceeded %d s" % timeout)
                    break
                if line is None:
                    break
                print(line, flush=True)
                if "isotrace-guest: initramfs up" in line:
                    started = True
                if boot_s is None and "isotrace-guest: ready" in line:
                    boot_s = time.time() - start
                f = re.search(r"kernel features \(BTF\): (.*)", line)
                if f and features is None:
                    features = f.group(1).strip()
                t = re.search(r"isotrace-guest: tests took ([0-9.]+) s", line)
                if t:
                    tests_s = float(t.group(1))
                m = re.search(r"ISOTRACE-GUEST-(RESULT (\d+)|FAIL .*)", line)
                if m:
                    result = m.group(0)
        finally:
            if p.poll() is None:
                if result is None:
                    p.kill()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    return result, features, boot_s, tests_s


if __name__ == "__main__":
    sys.exit(main())
