package cgroups

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// dockerDevices is the device list engine/spec gives every container:
// Docker's rules, then those runc appends.
func dockerDevices() []specs.LinuxDeviceCgroup {
	rule := func(allow bool, typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Access: access}
		if major >= 0 {
			r.Major = i64(major)
		}
		if minor >= 0 {
			r.Minor = i64(minor)
		}
		return r
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Type: "a", Access: "rwm"},
		rule(true, "c", 1, 5, "rwm"),
		rule(true, "c", 1, 3, "rwm"),
		rule(true, "c", 1, 9, "rwm"),
		rule(true, "c", 1, 8, "rwm"),
		rule(true, "c", 5, 0, "rwm"),
		rule(true, "c", 5, 1, "rwm"),
		rule(false, "c", 10, 229, "rwm"),
		rule(true, "c", -1, -1, "m"),
		rule(true, "b", -1, -1, "m"),
		rule(true, "c", 1, 3, "rwm"),
		rule(true, "c", 1, 8, "rwm"),
		rule(true, "c", 1, 7, "rwm"),
		rule(true, "c", 5, 0, "rwm"),
		rule(true, "c", 1, 5, "rwm"),
		rule(true, "c", 1, 9, "rwm"),
		rule(true, "c", 136, -1, "rwm"),
		rule(true, "c", 5, 2, "rwm"),
		rule(true, "c", 10, 200, "rwm"),
	}
}

func foldSpec(t *testing.T, list []specs.LinuxDeviceCgroup) deviceState {
	t.Helper()
	rules, err := parseDeviceRules(list)
	if err != nil {
		t.Fatal(err)
	}
	return foldDeviceRules(rules)
}

func TestFoldDeviceRules(t *testing.T) {
	s := foldSpec(t, dockerDevices())
	def, ex, lines := s.v1Lines()
	want := []string{"c 1:5 rwm", "c 1:3 rwm", "c 1:9 rwm", "c 1:8 rwm", "c 5:0 rwm", "c 5:1 rwm",
		"c *:* m", "b *:* m", "c 1:7 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm"}
	if s.defaultAllow || def != "devices.deny" || ex != "devices.allow" || !reflect.DeepEqual(lines, want) {
		t.Errorf("docker's list folds to default allow=%v, %s, %s %q; want deny-all then %q", s.defaultAllow, def, ex, lines, want)
	}

	p := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name  string
		list  []specs.LinuxDeviceCgroup
		allow bool
		lines []string
	}{
		{"empty is deny-all", nil, false, nil},
		{"allow all", []specs.LinuxDeviceCgroup{{Allow: true}}, true, nil},
		{"deny punches an allow-all", []specs.LinuxDeviceCgroup{{Allow: true}, {Type: "b", Major: p(8), Access: "rw"}}, true, []string{"b 8:* rw"}},
		{"reset drops exceptions", []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: p(1), Minor: p(3)}, {Allow: false, Type: "a"}}, false, nil},
		{"narrowing", []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: p(1), Minor: p(3)}, {Type: "c", Major: p(1), Minor: p(3), Access: "w"}}, false, []string{"c 1:3 rm"}},
		{"narrowed away", []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: p(1), Minor: p(3), Access: "r"}, {Type: "c", Major: p(1), Minor: p(3), Access: "r"}}, false, nil},
		{"deny of a wider rule's part stays allowed, as on v1", []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: p(1)}, {Type: "c", Major: p(1), Minor: p(3)}}, false, []string{"c 1:* rwm"}},
		{"type a with numbers", []specs.LinuxDeviceCgroup{{Allow: true, Type: "a", Major: p(7), Access: "r"}}, false, []string{"c 7:* r", "b 7:* r"}},
		{"widening", []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: p(4), Minor: p(1), Access: "r"}, {Allow: true, Type: "c", Major: p(4), Minor: p(1), Access: "w"}}, false, []string{"c 4:1 rw"}},
	} {
		s := foldSpec(t, tc.list)
		_, _, lines := s.v1Lines()
		if s.defaultAllow != tc.allow || !reflect.DeepEqual(lines, tc.lines) {
			t.Errorf("%s: default allow=%v %q; want %v %q", tc.name, s.defaultAllow, lines, tc.allow, tc.lines)
		}
	}
}

func TestParseDeviceRulesRejects(t *testing.T) {
	for _, d := range []specs.LinuxDeviceCgroup{
		{Type: "p"},
		{Type: "c", Access: "x"},
		{Type: "c", Major: i64(-2)},
		{Type: "c", Minor: i64(1 << 40)},
	} {
		if _, err := parseDeviceRules([]specs.LinuxDeviceCgroup{d}); err == nil {
			t.Errorf("parseDeviceRules(%+v) accepted it", d)
		}
	}
	if _, err := create(&mounts{}, randomPath(t), &specs.LinuxResources{Devices: dockerDevices()}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("device rules on a host with no way to enforce them: %v", err)
	}
}

// helperDevices opens what a container may and may not, and prints one
// word for each: ok or the error. (Some hosts refuse opening their disks
// to root anyway: the tests look at what a cgroup alone decides.) $DEVBOX_CGROUPS_TEST_DIR is a tmpfs
// without nodev, so that the cgroup alone decides; $..._DISK is the
// "major minor" of a block device of this host.
func helperDevices() {
	waitGo()
	dir := os.Getenv("DEVBOX_CGROUPS_TEST_DIR")
	var major, minor uint32
	fmt.Sscan(os.Getenv("DEVBOX_CGROUPS_TEST_DISK"), &major, &minor)
	word := func(err error) string {
		if err == nil {
			return "ok"
		}
		if errno, ok := err.(unix.Errno); ok {
			return unix.ErrnoName(errno)
		}
		return err.Error()
	}
	open := func(path string, flags int) string {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return word(err)
	}
	mknod := func(name string, mode uint32, major, minor uint32) string {
		return word(unix.Mknod(dir+"/"+name, mode|0o600, int(unix.Mkdev(major, minor))))
	}
	fmt.Println(
		"null-r="+open("/dev/null", unix.O_RDONLY),
		"null-w="+open("/dev/null", unix.O_WRONLY),
		"zero-rw="+open("/dev/zero", unix.O_RDWR),
		"mknod-disk="+mknod("disk", unix.S_IFBLK, major, minor),
		"disk="+open(dir+"/disk", unix.O_RDONLY),
		"mknod-null="+mknod("null", unix.S_IFCHR, 1, 3),
		"null-node="+open(dir+"/null", unix.O_RDONLY),
		"mknod-mem="+mknod("mem", unix.S_IFCHR, 1, 1),
		"mem="+open(dir+"/mem", unix.O_RDONLY),
	)
	os.Exit(0)
}

// TestDevicesEnforced runs a process under Docker's device rules in every
// way this host can enforce them: the v1 devices controller, and a BPF
// program on a cgroup2 directory (on a hybrid host, its controller-less
// cgroup2, where such programs work all the same).
func TestDevicesEnforced(t *testing.T) {
	vs := views(t)
	for _, v := range vs {
		if v.m.unified != "" && v.m.v1[ctrlDevices] != "" {
			vs = append(vs, view{"bpf", &mounts{unified: v.m.unified}})
		}
	}
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	disk := fmt.Sprintf("%d %d", unix.Major(st.Dev), unix.Minor(st.Dev))
	if unix.Major(st.Dev) == 0 {
		disk = "7 0" // / is not on a block device: loop0's numbers will do
	}
	p := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name string
		list []specs.LinuxDeviceCgroup
		want string
	}{
		{"docker", dockerDevices(),
			"null-r=ok null-w=ok zero-rw=ok mknod-disk=ok disk=EPERM mknod-null=ok null-node=ok mknod-mem=ok mem=EPERM"},
		// Default allow, a partial deny: refused when any access asked
		// for is denied.
		{"all but writes to null", []specs.LinuxDeviceCgroup{{Allow: true}, {Type: "c", Major: p(1), Minor: p(3), Access: "w"}},
			"null-r=ok null-w=EPERM zero-rw=ok mknod-disk=ok mknod-null=ok null-node=ok mknod-mem=ok"},
		// Default deny, a partial allow: allowed only when all access
		// asked for is allowed.
		{"only reads of zero and null", []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: p(1), Minor: p(5), Access: "r"}, {Allow: true, Type: "c", Major: p(1), Minor: p(3), Access: "rm"}},
			"null-r=ok null-w=EPERM zero-rw=EPERM mknod-disk=EPERM disk=ENOENT mknod-null=ok null-node=ok mknod-mem=EPERM mem=ENOENT"},
	} {
		for _, v := range vs {
			t.Run(tc.name+"/"+v.name, func(t *testing.T) {
				if v.m.v1[ctrlDevices] == "" && v.m.unified == "" {
					t.Skip("no way to control devices in this view")
				}
				dir := t.TempDir()
				if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=700"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
				c := newTest(t, v.m, &specs.LinuxResources{Devices: tc.list})
				if d := c.v1[ctrlDevices]; d != "" && tc.name == "docker" {
					b, err := os.ReadFile(d + "/devices.list")
					if err != nil {
						t.Fatal(err)
					}
					if !strings.Contains(string(b), "b *:* m\n") || !strings.Contains(string(b), "c 136:* rwm\n") || strings.Contains(string(b), "a *:* rwm") {
						t.Errorf("devices.list:\n%s", b)
					}
				}
				t.Setenv("DEVBOX_CGROUPS_TEST_DIR", dir)
				t.Setenv("DEVBOX_CGROUPS_TEST_DISK", disk)
				out, _ := runHelper(t, c, "devices")
				got := strings.Fields(out)
				for _, w := range strings.Fields(tc.want) {
					if !slices.Contains(got, w) {
						t.Errorf("in the cgroup: want %s, got %s", w, out)
					}
				}
			})
		}
	}
}

// A program the kernel refuses says why, in the verifier's words.
func TestLoadProgramRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	var code bytes.Buffer
	bad := asm.Instructions{asm.LoadMem(asm.R0, asm.R1, 64, asm.Word), asm.Return()}
	if err := bad.Marshal(&code, nativeEndian()); err != nil {
		t.Fatal(err)
	}
	fd, err := loadProgram(code.Bytes())
	if err == nil {
		unix.Close(fd)
		t.Fatal("a program reading past its context was loaded")
	}
	if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "verifier:") {
		t.Errorf("error %v; want EACCES or EINVAL with the verifier's log", err)
	}
}

// The device program is loaded once and kept: the next cgroups with the
// same rules, and one made again at the same path, get it and enforce it.
func TestDevicesProgramKept(t *testing.T) {
	m, err := hostMounts()
	if os.Geteuid() != 0 || err != nil || m.unified == "" {
		t.Skip("needs root and a cgroup2 hierarchy")
	}
	bpfView := &mounts{unified: m.unified}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=700"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	t.Setenv("DEVBOX_CGROUPS_TEST_DIR", dir)
	t.Setenv("DEVBOX_CGROUPS_TEST_DISK", "1 1") // /dev/mem's numbers: denied
	res := &specs.LinuxResources{Devices: dockerDevices()}
	check := func(c *Cgroup) {
		t.Helper()
		out, _ := runHelper(t, c, "devices")
		for _, w := range []string{"null-r=ok", "zero-rw=ok", "mem=EPERM"} {
			if !slices.Contains(strings.Fields(out), w) {
				t.Errorf("in cgroup %s: want %s, got %s", c.Path(), w, out)
			}
		}
	}
	for i := 0; i < 2; i++ {
		check(newTest(t, bpfView, res))
	}
	c := newTest(t, bpfView, res)
	again, err := create(bpfView, c.Path(), res)
	if err != nil {
		t.Fatalf("the same cgroup made again: %v", err)
	}
	again.Close()
	check(c)
}
