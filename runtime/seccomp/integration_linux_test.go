package seccomp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The tests in this file load the real filter into the kernel. A filter
// cannot be removed, so each test re-executes the test binary as a helper
// process (TestHelperProcess, selected by helperEnv) that loads the filter
// on a locked thread and then makes raw syscalls on that same thread,
// printing one line per probe.

const (
	helperEnv     = "DEVBOX_SECCOMP_HELPER"      // helper mode
	helperCapsEnv = "DEVBOX_SECCOMP_HELPER_CAPS" // capability set, comma-separated; "-" loads no filter
	helperArgvEnv = "DEVBOX_SECCOMP_HELPER_ARGV" // exec mode: JSON argv to exec
	helperNextEnv = "DEVBOX_SECCOMP_HELPER_NEXT" // exec mode: helper mode for the program exec'd
)

// probeResult is one probe's outcome as the helper reports it.
type probeResult struct {
	Ret   int64  `json:"ret"`
	Errno int    `json:"errno"`
	Note  string `json:"note,omitempty"`
}

func (r probeResult) String() string {
	if r.Errno != 0 {
		return fmt.Sprintf("%v (errno %d)", unix.Errno(r.Errno), r.Errno)
	}
	return fmt.Sprintf("ok (%d) %s", r.Ret, r.Note)
}

// helper runs the test binary as a helper process in mode and returns its
// standard output.
func helper(t *testing.T, mode string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode}, env...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return stdout.String(), fmt.Errorf("%w; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("helper %s hung; stdout:\n%s\nstderr:\n%s", mode, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// probeHelper runs the probes in a helper with the default profile for caps
// loaded (caps nil: no filter) and returns the results by probe name.
func probeHelper(t *testing.T, caps []string) map[string]probeResult {
	t.Helper()
	capsArg := "-"
	if caps != nil {
		capsArg = strings.Join(caps, ",")
	}
	out, err := helper(t, "probe", helperCapsEnv+"="+capsArg)
	if err != nil {
		t.Fatalf("helper: %v\nstdout:\n%s", err, out)
	}
	results := map[string]probeResult{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 3 || fields[0] != "probe" {
			continue
		}
		name, js := fields[1], fields[2]
		var r probeResult
		if err := json.Unmarshal([]byte(js), &r); err != nil {
			t.Fatalf("bad probe line %q: %v", sc.Text(), err)
		}
		results[name] = r
	}
	if _, ok := results["done"]; !ok {
		t.Fatalf("helper did not finish; stdout:\n%s", out)
	}
	return results
}

func requireSeccomp(t *testing.T) {
	t.Helper()
	if _, ok := nativePlatform(); !ok {
		t.Skipf("no seccomp platform for %s", runtime.GOARCH)
	}
	if err := unix.Prctl(unix.PR_GET_SECCOMP, 0, 0, 0, 0); errors.Is(err, unix.EINVAL) {
		t.Skip("kernel without seccomp")
	}
}

// haveCap tells whether this process has capability c in its effective set.
func haveCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(c%32)) != 0
}

// Probes whose expected result depends on the filter.
var (
	// Denied by Docker's default profile without extra capabilities.
	deniedProbes = []string{
		"unshare(CLONE_NEWUSER)", "unshare(CLONE_NEWNS)", "mount", "umount2", "setns",
		"keyctl", "add_key", "request_key", "reboot", "kexec_load", "init_module",
		"finit_module", "delete_module", "swapon", "swapoff", "pivot_root",
		"clock_settime", "settimeofday", "bpf", "perf_event_open",
		"clone(CLONE_NEWUSER)", "clone(CLONE_NEWNET)", "personality(ADDR_NO_RANDOMIZE)",
		"socket(AF_VSOCK)", "socket(AF_ALG)",
	}
	// Allowed: they must succeed.
	allowedProbes = []string{
		"getpid", "getuid", "uname", "openat+read+close", "write(/dev/null)", "mmap+munmap",
		"socket(AF_INET)", "socket(AF_UNIX)", "socket(AF_NETLINK)", "clone(SIGCHLD)+wait4",
		"personality(0xffffffff)", "prctl(PR_GET_NO_NEW_PRIVS)", "exec /bin/true",
	}
)

// TestDefaultFilterDocker loads Docker's default profile for Docker's default
// capabilities into a real process and checks what its syscalls get.
func TestDefaultFilterDocker(t *testing.T) {
	requireSeccomp(t)
	res := probeHelper(t, dockerCaps)
	check := func(name string, ok func(probeResult) bool, want string) {
		t.Helper()
		r, found := res[name]
		if !found {
			t.Errorf("%s: not run", name)
			return
		}
		if !ok(r) {
			t.Errorf("%s: got %v, want %s", name, r, want)
		}
	}
	errno := func(e unix.Errno) func(probeResult) bool {
		return func(r probeResult) bool { return r.Errno == int(e) }
	}
	success := func(r probeResult) bool { return r.Errno == 0 }

	// The filter is on the probing thread.
	check("thread-self Seccomp", func(r probeResult) bool { return r.Ret == 2 }, "mode 2 (filter)")
	for _, name := range deniedProbes {
		check(name, errno(unix.EPERM), "EPERM")
	}
	for _, name := range allowedProbes {
		check(name, success, "success")
	}
	// clone3 fails with ENOSYS so that libcs fall back to clone, which the
	// filter can inspect.
	check("clone3", errno(unix.ENOSYS), "ENOSYS")
	// Docker allows ptrace on kernels since 4.8: a request about a process
	// that is not our tracee is refused by the kernel, not the filter.
	check("ptrace(PTRACE_PEEKUSER, 1)", errno(unix.ESRCH), "ESRCH")
	// Syscalls newer than the profile: ENOSYS, not EPERM.
	check("syscall above the profile", errno(unix.ENOSYS), "ENOSYS")
	if runtime.GOARCH == "amd64" {
		check("x32 getpid", errno(unix.ENOSYS), "ENOSYS")
	}
	for name, r := range res {
		t.Logf("%-32s %v", name, r)
	}
}

// TestDefaultFilterSysAdmin checks that with CAP_SYS_ADMIN in the set the
// filter lets mount and unshare through to the kernel.
func TestDefaultFilterSysAdmin(t *testing.T) {
	requireSeccomp(t)
	if !haveCap(unix.CAP_SYS_ADMIN) {
		t.Skip("needs CAP_SYS_ADMIN: without it the kernel itself says EPERM")
	}
	res := probeHelper(t, append(slices.Clone(dockerCaps), "CAP_SYS_ADMIN"))
	for _, name := range []string{"mount", "umount2", "setns", "unshare(CLONE_NEWNS)", "clone3"} {
		if r := res[name]; r.Errno == int(unix.EPERM) || r.Errno == int(unix.ENOSYS) {
			t.Errorf("%s with CAP_SYS_ADMIN: got %v, want the kernel's own answer", name, r)
		}
	}
	// Still denied: not in Docker's CAP_SYS_ADMIN list.
	for _, name := range []string{"pivot_root", "kexec_load", "init_module", "reboot", "keyctl"} {
		if r := res[name]; r.Errno != int(unix.EPERM) {
			t.Errorf("%s with CAP_SYS_ADMIN: got %v, want EPERM", name, r)
		}
	}
}

// TestProbesWithoutFilter runs the probes with no filter, to show that the
// EPERMs above come from the filter and not from the kernel.
func TestProbesWithoutFilter(t *testing.T) {
	requireSeccomp(t)
	for _, c := range []int{unix.CAP_SYS_ADMIN, unix.CAP_SYS_TIME, unix.CAP_SYS_BOOT, unix.CAP_SYS_MODULE} {
		if !haveCap(c) {
			t.Skipf("needs capability %d: without it the kernel itself says EPERM", c)
		}
	}
	if status, _ := os.ReadFile("/proc/self/status"); !bytes.Contains(status, []byte("Seccomp:\t0")) {
		t.Skip("this test process already runs under a seccomp filter")
	}
	res := probeHelper(t, nil)
	for _, name := range deniedProbes {
		r := res[name]
		t.Logf("%-32s %v", name, r)
		if r.Errno == int(unix.EPERM) {
			t.Errorf("%s without a filter: EPERM, so the filtered test proves nothing for it", name)
		}
	}
	if r := res["clone3"]; r.Errno == int(unix.ENOSYS) {
		t.Errorf("clone3 without a filter: ENOSYS")
	}
}

// TestExecUnderFilter checks that programs exec'd after the filter run: a
// static busybox shell when there is one, /bin/true, and a Go program (this
// test binary) that starts threads, uses the network and reports its
// seccomp state.
func TestExecUnderFilter(t *testing.T) {
	requireSeccomp(t)
	caps := helperCapsEnv + "=" + strings.Join(dockerCaps, ",")
	argv := func(args ...string) string {
		b, _ := json.Marshal(args)
		return helperArgvEnv + "=" + string(b)
	}

	if out, err := helper(t, "exec", caps, argv("/bin/true")); err != nil {
		t.Errorf("/bin/true: %v\n%s", err, out)
	}
	if out, err := helper(t, "exec", caps, argv("/bin/false")); err == nil {
		t.Errorf("/bin/false succeeded:\n%s", out)
	}

	if _, err := os.Stat("/bin/busybox"); err == nil {
		out, err := helper(t, "exec", caps, argv("/bin/busybox", "sh", "-c", "echo ok; grep Seccomp: /proc/self/status; ls / >/dev/null && echo ls-ok"))
		if err != nil {
			t.Errorf("busybox: %v\n%s", err, out)
		}
		for _, want := range []string{"ok\n", "Seccomp:\t2\n", "ls-ok\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("busybox output lacks %q:\n%s", want, out)
			}
		}
	} else {
		t.Log("no /bin/busybox (apt-get install busybox-static); skipped the busybox check")
	}

	out, err := helper(t, "exec", caps, argv(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1"), helperNextEnv+"=goprog")
	if err != nil {
		t.Fatalf("Go program under the filter: %v\n%s", err, out)
	}
	for _, want := range []string{"Seccomp:\t2\n", "goprog ok\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("Go program output lacks %q:\n%s", want, out)
		}
	}
}

// TestLoadWithoutNoNewPrivs checks the error when neither no_new_privs nor
// CAP_SYS_ADMIN allows the filter.
func TestLoadWithoutNoNewPrivs(t *testing.T) {
	requireSeccomp(t)
	out, err := helper(t, "nonnp")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "EACCES") && !strings.Contains(out, "permission denied") {
		t.Errorf("want EACCES, got:\n%s", out)
	}
}

// TestColdStart measures Default and Compile in a fresh process, as the
// runtime's init stage will run them.
func TestColdStart(t *testing.T) {
	requireSeccomp(t)
	out, err := helper(t, "time")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Log(strings.TrimSpace(out))
}

// TestHelperProcess is not a test: it is the helper process of the tests
// above, and does nothing unless helperEnv is set.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process only")
	}
	// Stay on one thread: the filter, and everything checked under it,
	// belongs to this thread only.
	runtime.LockOSThread()
	var err error
	switch mode {
	case "probe":
		err = helperProbe()
	case "exec":
		err = helperExec()
	case "goprog":
		err = helperGoProg()
	case "nonnp":
		err = helperNoNNP()
	case "time":
		err = helperTime()
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helperApply sets no_new_privs and loads the default filter for the
// capability set in helperCapsEnv, unless it is "-".
func helperApply() error {
	caps := os.Getenv(helperCapsEnv)
	if caps == "-" {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	s, err := Default(strings.Split(caps, ","))
	if err != nil {
		return err
	}
	return Apply(s)
}

func bytePtr(s string) uintptr {
	p, err := unix.BytePtrFromString(s)
	if err != nil {
		panic(err)
	}
	return uintptr(unsafe.Pointer(p))
}

func helperProbe() error {
	if err := helperApply(); err != nil {
		return err
	}
	report := func(name string, ret uintptr, e unix.Errno, note string) {
		b, _ := json.Marshal(probeResult{Ret: int64(ret), Errno: int(e), Note: note})
		fmt.Printf("probe\t%s\t%s\n", name, b)
	}
	sys := func(name string, nr uintptr, args ...uintptr) (uintptr, unix.Errno) {
		var a [6]uintptr
		copy(a[:], args)
		r, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		report(name, r, e, "")
		return r, e
	}
	closeIfOK := func(fd uintptr, e unix.Errno) {
		if e == 0 {
			unix.Close(int(fd))
		}
	}

	// Seccomp mode of this very thread.
	status, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return err
	}
	mode := -1
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
			mode, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	report("thread-self Seccomp", uintptr(mode), 0, "")

	const nowhere = "/nonexistent-devbox-seccomp-test"
	// Denied probes, with arguments that make them harmless when they are
	// not denied (the control run, as root, with no filter).
	sys("unshare(CLONE_NEWUSER)", unix.SYS_UNSHARE, unix.CLONE_NEWUSER)
	sys("unshare(CLONE_NEWNS)", unix.SYS_UNSHARE, unix.CLONE_NEWNS)
	sys("mount", unix.SYS_MOUNT, bytePtr("none"), bytePtr(nowhere), bytePtr("devbox-no-such-fs"), 0, 0)
	sys("umount2", unix.SYS_UMOUNT2, bytePtr(nowhere), 0)
	sys("setns", unix.SYS_SETNS, ^uintptr(0), 0)
	sys("keyctl", unix.SYS_KEYCTL, 0x7fffffff)
	sys("add_key", unix.SYS_ADD_KEY, bytePtr("devbox-no-such-key-type"), bytePtr("d"), 0, 0, uintptr(0xfffffffe)) // KEY_SPEC_PROCESS_KEYRING
	sys("request_key", unix.SYS_REQUEST_KEY, bytePtr("devbox-no-such-key-type"), bytePtr("d"), 0, 0)
	sys("reboot", unix.SYS_REBOOT, 0, 0, 0, 0) // wrong magic numbers
	// More segments than KEXEC_SEGMENT_MAX and an unknown architecture:
	// EINVAL before anything is loaded or unloaded.
	sys("kexec_load", unix.SYS_KEXEC_LOAD, 0, 1000, 0, 0xffff0000)
	sys("init_module", unix.SYS_INIT_MODULE, 0, 0, bytePtr(""))
	sys("finit_module", unix.SYS_FINIT_MODULE, ^uintptr(0), bytePtr(""), 0)
	sys("delete_module", unix.SYS_DELETE_MODULE, bytePtr("devbox_no_such_module"), unix.O_NONBLOCK)
	sys("swapon", unix.SYS_SWAPON, bytePtr(nowhere), 0)
	sys("swapoff", unix.SYS_SWAPOFF, bytePtr(nowhere))
	sys("pivot_root", unix.SYS_PIVOT_ROOT, bytePtr(nowhere), bytePtr(nowhere))
	sys("clock_settime", unix.SYS_CLOCK_SETTIME, unix.CLOCK_REALTIME, 0) // NULL time: EFAULT
	sys("settimeofday", unix.SYS_SETTIMEOFDAY, 0, 0)                     // sets nothing
	sys("bpf", unix.SYS_BPF, 0x7fffffff, 0, 0)
	sys("perf_event_open", unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0)
	closeIfOK(sys("socket(AF_VSOCK)", unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM, 0))
	closeIfOK(sys("socket(AF_ALG)", unix.SYS_SOCKET, unix.AF_ALG, unix.SOCK_SEQPACKET, 0))
	old, e := sys("personality(ADDR_NO_RANDOMIZE)", unix.SYS_PERSONALITY, 0x0040000) // ADDR_NO_RANDOMIZE
	if e == 0 {
		unix.Syscall(unix.SYS_PERSONALITY, old, 0, 0)
	}
	rawFork := func(name string, flags uintptr) {
		// A fork-like clone: the child leaves at once, touching nothing.
		r, _, e := unix.RawSyscall6(unix.SYS_CLONE, flags|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
		if e == 0 && r == 0 {
			unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
		}
		note := ""
		if e == 0 {
			var ws unix.WaitStatus
			if _, err := unix.Wait4(int(r), &ws, 0, nil); err != nil {
				e = err.(unix.Errno)
			} else {
				note = fmt.Sprintf("child exited %d", ws.ExitStatus())
			}
		}
		report(name, r, e, note)
	}
	rawFork("clone(CLONE_NEWUSER)", unix.CLONE_NEWUSER)
	rawFork("clone(CLONE_NEWNET)", unix.CLONE_NEWNET)
	rawFork("clone(SIGCHLD)+wait4", 0)
	sys("clone3", unix.SYS_CLONE3, 0, 0) // EINVAL without a filter

	// Allowed probes.
	sys("getpid", unix.SYS_GETPID)
	sys("getuid", unix.SYS_GETUID)
	var uts unix.Utsname
	sys("uname", unix.SYS_UNAME, uintptr(unsafe.Pointer(&uts)))
	{
		atFDCWD := unix.AT_FDCWD
		fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFDCWD), bytePtr("/proc/self/stat"), unix.O_RDONLY|unix.O_CLOEXEC, 0, 0, 0)
		n := uintptr(0)
		if e == 0 {
			buf := make([]byte, 512)
			n, _, e = unix.Syscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			runtime.KeepAlive(buf)
			if e == 0 {
				_, _, e = unix.Syscall(unix.SYS_CLOSE, fd, 0, 0)
			}
		}
		report("openat+read+close", n, e, "")
	}
	{
		fd, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		msg := []byte("hello")
		sys("write(/dev/null)", unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&msg[0])), uintptr(len(msg)))
		runtime.KeepAlive(msg)
		unix.Close(fd)
	}
	{
		mem, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err == nil {
			mem[0] = 1
			err = unix.Munmap(mem)
		}
		e, _ := err.(unix.Errno)
		report("mmap+munmap", 0, e, "")
	}
	closeIfOK(sys("socket(AF_INET)", unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM, 0))
	closeIfOK(sys("socket(AF_UNIX)", unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0))
	closeIfOK(sys("socket(AF_NETLINK)", unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE))
	sys("personality(0xffffffff)", unix.SYS_PERSONALITY, 0xffffffff)
	sys("prctl(PR_GET_NO_NEW_PRIVS)", unix.SYS_PRCTL, unix.PR_GET_NO_NEW_PRIVS)
	sys("ptrace(PTRACE_PEEKUSER, 1)", unix.SYS_PTRACE, unix.PTRACE_PEEKUSR, 1, 0, 0)
	{
		// A syscall numbered just above the highest the profile names.
		p, _ := nativePlatform()
		s, err := Default(dockerCaps)
		if err != nil {
			return err
		}
		highest := uint32(0)
		for _, sc := range s.Syscalls {
			for _, name := range sc.Names {
				if n, ok := lookupSyscall(p.native.table, name); ok {
					highest = max(highest, n)
				}
			}
		}
		sys("syscall above the profile", uintptr(highest+1), ^uintptr(0), 0, 0, 0, 0)
	}
	if runtime.GOARCH == "amd64" {
		sys("x32 getpid", x32SyscallBit|unix.SYS_GETPID)
	}
	// os/exec from this thread: clone(CLONE_VM|CLONE_VFORK), execve, wait4
	// and pipes, all under the filter.
	{
		err := exec.Command("/bin/true").Run()
		e := unix.Errno(0)
		if err != nil {
			e = unix.EIO
			if errors.As(err, &e) {
				// keep the errno
			}
		}
		report("exec /bin/true", 0, e, fmt.Sprint(err))
	}
	report("done", 0, 0, "")
	return nil
}

// helperExec loads the filter and execs the argv in helperArgvEnv from the
// filtered thread.
func helperExec() error {
	var argv []string
	if err := json.Unmarshal([]byte(os.Getenv(helperArgvEnv)), &argv); err != nil {
		return err
	}
	if err := helperApply(); err != nil {
		return err
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, helperEnv+"=") })
	env = append(env, helperEnv+"="+os.Getenv(helperNextEnv))
	return syscall.Exec(argv[0], argv, env)
}

// helperGoProg runs as a program exec'd under the filter: it must start
// threads, use the network and read files.
func helperGoProg() error {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if strings.HasPrefix(line, "Seccomp") || strings.HasPrefix(line, "NoNewPrivs") {
			fmt.Println(line)
		}
	}
	// Threads: each locked goroutine needs an OS thread of its own.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if unix.Gettid() <= 0 {
				errs <- errors.New("gettid")
			}
			time.Sleep(10 * time.Millisecond)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	// The network: listen, connect, exchange a byte.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	c.Close()
	// Denied here too: the filter came through execve.
	if err := unix.Unshare(unix.CLONE_NEWUTS); !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("unshare in the exec'd program: %v, want EPERM", err)
	}
	fmt.Println("goprog ok")
	return nil
}

// helperNoNNP drops CAP_SYS_ADMIN from this thread, leaves no_new_privs
// unset, and tries to load a filter.
func helperNoNNP() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[unix.CAP_SYS_ADMIN/32].Effective &^= 1 << (unix.CAP_SYS_ADMIN % 32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return err
	}
	s, err := Default(dockerCaps)
	if err != nil {
		return err
	}
	err = Apply(s)
	fmt.Println("Apply without no_new_privs:", err)
	if !errors.Is(err, unix.EACCES) {
		return fmt.Errorf("want EACCES, got %v", err)
	}
	fmt.Println("EACCES")
	return nil
}

// helperTime times Default and Compile in this fresh process, then Load.
func helperTime() error {
	t0 := time.Now()
	s, err := Default(dockerCaps)
	if err != nil {
		return err
	}
	t1 := time.Now()
	prog, err := Compile(s)
	if err != nil {
		return err
	}
	t2 := time.Now()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if err := Load(prog); err != nil {
		return err
	}
	t3 := time.Now()
	fmt.Printf("first call in a fresh process: Default %v, Compile %v (%d instructions), Load %v\n",
		t1.Sub(t0), t2.Sub(t1), len(prog), t3.Sub(t2))
	return nil
}
