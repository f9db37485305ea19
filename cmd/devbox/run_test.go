package main_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
	"github.com/devbox-dev/devbox/internal/testutil/registry"
)

// busyboxStore pushes a busybox image (plus a user and a group) to a real
// registry and pulls it into a fresh store; it returns the store and ref.
func busyboxStore(t *testing.T) (root, ref string) {
	t.Helper()
	needRoot(t)
	entries, err := imagegen.BusyboxEntries()
	if err != nil {
		t.Skip(err)
	}
	for i, e := range entries {
		switch e.Name {
		case "etc/passwd":
			entries[i].Content = append(e.Content, "app:x:1000:1000:app:/home/app:/bin/sh\n"...)
		case "etc/group":
			entries[i].Content = append(e.Content, "app:x:1000:\nextra:x:3000:app\n"...)
		}
	}
	l, err := imagegen.Layer(entries...)
	if err != nil {
		t.Fatal(err)
	}
	img, err := imagegen.Image(l)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.Start(t)
	ref = reg.Ref("bb:run")
	imagegen.Push(t, ref, img)
	root = t.TempDir()
	mustRun(t, root, "pull", "-q", ref)
	return root, ref
}

func TestRunBehavesLikeDockerRun(t *testing.T) {
	root, ref := busyboxStore(t)
	hostDir := t.TempDir()
	os.WriteFile(filepath.Join(hostDir, "in"), []byte("from host"), 0o644)
	envFile := filepath.Join(hostDir, "env")
	os.WriteFile(envFile, []byte("# comment\nFROM_FILE=yes\n\nB=file\n"), 0o644)
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		out   string // exact stdout, or a prefix with "..."
		err   string // substring of stderr
	}{
		{name: "echo", args: []string{"IMG", "echo", "hello"}, out: "hello\n"},
		{name: "stdout and stderr apart", args: []string{"IMG", "sh", "-c", "echo out; echo err >&2"}, out: "out\n", err: "err"},
		{name: "exit code", args: []string{"IMG", "sh", "-c", "exit 3"}, code: 3},
		{name: "killed child", args: []string{"IMG", "sh", "-c", `sh -c 'kill -9 $$'; exit $?`}, code: 137},
		{name: "not found", args: []string{"IMG", "nope"}, code: 127, err: `exec: "nope": executable file not found`},
		{name: "not executable", args: []string{"IMG", "/etc/passwd"}, code: 126},
		{name: "pid 1", args: []string{"IMG", "sh", "-c", "echo $$"}, out: "1\n"},
		{name: "hostname", args: []string{"--hostname", "box", "--network", "none", "IMG", "hostname"}, out: "box\n"},
		{name: "env", args: []string{"-e", "A=1", "-e", "HOME", "IMG", "sh", "-c", "echo $A $PATH"}, out: "1 /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"},
		{name: "env file, -e wins", args: []string{"--env-file", envFile, "-e", "B=flag", "IMG", "sh", "-c", "echo $FROM_FILE $B"}, out: "yes flag\n"},
		{name: "workdir created", args: []string{"-w", "/made/here", "IMG", "pwd"}, out: "/made/here\n"},
		{name: "user by name", args: []string{"-u", "app", "IMG", "id"}, out: "uid=1000(app) gid=1000(app) groups=1000(app),3000(extra)\n"},
		{name: "user by uid:gid", args: []string{"-u", "4000:5000", "IMG", "sh", "-c", "id -u; id -g"}, out: "4000\n5000\n"},
		{name: "unknown user", args: []string{"-u", "ghost", "IMG", "true"}, code: 125, err: "unable to find user ghost"},
		{name: "entrypoint", args: []string{"--entrypoint", "echo", "IMG", "x"}, out: "x\n"},
		{name: "stdin to EOF", stdin: "line1\nline2\n", args: []string{"-i", "IMG", "cat"}, out: "line1\nline2\n"},
		{name: "no stdin without -i", stdin: "ignored\n", args: []string{"IMG", "cat"}, out: ""},
		{name: "bind ro", args: []string{"-v", hostDir + ":/h:ro", "IMG", "sh", "-c", "cat /h/in; touch /h/x"}, code: 1, out: "from host", err: "Read-only file system"},
		{name: "bind rw", args: []string{"-v", hostDir + ":/h", "IMG", "sh", "-c", "echo back > /h/out"}},
		{name: "missing bind source", args: []string{"-v", "/no/such/dir:/x", "IMG", "true"}, code: 125, err: "bind mount source /no/such/dir does not exist"},
		{name: "read-only root", args: []string{"--read-only", "IMG", "touch", "/x"}, code: 1, err: "Read-only file system"},
		{name: "tmpfs", args: []string{"--read-only", "--tmpfs", "/scratch", "IMG", "sh", "-c", "echo ok > /scratch/f && cat /scratch/f"}, out: "ok\n"},
		{name: "capabilities", args: []string{"IMG", "sh", "-c", "grep CapEff /proc/self/status"}, out: "CapEff:\t00000000a80425fb\n"},
		{name: "no new privs", args: []string{"IMG", "sh", "-c", "grep NoNewPrivs /proc/self/status"}, out: "NoNewPrivs:\t1\n"},
		{name: "masked proc files", args: []string{"IMG", "sh", "-c", "cat /proc/keys /proc/timer_list | wc -c"}, out: "0\n"},
		{name: "proc sys read-only", args: []string{"IMG", "sh", "-c", "echo 1 > /proc/sys/kernel/domainname"}, code: 1},
		{name: "sys read-only", args: []string{"IMG", "sh", "-c", "touch /sys/x"}, code: 1},
		{name: "unknown image", args: []string{"--pull", "never", "nothere:1", "true"}, code: 125, err: "not in the store"},
		{name: "bad memory", args: []string{"--memory", "lots", "IMG", "true"}, code: 125, err: "invalid --memory"},
		{name: "bad pull policy", args: []string{"--pull", "sometimes", "IMG", "true"}, code: 125, err: "invalid --pull"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"run", "--rm"}
			for _, a := range tc.args {
				if a == "IMG" {
					a = ref
				}
				args = append(args, a)
			}
			r := devboxIn(t, root, tc.stdin, args...)
			if r.code != tc.code {
				t.Errorf("devbox %s: exit %d, want %d\nstdout %q\nstderr %q", strings.Join(args, " "), r.code, tc.code, r.stdout, r.stderr)
			}
			if tc.out != "" && r.stdout != tc.out {
				t.Errorf("stdout %q, want %q", r.stdout, tc.out)
			}
			if tc.err != "" && !strings.Contains(r.stderr, tc.err) {
				t.Errorf("stderr %q, want it to contain %q", r.stderr, tc.err)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(hostDir, "out")); err != nil || string(b) != "back\n" {
		t.Errorf("write through the rw bind: %q, %v", b, err)
	}
	if out := mustRun(t, root, "ps", "-aq"); out != "" {
		t.Errorf("--rm left containers: %q", out)
	}
	assertNoMounts(t, root)
	assertNoCgroups(t)
}

// assertNoCgroups checks that no container cgroup is left in any hierarchy.
func assertNoCgroups(t *testing.T) {
	t.Helper()
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/devbox/*")
	more, _ := filepath.Glob("/sys/fs/cgroup/devbox/*")
	for _, d := range append(dirs, more...) {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			t.Errorf("cgroup left behind: %s", d)
		}
	}
}

// assertNoMounts checks that nothing under root is mounted in this (the
// host's) mount namespace.
func assertNoMounts(t *testing.T, root string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), root) {
		t.Errorf("mounts left under %s:\n%s", root, b)
	}
}

func TestRunSeccompRefuses(t *testing.T) {
	root, ref := busyboxStore(t)
	r := devbox(t, root, "run", "--rm", ref, "sh", "-c", "grep Seccomp: /proc/self/status; unshare -m true; echo unshare=$?")
	if !strings.Contains(r.stdout, "Seccomp:\t2") || !strings.Contains(r.stdout, "unshare=1") {
		t.Errorf("seccomp not in effect: %q %q", r.stdout, r.stderr)
	}
}

func TestRunKeepsContainerWithoutRm(t *testing.T) {
	root, ref := busyboxStore(t)
	r := devbox(t, root, "run", "--name", "kept", ref, "sh", "-c", "echo data > /f; exit 4")
	if r.code != 4 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	ps := mustRun(t, root, "ps", "-a")
	if !strings.Contains(ps, "kept") || !strings.Contains(ps, "Exited (4)") {
		t.Errorf("ps -a:\n%s", ps)
	}
	if mustRun(t, root, "ps") != "CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   NAMES\n" {
		t.Errorf("ps without -a lists an exited container")
	}
	if r := devbox(t, root, "run", "--name", "kept", ref, "true"); r.code != 125 || !strings.Contains(r.stderr, `"kept" is already in use`) {
		t.Errorf("duplicate name: exit %d %q", r.code, r.stderr)
	}
	if r := devbox(t, root, "rmi", ref); r.code == 0 || !strings.Contains(r.stderr, "used by container kept") {
		t.Errorf("rmi of an image in use: exit %d %q", r.code, r.stderr)
	}
	mustRun(t, root, "rm", "kept")
	if out := mustRun(t, root, "ps", "-aq"); out != "" {
		t.Errorf("rm left %q", out)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "containers")); len(ents) > 1 { // the lock file stays
		t.Errorf("rm left %d entries in containers/", len(ents))
	}
	assertNoMounts(t, root)
}

func TestRunCgroupLimits(t *testing.T) {
	root, ref := busyboxStore(t)
	r := devbox(t, root, "run", "--rm", "--memory", "32m", ref, "sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived")
	if r.code != 137 || !strings.Contains(r.stderr, "out of memory") {
		t.Errorf("memory hog: exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
	r = devbox(t, root, "run", "--rm", "--pids-limit", "20", ref, "sh", "-c", `n=0; while [ $n -lt 50 ]; do sleep 5 & n=$((n+1)); done; kill $(jobs -p) 2>/dev/null`)
	if !strings.Contains(r.stderr, "can't fork") {
		t.Errorf("50 processes were not stopped at --pids-limit 20: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = devbox(t, root, "run", "--rm", "--cpus", "0.5", ref, "sh", "-c", "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || echo no-cgroupfs")
	if r.code != 0 {
		t.Errorf("--cpus: exit %d %q", r.code, r.stderr)
	}
}

func TestRunConcurrent(t *testing.T) {
	root, ref := busyboxStore(t)
	var wg sync.WaitGroup
	fails := make(chan string, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(devboxBin, "run", "--rm", ref, "echo", fmt.Sprint(i))
			cmd.Env = append(os.Environ(), "DEVBOX_ROOT="+root)
			out, err := cmd.CombinedOutput()
			if err != nil || string(out) != fmt.Sprintf("%d\n", i) {
				fails <- fmt.Sprintf("run %d: %v %q", i, err, out)
			}
		}()
	}
	wg.Wait()
	close(fails)
	for f := range fails {
		t.Error(f)
	}
	if out := mustRun(t, root, "ps", "-aq"); out != "" {
		t.Errorf("left containers: %q", out)
	}
}

// devbox killed with SIGKILL takes its container with it, and the next
// command cleans up.
func TestRunKilledDevbox(t *testing.T) {
	root, ref := busyboxStore(t)
	cmd := exec.Command(devboxBin, "run", "--name", "victim", ref, "sh", "-c", "echo $PPID; sleep 300")
	cmd.Env = append(os.Environ(), "DEVBOX_ROOT="+root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Scan() // the container started
	ps := mustRun(t, root, "ps")
	if !strings.Contains(ps, "victim") || !strings.Contains(ps, "Up ") {
		t.Errorf("ps while running:\n%s", ps)
	}
	// The container's sleep: in a devbox cgroup (other sleeps may run on
	// this machine).
	sleepers := func() int {
		n := 0
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			cg, _ := os.ReadFile("/proc/" + e.Name() + "/cgroup")
			if string(b) == "sleep\x00300\x00" && strings.Contains(string(cg), "/devbox/") {
				n++
			}
		}
		return n
	}
	if sleepers() == 0 {
		t.Fatal("the container's sleep is not running")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for sleepers() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := sleepers(); n > 0 {
		t.Fatalf("%d container processes outlived devbox", n)
	}
	ps = mustRun(t, root, "ps", "-a")
	if !strings.Contains(ps, "victim") || !strings.Contains(ps, "Exited (137)") {
		t.Errorf("after devbox was killed, ps -a:\n%s", ps)
	}
	mustRun(t, root, "rm", "victim")
	assertNoMounts(t, root)
}

// -it through a real pty: echo, window size, exit code.
func TestRunTTY(t *testing.T) {
	root, ref := busyboxStore(t)
	cmd := exec.Command(devboxBin, "run", "--rm", "-it", ref, "sh")
	cmd.Env = append(os.Environ(), "DEVBOX_ROOT="+root, "TERM=xterm")
	term := startTerminal(t, cmd, 33, 111, 10*time.Second)
	ptmx, waitFor := term.pty, term.waitFor
	ptmx.Write([]byte("stty size\r"))
	waitFor("33 111")
	// The terminal is the container's own pty, as docker's is, and
	// /dev/tty reaches it.
	ptmx.Write([]byte("tty; echo tty$((1+1))ok > /dev/tty\r"))
	waitFor("\n/dev/pts/0\r\n")
	waitFor("tty2ok\r\n")
	term.resize(40, 100)
	term.exit(cmd, 7)
}

// Containers keep CAP_MKNOD, as in docker, but the device cgroup lets
// them open only the standard devices: a node they make for a disk is
// refused with EPERM wherever it is, on mounts without nodev too (the
// rootfs, /dev, a --tmpfs mounted with dev, a bind of a host directory).
func TestRunDeviceCgroup(t *testing.T) {
	root, ref := busyboxStore(t)
	var st syscall.Stat_t
	if err := syscall.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	major, minor := st.Dev>>8&0xfff, st.Dev&0xff|st.Dev>>12&0xfff00
	// sda, loop0 (which opens on a host without a device cgroup, even
	// unbacked), the root file system's disk, /dev/loop-control.
	nodes := fmt.Sprintf(`"b 8 0" "b 7 0" "b %d %d" "c 10 237"`, major, minor)
	hostDir := t.TempDir()
	script := `for d in /tmp /dev /t /h; do for n in ` + nodes + `; do
		mknod $d/node $n || echo "mknod $d $n failed"
		head -c1 $d/node >/dev/null && echo "opened $n in $d"
		rm $d/node
	done; done
	grep -E ' /(t|h|dev) ' /proc/mounts | grep -c nodev
	head -c1 /dev/zero | wc -c; echo x > /dev/null && echo null; head -c4 /dev/urandom | wc -c; head -c1 /dev/full | wc -c`
	r := devbox(t, root, "run", "--rm", "--tmpfs", "/t:dev", "-v", hostDir+":/h", ref, "sh", "-c", script)
	if strings.Contains(r.stdout, "opened") || strings.Contains(r.stdout, "failed") {
		t.Errorf("a container made and opened a device outside the allow-list, or could not make it:\n%s%s", r.stdout, r.stderr)
	}
	if n := strings.Count(r.stderr, "Operation not permitted"); n != 16 || strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("want 16 opens refused by the device cgroup (EPERM), none by a nodev mount (EACCES); got %d:\n%s", n, r.stderr)
	}
	if want := "0\n1\nnull\n4\n1\n"; !strings.HasSuffix(r.stdout, want) {
		t.Errorf("stdout %q; want /t, /h and /dev without nodev and the standard devices working: ...%q", r.stdout, want)
	}
}

// SIGTERM and SIGINT sent to devbox reach the container's program, with and
// without --init, and --init reaps orphans.
func TestRunSignalsAndInit(t *testing.T) {
	root, ref := busyboxStore(t)
	for _, init := range []bool{false, true} {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
			args := []string{"run", "--rm"}
			if init {
				args = append(args, "--init")
			}
			args = append(args, ref, "sh", "-c", `trap 'echo got $0; exit 3' TERM INT; echo ready; while :; do sleep 0.05; done`)
			cmd := exec.Command(devboxBin, args...)
			cmd.Env = append(os.Environ(), "DEVBOX_ROOT="+root)
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			if !sc.Scan() || sc.Text() != "ready" {
				t.Fatalf("init=%v: no ready line", init)
			}
			cmd.Process.Signal(sig)
			sc.Scan()
			err := cmd.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || sc.Text() != "got sh" {
				t.Errorf("init=%v %v: %q, %v; want the trap to run and exit 3", init, sig, sc.Text(), err)
			}
		}
	}
	r := devbox(t, root, "run", "--rm", "--init", ref, "sh", "-c", `(sleep 0.1 &); sleep 0.6; ps -o stat | grep -c Z; ps -o pid,comm | head -2 | tail -1`)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "0\n") || !strings.Contains(r.stdout, "1 init") {
		t.Errorf("--init: exit %d, %q %q; want no zombies and init as pid 1", r.code, r.stdout, r.stderr)
	}
}

func TestNotRootSaysWhatToDo(t *testing.T) {
	needRoot(t)
	// A copy nobody can reach: the build and test dirs are private to root.
	dir, err := os.MkdirTemp("/tmp", "devbox-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	b, err := os.ReadFile(devboxBin)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "devbox")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	for _, args := range [][]string{{"images"}, {"run", "--rm", "busybox", "true"}} {
		cmd := exec.Command(bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Env = []string{"DEVBOX_ROOT=" + t.TempDir(), "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "native mode needs root until rootless mode lands: run devbox with sudo") {
			t.Errorf("devbox %v as nobody: %v %q", args, err, out)
		}
	}
}

// When the terminal of `devbox run -it` goes away, the container ends too.
func TestRunTTYHangup(t *testing.T) {
	root, ref := busyboxStore(t)
	cmd := exec.Command(devboxBin, "run", "--rm", "-it", ref, "sh", "-c", "echo ready; sleep 300")
	cmd.Env = append(os.Environ(), "DEVBOX_ROOT="+root)
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(ptmx)
	for sc.Scan() && !strings.Contains(sc.Text(), "ready") {
	}
	ptmx.Close()
	done := make(chan error)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("devbox run -it outlived its terminal")
	}
	if out := mustRun(t, root, "ps", "-aq"); out != "" {
		t.Errorf("containers left: %q", out)
	}
	assertNoCgroups(t)
}

// --platform picks the image of a multi-platform index even when the
// store holds the same name for another platform: pulled with
// --pull missing or always, refused in one line with --pull never.
func TestRunPlatform(t *testing.T) {
	needRoot(t)
	host := imagegen.HostPlatform()
	other := v1.Platform{OS: "linux", Architecture: "arm64"}
	if host.Architecture == "arm64" {
		other.Architecture = "amd64"
	}
	// Both images hold this host's busybox, so both run here; a file
	// tells them apart.
	imgs := map[string]v1.Image{}
	for _, p := range []v1.Platform{host, other} {
		entries, err := imagegen.BusyboxEntries()
		if err != nil {
			t.Skip(err)
		}
		l, err := imagegen.Layer(append(entries, imagegen.File("platform", p.Architecture+"\n", 0o644))...)
		if err != nil {
			t.Fatal(err)
		}
		if imgs[p.String()], err = imagegen.ImageFor(p, l); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := imagegen.Index(imgs)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.Start(t)
	ref := reg.Ref("multi:1")
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	mustRun(t, root, "pull", "-q", ref)
	run := func(args ...string) result {
		t.Helper()
		return devbox(t, root, append(append([]string{"run", "--rm"}, args...), ref, "cat", "/platform")...)
	}
	if r := run(); r.code != 0 || r.stdout != host.Architecture+"\n" {
		t.Fatalf("run without --platform: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := run("--platform", host.String(), "--pull", "never"); r.code != 0 || r.stdout != host.Architecture+"\n" {
		t.Errorf("run --platform of the stored platform: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	r1 := run("--platform", other.String(), "--pull", "never")
	if r1.code != 125 || r1.stdout != "" || strings.Count(r1.stderr, "\n") != 1 ||
		!strings.Contains(r1.stderr, ref) || !strings.Contains(r1.stderr, "stored for "+host.String()) || !strings.Contains(r1.stderr, "not "+other.String()) {
		t.Errorf("--pull never of another platform: exit %d %q %q; want one line naming the image, the stored and the asked platform", r1.code, r1.stdout, r1.stderr)
	}
	if r := run("--platform", other.String()); r.code != 0 || r.stdout != other.Architecture+"\n" {
		t.Errorf("run --platform %s (--pull missing): exit %d %q %q", other, r.code, r.stdout, r.stderr)
	}
	if r := run("--platform", other.String(), "--pull", "never"); r.code != 0 || r.stdout != other.Architecture+"\n" {
		t.Errorf("run --platform %s after pulling it: exit %d %q %q", other, r.code, r.stdout, r.stderr)
	}
	if r := run("--platform", host.String(), "--pull", "always"); r.code != 0 || r.stdout != host.Architecture+"\n" {
		t.Errorf("run --platform %s --pull always: exit %d %q %q", host, r.code, r.stdout, r.stderr)
	}
	if r := run("--platform", "linux", "--pull", "never"); r.code != 125 || !strings.Contains(r.stderr, "invalid --platform") {
		t.Errorf("bad --platform: exit %d %q", r.code, r.stderr)
	}
}

// terminal runs cmd on a new pty of rows x cols and records what it
// prints; waitFor waits (up to timeout) until the output holds s.
type terminal struct {
	t    *testing.T
	pty  *os.File
	mu   sync.Mutex
	buf  bytes.Buffer
	wait time.Duration
}

func startTerminal(t *testing.T, cmd *exec.Cmd, rows, cols uint16, timeout time.Duration) *terminal {
	t.Helper()
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{t: t, pty: ptmx, wait: timeout}
	t.Cleanup(func() { cmd.Process.Kill(); ptmx.Close() })
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			term.mu.Lock()
			term.buf.Write(b[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return term
}

// resize sets the window to rows x cols and waits until the shell in the
// terminal reports that size: the change (SIGWINCH, and an SSH request
// through the VM) travels apart from what is typed, so it is asked again
// until it shows.
func (term *terminal) resize(rows, cols uint16) {
	term.t.Helper()
	pty.Setsize(term.pty, &pty.Winsize{Rows: rows, Cols: cols})
	want := fmt.Sprintf("%d %d", rows, cols)
	for deadline := time.Now().Add(term.wait); time.Now().Before(deadline); {
		term.pty.Write([]byte("stty size\r"))
		for until := time.Now().Add(300 * time.Millisecond); time.Now().Before(until); time.Sleep(20 * time.Millisecond) {
			term.mu.Lock()
			ok := strings.Contains(term.buf.String(), want)
			term.mu.Unlock()
			if ok {
				return
			}
		}
	}
	term.waitFor(want) // fails, showing the output
}

// exit types `exit code` and checks that cmd, the program in the
// terminal, ends with that status.
func (term *terminal) exit(cmd *exec.Cmd, code int) {
	term.t.Helper()
	term.pty.Write([]byte(fmt.Sprintf("exit %d\r", code)))
	if err := cmd.Wait(); exitStatus(err) != code {
		term.t.Errorf("exit: %v, want %d", err, code)
	}
}

func (term *terminal) waitFor(s string) {
	term.t.Helper()
	deadline := time.Now().Add(term.wait)
	for time.Now().Before(deadline) {
		term.mu.Lock()
		ok := strings.Contains(term.buf.String(), s)
		term.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	term.mu.Lock()
	defer term.mu.Unlock()
	term.t.Fatalf("never saw %q in %q", s, term.buf.String())
}

// -p natively: until bridged networking (issue 6) a container shares the
// host's network, so devbox forwards a host port other than the
// container's itself, for as long as the container runs.
func TestRunPublishNative(t *testing.T) {
	root, ref := busyboxStore(t)
	ctrPort, hostPort := freePort(t), freePort(t)
	cmd := exec.Command(devboxBin, "run", "--rm", "--init", "-p", fmt.Sprintf("%d:%d", hostPort, ctrPort), ref, "sh", "-c",
		fmt.Sprintf("mkdir /www && echo native-port > /www/index.html && exec busybox httpd -f -p 127.0.0.1:%d -h /www", ctrPort))
	cmd.Env = append(os.Environ(), "DEVBOX_ROOT="+root)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	url := fmt.Sprintf("http://127.0.0.1:%d/", hostPort)
	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && body != "native-port\n"; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
		}
	}
	if body != "native-port\n" {
		t.Fatalf("GET %s: %q (devbox said %q)", url, body, out.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); exitStatus(err) != 143 && exitStatus(err) != 0 {
		t.Errorf("run after SIGTERM: %v (%q)", err, out.String())
	}
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", hostPort), time.Second); err == nil {
		conn.Close()
		t.Errorf("host port %d still forwarded after the container ended", hostPort)
	}
}
