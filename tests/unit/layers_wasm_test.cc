// The Wasm import-section reader: well-formed modules of every import kind, and the
// malformed, truncated and hostile inputs a workload could name *.wasm.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "daemon/layers/wasm_module.h"
#include "gtest/gtest.h"

namespace isotrace::layers {
namespace {

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
std::string Name(const std::string& s) { return Leb(s.size()) + s; }
std::string Section(uint8_t id, const std::string& body) {
  return std::string(1, static_cast<char>(id)) + Leb(body.size()) + body;
}
const std::string kHeader("\0asm\x01\0\0\0", 8);

std::string WasiModule() {
  std::string types = Leb(1) + std::string("\x60\x00\x00", 3);  // one () -> () type
  std::string imports = Leb(5);
  imports += Name("wasi_snapshot_preview1") + Name("fd_write") + std::string("\x00", 1) + Leb(0);
  imports += Name("env") + Name("memory") + std::string("\x02\x00", 2) + Leb(1);
  imports += Name("env") + Name("table") + std::string("\x01\x70\x01", 3) + Leb(0) + Leb(10);
  imports += Name("env") + Name("g") + std::string("\x03\x7f\x00", 3);
  imports += Name("wasi_snapshot_preview1") + Name("proc_exit") + std::string("\x00", 1) + Leb(0);
  return kHeader + Section(0, Name("producers") + "xyz") + Section(1, types) + Section(2, imports) +
         Section(10, Leb(0));
}

TEST(WasmImports, ReadsEveryImportKind) {
  auto m = WasmImportModules(WasiModule());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(*m, std::vector<std::string>({"wasi_snapshot_preview1", "env"}));
}

TEST(WasmImports, NoImportSection) {
  auto m = WasmImportModules(kHeader + Section(1, Leb(0)) + Section(3, Leb(0)));
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->empty());
  EXPECT_TRUE(WasmImportModules(kHeader)->empty());
}

TEST(WasmImports, MalformedAndHostile) {
  EXPECT_FALSE(WasmImportModules("").ok());
  EXPECT_FALSE(WasmImportModules("#!/bin/sh\necho not wasm\n").ok());
  EXPECT_FALSE(WasmImportModules(std::string("\0asm\x02\0\0\0", 8)).ok());  // version 2
  std::string good = WasiModule();
  // Every truncation is either an error or stops before claiming anything wrong.
  for (size_t n = 8; n < good.size(); n++) {
    auto m = WasmImportModules(good.substr(0, n));
    if (m.ok())
      for (const auto& name : *m) EXPECT_TRUE(name == "wasi_snapshot_preview1" || name == "env");
  }
  // Section size far past the end.
  EXPECT_FALSE(WasmImportModules(kHeader + std::string("\x02", 1) + Leb(1ull << 31)).ok());
  // An over-long LEB128.
  EXPECT_FALSE(WasmImportModules(kHeader + std::string("\x02\xff\xff\xff\xff\xff\xff", 7)).ok());
  // A huge import count with nothing behind it.
  EXPECT_FALSE(WasmImportModules(kHeader + Section(2, Leb(1u << 30))).ok());
  // A name length past the section.
  EXPECT_FALSE(WasmImportModules(kHeader + Section(2, Leb(1) + Leb(1000) + "abc")).ok());
  // An unknown import kind.
  EXPECT_FALSE(
      WasmImportModules(kHeader + Section(2, Leb(1) + Name("m") + Name("f") + "\x09")).ok());
}

// Found by tests/fuzz/wasm_fuzz.cc: a memory64 limit whose LEB128 ran to 11 bytes was
// shifted by 70 bits (undefined behaviour; UBSan stops the sanitizer tree on it). LEB128
// values are at most ceil(bits / 7) bytes and the last byte must fit.
TEST(WasmImports, Leb128IsBoundedByItsWidth) {
  auto memory = [](const std::string& flags_and_limits) {
    return kHeader + Section(2, Leb(1) + Name("env") + Name("memory") + "\x02" + flags_and_limits);
  };
  const std::string ff9(9, '\xff');
  EXPECT_FALSE(WasmImportModules(memory("\x04" + std::string(10, '\xff') + "\x01")).ok());  // 11 bytes
  EXPECT_FALSE(WasmImportModules(memory("\x04" + ff9 + "\x02")).ok());  // bit 64 set
  auto max64 = WasmImportModules(memory("\x04" + ff9 + "\x01"));       // UINT64_MAX
  ASSERT_TRUE(max64.ok()) << max64.status();
  EXPECT_EQ(*max64, std::vector<std::string>{"env"});
  // 32-bit limits: five bytes, the last with four bits.
  EXPECT_TRUE(WasmImportModules(memory(std::string("\x00\xff\xff\xff\xff\x0f", 6))).ok());
  EXPECT_FALSE(WasmImportModules(memory(std::string("\x00\xff\xff\xff\xff\x1f", 6))).ok());
  EXPECT_FALSE(WasmImportModules(memory(std::string("\x00\x80\x80\x80\x80\x80\x00", 7))).ok());
}

TEST(WasmImports, BoundedNumberOfModules) {
  std::string imports = Leb(1000);
  for (int i = 0; i < 1000; i++)
    imports += Name("m" + std::to_string(i)) + Name("f") + std::string("\x00", 1) + Leb(0);
  auto m = WasmImportModules(kHeader + Section(2, imports));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->size(), 64u);
}

TEST(WasmModuleCache, ReadsOnceAndRejectsNonFiles) {
  std::string dir = ::testing::TempDir() + "/wasmcache-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::string path = dir + "/handler.wasm";
  std::ofstream(path, std::ios::binary) << WasiModule();
  WasmModuleCache cache(4);
  for (int i = 0; i < 3; i++) {
    auto m = cache.Imports(path);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ((*m)[0], "wasi_snapshot_preview1");
  }
  EXPECT_EQ(cache.reads(), 1u);
  EXPECT_TRUE(absl::IsNotFound(cache.Imports(dir + "/missing.wasm").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(cache.Imports(dir).status()));  // a directory
  std::string fifo = dir + "/fifo.wasm";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_TRUE(absl::IsInvalidArgument(cache.Imports(fifo).status()));  // never blocks
  std::ofstream(dir + "/text.wasm") << "hello";
  EXPECT_TRUE(absl::IsInvalidArgument(cache.Imports(dir + "/text.wasm").status()));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace isotrace::layers
