// Package registry runs Debian's docker-registry (the CNCF distribution
// registry) as a child process on a loopback port, so tests and benchmarks
// can push and pull real images over real HTTP without internet access.
package registry

import (
	"context"
	"errors"
	"fmt"
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
)

// Binary is where Debian's docker-registry package installs the registry.
const Binary = "/usr/bin/docker-registry"

// ErrNotInstalled is returned by StartProcess when Binary does not exist.
var ErrNotInstalled = errors.New("docker-registry not installed (apt-get install docker-registry)")

const (
	// readyTimeout bounds how long we wait for /v2/ to answer after start.
	readyTimeout = 10 * time.Second
	// stopGrace is how long the registry gets to exit after SIGTERM.
	stopGrace = 5 * time.Second
	// portAttempts covers the race between picking a free port and the
	// registry binding it: another process may take it in between.
	portAttempts = 3
	// maxLog caps the captured registry output; only its tail matters.
	maxLog = 64 << 10
)

// Registry is a running docker-registry process listening on loopback.
type Registry struct {
	// Addr is the listen address, "127.0.0.1:PORT".
	Addr string
	// Dir holds the registry's config.yml and its storage root.
	Dir string

	cmd      *exec.Cmd
	log      *tailBuffer
	exited   chan struct{} // closed once the process has been reaped
	waitErr  error         // valid after exited is closed
	stopOnce sync.Once
}

// Start runs a registry for the duration of t, storing blobs under
// t.TempDir(). It skips t when docker-registry is not installed and fails
// t when the registry does not come up.
func Start(t testing.TB) *Registry {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skip(ErrNotInstalled.Error())
	}
	r, err := StartProcess(t.TempDir())
	if err != nil {
		t.Fatalf("start registry: %v", err)
	}
	// Cleanups run last-in first-out, so the registry stops before
	// t.TempDir removes its storage.
	t.Cleanup(r.Stop)
	return r
}

// StartProcess runs a registry that keeps its config and storage in dir,
// which must exist. It returns once GET /v2/ answers 200. The caller must
// call Stop.
func StartProcess(dir string) (*Registry, error) {
	if _, err := os.Stat(Binary); err != nil {
		return nil, ErrNotInstalled
	}
	var err error
	for range portAttempts {
		var r *Registry
		r, err = startOnce(dir)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, errAddrInUse) {
			return nil, err
		}
	}
	return nil, err
}

// Host returns the registry host as written in image references,
// "127.0.0.1:PORT".
func (r *Registry) Host() string { return r.Addr }

// URL returns the registry's base URL, "http://127.0.0.1:PORT".
func (r *Registry) URL() string { return "http://" + r.Addr }

// Ref returns a reference to repoTag in this registry, for example
// Ref("busybox:latest") is "127.0.0.1:PORT/busybox:latest".
func (r *Registry) Ref(repoTag string) string { return r.Addr + "/" + repoTag }

// Log returns the tail of the registry's stdout and stderr.
func (r *Registry) Log() string { return r.log.String() }

// Stop terminates the registry: SIGTERM, then SIGKILL if it has not exited
// within a few seconds. It is safe to call more than once.
func (r *Registry) Stop() {
	r.stopOnce.Do(func() {
		select {
		case <-r.exited:
			return
		default:
		}
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(stopGrace):
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
	})
}

// errAddrInUse marks a start that failed only because the port was taken.
var errAddrInUse = errors.New("registry port already in use")

// startOnce picks a free port, writes the config and starts the registry.
func startOnce(dir string) (*Registry, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	storage := filepath.Join(dir, "storage")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return nil, fmt.Errorf("create registry storage: %w", err)
	}
	config := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(config, configYAML(addr, storage), 0o644); err != nil {
		return nil, fmt.Errorf("write registry config: %w", err)
	}

	r := &Registry{
		Addr:   addr,
		Dir:    dir,
		log:    &tailBuffer{max: maxLog},
		exited: make(chan struct{}),
	}
	r.cmd = exec.Command(Binary, "serve", config)
	r.cmd.Stdout = r.log
	r.cmd.Stderr = r.log
	// A test binary killed before its cleanups run must not leave the
	// registry behind.
	killWithParent(r.cmd)
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", Binary, err)
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		close(r.exited)
	}()

	if err := r.waitReady(readyTimeout); err != nil {
		r.Stop()
		if strings.Contains(r.Log(), "address already in use") {
			return nil, fmt.Errorf("%w: %s", errAddrInUse, addr)
		}
		return nil, fmt.Errorf("registry on %s: %w\nregistry output:\n%s", addr, err, r.Log())
	}
	return r, nil
}

// waitReady polls GET /v2/ until it answers 200, the process exits, or the
// timeout passes.
func (r *Registry) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = probe(ctx, client, r.URL()+"/v2/"); last == nil {
			return nil
		}
		select {
		case <-r.exited:
			return fmt.Errorf("exited before becoming ready: %v", r.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", timeout, last)
		case <-tick.C:
		}
	}
}

// probe does one GET of url and wants a 200.
func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// freeAddr asks the kernel for a free loopback port. The port is released
// before the registry binds it, hence the retry in StartProcess.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// configYAML is a minimal registry config: filesystem storage, deletes on
// (tests exercise rmi-like flows), no auth, quiet logs.
func configYAML(addr, storage string) []byte {
	return fmt.Appendf(nil, `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  secret: devbox-test
`, storage, addr)
}

// tailBuffer is a goroutine-safe writer that keeps the last max bytes.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
