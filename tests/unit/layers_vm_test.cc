// The vm layer from evidence: this build machine (Firecracker on KVM, no DMI), other
// hypervisors, clouds, bare metal — and ReadVmInput against a fixture sysfs tree.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "daemon/layers/vm.h"
#include "gtest/gtest.h"

namespace isotrace::layers {
namespace {

VmInput Cpuid(std::string sig) {
  VmInput in;
  in.cpuid_available = true;
  in.cpuid_hypervisor_bit = true;
  in.cpuid_signature = std::move(sig);
  return in;
}

TEST(Vm, ThisBuildMachineFirecrackerOnKvm) {
  // What this machine shows: CPUID "KVMKVMKVM", ACPI tables by Firecracker ("FIRECK",
  // "FCVMDSDT"), no DMI at all, and a kernel release with "-fc-" that decides nothing.
  VmInput in = Cpuid("KVMKVMKVM");
  in.acpi_oem_id = "FIRECK";
  in.acpi_oem_table_id = "FCVMDSDT";
  in.kernel_release = "6.18.44-fc-v509";
  VmInfo vm = DetectVm(in);
  EXPECT_TRUE(vm.guest);
  EXPECT_EQ(vm.hypervisor, "kvm");
  EXPECT_EQ(vm.vmm, "firecracker");
  EXPECT_EQ(vm.Kind(), "firecracker");
  EXPECT_EQ(vm.cloud_provider, "");
}

TEST(Vm, KernelNameAloneDecidesNothing) {
  VmInput in;
  in.cpuid_available = true;  // bit clear: bare metal
  in.kernel_release = "6.18.44-fc-v509";
  VmInfo vm = DetectVm(in);
  EXPECT_FALSE(vm.guest);
  EXPECT_EQ(vm.Kind(), "");
}

TEST(Vm, QemuKvmAndTcg) {
  VmInput in = Cpuid("KVMKVMKVM");
  in.acpi_oem_id = "BOCHS ";
  in.dmi_present = true;
  in.dmi["sys_vendor"] = "QEMU";
  in.dmi["product_name"] = "Standard PC (Q35 + ICH9, 2009)";
  VmInfo vm = DetectVm(in);
  EXPECT_EQ(vm.hypervisor, "kvm");
  EXPECT_EQ(vm.vmm, "qemu");
  VmInfo tcg = DetectVm(Cpuid("TCGTCGTCGTCG"));
  EXPECT_EQ(tcg.hypervisor, "qemu");
  EXPECT_EQ(tcg.Kind(), "qemu");
}

TEST(Vm, KvmWithHyperVEnlightenments) {
  VmInput in = Cpuid("Microsoft Hv");
  in.cpuid_signature2 = "KVMKVMKVM";
  EXPECT_EQ(DetectVm(in).hypervisor, "kvm");
  VmInput hv = Cpuid("Microsoft Hv");
  hv.dmi_present = true;
  hv.dmi["sys_vendor"] = "Microsoft Corporation";
  hv.dmi["product_name"] = "Virtual Machine";
  VmInfo vm = DetectVm(hv);
  EXPECT_EQ(vm.hypervisor, "hyperv");
  EXPECT_EQ(vm.vmm, "hyperv");
  EXPECT_EQ(vm.cloud_provider, "");
  hv.dmi["chassis_asset_tag"] = "7783-7084-3265-9085-8269-3286-77";
  vm = DetectVm(hv);
  EXPECT_EQ(vm.cloud_provider, "azure");
  EXPECT_EQ(vm.cloud_platform, "azure_vm");
}

TEST(Vm, Clouds) {
  VmInput ec2 = Cpuid("KVMKVMKVM");
  ec2.dmi_present = true;
  ec2.dmi["sys_vendor"] = "Amazon EC2";
  ec2.dmi["product_name"] = "m6i.large";
  VmInfo vm = DetectVm(ec2);
  EXPECT_EQ(vm.hypervisor, "kvm");
  EXPECT_EQ(vm.cloud_provider, "aws");
  EXPECT_EQ(vm.cloud_platform, "aws_ec2");
  EXPECT_EQ(vm.Kind(), "kvm");  // EC2 is the cloud; which VMM it runs is not in DMI

  VmInput gce = Cpuid("KVMKVMKVM");
  gce.dmi_present = true;
  gce.dmi["sys_vendor"] = "Google";
  gce.dmi["product_name"] = "Google Compute Engine";
  EXPECT_EQ(DetectVm(gce).cloud_provider, "gcp");

  // A bare-metal cloud instance: a cloud, no VM.
  VmInput metal;
  metal.cpuid_available = true;
  metal.dmi_present = true;
  metal.dmi["sys_vendor"] = "Amazon EC2";
  vm = DetectVm(metal);
  EXPECT_FALSE(vm.guest);
  EXPECT_EQ(vm.cloud_provider, "aws");
}

TEST(Vm, XenVmwareAndUnknown) {
  VmInput xen;  // PV guest or arm64: no CPUID
  xen.sys_hypervisor_type = "xen";
  VmInfo vm = DetectVm(xen);
  EXPECT_TRUE(vm.guest);
  EXPECT_EQ(vm.hypervisor, "xen");
  VmInput vmw = Cpuid("VMwareVMware");
  vmw.dmi_present = true;
  vmw.dmi["sys_vendor"] = "VMware, Inc.";
  EXPECT_EQ(DetectVm(vmw).Kind(), "vmware");
  // A hypervisor nothing here knows: a guest, unnamed.
  VmInfo unknown = DetectVm(Cpuid("NovelHypervX"));
  EXPECT_TRUE(unknown.guest);
  EXPECT_EQ(unknown.Kind(), "");
  // No CPUID (non-x86) but the cpuinfo flag.
  VmInput flag;
  flag.cpuinfo_hypervisor_flag = true;
  EXPECT_TRUE(DetectVm(flag).guest);
  // An unknown ACPI OEM says nothing.
  VmInput metal;
  metal.cpuid_available = true;
  metal.acpi_oem_id = "ALASKA";
  EXPECT_FALSE(DetectVm(metal).guest);
}

void Write(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

TEST(Vm, ReadsAFixtureTree) {
  std::string root = ::testing::TempDir() + "/vmroot-" + std::to_string(getpid());
  std::filesystem::remove_all(root);
  std::string dsdt = std::string("DSDT") + std::string(6, '\0') + "BOCHS " + "BXPCDSDT" +
                     std::string(12, '\0');
  Write(root + "/sys/firmware/acpi/tables/DSDT", dsdt);
  Write(root + "/sys/class/dmi/id/sys_vendor", "QEMU\n");
  Write(root + "/proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu vme hypervisor lahf_lm\n");
  Write(root + "/proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
  VmInput in = ReadVmInput(root, /*use_cpuid=*/false);
  EXPECT_FALSE(in.cpuid_available);
  EXPECT_TRUE(in.cpuinfo_hypervisor_flag);
  EXPECT_EQ(in.acpi_oem_id, "BOCHS ");
  EXPECT_EQ(in.acpi_oem_table_id, "BXPCDSDT");
  EXPECT_EQ(in.dmi["sys_vendor"], "QEMU");
  EXPECT_EQ(in.kernel_release, "6.1.0-18-amd64");
  VmInfo vm = DetectVm(in);
  EXPECT_TRUE(vm.guest);
  EXPECT_EQ(vm.vmm, "qemu");
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace isotrace::layers
