//go:build !linux

package runtime

import (
	"context"
	"errors"
)

// errNotLinux is what Run returns where containers cannot run.
var errNotLinux = errors.New("runtime: containers run only on Linux (use the devbox VM)")

// Run starts the container, waits for it and returns how it ended. On this
// system it always fails: containers run only on Linux.
func Run(ctx context.Context, c *Container) (ExitStatus, error) {
	return ExitStatus{}, errNotLinux
}

// Init does nothing on this system: there is no init stage to run.
func Init() {}
