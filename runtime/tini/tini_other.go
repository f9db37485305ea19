//go:build !linux

// Package tini is `devbox run --init`, Linux only.
package tini

// Path is where the engine binds the devbox binary in a container.
const Path = "/dev/init"

// Main does nothing off Linux.
func Main() {}
