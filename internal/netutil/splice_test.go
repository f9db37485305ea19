package netutil

import (
	"io"
	"net"
	"testing"
)

// A request, its end, then the whole answer and its end: each side sees
// the other's half-close, and both connections end closed.
func TestSpliceHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The server reads the request to its end, then answers.
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		req, _ := io.ReadAll(c)
		c.Write(append([]byte("answer to "), req...))
		c.Close()
	}()
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		in, err := front.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			in.Close()
			return
		}
		Splice(in, out)
	}()
	c, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "answer to ping" {
		t.Fatalf("through the splice: %q, %v", got, err)
	}
	<-done // Splice returned: both directions ended
}
