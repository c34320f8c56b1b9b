// libFuzzer target: the WebAssembly import-section reader, fed whatever file a workload
// opened with a .wasm name. Every LEB128 length is attacker-chosen.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "daemon/layers/wasm_module.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)isotrace::layers::WasmImportModules(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
