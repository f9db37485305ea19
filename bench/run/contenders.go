//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/devbox-dev/devbox/bench/internal/proc"
)

// imageRef is the image every contender runs.
const imageRef = "bench/busybox:1"

// contender is one way of running /bin/true in a container of the image.
type contender struct {
	name string
	// argv returns the command line of one run; id is unique to the run.
	argv func(id string) []string
	// env is added to this process's environment.
	env []string
	// version is the first line of the tool's version output.
	version string
}

// command returns the run with container id id.
func (c *contender) command(ctx context.Context, id string) *exec.Cmd {
	argv := c.argv(id)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), c.env...)
	return cmd
}

// commandLine is the shape of a run's command line, for the report.
func (c *contender) commandLine() string {
	return strings.Join(c.argv("ID"), " ")
}

// newDevbox runs `devbox run --rm IMAGE /bin/true` with a private
// DEVBOX_ROOT and DEVBOX_HOME under dir, adding `--network none` unless
// network is "host" (devbox's default).
func newDevbox(bin, dir, network string) *contender {
	return &contender{
		name: "devbox",
		argv: func(string) []string {
			args := []string{bin, "run", "--rm"}
			if network != "host" {
				args = append(args, "--network", network)
			}
			return append(args, imageRef, "/bin/true")
		},
		env: []string{
			"DEVBOX_ROOT=" + filepath.Join(dir, "root"),
			"DEVBOX_HOME=" + filepath.Join(dir, "home"),
		},
		version: firstLine(bin, "version"),
	}
}

// newRuntime runs `RUNTIME run --bundle DIR ID`: crun or runc on the
// bundle, in the foreground, which deletes the container when it exits.
func newRuntime(name, bin, bundleDir string) *contender {
	return &contender{
		name: name,
		argv: func(id string) []string {
			return []string{bin, "run", "--bundle", bundleDir, id}
		},
		version: firstLine(bin, "--version"),
	}
}

// podmanGlobal are podman's storage flags: a private store under dir (on
// disk, as /var/lib/containers is) and run state under runDir (a tmpfs, as
// /run is), so the bench neither reads nor changes the host's podman.
func podmanGlobal(bin, dir, runDir string) []string {
	return []string{bin,
		"--root", filepath.Join(dir, "root"),
		"--runroot", filepath.Join(runDir, "runroot"),
		"--tmpdir", filepath.Join(runDir, "tmp"),
	}
}

// newPodman runs `podman run --rm --network=NETWORK ... IMAGE /bin/true`
// with the flags this host needs: the cgroupfs manager (no systemd here)
// and explicit ulimits, since podman's defaults ask for more than the
// host allows.
func newPodman(bin, dir, runDir, network string) *contender {
	return &contender{
		name: "podman",
		argv: func(string) []string {
			return append(podmanGlobal(bin, dir, runDir),
				"run", "--rm", "--network="+network, "--cgroup-manager=cgroupfs",
				"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
				imageRef, "/bin/true")
		},
		version: firstLine(bin, "--version"),
	}
}

// firstLine returns the first line bin prints with args, or "?".
func firstLine(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		return "?"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// lookTool finds a contender's tool on PATH.
func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not installed (install it with: BENCH=1 bash scripts/deps.sh): %w", name, err)
	}
	return p, nil
}

// runSetup runs a setup step, untimed, and reaps what it leaves behind.
func runSetup(cmd *exec.Cmd) error {
	_, err := proc.Timed(cmd)
	if _, rerr := reapOrphans(lingerTimeout); err == nil {
		err = rerr
	}
	return err
}
