package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/devbox-dev/devbox/guest/bootconfig"
	"golang.org/x/sys/unix"
)

// ninePOptions are the 9p mount options. msize=512000 is the largest
// message the kernel's virtio transport takes (it is bounded by the ring's
// 128 pages): reads and writes go in big pieces rather than 8 KiB ones.
// cache=mmap keeps the guest coherent with the host: reads and metadata go
// to the host every time (an edit made on the host is seen at once, the
// point of sharing a source tree), and only mmap'ed pages are cached, which
// MAP_SHARED needs (SQLite, some build tools); cache=loose would be faster
// but serve stale files after a host edit, and has no invalidation.
const ninePOptions = "trans=virtio,version=9p2000.L,msize=512000,cache=mmap"

// reservedGuestPaths are the guest's own directories: a share on one (or,
// for those marked, under one) would hide what the guest runs on.
var reservedGuestPaths = map[string]bool{ // path -> also refuse beneath it
	"/": false, "/bin": false, "/sbin": false, "/lib": false, "/lib64": false,
	"/usr": false, "/usr/bin": false, "/usr/sbin": false, "/usr/lib": false,
	"/etc": false, "/var": false, "/var/lib": false,
	"/proc": true, "/sys": true, "/dev": true, "/run": true, "/etc/devbox": true,
}

// mountShares mounts each share at its path, parents before children. A
// share that fails is logged and skipped: the guest stays usable without
// it, and the error, one per share, is returned for the boot status.
func mountShares(log *logger, shares []bootconfig.Share, dataRoot string) error {
	sorted := append([]bootconfig.Share(nil), shares...)
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i].Path) < len(sorted[j].Path) })
	var errs []error
	for _, s := range sorted {
		start := time.Now()
		if err := mountShare(s, dataRoot); err != nil {
			log.Errorf("share %s: %v", s.Path, err)
			errs = append(errs, fmt.Errorf("share %s: %w", s.Path, err))
			continue
		}
		log.Debugf("share %s (%s, tag %s) mounted in %v", s.Path, s.Type, s.Tag, time.Since(start).Round(10*time.Microsecond))
	}
	return errors.Join(errs...)
}

// mountShare mounts one share.
func mountShare(s bootconfig.Share, dataRoot string) error {
	if err := checkSharePath(s.Path, dataRoot); err != nil {
		return err
	}
	if s.Tag == "" {
		return errors.New("no tag")
	}
	var fstype, data string
	switch s.Type {
	case bootconfig.ShareType9P, "":
		fstype, data = "9p", ninePOptions
	case bootconfig.ShareTypeVirtiofs:
		// virtiofsd's cache mode, chosen on the host, rules coherence.
		fstype = "virtiofs"
	default:
		return fmt.Errorf("share type %q not supported (9p, virtiofs)", s.Type)
	}
	if err := os.MkdirAll(s.Path, 0o755); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	var flags uintptr = unix.MS_NODEV
	if s.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	// A mount whose host side is broken (a dead virtiofsd) can block
	// for good: give up on it rather than hold every SSH channel behind
	// the boot gate. The stuck mount(2) is left to the kernel.
	done := make(chan error, 1)
	go func() { done <- unix.Mount(s.Tag, s.Path, fstype, flags, data) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("mount %s %s (tag %s): %w", fstype, s.Path, s.Tag, err)
		}
		return nil
	case <-time.After(shareMountTimeout):
		return fmt.Errorf("mount %s %s (tag %s): no answer from the host in %v", fstype, s.Path, s.Tag, shareMountTimeout)
	}
}

// shareMountTimeout bounds one share's mount; it takes milliseconds.
const shareMountTimeout = 10 * time.Second

// checkSharePath refuses a mount point that is not a clean absolute path
// or that would cover the guest's own files.
func checkSharePath(p, dataRoot string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("mount point %q is not a clean absolute path", p)
	}
	reserved := reservedGuestPaths
	if dataRoot != "" {
		reserved = map[string]bool{filepath.Clean(dataRoot): true}
		for k, v := range reservedGuestPaths {
			reserved[k] = v
		}
	}
	for r, beneath := range reserved {
		if p == r || beneath && strings.HasPrefix(p, r+"/") {
			return fmt.Errorf("%s is the guest's own directory and cannot be a share's mount point", r)
		}
	}
	return nil
}
