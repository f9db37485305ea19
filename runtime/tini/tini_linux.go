// Package tini is `devbox run --init`: a minimal init that runs as a
// container's PID 1, starts the real program, forwards it the signals it
// gets, reaps every orphan that the kernel re-parents to it, and exits with
// the program's status. The devbox binary is bound into the container at
// Path and runs this when started under that name.
package tini

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Path is where the engine binds the devbox binary in a container.
const Path = "/dev/init"

// Main runs the init if this process was started as Path, and never
// returns then; otherwise it returns at once.
func Main() {
	if os.Args[0] != Path {
		return
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "devbox init: no command to run")
		return 125
	}
	// Catch everything first, so no signal is lost between start and Wait.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Its own process group, so a terminal's Ctrl-C reaches it and its
	// children through the forwarded signal, as under tini -g.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Foreground: isTerminal(), Ctty: 0}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "devbox init: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return 127
		}
		return 126
	}
	pid := cmd.Process.Pid
	for s := range sigs {
		switch s {
		case syscall.SIGURG:
			// The Go runtime's own preemption signal.
		case syscall.SIGCHLD:
			if code, done := reap(pid); done {
				return code
			}
		default:
			// To the whole group: the program and what it started.
			syscall.Kill(-pid, s.(syscall.Signal))
		}
	}
	return 0
}

// reap collects every exited child; done reports that the main program
// is among them, with its docker-style exit code.
func reap(main int) (code int, done bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return code, done
		}
		if pid != main {
			continue
		}
		done = true
		switch {
		case ws.Exited():
			code = ws.ExitStatus()
		case ws.Signaled():
			code = 128 + int(ws.Signal())
		}
	}
}

func isTerminal() bool {
	_, err := unix.IoctlGetTermios(0, unix.TCGETS)
	return err == nil
}
