package main_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
	"github.com/devbox-dev/devbox/internal/testutil/registry"
)

// engineVM is a machine of a user with a home directory of their own
// (the one devbox shares into the VM), and a registry on the host's
// loopback.
type engineVM struct {
	*userVM
	reg *registry.Registry
}

func newEngineVM(t *testing.T) *engineVM {
	return &engineVM{userVM: newUserVM(t), reg: registry.Start(t)}
}

// busyboxWith is the busybox image with more layers on top.
func busyboxWith(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := imagegen.Busybox(t)
	if len(layers) == 0 {
		return img
	}
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Every image and container command through the VM (driver qemu), the
// way a Mac user runs them: a registry on the host's loopback, stdio and
// exit codes, a terminal, signals, a bind mount of a home directory, a
// published port, and images/rmi.
func TestVMEngine(t *testing.T) {
	v := newEngineVM(t)
	ref := v.reg.Ref("app/busybox:1")
	imagegen.Push(t, ref, busyboxWith(t))
	v.up()

	t.Run("pull from the host's loopback", func(t *testing.T) {
		out := v.must("pull", ref)
		if !strings.Contains(out, "Status: Downloaded newer image for "+ref) {
			t.Errorf("pull output: %q", out)
		}
		out = v.must("images")
		if !strings.Contains(out, v.reg.Host()+"/app/busybox") {
			t.Errorf("images does not list the pulled image: %q", out)
		}
		if _, err := os.Stat(filepath.Join(v.root, "no-native-store")); !os.IsNotExist(err) {
			t.Errorf("the host got a native store: %v", err)
		}
		// The image is in the VM's store, on its data disk.
		if out := v.must("ssh", "--", "cat", "/var/lib/devbox/images/images.json"); !strings.Contains(out, "app/busybox:1") {
			t.Errorf("the guest store does not have it: %q", out)
		}
	})

	t.Run("credentials from the host", func(t *testing.T) {
		host := registry.InMemory(t, basicAuth("dev", "s3cret"))
		private := host + "/private/busybox:1"
		pushWithAuth(t, private, "dev", "s3cret")
		r := v.run("pull", private)
		if r.code == 0 || !strings.Contains(r.stderr, "docker login "+host) {
			t.Errorf("pull without credentials: exit %d %q", r.code, r.stderr)
		}
		// docker login's file, on the host only: the guest asks for it.
		auth := base64.StdEncoding.EncodeToString([]byte("dev:s3cret"))
		os.MkdirAll(filepath.Join(v.userHome, ".docker"), 0o700)
		os.WriteFile(filepath.Join(v.userHome, ".docker", "config.json"),
			[]byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600)
		defer os.RemoveAll(filepath.Join(v.userHome, ".docker"))
		if r := v.run("pull", "-q", private); r.code != 0 {
			t.Errorf("pull with the host's docker config: exit %d %q", r.code, r.stderr)
		}
		// The same image as ref: untag it, so rmi of ref deletes later.
		v.must("rmi", private)
	})

	t.Run("the host's proxy", func(t *testing.T) {
		addrs := nonLoopback(t)
		if len(addrs) == 0 {
			t.Skip("no address but loopback here: Go never proxies loopback registries")
		}
		// A registry on the host's own address that, once the image is
		// pushed, answers only what comes through the proxy.
		var viaProxyOnly atomic.Bool
		regHandler := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
		ln, err := net.Listen("tcp", net.JoinHostPort(addrs[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		reg := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if viaProxyOnly.Load() && r.Header.Get("X-Via-Proxy") == "" {
				http.Error(w, "direct access refused", http.StatusForbidden)
				return
			}
			regHandler.ServeHTTP(w, r)
		}))
		reg.Listener = ln
		reg.Start()
		defer reg.Close()
		host := ln.Addr().String()
		proxied := host + "/proxied/busybox:1"
		pr, err := name.ParseReference(proxied, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(pr, busyboxWith(t)); err != nil {
			t.Fatal(err)
		}
		viaProxyOnly.Store(true)
		var forwarded atomic.Int32
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			out := r.Clone(r.Context())
			out.RequestURI = ""
			out.Header.Set("X-Via-Proxy", "1")
			resp, err := http.DefaultTransport.RoundTrip(out)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			forwarded.Add(1)
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
		}))
		defer proxy.Close()
		if r := runDevbox(t, append(v.env(), "HTTP_PROXY="), "", "pull", "--insecure-registry", host, proxied); r.code == 0 {
			t.Errorf("pull around the proxy got through: %q", r.stdout)
		}
		// The proxy is on the host's loopback, as local proxies (cntlm,
		// px) are: the guest reaches it too.
		if r := runDevbox(t, append(v.env(), "HTTP_PROXY="+proxy.URL), "", "pull", "-q", "--insecure-registry", host, proxied); r.code != 0 || forwarded.Load() == 0 {
			t.Errorf("pull through the host's HTTP_PROXY: exit %d %q, %d requests through the proxy", r.code, r.stderr, forwarded.Load())
		}
		v.must("rmi", proxied)
	})

	t.Run("Ctrl-C during a pull cancels it in the guest", func(t *testing.T) {
		aborted := make(chan struct{}, 8)
		host := registry.InMemory(t, throttledBlobs(16<<10, 50*time.Millisecond, aborted))
		slow := host + "/slow/busybox:1"
		// A layer of its own (not one the VM has), of 3 MB that do not
		// compress: 10 s at the registry's pace.
		noise := make([]byte, 3<<20)
		rand.Read(noise)
		big, err := imagegen.Layer(imagegen.File("noise", string(noise), 0o644))
		if err != nil {
			t.Fatal(err)
		}
		imagegen.Push(t, slow, busyboxWith(t, big))
		c := v.cmd("pull", slow)
		out := &lockedBuffer{}
		c.Stdout, c.Stderr = out, out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		waitOutput(t, out, "Downloading", 60*time.Second)
		c.Process.Signal(syscall.SIGINT)
		exited := make(chan error, 1)
		go func() { exited <- c.Wait() }()
		select {
		case err := <-exited:
			if err == nil {
				t.Errorf("pull went on to succeed after Ctrl-C: %q", out.String())
			}
		case <-time.After(15 * time.Second):
			c.Process.Kill()
			t.Fatalf("devbox pull did not stop on Ctrl-C: %q", out.String())
		}
		// The guest dropped its download: the registry saw the reader go.
		select {
		case <-aborted:
		case <-time.After(15 * time.Second):
			t.Errorf("the guest kept downloading after Ctrl-C")
		}
		if out := v.must("images"); strings.Contains(out, "slow/busybox") {
			t.Errorf("a cancelled pull is listed: %q", out)
		}
	})

	t.Run("stdio and exit codes", func(t *testing.T) {
		r := v.run("run", "--rm", ref, "sh", "-c", "echo out; echo err >&2; uname -r; exit 3")
		if r.code != 3 || r.stdout != "out\n"+guestKernel(t, v)+"\n" || r.stderr != "err\n" {
			t.Errorf("run: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		r = v.runIn("hello\n", "run", "--rm", "-i", ref, "sh", "-c", "wc -c; cat")
		if r.code != 0 || strings.Fields(r.stdout)[0] != "6" {
			t.Errorf("run -i with stdin: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		// Without -i the container's stdin is empty, as with docker.
		r = v.runIn("ignored\n", "run", "--rm", ref, "wc", "-c")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "0" {
			t.Errorf("run without -i: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB each way
		r = v.runIn(big, "run", "--rm", "-i", ref, "cat")
		if r.code != 0 || r.stdout != big {
			t.Errorf("1 MiB through cat: exit %d, %d bytes back (%q)", r.code, len(r.stdout), r.stderr)
		}
		r = v.run("run", "--rm", ref, "no-such-command")
		if r.code != 127 || !strings.Contains(r.stderr, "no-such-command") {
			t.Errorf("missing command: exit %d %q", r.code, r.stderr)
		}
		r = v.run("run", "--rm", "--pull", "never", v.reg.Ref("app/absent:1"), "true")
		if r.code != 125 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "devbox pull") {
			t.Errorf("absent image with --pull never: exit %d %q", r.code, r.stderr)
		}
	})

	t.Run("containers reach out through the VM's network", func(t *testing.T) {
		// A server on the host's loopback, which QEMU's user network
		// shows the guest at 10.0.2.2: containers get out the way
		// apt-get in one would.
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "outside\n") }))
		defer srv.Close()
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		r := v.run("run", "--rm", ref, "wget", "-q", "-O", "-", "http://10.0.2.2:"+strconv.Itoa(port)+"/")
		if r.code != 0 || r.stdout != "outside\n" {
			t.Errorf("wget from a container: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("terminal", func(t *testing.T) {
		c := v.cmd("run", "--rm", "-it", ref, "sh")
		term := startTerminal(t, c, 33, 111, 20*time.Second)
		term.pty.Write([]byte("stty size; tty\r"))
		term.waitFor("33 111")
		term.waitFor("/dev/pts/0")
		term.resize(40, 100)
		// Ctrl-C reaches the container's terminal, whose shell stops its
		// foreground command and goes on.
		term.pty.Write([]byte("sleep 60\r"))
		time.Sleep(500 * time.Millisecond)
		term.pty.Write([]byte{3})
		term.pty.Write([]byte("echo after-$((6*7))\r"))
		term.waitFor("after-42")
		term.exit(c, 7)
	})

	t.Run("signals", func(t *testing.T) {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			c := v.cmd("run", "--rm", ref, "sh", "-c", `trap 'echo got-$1; exit 9' INT TERM; echo ready; while :; do sleep 0.1; done`)
			out := &lockedBuffer{}
			c.Stdout, c.Stderr = out, out
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			waitOutput(t, out, "ready", 20*time.Second)
			c.Process.Signal(sig)
			if err := c.Wait(); exitStatus(err) != 9 {
				t.Errorf("%v: exit %v (%q), want 9", sig, err, out.String())
			}
		}
	})

	t.Run("bind mount of a home directory", func(t *testing.T) {
		src := filepath.Join(v.userHome, "project")
		os.MkdirAll(src, 0o755)
		os.WriteFile(filepath.Join(src, "in.txt"), []byte("from the host\n"), 0o644)
		r := v.run("run", "--rm", "-v", src+":/src", "-w", "/src", ref, "sh", "-c", "cat in.txt; echo from the container > out.txt")
		if r.code != 0 || r.stdout != "from the host\n" {
			t.Fatalf("run -v: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		b, err := os.ReadFile(filepath.Join(src, "out.txt"))
		if err != nil || string(b) != "from the container\n" {
			t.Errorf("written back: %q %v", b, err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(src, "out.txt"), &st); err == nil && int(st.Uid) != os.Getuid() {
			t.Errorf("out.txt is owned by uid %d on the host, want %d (the user)", st.Uid, os.Getuid())
		}
		// A path through a symlink outside the shares that leads into
		// one (macOS's /var -> /private/var) binds the real directory.
		alias := filepath.Join(v.root, "alias")
		if err := os.Symlink(src, alias); err != nil {
			t.Fatal(err)
		}
		if r := v.run("run", "--rm", "-v", alias+":/src", ref, "cat", "/src/in.txt"); r.code != 0 || r.stdout != "from the host\n" {
			t.Errorf("run -v through a symlink: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		// Outside the shared directories: one line that says what is
		// shared and how to share more.
		outside := t.TempDir()
		r = v.run("run", "--rm", "-v", outside+":/x", ref, "true")
		if r.code != 125 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 ||
			!strings.Contains(r.stderr, outside) || !strings.Contains(r.stderr, v.userHome) || !strings.Contains(r.stderr, "--share") {
			t.Errorf("bind outside the shares: exit %d %q", r.code, r.stderr)
		}
	})

	t.Run("published port", func(t *testing.T) {
		port := freePort(t)
		c := v.cmd("run", "--rm", "-p", strconv.Itoa(port)+":8080", ref, "sh", "-c",
			"mkdir /www && echo hello-port > /www/index.html && exec httpd -f -p 8080 -h /www")
		out := &lockedBuffer{}
		c.Stdout, c.Stderr = out, out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Process.Kill()
		url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
		var body string
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			resp, err := http.Get(url)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if body = string(b); resp.StatusCode == 200 {
					break
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if body != "hello-port\n" {
			t.Errorf("GET %s: %q (devbox said %q)", url, body, out.String())
		}
		// Only on loopback, as devbox publishes by default.
		if addrs := nonLoopback(t); len(addrs) > 0 {
			if conn, err := net.DialTimeout("tcp", net.JoinHostPort(addrs[0], strconv.Itoa(port)), time.Second); err == nil {
				conn.Close()
				t.Errorf("the published port answers on %s too", addrs[0])
			}
		}
		// httpd is the container's PID 1 and ignores SIGTERM, as under
		// docker; a devbox killed outright takes its container with it.
		c.Process.Kill()
		c.Wait()
		if conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
			conn.Close()
			t.Errorf("port %d still listens after devbox ended", port)
		}
		gone := false
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !gone; time.Sleep(200 * time.Millisecond) {
			gone = strings.TrimSpace(v.must("ps", "-q")) == ""
		}
		if !gone {
			t.Errorf("the container runs on in the VM after its devbox was killed: %s", v.must("ps"))
		}
		// A host port in use fails the run before the container starts.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		taken := ln.Addr().(*net.TCPAddr).Port
		r := v.run("run", "--rm", "-p", strconv.Itoa(taken)+":80", ref, "echo", "never")
		if r.code != 125 || strings.Contains(r.stdout, "never") || !strings.Contains(r.stderr, "choose another host port") {
			t.Errorf("taken port: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("edge-case image unpacked in the guest", func(t *testing.T) {
		edge := v.reg.Ref("edge/cases:1")
		layers, err := edgeCaseImage(t).Layers()
		if err != nil {
			t.Fatal(err)
		}
		imagegen.Push(t, edge, busyboxWith(t, layers...))
		r := v.run("run", "--rm", edge, "sh", "-c", edgeCaseScript)
		if r.code != 0 || r.stdout != edgeCaseWant {
			t.Errorf("edge cases in the guest: exit %d %q\ngot:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, edgeCaseWant)
		}
	})

	t.Run("images and rmi", func(t *testing.T) {
		out := v.must("rmi", v.reg.Ref("edge/cases:1"))
		if !strings.Contains(out, "Untagged: "+v.reg.Ref("edge/cases:1")) || !strings.Contains(out, "Deleted: ") {
			t.Errorf("rmi: %q", out)
		}
		out = v.must("images", "--format", "json")
		if strings.Contains(out, "edge/cases") || !strings.Contains(out, "app/busybox") {
			t.Errorf("images after rmi: %q", out)
		}
		v.must("run", "--name", "kept", ref, "true")
		if out := v.must("ps", "-a"); !strings.Contains(out, "kept") {
			t.Errorf("ps -a: %q", out)
		}
		if r := v.run("rmi", ref); r.code == 0 || !strings.Contains(r.stderr, "kept") {
			t.Errorf("rmi of an image a container uses: exit %d %q", r.code, r.stderr)
		}
		v.must("rm", "kept")
		export := filepath.Join(v.userHome, "bb.tar")
		v.must("image", "export", ref, export)
		v.must("rmi", ref)
		if out := v.must("image", "import", export, "again:1"); !strings.Contains(out, "Loaded image: again:1") {
			t.Errorf("import: %q", out)
		}
		if r := v.run("run", "--rm", "again:1", "echo", "imported"); r.code != 0 || r.stdout != "imported\n" {
			t.Errorf("run the imported image: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("stopped machine", func(t *testing.T) {
		v.must("down")
		r := v.run("run", "--rm", ref, "true")
		if r.code != 125 || !strings.Contains(r.stderr, "devbox up") {
			t.Errorf("run on a stopped machine: exit %d %q", r.code, r.stderr)
		}
	})
}

// basicAuth makes a registry want a user and password, as a private
// registry does.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="devbox-test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

func pushWithAuth(t *testing.T, ref, user, pass string) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, busyboxWith(t), remote.WithAuth(&authn.Basic{Username: user, Password: pass})); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// edgeCaseScript prints, inside a container, what TestEdgeCaseImage
// checks on the host through overlayfs.
const edgeCaseScript = `cd /
for p in etc/passwd a/y opq/new gone dir2file file2dir/child hard; do echo "$p=$(cat $p)"; done
for p in a/x opq/old dir2file/child; do if [ -e $p ] || [ -L $p ]; then echo "$p present"; else echo "$p absent"; fi; done
for p in abs rel dangling; do echo "$p -> $(readlink $p)"; done
stat -c '%n %a %u:%g %F' suid sgid sticky owned fifo
stat -c '%n %F %t:%T' null loop
stat -c '%n %Y' old
stat -c '%n %h' hard etc/passwd
`

var edgeCaseWant = strings.Join([]string{
	"etc/passwd=root:x:0:0::/root:/bin/sh", "a/y=y", "opq/new=new", "gone=back again",
	"dir2file=now a file", "file2dir/child=now a dir", "hard=root:x:0:0::/root:/bin/sh",
	"a/x absent", "opq/old absent", "dir2file/child absent",
	"abs -> /etc/passwd", "rel -> etc/passwd", "dangling -> /no/such/file",
	"suid 4755 0:0 regular file", "sgid 2755 0:0 regular file", "sticky 1777 0:0 directory",
	"owned 640 1000:2000 regular file", "fifo 600 0:0 fifo",
	"null character special file 1:3", "loop block special file 7:0",
	"old " + strconv.FormatInt(mtime.Unix(), 10), "hard 2", "etc/passwd 2",
}, "\n") + "\n"

// guestKernel is the guest's kernel release.
func guestKernel(t *testing.T, v *engineVM) string {
	t.Helper()
	return strings.TrimSpace(v.must("ssh", "--", "uname", "-r"))
}

func exitStatus(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// nonLoopback lists this host's addresses that are not loopback.
func nonLoopback(t *testing.T) []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}

// lockedBuffer collects a process's output while a test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitOutput(t *testing.T, b *lockedBuffer, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(b.String(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("never saw %q in %q", s, b.String())
}
