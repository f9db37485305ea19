//go:build !linux

package main

import (
	"context"
	"errors"

	"github.com/devbox-dev/devbox/engine"
)

// newEngine returns the engine in devbox's Linux VM: on macOS and Windows
// containers run there.
func newEngine(ctx context.Context) (engine.Engine, error) {
	m, err := openMachine()
	if err != nil {
		return nil, err
	}
	if !m.Exists() {
		return nil, errors.New("containers run in devbox's Linux VM, which is not set up yet: run devbox up")
	}
	return remoteEngine(ctx, m)
}
