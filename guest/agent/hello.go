package agent

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/devbox-dev/devbox/guest/bootconfig"
)

// maxNonce bounds the nonce of a host hello line.
const maxNonce = 256

var hostHello = []byte(bootconfig.HostHello)

// helloStream cuts one long-lived byte stream from the host (a
// virtio-serial port, open for the agent's whole life) into sessions, each
// opened by the host's hello line. It also watches a running session's
// bytes for a new host hello: on virtio-serial a host that hangs up and
// reconnects at once can look to the guest as if it never left, so the
// hello, not a hang-up, is what says a new host is there.
type helloStream struct {
	// fill returns the next bytes of the stream. With waitHost, it waits
	// for a host while none is connected rather than reporting io.EOF.
	fill func(waitHost bool) ([]byte, error)
	// reset, if set, runs before nextHello reads, once the previous
	// session's last read has returned.
	reset func()

	mu   sync.Mutex // one reader at a time
	buf  []byte     // read, not yet consumed
	tail []byte     // the last bytes handed to the session, to find a hello split across reads
}

// nextHello skips to the next host hello line, consumes it and returns
// its nonce.
func (s *helloStream) nextHello() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tail = nil
	if s.reset != nil {
		s.reset()
	}
	for {
		if i := bytes.Index(s.buf, hostHello); i >= 0 {
			s.buf = s.buf[i:]
			line := s.buf[len(hostHello):]
			if j := bytes.IndexByte(line, '\n'); j >= 0 {
				nonce := string(bytes.TrimSuffix(line[:j], []byte("\r")))
				s.buf = append([]byte(nil), line[j+1:]...)
				if len(nonce) <= maxNonce {
					return nonce, nil
				}
				continue
			}
			if len(line) > maxNonce {
				s.buf = line // not a hello: look further
				continue
			}
		} else if keep := len(hostHello) - 1; len(s.buf) > keep {
			// What cannot start a hello is no use.
			s.buf = append(s.buf[:0], s.buf[len(s.buf)-keep:]...)
		}
		b, err := s.fill(true)
		if err != nil {
			return "", err
		}
		s.buf = append(s.buf, b...)
	}
}

// errNewHello ends a session whose host has started over.
var errNewHello = errors.New("the host started a new session")

// read reads session bytes into p. It returns io.EOF when the host hung
// up, and errNewHello, leaving the hello for nextHello, when a new hello
// shows up in the stream.
func (s *helloStream) read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) == 0 {
		b, err := s.fill(false)
		if err != nil {
			return 0, err
		}
		s.buf = append(s.buf, b...)
	}
	seen := append(append([]byte(nil), s.tail...), s.buf...)
	if i := bytes.Index(seen, hostHello); i >= 0 {
		s.buf, s.tail = seen[i:], nil
		return 0, errNewHello
	}
	n := copy(p, s.buf)
	s.tail = append(s.tail, s.buf[:n]...)
	if k := len(hostHello) - 1; len(s.tail) > k {
		s.tail = append(s.tail[:0], s.tail[len(s.tail)-k:]...)
	}
	s.buf = s.buf[n:]
	if len(s.buf) == 0 {
		s.buf = nil
	}
	return n, nil
}

// readHelloLine reads a host hello line from a fresh connection (vsock),
// one byte at a time so as not to read into the SSH that follows it.
func readHelloLine(r io.Reader) (string, error) {
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
		if len(line) > len(hostHello)+maxNonce {
			return "", errors.New("host hello line too long")
		}
	}
	nonce, ok := bytes.CutPrefix(bytes.TrimSuffix(line, []byte("\r")), hostHello)
	if !ok {
		return "", errors.New("stream does not open with the host hello")
	}
	return string(nonce), nil
}
