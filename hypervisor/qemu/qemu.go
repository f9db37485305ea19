// Package qemu drives QEMU (Linux, Windows, and macOS as a fallback to
// Virtualization.framework) through QMP with github.com/digitalocean/go-qemu.
//
// The VM is a microvm (x86_64) or virt (arm64) machine with virtio-mmio
// devices only, booting an uncompressed kernel directly (PVH on x86_64):
// under TCG, decompressing a bzImage and probing PCI cost seconds. QEMU
// runs in a session of its own, so the VM outlives the devbox command that
// started it; its pid file, QMP socket, agent sockets, console log and its
// own output (qemu.log) live in the machine directory.
package qemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devbox-dev/devbox/guest/bootconfig"
	"github.com/devbox-dev/devbox/hypervisor"
	"github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"
)

// AgentPorts is how many virtio-serial ports carry agent SSH connections:
// each holds one connection at a time, so this many devbox commands can
// talk to the guest at once.
const AgentPorts = 8

// Files in the machine directory.
const (
	pidFile    = "qemu.pid"
	qmpSocket  = "qmp.sock"
	consoleLog = "console.log"
	qemuLog    = "qemu.log"
)

// Driver runs one machine's VM with QEMU.
type Driver struct {
	dir   string
	arch  string // guest arch, Go spelling
	accel accel

	// virtiofsd is looked for once per driver.
	virtiofsdOnce sync.Once
	virtiofsdErr  error
}

// New returns the QEMU driver for the machine in dir, booting a guest of
// arch (Go spelling: amd64, arm64). accelOverride forces an accelerator
// ("tcg", "kvm", ...); empty picks the fastest that works here.
func New(dir, arch, accelOverride string) *Driver {
	return &Driver{dir: dir, arch: arch, accel: pickAccel(arch, accelOverride)}
}

// Name implements hypervisor.Driver.
func (d *Driver) Name() string { return "qemu" }

// Capabilities implements hypervisor.Driver.
func (d *Driver) Capabilities() hypervisor.Capabilities {
	return hypervisor.Capabilities{
		Accelerator:     d.accel.name,
		AcceleratorNote: d.accel.note,
		Transport:       bootconfig.TransportVirtioSerial,
		AgentPorts:      AgentPorts,
		DiskFormat:      "qcow2",
		ShareTypes:      d.shareTypes(),
		Console:         d.console(),
	}
}

func (d *Driver) console() string {
	if d.arch == "arm64" {
		return "ttyAMA0"
	}
	return "ttyS0"
}

// binary is the qemu-system program for the guest arch.
func (d *Driver) binary() (string, error) {
	name := "qemu-system-x86_64"
	pkg := "qemu-system-x86"
	if d.arch == "arm64" {
		name, pkg = "qemu-system-aarch64", "qemu-system-arm"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install QEMU (Debian/Ubuntu: sudo apt-get install %s qemu-utils; macOS: brew install qemu): %w", name, pkg, hypervisor.ErrNotInstalled)
	}
	return p, nil
}

// Available implements hypervisor.Driver.
func (d *Driver) Available() error {
	if _, err := d.binary(); err != nil {
		return err
	}
	_, err := qemuImg()
	return err
}

func qemuImg() (string, error) {
	img, err := exec.LookPath("qemu-img")
	if err != nil {
		return "", fmt.Errorf("qemu-img not found: install QEMU's tools (Debian/Ubuntu: sudo apt-get install qemu-utils; macOS: brew install qemu): %w", hypervisor.ErrNotInstalled)
	}
	return img, nil
}

// CreateDisk implements hypervisor.Driver: a qcow2 image, which takes
// host space only as the guest writes.
func (d *Driver) CreateDisk(ctx context.Context, path string, size int64) error {
	img, err := qemuImg()
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	out, err := exec.CommandContext(ctx, img, "create", "-q", "-f", "qcow2", tmp, strconv.FormatInt(size, 10)).CombinedOutput()
	if err != nil {
		_ = os.Remove(tmp)
		return diskError("create disk", path, err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("create disk %s: %w", path, err)
	}
	return nil
}

// AgentSocket is the host end of agent port i.
func (d *Driver) AgentSocket(i int) string {
	return filepath.Join(d.dir, fmt.Sprintf("agent-%d.sock", i))
}

// ConsoleLog implements hypervisor.Driver.
func (d *Driver) ConsoleLog() string { return filepath.Join(d.dir, consoleLog) }

// kernelArgs are what this machine type needs on the kernel command line.
func (d *Driver) kernelArgs() string {
	args := "console=" + d.console()
	if d.arch == "amd64" {
		// reboot=t lets the guest end QEMU (-no-reboot) by triple
		// fault when the kernel cannot power off.
		args += " reboot=t"
		if d.accel.name == "tcg" {
			// microvm has no PIT or HPET to calibrate the TSC against,
			// and under TCG calibration hangs without a given
			// frequency (KVM and HVF tell the guest theirs). TCG's CPU
			// models lack constant_tsc, so the kernel would also time
			// a delay loop on every secondary CPU (~0.3 s each here,
			// and a wrong result): give it loops per jiffy, 2 GHz at
			// the guest kernel's HZ=250 (images/guest/kernel). No
			// waiting between the INIT and SIPI of a virtual CPU either.
			args += " tsc_early_khz=2000000 tsc=reliable no_timer_check lpj=8000000 cpu_init_udelay=0"
		}
	}
	return args
}

// Args is QEMU's command line for cfg (without the program name).
func (d *Driver) Args(cfg hypervisor.Config) ([]string, error) {
	for i := 0; i < AgentPorts; i++ {
		if s := d.AgentSocket(i); len(s) > 100 {
			return nil, fmt.Errorf("machine directory %s is too deep for a unix socket path (%d bytes, limit 100): set DEVBOX_HOME to a shorter path", d.dir, len(s))
		}
	}
	cmdline := strings.TrimSpace(d.kernelArgs() + " " + cfg.Cmdline)
	a := []string{
		"-name", "devbox," + "process=devbox-" + filepath.Base(d.dir),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-pidfile", filepath.Join(d.dir, pidFile),
		"-no-reboot",
		"-m", strconv.Itoa(cfg.MemoryMiB), "-smp", strconv.Itoa(cfg.CPUs),
		"-kernel", cfg.Kernel, "-initrd", cfg.Initramfs, "-append", cmdline,
		"-chardev", "file,id=console,path=" + d.ConsoleLog(),
		"-serial", "chardev:console",
		"-qmp", "unix:" + filepath.Join(d.dir, qmpSocket) + ",server=on,wait=off",
	}
	a = append(a, d.accel.args...)
	switch d.arch {
	case "amd64":
		a = append(a, "-M", "microvm,rtc=on,pit=off,pic=off,isa-serial=on", "-cpu", d.accel.cpu)
	case "arm64":
		a = append(a, "-M", "virt,gic-version=max", "-cpu", d.accel.cpu)
	default:
		return nil, fmt.Errorf("qemu: guest arch %q not supported (amd64, arm64)", d.arch)
	}
	a = append(a, "-device", "virtio-serial-device")
	for i := 0; i < AgentPorts; i++ {
		id := fmt.Sprintf("agent%d", i)
		a = append(a,
			"-chardev", "socket,id="+id+",path="+d.AgentSocket(i)+",server=on,wait=off",
			"-device", "virtserialport,chardev="+id+",name="+bootconfig.PortName(i))
	}
	if cfg.DataDisk != "" {
		a = append(a,
			"-drive", "id=data,file="+cfg.DataDisk+",format=qcow2,if=none,discard=unmap,detect-zeroes=unmap",
			"-device", "virtio-blk-device,drive=data")
	}
	a = append(a,
		"-netdev", "user,id=net0",
		"-device", "virtio-net-device,netdev=net0",
		"-device", "virtio-rng-device")
	memShared := false
	for i, s := range cfg.Shares {
		id := fmt.Sprintf("share%d", i)
		switch s.Type {
		case "9p", "":
			// security_model=none: files the guest makes belong to
			// whoever runs QEMU, and keep their modes, with no
			// xattrs left on the host. multidevs=remap: a share
			// holding other file systems' mount points must not
			// show the guest two files with one inode number.
			opt := "local,id=" + id + ",path=" + s.HostPath + ",security_model=none,multidevs=remap"
			if s.ReadOnly {
				opt += ",readonly=on"
			}
			a = append(a, "-fsdev", opt, "-device", "virtio-9p-device,fsdev="+id+",mount_tag="+s.Tag)
		case "virtiofs":
			if !memShared {
				// vhost-user: virtiofsd reads and writes guest
				// memory itself, so it must be a shared memfd.
				// virtio-mmio devices are legacy (virtio 0.9) by
				// default, which virtiofsd's libvhost-user refuses.
				memShared = true
				a = append(a, "-object", "memory-backend-memfd,id=mem,share=on,size="+strconv.Itoa(cfg.MemoryMiB)+"M",
					"-machine", "memory-backend=mem", "-global", "virtio-mmio.force-legacy=false")
			}
			a = append(a, "-chardev", "socket,id="+id+",path="+d.virtiofsSocket(i),
				"-device", "vhost-user-fs-device,chardev="+id+",tag="+s.Tag)
		default:
			return nil, fmt.Errorf("qemu: share type %q not supported (9p, virtiofs)", s.Type)
		}
	}
	return a, nil
}

// shareTypes are the ways this host can share a directory, best first.
// 9p comes first: measured under TCG (README.md, "Shared directories"),
// it walked a tree of 5,000 files about twice as fast as virtiofs with
// virtiofsd's cache=none (which coherence with host edits needs), and read
// a large file about as fast. KVM was not measured.
func (d *Driver) shareTypes() []string {
	d.virtiofsdOnce.Do(func() { _, d.virtiofsdErr = virtiofsdPath() })
	if d.virtiofsdErr != nil {
		return []string{"9p"}
	}
	return []string{"9p", "virtiofs"}
}

// Start implements hypervisor.Driver.
func (d *Driver) Start(ctx context.Context, cfg hypervisor.Config) error {
	bin, err := d.binary()
	if err != nil {
		return err
	}
	args, err := d.Args(cfg)
	if err != nil {
		return err
	}
	// Leftovers of a VM that died: QEMU refuses to bind over a socket
	// file, and a stale pid file must not name a live process later.
	for _, f := range []string{pidFile, qmpSocket} {
		_ = os.Remove(filepath.Join(d.dir, f))
	}
	for i := 0; i < AgentPorts; i++ {
		_ = os.Remove(d.AgentSocket(i))
	}
	// virtiofsd listens before QEMU connects; it ends with QEMU.
	if err := d.startVirtiofsd(ctx, cfg.Shares); err != nil {
		return err
	}
	// Keep the previous boot's console for after a crash.
	_ = os.Rename(d.ConsoleLog(), d.ConsoleLog()+".1")
	// Not -daemonize: that sends QEMU's own errors to /dev/null, and a
	// VM that dies must be able to say why (qemu.log).
	logf, err := os.OpenFile(d.Log(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		d.stopVirtiofsd()
		return fmt.Errorf("start qemu: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	err = cmd.Start()
	logf.Close()
	if err != nil {
		d.stopVirtiofsd()
		return fmt.Errorf("start qemu: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	// QEMU is up once its pid file names it and its sockets listen (it
	// makes them in command-line order, the agent ports last).
	ready := []string{filepath.Join(d.dir, qmpSocket), d.AgentSocket(AgentPorts - 1)}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if d.readPID() == cmd.Process.Pid && exists(ready...) {
			return nil
		}
		select {
		case <-exited:
			d.stopVirtiofsd()
			return fmt.Errorf("start qemu: %s", lastLine(readFile(d.Log())))
		case <-ctx.Done():
			cmd.Process.Kill()
			d.stopVirtiofsd()
			return fmt.Errorf("start qemu: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			d.stopVirtiofsd()
			return fmt.Errorf("start qemu: not ready after 30s: %s", lastLine(readFile(d.Log())))
		}
	}
}

// Log implements hypervisor.Driver: QEMU's own output.
func (d *Driver) Log() string { return filepath.Join(d.dir, qemuLog) }

func exists(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// monitor connects to QMP, bounded by ctx: QEMU serves one QMP client at a
// time, and a connect to a dead socket must not hang.
func (d *Driver) monitor(ctx context.Context) (*qmp.SocketMonitor, error) {
	mon, err := qmp.NewSocketMonitor("unix", filepath.Join(d.dir, qmpSocket), 2*time.Second)
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- mon.Connect() }()
	select {
	case err := <-done:
		if err != nil {
			mon.Disconnect()
			return nil, err
		}
		return mon, nil
	case <-ctx.Done():
		mon.Disconnect()
		<-done
		return nil, ctx.Err()
	}
}

// State implements hypervisor.Driver: a VM runs when its QMP socket
// answers, whatever files are left in the directory.
func (d *Driver) State(ctx context.Context) (hypervisor.State, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	mon, err := d.monitor(ctx)
	if err != nil {
		if d.pidAlive() {
			// A QEMU that holds its pid but does not answer is
			// wedged or busy with another QMP client.
			return hypervisor.Running, nil
		}
		return hypervisor.Stopped, nil
	}
	defer mon.Disconnect()
	st, err := raw.NewMonitor(mon).QueryStatus()
	if err != nil {
		return hypervisor.Stopped, fmt.Errorf("qemu status: %w", err)
	}
	switch st.Status {
	case raw.RunStateShutdown, raw.RunStateGuestPanicked, raw.RunStateInternalError:
		return hypervisor.Stopped, nil
	}
	return hypervisor.Running, nil
}

// PID implements hypervisor.Driver.
func (d *Driver) PID() int {
	if !d.pidAlive() {
		return 0
	}
	return d.readPID()
}

func (d *Driver) readPID() int {
	b, err := os.ReadFile(filepath.Join(d.dir, pidFile))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// Stop implements hypervisor.Driver: QMP quit, then kill the process.
// virtiofsd ends with QEMU; any left is killed.
func (d *Driver) Stop(ctx context.Context) error {
	defer d.stopVirtiofsd()
	pid := d.readPID()
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if mon, err := d.monitor(qctx); err == nil {
		_ = raw.NewMonitor(mon).Quit()
		mon.Disconnect()
	}
	cancel()
	if pid == 0 {
		return nil
	}
	if d.waitGone(ctx, pid, 5*time.Second) {
		return nil
	}
	if err := killProcess(pid); err != nil && d.pidAlive() {
		return fmt.Errorf("stop qemu (pid %d): %w", pid, err)
	}
	if !d.waitGone(ctx, pid, 5*time.Second) {
		return fmt.Errorf("stop qemu: pid %d still running after SIGKILL", pid)
	}
	return nil
}

func (d *Driver) waitGone(ctx context.Context, pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !isQEMU(pid, d.dir) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return !isQEMU(pid, d.dir)
}

func (d *Driver) pidAlive() bool {
	pid := d.readPID()
	return pid > 0 && isQEMU(pid, d.dir)
}

// Dial implements hypervisor.Driver.
func (d *Driver) Dial(ctx context.Context, i int) (net.Conn, error) {
	if i < 0 || i >= AgentPorts {
		return nil, fmt.Errorf("qemu: agent port %d out of range", i)
	}
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", d.AgentSocket(i))
	if err != nil {
		return nil, fmt.Errorf("dial agent port %d: %w", i, err)
	}
	return c, nil
}

var _ hypervisor.Driver = (*Driver)(nil)

// hostArch is the host's arch, Go spelling.
func hostArch() string { return goruntime.GOARCH }
