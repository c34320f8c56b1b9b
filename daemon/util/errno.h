#pragma once
// One way to turn a libbpf or syscall error into a Status, for every probe: libbpf
// returns -errno, syscalls set errno; both arrive here as `err` of either sign.

#include <string_view>

#include "absl/status/status.h"

namespace isotrace::util {

// "<what>: <strerror>"; EPERM/EACCES become PermissionDenied and say which privileges
// isotraced needs, anything else Internal.
absl::Status Errno(int err, std::string_view what);

}  // namespace isotrace::util
