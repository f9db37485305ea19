package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// qcow2Magic opens every qcow2 image ("QFI\xfb"); the image's virtual size
// is the big-endian uint64 at qcow2SizeOffset.
const (
	qcow2Magic      = 0x514649fb
	qcow2SizeOffset = 24
)

// DiskSize implements hypervisor.Driver: the qcow2's virtual size, read
// from its header (cheap enough for every `devbox status`, and it works
// while QEMU holds the image, which `qemu-img info` does not without -U).
func (d *Driver) DiskSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("disk size: %w", err)
	}
	defer f.Close()
	var h [qcow2SizeOffset + 8]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return 0, fmt.Errorf("disk size of %s: not a qcow2 image: %w", path, err)
	}
	if binary.BigEndian.Uint32(h[:4]) != qcow2Magic {
		return 0, fmt.Errorf("disk size of %s: not a qcow2 image", path)
	}
	size := binary.BigEndian.Uint64(h[qcow2SizeOffset:])
	if size > 1<<62 {
		return 0, fmt.Errorf("disk size of %s: implausible virtual size %d", path, size)
	}
	return int64(size), nil
}

// ResizeDisk implements hypervisor.Driver with `qemu-img resize`, which
// only writes the qcow2's header and tables: it takes no time and no host
// space for the added size. QEMU must not have the image open.
func (d *Driver) ResizeDisk(ctx context.Context, path string, size int64) error {
	cur, err := d.DiskSize(path)
	if err != nil {
		return err
	}
	size = (size + 511) &^ 511
	switch {
	case size == cur:
		return nil
	case size < cur:
		return fmt.Errorf("resize disk %s: %d bytes is smaller than its %d: shrinking is not supported", path, size, cur)
	}
	img, err := qemuImg()
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, img, "resize", "-q", "-f", "qcow2", path, strconv.FormatInt(size, 10)).CombinedOutput()
	if err != nil {
		return diskError("resize disk", path, err, out)
	}
	return nil
}

// diskError is a failed qemu-img run on path. qemu-img says only in words
// that the host's disk is full; that becomes ENOSPC, which callers can
// test for with errors.Is.
func diskError(op, path string, err error, out []byte) error {
	out = bytes.TrimSpace(out)
	if bytes.Contains(out, []byte("No space left on device")) {
		return &fs.PathError{Op: op, Path: path, Err: syscall.ENOSPC}
	}
	return fmt.Errorf("%s %s: %v: %s", op, path, err, out)
}
