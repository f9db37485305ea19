package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/crypto/ssh"
	"golang.org/x/net/http/httpproxy"
	"golang.org/x/sys/unix"

	"github.com/devbox-dev/devbox/engine"
	"github.com/devbox-dev/devbox/images"
	"github.com/devbox-dev/devbox/progress"
)

// LocalEngine is what the server needs of the engine it serves: the
// engine API, and export to a stream rather than a file in the guest.
type LocalEngine interface {
	engine.Engine
	ExportImageTo(ctx context.Context, ref string, w io.Writer) error
}

// Server serves engine calls in the guest.
type Server struct {
	Engine LocalEngine
	// TempDir holds archives while they are imported: on the data disk,
	// not in the guest's memory.
	TempDir string
	// HostLoopback is the guest's way to the host's loopback, if its
	// network has one (QEMU's user network: 10.0.2.2); otherwise the
	// host's loopback is reached through the SSH connection.
	HostLoopback string

	mu         sync.Mutex
	transports map[ssh.Conn]http.RoundTripper
}

// Serve serves the engine call that opens nc, on the SSH connection conn.
// It returns when the call is done.
func (s *Server) Serve(ctx context.Context, conn ssh.Conn, nc ssh.NewChannel) {
	var c call
	if err := json.Unmarshal(nc.ExtraData(), &c); err != nil {
		nc.Reject(ssh.Prohibited, fmt.Sprintf("engine call: %v", err))
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sv := &serving{conn: conn, ch: ch, transport: s.hostTransport(conn, c.Proxy), sigs: make(chan os.Signal, 16), resize: make(chan windowChange, 1)}
	go func() {
		// The host closing the channel (Ctrl-C, a killed devbox, a lost
		// connection) ends the requests, and cancels the call.
		defer cancel()
		for r := range reqs {
			ok := sv.request(r)
			if r.WantReply {
				r.Reply(ok, nil)
			}
		}
	}()
	switch c.Op {
	case opRun:
		sv.finish(s.run(ctx, sv, c))
	case opImport:
		sv.finish(s.importImage(ctx, sv, c))
	case opExport:
		err := s.Engine.ExportImageTo(ctx, c.Ref, ch)
		sv.finish(result{Error: errString(err)})
	default:
		res := s.simple(ctx, sv, c)
		json.NewEncoder(ch).Encode(res)
		ch.CloseWrite()
	}
}

// serving is one call being served.
type serving struct {
	conn      ssh.Conn
	transport http.RoundTripper
	ch        ssh.Channel
	sigs      chan os.Signal
	resize    chan windowChange
}

func (sv *serving) request(r *ssh.Request) bool {
	switch r.Type {
	case requestSignal:
		var p signalRequest
		if ssh.Unmarshal(r.Payload, &p) != nil {
			return false
		}
		sig := unix.SignalNum("SIG" + p.Name)
		if sig == 0 {
			return false
		}
		select {
		case sv.sigs <- sig:
		default: // a flood of signals: the container has the first ones
		}
		return true
	case requestWindow:
		var p windowChange
		if ssh.Unmarshal(r.Payload, &p) != nil {
			return false
		}
		// Only the latest size matters.
		select {
		case <-sv.resize:
		default:
		}
		sv.resize <- p
		return true
	}
	return false
}

// progress sends pull progress to the host. It is safe for concurrent use.
func (sv *serving) progress(e progress.Event) {
	_, _ = sv.ch.SendRequest(requestProgress, false, mustJSON(e))
}

// finish ends a streaming call: its data is complete, then its result.
func (sv *serving) finish(res result) {
	sv.ch.CloseWrite()
	_, _ = sv.ch.SendRequest(requestResult, false, mustJSON(res))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// pullOptions are the pull options of a call, with the host's network and
// credentials.
func (sv *serving) pullOptions(c call) (images.PullOptions, error) {
	o := images.PullOptions{
		Insecure:  c.Insecure,
		UserAgent: c.UserAgent,
		Progress:  sv.progress,
		Keychain:  hostKeychain{sv.conn},
		Transport: sv.transport,
	}
	if c.Platform != "" {
		p, err := v1.ParsePlatform(c.Platform)
		if err != nil {
			return o, fmt.Errorf("invalid --platform %q: %w", c.Platform, err)
		}
		o.Platform = p
	}
	return o, nil
}

func (s *Server) simple(ctx context.Context, sv *serving, c call) result {
	var res result
	var err error
	switch c.Op {
	case opPull:
		var o images.PullOptions
		if o, err = sv.pullOptions(c); err == nil {
			res.Image, err = s.Engine.Pull(ctx, c.Ref, o)
		}
	case opImages:
		res.Images, err = s.Engine.Images(ctx)
		if res.Images == nil {
			res.Images = []*images.Image{}
		}
	case opRmi:
		var rm images.Removal
		rm, err = s.Engine.RemoveImage(ctx, c.Ref, c.Force)
		res.Removal = &rm
	case opPs:
		res.Containers, err = s.Engine.Containers(ctx, c.All)
		if res.Containers == nil {
			res.Containers = []*engine.Container{}
		}
	case opRm:
		res.Container, err = s.Engine.RemoveContainer(ctx, c.Ref, c.Force)
	default:
		err = fmt.Errorf("unknown engine call %q: the guest image is older than this devbox; rebuild or pull it", c.Op)
	}
	res.Error = errString(err)
	return res
}

// importImage receives the archive into a temporary file, which the store
// needs (an archive is read more than once), and imports it.
func (s *Server) importImage(ctx context.Context, sv *serving, c call) result {
	if err := os.MkdirAll(s.TempDir, 0o700); err != nil {
		return result{Error: err.Error()}
	}
	f, err := os.CreateTemp(s.TempDir, "import-")
	if err != nil {
		return result{Error: err.Error()}
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, sv.ch)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		return result{Error: fmt.Sprintf("import: receive the archive: %v", err)}
	}
	imgs, err := s.Engine.ImportImage(ctx, f.Name(), c.Ref)
	if err != nil {
		// The user knows the archive by its name on the host.
		return result{Error: strings.ReplaceAll(err.Error(), f.Name(), c.File)}
	}
	return result{Images: imgs}
}

func (s *Server) run(ctx context.Context, sv *serving, c call) result {
	if c.Run == nil {
		return result{Error: "run: no container options"}
	}
	o := *c.Run
	o.Keychain, o.Transport = hostKeychain{sv.conn}, sv.transport
	stdio := engine.IO{Signals: sv.sigs, Progress: sv.progress}
	var drained chan struct{}
	ran := make(chan struct{})
	defer close(ran)
	if o.Spec.Terminal {
		drained = make(chan struct{})
		stdio.Console = func(con engine.Console) {
			if c.Stdin {
				go io.Copy(con, sv.ch)
			}
			go func() {
				for {
					select {
					case wc := <-sv.resize:
						con.Resize(int(wc.Cols), int(wc.Rows))
					case <-ran:
						return
					}
				}
			}()
			go func() {
				io.Copy(sv.ch, con)
				close(drained)
			}()
		}
	} else {
		stdio.Stdout, stdio.Stderr = sv.ch, sv.ch.Stderr()
		if c.Stdin {
			stdio.Stdin = sv.ch
		}
	}
	exit, err := s.Engine.Run(ctx, o, stdio)
	if drained != nil {
		select {
		case <-drained:
		case <-time.After(2 * time.Second):
		}
	}
	return result{Exit: &exit, Error: errString(err)}
}

// hostKeychain asks the host for registry credentials.
type hostKeychain struct{ conn ssh.Conn }

func (k hostKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	ch, reqs, err := k.conn.OpenChannel(AuthChannel, []byte(r.RegistryStr()))
	if err != nil {
		return nil, fmt.Errorf("credentials for %s from the host: %w", r.RegistryStr(), err)
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	var cfg authn.AuthConfig
	if err := json.NewDecoder(ch).Decode(&cfg); err != nil {
		return nil, fmt.Errorf("credentials for %s from the host: %w", r.RegistryStr(), err)
	}
	if cfg == (authn.AuthConfig{}) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(cfg), nil
}

// hostTransport is the HTTP transport pulls use. Registries are reached
// from the guest's own network, which under QEMU's user network is the
// host's sockets (its routes, VPN and resolver) and measured 5x faster
// than the SSH connection under emulation. A registry on the host's
// loopback (127.0.0.1:5000, localhost:5000, as developers run one) is
// reached at the network's alias for it, or else through the host over
// SSH. The host's proxy settings apply, a proxy on its loopback reached
// the same way. One transport per SSH connection (one devbox command,
// whose proxy settings are the same for all its calls), so its requests
// share idle connections.
func (s *Server) hostTransport(conn ssh.Conn, proxy *proxyConfig) http.RoundTripper {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.transports[conn]; ok {
		return t
	}
	if s.transports == nil {
		s.transports = map[ssh.Conn]http.RoundTripper{}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil // the guest has no proxy settings of its own
	if proxy != nil {
		pf := (&httpproxy.Config{HTTPProxy: proxy.HTTPProxy, HTTPSProxy: proxy.HTTPSProxy, NoProxy: proxy.NoProxy}).ProxyFunc()
		t.Proxy = func(r *http.Request) (*url.URL, error) { return pf(r.URL) }
	}
	var d net.Dialer
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || !isLoopback(host) {
			return d.DialContext(ctx, network, addr)
		}
		if s.HostLoopback != "" {
			c, err := d.DialContext(ctx, network, net.JoinHostPort(s.HostLoopback, port))
			// Errors name the address the user gave, not the alias.
			var oe *net.OpError
			if errors.As(err, &oe) {
				if a, rerr := net.ResolveTCPAddr(network, addr); rerr == nil {
					oe.Addr = a
				}
			}
			return c, err
		}
		return dialHost(ctx, conn, network, addr)
	}
	s.transports[conn] = t
	go func() {
		conn.Wait()
		t.CloseIdleConnections()
		s.mu.Lock()
		delete(s.transports, conn)
		s.mu.Unlock()
	}()
	return t
}

// isLoopback says whether host names the (host's) loopback.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dialHost connects to addr from the host.
func dialHost(ctx context.Context, conn ssh.Conn, network, addr string) (net.Conn, error) {
	type opened struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
		err  error
	}
	done := make(chan opened, 1)
	go func() {
		ch, reqs, err := conn.OpenChannel(DialChannel, mustJSON(dialRequest{Network: network, Address: addr}))
		done <- opened{ch, reqs, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			var oe *ssh.OpenChannelError
			if errors.As(o.err, &oe) {
				return nil, fmt.Errorf("dial %s from the host: %s", addr, oe.Message)
			}
			return nil, fmt.Errorf("dial %s from the host: %w", addr, o.err)
		}
		go ssh.DiscardRequests(o.reqs)
		return &chanConn{Channel: o.ch, remote: addr}, nil
	case <-ctx.Done():
		go func() {
			if o := <-done; o.err == nil {
				o.ch.Close()
			}
		}()
		return nil, ctx.Err()
	}
}
