// Package filelock holds advisory, exclusive locks on files, released when
// the holder closes them or dies: what serialises devbox commands on one
// machine without a daemon.
package filelock

import (
	"context"
	"fmt"
	"os"
	"time"
)

// Lock is a held lock.
type Lock struct{ f *os.File }

// TryLock takes the lock on path (creating the file) if it is free; ok is
// false when another process holds it.
func TryLock(path string) (l *Lock, ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	ok, err = tryLock(f)
	if err != nil || !ok {
		f.Close()
		if err != nil {
			return nil, false, fmt.Errorf("lock %s: %w", path, err)
		}
		return nil, false, nil
	}
	return &Lock{f: f}, true, nil
}

// Acquire waits for the lock on path until ctx ends. Polling keeps it
// cancellable, which a blocking flock is not.
func Acquire(ctx context.Context, path string) (*Lock, error) {
	for {
		l, ok, err := TryLock(path)
		if err != nil || ok {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
