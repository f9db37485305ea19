package qemu

import "os"

// processAlive: FindProcess opens a handle on Windows, which fails for a
// pid that is gone.
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	p.Release()
	return true
}
