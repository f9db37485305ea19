package qemu

import (
	"os"
)

func accelHost(arch string) accel {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return tcg(arch, "/dev/kvm is not usable: "+err.Error())
	}
	f.Close()
	// PVM is KVM for nested hosts without hardware virtualisation; an
	// ordinary guest kernel hangs under it.
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return tcg(arch, "this host's KVM is PVM (kvm_pvm), which ordinary guest kernels hang under")
	}
	return accel{name: "kvm", args: []string{"-accel", "kvm"}, cpu: "host"}
}
