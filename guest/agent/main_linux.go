package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/devbox-dev/devbox/engine/remote"
	"github.com/devbox-dev/devbox/guest/bootconfig"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// Path is the name the kernel starts the agent by: /init of the initramfs.
const Path = "/init"

// statusPath is where the agent tells the host how boot went (JSON
// Status), for `devbox` to read over SSH.
const statusPath = "/run/devbox/agent.json"

// Main runs the agent, and never returns then, when this process is the
// guest's PID 1 started as /init; otherwise it returns at once. The devbox
// binary calls it first thing in main.
func Main() {
	if len(os.Args) == 0 || os.Args[0] != Path || os.Getpid() != 1 {
		return
	}
	a := &agent{log: &logger{w: os.Stderr}, booted: make(chan struct{})}
	defer func() {
		// PID 1 must not exit: the kernel would panic. Power off cleanly.
		if r := recover(); r != nil {
			a.log.Errorf("panic: %v\n%s", r, debug.Stack())
		}
		a.powerOff()
	}()
	a.run()
}

// Status is what the agent reports at statusPath.
type Status struct {
	// KernelBoot is how long the kernel ran before it started the agent.
	KernelBoot time.Duration `json:"kernelBootNs"`
	// Ready is how long the agent took from its start to serving SSH.
	Ready time.Duration `json:"readyNs"`
	// Booted is how long the agent took from its start to the end of
	// every boot step (network and data disk too), which is when SSH
	// channels start being served.
	Booted time.Duration `json:"bootedNs"`
	// Steps are the boot steps and how long each took.
	Steps []Step `json:"steps"`
	// DataDisk is what became of the data disk (nil: none configured).
	DataDisk *DiskStatus `json:"dataDisk,omitempty"`
}

// agent is PID 1's state.
type agent struct {
	log   *logger
	steps stepTimer
	cfg   *bootconfig.Config
	srv   *Server
	disk  *DiskStatus

	// booted is closed once every boot step has finished.
	booted chan struct{}

	// accepting ends when shutdown begins: no new connections.
	accepting     context.Context
	stopAccepting context.CancelFunc

	shutdownMu   sync.Mutex
	shutdownDone bool
}

// run boots the guest, serves until a shutdown, and returns to power off.
func (a *agent) run() {
	start := time.Now()
	var up unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &up)
	kernelBoot := time.Duration(up.Nano())
	os.Setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")

	// Without these nothing else works: give up (power off) if they fail.
	if err := a.steps.time("rootfs", leaveRootfs); err != nil {
		a.log.Errorf("%v", err)
		return
	}
	// The boot config and the SSH server's keys come from the initramfs
	// alone: read and parse them while the base file systems mount (under
	// emulation each is tens of milliseconds of first-run code).
	cfgDone := make(chan error, 1)
	go a.guard("config", func() {
		err := a.steps.time("config", func() (err error) {
			a.cfg, err = bootconfig.Load(bootconfig.Path)
			return err
		})
		if err == nil {
			err = a.steps.time("ssh-server", a.newServer)
		}
		cfgDone <- err
	})
	if err := a.steps.time("mounts", func() error { return mountBase(a.log) }); err != nil {
		a.log.Errorf("%v", err)
		if !isMountPoint("/dev") {
			return
		}
	}
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0); err == nil {
		a.log.setOutput(c)
	}
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if f == "devbox.debug=1" {
				a.log.setDebug(true)
			}
		}
	}
	// A first look for the virtio-serial ports (sysfs is mounted now)
	// while the boot config is still being read: under emulation the scan
	// costs tens of milliseconds, and the ports are usually all there.
	firstScan := make(chan map[string]string, 1)
	go a.guard("ports scan", func() { firstScan <- scanPorts() })
	// Ctrl-Alt-Del becomes a SIGINT to us (a clean shutdown), not a reset.
	unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)

	a.step("modules", func() error {
		n, err := loadModules(a.log, modulesListPath)
		a.log.Debugf("%d modules loaded", n)
		return err
	})
	if err := <-cfgDone; err != nil {
		a.log.Errorf("%v", err)
		return
	}
	cfg := a.cfg
	a.step("random-seed", func() error { return seedRNG(bootconfig.SeedPath) })
	a.step("clock", func() error {
		set, err := setClock(cfg.TimeFloor(), false)
		if set {
			a.log.Debugf("clock was behind the host's: set to %v", cfg.TimeFloor().UTC())
		}
		return err
	})
	os.MkdirAll("/root", 0o700)

	a.accepting, a.stopAccepting = context.WithCancel(context.Background())
	ctx := context.Background()
	go a.guard("reaper", func() { NewReaper().Run(ctx) })
	go a.guard("signals", a.handleSignals)

	// The slow steps (network, data disk) run on while the agent already
	// answers the host: the handshake, the clock and a shutdown need
	// neither, and every channel -- each command, shell and forwarded
	// port -- waits for them (srv.Gate), so no one ever sees the guest
	// half booted.
	a.srv.Gate = a.waitBooted
	var wg sync.WaitGroup
	parallel := func(name string, f func() error) {
		wg.Add(1)
		go a.guard(name, func() {
			defer wg.Done()
			a.step(name, f)
		})
	}
	parallel("network", func() error {
		var dns []string
		if cfg.Network != nil {
			dns = cfg.Network.DNS
		}
		t := time.Now()
		if err := setHostname(cfg.Hostname, dns); err != nil {
			return err
		}
		a.log.Debugf("network: hostname and /etc files in %v", time.Since(t).Round(10*time.Microsecond))
		return setUpNetwork(a.log, cfg.Network)
	})
	if cfg.DataDisk != "" {
		parallel("data-disk", func() error {
			st, err := setUpDataDisk(ctx, a.log, cfg.DataDisk, cfg.DataRoot)
			a.shutdownMu.Lock()
			a.disk = &st
			a.shutdownMu.Unlock()
			return err
		})
	}
	if len(cfg.Shares) > 0 {
		parallel("shares", func() error { return mountShares(a.log, cfg.Shares, cfg.DataRoot) })
	}
	if cfg.Transport == bootconfig.TransportVirtioSerial || cfg.Transport == "" {
		n := cfg.Ports
		if n == 0 {
			n = 1 // one port if the host did not say
		}
		var names []string
		for i := 0; i < n; i++ {
			names = append(names, bootconfig.PortName(i))
		}
		var ports map[string]string
		a.step("ports", func() (err error) {
			ports, err = findPorts(ctx, names, 10*time.Second, <-firstScan)
			return err
		})
		for _, n := range names {
			if dev := ports[n]; dev != "" {
				go a.guard("port "+n, func() { a.servePort(a.accepting, dev) })
			}
		}
	}
	if cfg.Transport == bootconfig.TransportVsock {
		a.step("vsock", func() error { return a.serveVsock(a.accepting, cfg.VsockPort) })
	}
	ready := time.Since(start)
	a.log.raw(bootconfig.ReadyLine)

	wg.Wait()
	booted := time.Since(start)
	a.shutdownMu.Lock()
	disk := a.disk
	a.shutdownMu.Unlock()
	a.writeStatus(Status{KernelBoot: kernelBoot, Ready: ready, Booted: booted, Steps: a.steps.list(), DataDisk: disk})
	close(a.booted)
	for _, s := range a.steps.list() {
		a.log.Debugf("step %s: %v", s.Name, s.Duration.Round(10*time.Microsecond))
	}
	a.log.Debugf("kernel %v, agent %v to ready, %v to booted", kernelBoot.Round(time.Millisecond), ready.Round(time.Millisecond), booted.Round(time.Millisecond))

	<-a.accepting.Done()
	// A shutdown is under way; whoever started it powers off.
	select {}
}

// bootStepsGrace bounds how long a shutdown waits for boot to finish.
const bootStepsGrace = 30 * time.Second

// waitBooted waits until every boot step has finished, or ctx ends.
func (a *agent) waitBooted(ctx context.Context) error {
	select {
	case <-a.booted:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("guest still booting: %w", ctx.Err())
	}
}

// waitBootedFor is waitBooted with a timeout.
func (a *agent) waitBootedFor(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return a.waitBooted(ctx)
}

// step runs a boot step whose failure is logged and survived.
func (a *agent) step(name string, f func() error) {
	if err := a.steps.time(name, f); err != nil {
		a.log.Errorf("%s: %v", name, err)
	}
}

// guard runs f, a goroutine of PID 1: a panic is logged and powers off,
// instead of killing PID 1 (which panics the kernel).
func (a *agent) guard(name string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Errorf("%s: panic: %v\n%s", name, r, debug.Stack())
			a.powerOff()
		}
	}()
	f()
}

// newServer sets up the SSH server from the boot config's keys.
func (a *agent) newServer() error {
	pem, err := os.ReadFile(bootconfig.HostKeyPath)
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	hostKey, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return fmt.Errorf("host key %s: %w", bootconfig.HostKeyPath, err)
	}
	keys, err := ParseAuthorizedKeys(a.cfg.AuthorizedKeys)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return errors.New("boot config has no authorized keys: nobody could log in")
	}
	a.srv = NewServer(hostKey, bootconfig.User, keys)
	a.srv.log = a.log
	a.srv.HandleRequest(bootconfig.RequestSetTime, a.handleSetTime)
	a.srv.HandleRequest(bootconfig.RequestShutdown, a.handleShutdown)
	es := &engineService{root: a.cfg.DataRoot}
	if a.cfg.Network != nil {
		es.hostLoopback = a.cfg.Network.HostLoopback
	}
	a.srv.HandleChannel(remote.ChannelType, es.handle)
	return nil
}

func (a *agent) handleSetTime(_ context.Context, _ *ssh.ServerConn, req *ssh.Request) {
	var st bootconfig.SetTime
	ok := ssh.Unmarshal(req.Payload, &st) == nil
	if ok {
		if _, err := setClock(time.Unix(0, int64(st.UnixNano)), true); err != nil {
			a.log.Errorf("%v", err)
			ok = false
		}
	}
	if req.WantReply {
		req.Reply(ok, nil)
	}
}

// handleShutdown stops everything, replies, gives the host a moment to
// read the reply and hang up, and powers off.
func (a *agent) handleShutdown(_ context.Context, sc *ssh.ServerConn, req *ssh.Request) {
	a.shutdown()
	if req.WantReply {
		req.Reply(true, nil)
	}
	hungUp := make(chan struct{})
	go func() { sc.Wait(); close(hungUp) }()
	select {
	case <-hungUp:
	case <-time.After(500 * time.Millisecond):
	}
	a.powerOff()
}

// handleSignals shuts down on SIGTERM or SIGINT (Ctrl-Alt-Del).
func (a *agent) handleSignals() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)
	s := <-sigs
	a.log.Debugf("%v: shutting down", s)
	a.shutdown()
	a.powerOff()
}

// shutdown stops accepting connections, ends every process but this one
// (SIGTERM, then SIGKILL after a grace), and syncs and unmounts the data
// disk. It runs once; later calls wait for the first.
func (a *agent) shutdown() {
	// A shutdown while the data disk is still being mounted (or
	// formatted) would power off under it: let boot finish first.
	if err := a.waitBootedFor(bootStepsGrace); err != nil {
		a.log.Errorf("shutdown: %v; going on", err)
	}
	a.shutdownMu.Lock()
	defer a.shutdownMu.Unlock()
	if a.shutdownDone {
		return
	}
	a.shutdownDone = true
	if a.stopAccepting != nil {
		a.stopAccepting()
	}
	start := time.Now()
	unix.Kill(-1, unix.SIGTERM)
	if !waitNoProcesses(3 * time.Second) {
		unix.Kill(-1, unix.SIGKILL)
		waitNoProcesses(2 * time.Second)
	}
	unix.Sync()
	if a.disk != nil && a.disk.Mounted {
		if err := unmountDataDisk(a.disk.Root); err != nil {
			a.log.Errorf("%v", err)
		}
	}
	a.log.Debugf("shutdown took %v", time.Since(start).Round(time.Millisecond))
}

// waitNoProcesses waits up to timeout for every process but PID 1 and
// the kernel's threads to be gone.
func waitNoProcesses(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !userProcessesLeft() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// userProcessesLeft says whether a process other than PID 1 and kernel
// threads is alive (zombies are as good as gone: the reaper takes them).
func userProcessesLeft() bool {
	d, err := os.Open("/proc")
	if err != nil {
		return false
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		var pid int
		if _, err := fmt.Sscanf(n, "%d", &pid); err != nil || pid <= 2 {
			continue
		}
		state, ppid, ok := procState(pid)
		if ok && state != 'Z' && ppid != 2 {
			return true
		}
	}
	return false
}

// powerOff syncs and turns the VM off. It never returns.
func (a *agent) powerOff() {
	unix.Sync()
	a.log.Debugf("power off")
	// Without a way to power off, the kernel would halt and leave the VM
	// running: restart instead (devbox runs QEMU with -no-reboot, so a
	// restart ends it too).
	if _, err := os.Stat("/sys/firmware/acpi"); err == nil {
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	a.log.Errorf("reboot: %v", err)
	select {}
}

// writeStatus writes st to statusPath.
func (a *agent) writeStatus(st Status) {
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		os.MkdirAll("/run/devbox", 0o755)
		err = os.WriteFile(statusPath, b, 0o644)
	}
	if err != nil {
		a.log.Errorf("write %s: %v", statusPath, err)
	}
}
