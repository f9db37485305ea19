//go:build unix

package remote

import (
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// signalName is sig as SSH names it: without "SIG".
func signalName(sig os.Signal) string {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return ""
	}
	return strings.TrimPrefix(unix.SignalName(s), "SIG")
}
