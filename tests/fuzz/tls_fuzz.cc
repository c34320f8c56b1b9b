// libFuzzer target: the ServerHello version reader (correlate/tls.h) on arbitrary bytes,
// which come from the wire. It must stay inside the bytes and answer one of the known
// versions or nothing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "daemon/correlate/tls.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view v = isotrace::correlate::TlsVersionFromServerHello(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (!v.empty() && v != "1.0" && v != "1.1" && v != "1.2" && v != "1.3") std::abort();
  return 0;
}
