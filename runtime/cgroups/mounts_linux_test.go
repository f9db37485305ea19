package cgroups

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/devbox-dev/devbox/internal/mountinfo"
)

// Mountinfo listings of the layouts this package meets. hybridHere is
// this development host (v1 controllers, and cpu and cpuacct mounted
// apart); the others are what stock distributions mount.
const (
	otherMounts = `22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
24 22 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:3 - proc proc rw
`
	hybridHere = otherMounts + `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	// Ubuntu 20.04 / Debian 10: systemd's hybrid mode.
	hybridSystemd = otherMounts + `25 23 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
29 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
30 25 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
31 25 0:30 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,freezer
32 25 0:31 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,net_cls,net_prio
`
	// Ubuntu 18.04 / CentOS 7 style: v1 only.
	pureV1 = otherMounts + `25 23 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
28 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
29 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
30 25 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
31 25 0:30 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,freezer
`
	// Debian 11+, Fedora, devbox's VM: unified only.
	pureV2 = otherMounts + `30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	// A v2 host where a container (or a bind mount) shows the hierarchy
	// a second time, listed first; and an old-systemd compatibility
	// name=systemd v1 mount, which carries no controller.
	v2Twice = otherMounts + `29 22 0:26 / /var/lib/devbox/c/rootfs/sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
31 22 0:40 / /run/systemd-compat rw,relatime - cgroup cgroup rw,xattr,name=systemd
`
	// Hybrid where only some controllers are on v1: memory is free for
	// cgroup2.
	hybridPartial = otherMounts + `25 23 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
28 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
30 25 0:29 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
`
	escaped = otherMounts + `30 22 0:26 / /mnt/my\040cgroups rw,relatime - cgroup2 cgroup2 rw
`
)

func TestParseMountinfo(t *testing.T) {
	const r = "/sys/fs/cgroup"
	for _, tc := range []struct {
		name    string
		in      string
		unified string
		v1      [numCtrl]string // memory, pids, cpu, cpuacct, freezer, devices
		nV1     int
		layout  Layout
		layErr  error
		v2Want  ctrlMask
	}{
		{"hybrid here", hybridHere, r + "/unified",
			[numCtrl]string{r + "/memory", r + "/pids", r + "/cpu", r + "/cpuacct", r + "/freezer", r + "/devices"},
			8, Hybrid, nil, 0},
		{"hybrid systemd", hybridSystemd, r + "/unified",
			[numCtrl]string{r + "/memory", r + "/pids", r + "/cpu,cpuacct", r + "/cpu,cpuacct", r + "/freezer"},
			5, Hybrid, nil, 0},
		{"pure v1", pureV1, "",
			[numCtrl]string{r + "/memory", r + "/pids", r + "/cpu,cpuacct", r + "/cpu,cpuacct", r + "/freezer"},
			4, V1, nil, 0},
		{"pure v2", pureV2, r, [numCtrl]string{}, 0, V2, nil, v2Capable},
		{"v2 twice", v2Twice, r, [numCtrl]string{}, 0, V2, nil, v2Capable},
		{"hybrid partial", hybridPartial, r + "/unified",
			[numCtrl]string{"", r + "/pids", r + "/cpu,cpuacct", r + "/cpu,cpuacct", ""},
			2, Hybrid, nil, maskOf(ctrlMemory)},
		{"escaped", escaped, "/mnt/my cgroups", [numCtrl]string{}, 0, V2, nil, v2Capable},
		{"none", otherMounts, "", [numCtrl]string{}, 0, 0, ErrNoCgroups, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseMountinfo(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if m.unified != tc.unified {
				t.Errorf("unified = %q; want %q", m.unified, tc.unified)
			}
			if m.v1 != tc.v1 {
				t.Errorf("v1 = %q; want %q", m.v1, tc.v1)
			}
			if len(m.v1All) != tc.nV1 {
				t.Errorf("v1All = %q; want %d of them", m.v1All, tc.nV1)
			}
			l, err := m.layout()
			if l != tc.layout || !errors.Is(err, tc.layErr) {
				t.Errorf("layout() = %v, %v; want %v, %v", l, err, tc.layout, tc.layErr)
			}
			if got := m.v2Want(); got != tc.v2Want {
				t.Errorf("v2Want() = %b; want %b", got, tc.v2Want)
			}
		})
	}
}

func TestParseMountinfoMalformed(t *testing.T) {
	if _, err := parseMountinfo(strings.NewReader("1 2 - cgroup2 cgroup2 rw\n")); err == nil {
		t.Error("no error for a truncated line")
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`:      "/a b",
		`/tab\011here`: "/tab\there",
		`/back\134`:    `/back\`,
		`/plain`:       "/plain",
		`/short\04`:    `/short\04`,
	} {
		if got := mountinfo.Unescape(in); got != want {
			t.Errorf("mountinfo.Unescape(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		rel  string
		want bool
	}{
		{"6.18.44-fc-v657", true},
		{"5.7.0", true},
		{"5.6.19-generic", false},
		{"5.10", true},
		{"4.19.0-21-amd64", false},
		{"10.0", true},
		{"", false},
	} {
		if got := kernelAtLeast(tc.rel, 5, 7); got != tc.want {
			t.Errorf("kernelAtLeast(%q, 5, 7) = %v; want %v", tc.rel, got, tc.want)
		}
	}
}

// TestDetectHost checks the statfs answer against a full reading of
// mountinfo on this machine, whatever its layout.
func TestDetectHost(t *testing.T) {
	got, err := Detect()
	m, merr := readMountinfo()
	if merr != nil {
		t.Fatal(merr)
	}
	want, werr := m.layout()
	if werr != nil {
		if err == nil && got != V1 {
			t.Fatalf("Detect() = %v; mountinfo says %v", got, werr)
		}
		t.Skip("no cgroups on this machine")
	}
	if err != nil || got != want {
		t.Fatalf("Detect() = %v, %v; mountinfo says %v", got, err, want)
	}
	t.Logf("layout %v, unified %q, v1 %q", got, m.unified, m.v1)
	if _, err := os.Stat("/proc/self/cgroup"); err != nil {
		t.Fatal(err)
	}
}

func TestCheckPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"devbox/abc": true, "devbox": true, "a/b/c": true,
		"": false, "/devbox/abc": false, "devbox/../x": false, "..": false,
		"../x": false, ".": false, "devbox/": false, "devbox//x": false, "./x": false,
	} {
		if err := checkPath(p); (err == nil) != ok {
			t.Errorf("checkPath(%q) = %v; want ok=%v", p, err, ok)
		}
	}
}

func TestMaskOf(t *testing.T) {
	m := maskOf(ctrlMemory, ctrlCPU)
	if !m.has(ctrlMemory) || !m.has(ctrlCPU) || m.has(ctrlPids) {
		t.Errorf("maskOf = %b", m)
	}
	if !reflect.DeepEqual(ctrlNames[ctrlCPUAcct], "cpuacct") {
		t.Error("names out of order")
	}
}
