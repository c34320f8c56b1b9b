// Linked into every test and fuzzer of the sanitizer tree (tests/CMakeLists.txt): the
// sanitizers read these at start-up, so a binary run by hand behaves as under CTest.
// ASAN_OPTIONS / UBSAN_OPTIONS / LSAN_OPTIONS in the environment still override them.

extern "C" {

const char* __asan_default_options() {
  return "detect_leaks=1:abort_on_error=1:strict_string_checks=1:"
         "detect_stack_use_after_return=1:check_initialization_order=1";
}

const char* __ubsan_default_options() { return "print_stacktrace=1:halt_on_error=1"; }

// Process-lifetime allocations of libraries we link but do not build (uninstrumented,
// so their frees are invisible): gRPC's and protobuf's global singletons.
const char* __lsan_default_suppressions() {
  return "leak:libgrpc\n"
         "leak:libgpr\n"
         "leak:libabsl\n"
         "leak:libprotobuf\n";
}

}  // extern "C"
