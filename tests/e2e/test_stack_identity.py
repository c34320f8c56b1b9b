"""Isolation-stack identity, end to end: the same small HTTP server (busybox httpd from
busybox-static) inside a real runc container (an OCI bundle sharing the host network),
inside bubblewrap, and a WASI module (clang --target=wasm32-wasi) hosted by Node.js
node:wasi behind socat (inetd-style: each connection is one `node run.mjs handler.wasm`
with the socket as stdin/stdout). isotraced exports to the independent npm OTLP
receiver; every request must be exactly one SERVER span whose resource names its
layers: container id and runtime, sandbox kind, Wasm runtime and module path — and
every span's isotrace.stack must begin with this machine's hypervisor, worked out here
independently of the daemon."""
import http.client
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

FIXTURES = os.path.join(h.E2E, "fixtures", "stack")
BUSYBOX = "/bin/busybox"  # busybox-static: runs in an empty rootfs
REQUESTS = 12


def expected_vm_token():
    """This node's vm layer from evidence read here: the VMM's ACPI OEM ID, DMI, the
    hypervisor flag. None: not a guest. "vm": a guest nothing here names."""
    try:
        with open("/sys/firmware/acpi/tables/DSDT", "rb") as f:
            oem = f.read(16)[10:16].decode("ascii", "replace")
        vmm = {"FIRECK": "firecracker", "BOCHS ": "qemu", "CLOUDH": "cloud-hypervisor",
               "VRTUAL": "hyperv"}.get(oem)
        if vmm:
            return "vm:" + vmm
    except OSError:
        pass
    try:
        with open("/sys/class/dmi/id/sys_vendor") as f:
            vendor = f.read().strip()
        if vendor == "QEMU":
            return "vm:qemu"
        if vendor == "VMware, Inc.":
            return "vm:vmware"
    except OSError:
        pass
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return "vm" if " hypervisor" in line else None
    return None


def stack_starts_with_vm(stack, token):
    if token is None:
        return not stack.startswith("vm")
    if token == "vm":
        return stack == "vm" or stack.startswith("vm:") or stack.startswith("vm/")
    return stack == token or stack.startswith(token + "/")


def need(tool):
    if not shutil.which(tool):
        h.skip("%s not installed (scripts/install-deps.sh installs it)" % tool)


def build_wasm(out_dir):
    wasm = os.path.join(out_dir, "handler.wasm")
    r = subprocess.run(["clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-Wl,--strip-all",
                        "-o", wasm, os.path.join(FIXTURES, "handler.c")],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        h.skip("cannot build the WASI module (wasi-libc, lld, libclang-rt-14-dev-wasm32): " + r.stderr[-800:])
    shutil.copy(os.path.join(FIXTURES, "run.mjs"), out_dir)
    return wasm


def make_bundle(tmp, port):
    """An OCI bundle: a busybox-static rootfs, host network (no network namespace)."""
    bundle = os.path.join(tmp, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    os.makedirs(os.path.join(rootfs, "www"))
    shutil.copy(BUSYBOX, os.path.join(rootfs, "bin", "busybox"))
    with open(os.path.join(rootfs, "www", "index.html"), "w") as f:
        f.write("<html>runc</html>\n")
    subprocess.run(["runc", "spec"], cwd=bundle, check=True, timeout=30)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:%d" % port, "-h", "/www"]
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
    cfg["root"]["readonly"] = True
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    return bundle


def get(port, key):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/index.html?" + key)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def main():
    if os.geteuid() != 0:
        h.skip("needs root (BPF, runc)")
    for tool in ("runc", "bwrap", "socat", "node", "clang"):
        need(tool)
    if not os.path.exists(BUSYBOX):
        h.skip("busybox-static not installed")
    vm_token = expected_vm_token()
    cid = "isotrace-e2e-%d" % os.getpid()
    with h.Procs() as procs:
        wasm = build_wasm(procs.tmp)
        recv = h.Receiver(procs)
        # Other tenants of the node may be busy: room for their spans too, so ours are
        # never the ones dropped as queue_full.
        conf = os.path.join(procs.tmp, "isotrace.yaml")
        with open(conf, "w") as f:
            f.write("exporter:\n  queue_size: 262144\n  queue_bytes: 536870912\n"
                    "  batch_size: 4096\n  shutdown_timeout_ms: 30000\n"
                    "layers:\n  builtin_rules: true\n  cache_entries: 4096\n")
        daemon = h.start_daemon(procs, "--config", conf, "--otlp-endpoint", recv.endpoint,
                                "--summary-interval", "0")
        if "process facts (exec, exit, .wasm opens) from:" not in procs.log(daemon):
            h.fail("the proc probe did not attach:\n" + procs.log(daemon))

        runc_port, bwrap_port, wasm_port = h.free_port(), h.free_port(), h.free_port()
        bundle = make_bundle(procs.tmp, runc_port)
        runc = procs.start(["runc", "run", "-b", bundle, cid], "runc")
        try:
            www = os.path.join(procs.tmp, "www")
            os.makedirs(www)
            with open(os.path.join(www, "index.html"), "w") as f:
                f.write("<html>bwrap</html>\n")
            bwrap = procs.start(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                                 "--unshare-pid", "--die-with-parent", BUSYBOX, "httpd", "-f", "-p",
                                 "127.0.0.1:%d" % bwrap_port, "-h", www], "bwrap")
            socat = procs.start(["socat", "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork" % wasm_port,
                                 "EXEC:node run.mjs handler.wasm,nofork"], "socat", cwd=procs.tmp)
            for name, port, p in (("runc", runc_port, runc), ("bwrap", bwrap_port, bwrap),
                                  ("socat", wasm_port, socat)):
                if not h.wait_port(port, timeout=15):
                    h.fail("%s server did not listen:\n%s" % (name, procs.log(p)))

            sent = {}
            for i in range(REQUESTS):
                for name, port in (("runc", runc_port), ("bwrap", bwrap_port), ("wasm", wasm_port)):
                    key = "%s=%d" % (name, i)
                    status, body = get(port, key)
                    if status != 200:
                        h.fail("%s: status %d" % (key, status))
                    if name == "wasm" and b"wasi handler: GET /index.html?" + key.encode() not in body:
                        h.fail("wasm handler answered %r" % body)
                    sent[key] = name
            time.sleep(1.0)
            rc = procs.stop(daemon)
            dlog = procs.log(daemon)
            if rc != 0:
                h.fail("isotraced exited %s:\n%s" % (rc, dlog))
        finally:
            subprocess.run(["runc", "kill", cid, "KILL"], capture_output=True, timeout=30)
            procs.stop(runc, timeout=10)
            subprocess.run(["runc", "delete", "-f", cid], capture_output=True, timeout=30)
        time.sleep(0.5)

        spans = recv.records("span")
        by_key = {}
        for s in spans:
            q = h.span_attrs(s).get("url.query")
            if s.get("spanKind") == 2 and q in sent:
                by_key.setdefault(q, []).append(s)
        errors = []
        wasm_abs = os.path.realpath(wasm)
        want = {
            "runc": {"container.id": cid, "container.runtime": "runc",
                     "process.executable.name": "busybox",
                     "isotrace.stack": "/".join(filter(None, [vm_token, "container:runc"]))},
            "bwrap": {"isotrace.sandbox.kind": "bwrap", "process.executable.name": "busybox",
                      "isotrace.stack": "/".join(filter(None, [vm_token, "sandbox:bwrap"]))},
            "wasm": {"isotrace.wasm.runtime": "node-wasi", "isotrace.wasm.module": wasm_abs,
                     "service.name": "handler", "process.executable.name": "node",
                     "isotrace.stack": "/".join(filter(None, [vm_token, "wasm:node-wasi"]))},
        }
        absent = {
            "runc": ["isotrace.sandbox.kind", "isotrace.wasm.runtime", "k8s.pod.uid"],
            "bwrap": ["container.id", "container.runtime", "isotrace.wasm.runtime"],
            "wasm": ["container.id", "isotrace.sandbox.kind"],
        }
        for key, name in sorted(sent.items()):
            got = by_key.get(key, [])
            if len(got) != 1:
                errors.append("%s: %d SERVER spans" % (key, len(got)))
                continue
            r = h.res_attrs(got[0])
            for k, v in want[name].items():
                if r.get(k) != v:
                    errors.append("%s: %s = %r, want %r" % (key, k, r.get(k), v))
            for k in absent[name]:
                if k in r:
                    errors.append("%s: unexpected %s = %r" % (key, k, r[k]))
        # Every span the node exported, ours or not, starts with the node's vm layer.
        for s in spans:
            stack = h.res_attrs(s).get("isotrace.stack", "")
            if not stack_starts_with_vm(stack, vm_token):
                errors.append("span from pid %s: isotrace.stack %r does not begin with %r"
                              % (h.res_attrs(s).get("process.pid"), stack, vm_token))
                break
        print("vm %s; requests %d; matched %d; spans received %d"
              % (vm_token, len(sent), sum(len(v) for v in by_key.values()), len(spans)))
        for name in ("runc", "bwrap", "wasm"):
            sample = next((by_key[k][0] for k, n in sent.items() if n == name and by_key.get(k)), None)
            if sample:
                r = h.res_attrs(sample)
                print("  %s: %s" % (name, {k: v for k, v in r.items()
                                          if k.startswith(("container.", "isotrace.", "service."))}))
        if errors:
            print("\n".join(errors[:40]))
            print("daemon log tail:\n" + dlog[-3000:])
            h.fail("%d mismatches" % len(errors))
        print("PASS")


if __name__ == "__main__":
    main()
