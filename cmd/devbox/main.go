// Command devbox runs Linux containers on a developer's machine: natively on
// Linux, and in a small Linux VM on macOS and Windows.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/devbox-dev/devbox/runtime"
)

// version is set at build time: -ldflags "-X main.version=..."
var version = "dev"

func main() {
	// The container runtime re-executes this binary as each container's
	// init stage; there Init sets the container up and never returns.
	runtime.Init()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		// A command that returns an exitCode has said what went wrong.
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		fmt.Fprintf(os.Stderr, "devbox: %v\n", err)
		os.Exit(1)
	}
}

// exitCode lets a command choose the process's exit status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
