# Thin wrapper: every target is one step a person would type.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# make fuzz: seconds per fuzzer (make test runs each for ISOTRACE_FUZZ_SECONDS, 20 s).
FUZZ_SECONDS ?= 300

.PHONY: deps deps-test build build-all run test test-kernels bench fuzz clean

# What building and running need; the tests' servers, runtimes and libraries come with
# deps-test (scripts/install-deps.sh run|test).
deps:
	bash scripts/install-deps.sh run

deps-test:
	bash scripts/install-deps.sh test

# The two binaries (no tests, no benchmarks: their libraries are test-only packages).
build: deps
	cmake -S . -B $(BUILD) -G Ninja -DISOTRACE_BUILD_TESTS=OFF -DISOTRACE_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

build-all: deps-test
	cmake -S . -B $(BUILD) -G Ninja -DISOTRACE_BUILD_TESTS=ON -DISOTRACE_BUILD_BENCH=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# Embedded mode: no collector needed.
run: build
	bash scripts/run-embedded.sh $(BUILD)

# The normal tree (unit, BPF, end-to-end) and the sanitizer tree (unit under ASan+UBSan,
# fuzzers): scripts/run-tests.sh.
test: build-all
	bash scripts/run-tests.sh $(BUILD)

# The BPF and probe e2e tests on other kernels in QEMU guests (docs/kernels.md); also
# part of `make test`.
test-kernels: build-all
	ctest --test-dir $(BUILD) -L kernels --output-on-failure

bench: build-all
	bash bench/run.sh $(BUILD)

# Every fuzzer for FUZZ_SECONDS in the sanitizer tree (build-asan/).
fuzz: deps-test
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

clean:
	rm -rf $(BUILD) build-asan
