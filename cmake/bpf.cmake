# One helper for every BPF program: clang -target bpf (CO-RE, with BTF) → .bpf.o →
# `bpftool gen skeleton` → <name>.skel.h in the build tree.
find_program(BPF_CLANG NAMES clang-14 clang REQUIRED)
find_program(BPFTOOL NAMES bpftool REQUIRED)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|amd64")
  set(BPF_TARGET_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(BPF_TARGET_ARCH arm64)
else()
  set(BPF_TARGET_ARCH ${CMAKE_SYSTEM_PROCESSOR})
endif()

# vmlinux.h: vendored per architecture (bpf/vmlinux/<arch>/vmlinux.h, generated from
# Debian 12's 6.1 kernel by scripts/kernels/gen_vmlinux.py; why that kernel:
# bpf/core_fixes.bpf.h), so that any build host builds the same objects. CO-RE relocates
# every field access at load time, so the result runs on any kernel with BTF.
# -DISOTRACE_VMLINUX_FROM_HOST=ON generates it from ISOTRACE_VMLINUX_BTF instead (an
# architecture not vendored yet, or a check against the newest kernel's types).
option(ISOTRACE_VMLINUX_FROM_HOST "Generate vmlinux.h from ISOTRACE_VMLINUX_BTF instead of the vendored one" OFF)
set(ISOTRACE_VMLINUX_BTF "/sys/kernel/btf/vmlinux" CACHE FILEPATH "BTF used to generate vmlinux.h (ISOTRACE_VMLINUX_FROM_HOST=ON)")
set(BPF_GEN_DIR ${CMAKE_BINARY_DIR}/bpf)
file(MAKE_DIRECTORY ${BPF_GEN_DIR})
if(ISOTRACE_VMLINUX_FROM_HOST)
  if(NOT EXISTS ${ISOTRACE_VMLINUX_BTF})
    message(FATAL_ERROR "No kernel BTF at ${ISOTRACE_VMLINUX_BTF}: set -DISOTRACE_VMLINUX_BTF=<file> "
                        "to a vmlinux with BTF (CONFIG_DEBUG_INFO_BTF=y)")
  endif()
  set(BPF_VMLINUX_DIR ${BPF_GEN_DIR}/vmlinux)
  file(MAKE_DIRECTORY ${BPF_VMLINUX_DIR})
  add_custom_command(
    OUTPUT ${BPF_VMLINUX_DIR}/vmlinux.h
    COMMAND ${BPFTOOL} btf dump file ${ISOTRACE_VMLINUX_BTF} format c > ${BPF_VMLINUX_DIR}/vmlinux.h
    COMMENT "Generating vmlinux.h from ${ISOTRACE_VMLINUX_BTF}"
    VERBATIM)
else()
  set(BPF_VMLINUX_DIR ${CMAKE_SOURCE_DIR}/bpf/vmlinux/${BPF_TARGET_ARCH})
  if(NOT EXISTS ${BPF_VMLINUX_DIR}/vmlinux.h)
    message(FATAL_ERROR "No vendored vmlinux.h for ${BPF_TARGET_ARCH} (${BPF_VMLINUX_DIR}): "
                        "add one with scripts/kernels/gen_vmlinux.py (docs/kernels.md), or "
                        "configure with -DISOTRACE_VMLINUX_FROM_HOST=ON")
  endif()
endif()
add_custom_target(vmlinux_h DEPENDS ${BPF_VMLINUX_DIR}/vmlinux.h)

# bpf_program(<name>) compiles bpf/<name>.bpf.c into <build>/bpf/<name>.skel.h and
# defines the interface target bpf_<name> that carries the include path.
function(bpf_program name)
  set(src ${CMAKE_SOURCE_DIR}/bpf/${name}.bpf.c)
  set(obj ${BPF_GEN_DIR}/${name}.bpf.o)
  set(skel ${BPF_GEN_DIR}/${name}.skel.h)
  file(GLOB bpf_headers ${CMAKE_SOURCE_DIR}/bpf/*.h)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${BPF_TARGET_ARCH}
            -I${BPF_VMLINUX_DIR} -I${CMAKE_SOURCE_DIR}/bpf -Wall -Wno-unused-function
            -c ${src} -o ${obj}
    DEPENDS ${src} ${bpf_headers} ${BPF_VMLINUX_DIR}/vmlinux.h
    COMMENT "BPF ${name}.bpf.c"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}
    DEPENDS ${obj}
    COMMENT "Skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(bpf_${name}_skel DEPENDS ${skel})
  # vmlinux.h is a custom-command output of the top directory, used here from bpf/: the
  # Makefile generator only knows how to make it through the target that owns it.
  add_dependencies(bpf_${name}_skel vmlinux_h)
  add_library(bpf_${name} INTERFACE)
  add_dependencies(bpf_${name} bpf_${name}_skel)
  target_include_directories(bpf_${name} INTERFACE ${BPF_GEN_DIR} ${CMAKE_SOURCE_DIR}/bpf)
  target_link_libraries(bpf_${name} INTERFACE PkgConfig::LIBBPF PkgConfig::LIBELF z)
endfunction()
