// Package layerfs is a read-only [io/fs] view of an image's layer
// directories merged the way overlayfs merges them, without mounting
// anything. The engine reads an image's /etc/passwd and /etc/group through it
// before the container starts.
//
// Layers are in the form images/unpack writes: whiteouts are 0/0 character
// devices and opaque directories carry trusted.overlay.opaque=y. A name is
// looked up from the top layer down: a whiteout hides it and everything below;
// an opaque directory hides lower layers' contents of that directory; a
// non-directory hides everything below it at that path. As in overlayfs, an
// opaque mark on a layer's root directory is ignored.
//
// Symbolic links inside the image are followed inside the image: absolute
// targets start again at the image root, ".." never climbs above it, and
// more than 40 links in one lookup fail with ELOOP. Every path on the host is
// checked component by component with lstat, so no lookup ever leaves the
// layer directories.
package layerfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	opaqueXattr = "trusted.overlay.opaque"
	// maxSymlinks is the kernel's limit on links followed in one lookup.
	maxSymlinks = 40
)

// layerFS implements fs.FS, fs.StatFS, fs.ReadFileFS, fs.ReadDirFS and
// fs.ReadLinkFS.
type layerFS struct {
	layers []string // top-most first
	root   *node

	mu   sync.Mutex
	dirs map[string]*node // merged directories looked up so far; layers never change
}

// New returns the merged view of layers, given lowest first (the order of an
// image manifest). Nothing is read until the file system is used. A layer
// directory that does not exist reads as an empty layer (overlayfs would
// refuse to mount it; the image store is the place to notice).
func New(layers []string) fs.FS {
	top := make([]string, len(layers))
	idx := make([]int, len(layers))
	for i, l := range layers {
		top[len(layers)-1-i] = l
		idx[i] = i
	}
	// overlayfs never treats a layer's root as opaque.
	return &layerFS{layers: top, root: &node{layers: idx, visible: len(idx) - 1}}
}

// node is one merged entry.
type node struct {
	path string      // clean image path relative to the root, "" for the root
	info fs.FileInfo // lstat of the top-most entry; nil for the root

	// layers hold the entry, top-most first; more than one only for a
	// directory. Whether a directory is opaque is read only when a lookup
	// has to go below it: layers[:visible+1] are known to show, and the
	// rest until a directory above them turns out opaque. Guarded by
	// layerFS.mu once the node is shared.
	layers  []int
	visible int
}

func (n *node) isDir() bool { return n.info == nil || n.info.IsDir() }

func (fsys *layerFS) host(layer int, p string) string {
	if p == "" {
		return fsys.layers[layer]
	}
	return fsys.layers[layer] + "/" + p
}

// info returns n's FileInfo, reading the root's from the top layer.
func (fsys *layerFS) info(op, name string, n *node) (fs.FileInfo, error) {
	if n.info != nil {
		return named(n.info, name), nil
	}
	if len(fsys.layers) == 0 {
		return nil, &fs.PathError{Op: op, Path: name, Err: errors.New("no layers")}
	}
	fi, err := os.Stat(fsys.layers[0])
	if err == nil && !fi.IsDir() {
		err = syscall.ENOTDIR
	}
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: unwrapPathError(err)}
	}
	return named(fi, name), nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

// child looks name up in the merged directory dir.
func (fsys *layerFS) child(dir *node, name string) (*node, error) {
	p := name
	if dir.path != "" {
		p = dir.path + "/" + name
	}
	fsys.mu.Lock()
	n := fsys.dirs[p]
	fsys.mu.Unlock()
	if n != nil {
		return n, nil
	}
	for i := 0; ; i++ {
		l := fsys.layerAt(dir, i)
		if l < 0 {
			break
		}
		fi, err := os.Lstat(fsys.host(l, p))
		if errors.Is(err, fs.ErrNotExist) {
			continue // this layer does not have it; lower ones may
		}
		if err != nil {
			return nil, unwrapPathError(err)
		}
		if isWhiteout(fi) {
			break // deleted here: nothing below shows through
		}
		if n == nil {
			n = &node{path: p, layers: []int{l}, info: fi}
		} else if fi.IsDir() {
			n.layers = append(n.layers, l)
		}
		if !fi.IsDir() {
			break // a non-directory hides everything below it
		}
	}
	if n == nil {
		return nil, fs.ErrNotExist
	}
	if n.isDir() {
		fsys.mu.Lock()
		if fsys.dirs == nil {
			fsys.dirs = make(map[string]*node)
		}
		fsys.dirs[p] = n
		fsys.mu.Unlock()
	}
	return n, nil
}

// layerAt returns the i-th layer (top-most first) of the merged directory
// n, or -1 if it has fewer: an opaque directory hides the layers below it.
func (fsys *layerFS) layerAt(n *node, i int) int {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	for n.visible < i && n.visible < len(n.layers)-1 {
		if isOpaque(fsys.host(n.layers[n.visible], n.path)) {
			n.layers = n.layers[:n.visible+1]
			break
		}
		n.visible++
	}
	if i <= n.visible && i < len(n.layers) {
		return n.layers[i]
	}
	return -1
}

func isWhiteout(fi fs.FileInfo) bool {
	if fi.Mode()&fs.ModeCharDevice == 0 || fi.Mode()&fs.ModeDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 0
}

func isOpaque(hostPath string) bool {
	var v [1]byte
	n, err := unix.Lgetxattr(hostPath, opaqueXattr, v[:])
	return err == nil && n == 1 && v[0] == 'y'
}

// resolve walks name (an fs.ValidPath) from the root, following symbolic
// links inside the image; the last component's link is followed only if
// follow is set.
func (fsys *layerFS) resolve(op, name string, follow bool) (*node, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	stack := []*node{fsys.root} // resolved directories from the root down
	rest := name
	if rest == "." {
		rest = ""
	}
	links := 0
	for rest != "" {
		var comp string
		comp, rest, _ = strings.Cut(rest, "/")
		switch comp {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		cur := stack[len(stack)-1]
		if !cur.isDir() {
			return nil, &fs.PathError{Op: op, Path: name, Err: syscall.ENOTDIR}
		}
		n, err := fsys.child(cur, comp)
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if n.info.Mode()&fs.ModeSymlink != 0 && (rest != "" || follow) {
			if links++; links > maxSymlinks {
				return nil, &fs.PathError{Op: op, Path: name, Err: syscall.ELOOP}
			}
			target, err := os.Readlink(fsys.host(n.layers[0], n.path))
			if err != nil {
				return nil, &fs.PathError{Op: op, Path: name, Err: unwrapPathError(err)}
			}
			if target == "" {
				return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
			}
			if target[0] == '/' {
				stack = stack[:1]
			}
			if rest != "" {
				target += "/" + rest
			}
			rest = target
			continue
		}
		stack = append(stack, n)
	}
	return stack[len(stack)-1], nil
}

// named returns info under the base name of name, as os.Stat does for a
// path that went through symbolic links.
func named(info fs.FileInfo, name string) fs.FileInfo {
	base := path.Base(name)
	if info.Name() == base {
		return info
	}
	return renamed{info, base}
}

type renamed struct {
	fs.FileInfo
	name string
}

func (r renamed) Name() string { return r.name }

// Open opens the named file for reading; a symbolic link is followed.
func (fsys *layerFS) Open(name string) (fs.File, error) {
	n, err := fsys.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	info, err := fsys.info("open", name, n)
	if err != nil {
		return nil, err
	}
	switch {
	case n.isDir():
		return &dirFile{fsys: fsys, n: n, name: name, info: info}, nil
	case n.info.Mode().IsRegular():
		f, err := openRegular(fsys.host(n.layers[0], n.path))
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: unwrapPathError(err)}
		}
		return &regFile{f: f, name: name, info: info}, nil
	default:
		// A device, FIFO or socket: its metadata is readable, its content is
		// not (opening a FIFO would block).
		return &specialFile{name: name, info: info}, nil
	}
}

func openRegular(hostPath string) (*os.File, error) {
	return os.OpenFile(hostPath, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
}

// Stat returns the FileInfo of the named file, following a symbolic link.
func (fsys *layerFS) Stat(name string) (fs.FileInfo, error) {
	n, err := fsys.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	return fsys.info("stat", name, n)
}

// Lstat returns the FileInfo of the named file without following a final
// symbolic link.
func (fsys *layerFS) Lstat(name string) (fs.FileInfo, error) {
	n, err := fsys.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return fsys.info("lstat", name, n)
}

// ReadLink returns the target of the named symbolic link as stored in the
// image (an absolute target is relative to the image root).
func (fsys *layerFS) ReadLink(name string) (string, error) {
	n, err := fsys.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if n.info == nil || n.info.Mode()&fs.ModeSymlink == 0 {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	target, err := os.Readlink(fsys.host(n.layers[0], n.path))
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: unwrapPathError(err)}
	}
	return target, nil
}

// ReadFile reads the named regular file, following symbolic links.
func (fsys *layerFS) ReadFile(name string) ([]byte, error) {
	n, err := fsys.resolve("read", name, true)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: syscall.EISDIR}
	}
	if !n.info.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrInvalid}
	}
	data, err := readRegular(fsys.host(n.layers[0], n.path), n.info.Size())
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return data, nil
}

// readRegular reads a regular file of about size bytes. It uses the file
// descriptor directly: an *os.File would register it with the poller, which
// costs more system calls than the read.
func readRegular(hostPath string, size int64) ([]byte, error) {
	fd, err := unix.Open(hostPath, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	// One read does for a file that has not grown since the lstat: a short
	// read of a regular file is its end.
	data := make([]byte, size+512)
	n := 0
	for {
		m, err := unix.Read(fd, data[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		n += m
		if m == 0 || n < len(data) {
			return data[:n], nil
		}
		data = slices.Grow(data, len(data))[:2*len(data)]
	}
}

// ReadDir reads the named merged directory, following symbolic links, and
// returns its entries sorted by name.
func (fsys *layerFS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := fsys.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: syscall.ENOTDIR}
	}
	entries, err := fsys.readDir(n)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	return entries, nil
}

// readDir merges the entries of every layer of the directory n: the
// top-most layer holding a name decides it, and a whiteout there hides it.
func (fsys *layerFS) readDir(n *node) ([]fs.DirEntry, error) {
	var out []fs.DirEntry
	var seen map[string]struct{}
	for i := 0; ; i++ {
		l := fsys.layerAt(n, i)
		if l < 0 {
			break
		}
		f, err := os.OpenFile(fsys.host(l, n.path), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return nil, unwrapPathError(err)
		}
		entries, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			return nil, unwrapPathError(err)
		}
		more := fsys.layerAt(n, i+1) >= 0
		if more && seen == nil {
			seen = make(map[string]struct{})
		}
		for _, e := range entries {
			if seen != nil {
				if _, ok := seen[e.Name()]; ok {
					continue
				}
				if more {
					seen[e.Name()] = struct{}{}
				}
			}
			if e.Type()&fs.ModeCharDevice != 0 {
				info, err := e.Info()
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return nil, unwrapPathError(err)
				}
				if isWhiteout(info) {
					continue
				}
			}
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// regFile is an open regular file.
type regFile struct {
	f    *os.File
	name string
	info fs.FileInfo
}

func (f *regFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *regFile) Read(b []byte) (int, error) { return f.f.Read(b) }
func (f *regFile) ReadAt(b []byte, off int64) (int, error) {
	return f.f.ReadAt(b, off)
}
func (f *regFile) Seek(off int64, whence int) (int64, error) { return f.f.Seek(off, whence) }
func (f *regFile) Close() error                              { return f.f.Close() }

// specialFile is an open device, FIFO or socket: Stat only.
type specialFile struct {
	name   string
	info   fs.FileInfo
	closed bool
}

func (s *specialFile) Stat() (fs.FileInfo, error) { return s.info, nil }
func (s *specialFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: s.name, Err: fs.ErrInvalid}
}
func (s *specialFile) Close() error {
	if s.closed {
		return &fs.PathError{Op: "close", Path: s.name, Err: fs.ErrClosed}
	}
	s.closed = true
	return nil
}

// dirFile is an open merged directory.
type dirFile struct {
	fsys    *layerFS
	n       *node
	name    string
	info    fs.FileInfo
	entries []fs.DirEntry
	read    bool // entries loaded
	off     int
	closed  bool
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }

func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: syscall.EISDIR}
}

func (d *dirFile) Close() error {
	if d.closed {
		return &fs.PathError{Op: "close", Path: d.name, Err: fs.ErrClosed}
	}
	d.closed = true
	return nil
}

// ReadDir returns the next count entries in name order, as fs.ReadDirFile
// describes.
func (d *dirFile) ReadDir(count int) ([]fs.DirEntry, error) {
	if d.closed {
		return nil, &fs.PathError{Op: "readdir", Path: d.name, Err: fs.ErrClosed}
	}
	if !d.read {
		entries, err := d.fsys.readDir(d.n)
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: d.name, Err: err}
		}
		d.entries, d.read = entries, true
	}
	rest := d.entries[d.off:]
	if count > 0 && len(rest) == 0 {
		return nil, io.EOF
	}
	if count > 0 && count < len(rest) {
		rest = rest[:count]
	}
	d.off += len(rest)
	return slices.Clone(rest), nil
}

// Interface checks.
var (
	_ fs.StatFS      = (*layerFS)(nil)
	_ fs.ReadFileFS  = (*layerFS)(nil)
	_ fs.ReadDirFS   = (*layerFS)(nil)
	_ fs.ReadLinkFS  = (*layerFS)(nil)
	_ fs.ReadDirFile = (*dirFile)(nil)
	_ io.ReaderAt    = (*regFile)(nil)
	_ io.Seeker      = (*regFile)(nil)
)
