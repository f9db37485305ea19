package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// sample is one timed run of a contender.
type sample struct {
	Wall time.Duration
	// MaxRSS is the largest peak resident set, in KiB, of the processes
	// the run started (getrusage ru_maxrss is KiB on Linux).
	MaxRSS int64
}

// contender is one way of getting an image from the registry onto disk.
type contender interface {
	Name() string
	// Run pulls into the fresh, empty directory dir.
	Run(ctx context.Context, dir string) (sample, error)
}

// devboxPull runs `devbox pull REF` with DEVBOX_ROOT in the run directory.
type devboxPull struct {
	bin, ref string
}

func (d devboxPull) Name() string { return "devbox" }

func (d devboxPull) Run(ctx context.Context, dir string) (sample, error) {
	cmd := d.command(ctx, dir, "pull", d.ref)
	s, err := timed(cmd)
	if err != nil {
		return s, err
	}
	// Untimed sanity check: a pull that exits 0 but stores nothing would
	// otherwise win the benchmark.
	return s, d.checkImages(ctx, dir)
}

// command returns devbox with args and a private root and home in dir.
func (d devboxPull) command(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Env = append(os.Environ(),
		"DEVBOX_ROOT="+filepath.Join(dir, "root"),
		"DEVBOX_HOME="+filepath.Join(dir, "home"))
	return cmd
}

// checkImages wants `devbox images --format json` to list one image.
func (d devboxPull) checkImages(ctx context.Context, dir string) error {
	cmd := d.command(ctx, dir, "images", "--format", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("devbox images: %w\n%s", err, stderr.Bytes())
	}
	var images []json.RawMessage
	if err := json.Unmarshal(out, &images); err != nil {
		return fmt.Errorf("devbox images --format json: %w\n%s", err, out)
	}
	if len(images) != 1 {
		return fmt.Errorf("devbox images lists %d images after one pull:\n%s", len(images), out)
	}
	return nil
}

// cranePull is the peer: `crane pull --format=oci REF DIR/oci`, then
// `tar -xzf` of the layer blob into DIR/rootfs, timed together, which is
// the least work that ends with the same files on disk.
type cranePull struct {
	crane, tar, ref, layerHex string
}

func (c cranePull) Name() string { return "peer" }

func (c cranePull) Run(ctx context.Context, dir string) (sample, error) {
	oci := filepath.Join(dir, "oci")
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return sample{}, err
	}
	start := time.Now()
	pull, err := timed(exec.CommandContext(ctx, c.crane, "pull", "--format=oci", c.ref, oci))
	if err != nil {
		return sample{}, err
	}
	blob := filepath.Join(oci, "blobs", "sha256", c.layerHex)
	untar, err := timed(exec.CommandContext(ctx, c.tar, "-xzf", blob, "-C", rootfs))
	if err != nil {
		return sample{}, err
	}
	return sample{Wall: time.Since(start), MaxRSS: max(pull.MaxRSS, untar.MaxRSS)}, nil
}

// timed runs cmd and returns its wall time and peak RSS. Output is kept
// only to explain a failure.
func timed(cmd *exec.Cmd) (sample, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	s := sample{Wall: time.Since(start)}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.MaxRSS = ru.Maxrss
		}
	}
	if err != nil {
		return s, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, tail(out.String(), 2000))
	}
	return s, nil
}

// runOnce runs c in a fresh directory under workDir and removes it after,
// since each run leaves hundreds of megabytes behind. It also returns the
// bytes the run left on disk.
func runOnce(ctx context.Context, c contender, workDir string) (sample, int64, error) {
	dir, err := os.MkdirTemp(workDir, "run-"+c.Name()+"-")
	if err != nil {
		return sample{}, 0, fmt.Errorf("create run dir: %w", err)
	}
	defer func() {
		os.RemoveAll(dir)
		// Flush this run's metadata and writeback now, so that the
		// kernel does not do it during, and charge it to, the next run.
		syscall.Sync()
	}()
	s, err := c.Run(ctx, dir)
	if err != nil {
		return s, 0, fmt.Errorf("%s: %w", c.Name(), err)
	}
	return s, diskUsage(dir), nil
}

// diskUsage sums the sizes of regular files under dir.
func diskUsage(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
