package main

import (
	"os"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

// followSSHWindow polls the console size (Windows has no SIGWINCH) and
// sends changes to the session until the returned func is called.
func followSSHWindow(sess *ssh.Session) func() {
	done := make(chan struct{})
	go func() {
		w0, h0, _ := term.GetSize(int(os.Stdout.Fd()))
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil && (w != w0 || h != h0) {
					w0, h0 = w, h
					_ = sess.WindowChange(h, w)
				}
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}
