// Package agent is the devbox guest agent, PID 1 of the Linux VM: init duties, the SSH server and the engine service. Not built yet: issue 4 brings it.
package agent
