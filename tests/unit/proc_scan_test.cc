// The l7 probe's /proc scans on a /proc-shaped directory: a process already looked at is
// skipped by the inode number of its entry (no file of it read), until it exec'd
// (Forget) or its pid went to a new process (a new entry, a new inode).

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "daemon/probes/edge_targets.h"
#include "daemon/probes/tls_targets.h"

namespace isotrace::probes {
namespace {

namespace fs = std::filesystem;

class FakeProc {
 public:
  FakeProc() {
    char tmpl[] = "/tmp/isotrace-procscan-XXXXXX";
    root_ = mkdtemp(tmpl);
  }
  ~FakeProc() { fs::remove_all(root_); }
  const std::string& root() const { return root_; }

  // /proc/<pid> with a stat line (start time `start`), a maps text naming `libs`
  // (each also created under <pid>/root, as a container's image holds it), and an
  // executable link to `exe`. Made beside and renamed into place, so a replaced
  // entry has a new inode, as procfs gives a new process.
  void Process(int pid, uint64_t start, const std::vector<std::string>& libs, const std::string& exe) {
    const std::string dir = root_ + "/" + std::to_string(pid);
    const std::string next = dir + ".next";
    fs::create_directories(next);
    std::ofstream(next + "/stat") << pid << " (app) S 1 1 1 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 1 0 " << start
                                  << " 1000 100\n";
    std::ofstream maps(next + "/maps");
    for (const auto& lib : libs) {
      maps << "7f00-7f10 r-xp 00000000 fe:01 1234 " << lib << "\n";
      fs::create_directories(fs::path(next + "/root" + lib).parent_path());
      std::ofstream(next + "/root" + lib) << lib;
    }
    fs::create_symlink(exe, next + "/exe");
    if (fs::exists(dir)) Exit(pid);
    fs::rename(next, dir);
  }
  // The process exec'd in place: same entry (same inode), new maps and executable.
  void Exec(int pid, const std::vector<std::string>& libs, const std::string& exe) {
    const std::string dir = root_ + "/" + std::to_string(pid);
    std::ofstream maps(dir + "/maps");
    for (const auto& lib : libs) {
      maps << "7f00-7f10 r-xp 00000000 fe:01 1234 " << lib << "\n";
      fs::create_directories(fs::path(dir + "/root" + lib).parent_path());
      std::ofstream(dir + "/root" + lib) << lib;
    }
    fs::remove(dir + "/exe");
    fs::create_symlink(exe, dir + "/exe");
  }
  // Moved aside, not deleted: a freed inode number could go to the next file made, and
  // the finder knows files by inode.
  void Exit(int pid) {
    fs::create_directories(root_ + "/.gone");
    fs::rename(root_ + "/" + std::to_string(pid), root_ + "/.gone/" + std::to_string(gone_++));
  }

 private:
  std::string root_;
  int gone_ = 0;
};

// The scan's new targets under the fake root (the first scan also returns the host's
// own libssl files, which are not the fake processes').
std::vector<std::string> Ours(const FakeProc& p, const std::vector<TlsTarget>& found) {
  std::vector<std::string> out;
  for (const auto& t : found)
    if (t.path.rfind(p.root(), 0) == 0) out.push_back(t.path.substr(p.root().size()));
  std::sort(out.begin(), out.end());
  return out;
}

TEST(TlsTargetScan, ASeenProcessIsLookedAtAgainOnlyAfterAnExecOrUnderANewEntry) {
  FakeProc proc;
  proc.Process(4242, 100, {"/lib/libssl.so.3"}, "/usr/bin/app");
  TlsTargetFinder finder(proc.root());
  EXPECT_EQ(Ours(proc, finder.Scan()), std::vector<std::string>{"/4242/root/lib/libssl.so.3"});

  // It maps another libssl later without an exec: not looked at again (a process is
  // looked at once), and none of its files is read: without its stat file a scan that
  // read it would take it for a new process and find the new library.
  proc.Exec(4242, {"/lib/libssl.so.1.1"}, "/usr/bin/app");
  fs::remove(proc.root() + "/4242/stat");
  EXPECT_TRUE(Ours(proc, finder.Scan()).empty());
  std::ofstream(proc.root() + "/4242/stat") << "4242 (app) S 1 1 1 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 1 0 100 1 1\n";
  // Its exec is reported: looked at again, its new library found.
  finder.Forget(4242);
  EXPECT_EQ(Ours(proc, finder.Scan()), std::vector<std::string>{"/4242/root/lib/libssl.so.1.1"});

  // The pid goes to a new process between two scans: a new entry, looked at without
  // being told.
  proc.Process(4242, 900, {"/opt/lib/libssl.so.3"}, "/usr/bin/other");
  EXPECT_EQ(Ours(proc, finder.Scan()), std::vector<std::string>{"/4242/root/opt/lib/libssl.so.3"});
  EXPECT_TRUE(Ours(proc, finder.Scan()).empty());
  // Gone, then a process under the same pid again.
  proc.Exit(4242);
  EXPECT_TRUE(Ours(proc, finder.Scan()).empty());
  proc.Process(4242, 1900, {"/srv/libssl.so.3"}, "/usr/bin/third");
  EXPECT_EQ(Ours(proc, finder.Scan()), std::vector<std::string>{"/4242/root/srv/libssl.so.3"});
}

TEST(EdgeTargetScan, TheCacheSkipsProcessesThatAreNoSandboxUntilTheyExec) {
  FakeProc proc;
  proc.Process(501, 10, {}, "/usr/bin/sleep");
  proc.Process(502, 11, {}, "/usr/bin/bash");
  EdgeScanCache cache;
  EXPECT_TRUE(FindEdgeTargets(proc.root(), &cache).empty());
  ASSERT_EQ(cache.not_sandbox.size(), 2u);
  EXPECT_TRUE(cache.not_sandbox.count(501));

  // 501 exec's runsc in place: the cache still names it until the exec is reported.
  proc.Exec(501, {}, "/usr/bin/runsc");
  FindEdgeTargets(proc.root(), &cache);
  EXPECT_TRUE(cache.not_sandbox.count(501)) << "skipped: its link was not read";
  cache.Forget(501);
  FindEdgeTargets(proc.root(), &cache);
  EXPECT_FALSE(cache.not_sandbox.count(501)) << "runsc is looked at on every scan";
  EXPECT_TRUE(cache.not_sandbox.count(502));

  // A pid taken by a new process (a new entry) is looked at; one gone leaves the cache.
  proc.Process(502, 99, {}, "/usr/bin/qemu-system-x86_64");
  FindEdgeTargets(proc.root(), &cache);
  EXPECT_FALSE(cache.not_sandbox.count(502));
  proc.Exit(501);
  proc.Exit(502);
  proc.Process(503, 12, {}, "/usr/bin/cat");
  FindEdgeTargets(proc.root(), &cache);
  EXPECT_EQ(cache.not_sandbox.size(), 1u);
  EXPECT_TRUE(cache.not_sandbox.count(503));
}

}  // namespace
}  // namespace isotrace::probes
