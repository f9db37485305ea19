package agent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReaper runs programs through os/exec while the reaper runs, in a
// process that is a child subreaper (so orphans come to it as to PID 1):
// every program's own status reaches its Wait, and every orphan is reaped.
func TestReaper(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a child subreaper: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	r := NewReaper()
	var orphans atomic.Int32
	r.reaped = func(int, unix.WaitStatus) { orphans.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)

	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			// Orphans a short sleep, then exits 7: the orphan's exit
			// comes to us while others wait for theirs.
			err := exec.Command("/bin/sh", "-c", "sleep 0.05 & exit 7").Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 7 {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			cmd := exec.Command("/bin/sh", "-c", "sleep 0.1; exit 3")
			if err := cmd.Start(); err != nil {
				errs <- err
				return
			}
			// Waits late, long after its child exited.
			time.Sleep(200 * time.Millisecond)
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a program lost its exit status: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(zombieChildren(os.Getpid())) > 0 || orphans.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("orphans reaped: %d of %d; zombies left: %v", orphans.Load(), n, zombieChildren(os.Getpid()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProcState(t *testing.T) {
	state, ppid, ok := procState(os.Getpid())
	if !ok || ppid != os.Getppid() || (state != 'R' && state != 'S') {
		t.Errorf("procState(self) = %c, %d, %v", state, ppid, ok)
	}
}
