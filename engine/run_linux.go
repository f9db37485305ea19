package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/devbox-dev/devbox/engine/spec"
	"github.com/devbox-dev/devbox/images"
	"github.com/devbox-dev/devbox/images/layerfs"
	"github.com/devbox-dev/devbox/runtime"
	"github.com/devbox-dev/devbox/runtime/cgroups"
	"github.com/devbox-dev/devbox/runtime/seccomp"
	"github.com/devbox-dev/devbox/runtime/tini"
)

// Run creates the container, runs it to its end and records how it ended.
func (l *Local) Run(ctx context.Context, o RunOptions, stdio IO) (Exit, error) {
	c, sp, layers, err := l.create(ctx, o, stdio)
	if err != nil {
		return Exit{}, err
	}
	exit, err := l.start(ctx, c, sp, layers, stdio)
	if c.AutoRemove {
		if rerr := l.cs.remove(c.ID); rerr != nil && err == nil {
			err = rerr
		}
	}
	return exit, err
}

// create resolves the image (pulling it if the policy says so), records the
// container and builds its runtime spec.
func (l *Local) create(ctx context.Context, o RunOptions, stdio IO) (*Container, *specs.Spec, []string, error) {
	var c *Container
	var sp *specs.Spec
	var layers []string
	err := l.withStore(func(s *images.Store) error {
		img, err := l.resolve(ctx, s, o, stdio)
		if err != nil {
			return err
		}
		cfg, err := s.Config(img)
		if err != nil {
			return err
		}
		layers = s.LayerDirs(img)
		c = &Container{
			Name: o.Name, Image: o.Image, ImageID: img.ID,
			Created: time.Now().UTC(), State: StateCreated, AutoRemove: o.Remove,
		}
		// The record exists before the store is released, so rmi sees the
		// image is in use.
		if err := l.cs.create(c); err != nil {
			return err
		}
		dir := l.cs.path(c.ID)
		sp, err = spec.Generate(c.ID, cfg, o.Spec, layerfs.New(layers), spec.FilesIn(dir), filepath.Join(dir, "rootfs"))
		if err == nil {
			_, err = spec.WriteFiles(dir, sp.Hostname, o.Spec.Network)
		}
		if err == nil {
			sp.Linux.Seccomp, err = seccomp.Default(sp.Process.Capabilities.Bounding)
		}
		if err == nil && o.Init {
			err = withInit(sp)
		}
		if err == nil {
			err = mkdirs(dir, "rootfs")
		}
		if err == nil && !o.Remove {
			err = mkdirs(dir, "upper", "work")
		}
		if err != nil {
			l.cs.remove(c.ID)
			return err
		}
		c.Command = sp.Process.Args
		c.Cgroup = sp.Linux.CgroupsPath
		return nil
	})
	return c, sp, layers, err
}

func mkdirs(dir string, names ...string) error {
	for _, n := range names {
		if err := os.Mkdir(filepath.Join(dir, n), 0o700); err != nil {
			return fmt.Errorf("create container: %w", err)
		}
	}
	return nil
}

// resolve finds the image in the store, pulling it as the policy says.
func (l *Local) resolve(ctx context.Context, s *images.Store, o RunOptions, stdio IO) (*images.Image, error) {
	if o.Pull != PullAlways {
		img, err := s.Get(o.Image)
		if err == nil || !errors.Is(err, images.ErrNotFound) || o.Pull == PullNever {
			if errors.Is(err, images.ErrNotFound) {
				return nil, fmt.Errorf("image %s is not in the store and --pull=never: pull it first (devbox pull %s)", o.Image, o.Image)
			}
			return img, err
		}
	}
	plat, err := platformPtr(o.Platform)
	if err != nil {
		return nil, fmt.Errorf("invalid --platform %q: use OS/ARCH[/VARIANT], like linux/arm64", o.Platform)
	}
	return s.Pull(ctx, o.Image, images.PullOptions{Platform: plat, Insecure: o.Insecure, Progress: stdio.Progress})
}

// start runs a created container in its cgroup and records its end.
func (l *Local) start(ctx context.Context, c *Container, sp *specs.Spec, layers []string, stdio IO) (Exit, error) {
	cg, err := cgroups.New(sp.Linux.CgroupsPath, sp.Linux.Resources)
	if err != nil {
		return l.finish(c, Exit{Code: 125}, "", fmt.Errorf("cgroup: %w", err))
	}
	defer func() {
		cg.Close()
		cg.Kill()
		cg.Delete()
	}()
	c.State, c.Started = StateRunning, time.Now().UTC()
	c.Owner = os.Getpid()
	c.OwnerStart = processStart(c.Owner)
	if err := l.cs.save(c); err != nil {
		return Exit{Code: 125}, err
	}
	dir := l.cs.path(c.ID)
	rc := &runtime.Container{
		ID:       c.ID,
		Spec:     sp,
		Layers:   layers,
		UpperDir: filepath.Join(dir, "upper"),
		WorkDir:  filepath.Join(dir, "work"),
		Stdin:    stdio.Stdin,
		Stdout:   stdio.Stdout,
		Stderr:   stdio.Stderr,
		Console:  stdio.Console,
		CgroupFD: cg.FD(),
		Started:  cg.Add,
	}
	if c.AutoRemove {
		// Writes of a --rm container die with it: a tmpfs upper dir in
		// its mount namespace costs nothing to set up or remove.
		rc.UpperDir, rc.WorkDir = "", ""
	}
	stop := forwardSignals(rc, stdio.Signals)
	st, err := runtime.Run(ctx, rc)
	stop()
	exit := Exit{Code: st.Code}
	if oom, _ := cg.OOMKilled(); oom {
		exit.OOMKilled = true
	}
	var ee *runtime.ExecError
	switch {
	case errors.As(err, &ee):
		exit.Code = ee.Code
	case err != nil:
		exit.Code = 125
	}
	return l.finish(c, exit, "", err)
}

// finish records how a container ended.
func (l *Local) finish(c *Container, exit Exit, reason string, err error) (Exit, error) {
	c.State, c.Finished = StateExited, time.Now().UTC()
	c.ExitCode, c.OOMKilled, c.Reason = exit.Code, exit.OOMKilled, reason
	c.Owner, c.OwnerStart = 0, 0
	if serr := l.cs.save(c); serr != nil && err == nil {
		err = serr
	}
	return exit, err
}

// RemoveContainer removes a stopped container, or with force a running one
// (its devbox process is killed, which kills the container with it).
func (l *Local) RemoveContainer(ctx context.Context, ref string, force bool) (*Container, error) {
	c, err := l.cs.find(ref)
	if err != nil {
		return nil, err
	}
	if c.State == StateRunning && ownerAlive(c) {
		if !force {
			return nil, fmt.Errorf("container %s is running: stop it first, or use devbox rm -f", c.Name)
		}
		if p, err := os.FindProcess(c.Owner); err == nil {
			p.Kill()
		}
		l.cleanup(c, "removed while running")
	}
	return c, l.cs.remove(c.ID)
}

// reap finds containers whose devbox process died without recording their
// end (SIGKILL, a crash): their processes died with it (parent-death
// signal), so what is left is their cgroup and record.
func (l *Local) reap() {
	all, err := l.cs.list()
	if err != nil {
		return
	}
	for _, c := range all {
		if c.State != StateRunning || ownerAlive(c) {
			continue
		}
		l.cleanup(c, "devbox was killed")
		if c.AutoRemove {
			l.cs.remove(c.ID)
		}
	}
}

// cleanup kills what is left of c and records it as exited.
func (l *Local) cleanup(c *Container, reason string) {
	if c.Cgroup != "" {
		if cg, err := cgroups.Load(c.Cgroup); err == nil {
			cg.Kill()
			cg.Delete()
		}
	}
	l.finish(c, Exit{Code: 137}, reason, nil)
}

// forwardSignals sends what arrives on sigs to the container until the
// returned stop is called.
func forwardSignals(rc *runtime.Container, sigs <-chan os.Signal) (stop func()) {
	if sigs == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				rc.Signal(s)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// withInit makes devbox's own init (package tini) the container's PID 1:
// this very binary, which is static, bound read-only at tini.Path.
func withInit(sp *specs.Spec) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("--init: find the devbox binary: %w", err)
	}
	sp.Mounts = append(sp.Mounts, specs.Mount{Destination: tini.Path, Type: "bind", Source: exe, Options: []string{"bind", "ro", "nosuid", "nodev"}})
	sp.Process.Args = append([]string{tini.Path, "--"}, sp.Process.Args...)
	return nil
}
