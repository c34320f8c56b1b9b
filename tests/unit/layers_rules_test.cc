// The rule table beyond cgroups: sandboxes from executables, ancestry and namespaces;
// Wasm runtimes from executables, mapped libraries and opened modules; user rules from
// the YAML config (validated, and run before the built-ins).
#include <string>

#include "daemon/config/config.h"
#include "daemon/layers/rules.h"
#include "gtest/gtest.h"

namespace isotrace::layers {
namespace {

std::shared_ptr<const RuleSet> Builtins() {
  auto r = RuleSet::Compile({}, true);
  EXPECT_TRUE(r.ok()) << r.status();
  return *r;
}

ProcessFacts Facts(std::string exe, std::vector<std::string> ancestors = {}, uint32_t ns = 0) {
  ProcessFacts f;
  f.executable = std::move(exe);
  f.ancestors = std::move(ancestors);
  f.ns_differs = ns;
  return f;
}

std::string Sandbox(const ProcessFacts& f) {
  auto s = Builtins()->MatchSandbox(f);
  return s ? *s : "";
}

TEST(Sandbox, Bubblewrap) {
  // busybox under bwrap (outer bwrap → inner bwrap as pid 1 → busybox), own mount ns.
  EXPECT_EQ(Sandbox(Facts("busybox", {"bwrap", "bwrap", "bash", "sshd"}, kNsMnt | kNsPid)), "bwrap");
  // The inner bwrap itself is inside.
  EXPECT_EQ(Sandbox(Facts("bwrap", {"bwrap", "bash"}, kNsMnt)), "bwrap");
  // The outer bwrap is not sandboxed; nor is a bwrap child that shares the host's mounts.
  EXPECT_EQ(Sandbox(Facts("bwrap", {"bash"}, 0)), "");
  EXPECT_EQ(Sandbox(Facts("busybox", {"bwrap"}, 0)), "");
}

TEST(Sandbox, GvisorKataFirecrackerFirejail) {
  EXPECT_EQ(Sandbox(Facts("runsc", {"containerd-shim-runsc-v1", "systemd"}, kNsMnt)), "gvisor");
  EXPECT_EQ(Sandbox(Facts("runsc", {"bash"}, 0)), "");  // `runsc list` by an admin
  EXPECT_EQ(Sandbox(Facts("exe", {"runsc", "containerd-shim-runsc-v1"}, kNsMnt)), "gvisor");
  EXPECT_EQ(Sandbox(Facts("containerd-shim-kata-v2", {"systemd"})), "kata");
  // Kata's VMM is Kata, even when the VMM is Firecracker.
  EXPECT_EQ(Sandbox(Facts("firecracker", {"containerd-shim-kata-v2", "systemd"})), "kata");
  EXPECT_EQ(Sandbox(Facts("qemu-system-x86_64", {"containerd-shim-kata-v2"})), "kata");
  EXPECT_EQ(Sandbox(Facts("firecracker", {"bash"})), "microvm");
  EXPECT_EQ(Sandbox(Facts("jailer", {"bash"})), "microvm");
  EXPECT_EQ(Sandbox(Facts("qemu-system-x86_64", {"bash"})), "microvm");
  EXPECT_EQ(Sandbox(Facts("cloud-hypervisor", {"bash"})), "microvm");
  EXPECT_EQ(Sandbox(Facts("firefox", {"firejail", "bash"}, kNsMnt)), "firejail");
  EXPECT_EQ(Sandbox(Facts("nginx", {"containerd-shim-runc-v2", "systemd"}, kNsMnt)), "");
  // Prefix look-alikes are not the sandbox.
  EXPECT_EQ(Sandbox(Facts("x", {"bwrapper"}, kNsMnt)), "");
}

WasmModuleFact Module(std::string path, std::vector<std::string> imports) {
  return WasmModuleFact{std::move(path), std::move(imports)};
}

TEST(Wasm, RuntimesByExecutableLibraryAndModule) {
  auto rules = Builtins();
  auto run = [&](ProcessFacts f) {
    auto m = rules->MatchWasm(f);
    return m ? m->runtime + "|" + m->module : std::string("-");
  };
  EXPECT_EQ(run(Facts("wasmtime")), "wasmtime|");
  EXPECT_EQ(run(Facts("wasmedge")), "wasmedge|");
  EXPECT_EQ(run(Facts("iwasm")), "wamr|");
  EXPECT_EQ(run(Facts("containerd-shim-wasmedge-v1")), "runwasi-wasmedge|");
  EXPECT_EQ(run(Facts("containerd-shim-spin-v2")), "spin|");
  ProcessFacts crun = Facts("crun");
  crun.libraries = {"libc.so.6", "libwasmedge.so.0.0.3"};
  EXPECT_EQ(run(crun), "crun-wasmedge|");
  ProcessFacts embedder = Facts("myhost");
  embedder.libraries = {"libwasmtime.so"};
  EXPECT_EQ(run(embedder), "wasmtime|");
  crun.libraries = {"libc.so.6"};
  EXPECT_EQ(run(crun), "-");

  ProcessFacts node = Facts("node");
  EXPECT_EQ(run(node), "-");  // Node.js alone is no Wasm runtime
  node.wasm_modules = {Module("/srv/handler.wasm", {"wasi_snapshot_preview1"})};
  EXPECT_EQ(run(node), "node-wasi|/srv/handler.wasm");
  node.wasm_modules = {Module("/srv/lib.wasm", {"env"})};
  EXPECT_EQ(run(node), "node|/srv/lib.wasm");
  // Two modules: the runtime is certain, which module served a request is not.
  node.wasm_modules = {Module("/a.wasm", {}), Module("/b.wasm", {})};
  auto m = rules->MatchWasm(node);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->module, "");
  EXPECT_EQ(m->modules, 2u);
  // Any other host that opened a module: named by its executable.
  ProcessFacts py = Facts("python3.11");
  py.wasm_modules = {Module("/x.wasm", {})};
  EXPECT_EQ(run(py), "python3.11|/x.wasm");
}

TEST(UserRules, RunBeforeBuiltinsAndCanReplaceThem) {
  config::LayerRule sb;
  sb.layer = "sandbox";
  sb.name = "nsjail";
  sb.ancestor = "nsjail";
  sb.namespaces = {"mnt", "net"};
  config::LayerRule ct;
  ct.layer = "container";
  ct.name = "garden";
  ct.cgroup = "(?:^|/)garden/(?P<id>[0-9a-f-]{36})(?:/|$)";
  config::LayerRule w;
  w.layer = "wasm";
  w.name = "my-embedder";
  w.executable = "mysrv";
  w.library = "libmywasm\\.so";
  auto rules = RuleSet::Compile({sb, ct, w}, true);
  ASSERT_TRUE(rules.ok()) << rules.status();
  EXPECT_EQ((*rules)->MatchSandbox(Facts("app", {"nsjail"}, kNsMnt | kNsNet)), "nsjail");
  EXPECT_FALSE((*rules)->MatchSandbox(Facts("app", {"nsjail"}, kNsMnt)).has_value());
  auto m = (*rules)->MatchCgroup({"/garden/6f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8"});
  ASSERT_TRUE(m);
  EXPECT_EQ(m->runtime, "garden");
  ProcessFacts f = Facts("mysrv");
  f.libraries = {"libmywasm.so"};
  EXPECT_EQ((*rules)->MatchWasm(f)->runtime, "my-embedder");
  EXPECT_EQ((*rules)->namespaces_needed() & (kNsMnt | kNsNet), kNsMnt | kNsNet);
  // Without the built-ins only the user's table applies.
  auto only = RuleSet::Compile({sb}, false);
  ASSERT_TRUE(only.ok());
  EXPECT_FALSE((*only)->MatchSandbox(Facts("x", {"bwrap"}, kNsMnt)).has_value());
  EXPECT_FALSE((*only)->MatchCgroup({"/docker/" + std::string(64, 'a')}).has_value());
}

TEST(Config, LayersRulesFromYaml) {
  config::Config cfg;
  auto st = config::LoadYamlString(R"(
layers:
  builtin_rules: false
  cache_entries: 100
  rules:
    - layer: sandbox
      name: nsjail
      ancestor: nsjail
      namespaces: [mnt, pid]
    - layer: wasm
      name: wazero-host
      executable: 'my-go-srv'
      wasm_opened: true
    - layer: container
      cgroup: '(?:^|/)mine-(?P<id>[0-9a-f]{12})\.scope$'
    - layer: container
      name: youki
      oci_state: /run/youki
)",
                                   &cfg);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_FALSE(cfg.layer_builtin_rules);
  EXPECT_EQ(cfg.layer_cache_entries, 100u);
  ASSERT_EQ(cfg.layer_rules.size(), 4u);
  EXPECT_EQ(cfg.layer_rules[0].namespaces, std::vector<std::string>({"mnt", "pid"}));
  EXPECT_TRUE(cfg.layer_rules[1].wasm_opened);
  EXPECT_EQ(cfg.layer_rules[3].oci_state, "/run/youki");
  EXPECT_TRUE(RuleSet::Compile(cfg.layer_rules, cfg.layer_builtin_rules).ok());
}

TEST(Config, BadRulesFailNamingTheRule) {
  struct Bad {
    std::string yaml, expect;
  };
  for (const Bad& b : std::vector<Bad>{
           {"layers: {rules: [{layer: vm, name: x, executable: y}]}", "layers.rules[0]: layer 'vm'"},
           {"layers: {rules: [{layer: sandbox, name: x}]}", "needs an executable or an ancestor"},
           {"layers: {rules: [{layer: sandbox, name: x, executable: '('}]}",
            "layers.rules[0].executable: bad regular expression"},
           {"layers: {rules: [{layer: wasm, name: x, executable: y, colour: red}]}",
            "unknown key 'layers.rules[0].colour'"},
           {"layers: {rules: [{layer: sandbox, name: x, ancestor: y, namespaces: [time]}]}",
            "'time' is not one of"},
           {"layers: {rules: [{layer: container, name: x, cgroup: a, oci_state: /b}]}",
            "exactly one of"},
           {"layers: {rules: [{layer: container, oci_state: /b}]}", "needs a name"},
           {"layers: {rules: [{layer: container, name: x, oci_state: relative}]}", "absolute"},
           {"layers: {rules: [{layer: wasm, name: x, cgroup: y}]}", "for container rules"},
           {"layers: {rules: [{layer: wasm, name: x}]}", "needs at least one of"},
           {"layers: {rules: {layer: wasm}}", "must be a list"},
           {"layers: {builtin_rules: maybe}", "true or false"},
       }) {
    config::Config cfg;
    auto st = config::LoadYamlString(b.yaml, &cfg);
    EXPECT_FALSE(st.ok()) << b.yaml;
    EXPECT_NE(std::string(st.message()).find(b.expect), std::string::npos)
        << b.yaml << " → " << st.message();
  }
  config::Config cfg;
  cfg.layer_cache_entries = 0;
  EXPECT_FALSE(config::Validate(cfg).ok());
}

TEST(Validators, Values) {
  EXPECT_TRUE(ValidContainerId(std::string(64, 'a')));
  EXPECT_TRUE(ValidContainerId("web-1_x.y+z"));
  EXPECT_FALSE(ValidContainerId(""));
  EXPECT_FALSE(ValidContainerId(".."));
  EXPECT_FALSE(ValidContainerId("a/b"));
  EXPECT_FALSE(ValidContainerId("a b"));
  EXPECT_FALSE(ValidContainerId(std::string(129, 'a')));
  EXPECT_TRUE(ValidPodUid("6f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8"));
  EXPECT_FALSE(ValidPodUid("6F1C2A3B-4D5E-6F70-8192-A3B4C5D6E7F8"));
  EXPECT_FALSE(ValidPodUid("6f1c2a3b4-d5e-6f70-8192-a3b4c5d6e7f8"));
  EXPECT_TRUE(ValidName("caf\xc3\xa9"));
  EXPECT_FALSE(ValidName("a\nb"));
  EXPECT_FALSE(ValidName("a/b"));
  EXPECT_FALSE(ValidName(std::string(300, 'a')));
}

}  // namespace
}  // namespace isotrace::layers
