//go:build !linux

package qemu

import "os"

// isQEMU says whether pid is alive; without /proc, QMP's answer is what
// State trusts.
func isQEMU(pid int, dir string) bool { return processAlive(pid) }

func killProcess(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
