package runtime

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// BenchmarkRunTrue is `devbox run --rm busybox /bin/true` without the
// engine: a fresh upper and work dir, Docker's default spec, Run, and the
// upper dir removed.
func BenchmarkRunTrue(b *testing.B) {
	benchRun(b, true, nil)
}

// BenchmarkRunTrueTmpfsUpper writes to a tmpfs upper layer instead (no
// upper dir on disk to make and remove).
func BenchmarkRunTrueTmpfsUpper(b *testing.B) {
	benchRun(b, false, nil)
}

// BenchmarkRunTrueHostNetwork shares the host's network namespace (Linux
// creates and destroys network namespaces slowly).
func BenchmarkRunTrueHostNetwork(b *testing.B) {
	benchRun(b, true, func(s *specs.Spec) {
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
			return ns.Type == specs.NetworkNamespace
		})
	})
}

func benchRun(b *testing.B, upper bool, edit func(*specs.Spec)) {
	if layersErr != nil {
		b.Skip("no test image:", layersErr)
	}
	dir := b.TempDir()
	root := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		b.Fatal(err)
	}
	spec := DefaultSpec()
	spec.Root.Path = root
	spec.Hostname = "bench"
	spec.Process.Args = []string{"/bin/true"}
	if edit != nil {
		edit(spec)
	}
	ctx := context.Background()
	var inRun time.Duration
	var self0, child0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self0)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &child0)
	for b.Loop() {
		c := &Container{ID: "bench", Spec: spec, Layers: testLayers, CgroupFD: -1}
		var ctrDir string
		if upper {
			var err error
			if ctrDir, err = os.MkdirTemp(dir, "c"); err != nil {
				b.Fatal(err)
			}
			c.UpperDir, c.WorkDir = filepath.Join(ctrDir, "upper"), filepath.Join(ctrDir, "work")
			if err := os.Mkdir(c.UpperDir, 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.Mkdir(c.WorkDir, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		st, err := Run(ctx, c)
		inRun += time.Since(start)
		if err != nil || st.Code != 0 {
			b.Fatalf("%v, %v", st, err)
		}
		if ctrDir != "" {
			if err := os.RemoveAll(ctrDir); err != nil {
				b.Fatal(err)
			}
		}
	}
	// CPU time is what a busy machine does not blur: the container's
	// (init stage and program) and Run's own, per run.
	var self1, child1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self1)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &child1)
	b.ReportMetric(float64(inRun.Nanoseconds())/float64(b.N), "Run-ns/op")
	b.ReportMetric(cpuMicros(child1, child0)/float64(b.N), "child-cpu-µs/op")
	b.ReportMetric(cpuMicros(self1, self0)/float64(b.N), "self-cpu-µs/op")
}

func cpuMicros(a, b syscall.Rusage) float64 {
	us := func(tv syscall.Timeval) float64 { return float64(tv.Sec)*1e6 + float64(tv.Usec) }
	return us(a.Utime) - us(b.Utime) + us(a.Stime) - us(b.Stime)
}
