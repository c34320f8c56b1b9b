# Thin wrapper: every target is one step a person would type.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps build run test test-kernels bench clean

deps:
	bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# Embedded mode: no collector needed.
run: build
	bash scripts/run-embedded.sh $(BUILD)

test: build
	bash scripts/run-tests.sh $(BUILD)

# The BPF and probe e2e tests on other kernels in QEMU guests (docs/kernels.md); also
# part of `make test`.
test-kernels: build
	ctest --test-dir $(BUILD) -L kernels --output-on-failure

bench: build
	bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
