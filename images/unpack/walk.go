package unpack

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// dirFlags opens one path component as a directory without following it: a
// symlink fails with ENOTDIR, so nothing resolves outside the layer however
// the tar arranges its symlinks.
const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openDir is one open directory of the walk stack.
type openDir struct {
	name string // one path component
	fd   int
}

// walker resolves parent directories inside the layer, one component at a
// time with openat(O_NOFOLLOW), which is race-free and needs no openat2. It
// keeps the chain of directories it opened last: tars list a directory's
// entries together, so most entries need no syscall to find their parent.
//
// The stack is always the chain from the root to the parent of the entry
// being applied (plus, after a directory entry, that directory). Whatever
// replaces a path is applied after resolving the path's parent, which pops
// the path off the stack first, so no stale descriptor is ever used.
type walker struct {
	root    int
	stack   []openDir
	created func(path string) // told of each directory resolve creates
	// queued, if set, reports whether a file was handed to a writer to
	// create at path, after waiting for it to be written: a component
	// found missing may be just that file, and must be looked at again.
	queued func(path string) bool
}

// fdAt returns the descriptor of the directory depth components deep.
func (w *walker) fdAt(depth int) int {
	if depth == 0 {
		return w.root
	}
	return w.stack[depth-1].fd
}

// popTo closes the stack down to depth components.
func (w *walker) popTo(depth int) {
	for i := depth; i < len(w.stack); i++ {
		unix.Close(w.stack[i].fd)
	}
	w.stack = w.stack[:depth]
}

// push records that fd is the directory name inside the stack's top.
func (w *walker) push(name string, fd int) {
	w.stack = append(w.stack, openDir{name: name, fd: fd})
}

// close releases every descriptor but the root's.
func (w *walker) close() { w.popTo(0) }

// walkError is why a parent could not be resolved. refused is set when the
// layer itself is at fault (a symlink or a file where a directory must be);
// otherwise err is an I/O error.
type walkError struct {
	path    string
	reason  string
	refused bool
	err     error
}

func (e *walkError) Error() string {
	if e.refused {
		return e.reason
	}
	return fmt.Sprintf("%s %q: %v", e.reason, e.path, e.err)
}

func (e *walkError) Unwrap() error { return e.err }

// resolve returns a descriptor of the directory dir (a clean relative path,
// "." for the root), owned by the walker and valid until the next resolve.
// Missing directories are created if create is set (and w.created is told
// of each); otherwise they fail with ENOENT.
func (w *walker) resolve(dir string, create bool) (int, error) {
	if dir == "." {
		w.popTo(0)
		return w.root, nil
	}
	depth := 0
	for start := 0; start < len(dir); depth++ {
		end := start
		for end < len(dir) && dir[end] != '/' {
			end++
		}
		name := dir[start:end]
		start = end + 1
		if depth < len(w.stack) {
			if w.stack[depth].name == name {
				continue
			}
			w.popTo(depth)
		}
		fd, err := w.open(w.fdAt(depth), dir[:end], name, create)
		if err != nil {
			return -1, err
		}
		w.push(name, fd)
	}
	w.popTo(depth)
	return w.fdAt(depth), nil
}

// open opens the directory name inside at without following a symlink,
// creating it if it is missing and create is set. path is at/name relative
// to the layer root.
func (w *walker) open(at int, path, name string, create bool) (int, error) {
	fd, err := unix.Openat(at, name, dirFlags, 0)
	if err == unix.ENOENT && w.queued != nil && w.queued(path) {
		fd, err = unix.Openat(at, name, dirFlags, 0)
	}
	switch {
	case err == nil:
		return fd, nil
	case err == unix.ENOENT && create:
		return w.mkdir(at, path, name)
	case err == unix.ENOTDIR:
		// Only the error path pays for telling a symlink from a file.
		var st unix.Stat_t
		if unix.Fstatat(at, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return -1, &walkError{path: path, refused: true, reason: fmt.Sprintf("parent %q is a symlink", path)}
		}
		return -1, &walkError{path: path, refused: true, reason: fmt.Sprintf("parent %q is not a directory", path)}
	default:
		return -1, &walkError{path: path, reason: "open directory", err: err}
	}
}

// mkdir makes a directory an entry needs but the tar never listed. It gets
// what docker gives such directories: 0755, owned by root.
func (w *walker) mkdir(at int, path, name string) (int, error) {
	if err := unix.Mkdirat(at, name, 0o755); err != nil {
		return -1, &walkError{path: path, reason: "create directory", err: err}
	}
	if w.created != nil {
		w.created(path)
	}
	fd, err := unix.Openat(at, name, dirFlags, 0)
	if err != nil {
		return -1, &walkError{path: path, reason: "open directory", err: err}
	}
	// A setgid parent would have passed its group on, and the umask may
	// have taken bits off; the layer must depend on neither.
	if err := unix.Fchown(fd, 0, 0); err != nil {
		unix.Close(fd)
		return -1, &walkError{path: path, reason: "chown directory", err: err}
	}
	if err := unix.Fchmod(fd, 0o755); err != nil {
		unix.Close(fd)
		return -1, &walkError{path: path, reason: "chmod directory", err: err}
	}
	return fd, nil
}
