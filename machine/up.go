package machine

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	"github.com/devbox-dev/devbox/config"
	"github.com/devbox-dev/devbox/guest/bootconfig"
	"github.com/devbox-dev/devbox/hypervisor"
	"github.com/devbox-dev/devbox/hypervisor/qemu"
	"github.com/devbox-dev/devbox/images/guest"
	"github.com/devbox-dev/devbox/images/initramfs"
	"github.com/devbox-dev/devbox/internal/filelock"
)

// UpOptions are `devbox up`'s flags; zero values keep the machine's
// settings (or the defaults for a new machine).
type UpOptions struct {
	Driver     string
	CPUs       int
	MemoryMiB  int
	DiskBytes  int64
	GuestImage string
	Accel      string
	// Timeout bounds the wait for the agent; 0 means 2 minutes.
	Timeout time.Duration
	// Debug makes the agent log verbosely to the console.
	Debug bool
	// Shares are host directories to share besides the machine's own
	// (ParseShare makes them); a path already shared takes the new
	// read-only flag.
	Shares []Share
	// Unshare are shared directories to stop sharing.
	Unshare []string
}

// UpResult says what Up did.
type UpResult struct {
	// AlreadyRunning is true when the machine was up before.
	AlreadyRunning bool
	// Native is true for the native driver: nothing was booted.
	Native bool
	Caps   hypervisor.Capabilities
	// Ready is how long boot took, from starting the VM to the agent
	// answering over SSH.
	Ready time.Duration
}

// DefaultDriver is the driver `devbox up` uses when none is given.
func DefaultDriver() string {
	switch goruntime.GOOS {
	case "linux":
		return DriverNative
	case "darwin":
		return DriverVZ
	}
	return DriverQEMU
}

// driver returns the machine's hypervisor driver.
func (m *Machine) driver() (hypervisor.Driver, error) {
	switch m.Config.Driver {
	case DriverQEMU:
		return qemu.New(m.Dir, m.Config.Arch, m.Config.Accel), nil
	case DriverNative, "":
		return nil, fmt.Errorf("machine %s uses the native driver: there is no VM (devbox up --driver qemu boots one)", m.Name)
	}
	return nil, fmt.Errorf("machine %s: driver %q is not available in this build of devbox", m.Name, m.Config.Driver)
}

// apply merges the options into the machine's settings; it says whether
// a running VM would need a restart to take them.
func (m *Machine) apply(o UpOptions) (restart bool, err error) {
	c := &m.Config
	if !m.exists {
		*c = Config{Driver: DefaultDriver(), Arch: goruntime.GOARCH, CPUs: DefaultCPUs, MemoryMiB: DefaultMemoryMiB, DiskBytes: DefaultDiskBytes, Created: time.Now().UTC()}
		if n := goruntime.NumCPU(); n < c.CPUs {
			c.CPUs = n
		}
	}
	if c.Shares == nil {
		// A machine made before shares existed gets the default too,
		// which its running VM lacks.
		c.Shares, restart = defaultShares(), m.exists
	}
	shares, changed, err := mergeShares(c.Shares, o.Shares, o.Unshare)
	if err != nil {
		return false, err
	}
	if changed {
		c.Shares, restart = shares, true
	}
	set := func(dst *int, v int) {
		if v > 0 && *dst != v {
			*dst, restart = v, true
		}
	}
	set(&c.CPUs, o.CPUs)
	set(&c.MemoryMiB, o.MemoryMiB)
	if o.DiskBytes > 0 && o.DiskBytes < MinDiskBytes {
		return false, fmt.Errorf("--disk %s: the data disk must be at least %s", FormatSize(o.DiskBytes), FormatSize(MinDiskBytes))
	}
	if o.DiskBytes > 0 && o.DiskBytes != c.DiskBytes {
		c.DiskBytes, restart = o.DiskBytes, true
	}
	if o.Driver != "" && o.Driver != c.Driver {
		c.Driver, restart = o.Driver, true
	}
	if o.GuestImage != "" && o.GuestImage != c.GuestImage {
		c.GuestImage, restart = o.GuestImage, true
	}
	if o.Accel != "" && o.Accel != c.Accel {
		c.Accel, restart = o.Accel, true
	}
	return restart, nil
}

// Up readies the machine: boots its VM unless it runs, and waits until the
// guest agent answers over SSH. A second Up while one boots waits for it.
// A larger disk size than the machine's grows its disk at this boot; a
// smaller one is refused. A full host disk is one error naming the file.
func (m *Machine) Up(ctx context.Context, o UpOptions) (res *UpResult, err error) {
	defer func() { err = m.hostDiskFull(err) }()
	wait := o.Timeout
	if wait == 0 {
		wait = 2 * time.Minute
	}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("machine %s: %w", m.Name, err)
	}
	// A machine directory holds keys: the user's alone.
	if err := os.Chmod(m.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("machine %s: %w", m.Name, err)
	}
	lock, err := filelock.Acquire(ctx, m.path(lockFile))
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	if !m.exists {
		// Another up may have created it while we waited for the lock.
		if fresh, err := Open(m.Name); err == nil {
			m.Config, m.exists = fresh.Config, fresh.exists
		}
	}
	wasDriver := m.Config.Driver
	restart, err := m.apply(o)
	if err != nil {
		return nil, err
	}

	if m.Config.Driver == DriverNative {
		if m.exists && wasDriver != "" && wasDriver != DriverNative {
			if d, err := m.driverFor(wasDriver); err == nil {
				if st, _ := d.State(ctx); st == hypervisor.Running {
					return nil, fmt.Errorf("machine %s runs under %s: devbox down first to switch to the native driver", m.Name, wasDriver)
				}
			}
		}
		if goruntime.GOOS != "linux" {
			return nil, fmt.Errorf("the native driver needs a Linux host: use --driver qemu")
		}
		return &UpResult{Native: true}, m.saveConfig()
	}
	d, err := m.driver()
	if err != nil {
		return nil, err
	}
	if err := m.checkShrink(d, o.DiskBytes); err != nil {
		return nil, err
	}
	res = &UpResult{Caps: d.Capabilities()}
	if st, err := d.State(ctx); err == nil && st == hypervisor.Running {
		if restart && m.exists {
			return nil, fmt.Errorf("machine %s is running with other settings (CPUs, memory, disk, shares...): devbox down, then devbox up again with them", m.Name)
		}
		// Running, or still booting under another up that gave up
		// waiting: wait for the agent either way.
		if err := m.waitAgent(ctx, d, wait); err != nil {
			return nil, err
		}
		res.AlreadyRunning = true
		return res, m.saveConfig()
	}
	if err := m.saveConfig(); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := m.boot(ctx, d, o); err != nil {
		return nil, err
	}
	if err := m.waitAgent(ctx, d, wait); err != nil {
		// Leave no half-booted VM behind: the next up starts clean.
		_ = d.Stop(context.WithoutCancel(ctx))
		return nil, err
	}
	res.Ready = time.Since(start)
	return res, nil
}

func (m *Machine) driverFor(name string) (hypervisor.Driver, error) {
	c := *m
	c.Config.Driver = name
	return c.driver()
}

// boot starts the VM: guest image checked, keys and disk made on first
// use, the per-boot archive written, the driver started.
func (m *Machine) boot(ctx context.Context, d hypervisor.Driver, o UpOptions) error {
	if err := d.Available(); err != nil {
		return err
	}
	img, err := m.guestImage(ctx, IsGuestImageRef(o.GuestImage))
	if err != nil {
		return err
	}
	k, err := m.ensureKeys()
	if err != nil {
		return err
	}
	disk := m.path(diskFile)
	size, err := d.DiskSize(disk)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := d.CreateDisk(ctx, disk, m.Config.DiskBytes); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("machine %s: %w", m.Name, err)
	case size < m.Config.DiskBytes:
		// Grown while QEMU is not running; the agent grows the file
		// system to match once it has mounted it.
		if err := d.ResizeDisk(ctx, disk, m.Config.DiskBytes); err != nil {
			return fmt.Errorf("machine %s: grow the data disk to %s: %w", m.Name, FormatSize(m.Config.DiskBytes), err)
		}
	}
	caps := d.Capabilities()
	hostShares, guestShares, err := m.bootShares(caps)
	if err != nil {
		return err
	}
	dataRoot := config.DefaultDataRoot
	bc := &bootconfig.Config{
		Hostname:       "devbox",
		AuthorizedKeys: []string{strings.TrimSpace(string(k.authorizedKey()))},
		Time:           time.Now().UnixNano(),
		Network:        bootconfig.QEMUUserNetwork(),
		DataDisk:       "/dev/vda",
		DataRoot:       dataRoot,
		Transport:      caps.Transport,
		Ports:          caps.AgentPorts,
		Shares:         guestShares,
	}
	initrd := m.path(initrdFile)
	if err := writeInitrd(initrd, img.InitramfsPath(), bc, k.hostKeyPEM); err != nil {
		return fmt.Errorf("machine %s: write boot archive: %w", m.Name, err)
	}
	cmdline := "quiet cryptomgr.notests random.trust_cpu=on panic=-1 " + img.Cmdline
	if o.Debug {
		cmdline += " devbox.debug=1"
	}
	err = d.Start(ctx, hypervisor.Config{
		CPUs:      m.Config.CPUs,
		MemoryMiB: m.Config.MemoryMiB,
		Kernel:    img.KernelPath(),
		Initramfs: initrd,
		Cmdline:   strings.TrimSpace(cmdline),
		DataDisk:  disk,
		Shares:    hostShares,
	})
	if err != nil {
		return fmt.Errorf("machine %s: %w", m.Name, err)
	}
	return m.saveState(state{Booted: time.Now().UTC(), GuestDigest: img.Initramfs.Digest, Shares: guestShares})
}

// checkShrink refuses a --disk size below the machine's disk: neither
// the disk image nor ext4 online can shrink.
func (m *Machine) checkShrink(d hypervisor.Driver, want int64) error {
	if want <= 0 {
		return nil
	}
	cur, err := d.DiskSize(m.path(diskFile))
	if err != nil || (want+511)&^511 >= cur || FormatSize(want) == FormatSize(cur) {
		// No disk yet (or none readable, which boot reports), or the
		// size this error would tell the user to keep.
		return nil
	}
	return fmt.Errorf("machine %s has a %s disk and shrinking it is not supported: keep --disk %s (or leave --disk out), or devbox destroy (which deletes its images and containers) and devbox up --disk %s",
		m.Name, FormatSize(cur), FormatSize(cur), FormatSize(want))
}

// hostDiskFull turns a host file system out of space into one line that
// names the file and says what to do; other errors pass through.
func (m *Machine) hostDiskFull(err error) error {
	if err == nil || !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	file := m.Dir
	var pe *fs.PathError
	if errors.As(err, &pe) {
		file = strings.TrimSuffix(pe.Path, ".tmp")
	}
	return fmt.Errorf("machine %s: cannot write %s: the host disk is full (%w): free some space there and run devbox up again", m.Name, file, syscall.ENOSPC)
}

// IsGuestImageRef says whether a --guest-image value names a registry
// reference rather than a directory: paths start with /, ., ~ (or a
// drive letter on Windows).
func IsGuestImageRef(s string) bool {
	if s == "" || strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") || strings.HasPrefix(s, "~") || filepath.IsAbs(s) {
		return false
	}
	return true
}

// guestImage finds and checks the guest image the machine boots. A guest
// image given by reference is pulled into the machine directory, verified
// by digest, when asked for again (pull) or not there yet; later boots use
// that copy, checked again by Load.
func (m *Machine) guestImage(ctx context.Context, pull bool) (*guest.Image, error) {
	ref := m.Config.GuestImage
	if !IsGuestImageRef(ref) {
		return guest.Find(m.Config.Arch, ref)
	}
	dir := m.path("guest")
	if !pull {
		if img, err := guest.Load(dir); err == nil {
			return img, nil
		}
	}
	return guest.Pull(ctx, ref, dir, guest.RemoteOptions{Arch: m.Config.Arch})
}

// writeInitrd writes the guest image's initramfs followed by a small
// archive with this machine's boot config, host key and a random seed:
// the kernel unpacks concatenated archives in order.
func writeInitrd(path, base string, bc *bootconfig.Config, hostKeyPEM []byte) error {
	cfg, err := bc.Marshal()
	if err != nil {
		return err
	}
	seed := make([]byte, 512)
	if _, err := rand.Read(seed); err != nil {
		return err
	}
	var overlay bytes.Buffer
	w := initramfs.NewWriter(&overlay)
	for _, f := range []struct {
		name string
		data []byte
	}{
		{bootconfig.Path, cfg},
		{bootconfig.HostKeyPath, hostKeyPEM},
		{bootconfig.SeedPath, seed},
	} {
		if err := w.File(f.name, 0o600, f.data); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	src, err := os.Open(base)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := path + ".tmp"
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(dst, src)
	if err == nil && n%4 != 0 {
		// Each archive must start 4-byte aligned.
		_, err = dst.Write(make([]byte, 4-n%4))
	}
	if err == nil {
		_, err = dst.Write(overlay.Bytes())
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// handshakeTimeout bounds an SSH login once the agent has said Hello.
const handshakeTimeout = 20 * time.Second

// waitAgent waits until the agent answers over SSH, or the VM stops, or
// timeout passes; failures show the tail of the console log.
func (m *Machine) waitAgent(ctx context.Context, d hypervisor.Driver, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	k, err := m.loadKeys()
	if err != nil {
		return err
	}
	for {
		// A hello unanswered in 2 s is tried again (the guest may not
		// have its ports open yet); a handshake under way gets its time.
		hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
		sctx, scancel := context.WithTimeout(ctx, handshakeTimeout)
		c, err := m.client(sctx, hctx, d, k)
		scancel()
		hcancel()
		if err == nil {
			c.Close()
			return nil
		}
		if d.PID() == 0 {
			return fmt.Errorf("machine %s stopped while booting; console log %s ends:\n%s\n%s ends:\n%s", m.Name, d.ConsoleLog(), tail(d.ConsoleLog(), 15), d.Log(), tail(d.Log(), 5))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("machine %s: the guest agent did not answer within %s; console log %s ends:\n%s", m.Name, timeout, d.ConsoleLog(), tail(d.ConsoleLog(), 15))
		}
	}
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (no console log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
