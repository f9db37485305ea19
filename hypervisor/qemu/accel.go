package qemu

// accel is how QEMU runs guest code on this host.
type accel struct {
	name string   // kvm, hvf, whpx, tcg
	note string   // why not something faster, if so
	args []string // QEMU options selecting it
	cpu  string   // -cpu model
}

func tcg(arch, note string) accel {
	// rdrand: the guest's CRNG is ready at once (random.trust_cpu), or
	// the first SSH handshake waits for entropy. arat: without an
	// always-running APIC timer, and with no HPET on microvm to stand in,
	// the guest cannot stop its tick when idle and an idle VM costs ~14%
	// of a host core in 250 timer interrupts a second per vCPU.
	cpu := "qemu64,+rdrand,+arat"
	if arch == "arm64" {
		cpu = "cortex-a72"
	}
	return accel{name: "tcg", note: note, args: []string{"-accel", "tcg,thread=multi"}, cpu: cpu}
}

// pickAccel picks the accelerator: override when given, else the host's
// own (accelHost, per OS) when the guest arch matches the host's.
func pickAccel(arch, override string) accel {
	switch override {
	case "":
	case "tcg":
		return tcg(arch, "asked for")
	default:
		return accel{name: override, args: []string{"-accel", override}, cpu: "host"}
	}
	if arch != hostArch() {
		return tcg(arch, "the guest is "+arch+" and this host is "+hostArch())
	}
	return accelHost(arch)
}
