// Command pull benchmarks `devbox pull` against a peer doing the same job
// with stock tools: `crane pull --format=oci` followed by `tar -xzf` of the
// layer. Both pull a ~150 MB single-layer gzip image, built from this
// machine's files, from Debian's docker-registry on loopback.
//
// Usage (what `make bench` runs):
//
//	go run ./bench/pull -devbox bin/devbox -crane bin/crane
//
// Runs alternate ABBA (devbox first on even iterations, the peer first on
// odd ones) so drift in machine load hits both alike. Each run starts with
// an empty target directory; the page cache is not dropped, so the
// registry's blob and the binaries are warm for both contenders.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/devbox-dev/devbox/bench/internal/proc"
	"github.com/devbox-dev/devbox/bench/internal/stats"
	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
	"github.com/devbox-dev/devbox/internal/testutil/registry"
)

// Targets for devbox; see the report.
const (
	targetRatio  = 1.0 // devbox median time / peer median time, at most
	targetRSSMiB = 64  // devbox median peak RSS, below
)

// config holds the command-line flags.
type config struct {
	devbox, crane string
	iterations    int
	warmup        int
	sizeMiB       int64
	workDir       string
	only          string
	strict        bool
}

func main() {
	proc.Init() // before anything else: this may be a copy run as proc's spawner
	cfg := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	met, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if cfg.strict && !met {
		os.Exit(2)
	}
}

func parseFlags() config {
	var c config
	flag.StringVar(&c.devbox, "devbox", proc.EnvOr("DEVBOX_BIN", "bin/devbox"), "devbox binary (env DEVBOX_BIN)")
	flag.StringVar(&c.crane, "crane", proc.EnvOr("CRANE_BIN", "bin/crane"), "crane binary (env CRANE_BIN)")
	flag.IntVar(&c.iterations, "n", 5, "measured iterations per contender")
	flag.IntVar(&c.warmup, "warmup", 1, "untimed warm-up runs per contender")
	flag.Int64Var(&c.sizeMiB, "size", 150, "uncompressed size of the image's files, MiB")
	flag.StringVar(&c.workDir, "workdir", filepath.Join(os.TempDir(), "devbox-bench"), "directory for the cached layer, the registry and run targets")
	flag.StringVar(&c.only, "only", "", `run one contender: "devbox" or "peer"`)
	flag.BoolVar(&c.strict, "strict", false, "exit 2 when a target is missed")
	flag.Parse()
	return c
}

// run does the whole benchmark and reports whether devbox met its targets.
func run(ctx context.Context, cfg config) (bool, error) {
	if cfg.iterations < 1 {
		return false, errors.New("-n must be at least 1")
	}
	if cfg.only != "" && cfg.only != "devbox" && cfg.only != "peer" {
		return false, fmt.Errorf("-only %q: want devbox or peer", cfg.only)
	}
	if err := os.MkdirAll(cfg.workDir, 0o755); err != nil {
		return false, fmt.Errorf("work dir: %w", err)
	}

	fmt.Printf("building image from host files (cached in %s)...\n", cfg.workDir)
	layerPath, st, err := cachedLayer(cfg.workDir, corpusRoots, cfg.sizeMiB<<20)
	if err != nil {
		return false, fmt.Errorf("build layer: %w", err)
	}

	regDir, err := os.MkdirTemp(cfg.workDir, "registry-")
	if err != nil {
		return false, fmt.Errorf("registry dir: %w", err)
	}
	defer os.RemoveAll(regDir)
	reg, err := registry.StartProcess(regDir)
	if err != nil {
		return false, err
	}
	defer reg.Stop()

	ref := reg.Ref("bench/hostfiles:latest")
	layerHex, err := push(ref, layerPath)
	if err != nil {
		return false, err
	}

	contenders, err := pickContenders(cfg, ref, layerHex)
	if err != nil {
		return false, err
	}
	printHeader(cfg, ref, layerPath, st, contenders)

	res, err := measure(ctx, cfg, contenders)
	if err != nil {
		return false, err
	}
	return report(os.Stdout, res), nil
}

// push uploads a one-layer OCI image of the gzip tar at layerPath to ref
// and returns the layer blob's hex digest.
func push(ref, layerPath string) (string, error) {
	layer, err := tarball.LayerFromFile(layerPath, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return "", fmt.Errorf("open layer %s: %w", layerPath, err)
	}
	img, err := imagegen.Image(layer)
	if err != nil {
		return "", err
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	start := time.Now()
	if err := remote.Write(r, img); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	digest, err := layer.Digest()
	if err != nil {
		return "", err
	}
	fmt.Printf("pushed %s in %v\n", ref, time.Since(start).Round(time.Millisecond))
	return digest.Hex, nil
}

// pickContenders resolves the binaries of the contenders cfg asks for.
func pickContenders(cfg config, ref, layerHex string) ([]contender, error) {
	var cs []contender
	if cfg.only != "peer" {
		bin, err := proc.Binary(cfg.devbox, "build it with: go build -o bin/devbox ./cmd/devbox")
		if err != nil {
			return nil, err
		}
		cs = append(cs, devboxPull{bin: bin, ref: ref})
	}
	if cfg.only != "devbox" {
		crane, err := proc.Binary(cfg.crane, "build it with: GOBIN=$PWD/bin go install github.com/google/go-containerregistry/cmd/crane@v0.22.1")
		if err != nil {
			return nil, err
		}
		tar, err := exec.LookPath("tar")
		if err != nil {
			return nil, fmt.Errorf("tar: %w", err)
		}
		cs = append(cs, cranePull{crane: crane, tar: tar, ref: ref, layerHex: layerHex})
	}
	return cs, nil
}

// results holds the measured samples per contender name, in run order.
type results struct {
	names   []string
	samples map[string][]proc.Sample
	first   []string         // which contender ran first in each iteration
	disk    map[string]int64 // bytes left on disk by the last run
}

// measure runs warm-ups, then the measured iterations in ABBA order.
func measure(ctx context.Context, cfg config, cs []contender) (*results, error) {
	res := &results{samples: map[string][]proc.Sample{}, disk: map[string]int64{}}
	for _, c := range cs {
		res.names = append(res.names, c.Name())
	}
	for i := range cfg.warmup {
		for _, c := range cs {
			fmt.Printf("warm-up %d: %s\n", i+1, c.Name())
			if _, _, err := runOnce(ctx, c, cfg.workDir); err != nil {
				return nil, err
			}
		}
	}
	for i := range cfg.iterations {
		order := cs
		if i%2 == 1 {
			order = reversed(cs)
		}
		res.first = append(res.first, order[0].Name())
		for _, c := range order {
			s, disk, err := runOnce(ctx, c, cfg.workDir)
			if err != nil {
				return nil, err
			}
			fmt.Printf("iteration %d: %-6s %s\n", i+1, c.Name(), stats.Secs(s.Wall))
			res.samples[c.Name()] = append(res.samples[c.Name()], s)
			res.disk[c.Name()] = disk
		}
	}
	return res, nil
}

func reversed(cs []contender) []contender {
	out := make([]contender, len(cs))
	for i, c := range cs {
		out[len(cs)-1-i] = c
	}
	return out
}
