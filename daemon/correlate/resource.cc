#include "daemon/correlate/resource.h"

#include <variant>

#include "exporters/otlp/semconv.h"

namespace isotrace::correlate {

const std::string* StringAttr(const std::vector<Attribute>& attrs, std::string_view key) {
  for (const auto& a : attrs)
    if (a.key == key)
      if (const auto* s = std::get_if<std::string>(&a.value)) return s;
  return nullptr;
}

std::string ServiceName(const Resource& r) { return std::string(ServiceNameView(r)); }

std::string_view ServiceNameView(const Resource& r) {
  const std::string* s = StringAttr(r.attributes, otlp::semconv::kServiceName);
  return s ? std::string_view(*s) : std::string_view("unknown");
}

}  // namespace isotrace::correlate
