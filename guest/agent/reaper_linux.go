package agent

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The reaper collects the exit status of orphans, the processes the kernel
// re-parents to PID 1, without stealing it from code in this process that
// waits for its own children (sessions, mke2fs, the container runtime), all
// of which start them through os/exec. Go starts every child with
// clone(CLONE_PIDFD) and holds that pidfd until Wait has reaped the child,
// so "a child no pidfd of ours points at" is exactly "an orphan": the
// reaper peeks at exited children with waitid(WNOWAIT) and reaps only
// those. Nobody has to register anything, and no registration race exists,
// since the pidfd is in our descriptor table before the child can run.

// Reaper reaps orphaned children of this process.
type Reaper struct {
	self int
	// reaped, if set, is told each orphan reaped (for tests and the log).
	reaped func(pid int, ws unix.WaitStatus)
}

// NewReaper returns a Reaper for the calling process's children.
func NewReaper() *Reaper { return &Reaper{self: os.Getpid()} }

// Run reaps orphans on every SIGCHLD until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	r.Reap()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
			r.Reap()
		}
	}
}

// siginfoChild is the start of siginfo_t as waitid fills it for a child.
type siginfoChild struct {
	Signo, Errno, Code int32
	_                  int32
	Pid                int32
	Uid                uint32
	Status             int32
	_                  [128 - 7*4]byte
}

// Reap reaps every orphan that has exited by now.
func (r *Reaper) Reap() {
	for {
		var info siginfoChild
		err := unix.Waitid(unix.P_ALL, 0, (*unix.Siginfo)(unsafe.Pointer(&info)),
			unix.WEXITED|unix.WNOHANG|unix.WNOWAIT|unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || info.Pid == 0 {
			return
		}
		owned := ownedPids()
		if !owned[int(info.Pid)] {
			if !r.reap(int(info.Pid)) {
				return
			}
			continue
		}
		// The first exited child is someone's, who will wait for it;
		// waitid cannot look past it, so find the other zombies in /proc.
		// Which pids are owned is read again after that: a child started
		// since the first read may be among the zombies, and its pidfd
		// (made before it ran) is only in the table read after them.
		zombies := zombieChildren(r.self)
		owned = ownedPids()
		for _, pid := range zombies {
			if !owned[pid] {
				r.reap(pid)
			}
		}
		return
	}
}

// reap collects pid's status; false if it was not there to collect.
func (r *Reaper) reap(pid int) bool {
	var ws unix.WaitStatus
	for {
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG|unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || got != pid {
			return false
		}
		if r.reaped != nil {
			r.reaped(pid, ws)
		}
		return true
	}
}

// ownedPids returns the processes this process holds pidfds for.
func ownedPids() map[int]bool {
	owned := map[int]bool{}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return owned
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		link, err := os.Readlink("/proc/self/fd/" + n)
		if err != nil || !strings.Contains(link, "pidfd") {
			continue
		}
		b, err := os.ReadFile("/proc/self/fdinfo/" + n)
		if err != nil {
			continue
		}
		for line := range bytes.Lines(b) {
			if v, ok := bytes.CutPrefix(line, []byte("Pid:")); ok {
				if pid, err := strconv.Atoi(string(bytes.TrimSpace(v))); err == nil && pid > 0 {
					owned[pid] = true
				}
			}
		}
	}
	return owned
}

// zombieChildren lists parent's children that have exited and wait to be
// reaped.
func zombieChildren(parent int) []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	var pids []int
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		state, ppid, ok := procState(pid)
		if ok && state == 'Z' && ppid == parent {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procState reads a process's state letter and parent from /proc/PID/stat.
func procState(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) S ppid ...": comm may hold anything, even ") ".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err == nil
}
