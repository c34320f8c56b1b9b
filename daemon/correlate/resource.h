#pragma once
// Reading a resource's attributes: the one lookup every consumer (span store, metrics,
// locate, the local API) uses, so the fallback for a process without a name is the
// same everywhere.

#include <string>
#include <string_view>
#include <vector>

#include "daemon/correlate/span.h"

namespace isotrace::correlate {

// The string value of `key`, null when absent or not a string.
const std::string* StringAttr(const std::vector<Attribute>& attrs, std::string_view key);

// service.name, "unknown" when the resource has none (daemon/layers always sets one).
std::string ServiceName(const Resource& r);
// The same, without a copy: valid while `r` lives.
std::string_view ServiceNameView(const Resource& r);

}  // namespace isotrace::correlate
