#include "daemon/layers/vm.h"

#include <sys/utsname.h>

#include <cstring>
#include <fstream>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace isotrace::layers {

namespace {

std::string ReadSmall(const std::string& path, size_t max = 4096) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::string out(max, '\0');
  in.read(out.data(), static_cast<std::streamsize>(max));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

std::string Trim(std::string s) { return std::string(absl::StripAsciiWhitespace(s)); }

// CPUID hypervisor vendor signatures (leaf 0x40000000, ebx:ecx:edx).
struct Signature {
  std::string_view signature;
  std::string_view hypervisor;
  std::string_view vmm;  // set when the signature names the VMM too
};
constexpr Signature kCpuidSignatures[] = {
    {"KVMKVMKVM", "kvm", ""},
    {"Linux KVM Hv", "kvm", ""},  // KVM's own Hyper-V interface
    {"Microsoft Hv", "hyperv", ""},
    {"XenVMMXenVMM", "xen", ""},
    {"VMwareVMware", "vmware", "vmware"},
    {"TCGTCGTCGTCG", "qemu", "qemu"},  // QEMU without KVM (software emulation)
    {"bhyve bhyve ", "bhyve", "bhyve"},
    {"ACRNACRNACRN", "acrn", "acrn"},
    {" lrpepyh  vr", "parallels", "parallels"},
    {"VBoxVBoxVBox", "virtualbox", "virtualbox"},
    {"QNXQVMBSQG", "qnx", "qnx"},
    {"SRESRESRESRE", "sre", "sre"},
    {"Apple VZ", "apple", "apple-virtualization"},
};

// ACPI OEM IDs of the VMMs that generate their own tables.
struct AcpiOem {
  std::string_view oem_id;  // 6 bytes, as in the header
  std::string_view vmm;
};
constexpr AcpiOem kAcpiOems[] = {
    {"FIRECK", "firecracker"},      // Firecracker (src/vmm/src/acpi: OEM_ID "FIRECK")
    {"BOCHS ", "qemu"},             // QEMU (hw/acpi: ACPI_BUILD_APPNAME6 "BOCHS ")
    {"CLOUDH", "cloud-hypervisor"}, // Cloud Hypervisor
    {"VRTUAL", "hyperv"},           // Hyper-V
};

// DMI fields → VMM or cloud. `field` must equal `value` (after trimming).
struct DmiRule {
  std::string_view field;
  std::string_view value;
  std::string_view vmm;
  std::string_view cloud_provider;
  std::string_view cloud_platform;
};
constexpr DmiRule kDmiRules[] = {
    {"sys_vendor", "Amazon EC2", "", "aws", "aws_ec2"},
    {"bios_vendor", "Amazon EC2", "", "aws", "aws_ec2"},
    {"product_name", "Google Compute Engine", "", "gcp", "gcp_compute_engine"},
    // Azure's published chassis asset tag for its VMs.
    {"chassis_asset_tag", "7783-7084-3265-9085-8269-3286-77", "hyperv", "azure", "azure_vm"},
    {"sys_vendor", "Alibaba Cloud", "", "alibaba_cloud", "alibaba_cloud_ecs"},
    {"product_name", "Alibaba Cloud ECS", "", "alibaba_cloud", "alibaba_cloud_ecs"},
    {"sys_vendor", "QEMU", "qemu", "", ""},
    {"product_name", "KVM", "qemu", "", ""},  // qemu-kvm's SMBIOS default
    {"sys_vendor", "VMware, Inc.", "vmware", "", ""},
    {"sys_vendor", "innotek GmbH", "virtualbox", "", ""},
    {"product_name", "VirtualBox", "virtualbox", "", ""},
    {"sys_vendor", "Xen", "xen", "", ""},
    {"sys_vendor", "Parallels Software International Inc.", "parallels", "", ""},
    {"sys_vendor", "Cloud Hypervisor", "cloud-hypervisor", "", ""},
};

}  // namespace

VmInput ReadVmInput(const std::string& root, bool use_cpuid) {
  VmInput in;
#if defined(__x86_64__) || defined(__i386__)
  if (use_cpuid) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
      in.cpuid_available = true;
      in.cpuid_hypervisor_bit = (c >> 31) & 1;
    }
    // Leaves 0x4000xxxx are defined only under a hypervisor; on bare metal they echo the
    // highest basic leaf, so read them only when the bit says a hypervisor is there.
    auto sig = [](unsigned leaf) {
      unsigned ea = 0, eb = 0, ec = 0, ed = 0;
      __cpuid(leaf, ea, eb, ec, ed);
      char s[13] = {};
      std::memcpy(s, &eb, 4);
      std::memcpy(s + 4, &ec, 4);
      std::memcpy(s + 8, &ed, 4);
      return std::string(s, strnlen(s, 12));
    };
    if (in.cpuid_hypervisor_bit) {
      in.cpuid_signature = sig(0x40000000);
      if (in.cpuid_signature == "Microsoft Hv") in.cpuid_signature2 = sig(0x40000100);
    }
  }
#else
  (void)use_cpuid;
#endif
  std::string cpuinfo = ReadSmall(root + "/proc/cpuinfo", 1 << 16);
  for (absl::string_view line : absl::StrSplit(cpuinfo, '\n')) {
    if (!absl::StartsWith(line, "flags")) continue;
    for (absl::string_view f : absl::StrSplit(line, ' '))
      if (f == "hypervisor") in.cpuinfo_hypervisor_flag = true;
    break;
  }
  static const char* kDmi[] = {"sys_vendor",    "product_name", "product_version", "bios_vendor",
                                "bios_version",  "board_vendor", "board_name",      "chassis_vendor",
                                "chassis_asset_tag"};
  for (const char* f : kDmi) {
    std::string v = Trim(ReadSmall(root + "/sys/class/dmi/id/" + f, 256));
    if (!v.empty()) {
      in.dmi[f] = v;
      in.dmi_present = true;
    }
  }
  in.sys_hypervisor_type = Trim(ReadSmall(root + "/sys/hypervisor/type", 64));
  for (const char* t : {"DSDT", "FACP"}) {
    std::string hdr = ReadSmall(root + "/sys/firmware/acpi/tables/" + t, 36);
    if (hdr.size() >= 24) {
      in.acpi_oem_id = hdr.substr(10, 6);
      in.acpi_oem_table_id = hdr.substr(16, 8);
      break;
    }
  }
  if (root.empty()) {
    utsname u{};
    if (uname(&u) == 0) in.kernel_release = u.release;
  } else {
    in.kernel_release = Trim(ReadSmall(root + "/proc/sys/kernel/osrelease", 256));
  }
  return in;
}

VmInfo DetectVm(const VmInput& in) {
  VmInfo vm;
  auto note = [&](std::string s) { vm.evidence.push_back(std::move(s)); };

  if (in.cpuid_available && in.cpuid_hypervisor_bit) {
    vm.guest = true;
    note("CPUID hypervisor bit set");
    std::string_view sig = in.cpuid_signature;
    // KVM and Xen put a Hyper-V-compatible interface at 0x40000000 for Windows guests and
    // their own signature at 0x40000100.
    if (sig == "Microsoft Hv" && !in.cpuid_signature2.empty()) {
      for (const auto& s : kCpuidSignatures)
        if (s.signature == in.cpuid_signature2 && s.hypervisor != "hyperv") sig = s.signature;
    }
    for (const auto& s : kCpuidSignatures) {
      if (s.signature != sig) continue;
      vm.hypervisor = std::string(s.hypervisor);
      vm.vmm = std::string(s.vmm);
      note(absl::StrCat("CPUID leaf 0x40000000 signature '", std::string(sig), "' → ",
                        std::string(s.hypervisor)));
    }
    if (vm.hypervisor.empty())
      note(absl::StrCat("CPUID signature '", in.cpuid_signature, "' is not in the table"));
  } else if (in.cpuid_available) {
    note("CPUID hypervisor bit clear");
  } else if (in.cpuinfo_hypervisor_flag) {
    vm.guest = true;
    note("/proc/cpuinfo flags include 'hypervisor'");
  }
  if (!in.sys_hypervisor_type.empty()) {
    vm.guest = true;
    note(absl::StrCat("/sys/hypervisor/type '", in.sys_hypervisor_type, "'"));
    if (in.sys_hypervisor_type == "xen" && vm.hypervisor.empty()) vm.hypervisor = "xen";
  }

  if (!in.acpi_oem_id.empty()) {
    bool known = false;
    for (const auto& o : kAcpiOems) {
      if (o.oem_id != in.acpi_oem_id) continue;
      known = true;
      vm.vmm = std::string(o.vmm);
      vm.guest = true;
      note(absl::StrCat("ACPI OEM ID '", in.acpi_oem_id, "' (table id '",
                        std::string(absl::StripTrailingAsciiWhitespace(in.acpi_oem_table_id)),
                        "') → ", std::string(o.vmm)));
    }
    if (!known) note(absl::StrCat("ACPI OEM ID '", in.acpi_oem_id, "' names no known VMM"));
  }

  if (!in.dmi_present) {
    note("no DMI/SMBIOS tables");
  } else {
    auto get = [&](const char* f) {
      auto it = in.dmi.find(f);
      return it == in.dmi.end() ? std::string() : it->second;
    };
    for (const auto& r : kDmiRules) {
      if (get(std::string(r.field).c_str()) != r.value) continue;
      if (!r.vmm.empty() && (vm.vmm.empty() || vm.vmm == r.vmm)) {
        vm.vmm = std::string(r.vmm);
        vm.guest = true;
      }
      if (!r.cloud_provider.empty() && vm.cloud_provider.empty()) {
        vm.cloud_provider = std::string(r.cloud_provider);
        vm.cloud_platform = std::string(r.cloud_platform);
      }
      if (!r.vmm.empty() || !r.cloud_provider.empty())
        note(absl::StrCat("DMI ", std::string(r.field), " '", std::string(r.value), "'"));
    }
    // Hyper-V (and Azure) present as Microsoft Corporation / Virtual Machine.
    if (get("sys_vendor") == "Microsoft Corporation" && get("product_name") == "Virtual Machine") {
      vm.guest = true;
      if (vm.vmm.empty() && (vm.hypervisor.empty() || vm.hypervisor == "hyperv")) vm.vmm = "hyperv";
      note("DMI 'Microsoft Corporation' 'Virtual Machine'");
    }
  }
  if (!in.kernel_release.empty())
    note(absl::StrCat("kernel release '", in.kernel_release, "' (recorded, not used)"));
  if (!vm.guest) {
    vm.hypervisor.clear();
    vm.vmm.clear();
  }
  return vm;
}

}  // namespace isotrace::layers
