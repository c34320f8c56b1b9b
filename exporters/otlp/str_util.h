#pragma once
// Small string helpers for this module. Debian's abseil is built with its own
// absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), so absl::StrCat, StrSplit,
// SimpleAtoi, ... do not take std::string_view; these do, and keep the module on std types.

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/string_view.h"
#include "daemon/util/ascii.h"

namespace isotrace::otlp::str {

inline std::string_view Std(absl::string_view s) { return {s.data(), s.size()}; }

namespace internal {
inline void Append(std::string& out, std::string_view s) { out.append(s); }
inline void Append(std::string& out, const char* s) { out.append(s); }
inline void Append(std::string& out, const std::string& s) { out.append(s); }
inline void Append(std::string& out, absl::string_view s) { out.append(s.data(), s.size()); }
inline void Append(std::string& out, char c) { out.push_back(c); }
template <typename T>
requires std::is_integral_v<T> &&
    (!std::is_same_v<T, char>)&&(!std::is_same_v<T, bool>)void Append(std::string& out, T v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, end);
}
}  // namespace internal

// Concatenates strings (any of std/absl string_view, std::string, const char*, char)
// and integers.
template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (internal::Append(out, args), ...);
  return out;
}

// Case folding and trimming: the one ASCII helper set of the project.
using ::isotrace::util::EqualsIgnoreCase;
using ::isotrace::util::IsSpace;
using ::isotrace::util::Lower;
using ::isotrace::util::ToLower;
using ::isotrace::util::ToUpper;
using ::isotrace::util::Trim;
using ::isotrace::util::Upper;

// Whole-string decimal integer; nullopt on junk, sign where T is unsigned, or overflow.
template <typename T>
std::optional<T> ParseInt(std::string_view s) {
  T v{};
  if (s.empty()) return std::nullopt;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace isotrace::otlp::str
