// The resolver over fixture /proc and runtime-state trees: Kubernetes (containerd CRI
// with annotations, cgroupfs with the kubelet's log tree), plain runc via OCI state,
// Docker names, bubblewrap, a WASI module opened at run time, service.name precedence,
// exec/exit invalidation, exited processes resolved from the BPF cgroup id, forged
// /proc/<pid>/cgroup files, and the LRU bound.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "daemon/layers/process_resolver.h"
#include "gtest/gtest.h"

namespace isotrace::layers {
namespace {

namespace fs = std::filesystem;

const std::string kId = "4f3c2b1a09e8d7c6b5a4938271605f4e3d2c1b0a99887766554433221100ffee";
const std::string kId2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kUid = "6f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8";
const std::string kUidU = "6f1c2a3b_4d5e_6f70_8192_a3b4c5d6e7f8";

void Write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}
void Link(const std::string& target, const std::string& path) {
  fs::create_directories(fs::path(path).parent_path());
  fs::remove(path);
  fs::create_symlink(target, path);
}

std::string Leb(uint64_t v) {
  std::string out;
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    if (v) b |= 0x80;
    out.push_back(static_cast<char>(b));
  } while (v);
  return out;
}
std::string WasiModule() {
  std::string imports = Leb(1) + Leb(22) + "wasi_snapshot_preview1" + Leb(8) + "fd_write" +
                        std::string("\x00", 1) + Leb(0);
  return std::string("\0asm\x01\0\0\0", 8) + std::string("\x02", 1) + Leb(imports.size()) + imports;
}

class ResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/resolver-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
    proc_ = root_ + "/proc";
    host_ = root_ + "/host";
    cg_ = root_ + "/cg";
    fs::create_directories(cg_);
    Link("mnt:[4026531840]", proc_ + "/1/ns/mnt");
    Link("pid:[4026531836]", proc_ + "/1/ns/pid");
    Process(1, "/sbin/init", "init", 0, "0::/init.scope\n");
  }
  void TearDown() override { fs::remove_all(root_); }

  std::unique_ptr<ProcessResolver> Make(size_t max_entries = 64) {
    ResolverOptions o;
    o.proc_root = proc_;
    o.host_prefix = host_;
    o.max_entries = max_entries;
    VmInfo vm;
    vm.guest = true;
    vm.hypervisor = "kvm";
    vm.vmm = "firecracker";
    o.vm = vm;
    o.cgroup_v2_mount = cg_;
    o.cgroup_mounts = std::vector<std::string>{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory"};
    o.now = [this] { return now_; };
    o.rescan_interval_ns = 1000;
  o.cgroup_rescan_interval_ns = 1000;
    o.exit_grace_ns = 5000;
    return std::make_unique<ProcessResolver>(o);
  }

  // A fixture process: exe link, cmdline, cgroup, stat (with its parent), mount ns.
  void Process(uint32_t pid, const std::string& exe, const std::string& comm, uint32_t ppid,
               const std::string& cgroup, const std::string& environ = "",
               const std::string& mntns = "mnt:[4026531840]") {
    std::string d = proc_ + "/" + std::to_string(pid);
    Link(exe, d + "/exe");
    Write(d + "/cmdline", exe + std::string("\0--flag\0", 8));
    Write(d + "/cgroup", cgroup);
    Write(d + "/environ", environ);
    Write(d + "/stat", std::to_string(pid) + " (" + comm + ") S " + std::to_string(ppid) + " 1 1 0\n");
    Link(mntns, d + "/ns/mnt");
    Link("pid:[4026531836]", d + "/ns/pid");
    fs::create_directories(d + "/fd");
  }

  static std::string Attr(const std::shared_ptr<const correlate::Resource>& r, const std::string& k) {
    for (const auto& a : r->attributes)
      if (a.key == k) {
        if (auto* s = std::get_if<std::string>(&a.value)) return *s;
        if (auto* i = std::get_if<int64_t>(&a.value)) return std::to_string(*i);
      }
    return "<none>";
  }

  std::string root_, proc_, host_, cg_;
  uint64_t now_ = 1;
};

TEST_F(ResolverTest, KubernetesContainerdWithAnnotations) {
  std::string path = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidU +
                     ".slice/cri-containerd-" + kId + ".scope";
  Process(100, "/usr/sbin/nginx", "nginx", 90, "0::" + path + "\n", "", "mnt:[4026532001]");
  Process(90, "/usr/bin/containerd-shim-runc-v2", "containerd-shim", 1, "0::/system.slice/containerd.service\n");
  std::string bundle = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/" + kId;
  Write(host_ + "/run/containerd/runc/k8s.io/" + kId + "/state.json",
        R"({"id":")" + kId + R"(","init_process_pid":100,"cgroup_paths":{"":"/sys/fs/cgroup/unified)" +
            path + R"("},"config":{"labels":["bundle=)" + bundle + R"("]}})");
  Write(host_ + bundle + "/config.json",
        R"({"ociVersion":"1.0.2","annotations":{"io.kubernetes.cri.container-type":"container",
          "io.kubernetes.cri.container-name":"web","io.kubernetes.cri.sandbox-name":"web-7d9f8",
          "io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-uid":")" +
            kUid + R"("}})");
  auto r = Make()->Resolve({100, 5}, "nginx");
  EXPECT_EQ(Attr(r, "container.id"), kId);
  EXPECT_EQ(Attr(r, "container.runtime"), "containerd");
  EXPECT_EQ(Attr(r, "k8s.pod.uid"), kUid);
  EXPECT_EQ(Attr(r, "k8s.pod.name"), "web-7d9f8");
  EXPECT_EQ(Attr(r, "k8s.namespace.name"), "shop");
  EXPECT_EQ(Attr(r, "k8s.container.name"), "web");
  EXPECT_EQ(Attr(r, "isotrace.k8s.qos_class"), "burstable");
  EXPECT_EQ(Attr(r, "service.name"), "web");
  EXPECT_EQ(Attr(r, "isotrace.stack"), "vm:firecracker/container:containerd");
  EXPECT_EQ(Attr(r, "isotrace.vm.hypervisor"), "kvm");
  EXPECT_EQ(Attr(r, "isotrace.sandbox.kind"), "<none>");
  EXPECT_EQ(Attr(r, "process.executable.name"), "nginx");
}

TEST_F(ResolverTest, KubernetesCgroupfsNamesFromTheKubeletLogTree) {
  // cgroupfs driver: the path names no runtime; the OCI state root does; the kubelet's
  // log links name pod, namespace and container.
  std::string path = "/kubepods/besteffort/pod" + kUid + "/" + kId;
  Process(110, "/app/server", "server", 1, "12:memory:" + path + "\n0::" + path + "\n");
  Write(host_ + "/run/containerd/runc/k8s.io/" + kId + "/state.json",
        R"({"init_process_pid":110,"cgroup_paths":{"memory":"/sys/fs/cgroup/memory)" + path + R"("}})");
  Write(host_ + "/var/log/containers/api-5c8d_default_server-" + kId + ".log", "");
  fs::create_directories(host_ + "/var/log/pods/default_api-5c8d_" + kUid + "/server");
  auto r = Make()->Resolve({110, 5}, "server");
  EXPECT_EQ(Attr(r, "container.id"), kId);
  EXPECT_EQ(Attr(r, "container.runtime"), "containerd");
  EXPECT_EQ(Attr(r, "k8s.pod.uid"), kUid);
  EXPECT_EQ(Attr(r, "k8s.pod.name"), "api-5c8d");
  EXPECT_EQ(Attr(r, "k8s.namespace.name"), "default");
  EXPECT_EQ(Attr(r, "k8s.container.name"), "server");
  EXPECT_EQ(Attr(r, "isotrace.k8s.qos_class"), "besteffort");
}

TEST_F(ResolverTest, DisagreeingMetadataNamesNoPod) {
  std::string path = "/kubepods/pod" + kUid + "/" + kId;
  Process(111, "/app/server", "server", 1, "0::" + path + "\n");
  // The log link says namespace "a", the pod directory for this uid says "b".
  Write(host_ + "/var/log/containers/p_a_c-" + kId + ".log", "");
  fs::create_directories(host_ + "/var/log/pods/b_p_" + kUid);
  auto r = Make()->Resolve({111, 5}, "server");
  EXPECT_EQ(Attr(r, "k8s.pod.uid"), kUid);
  EXPECT_EQ(Attr(r, "k8s.namespace.name"), "<none>");
  EXPECT_EQ(Attr(r, "k8s.pod.name"), "<none>");
  EXPECT_EQ(Attr(r, "container.id"), kId);
  EXPECT_EQ(Attr(r, "container.runtime"), "<none>");  // no OCI state: runtime unknown
  EXPECT_EQ(Attr(r, "isotrace.stack"), "vm:firecracker/container");
}

TEST_F(ResolverTest, PlainRuncFromOciState) {
  // What this build machine does: runc with the cgroupfs driver puts the container at
  // /<id> in every hierarchy (hybrid: v1 controllers and the unified v2 tree).
  Process(200, "/bin/busybox", "busybox", 199,
          "4:memory:/process_api/abc/isotest1\n1:cpu:/isotest1\n0::/isotest1\n", "",
          "mnt:[4026532100]");
  Process(199, "/usr/sbin/runc", "runc", 1, "0::/\n");
  Write(host_ + "/run/runc/isotest1/state.json",
        R"({"id":"isotest1","init_process_pid":200,"cgroup_paths":{"":"/sys/fs/cgroup/unified/isotest1",
          "memory":"/sys/fs/cgroup/memory/process_api/abc/isotest1"},
          "config":{"labels":["bundle=/tmp/bundle"]}})");
  auto res = Make();
  auto r = res->Resolve({200, 5}, "busybox");
  EXPECT_EQ(Attr(r, "container.id"), "isotest1");
  EXPECT_EQ(Attr(r, "container.runtime"), "runc");
  EXPECT_EQ(Attr(r, "isotrace.stack"), "vm:firecracker/container:runc");
  EXPECT_EQ(Attr(r, "isotrace.sandbox.kind"), "<none>");
  EXPECT_EQ(Attr(r, "service.name"), "busybox");
  // A sub-cgroup of the container is the container too; a sibling is not.
  Process(201, "/bin/busybox", "busybox", 200, "0::/isotest1/worker\n");
  EXPECT_EQ(Attr(res->Resolve({201, 5}, "busybox"), "container.id"), "isotest1");
  Process(202, "/bin/busybox", "busybox", 1, "0::/isotest10\n");
  EXPECT_EQ(Attr(res->Resolve({202, 5}, "busybox"), "container.id"), "<none>");
}

TEST_F(ResolverTest, ContainerCreatedRightAfterAScanIsFound) {
  fs::create_directories(host_ + "/run/runc");
  auto res = Make();
  Process(205, "/bin/sh", "sh", 1, "0::/\n");
  res->Resolve({205, 5}, "sh");  // scans the (empty) state root
  Process(206, "/bin/busybox", "busybox", 1, "0::/fresh\n");
  Write(host_ + "/run/runc/fresh/state.json",
        R"({"init_process_pid":206,"cgroup_paths":{"":"/sys/fs/cgroup/unified/fresh"}})");
  // Same fake instant: only the changed state directory can trigger the rescan.
  EXPECT_EQ(Attr(res->Resolve({206, 5}, "busybox"), "container.id"), "fresh");
}

TEST_F(ResolverTest, BadStateFilesAreCountedNotFatal) {
  Process(210, "/bin/sh", "sh", 1, "0::/x\n");
  Write(host_ + "/run/runc/x/state.json", "{not json");
  Write(host_ + "/run/runc/y/state.json", std::string(2u << 20, ' '));
  auto res = Make();
  auto r = res->Resolve({210, 5}, "sh");
  EXPECT_EQ(Attr(r, "container.id"), "<none>");
  EXPECT_EQ(res->stats().metadata_bad_files, 2u);
}

TEST_F(ResolverTest, DockerNameIsTheServiceName) {
  Process(220, "/usr/local/bin/redis-server", "redis-server", 1,
          "0::/system.slice/docker-" + kId + ".scope\n");
  Write(host_ + "/var/lib/docker/containers/" + kId + "/config.v2.json",
        R"({"ID":")" + kId + R"(","Name":"/cache","Config":{"Labels":{}}})");
  auto r = Make()->Resolve({220, 5}, "redis-server");
  EXPECT_EQ(Attr(r, "container.runtime"), "docker");
  EXPECT_EQ(Attr(r, "container.name"), "cache");
  EXPECT_EQ(Attr(r, "service.name"), "cache");
}

TEST_F(ResolverTest, OtelServiceNameWinsAndSystemdUnits) {
  Process(230, "/usr/sbin/nginx", "nginx", 1, "0::/system.slice/nginx.service\n",
          std::string("PATH=/bin\0OTEL_SERVICE_NAME=frontend\0", 37));
  auto r = Make()->Resolve({230, 5}, "nginx");
  EXPECT_EQ(Attr(r, "service.name"), "frontend");
  EXPECT_EQ(Attr(r, "isotrace.systemd.unit"), "nginx.service");
  EXPECT_EQ(Attr(r, "container.id"), "<none>");
  EXPECT_EQ(Attr(r, "container.runtime"), "<none>");
  EXPECT_EQ(Attr(r, "isotrace.stack"), "vm:firecracker/container:systemd");
}

TEST_F(ResolverTest, Bubblewrap) {
  Process(300, "/bin/busybox", "busybox", 299, "0::/\n", "", "mnt:[4026532200]");
  Process(299, "/usr/bin/bwrap", "bwrap", 298, "0::/\n", "", "mnt:[4026532200]");
  Process(298, "/usr/bin/bwrap", "bwrap", 1, "0::/\n");
  auto res = Make();
  auto r = res->Resolve({300, 5}, "busybox");
  EXPECT_EQ(Attr(r, "isotrace.sandbox.kind"), "bwrap");
  EXPECT_EQ(Attr(r, "isotrace.stack"), "vm:firecracker/sandbox:bwrap");
  // The outer bwrap, in the host's mount namespace, is not inside the sandbox.
  EXPECT_EQ(Attr(res->Resolve({298, 5}, "bwrap"), "isotrace.sandbox.kind"), "<none>");
}

TEST_F(ResolverTest, GoneChildTakesItsParentsSandbox) {
  // busybox httpd forks a child per connection; the child may be gone before its first
  // event is read. Its exit event named the parent, which is alive and sandboxed.
  Process(320, "/bin/busybox", "busybox", 319, "0::/\n", "", "mnt:[4026532200]");
  Process(319, "/usr/bin/bwrap", "bwrap", 318, "0::/\n", "", "mnt:[4026532200]");
  Process(318, "/usr/bin/bwrap", "bwrap", 1, "0::/\n");
  auto res = Make();
  res->OnExit({321, 9}, {320, 5});
  auto r = res->Resolve({321, 9}, "busybox");
  EXPECT_EQ(Attr(r, "isotrace.sandbox.kind"), "bwrap");
  EXPECT_EQ(Attr(r, "process.executable.name"), "busybox");
  EXPECT_EQ(res->stats().inherited_from_parent, 1u);
  // A zombie (exited, not reaped): /proc/<pid> is there but exe and namespaces are not.
  Write(proc_ + "/330/stat", "330 (busybox) Z 320 1 1 0\n");
  Write(proc_ + "/330/cgroup", "0::/\n");
  res->OnExit({330, 9}, {320, 5});
  EXPECT_EQ(Attr(res->Resolve({330, 9}, "busybox"), "isotrace.sandbox.kind"), "bwrap");
  // Caught mid-exit, before its exit event: exe still there, namespaces gone; stat
  // names the parent.
  Process(340, "/bin/busybox", "busybox", 320, "0::/\n");
  fs::remove_all(proc_ + "/340/ns");
  EXPECT_EQ(Attr(res->Resolve({340, 9}, "busybox"), "isotrace.sandbox.kind"), "bwrap");
  EXPECT_EQ(res->stats().inherited_from_parent, 3u);
  // Gone, and its exit event still queued: the resolver drains the queue and finds it.
  int drains = 0;
  res->SetFactsDrain([&] {
    drains++;
    res->OnExit({350, 9}, {320, 5});
  });
  EXPECT_EQ(Attr(res->Resolve({350, 9}, "busybox"), "isotrace.sandbox.kind"), "bwrap");
  EXPECT_EQ(drains, 1);
  res->SetFactsDrain(nullptr);
  // A gone process whose parent is not sandboxed gets nothing; nor one with no parent.
  res->OnExit({322, 9}, {318, 5});
  EXPECT_EQ(Attr(res->Resolve({322, 9}, "x"), "isotrace.sandbox.kind"), "<none>");
  EXPECT_EQ(Attr(res->Resolve({323, 9}, "x"), "isotrace.sandbox.kind"), "<none>");
}

TEST_F(ResolverTest, WasiModuleOpenedAtRunTime) {
  Process(400, "/usr/bin/node", "node", 1, "0::/\n");
  // The module as the process sees it, read through /proc/<pid>/root (another mount
  // namespace than the daemon's).
  Write(proc_ + "/400/root/srv/handler.wasm", WasiModule());
  auto res = Make();
  correlate::ProcessKey key{400, 5};
  auto before = res->Resolve(key, "node");
  EXPECT_EQ(Attr(before, "isotrace.wasm.runtime"), "<none>");
  EXPECT_EQ(Attr(before, "service.name"), "node");
  res->OnWasmOpen(key, "/srv/handler.wasm", true, 4026532999);
  auto r = res->Resolve(key, "node");
  EXPECT_EQ(Attr(r, "isotrace.wasm.runtime"), "node-wasi");
  EXPECT_EQ(Attr(r, "isotrace.wasm.module"), "/srv/handler.wasm");
  EXPECT_EQ(Attr(r, "service.name"), "handler");
  EXPECT_EQ(Attr(r, "isotrace.stack"), "vm:firecracker/wasm:node-wasi");
  EXPECT_EQ(res->stats().resolved, 1u);  // no second /proc read

  // A text file named .wasm is no module.
  Write(proc_ + "/400/root/srv/notes.wasm", "hello");
  res->OnWasmOpen(key, "/srv/notes.wasm", true, 4026532999);
  EXPECT_EQ(Attr(res->Resolve(key, "node"), "isotrace.wasm.module"), "/srv/handler.wasm");
  EXPECT_EQ(res->stats().wasm_bad_modules, 1u);
}

TEST_F(ResolverTest, WasmHostAlreadyGone) {
  // Same mount namespace as the daemon: the kernel's absolute path is readable here even
  // though /proc/<pid> is gone (a per-connection Node.js host that already answered).
  Link("mnt:[4026531840]", proc_ + "/self/ns/mnt");
  std::string mod = root_ + "/mods/h.wasm";
  Write(mod, WasiModule());
  auto res = Make();
  res->OnWasmOpen({420, 5}, mod, true, 4026531840);
  auto r = res->Resolve({420, 5}, "node");
  EXPECT_EQ(Attr(r, "isotrace.wasm.runtime"), "node-wasi");
  EXPECT_EQ(Attr(r, "isotrace.wasm.module"), mod);
  EXPECT_EQ(Attr(r, "process.executable.name"), "node");  // comm
  // Another mount namespace and gone: the module is known, its imports are not.
  res->OnWasmOpen({421, 5}, "/app/h.wasm", true, 4026532999);
  r = res->Resolve({421, 5}, "node");
  EXPECT_EQ(Attr(r, "isotrace.wasm.runtime"), "node");
  EXPECT_EQ(Attr(r, "isotrace.wasm.module"), "/app/h.wasm");
  // A relative path the kernel could not resolve (cwd or dirfd unknown): never joined
  // to a guessed directory, never read.
  Process(422, "/usr/bin/node", "node", 1, "0::/\n");
  Link("/srv", proc_ + "/422/cwd");
  Write(proc_ + "/422/root/srv/handler.wasm", WasiModule());
  res->OnWasmOpen({422, 5}, "handler.wasm", false, 0);
  r = res->Resolve({422, 5}, "node");
  EXPECT_EQ(Attr(r, "isotrace.wasm.runtime"), "node");
  EXPECT_EQ(Attr(r, "isotrace.wasm.module"), "handler.wasm");
}

TEST_F(ResolverTest, WasmOpenBeforeFirstResolveAndClearedByExec) {
  Process(410, "/usr/bin/node", "node", 1, "0::/\n");
  Write(proc_ + "/410/root/m/a.wasm", WasiModule());
  auto res = Make();
  correlate::ProcessKey key{410, 5};
  res->OnWasmOpen(key, "/m/a.wasm");
  EXPECT_EQ(Attr(res->Resolve(key, "node"), "isotrace.wasm.module"), "/m/a.wasm");
  // exec: a new program under the same key; the old module no longer applies.
  Link("/usr/bin/python3", proc_ + "/410/exe");
  res->OnExec(key);
  auto r = res->Resolve(key, "python3");
  EXPECT_EQ(Attr(r, "process.executable.name"), "python3");
  EXPECT_EQ(Attr(r, "isotrace.wasm.runtime"), "<none>");
}

TEST_F(ResolverTest, ExecInvalidatesEvenWithTheSameComm) {
  Process(500, "/usr/bin/a", "worker", 1, "0::/\n");
  auto res = Make();
  correlate::ProcessKey key{500, 5};
  EXPECT_EQ(Attr(res->Resolve(key, "worker"), "process.executable.name"), "a");
  Link("/usr/bin/b", proc_ + "/500/exe");
  EXPECT_EQ(Attr(res->Resolve(key, "worker"), "process.executable.name"), "a");  // cached
  res->OnExec(key);
  EXPECT_EQ(Attr(res->Resolve(key, "worker"), "process.executable.name"), "b");
}

TEST_F(ResolverTest, ExitKeepsTheIdentityForAGracePeriod) {
  Process(600, "/usr/bin/api", "api", 1, "0::/docker/" + kId + "\n");
  auto res = Make();
  correlate::ProcessKey key{600, 5};
  EXPECT_EQ(Attr(res->Resolve(key, "api"), "container.id"), kId);
  fs::remove_all(proc_ + "/600");
  res->OnExit(key);
  // Spans finishing after the exit still get the full identity.
  EXPECT_EQ(Attr(res->Resolve(key, "api"), "container.id"), kId);
  EXPECT_EQ(res->stats().evicted, 0u);
  now_ += 5000;
  res->Resolve({1, 1}, "init");  // any call expires
  EXPECT_EQ(res->stats().evicted, 1u);
  auto gone = res->Resolve(key, "api");
  EXPECT_EQ(Attr(gone, "container.id"), "<none>");
  EXPECT_EQ(Attr(gone, "process.executable.name"), "api");  // comm
}

TEST_F(ResolverTest, GoneProcessResolvedFromTheBpfCgroupId) {
  fs::create_directories(cg_ + "/system.slice/docker-" + kId + ".scope");
  struct stat st {};
  ASSERT_EQ(stat((cg_ + "/system.slice/docker-" + kId + ".scope").c_str(), &st), 0);
  auto res = Make();
  auto r = res->Resolve({700, 5}, "curl", st.st_ino);
  EXPECT_EQ(Attr(r, "container.id"), kId);
  EXPECT_EQ(Attr(r, "container.runtime"), "docker");
  EXPECT_EQ(Attr(r, "process.executable.name"), "curl");
  EXPECT_EQ(res->stats().exited_at_resolve, 1u);
  res->Resolve({701, 5}, "curl", 987654321);
  EXPECT_EQ(res->stats().cgroup_id_unknown, 1u);
}

TEST_F(ResolverTest, ForgedProcCgroupIsIgnored) {
  // A workload named a cgroup "x\n0::/docker/<id2>": the file shows two v2 lines. The
  // resolver trusts the id BPF reported instead.
  fs::create_directories(cg_ + "/docker/" + kId);
  struct stat st {};
  ASSERT_EQ(stat((cg_ + "/docker/" + kId).c_str(), &st), 0);
  Process(800, "/bin/app", "app", 1, "0::/docker/" + kId + "/x\n0::/docker/" + kId2 + "\n");
  auto res = Make();
  auto r = res->Resolve({800, 5}, "app", st.st_ino);
  EXPECT_EQ(Attr(r, "container.id"), kId);
  EXPECT_EQ(res->stats().cgroup_untrusted, 1u);
  // Without a cgroup id, nothing is claimed.
  Process(801, "/bin/app", "app", 1, "0::/x\n0::/docker/" + kId2 + "\n");
  EXPECT_EQ(Attr(res->Resolve({801, 5}, "app"), "container.id"), "<none>");
}

TEST_F(ResolverTest, HostileNamesStayOut) {
  Process(810, "/bin/app", "app", 1, "0::/system.slice/" + std::string(5000, 'a') + ".service\n");
  Process(811, "/bin/app", "app", 1, "0::/system.slice/evil-docker-" + kId + ".scope\n");
  auto res = Make();
  EXPECT_EQ(Attr(res->Resolve({810, 5}, "app"), "isotrace.systemd.unit"), "<none>");
  EXPECT_EQ(Attr(res->Resolve({811, 5}, "app"), "container.id"), "<none>");
  EXPECT_EQ(res->stats().paths_too_long, 1u);
}

TEST_F(ResolverTest, BoundedCacheAndCommonAttributes) {
  auto res = Make(4);
  res->SetCommonAttributes({{"deployment.environment", std::string("prod")},
                            {"service.name", std::string("ignored")},
                            {"host.name", std::string("not-this")}});
  for (uint32_t pid = 900; pid < 920; pid++) {
    Process(pid, "/bin/w", "w", 1, "0::/\n");
    auto r = res->Resolve({pid, 5}, "w");
    EXPECT_EQ(Attr(r, "deployment.environment"), "prod");
    EXPECT_EQ(Attr(r, "service.name"), "w");
    EXPECT_NE(Attr(r, "host.name"), "not-this");
  }
  EXPECT_LE(res->size(), 4u);
}

TEST_F(ResolverTest, UserRulesReplaceTheTable) {
  Process(950, "/opt/jail/bin/srv", "srv", 949, "0::/\n", "", "mnt:[4026532300]");
  Process(949, "/usr/bin/nsjail", "nsjail", 1, "0::/\n");
  auto res = Make();
  config::LayerRule r;
  r.layer = "sandbox";
  r.name = "nsjail";
  r.ancestor = "nsjail";
  r.namespaces = {"mnt"};
  ASSERT_TRUE(res->SetRules({r}, true).ok());
  EXPECT_EQ(Attr(res->Resolve({950, 5}, "srv"), "isotrace.sandbox.kind"), "nsjail");
  config::LayerRule bad;
  bad.layer = "sandbox";
  bad.name = "x";
  bad.executable = "(";
  EXPECT_FALSE(res->SetRules({bad}, true).ok());
}

// The `top` column's short form of isotrace.stack (one rule for the CLI and anyone else).
TEST(Stack, Abbreviates) {
  EXPECT_EQ(AbbreviateStack("vm:firecracker/container:runc/sandbox:bwrap/wasm:node-wasi"),
            "firecracker/runc/bwrap/node-wasi");
  EXPECT_EQ(AbbreviateStack("vm:kvm"), "kvm");
  EXPECT_EQ(AbbreviateStack(""), "");
  EXPECT_EQ(AbbreviateStack("plain/x:"), "plain/x:");
}

}  // namespace
}  // namespace isotrace::layers
