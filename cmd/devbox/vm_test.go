package main_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devbox-dev/devbox/images/guest"
	"github.com/devbox-dev/devbox/internal/testutil/registry"
)

// guestImage is the guest image the VM tests boot: $DEVBOX_GUEST_IMAGE, or
// the one make image puts next to the binary.
func guestImage(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DEVBOX_GUEST_IMAGE")
	if dir == "" {
		dir = filepath.Join(filepath.Dir(devboxBin), "guest", runtime.GOARCH)
	}
	if _, err := os.Stat(filepath.Join(dir, "guest.json")); err != nil {
		t.Skipf("no guest image at %s: run make image (or set DEVBOX_GUEST_IMAGE)", dir)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed: apt-get install qemu-system-x86 qemu-utils")
	}
	return dir
}

// vm is one machine under test: its own DEVBOX_HOME.
type vm struct {
	t     *testing.T
	root  string
	image string
}

func newVM(t *testing.T) *vm {
	img := guestImage(t)
	v := &vm{t: t, root: t.TempDir(), image: img}
	t.Cleanup(func() {
		// Never leave a VM running after a test, whatever happened.
		if pid := v.pid(); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return v
}

func (v *vm) home() string { return filepath.Join(v.root, "home") }
func (v *vm) dir() string  { return filepath.Join(v.home(), "machines", "default") }

func (v *vm) run(args ...string) result {
	v.t.Helper()
	return devbox(v.t, v.root, args...)
}

func (v *vm) must(args ...string) string {
	v.t.Helper()
	return mustRun(v.t, v.root, args...)
}

// up boots the machine with small resources, as a test can afford.
func (v *vm) up(extra ...string) string {
	v.t.Helper()
	args := append([]string{"up", "--driver", "qemu", "--memory", "512MiB", "--disk", "4GiB", "--cpus", "2", "--guest-image", v.image}, extra...)
	return v.must(args...)
}

// pid is the running QEMU's pid, read from its pid file and checked.
func (v *vm) pid() int {
	b, err := os.ReadFile(filepath.Join(v.dir(), "qemu.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if !alive(pid) {
		return 0
	}
	return pid
}

// alive says whether pid runs: a zombie (QEMU daemonizes, so whoever
// inherits it reaps it in its own time) has stopped.
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err == nil && !bytes.Contains(st, []byte(") Z "))
}

type machineStatus struct {
	State       string
	Driver      string
	Accelerator string
	PID         int
	CPUs        int
	MemoryMiB   int
}

func (v *vm) status() machineStatus {
	v.t.Helper()
	var s machineStatus
	if err := json.Unmarshal([]byte(v.must("status", "--format", "json")), &s); err != nil {
		v.t.Fatalf("status json: %v", err)
	}
	return s
}

// The machine's life: up, ssh, status, OpenSSH, data across down/up,
// recovery after QEMU is killed, and down leaving nothing running.
func TestVMLifecycle(t *testing.T) {
	v := newVM(t)
	out := v.up()
	if !strings.Contains(out, "Machine default is up in") || !strings.Contains(out, "qemu, tcg") {
		t.Errorf("up said:\n%s", out)
	}
	if fi, err := os.Stat(v.dir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("machine dir mode: %v %v", fi.Mode(), err)
	}
	for _, k := range []string{"id_ed25519", "ssh_host_ed25519_key", "initrd"} {
		if fi, err := os.Stat(filepath.Join(v.dir(), k)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v (want 0600)", k, fi.Mode(), err)
		}
	}

	if out := v.must("logs", "--machine"); !strings.Contains(out, "devbox-agent: ready") {
		t.Errorf("console log lacks the agent's ready line:\n%s", out)
	}
	if out := v.up(); !strings.Contains(out, "already running") {
		t.Errorf("second up said:\n%s", out)
	}
	s := v.status()
	if s.State != "running" || s.Driver != "qemu" || s.Accelerator == "" || s.PID != v.pid() || s.MemoryMiB != 512 {
		t.Errorf("status: %+v (qemu pid %d)", s, v.pid())
	}

	// ssh: output, exit status, stderr apart, stdin.
	if out := v.must("ssh", "--", "uname", "-sn"); strings.TrimSpace(out) != "Linux devbox" {
		t.Errorf("uname in the guest: %q", out)
	}
	r := v.run("ssh", "--", "echo out; echo err >&2; exit 3")
	if r.code != 3 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("ssh exit/stdio: %+v", r)
	}
	if r := devboxIn(t, v.root, "piped\n", "ssh", "--", "cat"); r.stdout != "piped\n" {
		t.Errorf("ssh stdin: %+v", r)
	}
	if out := v.must("ssh", "--", "cat", "/proc/1/cmdline"); !strings.HasPrefix(out, "/init") {
		t.Errorf("PID 1 in the guest is %q, not the agent", out)
	}

	// Stock OpenSSH through ssh-config, with the host key pinned.
	if _, err := exec.LookPath("ssh"); err == nil {
		cfg := filepath.Join(v.root, "ssh_config")
		if err := os.WriteFile(cfg, []byte(v.must("ssh-config")), 0o600); err != nil {
			t.Fatal(err)
		}
		ssh := exec.Command("ssh", "-F", cfg, "devbox", "echo", "via-openssh")
		ssh.Env = append(os.Environ(), "DEVBOX_HOME="+v.home())
		out, err := ssh.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "via-openssh" {
			t.Errorf("openssh through ssh-config: %v\n%s", err, out)
		}
		// A guest presenting another host key is refused by OpenSSH...
		kh := filepath.Join(v.dir(), "known_hosts")
		good, _ := os.ReadFile(kh)
		os.WriteFile(kh, []byte("devbox "+otherKey(t)+"\n"), 0o600)
		ssh = exec.Command("ssh", "-F", cfg, "devbox", "true")
		ssh.Env = append(os.Environ(), "DEVBOX_HOME="+v.home())
		if out, err := ssh.CombinedOutput(); err == nil || !strings.Contains(string(out), "Host key verification failed") {
			t.Errorf("openssh accepted a wrong host key: %v\n%s", err, out)
		}
		os.WriteFile(kh, good, 0o600)
	} else {
		t.Log("OpenSSH client not installed; skipped the ssh-config check")
	}
	// ... and by devbox itself.
	hk := filepath.Join(v.dir(), "ssh_host_ed25519_key")
	good, _ := os.ReadFile(hk)
	os.WriteFile(hk, otherKeyPEM(t), 0o600)
	if r := v.run("ssh", "--", "true"); r.code == 0 || !strings.Contains(r.stderr, "host key mismatch") {
		t.Errorf("devbox ssh accepted a wrong host key: %+v", r)
	}
	os.WriteFile(hk, good, 0o600)

	// Data on the disk survives down and up; down leaves no QEMU.
	v.must("ssh", "--", "echo kept > /var/lib/devbox/probe && sync")
	if out := v.must("ssh", "--", "grep", " /var/lib/devbox ", "/proc/mounts"); !strings.Contains(out, "ext4") {
		t.Errorf("data root is not the ext4 data disk: %q", out)
	}
	pid := v.pid()
	if out := v.must("down"); !strings.Contains(out, "stopped") {
		t.Errorf("down said %q", out)
	}
	if alive(pid) {
		t.Errorf("QEMU pid %d still running after down", pid)
	}
	if s := v.status(); s.State != "stopped" {
		t.Errorf("status after down: %+v", s)
	}
	if r := v.run("ssh", "--", "true"); r.code == 0 || !strings.Contains(r.stderr, "devbox up") {
		t.Errorf("ssh to a stopped machine: %+v", r)
	}
	v.up()
	if out := v.must("ssh", "--", "cat", "/var/lib/devbox/probe"); out != "kept\n" {
		t.Errorf("data after down/up: %q", out)
	}

	// QEMU killed outright: devbox sees it, and up boots again with
	// the disk intact.
	v.must("ssh", "--", "echo again > /var/lib/devbox/probe2 && sync")
	pid = v.pid()
	if pid == 0 {
		t.Fatal("no QEMU running to kill")
	}
	syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for v.pid() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := v.status(); s.State != "stopped" {
		t.Errorf("status after QEMU was killed: %+v", s)
	}
	v.up()
	if out := v.must("ssh", "--", "cat", "/var/lib/devbox/probe", "/var/lib/devbox/probe2"); out != "kept\nagain\n" {
		t.Errorf("data after SIGKILL of QEMU: %q", out)
	}

	v.must("destroy")
	if v.pid() != 0 {
		t.Error("QEMU still running after destroy")
	}
	if _, err := os.Stat(v.dir()); !os.IsNotExist(err) {
		t.Errorf("machine dir left after destroy: %v", err)
	}
}

// Two ups at once boot one VM; both return when it answers.
func TestVMConcurrentUp(t *testing.T) {
	v := newVM(t)
	var wg sync.WaitGroup
	outs := make([]result, 2)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = v.run("up", "--driver", "qemu", "--memory", "512MiB", "--disk", "4GiB", "--guest-image", v.image)
		}()
	}
	wg.Wait()
	booted := 0
	for _, r := range outs {
		if r.code != 0 {
			t.Fatalf("concurrent up: %+v", r)
		}
		if strings.Contains(r.stdout, "is up in") {
			booted++
		}
	}
	if booted != 1 {
		t.Errorf("%d of 2 concurrent ups booted a VM:\n%s\n%s", booted, outs[0].stdout, outs[1].stdout)
	}
	if out, _ := exec.Command("pgrep", "-f", v.dir()).Output(); len(strings.Fields(string(out))) != 1 {
		t.Errorf("QEMU processes for the machine: %q", out)
	}
	// Several commands at once each get their own agent connection.
	var errs [4]result
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = v.run("ssh", "--", "sleep 1; echo done") }()
	}
	wg.Wait()
	for _, r := range errs {
		if r.code != 0 || r.stdout != "done\n" {
			t.Errorf("concurrent ssh: %+v", r)
		}
	}
	sshTerminal(t, v)
	v.must("down")
	if v.pid() != 0 {
		t.Error("QEMU still running after down")
	}
}

// sshTerminal drives an interactive `devbox ssh` through a real pty: a
// shell on a guest pty, its window size following the host's, exit status.
func sshTerminal(t *testing.T, v *vm) {
	cmd := exec.Command(devboxBin, "ssh")
	cmd.Env = append(os.Environ(), "DEVBOX_HOME="+v.home(), "TERM=xterm")
	term := startTerminal(t, cmd, 33, 111, 20*time.Second)
	ptmx, waitFor := term.pty, term.waitFor
	ptmx.Write([]byte("stty size; tty\r"))
	waitFor("33 111")
	waitFor("/dev/pts/")
	term.resize(40, 100)
	term.exit(cmd, 7)
}

// Errors a user can meet before anything boots: one line each.
func TestVMErrors(t *testing.T) {
	img := guestImage(t)
	root := t.TempDir()
	r := devbox(t, root, "up", "--driver", "qemu", "--guest-image", filepath.Join(root, "nope"))
	if r.code == 0 || !strings.Contains(r.stderr, "make image") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("missing guest image: %+v", r)
	}
	// QEMU not installed: a PATH without it.
	cmd := exec.Command(devboxBin, "up", "--driver", "qemu", "--guest-image", img)
	cmd.Env = append(os.Environ(), "DEVBOX_HOME="+filepath.Join(root, "home"), "PATH=/nonexistent")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "apt-get install qemu-system-x86") {
		t.Errorf("qemu missing: %v\n%s", err, out)
	}
	if r := devbox(t, root, "ssh", "--", "true"); r.code == 0 || !strings.Contains(r.stderr, "devbox up") {
		t.Errorf("ssh with no machine: %+v", r)
	}
	if r := devbox(t, root, "up", "--driver", "qemu", "--memory", "2048"); r.code == 0 || !strings.Contains(r.stderr, "unit") {
		t.Errorf("--memory without a unit: %+v", r)
	}
}

func otherKey(t *testing.T) string {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

func otherKeyPEM(t *testing.T) []byte {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, err := ssh.MarshalPrivateKey(priv, "other")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(blk)
}

// A guest image pulled from a registry by reference boots like a built
// one, and later boots reuse the verified copy.
func TestVMGuestImageFromRegistry(t *testing.T) {
	v := newVM(t)
	reg := registry.Start(t)
	ref := reg.Ref("devbox/guest:test")
	if _, err := guest.Push(context.Background(), v.image, ref, guest.RemoteOptions{}); err != nil {
		t.Fatalf("push guest image: %v", err)
	}
	v.image = ref
	if out := v.up(); !strings.Contains(out, "is up in") {
		t.Errorf("up from %s said:\n%s", ref, out)
	}
	if out := v.must("ssh", "--", "uname", "-s"); out != "Linux\n" {
		t.Errorf("uname: %q", out)
	}
	v.must("down")
	reg.Stop()
	// The registry is gone: the pulled copy boots.
	if out := v.must("up"); !strings.Contains(out, "is up in") {
		t.Errorf("second up said:\n%s", out)
	}
	v.must("down")
}
