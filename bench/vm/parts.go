//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/devbox-dev/devbox/bench/internal/stats"
	"github.com/devbox-dev/devbox/guest/bootconfig"
	"github.com/devbox-dev/devbox/hypervisor"
	"github.com/devbox-dev/devbox/hypervisor/qemu"
	"github.com/devbox-dev/devbox/images/guest"
	"github.com/devbox-dev/devbox/images/initramfs"
)

// partsInit is the /init of the breakdown's boots: with BENCH_EXEC set
// (the kernel hands unknown name=value arguments to init as environment)
// it first runs that program with the given argument and waits for it, so
// the boot costs what starting that program costs. It uses syscall alone
// to stay as small as the bare init.
const partsInit = `package main

import (
	"os"
	"syscall"
)

func main() {
	if p := os.Getenv("BENCH_EXEC"); p != "" {
		pid, err := syscall.ForkExec(p, []string{p, os.Getenv("BENCH_ARG")}, &syscall.ProcAttr{
			Env:   []string{"PATH=/bin"},
			Files: []uintptr{0, 1, 2},
		})
		if err == nil {
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
		}
	}
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
}
`

// parts measures where a cold `devbox up` spends its time, each kind of
// boot alternating with the others so that load on the host spreads over
// all of them alike:
//
//   - bare: the bench's bare boot (tiny initramfs, /init powers off);
//   - big: the guest image's initramfs with a bare init added (run by
//     rdinit=), so the kernel unpacks the same 16 MB: the cost of its size;
//   - exec: as big, but the init first runs `/init version` (the devbox
//     binary): the cost of starting the Go program (runtime and package
//     init, cobra), on top of big;
//   - up: `devbox up`, with the host's times to QEMU's start (pid file)
//     and to the agent's ready line on the console.
func parts(devbox string, img *guest.Image, work string, rounds int, dbx func(...string) (string, error), up []string, home string, upEnvs []string) error {
	dir := filepath.Join(work, "parts")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	bin, err := buildGo(dir, "partsinit", partsInit)
	if err != nil {
		return err
	}
	// The image's initramfs, then an archive with the bare init beside
	// the agent's /init.
	var overlay bytes.Buffer
	w := initramfs.NewWriter(&overlay)
	if err := w.File("benchinit", 0o755, bin); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	base, err := os.ReadFile(img.InitramfsPath())
	if err != nil {
		return err
	}
	if n := len(base) % 4; n != 0 {
		base = append(base, make([]byte, 4-n)...)
	}
	big := filepath.Join(dir, "big.cpio")
	if err := os.WriteFile(big, append(base, overlay.Bytes()...), 0o600); err != nil {
		return err
	}
	var tiny bytes.Buffer
	w = initramfs.NewWriter(&tiny)
	if err := w.File("init", 0o755, bin); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	small := filepath.Join(dir, "tiny.cpio")
	if err := os.WriteFile(small, tiny.Bytes(), 0o600); err != nil {
		return err
	}
	vmDir := filepath.Join(dir, "vm")
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		return err
	}
	kinds := []struct {
		name, initrd, args string
	}{
		{"bare", small, ""},
		{"big", big, "rdinit=/benchinit"},
		{"exec", big, "rdinit=/benchinit BENCH_EXEC=/init BENCH_ARG=version"},
	}
	if len(upEnvs) > 0 {
		kinds = nil
	} else {
		upEnvs = []string{""}
	}
	times := map[string][]time.Duration{}
	type upTimes struct {
		toQEMU, toReady, total, cpu []time.Duration
		status                      []string
	}
	ups := make([]upTimes, len(upEnvs))
	machineDir := filepath.Join(home, "machines", "default")
	n := len(kinds) + len(upEnvs)
	for i := 0; i < rounds; i++ {
		for k := range n {
			k = (k + i) % n
			if k < len(kinds) {
				kd := kinds[k]
				d, err := bootWith(vmDir, img, kd.initrd, kd.args)
				if err != nil {
					return fmt.Errorf("%s: %w", kd.name, err)
				}
				times[kd.name] = append(times[kd.name], d)
				continue
			}
			u := &ups[k-len(kinds)]
			bin, env := devbox, strings.Fields(upEnvs[k-len(kinds)])
			if len(env) > 0 && strings.HasPrefix(env[0], "BENCH_DEVBOX=") {
				// Another devbox binary, for comparing two builds.
				bin, env = strings.TrimPrefix(env[0], "BENCH_DEVBOX="), env[1:]
			}
			q, r, t, err := timeUp(bin, up, home, machineDir, env)
			if err != nil {
				return err
			}
			if pid, err := qemuPID(machineDir); err == nil {
				u.cpu = append(u.cpu, cpuTime(pid))
			}
			u.toQEMU, u.toReady, u.total = append(u.toQEMU, q), append(u.toReady, r), append(u.total, t)
			st, err := dbx("ssh", "--", "cat /run/devbox/agent.json")
			if err != nil {
				return err
			}
			u.status = append(u.status, st)
			if _, err := dbx("down"); err != nil {
				return err
			}
		}
	}
	med := func(ds []time.Duration) time.Duration { return time.Duration(stats.Median(stats.Durations(ds))) }
	if len(kinds) > 0 {
		fmt.Printf("boot-time breakdown, %d rounds each, medians (QEMU start to exit, host clock):\n", rounds)
		for _, kd := range kinds {
			fmt.Printf("  %-5s %s  %v\n", kd.name, stats.Secs(med(times[kd.name])), roundAll(times[kd.name]))
		}
		fmt.Printf("  big - bare   (unpacking the 16 MB initramfs): %s\n", stats.Millis(med(times["big"])-med(times["bare"])))
		fmt.Printf("  exec - big   (starting the devbox binary):     %s\n", stats.Millis(med(times["exec"])-med(times["big"])))
	}
	for i, u := range ups {
		fmt.Printf("devbox up %s(host clock): to QEMU started %s, to ready line %s, to up's exit %s %v\n",
			upEnvs[i]+" ", stats.Millis(med(u.toQEMU)), stats.Secs(med(u.toReady)), stats.Secs(med(u.total)), roundAll(u.total))
		var after []time.Duration
		for j := range u.total {
			after = append(after, u.total[j]-u.toReady[j])
		}
		fmt.Printf("  ready line to up's exit (hello, SSH handshake, CLI exit): %s %v\n", stats.Millis(med(after)), roundAll(after))
		fmt.Printf("  QEMU's CPU time from start to up's exit (less sensitive to load): %s %v\n", stats.Millis(med(u.cpu)), roundAll(u.cpu))
		printAgentSteps(u.status)
	}
	return nil
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// printAgentSteps prints the medians of the agent's own step times (the
// guest's clock).
func printAgentSteps(sts []string) {
	var all [][]byte
	for _, s := range sts {
		all = append(all, []byte(s))
	}
	type step struct {
		Name     string        `json:"name"`
		Duration time.Duration `json:"durationNs"`
	}
	type status struct {
		KernelBoot time.Duration `json:"kernelBootNs"`
		Ready      time.Duration `json:"readyNs"`
		Booted     time.Duration `json:"bootedNs"`
		Steps      []step        `json:"steps"`
	}
	byName := map[string][]time.Duration{}
	var order []string
	add := func(n string, d time.Duration) {
		if _, ok := byName[n]; !ok {
			order = append(order, n)
		}
		byName[n] = append(byName[n], d)
	}
	for _, b := range all {
		var st status
		if err := json.Unmarshal(b, &st); err != nil {
			fmt.Printf("  agent status: %v\n", err)
			return
		}
		add("kernel (to agent's run)", st.KernelBoot)
		add("agent to ready", st.Ready)
		add("agent to booted", st.Booted)
		for _, s := range st.Steps {
			add("step "+s.Name, s.Duration)
		}
	}
	fmt.Println("  agent's own times (guest clock), medians:")
	for _, n := range order {
		fmt.Printf("    %-26s %s\n", n, stats.Millis(time.Duration(stats.Median(stats.Durations(byName[n])))))
	}
}

// timeUp runs `devbox up` and times, on the host, QEMU's start (its pid
// file), the agent's ready line on the console, and up's exit.
func timeUp(devbox string, up []string, home, machineDir string, env []string) (toQEMU, toReady, total time.Duration, err error) {
	os.Remove(filepath.Join(machineDir, "qemu.pid"))
	cmd := exec.Command(devbox, up...)
	cmd.Env = append(append(os.Environ(), "DEVBOX_HOME="+home), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	console := filepath.Join(machineDir, "console.log")
	for {
		select {
		case err := <-done:
			total = time.Since(start)
			if err != nil {
				return 0, 0, 0, fmt.Errorf("devbox up: %v\n%s", err, out.Bytes())
			}
			if toReady == 0 {
				toReady = total
			}
			return toQEMU, toReady, total, nil
		case <-time.After(500 * time.Microsecond):
		}
		if toQEMU == 0 {
			if _, err := os.Stat(filepath.Join(machineDir, "qemu.pid")); err == nil {
				toQEMU = time.Since(start)
			}
		}
		if toQEMU != 0 && toReady == 0 {
			if b, err := os.ReadFile(console); err == nil && bytes.Contains(b, []byte(bootconfig.ReadyLine)) {
				toReady = time.Since(start)
			}
		}
	}
}

// bootWith boots the image's kernel under the driver's command line with
// initrd and extra kernel arguments, and times QEMU from start to exit.
func bootWith(dir string, img *guest.Image, initrd, extra string) (time.Duration, error) {
	d := qemu.New(dir, img.Arch, "")
	args, err := d.Args(hypervisor.Config{
		CPUs: cpus, MemoryMiB: memoryMiB,
		Kernel: img.KernelPath(), Initramfs: initrd,
		Cmdline: strings.TrimSpace("quiet cryptomgr.notests random.trust_cpu=on panic=-1 " + img.Cmdline + " " + extra),
	})
	if err != nil {
		return 0, err
	}
	var fg []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-pidfile" {
			i++
			continue
		}
		fg = append(fg, args[i])
	}
	bin := "qemu-system-x86_64"
	if img.Arch == "arm64" {
		bin = "qemu-system-aarch64"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, fg...)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("boot: %v\n%s", err, out)
	}
	return time.Since(start), nil
}

// buildGo builds a one-file static Go program for the guest.
func buildGo(work, name, src string) ([]byte, error) {
	dir := filepath.Join(work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+name+"\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goruntime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s: %v\n%s", name, err, out)
	}
	return os.ReadFile(bin)
}

// cpuTime is the CPU time all of a process's threads have used so far
// (schedstat, nanoseconds).
func cpuTime(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		var ns int64
		if _, err := fmt.Sscan(string(b), &ns); err == nil {
			sum += time.Duration(ns)
		}
	}
	return sum
}
