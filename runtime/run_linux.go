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

	specs "github.com/opencontainers/runtime-spec/specs-go"
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
// Started has returned, if Started is set. The init stage sends
// consoleByte with the pty master when there is a terminal, then an
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
	if c.pre != nil {
		return c.runPrestarted(ctx)
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

// Prestart creates the container's process ahead of [Run], so that the
// init stage (a fresh start of this binary: milliseconds) starts up while
// the caller still works out the container. The process waits for Run to
// send it its set-up; nothing is mounted and nothing runs before.
//
// namespaces are those Spec.Linux.Namespaces will list, none joined by
// path, and terminal is Spec.Process.Terminal to come; Stdin, Stdout and
// Stderr must be set already. Run checks that the spec agrees. CgroupFD is
// not used: the process exists before its cgroup, so the Started hook
// must add it to every hierarchy.
//
// After Prestart, call Run or [Container.Abort] from the same goroutine:
// the process's parent-death signal is tied to that goroutine's thread,
// which stays locked to it until then.
func (c *Container) Prestart(namespaces []specs.LinuxNamespace, terminal bool) error {
	c.mu.Lock()
	busy := c.started || c.pre != nil
	c.mu.Unlock()
	if busy {
		return c.errorf("Prestart after Prestart or Run")
	}
	flags, _, joins, err := c.cloneFlags(namespaces, true)
	if err != nil {
		return err
	}
	if len(joins) > 0 {
		return c.errorf("Prestart cannot join namespaces by path")
	}
	goruntime.LockOSThread()
	sp, err := c.spawn(flags, terminal, 0)
	if err != nil {
		goruntime.UnlockOSThread()
		return err
	}
	c.pre = sp
	return nil
}

// Abort kills and reaps the process [Container.Prestart] created, for a
// container that will not run after all. Abort does nothing when there is
// no such process, or once Run has been called.
func (c *Container) Abort() {
	c.mu.Lock()
	sp := c.pre
	if sp == nil || c.started {
		c.mu.Unlock()
		return
	}
	c.started = true
	c.mu.Unlock()
	c.killPrestarted(sp)
	goruntime.UnlockOSThread()
}

// killPrestarted kills and reaps the prestarted process sp.
func (c *Container) killPrestarted(sp *spawned) {
	sp.cmd.Process.Kill()
	sp.cmd.Wait()
	c.mu.Lock()
	c.exited = true
	c.mu.Unlock()
	sp.close()
}

// runPrestarted is Run for a prestarted process.
func (c *Container) runPrestarted(ctx context.Context) (ExitStatus, error) {
	defer goruntime.UnlockOSThread()
	sp := c.pre
	fail := func(err error) (ExitStatus, error) {
		c.killPrestarted(sp)
		return ExitStatus{}, err
	}
	cfg, flags, _, err := c.prepare()
	switch {
	case err != nil:
		return fail(err)
	case flags != sp.flags:
		return fail(c.errorf("the spec's namespaces are not those given to Prestart"))
	case c.Spec.Process.Terminal != sp.terminal:
		return fail(c.errorf("the spec's terminal setting is not the one given to Prestart"))
	}
	return c.feed(ctx, sp, cfg)
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
	sp, err := c.spawn(flags, c.Spec.Process.Terminal, c.CgroupFD)
	if err != nil {
		return ExitStatus{}, err
	}
	return c.feed(ctx, sp, cfg)
}

// spawned is an init stage that has been started and waits for its
// config.
type spawned struct {
	cmd      *exec.Cmd
	sock     *os.File // Run's end of the sync socket
	flags    uintptr  // the clone flags it was created with
	terminal bool
	stdinW   *os.File // the pipe Run copies a non-file Stdin into, or nil
}

// close releases what Run holds of an init stage.
func (sp *spawned) close() {
	sp.sock.Close()
	if sp.stdinW != nil {
		sp.stdinW.Close()
	}
}

// spawn starts the init stage in new namespaces (flags), and in the
// cgroup2 directory cgroupFD if > 0, on the calling thread, which must
// stay locked until it is reaped.
func (c *Container) spawn(flags uintptr, terminal bool, cgroupFD int) (*spawned, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, c.errorf("socketpair: %w", err)
	}
	sp := &spawned{sock: os.NewFile(uintptr(fds[0]), "sync"), flags: flags, terminal: terminal}
	childSock := os.NewFile(uintptr(fds[1]), "sync")

	attr := &syscall.SysProcAttr{
		Cloneflags: flags,
		Pdeathsig:  syscall.SIGKILL,
	}
	if cgroupFD > 0 {
		attr.UseCgroupFD = true
		attr.CgroupFD = cgroupFD
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
	sp.cmd = cmd
	closeAfterStart := []*os.File{childSock}
	if terminal {
		// The init stage opens the pty in the container and makes it its
		// controlling terminal, as the leader of a session of its own.
		attr.Setsid = true
	} else {
		switch in := c.Stdin.(type) {
		case nil:
		case *os.File:
			cmd.Stdin = in
		default:
			r, w, err := os.Pipe()
			if err != nil {
				childSock.Close()
				sp.sock.Close()
				return nil, c.errorf("stdin pipe: %w", err)
			}
			cmd.Stdin = r
			sp.stdinW = w
			closeAfterStart = append(closeAfterStart, r)
		}
		cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
	}
	err = cmd.Start()
	closeAll(closeAfterStart)
	if err != nil {
		sp.close()
		return nil, c.errorf("start init: %w", err)
	}
	c.mu.Lock()
	c.proc = cmd.Process
	c.mu.Unlock()
	return sp, nil
}

// feed sends the init stage its config, runs the Started hook, waits for
// the exec (or a report of what failed) and then for the exit.
func (c *Container) feed(ctx context.Context, sp *spawned, cfg *initConfig) (ExitStatus, error) {
	cmd, sock, stdinW := sp.cmd, sp.sock, sp.stdinW
	defer sock.Close()
	var master *os.File // the pty master the init stage sends
	defer func() {
		if master != nil {
			master.Close()
		}
	}()
	msg := cfg.encode()

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
	reply, passed, err := readReply(sock)
	if len(passed) > 0 {
		master = os.NewFile(uintptr(passed[0]), "pty master")
		closeAll(fdFiles(passed[1:]))
	}
	if err != nil {
		cmd.Process.Kill()
		return wait(c.errorf("read from init: %w", err))
	}
	if len(reply) > 0 && reply[0] == consoleByte {
		reply = reply[1:]
		if master == nil {
			cmd.Process.Kill()
			return wait(c.errorf("init stage sent no pty master"))
		}
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
	if sp.terminal && master == nil {
		cmd.Process.Kill()
		return wait(c.errorf("init stage sent no pty master"))
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
	return st, err
}

// readReply reads what the init stage sends until it closes the socket
// (at exec, or exit): bytes, and the descriptors that came with them.
func readReply(sock *os.File) (reply []byte, fds []int, err error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	buf := make([]byte, 512)
	oob := make([]byte, unix.CmsgSpace(4*4))
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, _, _, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				return false // a non-blocking socket: wait for more
			}
			if err != nil {
				rerr = err
				return true
			}
			if oobn > 0 {
				got, perr := parseRights(oob[:oobn])
				fds = append(fds, got...)
				if perr != nil {
					rerr = perr
					return true
				}
			}
			if n == 0 {
				return true
			}
			reply = append(reply, buf[:n]...)
		}
	})
	if err == nil {
		err = rerr
	}
	return reply, fds, err
}

// parseRights returns the descriptors of SCM_RIGHTS messages.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_RIGHTS {
			got, err := unix.ParseUnixRights(&m)
			if err != nil {
				return fds, err
			}
			fds = append(fds, got...)
		}
	}
	return fds, nil
}

func fdFiles(fds []int) []*os.File {
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "")
	}
	return files
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
