//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

// followSSHWindow sends the terminal's size to the session whenever it
// changes, until the returned func is called.
func followSSHWindow(sess *ssh.Session) func() {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
					_ = sess.WindowChange(h, w)
				}
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(winch); close(done) }
}
