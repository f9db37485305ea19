package filelock

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestExclusive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l")
	a, ok, err := TryLock(p)
	if err != nil || !ok {
		t.Fatalf("first TryLock = %v, %v", ok, err)
	}
	if _, ok, _ := TryLock(p); ok {
		t.Fatal("second TryLock got a held lock")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Acquire(ctx, p); err == nil {
		t.Fatal("Acquire got a held lock")
	}
	a.Unlock()
	b, err := Acquire(context.Background(), p)
	if err != nil {
		t.Fatalf("Acquire after Unlock: %v", err)
	}
	b.Unlock()
}
