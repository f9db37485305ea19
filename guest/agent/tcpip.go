package agent

import (
	"context"
	"net"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devbox-dev/devbox/internal/netutil"
)

// directTCPIP is the payload of a "direct-tcpip" channel open (RFC 4254
// 7.2): where to connect, and who asked.
type directTCPIP struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// handleDirectTCPIP connects to the requested address from the guest and
// pipes the channel to it both ways: the host's port forwarding.
func (s *Server) handleDirectTCPIP(ctx context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
	var p directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		nc.Reject(ssh.ConnectionFailed, "bad direct-tcpip payload")
		return
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		c.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	// A connection that ends takes its forwarded sockets with it.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	netutil.Splice(ch, c)
}
