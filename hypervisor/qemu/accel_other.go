//go:build !linux && !darwin && !windows

package qemu

func accelHost(arch string) accel { return tcg(arch, "no accelerator known on this OS") }
