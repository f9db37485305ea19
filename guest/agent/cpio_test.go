package agent

import (
	"bytes"
	"io/fs"
	"sync"

	"github.com/devbox-dev/devbox/images/initramfs"
)

// cpioWriter builds a test initramfs with images/initramfs, the writer the
// guest image uses; the first error is raised when the bytes are taken.
type cpioWriter struct {
	once sync.Once
	buf  bytes.Buffer
	w    *initramfs.Writer
	err  error
}

func (c *cpioWriter) do(f func(w *initramfs.Writer) error) {
	c.once.Do(func() { c.w = initramfs.NewWriter(&c.buf) })
	if c.err == nil {
		c.err = f(c.w)
	}
}

func (c *cpioWriter) dir(name string) {
	c.do(func(w *initramfs.Writer) error { return w.Dir(name, 0o755) })
}

func (c *cpioWriter) file(name string, perm fs.FileMode, data []byte) {
	c.do(func(w *initramfs.Writer) error { return w.File(name, perm, data) })
}

func (c *cpioWriter) symlink(name, target string) {
	c.do(func(w *initramfs.Writer) error { return w.Symlink(name, target) })
}

func (c *cpioWriter) charDev(name string, major, minor uint32) {
	c.do(func(w *initramfs.Writer) error { return w.CharDevice(name, 0o600, major, minor) })
}

func (c *cpioWriter) bytes() []byte {
	c.do(func(w *initramfs.Writer) error { return w.Close() })
	if c.err != nil {
		panic("test initramfs: " + c.err.Error())
	}
	return c.buf.Bytes()
}
