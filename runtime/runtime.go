package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Container describes one container run. Fill it in and pass it to [Run];
// while Run is running, [Container.Signal] and [Container.Pid] may be
// called from other goroutines. A Container is used for one Run only and
// must not be copied.
type Container struct {
	// ID names the container in errors.
	ID string

	// Spec is the OCI runtime spec. Run uses Process (Args, Env, Cwd, User,
	// Capabilities, Rlimits, NoNewPrivileges, OOMScoreAdj, Terminal,
	// ConsoleSize), Hostname, Domainname, Mounts, Root (Path, Readonly) and
	// Linux (Namespaces, Devices, MaskedPaths, ReadonlyPaths, Sysctl,
	// Seccomp, RootfsPropagation).
	//
	// A namespace listed in Linux.Namespaces without a Path is created
	// new, one with a Path is joined, and one not listed is shared with
	// the caller; the mount namespace is always new, and user and time
	// namespaces are not supported. Capabilities nil means none.
	// Hostname needs a UTS namespace of the container's own, and Sysctl
	// takes only namespaced keys whose namespace is the container's own.
	// Linux.Seccomp is installed through the hooks the package doc
	// describes. Run does not modify the spec.
	Spec *specs.Spec

	// Layers are the image's layer directories in overlayfs form, lowest
	// first. Run mounts their overlay, with UpperDir and WorkDir (same
	// filesystem, WorkDir empty), at Spec.Root.Path inside the container's
	// own mount namespace, so nothing is ever left mounted in the caller's
	// mount namespace, even if the caller is SIGKILLed. With UpperDir
	// empty, the container's writes go to a tmpfs in its mount namespace
	// and vanish with it (cheapest for --rm). With no Layers,
	// Spec.Root.Path itself is the rootfs, used in place.
	Layers            []string
	UpperDir, WorkDir string

	// Stdin is the container's standard input; nil means /dev/null. EOF on
	// Stdin closes the container's standard input. An *os.File is passed
	// straight through; any other reader is copied by a goroutine that may
	// stay blocked in Stdin.Read after Run returns, until that read ends.
	Stdin io.Reader
	// Stdout and Stderr receive the container's output; nil means
	// /dev/null. An *os.File is passed straight through; for any other
	// writer Run returns once all output is copied.
	Stdout, Stderr io.Writer

	// Console, when Spec.Process.Terminal is true, receives the master of
	// the pseudo-terminal whose slave is the container's stdin, stdout,
	// stderr and controlling terminal: a pty of the container's own
	// /dev/pts (so /dev/pts/0 inside, bound at /dev/console too), opened
	// by the init stage and passed to Run over a socket. It is called once
	// the program has started; from then on the caller owns master: it
	// copies between it
	// and the user (reads fail with EIO once every process holding the
	// slave has exited), resizes it (pty.Setsize) on SIGWINCH, and closes
	// it. When Console is nil, Run copies Stdin to the master and the
	// master to Stdout itself. Spec.Process.ConsoleSize, if set, is the
	// initial window size.
	Console func(master *os.File)

	// CgroupFD, if > 0, is an open cgroup2 directory the container's
	// process is created in (clone3 CLONE_INTO_CGROUP), so that everything
	// it does is accounted from the start. 0 and -1 mean none (fd 0 is
	// never a cgroup directory in practice, and this keeps the zero value
	// safe).
	CgroupFD int

	// Started, if set, runs right after the container's process exists,
	// with its pid as the caller sees it. Meanwhile the init stage does
	// the set-up that does not depend on cgroups (most mounts); it
	// creates the cgroup namespace, mounts cgroup filesystems and runs
	// the program only once Started has returned. Use it to add the
	// process to cgroup v1 hierarchies. An error kills the process and Run
	// returns it.
	Started func(pid int) error

	// Signals, if set, are forwarded to the container's process (as with
	// [Container.Signal]) from when its program starts until it exits, for
	// a caller that relays its own signals (signal.Notify). Run does not
	// close it; signals that arrive during set-up are delivered once the
	// program runs.
	Signals <-chan os.Signal

	mu      sync.Mutex
	proc    *os.Process
	exited  bool
	started bool
	pre     *spawned // the process Prestart created
}

// ExitStatus tells how a container's program ended.
type ExitStatus struct {
	// Code is what Docker reports: the exit code, or 128+signal when the
	// program was killed by a signal.
	Code int
	// Signal is the signal that killed the program, or 0.
	Signal syscall.Signal
}

// String describes the status like a shell would.
func (s ExitStatus) String() string {
	if s.Signal != 0 {
		return fmt.Sprintf("killed by signal %d (%v), exit code %d", int(s.Signal), s.Signal, s.Code)
	}
	return fmt.Sprintf("exit code %d", s.Code)
}

// ExecError reports that the user's program could not be started.
type ExecError struct {
	// Code is Docker's exit code for it: 127 when the program was not
	// found, 126 when it is not executable or permission was denied.
	Code int
	// Msg is one line naming the program, such as
	// `exec: "nope": executable file not found in $PATH`.
	Msg string
}

func (e *ExecError) Error() string { return e.Msg }

// SetupError reports that the container could not be set up: a step of
// the init stage failed, such as mounting /proc or pivoting root.
type SetupError struct {
	// ID is the container's ID.
	ID string
	// Step names what failed, such as "mount /proc".
	Step string
	// Msg describes the failure.
	Msg string
	// Errno is the system error, or 0; Unwrap returns it.
	Errno syscall.Errno
}

func (e *SetupError) Error() string {
	s := e.Step + ": " + e.Msg
	if e.ID != "" {
		s = "container " + e.ID + ": " + s
	}
	return s
}

// Unwrap returns the system error, if there is one.
func (e *SetupError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// ErrNotRunning is returned by [Container.Signal] when the container's
// process has not started yet or has already been reaped.
var ErrNotRunning = errors.New("container is not running")

// Signal sends sig to the container's process (PID 1 of its pid
// namespace). As for any PID 1, the kernel delivers a signal other than
// SIGKILL and SIGSTOP only if the program handles it. Signal is safe to
// call concurrently with [Run]; the signal goes through a pidfd, so it can
// never hit a recycled pid.
func (c *Container) Signal(sig os.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil || c.exited {
		return ErrNotRunning
	}
	if err := c.proc.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return ErrNotRunning
		}
		return fmt.Errorf("signal container %s: %w", c.ID, err)
	}
	return nil
}

// Pid returns the container's process id as the caller sees it (in the
// caller's pid namespace), or 0 when it is not running.
func (c *Container) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil || c.exited {
		return 0
	}
	return c.proc.Pid
}
