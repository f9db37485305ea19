package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/devbox-dev/devbox/internal/mountinfo"

	"golang.org/x/sys/unix"
)

// ErrNoCgroups is returned when the host has no cgroup hierarchy mounted
// at all.
var ErrNoCgroups = errors.New("cgroups: no cgroup hierarchy is mounted (see /proc/self/mountinfo)")

// cgroupRoot is where the hierarchies are mounted on every systemd-era
// host, and where devbox's guest agent mounts cgroup2.
const cgroupRoot = "/sys/fs/cgroup"

// ctrl is one of the controllers this package uses.
type ctrl int

const (
	ctrlMemory ctrl = iota
	ctrlPids
	ctrlCPU
	ctrlCPUAcct
	ctrlFreezer
	// ctrlDevices is v1 only: cgroup2 controls devices with BPF programs.
	ctrlDevices
	numCtrl
)

var ctrlNames = [numCtrl]string{"memory", "pids", "cpu", "cpuacct", "freezer", "devices"}

func (c ctrl) String() string { return ctrlNames[c] }

// ctrlMask is a set of controllers.
type ctrlMask uint8

func (m ctrlMask) has(c ctrl) bool { return m&(1<<c) != 0 }

func maskOf(cs ...ctrl) ctrlMask {
	var m ctrlMask
	for _, c := range cs {
		m |= 1 << c
	}
	return m
}

// v2Capable are the controllers this package can drive on cgroup2
// (cpuacct, freezer and devices have no v2 controller: their jobs are done
// by the core files cpu.stat and cgroup.freeze/cgroup.kill, and by BPF
// device programs).
var v2Capable = maskOf(ctrlMemory, ctrlPids, ctrlCPU)

// mounts is where a host's hierarchies are.
type mounts struct {
	// unified is the cgroup2 mount point, or "" if there is none.
	unified string
	// v1 is the mount point of the v1 hierarchy holding each controller,
	// or "" where the controller is not on a v1 hierarchy.
	v1 [numCtrl]string
	// v1All lists the mount points of every v1 hierarchy that carries a
	// controller, including ones this package does not use.
	v1All []string
}

// layout classifies m.
func (m *mounts) layout() (Layout, error) {
	switch {
	case m.unified != "" && len(m.v1All) == 0:
		return V2, nil
	case m.unified != "":
		return Hybrid, nil
	case len(m.v1All) > 0:
		return V1, nil
	}
	return 0, ErrNoCgroups
}

// v2Want is the set of controllers to use on cgroup2: those this package
// can drive there and that are not bound to a v1 hierarchy (a controller
// can only be on one).
func (m *mounts) v2Want() ctrlMask {
	if m.unified == "" {
		return 0
	}
	want := v2Capable
	for c := ctrl(0); c < numCtrl; c++ {
		if m.v1[c] != "" {
			want &^= 1 << c
		}
	}
	return want
}

// Detect reports the host's cgroup layout. It costs one or two statfs
// calls on the standard layouts: cgroup2 at /sys/fs/cgroup is V2; a tmpfs
// there with cgroup2 at /sys/fs/cgroup/unified is Hybrid; a tmpfs without
// it is V1. Anything else is classified from /proc/self/mountinfo, and a
// host with no hierarchy at all gives [ErrNoCgroups].
func Detect() (Layout, error) {
	switch fsType(cgroupRoot) {
	case unix.CGROUP2_SUPER_MAGIC:
		return V2, nil
	case unix.TMPFS_MAGIC:
		if fsType(cgroupRoot+"/unified") == unix.CGROUP2_SUPER_MAGIC {
			return Hybrid, nil
		}
		return V1, nil
	}
	m, err := readMountinfo()
	if err != nil {
		return 0, err
	}
	return m.layout()
}

// fsType returns the statfs magic number of path, or 0 if it can't be
// had.
func fsType(path string) int64 {
	var st unix.Statfs_t
	for {
		err := unix.Statfs(path, &st)
		if err == nil {
			return st.Type
		}
		if err != unix.EINTR {
			return 0
		}
	}
}

// host caches what this process has learned about the host's
// hierarchies: where they are, and which cgroup2 directories have had
// their cgroup.subtree_control checked.
var host struct {
	sync.Mutex
	m *mounts
	// subtree maps a cgroup2 directory to the controllers its children
	// get, once this process has ensured them.
	subtree map[string]subtreeState
}

type subtreeState struct {
	have ctrlMask
	err  error // why a wanted controller could not be enabled
}

// hostMounts returns the host's hierarchies, found once per process:
// with cgroup2 at /sys/fs/cgroup a statfs suffices; otherwise
// /proc/self/mountinfo is parsed.
func hostMounts() (*mounts, error) {
	host.Lock()
	defer host.Unlock()
	if host.m != nil {
		return host.m, nil
	}
	var m *mounts
	if fsType(cgroupRoot) == unix.CGROUP2_SUPER_MAGIC {
		m = &mounts{unified: cgroupRoot}
	} else {
		var err error
		if m, err = readMountinfo(); err != nil {
			return nil, err
		}
		if _, err := m.layout(); err != nil {
			return nil, err
		}
	}
	host.m = m
	return m, nil
}

func readMountinfo() (*mounts, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	defer f.Close()
	m, err := parseMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("cgroups: reading /proc/self/mountinfo: %w", err)
	}
	return m, nil
}

// parseMountinfo finds the cgroup hierarchies in a /proc/PID/mountinfo
// listing. Where a hierarchy is mounted more than once, a mount under
// /sys/fs/cgroup wins, and otherwise the first one listed.
func parseMountinfo(r io.Reader) (*mounts, error) {
	m := &mounts{}
	preferred := func(old, new string) bool {
		return old == "" || !underCgroupRoot(old) && underCgroupRoot(new)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(" - cgroup")) {
			continue
		}
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		sep := bytes.Index(line, []byte(" - "))
		pre := strings.Fields(string(line[:sep]))
		post := strings.Fields(string(line[sep+3:]))
		if len(pre) < 5 || len(post) < 1 {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		mp := mountinfo.Unescape(pre[4])
		switch post[0] {
		case "cgroup2":
			if preferred(m.unified, mp) {
				m.unified = mp
			}
		case "cgroup":
			if len(post) < 3 {
				continue
			}
			hasCtrl := false
			for _, opt := range strings.Split(post[2], ",") {
				for c := ctrl(0); c < numCtrl; c++ {
					if opt == ctrlNames[c] && preferred(m.v1[c], mp) {
						m.v1[c] = mp
					}
				}
				if opt != "rw" && opt != "ro" && !strings.HasPrefix(opt, "name=") &&
					opt != "none" && opt != "noprefix" && opt != "xattr" && opt != "clone_children" &&
					opt != "cpuset_v2_mode" && opt != "favordynmods" && !strings.HasPrefix(opt, "release_agent=") {
					hasCtrl = true
				}
			}
			if hasCtrl && !seen[mp] {
				seen[mp] = true
				m.v1All = append(m.v1All, mp)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

func underCgroupRoot(p string) bool {
	return p == cgroupRoot || strings.HasPrefix(p, cgroupRoot+"/")
}

// cloneIntoCgroup reports whether the kernel has clone3's
// CLONE_INTO_CGROUP (Linux 5.7).
var cloneIntoCgroup = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	return kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 5, 7)
})

// kernelAtLeast reports whether a kernel release string such as
// "6.18.44-fc" is at least major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	var maj, min int
	i := 0
	num := func() int {
		n := 0
		for i < len(release) && release[i] >= '0' && release[i] <= '9' {
			n = n*10 + int(release[i]-'0')
			i++
		}
		return n
	}
	maj = num()
	if i < len(release) && release[i] == '.' {
		i++
		min = num()
	}
	return maj > major || maj == major && min >= minor
}
