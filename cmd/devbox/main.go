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

	"github.com/devbox-dev/devbox/guest/agent"
	"github.com/devbox-dev/devbox/runtime"
	"github.com/devbox-dev/devbox/runtime/tini"
)

// version is set at build time: -ldflags "-X main.version=..."
var version = "dev"

func main() {
	// The container runtime re-executes this binary as each container's
	// init stage, and --init runs it as a container's PID 1: in both
	// cases these never return.
	runtime.Init()
	tini.Main()
	agent.Main()
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
