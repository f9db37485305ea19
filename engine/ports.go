package engine

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/devbox-dev/devbox/internal/netutil"
)

// PortMapping is one -p [IP:]HOSTPORT:CTRPORT[/tcp].
type PortMapping struct {
	// HostIP is the host address to listen on; devbox's default is
	// 127.0.0.1, not docker's 0.0.0.0: a developer's database should not
	// be reachable from the café's Wi-Fi unless asked.
	HostIP        string `json:"hostIP"`
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	// Protocol is "tcp", the only one forwarded so far.
	Protocol string `json:"protocol"`
}

func (p PortMapping) String() string {
	return fmt.Sprintf("%s -> %d/%s", net.JoinHostPort(p.HostIP, strconv.Itoa(p.HostPort)), p.ContainerPort, p.Protocol)
}

// ParsePublish parses docker's -p [IP:]HOSTPORT:CTRPORT[/tcp].
func ParsePublish(s string) (PortMapping, error) {
	bad := func(why string) (PortMapping, error) {
		return PortMapping{}, fmt.Errorf("invalid -p %q: %s", s, why)
	}
	m := PortMapping{HostIP: "127.0.0.1", Protocol: "tcp"}
	spec := s
	if i := strings.LastIndex(spec, "/"); i >= 0 {
		m.Protocol = spec[i+1:]
		spec = spec[:i]
		if m.Protocol != "tcp" {
			return bad("only tcp ports can be published so far")
		}
	}
	var host, hostPort, ctrPort string
	if i := strings.LastIndex(spec, ":"); i >= 0 {
		ctrPort = spec[i+1:]
		rest := spec[:i]
		if j := strings.LastIndex(rest, ":"); j >= 0 {
			host, hostPort = strings.Trim(rest[:j], "[]"), rest[j+1:]
		} else {
			hostPort = rest
		}
	} else {
		return bad("give the host port too, as HOSTPORT:CTRPORT (like -p 8080:80)")
	}
	if host != "" {
		if net.ParseIP(host) == nil {
			return bad(fmt.Sprintf("%q is not an IP address", host))
		}
		m.HostIP = host
	}
	var err error
	if m.HostPort, err = parsePort(hostPort); err != nil {
		return bad("host port: " + err.Error())
	}
	if m.ContainerPort, err = parsePort(ctrPort); err != nil {
		return bad("container port: " + err.Error())
	}
	return m, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}

// Forwarder listens on the host ports of a run's -p mappings and
// forwards each connection with dial, until it is closed.
type Forwarder struct {
	lns  []net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]struct{}
	done bool
}

// DialFunc connects to a container's port.
type DialFunc func(ctx context.Context, port int) (net.Conn, error)

// Publish starts listening on every mapping's host address at once, so a
// port already taken fails the run before the container starts.
func Publish(ctx context.Context, ports []PortMapping, dial DialFunc) (*Forwarder, error) {
	f := &Forwarder{open: map[net.Conn]struct{}{}}
	var lc net.ListenConfig
	for _, p := range ports {
		addr := net.JoinHostPort(p.HostIP, strconv.Itoa(p.HostPort))
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("publish %s: %w: choose another host port", p, err)
		}
		f.lns = append(f.lns, ln)
		f.wg.Add(1)
		go f.serve(ctx, ln, p.ContainerPort, dial)
	}
	return f, nil
}

func (f *Forwarder) serve(ctx context.Context, ln net.Listener, port int, dial DialFunc) {
	defer f.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !f.track(c) {
			c.Close()
			return
		}
		go func() {
			defer f.untrack(c)
			t, err := dial(ctx, port)
			if err != nil {
				return // the peer sees its connection closed, as with docker
			}
			if !f.track(t) {
				t.Close()
				return
			}
			defer f.untrack(t)
			netutil.Splice(c, t)
		}()
	}
}

func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return false
	}
	f.open[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	c.Close()
	f.mu.Lock()
	delete(f.open, c)
	f.mu.Unlock()
}

// Close stops listening and ends the connections still open: the
// container they reached is gone.
func (f *Forwarder) Close() {
	if f == nil {
		return
	}
	for _, ln := range f.lns {
		ln.Close()
	}
	f.wg.Wait()
	f.mu.Lock()
	f.done = true
	for c := range f.open {
		c.Close()
	}
	f.mu.Unlock()
}
