// Package netutil joins byte streams: connections, SSH channels.
package netutil

import (
	"io"
	"sync"
)

// Splice copies a to b and b to a until both directions end, then closes
// both. Each side's end of data is passed on as a half-close where the
// other side has one (TCP connections and SSH channels do), so that
// request/response protocols finish cleanly; a side without one is closed.
func Splice(a, b io.ReadWriteCloser) {
	var wg sync.WaitGroup
	one := func(dst, src io.ReadWriteCloser) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go one(a, b)
	go one(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}
