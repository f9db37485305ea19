package machine

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/devbox-dev/devbox/guest/bootconfig"
)

// fakeAgent answers the host's hello as the agent does, after writing
// stale bytes and a hello for some other nonce.
func fakeAgent(t *testing.T, guest net.Conn, after string) {
	line, err := bufio.NewReader(guest).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, bootconfig.HostHello) {
		t.Errorf("host hello: %q, %v", line, err)
		guest.Close()
		return
	}
	nonce := strings.TrimSpace(strings.TrimPrefix(line, bootconfig.HostHello))
	guest.Write([]byte("\x00\x01stale SSH-2.0-old\r\n" + bootconfig.HelloLine("0123456789abcdef") + bootconfig.HelloLine(nonce) + after))
	guest.Close()
}

// Bytes a previous session left in flight, and an answer to another
// hello, come before the answer to ours and are dropped; the SSH banner
// after it is left whole for the SSH client.
func TestAwaitHelloSkipsStaleBytes(t *testing.T) {
	host, guest := net.Pipe()
	defer host.Close()
	go fakeAgent(t, guest, "SSH-2.0-agent\r\n")
	if err := awaitHello(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(host)
	if string(rest) != "SSH-2.0-agent\r\n" {
		t.Errorf("after hello: %q", rest)
	}
}

func TestAwaitHelloTimeoutAndEOF(t *testing.T) {
	host, guest := net.Pipe()
	go io.Copy(io.Discard, guest)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := awaitHello(ctx, host); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no hello before the deadline: %v", err)
	}
	host.Close()
	guest.Close()

	host, guest = net.Pipe()
	go func() {
		bufio.NewReader(guest).ReadString('\n')
		guest.Write([]byte(bootconfig.Hello))
		guest.Close()
	}()
	if err := awaitHello(context.Background(), host); !errors.Is(err, errNoHello) {
		t.Errorf("stream closed before hello: %v", err)
	}
}
