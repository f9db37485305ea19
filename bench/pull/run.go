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
	"syscall"
	"time"

	"github.com/devbox-dev/devbox/bench/internal/proc"
)

// contender is one way of getting an image from the registry onto disk.
type contender interface {
	Name() string
	// Run pulls into the fresh, empty directory dir. The sample's MaxRSS
	// is the largest peak resident set of the processes the run started.
	Run(ctx context.Context, dir string) (proc.Sample, error)
}

// devboxPull runs `devbox pull REF` with DEVBOX_ROOT in the run directory.
type devboxPull struct {
	bin, ref string
}

func (d devboxPull) Name() string { return "devbox" }

func (d devboxPull) Run(ctx context.Context, dir string) (proc.Sample, error) {
	cmd := d.command(ctx, dir, "pull", d.ref)
	s, err := proc.Timed(cmd)
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

func (c cranePull) Run(ctx context.Context, dir string) (proc.Sample, error) {
	oci := filepath.Join(dir, "oci")
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return proc.Sample{}, err
	}
	start := time.Now()
	pull, err := proc.Timed(exec.CommandContext(ctx, c.crane, "pull", "--format=oci", c.ref, oci))
	if err != nil {
		return proc.Sample{}, err
	}
	blob := filepath.Join(oci, "blobs", "sha256", c.layerHex)
	untar, err := proc.Timed(exec.CommandContext(ctx, c.tar, "-xzf", blob, "-C", rootfs))
	if err != nil {
		return proc.Sample{}, err
	}
	return proc.Sample{Wall: time.Since(start), MaxRSS: max(pull.MaxRSS, untar.MaxRSS)}, nil
}

// runOnce runs c in a fresh directory under workDir and removes it after,
// since each run leaves hundreds of megabytes behind. It also returns the
// bytes the run left on disk.
func runOnce(ctx context.Context, c contender, workDir string) (proc.Sample, int64, error) {
	dir, err := os.MkdirTemp(workDir, "run-"+c.Name()+"-")
	if err != nil {
		return proc.Sample{}, 0, fmt.Errorf("create run dir: %w", err)
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
