package agent

import (
	"context"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// A channel opened while the guest still boots waits for the end of boot:
// a command runs only then, while global requests (the host's clock,
// shutdown) are answered at once.
func TestGateHoldsChannelsUntilBooted(t *testing.T) {
	host, client := testKeys(t)
	srv := NewServer(host, "root", []ssh.PublicKey{client.PublicKey()})
	srv.Session.Dir = t.TempDir()
	booted := make(chan struct{})
	srv.Gate = func(ctx context.Context) error {
		select {
		case <-booted:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	srv.HandleRequest("ping", func(_ context.Context, _ *ssh.ServerConn, req *ssh.Request) { req.Reply(true, nil) })
	cl, err := dialServer(t, srv, host.PublicKey(), client)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if ok, _, err := cl.SendRequest("ping", true, nil); !ok || err != nil {
		t.Fatalf("global request while booting: %v %v", ok, err)
	}
	out := make(chan string, 1)
	go func() {
		s, err := cl.NewSession()
		if err != nil {
			out <- "new session: " + err.Error()
			return
		}
		b, _ := s.Output("echo ran")
		out <- string(b)
	}()
	select {
	case got := <-out:
		t.Fatalf("a session ran before boot finished: %q", got)
	case <-time.After(300 * time.Millisecond):
	}
	close(booted)
	select {
	case got := <-out:
		if got != "ran\n" {
			t.Fatalf("session after boot: %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not run once boot finished")
	}
}

func TestNetmask4(t *testing.T) {
	for bits, want := range map[int][4]byte{0: {}, 8: {255}, 20: {255, 255, 240}, 24: {255, 255, 255}, 32: {255, 255, 255, 255}} {
		if got := netmask4(bits); got != want {
			t.Errorf("netmask4(%d) = %v, want %v", bits, got, want)
		}
	}
}
