package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func init() {
	// As the lead's wiring does with runtime/seccomp, in every process of
	// the test binary (the init stage too).
	seccompLoad = loadFilter
	seccompHook = func(s *specs.LinuxSeccomp) error {
		if s.DefaultAction != specs.ActAllow || len(s.Syscalls) != 1 || s.Syscalls[0].Names[0] != "mkdir" {
			return fmt.Errorf("hook got %+v", s)
		}
		return loadFilter(denyMkdir(), 0)
	}
}

// denyMkdir is a seccomp program that fails mkdir and mkdirat with EPERM
// and allows everything else (it does not check the architecture: a test
// filter only).
func denyMkdir() []unix.SockFilter {
	nrs := []uint32{unix.SYS_MKDIRAT}
	if goruntime.GOARCH == "amd64" {
		nrs = append(nrs, 83) // mkdir
	}
	n := uint8(len(nrs))
	prog := []unix.SockFilter{{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}}
	for i, nr := range nrs {
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: n - uint8(i), K: nr})
	}
	return append(prog,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
	)
}

func loadFilter(prog []unix.SockFilter, flags uint) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	return unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0)
}

func TestSeccomp(t *testing.T) {
	profile := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdir"}, Action: specs.ActErrno}},
	}
	for _, split := range []bool{false, true} {
		for _, nnp := range []bool{false, true} {
			t.Run(fmt.Sprintf("compiled by Run %v, no_new_privs %v", split, nnp), func(t *testing.T) {
				if split {
					seccompCompile = func(*specs.LinuxSeccomp) ([]unix.SockFilter, uint, error) {
						return denyMkdir(), 0, nil
					}
					defer func() { seccompCompile = nil }()
				}
				out := sh(t, "mkdir x 2>/dev/null || echo denied; touch y && echo touched; grep Seccomp: /proc/self/status", withSpec(func(s *specs.Spec) {
					s.Linux.Seccomp = profile
					s.Process.NoNewPrivileges = nnp
					s.Process.User = specs.User{UID: 1000, GID: 1000}
					s.Process.Cwd = "/tmp"
				}))
				if !strings.HasPrefix(out, "denied\ntouched\nSeccomp:\t2\n") {
					t.Fatalf("got %q", out)
				}
			})
		}
	}
	t.Run("compile error", func(t *testing.T) {
		seccompCompile = func(*specs.LinuxSeccomp) ([]unix.SockFilter, uint, error) {
			return nil, 0, errors.New("bad profile")
		}
		defer func() { seccompCompile = nil }()
		c := newContainer(t, "true")
		c.Spec.Linux.Seccomp = profile
		if _, err := Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "seccomp: bad profile") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestConfigRoundTrip(t *testing.T) {
	cfg := &initConfig{
		Root: "/r", Layers: []string{"/l0", "/l1"}, UpperDir: "/u", WorkDir: "/w",
		RootPropagation: unix.MS_REC | unix.MS_SLAVE, RootReadonly: true,
		Mounts: []mountPlan{
			{Kind: mountBind, Source: "/src", Dest: "/dst", Type: "bind", Data: "a=b", Flags: unix.MS_BIND | unix.MS_RDONLY,
				Propagation: []uintptr{unix.MS_PRIVATE, unix.MS_SLAVE | unix.MS_REC}, RecursiveRO: true},
			{Kind: mountFS, Source: "proc", Dest: "/proc", Type: "proc"},
		},
		PopulateDev: true,
		Devices:     []devicePlan{{Path: "/dev/x", Mode: unix.S_IFCHR | 0o600, Major: 1, Minor: 300, UID: 5, GID: 6}},
		Terminal:    true, ConsoleRows: 50, ConsoleCols: 300, MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"},
		Sysctl: []string{"net.ipv4.ip_forward", "1"}, Hostname: "h", Domainname: "d",
		SetOOMScoreAdj: true, OOMScoreAdj: -500,
		Args: []string{"sh", "-c", "x"}, Env: []string{"A=ü"}, Cwd: "/w",
		UID: 1 << 31, GID: 7, AdditionalGids: []uint32{1, 2}, Umask: 0o077,
		Rlimits:         []rlimitPlan{{unix.RLIMIT_NOFILE, 1, ^uint64(0)}},
		Caps:            capSets{1, 2, 3, 4, 1 << 40},
		LastCap:         40,
		NoNewPrivileges: true,
		SeccompProg:     denyMkdir(), SeccompFlags: 3, SeccompSpec: []byte(`{}`),
		Wait: true, UnshareCgroup: true, CgroupNS: true, CgroupV2: true, CgroupHierarchies: []string{"cpu", "cgroup", "cpu"},
	}
	b := cfg.encode()
	got, err := decodeConfig(b[4:])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cfg) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, cfg)
	}
	for n := 0; n < len(b)-4; n++ {
		if _, err := decodeConfig(b[4 : 4+n]); err == nil {
			t.Fatalf("a config cut to %d bytes decoded", n)
		}
	}
	r := &initReport{Step: "mount /x", Msg: "no", Errno: unix.ENOENT, Exec: 127}
	if got, err := decodeReport(r.encode()); err != nil || *got != *r {
		t.Fatalf("report round trip: %+v, %v", got, err)
	}
}

// cgroup2Root finds where the host mounts cgroup2.
func cgroup2Root(t *testing.T) string {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p
		}
	}
	t.Skip("no cgroup2 mount")
	return ""
}

func TestCgroupFD(t *testing.T) {
	dir := filepath.Join(cgroup2Root(t), fmt.Sprintf("devbox-runtime-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skip("cannot make a cgroup:", err)
	}
	defer os.Remove(dir)
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	c := newContainer(t, "cat", "/proc/self/cgroup")
	c.CgroupFD = fd
	var placed string
	c.Started = func(pid int) error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		placed = string(b)
		return err
	}
	out := mustRun(t, c)
	if !strings.Contains(placed, "0::/"+filepath.Base(dir)+"\n") && !strings.Contains(placed, "/"+filepath.Base(dir)+"\n") {
		t.Errorf("not created in the cgroup: %q", placed)
	}
	// The cgroup namespace is rooted at the container's cgroup.
	if !strings.Contains(out, "0::/\n") {
		t.Errorf("container sees %q", out)
	}
}

// Started may put the process into cgroup v1 hierarchies; the container's
// cgroup namespace is then rooted there.
func TestStartedCgroupV1(t *testing.T) {
	base := "/sys/fs/cgroup/pids"
	var st unix.Statfs_t
	if unix.Statfs(base, &st) != nil || st.Type != unix.CGROUP_SUPER_MAGIC {
		t.Skip("no cgroup v1 pids hierarchy")
	}
	dir := filepath.Join(base, fmt.Sprintf("devbox-runtime-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skip("cannot make a cgroup:", err)
	}
	defer os.Remove(dir)
	c := newContainer(t, "cat", "/proc/self/cgroup")
	c.Started = func(pid int) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
	}
	out := mustRun(t, c)
	var pidsLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, ":pids:") {
			pidsLine = l
		}
	}
	if !strings.HasSuffix(pidsLine, ":pids:/") {
		t.Fatalf("the container sees %q (want its pids cgroup at the namespace root) in:\n%s", pidsLine, out)
	}
}

func TestSignalsChannel(t *testing.T) {
	c := newContainer(t, "sh", "-c", `trap 'exit 5' TERM; echo ready; while :; do sleep 0.05; done`)
	sigs := make(chan os.Signal, 1)
	c.Signals = sigs
	pr, pw := io.Pipe()
	c.Stdout = pw
	done := make(chan result, 1)
	go func() {
		st, err := Run(context.Background(), c)
		pw.Close()
		done <- result{status: st, err: err}
	}()
	sc := bufio.NewScanner(pr)
	if !sc.Scan() || sc.Text() != "ready" {
		t.Fatalf("never ready: %q", sc.Text())
	}
	go io.Copy(io.Discard, pr)
	sigs <- syscall.SIGTERM
	select {
	case r := <-done:
		if r.err != nil || r.status.Code != 5 {
			t.Fatalf("got %v, %v", r.status, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the signal was not forwarded")
	}
}

// Goroutines that lock a thread and return end that thread; the thread
// that forked a container must not be one of them, or the parent-death
// signal kills the container.
func TestThreadsEndingKeepContainer(t *testing.T) {
	c := newContainer(t, "sleep", "100")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	ending := make(chan struct{}, 64)
	go func() {
		// Keep ending threads while the container starts and runs.
		for {
			select {
			case <-stop:
				return
			case ending <- struct{}{}:
				go func() {
					goruntime.LockOSThread()
					goruntime.Gosched()
					<-ending
				}()
			}
		}
	}()
	done := make(chan result, 1)
	go func() {
		st, err := Run(ctx, c)
		done <- result{status: st, err: err}
	}()
	waitRunning(t, c, "sleep")
	time.Sleep(200 * time.Millisecond)
	close(stop)
	if comm(c.Pid()) != "sleep" {
		t.Fatal("the container died with a thread of its parent")
	}
	cancel()
	if r := <-done; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("got %v, %v", r.status, r.err)
	}
}
