//go:build linux

// Command vm benchmarks devbox's VM under QEMU:
//
//   - cold boot: `devbox up --driver qemu` from a stopped machine until the
//     guest agent answers over SSH, against a bare boot of the same kernel
//     with the same QEMU command line whose /init is a trivial static
//     program that powers the VM off at once (QEMU start to QEMU exit),
//     alternating in one run;
//   - `devbox ssh -- true` round trips on a running machine (median, p99);
//   - idle: CPU time QEMU and the guest agent use over an idle period, and
//     QEMU's resident memory.
//
// Usage (what `make bench` runs; needs `make image` and QEMU):
//
//	go run ./bench/vm -devbox bin/devbox -guest-image bin/guest/amd64
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/devbox-dev/devbox/bench/internal/stats"
	"github.com/devbox-dev/devbox/images/guest"
	"github.com/devbox-dev/devbox/images/initramfs"
)

func main() {
	devbox := flag.String("devbox", "bin/devbox", "devbox binary")
	image := flag.String("guest-image", "bin/guest/"+goruntime.GOARCH, "guest image directory")
	rounds := flag.Int("rounds", 7, "boots of each kind")
	sshRounds := flag.Int("ssh-rounds", 50, "ssh round trips")
	idle := flag.Duration("idle", 30*time.Second, "idle period measured")
	breakdown := flag.Bool("parts", false, "instead, break a cold up down into its parts (initramfs size, Go start-up, agent, SSH)")
	upFlags := flag.String("up-flags", "", "more flags for devbox up, space-separated (e.g. \"--unshare /root\")")
	var upEnvs envList
	flag.Var(&upEnvs, "up-env", "with -parts: instead, compare cold ups under these environments (repeat the flag; \"\" for none; a first word BENCH_DEVBOX=PATH runs that devbox binary)")
	flag.Parse()
	if err := run(*devbox, *image, *rounds, *sshRounds, *idle, *breakdown, upEnvs, strings.Fields(*upFlags)); err != nil {
		fmt.Fprintln(os.Stderr, "bench/vm:", err)
		os.Exit(1)
	}
}

// Machine settings shared by both kinds of boot.
const (
	cpus      = 2
	memoryMiB = 512
)

// envList is a repeated flag.
type envList []string

func (e *envList) String() string     { return strings.Join(*e, ",") }
func (e *envList) Set(s string) error { *e = append(*e, s); return nil }

func run(devbox, imageDir string, rounds, sshRounds int, idle time.Duration, breakdown bool, upEnvs, upFlags []string) error {
	devbox, err := filepath.Abs(devbox)
	if err != nil {
		return err
	}
	img, err := guest.Load(imageDir)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "devbox-bench-vm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	home := filepath.Join(work, "home")
	env := append(os.Environ(), "DEVBOX_HOME="+home)
	dbx := func(args ...string) (string, error) {
		cmd := exec.Command(devbox, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("devbox %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	defer dbx("destroy")

	bareInit, err := buildBareInit(work)
	if err != nil {
		return err
	}
	bareDir := filepath.Join(work, "bare")
	if err := os.MkdirAll(bareDir, 0o700); err != nil {
		return err
	}
	up := []string{"up", "--driver", "qemu", "--cpus", strconv.Itoa(cpus), "--memory", fmt.Sprintf("%dMiB", memoryMiB), "--disk", "8GiB", "--guest-image", img.Dir}
	// The first up formats the data disk: not what a cold boot costs.
	// Its extra flags are kept in the machine's settings.
	if _, err := dbx(append(up[:len(up):len(up)], upFlags...)...); err != nil {
		return err
	}
	if _, err := dbx("down"); err != nil {
		return err
	}
	if breakdown {
		return parts(devbox, img, work, rounds, dbx, up, home, upEnvs)
	}
	var upT, bareT []time.Duration
	for i := 0; i < rounds; i++ {
		order := []string{"devbox", "bare"}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, who := range order {
			switch who {
			case "devbox":
				start := time.Now()
				if _, err := dbx(up...); err != nil {
					return err
				}
				upT = append(upT, time.Since(start))
				if _, err := dbx("down"); err != nil {
					return err
				}
			case "bare":
				d, err := bareBoot(bareDir, img, bareInit)
				if err != nil {
					return err
				}
				bareT = append(bareT, d)
			}
		}
	}
	upMed, bareMed := stats.Median(stats.Durations(upT)), stats.Median(stats.Durations(bareT))
	ratio := upMed / bareMed
	fmt.Printf("cold boot to agent answering, %d rounds each, TCG (this host cannot use KVM):\n", rounds)
	fmt.Printf("  devbox up:  median %s\n", stats.Secs(time.Duration(upMed)))
	fmt.Printf("  bare boot:  median %s (same kernel and QEMU flags, /init powers off)\n", stats.Secs(time.Duration(bareMed)))
	fmt.Printf("  ratio devbox/bare: %.2f (target <= 1.3) %s\n", ratio, stats.Verdict(ratio <= 1.3))
	fmt.Printf("  absolute:   %s (target <= 2.5s under TCG) %s\n", stats.Secs(time.Duration(upMed)), stats.Verdict(upMed <= 2.5e9))

	if _, err := dbx(up...); err != nil {
		return err
	}
	var sshT []time.Duration
	for i := 0; i < sshRounds; i++ {
		start := time.Now()
		if _, err := dbx("ssh", "--", "true"); err != nil {
			return err
		}
		sshT = append(sshT, time.Since(start))
	}
	xs := stats.Durations(sshT)
	fmt.Printf("devbox ssh -- true, %d round trips: median %s, p99 %s\n", sshRounds, stats.Millis(time.Duration(stats.Median(xs))), stats.Millis(time.Duration(stats.Percentile(xs, 99))))

	pid, err := qemuPID(filepath.Join(home, "machines", "default"))
	if err != nil {
		return err
	}
	// One session spans the idle period, so the SSH work of measuring
	// falls outside it: the agent's CPU time is read at both ends inside
	// the guest, QEMU's on the host a second into it and a second before
	// its end.
	type res struct {
		out string
		err error
	}
	done := make(chan res, 1)
	go func() {
		out, err := dbx("ssh", "--", fmt.Sprintf("cat /proc/1/stat; sleep %d; cat /proc/1/stat", int(idle.Seconds())+2))
		done <- res{out, err}
	}()
	time.Sleep(time.Second)
	q0, err := procTicks(pid)
	if err != nil {
		return err
	}
	time.Sleep(idle)
	q1, err := procTicks(pid)
	if err != nil {
		return err
	}
	r := <-done
	if r.err != nil {
		return r.err
	}
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if len(lines) != 2 {
		return fmt.Errorf("agent stat: %q", r.out)
	}
	agent0, err := statTicks(lines[0])
	if err != nil {
		return err
	}
	agent1, err := statTicks(lines[1])
	if err != nil {
		return err
	}
	rss, _ := procRSS(pid)
	const hz = 100.0
	fmt.Printf("idle %s: QEMU used %.2fs CPU (%.1f%% of one core), guest agent %.2fs over %s; QEMU RSS %s\n",
		idle, float64(q1-q0)/hz, 100*float64(q1-q0)/hz/idle.Seconds(), float64(agent1-agent0)/hz, idle+2*time.Second, stats.KiB(rss))
	return nil
}

// buildBareInit builds the trivial /init: a static program that powers
// the VM off as soon as it runs.
func buildBareInit(work string) (string, error) {
	dir := filepath.Join(work, "bareinit")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	src := `package main

import "syscall"

func main() {
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	// A kernel that cannot power off: triple-fault instead (reboot=t),
	// which ends QEMU under -no-reboot.
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module bareinit\n\ngo 1.22\n"), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "init")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goruntime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build bare init: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	cpio := filepath.Join(dir, "initramfs")
	f, err := os.Create(cpio)
	if err != nil {
		return "", err
	}
	defer f.Close()
	w := initramfs.NewWriter(f)
	if err := w.File("init", 0o755, data); err != nil {
		return "", err
	}
	return cpio, w.Close()
}

// bareBoot boots the image's kernel with the trivial init under the
// driver's own command line (but its pid file), and times QEMU from start
// to exit.
func bareBoot(dir string, img *guest.Image, initrd string) (time.Duration, error) {
	return bootWith(dir, img, initrd, "")
}

func qemuPID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "qemu.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// procTicks is a process's user+system CPU time in clock ticks.
func procTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return statTicks(string(b))
}

func statTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat")
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, nil
}

func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}
