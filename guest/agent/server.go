package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// handshakeTimeout bounds an SSH handshake (slow under emulation).
const handshakeTimeout = 20 * time.Second

// ChannelHandler serves one new SSH channel of the type it was registered
// for: it accepts or rejects nc and returns when done with it. ctx ends
// when the connection does.
type ChannelHandler func(ctx context.Context, conn *ssh.ServerConn, nc ssh.NewChannel)

// RequestHandler serves one SSH global request of the type it was
// registered for and must reply to it when req.WantReply. Requests of one
// connection are served one at a time, in order.
type RequestHandler func(ctx context.Context, conn *ssh.ServerConn, req *ssh.Request)

// SessionConfig is how "session" channels start programs.
type SessionConfig struct {
	// Shell runs commands (Shell -c CMD) and interactive logins (Shell -l).
	Shell string
	// Dir is the working directory, and HOME.
	Dir string
	// Env is the base environment; the client's env requests add to it.
	Env []string
	// OutputGrace is how long a session waits, after its program exits,
	// for the program's output streams to reach end of file before it
	// stops reading them: a background process that keeps them open must
	// not hold the session forever.
	OutputGrace time.Duration
}

// DefaultSessionConfig is the guest's: busybox sh, root's home.
func DefaultSessionConfig() SessionConfig {
	return SessionConfig{
		Shell: "/bin/sh",
		Dir:   "/root",
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/sh",
		},
		OutputGrace: 2 * time.Second,
	}
}

// Server is the agent's SSH server: public-key authentication against a
// fixed list for one user, "session" and "direct-tcpip" channels, and
// handler maps that the agent (and later the engine service) extend with
// more channel types and global requests. Register handlers before the
// first ServeConn.
type Server struct {
	config   *ssh.ServerConfig
	channels map[string]ChannelHandler
	requests map[string]RequestHandler
	log      *logger
	// Session is how "session" channels run programs.
	Session SessionConfig
	// Gate, if set, is what every new channel waits for before its
	// handler runs (the agent's boot steps); an error rejects the
	// channel. Global requests do not wait: the host sets the clock and
	// asks for a shutdown while the guest still boots.
	Gate func(ctx context.Context) error
}

// NewServer returns a Server that presents hostKey and lets user log in
// with any of the authorized keys, and nothing else.
func NewServer(hostKey ssh.Signer, user string, authorized []ssh.PublicKey) *Server {
	allowed := make([][]byte, len(authorized))
	for i, k := range authorized {
		allowed[i] = k.Marshal()
	}
	s := &Server{
		channels: map[string]ChannelHandler{},
		requests: map[string]RequestHandler{},
		Session:  DefaultSessionConfig(),
	}
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() != user {
				return nil, fmt.Errorf("user %q not allowed", meta.User())
			}
			m := key.Marshal()
			for _, a := range allowed {
				if bytes.Equal(a, m) {
					return &ssh.Permissions{}, nil
				}
			}
			return nil, errors.New("key not authorized")
		},
		ServerVersion: "SSH-2.0-devbox-agent",
		MaxAuthTries:  6,
	}
	s.config.AddHostKey(hostKey)
	s.channels["session"] = s.handleSession
	s.channels["direct-tcpip"] = s.handleDirectTCPIP
	return s
}

// ParseAuthorizedKeys parses keys in authorized_keys format, one a string.
func ParseAuthorizedKeys(lines []string) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for _, l := range lines {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err != nil {
			return nil, fmt.Errorf("authorized key %q: %w", l, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// HandleChannel makes h serve new channels of type kind (replacing any
// handler for it, the built-in ones too).
func (s *Server) HandleChannel(kind string, h ChannelHandler) { s.channels[kind] = h }

// HandleRequest makes h serve global requests of type kind.
func (s *Server) HandleRequest(kind string, h RequestHandler) { s.requests[kind] = h }

// ServeConn runs one SSH connection over c and returns when it ends (the
// peer hung up, the handshake failed, or ctx ended); c is closed then.
// Channel handlers may still be finishing when it returns.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	// A peer that does not complete the handshake in time is not a host
	// that means to (on a virtio-serial port it may not be there at all).
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	start := time.Now()
	sc, chans, reqs, err := ssh.NewServerConn(c, s.config)
	if err != nil {
		c.Close()
		return fmt.Errorf("ssh handshake: %w", err)
	}
	c.SetDeadline(time.Time{})
	s.log.Debugf("ssh handshake and login: %v", time.Since(start).Round(10*time.Microsecond))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for req := range reqs {
			h := s.requests[req.Type]
			if h == nil {
				if req.WantReply {
					req.Reply(false, nil)
				}
				continue
			}
			s.safely("request "+req.Type, func() { h(ctx, sc, req) })
		}
	}()
	for nc := range chans {
		h := s.channels[nc.ChannelType()]
		if h == nil {
			nc.Reject(ssh.UnknownChannelType, "unknown channel type")
			continue
		}
		go s.safely("channel "+nc.ChannelType(), func() {
			if s.Gate != nil {
				if err := s.Gate(ctx); err != nil {
					nc.Reject(ssh.ConnectionFailed, err.Error())
					return
				}
			}
			h(ctx, sc, nc)
		})
	}
	wg.Wait()
	sc.Close()
	err = sc.Wait()
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// safely runs f and turns a panic into a log line: one broken request or
// channel must not take PID 1 down.
func (s *Server) safely(what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Errorf("ssh %s: panic: %v", what, r)
		}
	}()
	f()
}
