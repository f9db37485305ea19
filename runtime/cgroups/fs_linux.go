package cgroups

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/devbox-dev/devbox/internal/fdio"

	"golang.org/x/sys/unix"
)

// Control files are read and written with raw syscalls: os.File would add
// a poller registration attempt and a finalizer per file, and a new cgroup
// is a dozen files.

// writeFile writes value to dir/name. dirfd, when not -1, is an open
// descriptor of dir, which saves the kernel the path walk.
func writeFile(dirfd int, dir, name, value string) error {
	var fd int
	var err error
	if dirfd >= 0 {
		fd, err = openat(dirfd, name, unix.O_WRONLY|unix.O_CLOEXEC)
	} else {
		fd, err = openat(unix.AT_FDCWD, dir+"/"+name, unix.O_WRONLY|unix.O_CLOEXEC)
	}
	if err == nil {
		err = fdio.WriteAll(fd, []byte(value))
		unix.Close(fd)
	}
	if err != nil {
		return &fs.PathError{Op: "write " + strconv.Quote(value) + " to", Path: dir + "/" + name, Err: err}
	}
	return nil
}

func openat(dirfd int, path string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// readFile reads a small control file.
func readFile(path string) ([]byte, error) {
	fd, err := openat(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// readUint reads a file holding one number; "max" reads as 0.
func readUint(path string) (uint64, error) {
	b, err := readFile(path)
	if err != nil {
		return 0, err
	}
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroups: %s: %w", path, err)
	}
	return n, nil
}

// keyValue returns the value of key in a flat keyed file such as
// memory.events ("oom_kill 3"). ok is false if the key is absent.
func keyValue(data []byte, key string) (v uint64, ok bool) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		k, val, found := bytes.Cut(line, []byte(" "))
		if found && string(k) == key {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(val)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// mkdirCgroup creates dir and any missing parents. An existing dir is
// fine (it is reused, as runc does).
func mkdirCgroup(dir string) error {
	err := unix.Mkdir(dir, 0o755)
	if err == unix.ENOENT {
		if err = os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("cgroups: %w", err)
		}
		err = unix.Mkdir(dir, 0o755)
	}
	if err != nil && err != unix.EEXIST {
		return fmt.Errorf("cgroups: %w", &fs.PathError{Op: "mkdir", Path: dir, Err: err})
	}
	return nil
}

// rmdirCgroup removes dir, retrying while the kernel says it is busy
// (processes still exiting) until deadline; child cgroups, which only a
// container that could write to its cgroupfs can have made, go first. A
// missing dir is fine.
func rmdirCgroup(dir string, deadline time.Time) error {
	wait := 500 * time.Microsecond
	for {
		err := unix.Rmdir(dir)
		switch {
		case err == nil || err == unix.ENOENT:
			return nil
		case err == unix.EINTR:
			continue
		case err != unix.EBUSY:
			return fmt.Errorf("cgroups: %w", &fs.PathError{Op: "rmdir", Path: dir, Err: err})
		}
		if ents, rerr := os.ReadDir(dir); rerr == nil {
			for _, e := range ents {
				if e.IsDir() {
					if cerr := rmdirCgroup(filepath.Join(dir, e.Name()), deadline); cerr != nil {
						return cerr
					}
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups: %w (processes are still in it)", &fs.PathError{Op: "rmdir", Path: dir, Err: err})
		}
		time.Sleep(wait)
		wait = min(wait*2, 20*time.Millisecond)
	}
}

// readPids parses a cgroup.procs file into pids, appending to dst. A
// missing file adds nothing.
func readPids(dst []int, path string) ([]int, error) {
	b, err := readFile(path)
	if errors.Is(err, unix.ENOENT) {
		return dst, nil
	}
	if err != nil {
		return dst, err
	}
	for _, f := range bytes.Fields(b) {
		n, err := strconv.Atoi(string(f))
		if err != nil {
			return dst, fmt.Errorf("cgroups: %s: %w", path, err)
		}
		dst = append(dst, n)
	}
	return dst, nil
}
