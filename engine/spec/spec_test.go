package spec

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const testID = "0123456789abcdef0123456789abcdef"

func TestMain(m *testing.M) {
	// The host's answers, fixed so that the tests do not depend on it.
	osHostname = func() (string, error) { return "host-name", nil }
	hostNofileMax = func() uint64 { return 1 << 62 }
	thermalThrottle = func() []string { return nil }
	networkSysctls = func() map[string]string {
		return map[string]string{"net.ipv4.ping_group_range": "0 2147483647", "net.ipv4.ip_unprivileged_port_start": "0"}
	}
	os.Exit(m.Run())
}

// etc is an image with the usual accounts.
var etc = fstest.MapFS{
	"etc/passwd": {Data: []byte(`root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bob:x:1000:1000:Bob:/home/bob:/bin/sh
alice:x:1001:1001::/home/alice:/bin/sh
twin:x:1000:1000::/home/twin:/bin/sh
nohome:x:1002:1002:::/bin/sh
`)},
	"etc/group": {Data: []byte(`root:x:0:root
bin:x:1:root,bob
staff:x:50:alice
bob:x:1000:
docker:x:999:bob,alice
`)},
}

func config(entrypoint, cmd []string) *v1.ConfigFile {
	return &v1.ConfigFile{Config: v1.Config{Entrypoint: entrypoint, Cmd: cmd}}
}

var sh = config(nil, []string{"sh"})

func generate(t *testing.T, img *v1.ConfigFile, o Options) *specs.Spec {
	t.Helper()
	s, err := Generate(testID, img, o, etc, Files{}, "/rootfs")
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return s
}

func generateErr(t *testing.T, img *v1.ConfigFile, o Options) error {
	t.Helper()
	_, err := Generate(testID, img, o, etc, Files{}, "/rootfs")
	if err == nil {
		t.Fatal("Generate succeeded, want an error")
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is more than one line: %q", err)
	}
	return err
}

func wantErrText(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name  string
		img   *v1.ConfigFile
		o     Options
		want  []string
		noCmd bool
	}{
		{name: "image entrypoint and cmd", img: config([]string{"/entry", "-x"}, []string{"run", "it"}), want: []string{"/entry", "-x", "run", "it"}},
		{name: "image cmd only", img: config(nil, []string{"sh", "-c", "true"}), want: []string{"sh", "-c", "true"}},
		{name: "user cmd replaces image cmd, keeps entrypoint", img: config([]string{"/entry"}, []string{"default"}), o: Options{Cmd: []string{"mine", "x"}}, want: []string{"/entry", "mine", "x"}},
		{name: "entrypoint replaces entrypoint and drops image cmd", img: config([]string{"/entry"}, []string{"default"}), o: Options{Entrypoint: []string{"/bin/other"}, EntrypointSet: true}, want: []string{"/bin/other"}},
		{name: "entrypoint and user cmd", img: config([]string{"/entry"}, []string{"default"}), o: Options{Entrypoint: []string{"/bin/other"}, EntrypointSet: true, Cmd: []string{"a"}}, want: []string{"/bin/other", "a"}},
		{name: "entrypoint is one word", img: sh, o: Options{Entrypoint: []string{"sh -c"}, EntrypointSet: true}, want: []string{"sh -c"}},
		{name: "empty entrypoint with cmd runs cmd", img: config([]string{"/entry"}, []string{"default"}), o: Options{Entrypoint: []string{""}, EntrypointSet: true, Cmd: []string{"ls"}}, want: []string{"ls"}},
		{name: "empty entrypoint without cmd", img: config([]string{"/entry"}, []string{"default"}), o: Options{Entrypoint: []string{""}, EntrypointSet: true}, noCmd: true},
		{name: "nil entrypoint set without cmd", img: config([]string{"/entry"}, []string{"default"}), o: Options{EntrypointSet: true}, noCmd: true},
		{name: "image entrypoint [\"\"] is reset", img: config([]string{""}, []string{"sh"}), want: []string{"sh"}},
		{name: "nothing at all", img: config(nil, nil), noCmd: true},
		{name: "no image config", img: nil, o: Options{Cmd: []string{"true"}}, want: []string{"true"}},
		{name: "no image config and no cmd", img: nil, noCmd: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.noCmd {
				err := generateErr(t, tt.img, tt.o)
				if !errors.Is(err, ErrNoCommand) || err.Error() != "no command specified" {
					t.Fatalf("err = %v, want ErrNoCommand", err)
				}
				return
			}
			if got := generate(t, tt.img, tt.o).Process.Args; !slices.Equal(got, tt.want) {
				t.Errorf("Args = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	withEnv := func(env ...string) *v1.ConfigFile {
		c := config(nil, []string{"sh"})
		c.Config.Env = env
		return c
	}
	tests := []struct {
		name string
		img  *v1.ConfigFile
		o    Options
		want []string
	}{
		{
			name: "defaults",
			img:  sh,
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=host-name", "HOME=/root"},
		},
		{
			name: "image PATH replaces the default in place",
			img:  withEnv("PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8"),
			want: []string{"PATH=/opt/bin:/usr/bin", "HOSTNAME=host-name", "LANG=C.UTF-8", "HOME=/root"},
		},
		{
			name: "user env overrides the image's by name, user entries first",
			img:  withEnv("A=image", "B=image", "C=image"),
			o:    Options{Env: []string{"B=user", "D=user"}},
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=host-name", "B=user", "D=user", "A=image", "C=image", "HOME=/root"},
		},
		{
			name: "TERM with a terminal",
			img:  sh,
			o:    Options{Terminal: true},
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=host-name", "TERM=xterm", "HOME=/root"},
		},
		{
			name: "image TERM wins over the default",
			img:  withEnv("TERM=dumb"),
			o:    Options{Terminal: true},
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=host-name", "TERM=dumb", "HOME=/root"},
		},
		{
			name: "a name without = unsets a default and hides the image's",
			img:  withEnv("FOO=image"),
			o:    Options{Env: []string{"HOSTNAME", "FOO"}},
			want: []string{"PATH=" + DefaultPath, "HOME=/root"},
		},
		{
			name: "a name set twice keeps its first place and last value",
			img:  sh,
			o:    Options{Env: []string{"A=1", "B=2", "A=3"}},
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=host-name", "A=3", "B=2", "HOME=/root"},
		},
		{
			name: "HOME from the image is kept",
			img:  withEnv("HOME=/srv"),
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=host-name", "HOME=/srv"},
		},
		{
			name: "an empty HOME is set from passwd",
			img:  sh,
			o:    Options{Env: []string{"HOME="}},
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=host-name", "HOME=/root"},
		},
		{
			name: "HOME of a named user",
			img:  sh,
			o:    Options{User: "bob"},
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=host-name", "HOME=/home/bob"},
		},
		{
			name: "HOME of a uid is its first passwd entry's",
			img:  sh,
			o:    Options{User: "twin"},
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=host-name", "HOME=/home/bob"},
		},
		{
			name: "HOME of a uid without an entry",
			img:  sh,
			o:    Options{User: "4242"},
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=host-name", "HOME=/"},
		},
		{
			name: "HOME of an entry without a home",
			img:  sh,
			o:    Options{User: "nohome"},
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=host-name", "HOME=/"},
		},
		{
			name: "HOSTNAME follows -h",
			img:  sh,
			o:    Options{Hostname: "box"},
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=box", "HOME=/root"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := generate(t, tt.img, tt.o).Process.Env; !slices.Equal(got, tt.want) {
				t.Errorf("Env =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}

	err := generateErr(t, sh, Options{Env: []string{"=x"}})
	wantErrText(t, err, `-e "=x"`, "name is empty")
	err = generateErr(t, withEnv("A=\x00"), Options{})
	wantErrText(t, err, "image ENV", "NUL")
}

func TestCwd(t *testing.T) {
	withWorkdir := func(wd string) *v1.ConfigFile {
		c := config(nil, []string{"sh"})
		c.Config.WorkingDir = wd
		return c
	}
	for _, tt := range []struct {
		img  *v1.ConfigFile
		flag string
		want string
	}{
		{sh, "", "/"},
		{withWorkdir("/app"), "", "/app"},
		{withWorkdir("/app"), "/src", "/src"},
		{sh, "/src/./x/../y/", "/src/y"},
		{withWorkdir("/app/"), "", "/app"},
	} {
		if got := generate(t, tt.img, Options{Workdir: tt.flag}).Process.Cwd; got != tt.want {
			t.Errorf("image %q, -w %q: Cwd = %q, want %q", tt.img.Config.WorkingDir, tt.flag, got, tt.want)
		}
	}
	err := generateErr(t, sh, Options{Workdir: "src"})
	wantErrText(t, err, `--workdir "src"`, "absolute", "/src")
	err = generateErr(t, withWorkdir("app"), Options{})
	wantErrText(t, err, `image WORKDIR "app"`, "--workdir")
}

func TestHostname(t *testing.T) {
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{}, "host-name"},
		{Options{Network: "host"}, "host-name"},
		{Options{Network: "none"}, testID[:12]},
		{Options{Network: "none", Hostname: "box"}, "box"},
		{Options{Network: "host", Hostname: "box.example"}, "box.example"},
	} {
		s := generate(t, sh, tt.o)
		if s.Hostname != tt.want {
			t.Errorf("%+v: Hostname = %q, want %q", tt.o, s.Hostname, tt.want)
		}
		if h, _ := Hostname(testID, tt.o); h != tt.want {
			t.Errorf("%+v: Hostname() = %q, want %q", tt.o, h, tt.want)
		}
		if !slices.Contains(s.Process.Env, "HOSTNAME="+tt.want) {
			t.Errorf("%+v: Env %q lacks HOSTNAME=%s", tt.o, s.Process.Env, tt.want)
		}
	}
	if s, err := Generate("abc", sh, Options{Network: "none"}, etc, Files{}, "/r"); err != nil || s.Hostname != "abc" {
		t.Errorf("short id: %v %v", s.Hostname, err)
	}
	err := generateErr(t, sh, Options{Hostname: strings.Repeat("a", 65)})
	wantErrText(t, err, "--hostname", "64")
	err = generateErr(t, sh, Options{Hostname: "a b"})
	wantErrText(t, err, `--hostname "a b"`)
}

func TestID(t *testing.T) {
	for _, id := range []string{"", "../x", "a/b", ".x", "-x"} {
		if _, err := Generate(id, sh, Options{}, etc, Files{}, "/r"); err == nil {
			t.Errorf("id %q accepted", id)
		}
	}
	if s := generate(t, sh, Options{}); s.Linux.CgroupsPath != "devbox/"+testID {
		t.Errorf("CgroupsPath = %q", s.Linux.CgroupsPath)
	}
}

var dockerCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

func TestCapabilities(t *testing.T) {
	// The same sets for every user, as Docker gives them; for a user other
	// than root, execve leaves no effective capability.
	for _, user := range []string{"", "root", "bob", "1000:1000"} {
		c := generate(t, sh, Options{User: user}).Process.Capabilities
		for name, got := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
			if !slices.Equal(got, dockerCaps) {
				t.Errorf("user %q: %s = %q, want Docker's %q", user, name, got, dockerCaps)
			}
		}
		if c.Inheritable != nil || c.Ambient != nil {
			t.Errorf("user %q: inheritable %q, ambient %q, want none", user, c.Inheritable, c.Ambient)
		}
	}
}

func TestNoNewPrivileges(t *testing.T) {
	if !generate(t, sh, Options{}).Process.NoNewPrivileges {
		t.Error("NoNewPrivileges is off")
	}
}

func TestOOMScoreAdj(t *testing.T) {
	if p := generate(t, sh, Options{}).Process.OOMScoreAdj; p == nil || *p != 0 {
		t.Errorf("OOMScoreAdj = %v, want 0", p)
	}
}

func TestRlimits(t *testing.T) {
	defer func(f func() uint64) { hostNofileMax = f }(hostNofileMax)
	for _, tt := range []struct{ host, want uint64 }{
		{1 << 62, 1048576},
		{^uint64(0), 1048576},
		{20000, 20000},
	} {
		hostNofileMax = func() uint64 { return tt.host }
		got := generate(t, sh, Options{}).Process.Rlimits
		want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: tt.want, Soft: tt.want}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("host hard limit %d: Rlimits = %+v, want %+v", tt.host, got, want)
		}
	}
}

// dockerMounts is what `docker run` gives a container (moby's default spec,
// /dev/shm at the default --shm-size).
var dockerMounts = []specs.Mount{
	{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
	{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
	{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
	{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
	{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
	{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
}

var testFiles = Files{Hostname: "/c/hostname", Hosts: "/c/hosts", ResolvConf: "/c/resolv.conf"}

func mounts(t *testing.T, o Options, f Files) []specs.Mount {
	t.Helper()
	s, err := Generate(testID, sh, o, etc, f, "/rootfs")
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return s.Mounts
}

func destinations(ms []specs.Mount) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Destination)
	}
	return out
}

func find(t *testing.T, ms []specs.Mount, dest string) specs.Mount {
	t.Helper()
	for _, m := range ms {
		if m.Destination == dest {
			return m
		}
	}
	t.Fatalf("no mount at %s in %q", dest, destinations(ms))
	return specs.Mount{}
}

func TestMountsDefault(t *testing.T) {
	got := mounts(t, Options{}, testFiles)
	want := append(slices.Clone(dockerMounts),
		specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: "/c/hosts", Options: []string{"rbind", "rprivate"}},
		specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: "/c/resolv.conf", Options: []string{"rbind", "rprivate"}},
		specs.Mount{Destination: "/etc/hostname", Type: "bind", Source: "/c/hostname", Options: []string{"rbind", "rprivate"}},
	)
	// The /etc files may come in any order; everything else in this one.
	slices.SortStableFunc(got[7:], func(a, b specs.Mount) int { return strings.Compare(a.Destination, b.Destination) })
	slices.SortStableFunc(want[7:], func(a, b specs.Mount) int { return strings.Compare(a.Destination, b.Destination) })
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Mounts =\n%+v\nwant\n%+v", got, want)
	}
	if got := mounts(t, Options{}, Files{}); !reflect.DeepEqual(got, dockerMounts) {
		t.Errorf("without files: Mounts = %+v", got)
	}
	_, err := Generate(testID, sh, Options{}, etc, Files{Hosts: "rel/hosts"}, "/r")
	if err == nil {
		t.Error("relative file path accepted")
	}
}

func TestMountsBinds(t *testing.T) {
	ms := mounts(t, Options{Binds: []Bind{
		{Source: "/home/me/src", Destination: "/src"},
		{Source: "/data/", Destination: "/mnt/data/", ReadOnly: true},
	}}, Files{})
	if m := find(t, ms, "/src"); !reflect.DeepEqual(m, specs.Mount{Destination: "/src", Type: "bind", Source: "/home/me/src", Options: []string{"rbind", "rprivate"}}) {
		t.Errorf("rw bind = %+v", m)
	}
	if m := find(t, ms, "/mnt/data"); !reflect.DeepEqual(m, specs.Mount{Destination: "/mnt/data", Type: "bind", Source: "/data", Options: []string{"rbind", "ro", "rprivate"}}) {
		t.Errorf("ro bind = %+v", m)
	}

	for _, tt := range []struct {
		b     Bind
		parts []string
	}{
		{Bind{Source: "src", Destination: "/src"}, []string{"-v src:/src", "host path", "absolute"}},
		{Bind{Source: "/src", Destination: "src"}, []string{"-v /src:src", "container path", "absolute"}},
		{Bind{Source: "/src", Destination: "/"}, []string{"-v /src:/", "root"}},
		{Bind{Source: "/src", Destination: "/./", ReadOnly: true}, []string{"-v /src:/./:ro", "root"}},
	} {
		wantErrText(t, generateErr(t, sh, Options{Binds: []Bind{tt.b}}), tt.parts...)
	}
	err := generateErr(t, sh, Options{Binds: []Bind{{Source: "/a", Destination: "/x"}, {Source: "/b", Destination: "/x/"}}})
	wantErrText(t, err, "-v /a:/x", "-v /b:/x/", "duplicate mount point /x")
	err = generateErr(t, sh, Options{Binds: []Bind{{Source: "/a", Destination: "/x"}}, Tmpfs: []string{"/x"}})
	wantErrText(t, err, "duplicate mount point /x", "--tmpfs")
}

func TestMountsTmpfs(t *testing.T) {
	for _, tt := range []struct {
		flag string
		dest string
		opts []string
	}{
		{"/run", "/run", []string{"noexec", "nosuid", "nodev", "rprivate"}},
		{"/run:size=64m", "/run", []string{"noexec", "nosuid", "nodev", "rprivate", "size=64m"}},
		{"/run:rw,exec,size=1m,mode=1777", "/run", []string{"nosuid", "nodev", "rprivate", "rw", "exec", "size=1m", "mode=1777"}},
		{"/run:size=1m,size=2m", "/run", []string{"noexec", "nosuid", "nodev", "rprivate", "size=2m"}},
		{"/run:ro,suid,shared", "/run", []string{"noexec", "nodev", "ro", "suid", "shared"}},
		{"/run/:defaults", "/run", []string{"noexec", "nosuid", "nodev", "rprivate"}},
	} {
		m := find(t, mounts(t, Options{Tmpfs: []string{tt.flag}}, Files{}), tt.dest)
		want := specs.Mount{Destination: tt.dest, Type: "tmpfs", Source: "tmpfs", Options: tt.opts}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("--tmpfs %s: %+v, want %+v", tt.flag, m, want)
		}
	}
	for _, tt := range []struct {
		flag  string
		parts []string
	}{
		{"run", []string{`--tmpfs "run"`, "absolute"}},
		{"/", []string{`--tmpfs "/"`, "root"}},
		{"/run:foo", []string{`--tmpfs "/run:foo"`, `unknown option "foo"`}},
		{"/run:bind", []string{`unknown option "bind"`}},
		{"/run:size=1m,", []string{`unknown option ""`}},
		{"/run:tmpcopyup", []string{`unknown option "tmpcopyup"`}},
	} {
		wantErrText(t, generateErr(t, sh, Options{Tmpfs: []string{tt.flag}}), tt.parts...)
	}
}

func TestMountsOrder(t *testing.T) {
	ms := mounts(t, Options{
		Binds: []Bind{
			{Source: "/h/deep", Destination: "/a/b/c"},
			{Source: "/h/etc", Destination: "/etc"},
			{Source: "/h/a", Destination: "/a"},
		},
		Tmpfs: []string{"/a/b"},
	}, testFiles)
	got := destinations(ms[len(dockerMounts):])
	// Parents before children; equal depths keep binds, tmpfs, /etc files.
	want := []string{"/etc", "/a", "/a/b", "/etc/resolv.conf", "/etc/hostname", "/etc/hosts", "/a/b/c"}
	if !slices.Equal(got, want) {
		t.Errorf("user mounts in order %q, want %q", got, want)
	}
	if !slices.Equal(destinations(ms[:len(dockerMounts)]), destinations(dockerMounts)) {
		t.Errorf("defaults not first: %q", destinations(ms))
	}
}

func TestMountsReplaceDefaults(t *testing.T) {
	// A user mount at a default's place replaces it.
	ms := mounts(t, Options{Tmpfs: []string{"/dev/shm:size=1g"}}, Files{})
	if m := find(t, ms, "/dev/shm"); m.Source != "tmpfs" || !slices.Contains(m.Options, "size=1g") {
		t.Errorf("/dev/shm = %+v, want the --tmpfs one", m)
	}
	if n := strings.Count(strings.Join(destinations(ms), " "), "/dev/shm"); n != 1 {
		t.Errorf("%d mounts at /dev/shm", n)
	}
	// A user /dev replaces every default under /dev.
	ms = mounts(t, Options{Binds: []Bind{{Source: "/dev", Destination: "/dev"}}}, Files{})
	if got, want := destinations(ms), []string{"/proc", "/sys", "/sys/fs/cgroup", "/dev"}; !slices.Equal(got, want) {
		t.Errorf("with -v /dev:/dev: %q, want %q", got, want)
	}
	// A user mount at an /etc file replaces the container's own.
	ms = mounts(t, Options{Binds: []Bind{{Source: "/my/hosts", Destination: "/etc/hosts", ReadOnly: true}}}, testFiles)
	if m := find(t, ms, "/etc/hosts"); m.Source != "/my/hosts" {
		t.Errorf("/etc/hosts = %+v, want the user's", m)
	}
	if n := strings.Count(strings.Join(destinations(ms), " "), "/etc/hosts"); n != 1 {
		t.Errorf("%d mounts at /etc/hosts", n)
	}
}

func TestReadOnly(t *testing.T) {
	s, err := Generate(testID, sh, Options{
		ReadOnly: true,
		Binds:    []Bind{{Source: "/w", Destination: "/w"}},
		Tmpfs:    []string{"/tmp"},
	}, etc, testFiles, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Root, &specs.Root{Path: "/rootfs", Readonly: true}) {
		t.Errorf("Root = %+v", s.Root)
	}
	ro := map[string]bool{}
	for _, m := range s.Mounts {
		ro[m.Destination] = slices.Contains(m.Options, "ro")
		if n := strings.Count(strings.Join(m.Options, ","), "ro"); n > 1 && m.Type != "tmpfs" {
			t.Errorf("%s: options %q", m.Destination, m.Options)
		}
	}
	want := map[string]bool{
		"/proc": false, "/dev": false, "/dev/pts": false, "/dev/mqueue": false, "/dev/shm": false,
		"/sys": true, "/sys/fs/cgroup": true,
		"/etc/hosts": true, "/etc/hostname": true, "/etc/resolv.conf": true,
		"/w": false, "/tmp": false, // the user's own say
	}
	if !reflect.DeepEqual(ro, want) {
		t.Errorf("read-only mounts = %v, want %v", ro, want)
	}
	if m := find(t, s.Mounts, "/etc/hosts"); !slices.Equal(m.Options, []string{"rbind", "ro", "rprivate"}) {
		t.Errorf("/etc/hosts options = %q", m.Options)
	}
	if s := generate(t, sh, Options{}); s.Root.Readonly || s.Root.Path != "/rootfs" {
		t.Errorf("Root = %+v", s.Root)
	}
}

func TestMaskedAndReadonlyPaths(t *testing.T) {
	s := generate(t, sh, Options{})
	wantMasked := []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
		"/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
	}
	if !slices.Equal(s.Linux.MaskedPaths, wantMasked) {
		t.Errorf("MaskedPaths = %q, want %q", s.Linux.MaskedPaths, wantMasked)
	}
	wantRO := []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	if !slices.Equal(s.Linux.ReadonlyPaths, wantRO) {
		t.Errorf("ReadonlyPaths = %q, want %q", s.Linux.ReadonlyPaths, wantRO)
	}

	defer func(f func() []string) { thermalThrottle = f }(thermalThrottle)
	thermalThrottle = func() []string { return []string{"/sys/devices/system/cpu/cpu0/thermal_throttle"} }
	if got := generate(t, sh, Options{}).Linux.MaskedPaths; got[len(got)-1] != "/sys/devices/system/cpu/cpu0/thermal_throttle" {
		t.Errorf("MaskedPaths = %q, want thermal_throttle at the end", got)
	}
}

func TestNamespaces(t *testing.T) {
	types := func(s *specs.Spec) []string {
		var out []string
		for _, ns := range s.Linux.Namespaces {
			if ns.Path != "" {
				t.Errorf("namespace %s joins %s", ns.Type, ns.Path)
			}
			out = append(out, string(ns.Type))
		}
		slices.Sort(out)
		return out
	}
	if got, want := types(generate(t, sh, Options{Network: "host"})), []string{"cgroup", "ipc", "mount", "pid", "uts"}; !slices.Equal(got, want) {
		t.Errorf("host: %q, want %q", got, want)
	}
	if got, want := types(generate(t, sh, Options{})), []string{"cgroup", "ipc", "mount", "pid", "uts"}; !slices.Equal(got, want) {
		t.Errorf("default: %q, want %q", got, want)
	}
	if got, want := types(generate(t, sh, Options{Network: "none"})), []string{"cgroup", "ipc", "mount", "network", "pid", "uts"}; !slices.Equal(got, want) {
		t.Errorf("none: %q, want %q", got, want)
	}
	err := generateErr(t, sh, Options{Network: "bridge"})
	wantErrText(t, err, `--network "bridge"`, "--network host", "--network none")
	// Namespaces, for a process created before the spec, says the same.
	for _, o := range []Options{{}, {Network: "host"}, {Network: "none"}} {
		ns, err := Namespaces(o)
		if err != nil || !reflect.DeepEqual(ns, generate(t, sh, o).Linux.Namespaces) {
			t.Errorf("Namespaces(%+v) = %v, %v; not Generate's", o, ns, err)
		}
	}
	if _, err := Namespaces(Options{Network: "bridge"}); err == nil {
		t.Error("Namespaces took --network bridge")
	}
}

func TestSysctls(t *testing.T) {
	if s := generate(t, sh, Options{}); s.Linux.Sysctl != nil {
		t.Errorf("host network: Sysctl = %v, want none", s.Linux.Sysctl)
	}
	want := map[string]string{"net.ipv4.ping_group_range": "0 2147483647", "net.ipv4.ip_unprivileged_port_start": "0"}
	if s := generate(t, sh, Options{Network: "none"}); !reflect.DeepEqual(s.Linux.Sysctl, want) {
		t.Errorf("none: Sysctl = %v, want %v", s.Linux.Sysctl, want)
	}
}

func TestResources(t *testing.T) {
	r := generate(t, sh, Options{}).Linux.Resources
	if r.Memory != nil || r.CPU != nil || r.Pids != nil {
		t.Errorf("no flags: %+v", r)
	}
	if len(r.Devices) == 0 || r.Devices[0].Allow || r.Devices[0].Type != "a" || r.Devices[0].Access != "rwm" {
		t.Errorf("device rules do not start by denying all: %+v", r.Devices)
	}
	for _, d := range r.Devices {
		if d.Allow && d.Type == "b" && d.Access != "m" {
			t.Errorf("block device access allowed: %+v", d)
		}
	}

	r = generate(t, sh, Options{Memory: 512 << 20, CPUQuota: 50000, CPUPeriod: 100000, PidsLimit: 100}).Linux.Resources
	if *r.Memory.Limit != 512<<20 || *r.Memory.Swap != 512<<20 {
		t.Errorf("Memory = %d, swap %d", *r.Memory.Limit, *r.Memory.Swap)
	}
	if *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 {
		t.Errorf("CPU = %d/%d", *r.CPU.Quota, *r.CPU.Period)
	}
	if *r.Pids.Limit != 100 {
		t.Errorf("Pids = %d", *r.Pids.Limit)
	}
	r = generate(t, sh, Options{CPUQuota: -1, PidsLimit: -1}).Linux.Resources
	if r.CPU != nil || r.Pids != nil {
		t.Errorf("-1 means no limit: %+v %+v", r.CPU, r.Pids)
	}
	r = generate(t, sh, Options{CPUQuota: 20000}).Linux.Resources
	if *r.CPU.Quota != 20000 || r.CPU.Period != nil {
		t.Errorf("quota alone: %+v", r.CPU)
	}

	for _, tt := range []struct {
		o     Options
		parts []string
	}{
		{Options{Memory: -5}, []string{"--memory -5"}},
		{Options{Memory: 1 << 20}, []string{"--memory 1048576", "6MiB"}},
		{Options{CPUPeriod: 999}, []string{"--cpu-period 999", "1000"}},
		{Options{CPUPeriod: 1000001}, []string{"--cpu-period 1000001"}},
		{Options{CPUPeriod: -1}, []string{"--cpu-period -1"}},
		{Options{CPUQuota: 999}, []string{"--cpu-quota 999"}},
	} {
		wantErrText(t, generateErr(t, sh, tt.o), tt.parts...)
	}
}

func TestTerminal(t *testing.T) {
	box := &specs.Box{Height: 40, Width: 120}
	p := generate(t, sh, Options{Terminal: true, ConsoleSize: box}).Process
	if !p.Terminal || p.ConsoleSize == nil || *p.ConsoleSize != *box || p.ConsoleSize == box {
		t.Errorf("Terminal %v, ConsoleSize %+v", p.Terminal, p.ConsoleSize)
	}
	p = generate(t, sh, Options{ConsoleSize: box}).Process
	if p.Terminal || p.ConsoleSize != nil {
		t.Errorf("no -t: Terminal %v, ConsoleSize %+v", p.Terminal, p.ConsoleSize)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	s, err := Generate(testID, config([]string{"/e"}, []string{"c"}), Options{
		Env:         []string{"A=1"},
		User:        "bob",
		Binds:       []Bind{{Source: "/h", Destination: "/c", ReadOnly: true}},
		Tmpfs:       []string{"/run:size=1m"},
		ReadOnly:    true,
		Network:     "none",
		Terminal:    true,
		ConsoleSize: &specs.Box{Height: 1, Width: 2},
		Memory:      64 << 20, CPUQuota: 1000, CPUPeriod: 10000, PidsLimit: 5,
	}, etc, testFiles, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back specs.Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, &back) {
		t.Errorf("spec changed through JSON:\n%+v\n%+v", s, &back)
	}
	if back.Version != specs.Version {
		t.Errorf("ociVersion = %q", back.Version)
	}
}

func TestWriteFiles(t *testing.T) {
	host := t.TempDir()
	defer func(h, r string) { hostHosts, hostResolvConf = h, r }(hostHosts, hostResolvConf)
	hostHosts, hostResolvConf = filepath.Join(host, "hosts"), filepath.Join(host, "resolv.conf")
	os.WriteFile(hostHosts, []byte("127.0.0.1 localhost\n10.0.0.1 db\n"), 0o644)
	os.WriteFile(hostResolvConf, []byte("nameserver 10.0.0.53\nsearch corp\n"), 0o644)

	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v", p, fi.Mode())
		}
		return string(b)
	}

	dir := t.TempDir()
	f, err := WriteFiles(dir, "host-name", "host")
	if err != nil {
		t.Fatal(err)
	}
	if f != (Files{Hostname: dir + "/hostname", Hosts: dir + "/hosts", ResolvConf: dir + "/resolv.conf"}) {
		t.Errorf("Files = %+v", f)
	}
	if got := read(f.Hostname); got != "host-name\n" {
		t.Errorf("hostname = %q", got)
	}
	if got := read(f.Hosts); got != "127.0.0.1 localhost\n10.0.0.1 db\n" {
		t.Errorf("host network: hosts = %q, want the host's", got)
	}
	if got := read(f.ResolvConf); got != "nameserver 10.0.0.53\nsearch corp\n" {
		t.Errorf("host network: resolv.conf = %q, want the host's", got)
	}

	f, err = WriteFiles(dir, "box", "none") // over the previous ones
	if err != nil {
		t.Fatal(err)
	}
	hosts := read(f.Hosts)
	for _, line := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n", "127.0.1.1\tbox\n"} {
		if !strings.Contains(hosts, line) {
			t.Errorf("none: hosts %q lacks %q", hosts, line)
		}
	}
	if got := read(f.ResolvConf); strings.Contains(got, "nameserver") {
		t.Errorf("none: resolv.conf = %q, want no name server", got)
	}
	if got := read(f.Hostname); got != "box\n" {
		t.Errorf("hostname = %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("dir holds %d entries, want 3 (no temporary files left)", len(entries))
	}

	os.Remove(hostHosts)
	os.Remove(hostResolvConf)
	f, err = WriteFiles(dir, "h", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := read(f.Hosts); !strings.Contains(got, "127.0.1.1\th\n") {
		t.Errorf("no host /etc/hosts: hosts = %q", got)
	}
	if got := read(f.ResolvConf); got != "" {
		t.Errorf("no host resolv.conf: %q", got)
	}

	if _, err := WriteFiles(dir, "h", "bridge"); err == nil || !strings.Contains(err.Error(), `--network "bridge"`) {
		t.Errorf("bridge: %v", err)
	}
	if _, err := WriteFiles(filepath.Join(dir, "missing"), "h", "none"); err == nil {
		t.Error("missing dir: no error")
	}

	// Generate mounts what WriteFiles wrote.
	s, err := Generate(testID, sh, Options{Network: "none", Hostname: "box"}, etc, f, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	if m := find(t, s.Mounts, "/etc/resolv.conf"); m.Source != f.ResolvConf {
		t.Errorf("resolv.conf mount = %+v", m)
	}
}

// countFS counts the files read.
type countFS struct {
	fs.FS
	reads []string
}

func (c *countFS) Open(name string) (fs.File, error) {
	c.reads = append(c.reads, name)
	return c.FS.Open(name)
}

func TestReadsOnlyWhatItNeeds(t *testing.T) {
	withHome := config(nil, []string{"sh"})
	withHome.Config.Env = []string{"HOME=/h"}
	for _, tt := range []struct {
		img   *v1.ConfigFile
		user  string
		reads []string
	}{
		{sh, "", []string{"etc/passwd", "etc/group"}},
		{sh, "bob", []string{"etc/passwd", "etc/group"}},
		{sh, "bob:50", []string{"etc/passwd"}},
		{sh, "1000:1000", []string{"etc/passwd"}}, // for HOME
		{withHome, "1000:1000", nil},
		{withHome, "1000:staff", []string{"etc/group"}},
		{sh, "4242", []string{"etc/passwd"}}, // no entry: no name to look for in group
	} {
		c := &countFS{FS: etc}
		if _, err := Generate(testID, tt.img, Options{User: tt.user}, c, Files{}, "/r"); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.reads, tt.reads) {
			t.Errorf("user %q, env %q: read %q, want %q", tt.user, tt.img.Config.Env, c.reads, tt.reads)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	img := config([]string{"/docker-entrypoint.sh"}, []string{"nginx", "-g", "daemon off;"})
	img.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.27.0", "PKG_RELEASE=1"}
	img.Config.WorkingDir = "/"
	o := Options{
		Env:      []string{"A=1", "B=2"},
		Binds:    []Bind{{Source: "/home/me/src", Destination: "/src"}},
		Tmpfs:    []string{"/run"},
		Terminal: true,
	}
	for b.Loop() {
		if _, err := Generate(testID, img, o, etc, testFiles, "/rootfs"); err != nil {
			b.Fatal(err)
		}
	}
}
