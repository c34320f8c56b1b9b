// libFuzzer target: W3C traceparent, straight from request headers on the wire.
// Properties besides memory safety: what parses formats back to the trimmed input (the
// parser accepts exactly one spelling), and a parsed context has non-zero ids.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "daemon/correlate/traceparent.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace isotrace::correlate;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto ctx = ParseTraceparent(in);
  if (!ctx) return 0;
  while (!in.empty() && (in.front() == ' ' || in.front() == '\t')) in.remove_prefix(1);
  while (!in.empty() && (in.back() == ' ' || in.back() == '\t')) in.remove_suffix(1);
  if (FormatTraceparent(ctx->trace_id, ctx->parent_id, ctx->flags) != in) std::abort();
  if (ctx->trace_id == TraceId{} || ctx->parent_id == SpanId{}) std::abort();
  return 0;
}
