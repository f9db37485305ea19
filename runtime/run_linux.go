package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// initEnv marks a process as the runtime's init stage; Run sets it in the
// (otherwise empty) environment of the re-executed /proc/self/exe.
const initEnv = "_DEVBOX_RUNTIME_INIT"

// initArg0 is the init stage's argv[0], what ps shows while it sets up.
const initArg0 = "devbox-init"

// syncFD is the init stage's end of the socket to Run.
const syncFD = 3

// Bytes on the sync socket. Run sends the config (initConfig.encode: a
// 4-byte little-endian length, then the binary form), then goByte once
// Started has returned, if Started is set. The init stage sends an
// initReport when set-up fails, or execByte just before it execs the
// program, then an initReport only if the exec fails. The socket is
// close-on-exec in the init stage, so Run reads EOF once the program runs.
const (
	goByte   = 'g'
	execByte = 'X'
)

// maxConfig bounds the config the init stage accepts.
const maxConfig = 16 << 20

// Run starts the container, waits for it and returns how it ended.
//
// The container's program is PID 1 of its pid namespace and Run's direct
// child; no devbox process stays in the container. Cancelling ctx kills it
// with SIGKILL (Run then returns its status and an error wrapping ctx's),
// and so does the death of the process that called Run, even by SIGKILL
// (the parent-death signal). A mistake in the spec is reported before
// anything starts; a failure to set the container up is a *SetupError
// naming the step; a program that cannot be started is an *ExecError,
// with ExitStatus.Code 127 or 126. A program's non-zero exit is not an
// error: it is in the ExitStatus.
//
// Run is safe to call from many goroutines at once, once per Container.
// The process calling Run must call [Init] first thing in main.
func Run(ctx context.Context, c *Container) (ExitStatus, error) {
	if c == nil {
		return ExitStatus{}, errors.New("runtime: nil container")
	}
	c.mu.Lock()
	again := c.started
	c.started = true
	c.mu.Unlock()
	if again {
		return ExitStatus{}, c.errorf("Run called twice for one Container")
	}
	cfg, flags, joins, err := c.prepare()
	if err != nil {
		return ExitStatus{}, err
	}
	// The parent-death signal fires when the thread that forked the
	// container exits, not the process (go.dev/issue/27505), and Go ends
	// a thread when a goroutine locked to it returns. So the fork happens
	// on a thread locked to Run until the container is reaped, which no
	// other goroutine can lock and end meanwhile.
	if len(joins) == 0 {
		goruntime.LockOSThread()
		defer goruntime.UnlockOSThread()
		return c.run(ctx, cfg, flags)
	}
	// Namespaces given by path are joined by the forking thread, so the
	// child inherits them. That thread is then never unlocked: it ends with
	// its goroutine, after the container, so no other goroutine ever runs
	// in those namespaces.
	type result struct {
		st  ExitStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		for _, j := range joins {
			if err := setns(j); err != nil {
				done <- result{err: c.errorf("join %s namespace %s: %w", j.typ, j.path, err)}
				return
			}
		}
		st, err := c.run(ctx, cfg, flags)
		done <- result{st, err}
	}()
	r := <-done
	return r.st, r.err
}

func setns(j nsJoin) error {
	fd, err := unix.Open(j.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Setns(fd, j.flag)
}

// errorf makes an error naming the container.
func (c *Container) errorf(format string, args ...any) error {
	if c.ID != "" {
		format = "container " + c.ID + ": " + format
	} else {
		format = "container: " + format
	}
	return fmt.Errorf(format, args...)
}

// run starts the init stage, feeds it, waits for the exec and the exit.
func (c *Container) run(ctx context.Context, cfg *initConfig, flags uintptr) (ExitStatus, error) {
	if err := ctx.Err(); err != nil {
		return ExitStatus{}, c.errorf("not started: %w", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return ExitStatus{}, c.errorf("socketpair: %w", err)
	}
	sock := os.NewFile(uintptr(fds[0]), "sync")
	childSock := os.NewFile(uintptr(fds[1]), "sync")
	defer sock.Close()

	attr := &syscall.SysProcAttr{
		Cloneflags: flags,
		Pdeathsig:  syscall.SIGKILL,
	}
	if c.CgroupFD > 0 {
		attr.UseCgroupFD = true
		attr.CgroupFD = c.CgroupFD
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{initArg0},
		// The init stage lives for a few milliseconds: no garbage
		// collection. Two Ps, as with one the scheduler takes the P away
		// from the init stage's thread in every slow syscall (mount).
		Env:         []string{initEnv + "=1", "GOGC=off", "GOMAXPROCS=2"},
		ExtraFiles:  []*os.File{childSock},
		SysProcAttr: attr,
	}
	closeAfterStart := []*os.File{childSock}
	closeOnFailure := []*os.File{}
	var stdinW *os.File // the pipe Run copies a non-file Stdin into

	var master *os.File
	p := c.Spec.Process
	if p.Terminal {
		m, slave, err := pty.Open()
		if err != nil {
			childSock.Close()
			return ExitStatus{}, c.errorf("open pty: %w", err)
		}
		master = m
		closeOnFailure = append(closeOnFailure, master)
		if p.ConsoleSize != nil {
			if err := pty.Setsize(master, &pty.Winsize{Rows: uint16(p.ConsoleSize.Height), Cols: uint16(p.ConsoleSize.Width)}); err != nil {
				closeAll(append(closeAfterStart, slave, master))
				return ExitStatus{}, c.errorf("set console size: %w", err)
			}
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		attr.Setsid, attr.Setctty, attr.Ctty = true, true, 0
		cfg.Console = slave.Name()
		closeAfterStart = append(closeAfterStart, slave)
	} else {
		switch in := c.Stdin.(type) {
		case nil:
		case *os.File:
			cmd.Stdin = in
		default:
			r, w, err := os.Pipe()
			if err != nil {
				childSock.Close()
				return ExitStatus{}, c.errorf("stdin pipe: %w", err)
			}
			cmd.Stdin = r
			stdinW = w
			closeAfterStart = append(closeAfterStart, r)
			closeOnFailure = append(closeOnFailure, w)
		}
		cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
	}

	msg := cfg.encode()
	err = cmd.Start()
	closeAll(closeAfterStart)
	if err != nil {
		closeAll(closeOnFailure)
		return ExitStatus{}, c.errorf("start init: %w", err)
	}
	c.mu.Lock()
	c.proc = cmd.Process
	c.mu.Unlock()

	var killed atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		if cmd.Process.Kill() == nil {
			killed.Store(true)
		}
	})
	defer stop()

	// wait reaps the process; after a failure, it returns the failure.
	wait := func(fail error) (ExitStatus, error) {
		werr := cmd.Wait()
		c.mu.Lock()
		c.exited = true
		c.mu.Unlock()
		if stdinW != nil {
			stdinW.Close()
		}
		st := exitStatus(cmd.ProcessState)
		if fail != nil {
			if master != nil {
				master.Close()
			}
			return st, fail
		}
		if killed.Load() && st.Signal == syscall.SIGKILL {
			return st, c.errorf("killed: %w", context.Cause(ctx))
		}
		var exitErr *exec.ExitError
		if werr != nil && !errors.As(werr, &exitErr) {
			return st, c.errorf("%w", werr)
		}
		return st, nil
	}

	// A failed write means the init stage is gone; what it reported, and
	// its status, tell why.
	_, _ = sock.Write(msg)
	if c.Started != nil {
		if err := c.Started(cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			return wait(c.errorf("started hook: %w", err))
		}
		_, _ = sock.Write([]byte{goByte})
	}
	reply, err := io.ReadAll(sock)
	if err != nil {
		cmd.Process.Kill()
		return wait(c.errorf("read from init: %w", err))
	}
	if len(reply) == 0 {
		// The init stage never reported: killed, or Init not called.
		st, err := wait(nil)
		if err != nil {
			return st, err
		}
		return st, c.errorf("init stage exited (%v) before starting the program (is runtime.Init called first in main?)", st)
	}
	execing := reply[0] == execByte
	if execing {
		reply = reply[1:]
	}
	if len(reply) > 0 {
		r, err := decodeReport(reply)
		if err != nil {
			return wait(c.errorf("bad report from init: %q", reply))
		}
		if r.Exec != 0 {
			st, _ := wait(nil)
			if st.Code == 0 {
				st.Code = r.Exec
			}
			return st, &ExecError{Code: r.Exec, Msg: r.Msg}
		}
		return wait(&SetupError{ID: c.ID, Step: r.Step, Msg: r.Msg, Errno: r.Errno})
	}
	if !execing {
		return wait(c.errorf("init stage ended without a report"))
	}

	// The program runs.
	if c.Signals != nil {
		exited := make(chan struct{})
		defer close(exited)
		go func() {
			for {
				select {
				case sig, ok := <-c.Signals:
					if !ok {
						return
					}
					_ = c.Signal(sig) // ErrNotRunning once it has exited
				case <-exited:
					return
				}
			}
		}()
	}
	var copied sync.WaitGroup
	if stdinW != nil {
		go func() {
			_, _ = io.Copy(stdinW, c.Stdin)
			stdinW.Close()
		}()
	}
	if master != nil {
		if c.Console != nil {
			c.Console(master)
			master = nil // the caller owns it now
		} else {
			if c.Stdin != nil {
				go func() { _, _ = io.Copy(master, c.Stdin) }()
			}
			copied.Add(1)
			go func() {
				defer copied.Done()
				out := c.Stdout
				if out == nil {
					out = io.Discard
				}
				// Reading ends with EIO once the last slave is closed.
				_, _ = io.Copy(out, master)
			}()
		}
	}
	st, err := wait(nil)
	copied.Wait()
	if master != nil {
		master.Close()
	}
	return st, err
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// exitStatus converts a wait status to Docker's.
func exitStatus(ps *os.ProcessState) ExitStatus {
	if ps == nil {
		return ExitStatus{Code: -1}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ExitStatus{Code: ps.ExitCode()}
	}
	if ws.Signaled() {
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	}
	return ExitStatus{Code: ws.ExitStatus()}
}
