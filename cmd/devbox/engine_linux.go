package main

import (
	"context"
	"errors"
	"os"

	"github.com/devbox-dev/devbox/config"
	"github.com/devbox-dev/devbox/engine"
	"github.com/devbox-dev/devbox/machine"
)

// newEngine returns the engine for this machine: devbox's own runtime in
// this process, unless the machine was brought up with a VM driver
// (devbox up --driver qemu), whose guest agent then runs the containers.
func newEngine(ctx context.Context) (engine.Engine, error) {
	m, err := openMachine()
	if err != nil {
		return nil, err
	}
	if m.Exists() && m.Config.Driver != machine.DriverNative {
		return remoteEngine(ctx, m)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("native mode needs root until rootless mode lands: run devbox with sudo, or use a VM (devbox up --driver qemu)")
	}
	root, err := config.DataRoot()
	if err != nil {
		return nil, err
	}
	return engine.NewLocal(root)
}
