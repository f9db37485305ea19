// Package engine is the one API the devbox command speaks: images and
// containers. Its local implementation calls images/ and runtime/ in
// process (natively on Linux, and inside the VM's guest agent); a remote
// implementation will speak to the guest agent over SSH.
package engine

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/devbox-dev/devbox/engine/spec"
	"github.com/devbox-dev/devbox/images"
	"github.com/devbox-dev/devbox/progress"
)

// Engine runs images and containers.
type Engine interface {
	Pull(ctx context.Context, ref string, opts images.PullOptions) (*images.Image, error)
	Images(ctx context.Context) ([]*images.Image, error)
	RemoveImage(ctx context.Context, ref string, force bool) (images.Removal, error)
	ImportImage(ctx context.Context, file, ref string) ([]*images.Image, error)
	ExportImage(ctx context.Context, ref, file string) error

	// Run creates a container and runs it to its end.
	Run(ctx context.Context, opts RunOptions, stdio IO) (Exit, error)
	Containers(ctx context.Context, all bool) ([]*Container, error)
	RemoveContainer(ctx context.Context, ref string, force bool) (*Container, error)
	Close() error
}

// RunOptions are what `devbox run` was asked for.
type RunOptions struct {
	// Image is the reference the user gave.
	Image    string
	Name     string
	Remove   bool
	Pull     PullPolicy
	Platform string
	Insecure []string
	// Init runs devbox's minimal init as PID 1 (--init).
	Init bool
	// Publish are -p HOSTPORT:CTRPORT: while the container runs, the
	// host port is forwarded to the container's.
	Publish []PortMapping
	// Spec holds the flags that shape the container itself.
	Spec spec.Options

	// Keychain and Transport, when set, are what a pull for the run
	// uses instead of the user's docker config and the network (in the
	// VM: the host's credentials and the host's network).
	Keychain  authn.Keychain    `json:"-"`
	Transport http.RoundTripper `json:"-"`
}

// PullPolicy says when Run pulls its image: docker's --pull.
type PullPolicy string

// The pull policies.
const (
	PullMissing PullPolicy = "missing"
	PullAlways  PullPolicy = "always"
	PullNever   PullPolicy = "never"
)

// IO is a container's standard streams. Files are passed to the
// container as they are, which is fastest.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Console receives the container's terminal when it has one (-t):
	// the caller copies it to and from the user's terminal.
	Console func(Console)
	// Signals are forwarded to the container's process.
	Signals <-chan os.Signal
	// Progress receives pull progress when the image must be pulled.
	Progress progress.Func
}

// Console is a container's terminal: reading gives its output, writing
// types into it.
type Console interface {
	io.ReadWriter
	// Resize sets the terminal's window size in characters.
	Resize(cols, rows int) error
}

// Exit is how a container ended, in docker's terms.
type Exit struct {
	// Code is the exit code docker reports: the process's, or 128+N
	// for signal N.
	Code int
	// OOMKilled is set when the kernel killed the container for memory.
	OOMKilled bool
}

// platformPtr is nil for "" so the store picks this machine's platform;
// otherwise p must name an OS and an architecture at least.
func platformPtr(p string) (*v1.Platform, error) {
	if p == "" {
		return nil, nil
	}
	plat, err := v1.ParsePlatform(p)
	if err == nil && (plat.OS == "" || plat.Architecture == "") {
		err = errors.New("no OS or architecture")
	}
	return plat, err
}
