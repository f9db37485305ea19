// Package proc runs the programs a benchmark under bench/ measures and
// finds them on disk.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Sample is one timed run of a command.
type Sample struct {
	Wall time.Duration
	// MaxRSS is the peak resident set, in KiB, of the process and the
	// descendants it waited for (getrusage ru_maxrss is KiB on Linux).
	MaxRSS int64
}

// spawnEnv marks a copy of this program that Timed started to run one
// command; its value is the descriptor to write the Sample to.
const spawnEnv = "DEVBOX_BENCH_PROC_SPAWN"

// viaSpawner is set by Init: Timed runs commands through a spawner.
var viaSpawner bool

// Init makes Timed's peak RSS figures true; call it first thing in main.
//
// A child's ru_maxrss is at least the RSS of the process that forked it:
// Go starts children with vfork (and a fork copies the memory anyway), and
// at exec the kernel carries the forking memory's high-water mark over to
// the child. A benchmark with a large heap would read its own size as the
// peak of every small program it measures. After Init, Timed therefore
// runs each command through a fresh copy of this program, the spawner,
// which starts the command, times it and passes the figures back; what is
// carried over is then only the spawner's small start-up RSS (see Floor).
//
// When this process is such a spawner, Init runs its command and exits
// with the command's status.
func Init() {
	fd := os.Getenv(spawnEnv)
	if fd == "" {
		viaSpawner = true
		return
	}
	os.Exit(spawn(fd, os.Args[1:]))
}

// spawn is the spawner: args are the command's path and then its argv.
// It writes "WALL_NS MAXRSS_KIB" to descriptor fd.
func spawn(fd string, args []string) int {
	n, err := strconv.Atoi(fd)
	if err != nil || len(args) < 2 {
		fmt.Fprintf(os.Stderr, "proc spawner: bad invocation %q %q\n", fd, args)
		return 127
	}
	// Neither the command nor what it leaves running may hold the report
	// pipe open: the reader waits for it to close.
	syscall.CloseOnExec(n)
	report := os.NewFile(uintptr(n), "report")
	os.Unsetenv(spawnEnv)
	cmd := &exec.Cmd{Path: args[0], Args: args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	cmd.SysProcAttr = spawnAttr()
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, err)
		return 127
	}
	var maxRSS int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxRSS = ru.Maxrss
	}
	fmt.Fprintf(report, "%d %d\n", wall, maxRSS)
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

// Timed runs cmd and returns its wall time and peak RSS. Its output is
// kept only to explain a failure: a run that does not exit 0 is an error
// (wrapping an *exec.ExitError) carrying the command line and the tail of
// its stdout and stderr. See Init for how the RSS is measured.
func Timed(cmd *exec.Cmd) (Sample, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	argv := strings.Join(cmd.Args, " ")
	var (
		s   Sample
		err error
	)
	if viaSpawner {
		s, err = timedViaSpawner(cmd)
	} else {
		start := time.Now()
		err = cmd.Run()
		s = Sample{Wall: time.Since(start)}
		if cmd.ProcessState != nil {
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				s.MaxRSS = ru.Maxrss
			}
		}
	}
	if err != nil {
		return s, fmt.Errorf("%s: %w\n%s", argv, err, Tail(out.String(), 2000))
	}
	return s, nil
}

// timedViaSpawner runs cmd through a spawner and reads back its sample.
func timedViaSpawner(cmd *exec.Cmd) (Sample, error) {
	if cmd.Err != nil {
		return Sample{}, cmd.Err
	}
	self, err := os.Executable()
	if err != nil {
		return Sample{}, fmt.Errorf("find this program to run as spawner: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return Sample{}, err
	}
	defer r.Close()
	fd := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, w)
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(slices.Clone(env), fmt.Sprintf("%s=%d", spawnEnv, fd))
	cmd.Args = append([]string{os.Args[0], cmd.Path}, cmd.Args...)
	cmd.Path = self
	if err := cmd.Start(); err != nil {
		w.Close()
		return Sample{}, err
	}
	w.Close()
	report, readErr := io.ReadAll(r)
	err = cmd.Wait()
	var s Sample
	var wall int64
	if _, scanErr := fmt.Sscanf(string(report), "%d %d", &wall, &s.MaxRSS); scanErr != nil {
		return s, errors.Join(err, readErr, fmt.Errorf("spawner reported %q: %v", report, scanErr))
	}
	s.Wall = time.Duration(wall)
	return s, err
}

// Floor returns the peak RSS, in KiB, that Timed reports for a program
// that uses almost none (true(1)): no smaller figure can be told apart.
func Floor() (int64, error) {
	s, err := Timed(exec.Command("true"))
	return s.MaxRSS, err
}

// Binary returns path made absolute, or an error saying how to build or
// install it.
func Binary(path, build string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("%s not found (%s): %w", path, build, err)
	}
	return abs, nil
}

// EnvOr returns the environment variable key, or def when it is unset or
// empty.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Tail returns the last n bytes of s, marked with "..." when cut.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
