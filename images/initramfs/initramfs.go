// Package initramfs writes Linux initramfs archives: cpio in the "newc"
// format (magic 070701) that the kernel unpacks into its root filesystem at
// boot.
//
// Archives are reproducible: entries appear in the order the caller writes
// them (parent directories the caller did not write come just before their
// first child, with mode 0755), every entry is owned by 0:0 and stamped with
// one fixed modification time (the Unix epoch unless SetModTime says
// otherwise), inode numbers count up from 1 in write order, and regular
// files have one link. The same calls therefore give the same bytes.
//
// Several archives may be concatenated; the kernel unpacks them in order, a
// later entry replacing an earlier one of the same name. That is how the
// host adds per-machine files to a shared guest image.
package initramfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
)

const (
	magic      = "070701"
	headerSize = 110
	trailer    = "TRAILER!!!"
	// blockSize is what Close pads the archive to, as GNU cpio does; any
	// multiple of 4 keeps a concatenated archive aligned.
	blockSize = 512
	// maxFileSize is the largest size newc's 32-bit field can hold.
	maxFileSize = 1<<32 - 1
)

// File type bits of a cpio mode (as in stat(2)).
const (
	typeDir     = 0o040000
	typeRegular = 0o100000
	typeSymlink = 0o120000
	typeChar    = 0o020000
)

// Writer writes one newc archive. Its methods are not safe for concurrent
// use. A call refused for its arguments writes nothing and leaves the
// Writer usable; after a failed write every later call returns that error,
// since a half-written entry cannot be taken back.
type Writer struct {
	w       io.Writer
	written int64
	ino     uint32
	mtime   uint32
	// kinds records each name written so far (without leading slash) and
	// its file type, to create missing parents once and refuse names that
	// would reach through a file or symlink.
	kinds  map[string]uint32
	err    error
	closed bool
}

// NewWriter returns a Writer that writes an archive to w. Close writes the
// archive's trailer; it does not close w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, kinds: map[string]uint32{}}
}

// SetModTime sets the modification time of the entries written after it
// (for SOURCE_DATE_EPOCH); the default is the Unix epoch. Times before the
// epoch or past 2106 do not fit the format and are refused.
func (w *Writer) SetModTime(t time.Time) error {
	s := t.Unix()
	if s < 0 || s > 1<<32-1 {
		return fmt.Errorf("initramfs: modification time %v does not fit a newc archive", t)
	}
	w.mtime = uint32(s)
	return nil
}

// Dir adds a directory. name is relative to the archive's root; a leading
// slash is allowed and means the same. Writing a directory that already is
// one in this archive (such as an implied parent) sets its mode again.
func (w *Writer) Dir(name string, mode fs.FileMode) error {
	if mode.Type() != 0 && mode.Type() != fs.ModeDir {
		return fmt.Errorf("initramfs: directory %s: mode %v is not a directory's", name, mode)
	}
	n, err := w.prepare(name, typeDir)
	if err != nil || n == "" {
		return err
	}
	return w.entry(n, typeDir|unixPerm(mode), 2, 0, 0, nil, 0)
}

// File adds a regular file holding data.
func (w *Writer) File(name string, mode fs.FileMode, data []byte) error {
	return w.FileFrom(name, mode, int64(len(data)), bytes.NewReader(data))
}

// FileFrom adds a regular file of size bytes read from r. r must supply at
// least size bytes; the rest of it is not read.
func (w *Writer) FileFrom(name string, mode fs.FileMode, size int64, r io.Reader) error {
	if mode.Type() != 0 {
		return fmt.Errorf("initramfs: file %s: mode %v is not a regular file's", name, mode)
	}
	if size < 0 || size > maxFileSize {
		return fmt.Errorf("initramfs: file %s: size %d does not fit a newc archive (at most 4 GiB - 1)", name, size)
	}
	n, err := w.prepare(name, typeRegular)
	if err != nil {
		return err
	}
	if n == "" {
		return fmt.Errorf("initramfs: file %q: the root is a directory", name)
	}
	return w.entry(n, typeRegular|unixPerm(mode), 1, 0, 0, r, size)
}

// Symlink adds a symbolic link at name pointing to target. The target is
// stored as given: an absolute target is resolved inside the booted system.
func (w *Writer) Symlink(name, target string) error {
	if target == "" || strings.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("initramfs: symlink %s: invalid target %q", name, target)
	}
	n, err := w.prepare(name, typeSymlink)
	if err != nil {
		return err
	}
	if n == "" {
		return fmt.Errorf("initramfs: symlink %q: the root is a directory", name)
	}
	return w.entry(n, typeSymlink|0o777, 1, 0, 0, strings.NewReader(target), int64(len(target)))
}

// CharDevice adds a character device node, such as /dev/console (5, 1),
// which the kernel opens for init's standard streams before anything can
// mount devtmpfs.
func (w *Writer) CharDevice(name string, mode fs.FileMode, major, minor uint32) error {
	if mode.Type()&^(fs.ModeDevice|fs.ModeCharDevice) != 0 {
		return fmt.Errorf("initramfs: device %s: mode %v is not a character device's", name, mode)
	}
	n, err := w.prepare(name, typeChar)
	if err != nil {
		return err
	}
	if n == "" {
		return fmt.Errorf("initramfs: device %q: the root is a directory", name)
	}
	return w.entry(n, typeChar|unixPerm(mode), 1, major, minor, nil, 0)
}

// Close writes the trailer and pads the archive to a multiple of 512
// bytes. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	if err := w.header(trailer, 0, 0, 1, 0, 0, 0); err != nil {
		return err
	}
	if err := w.pad(blockSize); err != nil {
		return err
	}
	w.closed = true
	return nil
}

// Written is how many bytes the archive holds so far.
func (w *Writer) Written() int64 { return w.written }

// prepare checks name, writes the parents it lacks and records it. It
// returns the archive name ("" for the root, which needs no entry). It
// checks everything before writing anything, so a refused name leaves the
// archive as it was.
func (w *Writer) prepare(name string, kind uint32) (string, error) {
	if w.err != nil {
		return "", w.err
	}
	if w.closed {
		return "", errors.New("initramfs: write after Close")
	}
	n, err := Clean(name)
	if err != nil || n == "" {
		return "", err
	}
	if prev, ok := w.kinds[n]; ok && !(prev == typeDir && kind == typeDir) {
		return "", fmt.Errorf("initramfs: %s written twice in one archive", n)
	}
	for i := 0; i < len(n); i++ {
		if n[i] != '/' {
			continue
		}
		if k, ok := w.kinds[n[:i]]; ok && k != typeDir {
			// The kernel would follow a symlink here, and a file cannot
			// hold children.
			return "", fmt.Errorf("initramfs: %s: parent %s is not a directory", n, n[:i])
		}
	}
	for i := 0; i < len(n); i++ {
		if n[i] != '/' {
			continue
		}
		parent := n[:i]
		if _, ok := w.kinds[parent]; !ok {
			if err := w.entry(parent, typeDir|0o755, 2, 0, 0, nil, 0); err != nil {
				return "", err
			}
			w.kinds[parent] = typeDir
		}
	}
	w.kinds[n] = kind
	return n, nil
}

// Clean turns a name as callers write it ("/etc/passwd", "etc/passwd") into
// the one the archive holds ("etc/passwd"; "" for the root). Names that
// climb with "..", hold "." or empty elements or NUL bytes are refused, so
// nothing can land outside the root it is unpacked into.
func Clean(name string) (string, error) {
	n := strings.TrimPrefix(name, "/")
	if n == "" {
		return "", nil
	}
	if !fs.ValidPath(n) || strings.IndexByte(n, 0) >= 0 || n == "." {
		return "", fmt.Errorf("initramfs: unsafe name %q: want a path without \"..\", \".\" or empty elements", name)
	}
	if n == trailer {
		return "", fmt.Errorf("initramfs: name %q would end the archive", name)
	}
	return n, nil
}

// entry writes one header, name and (if size > 0) data from r.
func (w *Writer) entry(name string, mode, nlink, rmajor, rminor uint32, r io.Reader, size int64) error {
	w.ino++
	if err := w.header(name, w.ino, mode, nlink, uint32(size), rmajor, rminor); err != nil {
		return err
	}
	if size == 0 {
		return nil
	}
	n, err := io.CopyN(w.w, r, size)
	w.written += n
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return w.fail(fmt.Errorf("initramfs: %s: %w", name, err))
	}
	return w.pad(4)
}

func (w *Writer) header(name string, ino, mode, nlink, size, rmajor, rminor uint32) error {
	var b strings.Builder
	b.Grow(headerSize + len(name) + 4)
	b.WriteString(magic)
	for _, v := range [...]uint32{
		ino, mode, 0 /* uid */, 0 /* gid */, nlink, w.mtime, size,
		0, 0, /* dev major, minor: one filesystem */
		rmajor, rminor,
		uint32(len(name) + 1),
		0, /* check: unused by newc */
	} {
		fmt.Fprintf(&b, "%08x", v)
	}
	b.WriteString(name)
	b.WriteByte(0)
	for (b.Len())%4 != 0 {
		b.WriteByte(0)
	}
	return w.write([]byte(b.String()))
}

// pad writes zeros up to the next multiple of n, counted from the start of
// the archive.
func (w *Writer) pad(n int64) error {
	if r := w.written % n; r != 0 {
		return w.write(make([]byte, n-r))
	}
	return nil
}

func (w *Writer) write(b []byte) error {
	n, err := w.w.Write(b)
	w.written += int64(n)
	if err != nil {
		return w.fail(fmt.Errorf("initramfs: write: %w", err))
	}
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// unixPerm converts the permission and special bits of mode to stat(2)'s.
func unixPerm(mode fs.FileMode) uint32 {
	m := uint32(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}
