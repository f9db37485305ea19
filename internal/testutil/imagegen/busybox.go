package imagegen

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

// ErrNoBusybox is returned when BusyboxPath is missing; tests should skip.
var ErrNoBusybox = errors.New("busybox not installed at " + BusyboxPath + " (apt-get install busybox-static)")

// busyboxApplets get a relative symlink to busybox in /bin. The list covers
// what container tests typically run; the binary has many more.
var busyboxApplets = []string{
	"[", "ash", "awk", "basename", "cat", "chmod", "chown", "cp", "cut",
	"date", "df", "dirname", "du", "echo", "env", "false", "find", "grep",
	"gunzip", "gzip", "head", "hostname", "id", "ip", "kill", "less", "ln",
	"ls", "md5sum", "mkdir", "mktemp", "mount", "mv", "nc", "nproc",
	"nsenter", "ping", "printf", "ps", "pwd", "readlink", "rm", "rmdir",
	"sed", "seq", "sh", "sha256sum", "sleep", "sort", "stat", "sync", "tail",
	"tar", "tee", "test", "timeout", "top", "touch", "tr", "true", "umount",
	"uname", "uniq", "unshare", "vi", "wc", "wget", "which", "whoami",
	"xargs", "yes",
}

const etcPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`

const etcGroup = `root:x:0:
daemon:x:1:
nogroup:x:65534:
`

// BusyboxEntries returns the entries of BusyboxLayer, for tests that add
// their own files to the same layer. It wraps ErrNoBusybox when the host
// has no busybox.
func BusyboxEntries() ([]Entry, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoBusybox
	}
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	entries := []Entry{
		Dir("bin/", 0o755),
		{Name: "bin/busybox", Type: tar.TypeReg, Mode: 0o755, Content: bin},
	}
	for _, applet := range busyboxApplets {
		entries = append(entries, Symlink("bin/"+applet, "busybox"))
	}
	return append(entries,
		Dir("etc/", 0o755),
		File("etc/group", etcGroup, 0o644),
		File("etc/passwd", etcPasswd, 0o644),
		Dir("root/", 0o700),
		// World-writable and sticky, as in every distribution image,
		// so tests running as a non-root user can use /tmp.
		Dir("tmp/", 0o1777),
	), nil
}

// BusyboxLayer returns a gzip layer with the host's static busybox as
// /bin/busybox, symlinks for common applets (sh, echo, cat, ls, id, ...),
// minimal /etc/passwd and /etc/group, /root and /tmp. Everything is owned
// by root with mtime Epoch. It wraps ErrNoBusybox when the host has no
// busybox.
func BusyboxLayer() (v1.Layer, error) {
	entries, err := BusyboxEntries()
	if err != nil {
		return nil, err
	}
	return Layer(entries...)
}

// Busybox returns an image of BusyboxLayer for the host platform, skipping
// t when the host has no busybox and failing it on other errors.
func Busybox(t testing.TB) v1.Image {
	t.Helper()
	l, err := BusyboxLayer()
	if errors.Is(err, ErrNoBusybox) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("busybox layer: %v", err)
	}
	img, err := Image(l)
	if err != nil {
		t.Fatalf("busybox image: %v", err)
	}
	return img
}
