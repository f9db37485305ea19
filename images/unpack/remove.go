package unpack

import (
	"os"

	"golang.org/x/sys/unix"
)

// removeAllAt removes name inside the directory pfd and, if it is a
// directory, everything under it, without following a symlink anywhere:
// unlinkat removes a symlink itself, and directories are opened with
// O_NOFOLLOW. Unlike os.RemoveAll it works relative to a descriptor the
// walk already verified.
func removeAllAt(pfd int, name string) error {
	err := unix.Unlinkat(pfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return err
	}
	fd, err := unix.Openat(pfd, name, dirFlags, 0)
	if err != nil {
		return err
	}
	dir := os.NewFile(uintptr(fd), name)
	defer dir.Close()
	// All names first: removing entries while getdents walks the directory
	// may make it skip some.
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, child := range names {
		if err := removeAllAt(fd, child); err != nil {
			return err
		}
	}
	return unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR)
}
