package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// mke2fsPath and resize2fsPath are where the guest image packs e2fsprogs'
// mke2fs and resize2fs.
const (
	mke2fsPath    = "/sbin/mke2fs"
	resize2fsPath = "/sbin/resize2fs"
)

// growSlack is how much larger than its file system the disk must be for
// the agent to grow it: resize2fs leaves a tail too small for a block
// group unused, which must not make every boot run it again.
const growSlack = 16 << 20

// DiskStatus tells the host what became of the data disk.
type DiskStatus struct {
	Device    string `json:"device"`
	Root      string `json:"root"`
	Mounted   bool   `json:"mounted"`
	Formatted bool   `json:"formatted"` // formatted at this boot
	// GrownFrom is the file system's size in bytes before this boot grew
	// it to fill a larger disk; 0 when it was not grown.
	GrownFrom int64  `json:"grownFrom,omitempty"`
	Error     string `json:"error,omitempty"`
}

// setUpDataDisk waits for dev, formats it when it is blank, mounts it at
// root, and grows the file system when the disk was grown (devbox up
// --disk). A disk that holds anything but ext4, or whose file system does
// not mount, is left alone: its data matter more than this boot.
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
	from, err := growFS(ctx, log, resize2fsPath, dev)
	if err != nil {
		// The disk is mounted and usable at its old size: say so, and
		// go on.
		log.Warnf("%v; the data disk keeps its old size", err)
		return st, nil
	}
	st.GrownFrom = from
	return st, nil
}

// growFS grows the mounted ext4 file system on dev to fill dev, online,
// when dev is larger by more than growSlack. It returns the file system's
// former size, or 0 when there was nothing to do.
func growFS(ctx context.Context, log *logger, resize2fs, dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, fmt.Errorf("grow %s: %w", dev, err)
	}
	devSize, err := f.Seek(0, io.SeekEnd)
	var fsSize int64
	if err == nil {
		fsSize, err = ext4Size(f)
	}
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("grow %s: %w", dev, err)
	}
	if devSize-fsSize <= growSlack {
		return 0, nil
	}
	start := time.Now()
	// Online: resize2fs finds the mount point in /proc/mounts and has
	// the kernel add the block groups.
	out, err := exec.CommandContext(ctx, resize2fs, dev).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("resize2fs %s: %w: %s", dev, err, strings.Join(strings.Fields(string(out)), " "))
	}
	log.Infof("grew the data disk's file system from %d MiB to fill its %d MiB in %v", fsSize>>20, devSize>>20, time.Since(start).Round(time.Millisecond))
	return fsSize, nil
}

// ext4Size reads the size in bytes of the ext2/3/4 file system whose
// superblock r holds (1024 bytes in): its block count times its block
// size, the count's high half only with the 64bit feature.
func ext4Size(r io.ReaderAt) (int64, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return 0, fmt.Errorf("read the superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != ext4Magic {
		return 0, errors.New("no ext2/3/4 superblock")
	}
	const incompat64bit = 0x80
	blocks := uint64(le.Uint32(sb[0x04:]))
	if le.Uint32(sb[0x60:])&incompat64bit != 0 {
		blocks |= uint64(le.Uint32(sb[0x150:])) << 32
	}
	logSize := le.Uint32(sb[0x18:])
	if logSize > 6 { // 64 KiB blocks at most
		return 0, fmt.Errorf("implausible block size 2^(10+%d)", logSize)
	}
	return int64(blocks) << (10 + logSize), nil
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
