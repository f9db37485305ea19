//go:build unix

// Package fdio reads and writes raw file descriptors whole, retrying
// EINTR: for code that works below os.File (the runtime's init stage, the
// unpacker's openat descriptors, cgroup control files).
package fdio

import (
	"io"

	"golang.org/x/sys/unix"
)

// WriteAll writes all of b to fd.
func WriteAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

// ReadFull fills b from fd; a stream that ends first is io.ErrUnexpectedEOF.
func ReadFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		b = b[n:]
	}
	return nil
}
