// libFuzzer target: the YAML configuration file (--config) and the checks after it. A
// bad file must come back as an InvalidArgument status (the daemon exits 2 with the
// message), never an exception, a crash or a hang.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "daemon/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace isotrace::config;
  Config cfg;
  const absl::Status st = LoadYamlString(std::string(reinterpret_cast<const char*>(data), size), &cfg);
  if (!st.ok()) {
    if (st.code() != absl::StatusCode::kInvalidArgument || st.message().empty()) std::abort();
    return 0;
  }
  (void)Validate(cfg);
  return 0;
}
