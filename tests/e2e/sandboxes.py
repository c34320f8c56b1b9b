"""Real sandbox runtimes for the end-to-end tests of requests inside gVisor and microVMs
(issue 15): the daemon sees such requests only at the sandbox's host-side network edge
(a veth or a tap), so these fixtures make that edge the way a CNI plugin or a VMM would.
Standard library only; used with harness.Procs, which owns the temp dir and the logs.

GvisorSandbox: a real `runsc run` of an OCI bundle written here (the host's / read-only
as rootfs, a bind-mounted temp dir /www), running /usr/bin/python3 -m http.server.
  network="sandbox" (default): gVisor's netstack. A netns itg-<n> with a veth pair
    (host itgv<n> 10.231.<n>.1/24, peer eth0 10.231.<n>.2/24, default route via .1) is
    the OCI spec's network namespace; runsc reads eth0's address and routes, takes the
    address off the host kernel's eth0 and serves it from the Sentry through a packet
    socket (so `ip -n itg-<n> addr` shows eth0 without an address while it runs).
  network="host": `runsc --network=host`: the Sentry makes host socket syscalls in the
    host's network namespace; no veth; the server binds 127.0.0.1:PORT.

MicroVM: QEMU with Debian's own kernel (linux-image-amd64 of the day, fetched and
unpacked by scripts/kernels/debian_kernel.py, never installed) and a small busybox
initramfs whose /init loads the virtio-net module chain, sets a static address on eth0
and runs `busybox httpd -f -p 80 -h /www`. Host side: tap itgtap<n> 10.232.<n>.1/24,
guest 10.232.<n>.2. KVM where it can boot a stock kernel, TCG otherwise (accel= or
ISOTRACE_MICROVM_ACCEL=tcg|kvm forces); with KVM chosen automatically, a guest that never
reaches its /init within 30 s (a nested KVM that hangs) is rebooted under TCG.

What was found on this machine (Debian 12, kernel 6.18, hybrid cgroups, nested VM):

QEMU 7.2. /dev/kvm opens, but its KVM is kvm_pvm (dmesg "kvm-pvm: loaded"; no
kvm_intel/kvm_amd, no vmx/svm in cpuinfo): PVM runs only PVM-enabled guest kernels, and
Debian's 6.1 hangs right after its decompressor's "KASLR disabled" (with -cpu
host,-arch-capabilities or qemu64; an uncompressed vmlinux by PVH too), spinning in the
host kernel. kvm_unbootable() tells, so the microVM takes TCG at once here (a guest
ready 6-8 s after QEMU starts: /init at ~2.5 s guest time; the answer follows within
0.1 s). Under TCG the vCPU thread is "CPU 0/TCG" (named with -name ...,debug-threads=on).

runsc is Debian's 0.0~20221219 (`runsc --version`).
- Platforms: `ptrace` (the default) and `kvm` only; `systrap` came to gVisor later.
  ptrace is used: it works everywhere. `--platform=kvm` opens /dev/kvm here but the
  Sentry then spins at 100 % CPU before starting the container (nested KVM), never
  answering; it is not offered. With ptrace, the Sentry's application threads run in
  stub processes (children of runsc-sandbox, comm "exe", in tracing stop between
  syscalls) that sit in the container's cgroup too. Every runsc process is named "exe"
  in /proc/<pid>/comm (runsc re-executes /proc/self/exe; argv[0] is runsc-sandbox or
  runsc-gofer).
- Netstack on kernels >= ~6.8: runsc 20221219 decides it runs in the root network
  namespace when /proc/sys/net/core/rmem_default exists, and newer kernels show that
  file (read-only) in every netns, so `runsc run` fails with "cannot run with network
  enabled in root network namespace" (gVisor issue 10704, fixed upstream in 2024).
  Worked around here without patching runsc: in sandbox mode `runsc run` starts in a
  private mount namespace whose /proc/sys is a tmpfs with the real abi, debug, dev, fs,
  kernel, user and vm directories bound back, and no net/ (runsc reads nothing under
  /proc/sys/net in this mode). Applied only where a new netns shows that file
  (`procsys_workaround` says whether it was).
- rootless is off by default (we are root); no overlay flag is needed for a read-only
  host root; real cgroups (no --ignore-cgroups).
- cgroups: the machine has v1 controllers at /sys/fs/cgroup/<controller> (cpu and
  cpuacct mounted apart) and a v2 hierarchy at /sys/fs/cgroup/unified holding only
  hugetlb. runsc takes the v1 path: linux.cgroupsPath "/isotrace-e2e/<cid>" becomes
  /sys/fs/cgroup/<controller>/isotrace-e2e/<cid> in every v1 hierarchy (cpu, cpuacct,
  cpuset, memory, devices, freezer, blkio, pids, name=systemd), holding the gofer, the
  Sentry and its stubs; in v2 they all stay in the root cgroup ("0::/"), so a v2 cgroup
  id does not tell the sandbox apart on such a machine. The quota of linux.resources.cpu
  lands in the v1 cpu controller's cpu.cfs_quota_us/cpu.cfs_period_us and throttles:
  cpu.stat nr_throttled grows under load (measured: quota 20 ms / 100 ms, a CPU loop in
  the sandbox: +30 throttled periods in 3 s). set_cpu_quota() writes those files at run
  time (cpu.max where the cpu controller is v2). runsc removes the leaf on delete; the
  fixture removes the parent when empty.
- Runtime monitoring: yes, "seccheck". `runsc trace` (create, delete, list, metadata,
  procfs) manages trace sessions of a running sandbox and `--pod-init-config FILE` starts
  one at boot. `runsc trace metadata` lists 991 points: container/start,
  sentry/{clone,execve,exit_notify_parent,task_exit}, syscall/<name>/{enter,exit} with
  decoded arguments for about 50 syscalls (accept, bind, connect, read, write, openat,
  close, clone, execve, ...; not sendto/recvfrom/sendmsg/recvmsg) and
  syscall/sysno/<N>/{enter,exit} (raw arguments) for every syscall number, each with
  context fields (time, thread_id, container_id, credentials, cwd, process_name, ...);
  sinks "null" and "remote" (protobuf messages over a Unix seqpacket socket the sink
  listens on). Not built here.

Everything is undone by stop() (and by leaving the `with`), even when the test failed:
runsc kill/delete, any process left in the container's cgroup, the cgroup dirs, the
netns and veth; QEMU and its tap. cleanup_stale() removes what a killed earlier run left.
"""
import glob
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

sys.path.insert(0, os.path.join(h.SRC, "scripts", "kernels"))
import debian_kernel  # noqa: E402
import qemu_guest  # noqa: E402

PYTHON = "/usr/bin/python3"
STATE = "/run/isotrace-e2e"           # runsc's --root and QEMU pid files: fixed, so a
RUNSC_ROOT = os.path.join(STATE, "runsc")  # later run finds what a killed one left
CGROUP_PARENT = "/isotrace-e2e"
NETNS_DIR = "/var/run/netns"
_SEQ = itertools.count(1)


def run(args, check=True, timeout=30, **kw):
    return subprocess.run(args, check=check, timeout=timeout, capture_output=True, text=True, **kw)


def ifindex(dev):
    try:
        with open("/sys/class/net/%s/ifindex" % dev) as f:
            return int(f.read())
    except OSError:
        return None


def link_exists(dev):
    return os.path.exists("/sys/class/net/" + dev)


def netns_exists(ns):
    return os.path.exists(os.path.join(NETNS_DIR, ns))


def pick_index(used):
    """The lowest n in 1..250 for which used(n) is false."""
    for n in range(1, 251):
        if not used(n):
            return n
    h.fail("no free sandbox index (leftover itg-* netns/links? see sandboxes.cleanup_stale)")


def route_dev(ip):
    """The device the host routes `ip` through (None when unknown)."""
    r = run(["ip", "-o", "route", "get", ip], check=False)
    m = re.search(r"\bdev (\S+)", r.stdout)
    return m.group(1) if m else None


def http_get(url, timeout=2.0):
    """(status, body) of a GET; raises OSError (URLError is one) when nothing answers."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_http(url, want_body, deadline, alive, guard=None):
    """Polls `url` until it answers 200 with want_body. alive() false (the server died)
    or the deadline passing returns False. guard() false stops sending (the address is
    not routed through the fixture's own device)."""
    while time.time() < deadline:
        if not alive():
            return False
        if guard is not None and not guard():
            return False
        try:
            status, body = http_get(url, timeout=1.0)
            if status == 200 and body == want_body:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def kill_pids(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def cgroup_mounts():
    """{controller: mount point} of the cgroup hierarchies (v1 controllers by name,
    named ones as "name=...", the v2 one as "")."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields, sfields = pre.split(), post.split()
            if not sfields:
                continue
            if sfields[0] == "cgroup2":
                out.setdefault("", fields[4])
            elif sfields[0] == "cgroup":
                for opt in sfields[2].split(","):
                    if opt in ("rw", "ro") or opt.startswith(("relatime", "noatime", "nosuid", "nodev", "noexec",
                                                              "clone_children", "release_agent", "xattr",
                                                              "cpuset_v2_mode", "noprefix")):
                        continue
                    out.setdefault(opt, fields[4])
    return out


def proc_cgroups(pid):
    """{controller: cgroup path} of a process (/proc/<pid>/cgroup; "" is v2)."""
    out = {}
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in (ctrls.split(",") if ctrls else [""]):
                out[c] = path
    return out


def cgroup_dirs(path):
    """{controller: directory} of cgroup `path` in every hierarchy where it exists."""
    out = {}
    for c, mnt in cgroup_mounts().items():
        d = mnt + path
        if os.path.isdir(d):
            out[c] = d
    return out


def cgroup_pids(dirs):
    pids = set()
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids.update(int(x) for x in f.read().split())
        except OSError:
            pass
    return pids


def rmdir_cgroups(path, parent):
    """Removes cgroup `path` (after its processes are gone) and then `parent` where
    empty, in every hierarchy."""
    for mnt in set(cgroup_mounts().values()):
        for d in (mnt + path, mnt + parent):
            for _ in range(20):
                if not os.path.isdir(d):
                    break
                try:
                    os.rmdir(d)
                    break
                except OSError as e:
                    if d == mnt + parent:
                        break  # not empty: another sandbox's cgroup is in it
                    if e.errno != 16:  # EBUSY while its last tasks exit
                        break
                    time.sleep(0.1)


class GvisorSandbox:
    """A gVisor sandbox (runsc run) serving HTTP with Python's http.server.

    GvisorSandbox(procs, network="sandbox"|"host", n=None, port=None, files=None,
                  command=None, cpu_quota_us=None, cpu_period_us=100000,
                  platform="ptrace", cgroup_parent="/isotrace-e2e", debug=False,
                  ready_timeout=60)
      n         index: netns itg-<n>, host veth itgv<n>, 10.231.<n>.0/24 (default: the
                lowest free); container id itg-gvisor-<n>-<test pid>-<sequence>
      port      the server's port (default 8080 in sandbox mode, a free one in host mode)
      files     {name: bytes} served from /www (default: hello.txt and index.html)
      command   the container's argv instead of http.server (it must serve `port`;
                the wait checks GET /hello.txt unless ready_path/ready_body say else)
      cpu_quota_us/cpu_period_us: linux.resources.cpu of the OCI spec

    Use as a context manager, or start() and stop(). Attributes after start():
      cid, network, port, ip (the server's address), host_ip (veth side, None in host
      mode), netns, veth, veth_ifindex (None in host mode), runsc_pid (the `runsc run`
      process), sentry_pid (runsc-sandbox), gofer_pids, pids() (every process of the
      sandbox: the tree under runsc run plus the cgroup's members), cgroup (the path),
      cgroup_dirs ({controller: dir}), cgroup_v2 (its v2 path; "/" here), ready_s
      (start() to the first HTTP answer), bundle, log_dir (runsc's logs), url(path),
      set_cpu_quota(quota_us, period_us=None), cpu_stat(), exec_(argv), files.
    """

    def __init__(self, procs, network="sandbox", n=None, port=None, files=None, command=None,
                 cpu_quota_us=None, cpu_period_us=100000, platform="ptrace",
                 cgroup_parent=CGROUP_PARENT, debug=False, ready_timeout=60,
                 ready_path="/hello.txt", ready_body=None):
        if network not in ("sandbox", "host"):
            raise ValueError("network must be 'sandbox' or 'host'")
        self.procs = procs
        self.network = network
        self.n = n
        self.port = port
        self.files = files
        self.command = command
        self.cpu_quota_us = cpu_quota_us
        self.cpu_period_us = cpu_period_us
        self.platform = platform
        self.cgroup_parent = cgroup_parent
        self.debug = debug
        self.ready_timeout = ready_timeout
        self.ready_path = ready_path
        self.ready_body = ready_body
        self.cid = None
        self.netns = self.veth = self.veth_ifindex = self.host_ip = None
        self.ip = None
        self.proc = None
        self.sentry_pid = None
        self.gofer_pids = []
        self.cgroup = None
        self.cgroup_dirs = {}
        self.cgroup_v2 = None
        self.ready_s = None
        self.procsys_workaround = False
        self._netns_made = False

    # -- life cycle --------------------------------------------------------------
    def start(self):
        if not shutil.which("runsc"):
            h.skip("runsc not installed (scripts/install-deps.sh test)")
        if os.geteuid() != 0:
            h.skip("gVisor fixtures need root (netns, veth, cgroups)")
        t0 = time.time()
        if self.n is None:
            self.n = pick_index(lambda n: netns_exists("itg-%d" % n) or link_exists("itgv%d" % n))
        self.cid = "itg-gvisor-%d-%d-%d" % (self.n, os.getpid(), next(_SEQ))
        self.dir = os.path.join(self.procs.tmp, self.cid)
        self.bundle = self.dir
        self.log_dir = os.path.join(self.dir, "logs") + "/"
        self.www = os.path.join(self.dir, "www")
        os.makedirs(self.www)
        os.makedirs(self.log_dir)
        os.makedirs(RUNSC_ROOT, exist_ok=True)
        os.chmod(self.dir, 0o755)
        if self.files is None:
            self.files = {"hello.txt": ("hello from gvisor %s\n" % self.cid).encode(),
                          "index.html": b"<html>" + b"g" * 1000 + b"</html>\n"}
        for name, data in self.files.items():
            p = os.path.join(self.www, name)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        if self.network == "sandbox":
            self.port = self.port or 8080
            self._make_netns()
            self.ip = "10.231.%d.2" % self.n
        else:
            self.port = self.port or h.free_port()
            self.ip = "127.0.0.1"
        self.cgroup = "%s/%s" % (self.cgroup_parent.rstrip("/"), self.cid)
        self._write_spec()
        argv = ["runsc", "--root", RUNSC_ROOT, "--platform", self.platform,
                "--network", self.network, "--debug-log", self.log_dir]
        if self.debug:
            argv.append("--debug")
        argv += ["run", "--bundle", self.bundle, self.cid]
        if self.network == "sandbox" and self._needs_procsys_workaround():
            self.procsys_workaround = True
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", PROCSYS_WRAPPER,
                    "itg-procsys", os.path.join(self.dir, "procsys")] + argv
        self.proc = self.procs.start(argv, self.cid, stdin=subprocess.DEVNULL)
        self.runsc_pid = self.proc.pid
        want = self.ready_body
        if want is None and self.command is None:
            want = self.files.get(self.ready_path.lstrip("/"))
        guard = None
        if self.network == "sandbox":
            guard = lambda: route_dev(self.ip) == self.veth  # noqa: E731
        ok = wait_http(self.url(self.ready_path), want, t0 + self.ready_timeout,
                       lambda: self.proc.poll() is None, guard) if want is not None else \
            h.wait_port(self.port, self.ready_timeout, self.ip)
        if not ok:
            why = ("runsc exited %s" % self.proc.returncode) if self.proc.poll() is not None else "timed out"
            log = self.procs.log(self.proc)
            self.stop()
            h.fail("gVisor sandbox %s (%s) did not answer %s (%s):\n%s\n%s" % (
                self.cid, self.network, self.url(self.ready_path), why, log[-3000:], self.runsc_logs()[-3000:]))
        self.ready_s = time.time() - t0
        st = self.state()
        self.sentry_pid = int(st["pid"])
        self.gofer_pids = [p for p in h.process_tree(self.runsc_pid) if _argv0(p) == "runsc-gofer"]
        cg = proc_cgroups(self.sentry_pid)
        self.cgroup_v2 = cg.get("")
        self.cgroup_dirs = cgroup_dirs(self.cgroup)
        return self

    def stop(self):
        """Always safe: undoes whatever start() got to."""
        if self.cid is None:
            return
        if self.proc is not None:
            self.cgroup_dirs = cgroup_dirs(self.cgroup)
            known = self.pids() - {self.proc.pid}
            run(["runsc", "--root", RUNSC_ROOT, "kill", self.cid, "KILL"], check=False)
            run(["runsc", "--root", RUNSC_ROOT, "delete", "--force", self.cid], check=False)
            self.procs.stop(self.proc, timeout=10)
            # What runsc did not reap (a sandbox that never started, a hung Sentry), and
            # the ptrace stubs, which die a little after their Sentry: wait for them all.
            left = known | cgroup_pids(self.cgroup_dirs.values())
            for i in range(100):
                left = {p for p in left if running(p)}
                if not left:
                    break
                if i >= 10:
                    kill_pids(left)
                time.sleep(0.1)
            rmdir_cgroups(self.cgroup, self.cgroup_parent)
            if os.path.exists(os.path.join(RUNSC_ROOT, self.cid + "_sandbox:" + self.cid + ".state")):
                run(["runsc", "--root", RUNSC_ROOT, "delete", "--force", self.cid], check=False)
        if self._netns_made:
            run(["ip", "netns", "del", self.netns], check=False)
            if link_exists(self.veth):
                run(["ip", "link", "del", self.veth], check=False)
            self._netns_made = False
        self.proc = None

    def __enter__(self):
        try:
            return self.start()
        except BaseException:  # h.fail/h.skip exit; __exit__ is not called then
            self.stop()
            raise

    def __exit__(self, *a):
        self.stop()

    # -- pieces ------------------------------------------------------------------
    def _make_netns(self):
        self.netns = "itg-%d" % self.n
        self.veth = "itgv%d" % self.n
        self.host_ip = "10.231.%d.1" % self.n
        run(["ip", "netns", "add", self.netns])
        self._netns_made = True
        run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns])
        run(["ip", "addr", "add", self.host_ip + "/24", "dev", self.veth])
        run(["ip", "link", "set", self.veth, "up"])
        run(["ip", "-n", self.netns, "addr", "add", "10.231.%d.2/24" % self.n, "dev", "eth0"])
        run(["ip", "-n", self.netns, "link", "set", "eth0", "up"])
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.netns, "route", "add", "default", "via", self.host_ip])
        self.veth_ifindex = ifindex(self.veth)

    def _needs_procsys_workaround(self):
        r = run(["ip", "netns", "exec", self.netns, "test", "-e", "/proc/sys/net/core/rmem_default"],
                check=False)
        return r.returncode == 0

    def _write_spec(self):
        args = self.command or [PYTHON, "-m", "http.server", str(self.port), "--bind",
                                "0.0.0.0" if self.network == "sandbox" else "127.0.0.1",
                                "--directory", "/www"]
        namespaces = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
        if self.network == "sandbox":
            namespaces.append({"type": "network", "path": os.path.join(NETNS_DIR, self.netns)})
        caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        spec = {
            "ociVersion": "1.0.0",
            "process": {
                "terminal": False,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "PYTHONUNBUFFERED=1", "HOME=/tmp"],
                "cwd": "/www",
                "capabilities": {k: caps for k in ("bounding", "effective", "inheritable", "permitted")},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}],
            },
            "root": {"path": "/", "readonly": True},
            "hostname": self.cid,
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/www", "type": "bind", "source": self.www, "options": ["rbind", "ro"]},
            ] + [{"destination": "/etc/" + name, "type": "bind", "source": path, "options": ["rbind", "ro"]}
                 for name, path in self._etc_files().items()],
            "linux": {"namespaces": namespaces, "cgroupsPath": self.cgroup},
        }
        if self.cpu_quota_us is not None:
            spec["linux"]["resources"] = {"cpu": {"quota": int(self.cpu_quota_us),
                                                  "period": int(self.cpu_period_us)}}
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump(spec, f, indent=1)

    def _etc_files(self):
        """The container's own /etc/hosts, /etc/hostname and /etc/resolv.conf, as a
        runtime gives a pod: http.server's getfqdn() at bind would otherwise wait ~10 s on
        the host's DNS server, unreachable from the netns (and no query leaves the
        machine); the resolver is the sandbox's own loopback, which refuses at once."""
        files = {"hosts": "127.0.0.1 localhost\n%s %s\n" % (self.ip, self.cid),
                 "hostname": self.cid + "\n",
                 "resolv.conf": "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"}
        out = {}
        for name, text in files.items():
            out[name] = os.path.join(self.dir, "etc-" + name)
            with open(out[name], "w") as f:
                f.write(text)
        return out

    # -- queries -----------------------------------------------------------------
    def url(self, path="/"):
        return "http://%s:%d%s" % (self.ip, self.port, path)

    def state(self):
        r = run(["runsc", "--root", RUNSC_ROOT, "state", self.cid])
        return json.loads(r.stdout)

    def pids(self):
        out = set()
        if self.proc is not None and self.proc.poll() is None:
            out |= h.process_tree(self.proc.pid)
        out |= cgroup_pids(self.cgroup_dirs.values())
        return out

    def exec_(self, argv, timeout=60):
        """Runs argv inside the container (runsc exec); returns the CompletedProcess."""
        return run(["runsc", "--root", RUNSC_ROOT, "exec", self.cid] + list(argv), check=False,
                   timeout=timeout)

    def runsc_logs(self):
        out = []
        for p in sorted(glob.glob(self.log_dir + "*")):
            with open(p, errors="replace") as f:
                out.append("== %s\n%s" % (os.path.basename(p), f.read()[-4000:]))
        return "\n".join(out)

    def _cpu_dir(self):
        d = self.cgroup_dirs.get("cpu")
        if d:
            return "v1", d
        d = self.cgroup_dirs.get("")
        if d and os.path.exists(os.path.join(d, "cpu.max")):
            return "v2", d
        h.fail("sandbox %s has no cpu controller cgroup (%s)" % (self.cid, self.cgroup_dirs))

    def set_cpu_quota(self, quota_us, period_us=None):
        """Changes the CPU quota at run time; quota_us None or -1 lifts it."""
        kind, d = self._cpu_dir()
        q = -1 if quota_us is None else int(quota_us)
        if kind == "v1":
            if period_us is not None:
                _write(os.path.join(d, "cpu.cfs_period_us"), int(period_us))
            _write(os.path.join(d, "cpu.cfs_quota_us"), q)
        else:
            with open(os.path.join(d, "cpu.max")) as f:
                cur_period = f.read().split()[1]
            _write(os.path.join(d, "cpu.max"), "%s %s" % ("max" if q < 0 else q, period_us or cur_period))

    def cpu_stat(self):
        """cpu.stat of the sandbox's cpu cgroup as a dict (nr_periods, nr_throttled,
        throttled_time in ns for v1 / throttled_usec for v2, ...)."""
        _, d = self._cpu_dir()
        out = {}
        with open(os.path.join(d, "cpu.stat")) as f:
            for line in f:
                k, _, v = line.partition(" ")
                out[k] = int(v)
        return out


# `runsc run` in a private mount namespace where /proc/sys has no net/ (see the module
# docstring). $1: a scratch dir; the rest: runsc's argv.
PROCSYS_WRAPPER = r"""
set -e
d=$1; shift
mkdir -p "$d"
mount --bind /proc/sys "$d"
mount -t tmpfs -o size=64k,mode=555 itg-sysctl /proc/sys
for s in "$d"/*; do
  n=${s##*/}
  [ "$n" = net ] && continue
  mkdir "/proc/sys/$n"
  mount --bind "$s" "/proc/sys/$n"
done
umount -l "$d"
exec "$@"
"""


def _argv0(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def running(pid):
    """The process exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


# -- microVM -----------------------------------------------------------------------

MICROVM_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "itg-microvm: init after $(cut -d' ' -f1 /proc/uptime) s"
for ko in $(cat /modules.list); do insmod "$ko" || echo "itg-microvm: insmod $ko failed"; done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
hostname @NAME@
ip link set lo up
ip addr add @GUEST@/24 dev eth0
ip link set eth0 up
ip route add default via @HOST@
echo "itg-microvm: ready after $(cut -d' ' -f1 /proc/uptime) s"
httpd -f -p @PORT@ -h /www
echo "itg-microvm: httpd exited $?"
poweroff -f
"""

# /cgi-bin/sleep?SECONDS answers after that long (busybox sleep takes fractions).
SLEEP_CGI = r"""#!/bin/sh
case "$QUERY_STRING" in
  ""|*[!0-9.]*) s=0 ;;
  *) s=$QUERY_STRING ;;
esac
sleep "$s"
printf 'Content-Type: text/plain\r\n\r\nslept %s\n' "$s"
"""

MICROVM_MODULES = ["virtio_pci", "virtio_net"]


def kvm_unbootable():
    """Why KVM cannot boot Debian's kernel here, or None when it may. /dev/kvm must
    open; and a KVM whose only vendor module is kvm_pvm (PVM, a software nested
    hypervisor for machines without VMX/SVM, as on this workplace's VMs) runs only
    PVM-enabled guest kernels: a stock kernel hangs there right after its decompressor
    prints "KASLR disabled" (measured; an uncompressed vmlinux booted by PVH hangs
    too)."""
    if not qemu_guest.kvm_usable():
        return "/dev/kvm does not open"
    vendors = [m for m in ("kvm_intel", "kvm_amd") if os.path.isdir("/sys/module/" + m)]
    if not vendors and os.path.isdir("/sys/module/kvm_pvm"):
        return "KVM here is kvm_pvm (no kvm_intel/kvm_amd), which boots only PVM guest kernels"
    return None
# Seconds for a KVM guest to reach /init before a nested-KVM hang is assumed.
KVM_INIT_TIMEOUT = 30


class MicroVM:
    """A QEMU microVM (Debian's kernel, busybox initramfs) serving HTTP on a tap.

    MicroVM(procs, n=None, accel=None, memory="256M", files=None, port=80,
            boot_timeout=None, kernel="linux-image-amd64")
      n       index: tap itgtap<n>, 10.232.<n>.0/24 (default: the lowest free)
      accel   "kvm", "tcg" or "auto"/None (ISOTRACE_MICROVM_ACCEL, else auto: KVM when
              /dev/kvm opens and the guest boots with it, TCG otherwise)
      files   {name: bytes} under /www (default: hello.txt, index.html, big.bin of
              1 MiB); /cgi-bin/sleep?S always answers after S seconds
      boot_timeout: seconds to the first HTTP answer (default 60 KVM, 180 TCG)

    Attributes after start(): name, accel (the one used), pid (qemu), vcpu_tids()
    ({tid: comm}, "CPU 0/KVM" or "CPU 0/TCG"), tap, tap_ifindex, ip (guest), host_ip,
    port, url(path), boot_s (qemu start to the guest's "ready" line), ready_s (start()
    to the first HTTP answer, kernel fetch excluded), console_log (serial console file),
    console(), files, kernel_release.
    """

    def __init__(self, procs, n=None, accel=None, memory="256M", files=None, port=80,
                 boot_timeout=None, kernel="linux-image-amd64"):
        self.procs = procs
        self.n = n
        self.want_accel = accel or os.environ.get("ISOTRACE_MICROVM_ACCEL") or "auto"
        if self.want_accel not in ("auto", "kvm", "tcg"):
            raise ValueError("accel must be auto, kvm or tcg")
        self.memory = memory
        self.files = files
        self.port = port
        self.boot_timeout = boot_timeout
        self.kernel_meta = kernel
        self.accel = None
        self.proc = None
        self.pid = None
        self.tap = self.tap_ifindex = self.ip = self.host_ip = None
        self.boot_s = self.ready_s = None
        self._tap_made = False
        self.name = None
        self.kvm_skipped = None

    def start(self):
        qemu = shutil.which("qemu-system-x86_64")
        if not qemu:
            h.skip("qemu-system-x86_64 not installed (scripts/install-deps.sh test)")
        for tool in ("dpkg-deb", "depmod", "modprobe"):
            if not shutil.which(tool):
                h.skip("%s not installed (scripts/install-deps.sh test)" % tool)
        if not os.path.exists("/bin/busybox") or "httpd" not in run(["/bin/busybox", "--list"]).stdout.split():
            h.skip("no busybox with httpd at /bin/busybox (busybox-static)")
        if os.geteuid() != 0:
            h.skip("the microVM fixture needs root (tap device)")
        try:
            root, release, vmlinuz = debian_kernel.unpack(debian_kernel.fetch(self.kernel_meta))
        except debian_kernel.Unavailable as e:
            h.skip("Debian kernel package not reachable: %s" % e)
        self.kernel_release = release
        self.vmlinuz = vmlinuz
        if self.n is None:
            self.n = pick_index(lambda n: link_exists("itgtap%d" % n))
        self.name = "itg-microvm-%d-%d-%d" % (self.n, os.getpid(), next(_SEQ))
        self.dir = os.path.join(self.procs.tmp, self.name)
        os.makedirs(self.dir)
        self.tap = "itgtap%d" % self.n
        self.host_ip = "10.232.%d.1" % self.n
        self.ip = "10.232.%d.2" % self.n
        if self.files is None:
            self.files = {"hello.txt": ("hello from microvm %s\n" % self.name).encode(),
                          "index.html": b"<html>" + b"m" * 1000 + b"</html>\n",
                          "big.bin": bytes(range(256)) * 4096}
        self.initrd = self._initramfs(root, release)
        t0 = time.time()
        self._make_tap()
        accel = self.want_accel
        kvm_why = kvm_unbootable()
        if accel == "auto":
            accel = "kvm" if kvm_why is None else "tcg"
            self.kvm_skipped = kvm_why
        elif accel == "kvm" and kvm_why is not None:
            self.stop()
            h.fail("microVM: accel kvm asked for (ISOTRACE_MICROVM_ACCEL or accel=) but %s" % kvm_why)
        ok = self._boot(qemu, accel, t0)
        if ok is None and accel == "kvm" and self.want_accel == "auto":
            # /dev/kvm opened but the guest never reached /init (nested KVM that hangs).
            self._kill_qemu()
            ok = self._boot(qemu, "tcg", time.time())
        if not ok:
            tail = self.console()[-3000:]
            why = "qemu exited %s" % self.proc.returncode if self.proc.poll() is not None else "timed out"
            qlog = self.procs.log(self.proc)[-2000:]
            self.stop()
            h.fail("microVM %s (%s) did not answer %s (%s):\nconsole:\n%s\nqemu:\n%s" % (
                self.name, self.accel, self.url("/hello.txt"), why, tail, qlog))
        self.ready_s = time.time() - t0
        return self

    def _boot(self, qemu, accel, t0):
        """Starts QEMU and waits for HTTP. True when it answered, False when it failed,
        None when a KVM guest never reached /init."""
        self.accel = accel
        self.console_log = os.path.join(self.dir, "console-%s.log" % accel)
        pidfile = os.path.join(STATE, "qemu-%s.pid" % self.name)
        os.makedirs(STATE, exist_ok=True)
        cmd = [qemu, "-name", "%s,debug-threads=on" % self.name,
               "-accel", accel, "-m", self.memory, "-smp", "1",
               "-cpu", "host,-arch-capabilities" if accel == "kvm" else "max",
               "-kernel", self.vmlinuz, "-initrd", self.initrd,
               "-append", "console=ttyS0 panic=-1 quiet loglevel=4 nokaslr",
               "-nographic", "-no-reboot", "-nodefaults", "-monitor", "none",
               "-serial", "file:" + self.console_log, "-pidfile", pidfile,
               "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no" % self.tap,
               "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:e8:%02x:02" % self.n]
        start = time.time()
        self.proc = self.procs.start(cmd, self.name + "-qemu", stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        timeout = self.boot_timeout or (60 if accel == "kvm" else 180)
        deadline = start + timeout
        alive = lambda: self.proc.poll() is None  # noqa: E731
        if accel == "kvm" and self.want_accel == "auto":
            limit = start + KVM_INIT_TIMEOUT
            while time.time() < limit and alive() and "itg-microvm: init" not in self.console():
                time.sleep(0.1)
            if alive() and "itg-microvm: init" not in self.console():
                return None
        guard = lambda: route_dev(self.ip) == self.tap  # noqa: E731
        # Wait for the guest's ready line before sending anything (no SYN retries to
        # count on a link that is not up yet), then for the answer.
        while time.time() < deadline and alive() and "itg-microvm: ready" not in self.console():
            time.sleep(0.05)
        if "itg-microvm: ready" in self.console():
            self.boot_s = time.time() - start
        return wait_http(self.url("/hello.txt"), self.files["hello.txt"], deadline, alive, guard)

    def _initramfs(self, root, release):
        tree = os.path.join(self.dir, "initramfs")
        for d in ("bin", "modules", "www/cgi-bin"):
            os.makedirs(os.path.join(tree, d), exist_ok=True)
        shutil.copy("/bin/busybox", os.path.join(tree, "bin", "busybox"))
        kos = []
        for m in MICROVM_MODULES:
            for ko in qemu_guest.module_chain(root, release, m):
                dst = "/modules/" + os.path.basename(ko)
                if dst not in kos:
                    shutil.copy(ko, tree + dst)
                    kos.append(dst)
        with open(os.path.join(tree, "modules.list"), "w") as f:
            f.write("\n".join(kos) + "\n")
        init = (MICROVM_INIT.replace("@NAME@", self.name).replace("@GUEST@", self.ip)
                .replace("@HOST@", self.host_ip).replace("@PORT@", str(self.port)))
        with open(os.path.join(tree, "init"), "w") as f:
            f.write(init)
        os.chmod(os.path.join(tree, "init"), 0o755)
        for name, data in self.files.items():
            p = os.path.join(tree, "www", name)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        cgi = os.path.join(tree, "www", "cgi-bin", "sleep")
        with open(cgi, "w") as f:
            f.write(SLEEP_CGI)
        os.chmod(cgi, 0o755)
        out = os.path.join(self.dir, "initramfs.cpio")
        files = run(["find", "."], cwd=tree).stdout
        with open(out, "wb") as f:
            subprocess.run(["busybox", "cpio", "-o", "-H", "newc", "-R", "0:0"], cwd=tree, input=files.encode(),
                           stdout=f, stderr=subprocess.DEVNULL, check=True, timeout=60)
        return out

    def _make_tap(self):
        run(["ip", "tuntap", "add", "dev", self.tap, "mode", "tap"])
        self._tap_made = True
        run(["ip", "addr", "add", self.host_ip + "/24", "dev", self.tap])
        run(["ip", "link", "set", self.tap, "up"])
        self.tap_ifindex = ifindex(self.tap)

    def _kill_qemu(self):
        if self.proc is not None:
            self.procs.stop(self.proc, sig=signal.SIGKILL, timeout=10)
        if self.name:
            try:
                os.unlink(os.path.join(STATE, "qemu-%s.pid" % self.name))
            except OSError:
                pass

    def stop(self):
        self._kill_qemu()
        if self._tap_made:
            run(["ip", "link", "del", self.tap], check=False)
            self._tap_made = False

    def __enter__(self):
        try:
            return self.start()
        except BaseException:  # h.fail/h.skip exit; __exit__ is not called then
            self.stop()
            raise

    def __exit__(self, *a):
        self.stop()

    def url(self, path="/"):
        return "http://%s:%d%s" % (self.ip, self.port, path)

    def console(self):
        try:
            with open(self.console_log, errors="replace") as f:
                return f.read()
        except (OSError, AttributeError):
            return ""

    def vcpu_tids(self):
        """{tid: comm} of QEMU's vCPU threads ("CPU 0/KVM", "CPU 0/TCG")."""
        out = {}
        for t in glob.glob("/proc/%d/task/*" % self.pid):
            try:
                with open(t + "/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if re.match(r"CPU \d+/(KVM|TCG)$", comm):
                out[int(os.path.basename(t))] = comm
        return out


def cleanup_stale():
    """Removes what a killed earlier run of these fixtures left: runsc containers in
    their state dir (and any process left in their cgroups), QEMU processes from their
    pid files, itg-* network namespaces and itgv*/itgtap* links. Returns what it removed."""
    removed = []
    if shutil.which("runsc") and os.path.isdir(RUNSC_ROOT):
        r = run(["runsc", "--root", RUNSC_ROOT, "list", "-quiet"], check=False)
        for cid in r.stdout.split():
            run(["runsc", "--root", RUNSC_ROOT, "kill", cid, "KILL"], check=False)
            run(["runsc", "--root", RUNSC_ROOT, "delete", "--force", cid], check=False)
            removed.append("runsc " + cid)
    for mnt in set(cgroup_mounts().values()):
        for d in glob.glob(mnt + CGROUP_PARENT + "/itg-gvisor-*"):
            kill_pids(cgroup_pids([d]))
            time.sleep(0.2)
            try:
                os.rmdir(d)
                removed.append("cgroup " + d)
            except OSError:
                pass
        try:
            os.rmdir(mnt + CGROUP_PARENT)
        except OSError:
            pass
    for pf in glob.glob(os.path.join(STATE, "qemu-*.pid")):
        try:
            with open(pf) as f:
                pid = int(f.read().strip() or 0)
            if pid and "qemu" in _argv0(pid):
                os.kill(pid, signal.SIGKILL)
                removed.append("qemu %d" % pid)
        except (OSError, ValueError):
            pass
        os.unlink(pf)
    for ns in glob.glob(os.path.join(NETNS_DIR, "itg-*")):
        run(["ip", "netns", "del", os.path.basename(ns)], check=False)
        removed.append("netns " + os.path.basename(ns))
    for dev in glob.glob("/sys/class/net/itgv*") + glob.glob("/sys/class/net/itgtap*"):
        run(["ip", "link", "del", os.path.basename(dev)], check=False)
        removed.append("link " + os.path.basename(dev))
    return removed
