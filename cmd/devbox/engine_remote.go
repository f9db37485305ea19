package main

import (
	"context"

	"github.com/devbox-dev/devbox/engine"
	"github.com/devbox-dev/devbox/engine/remote"
	"github.com/devbox-dev/devbox/machine"
)

// remoteEngine is the engine in machine m's VM, over SSH to its agent.
func remoteEngine(ctx context.Context, m *machine.Machine) (engine.Engine, error) {
	c, err := m.Client(ctx)
	if err != nil {
		return nil, err
	}
	return remote.New(c, remote.Options{Machine: m.Name, CheckBind: m.CheckShared}), nil
}
