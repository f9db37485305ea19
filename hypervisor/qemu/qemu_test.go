package qemu

import (
	"strings"
	"testing"

	"github.com/devbox-dev/devbox/hypervisor"
)

func TestArgs(t *testing.T) {
	d := New(t.TempDir(), "amd64", "tcg")
	args, err := d.Args(hypervisor.Config{CPUs: 2, MemoryMiB: 512, Kernel: "k", Initramfs: "i", Cmdline: "quiet", DataDisk: "d.qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{
		"-accel tcg", "-M microvm", "-cpu qemu64,+rdrand", "-m 512", "-smp 2", "-pidfile", "-no-reboot",
		"-nodefaults", "console=ttyS0", "tsc_early_khz=", " quiet",
		"name=devbox.agent.0", "name=devbox.agent.7", "virtio-blk-device,drive=data", "file=d.qcow2,format=qcow2",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("qemu args lack %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, "hostfwd") || strings.Contains(line, "0.0.0.0") {
		t.Errorf("qemu listens on the network: %s", line)
	}
}

func TestArgsSocketPathTooLong(t *testing.T) {
	d := New("/tmp/"+strings.Repeat("x", 120), "amd64", "tcg")
	if _, err := d.Args(hypervisor.Config{}); err == nil || !strings.Contains(err.Error(), "DEVBOX_HOME") {
		t.Errorf("long machine dir: %v", err)
	}
}

func TestAccelOverride(t *testing.T) {
	if a := pickAccel("amd64", "tcg"); a.name != "tcg" {
		t.Errorf("override tcg: %+v", a)
	}
	if a := pickAccel("arm64", ""); hostArch() != "arm64" && (a.name != "tcg" || a.note == "") {
		t.Errorf("foreign guest arch must use tcg and say why: %+v", a)
	}
}
