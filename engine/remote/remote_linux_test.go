package remote

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/crypto/ssh"

	"github.com/devbox-dev/devbox/engine"
	"github.com/devbox-dev/devbox/engine/spec"
	"github.com/devbox-dev/devbox/images"
	"github.com/devbox-dev/devbox/progress"
)

// fakeEngine stands in for the local engine in the guest: what the
// protocol carries is what is tested here (the engine itself, and the
// whole path through a real VM, have tests of their own).
type fakeEngine struct {
	engine.Engine
	cancelled chan struct{}
	imported  chan []byte
}

func (f *fakeEngine) Images(ctx context.Context) ([]*images.Image, error) {
	var imgs []*images.Image
	for i := 0; i < 2000; i++ { // far more than one SSH packet holds
		imgs = append(imgs, &images.Image{ID: fmt.Sprintf("sha256:%064d", i), RepoTags: []string{fmt.Sprintf("example.com/app:%d", i)}})
	}
	return imgs, nil
}

func (f *fakeEngine) Pull(ctx context.Context, ref string, o images.PullOptions) (*images.Image, error) {
	switch ref {
	case "bad":
		return nil, errors.New("pull bad: no such image")
	case "slow":
		o.Progress(progress.Event{ID: "layer", Status: "Downloading"})
		<-ctx.Done()
		close(f.cancelled)
		return nil, ctx.Err()
	case "creds":
		a, err := o.Keychain.Resolve(mustRegistry("registry.example.com"))
		if err != nil {
			return nil, err
		}
		cfg, err := a.Authorization()
		if err != nil {
			return nil, err
		}
		return &images.Image{ID: cfg.Username + ":" + cfg.Password}, nil
	}
	for i := 0; i < 50; i++ {
		o.Progress(progress.Event{ID: fmt.Sprint(i), Status: "Pull complete"})
	}
	return &images.Image{ID: "sha256:abc", RepoTags: []string{ref}}, nil
}

func (f *fakeEngine) Run(ctx context.Context, o engine.RunOptions, stdio engine.IO) (engine.Exit, error) {
	if o.Spec.Terminal {
		return engine.Exit{}, errors.New("no terminal in this test")
	}
	var in []byte
	if stdio.Stdin != nil {
		in, _ = io.ReadAll(stdio.Stdin)
	}
	fmt.Fprintf(stdio.Stdout, "out:%s", in)
	fmt.Fprint(stdio.Stderr, "err")
	if o.Image == "signal" {
		select {
		case s := <-stdio.Signals:
			return engine.Exit{Code: 128 + int(s.(syscall.Signal))}, nil
		case <-time.After(10 * time.Second):
		}
	}
	return engine.Exit{Code: 3}, nil
}

func (f *fakeEngine) ImportImage(ctx context.Context, file, ref string) ([]*images.Image, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	f.imported <- b
	if ref == "bad" {
		return nil, fmt.Errorf("import %s: not an archive", file)
	}
	return []*images.Image{{ID: "sha256:imp", RepoTags: []string{ref}}}, nil
}

func (f *fakeEngine) ExportImageTo(ctx context.Context, ref string, w io.Writer) error {
	if ref == "bad" {
		w.Write([]byte("partial"))
		return errors.New("export bad: no such image")
	}
	_, err := w.Write(bytes.Repeat([]byte("x"), 1<<20))
	return err
}

type staticKeychain struct{}

func (staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() != "registry.example.com" {
		return authn.Anonymous, nil
	}
	return &authn.Basic{Username: "dev", Password: "s3cret"}, nil
}

// connect serves fe over an SSH connection on a socket pair and returns
// the client engine.
func connect(t *testing.T, fe *fakeEngine) *Client {
	t.Helper()
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	host, _ := ssh.NewSignerFromKey(hk)
	_, ck, _ := ed25519.GenerateKey(rand.Reader)
	user, _ := ssh.NewSignerFromKey(ck)
	scfg := &ssh.ServerConfig{PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(k.Marshal(), user.PublicKey().Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	scfg.AddHostKey(host)
	// A real socket: net.Pipe has no buffer, and both ends of SSH write
	// their version line before reading.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Engine: fe, TempDir: t.TempDir()}
	go func() {
		sc, chans, reqs, err := ssh.NewServerConn(a, scfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			go srv.Serve(context.Background(), sc, nc)
		}
	}()
	cc, chans, reqs, err := ssh.NewClientConn(b, "guest", &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(user)}, HostKeyCallback: ssh.FixedHostKey(host.PublicKey()),
	})
	if err != nil {
		t.Fatal(err)
	}
	cl := New(ssh.NewClient(cc, chans, reqs), Options{Keychain: staticKeychain{}, Machine: "test"})
	t.Cleanup(func() { cl.Close() })
	return cl
}

func newFake() *fakeEngine {
	return &fakeEngine{cancelled: make(chan struct{}), imported: make(chan []byte, 1)}
}

func TestSimpleCalls(t *testing.T) {
	cl := connect(t, newFake())
	ctx := context.Background()
	imgs, err := cl.Images(ctx)
	if err != nil || len(imgs) != 2000 || imgs[1999].RepoTags[0] != "example.com/app:1999" {
		t.Fatalf("Images: %d images, %v", len(imgs), err)
	}
	var events []progress.Event
	img, err := cl.Pull(ctx, "app", images.PullOptions{Progress: func(e progress.Event) { events = append(events, e) }})
	if err != nil || img.RepoTags[0] != "app" {
		t.Fatalf("Pull: %+v, %v", img, err)
	}
	// Every event arrives, in order, before Pull returns.
	if len(events) != 50 || events[49].ID != "49" {
		t.Errorf("progress: %d events, last %+v", len(events), events[len(events)-1])
	}
	if _, err := cl.Pull(ctx, "bad", images.PullOptions{}); err == nil || err.Error() != "pull bad: no such image" {
		t.Errorf("Pull bad: %v", err)
	}
	// The guest asks the host's keychain.
	if img, err := cl.Pull(ctx, "creds", images.PullOptions{}); err != nil || img.ID != "dev:s3cret" {
		t.Errorf("credentials through the host: %+v, %v", img, err)
	}
}

func TestPullCancelReachesGuest(t *testing.T) {
	fe := newFake()
	cl := connect(t, fe)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := cl.Pull(ctx, "slow", images.PullOptions{Progress: func(progress.Event) { cancel() }})
		done <- err
	}()
	select {
	case <-fe.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the guest's pull was not cancelled")
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Pull: %v, want context.Canceled", err)
	}
}

func TestRunStreams(t *testing.T) {
	cl := connect(t, newFake())
	var out, errb bytes.Buffer
	exit, err := cl.Run(context.Background(), engine.RunOptions{Image: "x"}, engine.IO{Stdin: strings.NewReader("in"), Stdout: &out, Stderr: &errb})
	if err != nil || exit.Code != 3 || out.String() != "out:in" || errb.String() != "err" {
		t.Errorf("Run: exit %+v err %v stdout %q stderr %q", exit, err, out.String(), errb.String())
	}
	sigs := make(chan os.Signal, 1)
	sigs <- syscall.SIGTERM
	exit, err = cl.Run(context.Background(), engine.RunOptions{Image: "signal"}, engine.IO{Stdout: io.Discard, Stderr: io.Discard, Signals: sigs})
	if err != nil || exit.Code != 128+int(syscall.SIGTERM) {
		t.Errorf("signal: exit %+v, %v", exit, err)
	}
	// A bind the machine does not share is refused before anything runs.
	cl.o.CheckBind = func(p string) error { return fmt.Errorf("%s is not shared", p) }
	_, err = cl.Run(context.Background(), engine.RunOptions{Image: "x", Spec: specWithBind("/nowhere")}, engine.IO{})
	if err == nil || !strings.Contains(err.Error(), "/nowhere is not shared") {
		t.Errorf("unshared bind: %v", err)
	}
}

func TestImportExport(t *testing.T) {
	fe := newFake()
	cl := connect(t, fe)
	ctx := context.Background()
	dir := t.TempDir()
	archive := filepath.Join(dir, "a.tar")
	os.WriteFile(archive, []byte("archive bytes"), 0o644)
	imgs, err := cl.ImportImage(ctx, archive, "app:1")
	if err != nil || len(imgs) != 1 || string(<-fe.imported) != "archive bytes" {
		t.Fatalf("ImportImage: %+v, %v", imgs, err)
	}
	// Errors name the archive as the user knows it, on the host.
	if _, err := cl.ImportImage(ctx, archive, "bad"); err == nil || !strings.Contains(err.Error(), "import "+archive+": not an archive") {
		t.Errorf("import error: %v", err)
	}
	<-fe.imported
	out := filepath.Join(dir, "out.tar")
	if err := cl.ExportImage(ctx, "app:1", out); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(out); err != nil || len(b) != 1<<20 {
		t.Errorf("export: %d bytes, %v", len(b), err)
	}
	// A failed export leaves nothing under the name asked for.
	bad := filepath.Join(dir, "bad.tar")
	if err := cl.ExportImage(ctx, "bad", bad); err == nil {
		t.Error("export of a missing image succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("after a failed export the directory holds %d entries, want 2", len(ents))
	}
}

func mustRegistry(s string) name.Registry {
	r, err := name.NewRegistry(s)
	if err != nil {
		panic(err)
	}
	return r
}

func specWithBind(src string) spec.Options {
	return spec.Options{Binds: []spec.Bind{{Source: src, Destination: "/x"}}}
}
