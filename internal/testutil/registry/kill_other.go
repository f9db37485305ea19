//go:build !linux

package registry

import "os/exec"

// killWithParent is a no-op where there is no parent-death signal; Debian's
// registry only exists on Linux anyway.
func killWithParent(*exec.Cmd) {}
