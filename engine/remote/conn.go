package remote

import (
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// chanConn is an SSH channel as a net.Conn, for HTTP clients and port
// forwarding. Deadlines are not supported: the users of these
// connections cancel by closing them.
type chanConn struct {
	ssh.Channel
	remote string
}

type chanAddr string

func (a chanAddr) Network() string { return "ssh-channel" }
func (a chanAddr) String() string  { return string(a) }

func (c *chanConn) LocalAddr() net.Addr                { return chanAddr("devbox") }
func (c *chanConn) RemoteAddr() net.Addr               { return chanAddr(c.remote) }
func (c *chanConn) SetDeadline(t time.Time) error      { return nil }
func (c *chanConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *chanConn) SetWriteDeadline(t time.Time) error { return nil }
