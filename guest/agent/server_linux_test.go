package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// testKeys makes a fresh host key and client key.
func testKeys(t *testing.T) (host, client ssh.Signer) {
	t.Helper()
	mk := func() ssh.Signer {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return mk(), mk()
}

// startServer runs srv on one end of a pipe and returns a client on the
// other end that pins hostPub.
func dialServer(t *testing.T, srv *Server, hostPub ssh.PublicKey, client ssh.Signer) (*ssh.Client, error) {
	t.Helper()
	a, b := socketPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(ctx, a) }()
	t.Cleanup(func() {
		cancel()
		b.Close()
		<-done
	})
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(client)},
		HostKeyCallback: ssh.FixedHostKey(hostPub),
		Timeout:         10 * time.Second,
	}
	c, chans, reqs, err := ssh.NewClientConn(b, "agent", cfg)
	if err != nil {
		return nil, err
	}
	cl := ssh.NewClient(c, chans, reqs)
	t.Cleanup(func() { cl.Close() })
	return cl, nil
}

// newTestServer returns a server whose sessions run in a temporary dir,
// and a client logged in to it.
func newTestServer(t *testing.T) (*Server, *ssh.Client) {
	t.Helper()
	host, client := testKeys(t)
	srv := NewServer(host, "root", []ssh.PublicKey{client.PublicKey()})
	srv.Session.Dir = t.TempDir()
	srv.Session.Env = append(srv.Session.Env[:0:0], "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME="+srv.Session.Dir)
	cl, err := dialServer(t, srv, host.PublicKey(), client)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return srv, cl
}

func TestSessionExec(t *testing.T) {
	_, cl := newTestServer(t)
	s, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	if err := s.Setenv("GREETING", "hello"); err != nil {
		t.Fatalf("setenv: %v", err)
	}
	err = s.Run(`echo "$GREETING out"; echo err >&2; pwd; exit 3`)
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Fatalf("run: %v, want exit status 3", err)
	}
	lines := strings.Split(out.String(), "\n")
	if lines[0] != "hello out" || errb.String() != "err\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
}

func TestSessionStdinEOF(t *testing.T) {
	_, cl := newTestServer(t)
	s, _ := cl.NewSession()
	in := strings.Repeat("some input line\n", 20000) // more than a pipe holds
	s.Stdin = strings.NewReader(in)
	out, err := s.Output("cat")
	if err != nil {
		t.Fatalf("cat: %v", err)
	}
	if string(out) != in {
		t.Errorf("cat returned %d bytes, want %d", len(out), len(in))
	}
}

func TestSessionSignal(t *testing.T) {
	_, cl := newTestServer(t)
	s, _ := cl.NewSession()
	var out syncBuffer
	s.Stdout = &out
	if err := s.Start(`echo started; exec sleep 30`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(out.String(), "started") })
	if err := s.Signal(ssh.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := s.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "TERM" {
		t.Fatalf("wait: %v, want killed by TERM", err)
	}
}

func TestSessionPty(t *testing.T) {
	_, cl := newTestServer(t)
	s, _ := cl.NewSession()
	if err := s.RequestPty("xterm-256color", 40, 100, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	stdin, _ := s.StdinPipe()
	var out syncBuffer
	s.Stdout = &out
	if err := s.Start(`stty size; echo "term=$TERM"; [ -t 0 ] && echo tty; while read line && [ "$line" != q ]; do stty size; done`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(out.String(), "tty") })
	if err := s.WindowChange(50, 132); err != nil {
		t.Fatal(err)
	}
	// The request and the channel's data are handled apart, so the new
	// size shows in a later line, not necessarily the next one.
	waitFor(t, func() bool {
		io.WriteString(stdin, "go\n")
		time.Sleep(20 * time.Millisecond)
		return strings.Contains(out.String(), "50 132")
	})
	io.WriteString(stdin, "q\n") // a pty has no end of input but ^D
	if err := s.Wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}
	got := strings.ReplaceAll(out.String(), "\r\n", "\n")
	for _, want := range []string{"40 100\n", "term=xterm-256color\n", "tty\n", "50 132\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q lacks %q", got, want)
		}
	}
}

func TestSessionExitSignalAndBackground(t *testing.T) {
	_, cl := newTestServer(t)
	s, _ := cl.NewSession()
	s.Stdout = io.Discard
	// A background child holding stdout must not keep the session open
	// past the grace.
	start := time.Now()
	err := s.Run(`sleep 20 & kill -KILL $$`)
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "KILL" {
		t.Fatalf("run: %v, want killed by KILL", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("session lasted %v: held by the background child", d)
	}
}

func TestAuthRefused(t *testing.T) {
	host, client := testKeys(t)
	_, other := testKeys(t)
	srv := NewServer(host, "root", []ssh.PublicKey{client.PublicKey()})
	if _, err := dialServer(t, srv, host.PublicKey(), other); err == nil {
		t.Fatal("a key that is not authorized logged in")
	}
}

func TestHostKeyPinned(t *testing.T) {
	host, client := testKeys(t)
	wrong, _ := testKeys(t)
	srv := NewServer(host, "root", []ssh.PublicKey{client.PublicKey()})
	if _, err := dialServer(t, srv, wrong.PublicKey(), client); err == nil {
		t.Fatal("connected to a server whose host key is not the pinned one")
	}
}

func TestGlobalRequestAndUnknownChannel(t *testing.T) {
	host, client := testKeys(t)
	srv := NewServer(host, "root", []ssh.PublicKey{client.PublicKey()})
	got := make(chan []byte, 1)
	srv.HandleRequest("echo@test", func(_ context.Context, _ *ssh.ServerConn, req *ssh.Request) {
		got <- req.Payload
		req.Reply(true, []byte("pong"))
	})
	cl, err := dialServer(t, srv, host.PublicKey(), client)
	if err != nil {
		t.Fatal(err)
	}
	ok, reply, err := cl.SendRequest("echo@test", true, []byte("ping"))
	if err != nil || !ok || string(reply) != "pong" || string(<-got) != "ping" {
		t.Errorf("echo request: ok=%v reply=%q err=%v", ok, reply, err)
	}
	if ok, _, _ := cl.SendRequest("nope@test", true, nil); ok {
		t.Error("an unknown global request succeeded")
	}
	if _, _, err := cl.OpenChannel("nope", nil); err == nil {
		t.Error("an unknown channel type opened")
	}
}

func TestDirectTCPIP(t *testing.T) {
	_, cl := newTestServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c)
		c.Write(bytes.ToUpper(b))
		c.Close()
	}()
	c, err := cl.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial through the agent: %v", err)
	}
	io.WriteString(c, "forwarded")
	c.(interface{ CloseWrite() error }).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "FORWARDED" {
		t.Errorf("read %q, %v", b, err)
	}
	if _, err := cl.Dial("tcp", "127.0.0.1:1"); err == nil {
		t.Error("dial to a closed port succeeded")
	}
}

// syncBuffer is a bytes.Buffer safe to read while a session writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// socketPair returns the two ends of a connected unix stream socket pair.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out")
}
