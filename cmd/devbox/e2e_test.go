package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
	"github.com/devbox-dev/devbox/internal/testutil/registry"
)

// devboxBin is the binary under test: $DEVBOX_BIN (make test sets it), or
// one built for this test run.
var devboxBin string

func TestMain(m *testing.M) {
	devboxBin = os.Getenv("DEVBOX_BIN")
	if devboxBin == "" {
		dir, err := os.MkdirTemp("", "devbox-e2e-")
		if err != nil {
			log.Fatal(err)
		}
		devboxBin = filepath.Join(dir, "devbox")
		build := exec.Command("go", "build", "-o", devboxBin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as make builds it: --init needs that
		if out, err := build.CombinedOutput(); err != nil {
			log.Fatalf("build devbox: %v\n%s", err, out)
		}
		defer os.RemoveAll(dir)
	}
	code := m.Run()
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// devbox runs the binary with DEVBOX_ROOT=root.
func devbox(t *testing.T, root string, args ...string) result {
	t.Helper()
	return devboxIn(t, root, "", args...)
}

// devboxIn runs the binary with DEVBOX_ROOT=root and stdin.
func devboxIn(t *testing.T, root, stdin string, args ...string) result {
	t.Helper()
	return runDevbox(t, []string{"DEVBOX_ROOT=" + root, "DEVBOX_HOME=" + filepath.Join(root, "home")}, stdin, args...)
}

// runDevbox runs the binary with env added to this process's, and stdin.
func runDevbox(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(devboxBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run devbox %v: %v", args, err)
	}
	return r
}

func mustRun(t *testing.T, root string, args ...string) string {
	t.Helper()
	r := devbox(t, root, args...)
	if r.code != 0 {
		t.Fatalf("devbox %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the native image store needs root: run the tests as root")
	}
}

// The built binary against Debian's docker-registry: pull, list, export,
// remove, import, and run a program from the unpacked image.
func TestPullImagesExportImportRmi(t *testing.T) {
	needRoot(t)
	reg := registry.Start(t)
	ref := reg.Ref("tools/busybox:1.36")
	imagegen.Push(t, ref, imagegen.Busybox(t))
	root := t.TempDir()

	out := mustRun(t, root, "pull", ref)
	for _, want := range []string{"Pulling " + ref, ": Pull complete", "Digest: sha256:", "Status: Downloaded newer image for " + ref, "\n" + ref + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("pull output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("pull drew terminal escapes into a pipe:\n%q", out)
	}
	out = mustRun(t, root, "pull", ref)
	if !strings.Contains(out, "Already exists") || !strings.Contains(out, "Image is up to date") {
		t.Errorf("second pull output:\n%s", out)
	}

	table := mustRun(t, root, "images")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "REPOSITORY") {
		t.Fatalf("images table:\n%s", table)
	}
	f := strings.Fields(lines[1])
	if f[0] != reg.Addr+"/tools/busybox" || f[1] != "1.36" || len(f[2]) != 12 {
		t.Errorf("images row: %q", lines[1])
	}
	var imgs []struct {
		ID       string
		RepoTags []string
		Size     int64
		Layers   []struct{ ChainID string }
	}
	if err := json.Unmarshal([]byte(mustRun(t, root, "images", "--format", "json")), &imgs); err != nil || len(imgs) != 1 {
		t.Fatalf("images --format json: %v %v", imgs, err)
	}
	if !strings.HasPrefix(imgs[0].ID, "sha256:"+f[2]) || imgs[0].Size < 500_000 {
		t.Errorf("json record %+v does not match the table row %q", imgs[0], lines[1])
	}

	// The unpacked layer is a runnable busybox root.
	diff := filepath.Join(root, "images/layers", strings.TrimPrefix(imgs[0].Layers[0].ChainID, "sha256:"), "diff")
	hello, err := exec.Command("chroot", diff, "/bin/sh", "-c", "echo hello from $(uname -s)").CombinedOutput()
	if err != nil || string(hello) != "hello from Linux\n" {
		t.Errorf("chroot into the unpacked image: %q, %v", hello, err)
	}

	tarFile := filepath.Join(t.TempDir(), "bb.tar")
	mustRun(t, root, "image", "export", ref, tarFile)
	out = mustRun(t, root, "rmi", ref)
	if !strings.Contains(out, "Untagged: "+ref) || !strings.Contains(out, "Deleted: "+imgs[0].ID) {
		t.Errorf("rmi output:\n%s", out)
	}
	if out := mustRun(t, root, "images", "-q"); out != "" {
		t.Errorf("images after rmi: %q", out)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "images/layers")); len(ents) != 0 {
		t.Errorf("rmi left %d unpacked layers", len(ents))
	}
	out = mustRun(t, root, "image", "import", tarFile)
	if !strings.Contains(out, "Loaded image: "+ref) {
		t.Errorf("import output: %q", out)
	}
	if out := mustRun(t, root, "images", "-q"); strings.TrimSpace(out) != f[2] {
		t.Errorf("after import, images -q = %q, want %s", out, f[2])
	}
}

// Every failure is one line on stderr and a non-zero exit.
func TestErrors(t *testing.T) {
	needRoot(t)
	reg := registry.Start(t)
	imagegen.Push(t, reg.Ref("there:1"), imagegen.Busybox(t))
	root := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pull", reg.Ref("there:nope")}, "not found in registry " + reg.Addr},
		{[]string{"pull", reg.Ref("nothere:1")}, "not found in registry " + reg.Addr},
		{[]string{"pull", "127.0.0.1:1/x:1"}, "cannot reach registry 127.0.0.1:1"},
		{[]string{"pull", "No/Such Thing"}, "invalid image reference"},
		{[]string{"pull", "--platform", "linux", reg.Ref("there:1")}, "invalid --platform"},
		{[]string{"pull", "--platform", "linux/s390x", reg.Ref("there:1")}, "no image for this platform"},
		{[]string{"rmi", "nothere:1"}, "no such image"},
		{[]string{"image", "import", "/nonexistent.tar"}, "no such file"},
		{[]string{"image", "export", "nothere:1", filepath.Join(root, "x.tar")}, "no such image"},
		{[]string{"images", "--format", "xml"}, "unknown --format"},
	} {
		r := devbox(t, root, tc.args...)
		if r.code == 0 || !strings.HasPrefix(r.stderr, "devbox: ") || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("devbox %s: exit %d, stderr %q; want one line saying %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "x.tar")); err == nil {
		t.Error("a failed export left its file")
	}
}

func TestVersionHelpCompletion(t *testing.T) {
	root := t.TempDir()
	if out := mustRun(t, root, "version"); !strings.HasPrefix(out, "devbox ") {
		t.Errorf("version: %q", out)
	}
	if out := mustRun(t, root, "help"); !strings.Contains(out, "pull") || !strings.Contains(out, "images") {
		t.Errorf("help: %q", out)
	}
	if out := mustRun(t, root, "completion", "bash"); !strings.Contains(out, "complete -o default") && !strings.Contains(out, "__start_devbox") {
		t.Errorf("completion bash: %.200q", out)
	}
}

// slowBlobs serves blobs in small pieces with pauses, so a pull can be
// killed in the middle of a layer.
func slowBlobs(h http.Handler) http.Handler {
	return throttledBlobs(64<<10, 20*time.Millisecond, nil)(h)
}

// throttledBlobs serves blobs chunk bytes at a time with a pause after
// each, and reports on aborted (if not nil) each download whose reader
// went away before its end.
func throttledBlobs(chunk int, pause time.Duration, aborted chan<- struct{}) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			b := rec.Body.Bytes()
			for len(b) > 0 {
				n := min(len(b), chunk)
				_, err := w.Write(b[:n])
				if err == nil {
					err = http.NewResponseController(w).Flush()
				}
				if err != nil || r.Context().Err() != nil {
					if aborted != nil {
						select {
						case aborted <- struct{}{}:
						default:
						}
					}
					return
				}
				b = b[n:]
				time.Sleep(pause)
			}
		})
	}
}

// A pull killed with SIGKILL at any moment leaves a store that lists
// without error and that the next pull completes.
func TestKilledPullLeavesUsableStore(t *testing.T) {
	needRoot(t)
	srv := httptest.NewServer(slowBlobs(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	var layers []v1.Layer
	for i := range 3 {
		bb, err := imagegen.BusyboxEntries()
		if err != nil {
			t.Skip(err)
		}
		bb = append(bb, imagegen.File(fmt.Sprintf("layer%d", i), "x", 0o644))
		l, err := imagegen.Layer(bb...)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := imagegen.Image(layers...)
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/slow:1"
	imagegen.Push(t, ref, img)
	root := t.TempDir()

	for _, delay := range []time.Duration{30 * time.Millisecond, 150 * time.Millisecond, 400 * time.Millisecond, 700 * time.Millisecond, 1000 * time.Millisecond} {
		cmd := exec.Command(devboxBin, "pull", ref)
		cmd.Env = append(os.Environ(), "DEVBOX_ROOT="+root)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		r := devbox(t, root, "images", "--format", "json")
		if r.code != 0 {
			t.Fatalf("after kill at %v: images: %s", delay, r.stderr)
		}
	}
	mustRun(t, root, "pull", ref)
	if ents, _ := os.ReadDir(filepath.Join(root, "images/tmp")); len(ents) != 0 {
		t.Errorf("tmp/ still holds %d entries after a clean pull", len(ents))
	}
	var imgs []struct{ Layers []struct{ ChainID string } }
	json.Unmarshal([]byte(mustRun(t, root, "images", "--format", "json")), &imgs)
	if len(imgs) != 1 || len(imgs[0].Layers) != 3 {
		t.Fatalf("images after the completed pull: %+v", imgs)
	}
	for i, l := range imgs[0].Layers {
		p := filepath.Join(root, "images/layers", strings.TrimPrefix(l.ChainID, "sha256:"), "diff", fmt.Sprintf("layer%d", i))
		if b, err := os.ReadFile(p); err != nil || string(b) != "x" {
			t.Errorf("layer %d incomplete: %v", i, err)
		}
	}
}
