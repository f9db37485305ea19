package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/creack/pty"

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
	rc := &runtime.Container{
		Stdin:  stdio.Stdin,
		Stdout: stdio.Stdout,
		Stderr: stdio.Stderr,
	}
	if stdio.Console != nil {
		rc.Console = func(master *os.File) { stdio.Console(ptyConsole{master}) }
	}
	// With the host's network a container's port is the host's own:
	// only a different host port needs forwarding.
	var fwd []PortMapping
	for _, p := range o.Publish {
		if p.HostPort != p.ContainerPort {
			fwd = append(fwd, p)
		}
	}
	f, err := Publish(ctx, fwd, func(ctx context.Context, port int) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	})
	if err != nil {
		return Exit{}, err
	}
	defer f.Close()
	prestart(rc, o)
	id := newID()
	var cj *cgroupJob
	// Once the image is there (not before a pull, which may take long and
	// be interrupted), the cgroup is made while the rest is.
	c, sp, layers, err := l.create(ctx, o, stdio, id, func() { cj = startCgroup(id, o.Spec, rc.Pid()) })
	if err != nil {
		rc.Abort()
		if cj != nil {
			cj.discard()
		}
		return Exit{}, err
	}
	exit, err := l.start(ctx, c, sp, layers, rc, cj, stdio.Signals)
	if c.AutoRemove {
		if rerr := l.cs.remove(c.ID); rerr != nil && err == nil {
			err = rerr
		}
	}
	return exit, err
}

// create resolves the image (pulling it if the policy says so), calls
// resolved, records the container as id and builds its runtime spec.
func (l *Local) create(ctx context.Context, o RunOptions, stdio IO, id string, resolved func()) (*Container, *specs.Spec, []string, error) {
	var c *Container
	var sp *specs.Spec
	var layers []string
	err := l.withStore(func(s *images.Store) error {
		img, err := l.resolve(ctx, s, o, stdio)
		if err != nil {
			return err
		}
		resolved()
		cfg, err := s.Config(img)
		if err != nil {
			return err
		}
		layers = s.LayerDirs(img)
		c = &Container{
			ID: id, Name: o.Name, Image: o.Image, ImageID: img.ID,
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

// resolve finds the image in the store, pulling it as the policy says. An
// image stored for another platform than --platform asks for is not it:
// it is pulled again, or with --pull=never refused.
func (l *Local) resolve(ctx context.Context, s *images.Store, o RunOptions, stdio IO) (*images.Image, error) {
	plat, err := platformPtr(o.Platform)
	if err != nil {
		return nil, fmt.Errorf("invalid --platform %q: use OS/ARCH[/VARIANT], like linux/arm64", o.Platform)
	}
	if o.Pull != PullAlways {
		img, err := s.Get(o.Image)
		switch {
		case errors.Is(err, images.ErrNotFound) && o.Pull == PullNever:
			return nil, fmt.Errorf("image %s is not in the store and --pull=never: pull it first (devbox pull %s)", o.Image, o.Image)
		case err != nil && !errors.Is(err, images.ErrNotFound):
			return nil, err
		case err == nil && plat != nil && !img.MatchesPlatform(*plat) && o.Pull == PullNever:
			return nil, fmt.Errorf("image %s is stored for %s, not %s as --platform asks, and --pull=never: pull it first (devbox pull --platform %s %s)", o.Image, img.Platform, o.Platform, o.Platform, o.Image)
		case err == nil && (plat == nil || img.MatchesPlatform(*plat)):
			return img, nil
		}
	}
	return s.Pull(ctx, o.Image, images.PullOptions{
		Platform: plat, Insecure: o.Insecure, Progress: stdio.Progress,
		Keychain: o.Keychain, Transport: o.Transport,
	})
}

// prestart creates the container's process (runtime's init stage) right
// away, so that it starts up while the image is resolved and the spec,
// files and cgroups are made, rather than after. It does where the host
// has cgroup v1 controllers: their cgroups must be joined by a write once
// the process exists in any case, and the same write puts it into its
// cgroup2 directory. On a pure cgroup2 host the process is better created
// later, straight into its cgroup (CLONE_INTO_CGROUP), which needs no such
// write: writes to cgroup.procs wait for an RCU grace period. Where it does
// not (or cannot), runtime.Run creates the process.
func prestart(rc *runtime.Container, o RunOptions) {
	if l, err := cgroups.Detect(); err != nil || l == cgroups.V2 {
		return
	}
	if ns, err := spec.Namespaces(o.Spec); err == nil { // else create reports it
		rc.Prestart(ns, o.Spec.Terminal)
	}
}

// cgroupJob makes a container's cgroup, and adds its prestarted process
// to it, while the rest of the container is made: on a cgroup v1 host,
// joining the cgroups waits for an RCU grace period, milliseconds that
// are best spent meanwhile.
type cgroupJob struct {
	pid  int
	done chan struct{} // closed once cg and err are set
	cg   *cgroups.Cgroup
	err  error
	// added is closed once addErr, the result of adding pid (if > 0), is
	// set.
	added  chan struct{}
	addErr error
}

// startCgroup starts making the cgroup of container id, run with o, and
// adding process pid (if > 0) to it.
func startCgroup(id string, o spec.Options, pid int) *cgroupJob {
	j := &cgroupJob{pid: pid, done: make(chan struct{}), added: make(chan struct{})}
	go func() {
		defer close(j.added)
		res, err := spec.Resources(o)
		if err == nil {
			j.cg, err = cgroups.New(spec.CgroupsPath(id), res)
		}
		j.err = err
		close(j.done)
		if err == nil && pid > 0 {
			j.addErr = j.cg.Add(pid)
		}
	}()
	return j
}

// wait returns the cgroup, once made.
func (j *cgroupJob) wait() (*cgroups.Cgroup, error) {
	<-j.done
	return j.cg, j.err
}

// waitAdded returns the result of adding the process, once done.
func (j *cgroupJob) waitAdded() error {
	<-j.added
	return j.addErr
}

// discard removes the cgroup (once its process, if any, is killed).
func (j *cgroupJob) discard() {
	if cg, err := j.wait(); err == nil {
		j.waitAdded()
		cg.Close()
		cg.Kill()
		cg.Delete()
	}
}

// start runs a created container in its cgroup and records its end. rc
// has its stdio, and its process if prestarted, which cj adds to the
// cgroup.
func (l *Local) start(ctx context.Context, c *Container, sp *specs.Spec, layers []string, rc *runtime.Container, cj *cgroupJob, signals <-chan os.Signal) (Exit, error) {
	if _, err := cj.wait(); err != nil {
		rc.Abort()
		return l.finish(c, Exit{Code: 125}, "", fmt.Errorf("cgroup: %w", err))
	}
	defer func() {
		rc.Abort() // if it never got to run
		cj.discard()
	}()
	cg := cj.cg
	c.State, c.Started = StateRunning, time.Now().UTC()
	c.Owner = os.Getpid()
	c.OwnerStart = processStart(c.Owner)
	if err := l.cs.save(c); err != nil {
		return Exit{Code: 125}, err
	}
	dir := l.cs.path(c.ID)
	rc.ID, rc.Spec, rc.Layers = c.ID, sp, layers
	rc.UpperDir, rc.WorkDir = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	if cj.pid > 0 {
		rc.Started = func(int) error { return cj.waitAdded() }
	} else {
		rc.CgroupFD = cg.FD()
		rc.Started = cg.Add
	}
	if c.AutoRemove {
		// Writes of a --rm container die with it: a tmpfs upper dir in
		// its mount namespace costs nothing to set up or remove.
		rc.UpperDir, rc.WorkDir = "", ""
	}
	stop := forwardSignals(rc, signals)
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

// finish records how a container ended. A --rm container's record is
// not written: every caller removes it next (and should that fail, the
// record of a running container whose devbox is gone gets reaped).
func (l *Local) finish(c *Container, exit Exit, reason string, err error) (Exit, error) {
	c.State, c.Finished = StateExited, time.Now().UTC()
	c.ExitCode, c.OOMKilled, c.Reason = exit.Code, exit.OOMKilled, reason
	c.Owner, c.OwnerStart = 0, 0
	if c.AutoRemove {
		return exit, err
	}
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

// Recover records every container still marked running as exited, with
// reason. The guest agent calls it once at boot, when none can be running:
// their owner there is PID 1, which always lives, so the owner check
// cannot see that the VM restarted under them.
func (l *Local) Recover(reason string) {
	all, err := l.cs.list()
	if err != nil {
		return
	}
	for _, c := range all {
		if c.State != StateRunning {
			continue
		}
		l.cleanup(c, reason)
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

// ptyConsole is a container's terminal on this machine: the pty master.
type ptyConsole struct{ *os.File }

func (c ptyConsole) Resize(cols, rows int) error {
	return pty.Setsize(c.File, &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)})
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
