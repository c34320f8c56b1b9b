"""Fetches a Debian kernel package with apt (never installs it) into a cache directory.

Shared by qemu_guest.py (boots it) and gen_vmlinux.py (vendors its BTF as vmlinux.h).
The host's own architecture uses the host's apt state; another architecture (arm64 on
an amd64 host) uses a private apt state under the cache, so the host's dpkg
architectures (`dpkg --add-architecture`) are left alone.
"""
import glob
import os
import re
import shutil
import subprocess

CACHE = os.environ.get("ISOTRACE_KERNEL_CACHE", "/var/cache/isotrace-kernels")


class Unavailable(Exception):
    """The package cannot be fetched here (no apt, no network, unknown name)."""


def host_arch():
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _apt_options(arch):
    # The cache belongs to root, not to apt's _apt sandbox user.
    opts = ["-o", "APT::Sandbox::User=root"]
    if arch == host_arch():
        return opts
    state = os.path.join(CACHE, "apt-" + arch)
    for d in ("lists/partial", "cache/archives/partial"):
        os.makedirs(os.path.join(state, d), exist_ok=True)
    return opts + ["-o", "APT::Architecture=" + arch, "-o", "APT::Architectures::=" + arch,
                   "-o", "Dir::State::Lists=" + os.path.join(state, "lists"),
                   "-o", "Dir::Cache=" + os.path.join(state, "cache"),
                   "-o", "Dir::State::Status=/dev/null"]


def fetch(meta, arch=None):
    """Downloads the image that Debian metapackage `meta` (e.g. linux-image-amd64)
    depends on today; returns the .deb's path (cached: downloaded once)."""
    arch = arch or host_arch()
    opts = _apt_options(arch)
    os.makedirs(CACHE, exist_ok=True)
    if arch != host_arch() and not glob.glob(os.path.join(CACHE, "apt-" + arch, "lists", "*Packages*")):
        r = subprocess.run(["apt-get", *opts, "update", "-q"], capture_output=True, text=True)
        if r.returncode != 0:
            raise Unavailable("apt-get update for %s: %s" % (arch, r.stderr.strip()))
    try:
        deps = subprocess.run(["apt-cache", *opts, "depends", meta], capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise Unavailable("apt-cache depends %s: %s" % (meta, e))
    m = re.search(r"Depends: (linux-image-[0-9][^\s]*)", deps)
    if not m:
        raise Unavailable("%s names no versioned kernel image (apt-get update?)" % meta)
    pkg = m.group(1)
    debs = glob.glob(os.path.join(CACHE, "%s_*_%s.deb" % (pkg, arch)))
    if not debs:
        r = subprocess.run(["apt-get", *opts, "download", "-q", pkg], cwd=CACHE,
                           capture_output=True, text=True)
        debs = glob.glob(os.path.join(CACHE, "%s_*_%s.deb" % (pkg, arch)))
        if r.returncode != 0 or not debs:
            raise Unavailable("apt-get download %s failed: %s" % (pkg, r.stderr.strip()))
    return sorted(debs)[-1]


def unpack(deb, with_modules=True):
    """dpkg-deb -x into <cache>/<package>_<version>_<arch>/ (once); with the modules,
    indexes them with depmod. Returns (root, release, vmlinuz)."""
    root = deb[:-len(".deb")]
    stamp = os.path.join(root, ".isotrace-unpacked")
    if not os.path.exists(stamp):
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
        open(stamp, "w").close()
    release = os.path.basename(glob.glob(os.path.join(root, "lib/modules/*"))[0])
    if with_modules and not os.path.exists(os.path.join(root, "lib/modules", release, "modules.dep")):
        subprocess.run(["depmod", "-b", root, release], check=True)
    return root, release, os.path.join(root, "boot", "vmlinuz-" + release)
