//go:build !linux

package agent

// Main does nothing: the agent runs only as PID 1 of the Linux guest.
func Main() {}
