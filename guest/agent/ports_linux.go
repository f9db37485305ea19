package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/devbox-dev/devbox/guest/bootconfig"
	"golang.org/x/sys/unix"
)

// findPorts maps the names of virtio-serial ports to their device files,
// waiting up to timeout for all of want to appear: the driver adds ports
// as the host announces them, after boot has begun. first, if not nil, is
// a scan made earlier (scanPorts), taken as the first look.
func findPorts(ctx context.Context, want []string, timeout time.Duration, first map[string]string) (map[string]string, error) {
	found := map[string]string{}
	for k, v := range first {
		found[k] = v
	}
	deadline := time.Now().Add(timeout)
	for scanned := first != nil; ; scanned = false {
		if !scanned {
			for k, v := range scanPorts() {
				found[k] = v
			}
		}
		missing := 0
		for _, w := range want {
			if found[w] == "" {
				missing++
			}
		}
		if missing == 0 {
			return found, nil
		}
		if time.Now().After(deadline) {
			return found, fmt.Errorf("%d of %d virtio-serial ports did not appear within %v", missing, len(want), timeout)
		}
		select {
		case <-ctx.Done():
			return found, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// scanPorts maps the names of the virtio-serial ports there now to their
// device files.
func scanPorts() map[string]string {
	found := map[string]string{}
	dirs, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		found[strings.TrimSpace(string(b))] = "/dev/" + filepath.Base(filepath.Dir(p))
	}
	return found
}

// servePort serves SSH on the virtio-serial port at dev, one session
// after another, until ctx ends. The port stays open for good: closing it
// would throw away what the host sent meanwhile (QEMU holds the host's
// bytes back only while the port is closed). Each session opens with the
// host's hello line, which the agent answers with the same nonce.
//
// How virtio_console behaves (checked under QEMU 7.2): while no host is
// connected, poll() reports POLLHUP|POLLIN, read() returns 0 and write()
// blocks (EAGAIN when non-blocking); once one is, poll() reports POLLOUT
// (and POLLIN with data); when it hangs up, back to POLLHUP and read()
// returning 0, so a session sees end of file. Two traps: a write that
// waits for room when the host hangs up would go out to the next host
// (vport.write gives up after hostGrace; and a host ignores what comes
// before the answer to its hello), and a host that hangs up and reconnects
// before the guest has handled the first event looks like one that stayed
// (measured under TCG: reconnecting at once always hid it, 10 ms between
// sometimes, 50 ms never) -- the new host's hello in the stream is what
// ends the old session then (helloStream).
func (a *agent) servePort(ctx context.Context, dev string) {
	var p *vport
	for p == nil {
		if err := waitForFile(ctx, dev, 10*time.Second); err != nil {
			a.log.Errorf("port %s: %v", dev, err)
			return
		}
		var err error
		if p, err = openVport(dev); err != nil {
			a.log.Errorf("open %s: %v", dev, err)
			sleepCtx(ctx, time.Second)
			if ctx.Err() != nil {
				return
			}
		}
	}
	// Shutdown stops a port waiting for a host, not a session: the
	// shutdown request itself is answered on one.
	var idle atomic.Bool
	context.AfterFunc(ctx, func() {
		if idle.Load() {
			p.f.SetReadDeadline(time.Unix(1, 0))
		}
	})
	for ctx.Err() == nil {
		idle.Store(true)
		nonce, err := p.hs.nextHello()
		idle.Store(false)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.log.Errorf("%s: %v", dev, err)
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		if err := p.answer(nonce); err != nil {
			a.log.Debugf("%s: answer hello: %v", dev, err)
			continue
		}
		a.log.Debugf("%s: session starts", dev)
		s := &vportSession{p: p}
		if err := a.srv.ServeConn(context.Background(), s); err != nil {
			a.log.Debugf("%s: %v", dev, err)
		}
		s.Close()
		a.log.Debugf("%s: session ended", dev)
	}
}

// vport is an open virtio-serial port.
type vport struct {
	f    *os.File
	raw  syscall.RawConn
	hs   helloStream
	rbuf []byte
	wmu  sync.Mutex // one writer at a time; a session's Close waits for its write
}

func openVport(dev string) (*vport, error) {
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &vport{f: f, raw: raw, rbuf: make([]byte, 32<<10)}
	p.hs.fill = p.fill
	p.hs.reset = func() { f.SetDeadline(time.Time{}) }
	return p, nil
}

// fill reads what the host sent. Without a host, it returns io.EOF, or
// with waitHost waits for one: the port's wait queue wakes the poller when
// a host connects, and nothing else wakes it while none is.
func (p *vport) fill(waitHost bool) ([]byte, error) {
	var n int
	var rerr error
	err := p.raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), p.rbuf)
			switch {
			case rerr == unix.EINTR:
				continue
			case rerr == unix.EAGAIN:
				return false
			case rerr == nil && n == 0 && waitHost:
				return false
			}
			return true
		}
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, io.EOF
	}
	return p.rbuf[:n], nil
}

// answer writes the agent's hello for nonce.
func (p *vport) answer(nonce string) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, err := p.write([]byte(bootconfig.HelloLine(nonce)))
	return err
}

// errHostGone is a write to a virtio-serial port whose host hung up.
var errHostGone = errors.New("host disconnected")

// write writes b, waiting for room while the host is connected, and fails
// once it is not. The caller holds wmu.
func (p *vport) write(b []byte) (int, error) {
	n := 0
	var werr error
	err := p.raw.Write(func(fd uintptr) bool {
		for len(b) > 0 {
			m, err := unix.Write(int(fd), b)
			if m > 0 {
				n += m
				b = b[m:]
				continue
			}
			switch err {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				if hostGone(int(fd)) {
					if !waitHost(int(fd), hostGrace) {
						werr = errHostGone
						return true
					}
					continue
				}
				return false // wait for room (or for the hang-up)
			}
			werr = err
			return true
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return n, err
}

// hostGrace is how long a write waits for a host that looks hung up. The
// host's bytes can reach the guest before the news that it connected (data
// and control events travel on separate queues), so a port can look hung
// up to a session that has just heard from its host. If the host really
// left and another came in the meantime, what the write sends is harmless:
// a host drops everything before the answer to its own hello, and its
// hello ends the stale session.
const hostGrace = 500 * time.Millisecond

// waitHost waits up to d for the port's host side to be connected.
func waitHost(fd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for hostGone(fd) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// hostGone says whether the port's host side is not connected.
func hostGone(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		_, err := unix.Poll(p, 0)
		if err != unix.EINTR {
			return err == nil && p[0].Revents&unix.POLLHUP != 0
		}
	}
}

// vportSession is one SSH session's view of a port: a net.Conn whose Close
// ends the session, not the port.
type vportSession struct {
	p      *vport
	closed atomic.Bool
}

func (s *vportSession) Read(b []byte) (int, error) {
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := s.p.hs.read(b)
	if err == errNewHello {
		err = io.EOF
	}
	return n, err
}

func (s *vportSession) Write(b []byte) (int, error) {
	s.p.wmu.Lock()
	defer s.p.wmu.Unlock()
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	return s.p.write(b)
}

// Close ends the session's reads and writes at once (a past deadline wakes
// them); the port loop clears the deadline before the next session.
func (s *vportSession) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.p.f.SetDeadline(time.Unix(1, 0))
	return nil
}

func (s *vportSession) LocalAddr() net.Addr  { return portAddr(s.p.f.Name()) }
func (s *vportSession) RemoteAddr() net.Addr { return portAddr("host") }

func (s *vportSession) SetDeadline(t time.Time) error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	return s.p.f.SetDeadline(t)
}

func (s *vportSession) SetReadDeadline(t time.Time) error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	return s.p.f.SetReadDeadline(t)
}

func (s *vportSession) SetWriteDeadline(t time.Time) error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	return s.p.f.SetWriteDeadline(t)
}

// serveStream answers the host hello that opens c (a vsock connection),
// runs one SSH session over it, and closes it. Until the hello, the end of
// ctx (shutdown) closes c.
func (a *agent) serveStream(ctx context.Context, c net.Conn, name string) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	nonce, err := readHelloLine(c)
	if err == nil {
		_, err = io.WriteString(c, bootconfig.HelloLine(nonce))
	}
	if !stop() || ctx.Err() != nil {
		return
	}
	if err != nil {
		a.log.Debugf("%s: hello: %v", name, err)
		return
	}
	if err := a.srv.ServeConn(context.Background(), c); err != nil {
		a.log.Debugf("%s: %v", name, err)
	}
}

// serveVsock accepts SSH connections on the vsock port; each gets Hello
// too, so the host code is the same for both transports. (The net package
// cannot wrap AF_VSOCK sockets, hence os.File and raw accept.)
func (a *agent) serveVsock(ctx context.Context, port uint32) error {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("vsock bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		unix.Close(fd)
		return fmt.Errorf("vsock listen: %w", err)
	}
	ln := os.NewFile(uintptr(fd), fmt.Sprintf("vsock:%d", port))
	raw, err := ln.SyscallConn()
	if err != nil {
		ln.Close()
		return fmt.Errorf("vsock listener: %w", err)
	}
	context.AfterFunc(ctx, func() { ln.Close() })
	go func() {
		for {
			var nfd int
			var aerr error
			err := raw.Read(func(fd uintptr) bool {
				nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
				return aerr != unix.EAGAIN
			})
			if err == nil {
				err = aerr
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				a.log.Errorf("vsock accept: %v", err)
				if errors.Is(err, os.ErrClosed) {
					return
				}
				sleepCtx(ctx, 100*time.Millisecond)
				continue
			}
			go a.serveStream(ctx, &fileConn{os.NewFile(uintptr(nfd), "vsock")}, "vsock")
		}
	}()
	return nil
}

// fileConn is a net.Conn over a device file.
type fileConn struct{ *os.File }

func (c *fileConn) LocalAddr() net.Addr  { return portAddr(c.Name()) }
func (c *fileConn) RemoteAddr() net.Addr { return portAddr("host") }

type portAddr string

func (a portAddr) Network() string { return "virtio-serial" }
func (a portAddr) String() string  { return string(a) }

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
