//go:build !linux

package runtime

import (
	"context"
	"errors"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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

// spawned is an init stage Prestart created; there are none here.
type spawned struct{}

// Prestart creates the container's process ahead of Run. On this system it
// always fails: containers run only on Linux.
func (c *Container) Prestart(namespaces []specs.LinuxNamespace, terminal bool) error {
	return errNotLinux
}

// Abort does nothing on this system: Prestart creates no process.
func (c *Container) Abort() {}
