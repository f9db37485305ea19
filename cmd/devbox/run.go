package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/devbox-dev/devbox/config"
	"github.com/devbox-dev/devbox/engine"
	"github.com/devbox-dev/devbox/engine/spec"
	"github.com/devbox-dev/devbox/progress"
	"github.com/devbox-dev/devbox/runtime/cgroups"
)

// runFlags are docker run's flags, as typed.
type runFlags struct {
	rm, interactive, tty, readOnly, init bool
	env, envFiles, volumes, tmpfs        []string
	publish                              []string
	workdir, user, entrypoint, name      string
	hostname, network, memory, cpus      string
	platform, pull                       string
	pidsLimit                            int64
	insecure                             []string
	entrypointSet                        bool
}

func newRunCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run [flags] IMAGE [COMMAND] [ARG...]",
		Short: "Run a command in a new container",
		Example: `  devbox run --rm busybox echo hello
  devbox run --rm -it alpine sh
  devbox run --rm -v $PWD:/src -w /src golang:1.23 go test ./...
  devbox run --rm -p 8080:80 nginx`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// `--entrypoint ""` clears the image's entrypoint; no flag keeps it.
			f.entrypointSet = cmd.Flags().Changed("entrypoint")
			return runContainer(cmd, f, args)
		},
	}
	// Flags after IMAGE belong to the container's command.
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	fl.BoolVar(&f.rm, "rm", false, "remove the container when it exits")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "keep stdin open and stream it to the container")
	fl.BoolVarP(&f.tty, "tty", "t", false, "give the container a terminal")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable, K=V (or K to take it from this environment)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "read environment variables from a file of K=V lines")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&f.user, "user", "u", "", "user to run as: NAME|UID[:GROUP|GID]")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "override the image's entrypoint")
	fl.StringVar(&f.name, "name", "", "name the container")
	fl.StringVar(&f.hostname, "hostname", "", "container host name")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind mount HOST:CONTAINER[:ro]")
	fl.StringArrayVarP(&f.publish, "publish", "p", nil, "publish a container's port on the host: [IP:]HOSTPORT:CTRPORT[/tcp] (IP defaults to 127.0.0.1)")
	fl.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs at PATH[:OPTIONS]")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the container's root filesystem read-only")
	fl.StringVar(&f.network, "network", "host", "network: host or none (bridged networking comes later)")
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit, like 512m or 2g")
	fl.StringVar(&f.cpus, "cpus", "", "number of CPUs, like 1.5")
	fl.Int64Var(&f.pidsLimit, "pids-limit", 0, "limit the number of processes")
	fl.BoolVar(&f.init, "init", false, "run devbox's minimal init as PID 1: it forwards signals and reaps zombies")
	fl.StringVar(&f.platform, "platform", "", "pull for this platform, OS/ARCH[/VARIANT]")
	fl.StringVar(&f.pull, "pull", "missing", "pull the image: missing, always or never")
	fl.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry HOST[:PORT] to reach over plain HTTP")
	return cmd
}

// runContainer is `devbox run`. Errors of devbox itself exit 125, as
// docker's do; the container's own exit code is devbox's.
func runContainer(cmd *cobra.Command, f *runFlags, args []string) error {
	o, err := f.options(args)
	if err != nil {
		return devboxErr(err)
	}
	e, err := newEngine(cmd.Context())
	if err != nil {
		return devboxErr(err)
	}
	defer e.Close()

	stdin, stdout, stderr := os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
	stdio := engine.IO{Stdout: stdout, Stderr: stderr}
	if f.interactive {
		stdio.Stdin = stdin
	}
	pr := progress.NewRenderer(stderr, isTerminal(stderr))
	stdio.Progress = pr.Update

	// Signals are forwarded to the container rather than cancelling it,
	// but a hang-up also ends the run: with no daemon, a container whose
	// terminal is gone has no one left to talk to.
	ctx, cancel := context.WithCancel(context.WithoutCancel(cmd.Context()))
	defer cancel()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	forward := make(chan os.Signal, 8)
	go func() {
		for s := range sigs {
			forward <- s
			if s == syscall.SIGHUP {
				time.Sleep(100 * time.Millisecond) // let it act on the hang-up first
				cancel()
			}
		}
	}()
	stdio.Signals = forward

	if f.tty {
		restore, err := attachTerminal(&o, &stdio, f.interactive)
		if err != nil {
			return devboxErr(err)
		}
		defer restore()
	}
	exit, err := e.Run(ctx, o, stdio)
	pr.Flush()
	if exit.OOMKilled {
		fmt.Fprintf(stderr, "devbox: the container ran out of memory (--memory %s) and was killed\n", f.memory)
		return exitCode(137)
	}
	if err != nil {
		fmt.Fprintf(stderr, "devbox: %v\n", err)
		if exit.Code == 0 {
			return exitCode(125)
		}
		return exitCode(exit.Code)
	}
	if exit.Code != 0 {
		return exitCode(exit.Code)
	}
	return nil
}

// devboxErr prints err as devbox's own failure: exit 125.
func devboxErr(err error) error {
	fmt.Fprintf(os.Stderr, "devbox: %v\n", err)
	return exitCode(125)
}

// options turns the flags into the engine's run options, checking what
// can be checked before anything is created.
func (f *runFlags) options(args []string) (engine.RunOptions, error) {
	o := engine.RunOptions{
		Image:    args[0],
		Name:     f.name,
		Remove:   f.rm,
		Pull:     engine.PullPolicy(f.pull),
		Platform: f.platform,
		Insecure: f.insecure,
		Init:     f.init,
		Spec: spec.Options{
			Cmd:       args[1:],
			Workdir:   f.workdir,
			User:      f.user,
			Hostname:  f.hostname,
			ReadOnly:  f.readOnly,
			Network:   f.network,
			Terminal:  f.tty,
			Tmpfs:     f.tmpfs,
			PidsLimit: f.pidsLimit,
		},
	}
	switch o.Pull {
	case engine.PullMissing, engine.PullAlways, engine.PullNever:
	default:
		return o, fmt.Errorf("invalid --pull %q: use missing, always or never", f.pull)
	}
	if f.entrypointSet {
		o.Spec.EntrypointSet = true
		if f.entrypoint != "" {
			o.Spec.Entrypoint = []string{f.entrypoint}
		}
	}
	var err error
	if o.Spec.Env, err = environment(f.envFiles, f.env); err != nil {
		return o, err
	}
	for _, p := range f.publish {
		m, err := engine.ParsePublish(p)
		if err != nil {
			return o, err
		}
		o.Publish = append(o.Publish, m)
	}
	for _, v := range f.volumes {
		b, err := parseBind(v)
		if err != nil {
			return o, err
		}
		o.Spec.Binds = append(o.Spec.Binds, b)
	}
	if f.memory != "" {
		if o.Spec.Memory, err = cgroups.ParseMemory(f.memory); err != nil {
			return o, fmt.Errorf("invalid --memory %q: %w", f.memory, err)
		}
	}
	if f.cpus != "" {
		if o.Spec.CPUQuota, o.Spec.CPUPeriod, err = cgroups.ParseCPUs(f.cpus); err != nil {
			return o, fmt.Errorf("invalid --cpus %q: %w", f.cpus, err)
		}
	}
	return o, nil
}

// environment merges --env-file files and -e flags, docker's way: a name
// without "=" takes its value from this process's environment, and is
// left out when unset here.
func environment(files, flags []string) ([]string, error) {
	var env []string
	add := func(kv string) {
		if strings.Contains(kv, "=") {
			env = append(env, kv)
		} else if v, ok := os.LookupEnv(kv); ok {
			env = append(env, kv+"="+v)
		}
	}
	for _, file := range files {
		p, err := config.ExpandPath(file)
		if err != nil {
			return nil, err
		}
		fh, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("--env-file: %w", err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			add(line)
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("--env-file %s: %w", file, err)
		}
	}
	for _, kv := range flags {
		if strings.HasPrefix(kv, "=") {
			return nil, fmt.Errorf("invalid -e %q: use NAME=VALUE or NAME", kv)
		}
		add(kv)
	}
	return env, nil
}

// parseBind parses -v HOST:CONTAINER[:ro|rw]. The host path must exist:
// docker would create it, which hides typos.
func parseBind(v string) (spec.Bind, error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return spec.Bind{}, fmt.Errorf("invalid -v %q: use HOST_PATH:CONTAINER_PATH[:ro]", v)
	}
	b := spec.Bind{Destination: parts[1]}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			b.ReadOnly = true
		case "rw":
		default:
			return b, fmt.Errorf("invalid -v %q: mode %q is not ro or rw", v, parts[2])
		}
	}
	if !strings.HasPrefix(parts[0], "/") && !strings.HasPrefix(parts[0], "~") && !strings.HasPrefix(parts[0], ".") {
		return b, fmt.Errorf("invalid -v %q: named volumes are not supported yet; give a host path (absolute, ./relative or ~/...)", v)
	}
	src, err := config.ExpandPath(parts[0])
	if err != nil {
		return b, err
	}
	if _, err := os.Stat(src); err != nil {
		return b, fmt.Errorf("bind mount source %s does not exist: create it first, or fix -v %s", src, v)
	}
	if !filepath.IsAbs(b.Destination) {
		return b, fmt.Errorf("invalid -v %q: the container path must be absolute", v)
	}
	b.Source = src
	return b, nil
}

// attachTerminal sets up -t: the container gets a pty of the host
// terminal's size; with -i the host terminal goes raw and is copied both
// ways, and window-size changes follow. The returned func waits for the
// container's output to drain and restores the terminal.
func attachTerminal(o *engine.RunOptions, stdio *engine.IO, interactive bool) (func(), error) {
	fd := int(os.Stdin.Fd())
	restore := func() {}
	if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
		o.Spec.ConsoleSize = &specs.Box{Width: uint(w), Height: uint(h)}
	}
	if interactive && term.IsTerminal(fd) {
		state, err := term.MakeRaw(fd)
		if err != nil {
			return nil, fmt.Errorf("set terminal raw: %w", err)
		}
		restore = func() { term.Restore(fd, state) }
	}
	out := stdio.Stdout
	stdio.Stdin, stdio.Stdout, stdio.Stderr = nil, nil, nil
	drained := make(chan struct{})
	stdio.Console = func(c engine.Console) {
		if interactive {
			go io.Copy(c, os.Stdin)
		}
		go followWindowSize(c)
		go func() {
			// Reading ends once the container's side closes.
			io.Copy(out, c)
			close(drained)
		}()
	}
	return func() {
		select {
		case <-drained:
		case <-time.After(2 * time.Second):
		}
		restore()
	}, nil
}

func followWindowSize(c engine.Console) {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	for range winch {
		w, h, err := term.GetSize(int(os.Stdout.Fd()))
		if err != nil {
			continue
		}
		if err := c.Resize(w, h); err != nil {
			return
		}
	}
}
