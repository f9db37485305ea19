package main

import (
	"errors"
	"os"

	"github.com/devbox-dev/devbox/config"
	"github.com/devbox-dev/devbox/engine"
)

// newEngine returns the engine for this machine: on Linux, devbox's own
// runtime in this process.
func newEngine() (engine.Engine, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("native mode needs root until rootless mode lands: run devbox with sudo")
	}
	root, err := config.DataRoot()
	if err != nil {
		return nil, err
	}
	return engine.NewLocal(root)
}
