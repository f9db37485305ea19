package qemu

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// isQEMU says whether pid is a live QEMU of the machine in dir: a pid file
// can outlive its process, and the pid can be reused.
func isQEMU(pid int, dir string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	if !bytes.Contains(b, []byte("qemu-system")) || !bytes.Contains(b, []byte(dir)) {
		return false
	}
	// A zombie still has a cmdline until reaped: it is not running.
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
		return false
	}
	return true
}

func killProcess(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
