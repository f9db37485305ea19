package unpack

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func gzipBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(data, nil)
}

func TestDecompress(t *testing.T) {
	layer := makeTar(t, file("etc/motd", "hello"), dir("usr/"), symlink("bin", "usr/bin"))
	tests := []struct {
		name   string
		stream []byte
		want   []byte
	}{
		{"gzip", gzipBytes(t, layer), layer},
		{"zstd", zstdBytes(t, layer), layer},
		{"plain tar", layer, layer},
		{"empty", nil, nil},
		{"shorter than a magic", []byte{0x28}, []byte{0x28}},
		{"gzip of nothing", gzipBytes(t, nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(tt.stream))
			if err != nil {
				t.Fatalf("Decompress: %v", err)
			}
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := rc.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
}

func TestDecompressCorrupt(t *testing.T) {
	for name, stream := range map[string][]byte{
		"gzip": {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff},
		"zstd": {0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		t.Run(name, func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(stream))
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			if err == nil {
				t.Fatal("no error for a corrupt stream")
			}
		})
	}
}

// TestDecompressThenApply is what a pull does with each layer blob.
func TestDecompressThenApply(t *testing.T) {
	requireRoot(t)
	layer := makeTar(t, dir("etc/"), file("etc/motd", "hello"), file("etc/.wh.issue", ""))
	for name, blob := range map[string][]byte{"gzip": gzipBytes(t, layer), "zstd": zstdBytes(t, layer), "plain": layer} {
		t.Run(name, func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(blob))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			dir := t.TempDir()
			if _, err := Apply(context.Background(), dir, rc, Options{Name: testImage}); err != nil {
				t.Fatal(err)
			}
			assertContent(t, filepath.Join(dir, "etc/motd"), "hello")
			assertWhiteout(t, filepath.Join(dir, "etc/issue"))
		})
	}
}
