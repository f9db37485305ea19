package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// mke2fsPath is where the guest image packs e2fsprogs' mke2fs.
const mke2fsPath = "/sbin/mke2fs"

// DiskStatus tells the host what became of the data disk.
type DiskStatus struct {
	Device    string `json:"device"`
	Root      string `json:"root"`
	Mounted   bool   `json:"mounted"`
	Formatted bool   `json:"formatted"` // formatted at this boot
	Error     string `json:"error,omitempty"`
}

// setUpDataDisk waits for dev, formats it when it is blank, and mounts
// it at root. A disk that holds anything but ext4, or whose file system
// does not mount, is left alone: its data matter more than this boot.
func setUpDataDisk(ctx context.Context, log *logger, dev, root string) (st DiskStatus, err error) {
	st = DiskStatus{Device: dev, Root: root}
	defer func() {
		if err != nil {
			st.Error = err.Error()
		}
	}()
	if err := waitForFile(ctx, dev, 10*time.Second); err != nil {
		return st, err
	}
	f, err := os.Open(dev)
	if err != nil {
		return st, fmt.Errorf("open %s: %w", dev, err)
	}
	kind, err := probeDisk(f)
	f.Close()
	if err != nil {
		return st, fmt.Errorf("read %s: %w", dev, err)
	}
	switch kind {
	case diskUnknown:
		return st, fmt.Errorf("%s holds data that is not an ext4 file system: not formatting it, going on without a data disk", dev)
	case diskBlank:
		log.Infof("formatting the data disk %s (ext4)", dev)
		start := time.Now()
		out, err := exec.CommandContext(ctx, mke2fsPath, "-q", "-t", "ext4", "-F",
			"-E", "lazy_itable_init=1,lazy_journal_init=1", "-L", "devbox-data", dev).CombinedOutput()
		if err != nil {
			return st, fmt.Errorf("mke2fs %s: %w: %s", dev, err, bytes.TrimSpace(out))
		}
		st.Formatted = true
		log.Debugf("mke2fs %s took %v", dev, time.Since(start).Round(time.Millisecond))
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return st, fmt.Errorf("mkdir %s: %w", root, err)
	}
	// discard: the host's disk image shrinks as the guest deletes.
	if err := unix.Mount(dev, root, "ext4", unix.MS_NOATIME, "discard"); err != nil {
		return st, fmt.Errorf("mount %s (ext4) on %s: %w; its data are left as they are, going on without a data disk", dev, root, err)
	}
	st.Mounted = true
	return st, nil
}

// unmountDataDisk syncs and unmounts root, or, when something still uses
// it, makes it read-only so nothing more is written before power-off.
func unmountDataDisk(root string) error {
	unix.Sync()
	err := unix.Unmount(root, 0)
	if err == nil || err == unix.EINVAL {
		return nil
	}
	if rerr := unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); rerr != nil {
		return fmt.Errorf("unmount %s: %v; remount read-only: %w", root, err, rerr)
	}
	return nil
}

// waitForFile waits until path exists: device nodes appear in devtmpfs
// asynchronously, after the driver finds the device.
func waitForFile(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := os.Stat(path)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// isMountPoint says whether path is a mount point, per /proc/self/mounts.
func isMountPoint(path string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[1] == path {
			return true
		}
	}
	return false
}
