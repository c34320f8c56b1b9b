#include "daemon/correlate/resource.h"

#include <variant>

namespace isotrace::correlate {

const std::string* StringAttr(const std::vector<Attribute>& attrs, std::string_view key) {
  for (const auto& a : attrs)
    if (a.key == key)
      if (const auto* s = std::get_if<std::string>(&a.value)) return s;
  return nullptr;
}

std::string ServiceName(const Resource& r) { return std::string(ServiceNameOf(&r)); }

}  // namespace isotrace::correlate
