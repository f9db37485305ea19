package registry

import (
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestPushPull(t *testing.T) {
	r := Start(t)

	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.Ref("test/random:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}

	got, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	gotDigest, err := got.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if gotDigest != want {
		t.Errorf("pulled digest %s, pushed %s", gotDigest, want)
	}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Errorf("pulled %d layers, want 2", len(layers))
	}
}

func TestStop(t *testing.T) {
	r := Start(t)
	r.Stop()
	r.Stop() // idempotent
	if resp, err := http.Get(r.URL() + "/v2/"); err == nil {
		resp.Body.Close()
		t.Fatalf("registry still answers after Stop: %s", resp.Status)
	}
}

func TestRef(t *testing.T) {
	r := &Registry{Addr: "127.0.0.1:5000"}
	if got, want := r.Ref("busybox:latest"), "127.0.0.1:5000/busybox:latest"; got != want {
		t.Errorf("Ref = %q, want %q", got, want)
	}
	if got := r.Host(); got != "127.0.0.1:5000" {
		t.Errorf("Host = %q", got)
	}
}
