package cgroups

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The tests here run against the real kernel as root, in cgroups named
// devbox-test/<random> that they always remove. They run on each view of
// the host they can make: the host as it is, and, where the host is
// hybrid, the same host seen as pure v1 (the cgroup2 hierarchy ignored),
// which exercises the v1 freezer and cpuacct.

const helperEnv = "DEVBOX_CGROUPS_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		// Processes orphaned by the tests (children of killed helpers)
		// are reparented here and reaped at the end, not left to PID 1.
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
		code := m.Run()
		reapOrphans()
		os.Exit(code)
	case "alloc":
		helperAlloc()
	case "spawn":
		helperSpawn()
	case "devices":
		helperDevices()
	}
	os.Exit(3)
}

func reapOrphans() {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil)
		switch {
		case err == unix.ECHILD:
			return
		case err == nil && pid == 0:
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// waitGo blocks until the test has put the helper into its cgroup.
func waitGo() {
	var b [1]byte
	if _, err := os.Stdin.Read(b[:]); err != nil {
		os.Exit(4)
	}
}

// helperAlloc allocates and touches 200 MiB.
func helperAlloc() {
	waitGo()
	buf := make([]byte, 200<<20)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	fmt.Println("survived")
	os.Exit(0)
}

// helperSpawn starts sleep children until that fails, reports how many
// it started and whether the failure was EAGAIN, then waits for stdin to
// close.
func helperSpawn() {
	waitGo()
	var err error
	n := 0
	for n < 1000 {
		cmd := exec.Command("/bin/sleep", "1000")
		if err = cmd.Start(); err != nil {
			break
		}
		n++
	}
	fmt.Printf("%d %v %v\n", n, errors.Is(err, syscall.EAGAIN), err)
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

type view struct {
	name string
	m    *mounts
}

// views returns the ways this host can be seen, skipping the test when
// it can't run here.
func views(t testing.TB) []view {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	m, err := hostMounts()
	if err != nil {
		t.Skipf("no cgroups here: %v", err)
	}
	l, _ := m.layout()
	vs := []view{{l.String(), m}}
	if l == Hybrid {
		v1 := *m
		v1.unified = ""
		vs = append(vs, view{"as-v1", &v1})
	}
	return vs
}

func forViews(t *testing.T, f func(t *testing.T, m *mounts)) {
	for _, v := range views(t) {
		t.Run(v.name, func(t *testing.T) { f(t, v.m) })
	}
}

func randomPath(t testing.TB) string {
	b := make([]byte, 6)
	rand.Read(b)
	return "devbox-test/" + hex.EncodeToString(b)
}

// newTest creates a test cgroup under m and removes it, and the
// devbox-test parent if it is empty, when the test ends.
func newTest(t *testing.T, m *mounts, res *specs.LinuxResources) *Cgroup {
	t.Helper()
	c, err := create(m, randomPath(t), res)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Kill(); err != nil {
			t.Error(err)
		}
		if err := c.Delete(); err != nil {
			t.Error(err)
		}
		removeTestParent(m)
	})
	return c
}

func removeTestParent(m *mounts) {
	for _, d := range append([]string{m.unified}, m.v1[:]...) {
		if d != "" {
			syscall.Rmdir(d + "/devbox-test")
		}
	}
}

// proc is a process a test started in a cgroup.
type proc struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	done   chan struct{} // closed once the process is reaped
}

// start runs argv, or the test binary as the named helper, in c the way
// the runtime will: created inside the cgroup2 directory by clone3 when FD
// allows it, and moved into the rest by Add before it does anything. A
// process that forks must first wait for the line sent on its stdin after
// Add (helpers do; shell scripts begin with "read x"), or its children
// could land outside the v1 cgroups. The process is killed and reaped
// when the test ends.
func start(t *testing.T, c *Cgroup, helper string, argv ...string) *proc {
	t.Helper()
	cmd := helperCmd(helper, argv)
	if fd := c.FD(); fd >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// A pipe of our own, not StdoutPipe: Wait, which runs at once
	// below, would close that one under the reader.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	p := &proc{cmd, bufio.NewReader(r), make(chan struct{})}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		<-p.done
		r.Close()
	})
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	if err := c.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte{'\n'}); err != nil {
		t.Fatal(err)
	}
	return p
}

func helperCmd(helper string, argv []string) *exec.Cmd {
	if helper == "" {
		return exec.Command(argv[0], argv[1:]...)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+helper, "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	return cmd
}

// runHelper runs a helper in c to the end and returns its output and
// exit state.
func runHelper(t *testing.T, c *Cgroup, helper string) (string, *os.ProcessState) {
	t.Helper()
	cmd := helperCmd(helper, nil)
	if fd := c.FD(); fd >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	stdin.Write([]byte{'\n'})
	stdin.Close()
	cmd.Wait()
	return out.String(), cmd.ProcessState
}

func TestMemoryLimitOOM(t *testing.T) {
	forViews(t, func(t *testing.T, m *mounts) {
		c := newTest(t, m, mem(32<<20))
		if oom, err := c.OOMKilled(); oom || err != nil {
			t.Fatalf("OOMKilled() before = %v, %v", oom, err)
		}
		out, st := runHelper(t, c, "alloc")
		ws := st.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("helper allocating 200 MiB under a 32 MiB limit: %v, output %q; want killed by SIGKILL", st, out)
		}
		oom, err := c.OOMKilled()
		if err != nil || !oom {
			t.Fatalf("OOMKilled() = %v, %v; want true", oom, err)
		}
		s, err := c.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if s.MemoryPeak < 16<<20 || s.MemoryPeak > 33<<20 {
			t.Errorf("memory peak %d; want about 32 MiB", s.MemoryPeak)
		}
		t.Logf("%v; stats %+v", st, *s)
	})
}

func TestPidsLimit(t *testing.T) {
	forViews(t, func(t *testing.T, m *mounts) {
		c := newTest(t, m, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(10)}})
		p := start(t, c, "spawn")
		line, err := p.stdout.ReadString('\n')
		if err != nil {
			t.Fatalf("helper said %q: %v", line, err)
		}
		var n int
		var eagain bool
		fmt.Sscanf(line, "%d %t", &n, &eagain)
		if !eagain || n < 1 || n > 9 {
			t.Fatalf("helper: %q; want it to start fewer than 10 children then fail with EAGAIN", line)
		}
		s, err := c.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if s.PidsCurrent != 10 {
			t.Errorf("pids.current = %d when fork failed; want the limit, 10", s.PidsCurrent)
		}
		t.Logf("started %d sleeps (the rest of the 10 are the helper's threads); helper said %q", n, strings.TrimSpace(line))
		// (pids.current would not drop at once: the killed sleeps are
		// charged until reaped, by PID 1 here.)
		if err := c.Kill(); err != nil {
			t.Fatal(err)
		}
		if pids, err := c.procs(); len(pids) != 0 || err != nil {
			t.Errorf("after Kill: procs %v, %v", pids, err)
		}
	})
}

func TestCPUQuota(t *testing.T) {
	forViews(t, func(t *testing.T, m *mounts) {
		q, p, err := ParseCPUs("1.5")
		if err != nil {
			t.Fatal(err)
		}
		c := newTest(t, m, &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &q, Period: u64(uint64(p))}})
		switch {
		case c.v1[ctrlCPU] != "":
			for f, want := range map[string]string{"cpu.cfs_quota_us": "150000\n", "cpu.cfs_period_us": "100000\n"} {
				if got := readString(t, c.v1[ctrlCPU]+"/"+f); got != want {
					t.Errorf("%s = %q; want %q", f, got, want)
				}
			}
		case c.v2.has(ctrlCPU):
			if got := readString(t, c.unified+"/cpu.max"); got != "150000 100000\n" {
				t.Errorf("cpu.max = %q", got)
			}
		default:
			t.Fatal("no cpu controller, yet New succeeded")
		}
	})
}

// allDirs lists where path could be on this host: every hierarchy,
// including the ones New does not use.
func allDirs(t *testing.T, path string) []string {
	m, err := readMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	var ds []string
	for _, mp := range append([]string{m.unified}, m.v1All...) {
		if mp != "" {
			ds = append(ds, mp+"/"+path)
		}
	}
	return ds
}

func TestKillDelete(t *testing.T) {
	forViews(t, func(t *testing.T, m *mounts) {
		c, err := create(m, randomPath(t), mem(256<<20))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Delete(); removeTestParent(m) })
		var ps []*proc
		for range 3 {
			ps = append(ps, start(t, c, "", "/bin/sleep", "1000"))
		}
		// A process with children of its own, which Kill must find too.
		sh := start(t, c, "", "/bin/sh", "-c", "read x; /bin/sleep 1000 & /bin/sleep 1000 & echo up; wait")
		ps = append(ps, sh)
		if _, err := sh.stdout.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		pids, err := c.procs()
		if err != nil || len(pids) != 6 {
			t.Fatalf("procs() = %v, %v; want 6 processes", pids, err)
		}
		if s, err := c.Stats(); err != nil || s.PidsCurrent != 6 {
			t.Errorf("Stats() = %+v, %v; want 6 pids", s, err)
		}
		t0 := time.Now()
		if err := c.Kill(); err != nil {
			t.Fatal(err)
		}
		// The processes are zombies now, not yet reaped: Delete must not
		// wait for that.
		if err := c.Delete(); err != nil {
			t.Fatal(err)
		}
		t.Logf("Kill+Delete of 6 processes took %v", time.Since(t0))
		for _, d := range allDirs(t, c.path) {
			if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left behind: %v", d, err)
			}
		}
		for _, p := range ps {
			<-p.done
		}
		if err := c.Delete(); err != nil {
			t.Errorf("second Delete: %v", err)
		}
	})
}

// TestDeleteBusy: Delete retries while a process is on its way out.
func TestDeleteBusy(t *testing.T) {
	forViews(t, func(t *testing.T, m *mounts) {
		c, err := create(m, randomPath(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Delete(); removeTestParent(m) })
		p := start(t, c, "", "/bin/sleep", "1000")
		go func() {
			time.Sleep(50 * time.Millisecond)
			p.cmd.Process.Signal(syscall.SIGKILL)
		}()
		t0 := time.Now()
		if err := c.Delete(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d < 40*time.Millisecond {
			t.Errorf("Delete returned after %v, before the process was killed", d)
		}
	})
}

func TestFD(t *testing.T) {
	for _, v := range views(t) {
		if v.m.unified == "" {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			c := newTest(t, v.m, nil)
			fd := c.FD()
			if fd < 0 {
				t.Skip("kernel without CLONE_INTO_CGROUP")
			}
			cmd := exec.Command("/bin/sleep", "1000")
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer cmd.Process.Kill()
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			if want := "0::/" + c.path + "\n"; !strings.Contains(string(b), want) {
				t.Errorf("/proc/PID/cgroup:\n%s\nwant a line %q", b, want)
			}
			// Before Add the v1 hierarchies are untouched; after, the
			// process is in all of them.
			if err := c.Add(cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
			b, _ = os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
			for ct, dir := range c.v1 {
				if dir != "" && !strings.Contains(string(b), ":"+ctrlNames[ct]+":/"+c.path+"\n") {
					t.Errorf("/proc/PID/cgroup:\n%s\nwant %s in /%s", b, ctrlNames[ct], c.path)
				}
			}
			c.Close()
			if c.FD() != -1 {
				t.Error("FD() after Close is not -1")
			}
		})
	}
}

func TestLoad(t *testing.T) {
	forViews(t, func(t *testing.T, m *mounts) {
		c := newTest(t, m, mem(64<<20))
		l, err := load(m, c.path)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if l.unified != c.unified || strings.Join(l.v1Dirs, " ") != strings.Join(c.v1Dirs, " ") {
			t.Errorf("Load found %q %q; New made %q %q", l.unified, l.v1Dirs, c.unified, c.v1Dirs)
		}
		start(t, l, "", "/bin/sleep", "1000")
		if pids, _ := c.procs(); len(pids) != 1 {
			t.Errorf("process added through the loaded cgroup: procs %v", pids)
		}
		if err := l.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := l.Delete(); err != nil {
			t.Fatal(err)
		}
		if _, err := load(m, c.path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Load after Delete: %v; want ErrNotExist", err)
		}
	})
}

// TestPublicAPI goes through New and Load as the runtime will.
func TestPublicAPI(t *testing.T) {
	views(t)
	path := randomPath(t)
	c, err := New(path, mem(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.Delete()
		m, _ := hostMounts()
		removeTestParent(m)
	}()
	l, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := New("/abs", nil); err == nil {
		t.Error("New accepted an absolute path")
	}
	if _, err := New(randomPath(t), &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0"}}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("New with cpuset: %v", err)
	}
	if _, err := Load("devbox-test/does-not-exist"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing cgroup: %v", err)
	}
	if err := c.Delete(); err != nil {
		t.Fatal(err)
	}
}

// TestUnifiedWithoutControllers treats this host's controller-less
// cgroup2 as if it were a pure v2 host whose controllers can't be
// enabled: no limits works (tracking, kill, FD), a limit is a clear
// error.
func TestUnifiedWithoutControllers(t *testing.T) {
	var m *mounts
	for _, v := range views(t) {
		if v.m.unified != "" {
			m = &mounts{unified: v.m.unified}
		}
	}
	if m == nil {
		t.Skip("no cgroup2 here")
	}
	// This test writes to the real root's cgroup.subtree_control, which
	// must fail: only run it where none of the controllers is there.
	b, err := os.ReadFile(m.unified + "/cgroup.controllers")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		if f == "memory" || f == "pids" || f == "cpu" {
			t.Skipf("this cgroup2 has controllers: %s", b)
		}
	}
	if _, err := create(m, randomPath(t), mem(64<<20)); err == nil || !strings.Contains(err.Error(), "has no memory controller") {
		t.Errorf("memory limit on a cgroup2 without the controller: %v", err)
	}
	c := newTest(t, m, nil)
	start(t, c, "", "/bin/sleep", "1000")
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.OOMKilled(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("OOMKilled without memory controller: %v", err)
	}
}

// TestKillFreezeV2 kills through cgroup.freeze and cgroup.procs, as on a
// cgroup2 kernel older than 5.14 (no cgroup.kill).
func TestKillFreezeV2(t *testing.T) {
	var m *mounts
	for _, v := range views(t) {
		if v.m.unified != "" {
			m = &mounts{unified: v.m.unified}
		}
	}
	if m == nil {
		t.Skip("no cgroup2 here")
	}
	c := newTest(t, m, nil)
	c.noKillFile = true
	var ps []*proc
	for range 2 {
		ps = append(ps, start(t, c, "", "/bin/sleep", "1000"))
	}
	sh := start(t, c, "", "/bin/sh", "-c", "read x; /bin/sleep 1000 & /bin/sleep 1000 & echo up; wait")
	ps = append(ps, sh)
	if _, err := sh.stdout.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if pids, _ := c.procs(); len(pids) != 5 {
		t.Fatalf("procs %v; want 5", pids)
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		<-p.done
	}
}
