package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestEcho(t *testing.T) {
	c := newContainer(t, "echo", "hello")
	if out := mustRun(t, c); out != "hello\n" {
		t.Fatalf("stdout %q, want %q", out, "hello\n")
	}
}

func TestStdoutStderrApart(t *testing.T) {
	c := newContainer(t, "/bin/sh", "-c", "echo out; echo err >&2")
	r := runContainer(t, c)
	if r.err != nil || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Fatalf("got stdout %q stderr %q err %v", r.stdout, r.stderr, r.err)
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		signal syscall.Signal
	}{
		{"exit 0", []string{"true"}, 0, 0},
		{"exit 3", []string{"sh", "-c", "exit 3"}, 3, 0},
		{"false", []string{"false"}, 1, 0},
		{"script", []string{"script", "a"}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runContainer(t, newContainer(t, tc.args...))
			if r.err != nil || r.status.Code != tc.code || r.status.Signal != tc.signal {
				t.Fatalf("got %v, %v; want code %d signal %d", r.status, r.err, tc.code, tc.signal)
			}
		})
	}
}

// A process killing itself with SIGKILL ends with 137. It has to be a
// process that is not PID 1: the kernel protects a pid namespace's init
// from signals sent inside the namespace that it does not handle (as under
// Docker, where `sh -c 'kill -9 $$'` just carries on).
func TestKilledBySignal(t *testing.T) {
	t.Run("host pid namespace", func(t *testing.T) {
		c := newContainer(t, "sh", "-c", "kill -9 $$; echo survived")
		c.Spec.Linux.Namespaces = slices.DeleteFunc(c.Spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
			return ns.Type == specs.PIDNamespace
		})
		r := runContainer(t, c)
		if r.err != nil || r.status != (ExitStatus{Code: 137, Signal: syscall.SIGKILL}) || r.stdout != "" {
			t.Fatalf("got %v, %v, stdout %q; want 137 by SIGKILL", r.status, r.err, r.stdout)
		}
	})
	t.Run("pid 1 is protected", func(t *testing.T) {
		out := sh(t, "kill -9 $$; echo survived")
		if out != "survived\n" {
			t.Fatalf("stdout %q", out)
		}
	})
	t.Run("from outside", func(t *testing.T) {
		c := newContainer(t, "sleep", "100")
		done := make(chan result, 1)
		go func() { done <- runContainer(t, c) }()
		waitRunning(t, c, "sleep")
		if err := c.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.err != nil || r.status != (ExitStatus{Code: 137, Signal: syscall.SIGKILL}) {
			t.Fatalf("got %v, %v; want 137 by SIGKILL", r.status, r.err)
		}
		if err := c.Signal(syscall.SIGKILL); !errors.Is(err, ErrNotRunning) {
			t.Fatalf("Signal after exit: %v, want ErrNotRunning", err)
		}
	})
}

// waitRunning waits until c's process runs the program named comm.
func waitRunning(t testing.TB, c *Container, comm string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if pid := c.Pid(); pid != 0 {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if strings.TrimSpace(string(b)) == comm {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("container never ran %s", comm)
}

func TestExecErrors(t *testing.T) {
	for _, tc := range []struct {
		prog string
		code int
		msg  string
	}{
		{"nope", 127, `exec: "nope": executable file not found in $PATH`},
		{"/nope", 127, `exec: "/nope": no such file or directory`},
		{"/bin/noexec", 126, `exec: "/bin/noexec": permission denied`},
		{"noexec", 126, `exec: "noexec": permission denied`},
		{"/etc", 126, `exec: "/etc": permission denied`},
		{"/bin/garbage", 126, `exec: "/bin/garbage": exec format error`},
		{"/bin/badinterp", 127, `exec: "/bin/badinterp": no such file or directory`},
	} {
		t.Run(tc.prog, func(t *testing.T) {
			r := runContainer(t, newContainer(t, tc.prog))
			var e *ExecError
			if !errors.As(r.err, &e) {
				t.Fatalf("error %v (%T), want an *ExecError", r.err, r.err)
			}
			if e.Code != tc.code || e.Msg != tc.msg || r.status.Code != tc.code {
				t.Fatalf("got %+v status %v, want code %d msg %q", e, r.status, tc.code, tc.msg)
			}
		})
	}
}

func TestSetupError(t *testing.T) {
	c := newContainer(t, "true")
	c.Spec.Mounts = append(c.Spec.Mounts, specs.Mount{
		Destination: "/data", Type: "bind", Source: "/nonexistent/devbox", Options: []string{"rbind"},
	})
	r := runContainer(t, c)
	var se *SetupError
	if !errors.As(r.err, &se) || se.Step != "mount /data" || !errors.Is(r.err, fs.ErrNotExist) {
		t.Fatalf("error %v, want a SetupError of step \"mount /data\" wrapping ENOENT", r.err)
	}
	if !strings.Contains(r.err.Error(), "mount /data: source /nonexistent/devbox: no such file or directory") {
		t.Fatalf("message %q", r.err)
	}
}

func TestHostname(t *testing.T) {
	if out := sh(t, "hostname"); out != "ctr\n" {
		t.Fatalf("hostname %q", out)
	}
	host, _ := os.Hostname()
	if host == "ctr" {
		t.Fatal("the container renamed the host")
	}
}

func TestPID1(t *testing.T) {
	out := sh(t, "echo $$; ps -o pid,comm; echo done")
	// No devbox process stays inside: sh is PID 1, and ps its child.
	if f := strings.Fields(out); len(f) != 8 || !slices.Equal(f, []string{"1", "PID", "COMMAND", "1", "sh", f[5], "ps", "done"}) {
		t.Fatalf("got %q", out)
	}
}

func TestLayers(t *testing.T) {
	out := sh(t, "cat /etc/layer2; ls /opq; test -e /etc/gone && echo gone-present; cat /etc/passwd | head -1")
	want := "layer2\nupper\nroot:x:0:0:root:/root:/bin/sh\n"
	if out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

func TestUpperDirGetsWrites(t *testing.T) {
	c := newContainer(t, "sh", "-c", "echo data > /newfile && rm /etc/layer2")
	mustRun(t, c)
	if b, err := os.ReadFile(filepath.Join(c.UpperDir, "newfile")); err != nil || string(b) != "data\n" {
		t.Fatalf("upper/newfile: %q, %v", b, err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(c.UpperDir, "etc/layer2"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("upper/etc/layer2 is not a whiteout: %+v, %v", st, err)
	}
	for _, l := range testLayers {
		if _, err := os.Stat(filepath.Join(l, "newfile")); err == nil {
			t.Fatalf("a lower layer was written: %s", l)
		}
	}
}

func TestReadonlyRoot(t *testing.T) {
	out := sh(t, "touch /x 2>/dev/null && echo wrote; echo ok > /dev/shm/x && cat /dev/shm/x", withSpec(func(s *specs.Spec) {
		s.Root.Readonly = true
	}))
	if out != "ok\n" {
		t.Fatalf("got %q", out)
	}
}

func TestProcAndSys(t *testing.T) {
	script := `
cat /proc/kcore | wc -c
cat /proc/keys | wc -c
ls /sys/firmware | wc -l
echo x > /proc/sys/kernel/domainname 2>/dev/null && echo wrote-proc-sys
echo 1 > /proc/sysrq-trigger 2>/dev/null && echo wrote-sysrq
touch /sys/x 2>/dev/null && echo wrote-sys
mkdir /sys/fs/cgroup/x 2>/dev/null && echo wrote-cgroup
grep -c . /proc/self/mountinfo >/dev/null && echo proc-ok
`
	out := sh(t, script)
	if out != "0\n0\n0\nproc-ok\n" {
		t.Fatalf("got %q", out)
	}
}

func TestCgroupMount(t *testing.T) {
	v2, hierarchies, err := cgroupLayout()
	if err != nil {
		t.Fatal(err)
	}
	out := sh(t, "ls /sys/fs/cgroup; mkdir /sys/fs/cgroup/x 2>/dev/null && echo wrote; true")
	want := []string{"cgroup.controllers"}
	if !v2 {
		want = nil
		for i := 0; i < len(hierarchies); i += 3 {
			want = append(want, hierarchies[i])
		}
	}
	got := strings.Fields(out)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("/sys/fs/cgroup lacks %s: %q", w, got)
		}
	}
	if slices.Contains(got, "wrote") {
		t.Error("/sys/fs/cgroup is writable")
	}
}

func TestDev(t *testing.T) {
	out := sh(t, "ls /dev; ls /dev/pts; stat -c '%F %t:%T %a' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty; for l in ptmx fd stdin stdout stderr; do readlink /dev/$l; done; echo x > /dev/null; head -c 3 /dev/zero | wc -c")
	fields := strings.Fields(out)
	for _, want := range []string{"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue", "fd", "stdin", "stdout", "stderr"} {
		if !slices.Contains(fields, want) {
			t.Errorf("/dev has no %s", want)
		}
	}
	for _, want := range []string{
		"character special file 1:3 666",
		"character special file 1:5 666",
		"character special file 1:7 666",
		"character special file 1:8 666",
		"character special file 1:9 666",
		"character special file 5:0 666",
		"pts/ptmx\n/proc/self/fd\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\n",
		"\n3\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

func procStatus(t *testing.T, out, key string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in:\n%s", key, out)
	return ""
}

func TestCapabilities(t *testing.T) {
	want, err := capabilityMask(DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	if want != 0xa80425fb {
		t.Fatalf("Docker's default capabilities make %#x", want)
	}
	out := sh(t, "cat /proc/self/status", withSpec(func(s *specs.Spec) {
		s.Process.NoNewPrivileges = true
	}))
	for _, key := range []string{"CapEff", "CapPrm", "CapBnd"} {
		got, err := strconv.ParseUint(procStatus(t, out, key), 16, 64)
		if err != nil || got != want {
			t.Errorf("%s %#x, want %#x", key, got, want)
		}
	}
	if v := procStatus(t, out, "CapInh"); v != "0000000000000000" {
		t.Errorf("CapInh %s", v)
	}
	if v := procStatus(t, out, "NoNewPrivs"); v != "1" {
		t.Errorf("NoNewPrivs %s", v)
	}

	// Without no_new_privs, and with an ambient capability for a
	// non-root user.
	out = sh(t, "cat /proc/self/status", withSpec(func(s *specs.Spec) {
		s.Process.User = specs.User{UID: 1000, GID: 1000}
		s.Process.Capabilities.Inheritable = []string{"CAP_NET_BIND_SERVICE"}
		s.Process.Capabilities.Ambient = []string{"CAP_NET_BIND_SERVICE"}
	}))
	if v := procStatus(t, out, "NoNewPrivs"); v != "0" {
		t.Errorf("NoNewPrivs %s", v)
	}
	if v := procStatus(t, out, "CapEff"); v != "0000000000000400" {
		t.Errorf("CapEff with ambient NET_BIND_SERVICE for uid 1000: %s", v)
	}
}

func TestUser(t *testing.T) {
	out := sh(t, "id -u; id -g; id -G; cat /proc/self/status | grep CapEff", withSpec(func(s *specs.Spec) {
		s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 20}}
	}))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || lines[0] != "1000" || lines[1] != "1000" {
		t.Fatalf("got %q", out)
	}
	groups := strings.Fields(lines[2])
	for _, g := range []string{"1000", "10", "20"} {
		if !slices.Contains(groups, g) {
			t.Errorf("groups %q lack %s", groups, g)
		}
	}
	if slices.Contains(groups, "0") {
		t.Errorf("groups %q keep root's", groups)
	}
	if !strings.HasSuffix(lines[3], "0000000000000000") {
		t.Errorf("a non-root user has capabilities: %s", lines[3])
	}
}

func TestCwd(t *testing.T) {
	out := sh(t, "pwd; stat -c %u:%g .; stat -c %u:%g /work; touch file && echo wrote", withSpec(func(s *specs.Spec) {
		s.Process.Cwd = "/work/deep/dir"
		s.Process.User = specs.User{UID: 1000, GID: 1000}
	}))
	if out != "/work/deep/dir\n1000:1000\n1000:1000\nwrote\n" {
		t.Fatalf("got %q", out)
	}
	if out := sh(t, "pwd", withSpec(func(s *specs.Spec) { s.Process.Cwd = "/etc" })); out != "/etc\n" {
		t.Fatalf("got %q", out)
	}
}

func TestEnv(t *testing.T) {
	out := sh(t, "echo $FOO; env | sort", withSpec(func(s *specs.Spec) {
		s.Process.Env = []string{"PATH=/bin", "FOO=bar baz", "HOME=/root"}
	}))
	want := "bar baz\nFOO=bar baz\nHOME=/root\nPATH=/bin\nPWD=/\nSHLVL=1\n"
	if out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	// No PATH: the program is looked up in DefaultPath.
	c := newContainer(t, "echo", "found")
	c.Spec.Process.Env = nil
	if out := mustRun(t, c); out != "found\n" {
		t.Fatalf("got %q", out)
	}
}

func TestRlimits(t *testing.T) {
	out := sh(t, "ulimit -n; ulimit -Hn", withSpec(func(s *specs.Spec) {
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1000, Hard: 2000}}
	}))
	if out != "1000\n2000\n" {
		t.Fatalf("got %q", out)
	}
}

func TestSysctl(t *testing.T) {
	out := sh(t, "cat /proc/sys/net/ipv4/ip_forward", withSpec(func(s *specs.Spec) {
		s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"}
	}))
	if out != "1\n" {
		t.Fatalf("got %q", out)
	}
	c := newContainer(t, "true")
	c.Spec.Linux.Sysctl = map[string]string{"vm.swappiness": "1"}
	r := runContainer(t, c)
	if r.err == nil || !strings.Contains(r.err.Error(), "sysctl vm.swappiness: not a namespaced sysctl") {
		t.Fatalf("error %v", r.err)
	}
}

func TestBindMounts(t *testing.T) {
	ro, rw := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "f"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "single")
	if err := os.WriteFile(file, []byte("single\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := sh(t, "cat /ro/f; touch /ro/x 2>/dev/null && echo wrote-ro; echo guest > /mnt/rw/g; cat /in/single; grep -w /ro /proc/self/mountinfo | grep -c ' ro,'",
		withSpec(func(s *specs.Spec) {
			s.Mounts = append(s.Mounts,
				specs.Mount{Destination: "/ro", Type: "bind", Source: ro, Options: []string{"rbind", "ro"}},
				specs.Mount{Destination: "/mnt/rw", Type: "bind", Source: rw, Options: []string{"rbind", "rw"}},
				specs.Mount{Destination: "/in/single", Type: "bind", Source: file, Options: []string{"bind", "ro", "nosuid"}},
			)
		}))
	if out != "host\nsingle\n1\n" {
		t.Fatalf("got %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "g")); err != nil || string(b) != "guest\n" {
		t.Fatalf("rw bind: host sees %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(ro, "x")); err == nil {
		t.Fatal("ro bind was written")
	}
}

// A symlink in the image must not lead a mount out of the rootfs.
func TestMountThroughSymlinkStaysInside(t *testing.T) {
	victim := t.TempDir()
	src := t.TempDir()
	c := newContainer(t, "sh", "-c", "ls /escape/")
	// The upper layer is the image's top: plant an absolute symlink.
	if err := os.Symlink(victim, filepath.Join(c.UpperDir, "escape")); err != nil {
		t.Fatal(err)
	}
	c.Spec.Mounts = append(c.Spec.Mounts, specs.Mount{
		Destination: "/escape/sub/dir", Type: "bind", Source: src, Options: []string{"rbind"},
	})
	mustRun(t, c)
	if entries, _ := os.ReadDir(victim); len(entries) != 0 {
		t.Fatalf("the host dir the symlink names was written: %v", entries)
	}
	// It was created inside the rootfs instead, under the symlink's target.
	if _, err := os.Stat(filepath.Join(c.UpperDir, victim, "sub/dir")); err != nil {
		t.Fatalf("mount point not made inside the rootfs: %v", err)
	}
}

func TestTmpfsMount(t *testing.T) {
	out := sh(t, "echo hi > /scratch/x && cat /scratch/x; grep -w /scratch /proc/self/mountinfo | cut -d' ' -f9", withSpec(func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m", "mode=1777"}})
	}))
	if out != "hi\ntmpfs\n" {
		t.Fatalf("got %q", out)
	}
}

func TestStdin(t *testing.T) {
	const input = "line one\nline two\n"
	t.Run("reader", func(t *testing.T) {
		c := newContainer(t, "cat")
		c.Stdin = strings.NewReader(input)
		if out := mustRun(t, c); out != input {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("file", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		go func() {
			io.WriteString(w, input)
			w.Close()
		}()
		c := newContainer(t, "cat")
		c.Stdin = r
		if out := mustRun(t, c); out != input {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("none", func(t *testing.T) {
		if out := mustRun(t, newContainer(t, "wc", "-c")); strings.TrimSpace(out) != "0" {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("unread", func(t *testing.T) {
		// A program that exits without reading a stdin that never ends.
		pr, pw := io.Pipe()
		defer pw.Close()
		c := newContainer(t, "true")
		c.Stdin = pr
		mustRun(t, c)
	})
}

func TestStdoutFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := newContainer(t, "echo", "to file")
	c.Stdout = f
	mustRun(t, c)
	if b, _ := os.ReadFile(f.Name()); string(b) != "to file\n" {
		t.Fatalf("file has %q", b)
	}
}

func TestCancel(t *testing.T) {
	c := newContainer(t, "sleep", "100")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	st, err := Run(ctx, c)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Run took %v after cancel", d)
	}
	if st != (ExitStatus{Code: 137, Signal: syscall.SIGKILL}) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, %v", st, err)
	}
	assertNoMounts(t, c.Spec.Root.Path)

	// A done context starts nothing.
	st, err = Run(ctx, newContainer(t, "true"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, %v", st, err)
	}
}

func TestSignal(t *testing.T) {
	c := newContainer(t, "sh", "-c", `trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.05; done`)
	ready := make(chan struct{})
	pr, pw := io.Pipe()
	c.Stdout = pw
	var out strings.Builder
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if sc.Text() == "ready" {
				close(ready)
			}
		}
	}()
	done := make(chan result, 1)
	go func() {
		st, err := Run(context.Background(), c)
		pw.Close()
		done <- result{status: st, err: err}
	}()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("never ready")
	}
	if err := c.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	<-copied
	if r.err != nil || r.status.Code != 5 || out.String() != "ready\ngot TERM\n" {
		t.Fatalf("got %v, %v, %q", r.status, r.err, out.String())
	}
}

func TestStartedHook(t *testing.T) {
	c := newContainer(t, "sh", "-c", "cat /proc/self/cgroup >/dev/null; echo ran")
	var got int
	c.Started = func(pid int) error {
		got = pid
		return nil
	}
	if out := mustRun(t, c); out != "ran\n" || got <= 0 {
		t.Fatalf("out %q, pid %d", out, got)
	}

	c = newContainer(t, "touch", "/ran")
	c.Started = func(pid int) error { return errors.New("no cgroup for you") }
	r := runContainer(t, c)
	if r.err == nil || !strings.Contains(r.err.Error(), "started hook: no cgroup for you") {
		t.Fatalf("error %v", r.err)
	}
	if _, err := os.Stat(filepath.Join(c.UpperDir, "ran")); err == nil {
		t.Fatal("the program ran despite the hook's error")
	}
}

func TestTerminal(t *testing.T) {
	c := newContainer(t, "sh")
	c.Spec.Process.Terminal = true
	c.Spec.Process.ConsoleSize = &specs.Box{Height: 30, Width: 100}
	var out strings.Builder
	copied := make(chan struct{})
	c.Console = func(master *os.File) {
		go func() {
			io.WriteString(master, "busybox stty size; test -t 0 && test -c /dev/console && echo is-a-tty; tty\n")
			io.WriteString(master, "[ $(stat -c %t:%T /dev/console) = $(stat -c %t:%T /dev/pts/0) ] && echo console-is-pts0\n")
			io.WriteString(master, "ls /dev/pts | tr '\\n' ' '; echo\n")
			io.WriteString(master, "echo hi\n")
			io.WriteString(master, "exit 7\n")
		}()
		go func() {
			defer close(copied)
			defer master.Close()
			io.Copy(&out, master) // ends with EIO
		}()
	}
	st, err := Run(context.Background(), c)
	<-copied
	if err != nil || st.Code != 7 {
		t.Fatalf("got %v, %v; output %q", st, err, out.String())
	}
	// The pty is the container's own: the first of its devpts instance.
	for _, want := range []string{"echo hi\r\n", "hi\r\n", "30 100\r\n", "is-a-tty\r\n", "\n/dev/pts/0\r\n", "\nconsole-is-pts0\r\n", "\n0 ptmx \r\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the terminal's output %q", want, out.String())
		}
	}
}

func TestTerminalCopiedByRun(t *testing.T) {
	c := newContainer(t, "sh", "-c", "busybox stty size; read line; echo got $line")
	c.Spec.Process.Terminal = true
	c.Spec.Process.ConsoleSize = &specs.Box{Height: 24, Width: 80}
	c.Stdin = strings.NewReader("typed\n")
	out := mustRun(t, c)
	if !strings.Contains(out, "24 80\r\n") || !strings.Contains(out, "got typed\r\n") {
		t.Fatalf("got %q", out)
	}
}

// A user other than root owns its terminal, and can reopen it.
func TestTerminalUser(t *testing.T) {
	c := newContainer(t, "sh", "-c", "stat -c %u $(tty); echo back > /dev/tty")
	c.Spec.Process.Terminal = true
	c.Spec.Process.User = specs.User{UID: 1000, GID: 1000}
	out := mustRun(t, c)
	if out != "1000\r\nback\r\n" {
		t.Fatalf("got %q", out)
	}
}

func TestHostNetwork(t *testing.T) {
	out := sh(t, "ls /sys/class/net | grep -c .; touch /sys/x 2>/dev/null && echo wrote-sys; echo ok", withSpec(func(s *specs.Spec) {
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
			return ns.Type == specs.NetworkNamespace
		})
	}))
	ifaces, _ := os.ReadDir("/sys/class/net")
	if out != fmt.Sprintf("%d\nok\n", len(ifaces)) {
		t.Fatalf("got %q, host has %d interfaces", out, len(ifaces))
	}
}

func TestJoinNamespaces(t *testing.T) {
	a := newContainer(t, "sleep", "100")
	a.Spec.Hostname = "alpha"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, a)
		done <- err
	}()
	waitRunning(t, a, "sleep")
	pid := a.Pid()
	netns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := sh(t, "hostname; readlink /proc/self/ns/net", withSpec(func(s *specs.Spec) {
		s.Hostname = ""
		for i, ns := range s.Linux.Namespaces {
			if ns.Type == specs.UTSNamespace || ns.Type == specs.NetworkNamespace {
				s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/%s", pid, map[specs.LinuxNamespaceType]string{
					specs.UTSNamespace: "uts", specs.NetworkNamespace: "net"}[ns.Type])
			}
		}
	}))
	if out != "alpha\n"+netns+"\n" {
		t.Fatalf("got %q, want alpha and %s", out, netns)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("first container: %v", err)
	}
	// The calling goroutine's thread is not in the joined namespaces.
	self, _ := os.Readlink("/proc/thread-self/ns/net")
	if self == netns {
		t.Fatal("the caller's thread stayed in the container's network namespace")
	}
}

// Many layers with long paths do not fit in mount(2)'s page of options.
func TestManyLayers(t *testing.T) {
	c := newContainer(t, "sh", "-c", "cat /layer-*/n | wc -l; cat /layer-79/n")
	dir := t.TempDir()
	layers := slices.Clone(testLayers)
	for i := range 80 {
		l := filepath.Join(dir, fmt.Sprintf("%s-%02d", strings.Repeat("long-layer-name-", 4), i))
		if err := os.MkdirAll(filepath.Join(l, fmt.Sprintf("layer-%02d", i)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l, fmt.Sprintf("layer-%02d/n", i)), []byte(fmt.Sprintln(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	c.Layers = layers
	if out := mustRun(t, c); out != "80\n79\n" {
		t.Fatalf("got %q", out)
	}
}

func TestReadOnlyOverlayAndPlainRoot(t *testing.T) {
	t.Run("no upper", func(t *testing.T) {
		// Writes go to a tmpfs that vanishes with the container.
		c := newContainer(t, "sh", "-c", "cat /etc/layer2; echo x > /x && cat /x; grep ' / / ' /proc/self/mountinfo | cut -d' ' -f9-")
		c.UpperDir, c.WorkDir = "", ""
		if out := mustRun(t, c); !strings.HasPrefix(out, "layer2\nx\noverlay rw,lowerdir=") {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("one layer", func(t *testing.T) {
		c := newContainer(t, "sh", "-c", "cat /opq/lower")
		c.UpperDir, c.WorkDir = "", ""
		c.Layers = testLayers[:1]
		if out := mustRun(t, c); out != "lower\n" {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("no layers", func(t *testing.T) {
		c := newContainer(t, "/busybox", "echo", "plain")
		c.Layers = nil
		bb, err := os.ReadFile("/bin/busybox")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.Spec.Root.Path, "busybox"), bb, 0o755); err != nil {
			t.Fatal(err)
		}
		if out := mustRun(t, c); out != "plain\n" {
			t.Fatalf("got %q", out)
		}
		// The mount points Run made are in the plain directory now.
		if _, err := os.Stat(filepath.Join(c.Spec.Root.Path, "proc")); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDevices(t *testing.T) {
	mode := os.FileMode(0o620)
	uid := uint32(1000)
	out := sh(t, "stat -c '%F %t:%T %a %u' /dev/mynull /dev/sub/loopy", withSpec(func(s *specs.Spec) {
		s.Linux.Devices = []specs.LinuxDevice{
			{Path: "/dev/mynull", Type: "c", Major: 1, Minor: 3},
			{Path: "/dev/sub/loopy", Type: "b", Major: 7, Minor: 200, FileMode: &mode, UID: &uid},
		}
	}))
	if out != "character special file 1:3 666 0\nblock special file 7:c8 620 1000\n" {
		t.Fatalf("got %q", out)
	}
}

func TestBadSpecs(t *testing.T) {
	for name, edit := range map[string]func(c *Container){
		"no args": func(c *Container) { c.Spec.Process.Args = nil },
		"no root": func(c *Container) { c.Spec.Root = nil },
		"user ns": func(c *Container) {
			c.Spec.Linux.Namespaces = append(c.Spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		},
		"join mount ns": func(c *Container) { c.Spec.Linux.Namespaces[4].Path = "/proc/1/ns/mnt" },
		"twice": func(c *Container) {
			c.Spec.Linux.Namespaces = append(c.Spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := newContainer(t, "true")
			edit(c)
			if _, err := Run(context.Background(), c); err == nil {
				t.Fatal("no error")
			}
		})
	}
	c := newContainer(t, "true")
	mustRun(t, c)
	if _, err := Run(context.Background(), c); err == nil {
		t.Fatal("a second Run of one Container worked")
	}
}

// SIGKILLing the process that called Run kills the container.
func TestParentKilled(t *testing.T) {
	if layersErr != nil {
		t.Skip("no test image:", layersErr)
	}
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"=1", layersEnv+"="+strings.Join(testLayers, string(filepath.ListSeparator)))
	helper.Stderr = os.Stderr
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "PID ")))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	deadline := time.Now().Add(5 * time.Second)
	for comm(pid) != "sleep" {
		if time.Now().After(deadline) {
			t.Fatalf("container %d never ran sleep (comm %q)", pid, comm(pid))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	deadline = time.Now().Add(2 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("container %d still runs %q after its parent was SIGKILLed", pid, comm(pid))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// alive tells whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// Run may be called from many goroutines at once.
func TestConcurrentRuns(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		c := newContainer(t, "sh", "-c", fmt.Sprintf("echo %d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out strings.Builder
			c.Stdout = &out
			st, err := Run(context.Background(), c)
			if err != nil || st.Code != 0 || out.String() != fmt.Sprintf("%d\n", i) {
				errs <- fmt.Errorf("container %d: %v, %v, %q", i, st, err, out.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A prestarted container runs as one started by Run alone, in the
// namespaces and with the terminal it was prestarted with; Abort leaves
// nothing behind; a spec that disagrees with Prestart is refused.
func TestPrestart(t *testing.T) {
	hostNS, err := os.Readlink("/proc/self/ns/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	c := newContainer(t, "sh", "-c", "hostname; [ $$ = 1 ] && echo pid1; [ $(readlink /proc/self/ns/cgroup) != "+hostNS+" ] && echo own-cgroupns")
	var stdout bytes.Buffer
	c.Stdout = &stdout
	started := 0
	c.Started = func(pid int) error { started = pid; return nil }
	if err := c.Prestart(c.Spec.Linux.Namespaces, false); err != nil {
		t.Fatal(err)
	}
	pid := c.Pid()
	if pid <= 0 || !alive(pid) {
		t.Fatalf("Prestart left no process (pid %d)", pid)
	}
	st, err := Run(context.Background(), c)
	if err != nil || st.Code != 0 || stdout.String() != "ctr\npid1\nown-cgroupns\n" || started != pid {
		t.Fatalf("after Prestart: %v, %v, %q, Started(%d) for pid %d", st, err, stdout.String(), started, pid)
	}
	assertNoMounts(t, c.Spec.Root.Path, c.UpperDir)

	c = newContainer(t, "true")
	if err := c.Prestart(c.Spec.Linux.Namespaces, false); err != nil {
		t.Fatal(err)
	}
	pid = c.Pid()
	c.Abort()
	if alive(pid) || c.Pid() != 0 {
		t.Errorf("Abort left process %d", pid)
	}
	if _, err := Run(context.Background(), c); err == nil {
		t.Error("Run after Abort did not fail")
	}

	c = newContainer(t, "true")
	if err := c.Prestart(nil, false); err != nil {
		t.Fatal(err)
	}
	pid = c.Pid()
	if _, err := Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "not those given to Prestart") {
		t.Errorf("Run of a spec with other namespaces than Prestart's: %v", err)
	}
	if alive(pid) {
		t.Errorf("a refused prestarted process %d is left", pid)
	}
}
