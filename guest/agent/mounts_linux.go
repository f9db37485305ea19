package agent

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// leaveRootfs moves the agent off the initial rootfs, which pivot_root(2)
// refuses to leave (the container runtime pivots into every container).
// pivot_root only needs the caller's root to be a mount that has a parent,
// so rather than copying the tree to a new tmpfs (what switch_root does),
// this bind-mounts the rootfs onto a directory of itself, moves that mount
// over / and chroots into it: the same files, no copy, no re-exec.
func leaveRootfs() error {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return fmt.Errorf("statfs /: %w", err)
	}
	if st.Type != unix.RAMFS_MAGIC && st.Type != unix.TMPFS_MAGIC {
		return nil // not an initramfs root: nothing to leave
	}
	const dir = "/.devbox-root"
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	if err := unix.Mount("/", dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind / on %s: %w", dir, err)
	}
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("chdir %s: %w", dir, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", dir, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	// Seen from the new root, the directory is an empty one again.
	os.Remove(dir)
	return nil
}

// mountSpec is one mount of the guest's base file systems.
type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// baseMounts are what a Linux system and the container runtime expect.
var baseMounts = []mountSpec{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
	{"shm", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"mqueue", "/dev/mqueue", "mqueue", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "nsdelegate"},
}

// mountBase mounts the base file systems, makes /dev/ptmx the pts
// instance's, and enables every cgroup controller for the containers.
func mountBase(log *logger) error {
	for _, m := range baseMounts {
		start := time.Now()
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.target, err)
		}
		err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
		if err == unix.EBUSY {
			continue // already there (the kernel may mount devtmpfs itself)
		}
		if err != nil && m.fstype == "cgroup2" && m.data != "" {
			// Without nsdelegate support, plain.
			err = unix.Mount(m.source, m.target, m.fstype, m.flags, "")
		}
		if err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
		log.Debugf("mount %s: %v", m.target, time.Since(start).Round(10*time.Microsecond))
	}
	os.Remove("/dev/ptmx")
	if err := os.Symlink("pts/ptmx", "/dev/ptmx"); err != nil {
		return fmt.Errorf("symlink /dev/ptmx: %w", err)
	}
	for _, l := range [][2]string{{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}} {
		os.Symlink(l[0], l[1])
	}
	return enableControllers("/sys/fs/cgroup")
}

// enableControllers turns on, for the root cgroup's children, every
// controller the kernel has.
func enableControllers(root string) error {
	b, err := os.ReadFile(root + "/cgroup.controllers")
	if err != nil {
		return fmt.Errorf("cgroup controllers: %w", err)
	}
	ctrls := strings.Fields(string(b))
	if len(ctrls) == 0 {
		return nil
	}
	all := "+" + strings.Join(ctrls, " +")
	if os.WriteFile(root+"/cgroup.subtree_control", []byte(all), 0) == nil {
		return nil
	}
	// One refused (e.g. a realtime-scheduled thread blocks cpu): the rest.
	var failed []string
	for _, c := range ctrls {
		if err := os.WriteFile(root+"/cgroup.subtree_control", []byte("+"+c), 0); err != nil {
			failed = append(failed, c)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("enable cgroup controllers %s", strings.Join(failed, ", "))
	}
	return nil
}
