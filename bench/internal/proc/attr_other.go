//go:build !linux

package proc

import "syscall"

// spawnAttr is nil: only Linux has a parent-death signal.
func spawnAttr() *syscall.SysProcAttr { return nil }
