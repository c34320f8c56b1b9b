// The cgroup corpus: real-world paths of every runtime and driver the built-in table
// knows, the /proc/<pid>/cgroup layouts (v1, hybrid, v2), and hostile ones.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "daemon/layers/cgroup.h"
#include "daemon/layers/rules.h"
#include "gtest/gtest.h"

namespace isotrace::layers {
namespace {

const std::string kId = "4f3c2b1a09e8d7c6b5a4938271605f4e3d2c1b0a99887766554433221100ffee";
const std::string kId2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kUid = "6f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8";
const std::string kUidU = "6f1c2a3b_4d5e_6f70_8192_a3b4c5d6e7f8";  // systemd driver's escaping

std::shared_ptr<const RuleSet> Builtins() {
  auto r = RuleSet::Compile({}, true);
  EXPECT_TRUE(r.ok()) << r.status();
  return *r;
}

struct Case {
  std::string path;
  std::string runtime, id, pod_uid, qos, name, unit;
};

class CorpusTest : public ::testing::TestWithParam<Case> {};

TEST_P(CorpusTest, Matches) {
  const Case& c = GetParam();
  auto rules = Builtins();
  auto m = rules->MatchCgroup({c.path});
  ASSERT_TRUE(m.has_value()) << c.path;
  EXPECT_EQ(m->runtime, c.runtime) << c.path;
  EXPECT_EQ(m->id, c.id) << c.path;
  EXPECT_EQ(m->pod_uid, c.pod_uid) << c.path;
  EXPECT_EQ(m->qos, c.qos) << c.path;
  EXPECT_EQ(m->name, c.name) << c.path;
  EXPECT_EQ(m->unit, c.unit) << c.path;
}

INSTANTIATE_TEST_SUITE_P(
    RealWorld, CorpusTest,
    ::testing::Values(
        // Kubernetes, systemd driver, containerd (CRI), every QoS class.
        Case{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidU +
                 ".slice/cri-containerd-" + kId + ".scope",
             "containerd", kId, kUid, "burstable"},
        Case{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidU +
                 ".slice/cri-containerd-" + kId + ".scope",
             "containerd", kId, kUid, "besteffort"},
        Case{"/kubepods.slice/kubepods-pod" + kUidU + ".slice/cri-containerd-" + kId + ".scope",
             "containerd", kId, kUid, "guaranteed"},
        // A thread-level sub-cgroup under the container scope still belongs to it.
        Case{"/kubepods.slice/kubepods-pod" + kUidU + ".slice/cri-containerd-" + kId +
                 ".scope/worker",
             "containerd", kId, kUid, "guaranteed"},
        // Kubernetes, systemd driver, CRI-O and dockershim/cri-dockerd.
        Case{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidU +
                 ".slice/crio-" + kId + ".scope",
             "cri-o", kId, kUid, "burstable"},
        Case{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidU +
                 ".slice/docker-" + kId + ".scope",
             "docker", kId, kUid, "besteffort"},
        // Kubernetes, cgroupfs driver: containerd/cri-dockerd (runtime from OCI state), CRI-O.
        Case{"/kubepods/burstable/pod" + kUid + "/" + kId, "", kId, kUid, "burstable"},
        Case{"/kubepods/besteffort/pod" + kUid + "/" + kId, "", kId, kUid, "besteffort"},
        Case{"/kubepods/pod" + kUid + "/" + kId, "", kId, kUid, "guaranteed"},
        Case{"/kubepods/burstable/pod" + kUid + "/crio-" + kId, "cri-o", kId, kUid, "burstable"},
        // kind / k3d: Kubernetes nodes that are themselves Docker containers.
        Case{"/docker/" + kId2 + "/kubepods/burstable/pod" + kUid + "/" + kId, "", kId, kUid,
             "burstable"},
        // v1 controllers on a kubeadm node (cpu,cpuacct joined).
        Case{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidU +
                 ".slice/cri-containerd-" + kId + ".scope",
             "containerd", kId, kUid, "burstable"},
        // Docker: systemd (v2 default) and cgroupfs drivers.
        Case{"/system.slice/docker-" + kId + ".scope", "docker", kId},
        Case{"/docker/" + kId, "docker", kId},
        Case{"/docker/" + kId + "/nested-by-app", "docker", kId},
        // Docker-in-Docker: the outer container, created by the host's engine, wins.
        Case{"/docker/" + kId + "/docker/" + kId2, "docker", kId},
        // Podman: rootful systemd, the split "container" sub-cgroup, rootless, cgroupfs.
        Case{"/machine.slice/libpod-" + kId + ".scope", "podman", kId},
        Case{"/machine.slice/libpod-" + kId + ".scope/container", "podman", kId},
        Case{"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + kId + ".scope",
             "podman", kId},
        Case{"/libpod_parent/libpod-" + kId, "podman", kId},
        // CRI-O and containerd (nerdctl) outside pod slices.
        Case{"/system.slice/crio-" + kId + ".scope", "cri-o", kId},
        Case{"/system.slice/cri-containerd-" + kId + ".scope", "containerd", kId},
        Case{"/system.slice/nerdctl-" + kId + ".scope", "containerd", kId},
        // runc/crun with their systemd driver: ids are the user's names.
        Case{"/system.slice/runc-web-1.scope", "runc", "web-1"},
        Case{"/user.slice/crun-job_42.scope", "crun", "job_42"},
        // LXC 4+ and systemd-nspawn.
        Case{"/lxc.payload.web01", "lxc", "", "", "", "web01"},
        Case{"/lxc.payload.web01/system.slice/nginx.service", "lxc", "", "", "", "web01"},
        Case{"/machine.slice/systemd-nspawn@debian.service", "systemd-nspawn", "", "", "", "debian"},
        Case{"/machine.slice/systemd-nspawn@debian.service/payload/system.slice/cron.service",
             "systemd-nspawn", "", "", "", "debian"},
        // systemd services: a unit, not a container.
        Case{"/system.slice/nginx.service", "systemd", "", "", "", "", "nginx.service"},
        Case{"/system.slice/system-getty.slice/getty@tty1.service", "systemd", "", "", "", "",
             "getty@tty1.service"},
        Case{"/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service", "systemd",
             "", "", "", "", "pipewire.service"},
        // Unicode is fine in a unit name.
        Case{"/system.slice/caf\xc3\xa9-\xe2\x98\x95.service", "systemd", "", "", "", "",
             "caf\xc3\xa9-\xe2\x98\x95.service"}));

TEST(Corpus, NoMatch) {
  auto rules = Builtins();
  for (const std::string& p : std::vector<std::string>{
           std::string("/"), std::string("/init.scope"),
           std::string("/user.slice/user-1000.slice/session-3.scope"),
           std::string("/process_api/a63216536f8f7a0ab5d8dc6a6f1e014c"),
           // conmon/monitor processes sit beside the container, not in it.
           "/machine.slice/libpod-conmon-" + kId + ".scope",
           "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidU +
               ".slice/crio-conmon-" + kId + ".scope",
           std::string("/lxc.monitor.web01"),
           // Not on a component boundary.
           "/system.slice/evil-docker-" + kId + ".scope", "/notdocker/" + kId,
           // Wrong id shapes: 63 and 65 hex digits, upper case.
           "/docker/" + kId.substr(1), "/docker/" + kId + "a",
           std::string("/docker/4F3C2B1A09E8D7C6B5A4938271605F4E3D2C1B0A99887766554433221100FFEE"),
           // A plain cgroupfs container (plain runc, containerd's default namespace): the
           // path alone names nothing; OCI state does.
           std::string("/isotest1"), "/default/" + kId,
       }) {
    auto m = rules->MatchCgroup({p});
    EXPECT_FALSE(m.has_value()) << p << " → " << (m ? m->runtime + " " + m->id : "");
  }
}

TEST(Corpus, HostileValuesAreRejectedAndCounted) {
  auto rules = Builtins();
  MatchRejects rejects;
  // A unit name carrying a newline (cgroup names may hold one).
  EXPECT_FALSE(rules->MatchCgroup({"/system.slice/a\nb.service"}, &rejects).has_value());
  EXPECT_EQ(rejects.bad_id, 1u);
  // Very long paths are refused before matching.
  std::string longp = "/system.slice/" + std::string(10000, 'a') + ".service";
  EXPECT_FALSE(rules->MatchCgroup({longp}, &rejects).has_value());
  EXPECT_EQ(rejects.too_long, 1u);
  // A runc id longer than any runtime produces.
  EXPECT_FALSE(rules->MatchCgroup({"/system.slice/runc-" + std::string(300, 'x') + ".scope"}, &rejects)
                   .has_value());
}

TEST(Corpus, BadPodUidFallsThroughToTheContainer) {
  // The pod slice fails validation, so the pod rule does not match; the container scope
  // itself is still a containerd container (the next rule), without a pod.
  auto rules = Builtins();
  MatchRejects rejects;
  std::string bad_uid = "6f1c2a3b4_d5e_6f70_8192_a3b4c5d6e7f8";
  auto m = rules->MatchCgroup(
      {"/kubepods.slice/kubepods-pod" + bad_uid + ".slice/cri-containerd-" + kId + ".scope"},
      &rejects);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->runtime, "containerd");
  EXPECT_EQ(m->id, kId);
  EXPECT_EQ(m->pod_uid, "");
  EXPECT_GE(rejects.bad_id, 1u);
}

TEST(Corpus, RuleOrderThenPathOrder) {
  auto rules = Builtins();
  // The first candidate path that a rule matches wins within that rule; rules keep
  // their priority across paths (the pod rule beats docker even on a later path).
  auto m = rules->MatchCgroup({"/docker/" + kId2, "/kubepods/pod" + kUid + "/" + kId});
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->id, kId);
  EXPECT_EQ(m->pod_uid, kUid);
}

TEST(ProcCgroup, Hybrid) {
  // This build machine's layout: v1 controllers plus the unified hierarchy.
  std::string text =
      "9:name=systemd:/isotest1\n8:pids:/isotest1\n7:blkio:/isotest1\n6:freezer:/isotest1\n"
      "5:devices:/isotest1\n4:memory:/process_api/a632/isotest1\n3:cpuset:/isotest1\n"
      "2:cpuacct:/isotest1\n1:cpu:/isotest1\n0::/isotest1\n";
  auto lines = ParseProcCgroup(text);
  ASSERT_TRUE(lines.ok()) << lines.status();
  EXPECT_EQ(lines->size(), 10u);
  auto paths = CandidatePaths(*lines);
  ASSERT_EQ(paths.size(), 2u);
  EXPECT_EQ(paths[0], "/isotest1");
  EXPECT_EQ(paths[1], "/process_api/a632/isotest1");
}

TEST(ProcCgroup, V1Only) {
  std::string text = "12:cpu,cpuacct:/docker/" + kId + "\n11:memory:/docker/" + kId +
                     "\n1:name=systemd:/docker/" + kId + "\n";
  auto lines = ParseProcCgroup(text);
  ASSERT_TRUE(lines.ok());
  auto paths = CandidatePaths(*lines);
  ASSERT_EQ(paths.size(), 1u);
  auto m = Builtins()->MatchCgroup(paths);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->runtime, "docker");
}

TEST(ProcCgroup, PureV2AndPathsWithColons) {
  auto lines = ParseProcCgroup("0::/system.slice/a:b.service\n");
  ASSERT_TRUE(lines.ok());
  ASSERT_EQ(lines->size(), 1u);
  EXPECT_EQ((*lines)[0].path, "/system.slice/a:b.service");
  EXPECT_TRUE(CandidatePaths(*ParseProcCgroup("0::/\n")).empty());
}

TEST(ProcCgroup, InjectedLinesMakeTheFileUntrusted) {
  // A cgroup named "x\n0::/docker/<id>" prints as two v2 lines.
  EXPECT_FALSE(ParseProcCgroup("0::/x\n0::/docker/" + kId + "\n").ok());
  // A name with a newline and no colons leaves an unparsable line.
  EXPECT_FALSE(ParseProcCgroup("0::/system.slice/a\nb.service\n").ok());
  EXPECT_FALSE(ParseProcCgroup("1:cpu:/a\n1:cpu:/b\n").ok());
  EXPECT_FALSE(ParseProcCgroup("x::/a\n").ok());
  EXPECT_FALSE(ParseProcCgroup("0:cpu:/a\n").ok());
  EXPECT_FALSE(ParseProcCgroup("0::relative\n").ok());
  EXPECT_TRUE(ParseProcCgroup("").ok());
}

TEST(Mountinfo, HybridAndPureV2) {
  std::string hybrid =
      "30 24 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n"
      "31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
      "32 30 0:28 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd\n"
      "35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:15 - cgroup cgroup rw,cpu,cpuacct\n"
      "36 30 0:32 / /sys/fs/cgroup/my\\040dir rw shared:16 - cgroup cgroup rw,memory\n";
  auto mounts = ParseMountinfo(hybrid);
  ASSERT_EQ(mounts.size(), 4u);
  EXPECT_EQ(V2MountPoint(mounts), "/sys/fs/cgroup/unified");
  EXPECT_EQ(mounts[1].controllers, std::vector<std::string>({"name=systemd"}));
  EXPECT_EQ(mounts[2].controllers, std::vector<std::string>({"cpu", "cpuacct"}));
  EXPECT_EQ(mounts[3].mount_point, "/sys/fs/cgroup/my dir");
  auto v2 = ParseMountinfo(
      "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n");
  EXPECT_EQ(V2MountPoint(v2), "/sys/fs/cgroup");
  EXPECT_EQ(V2MountPoint({}), "");
}

TEST(CgroupIdIndex, MapsInodesToPathsAndRescansOnMiss) {
  std::string root = ::testing::TempDir() + "/cgidx-" + std::to_string(getpid());
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root + "/system.slice/docker-x.scope");
  uint64_t now = 0;
  CgroupIdIndex idx(root, 100, 1000, [&] { return now; });
  struct stat st {};
  ASSERT_EQ(stat((root + "/system.slice/docker-x.scope").c_str(), &st), 0);
  EXPECT_EQ(idx.PathOf(st.st_ino), "/system.slice/docker-x.scope");
  std::filesystem::create_directories(root + "/new");
  ASSERT_EQ(stat((root + "/new").c_str(), &st), 0);
  // Rate-limited: the miss right after a scan does not rescan.
  EXPECT_FALSE(idx.PathOf(st.st_ino).has_value());
  now += 1000;
  EXPECT_EQ(idx.PathOf(st.st_ino), "/new");
  EXPECT_EQ(idx.scans(), 2u);
  EXPECT_FALSE(idx.PathOf(0).has_value());
  // An id a fresh walk did not find is not walked for again until its TTL passes.
  now += 1000;
  EXPECT_FALSE(idx.PathOf(99999999).has_value());
  EXPECT_EQ(idx.scans(), 3u);
  now += 1000;
  EXPECT_FALSE(idx.PathOf(99999999).has_value());
  EXPECT_EQ(idx.scans(), 3u);
  EXPECT_EQ(idx.PathOf(st.st_ino), "/new");  // known ids are unaffected
  std::filesystem::remove_all(root);
}

TEST(CgroupIdIndex, Bounded) {
  std::string root = ::testing::TempDir() + "/cgidx-b-" + std::to_string(getpid());
  std::filesystem::remove_all(root);
  for (int i = 0; i < 20; i++) std::filesystem::create_directories(root + "/d" + std::to_string(i));
  CgroupIdIndex idx(root, 5, 0, [] { return uint64_t{0}; });
  idx.PathOf(12345);
  EXPECT_LE(idx.size(), 5u);
  EXPECT_TRUE(idx.truncated());
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace isotrace::layers
