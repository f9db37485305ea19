package qemu

func accelHost(arch string) accel {
	// QEMU tries the accelerators in order; WHPX needs the Windows
	// Hypervisor Platform feature turned on.
	return accel{name: "whpx", note: "falls back to tcg when the Windows Hypervisor Platform is off", args: []string{"-accel", "whpx,kernel-irqchip=off", "-accel", "tcg"}, cpu: "max"}
}
