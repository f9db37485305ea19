package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// userVM is a vm whose devbox commands run with HOME set to a directory
// of the test's own, so the home share is that directory.
type userVM struct {
	*vm
	userHome string
}

func newUserVM(t *testing.T) *userVM {
	v := newVM(t)
	u := &userVM{vm: v, userHome: filepath.Join(v.root, "user")}
	if err := os.MkdirAll(u.userHome, 0o755); err != nil {
		t.Fatal(err)
	}
	return u
}

// env is the environment of the user's devbox: no native store of its
// own, so every image and container must be in the VM.
func (u *userVM) env() []string {
	return []string{"DEVBOX_ROOT=" + filepath.Join(u.root, "no-native-store"), "DEVBOX_HOME=" + u.home(), "HOME=" + u.userHome, "TERM=xterm"}
}

// cmd is the user's devbox, for tests that drive the process themselves.
func (u *userVM) cmd(args ...string) *exec.Cmd {
	c := exec.Command(devboxBin, args...)
	c.Env = append(os.Environ(), u.env()...)
	return c
}

func (u *userVM) runIn(stdin string, args ...string) result {
	u.t.Helper()
	return runDevbox(u.t, u.env(), stdin, args...)
}

func (u *userVM) run(args ...string) result {
	u.t.Helper()
	return u.runIn("", args...)
}

func (u *userVM) must(args ...string) string {
	u.t.Helper()
	r := u.run(args...)
	if r.code != 0 {
		u.t.Fatalf("devbox %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func (u *userVM) up(extra ...string) string {
	u.t.Helper()
	return u.must(append([]string{"up", "--driver", "qemu", "--memory", "512MiB", "--disk", "4GiB", "--cpus", "2", "--guest-image", u.image}, extra...)...)
}

// The home directory is shared at the same path, both ways, with host
// edits seen at once; a --share DIR:ro refuses writes; shares show in
// status; a vanished shared directory stops up with one line.
func TestVMShares(t *testing.T) {
	u := newUserVM(t)
	home := u.userHome
	ro := filepath.Join(u.root, "ro")
	if err := os.MkdirAll(filepath.Join(home, "proj"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(ro, 0o755)
	os.WriteFile(filepath.Join(ro, "data"), []byte("read me\n"), 0o644)
	os.WriteFile(filepath.Join(home, "proj", "host.txt"), []byte("from the host\n"), 0o644)

	out := u.up("--share", ro+":ro")
	if !strings.Contains(out, "Shared with the VM at the same paths: "+home+", "+ro+" (read-only)") {
		t.Errorf("up said:\n%s", out)
	}

	// Host to guest, at the same path.
	if out := u.must("ssh", "--", "cat", filepath.Join(home, "proj", "host.txt")); out != "from the host\n" {
		t.Errorf("host file read in the guest: %q", out)
	}
	// Guest to host, owned by the user running devbox.
	gf := filepath.Join(home, "proj", "guest.txt")
	u.must("ssh", "--", "echo hi > "+gf)
	b, err := os.ReadFile(gf)
	if err != nil || string(b) != "hi\n" {
		t.Errorf("guest file on the host: %q, %v", b, err)
	}
	if fi, err := os.Stat(gf); err == nil {
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Getuid() {
			t.Errorf("guest file owned by uid %d on the host, want %d (the user running devbox)", st.Uid, os.Getuid())
		}
	}
	// A host edit is seen by the guest at once: nothing stale cached.
	ef := filepath.Join(home, "proj", "edit.txt")
	os.WriteFile(ef, []byte("one\n"), 0o644)
	if out := u.must("ssh", "--", "cat", ef); out != "one\n" {
		t.Errorf("before the edit: %q", out)
	}
	os.WriteFile(ef, []byte("two, longer\n"), 0o644)
	if out := u.must("ssh", "--", "cat", ef); out != "two, longer\n" {
		t.Errorf("host edit not seen in the guest at once: %q", out)
	}

	// Read-only: readable, writes refused in the guest.
	if out := u.must("ssh", "--", "cat", filepath.Join(ro, "data")); out != "read me\n" {
		t.Errorf("read-only share read: %q", out)
	}
	r := u.run("ssh", "--", "echo x > "+filepath.Join(ro, "new")+"; echo x >> "+filepath.Join(ro, "data"))
	if r.code == 0 || !strings.Contains(r.stderr, "Read-only file system") {
		t.Errorf("write to a read-only share: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(ro, "new")); err == nil {
		t.Error("the guest wrote into a read-only share")
	}

	// status: the shares and how.
	var st struct {
		Shares []struct {
			Path     string
			ReadOnly bool
			Type     string
		}
	}
	if err := json.Unmarshal([]byte(u.must("status", "--format", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Shares) != 2 || st.Shares[0].Path != home || st.Shares[0].ReadOnly || st.Shares[0].Type == "" ||
		st.Shares[1].Path != ro || !st.Shares[1].ReadOnly {
		t.Errorf("status shares: %+v", st.Shares)
	}
	if out := u.must("status"); !strings.Contains(out, "Shares:      "+home+" (") {
		t.Errorf("status:\n%s", out)
	}

	// Changing shares of a running machine needs a restart.
	other := t.TempDir()
	if r := u.run("up", "--share", other); r.code == 0 || !strings.Contains(r.stderr, "devbox down") {
		t.Errorf("--share on a running machine: %+v", r)
	}
	u.must("down")

	// A shared directory gone by the next up: one line saying what to do.
	os.RemoveAll(ro)
	r = u.run("up")
	if r.code == 0 || !strings.Contains(r.stderr, ro) || !strings.Contains(r.stderr, "--unshare") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("up with a vanished share: %+v", r)
	}
	if u.vm.pid() != 0 {
		t.Error("a VM runs after the failed up")
	}
	if out := u.up("--unshare", ro); !strings.Contains(out, "is up in") || strings.Contains(out, ro) {
		t.Errorf("up --unshare said:\n%s", out)
	}
	u.must("down")
}
