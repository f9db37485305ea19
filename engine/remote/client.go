package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/crypto/ssh"
	"golang.org/x/net/http/httpproxy"

	"github.com/devbox-dev/devbox/engine"
	"github.com/devbox-dev/devbox/engine/spec"
	"github.com/devbox-dev/devbox/images"
	"github.com/devbox-dev/devbox/internal/netutil"
	"github.com/devbox-dev/devbox/progress"
)

// Options shape a Client.
type Options struct {
	// Keychain answers the guest's requests for registry credentials;
	// nil means the user's docker config and credential helpers.
	Keychain authn.Keychain
	// CheckBind is asked about the host path of every -v before a run:
	// only directories shared with the VM can be bound.
	CheckBind func(path string) error
	// Machine names the machine in messages.
	Machine string
}

// Client is the engine in the VM, reached over an SSH connection to the
// guest agent. It implements engine.Engine.
type Client struct {
	c    *ssh.Client
	o    Options
	done chan struct{}
}

var _ engine.Engine = (*Client)(nil)

// New serves the guest's requests for the host's network and credentials
// on c and returns the engine. Closing the Client closes c.
func New(c *ssh.Client, o Options) *Client {
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	cl := &Client{c: c, o: o, done: make(chan struct{})}
	if dials := c.HandleChannelOpen(DialChannel); dials != nil {
		go cl.serveDials(dials)
	}
	if auths := c.HandleChannelOpen(AuthChannel); auths != nil {
		go cl.serveAuth(auths)
	}
	return cl
}

// Close ends the connection to the guest.
func (cl *Client) Close() error {
	select {
	case <-cl.done:
	default:
		close(cl.done)
	}
	return cl.c.Close()
}

// serveDials connects the guest to the addresses it asks for, from here.
func (cl *Client) serveDials(in <-chan ssh.NewChannel) {
	for nc := range in {
		go func() {
			var r dialRequest
			if err := json.Unmarshal(nc.ExtraData(), &r); err != nil || (r.Network != "tcp" && r.Network != "tcp4" && r.Network != "tcp6") {
				nc.Reject(ssh.Prohibited, "only tcp connections are made for the guest")
				return
			}
			d := net.Dialer{Timeout: 30 * time.Second}
			conn, err := d.Dial(r.Network, r.Address)
			if err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				return
			}
			ch, reqs, err := nc.Accept()
			if err != nil {
				conn.Close()
				return
			}
			go ssh.DiscardRequests(reqs)
			netutil.Splice(conn, ch)
		}()
	}
}

// serveAuth answers the guest's requests for registry credentials from
// the host's keychain.
func (cl *Client) serveAuth(in <-chan ssh.NewChannel) {
	for nc := range in {
		go func() {
			var cfg *authn.AuthConfig
			reg, err := name.NewRegistry(string(nc.ExtraData()))
			if err == nil {
				var a authn.Authenticator
				if a, err = cl.o.Keychain.Resolve(reg); err == nil {
					cfg, err = authn.Authorization(context.Background(), a)
				}
			}
			if err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				return
			}
			ch, reqs, err := nc.Accept()
			if err != nil {
				return
			}
			go ssh.DiscardRequests(reqs)
			json.NewEncoder(ch).Encode(cfg)
			ch.CloseWrite()
			ch.Close()
		}()
	}
}

// session is one call in flight.
type session struct {
	ch   ssh.Channel
	stop func() bool
	// res is the result request, and reqsDone closes when the guest has
	// closed the channel (so every request has been seen).
	res      *result
	reqsDone chan struct{}
}

// open starts a call. Its channel closes when ctx ends, which cancels
// the call in the guest.
func (cl *Client) open(ctx context.Context, c call, report progress.Func) (*session, error) {
	ch, reqs, err := cl.c.OpenChannel(ChannelType, mustJSON(c))
	if err != nil {
		return nil, fmt.Errorf("engine in machine %s: %w", cl.o.Machine, err)
	}
	s := &session{ch: ch, reqsDone: make(chan struct{})}
	s.stop = context.AfterFunc(ctx, func() { ch.Close() })
	go func() {
		defer close(s.reqsDone)
		for r := range reqs {
			switch r.Type {
			case requestProgress:
				var e progress.Event
				if report != nil && json.Unmarshal(r.Payload, &e) == nil {
					report(e)
				}
			case requestResult:
				var res result
				if json.Unmarshal(r.Payload, &res) == nil {
					s.res = &res
				}
			}
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}()
	return s, nil
}

// end waits for the guest to finish the call and returns its result.
func (s *session) end(ctx context.Context) (*result, error) {
	<-s.reqsDone
	s.stop()
	s.ch.Close()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if s.res == nil {
		return nil, errors.New("the guest agent closed the call without an answer: is the VM still running? (devbox status)")
	}
	if s.res.Error != "" {
		return s.res, errors.New(s.res.Error)
	}
	return s.res, nil
}

// simple makes a call whose result is the JSON document of the
// channel's data.
func (cl *Client) simple(ctx context.Context, c call, report progress.Func) (*result, error) {
	s, err := cl.open(ctx, c, report)
	if err != nil {
		return nil, err
	}
	var res result
	derr := json.NewDecoder(s.ch).Decode(&res)
	<-s.reqsDone // every progress event is shown before the call returns
	s.stop()
	s.ch.Close()
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case derr != nil:
		return nil, fmt.Errorf("engine in machine %s: the call ended early (%v): is the VM still running? (devbox status)", cl.o.Machine, derr)
	case res.Error != "":
		return &res, errors.New(res.Error)
	}
	return &res, nil
}

// Pull pulls ref into the VM's store. The guest reaches the registry
// through this host, with its credentials.
func (cl *Client) Pull(ctx context.Context, ref string, o images.PullOptions) (*images.Image, error) {
	c := call{Op: opPull, Ref: ref, Insecure: o.Insecure, UserAgent: o.UserAgent, Proxy: hostProxy()}
	if o.Platform != nil {
		c.Platform = o.Platform.String()
	}
	res, err := cl.simple(ctx, c, o.Progress)
	if err != nil {
		return nil, err
	}
	return res.Image, nil
}

// Images lists the VM's images.
func (cl *Client) Images(ctx context.Context) ([]*images.Image, error) {
	res, err := cl.simple(ctx, call{Op: opImages}, nil)
	if err != nil {
		return nil, err
	}
	return res.Images, nil
}

// RemoveImage removes an image from the VM's store.
func (cl *Client) RemoveImage(ctx context.Context, ref string, force bool) (images.Removal, error) {
	res, err := cl.simple(ctx, call{Op: opRmi, Ref: ref, Force: force}, nil)
	if res == nil || res.Removal == nil {
		return images.Removal{}, err
	}
	return *res.Removal, err
}

// Containers lists the VM's containers.
func (cl *Client) Containers(ctx context.Context, all bool) ([]*engine.Container, error) {
	res, err := cl.simple(ctx, call{Op: opPs, All: all}, nil)
	if err != nil {
		return nil, err
	}
	return res.Containers, nil
}

// RemoveContainer removes a container in the VM.
func (cl *Client) RemoveContainer(ctx context.Context, ref string, force bool) (*engine.Container, error) {
	res, err := cl.simple(ctx, call{Op: opRm, Ref: ref, Force: force}, nil)
	if err != nil {
		return nil, err
	}
	return res.Container, nil
}

// ImportImage sends the archive at file (on the host) to the VM and
// imports it there.
func (cl *Client) ImportImage(ctx context.Context, file, ref string) ([]*images.Image, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	defer f.Close()
	s, err := cl.open(ctx, call{Op: opImport, Ref: ref, File: file}, nil)
	if err != nil {
		return nil, err
	}
	go func() {
		// An error here shows as a short archive in the guest.
		io.Copy(s.ch, f)
		s.ch.CloseWrite()
	}()
	res, err := s.end(ctx)
	if err != nil {
		return nil, err
	}
	return res.Images, nil
}

// ExportImage writes an image of the VM to file on the host, never
// leaving a partial file under that name.
func (cl *Client) ExportImage(ctx context.Context, ref, file string) error {
	return images.WriteFile(file, 0o644, func(w io.Writer) error {
		s, err := cl.open(ctx, call{Op: opExport, Ref: ref}, nil)
		if err != nil {
			return err
		}
		_, cerr := io.Copy(w, s.ch)
		if _, err := s.end(ctx); err != nil {
			return err
		}
		if cerr != nil {
			return fmt.Errorf("export %s: %w", ref, cerr)
		}
		return nil
	})
}

// Run runs a container in the VM to its end: its stdio, terminal and the
// signals devbox gets are carried over the call's channel, and its
// published ports listen here, each connection forwarded into the VM.
func (cl *Client) Run(ctx context.Context, o engine.RunOptions, stdio engine.IO) (engine.Exit, error) {
	// The VM mounts each share at its host path with symlinks resolved
	// (macOS's /var is /private/var): a bind names the real path there.
	binds := make([]spec.Bind, len(o.Spec.Binds))
	for i, b := range o.Spec.Binds {
		if r, err := filepath.EvalSymlinks(b.Source); err == nil {
			b.Source = r
		}
		if cl.o.CheckBind != nil {
			if err := cl.o.CheckBind(b.Source); err != nil {
				return engine.Exit{}, err
			}
		}
		binds[i] = b
	}
	o.Spec.Binds = binds
	// The host forwards; the guest's engine publishes nothing itself.
	ports := o.Publish
	o.Publish = nil
	fwd, err := engine.Publish(ctx, ports, func(ctx context.Context, port int) (net.Conn, error) {
		// The container shares the VM's network: its port is the VM's.
		return cl.c.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	})
	if err != nil {
		return engine.Exit{}, err
	}
	defer fwd.Close()

	terminal := o.Spec.Terminal && stdio.Console != nil
	c := call{Op: opRun, Run: &o, Stdin: stdio.Stdin != nil || terminal, Proxy: hostProxy()}
	s, err := cl.open(ctx, c, stdio.Progress)
	if err != nil {
		return engine.Exit{}, err
	}
	var out sync.WaitGroup
	copyOut := func(w io.Writer, r io.Reader) {
		out.Add(1)
		go func() {
			defer out.Done()
			if w == nil {
				w = io.Discard
			}
			io.Copy(w, r)
		}()
	}
	if terminal {
		stdio.Console(chanConsole{s.ch})
	} else {
		copyOut(stdio.Stdout, s.ch)
		copyOut(stdio.Stderr, s.ch.Stderr())
		if stdio.Stdin != nil {
			go func() {
				io.Copy(s.ch, stdio.Stdin)
				s.ch.CloseWrite()
			}()
		}
	}
	stopSignals := make(chan struct{})
	if stdio.Signals != nil {
		go func() {
			for {
				select {
				case sig := <-stdio.Signals:
					if n := signalName(sig); n != "" {
						s.ch.SendRequest(requestSignal, false, ssh.Marshal(signalRequest{Name: n}))
					}
				case <-stopSignals:
					return
				}
			}
		}()
	}
	out.Wait()
	res, err := s.end(ctx)
	close(stopSignals)
	if res == nil || res.Exit == nil {
		return engine.Exit{}, err
	}
	return *res.Exit, err
}

// hostProxy is this process's proxy settings, nil when there are none.
func hostProxy() *proxyConfig {
	e := httpproxy.FromEnvironment()
	if e.HTTPProxy == "" && e.HTTPSProxy == "" {
		return nil
	}
	return &proxyConfig{HTTPProxy: e.HTTPProxy, HTTPSProxy: e.HTTPSProxy, NoProxy: e.NoProxy}
}

// chanConsole is a container's terminal in the VM, seen from the host.
type chanConsole struct{ ch ssh.Channel }

func (c chanConsole) Read(p []byte) (int, error)  { return c.ch.Read(p) }
func (c chanConsole) Write(p []byte) (int, error) { return c.ch.Write(p) }
func (c chanConsole) Resize(cols, rows int) error {
	_, err := c.ch.SendRequest(requestWindow, false, ssh.Marshal(windowChange{Cols: uint32(cols), Rows: uint32(rows)}))
	return err
}
