package machine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/devbox-dev/devbox/guest/bootconfig"
	"github.com/devbox-dev/devbox/hypervisor"
	"github.com/devbox-dev/devbox/internal/filelock"
	"golang.org/x/crypto/ssh"
)

// agentConn is one stream to the agent. Under QEMU each virtio-serial port
// carries one connection at a time, claimed with a lock file so concurrent
// devbox commands each get their own port.
type agentConn struct {
	net.Conn
	lock *filelock.Lock
}

func (c *agentConn) Close() error {
	err := c.Conn.Close()
	c.lock.Unlock()
	return err
}

// claimPort takes the lock of a free agent port, waiting while all are in
// use. It starts at a port picked by pid so concurrent commands spread.
func (m *Machine) claimPort(ctx context.Context, ports int) (int, *filelock.Lock, error) {
	start := os.Getpid() % ports
	for {
		for k := 0; k < ports; k++ {
			i := (start + k) % ports
			l, ok, err := filelock.TryLock(m.path(fmt.Sprintf(portLockFmt, i)))
			if err != nil {
				return 0, nil, err
			}
			if ok {
				return i, l, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("all %d agent connections of machine %s are in use: %w", ports, m.Name, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// dialAgent opens a stream to the agent and waits for its Hello, after
// which the stream is the agent's SSH server.
func (m *Machine) dialAgent(ctx context.Context, d hypervisor.Driver) (net.Conn, error) {
	ports := d.Capabilities().AgentPorts
	i, lock := 0, (*filelock.Lock)(nil)
	if ports > 0 {
		var err error
		if i, lock, err = m.claimPort(ctx, ports); err != nil {
			return nil, err
		}
	}
	c, err := d.Dial(ctx, i)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	conn := &agentConn{Conn: c, lock: lock}
	if err := awaitHello(ctx, conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// errNoHello means the stream ended before the agent said Hello: the guest
// is still booting, or the VM is gone.
var errNoHello = errors.New("agent stream closed before hello")

// awaitHello opens the stream with the host's hello and reads up to the
// agent's answer with the same nonce, dropping whatever came before it
// (bytes a previous session left in flight). It reads a byte at a time so
// not one byte of the SSH banner after the answer is consumed.
func awaitHello(ctx context.Context, c net.Conn) error {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
		defer c.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var n [8]byte
	if _, err := rand.Read(n[:]); err != nil {
		return err
	}
	nonce := hex.EncodeToString(n[:])
	if _, err := io.WriteString(c, bootconfig.HostHelloLine(nonce)); err != nil {
		return helloErr(ctx, err)
	}
	hello := []byte(bootconfig.HelloLine(nonce))
	var buf []byte
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			return helloErr(ctx, err)
		}
		buf = append(buf, one[0])
		if bytes.HasSuffix(buf, hello) {
			return nil
		}
		if len(buf) > 1<<16 {
			buf = append(buf[:0], buf[len(buf)-len(hello):]...)
		}
	}
}

func helloErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return context.DeadlineExceeded
	}
	return errNoHello
}

// sshConfig is how the host logs in: its own key, and the guest's host key
// pinned, never trusted on first use. Under emulation (TCG) it asks for
// the algorithms that cost the guest least: X25519 alone rather than the
// default hybrid ML-KEM-768 + X25519, whose first run in a booting guest
// costs ~50 ms more of emulated code (the stream is a virtio-serial port
// to a local VM, never a network, so there is no traffic to record for
// a later quantum break), and ChaCha20-Poly1305 first, which moves bulk
// data 2-2.5x faster than AES-GCM in a TCG guest (measured 5.7-7.1 against
// 2.5-3.0 MiB/s, AES-NI exposed or not). With hardware virtualisation the
// defaults cost nothing worth saving and stay.
func (m *Machine) sshConfig(k *keys, emulated bool) *ssh.ClientConfig {
	c := &ssh.ClientConfig{
		User:            bootconfig.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(k.client)},
		HostKeyCallback: ssh.FixedHostKey(k.host.PublicKey()),
		ClientVersion:   "SSH-2.0-devbox",
	}
	if emulated {
		c.KeyExchanges = []string{ssh.KeyExchangeCurve25519, ssh.KeyExchangeMLKEM768X25519}
		c.Ciphers = []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128GCM, ssh.CipherAES256GCM}
	}
	return c
}

// Client connects to the running machine's agent over SSH. The caller
// closes it.
func (m *Machine) Client(ctx context.Context) (*ssh.Client, error) {
	d, err := m.driver()
	if err != nil {
		return nil, err
	}
	k, err := m.loadKeys()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return m.client(ctx, ctx, d, k)
}

// client connects to the agent and logs in. helloCtx bounds the wait for
// the agent's Hello, ctx the whole of it: a caller polling a booting guest
// gives up on a silent stream soon, but never cuts short a handshake the
// agent has begun (slow under emulation), which would waste it.
func (m *Machine) client(ctx, helloCtx context.Context, d hypervisor.Driver, k *keys) (*ssh.Client, error) {
	conn, err := m.dialAgent(helloCtx, d)
	if err != nil {
		if d.PID() == 0 {
			return nil, fmt.Errorf("machine %s is not running: run devbox up", m.Name)
		}
		return nil, fmt.Errorf("machine %s: %w", m.Name, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	c, chans, reqs, err := ssh.NewClientConn(conn, m.SSHHost(), m.sshConfig(k, d.Capabilities().Accelerator == "tcg"))
	stop()
	conn.SetDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh to machine %s: %w", m.Name, err)
	}
	client := ssh.NewClient(c, chans, reqs)
	// The guest clock stops while the host sleeps; every connection
	// brings it back in step.
	_, _, _ = client.SendRequest(bootconfig.RequestSetTime, false,
		ssh.Marshal(bootconfig.SetTime{UnixNano: uint64(time.Now().UnixNano())}))
	return client, nil
}

// ProxyConn is a raw stream to the agent's SSH server, for `devbox
// ssh-proxy` (OpenSSH's ProxyCommand).
func (m *Machine) ProxyConn(ctx context.Context) (net.Conn, error) {
	d, err := m.driver()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := m.dialAgent(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", m.Name, err)
	}
	return conn, nil
}
