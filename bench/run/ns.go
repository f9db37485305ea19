//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/devbox-dev/devbox/internal/mountinfo"

	"golang.org/x/sys/unix"
)

// childEnv marks the re-executed bench; its value is the mount namespace
// of the process that started it, which the child must not be in.
const childEnv = "DEVBOX_BENCH_RUN_PARENT_MNTNS"

// unifiedControllers is where a hybrid cgroup host (v1 controllers plus
// a cgroup2 tree) lists the controllers of its cgroup2 root.
const unifiedControllers = "/sys/fs/cgroup/unified/cgroup.controllers"

// lingerTimeout bounds the wait for what a run leaves behind.
const lingerTimeout = 30 * time.Second

// reexec runs this program again, with the same arguments, in a new mount
// namespace, and returns its exit status. It forwards SIGINT and SIGTERM.
func reexec() int {
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), childEnv+"="+ns)
	// Go's fork unshares the mount namespace and then makes / private
	// (MS_REC|MS_PRIVATE) before exec, as unshare(1) does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: re-exec in a new mount namespace:", err)
		return 1
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	signal.Stop(sigs)
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return max(exit.ExitCode(), 1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// privateNamespace readies the mount namespace reexec made: it checks it
// is not the parent's, makes / private again (harmless, and true even if
// Go stops doing it), and on a hybrid cgroup host bind-mounts an empty file
// from workDir over unifiedControllers, since Debian's crun refuses a
// hybrid host whose cgroup2 root lists controllers. It returns what that
// file listed ("" when nothing was hidden). It also makes this process a
// child subreaper, so what a contender leaves running is reparented here
// and reapOrphans can wait for it.
func privateNamespace(workDir string) (hidden string, err error) {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return "", err
	}
	if self == os.Getenv(childEnv) {
		return "", fmt.Errorf("still in the parent's mount namespace %s; refusing to change the host's mounts", self)
	}
	os.Unsetenv(childEnv) // not for the contenders
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("make / private: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return "", fmt.Errorf("become child subreaper: %w", err)
	}
	b, err := os.ReadFile(unifiedControllers)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil // unified or pure v1 host: crun accepts it as it is
	}
	if err != nil {
		return "", err
	}
	hidden = strings.TrimSpace(string(b))
	if hidden == "" {
		return "", nil
	}
	empty := filepath.Join(workDir, "empty-cgroup.controllers")
	if err := os.WriteFile(empty, nil, 0o444); err != nil {
		return "", err
	}
	if err := unix.Mount(empty, unifiedControllers, "", unix.MS_BIND, ""); err != nil {
		return "", fmt.Errorf("bind %s over %s: %w", empty, unifiedControllers, err)
	}
	return hidden, nil
}

// mountTmpfs mounts a fresh tmpfs at dir, in this namespace only.
func mountTmpfs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// unmountUnder detaches every mount at or below dir in this namespace,
// deepest first, so that dir can be removed.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Field 5 is the mount point, with spaces and such octal-escaped.
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := mountinfo.Unescape(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range slices.Compact(points) {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// reapOrphans waits, polling, until this process has no children left:
// with the subreaper flag set, these are what a finished contender left
// running (podman's conmon and its cleanup process, say). It returns how
// long that took, and an error if something still runs after timeout.
// Call it only when no child of ours is meant to be running.
func reapOrphans(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.ECHILD):
			return time.Since(start), nil
		case errors.Is(err, unix.EINTR) || pid > 0:
			continue
		case err != nil:
			return time.Since(start), fmt.Errorf("wait for leftover processes: %w", err)
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("processes left by the run still running after %v", timeout)
		}
		time.Sleep(200 * time.Microsecond)
	}
}
