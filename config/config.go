// Package config resolves where devbox keeps its state: the per-user home
// ($DEVBOX_HOME, default ~/.devbox) and the data root of the native image and
// container store ($DEVBOX_ROOT, default /var/lib/devbox).
package config

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/mitchellh/go-homedir"
)

// DefaultDataRoot is the native store's location when DEVBOX_ROOT is unset.
const DefaultDataRoot = "/var/lib/devbox"

// Home returns the per-user devbox directory: $DEVBOX_HOME if set (with a
// leading ~ expanded), else ~/.devbox.
func Home() (string, error) {
	if h := os.Getenv("DEVBOX_HOME"); h != "" {
		return ExpandPath(h)
	}
	h, err := homedir.Dir()
	if err != nil {
		return "", fmt.Errorf("find home directory (set DEVBOX_HOME): %w", err)
	}
	return filepath.Join(h, ".devbox"), nil
}

// DataRoot returns the data root of the native store: $DEVBOX_ROOT if set
// (with a leading ~ expanded), else /var/lib/devbox.
func DataRoot() (string, error) {
	if r := os.Getenv("DEVBOX_ROOT"); r != "" {
		return ExpandPath(r)
	}
	return DefaultDataRoot, nil
}

// ExpandPath expands a leading ~ in a user-supplied path and makes it
// absolute, so paths from flags, env and files mean the same everywhere.
func ExpandPath(p string) (string, error) {
	e, err := homedir.Expand(p)
	if err != nil {
		return "", fmt.Errorf("expand path %q: %w", p, err)
	}
	a, err := filepath.Abs(e)
	if err != nil {
		return "", fmt.Errorf("expand path %q: %w", p, err)
	}
	return a, nil
}
