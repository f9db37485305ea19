package main

import (
	"github.com/devbox-dev/devbox/config"
	"github.com/devbox-dev/devbox/engine"
)

// newEngine returns the engine for this machine: on Linux, devbox's own
// runtime in this process.
func newEngine() (engine.Engine, error) {
	root, err := config.DataRoot()
	if err != nil {
		return nil, err
	}
	return engine.NewLocal(root)
}
