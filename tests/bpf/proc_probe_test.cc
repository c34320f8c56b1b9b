// Loads the real proc probe, triggers real exec, exit and open syscalls, and asserts
// each event field by field: .wasm opens (openat, openat2, relative paths) are reported
// once with the fd; failed opens, other suffixes and thread exits are not; a child's
// exec and exit carry the same process key and name this process as the parent.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon/probes/environment.h"
#include "daemon/probes/proc_probe.h"
#include "gtest/gtest.h"

namespace isotrace::probes {
namespace {

struct Captured {
  ProcEvent ev;
  std::string comm, path;
};

bool RequireBpf() {
  const char* v = getenv("ISOTRACE_REQUIRE_BPF");
  return v && std::string(v) == "1";
}

class ProcProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InstallLibbpfLogger(false);
    if (auto st = CheckBpfEnvironment({}); !st.ok()) {
      if (RequireBpf()) FAIL() << "BPF environment: " << st;
      GTEST_SKIP() << "BPF unavailable: " << st;
    }
    ProcProbeOptions opts;
    opts.self_tgid = 0xffffffffu;  // this test process is the subject
    auto p = ProcProbe::Create(opts, [this](const ProcEvent& ev) {
      // The machine is shared: keep this process and its children only.
      if (ev.tgid == self_ || ev.ppid == self_)
        events_.push_back({ev, std::string(ev.comm), std::string(ev.path)});
    });
    if (!p.ok()) {
      if (RequireBpf()) FAIL() << "loading the proc probe: " << p.status();
      GTEST_SKIP() << "cannot load the proc probe: " << p.status();
    }
    probe_ = std::move(*p);
    dir_ = ::testing::TempDir() + "/procprobe-" + std::to_string(self_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Drain(size_t want) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (events_.size() < want && std::chrono::steady_clock::now() < deadline)
      ASSERT_TRUE(probe_->Poll(50).ok());
    ASSERT_TRUE(probe_->Poll(50).ok());
  }
  std::vector<Captured> Of(ProcEvent::Kind kind, uint32_t tgid) {
    std::vector<Captured> out;
    for (const auto& c : events_)
      if (c.ev.kind == kind && c.ev.tgid == tgid) out.push_back(c);
    return out;
  }

  uint32_t self_ = static_cast<uint32_t>(getpid());
  std::unique_ptr<ProcProbe> probe_;
  std::vector<Captured> events_;
  std::string dir_;
};

TEST_F(ProcProbeTest, WasmOpensOnly) {
  std::string mod = dir_ + "/handler.wasm";
  std::ofstream(mod) << "\0asm";  // opened for writing: not reported
  std::ofstream(dir_ + "/notes.wasmx") << "x";
  std::ofstream(dir_ + "/upper.WASM") << "x";
  uint32_t tid = static_cast<uint32_t>(syscall(SYS_gettid));

  int fd1 = openat(AT_FDCWD, mod.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd1, 0);
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC;
  int dirfd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dirfd, 0);
  int fd2 = static_cast<int>(syscall(SYS_openat2, dirfd, "handler.wasm", &how, sizeof(how)));
  ASSERT_GE(fd2, 0);
  // Not reported: a failed open, other suffixes.
  EXPECT_LT(openat(AT_FDCWD, (dir_ + "/missing.wasm").c_str(), O_RDONLY), 0);
  int fd3 = openat(AT_FDCWD, (dir_ + "/notes.wasmx").c_str(), O_RDONLY | O_CLOEXEC);
  int fd4 = openat(AT_FDCWD, (dir_ + "/upper.WASM").c_str(), O_RDONLY | O_CLOEXEC);
  // Not reported either: a module opened for writing too, or only as a path (O_PATH);
  // a symlink named *.wasm to a file named otherwise (the test is on the opened file).
  int fd5 = openat(AT_FDCWD, mod.c_str(), O_RDWR | O_CLOEXEC);
  int fd6 = openat(AT_FDCWD, mod.c_str(), O_PATH | O_CLOEXEC);
  std::ofstream(dir_ + "/blob") << "x";
  ASSERT_EQ(symlink((dir_ + "/blob").c_str(), (dir_ + "/alias.wasm").c_str()), 0);
  int fd7 = openat(AT_FDCWD, (dir_ + "/alias.wasm").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd5, 0);
  ASSERT_GE(fd6, 0);
  ASSERT_GE(fd7, 0);
  Drain(2);

  auto opens = Of(ProcEvent::Kind::kWasmOpen, self_);
  ASSERT_EQ(opens.size(), 2u);
  // The kernel rebuilt both paths from the opened file: absolute, canonical, the same
  // file whether opened by absolute path or relative to a dirfd.
  std::string canonical = std::filesystem::canonical(mod).string();
  struct stat ns {};
  ASSERT_EQ(stat("/proc/self/ns/mnt", &ns), 0);
  EXPECT_EQ(opens[0].path, canonical);
  EXPECT_TRUE(opens[0].ev.path_resolved);
  EXPECT_EQ(opens[0].ev.mnt_ns, static_cast<uint32_t>(ns.st_ino));
  EXPECT_EQ(opens[0].ev.fd, fd1);
  EXPECT_EQ(opens[0].ev.tid, tid);
  EXPECT_NE(opens[0].ev.proc_start_ns, 0u);
  EXPECT_EQ(opens[0].comm, "proc_probe_test");
  EXPECT_EQ(opens[1].path, canonical);
  EXPECT_TRUE(opens[1].ev.path_resolved);
  EXPECT_EQ(opens[1].ev.fd, fd2);
  EXPECT_EQ(opens[1].ev.proc_start_ns, opens[0].ev.proc_start_ns);
  EXPECT_EQ(probe_->counters().path_too_long, 0u);
  EXPECT_EQ(probe_->counters().malformed, 0u);
  for (int fd : {fd1, fd2, fd3, fd4, fd5, fd6, fd7, dirfd}) close(fd);
}

TEST_F(ProcProbeTest, AModuleDeeperThanThePathWalkIsReportedByItsName) {
  // 45 directories down: past the kernel-side walk's 40 levels, the event carries the
  // file's own name, unresolved (user space treats it as a module whose file is unknown).
  std::string deep = dir_;
  for (int i = 0; i < 45; i++) deep += "/d";
  std::filesystem::create_directories(deep);
  std::string mod = deep + "/deep.wasm";
  std::ofstream(mod) << "x";
  int fd = open(mod.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  Drain(1);
  close(fd);
  auto opens = Of(ProcEvent::Kind::kWasmOpen, self_);
  ASSERT_EQ(opens.size(), 1u);
  EXPECT_FALSE(opens[0].ev.path_resolved);
  EXPECT_EQ(opens[0].path, "deep.wasm");
  EXPECT_EQ(opens[0].ev.fd, fd);
}

TEST_F(ProcProbeTest, PathAcrossMounts) {
  // /dev/shm is a tmpfs mounted on devtmpfs mounted on /: the walk crosses two mounts.
  std::string mod = "/dev/shm/isotrace-procprobe-" + std::to_string(self_) + ".wasm";
  { std::ofstream(mod) << "x"; }
  if (chdir("/dev/shm") != 0) GTEST_SKIP() << "no /dev/shm";
  int fd = open(std::filesystem::path(mod).filename().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  Drain(1);
  close(fd);
  unlink(mod.c_str());
  auto opens = Of(ProcEvent::Kind::kWasmOpen, self_);
  ASSERT_EQ(opens.size(), 1u);
  EXPECT_EQ(opens[0].path, mod);
  EXPECT_TRUE(opens[0].ev.path_resolved);
}

TEST_F(ProcProbeTest, ExecAndExitOfAChild) {
  // Our own key, from an event this process makes.
  std::string mod = dir_ + "/k.wasm";
  std::ofstream(mod) << "x";
  close(open(mod.c_str(), O_RDONLY | O_CLOEXEC));
  // A thread's exit is not the process's.
  std::thread([] {}).join();
  pid_t child = fork();
  if (child == 0) {
    execl("/bin/true", "true", nullptr);
    _exit(127);
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  Drain(3);

  auto mine = Of(ProcEvent::Kind::kWasmOpen, self_);
  ASSERT_EQ(mine.size(), 1u);
  uint64_t my_start = mine[0].ev.proc_start_ns;
  auto execs = Of(ProcEvent::Kind::kExec, static_cast<uint32_t>(child));
  auto exits = Of(ProcEvent::Kind::kExit, static_cast<uint32_t>(child));
  ASSERT_EQ(execs.size(), 1u);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(execs[0].comm, "true");
  EXPECT_EQ(exits[0].comm, "true");
  // exec keeps the key; the parent is this process, with its own key.
  EXPECT_EQ(execs[0].ev.proc_start_ns, exits[0].ev.proc_start_ns);
  EXPECT_GT(exits[0].ev.proc_start_ns, my_start);
  EXPECT_EQ(exits[0].ev.ppid, self_);
  EXPECT_EQ(exits[0].ev.parent_start_ns, my_start);
  EXPECT_LE(execs[0].ev.ts_ns, exits[0].ev.ts_ns);
  EXPECT_TRUE(Of(ProcEvent::Kind::kExit, self_).empty());
}

}  // namespace
}  // namespace isotrace::probes
