#include "daemon/util/errno.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace isotrace::util {

absl::Status Errno(int err, std::string_view what) {
  const int e = err < 0 ? -err : err;
  std::string msg = absl::StrCat(std::string(what), ": ", std::string(std::strerror(e)));
  if (e == EPERM || e == EACCES)
    return absl::PermissionDeniedError(absl::StrCat(
        msg, " — run as root, or grant CAP_BPF, CAP_PERFMON (and CAP_SYS_RESOURCE on kernels "
             "before 5.11) to isotraced"));
  return absl::InternalError(msg);
}

}  // namespace isotrace::util
