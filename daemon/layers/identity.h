#pragma once
// One process's place in the isolation stack, and the OTLP resource made from it.
// Plain data + pure functions: the resolver fills an Identity, BuildResource turns it
// into attributes (OpenTelemetry semantic conventions where they exist, isotrace.*
// otherwise), and the stack string lists the layers outermost first.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/correlate/span.h"
#include "daemon/layers/rules.h"
#include "daemon/layers/vm.h"

namespace isotrace::layers {

struct Identity {
  uint32_t pid = 0;
  std::string comm;
  bool exited = false;  // /proc/<pid> was gone: only comm, cgroup id and probe facts known
  std::string executable_name;  // basename of /proc/<pid>/exe, else comm
  std::string executable_path;
  std::string command_line;
  std::string otel_service_name;
  ProcessFacts facts;  // kept so probe facts (a .wasm open) re-match without /proc

  // container layer (present when any of id, name, unit, pod uid is known)
  std::string container_kind;  // the stack token's kind: runtime, "systemd", or empty
  std::string container_runtime;
  std::string container_id;
  std::string container_name;
  std::string pod_uid, pod_name, pod_namespace, k8s_container, qos;
  std::string systemd_unit;
  // sandbox layer
  std::string sandbox;
  // wasm layer
  std::string wasm_runtime;
  std::string wasm_module;
  size_t wasm_modules = 0;

  bool has_container() const {
    return !container_id.empty() || !container_name.empty() || !systemd_unit.empty() ||
           !pod_uid.empty();
  }
};

// "vm:firecracker/container:runc/sandbox:bwrap/wasm:node-wasi"; a layer whose kind is
// unknown appears bare ("container"). Empty when no layer is known.
std::string StackOf(const Identity& id, const VmInfo& vm);

// "vm:kvm/container:runc/sandbox:bwrap/wasm:node-wasi" → "kvm/runc/bwrap/node-wasi" for
// narrow columns (isotrace top): the kinds are implied by their order, the names are
// what a person scans for.
std::string AbbreviateStack(std::string_view stack);

// service.name, best first: OTEL_SERVICE_NAME, k8s container name, container name from
// runtime metadata, Wasm module name (file name without .wasm), executable name.
std::string ServiceNameOf(const Identity& id);

struct ResourceContext {
  std::string host_name;
  const VmInfo* vm = nullptr;
  const std::vector<correlate::Attribute>* common = nullptr;  // OTEL_RESOURCE_ATTRIBUTES
};
std::shared_ptr<const correlate::Resource> BuildResource(const Identity& id,
                                                         const ResourceContext& ctx);

}  // namespace isotrace::layers
