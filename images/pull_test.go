package images_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/devbox-dev/devbox/images"
	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
	testregistry "github.com/devbox-dev/devbox/internal/testutil/registry"
	"github.com/devbox-dev/devbox/progress"
)

// newRegistry serves an in-memory registry on loopback for the test.
func newRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	return testregistry.InMemory(t, wrap)
}

func pushIndex(t *testing.T, ref string, idx v1.ImageIndex) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func openStore(t *testing.T) *images.Store {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the image store unpacks device nodes, ownership and trusted xattrs: run the tests as root")
	}
	return openStoreAt(t, t.TempDir())
}

func openStoreAt(t *testing.T, root string) *images.Store {
	t.Helper()
	s, err := images.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustLayer(t *testing.T, c imagegen.Compression, entries ...imagegen.Entry) v1.Layer {
	t.Helper()
	l, err := imagegen.CompressedLayer(c, entries...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustImage(t *testing.T, p string, layers ...v1.Layer) v1.Image {
	t.Helper()
	plat, err := v1.ParsePlatform(p)
	if err != nil {
		t.Fatal(err)
	}
	img, err := imagegen.ImageFor(*plat, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func host() string { return imagegen.HostPlatform().OS + "/" + imagegen.HostPlatform().Architecture }

func readLayerFile(t *testing.T, s *images.Store, img *images.Image, i int, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.LayerDir(img.Layers[i].ChainID), p))
	if err != nil {
		t.Fatalf("layer %d: %v", i, err)
	}
	return string(b)
}

func TestPullBusybox(t *testing.T) {
	s := openStore(t)
	reg := newRegistry(t, nil)
	imagegen.Push(t, reg+"/library/busybox:1.36", imagegen.Busybox(t))

	var events atomic.Int64
	img, err := s.Pull(context.Background(), reg+"/library/busybox:1.36", images.PullOptions{
		Progress: func(progress.Event) { events.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := reg + "/library/busybox:1.36"; len(img.RepoTags) != 1 || img.RepoTags[0] != want {
		t.Errorf("RepoTags = %v, want [%s]", img.RepoTags, want)
	}
	if len(img.RepoDigests) != 1 || !strings.HasPrefix(img.RepoDigests[0], reg+"/library/busybox@sha256:") {
		t.Errorf("RepoDigests = %v", img.RepoDigests)
	}
	if img.Platform != host() {
		t.Errorf("Platform = %q, want %q", img.Platform, host())
	}
	if img.Size < 500_000 {
		t.Errorf("Size = %d, want the size of busybox", img.Size)
	}
	if events.Load() == 0 {
		t.Error("no progress events")
	}
	bb, err := os.Stat(filepath.Join(s.LayerDir(img.Layers[0].ChainID), "bin/busybox"))
	if err != nil || bb.Mode()&0o111 == 0 {
		t.Fatalf("bin/busybox in the unpacked layer: %v %v", bb, err)
	}
	if l, err := os.Readlink(filepath.Join(s.LayerDir(img.Layers[0].ChainID), "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("bin/sh -> %q, %v; want busybox", l, err)
	}

	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != img.ID {
		t.Fatalf("List = %v, %v", list, err)
	}
	for _, ref := range []string{reg + "/library/busybox:1.36", img.ID, img.ID[7:19], img.RepoDigests[0]} {
		if got, err := s.Get(ref); err != nil || got.ID != img.ID {
			t.Errorf("Get(%q) = %v, %v", ref, got, err)
		}
	}

	// A second pull of the same image fetches no layer again.
	var again []progress.Event
	var mu sync.Mutex
	if _, err := s.Pull(context.Background(), reg+"/library/busybox:1.36", images.PullOptions{
		Progress: func(e progress.Event) { mu.Lock(); again = append(again, e); mu.Unlock() },
	}); err != nil {
		t.Fatal(err)
	}
	for _, e := range again {
		if e.Status == "Downloading" {
			t.Errorf("second pull downloaded: %+v", e)
		}
	}
}

func TestReferenceDefaults(t *testing.T) {
	for ref, want := range map[string]string{
		"busybox":                        "docker.io/library/busybox:latest",
		"busybox:1.36":                   "docker.io/library/busybox:1.36",
		"docker.io/library/busybox":      "docker.io/library/busybox:latest",
		"ghcr.io/owner/app:v1":           "ghcr.io/owner/app:v1",
		"localhost:5000/app":             "localhost:5000/app:latest",
		"index.docker.io/library/alpine": "docker.io/library/alpine:latest",
	} {
		r, err := images.ParseReference(ref, nil)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if got := images.CanonicalName(r); got != want {
			t.Errorf("%s: got %s, want %s", ref, got, want)
		}
	}
	for _, bad := range []string{"UPPER/case", "a b", "busybox@sha256:123", ":tag", ""} {
		if _, err := images.ParseReference(bad, nil); err == nil || !strings.Contains(err.Error(), "invalid image reference") {
			t.Errorf("%q: err = %v, want invalid image reference", bad, err)
		}
	}
	r, _ := images.ParseReference("myreg.example:5000/app", []string{"myreg.example:5000"})
	if r.Context().Registry.Scheme() != "http" {
		t.Errorf("insecure registry scheme = %s, want http", r.Context().Registry.Scheme())
	}
	r, _ = images.ParseReference("myreg.example:5000/app", nil)
	if r.Context().Registry.Scheme() != "https" {
		t.Errorf("registry scheme = %s, want https", r.Context().Registry.Scheme())
	}
}

func TestPullIndexSelectsPlatform(t *testing.T) {
	s := openStore(t)
	reg := newRegistry(t, nil)
	amd := mustImage(t, "linux/amd64", mustLayer(t, imagegen.Gzip, imagegen.File("arch", "amd64", 0o644)))
	arm := mustImage(t, "linux/arm64", mustLayer(t, imagegen.Gzip, imagegen.File("arch", "arm64", 0o644)))
	idx, err := imagegen.Index(map[string]v1.Image{"linux/amd64": amd, "linux/arm64": arm})
	if err != nil {
		t.Fatal(err)
	}
	if idx, err = imagegen.WithAttestation(idx, amd); err != nil {
		t.Fatal(err)
	}
	if idx, err = imagegen.WithArtifact(idx, "application/vnd.example.sbom", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	pushIndex(t, reg+"/multi:1", idx)
	idxDigest, _ := idx.Digest()

	for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm64/v8"} {
		plat, _ := v1.ParsePlatform(p)
		img, err := s.Pull(context.Background(), reg+"/multi:1", images.PullOptions{Platform: plat})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if got, want := readLayerFile(t, s, img, 0, "arch"), plat.Architecture; got != want {
			t.Errorf("%s: pulled the %s image", p, got)
		}
		if want := reg + "/multi@" + idxDigest.String(); img.RepoDigests[0] != want {
			t.Errorf("RepoDigests = %v, want the index digest %s", img.RepoDigests, want)
		}
	}
	// The default is this machine's platform.
	img, err := s.Pull(context.Background(), reg+"/multi:1", images.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Platform != host() {
		t.Errorf("default platform pulled %s, want %s", img.Platform, host())
	}

	_, err = s.Pull(context.Background(), reg+"/multi:1", images.PullOptions{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}})
	if !errors.Is(err, images.ErrNoPlatform) || !strings.Contains(err.Error(), "linux/amd64, linux/arm64") || strings.Contains(err.Error(), "unknown") {
		t.Errorf("s390x: err = %v, want no image for platform listing linux/amd64, linux/arm64", err)
	}
}

// An OCI 1.1 index may give its image entries an artifactType; they are
// still images.
func TestPullIndexEntryWithArtifactType(t *testing.T) {
	s := openStore(t)
	reg := newRegistry(t, nil)
	img := mustImage(t, host(), mustLayer(t, imagegen.Gzip, imagegen.File("hello", "world", 0o644)))
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json"), mutate.IndexAddendum{
		Add: img,
		Descriptor: v1.Descriptor{
			ArtifactType: "application/vnd.oci.image.config.v1+json",
			Platform:     &v1.Platform{OS: "linux", Architecture: imagegen.HostPlatform().Architecture},
		},
	})
	pushIndex(t, reg+"/art:1", idx)
	got, err := s.Pull(context.Background(), reg+"/art:1", images.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if readLayerFile(t, s, got, 0, "hello") != "world" {
		t.Error("wrong content")
	}
}

func TestPullByDigestAndCompressions(t *testing.T) {
	s := openStore(t)
	reg := newRegistry(t, nil)
	img := mustImage(t, host(),
		mustLayer(t, imagegen.Gzip, imagegen.File("a", "gzip", 0o644)),
		mustLayer(t, imagegen.Zstd, imagegen.File("b", "zstd", 0o644)),
		mustLayer(t, imagegen.None, imagegen.File("c", "plain", 0o644)),
	)
	imagegen.Push(t, reg+"/comp:1", img)
	d, _ := img.Digest()
	got, err := s.Pull(context.Background(), reg+"/comp@"+d.String(), images.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.RepoTags) != 0 {
		t.Errorf("a pull by digest tagged %v", got.RepoTags)
	}
	for i, want := range []string{"a=gzip", "b=zstd", "c=plain"} {
		f, content, _ := strings.Cut(want, "=")
		if got := readLayerFile(t, s, got, i, f); got != content {
			t.Errorf("layer %d: %s = %q, want %q", i, f, got, content)
		}
	}
}

func TestSharedLayersStoredOnce(t *testing.T) {
	s := openStore(t)
	reg := newRegistry(t, nil)
	base := mustLayer(t, imagegen.Gzip, imagegen.File("base", strings.Repeat("b", 1000), 0o644))
	imagegen.Push(t, reg+"/one:1", mustImage(t, host(), base, mustLayer(t, imagegen.Gzip, imagegen.File("one", "1", 0o644))))
	imagegen.Push(t, reg+"/two:1", mustImage(t, host(), base, mustLayer(t, imagegen.Gzip, imagegen.File("two", "2", 0o644))))
	var downloads atomic.Int64
	count := func(e progress.Event) {
		if e.Status == "Pull complete" {
			downloads.Add(1)
		}
	}
	for _, r := range []string{"/one:1", "/two:1"} {
		if _, err := s.Pull(context.Background(), reg+r, images.PullOptions{Progress: count}); err != nil {
			t.Fatal(err)
		}
	}
	if downloads.Load() != 3 {
		t.Errorf("%d layers downloaded, want 3 (the base once)", downloads.Load())
	}
	if n := countDir(t, filepath.Join(s.Dir(), "layers")); n != 3 {
		t.Errorf("%d unpacked layers, want 3", n)
	}

	// Removing one image keeps the shared base; removing both empties the store.
	if _, err := s.Remove(reg+"/one:1", false); err != nil {
		t.Fatal(err)
	}
	if n := countDir(t, filepath.Join(s.Dir(), "layers")); n != 2 {
		t.Errorf("after rmi one: %d unpacked layers, want 2", n)
	}
	two, err := s.Get(reg + "/two:1")
	if err != nil {
		t.Fatal(err)
	}
	if readLayerFile(t, s, two, 0, "base") == "" {
		t.Error("shared layer lost")
	}
	if _, err := s.Remove(reg+"/two:1", false); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"layers", "blobs/sha256", "tmp"} {
		if n := countDir(t, filepath.Join(s.Dir(), d)); n != 0 {
			t.Errorf("after removing every image, %s has %d entries", d, n)
		}
	}
	if _, err := s.Remove(reg+"/two:1", false); !errors.Is(err, images.ErrNotFound) {
		t.Errorf("removing a removed image: %v, want ErrNotFound", err)
	}
}

func countDir(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestConcurrentPullsStoreOnce(t *testing.T) {
	s := openStore(t)
	root := filepath.Dir(s.Dir())
	reg := newRegistry(t, nil)
	imagegen.Push(t, reg+"/bb:1", imagegen.Busybox(t))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := openStoreAt(t, root)
			_, errs[i] = st.Pull(context.Background(), reg+"/bb:1", images.PullOptions{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("pull %d: %v", i, err)
		}
	}
	list, err := s.List()
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v; want one image", list, err)
	}
	if n := countDir(t, filepath.Join(s.Dir(), "layers")); n != 1 {
		t.Errorf("%d unpacked layers, want 1", n)
	}
}

func TestPullErrors(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	reg := newRegistry(t, nil)
	imagegen.Push(t, reg+"/there:1", imagegen.Busybox(t))

	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	authReg := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, _, ok := r.BasicAuth(); !ok {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})

	for _, tc := range []struct {
		ref, want string
	}{
		{reg + "/there:nope", "not found in registry " + reg},
		{reg + "/nothere:1", "not found in registry " + reg},
		{closed + "/x:1", "cannot reach registry " + closed},
		{authReg + "/x:1", "access denied by registry " + authReg},
		{"Bad Ref", "invalid image reference"},
	} {
		_, err := s.Pull(ctx, tc.ref, images.PullOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pull %s: err = %v, want it to say %q", tc.ref, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("pull %s: error is not one line: %q", tc.ref, err)
		}
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Errorf("failed pulls left images: %v, %v", list, err)
	}
}

// corruptBlobs serves every blob with its first byte flipped.
func corruptBlobs(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/sha256:") || r.Method != http.MethodGet {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		if len(b) > 0 && rec.Code == http.StatusOK && !strings.HasSuffix(r.URL.Path, configDigest.Load().(string)) {
			b[len(b)/2] ^= 0xff
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(b)
	})
}

var configDigest atomic.Value

func TestPullDigestMismatch(t *testing.T) {
	s := openStore(t)
	img := mustImage(t, host(), mustLayer(t, imagegen.Gzip, imagegen.File("f", strings.Repeat("x", 4096), 0o644)))
	cd, _ := img.ConfigName()
	configDigest.Store(cd.String())
	// Push straight to the registry; pull through the corrupting proxy.
	backend := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var corrupt atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if corrupt.Load() {
			corruptBlobs(backend).ServeHTTP(w, r)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	reg := strings.TrimPrefix(srv.URL, "http://")
	imagegen.Push(t, reg+"/c:1", img)
	corrupt.Store(true)
	_, err := s.Pull(context.Background(), reg+"/c:1", images.PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("err = %v, want digest mismatch", err)
	}
	if n := countDir(t, filepath.Join(s.Dir(), "layers")); n != 0 {
		t.Errorf("a corrupt layer was stored")
	}
	corrupt.Store(false)
	if _, err := s.Pull(context.Background(), reg+"/c:1", images.PullOptions{}); err != nil {
		t.Fatalf("pull after the registry recovered: %v", err)
	}
}

func TestPullRetriesServerErrors(t *testing.T) {
	s := openStore(t)
	var fails atomic.Int64
	fails.Store(2)
	reg := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && fails.Add(-1) >= 0 {
				http.Error(w, "try later", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	imagegen.Push(t, reg+"/flaky:1", imagegen.Busybox(t))
	fails.Store(2)
	if _, err := s.Pull(context.Background(), reg+"/flaky:1", images.PullOptions{}); err != nil {
		t.Fatalf("pull through two 503s: %v", err)
	}
}

func TestPullRefusesMaliciousLayers(t *testing.T) {
	s := openStore(t)
	reg := newRegistry(t, nil)
	outside := t.TempDir()
	for name, layers := range map[string][]v1.Layer{
		"traversal": {mustLayer(t, imagegen.Gzip, imagegen.File("../../escape", "x", 0o644))},
		"symlink-in-layer": {mustLayer(t, imagegen.Gzip,
			imagegen.Symlink("evil", outside),
			imagegen.File("evil/pwned", "x", 0o644))},
		"symlink-across-layers": {
			mustLayer(t, imagegen.Gzip, imagegen.Symlink("evil", outside)),
			mustLayer(t, imagegen.Gzip, imagegen.File("evil/pwned", "x", 0o644)),
		},
	} {
		t.Run(name, func(t *testing.T) {
			ref := reg + "/bad/" + name + ":1"
			imagegen.Push(t, ref, mustImage(t, host(), layers...))
			_, err := s.Pull(context.Background(), ref, images.PullOptions{})
			if err == nil || !strings.Contains(err.Error(), "bad/"+name) {
				t.Fatalf("err = %v, want a refusal naming the image", err)
			}
			if n := countDir(t, outside); n != 0 {
				t.Fatalf("%d files written outside the layer", n)
			}
			if _, err := s.Get(ref); !errors.Is(err, images.ErrNotFound) {
				t.Errorf("the refused image was recorded: %v", err)
			}
		})
	}
}

func TestPullCancelled(t *testing.T) {
	s := openStore(t)
	reg := newRegistry(t, nil)
	big := make([]byte, 8<<20)
	rand.Read(big)
	imagegen.Push(t, reg+"/big:1", mustImage(t, host(), mustLayer(t, imagegen.Gzip, imagegen.Entry{Name: "big", Mode: 0o644, Content: big})))
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	_, err := s.Pull(ctx, reg+"/big:1", images.PullOptions{Progress: func(e progress.Event) {
		if e.Status == "Downloading" && e.Current > 0 {
			once.Do(cancel)
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	for _, d := range []string{"layers", "tmp"} {
		if n := countDir(t, filepath.Join(s.Dir(), d)); n != 0 {
			t.Errorf("a cancelled pull left %d entries in %s", n, d)
		}
	}
	if _, err := s.Pull(context.Background(), reg+"/big:1", images.PullOptions{}); err != nil {
		t.Fatal(err)
	}
}
