package runtime

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/devbox-dev/devbox/internal/fdio"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func init() {
	// In the init stage, keep the main goroutine on the main thread (the
	// one fork set the parent-death signal on) through main and Init.
	if os.Getenv(initEnv) != "" {
		goruntime.LockOSThread()
	}
}

// Init must be called first thing in main of every binary that calls
// [Run] (and in TestMain of a test binary). When the process is the
// runtime's init stage (Run re-executes /proc/self/exe with a marker in the
// environment), Init sets the container up in its new namespaces and execs
// the user's program, never returning. Otherwise it returns at once: it
// costs one getenv.
func Init() {
	if os.Getenv(initEnv) == "" {
		return
	}
	goruntime.LockOSThread()
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = &stepError{step: "init", err: fmt.Errorf("panic: %v", r)}
			}
		}()
		return initStage()
	}()
	os.Exit(report(err))
}

// stepError is a failed set-up step in the init stage.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// step wraps err, if not nil, as a failure of the named step.
func step(name string, err error) error {
	if err == nil {
		return nil
	}
	return &stepError{step: name, err: err}
}

// report sends err to Run and returns the exit code for the init stage.
func report(err error) int {
	var r initReport
	code := 1
	var execErr *ExecError
	var se *stepError
	switch {
	case errors.As(err, &execErr):
		r.Msg, r.Exec, code = execErr.Msg, execErr.Code, execErr.Code
	case errors.As(err, &se):
		r.Step, r.Msg = se.step, se.err.Error()
	default:
		r.Step, r.Msg = "init", fmt.Sprint(err)
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		r.Errno = errno
	}
	fdio.WriteAll(syncFD, r.encode())
	return code
}

func readConfig() (*initConfig, error) {
	var hdr [4]byte
	if err := fdio.ReadFull(syncFD, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n > maxConfig {
		return nil, fmt.Errorf("config of %d bytes is too large", n)
	}
	buf := make([]byte, n)
	if err := fdio.ReadFull(syncFD, buf); err != nil {
		return nil, err
	}
	return decodeConfig(buf)
}

// initStage runs in the new namespaces: it sets the container up and execs
// its program. It returns only on failure.
func initStage() error {
	if _, err := unix.FcntlInt(syncFD, unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return step("sync socket", err)
	}
	cfg, err := readConfig()
	if err != nil {
		return step("read config", err)
	}
	unix.Umask(0)
	if err := setupRootfs(cfg, func() error { return started(cfg) }); err != nil {
		return err
	}

	for i := 0; i+1 < len(cfg.Sysctl); i += 2 {
		if err := writeSysctl(cfg.Sysctl[i], cfg.Sysctl[i+1]); err != nil {
			return step("sysctl "+cfg.Sysctl[i], err)
		}
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return step("set hostname", err)
		}
	}
	if cfg.Domainname != "" {
		if err := unix.Setdomainname([]byte(cfg.Domainname)); err != nil {
			return step("set domainname", err)
		}
	}
	if cfg.SetOOMScoreAdj {
		err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(cfg.OOMScoreAdj)), 0)
		if err != nil {
			return step("set oom_score_adj", err)
		}
	}
	if err := makeCwd(cfg.Cwd, int(cfg.UID), int(cfg.GID)); err != nil {
		return step("create working directory "+cfg.Cwd, err)
	}
	if err := unix.Chdir(cfg.Cwd); err != nil {
		return step("chdir to "+cfg.Cwd, err)
	}
	for _, p := range cfg.MaskedPaths {
		if err := maskPath(p); err != nil {
			return step("mask "+p, err)
		}
	}
	for _, p := range cfg.ReadonlyPaths {
		if err := readonlyPath(p); err != nil {
			return step("make "+p+" read-only", err)
		}
	}
	if cfg.RootReadonly {
		if err := remountReadonly("/"); err != nil {
			return step("make root read-only", err)
		}
	}
	for _, rl := range cfg.Rlimits {
		// Package syscall, so that Go's exec does not put back its saved
		// RLIMIT_NOFILE over it.
		if err := syscall.Setrlimit(rl.Resource, &syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}); err != nil {
			return step(fmt.Sprintf("set rlimit %d", rl.Resource), err)
		}
	}
	unix.Umask(int(cfg.Umask))

	// Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it
	// while the init stage still has it. With it, as late as possible.
	seccompEarly := !cfg.NoNewPrivileges
	if seccompEarly {
		if err := loadSeccomp(cfg); err != nil {
			return err
		}
	}
	if err := setCredentials(cfg); err != nil {
		return err
	}
	if cfg.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return step("set no_new_privs", err)
		}
	}
	// Changing credentials cleared the parent-death signal: set it again,
	// then make sure that the parent did not die in between.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return step("set parent-death signal", err)
	}
	if parentGone() {
		return step("parent-death check", errors.New("the process that called Run has exited"))
	}

	fdio.WriteAll(syncFD, []byte{execByte})
	prog, err := lookPath(cfg.Args[0], cfg.Env)
	if err != nil {
		return err
	}
	if !seccompEarly {
		if err := loadSeccomp(cfg); err != nil {
			return err
		}
	}
	err = syscall.Exec(prog, cfg.Args, cfg.Env)
	return execFailure(cfg.Args[0], err)
}

// started waits, if Run asked for it, until the Started hook has put the
// process into its cgroups (v1 ones take a while: a cgroup.procs write
// waits for an RCU grace period), then creates the cgroup namespace if
// the init stage is to, so that it is rooted at those cgroups. Set-up that
// does not depend on the cgroups runs before it, meanwhile.
func started(cfg *initConfig) error {
	if cfg.Wait {
		var b [1]byte
		if err := fdio.ReadFull(syncFD, b[:]); err != nil || b[0] != goByte {
			return step("wait for start", fmt.Errorf("Run gave up (%v)", err))
		}
	}
	if cfg.UnshareCgroup {
		// Per thread: this is the thread that execs.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return step("create cgroup namespace", err)
		}
	}
	return nil
}

// loadSeccomp installs the container's seccomp filter, if it has one, on
// the calling thread.
func loadSeccomp(cfg *initConfig) error {
	switch {
	case len(cfg.SeccompProg) > 0:
		if seccompLoad == nil {
			return step("seccomp", errors.New("no seccomp loader in this binary"))
		}
		return step("seccomp", seccompLoad(cfg.SeccompProg, cfg.SeccompFlags))
	case len(cfg.SeccompSpec) > 0:
		if seccompHook == nil {
			return step("seccomp", errors.New("no seccomp hook in this binary"))
		}
		var s specs.LinuxSeccomp
		if err := json.Unmarshal(cfg.SeccompSpec, &s); err != nil {
			return step("seccomp", err)
		}
		return step("seccomp", seccompHook(&s))
	}
	return nil
}

// parentGone tells whether Run's end of the sync socket is closed, which
// happens when the process that called Run died.
func parentGone() bool {
	fds := []unix.PollFd{{Fd: syncFD, Events: unix.POLLRDHUP}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
}

// lookPath finds the program in the container, as execvp would: a name
// with a slash is used as is, others are searched for in the PATH of env
// (or DefaultPath).
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	if file == "" {
		return "", &ExecError{Code: 127, Msg: `exec: "": executable file not found in $PATH`}
	}
	pathEnv := DefaultPath
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			pathEnv = v
			break
		}
	}
	denied := false
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, file)
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
			continue
		}
		if unix.Access(p, unix.X_OK) != nil {
			denied = true
			continue
		}
		if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, ".") {
			p = "./" + p
		}
		return p, nil
	}
	if denied {
		return "", &ExecError{Code: 126, Msg: fmt.Sprintf("exec: %q: permission denied", file)}
	}
	return "", &ExecError{Code: 127, Msg: fmt.Sprintf("exec: %q: executable file not found in $PATH", file)}
}

// execFailure converts an exec error to Docker's exit codes: 127 when
// there is no such program (or interpreter), 126 when it cannot run.
func execFailure(name string, err error) error {
	code := 126
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		code = 127
	}
	return &ExecError{Code: code, Msg: fmt.Sprintf("exec: %q: %v", name, err)}
}

// makeCwd creates the working directory and its missing parents, owned by
// the container's user.
func makeCwd(dir string, uid, gid int) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return unix.ENOTDIR
		}
		return nil
	}
	cur := "/"
	for _, part := range splitPath(path.Clean(dir)) {
		cur = path.Join(cur, part)
		err := unix.Mkdir(cur, 0o755)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return err
		}
		if err := unix.Lchown(cur, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// writeSysctl sets a sysctl (checked by Run to be namespaced).
func writeSysctl(key, value string) error {
	f, err := os.OpenFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

var rlimitTypes = map[string]int{
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
}
