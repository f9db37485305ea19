//go:build !linux

package main

import (
	"errors"

	"github.com/devbox-dev/devbox/engine"
)

// newEngine: on macOS and Windows containers run in devbox's Linux VM,
// reached through the guest agent, which is not built yet.
func newEngine() (engine.Engine, error) {
	return nil, errors.New("containers on this OS run in devbox's Linux VM, which is not available yet: use devbox on Linux for now")
}
