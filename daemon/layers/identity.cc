#include "daemon/layers/identity.h"

#include "exporters/otlp/semconv.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/layers/proc_reader.h"

namespace isotrace::layers {

namespace {
std::string Token(std::string_view layer, const std::string& kind) {
  return kind.empty() ? std::string(layer) : absl::StrCat(std::string(layer), ":", kind);
}
}  // namespace

std::string AbbreviateStack(std::string_view stack) {
  std::string out;
  while (!stack.empty()) {
    size_t slash = stack.find('/');
    std::string_view part = stack.substr(0, slash);
    stack = slash == std::string_view::npos ? std::string_view() : stack.substr(slash + 1);
    if (part.empty()) continue;
    if (size_t colon = part.find(':'); colon != std::string_view::npos && colon + 1 < part.size())
      part = part.substr(colon + 1);
    if (!out.empty()) out += '/';
    out.append(part);
  }
  return out;
}

std::string StackOf(const Identity& id, const VmInfo& vm) {
  std::vector<std::string> parts;
  if (vm.guest) parts.push_back(Token("vm", vm.Kind()));
  if (id.has_container()) parts.push_back(Token("container", id.container_kind));
  if (!id.sandbox.empty()) parts.push_back(Token("sandbox", id.sandbox));
  if (!id.wasm_runtime.empty()) parts.push_back(Token("wasm", id.wasm_runtime));
  return absl::StrJoin(parts, "/");
}

std::string ServiceNameOf(const Identity& id) {
  if (!id.otel_service_name.empty()) return id.otel_service_name;
  if (!id.k8s_container.empty()) return id.k8s_container;
  if (!id.container_name.empty()) return id.container_name;
  if (!id.wasm_module.empty()) {
    std::string name = Basename(id.wasm_module);
    if (absl::EndsWith(name, ".wasm")) name.resize(name.size() - 5);
    if (!name.empty()) return name;
  }
  return id.executable_name;
}

namespace semconv = otlp::semconv;

std::shared_ptr<const correlate::Resource> BuildResource(const Identity& id,
                                                         const ResourceContext& ctx) {
  auto res = std::make_shared<correlate::Resource>();
  auto& a = res->attributes;
  auto put = [&](std::string_view key, const std::string& v) {
    if (!v.empty()) a.push_back({std::string(key), v});
  };
  a.push_back({std::string(semconv::kServiceName), ServiceNameOf(id)});
  a.push_back({std::string(semconv::kHostName), ctx.host_name});
  a.push_back({std::string(semconv::kProcessPid), static_cast<int64_t>(id.pid)});
  a.push_back({std::string(semconv::kProcessExecutableName), id.executable_name});
  put(semconv::kProcessExecutablePath, id.executable_path);
  put(semconv::kProcessCommandLine, id.command_line);
  put(semconv::kContainerId, id.container_id);
  if (!id.container_id.empty() || !id.container_name.empty())
    put(semconv::kContainerRuntime, id.container_runtime);
  put(semconv::kContainerName, id.container_name);
  put(semconv::kK8sPodUid, id.pod_uid);
  put(semconv::kK8sPodName, id.pod_name);
  put(semconv::kK8sNamespaceName, id.pod_namespace);
  put(semconv::kK8sContainerName, id.k8s_container);
  put(semconv::kK8sQosClass, id.qos);
  put(semconv::kSystemdUnit, id.systemd_unit);
  put(semconv::kSandboxKind, id.sandbox);
  put(semconv::kWasmRuntime, id.wasm_runtime);
  put(semconv::kWasmModule, id.wasm_module);
  if (id.wasm_modules > 1)
    a.push_back({std::string(semconv::kWasmModuleCount), static_cast<int64_t>(id.wasm_modules)});
  if (ctx.vm && ctx.vm->guest) {
    put(semconv::kVmHypervisor, ctx.vm->hypervisor);
    put(semconv::kVmVmm, ctx.vm->vmm);
  }
  if (ctx.vm) {
    put(semconv::kCloudProvider, ctx.vm->cloud_provider);
    put(semconv::kCloudPlatform, ctx.vm->cloud_platform);
  }
  static const VmInfo kNoVm;
  put(semconv::kStack, StackOf(id, ctx.vm ? *ctx.vm : kNoVm));
  if (ctx.common) {
    // OTEL_RESOURCE_ATTRIBUTES adds what isotrace does not know; what it measured wins,
    // and service.name stays per process.
    for (const auto& c : *ctx.common) {
      if (c.key == semconv::kServiceName) continue;
      bool present = false;
      for (const auto& e : a) present |= e.key == c.key;
      if (!present) a.push_back(c);
    }
  }
  return res;
}

}  // namespace isotrace::layers
