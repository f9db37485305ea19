//go:build linux

// Command run benchmarks `devbox run --rm IMAGE /bin/true` on a busybox
// image already in devbox's store against the bare OCI runtimes, `crun
// run` and `runc run` on a bundle of the same root filesystem, and against
// `podman run --rm` of the same image loaded into a private podman store.
//
// Usage (what `make bench` runs; needs root, and crun, runc and podman
// from `BENCH=1 bash scripts/deps.sh`):
//
//	go run ./bench/run -devbox bin/devbox
//
// Fairness:
//
//   - All contenders run inside one private mount namespace, which the
//     program makes by re-executing itself. On a hybrid cgroup host an
//     empty file is bind-mounted there over
//     /sys/fs/cgroup/unified/cgroup.controllers, because Debian's crun
//     refuses a hybrid host whose cgroup2 root lists controllers
//     (hugetlb, typically); all four see the same cgroup tree.
//   - The same namespaces for all: devbox runs with --network none (a new
//     network namespace with only lo), as podman does with --network=none,
//     and the bundle asks for a new network namespace too; -network host
//     measures devbox's default instead, with podman --network=host and no
//     new network namespace in the bundle.
//   - The same process and security settings: the bundle's config.json is
//     `crun spec`'s, with the process (argv, environment, user,
//     capabilities, no_new_privs, rlimits), namespaces, masked and
//     read-only paths, sysctls and hostname of the spec devbox's engine
//     generates for this run, and devbox's seccomp filter (Docker's
//     default profile). Podman applies its own, similar, defaults.
//   - Each timed run is the wall time of the whole command. What a run
//     leaves running after its command exits (podman's conmon and its
//     cleanup process) is waited for, untimed, before the next run, and
//     the file system is synced, untimed, after every run, so that no
//     contender pays for another's leftovers.
//   - Warm-up runs first, then the rounds, each contender once a round,
//     in an order that rotates every round and reverses every len(contenders)
//     rounds, so that each contender runs in each position equally often.
//   - Peak RSS is ru_maxrss of each command, taken by proc's small spawner
//     process rather than by this one, whose own RSS would otherwise set a
//     floor under every figure (see proc.Init); the report prints what floor
//     is left.
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
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/devbox-dev/devbox/bench/internal/proc"
	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
)

// Targets for devbox; see the report.
const (
	targetCrun   = 1.0 // devbox median / crun median, at most
	targetPodman = 0.1 // devbox median / podman median, at most
	targetRSSMiB = 20  // devbox median peak RSS, at most
)

// allContenders are the contenders -contenders may name, in report order.
var allContenders = []string{"devbox", "crun", "runc", "podman"}

// config holds the command-line flags.
type config struct {
	devbox     string
	iterations int
	warmup     int
	network    string
	seccomp    bool
	contenders []string
	workDir    string
	keep       bool
	strict     bool
}

func main() {
	proc.Init() // before anything else: this may be a copy run as proc's spawner
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if os.Getenv(childEnv) == "" {
		if os.Geteuid() != 0 {
			fmt.Fprintln(os.Stderr, "bench: run needs root (mount namespaces, container runtimes)")
			os.Exit(1)
		}
		os.Exit(reexec())
	}
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

func parseFlags() (config, error) {
	var c config
	var contenders string
	flag.StringVar(&c.devbox, "devbox", proc.EnvOr("DEVBOX_BIN", "bin/devbox"), "devbox binary (env DEVBOX_BIN)")
	flag.IntVar(&c.iterations, "n", 30, "measured rounds; each runs every contender once")
	flag.IntVar(&c.warmup, "warmup", 3, "untimed warm-up runs per contender (at least 1)")
	flag.StringVar(&c.network, "network", "none", `"none": devbox --network none, podman --network=none, a new network namespace in the bundle; "host": devbox's default, podman --network=host, none in the bundle`)
	flag.BoolVar(&c.seccomp, "seccomp", true, "give crun and runc devbox's seccomp filter (Docker's default profile), as devbox and podman load one")
	flag.StringVar(&contenders, "contenders", strings.Join(allContenders, ","), "comma-separated contenders to run")
	flag.StringVar(&c.workDir, "workdir", filepath.Join(os.TempDir(), "devbox-bench-run"), "directory for the stores, the bundle and the image")
	flag.BoolVar(&c.keep, "keep", false, "keep this run's directory under -workdir")
	flag.BoolVar(&c.strict, "strict", false, "exit 2 when a target is missed")
	flag.Parse()
	if flag.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if c.iterations < 1 || c.warmup < 0 {
		return c, errors.New("-n must be at least 1 and -warmup at least 0")
	}
	if c.network != "none" && c.network != "host" {
		return c, fmt.Errorf("-network %q: want none or host", c.network)
	}
	for _, name := range strings.Split(contenders, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(allContenders, name) {
			return c, fmt.Errorf("-contenders: unknown %q; choose from %s", name, strings.Join(allContenders, ","))
		}
		if !slices.Contains(c.contenders, name) {
			c.contenders = append(c.contenders, name)
		}
	}
	return c, nil
}

// setup is what run prepared, for the header.
type setup struct {
	hiddenControllers string
	rssFloor          int64 // KiB; see proc.Floor
	busyboxVersion    string
	entries           int
	bundle            *bundle
	skipped           map[string]string // contender -> why it did not run
	dirs              []string          // more directories to remove at the end
}

// run does the whole benchmark and reports whether devbox met its targets.
func run(ctx context.Context, cfg config) (bool, error) {
	if err := os.MkdirAll(cfg.workDir, 0o755); err != nil {
		return false, fmt.Errorf("work dir: %w", err)
	}
	dir, err := os.MkdirTemp(cfg.workDir, "run-")
	if err != nil {
		return false, fmt.Errorf("work dir: %w", err)
	}
	st := &setup{skipped: map[string]string{}}
	defer func() {
		for _, d := range append(st.dirs, dir) {
			if err := unmountUnder(d); err != nil {
				fmt.Fprintln(os.Stderr, "bench: clean up:", err)
			}
			if !cfg.keep || d != dir {
				os.RemoveAll(d)
			}
		}
	}()

	st.hiddenControllers, err = privateNamespace(dir)
	if err != nil {
		return false, err
	}
	if st.rssFloor, err = proc.Floor(); err != nil {
		return false, fmt.Errorf("measure the RSS floor: %w", err)
	}
	cs, err := prepare(ctx, cfg, dir, st)
	if err != nil {
		return false, err
	}
	printHeader(cfg, st, cs)

	if cs, err = warmUp(ctx, cfg, cs, st); err != nil {
		return false, err
	}
	if !slices.ContainsFunc(cs, func(c *contender) bool { return c.name == "devbox" }) {
		return false, errors.New("devbox did not run")
	}
	res, err := measure(ctx, cfg, cs)
	if err != nil {
		return false, err
	}
	return report(os.Stdout, cfg, st, res), nil
}

// prepare builds the image and readies each contender that cfg asks for:
// devbox's store, the OCI bundle, podman's store.
func prepare(ctx context.Context, cfg config, dir string, st *setup) ([]*contender, error) {
	entries, err := imagegen.BusyboxEntries()
	if err != nil {
		return nil, err
	}
	st.entries = len(entries)
	st.busyboxVersion = strings.TrimSuffix(firstLine(imagegen.BusyboxPath), " multi-call binary.")
	tarball, err := imagegen.Tar(entries...)
	if err != nil {
		return nil, err
	}
	rootfsTar := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(rootfsTar, tarball, 0o644); err != nil {
		return nil, err
	}

	want := func(name string) bool { return slices.Contains(cfg.contenders, name) }
	byName := map[string]*contender{}

	devboxDir := filepath.Join(dir, "devbox")
	bin, err := proc.Binary(cfg.devbox, "build it with: make build")
	if err != nil {
		return nil, err
	}
	dev := newDevbox(bin, devboxDir, cfg.network)
	fmt.Printf("importing %s into a fresh DEVBOX_ROOT...\n", imageRef)
	if err := devboxDo(ctx, dev, "image", "import", rootfsTar, imageRef); err != nil {
		return nil, err
	}
	if want("devbox") {
		if err := checkDevbox(ctx, dev); err != nil {
			return nil, err
		}
		byName["devbox"] = dev
	}

	if want("crun") || want("runc") {
		specTool := "crun"
		if !want("crun") {
			specTool = "runc"
		}
		tool, err := lookTool(specTool)
		if err != nil {
			return nil, err
		}
		fmt.Printf("writing the OCI bundle (%s spec, edited)...\n", specTool)
		if st.bundle, err = writeBundle(filepath.Join(dir, "bundle"), tool, entries, cfg.network, cfg.seccomp); err != nil {
			return nil, err
		}
		for _, name := range []string{"crun", "runc"} {
			if !want(name) {
				continue
			}
			tool, err := lookTool(name)
			if err != nil {
				return nil, err
			}
			byName[name] = newRuntime(name, tool, st.bundle.dir)
		}
	}

	if want("podman") {
		c, why := preparePodman(ctx, cfg, dir, dev, st)
		if c != nil {
			byName["podman"] = c
		} else {
			st.skipped["podman"] = why
		}
	}

	var cs []*contender
	for _, name := range allContenders {
		if c, ok := byName[name]; ok {
			cs = append(cs, c)
		}
	}
	return cs, nil
}

// devboxDo runs a devbox command with dev's store, untimed.
func devboxDo(ctx context.Context, dev *contender, args ...string) error {
	cmd := exec.CommandContext(ctx, dev.argv("")[0], args...)
	cmd.Env = append(os.Environ(), dev.env...)
	return runSetup(cmd)
}

// checkDevbox makes sure `devbox run` really runs the container's program:
// one that exits 0 without running anything would otherwise win.
func checkDevbox(ctx context.Context, dev *contender) error {
	err := devboxDo(ctx, dev, "run", "--rm", imageRef, "/bin/sh", "-c", "exit 7")
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 7 {
		return nil
	}
	return fmt.Errorf("sanity check: devbox run --rm %s sh -c 'exit 7' should exit 7: %v", imageRef, err)
}

// preparePodman loads the image, as `devbox image export` writes it, into a
// private podman store. It returns nil and the reason when podman cannot
// run here.
func preparePodman(ctx context.Context, cfg config, dir string, dev *contender, st *setup) (*contender, string) {
	bin, err := lookTool("podman")
	if err != nil {
		return nil, err.Error()
	}
	podmanDir := filepath.Join(dir, "podman")
	// Podman wants its run root at most 50 characters long, so it goes
	// in /run (where its default is), on a tmpfs of this namespace.
	runDir, err := os.MkdirTemp("/run", "devbox-bench-")
	if err != nil {
		return nil, err.Error()
	}
	st.dirs = append(st.dirs, runDir)
	if err := mountTmpfs(runDir); err != nil {
		return nil, err.Error()
	}
	archive := filepath.Join(dir, "image.tar")
	if err := devboxDo(ctx, dev, "image", "export", imageRef, archive); err != nil {
		return nil, fmt.Sprintf("devbox image export: %v", err)
	}
	fmt.Println("loading the image into a private podman store...")
	load := append(podmanGlobal(bin, podmanDir, runDir), "load", "-i", archive)
	if err := runSetup(exec.CommandContext(ctx, load[0], load[1:]...)); err != nil {
		return nil, fmt.Sprintf("podman load: %v", err)
	}
	return newPodman(bin, podmanDir, runDir, cfg.network), ""
}

// warmUp runs each contender cfg.warmup times (at least once, which also
// checks it works), untimed, and returns those that work. A podman that
// fails is skipped, with its error as the reason; any other failure is
// fatal, and so is a podman failure later on.
func warmUp(ctx context.Context, cfg config, cs []*contender, st *setup) ([]*contender, error) {
	var out []*contender
	for _, c := range cs {
		var err error
		for i := range max(cfg.warmup, 1) {
			if _, _, err = runOnce(ctx, c, fmt.Sprintf("warm%d", i)); err != nil {
				break
			}
		}
		switch {
		case err == nil:
			out = append(out, c)
		case c.name == "podman":
			st.skipped[c.name] = err.Error()
			fmt.Printf("warm-up: podman skipped: %v\n", err)
		default:
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	fmt.Println()
	return out, nil
}

// results holds the measured samples per contender, in run order.
type results struct {
	names   []string
	orders  [][]string // the order of each round
	samples map[string][]proc.Sample
	linger  map[string][]time.Duration
}

// measure runs the rounds.
func measure(ctx context.Context, cfg config, cs []*contender) (*results, error) {
	res := &results{samples: map[string][]proc.Sample{}, linger: map[string][]time.Duration{}}
	for _, c := range cs {
		res.names = append(res.names, c.name)
	}
	for i := range cfg.iterations {
		order := roundOrder(cs, i)
		var names []string
		line := fmt.Sprintf("round %2d:", i+1)
		for _, c := range order {
			s, linger, err := runOnce(ctx, c, fmt.Sprintf("r%d", i))
			if err != nil {
				return nil, err
			}
			names = append(names, c.name)
			res.samples[c.name] = append(res.samples[c.name], s)
			res.linger[c.name] = append(res.linger[c.name], linger)
			line += fmt.Sprintf("  %s %6.1f ms", c.name, float64(s.Wall)/float64(time.Millisecond))
		}
		res.orders = append(res.orders, names)
		fmt.Println(line)
	}
	return res, nil
}

// roundOrder is the order of round i (from 0): cs rotated left by i, and
// reversed in every other block of len(cs) rounds. Over 2*len(cs) rounds
// each contender runs in each position twice.
func roundOrder[T any](cs []T, i int) []T {
	n := len(cs)
	if n == 0 {
		return nil
	}
	out := make([]T, 0, n)
	out = append(out, cs[i%n:]...)
	out = append(out, cs[:i%n]...)
	if (i/n)%2 == 1 {
		slices.Reverse(out)
	}
	return out
}

// runOnce times one run of c, then, untimed, waits for whatever the run
// left running and syncs the file system. It returns the sample and how
// long the leftovers ran on after the command exited.
func runOnce(ctx context.Context, c *contender, tag string) (proc.Sample, time.Duration, error) {
	id := fmt.Sprintf("devbox-bench-%d-%s", os.Getpid(), tag)
	s, err := proc.Timed(c.command(ctx, id))
	linger, rerr := reapOrphans(lingerTimeout)
	// Flush this run's writes now, so that the kernel does not do it
	// during, and charge it to, the next run.
	syscall.Sync()
	if err != nil {
		return s, linger, fmt.Errorf("%s: %w", c.name, err)
	}
	if rerr != nil {
		return s, linger, fmt.Errorf("%s: %w", c.name, rerr)
	}
	return s, linger, nil
}
