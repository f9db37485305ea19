//go:build !linux

package agent

import (
	"context"

	"golang.org/x/crypto/ssh"
)

// handleSession refuses: programs run only in the Linux guest.
func (s *Server) handleSession(_ context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
	nc.Reject(ssh.Prohibited, "sessions run only on Linux")
}
