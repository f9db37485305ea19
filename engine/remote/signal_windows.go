package remote

import (
	"os"
	"syscall"
)

// signalName is sig as SSH names it: without "SIG". Windows delivers
// only these to a console program.
func signalName(sig os.Signal) string {
	switch sig {
	case os.Interrupt:
		return "INT"
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGHUP:
		return "HUP"
	case syscall.SIGQUIT:
		return "QUIT"
	case os.Kill:
		return "KILL"
	}
	return ""
}
