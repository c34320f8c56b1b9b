#pragma once
// The vm layer: is this node a guest, and of what? Decided from evidence the hypervisor
// and the VMM cannot help leaving behind, each with its own table:
//   - CPUID: the hypervisor-present bit (leaf 1, ECX[31]) and the vendor signature of
//     leaf 0x40000000 (and 0x40000100, where KVM/Xen sit when they also expose a
//     Hyper-V-compatible interface at 0x40000000) → the hypervisor (kvm, xen, hyperv, ...).
//   - ACPI table headers (OEM ID): the VMM that built the tables (Firecracker writes
//     "FIRECK", QEMU "BOCHS ", Cloud Hypervisor "CLOUDH", Hyper-V "VRTUAL").
//   - DMI/SMBIOS (/sys/class/dmi/id): VMM and cloud (Amazon EC2, Google Compute Engine,
//     Azure, Alibaba Cloud, QEMU, VMware, VirtualBox).
//   - /sys/hypervisor/type (Xen without CPUID, e.g. PV or arm64), /proc/cpuinfo flags.
// The kernel release is recorded, never used: "-fc-" in a release string may as well be
// a Fedora tag. What no table knows stays unnamed.

#include <map>
#include <string>
#include <vector>

namespace isotrace::layers {

struct VmInput {
  bool cpuid_available = false;    // x86: CPUID was executed
  bool cpuid_hypervisor_bit = false;
  std::string cpuid_signature;     // leaf 0x40000000 ebx,ecx,edx (NULs stripped)
  std::string cpuid_signature2;    // leaf 0x40000100, read only behind "Microsoft Hv"
  bool cpuinfo_hypervisor_flag = false;
  bool dmi_present = false;
  std::map<std::string, std::string> dmi;  // sys_vendor, product_name, bios_vendor, ...
  std::string sys_hypervisor_type;         // /sys/hypervisor/type
  std::string acpi_oem_id;                 // DSDT (else FACP) header OEM ID, trailing spaces kept
  std::string acpi_oem_table_id;
  std::string kernel_release;              // recorded only
};

struct VmInfo {
  bool guest = false;
  std::string hypervisor;      // kvm, xen, hyperv, vmware, qemu (TCG), bhyve, virtualbox, ...
  std::string vmm;             // firecracker, qemu, cloud-hypervisor, hyperv, vmware, ...
  std::string cloud_provider;  // OpenTelemetry cloud.provider (aws, gcp, azure, alibaba_cloud)
  std::string cloud_platform;  // OpenTelemetry cloud.platform
  std::vector<std::string> evidence;  // what decided, in words (logged at start-up)
  // The stack token's kind: the VMM when known (it is what a user provisions), else the
  // hypervisor; empty for a guest nothing names.
  std::string Kind() const { return !vmm.empty() ? vmm : hypervisor; }
};

// Reads the evidence. `root` prefixes /sys and /proc (tests point it at a fixture tree);
// CPUID is executed only when `use_cpuid` (it describes the real machine, not a fixture).
VmInput ReadVmInput(const std::string& root = "", bool use_cpuid = true);
VmInfo DetectVm(const VmInput& in);

}  // namespace isotrace::layers
