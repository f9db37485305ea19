// Package guesttest boots guest kernels under QEMU for tests: it finds a
// kernel to test with and runs a VM to completion, returning what the guest
// wrote on its serial console.
package guesttest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// KernelEnv names the environment variable holding the path of the kernel
// tests boot: an amd64 ELF vmlinux (PVH) or an arm64 Image, as a guest
// image's kernel file.
const KernelEnv = "DEVBOX_TEST_KERNEL"

// Kernel returns the kernel tests boot: $DEVBOX_TEST_KERNEL, else the
// kernel of the image `make image` left in the module's bin/guest/<arch>/.
// It skips t when there is none or QEMU cannot run it here.
func Kernel(t testing.TB) string {
	t.Helper()
	k := os.Getenv(KernelEnv)
	if k == "" {
		k = builtKernel()
	}
	if k == "" {
		t.Skipf("no guest kernel to boot: run `make image` or set %s to a kernel (an amd64 PVH vmlinux or arm64 Image)", KernelEnv)
	}
	if _, err := os.Stat(k); err != nil {
		t.Fatalf("%s: %v", KernelEnv, err)
	}
	if _, err := exec.LookPath(qemuFor(HostArch()).binary); err != nil {
		t.Skipf("%s not installed (apt-get install qemu-system-x86 or qemu-system-arm)", qemuFor(HostArch()).binary)
	}
	return k
}

// builtKernel finds bin/guest/<arch>/kernel in the enclosing module.
func builtKernel() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			k := filepath.Join(dir, "bin", "guest", HostArch(), "kernel")
			if _, err := os.Stat(k); err == nil {
				return k
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// HostArch is the guest architecture QEMU runs fastest here: this
// machine's.
func HostArch() string { return runtime.GOARCH }

// VM describes one test boot.
type VM struct {
	// Kernel and Initrd are booted; Initrd may name several files, which
	// are concatenated (the kernel unpacks each archive in turn).
	Kernel string
	Initrd []string
	// Cmdline is appended to the kernel command line.
	Cmdline string
	// Disk, when set, is a raw disk image attached as the guest's first
	// virtio block device (/dev/vda).
	Disk string
	// Timeout bounds the boot so a hung guest fails the test instead of
	// hanging it; it is not a performance bound. Zero means 5 minutes.
	Timeout time.Duration
}

type qemu struct {
	binary  string
	args    []string
	console string
}

func qemuFor(arch string) qemu {
	if arch == "arm64" {
		return qemu{
			binary:  "qemu-system-aarch64",
			args:    []string{"-M", "virt", "-cpu", "max"},
			console: "ttyAMA0",
		}
	}
	return qemu{
		binary:  "qemu-system-x86_64",
		args:    []string{"-M", "microvm,rtc=on", "-cpu", "qemu64,+rdrand"},
		console: "ttyS0",
	}
}

// Boot runs vm under QEMU (TCG, as the tests' machines may have no usable
// KVM) until the guest powers off or reboots, and returns its serial
// console output. It fails t if QEMU fails or the guest outlives the
// timeout.
func Boot(t testing.TB, vm VM) string {
	t.Helper()
	out, err := Run(t.Context(), t.TempDir(), vm)
	if err != nil {
		t.Fatalf("boot: %v\nconsole:\n%s", err, out)
	}
	return out
}

// Run is Boot for callers that handle errors themselves; dir holds the
// VM's scratch files.
func Run(ctx context.Context, dir string, vm VM) (string, error) {
	q := qemuFor(HostArch())
	if len(vm.Initrd) == 0 {
		return "", fmt.Errorf("no initrd to boot")
	}
	initrd := vm.Initrd[0]
	if len(vm.Initrd) > 1 {
		initrd = filepath.Join(dir, "initrd")
		var all []byte
		for _, p := range vm.Initrd {
			b, err := os.ReadFile(p)
			if err != nil {
				return "", err
			}
			all = append(all, b...)
			// Each archive must start 4-byte aligned.
			for len(all)%4 != 0 {
				all = append(all, 0)
			}
		}
		if err := os.WriteFile(initrd, all, 0o644); err != nil {
			return "", err
		}
	}
	serial := filepath.Join(dir, "serial.log")
	cmdline := "console=" + q.console + " quiet cryptomgr.notests tsc_early_khz=2000000 tsc=reliable no_timer_check random.trust_cpu=on reboot=t panic=-1"
	if vm.Cmdline != "" {
		cmdline += " " + vm.Cmdline
	}
	args := append(q.args,
		"-accel", "tcg", "-m", "512", "-smp", "2",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-kernel", vm.Kernel, "-initrd", initrd, "-append", cmdline,
		"-serial", "file:"+serial,
		"-device", "virtio-rng-device",
	)
	if vm.Disk != "" {
		args = append(args,
			"-drive", "id=data,file="+vm.Disk+",format=raw,if=none",
			"-device", "virtio-blk-device,drive=data")
	}
	timeout := vm.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, q.binary, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	console, _ := os.ReadFile(serial)
	if ctx.Err() != nil {
		return string(console), fmt.Errorf("guest still running after %v (hung?)", timeout)
	}
	if err != nil {
		return string(console), fmt.Errorf("%s: %w: %s", q.binary, err, stderr.Bytes())
	}
	return string(console), nil
}
