package qemu

func accelHost(arch string) accel {
	return accel{name: "hvf", args: []string{"-accel", "hvf", "-accel", "tcg"}, cpu: "host"}
}
