package agent

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/devbox-dev/devbox/guest/bootconfig"
)

// chunks feeds a helloStream the given reads, then io.EOF.
func chunks(parts ...string) func(bool) ([]byte, error) {
	return func(bool) ([]byte, error) {
		if len(parts) == 0 {
			return nil, io.EOF
		}
		p := parts[0]
		parts = parts[1:]
		return []byte(p), nil
	}
}

func TestHelloStream(t *testing.T) {
	h := bootconfig.HostHelloLine("n1")
	h2 := bootconfig.HostHelloLine("n2")
	s := &helloStream{fill: chunks(
		"\x00stale bytes of an old session"+h[:7], h[7:12], h[12:]+"SSH-2.0-host\r\n",
		"session data"+h2[:10], h2[10:]+"more",
	)}
	nonce, err := s.nextHello()
	if err != nil || nonce != "n1" {
		t.Fatalf("first hello: %q, %v", nonce, err)
	}
	var got []byte
	b := make([]byte, 5)
	for {
		n, err := s.read(b)
		got = append(got, b[:n]...)
		if err != nil {
			if !errors.Is(err, errNewHello) {
				t.Fatalf("session read: %v", err)
			}
			break
		}
	}
	// The session saw its bytes; those of the new hello may reach it in
	// part, and end it.
	if !strings.HasPrefix(string(got), "SSH-2.0-host\r\nsession data") {
		t.Errorf("session read %q", got)
	}
	nonce, err = s.nextHello()
	if err != nil || nonce != "n2" {
		t.Fatalf("second hello: %q, %v", nonce, err)
	}
	n, err := s.read(b)
	if string(b[:n]) != "more" || err != nil {
		t.Errorf("after the second hello: %q, %v", b[:n], err)
	}
	if _, err := s.read(b); err != io.EOF {
		t.Errorf("at the end: %v, want EOF", err)
	}
}

func TestHelloStreamNoHello(t *testing.T) {
	s := &helloStream{fill: chunks(strings.Repeat("x", 100000), bootconfig.HostHello+strings.Repeat("y", 2*maxNonce)+"\n")}
	if _, err := s.nextHello(); err != io.EOF {
		t.Errorf("no hello: %v, want EOF", err)
	}
}

func TestReadHelloLine(t *testing.T) {
	r := strings.NewReader(bootconfig.HostHelloLine("abc") + "SSH-2.0-x\r\n")
	if nonce, err := readHelloLine(r); err != nil || nonce != "abc" {
		t.Errorf("hello: %q, %v", nonce, err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "SSH-2.0-x\r\n" {
		t.Errorf("read past the hello: left %q", rest)
	}
	if _, err := readHelloLine(strings.NewReader("SSH-2.0-x\r\n")); err == nil {
		t.Error("a stream without hello was accepted")
	}
}
