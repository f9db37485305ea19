package unpack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/pgzip"
)

// synthContent returns n bytes that compress about as well as a typical
// layer (3 to 4 times): words from a small vocabulary, with random binary
// runs mixed in.
func synthContent(rng *rand.Rand, n int) []byte {
	words := []string{"the", "lib", "usr", "share", "return", "func", "error", "config", "value", "0x7f", "ELF", "main", "struct", "int", "\n", "\t", "{", "}"}
	b := make([]byte, 0, n)
	for len(b) < n {
		if rng.IntN(8) == 0 {
			run := make([]byte, rng.IntN(64))
			for i := range run {
				run[i] = byte(rng.Uint32())
			}
			b = append(b, run...)
			continue
		}
		b = append(b, words[rng.IntN(len(words))]...)
		b = append(b, ' ')
	}
	return b[:n]
}

// synthLayer builds a tar of about size bytes shaped like an image layer:
// directories a few levels deep holding mostly small files, some medium
// ones, a few large ones, and symlinks.
// It panics on errors, which writing to memory cannot have.
func synthLayer(size int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(h *tar.Header, body []byte) {
		h.ModTime, h.Format = epoch, tar.FormatPAX
		must(tw.WriteHeader(h))
		_, err := tw.Write(body)
		must(err)
	}
	for d := 0; buf.Len() < size; d++ {
		dir := fmt.Sprintf("usr/lib/pkg%d/sub%d/", d/10, d%10)
		if d%10 == 0 {
			write(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("usr/lib/pkg%d/", d/10), Mode: 0o755}, nil)
		}
		write(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755}, nil)
		for f := 0; f < 40 && buf.Len() < size; f++ {
			var n int
			switch r := rng.IntN(100); {
			case r < 70:
				n = rng.IntN(8 << 10) // most files are small
			case r < 97:
				n = 8<<10 + rng.IntN(120<<10)
			default:
				n = 1<<20 + rng.IntN(3<<20)
			}
			name := fmt.Sprintf("%sfile%d.so", dir, f)
			write(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(n)}, synthContent(rng, n))
			if f%10 == 0 {
				write(&tar.Header{Typeflag: tar.TypeSymlink, Name: name + ".1", Linkname: filepath.Base(name), Mode: 0o777}, nil)
			}
		}
	}
	must(tw.Close())
	return buf.Bytes()
}

// gzipMem gzips data in memory.
func gzipMem(data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(data)
	must(err)
	must(zw.Close())
	return buf.Bytes()
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

var (
	benchLayer   = sync.OnceValue(func() []byte { return synthLayer(50 << 20) }) // ~50 MB tar
	benchLayerGz = sync.OnceValue(func() []byte { return gzipMem(benchLayer()) })
)

// benchLayers returns the benchmark layer, plain and gzipped; the gzipped
// one is only made when asked for, as compressing it takes seconds.
func benchLayers(b *testing.B, gzipped bool) (layer, gz []byte) {
	if gzipped {
		return benchLayer(), benchLayerGz()
	}
	return benchLayer(), nil
}

// benchDir hands each iteration a fresh empty directory and removes the
// previous one, both outside the timer.
func benchDir(b *testing.B, root string, i int) string {
	b.StopTimer()
	defer b.StartTimer()
	if i > 0 {
		os.RemoveAll(filepath.Join(root, fmt.Sprint(i-1)))
	}
	dir := filepath.Join(root, fmt.Sprint(i))
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkApply applies a ~50 MB uncompressed layer of mixed files.
func BenchmarkApply(b *testing.B) {
	requireRoot(b)
	layer, _ := benchLayers(b, false)
	root := b.TempDir()
	b.SetBytes(int64(len(layer)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := benchDir(b, root, i)
		if _, err := Apply(context.Background(), dir, bytes.NewReader(layer), Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyWriters is BenchmarkApplyGzip with 0 (everything inline)
// to 3 writers (see writers.go). Compare with care: on ext4 without a
// journal, creating files right after many were deleted (as every iteration
// here does) is several times slower, so results drift from run to run.
// bench/pull, which alternates its contenders, is the better judge.
func BenchmarkApplyWriters(b *testing.B) {
	requireRoot(b)
	layer, gz := benchLayers(b, true)
	for _, n := range []int{0, 1, 2, 3} {
		b.Run(fmt.Sprintf("writers=%d", n), func(b *testing.B) {
			root := b.TempDir()
			b.SetBytes(int64(len(layer)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dir := benchDir(b, root, i)
				rc, err := Decompress(bytes.NewReader(gz))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := apply(context.Background(), dir, rc, Options{}, tuning{writers: n, spawn: defaultTuning.spawn}); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}

// BenchmarkApplyGzip is Decompress then Apply on the gzipped layer, what a
// pull does; compare with BenchmarkTarXzf.
func BenchmarkApplyGzip(b *testing.B) {
	requireRoot(b)
	layer, gz := benchLayers(b, true)
	root := b.TempDir()
	b.SetBytes(int64(len(layer))) // MB/s of tar, comparable across benchmarks
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := benchDir(b, root, i)
		rc, err := Decompress(bytes.NewReader(gz))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Apply(context.Background(), dir, rc, Options{}); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}

// BenchmarkTarXf and BenchmarkTarXzf run GNU tar on the same layers, as
// the yardstick.
func BenchmarkTarXf(b *testing.B) {
	layer, _ := benchLayers(b, false)
	benchTar(b, layer, int64(len(layer)), "-xf")
}

func BenchmarkTarXzf(b *testing.B) {
	layer, gz := benchLayers(b, true)
	benchTar(b, gz, int64(len(layer)), "-xzf")
}

func benchTar(b *testing.B, stream []byte, tarSize int64, flag string) {
	requireRoot(b)
	if _, err := exec.LookPath("tar"); err != nil {
		b.Skip("no tar")
	}
	root := b.TempDir()
	b.SetBytes(tarSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := benchDir(b, root, i)
		cmd := exec.Command("tar", flag, "-", "-C", dir)
		cmd.Stdin = bytes.NewReader(stream)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("tar: %v: %s", err, out)
		}
	}
}

// bigGzip is ~150 MB of layer-like content, gzipped.
var bigGzip = sync.OnceValue(func() []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 150 {
		_, err := zw.Write(synthContent(rng, 1<<20))
		must(err)
	}
	must(zw.Close())
	return buf.Bytes()
})

// BenchmarkDecompressGzip compares the two gzip readers: alone, on ~150 MB
// of layer-like content read into io.Discard, and feeding Apply with the
// ~50 MB layer, where pgzip's read-ahead goroutine can inflate while Apply
// writes files. Decompress uses whichever wins.
func BenchmarkDecompressGzip(b *testing.B) {
	layer, layerGz := benchLayers(b, true)
	readers := []struct {
		name string
		open func(io.Reader) (io.ReadCloser, error)
	}{
		{"klauspost-gzip", func(r io.Reader) (io.ReadCloser, error) { return kgzip.NewReader(r) }},
		{"pgzip", func(r io.Reader) (io.ReadCloser, error) { return pgzip.NewReader(r) }},
	}
	for _, rd := range readers {
		b.Run(rd.name+"/discard-150MB", func(b *testing.B) {
			b.SetBytes(150 << 20)
			for i := 0; i < b.N; i++ {
				zr, err := rd.open(bytes.NewReader(bigGzip()))
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, zr); err != nil || n != 150<<20 {
					b.Fatalf("read %d: %v", n, err)
				}
				zr.Close()
			}
		})
		b.Run(rd.name+"/apply-50MB", func(b *testing.B) {
			requireRoot(b)
			root := b.TempDir()
			b.SetBytes(int64(len(layer)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dir := benchDir(b, root, i)
				zr, err := rd.open(bytes.NewReader(layerGz))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Apply(context.Background(), dir, zr, Options{}); err != nil {
					b.Fatal(err)
				}
				zr.Close()
			}
		})
	}
}
