package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary a helper that runs one container of
// `sleep 100` and prints its pid, for TestParentKilled.
const helperEnv = "DEVBOX_RUNTIME_TEST_HELPER"

// layersEnv passes the test layers to the helper.
const layersEnv = "DEVBOX_RUNTIME_TEST_LAYERS"

var (
	// testLayers are the two layers of the test image, lowest first: a
	// busybox layer, and one that whites out /etc/gone, makes /opq opaque
	// and adds files.
	testLayers []string
	// layersErr says why there are no test layers.
	layersErr error
)

func TestMain(m *testing.M) {
	// The test binary is also the container's init stage.
	Init()
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	var dir string
	if os.Geteuid() != 0 {
		layersErr = errors.New("containers need root")
	} else {
		dir, layersErr = buildLayers()
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// busyboxPath is where Debian's busybox-static installs its binary.
const busyboxPath = "/bin/busybox"

// buildLayers writes the test image's two layers, in overlayfs form, into
// a new temp dir: busybox with a symlink per applet, /etc and /tmp below;
// above, a whiteout of /etc/gone (a 0/0 character device), an opaque /opq
// (trusted.overlay.opaque=y) and a few files to exec.
func buildLayers() (string, error) {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return "", fmt.Errorf("no busybox (apt-get install busybox-static): %w", err)
	}
	list, err := exec.Command(busyboxPath, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("busybox --list: %w", err)
	}
	dir, err := os.MkdirTemp("", "devbox-runtime-layers-")
	if err != nil {
		return "", err
	}
	lower, upper := filepath.Join(dir, "0"), filepath.Join(dir, "1")
	type file struct {
		name, content string
		mode          os.FileMode
	}
	write := func(layer string, files ...file) error {
		for _, f := range files {
			p := filepath.Join(layer, f.name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if f.mode.IsDir() {
				if err := os.Mkdir(p, f.mode.Perm()); err != nil {
					return err
				}
				if err := os.Chmod(p, f.mode); err != nil { // sticky
					return err
				}
				continue
			}
			if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
				return err
			}
		}
		return nil
	}
	err = write(lower,
		file{"bin/busybox", string(bb), 0o755},
		file{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644},
		file{"etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644},
		file{"etc/gone", "lower\n", 0o644},
		file{"opq/lower", "lower\n", 0o644},
		file{"root", "", os.ModeDir | 0o700},
		file{"tmp", "", os.ModeDir | os.ModeSticky | 0o777},
	)
	if err != nil {
		return dir, err
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(lower, "bin", applet)); err != nil {
			return dir, err
		}
	}
	err = write(upper,
		file{"etc/layer2", "layer2\n", 0o644},
		file{"opq/upper", "upper\n", 0o644},
		file{"bin/noexec", "#!/bin/sh\necho no\n", 0o644},
		file{"bin/garbage", "\x00\x01\x02 not a program", 0o755},
		file{"bin/script", "#!/bin/sh\necho script \"$@\"\n", 0o755},
		file{"bin/badinterp", "#!/nope/sh\n", 0o755},
	)
	if err != nil {
		return dir, err
	}
	if err := unix.Mknod(filepath.Join(upper, "etc/gone"), unix.S_IFCHR|0o644, 0); err != nil {
		return dir, fmt.Errorf("whiteout: %w", err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "opq"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		return dir, fmt.Errorf("opaque dir: %w", err)
	}
	testLayers = []string{lower, upper}
	return dir, nil
}

// helperMain runs a container of `sleep 100`, printing "PID n" once it
// exists; TestParentKilled SIGKILLs this process.
func helperMain() int {
	dir, err := os.MkdirTemp("", "devbox-runtime-helper-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	c := &Container{
		ID:       "helper",
		Spec:     DefaultSpec(),
		Layers:   filepath.SplitList(os.Getenv(layersEnv)),
		UpperDir: filepath.Join(dir, "upper"),
		WorkDir:  filepath.Join(dir, "work"),
		Started: func(pid int) error {
			fmt.Printf("PID %d\n", pid)
			return nil
		},
	}
	c.Spec.Root.Path = filepath.Join(dir, "rootfs")
	c.Spec.Process.Args = []string{"sleep", "100"}
	for _, d := range []string{c.UpperDir, c.WorkDir, c.Spec.Root.Path} {
		if err := os.Mkdir(d, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	st, err := Run(context.Background(), c)
	fmt.Fprintln(os.Stderr, "helper: container ended:", st, err)
	return 1
}

// newContainer returns a container of the test image running args, with
// Docker's default spec, its own rootfs, upper and work dirs.
func newContainer(t testing.TB, args ...string) *Container {
	t.Helper()
	if layersErr != nil {
		t.Skip("no test image:", layersErr)
	}
	dir := t.TempDir()
	c := &Container{
		ID:       "test",
		Spec:     DefaultSpec(),
		Layers:   testLayers,
		UpperDir: filepath.Join(dir, "upper"),
		WorkDir:  filepath.Join(dir, "work"),
		CgroupFD: -1,
	}
	c.Spec.Root.Path = filepath.Join(dir, "rootfs")
	c.Spec.Hostname = "ctr"
	c.Spec.Process.Args = args
	for _, d := range []string{c.UpperDir, c.WorkDir, c.Spec.Root.Path} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// result is what runContainer saw.
type result struct {
	stdout, stderr string
	status         ExitStatus
	err            error
}

// runContainer runs c with captured output and checks that nothing it
// used is left mounted in the test's mount namespace.
func runContainer(t testing.TB, c *Container) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if c.Stdout == nil {
		c.Stdout = &stdout
	}
	if c.Stderr == nil {
		c.Stderr = &stderr
	}
	st, err := Run(context.Background(), c)
	assertNoMounts(t, c.Spec.Root.Path, c.UpperDir)
	return result{stdout.String(), stderr.String(), st, err}
}

// mustRun runs c and fails the test unless it exits 0.
func mustRun(t testing.TB, c *Container) string {
	t.Helper()
	r := runContainer(t, c)
	if r.err != nil || r.status.Code != 0 {
		t.Fatalf("%q: status %v, error %v\nstdout: %s\nstderr: %s", c.Spec.Process.Args, r.status, r.err, r.stdout, r.stderr)
	}
	return r.stdout
}

// sh runs script with /bin/sh -c in a default container and returns its
// output, failing unless it exits 0.
func sh(t testing.TB, script string, edit ...func(*Container)) string {
	t.Helper()
	c := newContainer(t, "/bin/sh", "-c", script)
	for _, e := range edit {
		e(c)
	}
	return mustRun(t, c)
}

// assertNoMounts fails if anything at or below dirs is mounted here.
func assertNoMounts(t testing.TB, dirs ...string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := strings.ReplaceAll(fields[4], `\040`, " ")
		for _, d := range dirs {
			if d != "" && (mp == d || strings.HasPrefix(mp, d+"/")) {
				t.Errorf("left mounted in the host's mount namespace: %s", sc.Text())
			}
		}
	}
}

// withSpec edits the spec.
func withSpec(f func(*specs.Spec)) func(*Container) {
	return func(c *Container) { f(c.Spec) }
}
